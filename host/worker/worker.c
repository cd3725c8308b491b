/* worker.c: a worker process (proto.h says how it is started and what it
 * says). It reads a message, answers it, and reads the next, with blocking
 * I/O: there is nothing else for it to do. Everything that could stall it
 * (a rule, a huge record) stalls only it; the host's watchdog kills it then.
 */
#define _GNU_SOURCE
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "../log.h"
#include "engine.h"
#include "seccomp.h"

enum { IN = 0, OUT = 1, STATUS = 3 };

/* Read exactly n bytes; 0 at a clean end of file before any, -1 otherwise. */
static int read_full(int fd, char *p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return got == 0 && r == 0 ? 0 : -1;
    got += (size_t)r;
  }
  return 1;
}

static int write_full(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The next message: 1 and its type and payload (in *buf, grown as needed),
 * 0 at end of file (the host is done with us), -1 on a broken frame. */
static int next(uint32_t *type, char **buf, size_t *cap, size_t *len) {
  char h[TH_FRAME_HEADER];
  int rc = read_full(IN, h, sizeof h);
  if (rc <= 0) return rc;
  uint64_t n;
  if (th_frame_header(h, type, &n) < 0) return -1;
  if (n > *cap) {
    char *p = realloc(*buf, (size_t)n);
    if (p == NULL) return -1;
    *buf = p;
    *cap = (size_t)n;
  }
  *len = (size_t)n;
  return n == 0 || read_full(IN, *buf, (size_t)n) == 1 ? 1 : -1;
}

static int send_reply(th_buf *b) {
  if (b->oom || b->len == 0) return -1;
  return write_full(OUT, b->p, b->len);
}

/* INIT: the options the engine starts with. Strings point into p. */
static int parse_init(const char *p, size_t len, th_engine_opts *o, char **strs, size_t nstrs, char **geo_asn,
                      char **geo_city) {
  th_rd r;
  th_rd_init(&r, p, len);
  memset(o, 0, sizeof *o);
  o->role = (int)th_rd_u32(&r);
  th_rd_u32(&r);  /* the worker's index: for the host's messages */
  char *home = th_rd_strdup(&r), *mode = th_rd_strdup(&r);
  o->max_instructions = (long long)th_rd_u64(&r);
  o->max_memory = (size_t)th_rd_u64(&r);
  o->heap_cap = (size_t)th_rd_u64(&r);
  o->quarantine_after = th_rd_u32(&r);
  o->nonly = th_rd_u32(&r);
  strs[0] = home;
  strs[1] = mode;
  o->home = home;
  o->mode = mode;
  if (r.bad || home == NULL || mode == NULL || o->nonly > nstrs - 2) return -1;
  o->only = strs + 2;
  for (uint32_t i = 0; i < o->nonly; i++)
    if ((strs[2 + i] = th_rd_strdup(&r)) == NULL) return -1;
  /* the MaxMind databases: after the --rule names, "" for none */
  char *asn = th_rd_strdup(&r), *city = th_rd_strdup(&r);
  *geo_asn = asn;
  *geo_city = city;
  if (r.bad || asn == NULL || city == NULL) return -1;
  o->geoip_asn = asn[0] ? asn : NULL;
  o->geoip_city = city[0] ? city : NULL;
  return 0;
}

int th_worker_lock(void) {
#ifdef TH_TEST_HOLE
  if (getenv("TH_TEST_NO_SECCOMP")) return 0;  /* the hole's control case: see engine.c */
#endif
  char err[256];
  int rc = th_seccomp_lock(err, sizeof err);
  if (rc < 0) {
    th_log("worker %d: cannot lock itself down (seccomp): %s", (int)getpid(), err);
    return -1;
  }
  return 0;
}

int th_worker_main(void) {
  /* The host decides when a worker stops; a terminal's Ctrl-C reaches the
   * whole process group, this process included. If the host dies, so do we. */
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) _exit(0);  /* the host was gone before the line above */

  th_status *status = mmap(NULL, sizeof *status, PROT_READ | PROT_WRITE, MAP_SHARED, STATUS, 0);
  if (status == MAP_FAILED) {
    th_log("worker: status page: %s", strerror(errno));
    _exit(1);
  }
  close(STATUS);

  char *buf = NULL;
  size_t cap = 0, len = 0;
  uint32_t type;
  if (next(&type, &buf, &cap, &len) != 1 || type != TH_MSG_INIT) {
    th_log("worker: no start message from the host");
    _exit(1);
  }
  enum { MAX_ONLY = 256 };
  char *strs[MAX_ONLY + 2] = {0};
  th_engine_opts o;
  char *geo_asn = NULL, *geo_city = NULL;  /* kept for the process's life, as strs */
  if (parse_init(buf, len, &o, strs, MAX_ONLY + 2, &geo_asn, &geo_city) < 0) {
    th_log("worker: a start message that does not parse");
    _exit(1);
  }
  o.status = status;
  th_engine e;
  if (th_engine_init(&e, &o) < 0) _exit(1);  /* reported */

  /* From here on, nothing from the file system: the host hands over every
   * text (and the MaxMind databases are mapped already, th_engine_init). The
   * filter makes that true even for a hole in the Lua sandbox. */
  if (th_worker_lock() < 0) _exit(1);  /* reported */

  th_buf reply;
  th_buf_init(&reply);
  th_buf_begin(&reply, TH_REP_READY);
  th_buf_u32(&reply, (uint32_t)getpid());
  th_buf_end(&reply);
  th_status_rule(status, TH_STEP_IDLE, 0);
  if (send_reply(&reply) < 0) _exit(0);

  for (;;) {
    int rc = next(&type, &buf, &cap, &len);
    if (rc == 0) _exit(0);  /* the host closed our pipe: done */
    if (rc < 0) {
      th_log("worker %d: a message from the host that does not parse", (int)getpid());
      _exit(1);
    }
    reply.len = 0;
    th_status_rule(status, TH_STEP_PIPELINE, 0);  /* busy: the watchdog looks */
    switch (type) {
      case TH_MSG_RULES: rc = th_engine_rules(&e, buf, len, &reply); break;
      case TH_MSG_QUARANTINE: rc = th_engine_quarantine(&e, buf, len); break;
      case TH_MSG_FULL: rc = th_engine_full(&e, buf, len); break;
      case TH_MSG_BATCH: rc = th_engine_batch(&e, buf, len, &reply, 0); break;
      case TH_MSG_BATCH_SETS: rc = th_engine_batch(&e, buf, len, &reply, 1); break;
      case TH_MSG_LOAD: rc = th_engine_load(&e, buf, len, &reply); break;
      case TH_MSG_PRELOAD: rc = th_engine_preload(&e, buf, len); break;
      case TH_MSG_GATE: rc = th_engine_gate(&e, buf, len, &reply); break;
      default: rc = -1; break;
    }
    if (rc < 0) {
      th_log("worker %d: message %u: malformed, or out of memory", (int)getpid(), (unsigned)type);
      _exit(1);
    }
    th_status_rule(status, TH_STEP_IDLE, 0);  /* waiting again */
    if (reply.len > 0 && send_reply(&reply) < 0) _exit(0);
    int slot;
    uint32_t load;
    const char *why = th_engine_memory(&e, &slot, &load);
    if (why) {
      th_buf_begin(&reply, TH_REP_MEMORY);
      th_buf_u32(&reply, (uint32_t)slot);
      th_buf_u32(&reply, load);
      th_buf_cstr(&reply, why);
      th_buf_end(&reply);
      send_reply(&reply);
      _exit(0);  /* a fresh worker takes over with a clean heap */
    }
    if (cap > (64u << 20)) {  /* a huge document came: give its memory back */
      free(buf);
      buf = NULL;
      cap = 0;
    }
  }
}
