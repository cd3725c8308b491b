/* scan.h: where the tailer looks for files (see tail.h). Internal to the
 * tailer: tail.c and discover.c call these.
 *
 * Every directory a PATH can match files in is watched; an event names its
 * file, which is looked at in the next turn (th_discover_look), in order,
 * once per burst. A full rescan lists every watched directory again, a
 * bounded number of entries per turn, for what events miss (a file system
 * without them, an overflowing event queue); it ends with a sweep of the
 * files it did not find where they were, and the next one is due after
 * --rescan seconds, or twenty times what this one cost if that is longer.
 */
#ifndef TH_SCAN_H
#define TH_SCAN_H

#include <stdint.h>

#include "tail.h"

/* What each PATH's files match (before the state's entries are sorted). */
void th_scan_init(th_tail *t);

/* Begin a full rescan, unless one is under way. */
void th_scan_rescan(th_tail *t);

/* A new directory, named by an event: watch it and list it now. */
void th_scan_dir(th_tail *t, const char *dir);

/* Could a file under dir match a PATH? */
int th_scan_may_contain(const th_tail *t, const char *dir);

/* Look at what directory events named, then go on with the rescan, until
 * deadline (uv_hrtime, ns). */
void th_scan_step(th_tail *t, uint64_t deadline);

/* Is there work left for the next turn? */
int th_scan_busy(const th_tail *t);

/* Stop watching and rescanning (th_tail_stop). */
void th_scan_stop(th_tail *t);

/* Close the directory watches (th_tail_close); they free themselves. */
void th_scan_close(th_tail *t);

/* Release the rest (th_tail_free). */
void th_scan_free(th_tail *t);

#endif
