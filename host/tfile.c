/* tfile.c: one tracked file: descriptor, reads, truncation (see tfile.h).
 *
 * All reads are synchronous preads on the loop thread, at most a budget per
 * call, so one busy file cannot starve the others or hold up a signal. Each
 * read also takes the TH_BACK_MAX bytes before the offset and checks they are
 * still the bytes read last time: a file truncated and written past the
 * offset again between two looks (copytruncate under load) holds other bytes
 * there even when its first bytes look the same.
 */
#include "tfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "log.h"
#include "source.h"

/* The hash of zero bytes: the back window of a file read from 0. */
#define EMPTY_HASH 0xcbf29ce484222325ULL

static double now_s(const th_tail *t) { return (double)uv_now(t->loop) / 1000.0; }

static int64_t mtime_ns(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

uint64_t th_tfile_hash_before(int fd, uint64_t at, uint32_t len) {
  if (len == 0) return EMPTY_HASH;
  if (len > at) return UINT64_MAX;
  return th_fingerprint_at(fd, at - len, len);
}

/* ---- queues ------------------------------------------------------------------ */

static void lru_unlink(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->lru_prev) f->lru_prev->lru_next = f->lru_next;
  else if (t->lru == f) t->lru = f->lru_next;
  if (f->lru_next) f->lru_next->lru_prev = f->lru_prev;
  else if (t->lru_last == f) t->lru_last = f->lru_prev;
  f->lru_prev = f->lru_next = NULL;
}

/* Most recently read last: eviction starts from the head. */
static void lru_append(th_tfile *f) {
  th_tail *t = f->tail;
  f->lru_prev = t->lru_last;
  f->lru_next = NULL;
  if (t->lru_last) t->lru_last->lru_next = f;
  else t->lru = f;
  t->lru_last = f;
}

void th_tfile_ready(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->ready || f->role == TF_GONE || f->role == TF_CANDIDATE || t->stopping) return;
  f->ready = 1;
  f->ready_next = NULL;
  if (t->ready_last) t->ready_last->ready_next = f;
  else t->ready = f;
  t->ready_last = f;
  th_tail_kick(t);
}

static void wait_for_fd(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->waiting) return;
  f->waiting = 1;
  f->wait_next = NULL;
  if (t->waiting_last) t->waiting_last->wait_next = f;
  else t->waiting = f;
  t->waiting_last = f;
}

/* The first file waiting for a descriptor gets its turn. */
static void wake_waiting(th_tail *t) {
  th_tfile *f = t->waiting;
  if (f == NULL) return;
  t->waiting = f->wait_next;
  if (t->waiting == NULL) t->waiting_last = NULL;
  f->waiting = 0;
  f->wait_next = NULL;
  th_tfile_ready(f);
}

/* The read and descriptor queues are singly linked: removal walks them, but
 * happens only when a file is forgotten while queued, which is rare. */
static void unqueue(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->ready) {
    th_tfile *prev = NULL;
    for (th_tfile *g = t->ready; g; prev = g, g = g->ready_next) {
      if (g != f) continue;
      if (prev) prev->ready_next = g->ready_next;
      else t->ready = g->ready_next;
      if (t->ready_last == f) t->ready_last = prev;
      break;
    }
    f->ready = 0;
  }
  if (f->waiting) {
    th_tfile *prev = NULL;
    for (th_tfile *g = t->waiting; g; prev = g, g = g->wait_next) {
      if (g != f) continue;
      if (prev) prev->wait_next = g->wait_next;
      else t->waiting = g->wait_next;
      if (t->waiting_last == f) t->waiting_last = prev;
      break;
    }
    f->waiting = 0;
  }
  if (f->role == TF_CANDIDATE) th_tfile_uncandidate(f);
}

void th_tfile_uncandidate(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->cand_prev) f->cand_prev->cand_next = f->cand_next;
  else if (t->cands == f) t->cands = f->cand_next;
  if (f->cand_next) f->cand_next->cand_prev = f->cand_prev;
  f->cand_prev = f->cand_next = NULL;
}

/* ---- descriptors ----------------------------------------------------------- */

void th_tfile_close_fd(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->fd < 0) return;
  close(f->fd);
  f->fd = -1;
  t->nopen--;
  lru_unlink(f);
  wake_waiting(t);
}

