/* bulk_fuzz.c: Elasticsearch's bulk answer (host/bulk.c), which comes from
 * the network, on any bytes.
 *
 * What must hold:
 *  - th_bulk_read returns 0 or -1, reads only the bytes it is given, and
 *    when it returns 0 every item is counted once: ok + conflicts + failed
 *    = items, and the first error's text is a string that fits;
 *  - an answer built from choices the input makes (statuses, errors, spacing,
 *    an escaped quote in a reason) is read back with the counts it was built
 *    with; the same answer cut short is refused.
 */
#include <string.h>

#include "bulk.h"
#include "fuzz.h"

static void check(const char *p, size_t n) {
  char *c = fuzz_dup(p, n);  /* exactly n bytes: ASan sees a read past them */
  th_bulk b;
  int rc = th_bulk_read(c, n, &b);
  FUZZ_CHECK(rc == 0 || rc == -1, "returned %d", rc);
  if (rc == 0) {
    FUZZ_CHECK(b.ok + b.conflicts + b.failed == b.items, "%u + %u + %u != %u", b.ok, b.conflicts, b.failed,
               b.items);
    FUZZ_CHECK(memchr(b.first_error, '\0', sizeof b.first_error) != NULL, "the first error is not a string");
  }
  free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check((const char *)data, size);

  fuzz_rng r = fuzz_rng_of(data, size);
  static const int statuses[] = {201, 200, 409, 429, 500, 400};
  char answer[8192];
  size_t len = 0;
  unsigned n = (unsigned)fuzz_below(&r, 20), ok = 0, conflicts = 0, failed = 0;
  const char *sp = fuzz_below(&r, 2) ? " " : "";
  len += (size_t)snprintf(answer + len, sizeof answer - len, "{%s\"took\":%s3,\"errors\":%s,\"items\":[", sp, sp,
                          fuzz_below(&r, 2) ? "true" : "false");
  for (unsigned i = 0; i < n; i++) {
    int st = statuses[fuzz_below(&r, 6)];
    ok += st < 300;
    conflicts += st == 409;
    failed += st >= 300 && st != 409;
    const char *err = st < 300 ? "" : ",\"error\":{\"type\":\"x_exception\",\"reason\":\"a \\\"quoted\\\" [reason]\"}";
    len += (size_t)snprintf(answer + len, sizeof answer - len, "%s{%s\"create\":{\"_index\":\"a\",\"_id\":\"%u\",%s\"status\":%d%s}}",
                            i ? "," : "", sp, i, sp, st, err);
  }
  len += (size_t)snprintf(answer + len, sizeof answer - len, "]}");
  th_bulk b;
  char *c = fuzz_dup(answer, len);
  FUZZ_CHECK(th_bulk_read(c, len, &b) == 0, "a well-formed answer was refused: %.*s", (int)len, answer);
  FUZZ_CHECK(b.items == n && b.ok == ok && b.conflicts == conflicts && b.failed == failed,
             "counts %u %u %u %u for %u %u %u %u", b.items, b.ok, b.conflicts, b.failed, n, ok, conflicts, failed);
  if (failed) FUZZ_CHECK(strncmp(b.first_error, "x_exception: a ", 15) == 0, "error '%s'", b.first_error);
  free(c);
  size_t cut = (size_t)fuzz_below(&r, len);
  c = fuzz_dup(answer, cut);
  FUZZ_CHECK(th_bulk_read(c, cut, &b) == -1, "an answer cut at %zu of %zu was read", cut, len);
  free(c);
  return 0;
}
