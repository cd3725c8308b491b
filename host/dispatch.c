/* dispatch.c: batches to workers, results back in order (see dispatch.h).
 *
 * A batch is built directly as the BATCH frame a worker reads (proto.h), so
 * sending it, and sending it again after its worker was lost, costs no copy.
 * It lives until its results are written: queued, then with a worker
 * (several per worker, so that a worker never waits for the host), then done
 * and waiting for the batches before it in its stream.
 *
 * When a worker is lost, what it had is sent again, first in the queue. The
 * record in flight decides what else happens: a rule that ran past
 * --max-time, or made a system call the sandbox forbids, is quarantined; a
 * worker that dies twice on the same record in the same rule has that rule
 * quarantined; a record on which two workers died with no rule in flight
 * (a crash or stall in decoding or normalizing it) is skipped, and said so.
 * Anything else (a worker killed from outside) costs only the time to
 * evaluate again: its results never reached the output.
 */
#include "dispatch.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "limiter.h"
#include "stateful.h"
#include "log.h"
#include "outputs.h"
#include "prefilter.h"
#include "progress.h"
#include "proto.h"
#include "rules.h"
#include "workers.h"

/* A batch is sent when it holds this many bytes or records, or when its
 * reader flushes (the end of a read: a quiet file's records never wait). */
enum { BATCH_BYTES = 256 << 10, BATCH_RECORDS = 1000 };
/* Batches with one worker at once: one being evaluated, one waiting in its pipe. */
enum { IN_FLIGHT = 2 };

enum { B_OPEN, B_QUEUED, B_SENT, B_DONE };

typedef struct th_batch {
  struct th_batch *next;   /* its stream's order */
  struct th_batch *qnext;  /* the send queue, or its worker's list */
  th_stream *stream;       /* not owned */
  uint64_t id;
  uint64_t epoch;          /* the stream's epoch when it was made */
  th_commit end;           /* where the stream is committed once it is written ... */
  int moves;               /* ... if any of its records moved it */
  th_buf msg;              /* the BATCH frame */
  uint32_t n;              /* records */
  size_t nat;              /* where n is in msg */
  size_t *flags_at;        /* where each record's flags are in msg; owned */
  uint8_t *strikes;        /* per record: workers lost on it with no rule in flight; owned */
  uint32_t cap;            /* of flags_at and strikes */
  int64_t crash_rule;      /* the last crash with a rule in flight: the rule's slot (-1: none) ... */
  uint32_t crash_record;   /* ... and the record */
  int state;               /* B_* */
  int writing;             /* writes to a worker not yet completed */
  int dead;                /* written: freed once no write refers to it */
  th_worker *worker;       /* while B_SENT */
  uint8_t *pass;           /* per record: could a rule match it (the prefilter); owned */
  uint64_t pf_version;     /* the prefilter pass was computed with (0: none yet) */
  uint32_t npass;          /* records passing */
  uint8_t *sets;           /* per record, width bytes: the rules it could concern (th_prefilter_rules); owned */
  size_t sets_cap;
  size_t width;            /* 0: no sets (every rule runs on the records sent) */
  int filtered;            /* last sent with the records that pass only */
  int redo;                /* a record of a batch being written, evaluated again (redo()): not counted */
  size_t resume_at;        /* while B_DONE: where writing its reply goes on after a redo (0: at the start) ... */
  uint32_t resume_left;    /* ... the items left there ... */
  uint32_t resume_skip;    /* ... and the record redone, whose items are skipped */
  char *reply;             /* while B_DONE: the reply's payload; owned */
  size_t reply_len;
} th_batch;

struct th_stream {
  th_dispatch *d;          /* owner */
  struct th_stream *prev, *snext;  /* every stream alive, for th_dispatch_free */
  char *path;              /* owned */
  uint64_t epoch;          /* bumped by a reset: older batches no longer commit */
  th_commit committed;
  th_batch *open;          /* filling */
  th_batch *head, *tail;   /* handed over, in order, not yet written */
  unsigned commits;        /* commits of it waiting for the output */
  int held;                /* a record was lost to a lack of memory: never commit past ... */
  uint64_t hold;           /* ... its offset, so that the next start reads it again */
  int closed;              /* the reader let go: freed once nothing is pending */
  /* The bytes before the open batch's end, hashed when it is sealed: only a
   * batch's last record is ever committed, so only its hash is needed. */
  char back[TH_BACK_MAX];
};

typedef struct wq {        /* batches with one worker, in the order sent */
  th_batch *head, *tail;
  unsigned n;
} wq;

struct th_dispatch {
  th_dispatch_opts o;
  th_batch *qhead, *qtail; /* to send, in order */
  uint64_t queued;
  th_stream *streams;      /* alive */
  wq *wq;                  /* per worker (the pool's index); owned */
  unsigned nworkers;
  unsigned next_worker;    /* round robin among equally loaded workers */
  uint64_t bytes;          /* held in batches */
  uint64_t limit;          /* readers wait above this */
  int busy;
  uint64_t next_id;
  size_t batches;          /* alive */
  int started;             /* rules are with the workers */
  int stopping;
  int broken;              /* the output failed */
  int output_waits;        /* done batches wait for the output to drain */
  struct pcommit *chead, *ctail;  /* commits waiting for the output, in order */
  void (*stopped)(void *ud);
  void *stopped_ud;
  uv_timer_t grace;
  int grace_on;
  uv_timer_t kick;         /* pumps a redo's batch once the stream that made it is no longer in use */
  th_dispatch_totals t;
};

static void pump(th_dispatch *d);
static void on_kick(uv_timer_t *t);
static void advance(th_stream *s);
static void apply_commits(th_dispatch *d);
static int settled(const th_dispatch *d);
static unsigned in_flight(const th_dispatch *d);
static void finish_stop(th_dispatch *d);

/* ---- batches ------------------------------------------------------------------- */

/* Record i's TH_REC_* flags, as its frame holds them. */
static uint32_t flags_of(const th_batch *b, uint32_t i) {
  uint32_t flags;
  memcpy(&flags, b->msg.p + b->flags_at[i], 4);
  return flags;
}

static void batch_free(th_batch *b) {
  th_buf_free(&b->msg);
  free(b->flags_at);
  free(b->strikes);
  free(b->reply);
  free(b->pass);
  free(b->sets);
  free(b);
}

/* Written, or dropped: freed now, or when its last write completes. */
static void batch_release(th_dispatch *d, th_batch *b) {
  d->bytes -= b->msg.cap + (b->reply ? b->reply_len : 0);
  d->batches--;
  b->dead = 1;
  if (b->writing == 0) batch_free(b);
}

