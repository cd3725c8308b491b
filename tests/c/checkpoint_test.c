/* checkpoint_test.c: the state file and fingerprints, on real files. TAP. */
#include <errno.h>
#include <fcntl.h>
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
    {"/var/log/ct/a.ndjson", 2049, 123456, 1024, 0xdeadbeefcafef00dULL, 987654321, 0},
    {"/odd dir/100% new\nline.json.gz", 1, 2, 17, 42, 0, TH_CKPT_DONE},
  };
  CHECK(th_ckpt_save(state, e, 2) == 0, "checkpoint_save writes the state file");
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
              got[0].flags == 0,
          "every field survives");
    CHECK(strcmp(got[1].path, e[1].path) == 0 && got[1].flags == TH_CKPT_DONE,
          "a path with spaces, %% and a newline survives");
    th_ckpt_free(got, n);
  }
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
  checkpoint_reports_damage();
  fingerprint_tells_files_apart();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) printf("# could not remove %s\n", dir);
  return TAP_END();
}
