/* glob_fuzz.c: th_glob_match and th_glob_base (host/glob.c) on any pattern
 * and path.
 *
 * The input is a pattern, a newline, and a path (without a newline, the
 * input is both); each ends at a NUL byte if it holds one. What must hold:
 *
 *  - th_glob_match returns 0 or 1, quickly, on any pattern: many '*' and
 *    '**', unterminated '[', long segments (a hang is caught by the
 *    driver's FUZZ_TIMEOUT or libFuzzer's -timeout);
 *  - on a pattern without "**" it agrees with fnmatch(3) given FNM_PATHNAME
 *    and FNM_PERIOD ('*', '?' and '[...]' within a segment, a leading dot
 *    matched only by a dot, as glob.h says), once leading "./" are dropped
 *    from both as th_glob_match does, and unless a '/' cuts a bracket
 *    expression or follows a backslash (see slash_cuts);
 *  - a path with no wildcard or backslash matches itself as a pattern;
 *  - on a pattern with "**" it agrees with a reference matcher, glob.h read
 *    plainly: it cuts both at every '/' and tries every split, too slow for
 *    many "**", so it is asked only about patterns with few;
 *  - every path a pattern matches lies under th_glob_base of the pattern,
 *    where th_glob_walk starts looking.
 */
#include <fnmatch.h>
#include <string.h>

#include "fuzz.h"
#include "glob.h"

/* n bytes of p and a NUL, in a block of that size. Caller frees. */
static char *cstr(const void *p, size_t n) {
  char *s = malloc(n + 1);
  if (s == NULL) abort();
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

/* ---- the reference: glob.h read plainly, exponential in "**" ------------------ */

typedef struct seg {
  const char *p;  /* the segment's first byte */
  size_t n;       /* its length: it ends at '/' or the end */
} seg;

/* Cut s at every '/': n + 1 segments for n slashes. Caller frees. */
static seg *segments(const char *s, size_t *n) {
  size_t k = 1;
  for (const char *c = s; *c; c++) k += *c == '/';
  seg *v = malloc(k * sizeof *v);
  if (v == NULL) abort();
  *n = 0;
  for (const char *c = s;; c++) {
    if (*c == '/' || *c == '\0') {
      v[*n] = (seg){s, (size_t)(c - s)};
      ++*n;
      s = c + 1;
    }
    if (*c == '\0') return v;
  }
}

static int ref_segmatch(seg p, seg s) {
  char *pc = cstr(p.p, p.n), *sc = cstr(s.p, s.n);
  int m = fnmatch(pc, sc, FNM_PERIOD) == 0;
  free(pc);
  free(sc);
  return m;
}

/* Pattern segments from i match path segments from j: "**" any number of
 * segments, one or more when it is the last. */
static int ref_rec(const seg *p, size_t np, size_t i, const seg *s, size_t ns, size_t j) {
  if (i == np) return j == ns;
  if (p[i].n == 2 && p[i].p[0] == '*' && p[i].p[1] == '*') {
    if (i == np - 1) return j < ns;
    for (size_t k = j; k <= ns; k++)
      if (ref_rec(p, np, i + 1, s, ns, k)) return 1;
    return 0;
  }
  return j < ns && ref_segmatch(p[i], s[j]) && ref_rec(p, np, i + 1, s, ns, j + 1);
}

static int ref_match(const char *pattern, const char *path) {
  size_t np, ns;
  seg *p = segments(pattern, &np), *s = segments(path, &ns);
  int m = ref_rec(p, np, 0, s, ns, 0);
  free(p);
  free(s);
  return m;
}

static const char *skip_dot_slash(const char *s) {
  while (s[0] == '.' && s[1] == '/') s += 2;
  return s;
}

/* ---- checks --------------------------------------------------------------------- */

static size_t count(const char *s, const char *what) {
  size_t n = 0;
  for (const char *p = s; (p = strstr(p, what)) != NULL; p++) n++;
  return n;
}

/* Segments of pattern that are exactly "**". */
static size_t double_stars(const char *pattern) {
  size_t n = 0, np;
  seg *p = segments(pattern, &np);
  for (size_t i = 0; i < np; i++) n += p[i].n == 2 && p[i].p[0] == '*' && p[i].p[1] == '*';
  free(p);
  return n;
}

/* Does a '/' cut what fnmatch would read across it? glob.h cuts the pattern
 * at every '/' first, as POSIX pathname expansion does, so "[/]" is the
 * segments "[" and "]", both literal, where glibc's fnmatch fails the match;
 * and "\\/" is a segment ending in a lone backslash, which matches nothing,
 * where fnmatch reads an escaped '/'. */
static int slash_cuts(const char *pattern) {
  if (strstr(pattern, "\\/") != NULL) return 1;
  for (const char *p = strchr(pattern, '['); p != NULL; p = strchr(p + 1, '[')) {
    const char *q = p + 1;
    if (*q == '!' || *q == '^') q++;
    if (*q == ']') q++;
    size_t n = strcspn(q, "]/");
    if (q[n] == '/') return 1;
  }
  return 0;
}

static void check(const char *pattern, const char *path) {
  int m = th_glob_match(pattern, path);
  FUZZ_CHECK(m == 0 || m == 1, "th_glob_match returned %d", m);

  if (strstr(pattern, "**") == NULL && !slash_cuts(pattern)) {
    int want = fnmatch(skip_dot_slash(pattern), skip_dot_slash(path), FNM_PATHNAME | FNM_PERIOD) == 0;
    FUZZ_CHECK(m == want, "th_glob_match(\"%s\", \"%s\") is %d, fnmatch says %d", pattern, path, m,
               want);
  } else if (double_stars(pattern) <= 3 && count(path, "/") <= 12) {
    int want = ref_match(skip_dot_slash(pattern), skip_dot_slash(path));
    FUZZ_CHECK(m == want, "th_glob_match(\"%s\", \"%s\") is %d, the reference says %d", pattern,
               path, m, want);
  }

  if (strpbrk(path, "*?[\\") == NULL)
    FUZZ_CHECK(th_glob_match(path, path), "\"%s\" does not match itself", path);

  if (m) {
    char *base = th_glob_base(pattern);
    FUZZ_CHECK(base != NULL, "th_glob_base: out of memory");
    const char *b = skip_dot_slash(base), *p = skip_dot_slash(path);
    size_t bl = strlen(b);
    int under = strcmp(b, ".") == 0 ||  /* "./." too */
                (strncmp(p, b, bl) == 0 && (p[bl] == '/' || (bl > 0 && b[bl - 1] == '/')));
    FUZZ_CHECK(under, "\"%s\" matches \"%s\" but is not under its base \"%s\"", path, pattern, base);
    free(base);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nl = memchr(data, '\n', size);
  size_t plen = nl ? (size_t)(nl - data) : size;
  const uint8_t *s = nl ? nl + 1 : data;
  size_t slen = nl ? size - plen - 1 : size;
  /* Each in a block of its own size, ending at its first NUL. */
  const uint8_t *z = memchr(data, '\0', plen);
  if (z) plen = (size_t)(z - data);
  z = memchr(s, '\0', slen);
  if (z) slen = (size_t)(z - s);
  char *pattern = cstr(data, plen), *path = cstr(s, slen);
  check(pattern, path);
  free(pattern);
  free(path);
  return 0;
}
