/* sink_fd.c: alerts written to a descriptor, one line each: stdout, and
 * file:PATH (appended to; opened again on SIGHUP, for logrotate).
 *
 * Lines are gathered in a buffer and written with write(2), whole lines at a
 * time, about 64 KiB at once. A regular file or a terminal is written at
 * once; a pipe or a socket (`| jq`, a slow reader) without blocking: what it
 * does not take now waits in the buffer until the loop says it can take more,
 * so a stalled reader never freezes the host.
 *
 * Delivered means: stdout, written; file:PATH, written and fdatasync'ed (in
 * libuv's thread pool, so a slow disk does not hold the loop), since the
 * checkpoint that follows is fsync'ed too.
 *
 * A process killed in the middle of a write can leave a line cut short. At
 * start, a regular file appended to that does not end with a newline is cut
 * back to its last one: that alert was not committed and is written again.
 *
 * stdout failing (its reader gone, a full disk under `>`) ends the run, as a
 * shell user expects; file:PATH failing (a full disk, a path that cannot be
 * opened) keeps what it has and tries again, and loses nothing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "outputs.h"

enum { FLUSH_AT = 64 << 10 };

typedef struct fdsink {
  th_sink *s;
  int fd;                  /* -1: not open */
  int own;                 /* opened here (file:), closed here */
  const char *path;        /* file:'s path, in s->spec */
  int nonblock;            /* a pipe or socket */
  int restore_flags;       /* stdout's flags before, restored at the end; -1 */
  char *buf;
  size_t off, len, cap;
  th_marks marks;          /* one per alert in buf, in order: where in buf it ends */
  size_t line_start;       /* where in buf the alert being written starts */
  uint64_t staged;         /* alerts before this are in buf or written */
  uint64_t written;        /* ... or written */
  uv_poll_t poll;
  int polled, polling;
  uv_fs_t sync;
  int syncing;
  uint64_t sync_seq;
  int reopen_wanted;
} fdsink;

/* fd, read through rd, is end bytes long: cut it after its last newline. */
static void cut(const char *name, int fd, int rd, off_t end) {
  char b[4096];
  if (pread(rd, b, 1, end - 1) != 1 || b[0] == '\n') return;
  off_t at = end;
  while (at > 0) {
    off_t from = at > (off_t)sizeof b ? at - (off_t)sizeof b : 0;
    ssize_t n = pread(rd, b, (size_t)(at - from), from);
    if (n <= 0) return;
    off_t nl = -1;
    for (ssize_t i = n - 1; i >= 0 && nl < 0; i--)
      if (b[i] == '\n') nl = from + i + 1;
    if (nl >= 0) {
      at = nl;
      break;
    }
    at = from;
  }
  if (ftruncate(fd, at) == 0)
    th_log("%s: removed the unfinished last line (%lld bytes) a killed run left; its alert is written again", name,
           (long long)(end - at));
}

/* A regular file appended to that ends in the middle of a line: cut the line
 * off. The shell's >> opens it write-only: it is read through /proc. */
static void repair(const char *name, int fd) {
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || !(fl & O_APPEND) || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int rd = open(path, O_RDONLY | O_CLOEXEC);
  if (rd < 0) return;
  struct stat rst;
  if (fstat(rd, &rst) == 0 && rst.st_ino == st.st_ino && rst.st_dev == st.st_dev) cut(name, fd, rd, st.st_size);
  close(rd);
}

static void kick(th_sink *s);

static void on_writable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  fdsink *f = h->data;
  uv_poll_stop(&f->poll);
  f->polling = 0;
  kick(f->s);
}

static void on_synced(uv_fs_t *req) {
  fdsink *f = req->data;
  th_sink *s = f->s;
  ssize_t r = req->result;
  uv_fs_req_cleanup(req);
  f->syncing = 0;
  if (s->closing) return;
  if (r < 0 && r != UV_EINVAL) {  /* EINVAL: a file that cannot be synced (a FIFO named as file:) */
    th_sink_failed(s, "fdatasync %s: %s", f->path, uv_strerror((int)r));
    return;
  }
  th_sink_acked(s, f->sync_seq);
  if (uv_is_active((uv_handle_t *)&s->retry)) return;  /* what a failed write had written: the retry goes on */
  th_sink_ok(s);
  kick(s);
}

/* file: what is written is delivered once synced: sync it (one at a time). */
static void sync_written(fdsink *f) {
  th_sink *s = f->s;
  if (f->written <= s->acked || f->syncing) return;
  f->syncing = 1;
  f->sync_seq = f->written;
  f->sync.data = f;
  if (uv_fs_fdatasync(s->set->loop, &f->sync, f->fd, on_synced) < 0) {
    f->syncing = 0;
    th_sink_acked(s, f->written);
  }
}

/* Open file:'s path for appending. */
static int open_path(fdsink *f) {
  int fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return -errno;
  repair(f->s->name, fd);
  f->fd = fd;
  return 0;
}

/* Gather waiting alerts into the buffer, whole lines. */
static int stage(fdsink *f) {
  th_outputs *o = f->s->set;
  while (f->staged < o->next && f->len - f->off < FLUSH_AT) {
    const th_alert *a = th_outputs_get(o, f->staged);
    if (f->off > 0 && f->off == f->len) f->off = f->len = f->line_start = 0;
    if (f->len + a->len + 1 > f->cap) {
      size_t drop = f->line_start;  /* what was written makes room (not the line being written) */
      if (drop > 0) {
        memmove(f->buf, f->buf + drop, f->len - drop);
        for (size_t i = 0; i < f->marks.count; i++) th_marks_at(&f->marks, i)->end -= drop;
        f->len -= drop;
        f->off -= drop;
        f->line_start = 0;
      }
      size_t cap = f->cap ? f->cap : FLUSH_AT * 2;
      while (cap < f->len + a->len + 1) cap *= 2;
      if (cap != f->cap) {
        char *p = realloc(f->buf, cap);
        if (p == NULL) return -1;
        f->buf = p;
        f->cap = cap;
      }
    }
    if (th_marks_push(&f->marks, f->staged + 1, f->len + a->len + 1) < 0) return -1;
    memcpy(f->buf + f->len, a->text, a->len);
    f->buf[f->len + a->len] = '\n';
    f->len += a->len + 1;
    f->staged++;
    f->s->sent = f->staged;
  }
  return 0;
}

