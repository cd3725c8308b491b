/* replay.c: files read once, in order, a chunk per turn (see replay.h). */
#include "replay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "progress.h"
#include "source.h"

enum { CHUNK = 1 << 20 };

static void on_idle(uv_idle_t *h);

static void pause_reading(th_replay *r) {
  if (r->reading) uv_idle_stop(&r->idle);
  r->reading = 0;
}

static void resume(th_replay *r) {
  if (!r->reading && !r->done) uv_idle_start(&r->idle, on_idle);
  r->reading = !r->done;
}

/* The NDJSON file at hand is read to its end (or failed): hand over its last
 * line, and go on with the next. */
static void finish_file(th_replay *r, int ok) {
  th_source s = {r->stream, r->max_line};
  if (ok) th_framer_finish(&r->framer, th_source_line, &s);
  th_stream_flush(r->stream);
  th_framer_free(&r->framer);
  close(r->fd);
  r->fd = -1;
  if (ok) r->ok++;
  else r->failed++;
}

/* A whole document, read at once. */
static void read_whole(th_replay *r, const char *path) {
  char *buf;
  size_t len;
  struct stat st;
  if (th_source_load(path, &buf, &len) < 0) {
    r->failed++;
    return;
  }
  uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : len;
  th_progress_bytes(size);
  th_source s = {r->stream, r->max_line};
  th_source_feed(&s, buf, len, size);
  th_stream_flush(r->stream);
  free(buf);
  r->ok++;
}

/* Open the next file; 0 when there is none left. */
static int open_next(th_replay *r) {
  while (r->next < r->nfiles) {
    const char *path = r->files[r->next++];
    if (th_stream_rename(r->stream, path) < 0) {
      th_log("%s: out of memory", path);
      r->failed++;
      continue;
    }
    if (th_source_whole_name(path)) {
      read_whole(r, path);
      return 1;  /* one document per turn: it may be large */
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) {
      th_log("open %s: %s", path, strerror(errno));
      r->failed++;
      continue;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      th_log("read %s: Is a directory", path);
      close(fd);
      r->failed++;
      continue;
    }
    r->fd = fd;
    r->path = path;
    th_framer_init(&r->framer, r->max_line, 0);
    return 1;
  }
  return 0;
}

/* One chunk of the file at hand, or the next file. */
static void step(th_replay *r) {
  if (r->fd < 0 && !open_next(r)) {
    r->done = 1;
    pause_reading(r);
    if (r->on_read) r->on_read(r->ud);
    return;
  }
  if (r->fd < 0) return;  /* a whole document was read this turn */
  ssize_t n = read(r->fd, r->buf, CHUNK);
  if (n < 0 && errno == EINTR) return;
  if (n < 0) {
    th_log("read %s: %s at offset %llu", r->path, strerror(errno), (unsigned long long)r->framer.pos);
    finish_file(r, 0);
    return;
  }
  if (n == 0) {
    finish_file(r, 1);
    return;
  }
  th_progress_bytes((uint64_t)n);
  th_source s = {r->stream, r->max_line};
  if (th_framer_feed(&r->framer, r->buf, (size_t)n, th_source_line, &s) < 0) {
    th_log("read %s: out of memory at offset %llu", r->path, (unsigned long long)r->framer.pos);
    finish_file(r, 0);
    return;
  }
  th_stream_flush(r->stream);
}

static void on_idle(uv_idle_t *h) {
  th_replay *r = h->data;
  if (th_dispatch_busy(r->d)) {
    pause_reading(r);  /* th_replay_room starts it again */
    return;
  }
  step(r);
}

int th_replay_init(th_replay *r, uv_loop_t *loop, th_dispatch *d, char **files, int nfiles, size_t max_line,
                   void (*on_read)(void *ud), void *ud) {
  memset(r, 0, sizeof *r);
  r->d = d;
  r->files = files;
  r->nfiles = nfiles;
  r->max_line = max_line;
  r->fd = -1;
  r->on_read = on_read;
  r->ud = ud;
  r->buf = malloc(CHUNK);
  r->stream = th_stream_open(d, nfiles > 0 ? files[0] : "-", 0);
  if (r->buf == NULL || r->stream == NULL) return -ENOMEM;
  uv_idle_init(loop, &r->idle);
  r->idle.data = r;
  uint64_t total = 0;
  for (int i = 0; i < nfiles; i++) {
    struct stat st;
    if (stat(files[i], &st) == 0 && S_ISREG(st.st_mode)) total += (uint64_t)st.st_size;
  }
  th_progress_start(total);
  return 0;
}

void th_replay_start(th_replay *r) { resume(r); }

void th_replay_room(th_replay *r) {
  if (!r->done) resume(r);
}

void th_replay_stop(th_replay *r) {
  if (r->fd >= 0) {
    th_framer_free(&r->framer);
    close(r->fd);
    r->fd = -1;
  }
  r->done = 1;
  pause_reading(r);
}

void th_replay_close(th_replay *r) {
  th_replay_stop(r);
  th_stream_close(r->stream);
  r->stream = NULL;
  free(r->buf);
  r->buf = NULL;
  uv_close((uv_handle_t *)&r->idle, NULL);
  th_progress_clear();
}
