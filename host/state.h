/* state.h: what stateful rules remember between events (DESIGN.md, "Limits,
 * suppression and state"): Elastic's new_terms and threshold rule types, EQL
 * sequences, and the store under them.
 *
 * The host decides; workers only evaluate a rule's query on one event and
 * send a candidate (proto.h, TH_ITEM_STATE): the rule's state key, the key
 * of the event (its new-terms combination, its threshold group), its time and
 * the alert it would make. The store is plain C, no loop, no outputs, so that
 * `trailhound test` (statelua.c) decides multi-event tests with this code.
 *
 * The store holds entries: (partition, key) -> the newest event time, an
 * expiry time and a payload of the rule type's own. A partition is one rule in
 * one version of what decides (its query and type parameters, hashed by the
 * worker: the fingerprint): a rule reloaded unchanged keeps its entries; one
 * whose fingerprint changes starts empty, its old entries dropped.
 *
 * Semantics, in event time (the limiter's clock: the newest event time seen):
 *   new_terms  an event alerts when its combination was not seen in the
 *              history window before its time (window_s): Elastic's
 *              history_window_start. Seen again keeps it known.
 *   threshold  an event counts for its group; the group alerts once `value`
 *              of its events (and, with cardinality, that many distinct values)
 *              fall within window_s (the rule's `from`, now-6m: 6 minutes) of
 *              each other, then counts afresh from the next event after.
 *              An event counts once (its uuid): events read again after a
 *              crash are not counted twice.
 *
 * Bounds: the store keeps at most max_bytes (entries and payloads); past it
 * the least recently used entry goes first, counted per partition
 * (th_state_totals, evicted). Entries whose time has passed (new terms beyond
 * their history, groups beyond their window) are dropped by th_state_sweep.
 * A threshold group keeps at most max(value, cardinality) events and values:
 * TH_STATE_VALUE_MAX bounds both (the loader refuses more).
 *
 *   sequence   EQL's `sequence [by k] [with maxspan=T] [a] [b] ... [until [u]]`
 *              (sequence.c): an entry per join key (the `by` values); its
 *              payload, for each step but the last, the latest partial sequence
 *              that reached it (its events: time, identity, the alert each would
 *              make). An event of step k advances the partial at k-1 when it is
 *              later (event time, then the order candidates come in), not one of
 *              its events, and within maxspan of its first; at the last step the
 *              sequence completes (verdict.done) and its partial goes. An event
 *              of `until` drops the key's partials. The worker evaluates the step
 *              predicates and sends one candidate per step an event matches, the
 *              highest step first (so an event never advances a partial it made).
 *
 * Saving follows the limiter's acknowledged cut: an entry changed by an alert
 * that the outputs have not acknowledged is saved as it was before that
 * alert (or not at all if the alert made it), so after a crash the event is
 * read again and alerts again, rather than being known and lost.
 */
#ifndef TH_STATE_H
#define TH_STATE_H

#include <stddef.h>
#include <stdint.h>

enum { TH_STATE_NEW_TERMS = 1, TH_STATE_THRESHOLD = 2, TH_STATE_SEQUENCE = 3 };

#define TH_STATE_VALUE_MAX 10000       /* threshold value and cardinality at most */
#define TH_STATE_BYTES ((size_t)256 << 20)  /* the default cap */

typedef struct th_sentry {
  struct th_sentry *hnext;     /* hash chain */
  struct th_sentry *prev, *next;  /* least recently used first */
  uint64_t key;                /* hash of the key text, seeded with the partition's */
  uint32_t part;               /* index into the partitions */
  int64_t t;                   /* newest event time that touched it, ms */
  int64_t until;               /* it may be dropped once the clock passes this */
  uint64_t pos;                /* output position of its last alert; 0: acknowledged */
  unsigned char *data;         /* the type's payload (owned), len bytes */
  size_t len;
  int had;                     /* ... before that alert: it existed (snap holds it) */
  int64_t snap_t, snap_until;
  unsigned char *snap;         /* owned */
  size_t snap_len;
} th_sentry;

typedef struct th_state th_state;

/* max_bytes: 0 for TH_STATE_BYTES. NULL: out of memory. */
th_state *th_state_new(size_t max_bytes);
void th_state_free(th_state *s);

/* One candidate, as a worker sends it. */
typedef struct th_state_event {
  const char *rule_id;        /* terminated */
  uint64_t fp;                /* the rule version's fingerprint */
  int type;                   /* TH_STATE_* */
  int64_t t;                  /* event time, ms */
  const char *key;            /* the combination or the group: JSON text */
  size_t klen;
  uint64_t ev;                /* the event's identity (its alert uuid, hashed) */
  const char *distinct;       /* threshold: the cardinality field's value (JSON); NULL: none */
  size_t dlen;
  uint32_t window_s;          /* history (new_terms), lookback (threshold) */
  uint32_t value, cardinality;  /* threshold; cardinality 0: none */
  int touch;                  /* new_terms: a combination the worker knows the host knows (it sent no
                               * alert): its time is taken if the entry is there and in its window,
                               * else it is ignored; never an alert */
  uint32_t step, nsteps;      /* sequence: the step the event matches (from 0; nsteps: `until`), steps */
  int64_t span_ms;            /* sequence: maxspan, ms; 0: none */
  const char *line;           /* sequence: the alert the event would make (a building block), kept */
  size_t llen;
  const char *anc;            /* sequence: the event's ancestor (JSON), kept */
  size_t alen;
} th_state_event;

