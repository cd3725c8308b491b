/* seccomp_test.c: the worker's seccomp filter, alone, against what a hole in
 * the Lua sandbox would try, and against what a worker must still do. TAP.
 *
 * Every check forks a child that locks and then tries one thing; it exits
 * with 0 if the thing worked, else with the errno it met. A forbidden thing
 * is "stopped" when the child died of SIGSYS (a normal build) or met EPERM
 * (a sanitizer build, see seccomp.h), and when its effect is nowhere to be
 * seen: no file, no process, no connection. Each is also tried by a child
 * that did not lock, which must succeed and leave the effect, so that a
 * check that cannot fail would show. Last, a crash under the filter must
 * still be reported as the crash it is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <linux/sched.h>
#include <lua.h>
#include <lualib.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "worker/seccomp.h"

extern char **environ;

static char dir[] = "/tmp/th-seccomp-XXXXXX";
static char created[300];  /* a file the hole would create */
static char touched[300];  /* a file /usr/bin/touch would create */
static char victim[300];   /* a file open for writing before the lock */
static int victim_fd = -1, passwd_fd = -1;
static int listener = -1;  /* a listening loopback TCP socket of the parent's */
static struct sockaddr_in listen_addr;
static int forked[2] = {-1, -1};  /* a process started by the hole would write here */

/* Start a child that runs before(), then locks (or not), then exits with
 * fn()'s result, or 99 if it could not lock. An alarm stops a child that
 * would hang. */
static pid_t spawn(int lock, void (*before)(void), int (*fn)(void)) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(10);
    if (before) before();
    char msg[256];
    if (lock && (th_seccomp_lock(msg, sizeof msg) != 0 || msg[0] != '\0')) {
      dprintf(2, "th_seccomp_lock: %s\n", msg);
      _exit(99);
    }
    _exit(fn());
  }
  return pid;
}

/* The child's wait status. */
static int reap(pid_t pid) {
  int st = -1;
  while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  return st;
}

static int run(int lock, void (*before)(void), int (*fn)(void)) { return reap(spawn(lock, before, fn)); }

static int worked(int st) { return WIFEXITED(st) && WEXITSTATUS(st) == 0; }

static int stopped(int st) {
  if (TH_SECCOMP_KILLS) return WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS;
  return WIFEXITED(st) && WEXITSTATUS(st) == EPERM;
}

/* "exit 1", "signal 31" */
static const char *status_text(int st) {
  static char buf[32];
  if (WIFEXITED(st)) snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
  else if (WIFSIGNALED(st)) snprintf(buf, sizeof buf, "signal %d", WTERMSIG(st));
  else snprintf(buf, sizeof buf, "status %d", st);
  return buf;
}

/* ---- What a hole would try ------------------------------------------------ */

static int create_file(void) {
  int fd = open(created, O_CREAT | O_WRONLY, 0644);
  return fd < 0 ? errno : 0;
}

static int read_passwd(void) {
  int fd = open("/etc/passwd", O_RDONLY);
  char c;
  return fd < 0 ? errno : read(fd, &c, 1) == 1 ? 0 : errno;
}

static int read_open_fd(void) {
  char c;
  return read(passwd_fd, &c, 1) == 1 ? 0 : errno;
}

static int write_open_fd(void) { return write(victim_fd, "x", 1) == 1 ? 0 : errno; }

static int exec_touch(void) {
  char *argv[] = {"touch", touched, NULL};
  execve("/usr/bin/touch", argv, environ);
  return errno;
}

/* What os.execute and io.popen call. */
static int run_shell(void) {
  char cmd[400];
  snprintf(cmd, sizeof cmd, "touch %s", touched);
  errno = 0;
  return system(cmd) == 0 ? 0 : errno ? errno : 1;
}

static int do_fork(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(write(forked[1], "x", 1) == 1 ? 0 : 1);
  return pid < 0 ? errno : 0;
}

static int do_clone3(void) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) _exit(write(forked[1], "x", 1) == 1 ? 0 : 1);
  return pid < 0 ? errno : 0;
}

