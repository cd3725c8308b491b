/* workers.c: worker processes, their pipes and the watchdog (see workers.h). */
#define _GNU_SOURCE  /* memfd_create */
#include "workers.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

static void spawn(th_worker *w);

/* ---- the status page ------------------------------------------------------------ */

static int map_status(th_worker *w) {
  int fd = memfd_create("trailhound-status", MFD_CLOEXEC);
  if (fd < 0) return -errno;
  if (ftruncate(fd, sizeof(th_status)) < 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  void *p = mmap(NULL, sizeof(th_status), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int err = -errno;
    close(fd);
    return err;
  }
  w->status = p;
  w->status_fd = fd;
  atomic_store(&w->status->rule, TH_STEP_START);  /* until it says otherwise */
  return 0;
}

static void unmap_status(th_worker *w) {
  if (w->status) munmap(w->status, sizeof(th_status));
  w->status = NULL;
  if (w->status_fd >= 0) close(w->status_fd);
  w->status_fd = -1;
}

/* A consistent reading of the page (proto.h's seqlock): an even seq, the
 * same before and after. */
static int read_status(const th_worker *w, th_lost *l, uint64_t *seq) {
  for (int tries = 0; tries < 4; tries++) {
    uint64_t a = atomic_load_explicit(&w->status->seq, memory_order_acquire);
    if (a & 1) continue;  /* being made */
    l->rule = atomic_load_explicit(&w->status->rule, memory_order_relaxed);
    l->load = atomic_load_explicit(&w->status->load, memory_order_relaxed);
    l->batch = atomic_load_explicit(&w->status->batch, memory_order_relaxed);
    l->record = atomic_load_explicit(&w->status->record, memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    uint64_t b = atomic_load_explicit(&w->status->seq, memory_order_relaxed);
    if (a == b) {
      *seq = a;
      return 0;
    }
  }
  return -1;
}

/* ---- writing ------------------------------------------------------------------- */

typedef struct send_req {
  uv_write_t req;
  void (*done)(void *ctx, int status);
  void *ctx;
} send_req;

static void on_written(uv_write_t *req, int status) {
  send_req *s = (send_req *)req;
  if (s->done) s->done(s->ctx, status);
  free(s);
}

int th_worker_send(th_worker *w, const char *buf, size_t len, void (*done)(void *ctx, int status),
                   void *ctx) {
  if (!w->alive || w->closing) return -EPIPE;
  send_req *s = malloc(sizeof *s);
  if (s == NULL) return -ENOMEM;
  s->done = done;
  s->ctx = ctx;
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  int rc = uv_write(&s->req, (uv_stream_t *)&w->in, &b, 1, on_written);
  if (rc < 0) free(s);
  return rc;
}

static void free_copy(void *ctx, int status) {
  (void)status;
  free(ctx);
}

int th_worker_send_copy(th_worker *w, const char *buf, size_t len) {
  char *copy = malloc(len);
  if (copy == NULL) return -ENOMEM;
  memcpy(copy, buf, len);
  int rc = th_worker_send(w, copy, len, free_copy, copy);
  if (rc < 0) free(copy);
  return rc;
}

/* ---- reading ------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  th_worker *w = h->data;
  size_t want = w->rlen + 65536;
  if (want > w->rcap) {
    size_t cap = w->rcap ? w->rcap : 65536;
    while (cap < want) cap *= 2;
    char *p = realloc(w->rbuf, cap);
    if (p == NULL) {
      *buf = uv_buf_init(NULL, 0);  /* libuv reports UV_ENOBUFS */
      return;
    }
    w->rbuf = p;
    w->rcap = cap;
  }
  *buf = uv_buf_init(w->rbuf + w->rlen, (unsigned)(w->rcap - w->rlen));
}

static void broken(th_worker *w, const char *why) {
  th_log("worker %d (pid %d): %s; stopping it", w->index, (int)w->pid, why);
  w->rlen = 0;
  th_worker_kill(w);
}

