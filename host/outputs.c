/* outputs.c: the alert queue and what every output shares: acknowledgement,
 * failure, backoff, draining (see outputs.h). The sinks are in sink_*.c. */
#include "outputs.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curlloop.h"
#include "log.h"

enum { BACKOFF_FIRST_MS = 1000, BACKOFF_MAX_MS = 60000 };

/* ---- the queue ------------------------------------------------------------------------ */

const th_alert *th_outputs_get(const th_outputs *o, uint64_t seq) {
  if (seq < o->base || seq >= o->next) return NULL;
  return &o->ring[(o->head + (size_t)(seq - o->base)) % o->cap];
}

static int grow(th_outputs *o) {
  size_t cap = o->cap ? o->cap * 2 : 1024;
  th_alert *ring = malloc(cap * sizeof *ring);
  if (ring == NULL) return -1;
  for (size_t i = 0; i < o->count; i++) ring[i] = o->ring[(o->head + i) % o->cap];
  free(o->ring);
  o->ring = ring;
  o->cap = cap;
  o->head = 0;
  return 0;
}

int th_outputs_push(th_outputs *o, const char *text, size_t len, const char *uuid, size_t uuid_len,
                    uint8_t severity) {
  if (o->count == o->cap && grow(o) < 0) return -1;
  th_alert *a = &o->ring[(o->head + o->count) % o->cap];
  memset(a, 0, sizeof *a);
  if ((a->text = malloc(len ? len : 1)) == NULL) return -1;
  memcpy(a->text, text, len);
  a->len = len;
  if (uuid_len < sizeof a->uuid) {
    memcpy(a->uuid, uuid, uuid_len);
    a->uuid[uuid_len] = '\0';
  }
  a->severity = severity;
  a->at_ms = uv_now(o->loop);
  o->count++;
  o->next++;
  o->bytes += len + sizeof *a;
  return 0;
}

int th_outputs_push_update(th_outputs *o, const char *text, size_t len, const char *uuid, size_t uuid_len,
                           uint8_t severity) {
  if (th_outputs_push(o, text, len, uuid, uuid_len, severity) < 0) return -1;
  o->ring[(o->head + o->count - 1) % o->cap].update = 1;
  return 0;
}

/* Let go of the alerts every sink has. */
static void release(th_outputs *o) {
  while (o->count > 0 && o->base < o->acked) {
    th_alert *a = &o->ring[o->head];
    o->bytes -= a->len + sizeof *a;
    free(a->text);
    a->text = NULL;
    o->head = (o->head + 1) % o->cap;
    o->count--;
    o->base++;
  }
}

static void check_drained(th_outputs *o) {
  if (!o->draining) return;
  int all = o->acked == o->next;
  if (!all && !o->fatal[0]) return;
  o->draining = 0;
  uv_timer_stop(&o->drain_timer);
  if (o->drained) o->drained(all, o->drained_ud);
}

static void progress(th_outputs *o) {
  uint64_t least = o->next;
  for (size_t i = 0; i < o->n; i++)
    if (o->sinks[i]->acked < least) least = o->sinks[i]->acked;
  int more = least > o->acked;
  o->acked = least;
  if (more) release(o);
  if (o->on_progress) o->on_progress(o->ud);
  check_drained(o);
}

void th_outputs_kick(th_outputs *o) {
  for (size_t i = 0; i < o->n; i++) {
    th_sink *s = o->sinks[i];
    if (!s->closing && !uv_is_active((uv_handle_t *)&s->retry) && s->sent < o->next) s->ops->kick(s);
  }
}

/* ---- for the sinks ---------------------------------------------------------------------- */

void th_sink_acked(th_sink *s, uint64_t seq) {
  if (seq <= s->acked) return;
  s->acked = seq;
  if (s->sent < seq) s->sent = seq;
  progress(s->set);
}

static void on_retry(uv_timer_t *t) {
  th_sink *s = t->data;
  if (!s->closing) s->ops->kick(s);
}

