/* state_fuzz.c: th_state_load (host/state.c) on any STATE.rules file.
 *
 * The input is the file's content, as a crash, a full disk or an editor could
 * have left it. What must hold:
 *
 *  - load returns 0, -errno or the number of a line that exists in the file:
 *    a damaged file is said to be damaged where it is, never a crash;
 *  - what loaded (all of it, or the lines before the damage) saves, and the
 *    saved file loads again without complaint;
 *  - saving that again gives the same bytes: the saved form is a fixed point,
 *    so a restart never changes what a later restart reads;
 *  - a store with a small cap (chosen from the input's hash) loads the same
 *    file without error, keeping what fits.
 */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "state.h"

static size_t lines_in(const uint8_t *data, size_t size) {
  size_t n = 0;
  for (size_t i = 0; i < size; i++) n += data[i] == '\n';
  return n + (size > 0 && data[size - 1] != '\n');
}

/* A store loaded from path, saved to out: load's result. */
static int load_save(size_t cap, const char *path, const char *out) {
  th_state *s = th_state_new(cap);
  FUZZ_CHECK(s != NULL, "out of memory");
  int rc = th_state_load(s, path);
  unlink(out);
  FUZZ_CHECK(th_state_save(s, out, UINT64_MAX) == 0, "save %s", out);
  th_state_free(s);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_rng rng = fuzz_rng_of(data, size);
  const char *in = fuzz_file("state.in"), *a = fuzz_file("state.a"), *b = fuzz_file("state.b");
  fuzz_write_file(in, data, size);

  int rc = load_save(0, in, a);
  FUZZ_CHECK(rc <= 0 || (size_t)rc <= lines_in(data, size) + 1, "damage said at line %d of a %zu-line file", rc,
             lines_in(data, size));

  FUZZ_CHECK(load_save(0, a, b) == 0, "what was saved does not load again");
  size_t na, nb;
  char *ta = fuzz_read_file(a, &na), *tb = fuzz_read_file(b, &nb);
  FUZZ_CHECK(na == nb && (na == 0 || memcmp(ta, tb, na) == 0), "saved %zu bytes, then %zu different ones", na, nb);
  free(ta);
  free(tb);

  /* A cap of a few kilobytes: what does not fit is evicted, never an error. */
  size_t cap = 1024 + (size_t)fuzz_below(&rng, 16384);
  int rc2 = load_save(cap, in, b);
  FUZZ_CHECK(rc2 == rc, "with a cap of %zu bytes load says %d, without %d", cap, rc2, rc);
  return 0;
}
