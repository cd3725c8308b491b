/* tail.c: the tailer's loop, timers and state file (see tail.h).
 *
 * The work is done in turns (an idle handle runs them while there is work):
 * each looks at what directory events named and goes on with the rescan for
 * at most DISCOVER_NS, then reads at most TURN_BYTES, round robin over the
 * files with something to read, and stops early after TURN_NS (the
 * dispatcher may evaluate what is read on this thread). Between two turns
 * the loop polls for events, timers and signals, so each is served within
 * about a turn.
 */
#include "tail.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "discover.h"
#include "log.h"
#include "scan.h"
#include "tfile.h"

enum {
  TURN_BYTES = 1 << 20,      /* read per turn, all files together */
  SLICE_BYTES = 256 << 10,   /* read per file per visit: round robin */
  DEFAULT_MAX_OPEN = 1024,
  SAVE_SOON_MS = 30          /* a new file's first checkpoint, coalesced */
};
#define TURN_NS (50 * 1000000ULL)
#define DISCOVER_NS (10 * 1000000ULL)

static double now_s(const th_tail *t) { return (double)uv_now(t->loop) / 1000.0; }

/* ---- the state file ------------------------------------------------------------ */

static uint64_t mix(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; i++) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* Write each tracked file's committed position, the truncated generations
 * waiting for their copy, the state's entries not matched yet (a stale one
 * only while a candidate may be its copy: its file is saved as the new file
 * it is), and other runs' entries untouched. Skipped when nothing changed
 * since the last write, unless force. */
static void save(th_tail *t, int force) {
  if (t->o.state == NULL) return;  /* committed positions never pass an alert not written (dispatch.h) */
  uint64_t t0 = uv_hrtime();
  size_t n = t->nknown + TH_HELD_MAX;
  for (th_tfile *f = t->files; f; f = f->next) n++;
  th_ckpt *e = calloc(n ? n : 1, sizeof *e);
  if (e == NULL) return;
  size_t i = 0;
  for (th_tfile *f = t->files; f; f = f->next) {
    if (f->role == TF_CANDIDATE) {  /* not decided yet: decided after a restart */
      e[i++] = (th_ckpt){f->path, f->dev, f->ino, f->fp_len, f->fp, 0, TH_CKPT_CANDIDATE, 0, 0};
      continue;
    }
    const th_commit *c = th_tfile_commit(f);
    e[i++] = (th_ckpt){f->path, f->dev, f->ino, f->fp_len, f->fp, c->offset, c->done ? TH_CKPT_DONE : 0,
                       c->back_len, c->back_hash};
  }
  for (int k = 0; k < TH_HELD_MAX; k++) {
    th_held *g = &t->held[k];
    if (g->stream == NULL) continue;
    const th_commit *c = th_stream_committed(g->stream);
    e[i++] = (th_ckpt){g->path, g->dev, g->ino, g->fp_len, g->fp, c->offset, 0, c->back_len, c->back_hash};
  }
  th_discover_pending(t);
  for (size_t k = 0; k < t->nknown; k++) {
    const th_known *x = &t->known[k];
    if (!x->relevant || (!x->used && (!x->stale || x->copy_pending))) e[i++] = x->k;
  }
  uint64_t sig = 0xcbf29ce484222325ULL;
  for (size_t k = 0; k < i; k++) {
    sig = mix(sig, th_fnv1a(e[k].path, strlen(e[k].path)));
    sig = mix(mix(mix(sig, e[k].dev), e[k].ino), e[k].offset);
    sig = mix(mix(mix(sig, e[k].fp ^ e[k].fp_len), e[k].back_hash ^ e[k].back_len), e[k].flags);
  }
  /* The file's time says since when every change was looked at: until the
   * first rescan is over (and while directory events wait to be looked at),
   * what the loaded state said: a restart must still read what this run has
   * not looked at yet. */
  double since = t->started && t->ev_head == t->ev_n ? t->examined : t->since;
  sig = mix(mix(sig, i), (uint64_t)(since * 1000));
  if (force || sig != t->saved_sig) {
    int rc = th_ckpt_save(t->o.state, e, i, since);
    if (rc < 0) th_log("write %s: %s (progress not saved)", t->o.state, strerror(-rc));
    else t->saved_sig = sig;
  }
  free(e);
  t->save_cost = (double)(uv_hrtime() - t0) / 1e9;
}

