/* metrics.c: the host's numbers in Prometheus's text format (see metrics.h).
 *
 * Each family is one row of a table, grouped by what it is about; a new
 * number is one more row. The per-rule table, RULE_ROWS, is where a counter
 * that th_rule gains is exposed. */
#include "metrics.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the format ------------------------------------------------------------------------ */

static void put(th_buf *b, const char *s) { th_buf_bytes(b, s, strlen(s)); }

/* The length of the UTF-8 sequence at s (at most n bytes), 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;  /* the second byte's range */
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c == 0xe0) len = 3, lo = 0xa0;
  else if (c == 0xed) len = 3, hi = 0x9f;  /* no surrogates */
  else if (c >= 0xe1 && c <= 0xef) len = 3;
  else if (c == 0xf0) len = 4, lo = 0x90;
  else if (c == 0xf4) len = 4, hi = 0x8f;  /* nothing past U+10FFFF */
  else if (c >= 0xf1 && c <= 0xf3) len = 4;
  else return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return len;
}

/* s with \ and newline escaped (and " when quoted), bytes that are not UTF-8 as U+FFFD. */
static void escaped(th_buf *b, const char *s, int quoted) {
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  size_t n = strlen((const char *)p);
  size_t run = 0;  /* bytes before i to copy as they are */
  for (size_t i = 0; i < n;) {
    const char *esc = NULL;
    size_t len = utf8_len(p + i, n - i);
    if (p[i] == '\\') esc = "\\\\";
    else if (p[i] == '\n') esc = "\\n";
    else if (p[i] == '"' && quoted) esc = "\\\"";
    else if (len == 0) esc = "\xef\xbf\xbd";
    if (esc == NULL) {
      i += len;
      run += len;
      continue;
    }
    th_buf_bytes(b, p + i - run, run);
    put(b, esc);
    run = 0;
    i++;
  }
  th_buf_bytes(b, p + n - run, run);
}

void th_metrics_label_value(th_buf *b, const char *s) { escaped(b, s, 1); }
void th_metrics_help(th_buf *b, const char *s) { escaped(b, s, 0); }

void th_metrics_number(th_buf *b, double v) {
  char t[40];
  if (isnan(v)) snprintf(t, sizeof t, "NaN");
  else if (isinf(v)) snprintf(t, sizeof t, v > 0 ? "+Inf" : "-Inf");
  else
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(t, sizeof t, "%.*g", prec, v);
      if (strtod(t, NULL) == v) break;
    }
  put(b, t);
}

static void family(th_buf *b, const char *name, const char *type, const char *help) {
  put(b, "# HELP ");
  put(b, name);
  put(b, " ");
  th_metrics_help(b, help);
  put(b, "\n# TYPE ");
  put(b, name);
  put(b, " ");
  put(b, type);
  put(b, "\n");
}

typedef struct label {
  const char *name, *value;
} label;

static void sample(th_buf *b, const char *name, const label *l, int nl, double v) {
  put(b, name);
  for (int i = 0; i < nl; i++) {
    put(b, i ? "," : "{");
    put(b, l[i].name);
    put(b, "=\"");
    th_metrics_label_value(b, l[i].value);
    put(b, "\"");
  }
  put(b, nl ? "} " : " ");
  th_metrics_number(b, v);
  put(b, "\n");
}

/* A family of one sample without labels. */
static void single(th_buf *b, const char *name, const char *type, const char *help, double v) {
  family(b, name, type, help);
  sample(b, name, NULL, 0, v);
}

/* ---- per rule --------------------------------------------------------------------------- */

static double r_seen(const th_rule *r) { return (double)r->seen; }
static double r_alerts(const th_rule *r) { return (double)r->alerts; }
static double r_errors(const th_rule *r) { return (double)r->errors; }
static double r_seconds(const th_rule *r) { return (double)r->time_ns / 1e9; }
static double r_quarantined(const th_rule *r) { return r->quarantined ? 1 : 0; }
static double r_held(const th_rule *r) { return (double)r->held; }
static double r_suppressed(const th_rule *r) { return (double)r->suppressed; }
static double r_duplicates(const th_rule *r) { return (double)r->duplicates; }

typedef struct rule_row {
  const char *name, *type, *help;
  double (*value)(const th_rule *r);
} rule_row;

/* One family per row, one sample per rule running (labels rule_id and rule,
 * its name). A per-rule counter th_rule gains is exposed by one more row. */