static th_batch *open_batch(th_stream *s) {
  th_dispatch *d = s->d;
  if (s->open) return s->open;
  th_batch *b = calloc(1, sizeof *b);
  if (b == NULL) return NULL;
  b->stream = s;
  b->id = ++d->next_id;
  b->epoch = s->epoch;
  b->crash_rule = -1;
  th_buf_init(&b->msg);
  th_buf_begin(&b->msg, TH_MSG_BATCH);
  th_buf_u64(&b->msg, b->id);
  th_buf_cstr(&b->msg, s->path);
  b->nat = b->msg.len;
  th_buf_u32(&b->msg, 0);
  if (b->msg.oom) {
    batch_free(b);
    return NULL;
  }
  s->open = b;
  d->batches++;
  d->bytes += b->msg.cap;
  return b;
}

static void update_busy(th_dispatch *d) {
  if (!d->busy && d->bytes > d->limit) {
    d->busy = 1;
  } else if (d->busy && d->bytes <= d->limit / 2) {
    d->busy = 0;
    if (d->o.on_room && !d->stopping) d->o.on_room(d->o.ud);
  }
}

/* Add a record to the stream's open batch. Returns 0 or -ENOMEM. */
static int add(th_stream *s, const char *bytes, size_t len, uint64_t offset, uint32_t flags) {
  th_dispatch *d = s->d;
  th_batch *b = open_batch(s);
  if (b == NULL) return -ENOMEM;
  if (b->n == b->cap) {
    uint32_t cap = b->cap ? b->cap * 2 : 64;
    size_t *fa = realloc(b->flags_at, cap * sizeof *fa);
    if (fa) b->flags_at = fa;
    uint8_t *st = realloc(b->strikes, cap);
    if (st) b->strikes = st;
    if (fa == NULL || st == NULL) return -ENOMEM;
    b->cap = cap;
  }
  size_t before = b->msg.cap;
  th_buf_u64(&b->msg, offset);
  b->flags_at[b->n] = b->msg.len;
  th_buf_u32(&b->msg, flags);
  th_buf_str(&b->msg, bytes, len);
  if (b->msg.oom) return -ENOMEM;
  b->strikes[b->n] = 0;
  b->n++;
  d->bytes += b->msg.cap - before;
  update_busy(d);
  return 0;
}

/* Close the open batch and queue it. */
static void seal(th_stream *s) {
  th_dispatch *d = s->d;
  th_batch *b = s->open;
  if (b == NULL) return;
  s->open = NULL;
  if (b->end.back_len > 0) b->end.back_hash = th_fnv1a(s->back, b->end.back_len);
  memcpy(b->msg.p + b->nat, &b->n, 4);
  th_buf_end(&b->msg);
  b->state = B_QUEUED;
  if (s->tail) s->tail->next = b;
  else s->head = b;
  s->tail = b;
  if (d->qtail) d->qtail->qnext = b;
  else d->qhead = b;
  d->qtail = b;
  d->queued++;
  pump(d);
}

/* The offset of record i, read back from the frame. */
static uint64_t record_offset(const th_batch *b, uint32_t i) {
  uint64_t off = 0;
  if (i < b->n) memcpy(&off, b->msg.p + b->flags_at[i] - 8, 8);
  return off;
}

/* ---- streams ------------------------------------------------------------------- */

th_stream *th_stream_open(th_dispatch *d, const char *path, uint64_t offset) {
  th_stream *s = calloc(1, sizeof *s);
  if (s == NULL || (s->path = strdup(path)) == NULL) {
    free(s);
    return NULL;
  }
  s->d = d;
  s->committed.offset = offset;
  s->snext = d->streams;
  if (d->streams) d->streams->prev = s;
  d->streams = s;
  return s;
}

int th_stream_rename(th_stream *s, const char *path) {
  if (strcmp(s->path, path) == 0) return 0;
  char *p = strdup(path);
  if (p == NULL) return -ENOMEM;
  seal(s);  /* a batch names one file */
  free(s->path);
  s->path = p;
  return 0;
}

static void oom(th_stream *s, uint64_t offset) {
  if (s->held) return;
  th_log("%s:%llu: out of memory; this record and the ones after it are read again at the next start", s->path,
         (unsigned long long)offset);
  s->held = 1;
  s->hold = offset;
}

void th_stream_line(th_stream *s, const char *line, size_t len, uint64_t offset, uint64_t end,
                    size_t max_line) {
  if (s->d->stopping) return;
  if (line == NULL) {
    char reason[96];
    int n = snprintf(reason, sizeof reason, "record longer than --max-line (%zu bytes), skipped", max_line);
    if (add(s, reason, (size_t)n, offset, TH_REC_REJECT) < 0) oom(s, offset);
    return;
  }
  th_progress_record();
  const char *rec = line;
  size_t n = len;
  if (offset == 0 && n >= 3 && memcmp(rec, "\xEF\xBB\xBF", 3) == 0) {  /* UTF-8 byte-order mark */
    rec += 3;
    n -= 3;
  }
  if (add(s, rec, n, offset, 0) < 0) {
    oom(s, offset);
    return;
  }
  th_batch *b = s->open;
  uint64_t raw = end - offset, k = raw < TH_BACK_MAX ? raw : TH_BACK_MAX;
  memcpy(s->back, line + raw - k, (size_t)k);
  b->end = (th_commit){end, (uint32_t)k, 0, 0};  /* back_hash: at seal */
  b->moves = 1;
  if (b->msg.len >= BATCH_BYTES || b->n >= BATCH_RECORDS) seal(s);
}

void th_stream_document(th_stream *s, const char *buf, size_t len, uint64_t end) {
  if (s->d->stopping) return;
  th_progress_record();
  seal(s);  /* a document is a batch of its own: it is large */
  if (add(s, buf, len, 0, TH_REC_DOCUMENT) < 0) {
    oom(s, 0);
    return;
  }
  s->open->end = (th_commit){end, 0, 0, 1};
  s->open->moves = 1;
  seal(s);
}

void th_stream_done(th_stream *s, uint64_t end) {
  if (s->d->stopping) return;
  th_batch *b = open_batch(s);  /* perhaps empty: it commits once the ones before are written */
  if (b == NULL) {
    oom(s, end);
    return;
  }
  b->end = (th_commit){end, 0, 0, 1};
  b->moves = 1;
  seal(s);
}

void th_stream_reject(th_stream *s, uint64_t offset, const char *reason) {
  if (s->d->stopping) return;
  if (add(s, reason, strlen(reason), offset, TH_REC_REJECT) < 0) oom(s, offset);
}

void th_stream_flush(th_stream *s) { seal(s); }