/* Whole frames are handed over; the rest waits for more bytes. */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  th_worker *w = s->data;
  if (n < 0) {
    uv_read_stop(s);  /* end of file or an error: the exit callback tells the rest */
    return;
  }
  w->rlen += (size_t)n;
  size_t at = 0;
  while (w->alive && !w->killed && !w->doomed && w->rlen - at >= TH_FRAME_HEADER) {
    uint32_t type;
    uint64_t len;
    if (th_frame_header(w->rbuf + at, &type, &len) < 0 || type < TH_REP_READY || type > TH_REP_MEMORY ||
        len > TH_REPLY_FRAME_MAX) {
      broken(w, "a reply that is not a frame, or larger than any reply can be");
      return;
    }
    if (w->rlen - at - TH_FRAME_HEADER < len) break;  /* on_alloc grows the buffer */
    const char *payload = w->rbuf + at + TH_FRAME_HEADER;
    at += TH_FRAME_HEADER + (size_t)len;
    if (type == TH_REP_READY) {
      w->ready = 1;
      w->failed_starts = 0;
      if (w->pool->o.on_ready) w->pool->o.on_ready(w, w->pool->o.ud);
    } else {
      if (type == TH_REP_BATCH) w->batches++;
      w->pool->o.on_reply(w, type, payload, (size_t)len, w->pool->o.ud);
    }
  }
  if (at > 0) {
    memmove(w->rbuf, w->rbuf + at, w->rlen - at);
    w->rlen -= at;
  }
  if (w->rlen == 0 && w->rcap > (8u << 20)) {  /* a huge reply came: give its memory back */
    free(w->rbuf);
    w->rbuf = NULL;
    w->rcap = 0;
  }
}

/* ---- life and death ------------------------------------------------------------- */

const char *th_lost_text(const th_lost *why, char *buf, size_t size) {
  const char *name = NULL;
  switch (why->signal) {
    case SIGKILL: name = "SIGKILL"; break;
    case SIGSEGV: name = "SIGSEGV"; break;
    case SIGABRT: name = "SIGABRT"; break;
    case SIGBUS: name = "SIGBUS"; break;
    case SIGSYS: name = "SIGSYS, a system call the sandbox forbids"; break;
    case SIGFPE: name = "SIGFPE"; break;
    case SIGILL: name = "SIGILL"; break;
    default: break;
  }
  if (why->watchdog) snprintf(buf, size, "was stopped by the watchdog: one step ran for %.0f ms", why->ms);
  else if (why->signal && name) snprintf(buf, size, "was ended by %s", name);
  else if (why->signal) snprintf(buf, size, "was ended by signal %d", why->signal);
  else snprintf(buf, size, "exited with status %d", why->status);
  return buf;
}

static void on_closed(uv_handle_t *h) {
  th_worker *w = h->data;
  if (--w->handles == 0) w->closing = 0;
}

/* Close its pipes and process handle (its slot is free again once all three
 * are closed) and its status page. */
static void close_worker(th_worker *w) {
  w->closing = 1;
  uv_close((uv_handle_t *)&w->in, on_closed);
  uv_close((uv_handle_t *)&w->out, on_closed);
  uv_close((uv_handle_t *)&w->proc, on_closed);
  unmap_status(w);
  w->rlen = 0;
}

static void on_respawn(uv_timer_t *t) {
  th_worker *w = t->data;
  if (w->pool->stopping) return;
  if (w->closing || w->alive) {
    uv_timer_start(&w->respawn, on_respawn, 10, 0);  /* the old handles are still closing */
    return;
  }
  spawn(w);
}

static void on_worker_exit(uv_process_t *proc, int64_t status, int term_signal) {
  th_worker *w = proc->data;
  th_pool *p = w->pool;
  th_lost why;
  memset(&why, 0, sizeof why);
  if (w->killed) {
    why = w->killed_why;
  } else if (w->status) {
    uint64_t seq;
    if (read_status(w, &why, &seq) < 0) why.rule = TH_STEP_PIPELINE;
  }
  why.watchdog = w->killed;
  why.signal = term_signal;
  why.status = (int)status;
  why.ready = w->ready;
  w->alive = 0;
  close_worker(w);
  int was_ready = w->ready;
  w->ready = 0;
  if (!p->stopping && !w->expected)
    th_log("worker %d (pid %d, %s) %s", w->index, (int)w->pid, w->role == TH_ROLE_GATE ? "the gate" : "evaluating",
           th_lost_text(&why, (char[160]){0}, 160));
  w->expected = 0;
  if (p->o.on_lost) p->o.on_lost(w, &why, p->o.ud);
  if (p->stopping) return;
  uint64_t delay = 0;
  if (!was_ready) {
    w->failed_starts++;
    if (w->failed_starts >= 5) {
      char msg[256];
      snprintf(msg, sizeof msg, "a worker could not start five times in a row (last: %s %d)",
               term_signal ? "signal" : "exit status", term_signal ? term_signal : (int)status);
      if (p->o.on_fatal) p->o.on_fatal(msg, p->o.fatal_ud);
      return;
    }
    delay = 100u << (w->failed_starts - 1);
  }
  uv_timer_start(&w->respawn, on_respawn, delay, 0);
}

