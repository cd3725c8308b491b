/* stdin.c: standard input as a source (see stdin.h).
 *
 * The bytes of fd 0 go into `in`; work() hands them from there to the
 * unpacker (unpack.h), a step at a time within a turn's budget, and its
 * records to the stream.
 */
#include "stdin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "source.h"

enum {
  IN_CHUNK = 64 << 10,       /* one read of fd 0 */
  TURN_BYTES = 1 << 20       /* content handed over per turn */
};
#define TURN_NS (50 * 1000000ULL)

static const char NAME[] = "standard input";

static void on_idle(uv_idle_t *h);

/* ---- what comes out ------------------------------------------------------------- */

static void on_line(void *ud, const char *line, size_t len, uint64_t offset, uint64_t end) {
  th_stdin *s = ud;
  th_stream_line(s->stream, line, len, offset, end, s->o.max_line);
}

static void on_document(void *ud, const char *buf, size_t len, uint64_t offset, uint64_t end) {
  th_stdin *s = ud;
  (void)offset;
  if (buf != NULL) th_stream_document(s->stream, buf, len, end);  /* NULL: too large, reported */
}

static void on_report(void *ud, int what, const char *msg) {
  (void)ud;
  (void)what;
  th_log("%s", msg);
}

/* ---- the bytes ------------------------------------------------------------------ */

/* Everything read is handed over: say so, once. */
static void end(th_stdin *s) {
  th_unpack_finish(&s->u);
  th_stream_flush(s->stream);
  s->ended = 1;
  if (s->turning) uv_idle_stop(&s->idle);
  s->turning = 0;
  if (s->o.on_end) s->o.on_end(!s->failed, s->o.ud);
}

static void pause_reading(th_stdin *s) {
  if (s->reading) uv_read_stop((uv_stream_t *)&s->h);
  s->reading = 0;
}

static void turn_soon(th_stdin *s) {
  if (!s->turning) uv_idle_start(&s->idle, on_idle);
  s->turning = 1;
}

static void turn_stop(th_stdin *s) {
  if (s->turning) uv_idle_stop(&s->idle);
  s->turning = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf);

/* Work off what is held, within a turn's budget, then see what comes next:
 * more of what is held on the next turn, more input, or a pause while the
 * dispatcher is busy. */
static void work(th_stdin *s) {
  if (s->stopping || s->ended) return;
  uint64_t budget = TURN_BYTES, deadline = uv_hrtime() + TURN_NS;
  s->starved = 0;
  while (s->in_pos < s->in_len && !th_dispatch_busy(s->o.dispatch)) {
    if (budget == 0 || uv_hrtime() > deadline) break;
    size_t used;
    uint64_t made;
    int starved = th_unpack_step(&s->u, s->in + s->in_pos, s->in_len - s->in_pos, s->eof, budget, &used, &made);
    s->in_pos += used;
    budget -= made < budget ? made : budget;
    if (starved) {
      s->starved = 1;
      break;
    }
  }
  if (s->in_pos == s->in_len) s->in_pos = s->in_len = 0;
  th_stream_flush(s->stream);
  int held = s->in_len > s->in_pos && !s->starved;
  if (s->eof && !held) {
    end(s);
    return;
  }
  if (th_dispatch_busy(s->o.dispatch)) {  /* th_stdin_kick goes on */
    pause_reading(s);
    turn_stop(s);
    return;
  }
  if (held) {  /* the budget is spent: on the next turn */
    pause_reading(s);
    turn_soon(s);
    return;
  }
  if (!s->streamed) {  /* read(2) on the next turn */
    turn_soon(s);
    return;
  }
  turn_stop(s);
  if (!s->reading) {
    int rc = uv_read_start((uv_stream_t *)&s->h, on_alloc, on_read);
    if (rc < 0) {
      th_log("read %s: %s", NAME, uv_strerror(rc));
      s->eof = s->failed = 1;
      end(s);
      return;
    }
    s->reading = 1;
  }
}

/* Bytes read (n > 0), the end (n == 0), or an error (-errno). */
static void got(th_stdin *s, ssize_t n) {
  if (n > 0) {
    s->in_len += (size_t)n;
    s->bytes_in += (uint64_t)n;
    return;
  }
  if (n < 0) {
    th_log("read %s: %s after %llu bytes", NAME, uv_strerror((int)n), (unsigned long long)s->bytes_in);
    s->failed = 1;
  }
  s->eof = 1;
  pause_reading(s);
}

