/* driver.c: runs a libFuzzer harness without libFuzzer, so `make test` can
 * fuzz with gcc under ASan+UBSan.
 *
 * It stands in for libFuzzer's main: every input of the seed corpus
 * (tests/fuzz/corpus/NAME/), then FUZZ_ITERATIONS mutations of them (bit
 * flips, byte changes, insertions, deletions, repeats, splices, tokens from
 * tests/fuzz/NAME.dict). There is no coverage feedback: a mutant joins the
 * pool of inputs to mutate further at random. The generator's seed is fixed,
 * so a run is the same run every time; FUZZ_SEED picks another.
 *
 *   build/fuzz/NAME            the seed corpus, then the mutations; TAP
 *   build/fuzz/NAME FILE...    just those inputs (a failure saved earlier)
 *
 * Environment: FUZZ_ITERATIONS (default 20000), FUZZ_SEED (1), FUZZ_MAX_LEN
 * (4096 bytes), FUZZ_TIMEOUT (seconds per input, 10), FUZZ_CORPUS and
 * FUZZ_DICT (the harness's own), FUZZ_FAILURES (build/fuzz/failures).
 *
 * A failed invariant (abort), a crash, a sanitizer report or a timeout ends
 * the run with "not ok", the seed and iteration, the input in hex, and the
 * path where the input was saved, so `build/fuzz/NAME PATH` replays it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#ifndef FUZZ_NAME
#error "build with -DFUZZ_NAME='\"name\"'"
#endif
#ifndef TH_SRCDIR
#define TH_SRCDIR "."
#endif

/* Sanitizer hooks, present only when a sanitizer runtime is linked in. */
extern void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* UBSan exits without the death callback; made to abort, it reaches on_signal
 * and the input is reported. (UBSAN_OPTIONS still wins.) */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) {
  return "print_stacktrace=1:abort_on_error=1";
}

typedef struct input {
  uint8_t *p;        /* the bytes; owned */
  size_t len;        /* how many */
  char *name;        /* the file it came from (a seed), else NULL; owned */
} input;

/* ---- what is running, for the failure report ------------------------------------ */

static const uint8_t *cur;    /* the input being run */
static size_t cur_len;
static const char *cur_from;  /* a file name, or NULL for a mutant */
static long cur_iter = -1;    /* the mutation's number, -1 for a seed or a file */
static uint64_t seed = 1;
static int test_no;           /* the TAP test running */
static const char *phase = "";
static unsigned timeout = 10;

