/* gunzip_test.c: gzip in memory inflated whole (th_gunzip,
 * host/worker/gunzip.c, thsys.gunzip for explain and dev): members one
 * after the other, bytes after them, the largest content allowed, damage
 * and a cut. Prints TAP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tap.h"
#include "worker/gunzip.h"

static size_t gzip(const char *in, size_t n, unsigned char *out, size_t cap) {
  z_stream z;
  memset(&z, 0, sizeof z);
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  deflate(&z, Z_FINISH);
  size_t len = z.total_out;
  deflateEnd(&z);
  return len;
}

/* th_gunzip: its content (NUL-terminated, newlines as '|' to keep TAP lines
 * whole) or its error, in got. */
static int run(const unsigned char *z, size_t n, size_t max, char *got, size_t size) {
  char *out, err[160];
  size_t len;
  int rc = th_gunzip(z, n, max, &out, &len, err, sizeof err);
  if (rc == 0) {
    snprintf(got, size, "%.*s", (int)len, out);
    free(out);
    for (char *p = got; (p = strchr(p, '\n')) != NULL;) *p = '|';
  } else {
    snprintf(got, size, "error: %s", err);
  }
  return rc;
}

static const char A[] = "{\"eventName\":\"A\"}\n", B[] = "{\"eventName\":\"B\"}\n";

static void gunzip_reads_every_member_and_ignores_what_follows(void) {
  unsigned char z[256];
  size_t n = gzip(A, strlen(A), z, sizeof z);
  n += gzip(B, strlen(B), z + n, sizeof z - n);
  memcpy(z + n, "\n\x1f", 2);
  char got[256];
  int rc = run(z, n + 2, 1 << 30, got, sizeof got);
  CHECK(rc == 0 && strcmp(got, "{\"eventName\":\"A\"}|{\"eventName\":\"B\"}|") == 0,
        "gunzip_reads_every_member_and_ignores_what_follows: '%s'", got);
}

/* Content of exactly the largest size allowed is given, whatever follows it
 * (found by tests/fuzz/gunzip_fuzz.c: with an empty member after it, or its
 * trailer cut, it was called "larger than"); one byte more is refused. */
static void gunzip_gives_exactly_max_and_refuses_more(void) {
  unsigned char z[256];
  size_t n = gzip(A, strlen(A), z, sizeof z), max = strlen(A);
  size_t two = n + gzip("", 0, z + n, sizeof z - n);
  char got[256];
  int rc = run(z, n, max, got, sizeof got);
  CHECK(rc == 0 && strcmp(got, "{\"eventName\":\"A\"}|") == 0, "gunzip_gives_exactly_max: one member: '%s'",
        got);
  rc = run(z, two, max, got, sizeof got);
  CHECK(rc == 0 && strcmp(got, "{\"eventName\":\"A\"}|") == 0,
        "gunzip_gives_exactly_max: then an empty member: '%s'", got);
  rc = run(z, n - 4, max, got, sizeof got);
  CHECK(rc < 0 && strncmp(got, "error: truncated gzip", 21) == 0,
        "gunzip_gives_exactly_max: its trailer cut: '%s'", got);
  rc = run(z, n, max - 1, got, sizeof got);
  CHECK(rc < 0 && strcmp(got, "error: larger than 17 bytes once decompressed") == 0,
        "gunzip_refuses_one_byte_more: '%s'", got);
  rc = run(z, two, 0, got, sizeof got);
  CHECK(rc < 0 && strcmp(got, "error: larger than 0 bytes once decompressed") == 0,
        "gunzip_refuses_any_content_at_most_0: '%s'", got);
  n = gzip("", 0, z, sizeof z);
  rc = run(z, n, 0, got, sizeof got);
  CHECK(rc == 0 && got[0] == '\0', "gunzip_gives_no_content_at_most_0: '%s'", got);
}

static void gunzip_says_damaged_or_truncated_with_the_content_before(void) {
  unsigned char z[256];
  size_t n = gzip(A, strlen(A), z, sizeof z);
  char got[256];
  z[n - 8] ^= 1;  /* the CRC */
  int rc = run(z, n, 1 << 30, got, sizeof got);
  CHECK(rc < 0 && strcmp(got, "error: damaged gzip (incorrect data check) after 18 bytes of content") == 0,
        "gunzip_says_damaged: '%s'", got);
  rc = run(z, 2, 1 << 30, got, sizeof got);
  CHECK(rc < 0 && strcmp(got, "error: truncated gzip (unexpected end of input) after 0 bytes of content") == 0,
        "gunzip_says_truncated: '%s'", got);
}

int main(void) {
  gunzip_reads_every_member_and_ignores_what_follows();
  gunzip_gives_exactly_max_and_refuses_more();
  gunzip_says_damaged_or_truncated_with_the_content_before();
  return TAP_END();
}