int th_tfile_slot(th_tail *t, const th_tfile *except, int evict) {
  if (t->nopen < t->max_open) return 1;
  if (!evict) return 0;
  /* Look at a bounded number: with every open file busy, waiting is cheaper
   * than a scan of them all for each file that wants a turn. */
  int looked = 0;
  for (th_tfile *g = t->lru; g && looked < 64; g = g->lru_next, looked++) {
    if (g == except || g->role != TF_FOLLOW || g->ready || (g->kind == TF_WHOLE && !g->done)) continue;
    struct stat st;
    if (fstat(g->fd, &st) < 0 || (uint64_t)st.st_size != g->offset) continue;  /* has more */
    th_tfile_close_fd(g);
    return t->nopen < t->max_open;
  }
  return 0;
}

/* Open f at its path, if that is still the file f tracks. Returns 0, -EAGAIN
 * (no descriptor free: queued), or -ENOENT (it is not there any more). */
static int reopen(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->fd >= 0) return 0;
  if (!th_tfile_slot(t, f, 1)) {
    wait_for_fd(f);
    return -EAGAIN;
  }
  /* O_NONBLOCK: opening a FIFO must not block the loop. */
  int fd = open(f->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_dev != f->dev || (uint64_t)st.st_ino != f->ino) {
    if (fd >= 0) close(fd);
    return -ENOENT;
  }
  f->fd = fd;
  t->nopen++;
  lru_append(f);
  return 0;
}

/* ---- tracking ------------------------------------------------------------------ */

th_tfile *th_tfile_track(th_tail *t, const char *path, int fd, const struct stat *st, int role,
                         int primary) {
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
  f->role = role;
  f->primary = primary;
  f->kind = TF_UNDECIDED;
  f->back_hash = EMPTY_HASH;
  f->seen = t->pass;
  f->last_size = (uint64_t)st->st_size;
  f->last_mtime = mtime_ns(st);
  f->last_change = f->last_growth = now_s(t);
  th_framer_init(&f->framer, t->o.max_line, 0);
  th_fingerprint(fd, &f->fp_len, &f->fp);
  t->nopen++;
  lru_append(f);
  th_tfile *there = th_filetab_get_path(&t->by, path);
  if (there) th_tfile_left(there);
  if (th_filetab_put_id(&t->by, f->dev, f->ino, f) < 0 || th_filetab_put_path(&t->by, f->path, f) < 0) {
    th_log("%s: out of memory, not followed", path);
    th_filetab_del_id(&t->by, f->dev, f->ino, f);
    th_tfile_close_fd(f);
    th_framer_free(&f->framer);
    free(f->path);
    free(f);
    return NULL;
  }
  f->indexed = 1;
  f->prev = t->files_last;
  if (t->files_last) t->files_last->next = f;
  else t->files = f;
  t->files_last = f;
  if (role == TF_CANDIDATE) {
    f->cand_next = t->cands;
    if (t->cands) t->cands->cand_prev = f;
    t->cands = f;
  }
  t->files_seen++;
  return f;
}

