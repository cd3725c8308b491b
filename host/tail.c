/* tail.c: following files through rotation and restarts (see tail.h).
 *
 * All reads are synchronous preads on the loop thread, at most a fixed
 * budget per file per turn, so one busy file cannot starve the others or hold
 * up a signal. Events only say "look again"; the state in th_tfile says where.
 */
#include "tail.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "glob.h"
#include "log.h"
#include "source.h"

enum { TF_UNDECIDED, TF_LINES, TF_WHOLE };
enum { READ_CHUNK = 1 << 20, TURN_BUDGET = 4 << 20 };

static void pump(th_tfile *f, uint64_t limit);
static void scan(th_tail *t);
static void keep_back(th_tfile *f, const char *data, size_t n);
static int still_holds_back(const th_tfile *f, int fd, uint64_t at);

static double now_s(const th_tail *t) {
  return (double)uv_now(t->loop) / 1000.0;
}

static int64_t mtime_ns(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ---- descriptors and watches ---------------------------------------------- */

static void on_change(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)name;
  (void)events;
  th_tfile *f = h->data;
  if (status < 0 || f->tail->stopping) return;  /* the periodic check covers us */
  pump(f, UINT64_MAX);
  th_output_flush(f->tail->o.out);
}

static void close_fd(th_tfile *f) {
  if (f->watching) uv_fs_event_stop(&f->watch);
  f->watching = 0;
  if (f->fd >= 0) {
    close(f->fd);
    f->tail->nopen--;
  }
  f->fd = -1;
}

/* Close the open file that has been idle longest (read to its end), to make
 * room under max_open. Returns 0 if one was closed. */
static int close_idle(th_tail *t, th_tfile *except) {
  th_tfile *best = NULL;
  for (th_tfile *f = t->files; f; f = f->next) {
    if (f == except || f->fd < 0 || f->orphan || f->kind == TF_UNDECIDED) continue;
    struct stat st;
    if (fstat(f->fd, &st) < 0 || (uint64_t)st.st_size > f->offset) continue;  /* has more */
    if (best == NULL || f->last_growth < best->last_growth) best = f;
  }
  if (best == NULL) return -1;
  close_fd(best);
  return 0;
}

/* Open f at its path, if it is still the file f tracks. */
static int open_fd(th_tfile *f) {
  th_tail *t = f->tail;
  if (t->o.max_open && t->nopen >= t->o.max_open && close_idle(t, f) < 0) {
    f->waiting = 1;
    return -1;
  }
  /* O_NONBLOCK: opening a FIFO must not block the loop. */
  int fd = open(f->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_dev != f->dev ||
      (uint64_t)st.st_ino != f->ino) {
    if (fd >= 0) close(fd);
    return -1;
  }
  f->fd = fd;
  f->waiting = 0;
  t->nopen++;
  if (uv_fs_event_start(&f->watch, on_change, f->path, 0) == 0) f->watching = 1;
  return 0;
}

/* ---- kinds of files ----------------------------------------------------------- */

/* From the first bytes: gzip, or JSON starting {"Records" or [, is a whole
 * document; anything else with a newline or enough bytes is NDJSON. */
static int decide(th_tfile *f) {
  unsigned char b[64];
  ssize_t n = pread(f->fd, b, sizeof b, 0);
  if (n <= 0) return TF_UNDECIDED;
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) return TF_WHOLE;
  ssize_t i = n >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF ? 3 : 0;
  while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n')) i++;
  if (i < n && b[i] == '[') return TF_WHOLE;
  if (i < n && b[i] == '{') {
    ssize_t j = i + 1;
    while (j < n && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r' || b[j] == '\n')) j++;
    if (n - j >= 9) return memcmp(b + j, "\"Records\"", 9) == 0 ? TF_WHOLE : TF_LINES;
    return memchr(b, '\n', (size_t)n) && j < n && b[j] != '"' ? TF_LINES : TF_UNDECIDED;
  }
  return i < n ? TF_LINES : TF_UNDECIDED;
}

