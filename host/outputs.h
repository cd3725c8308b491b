/* outputs.h: where alerts go, and when they count as delivered.
 *
 * Alerts wait in one queue, in the order they were written, numbered from 0
 * (their sequence number). Each output (a sink: stdout, a file, a program,
 * an HTTP endpoint, Elasticsearch, syslog) takes them from the queue in that
 * order at its own pace and says how far it has delivered: written and
 * flushed, an HTTP 2xx, every bulk item accepted. An alert leaves the queue
 * once every output has it; the queue's owner commits a file's offset only
 * once th_outputs_acked has passed the alerts of the records before it.
 *
 * An output that fails keeps what it has not delivered and tries again,
 * backing off from 1 s to 60 s; the failure is said once, with its cause,
 * and again only when the cause changes, and once more when it delivers
 * again. An output that is down holds the queue, so commits wait; once the
 * queue holds more than its limit, th_outputs_full says so and the owner
 * stops adding (reading waits). Nothing is ever dropped. Only stdout can
 * fail for good (its reader is gone): then th_outputs_fatal says why.
 *
 * Lifecycle: th_outputs_init (parses the sinks), th_outputs_start (the loop
 * runs), th_outputs_push and th_outputs_kick as alerts come,
 * th_outputs_drain at the end, th_outputs_close, th_outputs_free.
 */
#ifndef TH_OUTPUTS_H
#define TH_OUTPUTS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct th_outputs th_outputs;
typedef struct th_sink th_sink;
struct th_curl;

/* An output's options beside its spec (the configuration file's). Strings
 * are not owned; they must live as long as the outputs. */
typedef struct th_sink_opts {
  const char *const *headers;  /* HTTP: "Name: value" lines */
  int nheaders;
  const char *user, *password; /* HTTP: basic authentication */
  const char *bearer;          /* HTTP: Authorization: Bearer TOKEN */
  const char *ca_file;         /* HTTPS: the CA bundle to trust */
  int insecure;                /* HTTPS: do not verify the server (tests only) */
  unsigned timeout_ms;         /* HTTP: a whole request (0: 30 s) */
  unsigned connect_timeout_ms; /* HTTP, syslog over TCP: a connection (0: 10 s) */
  int facility;                /* syslog: 1-23 (0: local0, 16) */
  const char *app_name;        /* syslog: APP-NAME (NULL: "trailhound") */
} th_sink_opts;

/* One output as configured. */
typedef struct th_output_conf {
  const char *spec;            /* "file:/var/log/alerts.ndjson" */
  th_sink_opts opts;
} th_output_conf;

typedef struct th_alert {
  char *text;              /* one JSON document, without a newline; owned */
  size_t len;
  char uuid[40];           /* kibana.alert.uuid, "" when unknown */
  uint8_t severity;        /* syslog's: 2 critical, 3 high, 4 medium, 5 low */
  uint8_t update;          /* the same uuid written again with more (a suppression count): replaces it */
  uint64_t at_ms;          /* loop time it was queued */
} th_alert;

/* What one output offers. Every call is on the loop's thread. */
typedef struct th_sink_ops {
  int (*open)(th_sink *s, char *err, size_t errlen);  /* at start; -1 and err: cannot be used */
  void (*kick)(th_sink *s);    /* alerts past s->sent wait; also after a retry's delay */
  void (*reopen)(th_sink *s);  /* SIGHUP: a file output opens its path again (logrotate) */
  void (*close)(th_sink *s);   /* stop; handles closed before the loop ends */
  void (*free)(th_sink *s);
} th_sink_ops;

struct th_sink {
  const th_sink_ops *ops;
  th_outputs *set;
  char *spec;              /* as given: "file:/var/log/alerts.ndjson"; owned */
  char *name;              /* for messages: the spec without credentials; owned */
  uint64_t sent;           /* alerts handed to the transport: those in [acked, sent) are in flight */
  uint64_t acked;          /* alerts delivered */
  uint64_t retried;        /* alerts sent again after a failure */
  uint64_t failures;       /* failed attempts */
  int down;                /* failing now */
  char why[256];           /* the cause last said */
  th_sink_opts opts;       /* defaults filled in */
  unsigned backoff_ms;     /* the next retry's delay */
  uint64_t down_since;     /* loop ms */
  uv_timer_t retry;
  int closing;
  void *impl;              /* the sink's own state */
};

struct th_outputs {
  uv_loop_t *loop;
  th_alert *ring;          /* the queue: ring[(head + i) % cap] is alert base + i */
  size_t cap, head, count;
  uint64_t base, next;     /* sequence numbers: the oldest held, the next pushed */
  uint64_t bytes, limit;   /* held; th_outputs_full above limit */
  th_sink **sinks;
  size_t n;
  uint64_t acked;          /* the least of the sinks' */
  char fatal[256];         /* "" while every output can go on */
  void (*on_progress)(void *ud);  /* acked grew, room was made, or fatal was set */
  void *ud;
  struct th_curl *curl;    /* HTTP outputs' requests, made when the first needs it */
  int curl_failed;
  int draining;
  uv_timer_t drain_timer;
  void (*drained)(int all, void *ud);
  void *drained_ud;
};

