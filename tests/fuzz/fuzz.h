/* fuzz.h: what the fuzz harnesses share.
 *
 * A harness is one libFuzzer entry point, LLVMFuzzerTestOneInput, that feeds
 * its bytes to one parser and checks what must hold of the result. It is
 * linked either with libFuzzer (`make fuzz`, clang) or with driver.c, which
 * runs the seed corpus and fixed-seed mutations of it under ASan+UBSan in
 * `make test`. An invariant that fails aborts, and whichever of the two runs
 * the harness reports the input that did it.
 *
 * Everything a harness chooses (where to cut its input, which limit to use)
 * comes from a hash of the input, so a run is a function of its bytes alone
 * and a failing input replays the same way anywhere.
 */
#ifndef TH_FUZZ_H
#define TH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant: when it fails, say which and why on stderr, then abort. */
#define FUZZ_CHECK(cond, ...)                                                      \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                                \
      fputc('\n', stderr);                                                         \
      abort();                                                                     \
    }                                                                              \
  } while (0)

/* splitmix64: small, fast, and good enough to pick cut points. */
typedef struct fuzz_rng {
  uint64_t s;  /* state */
} fuzz_rng;

static inline uint64_t fuzz_next(fuzz_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* A number in [0, n); 0 when n is 0. */
static inline uint64_t fuzz_below(fuzz_rng *r, uint64_t n) {
  return n ? fuzz_next(r) % n : 0;
}

/* A generator seeded from the input's bytes (FNV-1a 64). */
static inline fuzz_rng fuzz_rng_of(const uint8_t *d, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ d[i]) * 0x100000001b3ULL;
  fuzz_rng r = {h ^ n};
  return r;
}

/* A copy of n bytes in a block of exactly that size, so ASan sees any read
 * past either end (the caller's buffer may have bytes on both sides). The
 * copy is never NULL, even for n == 0. Caller frees. */
char *fuzz_dup(const void *p, size_t n);

/* A directory for the harnesses that need files: FUZZ_TMPDIR, else /dev/shm
 * (no disk behind fsync), else TMPDIR or /tmp. Made once, removed at exit
 * or by fuzz_tmpdir_remove (the driver's way out on a failure). */
const char *fuzz_tmpdir(void);
void fuzz_tmpdir_remove(void);

/* A file named name in fuzz_tmpdir (a few names stay valid at once). */
const char *fuzz_file(const char *name);
/* path made to hold n bytes of data; aborts when it cannot. */
void fuzz_write_file(const char *path, const void *data, size_t n);
/* The whole of a file in a malloc'd block (caller frees), *len its size; NULL and 0 when
 * there is no such file. */
char *fuzz_read_file(const char *path, size_t *len);

#endif