/* Read a whole document from its descriptor, once. An incomplete one (a
 * gzip stream cut short, JSON not closed) is left for later unless force:
 * it may still be being written. Returns 0, or -EAGAIN to wait. */
static int read_whole(th_tfile *f, int force) {
  th_tail *t = f->tail;
  int fd = dup(f->fd);  /* shares the file offset: start from 0 */
  if (fd >= 0 && lseek(fd, 0, SEEK_SET) < 0) {
    close(fd);
    fd = -1;
  }
  gzFile gz = fd >= 0 ? gzdopen(fd, "rb") : NULL;
  if (gz == NULL) {
    if (fd >= 0) close(fd);
    th_log("read %s: %s", f->path, strerror(errno ? errno : ENOMEM));
    return 0;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  int n;
  while (buf && (n = gzread(gz, buf + len, (unsigned)(cap - len))) > 0) {
    len += (size_t)n;
    if (len == cap) {
      char *p = cap < TH_MAX_DOCUMENT ? realloc(buf, cap * 2) : NULL;
      if (p == NULL) {
        th_log("read %s: larger than %zu bytes or out of memory, skipped", f->path, cap);
        free(buf);
        buf = NULL;
        break;
      }
      buf = p;
      cap *= 2;
    }
  }
  int zerr = Z_OK;
  gzerror(gz, &zerr);
  gzclose(gz);
  size_t end = len;
  while (end > 0 && (buf[end - 1] == ' ' || buf[end - 1] == '\n' || buf[end - 1] == '\r' ||
                     buf[end - 1] == '\t'))
    end--;
  int incomplete = zerr != Z_OK || end == 0 || (buf && buf[end - 1] != '}' && buf[end - 1] != ']');
  if (buf && incomplete && !force) {
    free(buf);
    return -EAGAIN;
  }
  if (buf && zerr != Z_OK)
    th_log("read %s: %s after %zu bytes of content; reading what came before", f->path,
           zerr == Z_BUF_ERROR ? "truncated gzip (unexpected end of input)" : "damaged gzip", len);
  if (buf) {
    th_source s = {f->stream, t->o.max_line};
    th_source_feed(&s, buf, len, f->last_size);
    th_stream_flush(f->stream);
    free(buf);
  }
  f->done = 1;
  f->offset = f->last_size;
  th_framer_reset(&f->framer, f->offset);
  return 0;
}

/* ---- reading --------------------------------------------------------------- */

/* Read up to budget bytes (and not past limit); returns bytes read. */
static uint64_t drain(th_tfile *f, uint64_t budget, uint64_t limit) {
  th_tail *t = f->tail;
  th_source s = {f->stream, t->o.max_line};
  uint64_t total = 0;
  while (total < budget && f->offset < limit && !t->o.out->error && !th_dispatch_busy(t->o.dispatch)) {
    /* Between two reads the file may have been truncated and written again
     * past the offset: stop, the next turn starts it over. */
    if (total > 0 && !still_holds_back(f, f->fd, f->offset)) break;
    size_t want = READ_CHUNK;
    if (limit - f->offset < want) want = (size_t)(limit - f->offset);
    ssize_t n = pread(f->fd, t->buf, want, (off_t)f->offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      th_log("read %s: %s at offset %llu", f->path, strerror(errno), (unsigned long long)f->offset);
      break;
    }
    if (n == 0) break;
    /* The offset moves only once the framer holds the bytes. */
    if (th_framer_feed(&f->framer, t->buf, (size_t)n, th_source_line, &s) < 0) {
      th_log("read %s: out of memory at offset %llu", f->path, (unsigned long long)f->offset);
      break;
    }
    keep_back(f, t->buf, (size_t)n);
    f->offset += (uint64_t)n;
    total += (uint64_t)n;
  }
  th_stream_flush(f->stream);
  if (total) f->last_growth = now_s(t);
  if (total >= budget) t->busy = 1;
  return total;
}

/* The last bytes read are kept as they were read, and checked on every turn:
 * a file truncated and written past the offset again between two looks
 * (copytruncate under load) holds other bytes there, even when its first
 * bytes look the same. Kept from the read buffer, not read again: a fast
 * writer may have rewritten the file by then. */
static void keep_back(th_tfile *f, const char *data, size_t n) {
  size_t cap = sizeof f->back;
  if (n >= cap) {
    memcpy(f->back, data + n - cap, cap);
    f->back_len = (uint32_t)cap;
    return;
  }
  size_t keep = f->back_len + n > cap ? cap - n : f->back_len;
  memmove(f->back, f->back + f->back_len - keep, keep);
  memcpy(f->back + keep, data, n);
  f->back_len = (uint32_t)(keep + n);
}

static int still_holds_back(const th_tfile *f, int fd, uint64_t at) {
  char buf[sizeof f->back];
  if (at < f->back_len) return 0;
  ssize_t r = pread(fd, buf, f->back_len, (off_t)(at - f->back_len));
  return r == (ssize_t)f->back_len && memcmp(buf, f->back, f->back_len) == 0;
}

/* Has the content changed under the same inode? */
static int rewritten(th_tfile *f, const struct stat *st) {
  if ((uint64_t)st->st_size < f->offset) return 1;
  if (f->fp_len > 0 && !th_fingerprint_matches(f->fd, f->fp_len, f->fp)) return 1;
  return f->back_len > 0 && !still_holds_back(f, f->fd, f->offset);
}

static void refresh_fingerprint(th_tfile *f) {
  if (f->fp_len < TH_FP_MAX) th_fingerprint(f->fd, &f->fp_len, &f->fp);
}

/* One turn for one file: read what is new, up to limit (the size at a stop). */
static void pump(th_tfile *f, uint64_t limit) {
  th_tail *t = f->tail;
  if (f->gone || f->done) return;
  if (f->fd < 0) {
    if (f->orphan) return;
    struct stat st;
    if (stat(f->path, &st) < 0 || (uint64_t)st.st_ino != f->ino) return;
    if (!f->waiting && (uint64_t)st.st_size <= f->offset && f->kind != TF_UNDECIDED) return;
    if (open_fd(f) < 0) return;
  }
  struct stat st;
  if (fstat(f->fd, &st) < 0) return;
  if (st.st_nlink == 0 && !f->orphan) f->orphan = 1;  /* deleted: read to its end */
  if (f->kind == TF_UNDECIDED) f->kind = decide(f);
  if (f->kind == TF_UNDECIDED) return;

  if (f->kind == TF_WHOLE) {
    /* Read once its size and time have held still for one check and it is
     * complete; an incomplete one after rotate_wait of stillness, as it is. */
    double now = now_s(t);
    if ((uint64_t)st.st_size != f->last_size || mtime_ns(&st) != f->last_mtime) {
      f->last_size = (uint64_t)st.st_size;
      f->last_mtime = mtime_ns(&st);
      f->last_change = now;
    } else if (st.st_size > 0 && now - f->last_change >= t->o.poll_ms / 1000.0) {
      read_whole(f, now - f->last_change >= t->o.rotate_wait_s);
    }
    if (f->done) close_fd(f);
    return;
  }

  if (rewritten(f, &st)) {
    if (f->back_len > 0) {  /* its copy, if one was made, is read on from here */
      unsigned i = t->ncopies++ % 64;
      t->copies[i].at = f->offset;
      t->copies[i].back_len = f->back_len;
      t->copies[i].back_fp = th_fnv1a(f->back, f->back_len);
      t->copies[i].start = th_framer_done(&f->framer);
    }
    th_log("%s: %s; reading it again from the start", f->path,
           (uint64_t)st.st_size < f->offset ? "truncated" : "rewritten (its first bytes changed)");
    f->offset = 0;
    f->fp_len = 0;
    f->back_len = 0;
    th_framer_reset(&f->framer, 0);
    th_stream_reset(f->stream, 0);
  }
  drain(f, TURN_BUDGET, limit);
  refresh_fingerprint(f);

  if (f->orphan && !t->busy && now_s(t) - f->last_growth >= t->o.rotate_wait_s) {
    /* Nothing more will come: a held partial line is processed as it is. */
    th_source s = {f->stream, t->o.max_line};
    th_framer_finish(&f->framer, th_source_line, &s);
    th_stream_flush(f->stream);
    close_fd(f);
    f->gone = 1;
  }
}

/* ---- finding files ----------------------------------------------------------- */

static int excluded(const th_tail *t, const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  for (int i = 0; i < t->o.nexcludes; i++)
    if (th_glob_match(t->o.excludes[i], path) || th_glob_match(t->o.excludes[i], base)) return 1;
  return 0;
}

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

static th_tfile *track(th_tail *t, const char *path, int fd, const struct stat *st) {
  th_tfile *f = calloc(1, sizeof *f);
  if (f == NULL || (f->path = strdup(path)) == NULL) {
    free(f);
    close(fd);
    th_log("%s: out of memory, not followed", path);
    return NULL;
  }
  f->tail = t;
  f->fd = fd;
  f->dev = (uint64_t)st->st_dev;
  f->ino = (uint64_t)st->st_ino;
  f->last_growth = now_s(t);
  th_fingerprint(fd, &f->fp_len, &f->fp);
  uv_fs_event_init(t->loop, &f->watch);
  f->watch.data = f;
  t->nopen++;
  th_tfile **tail = &t->files;
  while (*tail) tail = &(*tail)->next;
  *tail = f;  /* in discovery order: waiting files get their turn in order */
  t->files_seen++;
  return f;
}

/* Take over a checkpoint of this file, if the state has one. */
static const th_ckpt *known(th_tail *t, int fd, const struct stat *st) {
  for (size_t i = 0; i < t->nknown; i++) {
    th_ckpt *k = &t->known[i];
    if (k->path && k->dev == (uint64_t)st->st_dev && k->ino == (uint64_t)st->st_ino &&
        th_fingerprint_matches(fd, k->fp_len, k->fp))
      return k;
  }
  return NULL;
}

/* A regular file that matches a PATH (or, rotated, was at one): follow it,
 * or note its new name. */
static void consider_file(th_tail *t, const char *path, const struct stat *st, int rotated,
                          uint64_t start_at) {
  if (excluded(t, path)) return;
  for (th_tfile *f = t->files; f; f = f->next) {
    if (f->dev != (uint64_t)st->st_dev || f->ino != (uint64_t)st->st_ino) continue;
    if (f->fd < 0) {
      /* Closed: the inode may have been freed and reused by a new file. */
      int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      int same = fd >= 0 && th_fingerprint_matches(fd, f->fp_len, f->fp);
      if (fd >= 0) close(fd);
      if (!same) {
        f->gone = 1;
        f->dev = f->ino = 0;  /* never matched again */
        break;
      }
    }
    if (strcmp(f->path, path) != 0) {
      char *p = strdup(path);  /* renamed, and still (or again) at a watched path */
      if (p == NULL || th_stream_rename(f->stream, path) < 0) {
        free(p);
        return;
      }
      free(f->path);
      f->path = p;
    }
    if (!rotated) f->orphan = 0;
    if (f->fd < 0 && !f->done && !rotated) f->gone = 0;
    return;
  }
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  if (t->o.max_open && t->nopen >= t->o.max_open) close_idle(t, NULL);  /* else it waits, below */
  const th_ckpt *k = known(t, fd, st);
  uint64_t start = 0;
  int done = 0;
  if (k) {
    start = k->offset;
    done = (k->flags & TH_CKPT_DONE) != 0;
    free(((th_ckpt *)k)->path);
    ((th_ckpt *)k)->path = NULL;  /* matched */
  } else if (start_at != UINT64_MAX) {
    start = start_at;
  } else if (!t->started && t->o.from_end) {
    start = line_start_before(fd, (uint64_t)st->st_size);
  } else if (t->o.ignore_older_s > 0 &&
             (double)time(NULL) - (double)st->st_mtim.tv_sec > t->o.ignore_older_s) {
    close(fd);
    return;
  }
  th_tfile *f = track(t, path, fd, st);
  if (f == NULL) return;
  f->orphan = rotated;
  f->offset = start;
  f->done = done;
  if (done) f->kind = TF_WHOLE;
  th_framer_init(&f->framer, t->o.max_line, start);
  if ((f->stream = th_stream_open(t->o.dispatch, path, start)) == NULL) {
    th_log("%s: out of memory, not followed", path);
    close_fd(f);
    f->gone = 1;
    return;
  }
  if (done) th_stream_done(f->stream, start);
  if (t->o.max_open && t->nopen > t->o.max_open) {
    close_fd(f);
    f->waiting = 1;
  } else if (uv_fs_event_start(&f->watch, on_change, f->path, 0) == 0) {
    f->watching = 1;
  }
  if (done) close_fd(f);
}

static void consider(void *ud, const char *path, const struct stat *st) {
  consider_file(ud, path, st, 0, UINT64_MAX);
}

/* A writer can create a file at a watched path and rename it away (rotate)
 * between two looks. Files beside a watched file named like its rotations
 * (NAME.1, NAME-20250101, NAME_old) that changed since the host started hold
 * lines written while it ran: they are drained like any rotated file. Known
 * ones are matched by identity, so nothing is read twice. */
typedef struct sibling_ctx {
  th_tail *t;
  const char *name;  /* the watched file's name */
} sibling_ctx;

static void sibling_cb(void *ud, const char *path, const struct stat *st) {
  sibling_ctx *c = ud;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(c->name);
  if (strncmp(base, c->name, n) != 0 || !strchr(".-_", base[n]) || base[n] == '\0') return;
  if ((double)st->st_mtim.tv_sec + 1 < c->t->start_wall) return;  /* rotated before we started */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return;
  /* A copy of a file still followed (copytruncate under way) holds the bytes
   * the file has before its read offset: take it later, once the truncation
   * is seen and the offset reached in the original is known. */
  int pending = 0;
  for (th_tfile *f = c->t->files; f && !pending; f = f->next)
    pending = f->fd >= 0 && !f->orphan && f->back_len > 0 && (uint64_t)st->st_ino != f->ino &&
              still_holds_back(f, fd, f->offset);
  uint64_t start = UINT64_MAX;  /* content never seen: all of it */
  unsigned ncopies = c->t->ncopies < 64 ? c->t->ncopies : 64;
  for (unsigned i = 0; i < ncopies && start == UINT64_MAX && !pending; i++)
    if ((uint64_t)st->st_size >= c->t->copies[i].at &&
        th_fingerprint_at(fd, c->t->copies[i].at - c->t->copies[i].back_len, c->t->copies[i].back_len) ==
            c->t->copies[i].back_fp)
      start = c->t->copies[i].start;
  close(fd);
  if (!pending) consider_file(c->t, path, st, 1, start == UINT64_MAX ? 0 : start);
}

static void scan_siblings(th_tail *t, const char *p) {
  char copy[PATH_MAX], copy2[PATH_MAX];
  snprintf(copy, sizeof copy, "%s", p);
  snprintf(copy2, sizeof copy2, "%s", p);
  sibling_ctx c = {t, basename(copy)};
  char pattern[PATH_MAX + 2];
  snprintf(pattern, sizeof pattern, "%s/*", dirname(copy2));
  th_glob_walk(pattern, sibling_cb, &c);
}

/* A checkpointed file not found at any watched path may have been rotated
 * while the host was down: look for it beside its old name, by identity. */
typedef struct rotated_ctx {
  th_tail *t;
  th_ckpt *k;
} rotated_ctx;

static void rotated_cb(void *ud, const char *path, const struct stat *st) {
  rotated_ctx *c = ud;
  if (c->k->path == NULL || (uint64_t)st->st_dev != c->k->dev || (uint64_t)st->st_ino != c->k->ino)
    return;
  uint64_t offset = c->k->offset;
  consider_file(c->t, path, st, 1, UINT64_MAX);  /* matches the checkpoint by identity */
  for (th_tfile *f = c->t->files; f; f = f->next) {
    if (f->ino == (uint64_t)st->st_ino && f->dev == (uint64_t)st->st_dev && strcmp(f->path, path) == 0) {
      f->orphan = 1;  /* not at a watched path: drain it, then close it */
      th_log("%s: rotated while stopped; reading it on from offset %llu", path, (unsigned long long)offset);
    }
  }
}

static void find_rotated(th_tail *t) {
  for (size_t i = 0; i < t->nknown; i++) {
    th_ckpt *k = &t->known[i];
    if (k->path == NULL || (k->flags & TH_CKPT_DONE)) continue;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", k->path);
    char pattern[PATH_MAX + 2];
    snprintf(pattern, sizeof pattern, "%s/*", dirname(dir));
    rotated_ctx c = {t, k};
    th_glob_walk(pattern, rotated_cb, &c);
  }
}

/* Every PATH, every file it names now. */
static void scan(th_tail *t) {
  for (int i = 0; i < t->npatterns; i++) {
    const char *p = t->patterns[i];
    struct stat st;
    int found;
    if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
      consider(t, p, &st);
      if (t->started) scan_siblings(t, p);
      found = 1;
    } else if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
      char pattern[PATH_MAX + 2];
      snprintf(pattern, sizeof pattern, "%s/*", p);
      th_glob_walk(pattern, consider, t);
      found = 1;
    } else if (th_glob_magic(p)) {
      th_glob_walk(p, consider, t);
      found = 1;
    } else {
      found = 0;
      if (!t->missing[i])
        th_log("open %s: %s (will keep checking for it)", p,
               errno == 0 || stat(p, &st) == 0 ? "not a regular file" : strerror(errno));
    }
    if (found && t->missing[i]) th_log("%s: now there, following it", p);
    if (!found && !t->missing[i]) t->files_failed++;
    if (found && t->missing[i]) t->files_failed--;
    t->missing[i] = (char *)(found ? NULL : p);
  }

  /* Files no longer at the path they were followed under were renamed away
   * (rotation) or deleted: drain them, then close them. */
  for (th_tfile *f = t->files; f; f = f->next) {
    if (f->gone || f->orphan) continue;
    struct stat st;
    if (stat(f->path, &st) < 0 || (uint64_t)st.st_ino != f->ino || (uint64_t)st.st_dev != f->dev) {
      if (f->fd >= 0) f->orphan = 1;
      else f->gone = 1;  /* closed, and no way to reach it: forget it */
    }
  }
}

