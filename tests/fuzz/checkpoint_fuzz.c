/* checkpoint_fuzz.c: th_ckpt_load (host/checkpoint.c) on any state file.
 *
 * The input is the state file's content, as a user's editor or a disk could
 * have left it. What must hold:
 *
 *  - load returns 0 or -EINVAL: a damaged file is never taken for a good one
 *    nor makes load fail some other way;
 *  - a file that loads starts with the header, ends with a newline (a last
 *    line cut short is damage) and has one entry per line, each with a path;
 *  - it round-trips: saved and loaded again, the entries are the same, and
 *    saving those gives the same bytes (the saved form is a fixed point);
 *  - a damaged file is reported at a line number that exists (1 for an
 *    empty file), every line before it is good (the file cut just before it
 *    loads, with one entry per line), and the damage is in that line (the
 *    file cut just after it fails at the same line): load looks at nothing
 *    past the line it blames;
 *  - load agrees with a model of the format written from checkpoint.h, on
 *    which files are damaged, at which line, and on every field.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "fuzz.h"

/* ---- the format, as checkpoint.h describes it -------------------------------------- */

/* A number of decimal digits no larger than max (given as digits). */
static int dec_ok(const uint8_t *p, size_t n, const char *max) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] < '0' || p[i] > '9') return 0;
  while (n > 1 && p[0] == '0') p++, n--;
  size_t m = strlen(max);
  return n < m || (n == m && memcmp(p, max, m) <= 0);
}

