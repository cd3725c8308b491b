/* http_fuzz.c: the request parser of --metrics (th_http_parse, host/httpd.c),
 * which reads whatever a client on the network sends, on any bytes.
 *
 * What must hold:
 *  - it returns -1, 0, or the head's length, at most the bytes given, and
 *    reads none past them;
 *  - a head it reads (> 0) has a method of token characters and a path of
 *    visible characters without '?' or '#', both inside the head, and a minor
 *    version 0-9; every shorter cut of the input needs more bytes (0), and
 *    bytes after the head change nothing;
 *  - a head it refuses (-1) stays refused whatever follows it;
 *  - a request built from choices the input makes (method, path, query,
 *    header lines, CRLF or LF, leading empty lines) is read back as built.
 */
#include <string.h>

#include "fuzz.h"
#include "httpd.h"

static int tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static long parse(const char *p, size_t n, th_http_req *r) {
  char *c = fuzz_dup(p, n);  /* exactly n bytes: ASan sees a read past them */
  long rc = th_http_parse(c, n, r);
  /* Pointers into the copy, as offsets into p. */
  if (rc > 0) {
    r->method = p + (r->method - c);
    r->path = p + (r->path - c);
  }
  free(c);
  return rc;
}

static void check(const char *p, size_t n) {
  th_http_req r;
  long rc = parse(p, n, &r);
  FUZZ_CHECK(rc >= -1 && rc <= (long)n, "returned %ld for %zu bytes", rc, n);
  if (rc > 0) {
    FUZZ_CHECK(r.method >= p && r.method_len > 0 && r.method + r.method_len <= p + rc, "method outside the head");
    for (size_t i = 0; i < r.method_len; i++) FUZZ_CHECK(tchar((unsigned char)r.method[i]), "method byte %zu", i);
    FUZZ_CHECK(r.path >= p && r.path + r.path_len <= p + rc, "path outside the head");
    for (size_t i = 0; i < r.path_len; i++)
      FUZZ_CHECK(r.path[i] > 0x20 && r.path[i] < 0x7f && r.path[i] != '?' && r.path[i] != '#', "path byte %zu",
                 i);
    FUZZ_CHECK(r.minor >= 0 && r.minor <= 9, "minor %d", r.minor);
    fuzz_rng g = fuzz_rng_of((const uint8_t *)p, n);
    size_t cut = (size_t)fuzz_below(&g, (uint64_t)rc);
    th_http_req s;
    FUZZ_CHECK(parse(p, cut, &s) == 0, "a cut at %zu of a %ld-byte head did not wait for more", cut, rc);
    FUZZ_CHECK(parse(p, (size_t)rc, &s) == rc, "the head alone reads differently");
  } else if (rc < 0) {
    char *more = malloc(n + 4);
    if (more == NULL) abort();
    memcpy(more, p, n);
    memcpy(more + n, "X\r\n\n", 4);
    th_http_req s;
    FUZZ_CHECK(parse(more, n + 4, &s) == -1, "a refused head was taken once bytes followed");
    free(more);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check((const char *)data, size);

  /* A request built from the input's bytes. */
  fuzz_rng g = fuzz_rng_of(data, size);
  char req[4096], method[24], path[200];
  size_t m = 0, pl = 0, len = 0;
  for (size_t i = 0; i < size && m < sizeof method - 1; i++)
    if (tchar(data[i])) method[m++] = (char)data[i];
  if (m == 0) method[m++] = 'G';
  method[m] = '\0';
  path[pl++] = '/';
  for (size_t i = 0; i < size && pl < sizeof path - 1; i++)
    if (data[i] > 0x20 && data[i] < 0x7f && data[i] != '?' && data[i] != '#') path[pl++] = (char)data[i];
  path[pl] = '\0';
  const char *eol = fuzz_below(&g, 2) ? "\r\n" : "\n";
  unsigned empties = (unsigned)fuzz_below(&g, 3), minor = (unsigned)fuzz_below(&g, 10);
  for (unsigned i = 0; i < empties; i++) len += (size_t)snprintf(req + len, sizeof req - len, "%s", eol);
  len += (size_t)snprintf(req + len, sizeof req - len, "%s %s%s HTTP/1.%u%s", method, path,
                          fuzz_below(&g, 2) ? "?q=1&b=%20#f" : "", minor, eol);
  unsigned headers = (unsigned)fuzz_below(&g, 5);
  for (unsigned i = 0; i < headers; i++)
    len += (size_t)snprintf(req + len, sizeof req - len, "X-H%u:%s%.*s%s", i, fuzz_below(&g, 2) ? " " : "",
                            (int)(size < 40 ? size : 40), "value with \"quotes\", tabs\tand colons: a:b:c", eol);
  len += (size_t)snprintf(req + len, sizeof req - len, "%s", eol);
  size_t head = len;
  len += (size_t)snprintf(req + len, sizeof req - len, "%s", fuzz_below(&g, 2) ? "GET /next HTTP/1.1\r\n\r\n" : "");
  th_http_req r;
  long rc = parse(req, len, &r);
  FUZZ_CHECK(rc == (long)head, "a built request read as %ld of %zu: %.*s", rc, head, (int)len, req);
  FUZZ_CHECK(r.method_len == m && memcmp(r.method, method, m) == 0, "method '%.*s' for '%s'", (int)r.method_len,
             r.method, method);
  FUZZ_CHECK(r.path_len == pl && memcmp(r.path, path, pl) == 0, "path '%.*s' for '%s'", (int)r.path_len, r.path,
             path);
  FUZZ_CHECK(r.minor == (int)minor, "minor %d for %u", r.minor, minor);
  check(req, len);
  return 0;
}