/* ---- checkpoints ----------------------------------------------------------- */

static void save(th_tail *t) {
  if (t->o.state == NULL || t->o.out->error) return;  /* never commit past lost alerts */
  if (th_output_flush(t->o.out) < 0) return;
  size_t n = 0;
  for (th_tfile *f = t->files; f; f = f->next) n++;
  th_ckpt *e = calloc(n + t->nknown + 1, sizeof *e);
  if (e == NULL) return;
  size_t i = 0;
  for (th_tfile *f = t->files; f; f = f->next) {
    if (f->gone && !f->done) continue;
    const th_commit *c = th_stream_committed(f->stream);
    e[i++] = (th_ckpt){f->path, f->dev, f->ino, f->fp_len, f->fp, c->offset, c->done ? TH_CKPT_DONE : 0,
                    c->back_len, c->back_hash};
  }
  /* Checkpoints not matched yet (a file briefly away) are kept as they were. */
  for (size_t k = 0; k < t->nknown; k++)
    if (t->known[k].path) e[i++] = t->known[k];
  int rc = th_ckpt_save(t->o.state, e, i, 0);
  if (rc < 0) th_log("write %s: %s (progress not saved)", t->o.state, strerror(-rc));
  free(e);
}

static void load(th_tail *t) {
  if (t->o.state == NULL) return;
  int bad = 0;
  int rc = th_ckpt_load(t->o.state, &t->known, &t->nknown, &bad);
  if (rc == -EINVAL) {
    char aside[PATH_MAX];
    snprintf(aside, sizeof aside, "%s.bad", t->o.state);
    rename(t->o.state, aside);
    th_log("%s: damaged at line %d; kept aside as %s, starting without it (%s)", t->o.state, bad,
           aside, t->o.from_end ? "--from-end" : "from the beginning");
  } else if (rc < 0) {
    th_log("read %s: %s; starting without it", t->o.state, strerror(-rc));
  }
}