/* Async-signal-safe output: the report is written from signal handlers. */
static void put(const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(STDOUT_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

/* Write v in decimal at o; returns the end (a NUL is put there). */
static char *str_u64(char *o, uint64_t v) {
  char b[24], *p = b + sizeof b;
  *--p = '\0';
  do *--p = (char)('0' + v % 10); while ((v /= 10) != 0);
  while (*p) *o++ = *p++;
  *o = '\0';
  return o;
}

static void put_u64(uint64_t v) {
  char b[24];
  str_u64(b, v);
  put(b);
}

/* mkdir -p of the directories in path (the part before its last '/'). */
static void make_dirs(char *path) {
  char *last = strrchr(path, '/');
  for (char *p = path + 1; last != NULL && p <= last; p++) {
    if (*p != '/') continue;
    *p = '\0';
    mkdir(path, 0755);
    *p = '/';
  }
}

/* Save the failing input as FUZZ_FAILURES/NAME-seedS-iterI, or -seedS-input
 * for a seed or a replayed file; returns the path, or NULL. */
static const char *save_failure(void) {
  static char path[PATH_MAX];
  const char *dir = getenv("FUZZ_FAILURES");
  const char *parts[] = {dir ? dir : TH_SRCDIR "/build/fuzz/failures", "/", FUZZ_NAME, "-seed", NULL};
  char *o = path;
  for (int i = 0; parts[i]; i++)
    for (const char *s = parts[i]; *s && o < path + sizeof path - 64; s++) *o++ = *s;
  *o = '\0';
  make_dirs(path);
  o = str_u64(o, seed);
  if (cur_iter >= 0) {
    memcpy(o, "-iter", 6);
    str_u64(o + 5, (uint64_t)cur_iter);
  } else {
    memcpy(o, "-input", 7);
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return NULL;
  size_t done = 0;
  while (done < cur_len) {
    ssize_t w = write(fd, cur + done, cur_len - done);
    if (w <= 0) break;
    done += (size_t)w;
  }
  close(fd);
  return done == cur_len ? path : NULL;
}

static void report(const char *why) {
  static const char hex[] = "0123456789abcdef";
  put("not ok ");
  put_u64((uint64_t)test_no);
  put(" - " FUZZ_NAME ": ");
  put(phase);
  put(": ");
  put(why);
  put("\n# seed ");
  put_u64(seed);
  if (cur_iter >= 0) {
    put(", iteration ");
    put_u64((uint64_t)cur_iter);
  }
  if (cur_from) {
    put(", input ");
    put(cur_from);
  }
  put("\n");
  if (cur == NULL) return;
  put("# input, ");
  put_u64(cur_len);
  put(" bytes, hex:");
  for (size_t i = 0; i < cur_len; i++) {
    char b[3] = {hex[cur[i] >> 4], hex[cur[i] & 15], '\0'};
    if (i % 64 == 0) put("\n#   ");
    put(b);
  }
  put("\n");
  const char *saved = save_failure();
  if (saved) {
    put("# saved; replay with: build/fuzz/" FUZZ_NAME " ");
    put(saved);
    put("\n");
  }
  fuzz_tmpdir_remove();  /* not async-signal-safe, but the process ends here */
}

static void on_death(void) {
  report("sanitizer error (its report is above)");
}

static void on_signal(int sig) {
  if (sig == SIGALRM)
    report("timed out (an input ran longer than FUZZ_TIMEOUT seconds)");
  else if (sig == SIGABRT)
    report("aborted (a failed check or a sanitizer report is above)");
  else
    report("crashed on a signal");
  _exit(1);
}

/* ---- running one input -------------------------------------------------------- */

static void run(const uint8_t *p, size_t len) {
  uint8_t *copy = (uint8_t *)fuzz_dup(p, len);  /* exactly len bytes: ASan sees overreads */
  cur = copy;
  cur_len = len;
  alarm(timeout);
  LLVMFuzzerTestOneInput(copy, len);
  alarm(0);
  cur = NULL;
  free(copy);
}

/* ---- files ------------------------------------------------------------------------ */

static int read_file(const char *path, input *in) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return -errno;
  size_t cap = 4096, len = 0;
  uint8_t *p = malloc(cap);
  for (;;) {
    if (p == NULL) break;
    len += fread(p + len, 1, cap - len, f);
    if (len < cap) break;
    uint8_t *np = realloc(p, cap *= 2);
    if (np == NULL) free(p);
    p = np;
  }
  int err = ferror(f) ? EIO : 0;
  fclose(f);
  if (p == NULL) return -ENOMEM;
  if (err) {
    free(p);
    return -err;
  }
  in->p = p;
  in->len = len;
  in->name = NULL;
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file in dir, in name order, appended to *v. */
static size_t read_dir(const char *dir, input **v, size_t *n, size_t *cap) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  char **names = NULL;
  size_t nn = 0, added = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char **g = realloc(names, (nn + 1) * sizeof *g);
    if (g == NULL) break;
    names = g;
    if ((names[nn] = strdup(de->d_name)) == NULL) break;
    nn++;
  }
  closedir(d);
  if (nn > 0) qsort(names, nn, sizeof *names, by_name);
  for (size_t i = 0; i < nn; i++) {
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
      free(names[i]);
      continue;
    }
    if (*n == *cap) {
      input *g = realloc(*v, (*cap = *cap ? *cap * 2 : 64) * sizeof *g);
      if (g == NULL) abort();
      *v = g;
    }
    free(names[i]);
    if (read_file(path, &(*v)[*n]) == 0) {
      if (((*v)[*n].name = strdup(path)) == NULL) abort();
      (*n)++;
      added++;
    }
  }
  free(names);
  return added;
}

/* A libFuzzer dictionary: one "token" a line (name= before it allowed), with
 * \\, \" and \xAB escapes; '#' starts a comment. */
static void read_dict(const char *path, input **v, size_t *n) {
  input f;
  if (read_file(path, &f) < 0) return;
  size_t cap = 0;
  char *s = (char *)f.p, *end = s + f.len;
  while (s < end) {
    char *eol = memchr(s, '\n', (size_t)(end - s));
    if (eol == NULL) eol = end;
    char *q = memchr(s, '"', (size_t)(eol - s));
    if (q != NULL && *s != '#') {
      uint8_t *tok = malloc((size_t)(eol - q)), *o = tok;
      if (tok == NULL) abort();
      for (q++; q < eol && *q != '"'; q++) {
        if (*q == '\\' && q + 1 < eol) {
          q++;
          if (*q == 'x' && q + 2 < eol) {
            char h[3] = {q[1], q[2], '\0'};
            *o++ = (uint8_t)strtoul(h, NULL, 16);
            q += 2;
            continue;
          }
        }
        *o++ = (uint8_t)*q;
      }
      if (*n == cap) {
        input *g = realloc(*v, (cap = cap ? cap * 2 : 32) * sizeof *g);
        if (g == NULL) abort();
        *v = g;
      }
      (*v)[(*n)++] = (input){tok, (size_t)(o - tok), NULL};
    }
    s = eol + 1;
  }
  free(f.p);
}