static int do_connect(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return errno;
  return connect(s, (struct sockaddr *)&listen_addr, sizeof listen_addr) < 0 ? errno : 0;
}

static int signal_parent(void) { return kill(getppid(), 0) < 0 ? errno : 0; }

static int map_exec(void) {
  void *p = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? errno : 0;
}

static int protect_exec(void) {
  void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 100;
  return mprotect(p, 4096, PROT_READ | PROT_EXEC) < 0 ? errno : 0;
}

/* ---- ... and whether it left a trace --------------------------------------- */

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}
static int file_created(void) { return exists(created); }
static int touch_ran(void) { return exists(touched); }
static int victim_written(void) {
  struct stat st;
  return stat(victim, &st) == 0 && st.st_size > 0;
}

/* The started process wrote to the pipe (read once every writer is gone). */
static int process_ran(void) {
  close(forked[1]);
  forked[1] = -1;
  char c;
  return read(forked[0], &c, 1) == 1;
}

/* A connection waits on the listener. */
static int connected(void) {
  int s = accept(listener, NULL, NULL);
  if (s < 0) return 0;
  close(s);
  return 1;
}

static void reset(void) {
  unlink(created);
  unlink(touched);
  if (ftruncate(victim_fd, 0) < 0) perror(victim);
  for (int i = 0; i < 2; i++)
    if (forked[i] >= 0) close(forked[i]);
  if (pipe(forked) < 0) perror("pipe");
}

typedef struct forbidden {
  const char *what;
  int (*try)(void);       /* 0: it worked, else an errno */
  int (*effect)(void);    /* NULL, or 1 if the attempt left its mark */
  const char *none;       /* what the effect's absence is called */
} forbidden;

static const forbidden attempts[] = {
  {"open(O_CREAT|O_WRONLY) in /tmp", create_file, file_created, "no file"},
  {"open /etc/passwd for reading", read_passwd, NULL, NULL},
  {"read a descriptor opened before the lock", read_open_fd, NULL, NULL},
  {"write a descriptor opened before the lock", write_open_fd, victim_written, "the file empty"},
  {"execve /usr/bin/touch", exec_touch, touch_ran, "no file from touch"},
  {"system(\"touch ...\")", run_shell, touch_ran, "no file from touch"},
  {"fork", do_fork, process_ran, "no process"},
  {"clone3", do_clone3, process_ran, "no process"},
  {"socket(AF_INET) and connect to a loopback listener", do_connect, connected, "no connection"},
  {"kill(parent, 0)", signal_parent, NULL, NULL},
  {"mmap with PROT_EXEC", map_exec, NULL, NULL},
  {"mprotect to PROT_EXEC", protect_exec, NULL, NULL},
};

static void filter_stops_what_a_hole_would_try(void) {
  for (size_t i = 0; i < sizeof attempts / sizeof attempts[0]; i++) {
    const forbidden *a = &attempts[i];
    reset();
    int st = run(0, NULL, a->try);
    int mark = a->effect ? a->effect() : 1;
    CHECK(worked(st) && mark, "without the filter, %s works (%s%s)", a->what, status_text(st),
          mark ? "" : ", no trace");
    reset();
    st = run(1, NULL, a->try);
    mark = a->effect ? a->effect() : 0;
    CHECK(stopped(st) && !mark, "under the filter, %s is stopped (%s, want %s)%s%s", a->what,
          status_text(st), TH_SECCOMP_KILLS ? "SIGSYS" : "EPERM", a->none ? ", and leaves " : "",
          a->none ? a->none : "");
    if (mark) printf("# but it left a trace, not %s\n", a->none);
  }
  for (int i = 0; i < 2; i++)
    if (forked[i] >= 0) close(forked[i]);
}

/* ---- What a worker must still do ------------------------------------------ */