/* An event of a partial or completed sequence (th_sequence_next). */
typedef struct th_seq_event {
  int64_t t;
  uint64_t ev;
  const char *line, *anc;
  uint32_t llen, alen;
} th_seq_event;

/* What the store says of a candidate. */
typedef struct th_state_verdict {
  int alert;                  /* 1: this candidate's alert is written */
  int cleared;                /* the rule's fingerprint changed: what it kept is dropped */
  uint64_t cleared_entries;   /* ... this many entries */
  uint64_t count;             /* threshold: events in the window, distinct values */
  uint64_t distinct;
  int64_t from;               /* threshold: the window's start, ms */
  unsigned char *done;        /* sequence: the completed sequence's events (th_sequence_next), the
                               * caller frees; NULL: none */
  size_t done_len;
} th_state_verdict;

/* Decide on one candidate. Returns 0, or -1 out of memory (nothing changed). */
int th_state_decide(th_state *s, const th_state_event *e, th_state_verdict *v);

/* A new_terms touch (e->touch) that would not be one: the store no longer
 * knows the combination as in its window (evicted at the cap, its time
 * passed, its rule's state cleared), so the candidate with its alert would
 * be news. Changes nothing; the clock as if e, and every event up to late,
 * had been decided (late: the newest time among them). */
int th_state_touch_stale(const th_state *s, const th_state_event *e, int64_t late);

/* The last decided alert was queued at output position pos (th_outputs_next
 * after it): it is saved once acked reaches pos. */
void th_state_written(th_state *s, uint64_t pos);

/* Drop what time has passed, and the partitions a newer version replaced;
 * alerts up to acked are acknowledged (UINT64_MAX: all, with no state file). */
void th_state_sweep(th_state *s, uint64_t acked);

/* Save to path (atomically: path.tmp, fsync, rename), the cut at acked.
 * Returns 0 or -errno. */
int th_state_save(th_state *s, const char *path, uint64_t acked);

/* Read what a save kept. Returns 0 (also: no file), -errno, or the line
 * that does not parse (what came before it stays). */
int th_state_load(th_state *s, const char *path);

/* Per partition, for statistics: rule id, type, entries, bytes, evicted. */
typedef struct th_state_part_info {
  const char *rule_id;
  int type;
  uint64_t entries, bytes, evicted;
} th_state_part_info;
/* The i-th live partition; 0 past the end. */
int th_state_part(const th_state *s, size_t i, th_state_part_info *out);
/* The live partition of a rule; 0 if it has none. */
int th_state_rule(const th_state *s, const char *rule_id, th_state_part_info *out);

typedef struct th_state_totals {
  uint64_t entries, bytes, evicted, expired, cleared;
} th_state_counts;
void th_state_totals(const th_state *s, th_state_counts *t);

/* ---- for the type files (newterms.c, threshold.c, sequence.c) ---- */

/* The partition of (rule_id, fp, type), made if need be; a different
 * fingerprint for the same rule id supersedes the one before (its entries go
 * at the next sweep). *cleared: the entries superseded.
 * Returns the index, or -1 out of memory. */
int th_state_partition(th_state *s, const char *rule_id, uint64_t fp, int type, uint64_t *cleared);

/* The entry of key in part; NULL if none. It becomes the most recently used. */
th_sentry *th_state_find(th_state *s, uint32_t part, const char *key, size_t klen);

/* A new entry (none may exist); NULL out of memory. */
th_sentry *th_state_add(th_state *s, uint32_t part, const char *key, size_t klen, int64_t t);

/* Before an alert changes x: keep what it was (once until acknowledged). */
int th_state_keep(th_state *s, th_sentry *x, int existed);

/* x's payload replaced by data (owned by the store from now on), for the
 * byte count and the cap. */
void th_state_set(th_state *s, th_sentry *x, unsigned char *data, size_t len);

/* The store's clock: the newest event time it was given. */
int64_t th_state_clock(const th_state *s);

/* The decisions of the types. */
int th_newterms_decide(th_state *s, uint32_t part, const th_state_event *e, th_state_verdict *v);
/* Is e late: more than its history window older than the newest event seen? */
int th_newterms_late(const th_state *s, const th_state_event *e);
int th_threshold_decide(th_state *s, uint32_t part, const th_state_event *e, th_state_verdict *v);
/* A threshold payload that a file gave: usable? */
int th_threshold_valid(const unsigned char *p, size_t len);
int th_sequence_decide(th_state *s, uint32_t part, const th_state_event *e, th_state_verdict *v);
int th_sequence_valid(const unsigned char *p, size_t len);
/* The events of a completed sequence (verdict.done) one by one: *off starts at
 * 0; returns 1 and the next in *out (its texts point into p), 0 at the end. */
int th_sequence_next(const unsigned char *p, size_t len, size_t *off, th_seq_event *out);

#endif
