/* framer.c: newline framing with a bounded buffer (see framer.h). */
#include "framer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void th_framer_init(th_framer *f, size_t max_line, uint64_t offset) {
  memset(f, 0, sizeof *f);
  f->max_line = max_line;
  f->pos = f->start = offset;
}

void th_framer_free(th_framer *f) {
  free(f->buf);
  f->buf = NULL;
  f->len = f->cap = 0;
}

void th_framer_reset(th_framer *f, uint64_t offset) {
  f->len = 0;
  f->skipping = 0;
  f->pos = f->start = offset;
}

uint64_t th_framer_done(const th_framer *f) {
  return f->start;
}

/* raw: the record's bytes as read, its newline included if it has one. */
static void emit(const char *line, size_t raw, uint64_t off, th_line_cb cb, void *ud) {
  size_t len = raw;
  if (len > 0 && line[len - 1] == '\n') len--;
  if (len > 0 && line[len - 1] == '\r') len--;
  /* Blank lines separate nothing and are not records. */
  size_t i = 0;
  while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
  if (i == len) return;
  cb(ud, line, len, off, off + raw);
}

static int hold(th_framer *f, const char *data, size_t n) {
  if (f->len + n > f->cap) {
    size_t cap = f->cap ? f->cap : 4096;
    while (cap < f->len + n) cap *= 2;
    char *p = realloc(f->buf, cap);
    if (p == NULL) return -ENOMEM;
    f->buf = p;
    f->cap = cap;
  }
  memcpy(f->buf + f->len, data, n);
  f->len += n;
  return 0;
}

/* Called when the record so far plus chunk is longer than max_line: is the
 * one byte too many a CR? A CR before the newline is not content, so such a
 * record is not over-long, whether its newline is in this chunk or still to
 * come (the CR is then held, and the next byte decides). The CR may be the
 * last byte held, when its newline starts the next feed. */
static int only_cr_over(const th_framer *f, const char *p, size_t chunk) {
  if (f->len + chunk != f->max_line + 1) return 0;
  return (chunk > 0 ? p[chunk - 1] : f->buf[f->len - 1]) == '\r';
}

int th_framer_feed(th_framer *f, const char *data, size_t n, th_line_cb cb, void *ud) {
  const char *p = data, *end = data + n;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t chunk = (size_t)((nl ? nl : end) - p);
    if (f->skipping) {
      /* Over-long record: already reported, drop up to its newline. */
    } else if (f->len + chunk > f->max_line && !only_cr_over(f, p, chunk)) {
      cb(ud, NULL, f->len + chunk, f->start, 0);
      f->len = 0;
      f->skipping = 1;
    } else if (nl != NULL && f->len == 0) {
      emit(p, chunk + 1, f->start, cb, ud);  /* the common case: no copy */
    } else {
      int rc = hold(f, p, chunk + (nl != NULL));  /* with its newline: records are handed over as read */
      if (rc < 0) return rc;
      if (nl != NULL) {
        emit(f->buf, f->len, f->start, cb, ud);
        f->len = 0;
      }
    }
    f->pos += chunk;
    p += chunk;
    if (nl != NULL) {
      f->pos++;
      p++;
      f->skipping = 0;
      f->start = f->pos;
    }
  }
  return 0;
}

void th_framer_finish(th_framer *f, th_line_cb cb, void *ud) {
  if (!f->skipping && f->len > 0) emit(f->buf, f->len, f->start, cb, ud);
  f->len = 0;
  f->skipping = 0;
  f->start = f->pos;
}