static int memory(void) {
  enum { N = 20000 };
  static char *small[N];
  for (int i = 0; i < N; i++) {  /* grows the heap: brk */
    small[i] = malloc((size_t)(16 + i % 512));
    if (small[i] == NULL) return 1;
    memset(small[i], i & 0xff, 16);
  }
  size_t big = (size_t)64 << 20;  /* past the mmap threshold: mmap */
  char *p = malloc(big);
  if (p == NULL) return 2;
  memset(p, 1, big);
  char *q = realloc(p, 2 * big);  /* mremap */
  if (q == NULL) return 3;
  q[2 * big - 1] = 2;
  free(q);
  for (int i = 0; i < N; i++) free(small[i]);
  return 0;
}

/* A Lua state with lua-cjson loaded before the lock, as a worker has. */
static lua_State *L;
static void lua_start(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "cjson = require 'cjson'") != LUA_OK) dprintf(2, "%s\n", lua_tostring(L, -1));
}

static int lua_work(void) {
  static const char script[] =
    "local t = {}\n"
    "for i = 1, 100000 do t[i] = string.format('%d:%s', i, ('x'):rep(i % 40)) end\n"
    "local s = cjson.encode({records = t, n = 1.5, ok = true})\n"
    "local d = cjson.decode(s)\n"
    "assert(#d.records == 100000 and d.records[7] == '7:xxxxxxx' and d.n == 1.5)\n"
    "assert(not pcall(cjson.decode, '{bad'))\n"
    "assert(select(2, pcall(string.rep, 'x', 1 << 40)):find('too large'))\n"
    "local n = 0\n"
    "for w in ('a b c'):gmatch('%a') do n = n + 1 end\n"
    "assert(n == 3 and table.concat(t, ',', 1, 2) == '1:x,2:xx')\n"
    "assert(os.time{year = 2024, month = 1, day = 1, hour = 0} > 0)\n"
    "assert(os.time{year = 2024, month = 6, day = 1, hour = 0} > 0)\n"
    "assert(#os.date('%c') > 0 and os.date('!%Y', 0) == '1970' and os.clock() >= 0)\n"
    "collectgarbage()\n"
    "return true\n";
  if (L == NULL) return 1;
  if (luaL_dostring(L, script) != LUA_OK) {
    dprintf(2, "%s\n", lua_tostring(L, -1));
    return 2;
  }
  return lua_toboolean(L, -1) ? 0 : 3;
}

static int clocks(void) {
  struct timespec ts;
  struct timeval tv;
  clockid_t ids[] = {CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID};
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
    if (clock_gettime(ids[i], &ts) < 0) return 1;
  if (gettimeofday(&tv, NULL) < 0 || time(NULL) == (time_t)-1) return 2;
  struct timespec nap = {0, 1000000};
  return nanosleep(&nap, NULL) < 0 ? 3 : 0;
}

/* fd 0, 1 and 2 are pipes to the parent, as a worker's are to the host. */
static int to_child[2], from_out[2], from_err[2];
static void plumb(void) {
  dup2(to_child[0], 0);
  dup2(from_out[1], 1);
  dup2(from_err[1], 2);
  int fds[] = {to_child[0], to_child[1], from_out[0], from_out[1], from_err[0], from_err[1]};
  for (int i = 0; i < 6; i++) close(fds[i]);
}

static int pipes(void) {
  char buf[64];
  if (read(0, buf, 6) != 6 || memcmp(buf, "batch\n", 6) != 0) return 1;
  if (write(1, "reply\n", 6) != 6 || write(2, "panic\n", 6) != 6) return 2;
  /* stdin is new to stdio: its first use fstats fd 0 (EPERM) and goes on */
  if (fgets(buf, sizeof buf, stdin) == NULL || strcmp(buf, "line\n") != 0) return 3;
  printf("stdio %d\n", 1);
  fprintf(stderr, "stdio %d\n", 2);
  return fflush(stdout) == 0 ? 0 : 4;
}

static int do_abort(void) {
  abort();
}

static int double_free(void) {
  char *volatile p = malloc(32);
  free(p);
  free(p);
  return 0;
}