/* ---- mutations -------------------------------------------------------------------- */

static input *pool;    /* seeds first, then mutants kept for more mutation */
static size_t npool, nseeds, pool_cap;
static input *dict;
static size_t ndict;
static size_t max_len = 4096;
static fuzz_rng rng;

static size_t below(size_t n) {
  return (size_t)fuzz_below(&rng, n);
}

/* Bytes that matter to some parser here: separators, wildcards, escapes. */
static const char special[] = "\n\r\t \0\xff*?/[]!^-\\%.{}\"0123456789:abcxyz";

static uint8_t special_byte(void) {
  return (uint8_t)special[below(sizeof special - 1)];
}

/* Insert n bytes at b[at] (len grows, up to max_len); src must not point into b. */
static void insert(uint8_t *b, size_t *len, size_t at, const uint8_t *src, size_t n) {
  if (n > max_len - *len) n = max_len - *len;
  memmove(b + at + n, b + at, *len - at);
  memcpy(b + at, src, n);
  *len += n;
}

static void mutate(uint8_t *b, size_t *len) {
  static uint8_t tmp[1 << 16];
  static const char *numbers[] = {"0", "1", "-1", "+1", "255", "256", "1023", "1024", "1025",
                                  "4294967295", "4294967296", "9223372036854775808",
                                  "18446744073709551615", "18446744073709551616",
                                  "99999999999999999999999", " 1", "0x1"};
  size_t ops = below(8) == 0 ? 1 + below(16) : 1 + below(4);
  for (size_t k = 0; k < ops; k++) {
    size_t at = below(*len + 1), n;
    switch (below(10)) {
    case 0:  /* flip a bit */
      if (at < *len) b[at] ^= (uint8_t)(1u << below(8));
      break;
    case 1:  /* any byte */
      if (at < *len) b[at] = (uint8_t)below(256);
      break;
    case 2:  /* a byte that means something */
      if (at < *len) b[at] = special_byte();
      break;
    case 3:  /* insert random bytes */
      n = 1 + below(8);
      for (size_t i = 0; i < n; i++) tmp[i] = below(2) ? (uint8_t)below(256) : special_byte();
      insert(b, len, at, tmp, n);
      break;
    case 4:  /* insert a token of the dictionary */
      if (ndict > 0) {
        input *t = &dict[below(ndict)];
        insert(b, len, at, t->p, t->len);
      }
      break;
    case 5:  /* delete a run */
      if (at < *len) {
        n = 1 + below(below(4) == 0 ? *len - at : (*len - at < 16 ? *len - at : 16));
        memmove(b + at, b + at + n, *len - at - n);
        *len -= n;
      }
      break;
    case 6: {  /* repeat a run of itself: long lines, many stars */
      if (*len == 0) break;
      size_t from = below(*len), rn = 1 + below(*len - from < 8 ? *len - from : 8);
      size_t times = 1 + (below(4) == 0 ? below(256) : below(4));
      for (size_t i = 0; i < times && *len < max_len; i++) {
        memcpy(tmp, b + from, rn);
        insert(b, len, at, tmp, rn);
      }
      break;
    }
    case 7: {  /* insert a piece of another input, or write it over this one */
      int over = (int)below(2);
      input *o = &pool[below(npool)];
      if (o->len == 0) break;
      size_t from = below(o->len);
      n = 1 + below(o->len - from);
      if (n > sizeof tmp) n = sizeof tmp;
      memcpy(tmp, o->p + from, n);
      if (!over || at == *len) {
        insert(b, len, at, tmp, n);
      } else {
        if (n > *len - at) n = *len - at;
        memcpy(b + at, tmp, n);
      }
      break;
    }
    case 8: {  /* replace a number with a boundary value */
      size_t i = at;
      while (i < *len && (b[i] < '0' || b[i] > '9')) i++;
      if (i == *len) break;
      size_t j = i;
      while (j < *len && b[j] >= '0' && b[j] <= '9') j++;
      memmove(b + i, b + j, *len - j);
      *len -= j - i;
      const char *num = numbers[below(sizeof numbers / sizeof *numbers)];
      memcpy(tmp, num, strlen(num));
      insert(b, len, i, tmp, strlen(num));
      break;
    }
    default: /* cut at a random place: truncated input */
      *len = at;
      break;
    }
  }
}