/* Start a worker process in slot w. A failure to start is retried like a
 * worker that died before it was ready. */
static void spawn(th_worker *w) {
  th_pool *p = w->pool;
  int rc = map_status(w);
  if (rc < 0) {
    th_log("worker %d: status page: %s", w->index, uv_strerror(rc));
    goto retry;
  }
  uv_pipe_init(p->loop, &w->in, 0);
  uv_pipe_init(p->loop, &w->out, 0);
  w->in.data = w->out.data = w->proc.data = w;
  uv_stdio_container_t stdio[4];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&w->in;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&w->out;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;
  stdio[3].flags = UV_INHERIT_FD;
  stdio[3].data.fd = w->status_fd;
  char *args[] = {p->exe, "__worker", NULL};
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.file = p->exe;
  po.args = args;
  po.exit_cb = on_worker_exit;
  po.stdio_count = 4;
  po.stdio = stdio;
  w->killed = 0;
  w->doomed = 0;
  w->ready = 0;
  w->rlen = 0;
  rc = uv_spawn(p->loop, &w->proc, &po);
  close(w->status_fd);  /* the mapping stays; the child has its own copy of the descriptor */
  w->status_fd = -1;
  if (rc < 0) {
    th_log("worker %d: start %s: %s", w->index, p->exe, uv_strerror(rc));
    w->handles = 3;
    close_worker(w);
    goto retry;
  }
  w->pid = w->proc.pid;
  w->alive = 1;
  w->handles = 3;
  w->starts++;
  w->seen_seq = atomic_load(&w->status->seq);
  w->seen_at = uv_now(p->loop);
  uv_read_start((uv_stream_t *)&w->out, on_alloc, on_read);

  th_buf b;
  th_buf_init(&b);
  th_buf_begin(&b, TH_MSG_INIT);
  th_buf_u32(&b, (uint32_t)w->role);
  th_buf_u32(&b, (uint32_t)w->index);
  th_buf_cstr(&b, p->o.home);
  th_buf_cstr(&b, p->o.mode);
  th_buf_u64(&b, (uint64_t)p->o.max_instructions);
  th_buf_u64(&b, (uint64_t)p->o.max_memory);
  th_buf_u64(&b, (uint64_t)p->o.heap_cap);
  th_buf_u32(&b, p->o.quarantine_after);
  th_buf_u32(&b, p->o.nonly);
  for (uint32_t i = 0; i < p->o.nonly; i++) th_buf_cstr(&b, p->o.only[i]);
  th_buf_cstr(&b, p->o.geoip_asn ? p->o.geoip_asn : "");
  th_buf_cstr(&b, p->o.geoip_city ? p->o.geoip_city : "");
  th_buf_end(&b);
  if (b.oom || th_worker_send(w, b.p, b.len, free_copy, b.p) < 0) {
    th_buf_free(&b);
    th_worker_kill(w);
  }
  return;
retry:
  w->failed_starts++;
  if (w->failed_starts >= 5) {
    if (p->o.on_fatal) p->o.on_fatal("workers cannot be started", p->o.fatal_ud);
    return;
  }
  uv_timer_start(&w->respawn, on_respawn, 100u << (w->failed_starts - 1), 0);
}

void th_worker_kill(th_worker *w) {
  if (!w->alive || w->pid <= 0) return;
  w->doomed = 1;
  kill(w->pid, SIGKILL);
}

