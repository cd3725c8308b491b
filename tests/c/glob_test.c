/* glob_test.c: PATH patterns, matched and walked over a real directory tree.
 * Prints TAP. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "glob.h"
#include "tap.h"


static void glob_match_segments_and_double_star(void) {
  CHECK(th_glob_match("/var/log/ct/*.ndjson", "/var/log/ct/a.ndjson"), "star within a segment");
  CHECK(!th_glob_match("/var/log/ct/*.ndjson", "/var/log/ct/x/a.ndjson"), "star does not cross '/'");
  CHECK(th_glob_match("logs/**/*.ndjson", "logs/a.ndjson"), "double star matches zero segments");
  CHECK(th_glob_match("logs/**/*.ndjson", "logs/x/y/b.ndjson"), "double star matches several segments");
  CHECK(!th_glob_match("logs/**/*.ndjson", "other/b.ndjson"), "double star keeps the prefix");
  CHECK(th_glob_match("logs/**", "logs/x/y"), "trailing double star matches everything under");
  CHECK(th_glob_match("a/?.j[sx]on", "a/b.json"), "question mark and brackets");
  CHECK(!th_glob_match("a/*", "a/.hidden"), "star does not match a leading dot");
  CHECK(th_glob_match("./a/*.gz", "a/x.gz"), "leading ./ ignored");
}

/* Found by tests/fuzz/glob_fuzz.c: it matched nothing, fnmatch(3) matched. */
static void glob_match_long_segments(void) {
  char pat[400] = "", name[100];
  for (int i = 0; i < 60; i++) strcat(pat, "[a-z]");  /* 300 bytes */
  memset(name, 'q', 60);
  name[60] = '\0';
  CHECK(th_glob_match(pat, name), "a pattern segment longer than NAME_MAX still matches");
}

/* Found by tests/fuzz/glob_fuzz.c: a star did not match the empty segment after "a/",
 * as fnmatch(3) does, and "a/" matched "a". */
static void glob_match_empty_segments_as_fnmatch(void) {
  CHECK(!th_glob_match("a/", "a") && !th_glob_match("a", "a/"), "a trailing '/' is a segment more");
  CHECK(th_glob_match("a/*", "a/") && th_glob_match("*", ""), "a star matches an empty segment");
  CHECK(th_glob_match("a//b", "a//b") && !th_glob_match("a//b", "a/b"), "'//' holds an empty segment");
  CHECK(!th_glob_match("logs/**", "logs"), "a trailing double star needs a segment");
  CHECK(th_glob_match("logs/**", "logs/"), "an empty one will do");
}

/* Found by tests/fuzz/glob_fuzz.c: patterns with a few dozen "**" timed out. */
static void on_alarm(int sig) {
  (void)sig;
  printf("not ok - glob_match_many_double_stars_is_quick: still matching after 10 s\n");
  fflush(stdout);
  _exit(1);
}

static void glob_match_many_double_stars_is_quick(void) {
  char pat[400] = "", path[400] = "";
  for (int i = 0; i < 40; i++) strcat(pat, "**/a/");
  strcat(pat, "x");
  for (int i = 0; i < 60; i++) strcat(path, "a/");
  strcat(path, "y");
  signal(SIGALRM, on_alarm);
  alarm(10);
  clock_t t = clock();
  int m = th_glob_match(pat, path);
  double s = (double)(clock() - t) / CLOCKS_PER_SEC;
  alarm(0);
  CHECK(!m && s < 1, "40 double stars against 60 segments: no match, in %.3f s", s);
  path[strlen(path) - 1] = 'x';
  CHECK(th_glob_match(pat, path), "and a match when the last segment fits");
}

static void glob_base_is_the_plain_prefix(void) {
  char *b;
  b = th_glob_base("/var/log/ct/*.ndjson");
  CHECK(strcmp(b, "/var/log/ct") == 0, "base of /var/log/ct/*.ndjson is /var/log/ct (%s)", b);
  free(b);
  b = th_glob_base("*.ndjson");
  CHECK(strcmp(b, ".") == 0, "base of a relative name pattern is . (%s)", b);
  free(b);
  b = th_glob_base("logs/**/x/*.gz");
  CHECK(strcmp(b, "logs") == 0, "base stops at the first wildcard segment (%s)", b);
  free(b);
  b = th_glob_base("logs/a\\x/b/*.gz");  /* matches logs/ax/b/...: no directory a\x to start in */
  CHECK(strcmp(b, "logs") == 0, "base stops at a segment with a backslash (%s)", b);
  free(b);
}

static void glob_may_contain_prunes_directories(void) {
  CHECK(th_glob_may_contain("logs/**/*.ndjson", "logs/a/b"), "double star: any directory below");
  CHECK(th_glob_may_contain("logs/*/x/*.gz", "logs/a"), "a directory a segment matches");
  CHECK(!th_glob_may_contain("logs/*.ndjson", "logs/a"), "no directory below the last segment");
  CHECK(!th_glob_may_contain("logs/*", "logs/sub"), "a directory PATH's subdirectories are not entered");
  CHECK(!th_glob_may_contain("logs/*/x/*.gz", "other/a"), "another prefix");
}

static char found[4096];
static void collect(void *ud, const char *path, const struct stat *st) {
  (void)ud;
  (void)st;
  strcat(found, path);
  strcat(found, " ");
}

static void touch(const char *p) {
  FILE *f = fopen(p, "w");
  if (f) fclose(f);
}

static void glob_walk_finds_files_in_order(void) {
  char dir[] = "/tmp/th-glob-XXXXXX";
  if (mkdtemp(dir) == NULL) return;
  char p[512];
  const char *files[] = {"b.ndjson", "a.ndjson", "x/c.ndjson", "x/y/d.ndjson", "x/e.txt", NULL};
  snprintf(p, sizeof p, "%s/x", dir);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/x/y", dir);
  mkdir(p, 0700);
  for (int i = 0; files[i]; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    touch(p);
  }
  char pat[512], want[2048];
  found[0] = '\0';
  snprintf(pat, sizeof pat, "%s/*.ndjson", dir);
  int n = th_glob_walk(pat, collect, NULL);
  snprintf(want, sizeof want, "%s/a.ndjson %s/b.ndjson ", dir, dir);
  CHECK(n == 2 && strcmp(found, want) == 0, "walk of dir/*.ndjson: %s", found);

  found[0] = '\0';
  snprintf(pat, sizeof pat, "%s/**/*.ndjson", dir);
  n = th_glob_walk(pat, collect, NULL);
  snprintf(want, sizeof want, "%s/a.ndjson %s/b.ndjson %s/x/c.ndjson %s/x/y/d.ndjson ", dir, dir, dir, dir);
  CHECK(n == 4 && strcmp(found, want) == 0, "walk of dir/**/*.ndjson: %s", found);

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) printf("# could not remove %s\n", dir);
}

int main(void) {
  glob_match_segments_and_double_star();
  glob_match_long_segments();
  glob_match_empty_segments_as_fnmatch();
  glob_match_many_double_stars_is_quick();
  glob_base_is_the_plain_prefix();
  glob_may_contain_prunes_directories();
  glob_walk_finds_files_in_order();
  return TAP_END();
}
