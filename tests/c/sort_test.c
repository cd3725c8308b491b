/* sort_test.c: th_sort (host/worker/sort.c), the worker's qsort. TAP.
 *
 * It must sort like qsort, any element size, any count, and make no system
 * call: glibc's qsort asks the kernel for the memory size (sysinfo) the first
 * time it sorts more than 1 KiB, and a worker under its seccomp filter died
 * of it. Checked by sorting in a child whose filter kills on sysinfo, beside
 * glibc's qsort in another such child, which must die, so that the check
 * could fail.
 */
#define _GNU_SOURCE
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"
#include "worker/sort.h"

typedef struct wide {
  uint32_t key;
  unsigned char rest[52];  /* as large as the encoder's keys */
} wide;

static int wide_cmp(const void *a, const void *b) {
  const wide *x = a, *y = b;
  return (x->key > y->key) - (x->key < y->key);
}

static int byte_cmp(const void *a, const void *b) { return *(const unsigned char *)a - *(const unsigned char *)b; }

static uint64_t rng = 88172645463325252ULL;
static uint32_t next(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)rng;
}

/* Sorts n wide elements (keys below range) with th_sort and with qsort;
 * the same keys in the same order, each element's bytes kept with its key. */
static int sorts_like_qsort(size_t n, uint32_t range) {
  wide *a = malloc((n ? n : 1) * sizeof *a), *b = malloc((n ? n : 1) * sizeof *b);
  for (size_t i = 0; i < n; i++) {
    a[i].key = range ? next() % range : next();
    for (size_t k = 0; k < sizeof a[i].rest; k++) a[i].rest[k] = (unsigned char)(a[i].key * 31 + k);
  }
  memcpy(b, a, n * sizeof *a);
  th_sort(a, n, sizeof *a, wide_cmp);
  qsort(b, n, sizeof *b, wide_cmp);
  int ok = 1;
  for (size_t i = 0; i < n && ok; i++) {
    ok = a[i].key == b[i].key;
    for (size_t k = 0; k < sizeof a[i].rest && ok; k++) ok = a[i].rest[k] == (unsigned char)(a[i].key * 31 + k);
  }
  free(a);
  free(b);
  return ok;
}

/* In a child that dies on sysinfo: sort 10,000 wide elements with th_sort
 * (use_qsort 0) or glibc's qsort (1). Returns the child's wait status. */
static int sort_under_filter(int use_qsort) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (ctx == NULL || seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, SCMP_SYS(sysinfo), 0) != 0 ||
        seccomp_load(ctx) != 0)
      _exit(99);
    static wide a[10000];
    for (size_t i = 0; i < 10000; i++) a[i].key = next();
    if (use_qsort) qsort(a, 10000, sizeof *a, wide_cmp);
    else th_sort(a, 10000, sizeof *a, wide_cmp);
    for (size_t i = 1; i < 10000; i++)
      if (a[i - 1].key > a[i].key) _exit(1);
    _exit(0);
  }
  int st = -1;
  waitpid(pid, &st, 0);
  return st;
}

int main(void) {
  /* First: glibc asks the kernel once a process, and a child inherits the answer. */
  int st = sort_under_filter(0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "sorts 10,000 elements of 56 bytes in a process that may not call sysinfo"
        " (status %d)", st);
  st = sort_under_filter(1);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS,
        "where glibc's qsort dies of it (SIGSYS), so the check above can fail (status %d)", st);
  int ok = 1;
  for (size_t n = 0; n <= 70 && ok; n++) ok = sorts_like_qsort(n, 0) && sorts_like_qsort(n, 5);
  CHECK(ok, "sorts 0 to 70 elements of 56 bytes like qsort, distinct keys and repeated ones");
  ok = sorts_like_qsort(5000, 0) && sorts_like_qsort(5000, 3) && sorts_like_qsort(4097, 1000);
  CHECK(ok, "sorts thousands of them like qsort");
  unsigned char bytes[300];
  for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)next();
  th_sort(bytes, sizeof bytes, 1, byte_cmp);
  ok = 1;
  for (size_t i = 1; i < sizeof bytes; i++) ok &= bytes[i - 1] <= bytes[i];
  CHECK(ok, "sorts elements of one byte");
  return TAP_END();
}