int th_tfile_follow(th_tfile *f, th_stream *stream, uint64_t start, const th_commit *base) {
  th_tail *t = f->tail;
  if (stream == NULL && (stream = th_stream_open(t->o.dispatch, f->path, start)) == NULL) return -ENOMEM;
  if (stream != f->stream && f->stream) th_stream_close(f->stream);
  f->stream = stream;
  th_stream_rename(stream, f->path);  /* on failure it keeps its old name, nothing worse */
  f->offset = start;
  th_framer_reset(&f->framer, start);
  /* The bytes before start, as they are now: the next read checks them. */
  int fd = f->fd;
  struct stat st;
  if (fd < 0 && (fd = open(f->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) >= 0 &&
      (fstat(fd, &st) < 0 || (uint64_t)st.st_dev != f->dev || (uint64_t)st.st_ino != f->ino)) {
    close(fd);  /* another file there now */
    fd = -1;
  }
  uint32_t n = start < TH_BACK_MAX ? (uint32_t)start : TH_BACK_MAX;
  uint64_t h = fd >= 0 ? th_tfile_hash_before(fd, start, n) : UINT64_MAX;
  /* Reads starting past the first bytes do not see them: take them now. */
  if (fd >= 0 && start > 0 && f->fp_len < TH_FP_MAX) th_fingerprint(fd, &f->fp_len, &f->fp);
  if (fd >= 0 && fd != f->fd) close(fd);
  if (h == UINT64_MAX) {  /* unreadable now: the first read does not check */
    n = 0;
    h = EMPTY_HASH;
  }
  f->back_len = n;
  f->back_hash = h;
  f->base = base ? *base : (th_commit){start, n, h, 0};
  return 0;
}

const th_commit *th_tfile_commit(const th_tfile *f) {
  if (f->stream == NULL) return &f->base;
  const th_commit *c = th_stream_committed(f->stream);
  /* Nothing committed since it started: the base knows the bytes before. */
  if (c->offset == f->base.offset && c->back_len == 0 && !c->done && f->base.back_len) return &f->base;
  return c;
}

int th_tfile_move(th_tfile *f, const char *path) {
  th_tail *t = f->tail;
  if (f->indexed && strcmp(f->path, path) == 0) return 0;
  char *p = strdup(path);
  if (p == NULL || (f->stream && th_stream_rename(f->stream, path) < 0)) {
    free(p);
    return -ENOMEM;
  }
  if (f->indexed) th_filetab_del_path(&t->by, f->path, f);
  free(f->path);
  f->path = p;
  th_tfile *there = th_filetab_get_path(&t->by, path);
  if (there && there != f) th_tfile_left(there);
  f->indexed = th_filetab_put_path(&t->by, f->path, f) == 0;
  return 0;
}

void th_tfile_left(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->indexed) th_filetab_del_path(&t->by, f->path, f);
  f->indexed = 0;
  if (f->role == TF_FOLLOW) {
    f->role = TF_ORPHAN;
    f->last_growth = now_s(t);  /* rotate_wait counts from now */
    th_tfile_ready(f);
  }
}

void th_tfile_finish(th_tfile *f) {
  th_tail *t = f->tail;
  if (f->stream && f->kind == TF_LINES) {
    /* Nothing more will come: a held partial line is processed as it is. */
    th_source s = {f->stream, t->o.max_line};
    th_framer_finish(&f->framer, th_source_line, &s);
    th_stream_flush(f->stream);
  }
  unqueue(f);
  th_tfile_close_fd(f);
  f->role = TF_GONE;
}

