/* checkpoint_test.c: the state file and fingerprints, on real files. TAP. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "tap.h"


static char dir[] = "/tmp/th-ckpt-XXXXXX";

static void write_file(const char *p, const char *data, size_t n) {
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, data, n) != (ssize_t)n) perror(p);
  close(fd);
}

static void checkpoint_round_trips_entries(void) {
  char state[256];
  snprintf(state, sizeof state, "%s/state", dir);
  th_ckpt e[2] = {
    {"/var/log/ct/a.ndjson", 2049, 123456, 1024, 0xdeadbeefcafef00dULL, 987654321, 0, 4096,
     0x0123456789abcdefULL},
    {"/odd dir/100% new\nline.json.gz", 1, 2, 17, 42, 0, TH_CKPT_DONE, 0, 0},
  };
  CHECK(th_ckpt_save(state, e, 2, 0) == 0, "checkpoint_save writes the state file");
  struct stat st;
  char tmp[300];
  snprintf(tmp, sizeof tmp, "%s.tmp", state);
  CHECK(stat(tmp, &st) < 0 && errno == ENOENT, "no temporary file is left behind");
  th_ckpt *got;
  size_t n;
  int bad;
  int rc = th_ckpt_load(state, &got, &n, &bad);
  CHECK(rc == 0 && n == 2, "checkpoint_load reads both entries back (rc %d, n %zu)", rc, n);
  if (rc == 0 && n == 2) {
    CHECK(strcmp(got[0].path, e[0].path) == 0 && got[0].dev == 2049 && got[0].ino == 123456 &&
              got[0].fp_len == 1024 && got[0].fp == e[0].fp && got[0].offset == 987654321 &&
              got[0].flags == 0 && got[0].back_len == 4096 && got[0].back_hash == e[0].back_hash,
          "every field survives, the back hash included");
    CHECK(strcmp(got[1].path, e[1].path) == 0 && got[1].flags == TH_CKPT_DONE,
          "a path with spaces, %% and a newline survives");
    th_ckpt_free(got, n);
  }
}

static void checkpoint_dates_the_file_as_told(void) {
  char state[256];
  snprintf(state, sizeof state, "%s/dated", dir);
  th_ckpt e = {"/var/log/a", 1, 2, 0, 0, 0, 0, 0, 0};
  struct stat st;
  CHECK(th_ckpt_save(state, &e, 1, 1700000000.25) == 0 && stat(state, &st) == 0 &&
            st.st_mtim.tv_sec == 1700000000 && st.st_mtim.tv_nsec / 1000000 == 250,
        "the state file's time is the one given (when every change before it was looked at)");
}

static void checkpoint_writes_version_2(void) {
  char state[256];
  snprintf(state, sizeof state, "%s/state", dir);
  FILE *f = fopen(state, "r");
  char head[64] = "";
  if (f) {
    if (fgets(head, sizeof head, f) == NULL) head[0] = '\0';
    fclose(f);
  }
  int v2 = strcmp(head, "trailhound-state 2\n") == 0;
  head[strcspn(head, "\n")] = '\0';
  CHECK(v2, "the state is written as version 2 (%s)", head);
}

static void checkpoint_reads_version_1(void) {
  char state[256];
  snprintf(state, sizeof state, "%s/state1", dir);
  const char *v1 = "trailhound-state 1\n"
                   "65024 10961279 1024 b548ad49f063adf3 1388 0 /tmp/logs/ct/app.ndjson\n"
                   "65024 10961068 1024 f2e3869d51141cb7 7565 1 /tmp/logs/ct/a%20b.json.gz\n";
  write_file(state, v1, strlen(v1));
  th_ckpt *got;
  size_t n;
  int bad;
  int rc = th_ckpt_load(state, &got, &n, &bad);
  CHECK(rc == 0 && n == 2, "a version 1 state file is read (rc %d, n %zu)", rc, n);
  if (rc == 0 && n == 2) {
    CHECK(got[0].ino == 10961279 && got[0].fp == 0xb548ad49f063adf3ULL && got[0].offset == 1388 &&
              got[0].back_len == 0 && strcmp(got[0].path, "/tmp/logs/ct/app.ndjson") == 0,
          "its entries have no back hash (back_len 0)");
    CHECK(got[1].flags == TH_CKPT_DONE && strcmp(got[1].path, "/tmp/logs/ct/a b.json.gz") == 0,
          "flags and escaped paths of version 1 are read");
    th_ckpt_free(got, n);
  }
  const char *v2bad = "trailhound-state 2\n65024 1 1024 b548ad49f063adf3 1388 0 /no/back/fields\n";
  write_file(state, v2bad, strlen(v2bad));
  CHECK(th_ckpt_load(state, &got, &n, &bad) == -EINVAL && bad == 2,
        "a version 2 line without its back fields is damage");
}

/* The restart check: same first bytes, and the same bytes before the offset. */
static void checkpoint_check_tells_a_rewritten_file(void) {
  char p[256];
  snprintf(p, sizeof p, "%s/back", dir);
  char text[6000];
  for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + i % 23);
  for (size_t i = 99; i < sizeof text; i += 100) text[i] = '\n';
  write_file(p, text, sizeof text);
  int fd = open(p, O_RDONLY);
  th_ckpt k = {p, 0, 0, 0, 0, 5000, 0, 4096, th_fnv1a(text + 5000 - 4096, 4096)};
  th_fingerprint(fd, &k.fp_len, &k.fp);
  CHECK(th_ckpt_check(fd, sizeof text, &k) == TH_CKPT_SAME, "the file it was saved for is the same");
  CHECK(th_ckpt_check(fd, 4999, &k) == TH_CKPT_SHORTER, "shorter than the offset: truncated");
  close(fd);
  /* Same first KiB, other bytes before the offset: a new file that got the
   * old inode, or one rewritten while the host was stopped. */
  text[4500] = 'X';
  write_file(p, text, sizeof text);
  fd = open(p, O_RDONLY);
  CHECK(th_ckpt_check(fd, sizeof text, &k) == TH_CKPT_REWRITTEN,
        "the same first KiB with other bytes before the offset is rewritten");
  close(fd);
  text[0] = 'X';
  write_file(p, text, sizeof text);
  fd = open(p, O_RDONLY);
  CHECK(th_ckpt_check(fd, sizeof text, &k) == TH_CKPT_OTHER, "other first bytes: another file");
  close(fd);
  th_ckpt v1 = k;
  v1.back_len = 0;
  text[0] = 'a';
  write_file(p, text, sizeof text);
  fd = open(p, O_RDONLY);
  CHECK(th_ckpt_check(fd, sizeof text, &v1) == TH_CKPT_SAME,
        "without a back hash (version 1) the fingerprint alone decides");
  close(fd);
}