void th_sink_failed(th_sink *s, const char *fmt, ...) {
  char why[sizeof s->why];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  s->failures++;
  if (!s->down) {
    s->down = 1;
    s->down_since = uv_now(s->set->loop);
    s->backoff_ms = BACKOFF_FIRST_MS;
  }
  uint64_t waiting = s->set->next - s->acked;
  if (strcmp(why, s->why) != 0) {  /* once per cause */
    th_log("output %s: %s; %llu alert%s wait, trying again after %u s, backing off up to %u s", s->name, why,
           (unsigned long long)waiting, waiting == 1 ? "" : "s", s->backoff_ms / 1000, BACKOFF_MAX_MS / 1000);
    snprintf(s->why, sizeof s->why, "%s", why);
  }
  if (!s->closing) uv_timer_start(&s->retry, on_retry, s->backoff_ms, 0);
  s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

void th_sink_rewind(th_sink *s) {
  if (s->sent <= s->acked) return;
  s->retried += s->sent - s->acked;
  s->sent = s->acked;
}

void th_sink_ok(th_sink *s) {
  if (!s->down) return;
  th_log("output %s: delivering again after %.0f s down", s->name,
         (double)(uv_now(s->set->loop) - s->down_since) / 1000.0);
  s->down = 0;
  s->why[0] = '\0';
  s->backoff_ms = BACKOFF_FIRST_MS;
}

void th_sink_fatal(th_sink *s, const char *fmt, ...) {
  th_outputs *o = s->set;
  if (o->fatal[0]) return;
  va_list ap;
  va_start(ap, fmt);
  int n = snprintf(o->fatal, sizeof o->fatal, "output %s: ", s->name);
  if (n > 0 && (size_t)n < sizeof o->fatal) vsnprintf(o->fatal + n, sizeof o->fatal - (size_t)n, fmt, ap);
  va_end(ap);
  if (o->on_progress) o->on_progress(o->ud);
  check_drained(o);
}

/* ---- marks ----------------------------------------------------------------------------- */

int th_marks_push(th_marks *q, uint64_t seq, uint64_t end) {
  if (q->count == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 256;
    th_mark *m = malloc(cap * sizeof *m);
    if (m == NULL) return -1;
    for (size_t i = 0; i < q->count; i++) m[i] = *th_marks_at(q, i);
    free(q->m);
    q->m = m;
    q->cap = cap;
    q->head = 0;
  }
  q->m[(q->head + q->count++) % q->cap] = (th_mark){seq, end};
  return 0;
}

uint64_t th_marks_take(th_marks *q, uint64_t upto, uint64_t *end) {
  uint64_t seq = 0;
  while (q->count > 0 && q->m[q->head].end <= upto) {
    seq = q->m[q->head].seq;
    if (end) *end = q->m[q->head].end;
    q->head = (q->head + 1) % q->cap;
    q->count--;
  }
  return seq;
}

void th_marks_free(th_marks *q) {
  free(q->m);
  memset(q, 0, sizeof *q);
}

/* ---- setting up ------------------------------------------------------------------------- */

typedef struct kind {
  const char *prefix;      /* the spec starts with it */
  int whole;               /* ... or is it exactly */
  const th_sink_ops *ops;
} kind;

static const kind KINDS[] = {
  {"stdout", 1, &th_sink_stdout_ops},
  {"file:", 0, &th_sink_file_ops},
  {"exec:", 0, &th_sink_exec_ops},
  {"http://", 0, &th_sink_http_ops},
  {"https://", 0, &th_sink_http_ops},
  {"elasticsearch:", 0, &th_sink_es_ops},
  {"syslog", 1, &th_sink_syslog_ops},
  {"syslog:", 0, &th_sink_syslog_ops},
};

static const char KNOWN[] =
  "stdout, file:PATH, exec:COMMAND, http(s)://URL, elasticsearch:http(s)://HOST:PORT[/INDEX], syslog, "
  "syslog:udp://HOST:PORT, syslog:tcp://HOST:PORT";

/* The spec for messages: a URL's user and password left out. */
static char *display_name(const char *spec) {
  char *name = strdup(spec);
  if (name == NULL) return NULL;
  char *scheme = strstr(name, "://");
  if (scheme == NULL) return name;
  char *host = scheme + 3, *end = host + strcspn(host, "/?#"), *at = NULL;
  for (char *p = host; p < end; p++)
    if (*p == '@') at = p;
  if (at) memmove(host, at + 1, strlen(at + 1) + 1);
  return name;
}

/* libcurl is set up only when an HTTP output needs it: it loads OpenSSL. */
struct th_curl *th_outputs_curl(th_outputs *o) {
  if (o->curl == NULL && !o->curl_failed) {
    char why[256];
    if (th_curl_load(why, sizeof why) < 0) {
      th_log("%s", why);
      o->curl_failed = 1;
    } else if ((o->curl = th_curl_new(o->loop)) == NULL) {
      o->curl_failed = 1;
    }
  }
  return o->curl;
}

int th_outputs_init(th_outputs *o, uv_loop_t *loop, const th_output_conf *confs, int n, uint64_t limit,
                    char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  o->loop = loop;
  o->limit = limit;
  static const th_output_conf fallback[] = {{"stdout", {0}}};
  if (n == 0) {
    confs = fallback;
    n = 1;
  }
  if ((o->sinks = calloc((size_t)n, sizeof *o->sinks)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  for (int i = 0; i < n; i++) {
    const char *spec = confs[i].spec;
    const kind *k = NULL;
    for (size_t j = 0; j < sizeof KINDS / sizeof KINDS[0] && !k; j++) {
      size_t pl = strlen(KINDS[j].prefix);
      if (KINDS[j].whole ? strcmp(spec, KINDS[j].prefix) == 0 : strncmp(spec, KINDS[j].prefix, pl) == 0)
        k = &KINDS[j];
    }
    if (k == NULL) {
      snprintf(err, errlen, "unknown output '%s' (one of %s)", spec, KNOWN);
      return -1;
    }
    for (size_t j = 0; j < o->n; j++)
      if (strcmp(o->sinks[j]->spec, spec) == 0) {
        snprintf(err, errlen, "output '%s' given twice", spec);
        return -1;
      }
    th_sink *s = calloc(1, sizeof *s);
    if (s == NULL || (s->spec = strdup(spec)) == NULL || (s->name = display_name(spec)) == NULL) {
      if (s) free(s->spec);
      free(s);
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    s->ops = k->ops;
    s->set = o;
    s->opts = confs[i].opts;
    if (s->opts.timeout_ms == 0) s->opts.timeout_ms = 30000;
    if (s->opts.connect_timeout_ms == 0) s->opts.connect_timeout_ms = 10000;
    if (s->opts.facility <= 0 || s->opts.facility > 23) s->opts.facility = 16;
    if (s->opts.app_name == NULL) s->opts.app_name = "trailhound";
    s->backoff_ms = BACKOFF_FIRST_MS;
    uv_timer_init(loop, &s->retry);
    s->retry.data = s;
    o->sinks[o->n++] = s;
  }
  uv_timer_init(loop, &o->drain_timer);
  o->drain_timer.data = o;
  return 0;
}

int th_outputs_start(th_outputs *o, void (*on_progress)(void *ud), void *ud, char *err, size_t errlen) {
  o->on_progress = on_progress;
  o->ud = ud;
  for (size_t i = 0; i < o->n; i++) {
    char why[256] = "";
    if (o->sinks[i]->ops->open(o->sinks[i], why, sizeof why) < 0) {
      snprintf(err, errlen, "output %s: %s", o->sinks[i]->name, why);
      return -1;
    }
  }
  return 0;
}

void th_outputs_reopen(th_outputs *o) {
  for (size_t i = 0; i < o->n; i++)
    if (o->sinks[i]->ops->reopen) o->sinks[i]->ops->reopen(o->sinks[i]);
}

static void on_drain_timeout(uv_timer_t *t) { th_outputs_abandon(t->data); }

void th_outputs_drain(th_outputs *o, uint64_t timeout_ms, void (*drained)(int all, void *ud), void *ud) {
  o->drained = drained;
  o->drained_ud = ud;
  o->draining = 1;
  th_outputs_kick(o);
  if (o->draining && timeout_ms > 0) uv_timer_start(&o->drain_timer, on_drain_timeout, timeout_ms, 0);
  check_drained(o);
}

void th_outputs_abandon(th_outputs *o) {
  if (!o->draining) return;
  o->draining = 0;
  uv_timer_stop(&o->drain_timer);
  if (o->drained) o->drained(o->acked == o->next, o->drained_ud);
}

void th_outputs_print(const th_outputs *o, void *fp) {
  FILE *f = fp;
  uint64_t now = uv_now(o->loop);
  fprintf(f, "  %9s  %9s  %9s  %9s  %10s  %s\n", "queued", "delivered", "retried", "failures", "oldest s",
          "output");
  for (size_t i = 0; i < o->n; i++) {
    const th_sink *s = o->sinks[i];
    const th_alert *oldest = th_outputs_get(o, s->acked);
    char age[32] = "-";
    if (oldest) snprintf(age, sizeof age, "%.1f", (double)(now - oldest->at_ms) / 1000.0);
    fprintf(f, "  %9llu  %9llu  %9llu  %9llu  %10s  %s%s%s\n", (unsigned long long)(o->next - s->acked),
            (unsigned long long)s->acked, (unsigned long long)s->retried, (unsigned long long)s->failures, age,
            s->name, s->down ? ": down: " : "", s->down ? s->why : "");
  }
}

void th_outputs_close(th_outputs *o) {
  for (size_t i = 0; i < o->n; i++) {
    th_sink *s = o->sinks[i];
    if (s->closing) continue;
    s->closing = 1;
    uv_close((uv_handle_t *)&s->retry, NULL);
    s->ops->close(s);
  }
  if (o->drain_timer.loop) uv_close((uv_handle_t *)&o->drain_timer, NULL);
  th_curl_close(o->curl);
}

void th_outputs_free(th_outputs *o) {
  for (size_t i = 0; i < o->n; i++) {
    th_sink *s = o->sinks[i];
    if (s->ops->free) s->ops->free(s);
    free(s->spec);
    free(s->name);
    free(s);
  }
  free(o->sinks);
  if (o->curl) {
    th_curl_free(o->curl);
    th_curl_unload();
  }
  for (size_t i = 0; i < o->count; i++) free(o->ring[(o->head + i) % o->cap].text);
  free(o->ring);
  memset(o, 0, sizeof *o);
}