void th_stream_reset(th_stream *s, uint64_t offset) {
  seal(s);
  s->epoch++;
  s->held = 0;
  s->committed = (th_commit){offset, 0, 0, 0};
}

const th_commit *th_stream_committed(const th_stream *s) { return &s->committed; }

size_t th_stream_pending(const th_stream *s) {
  size_t n = s->open && s->open->n ? 1 : 0;
  for (th_batch *b = s->head; b; b = b->next) n++;
  return n;
}

static void stream_free(th_stream *s) {
  th_dispatch *d = s->d;
  if (s->prev) s->prev->snext = s->snext;
  else d->streams = s->snext;
  if (s->snext) s->snext->prev = s->prev;
  free(s->path);
  free(s);
}

void th_stream_close(th_stream *s) {
  if (s == NULL) return;
  th_dispatch *d = s->d;
  if (s->open && !d->stopping) {
    seal(s);
  } else if (s->open) {  /* stopping: records not handed over wait for the next start */
    th_batch *b = s->open;
    s->open = NULL;
    batch_release(d, b);
  }
  s->closed = 1;
  if (s->head == NULL && s->commits == 0) stream_free(s);
}

int th_dispatch_busy(const th_dispatch *d) { return d->busy || d->stopping || d->broken; }

/* ---- sending ------------------------------------------------------------------- */

static void on_sent(void *ctx, int status) {
  (void)status;  /* a failed write: the worker is gone, on_lost sends the batch again */
  th_batch *b = ctx;
  b->writing--;
  if (b->dead && b->writing == 0) batch_free(b);
}

/* A frame built for one send (the records that pass only): freed once written. */
typedef struct sendbuf {
  th_buf buf;
  th_batch *b;
} sendbuf;

static void on_sent_copy(void *ctx, int status) {
  sendbuf *sb = ctx;
  th_batch *b = sb->b;
  th_buf_free(&sb->buf);
  free(sb);
  on_sent(b, status);
}

static int usable(const th_dispatch *d, const th_worker *w) {
  return w->role == TH_ROLE_EVAL && w->ready && w->alive && !w->killed && !w->doomed &&
         d->wq[w->index].n < IN_FLIGHT;
}

/* Which of b's records could a rule of the running set match? Looked at once
 * per rule set (a batch sent again after a reload is looked at again: the
 * workers then run the new set). Records the worker must report (rejected,
 * or skipped after crashes) always go, and so do whole documents: an S3
 * object is many events, which the summary counts one by one (the worker's
 * rule index makes the ones no rule wants cheap). Returns the number that pass. */
static uint32_t look(th_dispatch *d, th_batch *b) {
  th_prefilter *pf = th_rules_prefilter(d->o.rules);
  if (th_prefilter_passes_all(pf)) {
    b->width = 0;
    return b->n;
  }
  uint64_t version = th_rules_prefilter_version(d->o.rules);
  if (b->pass && b->pf_version == version) return b->npass;
  if (b->pass == NULL && (b->pass = malloc(b->cap ? b->cap : 1)) == NULL) {  /* cannot look: all go */
    b->width = 0;
    return b->n;
  }
  size_t width = th_prefilter_width(pf), need = (size_t)b->n * width;
  if (need > b->sets_cap) {
    uint8_t *sets = realloc(b->sets, need);
    if (sets) b->sets = sets, b->sets_cap = need;
    else width = 0;  /* no memory for the sets: the records that pass meet every rule */
  }
  uint32_t npass = 0;
  for (uint32_t i = 0; i < b->n; i++) {
    uint32_t flags = flags_of(b, i), len;
    memcpy(&len, b->msg.p + b->flags_at[i] + 4, 4);
    const char *bytes = b->msg.p + b->flags_at[i] + 8;
    uint8_t *set = width ? b->sets + (size_t)i * width : NULL;
    int pass;
    if (flags & (TH_REC_REJECT | TH_REC_SKIP | TH_REC_DOCUMENT)) {
      pass = 1;
      if (set) memset(set, 0xff, width);
    } else {
      pass = set ? th_prefilter_rules(pf, bytes, len, set) : th_prefilter_pass(pf, bytes, len);
    }
    b->pass[i] = (uint8_t)pass;
    npass += (uint32_t)pass;
  }
  b->pf_version = version;
  b->npass = npass;
  b->width = width;
  return npass;
}

/* b's frame with the records that do not pass left empty and flagged: the
 * worker skips them, and record numbers stay those of b. With the sets of
 * look(), a BATCH_SETS frame: each record's, and the slots of their bits.
 * NULL: no memory. */
static sendbuf *filtered_frame(th_dispatch *d, th_batch *b) {
  sendbuf *sb = calloc(1, sizeof *sb);
  if (sb == NULL) return NULL;
  sb->b = b;
  th_buf *f = &sb->buf;
  th_buf_init(f);
  size_t head = b->n ? b->flags_at[0] - 8 : b->msg.len;  /* type, id, path, n */
  if (b->width) {
    th_prefilter *pf = th_rules_prefilter(d->o.rules);
    const uint32_t *slots = th_rules_prefilter_slots(d->o.rules);
    uint32_t nrules = th_prefilter_nrules(pf);
    th_buf_begin(f, TH_MSG_BATCH_SETS);
    th_buf_bytes(f, b->msg.p + TH_FRAME_HEADER, head - TH_FRAME_HEADER);  /* id, path, n */
    th_buf_u32(f, nrules);
    for (uint32_t k = 0; k < nrules; k++) th_buf_u32(f, slots[k]);
    th_buf_u32(f, (uint32_t)b->width);
    th_buf_bytes(f, (const char *)b->sets, (size_t)b->n * b->width);
  } else {
    th_buf_bytes(f, b->msg.p, head);  /* th_buf_end sets the length in its header */
  }
  for (uint32_t i = 0; i < b->n; i++) {
    const char *rec = b->msg.p + b->flags_at[i] - 8;  /* offset, flags, length, bytes */
    uint32_t flags, len;
    memcpy(&flags, rec + 8, 4);
    memcpy(&len, rec + 12, 4);
    if (b->pass[i]) {
      th_buf_bytes(f, rec, 16 + (size_t)len);
    } else {
      th_buf_bytes(f, rec, 8);
      th_buf_u32(f, flags | TH_REC_FILTERED);
      th_buf_u32(f, 0);
    }
  }
  th_buf_end(f);
  if (f->oom) {
    th_buf_free(f);
    free(sb);
    return NULL;
  }
  return sb;
}

static void dequeue(th_dispatch *d, th_batch *b) {
  d->qhead = b->qnext;
  if (d->qhead == NULL) d->qtail = NULL;
  d->queued--;
  b->qnext = NULL;
}