/* Keep a mutant for further mutation; the seeds always stay. */
static void keep(const uint8_t *p, size_t len) {
  uint8_t *c = malloc(len ? len : 1);
  if (c == NULL) abort();
  memcpy(c, p, len);
  if (npool < pool_cap) {
    pool[npool++] = (input){c, len, NULL};
  } else {
    input *victim = &pool[nseeds + below(npool - nseeds)];
    free(victim->p);
    *victim = (input){c, len, NULL};
  }
}

static unsigned long env_num(const char *name, unsigned long def) {
  const char *s = getenv(name);
  if (s == NULL || *s == '\0') return def;
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno || *end != '\0') {
    fprintf(stderr, "%s=%s: not a number\n", name, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGALRM};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, NULL);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(on_death);

  seed = env_num("FUZZ_SEED", 1);
  timeout = (unsigned)env_num("FUZZ_TIMEOUT", 10);
  max_len = env_num("FUZZ_MAX_LEN", 4096);
  if (max_len < 16 || max_len > (1 << 16) - 256) max_len = 4096;
  unsigned long iterations = env_num("FUZZ_ITERATIONS", 20000);

  if (argc > 1) {  /* replay the inputs named */
    int unread = 0;
    phase = "replay";
    for (int i = 1; i < argc; i++) {
      input in;
      test_no = i;
      int rc = read_file(argv[i], &in);
      if (rc < 0) {
        printf("not ok %d - " FUZZ_NAME ": read %s: %s\n", i, argv[i], strerror(-rc));
        unread++;
        continue;
      }
      cur_from = argv[i];
      run(in.p, in.len);
      printf("ok %d - " FUZZ_NAME ": %s (%zu bytes)\n", i, argv[i], in.len);
      free(in.p);
    }
    printf("1..%d\n", argc - 1);
    return unread ? 1 : 0;
  }

  const char *corpus = getenv("FUZZ_CORPUS");
  const char *dictfile = getenv("FUZZ_DICT");
  if (corpus == NULL) corpus = TH_SRCDIR "/tests/fuzz/corpus/" FUZZ_NAME;
  if (dictfile == NULL) dictfile = TH_SRCDIR "/tests/fuzz/" FUZZ_NAME ".dict";
  read_dict(dictfile, &dict, &ndict);
  nseeds = read_dir(corpus, &pool, &npool, &pool_cap);
  int failures = 0;

  test_no = 1;
  phase = "seed corpus";
  if (nseeds == 0) {
    printf("not ok 1 - " FUZZ_NAME ": no seed inputs in %s\n", corpus);
    printf("1..1\n");
    return 1;
  }
  for (size_t i = 0; i < nseeds; i++) {
    cur_from = pool[i].name;
    run(pool[i].p, pool[i].len);
  }
  cur_from = NULL;
  printf("ok 1 - " FUZZ_NAME ": %zu seed inputs from %s\n", nseeds, corpus);

  /* Up to 1024 mutants join the seeds, then replace one another. */
  pool_cap = nseeds + 1024;
  input *g = realloc(pool, pool_cap * sizeof *g);
  if (g == NULL) abort();
  pool = g;
  rng.s = seed;
  test_no = 2;
  phase = "mutations";
  uint8_t *work = malloc(max_len);
  if (work == NULL) abort();
  for (unsigned long i = 0; i < iterations; i++) {
    input *from = &pool[below(npool)];
    size_t len = from->len < max_len ? from->len : max_len;
    memcpy(work, from->p, len);
    mutate(work, &len);
    cur_iter = (long)i;
    run(work, len);
    if (below(4) == 0) keep(work, len);
  }
  cur_iter = -1;
  free(work);
  printf("ok 2 - " FUZZ_NAME ": %lu mutations (FUZZ_SEED=%llu, inputs up to %zu bytes)\n",
         iterations, (unsigned long long)seed, max_len);

  for (size_t i = 0; i < npool; i++) {
    free(pool[i].p);
    free(pool[i].name);
  }
  free(pool);
  for (size_t i = 0; i < ndict; i++) free(dict[i].p);
  free(dict);
  int tests = 2;
  if (__lsan_do_recoverable_leak_check) {
    tests++;
    if (__lsan_do_recoverable_leak_check() != 0) {
      printf("not ok 3 - " FUZZ_NAME ": memory leaked (LeakSanitizer's report is above)\n");
      failures++;
    } else {
      printf("ok 3 - " FUZZ_NAME ": no memory leaked\n");
    }
  }
  printf("1..%d\n", tests);
  return failures ? 1 : 0;
}
