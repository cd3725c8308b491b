/* stdin.c: standard input as a source (see stdin.h).
 *
 * Two layers. The bytes of fd 0 go into `in`; work() takes them from there
 * within a turn's budget: plain, or inflated member by member. The content
 * that comes out goes to content(): NDJSON to the framer, a document into
 * `doc` until its unit (the plain input, or one gzip member) ends.
 */
#include "stdin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "log.h"
#include "source.h"

enum {
  IN_CHUNK = 64 << 10,       /* one read of fd 0 */
  OUT_CHUNK = 64 << 10,      /* one inflate call's output */
  TURN_BYTES = 1 << 20,      /* content handed over per turn */
  DECIDE_MAX = 4096,         /* first bytes looked at to tell a document from NDJSON */
  DOC_KEEP = 1 << 20         /* a document buffer larger than this is freed once handed over */
};
#define TURN_NS (50 * 1000000ULL)

enum { GZ_UNKNOWN, GZ_NO, GZ_YES, GZ_SKIP };
enum { K_UNDECIDED, K_LINES, K_WHOLE, K_SKIP };

static const char NAME[] = "standard input";

static void on_idle(uv_idle_t *h);

/* ---- the content --------------------------------------------------------------- */

static int blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* From the first bytes, as tfile.c's decide: JSON starting [ or {"Records" is
 * a whole document; anything else NDJSON; K_UNDECIDED while too few are in. */
static int decide(const char *b, size_t n) {
  size_t i = n >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
  while (i < n && blank(b[i])) i++;
  if (i == n) return n >= DECIDE_MAX ? K_LINES : K_UNDECIDED;
  if (b[i] == '[') return K_WHOLE;
  if (b[i] != '{') return K_LINES;
  size_t j = i + 1;
  while (j < n && blank(b[j])) j++;
  if (n - j < 9) return n >= DECIDE_MAX ? K_LINES : K_UNDECIDED;
  return memcmp(b + j, "\"Records\"", 9) == 0 ? K_WHOLE : K_LINES;
}

/* Append to doc. Returns 0, or -1 when it would pass TH_MAX_DOCUMENT or
 * memory is short. */
static int hold(th_stdin *s, const char *p, size_t n) {
  if (s->doc_len + n > s->doc_cap) {
    size_t cap = s->doc_cap ? s->doc_cap : (1u << 16);
    while (cap < s->doc_len + n && cap <= TH_MAX_DOCUMENT) cap *= 2;
    if (cap < s->doc_len + n || s->doc_len + n > TH_MAX_DOCUMENT) return -1;
    char *d = realloc(s->doc, cap);
    if (d == NULL) return -1;
    s->doc = d;
    s->doc_cap = cap;
  }
  memcpy(s->doc + s->doc_len, p, n);
  s->doc_len += n;
  return 0;
}

/* NDJSON bytes to the framer (its offsets follow pos). */
static void frame(th_stdin *s, const char *p, size_t n) {
  th_source src = {s->stream, s->o.max_line};
  if (th_framer_feed(&s->framer, p, n, th_source_line, &src) < 0) {
    th_log("read %s: out of memory at offset %llu; the line there is skipped", NAME,
           (unsigned long long)s->framer.pos);
    th_framer_reset(&s->framer, s->framer.pos + n);
  }
}

/* n bytes of content, at offset pos. */
static void content(th_stdin *s, const char *p, size_t n) {
  uint64_t at = s->pos;
  s->pos += n;
  switch (s->kind) {
    case K_LINES:
      frame(s, p, n);
      return;
    case K_SKIP:
      return;
    case K_UNDECIDED:
    case K_WHOLE:
      break;
  }
  if (hold(s, p, n) < 0) {
    th_log("read %s: a document larger than %zu bytes (or out of memory) at offset %llu; skipped to its end",
           NAME, TH_MAX_DOCUMENT, (unsigned long long)(at - s->doc_len));
    s->kind = K_SKIP;
    s->doc_len = 0;
    return;
  }
  if (s->kind == K_UNDECIDED && (s->kind = decide(s->doc, s->doc_len)) == K_LINES) {
    frame(s, s->doc, s->doc_len);
    s->doc_len = 0;
  }
}

/* The unit at hand (the plain input, or one gzip member) is over: a last
 * line without its newline is a record, a document is handed over. */
static void unit_end(th_stdin *s) {
  th_source src = {s->stream, s->o.max_line};
  if (s->kind == K_UNDECIDED) frame(s, s->doc, s->doc_len);  /* too short to tell: lines */
  if (s->kind == K_UNDECIDED || s->kind == K_LINES) th_framer_finish(&s->framer, th_source_line, &src);
  if (s->kind == K_WHOLE) th_stream_document(s->stream, s->doc, s->doc_len, s->pos);
  th_framer_reset(&s->framer, s->pos);
  s->kind = K_UNDECIDED;
  s->doc_len = 0;
  if (s->doc_cap > DOC_KEEP) {
    free(s->doc);
    s->doc = NULL;
    s->doc_cap = 0;
  }
}

