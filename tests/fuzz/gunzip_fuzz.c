/* gunzip_fuzz.c: gzip in memory inflated whole (th_gunzip,
 * host/worker/gunzip.c), what thsys.gunzip gives explain and dev for a .gz
 * file, on any bytes.
 *
 * The input is taken as gzip data as it is, and gzipped here with zlib: in
 * one member, in several (what `cat a.gz b.gz` makes), with bytes after the
 * last member, cut short, and with a byte changed. The largest content
 * allowed is picked near the content's size (exactly it, one less, one
 * more), or small, or 1 GiB. What must hold, each time:
 *
 *  - the answer is what a reference says: zlib's one-shot inflate of each
 *    member in turn, while two gzip magic bytes follow; the content is every
 *    member's, in order, unless a member is damaged (an error "damaged
 *    gzip"), the input ends inside one ("truncated gzip"), or the content
 *    is larger than allowed ("larger than");
 *  - the input gzipped, in one member or several, with or without bytes
 *    that are no gzip after it, gives the input back;
 *  - nothing is read past the input (it is in a block of its own size),
 *    the error is a string that fits, and nothing is given on an error.
 */
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "worker/gunzip.h"

enum { OK, DAMAGED, TRUNCATED, LARGE };
static const char *WHY[] = {"content", "damaged gzip", "truncated gzip", "larger than"};

typedef struct buf {
  uint8_t *p;
  size_t len, cap;
} buf;

static void room(buf *b, size_t need) {
  if (need <= b->cap) return;
  while (b->cap < need) b->cap = b->cap ? b->cap * 2 : 4096;
  b->p = realloc(b->p, b->cap);
  if (b->p == NULL) abort();
}

static void put(buf *b, const void *p, size_t n) {
  room(b, b->len + n);
  if (n > 0) memcpy(b->p + b->len, p, n);
  b->len += n;
}

static int magic(const uint8_t *p, size_t n) { return n >= 2 && p[0] == 0x1f && p[1] == 0x8b; }

/* The reference: each member inflated by zlib in one call with all of the
 * rest of the input, while gzip's magic follows; at most max + 1 bytes of
 * content (one more is too many). The content in *out. */
static int reference(const uint8_t *in, size_t n, size_t max, buf *out) {
  out->len = 0;
  size_t at = 0;
  for (;;) {
    z_stream z;
    memset(&z, 0, sizeof z);
    FUZZ_CHECK(inflateInit2(&z, 15 + 16) == Z_OK, "inflateInit2");
    z.next_in = (Bytef *)in + at;
    z.avail_in = (uInt)(n - at);
    int zr;
    for (;;) {
      size_t limit = max + 1 - out->len;  /* out->len <= max here */
      room(out, out->len + (limit < 4096 ? limit : 4096));  /* it doubles */
      size_t give = out->cap - out->len < limit ? out->cap - out->len : limit;
      z.next_out = out->p + out->len;
      z.avail_out = (uInt)give;
      zr = inflate(&z, Z_NO_FLUSH);
      out->len += give - z.avail_out;
      if (zr != Z_OK || z.avail_out > 0 || out->len > max) break;  /* else: more room */
    }
    at = n - z.avail_in;
    inflateEnd(&z);
    if (out->len > max) return LARGE;
    if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT) return DAMAGED;
    FUZZ_CHECK(zr == Z_STREAM_END || zr == Z_OK || zr == Z_BUF_ERROR, "inflate: %d", zr);
    if (zr != Z_STREAM_END) {
      FUZZ_CHECK(z.avail_in == 0, "inflate stopped with %u bytes of input left", z.avail_in);
      return TRUNCATED;
    }
    if (!magic(in + at, n - at)) return OK;
  }
}

/* th_gunzip on in[0..n), in a block of exactly n bytes, against the
 * reference. Returns what it said (OK, DAMAGED, ...); the content in *ref. */
static int check(const uint8_t *in, size_t n, size_t max, const char *what, buf *ref) {
  int want = reference(in, n, max, ref);
  char sentinel, *c = fuzz_dup(in, n), *out = &sentinel, err[160];
  size_t len = 7;
  memset(err, 'x', sizeof err);
  int rc = th_gunzip((const unsigned char *)c, n, max, &out, &len, err, sizeof err);
  free(c);
  FUZZ_CHECK(rc == 0 || rc == -1, "%s: returned %d", what, rc);
  if (rc == 0) {
    FUZZ_CHECK(want == OK, "%s, at most %zu bytes: %zu bytes of content, where zlib says %s (%zu bytes)", what,
               max, len, WHY[want], ref->len);
    FUZZ_CHECK(out != NULL && len == ref->len && (len == 0 || memcmp(out, ref->p, len) == 0),
               "%s, at most %zu bytes: %zu bytes of content, zlib says these %zu", what, max, len, ref->len);
    free(out);
    return OK;
  }
  FUZZ_CHECK(out == NULL && len == 0, "%s: an error, and content", what);
  FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0', "%s: the error is no string", what);
  FUZZ_CHECK(want != OK, "%s, at most %zu bytes: '%s', where zlib gives %zu bytes of content", what, max, err,
             ref->len);
  FUZZ_CHECK(strncmp(err, WHY[want], strlen(WHY[want])) == 0, "%s, at most %zu bytes: '%s', where zlib says %s",
             what, max, err, WHY[want]);
  return want;
}