/* Room at the end of `in`, for the next read. */
static size_t room(th_stdin *s, char **at) {
  if (s->in_pos > 0) {  /* what is held moves to the front */
    memmove(s->in, s->in + s->in_pos, s->in_len - s->in_pos);
    s->in_len -= s->in_pos;
    s->in_pos = 0;
  }
  *at = s->in + s->in_len;
  return IN_CHUNK - s->in_len;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  th_stdin *s = h->data;
  char *at;
  size_t n = room(s, &at);
  *buf = uv_buf_init(at, (unsigned)n);
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  th_stdin *s = h->data;
  if (n == 0 || n == UV_ENOBUFS || s->stopping) return;  /* nothing now */
  got(s, n == UV_EOF ? 0 : n);
  work(s);
}

/* A turn: read(2) a chunk of a file, or go on with what is held. */
static void on_idle(uv_idle_t *h) {
  th_stdin *s = h->data;
  if (!s->streamed && !s->eof && (s->in_pos == s->in_len || s->starved)) {
    char *at;
    size_t want = room(s, &at);
    ssize_t n = read(STDIN_FILENO, at, want);
    if (n < 0 && errno == EINTR) return;
    got(s, n < 0 ? -errno : n);
  }
  work(s);
}

/* ---- lifecycle ------------------------------------------------------------------- */

int th_stdin_init(th_stdin *s, uv_loop_t *loop, const th_stdin_opts *o) {
  memset(s, 0, sizeof *s);
  s->loop = loop;
  s->o = *o;
  s->flags = -1;
  s->in = malloc(IN_CHUNK);
  s->stream = th_stream_open(o->dispatch, NAME, 0);
  if (s->in == NULL || s->stream == NULL) {
    free(s->in);
    s->in = NULL;
    if (s->stream) th_stream_close(s->stream);
    s->stream = NULL;
    return -ENOMEM;
  }
  th_unpack_opts uo = {.name = NAME, .max_line = o->max_line, .max_document = TH_MAX_DOCUMENT,
                       .on_line = on_line, .on_document = on_document, .on_report = on_report, .ud = s};
  th_unpack_init(&s->u, &uo);
  uv_idle_init(loop, &s->idle);
  s->idle.data = s;
  return 0;
}

void th_stdin_start(th_stdin *s) {
  s->flags = fcntl(STDIN_FILENO, F_GETFL);
  uv_handle_type type = uv_guess_handle(STDIN_FILENO);
  int rc = 0;
  if (type == UV_TTY) {
    rc = uv_tty_init(s->loop, &s->h.tty, STDIN_FILENO, 1);
    s->has_h = rc == 0;
  } else if (type == UV_NAMED_PIPE || type == UV_TCP || type == UV_UDP) {
    uv_pipe_init(s->loop, &s->h.pipe, 0);
    s->has_h = 1;
    rc = uv_pipe_open(&s->h.pipe, STDIN_FILENO);
  }
  /* Else a file, a device, or not open: read(2) says which. */
  s->streamed = s->has_h;
  if (s->has_h) s->h.pipe.data = s;
  if (rc < 0) {
    th_log("read %s: %s", NAME, uv_strerror(rc));
    s->eof = s->failed = 1;
  }
  work(s);
}

void th_stdin_kick(th_stdin *s) {
  if (!s->stopping && !s->ended && !th_dispatch_busy(s->o.dispatch)) turn_soon(s);
}

void th_stdin_stop(th_stdin *s) {
  if (s->stopping) return;
  s->stopping = 1;
  if (s->has_h) pause_reading(s);
  turn_stop(s);
  if (s->stream) th_stream_flush(s->stream);
}

void th_stdin_close(th_stdin *s) {
  th_stdin_stop(s);
  if (s->has_h) uv_close((uv_handle_t *)&s->h, NULL);
  uv_close((uv_handle_t *)&s->idle, NULL);
  /* libuv made it non-blocking; whoever reads it next expects it as it was. */
  if (s->flags >= 0) fcntl(STDIN_FILENO, F_SETFL, s->flags);
}

th_file_stat th_stdin_progress(const th_stdin *s) {
  return (th_file_stat){NAME, th_stream_committed(s->stream)->offset, s->u.pos};
}

void th_stdin_free(th_stdin *s) {
  th_unpack_free(&s->u);
  free(s->in);
  if (s->stream) th_stream_close(s->stream);
  memset(s, 0, sizeof *s);
}
