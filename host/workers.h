/* workers.h: starting, watching and replacing worker processes.
 *
 * The host never runs a rule: it starts workers (this binary, as
 * `trailhound __worker`, proto.h) and talks to them over pipes. The pool
 * keeps --workers evaluation workers and one gate worker (which loads and
 * tests changed rule files) running:
 *   - a watchdog reads each worker's status page every tick; a step that has
 *     run longer than its limit (a rule call: --max-time; decoding or
 *     normalizing one record: ten times that; starting: that, at least 10 s)
 *     gets the worker killed, and so does a worker that says it is idle for
 *     that long while it owes answers (it is not trusted either);
 *   - a worker that ends, however, is reported to the owner (on_lost: what it
 *     was doing when it ended, from its status page) and started again, at
 *     once after a crash in its work, with a growing delay when it cannot
 *     even start.
 * Messages to a worker are written in order; its replies come back through
 * on_reply, one frame at a time, checked to be whole (a worker that sends
 * what does not parse as a frame is killed).
 *
 * Lifecycle: th_pool_init, th_pool_start, th_pool_stop (kill them all; the
 * loop ends once their handles are closed), th_pool_free after the loop.
 */
#ifndef TH_WORKERS_H
#define TH_WORKERS_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "proto.h"

typedef struct th_worker th_worker;

/* What a worker was doing when it ended. */
typedef struct th_lost {
  int watchdog;      /* the watchdog killed it: a step ran past its limit */
  int signal;        /* the signal that ended it, or 0 */
  int status;        /* its exit status, when no signal */
  int ready;         /* it had started (sent READY) */
  int32_t rule;      /* in flight: a rule's slot, or TH_STEP_* */
  uint32_t load;     /* ... which load of that rule */
  uint64_t batch;    /* the batch it was evaluating (0: none) */
  uint32_t record;   /* ... the record in it (or the gate's item) */
  double ms;         /* how long that step had run (watchdog) */
} th_lost;

typedef struct th_pool_opts {
  const char *home;           /* folder of scripts/, for the workers */
  const char *mode;           /* "run" or "replay" */
  unsigned workers;           /* evaluation workers */
  long long max_instructions; /* per rule call (0: the default) */
  size_t max_memory;          /* per rule call (0: the default) */
  size_t heap_cap;            /* per worker (0: none) */
  uint32_t quarantine_after;  /* 0: never */
  unsigned max_time_ms;       /* wall-clock limit of a rule call */
  char **only;                /* --rule; not owned */
  uint32_t nonly;
  const char *geoip_asn;      /* --geoip-asn database for the workers, or NULL; not owned */
  const char *geoip_city;     /* --geoip-city database, or NULL; not owned */
  void (*on_ready)(th_worker *w, void *ud);  /* started: send it the rules */
  void (*on_reply)(th_worker *w, uint32_t type, const char *p, size_t len, void *ud);
  void (*on_lost)(th_worker *w, const th_lost *why, void *ud);  /* ended; what it had in flight is lost */
  void (*on_fatal)(const char *why, void *ud);  /* workers cannot start at all (called with fatal_ud) */
  void *fatal_ud;
  unsigned (*pending)(th_worker *w, void *ud);  /* requests it has not answered yet */
  void *ud;
} th_pool_opts;

struct th_worker {
  struct th_pool *pool;       /* owner */
  int index;                  /* 0..workers-1 evaluation workers; workers: the gate */
  int role;                   /* TH_ROLE_EVAL or TH_ROLE_GATE */
  pid_t pid;                  /* 0 while none runs */
  int ready;                  /* READY received */
  int alive;                  /* the process runs (its exit not yet seen) */
  int closing;                /* handles closing; pending until all are closed */
  int handles;                /* handles still open */
  uv_process_t proc;
  uv_pipe_t in;               /* to the worker's fd 0 */
  uv_pipe_t out;              /* from the worker's fd 1 */
  th_status *status;          /* its status page, mapped; NULL when none */
  int status_fd;              /* the memfd behind it */
  char *rbuf;                 /* reply bytes received, not yet a whole frame; owned */
  size_t rlen, rcap;
  uint64_t seen_seq;          /* the watchdog: the step seen last tick ... */
  uint64_t seen_at;           /* ... since when (loop ms) */
  int killed;                 /* the watchdog killed it */
  int expected;               /* it said it would exit (a rule kept too much of its heap) */
  int doomed;                 /* killed by the host: nothing more is taken from it */
  th_lost killed_why;         /* ... what it saw */
  unsigned starts;            /* processes started in this slot */
  unsigned failed_starts;     /* in a row, died before READY */
  uint64_t batches;           /* replies to batches */
  uint64_t last_heap;         /* from its status page */
  uv_timer_t respawn;         /* the delay before starting again */
  void *data;                 /* the owner's per-worker state */
};

typedef struct th_pool {
  uv_loop_t *loop;            /* not owned */
  th_pool_opts o;
  th_worker *w;               /* workers + 1 (the gate last); owned */
  unsigned n;                 /* evaluation workers */
  uv_timer_t watchdog;
  int stopping;
  char exe[4096];             /* this binary */
} th_pool;

int th_pool_init(th_pool *p, uv_loop_t *loop, const th_pool_opts *o);

/* Start every worker. Returns 0 or a negative errno (reported). */
int th_pool_start(th_pool *p);

/* The gate worker. */
th_worker *th_pool_gate(th_pool *p);

/* Write a frame to w. buf must stay valid until done(ctx, status) is called
 * (status 0: written; < 0: not, the worker is gone); done may be NULL.
 * Returns 0, or < 0 when w is not running (done is not called). */
int th_worker_send(th_worker *w, const char *buf, size_t len, void (*done)(void *ctx, int status),
                   void *ctx);

/* The same, with a copy of buf that the pool frees. */
int th_worker_send_copy(th_worker *w, const char *buf, size_t len);

/* Kill w (SIGKILL); it is reported through on_lost and started again. */
void th_worker_kill(th_worker *w);

/* Kill every worker and start none again. */
void th_pool_stop(th_pool *p);

/* Are all handles closed (the loop can end)? */
int th_pool_closed(const th_pool *p);

void th_pool_free(th_pool *p);

/* "was ended by SIGSEGV", "was stopped by the watchdog: ...", into buf. */
const char *th_lost_text(const th_lost *why, char *buf, size_t size);

/* Limits of a step, by what it is (status page rule field). */
uint64_t th_pool_limit_ms(const th_pool *p, int32_t rule);

#endif
