/* framer_fuzz.c: the newline framer (host/framer.c) on any bytes, cut any way.
 *
 * The input is the content of a file. It is framed in one piece, in two
 * pieces cut at a random place, in random small pieces and byte by byte
 * (each piece in a block of its own size, so a look behind a piece's start
 * is caught), with a max_line chosen near the lengths of its lines, from a
 * file offset that is 0 or large. What must hold:
 *
 *  - every record lies inside what was fed: its bytes are the input's bytes
 *    at [offset, end), its len leaves out only the newline and one CR;
 *  - offsets strictly increase;
 *  - the records and the skipped over-long lines are exactly the input's
 *    non-blank lines, in order: a model written from framer.h says which;
 *  - the result is the same whatever the input was cut into;
 *  - th_framer_done is, after every feed, the offset just after the last
 *    newline fed: never inside a partial line, never behind a whole one;
 *  - th_framer_reset forgets what was held before it.
 */
#include <inttypes.h>
#include <string.h>

#include "framer.h"
#include "fuzz.h"

typedef struct rec {
  uint64_t off;  /* where the record starts in the file */
  uint64_t end;  /* just after it (its newline included), 0 for a skipped line */
  size_t len;    /* its content's length; 0 for a skipped line */
} rec;

/* What one framing of the input produced. */
typedef struct out {
  const uint8_t *in;  /* the whole input */
  uint64_t base;      /* file offset of in[0] */
  uint64_t fed;       /* bytes of in fed so far */
  rec *r;             /* records in the order given */
  size_t n, cap;
} out;

static void add(out *o, uint64_t off, uint64_t end, size_t len) {
  if (o->n == o->cap) {
    o->cap = o->cap ? o->cap * 2 : 64;
    o->r = realloc(o->r, o->cap * sizeof *o->r);
    if (o->r == NULL) abort();
  }
  o->r[o->n++] = (rec){off, end, len};
}

static void on_line(void *ud, const char *line, size_t len, uint64_t off, uint64_t end) {
  out *o = ud;
  FUZZ_CHECK(off >= o->base && off - o->base < o->fed,
             "record at %" PRIu64 " is outside the %" PRIu64 " bytes fed from %" PRIu64, off, o->fed,
             o->base);
  if (o->n > 0)
    FUZZ_CHECK(off > o->r[o->n - 1].off, "record at %" PRIu64 " after one at %" PRIu64, off,
               o->r[o->n - 1].off);
  if (line == NULL) {
    FUZZ_CHECK(end == 0, "a skipped line at %" PRIu64 " has end %" PRIu64, off, end);
    add(o, off, 0, 0);
    return;
  }
  FUZZ_CHECK(end > off && end - o->base <= o->fed,
             "record [%" PRIu64 ", %" PRIu64 ") is outside the %" PRIu64 " bytes fed", off, end, o->fed);
  FUZZ_CHECK(len <= end - off, "record at %" PRIu64 ": len %zu is longer than its bytes", off, len);
  FUZZ_CHECK(memcmp(line, o->in + (off - o->base), (size_t)(end - off)) == 0,
             "record at %" PRIu64 ": its bytes are not the input's", off);
  add(o, off, end, len);
}

static int blank(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t') return 0;
  return 1;
}

/* A line's content length: without its newline and one CR before it. */
static size_t content(const uint8_t *in, size_t s, size_t e) {
  size_t len = e - s;
  return len > 0 && in[e - 1] == '\r' ? len - 1 : len;
}

/* What framer.h says comes out of in[0..n): every line, over-long ones as
 * skipped, blank ones not at all, and the unterminated last one only when
 * finished (unless over-long: that is known as soon as it is fed). */
static void model(const uint8_t *in, size_t n, uint64_t base, size_t max, int finished, out *m) {
  for (size_t s = 0; s < n;) {
    const uint8_t *nl = memchr(in + s, '\n', n - s);
    size_t e = nl ? (size_t)(nl - in) : n;
    size_t next = nl ? e + 1 : n;
    size_t len = content(in, s, e);
    if (len > max)
      add(m, base + s, 0, 0);
    else if (!blank(in + s, len) && (nl != NULL || finished))
      add(m, base + s, base + next, len);
    s = next;
  }
}

static void same(const out *got, const out *want, const char *how, size_t max) {
  for (size_t i = 0; i < got->n || i < want->n; i++) {
    FUZZ_CHECK(i < got->n && i < want->n && got->r[i].off == want->r[i].off &&
                   got->r[i].end == want->r[i].end && got->r[i].len == want->r[i].len,
               "%s, max_line %zu, from offset %" PRIu64 ": record %zu of %zu is "
               "(%" PRIu64 ", %" PRIu64 ", len %zu), framer.h says %zu records, this one "
               "(%" PRIu64 ", %" PRIu64 ", len %zu)",
               how, max, want->base, i, got->n, i < got->n ? got->r[i].off : 0,
               i < got->n ? got->r[i].end : 0, i < got->n ? got->r[i].len : 0, want->n,
               i < want->n ? want->r[i].off : 0, i < want->n ? want->r[i].end : 0,
               i < want->n ? want->r[i].len : 0);
  }
}