static void load(th_tail *t) {
  if (t->o.state == NULL) return;
  struct stat st;
  /* Files beside watched ones changed since the state was written may hold
   * lines no run read (a rotation while the host was stopped, or killed). */
  if (stat(t->o.state, &st) == 0)
    t->since = (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec / 1e9;
  th_ckpt *e = NULL;
  size_t n = 0;
  int bad = 0;
  int rc = th_ckpt_load(t->o.state, &e, &n, &bad);
  if (rc == -EINVAL) {
    char aside[PATH_MAX];
    snprintf(aside, sizeof aside, "%s.bad", t->o.state);
    rename(t->o.state, aside);
    th_log("%s: damaged at line %d; kept aside as %s, starting without it (%s)", t->o.state, bad, aside,
           t->o.from_end ? "--from-end" : "from the beginning");
    return;
  }
  if (rc < 0) {
    th_log("read %s: %s; starting without it", t->o.state, strerror(-rc));
    return;
  }
  if (n == 0) return;
  t->known = calloc(n, sizeof *t->known);
  if (t->known == NULL) {
    th_log("read %s: out of memory; starting without it", t->o.state);
    th_ckpt_free(e, n);
    return;
  }
  for (size_t i = 0; i < n; i++) t->known[i].k = e[i];  /* paths move over */
  t->nknown = n;
  free(e);
  if (th_discover_known(t) < 0) th_log("read %s: out of memory", t->o.state);
}

/* Streams of files closed for good whose records are all written are let go. */
static void let_go(th_tail *t) {
  for (th_tfile *f = t->files; f; f = f->next) {
    if (f->role != TF_GONE || f->stream == NULL || th_stream_pending(f->stream) > 0) continue;
    f->base = *th_tfile_commit(f);
    th_stream_close(f->stream);
    f->stream = NULL;
  }
}

static void on_ckpt(uv_timer_t *h) {
  th_tail *t = h->data;
  let_go(t);
  save(t, 0);
}

static void on_ckpt_soon(uv_timer_t *h) { save(h->data, 0); }

void th_tail_save_soon(th_tail *t) {
  if (t->o.state == NULL || t->stopping || uv_is_active((uv_handle_t *)&t->ckpt_soon)) return;
  /* A state of many files costs more to write: wait in proportion. */
  uint64_t ms = SAVE_SOON_MS, cost = (uint64_t)(t->save_cost * 10 * 1000);
  uv_timer_start(&t->ckpt_soon, on_ckpt_soon, cost > ms ? cost : ms, 0);
}

/* ---- the loop ------------------------------------------------------------------- */

static void on_more(uv_idle_t *h);

/* Round robin over the files with something to read, within the turn's
 * budget. */
static void read_turn(th_tail *t) {
  uint64_t budget = TURN_BYTES;
  t->turn_end = uv_hrtime() + TURN_NS;
  while (budget > 0 && t->ready && !th_dispatch_busy(t->o.dispatch) &&
         uv_hrtime() < t->turn_end) {
    th_tfile *f = t->ready;
    t->ready = f->ready_next;
    if (t->ready == NULL) t->ready_last = NULL;
    f->ready = 0;
    f->ready_next = NULL;
    int more;
    uint64_t got = th_tfile_pump(f, budget < SLICE_BYTES ? budget : SLICE_BYTES, &more);
    budget -= got < budget ? got : budget;
    if (more) th_tfile_ready(f);  /* back of the queue */
  }
}

static void turn(th_tail *t) {
  if (t->stopping) return;
  th_scan_step(t, uv_hrtime() + DISCOVER_NS);
  read_turn(t);
  if (th_scan_busy(t) || (t->ready && !th_dispatch_busy(t->o.dispatch)))
    uv_idle_start(&t->more, on_more);
  else
    uv_idle_stop(&t->more);
}

static void on_more(uv_idle_t *h) { turn(h->data); }

void th_tail_kick(th_tail *t) {
  if (!t->stopping) uv_idle_start(&t->more, on_more);
}

/* The growth check, candidates, and copies that did not come. */
static void on_poll(uv_timer_t *h) {
  th_tail *t = h->data;
  th_tfile_poll(t);
  th_discover_poll(t);
  double now = now_s(t);
  for (int i = 0; i < TH_HELD_MAX; i++) {
    th_held *g = &t->held[i];
    if (g->stream == NULL || now - g->since < t->o.rotate_wait_s + 5) continue;
    th_stream_close(g->stream);  /* no copy beside it: truncated in place, or copied elsewhere */
    g->stream = NULL;
    free(g->path);
    g->path = NULL;
    free(g->ends);
    g->ends = NULL;
  }
  th_tail_kick(t);
}

/* ---- lifecycle ------------------------------------------------------------------- */

int th_tail_init(th_tail *t, uv_loop_t *loop, const th_tail_opts *o) {
  memset(t, 0, sizeof *t);
  t->loop = loop;
  t->o = *o;
  t->max_open = o->max_open;
  if (t->max_open == 0) {
    /* Half the descriptors this process may hold, leaving the rest to the
     * outputs, the workers' pipes and the loop. */
    struct rlimit rl;
    rlim_t half = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? rl.rlim_cur / 2
                                                                                       : DEFAULT_MAX_OPEN;
    t->max_open = half < DEFAULT_MAX_OPEN ? (unsigned)half : DEFAULT_MAX_OPEN;
    if (t->max_open < 8) t->max_open = 8;
  }
  t->buf = malloc(TH_BACK_MAX + TH_READ_CHUNK);
  if (t->buf == NULL) return -ENOMEM;
  th_filetab_init(&t->by);
  th_filetab_init(&t->known_by);
  th_filetab_init(&t->dirs_by);
  th_filetab_init(&t->ev_set);
  uv_timer_init(loop, &t->poll);
  uv_timer_init(loop, &t->rescan);
  uv_timer_init(loop, &t->ckpt);
  uv_timer_init(loop, &t->ckpt_soon);
  uv_idle_init(loop, &t->more);
  t->poll.data = t->rescan.data = t->ckpt.data = t->ckpt_soon.data = t->more.data = t;
  return 0;
}

int th_tail_watch(th_tail *t, const char *path) {
  int n = t->npatterns + 1;
  char **p = realloc(t->patterns, (size_t)n * sizeof *p);
  if (p == NULL) return -ENOMEM;
  t->patterns = p;
  char **g = realloc(t->globs, (size_t)n * sizeof *g);
  if (g == NULL) return -ENOMEM;
  t->globs = g;
  char **m = realloc(t->missing, (size_t)n * sizeof *m);
  if (m == NULL) return -ENOMEM;
  t->missing = m;
  char *copy = strdup(path);
  if (copy == NULL) return -ENOMEM;
  size_t len = strlen(copy);
  while (len > 1 && copy[len - 1] == '/') copy[--len] = '\0';  /* logs/ is logs */
  t->patterns[t->npatterns] = copy;
  t->globs[t->npatterns] = NULL;
  t->missing[t->npatterns] = NULL;
  t->npatterns++;
  return 0;
}

int th_tail_start(th_tail *t) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  t->since = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  th_scan_init(t);
  load(t);
  th_scan_rescan(t);
  uv_timer_start(&t->poll, on_poll, t->o.poll_ms, t->o.poll_ms);
  if (t->o.state) uv_timer_start(&t->ckpt, on_ckpt, 1000, 1000);
  th_tail_kick(t);
  return 0;
}