/* Everything until end of file, terminated; what does not fit is dropped. */
static void drain(int fd, char *buf, size_t size) {
  size_t len = 0;
  ssize_t n;
  char skip[4096];
  while ((n = read(fd, len < size - 1 ? buf + len : skip, len < size - 1 ? size - 1 - len : sizeof skip)) > 0)
    if (len < size - 1) len += (size_t)n;
  buf[len] = '\0';
  close(fd);
}

/* Run fn in a locked child with its fds 0, 1 and 2 on pipes, input written
 * to its fd 0; returns the wait status, with what it wrote on 1 and 2 in o
 * and e (size bytes each). */
static int run_plumbed(int (*fn)(void), const char *input, char *o, char *e, size_t size) {
  if (pipe(to_child) < 0 || pipe(from_out) < 0 || pipe(from_err) < 0) return -1;
  pid_t pid = spawn(1, plumb, fn);
  close(to_child[0]), close(from_out[1]), close(from_err[1]);
  if (input && write(to_child[1], input, strlen(input)) < 0) perror("write");
  close(to_child[1]);
  drain(from_out[0], o, size);  /* small: the pipe holds what fd 2 gets meanwhile */
  drain(from_err[0], e, size);
  return reap(pid);
}

static void filter_lets_a_worker_work(void) {
  int st = run(1, NULL, memory);
  CHECK(worked(st), "under the filter, malloc, realloc and free of small and 64 MiB blocks work (%s)",
        status_text(st));
  st = run(1, lua_start, lua_work);
  CHECK(worked(st), "under the filter, Lua runs string, table, cjson and os.time/date/clock work (%s)",
        status_text(st));
  st = run(1, NULL, clocks);
  CHECK(worked(st), "under the filter, clock_gettime, gettimeofday, time and nanosleep work (%s)",
        status_text(st));

  char o[16384], e[16384];
  st = run_plumbed(pipes, "batch\nline\n", o, e, sizeof o);
  CHECK(worked(st) && strcmp(o, "reply\nstdio 1\n") == 0 && strcmp(e, "panic\nstdio 2\n") == 0,
        "under the filter, read and stdio on fd 0, write and stdio on fds 1 and 2 work (%s)", status_text(st));

  st = run_plumbed(do_abort, NULL, o, e, sizeof e);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "under the filter, abort() dies of SIGABRT (%s)",
        status_text(st));

  st = run_plumbed(double_free, NULL, o, e, sizeof e);
  if (TH_SECCOMP_KILLS)
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(e, "double free"),
          "under the filter, glibc reports a double free and aborts (%s)", status_text(st));
  else
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0 && strstr(e, "AddressSanitizer: attempting double-free"),
          "under the filter, ASan reports a double free in full (%s)", status_text(st));
  if (!strstr(e, "double")) printf("# stderr: %s\n", e);
}

int main(void) {
  if (mkdtemp(dir) == NULL) return 1;
  snprintf(created, sizeof created, "%s/created", dir);
  snprintf(touched, sizeof touched, "%s/touched", dir);
  snprintf(victim, sizeof victim, "%s/victim", dir);
  victim_fd = open(victim, O_CREAT | O_WRONLY | O_APPEND, 0644);
  passwd_fd = open("/etc/passwd", O_RDONLY);
  listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  listen_addr.sin_family = AF_INET;
  listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof listen_addr;
  if (victim_fd < 0 || passwd_fd < 0 || listener < 0 ||
      bind(listener, (struct sockaddr *)&listen_addr, sizeof listen_addr) < 0 || listen(listener, 8) < 0 ||
      getsockname(listener, (struct sockaddr *)&listen_addr, &alen) < 0) {
    perror("seccomp_test setup");
    return 1;
  }

  filter_stops_what_a_hole_would_try();
  filter_lets_a_worker_work();

  close(victim_fd), close(passwd_fd), close(listener);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) printf("# could not remove %s\n", dir);
  return TAP_END();
}