static const rule_row RULE_ROWS[] = {
  {"trailhound_rule_events_total", "counter", "Events the rule was run on (those the prefilter and the rule index handed it).",
   r_seen},
  {"trailhound_rule_alerts_total", "counter", "Alerts of the rule written (not held back, suppressed or duplicates).",
   r_alerts},
  {"trailhound_rule_errors_total", "counter",
   "Calls of the rule that failed: an error, a limit (instructions, memory, --max-time).", r_errors},
  {"trailhound_rule_seconds_total", "counter", "Time spent in the rule's calls.", r_seconds},
  {"trailhound_rule_quarantined", "gauge", "1 while the rule is quarantined (it does not run), else 0.",
   r_quarantined},
  {"trailhound_rule_held_back_total", "counter",
   "Alerts held back by the rule's max_signals (more than that many in an interval window).", r_held},
  {"trailhound_rule_suppressed_total", "counter",
   "Matches counted into their group's alert (alert_suppression) instead of written.", r_suppressed},
  {"trailhound_rule_duplicates_total", "counter", "Alerts not written again: their uuid was written already.",
   r_duplicates},
};

typedef struct rule_ctx {
  th_buf *b;
  const rule_row *row;
  unsigned running, quarantined;
} rule_ctx;

static void rule_sample(const th_rule *r, void *ud) {
  rule_ctx *x = ud;
  label l[] = {{"rule_id", r->id}, {"rule", r->name}};
  sample(x->b, x->row->name, l, 2, x->row->value(r));
}

static void rule_count(const th_rule *r, void *ud) {
  rule_ctx *x = ud;
  if (r->quarantined) x->quarantined++;
  else x->running++;
}

static void rules(th_buf *b, const th_rules *r) {
  rule_ctx x = {b, NULL, 0, 0};
  th_rules_each(r, rule_count, &x);
  family(b, "trailhound_rules", "gauge", "Rules loaded, by state.");
  sample(b, "trailhound_rules", (label[]){{"state", "running"}}, 1, x.running);
  sample(b, "trailhound_rules", (label[]){{"state", "quarantined"}}, 1, x.quarantined);
  for (size_t i = 0; i < sizeof RULE_ROWS / sizeof RULE_ROWS[0]; i++) {
    x.row = &RULE_ROWS[i];
    family(b, x.row->name, x.row->type, x.row->help);
    th_rules_each(r, rule_sample, &x);
  }
}

/* What each new_terms or threshold rule keeps in the store (state.h). */
typedef struct state_ctx {
  th_buf *b;
  const th_state *s;
  int which;  /* 0 entries, 1 bytes, 2 evicted */
} state_ctx;

static void state_sample(const th_rule *r, void *ud) {
  state_ctx *x = ud;
  th_state_part_info pi;
  if (!th_state_rule(x->s, r->id, &pi)) return;
  static const char *const names[] = {"trailhound_rule_state_entries", "trailhound_rule_state_bytes",
                                      "trailhound_rule_state_evicted_total"};
  label l[] = {{"rule_id", r->id}, {"rule", r->name}};
  sample(x->b, names[x->which], l, 2, (double)(x->which == 0 ? pi.entries : x->which == 1 ? pi.bytes : pi.evicted));
}

static void rule_state(th_buf *b, const th_rules *r, const th_state *s) {
  if (s == NULL) return;
  state_ctx x = {b, s, 0};
  family(b, "trailhound_rule_state_entries", "gauge",
         "New terms or threshold groups the rule keeps (new_terms and threshold rules).");
  th_rules_each(r, state_sample, &x);
  x.which = 1;
  family(b, "trailhound_rule_state_bytes", "gauge", "Memory the rule's state holds in the host.");
  th_rules_each(r, state_sample, &x);
  x.which = 2;
  family(b, "trailhound_rule_state_evicted_total", "counter",
         "Entries of the rule's state dropped, least recently used first, with the store at --max-state.");
  th_rules_each(r, state_sample, &x);
}

/* ---- records and batches ----------------------------------------------------------------- */