/* confs: the outputs (--output, the configuration); none: stdout. limit:
 * bytes the queue may hold before th_outputs_full. Returns 0, or -1 with a
 * message in err (a usage error: an unknown kind, a bad address). */
int th_outputs_init(th_outputs *o, uv_loop_t *loop, const th_output_conf *confs, int n, uint64_t limit,
                    char *err, size_t errlen);

/* Open the sinks (connections are made in the background). on_progress(ud)
 * as above. Returns -1 with err when an output cannot be used at all. */
int th_outputs_start(th_outputs *o, void (*on_progress)(void *ud), void *ud, char *err, size_t errlen);

/* Queue one alert (copied). Returns 0, or -1 out of memory. Outputs start
 * on it at the next th_outputs_kick. */
int th_outputs_push(th_outputs *o, const char *text, size_t len, const char *uuid, size_t uuid_len,
                    uint8_t severity);

/* Queue an alert that replaces one written before with the same uuid (the
 * Elasticsearch output indexes it over the first; the others write it as
 * one more line). */
int th_outputs_push_update(th_outputs *o, const char *text, size_t len, const char *uuid, size_t uuid_len,
                           uint8_t severity);

/* Let the outputs take what was pushed. */
void th_outputs_kick(th_outputs *o);

static inline uint64_t th_outputs_next(const th_outputs *o) { return o->next; }
static inline uint64_t th_outputs_acked(const th_outputs *o) { return o->acked; }
static inline const char *th_outputs_fatal(const th_outputs *o) { return o->fatal[0] ? o->fatal : NULL; }
static inline int th_outputs_full(const th_outputs *o) { return o->bytes > o->limit; }

/* SIGHUP: outputs that write to a path open it again. */
void th_outputs_reopen(th_outputs *o);

/* Wait until every queued alert is delivered (all = 1), an output fails
 * for good, or timeout_ms pass (0: no limit; all = 0), then drained(all, ud). */
void th_outputs_drain(th_outputs *o, uint64_t timeout_ms, void (*drained)(int all, void *ud), void *ud);

/* Stop waiting: drained(0) now (a second Ctrl-C). */
void th_outputs_abandon(th_outputs *o);

/* Statistics, one line per output, to f. */
void th_outputs_print(const th_outputs *o, void *f);

void th_outputs_close(th_outputs *o);
void th_outputs_free(th_outputs *o);

/* ---- for the sinks ------------------------------------------------------------------ */

/* The loop's libcurl (curlloop.h), made on first use; NULL if it cannot be. */
struct th_curl *th_outputs_curl(th_outputs *o);

/* Alert seq, which must be held (base <= seq < next). */
const th_alert *th_outputs_get(const th_outputs *o, uint64_t seq);

/* Everything before seq is delivered. */
void th_sink_acked(th_sink *s, uint64_t seq);

/* An attempt failed: said (once per cause), counted; what was in flight is
 * sent again after the backoff (kick is called then). */
void th_sink_failed(th_sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What was in flight was not delivered: it is sent again (and counted). */
void th_sink_rewind(th_sink *s);

/* An attempt succeeded: the backoff starts over; said if it had failed. */
void th_sink_ok(th_sink *s);

/* stdout cannot go on: th_outputs_fatal, and the owner stops. */
void th_sink_fatal(th_sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Where each alert a sink has handed on ends, in the sink's own count of
 * bytes: a queue, so that knowing how far the bytes are taken (written, read
 * by a program) says which alerts are through. */
typedef struct th_mark {
  uint64_t seq;            /* alerts before seq ... */
  uint64_t end;            /* ... end at this byte */
} th_mark;

typedef struct th_marks {
  th_mark *m;
  size_t head, count, cap;
} th_marks;

/* Add a mark at the end. Returns 0, or -1 out of memory. */
int th_marks_push(th_marks *q, uint64_t seq, uint64_t end);

/* Take the marks whose end is at most upto; returns the last one's seq, or
 * 0 when none was taken, and its end in *end (if not NULL). */
uint64_t th_marks_take(th_marks *q, uint64_t upto, uint64_t *end);

/* The i-th mark from the oldest. */
static inline th_mark *th_marks_at(th_marks *q, size_t i) { return &q->m[(q->head + i) % q->cap]; }

void th_marks_free(th_marks *q);

/* The sinks there are (each in its own file). */
extern const th_sink_ops th_sink_stdout_ops, th_sink_file_ops, th_sink_exec_ops, th_sink_http_ops, th_sink_es_ops,
    th_sink_syslog_ops;

#endif
