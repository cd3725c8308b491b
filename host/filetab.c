/* filetab.c: the two hash tables of filetab.h.
 *
 * Linear probing keeps a lookup to one or two cache lines; deletion shifts
 * the following entries of the run back instead of leaving tombstones, so a
 * table that sees files come and go for months never needs a rebuild. */
#include "filetab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

enum { MIN_CAP = 16 };

/* A 64-bit mix (splitmix64's finalizer): inode numbers are dense, and the
 * low bits of the hash pick the slot. */
static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static size_t id_slot(uint64_t dev, uint64_t ino, size_t cap) {
  return (size_t)(mix(ino ^ mix(dev)) & (cap - 1));
}

void th_filetab_init(th_filetab *t) { memset(t, 0, sizeof *t); }

void th_filetab_free(th_filetab *t) {
  free(t->ids);
  free(t->paths);
  memset(t, 0, sizeof *t);
}

/* ---- (dev, ino) ------------------------------------------------------------ */

static int id_grow(th_filetab *t) {
  size_t cap = t->idcap ? t->idcap * 2 : MIN_CAP;
  th_idslot *s = calloc(cap, sizeof *s);
  if (s == NULL) return -ENOMEM;
  for (size_t i = 0; i < t->idcap; i++) {
    th_idslot *o = &t->ids[i];
    if (o->val == NULL) continue;
    size_t j = id_slot(o->dev, o->ino, cap);
    while (s[j].val) j = (j + 1) & (cap - 1);
    s[j] = *o;
  }
  free(t->ids);
  t->ids = s;
  t->idcap = cap;
  return 0;
}

static th_idslot *id_find(const th_filetab *t, uint64_t dev, uint64_t ino) {
  if (t->idcap == 0) return NULL;
  for (size_t j = id_slot(dev, ino, t->idcap);; j = (j + 1) & (t->idcap - 1)) {
    th_idslot *s = &t->ids[j];
    if (s->val == NULL) return NULL;
    if (s->dev == dev && s->ino == ino) return s;
  }
}

int th_filetab_put_id(th_filetab *t, uint64_t dev, uint64_t ino, void *val) {
  th_idslot *s = id_find(t, dev, ino);
  if (s) {
    s->val = val;
    return 0;
  }
  if ((t->nids + 1) * 2 > t->idcap && id_grow(t) < 0) return -ENOMEM;
  size_t j = id_slot(dev, ino, t->idcap);
  while (t->ids[j].val) j = (j + 1) & (t->idcap - 1);
  t->ids[j] = (th_idslot){dev, ino, val};
  t->nids++;
  return 0;
}

void *th_filetab_get_id(const th_filetab *t, uint64_t dev, uint64_t ino) {
  th_idslot *s = id_find(t, dev, ino);
  return s ? s->val : NULL;
}

void th_filetab_del_id(th_filetab *t, uint64_t dev, uint64_t ino, const void *val) {
  th_idslot *s = id_find(t, dev, ino);
  if (s == NULL || (val && s->val != val)) return;
  size_t mask = t->idcap - 1, hole = (size_t)(s - t->ids);
  t->ids[hole].val = NULL;
  t->nids--;
  /* Backward shift: an entry further on moves into the hole unless its home
   * slot lies cyclically after the hole (then it is reachable already). */
  for (size_t j = (hole + 1) & mask; t->ids[j].val; j = (j + 1) & mask) {
    size_t home = id_slot(t->ids[j].dev, t->ids[j].ino, t->idcap);
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      t->ids[hole] = t->ids[j];
      t->ids[j].val = NULL;
      hole = j;
    }
  }
}

/* ---- paths ------------------------------------------------------------------- */

static int path_grow(th_filetab *t) {
  size_t cap = t->pathcap ? t->pathcap * 2 : MIN_CAP;
  th_pathslot *s = calloc(cap, sizeof *s);
  if (s == NULL) return -ENOMEM;
  for (size_t i = 0; i < t->pathcap; i++) {
    th_pathslot *o = &t->paths[i];
    if (o->val == NULL) continue;
    size_t j = (size_t)(o->hash & (cap - 1));
    while (s[j].val) j = (j + 1) & (cap - 1);
    s[j] = *o;
  }
  free(t->paths);
  t->paths = s;
  t->pathcap = cap;
  return 0;
}

static th_pathslot *path_find(const th_filetab *t, const char *path, uint64_t h) {
  if (t->pathcap == 0) return NULL;
  for (size_t j = (size_t)(h & (t->pathcap - 1));; j = (j + 1) & (t->pathcap - 1)) {
    th_pathslot *s = &t->paths[j];
    if (s->val == NULL) return NULL;
    if (s->hash == h && strcmp(s->path, path) == 0) return s;
  }
}

int th_filetab_put_path(th_filetab *t, const char *path, void *val) {
  uint64_t h = mix(th_fnv1a(path, strlen(path)));
  th_pathslot *s = path_find(t, path, h);
  if (s) {
    s->path = path;  /* the caller's current copy of the same string */
    s->val = val;
    return 0;
  }
  if ((t->npaths + 1) * 2 > t->pathcap && path_grow(t) < 0) return -ENOMEM;
  size_t j = (size_t)(h & (t->pathcap - 1));
  while (t->paths[j].val) j = (j + 1) & (t->pathcap - 1);
  t->paths[j] = (th_pathslot){path, h, val};
  t->npaths++;
  return 0;
}

void *th_filetab_get_path(const th_filetab *t, const char *path) {
  th_pathslot *s = path_find(t, path, mix(th_fnv1a(path, strlen(path))));
  return s ? s->val : NULL;
}

void th_filetab_del_path(th_filetab *t, const char *path, const void *val) {
  th_pathslot *s = path_find(t, path, mix(th_fnv1a(path, strlen(path))));
  if (s == NULL || (val && s->val != val)) return;
  size_t mask = t->pathcap - 1, hole = (size_t)(s - t->paths);
  t->paths[hole].val = NULL;
  t->npaths--;
  for (size_t j = (hole + 1) & mask; t->paths[j].val; j = (j + 1) & mask) {
    size_t home = (size_t)(t->paths[j].hash & mask);
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      t->paths[hole] = t->paths[j];
      t->paths[j].val = NULL;
      hole = j;
    }
  }
}