static void checkpoint_reports_damage(void) {
  char state[256];
  snprintf(state, sizeof state, "%s/state", dir);
  FILE *f = fopen(state, "r");
  char buf[1024];
  size_t len = fread(buf, 1, sizeof buf, f);
  fclose(f);
  write_file(state, buf, len / 2);  /* cut in half */
  th_ckpt *got;
  size_t n;
  int bad;
  int rc = th_ckpt_load(state, &got, &n, &bad);
  CHECK(rc == -EINVAL && bad >= 1, "a state file cut in half is damaged (rc %d, line %d)", rc, bad);
  write_file(state, "", 0);
  CHECK(th_ckpt_load(state, &got, &n, &bad) == -EINVAL && bad == 1,
        "an empty state file is damaged at line 1, where its header should be (line %d)", bad);
  write_file(state, "garbage\n", 8);
  CHECK(th_ckpt_load(state, &got, &n, &bad) == -EINVAL && bad == 1, "a foreign file is damaged");
  char missing[256];
  snprintf(missing, sizeof missing, "%s/none", dir);
  CHECK(th_ckpt_load(missing, &got, &n, &bad) == 0 && n == 0, "a missing state file is no entries");
}

/* A line loads only in the form th_ckpt_save writes it: sscanf took a
 * missing space, signs and numbers that wrap, and %00 ended the path (found
 * by tests/fuzz/checkpoint_fuzz.c: "... 0%00 /p" loaded with an empty path). */
