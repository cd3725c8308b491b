/* source_fuzz.c: how a file is read whole and told apart (host/source.c):
 * th_source_is_document on any bytes, th_source_load on any file, plain or
 * gzip, whole, cut short or damaged.
 *
 * The input is a file's content. What must hold:
 *
 *  - th_source_is_document gives 0 or 1, reading only the bytes it is given,
 *    and as source.c's comment says: whitespace or a byte order mark in
 *    front change nothing; an array is a document, and so are a CloudTrail
 *    S3 object, an object with no newline after it, and an object whose
 *    first line does not close it (pretty-printed); anything else is NDJSON;
 *  - a plain file loads as exactly its bytes (unless it starts like gzip);
 *  - the input gzipped loads as the input; so do two gzip members one
 *    after the other (what `cat a.gz b.gz` makes);
 *  - gzip cut short (after its two magic bytes) loads, as a prefix of the
 *    input: what was decoded before the cut, whose records are good;
 *  - gzip with a byte changed, or the input itself when it starts like
 *    gzip, loads or fails without a crash.
 *
 * th_source_load reports damage with th_log on stderr; the stderr stream is
 * pointed at /dev/null around it (the sanitizers write to fd 2 directly).
 */
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "fuzz.h"
#include "source.h"

static int space(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_document(const uint8_t *p, size_t n) {
  char *c = fuzz_dup(p, n);  /* exactly n bytes: ASan sees a read past them */
  int d = th_source_is_document(c, n);
  free(c);
  FUZZ_CHECK(d == 0 || d == 1, "th_source_is_document returned %d", d);
  return d;
}

/* prefix + data, in a block of that size. */
static int is_document_after(const char *prefix, const uint8_t *data, size_t size) {
  size_t pl = strlen(prefix);
  uint8_t *c = malloc(pl + size + 1);
  if (c == NULL) abort();
  memcpy(c, prefix, pl);
  if (size > 0) memcpy(c + pl, data, size);
  int d = is_document(c, pl + size);
  free(c);
  return d;
}

static void check_is_document(const uint8_t *data, size_t size) {
  static const char bom[] = "\xEF\xBB\xBF";
  int d = is_document(data, size);
  int has_bom = size >= 3 && memcmp(data, bom, 3) == 0;
  if (!has_bom) {
    FUZZ_CHECK(is_document_after(bom, data, size) == d, "a byte order mark in front changes it");
    FUZZ_CHECK(is_document_after(" \t\r\n\n ", data, size) == d, "whitespace in front changes it");
  }
  size_t i = has_bom ? 3 : 0;
  while (i < size && space(data[i])) i++;
  if (i < size && data[i] == '[') FUZZ_CHECK(d == 1, "an array is not a document");
  if (i == size || (data[i] != '[' && data[i] != '{'))
    FUZZ_CHECK(d == 0, "what is neither an array nor an object is a document");
  if (i == size || data[i] != '{') return;
  size_t j = i + 1;
  while (j < size && space(data[j])) j++;
  if (size - j >= 9 && memcmp(data + j, "\"Records\"", 9) == 0) {
    FUZZ_CHECK(d == 1, "a CloudTrail S3 object is not a document");
    return;
  }
  /* An object on one line is an NDJSON record, unless nothing follows it (then
   * it is the same record either way); one whose first line does not close it
   * is pretty-printed. */
  const uint8_t *nl = memchr(data + i, '\n', size - i);
  if (nl == NULL) {
    FUZZ_CHECK(d == 1, "an object with no newline after it is not a document");
    return;
  }
  const uint8_t *e = nl;
  while (e > data + i && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
  FUZZ_CHECK(d == (e[-1] != '}'), "an object whose first line %s '}' is %sa document",
             e[-1] == '}' ? "ends with" : "does not end with", d ? "" : "not ");
}

/* ---- th_source_load ----------------------------------------------------------------- */

static const char *file(void) {
  static char p[PATH_MAX];
  if (p[0] == '\0') snprintf(p, sizeof p, "%s/file", fuzz_tmpdir());
  return p;
}

static void write_file(const uint8_t *data, size_t n) {
  int fd = open(file(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  FUZZ_CHECK(fd >= 0, "open %s", file());
  FUZZ_CHECK(n == 0 || write(fd, data, n) == (ssize_t)n, "write %s", file());
  close(fd);
}

/* Load what was written; returns th_source_load's result. Caller frees *buf. */
static int load(char **buf, size_t *len) {
  static FILE *null;
  if (null == NULL && (null = fopen("/dev/null", "w")) == NULL) abort();
  FILE *err = stderr;
  stderr = null;  /* th_log's reports of damage, expected here */
  *buf = NULL;
  int rc = th_source_load(file(), buf, len);
  stderr = err;
  FUZZ_CHECK(rc == 0 || rc == -1, "th_source_load returned %d", rc);
  FUZZ_CHECK(rc < 0 || *buf != NULL, "th_source_load gave no buffer");
  return rc;
}

/* in gzipped at a level, appended to out[*len..); out has room. */
static void gzip(const uint8_t *in, size_t n, int level, uint8_t *out, size_t *len, size_t cap) {
  z_stream z;
  memset(&z, 0, sizeof z);
  FUZZ_CHECK(deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = out + *len;
  z.avail_out = (uInt)(cap - *len);
  FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  *len += z.total_out;
  deflateEnd(&z);
}

static void check_load(const uint8_t *data, size_t size, fuzz_rng *r) {
  char *buf;
  size_t len;

  write_file(data, size);
  int gz_magic = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  int rc = load(&buf, &len);
  if (!gz_magic)
    FUZZ_CHECK(rc == 0 && len == size && (size == 0 || memcmp(buf, data, size) == 0),
               "a plain file of %zu bytes loads as %zu other bytes (rc %d)", size, len, rc);
  free(buf);

  size_t cap = 2 * size + 256, zlen = 0;
  uint8_t *z = malloc(cap);
  if (z == NULL) abort();
  gzip(data, size, (int)fuzz_below(r, 10), z, &zlen, cap);
  write_file(z, zlen);
  rc = load(&buf, &len);
  FUZZ_CHECK(rc == 0 && len == size && (size == 0 || memcmp(buf, data, size) == 0),
             "%zu bytes gzipped load as %zu other bytes (rc %d)", size, len, rc);
  free(buf);

  /* Cut after 2 bytes at least: one byte, 0x1f, is not gzip by content (the
   * magic is two bytes), so it loads as itself, as a plain file would. */
  size_t cut = 2 + (size_t)fuzz_below(r, zlen - 2);
  write_file(z, cut);
  rc = load(&buf, &len);
  FUZZ_CHECK(rc == 0 && len <= size && (len == 0 || memcmp(buf, data, len) == 0),
             "gzip cut at %zu of %zu bytes loads as %zu bytes that do not begin the input (rc %d)",
             cut, zlen, len, rc);
  free(buf);

  size_t at = zlen ? (size_t)fuzz_below(r, zlen) : 0;
  z[at] ^= (uint8_t)(1 + fuzz_below(r, 255));
  write_file(z, zlen);
  rc = load(&buf, &len);
  free(buf);

  size_t half = (size_t)fuzz_below(r, size + 1);
  zlen = 0;
  gzip(data, half, 6, z, &zlen, cap);
  gzip(data + half, size - half, 6, z, &zlen, cap);
  write_file(z, zlen);
  rc = load(&buf, &len);
  FUZZ_CHECK(rc == 0 && len == size && (size == 0 || memcmp(buf, data, size) == 0),
             "two gzip members, of %zu and %zu bytes, load as %zu other bytes (rc %d)", half,
             size - half, len, rc);
  free(buf);
  free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_rng r = fuzz_rng_of(data, size);
  check_is_document(data, size);
  check_load(data, size, &r);
  return 0;
}