/* ---- the loop ------------------------------------------------------------------- */

static void on_more(uv_idle_t *h);

/* One turn over every file; another soon if some file had more than its budget. */
static void turn(th_tail *t) {
  if (t->stopping) return;
  t->busy = 0;
  for (th_tfile *f = t->files; f; f = f->next) pump(f, UINT64_MAX);
  th_output_flush(t->o.out);
  if (t->o.out->error) {
    th_tail_close(t);  /* alerts can no longer be written: stop, commit nothing more */
    return;
  }
  if (t->busy) uv_idle_start(&t->more, on_more);
  else uv_idle_stop(&t->more);
}

static void on_more(uv_idle_t *h) { turn(h->data); }
static void on_poll(uv_timer_t *h) { turn(h->data); }
static void on_ckpt(uv_timer_t *h) { save(h->data); }

static void on_rescan(uv_timer_t *h) {
  th_tail *t = h->data;
  scan(t);
  turn(t);
}

/* Something changed in a watched directory: rescan shortly (one rescan for a
 * burst of events), then go on at the usual period. */
static void on_dir(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)name;
  (void)events;
  th_tail *t = h->data;
  if (status < 0 || t->stopping) return;
  /* Appends to files fire events here too: never push a pending rescan back. */
  if (uv_timer_get_due_in(&t->rescan) > 50)
    uv_timer_start(&t->rescan, on_rescan, 50, (uint64_t)(t->o.rescan_s * 1000));
}

