/* discover.c: what each file found is to the tailer (see discover.h).
 *
 * Everything here costs O(1) per file looked at: tracked files and the
 * state's entries are found through hash tables (filetab.h), never by a
 * search of a list, so a folder of 100,000 files is a rescan of 100,000
 * cheap looks, spread over many loop turns.
 */
#include "discover.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "glob.h"
#include "log.h"
#include "scan.h"
#include "tfile.h"

static double now_s(const th_tail *t) { return (double)uv_now(t->loop) / 1000.0; }

static double wall_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mtime_s(const struct stat *st) {
  return (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9;
}

static int64_t mtime_ns(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- names ------------------------------------------------------------------ */

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* What logrotate's compress and its friends make. */
static int compressed_name(const char *name) {
  return ends_with(name, ".gz") || ends_with(name, ".bz2") || ends_with(name, ".xz") ||
         ends_with(name, ".zst") || ends_with(name, ".zip");
}

static int excluded(const th_tail *t, const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  for (int i = 0; i < t->o.nexcludes; i++)
    if (th_glob_match(t->o.excludes[i], path) || th_glob_match(t->o.excludes[i], base)) return 1;
  /* The state file, its temporary and its damaged copy are no logs. */
  if (t->o.state) {
    size_t n = strlen(t->o.state);
    if (strncmp(path, t->o.state, n) == 0 &&
        (path[n] == '\0' || strcmp(path + n, ".tmp") == 0 || strcmp(path + n, ".bad") == 0))
      return 1;
  }
  return 0;
}

static int matches(const th_tail *t, const char *path) {
  for (int i = 0; i < t->npatterns; i++)
    if (t->globs[i] && th_glob_match(t->globs[i], path)) return 1;
  return 0;
}

/* What a path is to this run. */
typedef struct th_class {
  int primary;        /* a PATH matches it */
  int rotname;        /* NAME[.-_]suffix where a PATH matches NAME */
  th_tfile *rot_of;   /* ... where NAME is a followed file that is not a document (longest NAME) */
  int rot_known;      /* ... where the state has an entry for NAME (followed before the start) */
  int compressed;     /* .gz .bz2 .xz .zst .zip */
} th_class;

/* Calls fn for each NAME with path = NAME[.-_]suffix (in the same
 * directory), shortest first, until fn returns non-zero. */
static void *each_prefix(const char *path, void *(*fn)(void *ud, const char *prefix), void *ud) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  size_t dirlen = (size_t)(base - path), blen = strlen(base);
  char prefix[PATH_MAX];
  if (dirlen + blen >= sizeof prefix) return NULL;
  memcpy(prefix, path, dirlen + blen + 1);
  for (size_t i = 1; i < blen; i++) {
    if (base[i] != '.' && base[i] != '-' && base[i] != '_') continue;
    prefix[dirlen + i] = '\0';
    void *r = fn(ud, prefix);
    prefix[dirlen + i] = base[i];
    if (r) return r;
  }
  return NULL;
}

typedef struct class_ctx {
  th_tail *t;
  th_class *c;
} class_ctx;

static void *class_prefix(void *ud, const char *prefix) {
  class_ctx *x = ud;
  th_tfile *g = th_filetab_get_path(&x->t->by, prefix);
  if (g && g->role == TF_FOLLOW && g->kind != TF_WHOLE) x->c->rot_of = g;
  th_known *k = th_filetab_get_path(&x->t->known_by, prefix);
  if (k && !(k->k.flags & TH_CKPT_DONE)) x->c->rot_known = 1;
  if (!x->c->primary && !x->c->rotname && matches(x->t, prefix)) x->c->rotname = 1;
  return NULL;
}

/* Returns 0 when the path is nothing to this run. */
static int classify(th_tail *t, const char *path, th_class *c) {
  memset(c, 0, sizeof *c);
  if (excluded(t, path)) return 0;
  c->primary = matches(t, path);
  class_ctx x = {t, c};
  each_prefix(path, class_prefix, &x);
  const char *base = strrchr(path, '/');
  c->compressed = compressed_name(base ? base + 1 : path);
  return c->primary || c->rotname || c->rot_of;
}

/* ---- the state's entries --------------------------------------------------- */

static void *relevant_prefix(void *ud, const char *prefix) {
  return matches(ud, prefix) ? ud : NULL;
}

int th_discover_known(th_tail *t) {
  for (size_t i = 0; i < t->nknown; i++) {
    th_known *k = &t->known[i];
    const char *p = k->k.path;
    /* Only entries of files this run's PATHs name (or rotations beside
     * them) are looked for; the others belong to other runs sharing the
     * state file, and are saved again as they are. */
    k->relevant = !excluded(t, p) && (matches(t, p) || each_prefix(p, relevant_prefix, t) != NULL);
    if (!k->relevant) continue;
    k->same_id = th_filetab_get_id(&t->known_by, k->k.dev, k->k.ino);
    k->same_path = th_filetab_get_path(&t->known_by, p);
    if (th_filetab_put_id(&t->known_by, k->k.dev, k->k.ino, k) < 0 ||
        th_filetab_put_path(&t->known_by, p, k) < 0)
      return -ENOMEM;
  }
  return 0;
}

/* The state's checkpoint of the file open at fd, if one still holds (the
 * newest when several do: the state lists the files followed before the
 * entries not matched yet). The other entries of its device and inode are
 * stale (older ones, or ones of bytes that inode no longer holds): never
 * matched again, and saved only while a candidate beside their path may be
 * a copy of what they held (th_discover_pending). *why (0 otherwise), when
 * none holds and the file is one the state read that changed while the host
 * was stopped: TH_CKPT_SHORTER or TH_CKPT_REWRITTEN for an entry of this
 * inode and first bytes, or, when own (path is followed as a PATH's file,
 * not as a rotation beside one), for an entry of this inode and this path
 * read past 0, whatever its first bytes now. An entry of this inode at
 * another path with other first bytes was another file whose inode was
 * reused: nothing to say. */
static th_known *match_known(th_tail *t, int fd, const struct stat *st, const char *path, int own,
                              int *why) {
  th_known *found = NULL, *changed = NULL;
  uint64_t size = (uint64_t)st->st_size;
  *why = 0;
  for (th_known *k = th_filetab_get_id(&t->known_by, (uint64_t)st->st_dev, (uint64_t)st->st_ino); k;
       k = k->same_id) {
    if (k->used || k->stale) continue;
    k->stale = 1;  /* but the one found */
    int r = th_ckpt_check(fd, size, &k->k);
    if (r == TH_CKPT_SAME) {
      if (found == NULL || k < found) found = k;
      continue;
    }
    if (r == TH_CKPT_OTHER) {
      if (!own || k->k.offset == 0 || strcmp(k->k.path, path) != 0) continue;
      r = size < k->k.offset ? TH_CKPT_SHORTER : TH_CKPT_REWRITTEN;  /* under its first bytes, or rewritten */
    }
    if (changed == NULL || k < changed) {
      changed = k;
      *why = r;
    }
  }
  if (found) {
    found->stale = 0;
    *why = 0;
    return found;
  }
  if (*why == TH_CKPT_SHORTER)
    th_log("%s: %llu bytes, shorter than the offset %llu the state has for it: truncated while stopped; "
           "reading it from the start", path, (unsigned long long)size,
           (unsigned long long)changed->k.offset);
  else if (*why == TH_CKPT_REWRITTEN)
    th_log("%s: the bytes before offset %llu are not those the state saw there (a new file on a reused "
           "inode, or rewritten while stopped); reading it from the start", path,
           (unsigned long long)changed->k.offset);
  return NULL;
}

static void *pending_prefix(void *ud, const char *prefix) {
  th_tail *t = ud;
  for (th_known *k = th_filetab_get_path(&t->known_by, prefix); k; k = k->same_path)
    if (k->stale) k->copy_pending = 1;
  return NULL;
}

void th_discover_pending(th_tail *t) {
  int any = 0;
  for (size_t i = 0; i < t->nknown; i++) {
    th_known *k = &t->known[i];
    if (!k->stale) continue;
    k->copy_pending = !t->started;
    any = 1;
  }
  if (!any || !t->started) return;
  for (th_tfile *f = t->cands; f; f = f->cand_next) each_prefix(f->path, pending_prefix, t);
}

typedef struct copy_ctx {
  th_tail *t;
  int fd;          /* the candidate */
  uint64_t size;
} copy_ctx;

/* A checkpoint of NAME, not matched to a file, whose bytes before its offset
 * the candidate holds (the newest, when several do): NAME was copied (and
 * truncated) while the host was stopped, and this is the copy. */
static void *copy_prefix(void *ud, const char *prefix) {
  copy_ctx *x = ud;
  th_known *found = NULL;
  for (th_known *k = th_filetab_get_path(&x->t->known_by, prefix); k; k = k->same_path)
    if (!k->used && !(k->k.flags & TH_CKPT_DONE) && k->k.back_len > 0 && x->size >= k->k.offset &&
        (found == NULL || k < found) && th_ckpt_check(x->fd, x->size, &k->k) == TH_CKPT_SAME)
      found = k;
  return found;
}

/* ---- following ----------------------------------------------------------------- */

/* The offset just after the last newline at or before size: --from-end
 * starts at a record boundary, never in the middle of a line. */
static uint64_t line_start_before(int fd, uint64_t size) {
  char b[4096];
  uint64_t end = size;
  while (end > 0) {
    uint64_t from = end > sizeof b ? end - sizeof b : 0;
    ssize_t n = pread(fd, b, (size_t)(end - from), (off_t)from);
    if (n <= 0) return size;
    for (ssize_t i = n - 1; i >= 0; i--)
      if (b[i] == '\n') return from + (uint64_t)i + 1;
    end = from;
  }
  return 0;
}

/* Changed since the state was written (or the host started): it may hold
 * lines no run has read. A second of slack: a kill -9 just after a save. */
static int recent(const th_tail *t, const struct stat *st) { return mtime_s(st) >= t->since - 1; }

/* Track a new file, open at fd, and follow it from start. keep: hold the
 * descriptor (else it is closed until the file has something to read). */
static th_tfile *follow_new(th_tail *t, const char *path, int fd, const struct stat *st, int role, int primary,
                            uint64_t start, int keep) {
  th_tfile *f = th_tfile_track(t, path, fd, st, role, primary);
  if (f == NULL) return NULL;
  if (th_tfile_follow(f, NULL, start, NULL) < 0) {
    th_log("%s: out of memory, not followed", path);
    th_tfile_forget(f);
    return NULL;
  }
  if (!keep) th_tfile_close_fd(f);
  if ((uint64_t)st->st_size > start) th_tfile_ready(f);
  th_tail_save_soon(t);  /* its first checkpoint, before a crash can lose where it started */
  return f;
}

static void candidate(th_tail *t, const char *path, int fd, const struct stat *st, const th_class *c);

/* A file the state knows, unchanged: on from its checkpoint. */
static void resume(th_tail *t, th_known *k, const char *path, int fd, const struct stat *st, const th_class *c) {
  k->used = 1;
  uint64_t at = k->k.offset;
  if (k->k.flags & TH_CKPT_CANDIDATE) {  /* not decided before the stop: decide it now */
    candidate(t, path, fd, st, c);
    return;
  }
  if (k->k.flags & TH_CKPT_DONE) {  /* a whole document read before: never again */
    th_tfile *f = th_tfile_track(t, path, fd, st, TF_FOLLOW, c->primary);
    if (f == NULL) return;
    th_commit done = {at, 0, 0, 1};
    if (th_tfile_follow(f, NULL, at, &done) < 0) {
      th_tfile_forget(f);
      return;
    }
    f->kind = TF_WHOLE;
    f->done = 1;
    th_stream_done(f->stream, at);
    th_tfile_close_fd(f);
    return;
  }
  if (strcmp(path, k->k.path) != 0)
    th_log("%s: rotated while stopped; reading it on from offset %llu", path, (unsigned long long)at);
  int keep = th_tfile_slot(t, NULL, (uint64_t)st->st_size > at);
  follow_new(t, path, fd, st, c->primary ? TF_FOLLOW : TF_ORPHAN, c->primary, at, keep);
}

/* A file a PATH matches that no run has read. */
static void new_primary(th_tail *t, const char *path, int fd, const struct stat *st) {
  uint64_t size = (uint64_t)st->st_size, start = 0;
  if (!t->started && t->o.from_end) {
    start = line_start_before(fd, size);
  } else if (t->o.ignore_older_s > 0 && wall_s() - mtime_s(st) > t->o.ignore_older_s) {
    close(fd);
    return;
  }
  int keep = th_tfile_slot(t, NULL, size > start);
  if (!keep && size == 0) {  /* nothing to read, no descriptor to spare: looked at again once it grows */
    close(fd);
    return;
  }
  follow_new(t, path, fd, st, TF_FOLLOW, 1, start, keep);
}

static void candidate(th_tail *t, const char *path, int fd, const struct stat *st, const th_class *c) {
  int keep = th_tfile_slot(t, NULL, 0);
  th_tfile *f = th_tfile_track(t, path, fd, st, TF_CANDIDATE, c->primary);
  if (f && !keep) th_tfile_close_fd(f);
}

/* A candidate is read, into stream (a held generation's) or a new one. */
static void become(th_tail *t, th_tfile *f, th_stream *stream, uint64_t start) {
  th_tfile_uncandidate(f);
  f->role = f->primary ? TF_FOLLOW : TF_ORPHAN;
  f->last_growth = now_s(t);
  if (th_tfile_follow(f, stream, start, NULL) < 0) {
    th_log("%s: out of memory, not followed", f->path);
    f->role = TF_GONE;
    th_tfile_forget(f);
    return;
  }
  th_tfile_ready(f);
  th_tail_save_soon(t);
}

/* A candidate that holds nothing unread: remembered at its end, never read. */
static void tombstone(th_tail *t, th_tfile *f, int fd, uint64_t size) {
  th_tfile_uncandidate(f);
  uint32_t n = size < TH_BACK_MAX ? (uint32_t)size : TH_BACK_MAX;
  uint64_t h = th_tfile_hash_before(fd, size, n);
  f->role = TF_GONE;
  f->offset = size;
  f->base = (th_commit){size, h == UINT64_MAX ? 0 : n, h == UINT64_MAX ? 0 : h, 0};
  th_tfile_close_fd(f);
  th_tail_save_soon(t);
}

typedef struct follow_ctx {
  th_tail *t;
  th_tfile *self;  /* the candidate */
  int fd;          /* open on it */
  uint64_t size;
} follow_ctx;

static void *followed_prefix(void *ud, const char *prefix) {
  follow_ctx *x = ud;
  th_tfile *g = th_filetab_get_path(&x->t->by, prefix);
  if (g == NULL || g == x->self || g->role != TF_FOLLOW || g->kind != TF_LINES || g->fp_len == 0 ||
      g->fp_len > x->size || !th_fingerprint_matches(x->fd, g->fp_len, g->fp))
    return NULL;
  return g;
}

/* Did a line of the generation whose line ends are e end at size, with the
 * bytes fd holds before it? */
static int ended_there(const th_ends *e, int fd, uint64_t size) {
  if (e == NULL) return 0;
  for (uint32_t i = 0; i < e->n; i++)
    if (e->at[i] == size) {
      uint32_t w = size < TH_BACK_MAX ? (uint32_t)size : TH_BACK_MAX;
      return th_tfile_hash_before(fd, size, w) == e->hash[i];
    }
  return 0;
}

/* A candidate's size has held still: what is it? */
static void decide(th_tail *t, th_tfile *f, uint64_t size) {
  int fd = f->fd, temp = fd < 0;  /* temp: opened here, closed here */
  if (temp) {
    struct stat st;
    fd = open(f->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_ino != f->ino || (uint64_t)st.st_dev != f->dev) {
      if (fd >= 0) close(fd);
      th_tfile_forget(f);
      return;
    }
  }
  /* 1. The copy of a generation whose truncation was seen: it holds the same
   *    bytes before where that generation was read to. */
  for (int i = 0; i < TH_HELD_MAX; i++) {
    th_held *g = &t->held[i];
    if (g->stream == NULL || size < g->at || !th_fingerprint_matches(fd, g->fp_len, g->fp) ||
        th_tfile_hash_before(fd, g->at, g->back_len) != g->back_hash)
      continue;
    th_log("%s: the copy of %s before its truncation; reading it on from offset %llu", f->path, g->path,
           (unsigned long long)g->start);
    th_stream *s = g->stream;
    uint64_t start = g->start;
    g->stream = NULL;
    free(g->path);
    g->path = NULL;
    free(g->ends);
    g->ends = NULL;
    if (temp) close(fd);
    become(t, f, s, start);
    return;
  }
  /* 2. The copy of a file copied and truncated while the host was stopped. */
  copy_ctx cx = {t, fd, size};
  th_known *k = each_prefix(f->path, copy_prefix, &cx);
  if (k) {
    k->used = 1;
    th_log("%s: a copy of %s made while stopped; reading it on from offset %llu", f->path, k->k.path,
           (unsigned long long)k->k.offset);
    if (temp) close(fd);
    become(t, f, NULL, k->k.offset);
    return;
  }
  /* 3. A copy of a file still followed, whose truncation is not seen yet:
   *    it holds the bytes the file had before its read offset, and what it
   *    holds beyond is read from the file itself, or from here once the
   *    truncation is seen: wait. Or it ends there: all of it is read
   *    already. Both are judged by the bytes as they were read, never by
   *    what the file holds now: while the dispatcher holds the reads back,
   *    the file may already be truncated and hold the next generation.
   *    (The first bytes alone prove nothing: NDJSON lines often start
   *    alike, and a file is seen with a few bytes of its first line.) */
  follow_ctx fx = {t, f, fd, size};
  th_tfile *g = each_prefix(f->path, followed_prefix, &fx);
  if (g && size >= g->offset && g->back_len > 0 &&
      th_tfile_hash_before(fd, g->offset, g->back_len) == g->back_hash) {
    if (size == g->offset) tombstone(t, f, fd, size);
    if (temp) close(fd);
    return;
  }
  /*    No longer than what was read, it is compared with the bytes the file
   *    has there, as long as the file still holds what was read: else the
   *    truncation happened but is not seen yet (another generation is there
   *    now), and once it is, the copy is judged against the generation held
   *    (1 and 4). */
  if (g && size <= g->offset && g->fd >= 0) {
    if (g->back_len > 0 && th_tfile_hash_before(g->fd, g->offset, g->back_len) != g->back_hash) {
      th_tfile_ready(g);  /* its next read sees the truncation */
      if (temp) close(fd);
      return;
    }
    uint32_t n = size < TH_BACK_MAX ? (uint32_t)size : TH_BACK_MAX;
    if (th_tfile_hash_before(fd, size, n) == th_tfile_hash_before(g->fd, size, n)) {
      tombstone(t, f, fd, size);
      if (temp) close(fd);
      return;
    }
  }
  /* 4. An old copy of a truncated generation, shorter than what was read of
   *    it: nothing new. It must end where a line of it ended, with the same
   *    bytes before: the next generation's copy starts alike and can be as
   *    long, or be caught while written. */
  for (int i = 0; i < TH_HELD_MAX; i++) {
    th_held *h = &t->held[i];
    if (h->stream && size < h->at && h->fp_len > 0 && th_fingerprint_matches(fd, h->fp_len, h->fp) &&
        ended_there(h->ends, fd, size)) {
      tombstone(t, f, fd, size);
      if (temp) close(fd);
      return;
    }
  }
  /* 5. Lines no run has read. */
  if (temp) close(fd);
  become(t, f, NULL, 0);
}

void th_discover_poll(th_tail *t) {
  if (!t->started) return;  /* the originals are all tracked first */
  double now = now_s(t);
  th_tfile *next;
  for (th_tfile *f = t->cands; f; f = next) {
    next = f->cand_next;
    struct stat st;
    int there = f->fd >= 0 ? fstat(f->fd, &st) == 0
                           : stat(f->path, &st) == 0 && (uint64_t)st.st_ino == f->ino &&
                                 (uint64_t)st.st_dev == f->dev;
    if (!there) {
      th_tfile_forget(f);
      continue;
    }
    if ((uint64_t)st.st_size != f->last_size || mtime_ns(&st) != f->last_mtime) {
      f->last_size = (uint64_t)st.st_size;
      f->last_mtime = mtime_ns(&st);
      f->last_change = now;
    } else if (now - f->last_change >= t->o.poll_ms / 1000.0) {
      decide(t, f, (uint64_t)st.st_size);
    }
  }
}

/* A tracked file found at path. */
static void seen(th_tail *t, th_tfile *f, const char *path, const struct stat *st, const th_class *c) {
  f->seen = t->pass;
  if (!f->indexed || strcmp(f->path, path) != 0) {  /* renamed */
    if (th_tfile_move(f, path) < 0) return;
    f->primary = c->primary;
    if (f->role == TF_FOLLOW && !c->primary) {
      f->role = TF_ORPHAN;  /* renamed to a rotation's name: read to its end */
      f->last_growth = now_s(t);
    } else if (f->role == TF_ORPHAN && c->primary) {
      f->role = TF_FOLLOW;
    } else if (f->role == TF_CANDIDATE && c->primary && !c->rot_of) {
      become(t, f, NULL, 0);  /* a temporary name (aws s3 sync's) renamed into place */
      return;
    }
  }
  uint64_t size = (uint64_t)st->st_size;
  if (f->role == TF_CANDIDATE) {
    if (size != f->last_size || mtime_ns(st) != f->last_mtime) {
      f->last_size = size;
      f->last_mtime = mtime_ns(st);
      f->last_change = now_s(t);
    }
    return;
  }
  if (f->role == TF_GONE) {
    if (f->kind == TF_WHOLE || f->done || size <= f->offset) return;
    /* It grew after it was closed (a writer still at it): read on. */
    f->role = c->primary ? TF_FOLLOW : TF_ORPHAN;
    f->last_growth = now_s(t);
    if (th_tfile_follow(f, f->stream, f->offset, &f->base) < 0) {
      f->role = TF_GONE;
      return;
    }
  }
  if (size != f->offset && !f->done) th_tfile_ready(f);
}

/* Is the closed file f still the one at path (its inode not freed and reused)? */
static int same_content(const th_tfile *f, const char *path) {
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return 0;
  int same = th_fingerprint_matches(fd, f->fp_len, f->fp);
  close(fd);
  return same;
}

/* A regular file at path that c says matters. */
static void consider(th_tail *t, const char *path, const struct stat *st, const th_class *c) {
  th_tfile *f = th_filetab_get_id(&t->by, (uint64_t)st->st_dev, (uint64_t)st->st_ino);
  if (f && f->role == TF_GONE && f->fd < 0 && !same_content(f, path)) {
    th_tfile_forget(f);  /* its inode now holds a new file */
    f = NULL;
  }
  if (f) {
    seen(t, f, path, st, c);
    return;
  }
  /* logrotate's compress: lines read already (NAME may not be tracked yet
   * during the first rescan, but the state knows it) */
  if (c->compressed && (c->rot_of || c->rot_known || !c->primary)) return;
  /* An empty new file with no descriptor to spare is looked at again once it
   * grows: a rescan of a folder flooded with them opens none. */
  if (st->st_size == 0 && c->primary && !c->rot_of && !th_tfile_slot(t, NULL, 0) &&
      !th_filetab_get_id(&t->known_by, (uint64_t)st->st_dev, (uint64_t)st->st_ino))
    return;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  struct stat fst;
  if (fstat(fd, &fst) < 0 || fst.st_dev != st->st_dev || fst.st_ino != st->st_ino) {
    close(fd);  /* replaced since the stat: the event for the new one comes */
    return;
  }
  int why;
  th_known *k = match_known(t, fd, &fst, path, c->primary && !c->rot_of, &why);
  if (k) {
    resume(t, k, path, fd, &fst, c);
  } else if (why) {  /* the state knew it, and it changed while the host was stopped */
    int keep = th_tfile_slot(t, NULL, fst.st_size > 0);
    follow_new(t, path, fd, &fst, c->primary ? TF_FOLLOW : TF_ORPHAN, c->primary, 0, keep);
  } else if (c->primary && !(c->rot_of && recent(t, &fst))) {
    new_primary(t, path, fd, &fst);
  } else if (recent(t, &fst)) {
    candidate(t, path, fd, &fst, c);
  } else {
    close(fd);  /* a rotation from before: read already, or history */
  }
}

/* ---- where files are found ---------------------------------------------------- */

void th_discover_look(th_tail *t, const char *path) {
  struct stat st;
  th_tfile *at = th_filetab_get_path(&t->by, path);
  if (stat(path, &st) < 0) {
    if (at) th_tfile_left(at);  /* renamed away or deleted: read to its end */
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    if (th_scan_may_contain(t, path)) th_scan_dir(t, path);
    return;
  }
  if (!S_ISREG(st.st_mode)) return;
  if (at && (at->dev != (uint64_t)st.st_dev || at->ino != (uint64_t)st.st_ino)) th_tfile_left(at);
  th_class c;
  if (classify(t, path, &c)) consider(t, path, &st, &c);
  for (int i = 0; i < t->npatterns; i++) {
    if (t->missing[i] == NULL || strcmp(t->patterns[i], path) != 0) continue;
    th_log("%s: now there, following it", path);
    t->missing[i] = NULL;
    t->files_failed--;
  }
}

void th_discover_entry(th_tail *t, const char *path) {
  th_class c;
  if (!classify(t, path, &c)) return;  /* before the stat: most names are nothing to us */
  struct stat st;
  if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) return;
  th_tfile *at = th_filetab_get_path(&t->by, path);
  if (at && (at->dev != (uint64_t)st.st_dev || at->ino != (uint64_t)st.st_ino)) th_tfile_left(at);
  consider(t, path, &st, &c);
}

/* Every tracked file the full pass did not find where it was. */
void th_discover_sweep(th_tail *t) {
  th_tfile *next;
  for (th_tfile *f = t->files; f; f = next) {
    next = f->next;
    if (f->seen == t->pass) continue;
    switch (f->role) {
      case TF_FOLLOW:
        if (f->fd >= 0) th_tfile_left(f);  /* read to its end through its descriptor */
        else th_tfile_forget(f);
        break;
      case TF_ORPHAN:
        if (f->fd < 0) th_tfile_forget(f);
        break;
      default:  /* candidates gone, and closed files no longer there */
        th_tfile_forget(f);
        break;
    }
  }
  /* The state's entries no file matched in two passes name nothing left. */
  if (t->passes_done == 1)
    for (size_t i = 0; i < t->nknown; i++)
      if (t->known[i].relevant) t->known[i].used = 1;
}

void th_discover_free(th_tail *t) { th_filetab_free(&t->known_by); }