/* A batch of which no record could match: done without a worker, written in
 * its turn like any other. Returns 1 if so (b may be freed already), 0 when
 * out of memory: then it goes to a worker after all. */
static int skip_batch(th_dispatch *d, th_batch *b) {
  th_buf r;
  th_buf_init(&r);
  th_buf_u64(&r, b->id);
  th_buf_u32(&r, b->n);  /* done */
  for (int k = 0; k < 3; k++) th_buf_u64(&r, 0);  /* records, malformed, failed */
  th_buf_u32(&r, 0);  /* items */
  th_buf_u32(&r, 0);  /* rules */
  if (r.oom) {
    th_buf_free(&r);
    b->pf_version = 0;  /* no memory for even this: it goes to a worker */
    b->npass = b->n;
    memset(b->pass, 1, b->n);
    return 0;
  }
  dequeue(d, b);
  b->filtered = 1;
  b->reply = r.p;
  b->reply_len = r.len;
  b->state = B_DONE;
  d->bytes += r.len;
  advance(b->stream);
  return 1;
}

/* Hand queued batches to workers with room, the least loaded first. */
static void pump(th_dispatch *d) {
  while (d->started && !d->stopping && d->qhead) {
    th_batch *b = d->qhead;
    uint32_t npass = look(d, b);
    if (npass == 0 && skip_batch(d, b)) continue;
    th_worker *best = NULL;
    for (unsigned k = 0; k < d->nworkers; k++) {
      th_worker *w = &d->o.pool->w[(d->next_worker + k) % d->nworkers];
      if (usable(d, w) && (best == NULL || d->wq[w->index].n < d->wq[best->index].n)) best = w;
    }
    if (best == NULL) return;
    sendbuf *sb = npass < b->n || b->width ? filtered_frame(d, b) : NULL;
    int rc = sb ? th_worker_send(best, sb->buf.p, sb->buf.len, on_sent_copy, sb)
                : th_worker_send(best, b->msg.p, b->msg.len, on_sent, b);
    if (rc < 0) {  /* it is going away */
      if (sb) {
        th_buf_free(&sb->buf);
        free(sb);
      }
      return;
    }
    d->next_worker = (unsigned)(best->index + 1) % d->nworkers;
    b->filtered = sb != NULL;
    dequeue(d, b);
    b->writing++;
    b->state = B_SENT;
    b->worker = best;
    wq *q = &d->wq[best->index];
    if (q->tail) q->tail->qnext = b;
    else q->head = b;
    q->tail = b;
    q->n++;
  }
}

/* ---- replies ------------------------------------------------------------------- */

/* A new batch of b's stream and file, its frame begun up to its record
 * count (c->nat): the rest of b (split) or one of its records (redo). */
static th_batch *derived(th_dispatch *d, const th_batch *b) {
  th_batch *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->stream = b->stream;
  c->id = ++d->next_id;
  c->epoch = b->epoch;
  c->crash_rule = -1;
  th_buf_init(&c->msg);
  th_buf_begin(&c->msg, TH_MSG_BATCH);
  th_buf_u64(&c->msg, c->id);
  size_t plen;
  th_rd r;
  th_rd_init(&r, b->msg.p + TH_FRAME_HEADER + 8, b->msg.len - TH_FRAME_HEADER - 8);
  const char *path = th_rd_str(&r, &plen);
  th_buf_str(&c->msg, path, plen);
  c->nat = c->msg.len;
  return c;
}

/* c first in the send queue, counted among the batches held. */
static void queue_first(th_dispatch *d, th_batch *c) {
  c->state = B_QUEUED;
  c->qnext = d->qhead;
  d->qhead = c;
  if (d->qtail == NULL) d->qtail = c;
  d->queued++;
  d->batches++;
  d->bytes += c->msg.cap;
}

/* The records of b from k on, as a batch of their own right after b in its
 * stream, first in the queue; b keeps the first k and no longer moves the
 * committed position (its continuation does). Returns 0 or -ENOMEM. */
static int split(th_dispatch *d, th_batch *b, uint32_t k) {
  th_batch *c = derived(d, b);
  if (c == NULL) return -ENOMEM;
  c->end = b->end;
  c->moves = b->moves;
  c->redo = b->redo;
  c->n = b->n - k;
  th_buf_u32(&c->msg, c->n);
  size_t from = b->flags_at[k] - 8, shift = c->msg.len - from;
  th_buf_bytes(&c->msg, b->msg.p + from, b->msg.len - from);
  th_buf_end(&c->msg);
  c->cap = c->n;
  c->flags_at = malloc(c->n * sizeof *c->flags_at);
  c->strikes = malloc(c->n);
  if (c->msg.oom || c->flags_at == NULL || c->strikes == NULL) {
    batch_free(c);
    return -ENOMEM;
  }
  for (uint32_t i = 0; i < c->n; i++) {
    c->flags_at[i] = b->flags_at[k + i] + shift;
    c->strikes[i] = b->strikes[k + i];
  }
  b->n = k;
  b->moves = 0;
  c->next = b->next;
  b->next = c;
  if (c->stream->tail == b) c->stream->tail = c;
  queue_first(d, c);
  return 0;
}

static void batch_reply(th_dispatch *d, th_worker *w, const char *p, size_t len) {
  wq *q = &d->wq[w->index];
  th_batch *b = q->head;
  uint64_t id = 0;
  uint32_t done = 0;
  if (len >= 12) {
    memcpy(&id, p, 8);
    memcpy(&done, p + 8, 4);
  }
  if (b == NULL || b->id != id || done > b->n || th_proto_check_batch(p, len, d->o.rules->nslots) < 0 ||
      (done < b->n && split(d, b, done) < 0)) {
    th_log("worker %d (pid %d): a reply that does not match what it was sent; stopping it", w->index, (int)w->pid);
    th_worker_kill(w);
    return;
  }
  char *copy = malloc(len ? len : 1);
  if (copy == NULL || (done < b->n && split(d, b, done) < 0)) {
    free(copy);
    th_log("out of memory for a worker's reply; it is asked again");
    th_worker_kill(w);
    return;
  }
  memcpy(copy, p, len);
  q->head = b->qnext;
  if (q->head == NULL) q->tail = NULL;
  q->n--;
  b->qnext = NULL;
  b->worker = NULL;
  b->reply = copy;
  b->reply_len = len;
  b->state = B_DONE;
  d->bytes += len;  /* held until written, like the records */
  advance(b->stream);
  if (d->stopping && settled(d)) finish_stop(d);
  pump(d);
}

/* An output failed for good (stdout's reader is gone): said once by the
 * owner, who stops; nothing is committed past it. */