void th_tfile_forget(th_tfile *f) {
  th_tail *t = f->tail;
  unqueue(f);
  th_tfile_close_fd(f);
  th_filetab_del_id(&t->by, f->dev, f->ino, f);
  if (f->indexed) th_filetab_del_path(&t->by, f->path, f);
  if (f->prev) f->prev->next = f->next;
  else t->files = f->next;
  if (f->next) f->next->prev = f->prev;
  else t->files_last = f->prev;
  th_framer_free(&f->framer);
  if (f->stream) th_stream_close(f->stream);  /* what it holds is still written */
  free(f->ends);
  free(f->path);
  free(f);
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
  int fd = dup(f->fd);  /* gzclose closes it */
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

/* A whole document is read once its size and time have held still for one
 * check and it is complete; an incomplete one after rotate_wait of
 * stillness, as it is. */
static void whole(th_tfile *f, const struct stat *st) {
  th_tail *t = f->tail;
  double now = now_s(t);
  if ((uint64_t)st->st_size != f->last_size || mtime_ns(st) != f->last_mtime) {
    f->last_size = (uint64_t)st->st_size;
    f->last_mtime = mtime_ns(st);
    f->last_change = now;
  } else if (st->st_size > 0 && now - f->last_change >= t->o.poll_ms / 1000.0) {
    read_whole(f, now - f->last_change >= t->o.rotate_wait_s);
  }
  if (f->done) th_tfile_close_fd(f);
}

/* ---- reading --------------------------------------------------------------- */

/* The file no longer holds what was read before the offset: read it again
 * from 0. What was read of the old content stays with its stream, held for
 * the copy (copy-and-truncate leaves one beside the file: read on from
 * where the original was read to, it gives the lines written between the
 * last read and the truncation); a new stream takes the new content. */
static void rewritten(th_tfile *f, const char *why) {
  th_tail *t = f->tail;
  th_log("%s: %s; reading it again from the start", f->path, why);
  th_stream *fresh = f->offset > 0 ? th_stream_open(t->o.dispatch, f->path, 0) : NULL;
  th_held *g = NULL;
  if (fresh) {
    for (int i = 0; i < TH_HELD_MAX && g == NULL; i++)
      if (t->held[i].stream == NULL) g = &t->held[i];
    if (g == NULL) {  /* the oldest copy is not coming */
      g = &t->held[0];
      for (int i = 1; i < TH_HELD_MAX; i++)
        if (t->held[i].since < g->since) g = &t->held[i];
      th_stream_close(g->stream);
      free(g->path);
      free(g->ends);
    }
    *g = (th_held){f->stream, strdup(f->path), f->dev, f->ino, f->fp_len, f->fp, f->offset, f->back_len,
                   f->back_hash, f->ends, th_framer_done(&f->framer), now_s(t)};
    f->ends = NULL;
    if (g->path == NULL) {  /* out of memory: let it go */
      th_stream_close(g->stream);
      g->stream = NULL;
      free(g->ends);
      g->ends = NULL;
    }
    f->stream = fresh;
  } else {
    th_stream_reset(f->stream, 0);
  }
  free(f->ends);  /* NULL when a held generation took them */
  f->ends = NULL;
  f->offset = 0;
  f->fp_len = 0;
  f->fp = EMPTY_HASH;
  f->back_len = 0;
  f->back_hash = EMPTY_HASH;
  f->base = (th_commit){0, 0, 0, 0};
  th_framer_reset(&f->framer, 0);
}

/* Keep the last TH_ENDS line ends of a read, each with the hash of the bytes
 * before it. buf holds the back window (bl bytes, all of the file before
 * offset when it is shorter than TH_BACK_MAX) then the got bytes read at
 * offset, so it holds the min(end, TH_BACK_MAX) bytes before any newline read.
 * Without memory for them, a shorter copy is read whole (duplicates, never
 * a loss). */
static void note_ends(th_tfile *f, const unsigned char *buf, uint32_t bl, size_t got) {
  size_t found[TH_ENDS], n = 0;
  for (size_t i = bl + got; i > bl && n < TH_ENDS; i--)
    if (buf[i - 1] == '\n') found[n++] = i;  /* a line ends before buf[i] */
  if (n == 0) return;
  if (f->ends == NULL && (f->ends = calloc(1, sizeof *f->ends)) == NULL) return;
  th_ends *e = f->ends;
  uint64_t base = f->offset - bl;  /* the file offset of buf[0] */
  while (n-- > 0) {
    uint64_t at = base + found[n];
    uint32_t w = at < TH_BACK_MAX ? (uint32_t)at : TH_BACK_MAX;
    e->at[e->next] = at;
    e->hash[e->next] = th_fnv1a(buf + found[n] - w, w);
    e->next = (e->next + 1) % TH_ENDS;
    if (e->n < TH_ENDS) e->n++;
  }
}

/* Read up to budget bytes of lines. */
static uint64_t drain(th_tfile *f, uint64_t budget, int *more) {
  th_tail *t = f->tail;
  uint64_t total = 0;
  int rewrites = 0;
  while (total < budget) {
    if (th_dispatch_busy(t->o.dispatch) || (total > 0 && uv_hrtime() > t->turn_end)) {
      *more = 1;
      break;
    }
    th_source s = {f->stream, t->o.max_line};
    uint32_t bl = f->back_len;
    size_t want = TH_READ_CHUNK;
    if (budget - total < want) want = (size_t)(budget - total);
    ssize_t n = pread(f->fd, t->buf, bl + want, (off_t)(f->offset - bl));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      th_log("read %s: %s at offset %llu", f->path, strerror(errno), (unsigned long long)f->offset);
      break;
    }
    /* Between two reads the file may have been truncated and written again
     * past the offset: start it over. */
    if ((size_t)n < bl || th_fnv1a(t->buf, bl) != f->back_hash) {
      if (rewrites++) break;  /* twice in one call: let the writer settle */
      rewritten(f, "rewritten (other bytes before the offset read to)");
      continue;
    }
    size_t got = (size_t)n - bl;
    if (got == 0) break;
    /* ... or during this read: the bytes just read must still be there. */
    uint64_t end = f->offset + got;
    uint32_t nb = end < TH_BACK_MAX ? (uint32_t)end : TH_BACK_MAX;
    uint64_t nh = th_fnv1a(t->buf + bl + got - nb, nb);
    if (th_tfile_hash_before(f->fd, end, nb) != nh) {
      if (rewrites++) break;
      rewritten(f, "rewritten while it was read");
      continue;
    }
    /* The offset moves only once the framer holds the bytes. */
    if (th_framer_feed(&f->framer, t->buf + bl, got, th_source_line, &s) < 0) {
      th_log("read %s: out of memory at offset %llu", f->path, (unsigned long long)f->offset);
      break;
    }
    note_ends(f, (const unsigned char *)t->buf, bl, got);
    /* The fingerprint too is taken from the bytes as read (the buffer starts
     * at 0 while the offset is within the back window): read again from the
     * file, it could be the next generation's. */
    if (f->offset < TH_FP_MAX && bl == f->offset) {
      f->fp_len = end < TH_FP_MAX ? (uint32_t)end : TH_FP_MAX;
      f->fp = th_fnv1a(t->buf, f->fp_len);
    }
    f->offset = end;
    f->back_len = nb;
    f->back_hash = nh;
    total += got;
    if (got < want) break;  /* the end for now */
  }
  if (total >= budget) *more = 1;
  th_stream_flush(f->stream);
  return total;
}

