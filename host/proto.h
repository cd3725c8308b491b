/* proto.h: what the host and a worker say to each other.
 *
 * A worker is this binary started by the host as `trailhound __worker`, with
 *   fd 0  messages from the host (a pipe; end of file: exit at once)
 *   fd 1  replies to the host (a pipe)
 *   fd 2  the host's stderr, for what cannot be said in a reply (a panic)
 *   fd 3  its status page (a memfd of sizeof(th_status), mapped by both)
 *
 * Every message is a frame: a 16-byte header { u32 type, u32 zero, u64
 * length } and length bytes of payload, written with th_buf and read back
 * with th_rd (integers in the machine's own order: both ends are the same
 * binary on the same machine). The host treats every byte from a worker as
 * untrusted: a reply that does not parse is a dead worker.
 *
 * Host -> worker (payloads, in order):
 *   INIT        u32 role (TH_ROLE_*), u32 index, str home (the folder of
 *               scripts/), str mode, u64 max_instructions, u64 max_memory,
 *               u64 heap_cap, u32 quarantine_after (0: never), u32 nonly,
 *               nonly x str (--rule), str geoip_asn, str geoip_city (MaxMind
 *               database paths, "" for none; the worker opens them before its
 *               seccomp filter)
 *   RULES       u32 generation, u8 normalizer given, [str path, str text,
 *               u8 reloaded], u32 n, n x { u32 slot, str path, str text,
 *               u8 quarantined, u32 load (bumped at every reload of the rule:
 *               a worker keeps a rule's state only while it is unchanged) }:
 *               from now on, run exactly these
 *   QUARANTINE  u32 slot: stop running this rule
 *   BATCH       u64 id, str path, u32 n, n x { u64 offset, u32 flags
 *               (TH_REC_*), str bytes }
 *   BATCH_SETS  u64 id, str path, u32 n, u32 m, m x u32 slot, u32 width,
 *               n x width bytes, then n records as in BATCH: a record's bytes
 *               are a set of the m rules (bit k % 8 of byte k / 8 for slot k):
 *               those it could concern (prefilter.h, th_prefilter_rules); a rule
 *               of the m whose bit is clear does not run on it, the others do
 *   LOAD        (gate) u32 n, n x { str path, str text }: load these, say which load
 *   PRELOAD     (evaluation) the same, sent beside the gate's LOAD: compile these now,
 *               while the gate does, for the RULES that follows; no reply
 *   GATE        (gate) u8 all, u32 n, n x { str path, str text, u64 mtime_ns },
 *               u32 n, n x str removed, u32 n, n x str missing,
 *               u8 normalizer changed, [str text, u64 mtime_ns]
 *   FULL        (evaluation) str rule_id, u32 max_signals, u32 interval_s, u64 index (an
 *               i64): that rule's max_signals window index (of interval_s seconds, in event
 *               time) is full; the host holds back its later alerts there, so the worker
 *               need not build them: it sends each as an ALERT whose line is "" (limiter.h);
 *               no reply
 *
 * Worker -> host:
 *   READY       u32 pid
 *   BATCH       u64 id, u32 done (records evaluated: fewer than sent when the
 *               reply grew past TH_REPLY_MAX; the host sends the rest again as a
 *               batch of its own), u64 records, u64 malformed, u64 failed
 *               (normalizer), items, u32 n, n x { u32 slot, u64 seen, u64 errors,
 *               u64 time_ns }
 *     items:    u32 n, n x item
 *     item:     u8 kind (TH_ITEM_*), u32 record index, then
 *               ALERT: u32 slot, str timestamp, str uuid, u8 severity, str line,
 *                      u32 max_signals, u32 interval_s, u32 suppress_s, str group,
 *                      u32 at, u32 len (the suppression object in line; limiter.h);
 *                      line "": not built, its window being FULL (held back)
 *               LOG: str message
 *               FAIL: u32 slot, u32 load, str message (the first failure of the rule
 *                 in the batch)
 *               QUARANTINED: u32 slot, u32 load, str message
 *               STATE: a stateful rule's candidate (stateful.h): u32 slot, u8 type
 *                      (TH_STATE_*), u64 fingerprint (of the rule's query and type
 *                      parameters), str key (JSON: the new-terms combination, the
 *                      threshold group's terms), str distinct (JSON: the cardinality
 *                      field's value; "" none), u32 window_s, u32 value, u32
 *                      cardinality, str cardinality field (JSON string; "" none), then
 *                      what ALERT holds from timestamp on (for a threshold, at and len
 *                      are where threshold_result goes in line; a new_terms line ""
 *                      is a combination the worker sent lately: its time only).
 *                      An EQL sequence's (TH_STATE_SEQUENCE): key the join values,
 *                      distinct the event's ancestor (JSON object), window_s maxspan
 *                      in ms (0: none), value the step the event matches (from 0;
 *                      = cardinality: until), cardinality the number of steps,
 *                      cardinality field the shell alert's text (the last step's;
 *                      "" else), line the event's building block (seqalert.h)
 *   LOADED      u32 n, n x { str path, u8 ok, str id|error, str name, str version,
 *               prefilter },
 *               str fatal (--rule named nothing that loaded; "" if none), items
 *   GATE        items (the gate's log lines), u32 n live, n x { str path, u8 new,
 *               str id, str name, str version, prefilter }, u8 normalizer accepted
 *     prefilter: u32 n, n x { u32 m, m x str }: what a record the rule matches holds
 *               in its text (prefilter.h); n = 0: any record may match; m with
 *               TH_PF_FOLD (the high bit) set: the clause's literals in any ASCII case;
 *               then u32 k, k x { str path, u8 exclude, u32 m, m x str }: what a raw
 *               record's fields must (exclude 0) or must not (1) hold (rawfield.h)
 *   RULES       u32 generation, items (rules that did not load)
 *   MEMORY      u32 slot, u32 load, str message: a rule keeps more than its
 *               share of the heap; the worker exits after this reply
 */