static void checkpoint_reads_lines_only_as_written(void) {
  static const char *const damaged[] = {
    "1 2 17 2a 0 0%00/a",                  /* no space before the path */
    "1 2 17 2a 0 0 %00",                   /* a NUL is no path */
    "1 2 17 2a 0 0 /a%00b",
    "1 2 17 2a 0 0 /a%2",                  /* half an escape */
    "1 2 17 2a 0 0 /a%zz",
    "1 2 17 2a 0 0 /a% 41",
    "1 2 17 2a 0 0 ",                      /* no path */
    "1 2 17 2a 0 0 /a b",                  /* a raw space: written %20 */
    "1 2 17 2a 0 0 /a\r",                  /* a CRLF file, or a raw CR */
    "1  2 17 2a 0 0 /a",                   /* two spaces */
    "-1 2 17 2a 0 0 /a",                   /* a sign */
    "+1 2 17 2a 0 0 /a",
    " 1 2 17 2a 0 0 /a",
    "18446744073709551616 2 17 2a 0 0 /a", /* 2^64 */
    "1 2 4294967296 2a 0 0 /a",            /* fp_len 2^32: wrapped to 0, matching any file */
    "1 2 1025 2a 0 0 /a",                  /* more than TH_FP_MAX */
    "1 2 17 2a 0 4294967297 /a",           /* flags 2^32 + 1: wrapped to TH_CKPT_DONE */
    "1 2 17 0x2a 0 0 /a",
    "1 2 17 10000000000000000 0 0 /a",     /* 17 hex digits */
    "1 2 17 2a 0 /a",                      /* a field missing */
  };
  char state[256];
  snprintf(state, sizeof state, "%s/state", dir);
  th_ckpt *got;
  size_t n;
  int bad, all = 1;
  for (size_t i = 0; i < sizeof damaged / sizeof *damaged; i++) {
    char text[512];
    int len = snprintf(text, sizeof text, "trailhound-state 1\n%s\n", damaged[i]);
    write_file(state, text, (size_t)len);
    int rc = th_ckpt_load(state, &got, &n, &bad);
    if (rc != -EINVAL || bad != 2) {
      all = 0;
      printf("# \"%s\": rc %d, line %d\n", damaged[i], rc, bad);
      if (rc == 0) th_ckpt_free(got, n);
    }
  }
  CHECK(all, "checkpoint_load reports each damaged line at its number");

  const char good[] = "trailhound-state 1\n007 2 1024 2A 18446744073709551615 4294967295 /a%41%0a\tb\n";
  write_file(state, good, sizeof good - 1);
  int rc = th_ckpt_load(state, &got, &n, &bad);
  CHECK(rc == 0 && n == 1 && got[0].dev == 7 && got[0].fp == 0x2a && got[0].fp_len == 1024 &&
            got[0].offset == UINT64_MAX && got[0].flags == 4294967295u &&
            strcmp(got[0].path, "/aA\n\tb") == 0,
        "leading zeros, upper-case hex, largest values and a raw tab still load (rc %d)", rc);
  if (rc == 0) th_ckpt_free(got, n);

  char long_path[PATH_MAX + 64];
  for (int len = PATH_MAX - 1; len <= PATH_MAX; len++) {
    int k = snprintf(long_path, sizeof long_path, "trailhound-state 1\n1 2 3 4 5 0 /");
    memset(long_path + k, 'a', (size_t)len - 1);
    long_path[k + len - 1] = '\n';
    write_file(state, long_path, (size_t)(k + len));
    rc = th_ckpt_load(state, &got, &n, &bad);
    if (len < PATH_MAX) {
      CHECK(rc == 0 && n == 1 && strlen(got[0].path) == PATH_MAX - 1, "a path of PATH_MAX - 1 bytes loads");
      if (rc == 0) th_ckpt_free(got, n);
    } else {
      CHECK(rc == -EINVAL && bad == 2, "a path of PATH_MAX bytes is damage (rc %d)", rc);
      if (rc == 0) th_ckpt_free(got, n);
    }
  }
}

static void fingerprint_tells_files_apart(void) {
  char a[256], b[256];
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  char big[3000];
  memset(big, 'x', sizeof big);
  write_file(a, big, sizeof big);
  big[10] = 'y';
  write_file(b, big, sizeof big);
  int fa = open(a, O_RDONLY), fb = open(b, O_RDONLY);
  uint32_t la, lb;
  uint64_t ha, hb;
  th_fingerprint(fa, &la, &ha);
  th_fingerprint(fb, &lb, &hb);
  CHECK(la == TH_FP_MAX && lb == TH_FP_MAX && ha != hb, "fingerprints cover the first %d bytes", TH_FP_MAX);
  CHECK(th_fingerprint_matches(fa, la, ha) && !th_fingerprint_matches(fb, la, ha),
        "a file matches its own fingerprint only");
  close(fa);
  close(fb);
  write_file(a, "short", 5);
  fa = open(a, O_RDONLY);
  th_fingerprint(fa, &la, &ha);
  close(fa);
  write_file(a, "short and then it grew", 22);
  fa = open(a, O_RDONLY);
  CHECK(la == 5 && th_fingerprint_matches(fa, la, ha), "a file that grew still matches its short fingerprint");
  close(fa);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  checkpoint_round_trips_entries();
  checkpoint_writes_version_2();
  checkpoint_dates_the_file_as_told();
  checkpoint_reads_version_1();
  checkpoint_check_tells_a_rewritten_file();
  checkpoint_reports_damage();
  checkpoint_reads_lines_only_as_written();
  fingerprint_tells_files_apart();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) printf("# could not remove %s\n", dir);
  return TAP_END();
}
