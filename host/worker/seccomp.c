/* seccomp.c: the worker's seccomp filter (see seccomp.h), built with
 * libseccomp, which checks the architecture, resolves names to numbers and
 * compares 64-bit arguments for us.
 *
 * Everything not listed is denied. The list was found by running the Lua
 * engine with lua-cjson under strace after start-up (decoding, string and
 * table work, large and small allocations, os.time/os.date/os.clock, stdio
 * on fds 0, 1 and 2), then kept only for what a worker cannot do without:
 *
 *   read on fd 0; write and writev on fds 1 and 2 (argument checks): the
 *     pipes to the host, and its stderr (glibc writes its fatal messages,
 *     "double free detected", with writev). Any other descriptor a hole
 *     might find or guess is neither read nor written; the status page on
 *     fd 3 is mapped, not written.
 *   brk, mmap, munmap, mremap, madvise, mprotect: malloc and Lua's heap.
 *     mmap and mprotect only without PROT_EXEC: no new code at run time.
 *     mmap of a descriptor is allowed, but the only ones open are the
 *     worker's own.
 *   clock_gettime, clock_getres, gettimeofday, time: os.clock (the CPU-time
 *     clock is a real system call, the others mostly vDSO), the limits'
 *     timing, thsys.now. nanosleep, clock_nanosleep and restart_syscall
 *     (which resumes a sleep stopped by SIGSTOP): nothing needs to sleep,
 *     but sleeping reaches nothing and the host's watchdog bounds it.
 *   exit, exit_group: _exit and returning from main.
 *   rt_sigreturn, rt_sigprocmask, sigaltstack: returning from a signal
 *     handler (the sanitizers install some), and abort().
 *   getpid, gettid, and tgkill of this process with SIGABRT only: abort()
 *     (an assert, a Lua panic, a glibc fatal error) raises SIGABRT through
 *     them, so the host sees the abort it is, not SIGSYS. Signalling any
 *     other process is denied.
 *   futex, FUTEX_WAKE_PRIVATE and FUTEX_WAIT_PRIVATE only: a worker has one
 *     thread, but pthread_once wakes waiters even when there are none, and
 *     glibc aborts when futex fails (ASan's stack unwinding, on its way
 *     to a report, goes through one). The other operations (PI, requeue) are where futex bugs were.
 *   close: only ever gives up access; glibc and Lua close things on their
 *     error paths, and a worker killed for that would be a false alarm.
 *
 * fstat and newfstatat fail with EPERM rather than kill: glibc's stdio
 * fstats a stream's descriptor on its first buffered use, to size the buffer,
 * and goes on with BUFSIZ when it cannot. Allowing them is no option:
 * newfstatat takes a path the filter cannot see, which would let a hole stat
 * any file.
 *
 * Left out on purpose: open/openat/creat, execve/execveat, fork/vfork/clone/
 * clone3, socket/socketpair/connect, kill, ptrace, ioctl (thsys.isatty and
 * columns are for the commands, not workers), getrandom (nothing in Lua or
 * lua-cjson uses it), lseek, poll.
 * Another architecture's calls (i386 int 0x80) and x32 calls kill the process.
 *
 * Cost, measured on the development machine (x86_64, Linux 6.x): about 10 ns
 * more per call allowed outright (the kernel caches those in a bitmap and
 * skips the filter), about 30 ns more for the ones with argument checks
 * (read, write, mmap). A worker makes a few per batch.
 */
#define _GNU_SOURCE
#include "seccomp.h"

#include <errno.h>
#include <linux/futex.h>
#include <seccomp.h>  /* libseccomp's: build with -Ihost, never -Ihost/worker */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

/* The filter being built, and its first failure. */
typedef struct build {
  scmp_filter_ctx ctx;
  uint32_t deny;     /* the default action */
  int rc;            /* 0, or the first negative errno */
  const char *what;  /* the call whose rule failed */
} build;

static void add(build *b, uint32_t action, int nr, const char *name, unsigned n,
                const struct scmp_arg_cmp *cmp) {
  if (b->rc < 0 || action == b->deny) return;  /* libseccomp refuses a rule that changes nothing */
  int rc = seccomp_rule_add_array(b->ctx, action, nr, n, cmp);
  if (rc < 0) {
    b->rc = rc;
    b->what = name;
  }
}

