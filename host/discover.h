/* discover.h: what a file found by the scan is to the tailer (see tail.h).
 * Internal to the tailer: tail.c and scan.c call these.
 *
 * A file looked at is one of:
 *   - a file a PATH matches: followed from its start (or its end with
 *     --from-end, or its checkpoint);
 *   - a rotation beside one, NAME[.-_]suffix where NAME matches a PATH
 *     (app.ndjson.1, app.ndjson-20261201): a known inode is the same file
 *     renamed (read to its end); an unknown one that changed since the state
 *     was written is a candidate, read once its size has held still for a
 *     poll: as a copy (copy-and-truncate) from where its original was read
 *     to, else from 0. Compressed rotations (.gz .bz2 .xz .zst .zip) of a
 *     followed file hold lines already read and are never read;
 *   - anything else: ignored. The state's entries for files no PATH of this
 *     run names are kept in the state untouched, and never looked for.
 *
 * Everything costs O(1) per file looked at: tracked files and the state's
 * entries are found through hash tables, never by a search of a list.
 */
#ifndef TH_DISCOVER_H
#define TH_DISCOVER_H

#include "tail.h"

/* Sort the state's entries (t->known) into this run's, indexed to be matched
 * with files, and other runs'. Returns 0 or -ENOMEM. */
int th_discover_known(th_tail *t);

/* Look at path now (a directory event named it, or it is a file PATH). */
void th_discover_look(th_tail *t, const char *path);

/* A rescan found path in a directory (not a directory itself). */
void th_discover_entry(th_tail *t, const char *path);

/* A full rescan is over: tracked files it did not find where they were were
 * renamed away or deleted (read to their end if open, else forgotten). */
void th_discover_sweep(th_tail *t);

/* Before a save: sets copy_pending on each stale entry of the state that a
 * candidate beside its path, not decided yet, may be a copy of (and on every
 * one until the first full pass is over: the candidates are not all found). */
void th_discover_pending(th_tail *t);

/* The poll: candidates whose size held still are decided. */
void th_discover_poll(th_tail *t);

/* Release what discovery holds (th_tail_free). */
void th_discover_free(th_tail *t);

#endif