static void watch_dirs(th_tail *t) {
  t->dirs = calloc((size_t)t->npatterns, sizeof *t->dirs);
  if (t->dirs == NULL) return;  /* the periodic rescan still finds new files */
  char **seen = calloc((size_t)t->npatterns, sizeof *seen);
  for (int i = 0; i < t->npatterns && seen; i++) {
    const char *p = t->patterns[i];
    struct stat st;
    char *dir;
    if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
      dir = strdup(p);
    } else if (th_glob_magic(p)) {
      dir = th_glob_base(p);
    } else {
      char copy[PATH_MAX];
      snprintf(copy, sizeof copy, "%s", p);
      dir = strdup(dirname(copy));
    }
    if (dir == NULL) continue;
    int dup = 0;
    for (int j = 0; j < t->ndirs; j++) dup |= strcmp(seen[j], dir) == 0;
    if (dup) {
      free(dir);
      continue;
    }
    uv_fs_event_init(t->loop, &t->dirs[t->ndirs]);
    t->dirs[t->ndirs].data = t;
    uv_fs_event_start(&t->dirs[t->ndirs], on_dir, dir, 0);  /* not fatal: rescans go on */
    seen[t->ndirs++] = dir;
  }
  for (int j = 0; j < t->ndirs && seen; j++) free(seen[j]);
  free(seen);
}