static void broken(th_dispatch *d, const char *why) {
  if (d->broken++) return;
  if (d->o.on_broken) d->o.on_broken(why, d->o.ud);
}

/* An alert of rule, as the limiter decided (TH_LIMIT_*): counted, and the
 * first and last event time of those written kept. */
static void count_alert(th_rule *rule, int got, const char *ts, size_t tlen) {
  if (got == TH_LIMIT_DUPLICATE) rule->duplicates++;
  if (got == TH_LIMIT_SUPPRESSED) rule->suppressed++;
  if (got == TH_LIMIT_HELD) rule->held++;
  if (got != TH_LIMIT_WRITTEN) return;
  rule->alerts++;
  if (tlen > 0 && tlen < sizeof rule->first) {  /* ISO 8601 in UTC: text order is time order */
    char t[sizeof rule->first];
    memcpy(t, ts, tlen);
    t[tlen] = '\0';
    if (rule->first[0] == '\0' || strcmp(t, rule->first) < 0) memcpy(rule->first, t, tlen + 1);
    if (rule->last[0] == '\0' || strcmp(t, rule->last) > 0) memcpy(rule->last, t, tlen + 1);
  }
}

/* An ALERT item from its timestamp on (proto.h); also the tail of a STATE item. */
static void read_alert(th_rd *r, th_limit_alert *a, const th_rule *rule) {
  a->ts = th_rd_str(r, &a->tlen);
  a->uuid = th_rd_str(r, &a->ulen);
  a->severity = th_rd_u8(r);
  a->text = th_rd_str(r, &a->len);
  a->max_signals = th_rd_u32(r);
  a->interval_s = th_rd_u32(r);
  a->suppress_s = th_rd_u32(r);
  a->group = th_rd_str(r, &a->glen);
  a->at = th_rd_u32(r);
  a->slen = th_rd_u32(r);
  a->rule_id = rule ? rule->id : "";
  a->rule_name = rule ? rule->name : "";
}

/* A STATE item from its type on (proto.h). */
static void read_state(th_rd *r, th_state_item *it, const th_rule *rule) {
  it->type = th_rd_u8(r);
  it->fp = th_rd_u64(r);
  it->key = th_rd_str(r, &it->klen);
  it->distinct = th_rd_str(r, &it->dlen);
  it->window_s = th_rd_u32(r);
  it->value = th_rd_u32(r);
  it->cardinality = th_rd_u32(r);
  it->card_field = th_rd_str(r, &it->flen);
  read_alert(r, &it->a, rule);
}

/* Reads past an item of kind, after its kind and record (the reply was
 * checked whole: th_proto_check_batch). */
static void skip_item(th_rd *r, uint8_t kind) {
  size_t len;
  th_limit_alert a;
  th_state_item it;
  switch (kind) {
    case TH_ITEM_ALERT:
      th_rd_u32(r);
      read_alert(r, &a, NULL);
      break;
    case TH_ITEM_STATE:
      th_rd_u32(r);
      read_state(r, &it, NULL);
      break;
    case TH_ITEM_LOG:
      th_rd_str(r, &len);
      break;
    case TH_ITEM_FAIL:
    case TH_ITEM_QUARANTINED:
      th_rd_u32(r);
      th_rd_u32(r);
      th_rd_str(r, &len);
      break;
    default: break;
  }
}

/* Does a new_terms candidate of record rec, whose items start at *at (left
 * items to the reply's end), come without its alert when the rule state
 * would take it as news? Its worker sent the combination lately, but the
 * state has since let it go (stateful.lua, KNOWN): the record is evaluated
 * again, whole, rather than lose the alert. Two looks: the newest event time
 * of the record's candidates first, the clock as their decisions leave it. */
static int record_stale(th_dispatch *d, const th_rd *at, uint32_t left, uint32_t rec) {
  if (d->o.stateful == NULL) return 0;
  int64_t late = INT64_MIN;
  int touches = 0;
  for (int look = 0; look < 2; look++) {
    th_rd r = *at;
    for (uint32_t i = 0; i < left; i++) {
      uint8_t kind = th_rd_u8(&r);
      if (th_rd_u32(&r) != rec || r.bad) break;
      if (kind != TH_ITEM_STATE) {
        skip_item(&r, kind);
        continue;
      }
      th_state_item it;
      read_state(&r, &it, th_rules_slot(d->o.rules, th_rd_u32(&r)));
      if (look == 0) {
        int64_t t = th_stateful_time(d->o.stateful, &it);
        if (t > late) late = t;
        touches += it.type == TH_STATE_NEW_TERMS && it.a.len == 0;
      } else if (th_stateful_stale(d->o.stateful, &it, late)) {
        return 1;
      }
    }
    if (touches == 0) return 0;
  }
  return 0;
}


/* The next ALERT item of record rec from *r on (its slot into *slot, a
 * filled), or 0 when the record has no more. */
static int next_alert(th_dispatch *d, th_rd *r, uint32_t *left, uint32_t rec, uint32_t *slot, th_limit_alert *a) {
  while (*left > 0) {
    (*left)--;
    uint8_t kind = th_rd_u8(r);
    if (th_rd_u32(r) != rec || r->bad) return 0;
    if (kind != TH_ITEM_ALERT) {
      skip_item(r, kind);
      continue;
    }
    *slot = th_rd_u32(r);
    read_alert(r, a, th_rules_slot(d->o.rules, *slot));
    return 1;
  }
  return 0;
}

/* Does record rec, whose items start at *at, hold an alert its worker did not
 * build (its window said full: proto.h, FULL) that the limiter might write?
 * Its window was let go since (four per rule), or an alert of the same rule
 * before it in the record (an S3 object holds many events) may let it go: the
 * record is evaluated again, whole, so that what is written is what it would
 * have been. */
static int record_unbuilt(th_dispatch *d, const th_rd *at, uint32_t left, uint32_t rec) {
  th_rd r = *at;
  uint32_t n = left, slot, other;
  th_limit_alert a, b;
  int any = 0;
  while (next_alert(d, &r, &n, rec, &slot, &a)) {
    if (a.len > 0) continue;
    if (!th_limiter_holds(d->o.limiter, &a)) return 1;
    any = 1;
  }
  r = *at;
  n = left;
  while (any && next_alert(d, &r, &n, rec, &slot, &a)) {
    if (a.len == 0 || !th_limiter_opens(d->o.limiter, &a)) continue;
    th_rd r2 = *at;  /* rare: an alert that opens a window; is one of its rule's unbuilt? */
    uint32_t n2 = left;
    while (next_alert(d, &r2, &n2, rec, &other, &b))
      if (b.len == 0 && other == slot) return 1;
  }
  return 0;
}

