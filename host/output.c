/* output.c: stdout, whole lines at a time (see output.h). */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* A file is written in pieces of about this much; a pipe that takes less
 * than FULL_AT behind makes its owner wait. */
enum { FLUSH_AT = 64 << 10, FULL_AT = 8 << 20 };

/* fd, read through rd, is size bytes long: cut it after its last newline. */
static void cut(int fd, int rd, off_t end) {
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
    th_log("stdout: removed the unfinished last line (%lld bytes) a killed run left; its alert is written again",
           (long long)(end - at));
}

/* A regular file we append to that ends in the middle of a line: cut the
 * line off. It was an alert not yet committed when a writer was killed.
 * The shell's >> opens it write-only: it is read through /proc. */
static void repair(int fd) {
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || !(fl & O_APPEND) || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int rd = open(path, O_RDONLY | O_CLOEXEC);
  if (rd < 0) return;
  struct stat rst;
  if (fstat(rd, &rst) < 0 || rst.st_ino != st.st_ino || rst.st_dev != st.st_dev) {
    close(rd);
    return;
  }
  cut(fd, rd, st.st_size);
  close(rd);
}

void th_output_init(th_output *o, int fd) {
  memset(o, 0, sizeof *o);
  o->fd = fd;
  o->restore_flags = -1;
  repair(fd);
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
    o->nonblock = 1;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0) o->restore_flags = fl;
  }
}

static void on_writable(uv_poll_t *h, int status, int events);

static void watch(th_output *o, int on) {
  if (!o->nonblock || o->on_drain == NULL || o->polling == on) return;
  if (on) uv_poll_start(&o->poll, UV_WRITABLE, on_writable);
  else uv_poll_stop(&o->poll);
  o->polling = on;
}

void th_output_start(th_output *o, uv_loop_t *loop, void (*on_drain)(void *ud), void *ud) {
  if (!o->nonblock) return;
  if (uv_poll_init(loop, &o->poll, o->fd) < 0) {  /* cannot be watched: written blocking, as a file */
    if (o->restore_flags >= 0) fcntl(o->fd, F_SETFL, o->restore_flags);
    o->restore_flags = -1;
    o->nonblock = 0;
    return;
  }
  o->poll.data = o;
  o->on_drain = on_drain;
  o->ud = ud;
}

int th_output_flush(th_output *o) {
  if (o->error) return -o->error;
  while (o->off < o->len) {
    ssize_t n = write(o->fd, o->buf + o->off, o->len - o->off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && o->nonblock) {
      watch(o, 1);
      return 1;
    }
    if (n <= 0) {
      o->error = n < 0 ? errno : EIO;
      watch(o, 0);
      return -o->error;
    }
    o->off += (size_t)n;
    o->written += (uint64_t)n;
  }
  o->off = o->len = 0;
  watch(o, 0);
  return 0;
}

static void on_writable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  th_output *o = h->data;
  th_output_flush(o);  /* an error is sticky: the owner sees it */
  if (o->on_drain) o->on_drain(o->ud);
}

int th_output_full(const th_output *o) { return o->len - o->off > FULL_AT; }

int th_output_write(th_output *o, const char *line, size_t len) {
  if (o->error) return -o->error;
  if (o->off > 0 && o->off == o->len) o->off = o->len = 0;
  if (o->len + len + 1 > o->cap) {
    if (o->off > 0) {  /* what was written makes room */
      memmove(o->buf, o->buf + o->off, o->len - o->off);
      o->len -= o->off;
      o->off = 0;
    }
    size_t cap = o->cap ? o->cap : FLUSH_AT * 2;
    while (cap < o->len + len + 1) cap *= 2;
    if (cap != o->cap) {
      char *p = realloc(o->buf, cap);
      if (p == NULL) {
        o->error = ENOMEM;
        return -o->error;
      }
      o->buf = p;
      o->cap = cap;
    }
  }
  memcpy(o->buf + o->len, line, len);
  o->buf[o->len + len] = '\n';
  o->len += len + 1;
  o->appended += len + 1;
  o->lines++;
  /* A file is written whole lines at a time, 64 KiB or so at once. */
  return !o->nonblock && o->len >= FLUSH_AT ? (th_output_flush(o) < 0 ? -o->error : 0) : 0;
}

void th_output_finish(th_output *o) {
  if (o->restore_flags >= 0) fcntl(o->fd, F_SETFL, o->restore_flags);
  o->restore_flags = -1;
  o->nonblock = 0;
  th_output_flush(o);
}

void th_output_close(th_output *o) {
  if (o->on_drain == NULL) return;
  o->on_drain = NULL;
  uv_close((uv_handle_t *)&o->poll, NULL);
}

void th_output_free(th_output *o) {
  if (o->restore_flags >= 0) fcntl(o->fd, F_SETFL, o->restore_flags);  /* the shell shares it */
  o->restore_flags = -1;
  free(o->buf);
  o->buf = NULL;
  o->off = o->len = o->cap = 0;
}
