/* dispatch.h: records from the readers to the evaluators, results back in order.
 *
 * The readers (the tailer in run, the file reader in replay) cut files into
 * records and add them to streams. A stream is an ordered sequence of
 * records: one per followed file in run, one for all files in replay.
 * Records gather in the stream's open batch; th_stream_flush hands the batch
 * over (a reader flushes at the end of each read, so a quiet file's records
 * are never held back). Batches of a stream may be evaluated in any order, by
 * any worker, but their results (alerts, messages) are written in the order
 * the records were added, and the stream's committed position moves past a
 * batch only once its alerts have been written and flushed: that position is
 * what checkpoints save, so a restart never skips an event whose alerts were
 * lost.
 *
 * Readers must stop reading while th_dispatch_busy is true (bounded memory:
 * nothing is ever dropped instead), and are called back through on_room
 * when there is room again.
 *
 * Ownership: streams are allocated by th_stream_open and belong to the
 * dispatcher; the reader lets go of one with th_stream_close and must not
 * touch it afterwards (it is freed once its last batch is written).
 */
#ifndef TH_DISPATCH_H
#define TH_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

/* The bytes just before a committed offset that a restart checks, at most. */
#define TH_BACK_MAX 4096

typedef struct th_dispatch th_dispatch;

/* Where a stream's records are written up to. */
typedef struct th_commit {
  uint64_t offset;     /* after the last record whose alerts are written */
  uint32_t back_len;   /* the last back_len bytes before offset (that record's, newline */
  uint64_t back_hash;  /* included, at most TH_BACK_MAX) hashed with th_fnv1a; 0 bytes: unknown */
  int done;            /* a whole document was processed: never read it again */
} th_commit;

typedef struct th_stream th_stream;

/* A new stream whose records come from path (copied; it names the file in
 * messages and alerts), committed at offset to begin with. NULL when out of
 * memory. */
th_stream *th_stream_open(th_dispatch *d, const char *path, uint64_t offset);

/* The file is now known by another name (renamed, or replay's next file).
 * Records added from now on carry it. Returns 0 or -ENOMEM. */
int th_stream_rename(th_stream *s, const char *path);

/* One record: the bytes [offset, end) of the file, as the framer hands them
 * over (th_line_cb: line holds end - offset bytes, len of them are the
 * record). line NULL: the record at offset was longer than max_line bytes
 * and was skipped (reported in order, counted as malformed). */
void th_stream_line(th_stream *s, const char *line, size_t len, uint64_t offset, uint64_t end,
                    size_t max_line);

/* A whole document (a CloudTrail S3 object, an array of records) read at once,
 * len bytes of content; end is the file offset after it (its size on disk,
 * compressed or not). Once written, the stream is committed as done. */
void th_stream_document(th_stream *s, const char *buf, size_t len, uint64_t end);

/* The whole file has been handed over (a document read at once that held
 * NDJSON lines): once they are written, the stream is committed at end, done. */
void th_stream_done(th_stream *s, uint64_t end);

/* A record that could not be handed over, reported in order with the file's
 * name and offset and counted as malformed. reason is a short phrase. */
void th_stream_reject(th_stream *s, uint64_t offset, const char *reason);

/* Hand over the open batch now. */
void th_stream_flush(th_stream *s);

/* The file was truncated or rewritten: records added from now on start over
 * at offset. Batches added before still have their alerts written, but no
 * longer move the committed position, which becomes offset. */
void th_stream_reset(th_stream *s, uint64_t offset);

/* What checkpoints save. */
const th_commit *th_stream_committed(const th_stream *s);

/* Records added and not yet written (0: everything read is committed). */
size_t th_stream_pending(const th_stream *s);

/* The reader lets go (the file is forgotten); what is pending is still written. */
void th_stream_close(th_stream *s);

/* Should readers stop reading for now? */
int th_dispatch_busy(const th_dispatch *d);