static void records(th_buf *b, const th_metrics_src *s) {
  th_dispatch_totals t;
  th_dispatch_totals_get(s->d, &t);
  single(b, "trailhound_records_total", "counter",
         "Records read: events evaluated, and records the prefilter skipped.", (double)t.records);
  single(b, "trailhound_prefiltered_total", "counter",
         "Records skipped undecoded: no rule could match them (they lack what the rules require).",
         (double)t.prefiltered);
  single(b, "trailhound_malformed_total", "counter",
         "Records reported and skipped: not JSON, not an object, past --max-line, nested too deep.",
         (double)t.malformed);
  single(b, "trailhound_normalize_failures_total", "counter", "Events the normalizer failed on.",
         (double)t.failed);
  single(b, "trailhound_alerts_total", "counter", "Alerts made by every rule, queued for the outputs.",
         (double)th_outputs_next(s->out));
  single(b, "trailhound_batches_total", "counter", "Batches of records evaluated and written.",
         (double)t.batches);
  single(b, "trailhound_batches_resent_total", "counter",
         "Batches sent again to another worker after theirs was lost.", (double)t.resent);
  family(b, "trailhound_batches", "gauge", "Batches now waiting for a worker, and with workers.");
  sample(b, "trailhound_batches", (label[]){{"state", "waiting"}}, 1, (double)t.queued);
  sample(b, "trailhound_batches", (label[]){{"state", "evaluating"}}, 1, (double)t.in_flight);
  single(b, "trailhound_batch_bytes", "gauge", "Bytes of records and results held in batches now.",
         (double)t.bytes);
  single(b, "trailhound_batch_limit_bytes", "gauge", "Bytes held in batches above which reading waits.",
         (double)t.limit);
}

/* ---- files (run) ----------------------------------------------------------------------- */

static uint64_t lag_of(const th_file_stat *f) { return f->size > f->offset ? f->size - f->offset : 0; }

static int by_lag(const void *a, const void *b) {
  uint64_t la = lag_of(a), lb = lag_of(b);
  if (la != lb) return la > lb ? -1 : 1;
  return strcmp(((const th_file_stat *)a)->path, ((const th_file_stat *)b)->path);
}

static void files(th_buf *b, const th_metrics_src *s) {
  uint64_t total = 0;
  for (size_t i = 0; i < s->nfiles; i++) total += lag_of(&s->files[i]);
  single(b, "trailhound_files", "gauge", "Files followed now (a rotated or deleted one until it is read to its end).",
         (double)s->nfiles);
  single(b, "trailhound_lag_bytes", "gauge", "Bytes of the files followed not yet processed: the sum of "
         "trailhound_file_lag_bytes over every file, listed or not.", (double)total);
  size_t n = s->nfiles;
  if (n > TH_METRICS_MAX_FILES) {  /* the files furthest behind */
    qsort(s->files, n, sizeof *s->files, by_lag);
    n = TH_METRICS_MAX_FILES;
  }
  family(b, "trailhound_file_lag_bytes", "gauge",
         "Bytes of the file past its committed offset: records not yet read, evaluated, or delivered by every "
         "output (its size minus the offset the state file saves).");
  for (size_t i = 0; i < n; i++)
    sample(b, "trailhound_file_lag_bytes", (label[]){{"path", s->files[i].path}}, 1, (double)lag_of(&s->files[i]));
  family(b, "trailhound_file_offset_bytes", "gauge",
         "The file's committed offset: every record before it is evaluated and its alerts delivered.");
  for (size_t i = 0; i < n; i++)
    sample(b, "trailhound_file_offset_bytes", (label[]){{"path", s->files[i].path}}, 1,
           (double)s->files[i].offset);
}

/* ---- outputs -------------------------------------------------------------------------- */

static double o_queued(const th_outputs *o, const th_sink *k) { return (double)(th_outputs_next(o) - k->acked); }
static double o_delivered(const th_outputs *o, const th_sink *k) { (void)o; return (double)k->acked; }
static double o_retried(const th_outputs *o, const th_sink *k) { (void)o; return (double)k->retried; }
static double o_failures(const th_outputs *o, const th_sink *k) { (void)o; return (double)k->failures; }
static double o_up(const th_outputs *o, const th_sink *k) { (void)o; return k->down ? 0 : 1; }
static double o_oldest(const th_outputs *o, const th_sink *k) {
  const th_alert *a = th_outputs_get(o, k->acked);
  uint64_t now = uv_now(o->loop);
  return a && now > a->at_ms ? (double)(now - a->at_ms) / 1000.0 : 0;
}

typedef struct output_row {
  const char *name, *type, *help;
  double (*value)(const th_outputs *o, const th_sink *k);
} output_row;

/* Per output (label output: its name, credentials left out). */
static const output_row OUTPUT_ROWS[] = {
  {"trailhound_output_queued", "gauge", "Alerts the output has not delivered yet.", o_queued},
  {"trailhound_output_delivered_total", "counter",
   "Alerts the output delivered: written and flushed, answered 2xx, every bulk item accepted.", o_delivered},
  {"trailhound_output_retried_total", "counter", "Alerts sent again after a failure.", o_retried},
  {"trailhound_output_failures_total", "counter", "Attempts that failed.", o_failures},
  {"trailhound_output_up", "gauge", "0 while the output is failing (retried with backoff), else 1.", o_up},
  {"trailhound_output_oldest_unacked_seconds", "gauge",
   "Age of the oldest alert the output has not delivered; 0 when it has them all.", o_oldest},
};