/* ---- the watchdog ----------------------------------------------------------------- */

uint64_t th_pool_limit_ms(const th_pool *p, int32_t rule) {
  uint64_t t = p->o.max_time_ms;
  if (rule == TH_STEP_START) return t * 10 > 10000 ? t * 10 : 10000;  /* a slow machine's exec and load */
  return rule == TH_STEP_PIPELINE ? t * 10 : t;
}

static void on_watchdog(uv_timer_t *t) {
  th_pool *p = t->data;
  uint64_t now = uv_now(p->loop);
  for (unsigned i = 0; i <= p->n; i++) {
    th_worker *w = &p->w[i];
    if (!w->alive || w->killed || w->status == NULL) continue;
    th_lost l;
    memset(&l, 0, sizeof l);
    uint64_t seq;
    if (read_status(w, &l, &seq) < 0) continue;  /* busy changing: it moves */
    w->last_heap = atomic_load_explicit(&w->status->heap, memory_order_relaxed);
    int owes = l.rule == TH_STEP_IDLE && p->o.pending && p->o.pending(w, p->o.ud) > 0;
    if (seq != w->seen_seq || (l.rule == TH_STEP_IDLE && !owes)) {
      w->seen_seq = seq;
      w->seen_at = now;
      continue;
    }
    /* Idle while it owes an answer: as long as a record may take, then it is stopped. */
    uint64_t ran = now - w->seen_at, limit = th_pool_limit_ms(p, owes ? TH_STEP_PIPELINE : l.rule);
    if (ran <= limit) continue;
    l.ms = (double)ran;
    w->killed = 1;
    w->killed_why = l;
    kill(w->pid, SIGKILL);
  }
}

/* ---- the pool ------------------------------------------------------------------- */

int th_pool_init(th_pool *p, uv_loop_t *loop, const th_pool_opts *o) {
  memset(p, 0, sizeof *p);
  p->loop = loop;
  p->o = *o;
  p->n = o->workers;
  p->w = calloc(p->n + 1, sizeof *p->w);
  if (p->w == NULL) return -ENOMEM;
  /* The binary's real path: under valgrind, /proc/self/exe names valgrind. */
  ssize_t n = readlink("/proc/self/exe", p->exe, sizeof p->exe - 1);
  if (n <= 0) return -errno;
  p->exe[n] = '\0';
  for (unsigned i = 0; i <= p->n; i++) {
    th_worker *w = &p->w[i];
    w->pool = p;
    w->index = (int)i;
    w->role = i == p->n ? TH_ROLE_GATE : TH_ROLE_EVAL;
    w->status_fd = -1;
    uv_timer_init(loop, &w->respawn);
    w->respawn.data = w;
  }
  uv_timer_init(loop, &p->watchdog);
  p->watchdog.data = p;
  return 0;
}

int th_pool_start(th_pool *p) {
  for (unsigned i = 0; i <= p->n; i++) spawn(&p->w[i]);
  /* A tick a fifth of the limit: a stuck call is stopped within 1.2 times it. */
  uint64_t tick = p->o.max_time_ms / 5;
  if (tick < 10) tick = 10;
  if (tick > 100) tick = 100;
  uv_timer_start(&p->watchdog, on_watchdog, tick, tick);
  return 0;
}

th_worker *th_pool_gate(th_pool *p) { return &p->w[p->n]; }

void th_pool_stop(th_pool *p) {
  if (p->stopping) return;
  p->stopping = 1;
  uv_close((uv_handle_t *)&p->watchdog, NULL);
  for (unsigned i = 0; i <= p->n; i++) {
    th_worker *w = &p->w[i];
    uv_close((uv_handle_t *)&w->respawn, NULL);
    if (w->alive) kill(w->pid, SIGKILL);
  }
}

int th_pool_closed(const th_pool *p) {
  for (unsigned i = 0; i <= p->n; i++)
    if (p->w[i].alive || p->w[i].closing) return 0;
  return 1;
}

void th_pool_free(th_pool *p) {
  for (unsigned i = 0; p->w && i <= p->n; i++) {
    unmap_status(&p->w[i]);
    free(p->w[i].rbuf);
  }
  free(p->w);
  p->w = NULL;
}