/* Stopping, record k of b holds an alert its worker did not build that may
 * have to be written: nothing is sent any more to build it, so the record is
 * left to the next start, which reads it again (its stream is not committed
 * past it). */
static void hold_record(th_batch *b, uint32_t k) {
  th_stream *s = b->stream;
  uint64_t offset;
  memcpy(&offset, b->msg.p + b->flags_at[k] - 8, 8);  /* offset, flags, length, bytes */
  if (s->held && s->hold <= offset) return;
  th_log("%s:%llu: stopping: an alert of this record was not built; it is read again at the next start", s->path,
         (unsigned long long)offset);
  s->held = 1;
  s->hold = offset;
}

/* Record k of b evaluated again, whole (TH_REC_FULL), as a batch of its own
 * first in the queue and first in its stream: b waits for it, and then goes
 * on from record k + 1. It counts nothing (b did) and commits nothing.
 * Returns 0, or -1 when out of memory (then b is written as it is). */
static int redo(th_dispatch *d, th_batch *b, uint32_t k) {
  th_batch *c = derived(d, b);
  if (c == NULL) return -1;
  c->redo = 1;
  th_buf_u32(&c->msg, 1);
  const char *rec = b->msg.p + b->flags_at[k] - 8;  /* offset, flags, length, bytes */
  uint32_t flags, len;
  memcpy(&flags, rec + 8, 4);
  memcpy(&len, rec + 12, 4);
  th_buf_bytes(&c->msg, rec, 8);
  size_t at = c->msg.len;
  th_buf_u32(&c->msg, flags | TH_REC_FULL);
  th_buf_str(&c->msg, rec + 16, len);
  th_buf_end(&c->msg);
  c->n = c->cap = 1;
  c->flags_at = malloc(sizeof *c->flags_at);
  c->strikes = calloc(1, 1);
  if (c->msg.oom || c->flags_at == NULL || c->strikes == NULL) {
    batch_free(c);
    return -1;
  }
  c->flags_at[0] = at;
  c->next = b;  /* b is its stream's head: the one being written */
  b->stream->head = c;
  queue_first(d, c);
  return 0;
}

/* Write a done batch's results: alerts (through the limiter), messages,
 * counts; up to the first record whose alert the worker left out, which is
 * evaluated again first (redo): returns 1 then, and b waits at its stream's
 * head, to go on from there once that record is written. */
static int write_batch(th_dispatch *d, th_batch *b) {
  th_rules *rules = d->o.rules;
  th_rd r;
  th_rd_init(&r, b->reply, b->reply_len);
  uint32_t left, skip = UINT32_MAX;
  if (b->resume_at == 0) {
    th_rd_u64(&r);  /* id */
    th_rd_u32(&r);  /* done */
    uint64_t records = th_rd_u64(&r), malformed = th_rd_u64(&r), failed = th_rd_u64(&r);
    if (!b->redo) {
      d->t.records += records;
      d->t.malformed += malformed;
      d->t.failed += failed;
    }
    left = th_rd_u32(&r);
  } else {  /* after a redo: its record's items were the redo's */
    r.pos = b->resume_at;
    left = b->resume_left;
    skip = b->resume_skip;
  }
  for (uint32_t rec = UINT32_MAX; left > 0; left--) {
    th_rd at = r;
    uint8_t kind = th_rd_u8(&r);
    uint32_t item_rec = th_rd_u32(&r);
    if (item_rec == skip) {
      skip_item(&r, kind);
      continue;
    }
    if (item_rec != rec) {
      rec = item_rec;
      /* Not while stopping: nothing more is sent, and b must not be left half written (a record
       * holding an unbuilt alert that may be written is left to the next start instead). */
      if (rec < b->n && !(flags_of(b, rec) & TH_REC_FULL)) {
        uint64_t *why = NULL;  /* the count of the reason to evaluate it again, if any */
        if (d->stopping) {
          if (record_unbuilt(d, &at, left, rec)) {
            hold_record(b, rec);  /* none of its alerts decided now: the next start does */
            skip = rec;
            skip_item(&r, kind);
            continue;
          }
        } else {
          why = record_stale(d, &at, left, rec)     ? &d->t.redone
                : record_unbuilt(d, &at, left, rec) ? &d->t.reopened
                                                    : NULL;
        }
        if (why && redo(d, b, rec) == 0) {
          (*why)++;
          b->resume_at = at.pos;
          b->resume_left = left;
          b->resume_skip = rec;
          return 1;
        }
      }
    }
    size_t len;
    const char *s;
    uint32_t slot;
    switch (kind) {
      case TH_ITEM_ALERT: {
        th_limit_alert a;
        uint32_t from = th_rd_u32(&r);
        th_rule *rule = th_rules_slot(rules, from);
        read_alert(&r, &a, rule);
        int got = a.len == 0 ? th_limiter_held(d->o.limiter, &a) : th_limiter_alert(d->o.limiter, &a);
        if (got < 0) broken(d, "out of memory for alerts");
        else if (rule) count_alert(rule, got, a.ts, a.tlen);
        if (got == TH_LIMIT_HELD && a.len == 0 && rule) rule->unbuilt++;
        int64_t index;  /* a window full for good: its later alerts need not be built (unsuppressed rules) */
        if (got == TH_LIMIT_HELD && a.len > 0 && a.suppress_s == 0 && th_limiter_window(d->o.limiter, &a, &index) == 0)
          th_rules_full(rules, from, a.max_signals, a.interval_s, index);
        break;
      }
      case TH_ITEM_STATE: {
        th_state_item it;
        th_rule *rule = th_rules_slot(rules, th_rd_u32(&r));
        read_state(&r, &it, rule);
        int got = d->o.stateful ? th_stateful_item(d->o.stateful, &it) : TH_STATE_QUIET;
        if (got < 0) broken(d, "out of memory for rule state");
        else if (rule && got != TH_STATE_QUIET) count_alert(rule, got, it.a.ts, it.a.tlen);
        break;
      }
      case TH_ITEM_LOG:
        s = th_rd_str(&r, &len);
        th_log_raw(s, len);
        break;
      case TH_ITEM_FAIL:
      case TH_ITEM_QUARANTINED: {
        slot = th_rd_u32(&r);
        uint32_t load = th_rd_u32(&r);
        s = th_rd_str(&r, &len);
        char *msg = strndup(s, len);
        if (msg && kind == TH_ITEM_FAIL) th_rules_fail(rules, slot, load, msg);
        else if (msg) th_rules_quarantine(rules, slot, load, msg);
        free(msg);
        break;
      }
      default: break;
    }
  }
  if (b->filtered && !b->redo) {  /* the records the prefilter skipped: counted here, in their turn */
    uint64_t skipped = 0;
    for (uint32_t i = 0; i < b->n; i++) skipped += !b->pass[i];
    d->t.records += skipped;
    d->t.prefiltered += skipped;
  }
  uint32_t n = th_rd_u32(&r);
  for (uint32_t i = 0; i < n && !b->redo; i++) {
    th_rule *rule = th_rules_slot(rules, th_rd_u32(&r));
    uint64_t seen = th_rd_u64(&r), errors = th_rd_u64(&r), ns = th_rd_u64(&r);
    if (rule) {
      rule->seen += seen;
      rule->errors += errors;
      rule->time_ns += ns;
    }
  }
  d->t.batches += !b->redo;
  return 0;
}