/* Feed in[0..n) cut at the given places, each piece copied to a block of
 * its own size (one reused block when they are all one byte), checking
 * th_framer_done after every piece; then compare with the model, before
 * finishing and after. */
static void frame(const uint8_t *in, size_t n, uint64_t base, size_t max, const size_t *cuts,
                  size_t ncuts, const char *how) {
  out got = {in, base, 0, NULL, 0, 0}, want = {in, base, 0, NULL, 0, 0};
  th_framer f;
  th_framer_init(&f, max, base);
  char *byte = fuzz_dup("", 1);
  size_t at = 0, resume = 0;  /* just after the last newline fed */
  for (size_t i = 0; i <= ncuts; i++) {
    size_t to = i < ncuts ? cuts[i] : n;
    char *piece = to - at == 1 ? byte : fuzz_dup(in + at, to - at);
    if (piece == byte) *byte = (char)in[at];
    got.fed = to;
    FUZZ_CHECK(th_framer_feed(&f, piece, to - at, on_line, &got) == 0, "%s: feed failed", how);
    if (piece != byte) free(piece);
    for (size_t k = at; k < to; k++)
      if (in[k] == '\n') resume = k + 1;
    FUZZ_CHECK(th_framer_done(&f) == base + resume,
               "%s, max_line %zu: after %zu bytes th_framer_done is %" PRIu64 ", the last newline "
               "fed ends at %" PRIu64,
               how, max, to, th_framer_done(&f), base + resume);
    at = to;
  }
  free(byte);
  model(in, n, base, max, 0, &want);
  same(&got, &want, how, max);
  th_framer_finish(&f, on_line, &got);
  FUZZ_CHECK(th_framer_done(&f) == base + n, "%s: th_framer_done is not the end after finish", how);
  want.n = 0;
  model(in, n, base, max, 1, &want);
  same(&got, &want, how, max);
  th_framer_free(&f);
  free(got.r);
  free(want.r);
}

/* A max_line near where the input's lines are interesting: the length of
 * one of its lines, one more or less, tiny ones, or the default. */
static size_t pick_max(fuzz_rng *r, const uint8_t *in, size_t n) {
  switch (fuzz_below(r, 6)) {
  case 0:
    return (size_t)fuzz_below(r, 5);
  case 1:
    return (size_t)fuzz_below(r, 64);
  case 2:
    return (size_t)1 << 20;
  default: {
    if (n == 0) return 0;
    size_t at = (size_t)fuzz_below(r, n), s = at, e = at;
    while (s > 0 && in[s - 1] != '\n') s--;
    while (e < n && in[e] != '\n') e++;
    size_t len = content(in, s, e);
    int delta = (int)fuzz_below(r, 3) - 1;
    if (delta < 0) return len > 0 ? len - 1 : 0;
    return len + (size_t)delta;
  }
  }
}

static int by_value(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_rng r = fuzz_rng_of(data, size);
  size_t max = pick_max(&r, data, size);
  uint64_t base = fuzz_below(&r, 2) ? 0 : fuzz_next(&r) >> 2;

  frame(data, size, base, max, NULL, 0, "one piece");

  size_t cut = (size_t)fuzz_below(&r, size + 1);
  frame(data, size, base, max, &cut, 1, "two pieces");

  size_t ncuts = size < 64 ? size : 64, *cuts = malloc((ncuts + 1) * sizeof *cuts);
  if (cuts == NULL) abort();
  for (size_t i = 0; i < ncuts; i++) cuts[i] = (size_t)fuzz_below(&r, size + 1);
  qsort(cuts, ncuts, sizeof *cuts, by_value);  /* equal cuts: empty feeds, allowed */
  frame(data, size, base, max, cuts, ncuts, "random pieces");
  free(cuts);

  if (size <= 4096) {
    cuts = malloc((size + 1) * sizeof *cuts);
    if (cuts == NULL) abort();
    for (size_t i = 0; i < size; i++) cuts[i] = i + 1;
    frame(data, size, base, max, cuts, size ? size - 1 : 0, "byte by byte");
    free(cuts);
  }

  /* A reset in the middle of a line, or of a skipped one, leaves nothing behind. */
  th_framer f;
  th_framer_init(&f, max, 7);
  out junk = {data, 7, 0, NULL, 0, 0};
  size_t from = (size_t)fuzz_below(&r, size + 1);
  junk.in = data + from;
  junk.fed = size - from;
  char *piece = fuzz_dup(data + from, size - from);
  FUZZ_CHECK(th_framer_feed(&f, piece, size - from, on_line, &junk) == 0, "feed failed");
  free(piece);
  free(junk.r);
  th_framer_reset(&f, base);
  out got = {data, base, size, NULL, 0, 0}, want = {data, base, 0, NULL, 0, 0};
  piece = fuzz_dup(data, size);
  FUZZ_CHECK(th_framer_feed(&f, piece, size, on_line, &got) == 0, "feed failed");
  free(piece);
  th_framer_finish(&f, on_line, &got);
  model(data, size, base, max, 1, &want);
  same(&got, &want, "after a reset", max);
  th_framer_free(&f);
  free(got.r);
  free(want.r);
  return 0;
}
