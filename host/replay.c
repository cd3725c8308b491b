/* replay.c: files read once, in order, a chunk per turn (see replay.h). */
#include "replay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "progress.h"
#include "source.h"

/* Read in 64 KiB, as the tailer does: the chunk stays in the core's L2 cache
 * between the kernel's copy and the prefilter's scan of it. With 1 MiB reads
 * the quiet corpus took 0.45 to 0.6 CPU s against 0.30 (one worker). */
enum { CHUNK = 64 << 10 };

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

/* "-": standard input. NDJSON is read as it comes; gzip (its magic bytes
 * first) is copied to a temporary file and read whole, as a .gz file is.
 * Returns 1 when r->fd reads the rest (the first chunk already fed), 0 when
 * it was read whole, -1 on failure. */
static int open_stdin(th_replay *r) {
  ssize_t n;
  do n = read(STDIN_FILENO, r->buf, CHUNK);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    th_log("read standard input: %s", strerror(errno));
    return -1;
  }
  if (n >= 2 && (unsigned char)r->buf[0] == 0x1f && (unsigned char)r->buf[1] == 0x8b) {
    char tmp[] = "/tmp/trailhound-stdin-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) {
      th_log("standard input is gzip, and a temporary file for it cannot be made: %s", strerror(errno));
      return -1;
    }
    unlink(tmp);  /* gone at the end whatever happens; read through /proc */
    int ok = 1;
    while (n > 0 && ok) {
      ok = write(fd, r->buf, (size_t)n) == n;
      do n = read(STDIN_FILENO, r->buf, CHUNK);
      while (n < 0 && errno == EINTR);
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (ok && n == 0) read_whole(r, path);
    else th_log("standard input: %s", n < 0 ? strerror(errno) : "cannot keep it to read whole");
    close(fd);
    return ok && n == 0 ? 0 : -1;
  }
  r->fd = STDIN_FILENO;
  r->path = "standard input";
  th_framer_init(&r->framer, r->max_line, 0);
  th_progress_bytes((uint64_t)n);
  th_source src = {r->stream, r->max_line};
  if (n > 0) th_framer_feed(&r->framer, r->buf, (size_t)n, th_source_line, &src);
  th_stream_flush(r->stream);
  return 1;
}

/* How messages and alerts name a FILE: "-" is standard input, as run says it. */
static const char *shown(const char *path) { return strcmp(path, "-") == 0 ? "standard input" : path; }

/* Open the next file; 0 when there is none left. */
static int open_next(th_replay *r) {
  while (r->next < r->nfiles) {
    const char *path = r->files[r->next++];
    if (th_stream_rename(r->stream, shown(path)) < 0) {
      th_log("%s: out of memory", path);
      r->failed++;
      continue;
    }
    if (strcmp(path, "-") == 0) {
      int got = open_stdin(r);
      if (got < 0) r->failed++;
      if (got < 0) continue;
      return 1;
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
  r->stream = th_stream_open(d, shown(nfiles > 0 ? files[0] : "-"), 0);
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

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char **th_replay_expand(char **files, int n, int *nout) {
  size_t cap = (size_t)n + 16, count = 0;
  char **out = malloc(cap * sizeof *out);
  if (out == NULL) return NULL;
  for (int i = 0; i < n; i++) {
    struct stat st;
    DIR *d = strcmp(files[i], "-") != 0 && stat(files[i], &st) == 0 && S_ISDIR(st.st_mode) ? opendir(files[i]) : NULL;
    size_t first = count;
    if (d != NULL) {  /* a folder: its files, by name (hidden ones and subfolders left out) */
      struct dirent *de;
      while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        size_t len = strlen(files[i]) + strlen(de->d_name) + 2;
        char *p = malloc(len);
        if (p == NULL) continue;
        snprintf(p, len, "%s%s%s", files[i], files[i][strlen(files[i]) - 1] == '/' ? "" : "/", de->d_name);
        struct stat fst;
        if (stat(p, &fst) != 0 || !S_ISREG(fst.st_mode)) {
          free(p);
          continue;
        }
        if (count == cap) {
          char **more = realloc(out, (cap *= 2) * sizeof *out);
          if (more == NULL) {
            free(p);
            break;
          }
          out = more;
        }
        out[count++] = p;
      }
      closedir(d);
      qsort(out + first, count - first, sizeof *out, by_name);
      if (count == first) th_log("%s: a folder with no file in it", files[i]);
      continue;
    }
    if (count == cap) {
      char **more = realloc(out, (cap *= 2) * sizeof *out);
      if (more == NULL) break;
      out = more;
    }
    out[count++] = strdup(files[i]);
  }
  *nout = (int)count;
  return out;
}