#ifndef TH_PROTO_H
#define TH_PROTO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum {
  TH_MSG_INIT = 1,
  TH_MSG_RULES,
  TH_MSG_QUARANTINE,
  TH_MSG_BATCH,
  TH_MSG_LOAD,
  TH_MSG_GATE,
  TH_MSG_BATCH_SETS,
  TH_MSG_PRELOAD,
  TH_MSG_FULL,

  TH_REP_READY = 101,
  TH_REP_BATCH,
  TH_REP_LOADED,
  TH_REP_GATE,
  TH_REP_RULES,
  TH_REP_MEMORY,
};

enum { TH_ROLE_EVAL = 1, TH_ROLE_GATE = 2 };

enum {
  TH_REC_DOCUMENT = 1,  /* a whole file: an S3 object, an array, or NDJSON after all */
  TH_REC_SKIP = 2,      /* killed workers twice with no rule in flight: report, do not evaluate */
  TH_REC_REJECT = 4,    /* never reached a worker whole: bytes are why; report it in order, counted */
  TH_REC_FILTERED = 8,  /* no rule could match it (the prefilter): no bytes; the host counts it */
  TH_REC_FULL = 16,     /* evaluated again: every new_terms candidate with its alert (stateful.lua, KNOWN),
                           every alert built (none unbuilt: FULL) */
};

enum { TH_ITEM_ALERT = 1, TH_ITEM_LOG, TH_ITEM_FAIL, TH_ITEM_QUARANTINED, TH_ITEM_STATE };

/* In a prefilter clause's literal count: its literals match in any ASCII case (prefilter.h). */
#define TH_PF_FOLD 0x80000000u

/* A reply to a batch stops growing past this: the rest of the batch is
 * left for another (so the host holds a bounded amount per batch, whatever
 * the rules say). */
#define TH_REPLY_MAX ((size_t)16 << 20)
/* One record's results (every rule's alert, each with the whole event) past
 * this are dropped, and the record reported as skipped. */
#define TH_RECORD_REPLY_MAX ((size_t)128 << 20)
/* The largest reply the host accepts: a worker that says more is broken. */
#define TH_REPLY_FRAME_MAX (TH_REPLY_MAX + TH_RECORD_REPLY_MAX + ((size_t)1 << 20))

/* The largest frame either side accepts. */
#define TH_FRAME_MAX ((uint64_t)2 << 30)
#define TH_FRAME_HEADER 16