void th_tail_stop(th_tail *t) {
  if (t->stopping) return;
  t->stopping = 1;
  uv_timer_stop(&t->poll);
  uv_timer_stop(&t->rescan);
  uv_timer_stop(&t->ckpt);
  uv_timer_stop(&t->ckpt_soon);
  uv_idle_stop(&t->more);
  th_scan_stop(t);
  for (th_tfile *f = t->files; f; f = f->next)
    if (f->stream) th_stream_flush(f->stream);
  for (int i = 0; i < TH_HELD_MAX; i++)
    if (t->held[i].stream) th_stream_flush(t->held[i].stream);
}

void th_tail_close(th_tail *t) {
  if (t->closed) return;
  th_tail_stop(t);
  t->closed = 1;
  save(t, 1);
  uv_close((uv_handle_t *)&t->poll, NULL);
  uv_close((uv_handle_t *)&t->rescan, NULL);
  uv_close((uv_handle_t *)&t->ckpt, NULL);
  uv_close((uv_handle_t *)&t->ckpt_soon, NULL);
  uv_close((uv_handle_t *)&t->more, NULL);
  th_scan_close(t);
  for (th_tfile *f = t->files; f; f = f->next) th_tfile_close_fd(f);
  if (t->o.on_stop) t->o.on_stop(t->o.ud);
}

size_t th_tail_progress(th_tail *t, th_file_stat **out) {
  size_t n = 0;
  *out = NULL;
  for (th_tfile *f = t->files; f; f = f->next) n += f->role == TF_FOLLOW || f->role == TF_ORPHAN;
  if (n == 0 || (*out = calloc(n, sizeof **out)) == NULL) return 0;
  size_t i = 0;
  for (th_tfile *f = t->files; f; f = f->next) {
    if (f->role != TF_FOLLOW && f->role != TF_ORPHAN) continue;
    struct stat st;
    uint64_t size = f->offset;
    if (f->fd >= 0 ? fstat(f->fd, &st) == 0 : stat(f->path, &st) == 0 && (uint64_t)st.st_ino == f->ino)
      size = (uint64_t)st.st_size;
    (*out)[i++] = (th_file_stat){f->path, th_tfile_commit(f)->offset, size};
  }
  return i;
}

void th_tail_free(th_tail *t) {
  while (t->files) th_tfile_forget(t->files);
  for (int i = 0; i < TH_HELD_MAX; i++) {
    if (t->held[i].stream) th_stream_close(t->held[i].stream);
    free(t->held[i].path);
    free(t->held[i].ends);
  }
  th_scan_free(t);
  th_discover_free(t);
  for (size_t i = 0; i < t->nknown; i++) free(t->known[i].k.path);
  free(t->known);
  th_filetab_free(&t->by);
  for (int i = 0; i < t->npatterns; i++) {
    free(t->patterns[i]);
    free(t->globs[i]);
  }
  free(t->patterns);
  free(t->globs);
  free(t->missing);
  free(t->buf);
  memset(t, 0, sizeof *t);
}