/* A commit that waits for the outputs to have delivered mark alerts. */
typedef struct pcommit {
  struct pcommit *next;
  th_stream *stream;       /* not freed while it has commits waiting */
  uint64_t mark;           /* th_outputs_acked must reach this */
  uint64_t epoch;          /* the stream's, when the batch was made */
  th_commit end;
} pcommit;

static void wait_commit(th_dispatch *d, th_stream *s, const th_batch *b) {
  pcommit *c = malloc(sizeof *c);
  if (c == NULL) return;  /* not committed now: a later batch's commit covers it */
  *c = (pcommit){NULL, s, th_outputs_next(d->o.out), b->epoch, b->end};
  s->commits++;
  if (d->ctail) d->ctail->next = c;
  else d->chead = c;
  d->ctail = c;
}

/* Commits whose alerts every output has delivered, in order. */
static void apply_commits(th_dispatch *d) {
  uint64_t acked = th_outputs_acked(d->o.out);
  while (d->chead && d->chead->mark <= acked) {
    pcommit *c = d->chead;
    d->chead = c->next;
    if (d->chead == NULL) d->ctail = NULL;
    th_stream *s = c->stream;
    if (c->epoch == s->epoch) s->committed = c->end;
    s->commits--;
    free(c);
    if (s->closed && s->head == NULL && s->commits == 0) stream_free(s);
  }
}

/* A stop may end: nothing with workers (the outputs are waited for apart). */
static int settled(const th_dispatch *d) { return in_flight(d) == 0; }

/* Write the stream's done batches that no earlier batch holds back. */
static void advance(th_stream *s) {
  th_dispatch *d = s->d;
  int wrote = 0, redone = 0;
  while (s->head && s->head->state == B_DONE) {
    if (th_outputs_full(d->o.out)) {  /* an output is slow or down: the rest waits for room */
      d->output_waits = 1;
      break;
    }
    th_batch *b = s->head;
    wrote = 1;
    if (write_batch(d, b)) {  /* one of its records goes first, evaluated again */
      redone = 1;
      break;
    }
    s->head = b->next;
    if (s->head == NULL) s->tail = NULL;
    /* Alerts must be delivered before the stream is committed past their
     * records: the commit waits until every output has acknowledged them. */
    if (b->moves && !(s->held && b->end.offset > s->hold)) wait_commit(d, s, b);
    batch_release(d, b);
  }
  if (wrote) th_outputs_kick(d->o.out);
  /* The record evaluated again, first in the queue: sent from the loop, not from here (pump may
   * write a batch it skips, advancing this very stream). */
  if (redone) uv_timer_start(&d->kick, on_kick, 0, 0);
  if (th_outputs_fatal(d->o.out)) broken(d, th_outputs_fatal(d->o.out));
  apply_commits(d);
  if (wrote) update_busy(d);
  if (s->closed && s->head == NULL && s->commits == 0) stream_free(s);
  if (wrote && d->batches == 0 && d->o.on_idle) d->o.on_idle(d->o.ud);
}

/* The outputs delivered more, or made room: commit what they have, and go
 * on writing the batches that waited for room. */
void th_dispatch_on_drain(void *ud) {
  th_dispatch *d = ud;
  if (th_outputs_fatal(d->o.out)) {
    broken(d, th_outputs_fatal(d->o.out));
    return;
  }
  apply_commits(d);
  if (d->output_waits && !th_outputs_full(d->o.out)) {
    d->output_waits = 0;
    th_stream *s = d->streams;
    while (s) {  /* advance may free s: take the next one first */
      th_stream *next = s->snext;
      if (s->head && s->head->state == B_DONE) advance(s);
      s = next;
    }
  }
  if (d->stopping && settled(d)) finish_stop(d);
}

/* ---- workers ------------------------------------------------------------------- */

unsigned th_dispatch_owed(th_worker *w, void *ud) {
  th_dispatch *d = ud;
  if (w->role == TH_ROLE_GATE) return th_rules_owed(d->o.rules);
  return d->wq[w->index].n;
}

void th_dispatch_on_ready(th_worker *w, void *ud) {
  th_dispatch *d = ud;
  th_rules_on_ready(d->o.rules, w);
  pump(d);
}

void th_dispatch_on_reply(th_worker *w, uint32_t type, const char *p, size_t len, void *ud) {
  th_dispatch *d = ud;
  if (type == TH_REP_BATCH && w->role == TH_ROLE_EVAL) {
    batch_reply(d, w, p, len);
  } else if (type == TH_REP_MEMORY) {
    w->expected = 1;  /* it exits next, to start afresh */
    th_rd r;
    th_rd_init(&r, p, len);
    uint32_t slot = th_rd_u32(&r), load = th_rd_u32(&r);
    char *why = th_rd_strdup(&r);
    if (!r.bad && why) th_rules_quarantine(d->o.rules, slot, load, why);
    free(why);
  } else {
    th_rules_on_reply(d->o.rules, w, type, p, len);
  }
}