/* An orphan that has not grown for rotate_wait will not grow again. */
static void maybe_finish(th_tfile *f, uint64_t size) {
  th_tail *t = f->tail;
  if (f->role == TF_ORPHAN && size <= f->offset && now_s(t) - f->last_growth >= t->o.rotate_wait_s)
    th_tfile_finish(f);
}

uint64_t th_tfile_pump(th_tfile *f, uint64_t budget, int *more) {
  th_tail *t = f->tail;
  *more = 0;
  if (f->role == TF_GONE || f->role == TF_CANDIDATE || f->done || f->stream == NULL) return 0;
  if (f->fd < 0) {
    int rc = reopen(f);
    if (rc == -EAGAIN) return 0;  /* its turn comes */
    if (rc < 0) {
      /* Renamed or deleted while closed, and not found elsewhere: a rescan
       * finds it again if it is at a watched name. */
      th_tfile_left(f);
      th_tfile_finish(f);
      return 0;
    }
  }
  struct stat st;
  if (fstat(f->fd, &st) < 0) return 0;
  if (st.st_nlink == 0 && f->role == TF_FOLLOW) th_tfile_left(f);  /* deleted: read to its end */
  if (f->kind == TF_UNDECIDED) {
    f->kind = decide(f);
    /* Only files matching a PATH are read as documents; beside a followed
     * file, gzip is a compressed rotation (lines read already). */
    if (f->kind == TF_WHOLE && !f->primary) {
      unsigned char b[2];
      if (pread(f->fd, b, 2, 0) == 2 && b[0] == 0x1f && b[1] == 0x8b) {
        f->offset = (uint64_t)st.st_size;
        f->done = 1;
        th_stream_done(f->stream, f->offset);
        th_tfile_finish(f);
        return 0;
      }
      f->kind = TF_LINES;
    }
  }
  if (f->kind == TF_UNDECIDED) return 0;
  if (f->kind == TF_WHOLE) {
    whole(f, &st);
    return 0;
  }
  if ((uint64_t)st.st_size < f->offset)
    rewritten(f, "truncated");
  else if (f->fp_len > 0 && !th_fingerprint_matches(f->fd, f->fp_len, f->fp))
    rewritten(f, "rewritten (its first bytes changed)");
  uint64_t got = drain(f, budget, more);
  if (got) {
    f->last_growth = now_s(t);
    lru_unlink(f);
    lru_append(f);
  }
  if (!*more && f->fd >= 0) {
    maybe_finish(f, f->offset);
    /* At its end with others waiting for a descriptor: hand this one over. */
    if (f->role == TF_FOLLOW && t->waiting && f->fd >= 0) th_tfile_close_fd(f);
  }
  return got;
}

/* ---- the periodic check -------------------------------------------------------- */

void th_tfile_poll(th_tail *t) {
  double now = now_s(t);
  for (th_tfile *f = t->lru, *next; f; f = next) {
    next = f->lru_next;
    if (f->role == TF_CANDIDATE || f->ready) continue;
    struct stat st;
    if (fstat(f->fd, &st) < 0) continue;
    if ((f->kind == TF_WHOLE && !f->done) || (f->kind == TF_UNDECIDED && st.st_size > 0)) {
      th_tfile_ready(f);  /* documents: is it still now? */
    } else if ((uint64_t)st.st_size != f->offset || (st.st_nlink == 0 && f->role == TF_FOLLOW)) {
      th_tfile_ready(f);
    } else if (f->role == TF_ORPHAN && now - f->last_growth >= t->o.rotate_wait_s) {
      th_tfile_finish(f);
    }
  }
  while (t->waiting && t->nopen < t->max_open) wake_waiting(t);
}