/* in gzipped, appended to b: level, window and memory picked by the
 * generator (small ones mostly: zlib clears what it allocates). */
static void gzip(const uint8_t *in, size_t n, fuzz_rng *r, buf *b) {
  int level = (int)fuzz_below(r, 10), bits = 9 + (int)fuzz_below(r, 4), mem = 1 + (int)fuzz_below(r, 3);
  if (fuzz_below(r, 8) == 0) {  /* zlib's defaults */
    bits = 15;
    mem = 8;
  }
  z_stream z;
  memset(&z, 0, sizeof z);
  FUZZ_CHECK(deflateInit2(&z, level, Z_DEFLATED, bits + 16, mem, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
  room(b, b->len + deflateBound(&z, (uLong)n) + 32);
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = b->p + b->len;
  z.avail_out = (uInt)(b->cap - b->len);
  FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  b->len += z.total_out;
  deflateEnd(&z);
}

/* The largest content allowed: near n, small, or what thsys.gunzip allows. */
static size_t pick_max(fuzz_rng *r, size_t n) {
  switch (fuzz_below(r, 4)) {
    case 0: return (size_t)1 << 30;
    case 1: return (size_t)fuzz_below(r, 2 * n + 2);
    default: return n + 1 - (size_t)fuzz_below(r, n > 0 ? 3 : 2);  /* n + 1, n, n - 1 */
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_rng r = fuzz_rng_of(data, size);
  buf ref = {0}, z = {0};

  /* The input as gzip data, whatever it is. */
  check(data, size, pick_max(&r, size), "the input", &ref);

  /* Gzipped: the input back, unless it is larger than allowed. */
  size_t max = pick_max(&r, size);
  gzip(data, size, &r, &z);
  int got = check(z.p, z.len, max, "gzip of the input", &ref);
  FUZZ_CHECK(got == (size > max ? LARGE : OK), "gzip of %zu bytes, at most %zu: %s", size, max, WHY[got]);

  /* In members, with bytes that are no gzip after them or none: the input back. */
  size_t members = 2 + (size_t)fuzz_below(&r, 3), from = 0;
  z.len = 0;
  for (size_t i = 0; i < members; i++) {
    size_t to = i + 1 == members ? size : from + (size_t)fuzz_below(&r, size - from + 1);
    gzip(data + from, to - from, &r, &z);
    from = to;
  }
  size_t zlen = z.len;
  switch (fuzz_below(&r, 4)) {
    case 0: put(&z, "\x1f", 1); break;  /* one byte of a magic, then the end */
    case 1: put(&z, "\n", 1); break;
    case 2: put(&z, data, size < 16 ? size : 16); break;
    default: break;
  }
  max = pick_max(&r, size);
  got = check(z.p, z.len, max, "gzip in members", &ref);
  if (!magic(z.p + zlen, z.len - zlen))
    FUZZ_CHECK(got == (size > max ? LARGE : OK), "gzip of %zu bytes in %zu members, at most %zu: %s", size,
               members, max, WHY[got]);

  /* Cut short: truncated, or a prefix of the input when cut between members. */
  size_t cut = (size_t)fuzz_below(&r, zlen);
  got = check(z.p, cut, (size_t)1 << 30, "gzip in members cut short", &ref);
  FUZZ_CHECK(got != LARGE && (got != OK || (ref.len <= size && (ref.len == 0 || memcmp(ref.p, data, ref.len) == 0))),
             "gzip cut at %zu of %zu bytes: %s, %zu bytes", cut, zlen, WHY[got], ref.len);

  /* A byte changed: the content or an error, without a bad read. */
  z.p[fuzz_below(&r, zlen)] ^= (uint8_t)(1 + fuzz_below(&r, 255));
  check(z.p, zlen, pick_max(&r, size), "gzip in members with a byte changed", &ref);

  free(ref.p);
  free(z.p);
  return 0;
}
