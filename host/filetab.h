/* filetab.h: find a tracked file by its identity or by its path in O(1).
 *
 * The tailer may follow tens of thousands of files; every directory event and
 * every entry of a rescan asks "do we know this inode?" and "what did we see
 * at this path?". A list search made each rescan O(files^2). Two independent
 * open-addressing tables (linear probing, deletion by backward shift, grown
 * at half load) answer in constant time:
 *
 *   ids:   (device, inode) -> value
 *   paths: path            -> value
 *
 * Values are the caller's and never NULL. Keys of ids are copied; paths are
 * NOT copied: a path must stay valid and unchanged while it is a key (remove
 * it before freeing or changing it). One key holds one value: putting a key
 * again replaces its value.
 */
#ifndef TH_FILETAB_H
#define TH_FILETAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct th_idslot {
  uint64_t dev, ino;   /* the key */
  void *val;           /* NULL: the slot is free */
} th_idslot;

typedef struct th_pathslot {
  const char *path;    /* the key; not owned */
  uint64_t hash;       /* th_fnv1a of path, kept to skip most string compares */
  void *val;           /* NULL: the slot is free */
} th_pathslot;

typedef struct th_filetab {
  th_idslot *ids;      /* capacity idcap, a power of two (0: nothing allocated yet) */
  size_t idcap, nids;
  th_pathslot *paths;  /* capacity pathcap, a power of two */
  size_t pathcap, npaths;
} th_filetab;

void th_filetab_init(th_filetab *t);

/* Map (dev, ino) to val (not NULL). Returns 0 or -ENOMEM (the table is unchanged). */
int th_filetab_put_id(th_filetab *t, uint64_t dev, uint64_t ino, void *val);

/* The value of (dev, ino), or NULL. */
void *th_filetab_get_id(const th_filetab *t, uint64_t dev, uint64_t ino);

/* Remove (dev, ino) if it maps to val (any value when val is NULL). */
void th_filetab_del_id(th_filetab *t, uint64_t dev, uint64_t ino, const void *val);

/* Map path (not copied) to val (not NULL). Returns 0 or -ENOMEM. */
int th_filetab_put_path(th_filetab *t, const char *path, void *val);

/* The value of path, or NULL. */
void *th_filetab_get_path(const th_filetab *t, const char *path);

/* Remove path if it maps to val (any value when val is NULL). */
void th_filetab_del_path(th_filetab *t, const char *path, const void *val);

/* Release the tables (not the values, nor the paths). */
void th_filetab_free(th_filetab *t);

#endif