/* The status page. The worker writes, the host reads, through atomics under
 * a seqlock: seq is odd while a step's fields change, and even once they
 * are made, so the host never sees a step half made. The host's watchdog
 * sees a call that has run too long (seq unchanged and rule >= 0 for longer
 * than --max-time) and who to blame if the worker dies. */
typedef struct th_status {
  _Atomic uint64_t seq;      /* bumped twice whenever a step starts: a record, a rule call, a gate test */
  _Atomic uint64_t batch;    /* id of the batch being evaluated, 0 if none */
  _Atomic uint32_t record;   /* index of the record in it */
  _Atomic int32_t rule;      /* slot of the rule in a call; TH_STEP_* when none */
  _Atomic uint32_t load;     /* ... and which load of it (RULES), so a verdict on an old version is not a new one's */
  _Atomic uint64_t heap;     /* bytes the worker's Lua heap holds */
  _Atomic uint64_t batches;  /* batches evaluated since start */
} th_status;

/* A new step (the worker): what is in flight, and where. */
static inline void th_status_step(th_status *s, int32_t rule, uint32_t load, uint64_t batch, uint32_t record) {
  atomic_fetch_add_explicit(&s->seq, 1, memory_order_relaxed);  /* odd: being made */
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&s->rule, rule, memory_order_relaxed);
  atomic_store_explicit(&s->load, load, memory_order_relaxed);
  atomic_store_explicit(&s->batch, batch, memory_order_relaxed);
  atomic_store_explicit(&s->record, record, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);  /* even: made */
}

/* A new step in the same place (the worker reads back its own fields). */
static inline void th_status_rule(th_status *s, int32_t rule, uint32_t load) {
  th_status_step(s, rule, load, atomic_load_explicit(&s->batch, memory_order_relaxed),
                 atomic_load_explicit(&s->record, memory_order_relaxed));
}

enum {
  TH_STEP_IDLE = -1,      /* waiting for a message */
  TH_STEP_PIPELINE = -2,  /* decoding, normalizing, building alerts: no rule in flight */
  TH_STEP_GATE = -3,      /* the gate, loading or testing a rule file (record: its index) */
  TH_STEP_START = -4,     /* starting: loading the pipeline (the host sets it before the start) */
};

/* A growing buffer that writes messages. Out of memory is sticky: check
 * oom once at the end. */
typedef struct th_buf {
  char *p;     /* owned */
  size_t len;
  size_t cap;
  int oom;
} th_buf;

void th_buf_init(th_buf *b);
void th_buf_free(th_buf *b);
/* Start a frame of type (its length is filled in by th_buf_end). */
void th_buf_begin(th_buf *b, uint32_t type);
void th_buf_end(th_buf *b);
void th_buf_u8(th_buf *b, uint8_t v);
void th_buf_u32(th_buf *b, uint32_t v);
void th_buf_u64(th_buf *b, uint64_t v);
void th_buf_str(th_buf *b, const char *s, size_t len);
void th_buf_cstr(th_buf *b, const char *s);  /* NULL is "" */
void th_buf_bytes(th_buf *b, const void *p, size_t len);

/* A reader over one payload. Reading past the end, or a length that does not
 * fit, sets bad and yields zeros: check bad once at the end. */
typedef struct th_rd {
  const char *p;  /* not owned */
  size_t len;
  size_t pos;
  int bad;
} th_rd;

void th_rd_init(th_rd *r, const char *p, size_t len);
uint8_t th_rd_u8(th_rd *r);
uint32_t th_rd_u32(th_rd *r);
uint64_t th_rd_u64(th_rd *r);
/* A string: *len bytes at the returned pointer (into the payload, not
 * terminated), or NULL and bad. */
const char *th_rd_str(th_rd *r, size_t *len);
/* The same, copied and terminated (caller frees); NULL on bad or ENOMEM. */
char *th_rd_strdup(th_rd *r);

/* Does a BATCH reply's payload hold exactly what proto.h says, every rule
 * slot below nslots? 0 if so, -1 if not. The host checks every reply before
 * it reads one for real: a worker is not trusted. */
int th_proto_check_batch(const char *p, size_t len, uint32_t nslots);

/* Parse a frame header: returns 0 and sets type and length, or -1. */
int th_frame_header(const char *h, uint32_t *type, uint64_t *length);

#endif