/* A followed file, for the statistics: where it is read to and its size. */
typedef struct th_file_stat {
  const char *path;       /* not owned */
  uint64_t offset;        /* committed: every record before it is processed */
  uint64_t size;          /* now */
} th_file_stat;

/* ---- the dispatcher itself (main.c) ------------------------------------- */

struct th_pool;
struct th_rules;
struct th_outputs;
struct th_worker;
struct th_lost;

typedef struct th_dispatch_opts {
  struct th_pool *pool;       /* the workers; not owned */
  struct th_rules *rules;     /* the rule set and its statistics; not owned */
  struct th_outputs *out;     /* where alerts go; not owned */
  struct th_limiter *limiter; /* duplicates, suppression, max_signals on the way; not owned */
  struct th_stateful *stateful; /* stateful rules' candidates, before the limiter; not owned */
  void (*on_room)(void *ud);  /* th_dispatch_busy has turned false: readers may go on */
  void (*on_idle)(void *ud);  /* nothing is pending any more (replay waits for this) */
  void (*on_broken)(const char *why, void *ud);  /* alerts can no longer be written: stop */
  void *ud;
} th_dispatch_opts;

/* Totals over every record evaluated (the summary). */
typedef struct th_dispatch_totals {
  uint64_t records;        /* events evaluated, and records the prefilter skipped */
  uint64_t prefiltered;    /* records skipped undecoded: no rule could match them */
  uint64_t malformed;      /* records reported and skipped */
  uint64_t failed;         /* events the normalizer failed on */
  uint64_t batches;        /* batches written */
  uint64_t resent;         /* batches sent again after their worker was lost */
  uint64_t redone;         /* records evaluated again: a new_terms combination their worker sent
                            * lately, without its alert, was news to the rule state */
  uint64_t reopened;       /* ... an alert their worker sent unbuilt (its window said full)
                            * would be written: the window was let go since */
  uint64_t queued;         /* batches waiting for a worker now */
  uint64_t in_flight;      /* batches with workers now */
  uint64_t bytes;          /* bytes held in batches now */
  uint64_t limit;          /* ... above which readers wait */
  uint64_t output;         /* alerts not yet delivered by every output */
} th_dispatch_totals;

/* Returns NULL when out of memory. */
th_dispatch *th_dispatch_new(const th_dispatch_opts *o);

/* The pool's callbacks (workers.h), which the dispatcher serves. */
void th_dispatch_on_ready(struct th_worker *w, void *ud);
void th_dispatch_on_reply(struct th_worker *w, uint32_t type, const char *p, size_t len, void *ud);
void th_dispatch_on_lost(struct th_worker *w, const struct th_lost *why, void *ud);
unsigned th_dispatch_owed(struct th_worker *w, void *ud);  /* requests w has not answered */

/* The outputs' on_progress (outputs.h): they delivered more, or made room. */
void th_dispatch_on_drain(void *ud);

/* The first rule set is with the workers: batches may go out. */
void th_dispatch_start(th_dispatch *d);

/* Stop: nothing more is sent; batches with workers have grace_ms to come
 * back and be written, then the workers are killed, and done(ud) is called.
 * What was not written stays uncommitted. */
void th_dispatch_stop(th_dispatch *d, unsigned grace_ms, void (*done)(void *ud), void *ud);

/* Batches handed over and not yet written. */
size_t th_dispatch_pending(const th_dispatch *d);

void th_dispatch_totals_get(const th_dispatch *d, th_dispatch_totals *t);

/* Per worker: batches with it now. */
unsigned th_dispatch_worker_load(const th_dispatch *d, const struct th_worker *w);

/* Close the dispatcher's handles (before the loop's last run). */
void th_dispatch_close(th_dispatch *d);

/* After the loop: frees every stream and batch left, so readers must have
 * let go of theirs before (th_stream_close). */
void th_dispatch_free(th_dispatch *d);

#endif