/* ---- the bytes ------------------------------------------------------------------ */

/* Everything read is handed over: say so, once. */
static void end(th_stdin *s) {
  if (s->gz == GZ_YES)
    th_log("read %s: truncated gzip (unexpected end of input) after %llu bytes of content; reading what "
           "came before", NAME, (unsigned long long)s->pos);
  unit_end(s);
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

/* Inflate what is held; returns the content bytes it gave, and sets *stuck
 * when it cannot go on without more input. */
static size_t inflate_some(th_stdin *s, int *stuck) {
  z_stream *z = s->z;
  size_t avail = s->in_len - s->in_pos;
  z->next_in = (unsigned char *)s->in + s->in_pos;
  z->avail_in = (unsigned)avail;
  z->next_out = (unsigned char *)s->out;
  z->avail_out = OUT_CHUNK;
  int zr = inflate(z, Z_NO_FLUSH);
  size_t used = avail - z->avail_in, got = OUT_CHUNK - z->avail_out;
  s->in_pos += used;
  if (got > 0) content(s, s->out, got);
  if (zr == Z_STREAM_END) {  /* a member is over: another may follow */
    unit_end(s);
    s->members++;
    s->gz = GZ_UNKNOWN;
    inflateReset(z);
  } else if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT || zr == Z_MEM_ERROR) {
    th_log("read %s: %s (%s) after %llu bytes of content; the rest is skipped", NAME,
           zr == Z_MEM_ERROR ? "out of memory in gzip" : "damaged gzip", z->msg ? z->msg : "bad data",
           (unsigned long long)s->pos);
    unit_end(s);
    s->gz = GZ_SKIP;
  } else if (used == 0 && got == 0) {
    *stuck = 1;  /* Z_BUF_ERROR: the rest of the member is not read yet */
  }
  return got;
}

/* Work off what is held, within a turn's budget, then see what comes next:
 * more of what is held on the next turn, more input, or a pause while the
 * dispatcher is busy. */
static void work(th_stdin *s) {
  if (s->stopping || s->ended) return;
  uint64_t budget = TURN_BYTES, deadline = uv_hrtime() + TURN_NS;
  s->starved = 0;
  while (s->in_pos < s->in_len && !th_dispatch_busy(s->o.dispatch)) {
    if (budget == 0 || uv_hrtime() > deadline) break;
    size_t avail = s->in_len - s->in_pos;
    const unsigned char *b = (const unsigned char *)s->in + s->in_pos;
    if (s->gz == GZ_UNKNOWN) {
      if (avail < 2 && !s->eof) {
        s->starved = 1;
        break;
      }
      if (avail >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        if (s->z == NULL) {
          s->z = calloc(1, sizeof *s->z);
          s->out = malloc(OUT_CHUNK);
          if (s->z == NULL || s->out == NULL || inflateInit2(s->z, 15 + 16) != Z_OK) {  /* 16: gzip */
            free(s->z);
            s->z = NULL;
            th_log("read %s: gzip, and out of memory to inflate it; skipped", NAME);
            s->gz = GZ_SKIP;
            continue;
          }
        }
        s->gz = GZ_YES;
      } else if (s->members > 0) {
        th_log("read %s: the bytes after gzip member %u (at byte %llu of the input) are no gzip; skipped",
               NAME, s->members, (unsigned long long)(s->bytes_in - avail));
        s->gz = GZ_SKIP;
      } else {
        s->gz = GZ_NO;
      }
    }
    if (s->gz == GZ_SKIP) {
      s->in_pos = s->in_len;
    } else if (s->gz == GZ_NO) {
      size_t n = avail < budget ? avail : (size_t)budget;
      content(s, (const char *)b, n);
      s->in_pos += n;
      budget -= n;
    } else {
      int stuck = 0;
      size_t got = inflate_some(s, &stuck);
      budget -= got < budget ? got : budget;
      if (stuck) {
        s->starved = 1;
        break;
      }
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
  th_framer_init(&s->framer, o->max_line, 0);
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
  return (th_file_stat){NAME, th_stream_committed(s->stream)->offset, s->pos};
}

void th_stdin_free(th_stdin *s) {
  th_framer_free(&s->framer);
  if (s->z) inflateEnd(s->z);
  free(s->z);
  free(s->out);
  free(s->doc);
  free(s->in);
  if (s->stream) th_stream_close(s->stream);
  memset(s, 0, sizeof *s);
}