static void outputs(th_buf *b, const th_outputs *o) {
  for (size_t i = 0; i < sizeof OUTPUT_ROWS / sizeof OUTPUT_ROWS[0]; i++) {
    family(b, OUTPUT_ROWS[i].name, OUTPUT_ROWS[i].type, OUTPUT_ROWS[i].help);
    for (size_t k = 0; k < o->n; k++)
      sample(b, OUTPUT_ROWS[i].name, (label[]){{"output", o->sinks[k]->name}}, 1,
             OUTPUT_ROWS[i].value(o, o->sinks[k]));
  }
  single(b, "trailhound_output_buffer_bytes", "gauge", "Bytes of alerts held until every output has them.",
         (double)o->bytes);
  single(b, "trailhound_output_buffer_limit_bytes", "gauge", "--output-buffer: held alerts above which reading "
         "waits.", (double)o->limit);
}

/* ---- workers -------------------------------------------------------------------------- */

static double w_restarts(const th_worker *w) { return w->starts > 0 ? w->starts - 1 : 0; }
static double w_batches(const th_worker *w) { return (double)w->batches; }
static double w_heap(const th_worker *w) { return (double)w->last_heap; }

typedef struct worker_row {
  const char *name, *type, *help;
  double (*value)(const th_worker *w);
} worker_row;

/* Per worker slot (labels worker: its index, role: evaluate or gate). */
static const worker_row WORKER_ROWS[] = {
  {"trailhound_worker_restarts_total", "counter",
   "Times the worker was started again: it died, was killed by the watchdog, or kept too much heap.",
   w_restarts},
  {"trailhound_worker_batches_total", "counter", "Batches the worker answered.", w_batches},
  {"trailhound_worker_heap_bytes", "gauge", "The worker's Lua heap, as it last said.", w_heap},
};

static void workers(th_buf *b, const th_metrics_src *s) {
  const th_pool *p = s->pool;
  unsigned running = 0;
  for (unsigned i = 0; i < p->n; i++) running += p->w[i].alive && p->w[i].ready;
  single(b, "trailhound_workers", "gauge", "Evaluation workers running and ready.", running);
  single(b, "trailhound_workers_configured", "gauge", "Evaluation workers asked for (--workers).", p->n);
  for (size_t i = 0; i < sizeof WORKER_ROWS / sizeof WORKER_ROWS[0]; i++) {
    family(b, WORKER_ROWS[i].name, WORKER_ROWS[i].type, WORKER_ROWS[i].help);
    for (unsigned k = 0; k <= p->n; k++) {  /* the gate is last */
      char index[16];
      snprintf(index, sizeof index, "%d", p->w[k].index);
      label l[] = {{"worker", index}, {"role", p->w[k].role == TH_ROLE_GATE ? "gate" : "evaluate"}};
      sample(b, WORKER_ROWS[i].name, l, 2, WORKER_ROWS[i].value(&p->w[k]));
    }
  }
}

/* ---- the process ---------------------------------------------------------------------- */

/* Resident memory from /proc/self/statm (pages), -1 when it cannot be read. */
static double resident_bytes(void) {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char t[128];
  ssize_t n = read(fd, t, sizeof t - 1);
  close(fd);
  if (n <= 0) return -1;
  t[n] = '\0';
  unsigned long long size, rss;
  if (sscanf(t, "%llu %llu", &size, &rss) != 2) return -1;
  return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

static void process(th_buf *b, const th_metrics_src *s) {
  family(b, "trailhound_build_info", "gauge", "Always 1: trailhound's version, and whether it runs or replays.");
  sample(b, "trailhound_build_info", (label[]){{"version", s->version}, {"command", s->run ? "run" : "replay"}},
         2, 1);
  single(b, "process_start_time_seconds", "gauge", "Start time of the process since the epoch, in seconds.",
         s->started);
  double rss = resident_bytes();
  if (rss >= 0)
    single(b, "process_resident_memory_bytes", "gauge", "Resident memory of the host process (not its workers).",
           rss);
}

void th_metrics_render(th_buf *b, const th_metrics_src *s) {
  process(b, s);
  records(b, s);
  rules(b, s->rules);
  rule_state(b, s->rules, s->state);
  if (s->run) files(b, s);
  outputs(b, s->out);
  workers(b, s);
}