#define ALLOW(b, name) add(b, SCMP_ACT_ALLOW, SCMP_SYS(name), #name, 0, NULL)
#define ALLOW_IF(b, name, ...)                                                  \
  add(b, SCMP_ACT_ALLOW, SCMP_SYS(name), #name,                                 \
      sizeof((const struct scmp_arg_cmp[]){__VA_ARGS__}) / sizeof(struct scmp_arg_cmp), \
      (const struct scmp_arg_cmp[]){__VA_ARGS__})
#define FAIL(b, name) add(b, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(name), #name, 0, NULL)

/* The list, in the order of the comment at the top. */
static void rules(build *b) {
  ALLOW_IF(b, read, SCMP_A0(SCMP_CMP_EQ, 0));
  ALLOW_IF(b, write, SCMP_A0(SCMP_CMP_EQ, 1));
  ALLOW_IF(b, write, SCMP_A0(SCMP_CMP_EQ, 2));
  ALLOW_IF(b, writev, SCMP_A0(SCMP_CMP_EQ, 1));
  ALLOW_IF(b, writev, SCMP_A0(SCMP_CMP_EQ, 2));

  ALLOW(b, brk);
  ALLOW_IF(b, mmap, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  ALLOW_IF(b, mprotect, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  ALLOW(b, munmap);
  ALLOW(b, mremap);
  ALLOW(b, madvise);

  ALLOW(b, clock_gettime);
  ALLOW(b, clock_getres);
  ALLOW(b, gettimeofday);
  ALLOW(b, time);
  ALLOW(b, nanosleep);
  ALLOW(b, clock_nanosleep);
  ALLOW(b, restart_syscall);

  ALLOW(b, exit);
  ALLOW(b, exit_group);

  ALLOW(b, rt_sigreturn);
  ALLOW(b, rt_sigprocmask);
  ALLOW(b, sigaltstack);
  ALLOW(b, getpid);
  ALLOW(b, gettid);
  ALLOW_IF(b, tgkill, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()), SCMP_A2(SCMP_CMP_EQ, SIGABRT));
  ALLOW(b, close);
  ALLOW_IF(b, futex, SCMP_A1(SCMP_CMP_EQ, FUTEX_WAKE_PRIVATE));
  ALLOW_IF(b, futex, SCMP_A1(SCMP_CMP_EQ, FUTEX_WAIT_PRIVATE));

  FAIL(b, fstat);  /* (in sanitizer builds every denied call fails so: no rule needed) */
  FAIL(b, newfstatat);
}

int th_seccomp_lock(char *err, size_t errlen) {
  build b = {NULL, TH_SECCOMP_KILLS ? SCMP_ACT_KILL_PROCESS : SCMP_ACT_ERRNO(EPERM), 0, NULL};
  const char *step = "seccomp_init";

  if (getenv("TZ") == NULL && setenv("TZ", ":/etc/localtime", 0) < 0) {
    b.rc = -errno;
    step = "setenv TZ";
    goto cleanup;
  }
  tzset();
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
    b.rc = -errno;
    step = "prctl PR_SET_NO_NEW_PRIVS";
    goto cleanup;
  }
  b.ctx = seccomp_init(b.deny);
  if (b.ctx == NULL) {
    b.rc = -ENOMEM;
    goto cleanup;
  }
  step = "seccomp_attr_set";
  if ((b.rc = seccomp_attr_set(b.ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0 ||
      (b.rc = seccomp_attr_set(b.ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0 ||
      (b.rc = seccomp_attr_set(b.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
    goto cleanup;
  step = "seccomp_rule_add";
  rules(&b);
  if (b.rc < 0) goto cleanup;
  step = "seccomp_load";
  b.rc = seccomp_load(b.ctx);

cleanup:
  if (b.rc < 0)
    snprintf(err, errlen, "%s%s%s: %s", step, b.what ? " " : "", b.what ? b.what : "", strerror(-b.rc));
  else if (errlen > 0)
    err[0] = '\0';
  if (b.ctx) seccomp_release(b.ctx);
  return b.rc < 0 ? b.rc : 0;
}