/* ---- lifecycle ------------------------------------------------------------------- */

int th_tail_init(th_tail *t, uv_loop_t *loop, const th_tail_opts *o) {
  memset(t, 0, sizeof *t);
  t->loop = loop;
  t->o = *o;
  t->buf = malloc(READ_CHUNK);
  if (t->buf == NULL) return -ENOMEM;
  uv_timer_init(loop, &t->poll);
  uv_timer_init(loop, &t->rescan);
  uv_timer_init(loop, &t->ckpt);
  uv_idle_init(loop, &t->more);
  t->poll.data = t->rescan.data = t->ckpt.data = t->more.data = t;
  return 0;
}

int th_tail_watch(th_tail *t, const char *path) {
  char **p = realloc(t->patterns, (size_t)(t->npatterns + 1) * sizeof *p);
  if (p == NULL) return -ENOMEM;
  t->patterns = p;
  char **m = realloc(t->missing, (size_t)(t->npatterns + 1) * sizeof *m);
  if (m == NULL) return -ENOMEM;
  t->missing = m;
  if ((t->patterns[t->npatterns] = strdup(path)) == NULL) return -ENOMEM;
  t->missing[t->npatterns] = NULL;
  t->npatterns++;
  return 0;
}

int th_tail_start(th_tail *t) {
  t->start_wall = (double)time(NULL);
  load(t);
  scan(t);
  find_rotated(t);
  /* Checkpoints of files that no longer exist anywhere are dropped. */
  for (size_t i = 0; i < t->nknown; i++) {
    struct stat st;
    if (t->known[i].path && stat(t->known[i].path, &st) < 0) {
      free(t->known[i].path);
      t->known[i].path = NULL;
    }
  }
  t->started = 1;
  watch_dirs(t);
  uint64_t rescan = (uint64_t)(t->o.rescan_s * 1000);
  uv_timer_start(&t->poll, on_poll, t->o.poll_ms, t->o.poll_ms);
  uv_timer_start(&t->rescan, on_rescan, rescan, rescan);
  if (t->o.state) uv_timer_start(&t->ckpt, on_ckpt, 1000, 1000);
  turn(t);
  return 0;
}

