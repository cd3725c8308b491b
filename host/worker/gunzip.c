/* gunzip.c: gzip data in memory inflated whole (see gunzip.h).
 *
 * Plain C with no Lua in it, so that nothing here can raise a Lua error and
 * leak, and so that tests/fuzz/gunzip_fuzz.c can call it.
 */
#include "gunzip.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int th_gunzip(const unsigned char *s, size_t n, size_t max, char **out, size_t *outlen, char *err,
              size_t errsize) {
  z_stream z;
  memset(&z, 0, sizeof z);
  *out = NULL;
  *outlen = 0;
  if (inflateInit2(&z, 15 + 16) != Z_OK) {  /* 16: gzip only */
    snprintf(err, errsize, "out of memory");
    return -1;
  }
  /* Room for four times the input to start with, within max. */
  size_t cap = n < (1u << 16) ? (1u << 16) : n < max / 4 ? n * 4 : max, len = 0, at = 0;
  if (cap > max) cap = max;
  char *buf = malloc(cap ? cap : 1);
  int rc = -1, zr = Z_OK;
  while (buf != NULL) {
    if (len == cap && cap < max) {
      char *p = realloc(buf, cap * 2 < max ? cap * 2 : max);
      if (p == NULL) {
        snprintf(err, errsize, "out of memory");
        goto cleanup;
      }
      buf = p;
      cap = cap * 2 < max ? cap * 2 : max;
    }
    /* Full at max: inflate into a spare byte, which it fills only if there
     * is more content (else it reads on: a trailer, another member, the end). */
    unsigned char spare;
    int full = len == cap;
    size_t in = n - at > UINT_MAX ? UINT_MAX : n - at, room = full ? 1 : cap - len > UINT_MAX ? UINT_MAX : cap - len;
    z.next_in = (unsigned char *)s + at;  /* zlib does not write through it */
    z.avail_in = (unsigned)in;
    z.next_out = full ? &spare : (unsigned char *)buf + len;
    z.avail_out = (unsigned)room;
    zr = inflate(&z, Z_NO_FLUSH);
    at += in - z.avail_in;
    if (full && z.avail_out == 0) {
      snprintf(err, errsize, "larger than %zu bytes once decompressed", max);
      goto cleanup;
    }
    if (!full) len += room - z.avail_out;
    if (zr == Z_STREAM_END) {
      /* Another member follows, or the end (or bytes that are no gzip). */
      if (n - at < 2 || s[at] != 0x1f || s[at + 1] != 0x8b) break;
      inflateReset(&z);
      continue;
    }
    if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT) {
      snprintf(err, errsize, "damaged gzip (%s) after %zu bytes of content", z.msg ? z.msg : "bad data", len);
      goto cleanup;
    }
    if (zr == Z_MEM_ERROR) {
      snprintf(err, errsize, "out of memory");
      goto cleanup;
    }
    if (at == n && z.avail_out > 0) {  /* all input given, and inflate wants more */
      snprintf(err, errsize, "truncated gzip (unexpected end of input) after %zu bytes of content", len);
      goto cleanup;
    }
  }
  if (buf == NULL) {
    snprintf(err, errsize, "out of memory");
    goto cleanup;
  }
  *out = buf;
  *outlen = len;
  buf = NULL;
  rc = 0;
cleanup:
  free(buf);
  inflateEnd(&z);
  return rc;
}