/* Bytes up to f->off are written: the alerts they finish are. */
static void written_up_to(fdsink *f) {
  uint64_t end;
  uint64_t seq = th_marks_take(&f->marks, f->off, &end);
  if (seq) {
    f->written = seq;
    f->line_start = (size_t)end;
  }
}

/* A file output stopped in the middle of a line (a full disk): the part is
 * cut off, so the file ends with a whole alert; the rest was not delivered,
 * so not committed, and the next start writes it whole. */
static void cut_partial(fdsink *f) {
  struct stat st;
  off_t part = (off_t)(f->off - f->line_start);
  if (f->own && f->fd >= 0 && part > 0 && fstat(f->fd, &st) == 0 && st.st_size >= part &&
      ftruncate(f->fd, st.st_size - part) == 0)
    f->off = f->line_start;
}

static void kick(th_sink *s) {
  fdsink *f = s->impl;
  if (s->closing || f->polling) return;
  if (f->fd < 0 || (f->reopen_wanted && !f->syncing)) {
    /* A line half written (a full disk) is cut off the old file and written whole to the new. */
    cut_partial(f);
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    f->reopen_wanted = 0;
    int r = open_path(f);
    if (r < 0) {
      th_sink_failed(s, "open %s: %s", f->path, strerror(-r));
      return;
    }
  }
  for (;;) {
    if (stage(f) < 0) {
      th_sink_failed(s, "out of memory");
      return;
    }
    if (f->off == f->len) break;
    ssize_t n = write(f->fd, f->buf + f->off, f->len - f->off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && f->nonblock && f->polled) {
      uv_poll_start(&f->poll, UV_WRITABLE, on_writable);
      f->polling = 1;
      break;
    }
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      if (!f->own) {
        th_sink_fatal(s, "write: %s", strerror(err));
        return;
      }
      th_sink_failed(s, "write %s: %s", f->path, strerror(err));  /* what is in the buffer stays */
      sync_written(f);  /* what went before is delivered */
      return;
    }
    f->off += (size_t)n;
    written_up_to(f);
  }
  if (!f->own) th_sink_acked(s, f->written);
  else sync_written(f);
}

static int open_fd(th_sink *s, int fd, char *err, size_t errlen) {
  (void)err;
  (void)errlen;
  fdsink *f = s->impl;
  f->fd = fd;
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
    f->nonblock = 1;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0) f->restore_flags = fl;
    if (uv_poll_init(s->set->loop, &f->poll, fd) == 0) {
      f->poll.data = f;
      f->polled = 1;
    } else {  /* cannot be watched: written blocking, as a file */
      if (f->restore_flags >= 0) fcntl(fd, F_SETFL, f->restore_flags);
      f->restore_flags = -1;
      f->nonblock = 0;
    }
  }
  return 0;
}

static fdsink *new_fdsink(th_sink *s) {
  fdsink *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->s = s;
  f->fd = -1;
  f->restore_flags = -1;
  s->impl = f;
  return f;
}

static int open_stdout(th_sink *s, char *err, size_t errlen) {
  if (new_fdsink(s) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  repair("stdout", STDOUT_FILENO);
  return open_fd(s, STDOUT_FILENO, err, errlen);
}

static int open_file(th_sink *s, char *err, size_t errlen) {
  fdsink *f = new_fdsink(s);
  if (f == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  f->own = 1;
  f->path = s->spec + strlen("file:");
  if (*f->path == '\0') {
    snprintf(err, errlen, "no PATH after file:");
    return -1;
  }
  int r = open_path(f);
  if (r < 0) {  /* a folder that is not there yet, a full disk: tried again; nothing else is */
    if (r == -EISDIR || r == -EACCES || r == -EROFS || r == -ENOTDIR || r == -ELOOP) {
      snprintf(err, errlen, "open %s: %s", f->path, strerror(-r));
      return -1;
    }
    th_sink_failed(s, "open %s: %s", f->path, strerror(-r));
    return 0;
  }
  return open_fd(s, f->fd, err, errlen);
}

static void reopen(th_sink *s) {
  fdsink *f = s->impl;
  if (!f->own) return;
  f->reopen_wanted = 1;
  kick(s);
}

static void close_sink(th_sink *s) {
  fdsink *f = s->impl;
  if (f == NULL) return;
  cut_partial(f);
  if (f->polled) uv_close((uv_handle_t *)&f->poll, NULL);
  f->polled = 0;
}

static void free_sink(th_sink *s) {
  fdsink *f = s->impl;
  if (f == NULL) return;
  if (f->restore_flags >= 0) fcntl(f->fd, F_SETFL, f->restore_flags);  /* the shell shares it */
  if (f->own && f->fd >= 0) close(f->fd);
  free(f->buf);
  th_marks_free(&f->marks);
  free(f);
  s->impl = NULL;
}

const th_sink_ops th_sink_stdout_ops = {open_stdout, kick, NULL, close_sink, free_sink};
const th_sink_ops th_sink_file_ops = {open_file, kick, reopen, close_sink, free_sink};