void th_tail_close(th_tail *t) {
  if (t->stopping) return;
  /* What was appended up to now, and no more: a writer cannot hold the stop. */
  for (th_tfile *f = t->files; f && !t->o.out->error; f = f->next) {
    struct stat st;
    if (f->fd < 0 || f->kind != TF_LINES || fstat(f->fd, &st) < 0) continue;
    uint64_t size = (uint64_t)st.st_size, before;
    do {
      before = f->offset;
      pump(f, size);
    } while (f->fd >= 0 && f->offset < size && f->offset > before);
  }
  save(t);
  t->stopping = 1;
  uv_close((uv_handle_t *)&t->poll, NULL);
  uv_close((uv_handle_t *)&t->rescan, NULL);
  uv_close((uv_handle_t *)&t->ckpt, NULL);
  uv_close((uv_handle_t *)&t->more, NULL);
  for (int i = 0; i < t->ndirs; i++) uv_close((uv_handle_t *)&t->dirs[i], NULL);
  for (th_tfile *f = t->files; f; f = f->next) {
    close_fd(f);
    uv_close((uv_handle_t *)&f->watch, NULL);
  }
  if (t->o.on_stop) t->o.on_stop(t->o.ud);
}

size_t th_tail_progress(th_tail *t, th_file_stat **out) {
  size_t n = 0;
  *out = NULL;
  for (th_tfile *f = t->files; f; f = f->next) n += !f->gone;
  if (n == 0 || (*out = calloc(n, sizeof **out)) == NULL) return 0;
  size_t i = 0;
  for (th_tfile *f = t->files; f; f = f->next) {
    if (f->gone) continue;
    struct stat st;
    uint64_t size = f->last_size;
    if (f->fd >= 0 ? fstat(f->fd, &st) == 0 : stat(f->path, &st) == 0 && (uint64_t)st.st_ino == f->ino)
      size = (uint64_t)st.st_size;
    (*out)[i++] = (th_file_stat){f->path, th_stream_committed(f->stream)->offset, size};
  }
  return i;
}

void th_tail_free(th_tail *t) {
  th_tfile *f = t->files;
  while (f) {
    th_tfile *next = f->next;
    th_framer_free(&f->framer);
    th_stream_close(f->stream);
    free(f->path);
    free(f);
    f = next;
  }
  for (int i = 0; i < t->npatterns; i++) free(t->patterns[i]);
  free(t->patterns);
  free(t->missing);
  th_ckpt_free(t->known, t->nknown);
  free(t->dirs);
  free(t->buf);
  memset(t, 0, sizeof *t);
}
