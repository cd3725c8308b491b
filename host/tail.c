/* tail.c: following files (see tail.h).
 *
 * All reads are synchronous preads on the loop thread: local files answer at
 * memory speed and the engine must see records in order anyway. Events only
 * say "look again"; the state in th_tail_file says where to look.
 */
#include "tail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "source.h"

enum { READ_CHUNK = 1 << 20 };

static void pump(th_tail_file *f);

static void on_change(uv_fs_event_t *h, const char *name, int events, int status) {
  (void)name;
  (void)events;
  th_tail_file *f = h->data;
  if (status < 0) return;  /* the periodic check covers us */
  pump(f);
  th_output_flush(f->tail->o.out);
}

static void on_timer(uv_timer_t *h) {
  th_tail *t = h->data;
  for (size_t i = 0; i < t->nfiles; i++) pump(t->files[i]);
  th_output_flush(t->o.out);
}

static void unwatch(th_tail_file *f) {
  if (f->watching) uv_fs_event_stop(&f->watch);
  f->watching = 0;
}

static void watch(th_tail_file *f) {
  unwatch(f);
  /* Not fatal: without events the periodic check still finds growth. */
  if (uv_fs_event_start(&f->watch, on_change, f->path, 0) == 0) f->watching = 1;
}

static void close_file(th_tail_file *f) {
  unwatch(f);
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
}

/* Read a whole document (S3 object) once. */
static void read_whole(th_tail_file *f) {
  char *buf;
  size_t len;
  if (th_source_load(f->path, &buf, &len) < 0) return;
  th_source s = {f->tail->o.engine, f->path, f->tail->o.max_line};
  th_source_feed(&s, buf, len);
  free(buf);
}

/* Decide once, from the first bytes, whether a *.json file is NDJSON to
 * follow or a document to read whole. An empty file is followed. */
static int looks_whole(th_tail_file *f) {
  if (strlen(f->path) > 3 && strcmp(f->path + strlen(f->path) - 3, ".gz") == 0) return 1;
  char head[65536];
  ssize_t n = pread(f->fd, head, sizeof head, 0);
  return n > 0 && th_source_is_document(head, (size_t)n);
}

static int open_file(th_tail_file *f) {
  th_tail *t = f->tail;
  int fd = open(f->path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) < 0) {
    close(fd);
    fd = -1;
  }
  if (fd >= 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    fd = -1;
    errno = EISDIR;
  }
  if (fd < 0) {
    if (!f->reported) {
      th_log("open %s: %s (will keep checking for it)", f->path, strerror(errno));
      t->failed++;
    }
    f->reported = 1;
    f->seen = 1;  /* a file that appears later is new: read it from its start */
    return -1;
  }
  if (f->reported) {
    th_log("open %s: now readable, following it", f->path);
    t->failed--;
  }
  f->reported = 0;
  f->fd = fd;
  f->dev = st.st_dev;
  f->ino = st.st_ino;
  f->offset = 0;
  if (!f->seen && t->o.from_end) f->offset = (uint64_t)st.st_size;
  if (th_source_whole_name(f->path)) f->whole = looks_whole(f);
  if (f->whole && f->offset == 0) read_whole(f);
  th_framer_reset(&f->framer, f->offset);
  if (!f->seen) t->opened++;
  f->seen = 1;
  watch(f);
  return 0;
}

/* Read everything appended to the open file since the last read. */
static void drain(th_tail_file *f) {
  th_tail *t = f->tail;
  th_source s = {t->o.engine, f->path, t->o.max_line};
  for (;;) {
    ssize_t n = pread(f->fd, t->buf, READ_CHUNK, (off_t)f->offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      th_log("read %s: %s at offset %llu", f->path, strerror(errno),
             (unsigned long long)f->offset);
      return;
    }
    if (n == 0) return;
    if (th_framer_feed(&f->framer, t->buf, (size_t)n, th_source_line, &s) < 0) {
      th_log("read %s: out of memory at offset %llu", f->path, (unsigned long long)f->offset);
      return;
    }
    f->offset += (uint64_t)n;
  }
}

static void pump(th_tail_file *f) {
  if (f->fd < 0 && open_file(f) < 0) return;
  if (f->whole) return;

  struct stat st;
  if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < f->offset) {
    th_log("%s: truncated to %lld bytes (was read to %llu); reading it again from the start",
           f->path, (long long)st.st_size, (unsigned long long)f->offset);
    f->offset = 0;
    th_framer_reset(&f->framer, 0);
  }
  drain(f);

  /* The path now names another file (rotated by rename-and-create): the old
   * one is drained above; its unterminated last line, if any, will get no
   * newline any more, so it is processed as it is. */
  struct stat now;
  if (stat(f->path, &now) == 0 && (now.st_dev != f->dev || now.st_ino != f->ino)) {
    th_source s = {f->tail->o.engine, f->path, f->tail->o.max_line};
    th_framer_finish(&f->framer, th_source_line, &s);
    th_log("%s: replaced by a new file (rotated); following the new one from its start", f->path);
    close_file(f);
    if (open_file(f) == 0) drain(f);
  }
}

int th_tail_init(th_tail *t, uv_loop_t *loop, const th_tail_opts *o) {
  memset(t, 0, sizeof *t);
  t->loop = loop;
  t->o = *o;
  t->buf = malloc(READ_CHUNK);
  if (t->buf == NULL) return -ENOMEM;
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  return 0;
}

int th_tail_add(th_tail *t, const char *path) {
  th_tail_file **files = realloc(t->files, (t->nfiles + 1) * sizeof *files);
  if (files == NULL) return -ENOMEM;
  t->files = files;
  th_tail_file *f = calloc(1, sizeof *f);
  if (f == NULL || (f->path = strdup(path)) == NULL) {
    free(f);
    return -ENOMEM;
  }
  f->tail = t;
  f->fd = -1;
  th_framer_init(&f->framer, t->o.max_line, 0);
  uv_fs_event_init(t->loop, &f->watch);
  f->watch.data = f;
  t->files[t->nfiles++] = f;
  return 0;
}

int th_tail_start(th_tail *t) {
  for (size_t i = 0; i < t->nfiles; i++) pump(t->files[i]);
  th_output_flush(t->o.out);
  return uv_timer_start(&t->timer, on_timer, t->o.poll_ms, t->o.poll_ms);
}

void th_tail_close(th_tail *t) {
  on_timer(&t->timer);  /* what was appended up to the stop */
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t *)&t->timer, NULL);
  for (size_t i = 0; i < t->nfiles; i++) {
    close_file(t->files[i]);
    uv_close((uv_handle_t *)&t->files[i]->watch, NULL);
  }
}

void th_tail_free(th_tail *t) {
  for (size_t i = 0; i < t->nfiles; i++) {
    th_framer_free(&t->files[i]->framer);
    free(t->files[i]->path);
    free(t->files[i]);
  }
  free(t->files);
  free(t->buf);
  t->files = NULL;
  t->nfiles = 0;
}