static int hex_digit(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Is line l (n bytes, its newline left out) a good entry line of a state
 * file of this version? If so, its fields go into *c (path points into dec,
 * PATH_MAX bytes). Version 1: six fields and the path; version 2: eight
 * (back_len, at most TH_BACK_MAX and the offset, and back_hash in hex). */
static int entry_ok(const uint8_t *l, size_t n, int version, th_ckpt *c, char *dec) {
  const int nf = version == 1 ? 6 : 8;
  const uint8_t *f[9];
  size_t fl[9], k = 0, start = 0;
  for (size_t i = 0; i <= n && k < (size_t)nf + 1; i++) {
    if (i == n || (l[i] == ' ' && k < (size_t)nf)) {  /* the fields end at a space, the path at the end */
      f[k] = l + start;
      fl[k++] = i - start;
      start = i + 1;
    }
  }
  if (k != (size_t)nf + 1 || start != n + 1) return 0;
  char num[32];
  static const char *const max[] = {"18446744073709551615", "18446744073709551615", "1024", NULL,
                                    "18446744073709551615", "4294967295", "4096", NULL};
  for (int i = 0; i < nf; i++) {
    if (i == 3 || i == 7) {
      if (fl[i] == 0 || fl[i] > 16) return 0;
      for (size_t j = 0; j < fl[i]; j++)
        if (!hex_digit(f[i][j])) return 0;
    } else if (!dec_ok(f[i], fl[i], max[i])) {
      return 0;
    }
  }
  uint64_t v[8] = {0};
  for (int i = 0; i < nf; i++) {
    size_t m = fl[i] < sizeof num ? fl[i] : sizeof num - 1;  /* long ones are leading zeros */
    memcpy(num, f[i] + fl[i] - m, m);
    num[m] = '\0';
    v[i] = strtoull(num, NULL, i == 3 || i == 7 ? 16 : 10);
  }
  if (v[6] > v[4]) return 0;  /* the bytes before the offset cannot be more than the offset */
  const uint8_t *p = f[nf];
  size_t pl = fl[nf], d = 0;
  if (pl == 0) return 0;
  for (size_t j = 0; j < pl; j++) {
    if (p[j] == ' ' || p[j] == '\r' || p[j] == '\0') return 0;
    if (p[j] == '%') {
      if (j + 2 >= pl || !hex_digit(p[j + 1]) || !hex_digit(p[j + 2])) return 0;
      char h[3] = {(char)p[j + 1], (char)p[j + 2], '\0'};
      unsigned long b = strtoul(h, NULL, 16);
      if (b == 0) return 0;
      if (d < PATH_MAX) dec[d] = (char)b;
      d++;
      j += 2;
    } else {
      if (d < PATH_MAX) dec[d] = (char)p[j];
      d++;
    }
  }
  if (d >= PATH_MAX) return 0;
  dec[d] = '\0';
  *c = (th_ckpt){dec, v[0], v[1], (uint32_t)v[2], v[3], v[4], (unsigned)v[5], (uint32_t)v[6], v[7]};
  return 1;
}

/* The version its header says: 1, 2, or 0 for none. */
static int version_of(const uint8_t *data, size_t size) {
  static const char h1[] = "trailhound-state 1\n", h2[] = "trailhound-state 2\n";
  if (size >= sizeof h1 - 1 && memcmp(data, h1, sizeof h1 - 1) == 0) return 1;
  if (size >= sizeof h2 - 1 && memcmp(data, h2, sizeof h2 - 1) == 0) return 2;
  return 0;
}

/* The first damaged line of data (0 if none) and, up to it, how many entries. */
static int model(const uint8_t *data, size_t size, size_t *entries) {
  int version = version_of(data, size);
  *entries = 0;
  if (size == 0) return 1;
  int lineno = 0;
  for (size_t at = 0; at < size;) {
    const uint8_t *nl = memchr(data + at, '\n', size - at);
    size_t n = nl ? (size_t)(nl - data) - at : size - at;
    lineno++;
    /* A line longer than th_ckpt_save ever writes does not fit load's buffer. */
    if (nl == NULL || n + 1 > PATH_MAX * 3 + 255) return lineno;
    if (lineno == 1) {
      if (version == 0 || n != 18) return 1;  /* "trailhound-state N" */
    } else {
      th_ckpt c;
      static char dec[PATH_MAX + 1];
      if (!entry_ok(data + at, n, version, &c, dec)) return lineno;
      ++*entries;
    }
    at += n + 1;
  }
  return 0;
}

/* The model's entry i (0-based: on line i + 2). */
static void model_entry(const uint8_t *data, size_t size, size_t i, th_ckpt *c, char *dec) {
  size_t at = 0;
  for (size_t k = 0; k <= i; k++) {
    const uint8_t *nl = memchr(data + at, '\n', size - at);
    at = (size_t)(nl - data) + 1;
  }
  const uint8_t *nl = memchr(data + at, '\n', size - at);
  entry_ok(data + at, (size_t)(nl - data) - at, version_of(data, size), c, dec);
}

/* ---- running th_ckpt_load ----------------------------------------------------------- */

static void same_entries(const th_ckpt *a, size_t na, const th_ckpt *b, size_t nb, const char *how) {
  FUZZ_CHECK(na == nb, "%zu entries, then %zu %s", na, nb, how);
  for (size_t i = 0; i < na; i++)
    FUZZ_CHECK(strcmp(a[i].path, b[i].path) == 0 && a[i].dev == b[i].dev && a[i].ino == b[i].ino &&
                   a[i].fp_len == b[i].fp_len && a[i].fp == b[i].fp && a[i].offset == b[i].offset &&
                   a[i].flags == b[i].flags && a[i].back_len == b[i].back_len &&
                   a[i].back_hash == b[i].back_hash,
               "entry %zu differs %s: path \"%s\", then \"%s\"", i, how, a[i].path, b[i].path);
}

/* Offset just after line k (1-based) of data, its newline included. */
static size_t line_end(const uint8_t *data, size_t size, int k) {
  size_t at = 0;
  for (int i = 0; i < k && at < size; i++) {
    const uint8_t *nl = memchr(data + at, '\n', size - at);
    at = nl ? (size_t)(nl - data) + 1 : size;
  }
  return at;
}

static void loaded(const uint8_t *data, size_t size, const th_ckpt *e, size_t n, size_t lines) {
  FUZZ_CHECK(version_of(data, size) != 0, "a file without the header loaded");
  FUZZ_CHECK(data[size - 1] == '\n', "a file whose last line has no newline loaded");
  FUZZ_CHECK(n == lines - 1, "%zu lines loaded as %zu entries", lines, n);
  for (size_t i = 0; i < n; i++) {
    FUZZ_CHECK(e[i].path != NULL && e[i].path[0] != '\0', "entry %zu has no path", i);
    FUZZ_CHECK(e[i].fp_len <= TH_FP_MAX, "entry %zu fingerprints %" PRIu32 " bytes", i, e[i].fp_len);
  }

  const char *saved = fuzz_file("saved"), *again = fuzz_file("again");
  FUZZ_CHECK(th_ckpt_save(saved, e, n, 1e9) == 0, "save %s", saved);
  th_ckpt *e2;
  size_t n2;
  int bad;
  int rc = th_ckpt_load(saved, &e2, &n2, &bad);
  FUZZ_CHECK(rc == 0, "what was loaded and saved does not load again: rc %d at line %d", rc, bad);
  same_entries(e, n, e2, n2, "after a save and a load");
  FUZZ_CHECK(th_ckpt_save(again, e2, n2, 1e9) == 0, "save %s", again);
  size_t la, lb;
  char *a = fuzz_read_file(saved, &la), *b = fuzz_read_file(again, &lb);
  FUZZ_CHECK(a != NULL && b != NULL, "the saved files are there");
  FUZZ_CHECK(la == lb && memcmp(a, b, la) == 0, "saving what a saved file loads gives other bytes");
  free(a);
  free(b);
  th_ckpt_free(e2, n2);
}

static void damaged(const uint8_t *data, size_t size, int bad, size_t lines) {
  FUZZ_CHECK(bad >= 1 && (size_t)bad <= (lines ? lines : 1),
             "damage reported at line %d of a file of %zu lines", bad, lines);
  const char *cut = fuzz_file("cut");
  th_ckpt *e;
  size_t n;
  int bad2, rc;
  if (bad >= 2) {
    fuzz_write_file(cut, data, line_end(data, size, bad - 1));
    rc = th_ckpt_load(cut, &e, &n, &bad2);
    FUZZ_CHECK(rc == 0 && n == (size_t)bad - 2,
               "damage reported at line %d, but the lines before it do not load: rc %d at line %d",
               bad, rc, bad2);
    th_ckpt_free(e, n);
  }
  fuzz_write_file(cut, data, line_end(data, size, bad));
  rc = th_ckpt_load(cut, &e, &n, &bad2);
  FUZZ_CHECK(rc == -EINVAL && bad2 == bad,
             "damage reported at line %d, but the file cut after that line gives rc %d at line %d",
             bad, rc, bad2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *state = fuzz_file("state");
  fuzz_write_file(state, data, size);
  size_t lines = 0;
  for (size_t i = 0; i < size; i++)
    if (data[i] == '\n' || i == size - 1) lines++;

  th_ckpt *e = (th_ckpt *)&lines;  /* load must set it, whatever happens */
  size_t n = 12345;
  int bad = -1;
  int rc = th_ckpt_load(state, &e, &n, &bad);
  FUZZ_CHECK(rc == 0 || rc == -EINVAL, "load returned %d (%s)", rc, strerror(-rc));
  size_t entries;
  int want = model(data, size, &entries);
  FUZZ_CHECK(rc == 0 ? want == 0 : want == bad,
             "load says %s (line %d), checkpoint.h says %s (line %d)", rc ? "damaged" : "good", bad,
             want ? "damaged" : "good", want);
  if (rc == 0) {
    FUZZ_CHECK(bad == 0, "a file that loads has a bad line, %d", bad);
    FUZZ_CHECK(n == entries, "%zu entries loaded, checkpoint.h says %zu", n, entries);
    loaded(data, size, e, n, lines);
    for (size_t i = 0; i < n; i++) {
      static char dec[PATH_MAX + 1];
      th_ckpt c;
      model_entry(data, size, i, &c, dec);
      same_entries(&c, 1, &e[i], 1, "as checkpoint.h reads it and as load did");
    }
    th_ckpt_free(e, n);
  } else {
    FUZZ_CHECK(e == NULL && n == 0, "a damaged file gave entries");
    damaged(data, size, bad, lines);
  }
  return 0;
}