/* Who is to blame for the loss of the worker that was evaluating b: see the top. */
static void blame(th_dispatch *d, const th_lost *why, th_batch *b) {
  th_rules *rules = d->o.rules;
  uint32_t rec = why->record < b->n ? why->record : 0;
  uint64_t off = record_offset(b, rec);
  char where[4200];
  snprintf(where, sizeof where, "%s:%llu", b->stream->path, (unsigned long long)off);
  th_rule *rule = why->rule >= 0 ? th_rules_slot(rules, (uint32_t)why->rule) : NULL;
  char msg[8600];
  if (rule && (why->watchdog || why->signal == SIGSYS)) {
    rule->errors++;
    if (why->watchdog)
      snprintf(msg, sizeof msg, "rule %s quarantined: a call ran for %.0f ms on %s, past --max-time (%llu ms); its "
               "worker was stopped and the batch is evaluated again without it; \"%s\" no longer runs until %s "
               "changes (or SIGHUP)", rule->path, why->ms, where,
               (unsigned long long)th_pool_limit_ms(d->o.pool, why->rule), rule->name, rule->path);
    else
      snprintf(msg, sizeof msg, "rule %s quarantined: it made a system call the sandbox forbids on %s (SIGSYS); "
               "the batch is evaluated again without it; \"%s\" no longer runs until %s changes (or SIGHUP)",
               rule->path, where, rule->name, rule->path);
    th_rules_quarantine(rules, rule->slot, why->load, msg);
    return;
  }
  /* A crash (not a kill from outside, nor the OOM killer's: SIGKILL tells
   * nothing of the record) twice on the same record in the same rule
   * quarantines the rule; with no rule in flight, twice (or the watchdog
   * twice) skips the record. */
  int crash = why->watchdog || why->signal == SIGSEGV || why->signal == SIGBUS || why->signal == SIGABRT ||
              why->signal == SIGILL || why->signal == SIGFPE || why->signal == SIGSYS ||
              (why->signal == 0 && why->status != 0);
  if (!crash) return;
  if (rule) {
    if (b->crash_rule == why->rule && b->crash_record == rec) {
      snprintf(msg, sizeof msg, "rule %s quarantined: its worker died twice in it on %s; \"%s\" no longer runs "
               "until %s changes (or SIGHUP)", rule->path, where, rule->name, rule->path);
      th_rules_quarantine(rules, rule->slot, why->load, msg);
    } else {
      b->crash_rule = why->rule;
      b->crash_record = rec;
    }
    return;
  }
  if (why->rule == TH_STEP_PIPELINE && rec < b->n && ++b->strikes[rec] >= 2) {
    uint32_t flags = flags_of(b, rec) | TH_REC_SKIP;
    memcpy(b->msg.p + b->flags_at[rec], &flags, 4);
    d->t.malformed++;
  }
}

void th_dispatch_on_lost(th_worker *w, const th_lost *why, void *ud) {
  th_dispatch *d = ud;
  if (w->role == TH_ROLE_GATE) {
    th_rules_on_lost(d->o.rules, w, why);
    return;
  }
  wq *q = &d->wq[w->index];
  th_batch *first = q->head;
  unsigned lost = q->n;
  if (lost && !d->stopping)
    th_log("worker %d: its %u batch%s %s sent again", w->index, lost, lost == 1 ? "" : "es",
           lost == 1 ? "is" : "are");
  if (first && why->batch == first->id) blame(d, why, first);
  /* Everything it had goes back to the front of the queue, in order. */
  if (q->head) {
    q->tail->qnext = d->qhead;
    d->qhead = q->head;
    if (d->qtail == NULL) d->qtail = q->tail;
  }
  for (th_batch *b = q->head; b; b = b->qnext) {
    b->state = B_QUEUED;
    b->worker = NULL;
    d->queued++;
    d->t.resent++;
  }
  q->head = q->tail = NULL;
  q->n = 0;
  if (d->stopping && settled(d)) finish_stop(d);  /* nothing more will come back */
  pump(d);
}

/* ---- life ------------------------------------------------------------------- */

th_dispatch *th_dispatch_new(const th_dispatch_opts *o) {
  th_dispatch *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  d->o = *o;
  d->nworkers = o->pool->n;
  d->wq = calloc(d->nworkers + 1, sizeof *d->wq);
  if (d->wq == NULL) {
    free(d);
    return NULL;
  }
  /* Enough to keep every worker busy, and bounded whatever the backlog. */
  d->limit = (uint64_t)(d->nworkers * (IN_FLIGHT + 2)) * BATCH_BYTES * 2;
  if (d->limit < (16u << 20)) d->limit = 16u << 20;
  uv_timer_init(o->pool->loop, &d->grace);
  d->grace.data = d;
  uv_timer_init(o->pool->loop, &d->kick);
  d->kick.data = d;
  return d;
}

/* The grace timer's handle; closed before the loop ends. */
void th_dispatch_close(th_dispatch *d) {
  uv_close((uv_handle_t *)&d->grace, NULL);
  uv_close((uv_handle_t *)&d->kick, NULL);
}

static void on_kick(uv_timer_t *t) { pump(t->data); }

void th_dispatch_start(th_dispatch *d) {
  d->started = 1;
  pump(d);
}

size_t th_dispatch_pending(const th_dispatch *d) { return d->batches; }

static unsigned in_flight(const th_dispatch *d) {
  unsigned n = 0;
  for (unsigned i = 0; i < d->nworkers; i++) n += d->wq[i].n;
  return n;
}

/* Time is up, or nothing is in flight: what has not come back stays
 * uncommitted, and the workers go. */
static void finish_stop(th_dispatch *d) {
  if (d->stopped == NULL) return;
  uv_timer_stop(&d->grace);
  void (*cb)(void *) = d->stopped;
  d->stopped = NULL;
  th_pool_stop(d->o.pool);
  cb(d->stopped_ud);
}

static void on_grace(uv_timer_t *t) { finish_stop(t->data); }

void th_dispatch_stop(th_dispatch *d, unsigned grace_ms, void (*done)(void *ud), void *ud) {
  if (d->stopping) return;
  d->stopping = 1;
  d->stopped = done;
  d->stopped_ud = ud;
  if (grace_ms == 0 || settled(d)) {
    finish_stop(d);
    return;
  }
  uv_timer_start(&d->grace, on_grace, grace_ms, 0);
}

void th_dispatch_totals_get(const th_dispatch *d, th_dispatch_totals *t) {
  *t = d->t;
  t->queued = d->queued;
  t->in_flight = in_flight(d);
  t->bytes = d->bytes;
  t->limit = d->limit;
  t->output = th_outputs_next(d->o.out) - th_outputs_acked(d->o.out);
}

unsigned th_dispatch_worker_load(const th_dispatch *d, const th_worker *w) {
  return w->role == TH_ROLE_EVAL ? d->wq[w->index].n : 0;
}

void th_dispatch_free(th_dispatch *d) {
  if (d == NULL) return;
  while (d->chead) {
    pcommit *c = d->chead;
    d->chead = c->next;
    free(c);
  }
  /* A stop with work left: batches and streams no reader holds any more. */
  while (d->streams) {
    th_stream *s = d->streams;
    if (s->open) batch_free(s->open);
    th_batch *b = s->head;
    while (b) {
      th_batch *next = b->next;
      batch_free(b);
      b = next;
    }
    d->streams = s->snext;
    free(s->path);
    free(s);
  }
  free(d->wq);
  free(d);
}
