/* stateful.c: candidates of stateful rules to alerts (stateful.h). */
#define _GNU_SOURCE
#include "stateful.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "log.h"
#include "seqalert.h"

enum {
  TICK_MS = 1000,
  SWEEP_MS = 60000,  /* expiry walks every entry: once a minute */
};

struct th_stateful {
  uv_loop_t *loop;
  th_outputs *out;
  th_limiter *lim;
  th_state *s;
  char *path;               /* PATH.rules; NULL: nothing kept */
  uv_timer_t tick;
  int changed;              /* since the last save */
  int save_errno;           /* the last save's failure, said once */
  uint64_t swept_ms;        /* loop ms of the last sweep */
  uint64_t evicted_said;    /* evictions said so far */
};

static void sweep(th_stateful *sf) {
  th_state_sweep(sf->s, sf->path ? th_outputs_acked(sf->out) : UINT64_MAX);
  sf->swept_ms = uv_now(sf->loop);
  th_state_counts c;
  th_state_totals(sf->s, &c);
  if (c.evicted > sf->evicted_said) {
    th_log("rule state at its cap (%" PRIu64 " entries, %" PRIu64 " KiB): %" PRIu64
           " entries evicted since the last minute, the least recently used first (%" PRIu64 " in all); "
           "raise --max-state to keep more",
           c.entries, c.bytes >> 10, c.evicted - sf->evicted_said, c.evicted);
    sf->evicted_said = c.evicted;
  }
}

void th_stateful_flush(th_stateful *sf) { sweep(sf); }

static void on_tick(uv_timer_t *h) {
  th_stateful *sf = h->data;
  if (uv_now(sf->loop) - sf->swept_ms >= SWEEP_MS) sweep(sf);
  if (sf->changed) th_stateful_save(sf);
}

void th_stateful_save(th_stateful *sf) {
  if (sf->path == NULL) return;
  int rc = th_state_save(sf->s, sf->path, th_outputs_acked(sf->out));
  if (rc < 0) {
    if (-rc != sf->save_errno) th_log("write %s: %s (rule state not kept)", sf->path, strerror(-rc));
    sf->save_errno = -rc;
    return;
  }
  if (sf->save_errno) th_log("wrote %s again", sf->path);
  sf->save_errno = 0;
  sf->changed = 0;
}

/* The threshold alert: its threshold_result in place of the worker's marker,
 * keys in byte order as the encoder writes them. Caller frees. */
static char *threshold_text(const th_state_item *it, const th_state_verdict *v, size_t *len) {
  const th_limit_alert *a = &it->a;
  char from[40], head[200];
  th_ms_iso(v->from, from);
  size_t need = a->len - a->slen + it->flen + it->klen + 200;
  char *doc = malloc(need);
  if (doc == NULL) return NULL;
  char *p = doc;
  memcpy(p, a->text, a->at), p += a->at;
  *p++ = '{';
  if (it->cardinality && it->flen) {
    memcpy(p, "\"cardinality\":[{\"field\":", 24), p += 24;
    memcpy(p, it->card_field, it->flen), p += it->flen;
    p += snprintf(p, 40, ",\"value\":%" PRIu64 "}],", v->distinct);
  }
  int hl = snprintf(head, sizeof head, "\"count\":%" PRIu64 ",\"from\":\"%s\",\"terms\":", v->count, from);
  memcpy(p, head, (size_t)hl), p += hl;
  memcpy(p, it->key, it->klen), p += it->klen;
  *p++ = '}';
  memcpy(p, a->text + a->at + a->slen, a->len - a->at - a->slen), p += a->len - a->at - a->slen;
  *len = (size_t)(p - doc);
  return doc;
}

/* A completed sequence (verdict.done): a building block per event, then the
 * shell alert (seqalert.h), through the limiter. Returns the shell's
 * TH_LIMIT_*, TH_STATE_QUIET when the worker's texts lack their markers, or
 * -1 out of memory. */
static int sequence_alerts(th_stateful *sf, const th_state_item *it, const th_state_verdict *v) {
  const th_limit_alert *a = &it->a;
  char gid[37], id[37], iso[40];
  th_seqalert_uuid(a->rule_id, v->done, v->done_len, -1, gid);
  size_t off = 0, len;
  th_seq_event ev;
  for (int i = 0; th_sequence_next(v->done, v->done_len, &off, &ev); i++) {
    th_seqalert_uuid(a->rule_id, v->done, v->done_len, i, id);
    char *doc = th_seqalert_block(&ev, i, gid, id, &len);
    if (doc == NULL) return TH_STATE_QUIET;
    th_ms_iso(ev.t, iso);
    th_limit_alert b = *a;
    b.text = doc, b.len = len, b.uuid = id, b.ulen = 36, b.ts = iso, b.tlen = strlen(iso);
    b.at = b.slen = 0, b.suppress_s = 0, b.glen = 0;
    int got = th_limiter_alert(sf->lim, &b);
    free(doc);
    if (got < 0) return -1;
  }
  char *doc = th_seqalert_shell(it->card_field, it->flen, v->done, v->done_len, gid, &len);
  if (doc == NULL) return TH_STATE_QUIET;
  th_limit_alert b = *a;
  b.text = doc, b.len = len, b.uuid = gid, b.ulen = 36;
  b.at = b.slen = 0, b.suppress_s = 0, b.glen = 0;
  int got = th_limiter_alert(sf->lim, &b);
  free(doc);
  return got;
}

static const char *type_name(int type) {
  return type == TH_STATE_THRESHOLD ? "threshold" : type == TH_STATE_SEQUENCE ? "sequence" : "new_terms";
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The event time of a candidate, ms. One without a time we read is taken as
 * of the newest one seen: the wall clock would move the store's clock years
 * on in a replay, and expire it. */
int64_t th_stateful_time(const th_stateful *sf, const th_state_item *it) {
  int64_t t = th_iso_ms(it->a.ts, it->a.tlen);
  if (t < 0) t = th_state_clock(sf->s) != INT64_MIN ? th_state_clock(sf->s) : wall_ms();
  return t;
}

int th_stateful_stale(const th_stateful *sf, const th_state_item *it, int64_t late) {
  const th_limit_alert *a = &it->a;
  if (it->type != TH_STATE_NEW_TERMS || a->len != 0) return 0;
  th_state_event e = {
    .rule_id = a->rule_id, .fp = it->fp, .type = it->type, .t = th_stateful_time(sf, it), .key = it->key,
    .klen = it->klen, .window_s = it->window_s, .touch = 1,
  };
  return th_state_touch_stale(sf->s, &e, late);
}

int th_stateful_item(th_stateful *sf, th_state_item *it) {
  th_limit_alert *a = &it->a;
  int64_t t = th_stateful_time(sf, it);
  th_state_event e = {
    .rule_id = a->rule_id, .fp = it->fp, .type = it->type, .t = t, .key = it->key,
    .klen = it->klen, .ev = a->ulen ? th_fnv1a(a->uuid, a->ulen) : 0, .distinct = it->dlen ? it->distinct : NULL,
    .dlen = it->dlen, .window_s = it->window_s, .value = it->value, .cardinality = it->cardinality,
    .touch = it->type == TH_STATE_NEW_TERMS && a->len == 0,  /* no alert sent: the worker knew it known */
  };
  if (it->type == TH_STATE_SEQUENCE) {  /* its fields as proto.h says of a sequence's candidate */
    e.step = it->value, e.nsteps = it->cardinality, e.span_ms = it->window_s;
    e.value = e.cardinality = e.window_s = 0;
    e.line = a->text, e.llen = a->len, e.anc = it->distinct, e.alen = it->dlen;
    e.distinct = NULL, e.dlen = 0;
  }
  th_state_verdict v;
  if (th_state_decide(sf->s, &e, &v) < 0) return -1;
  sf->changed = 1;
  if (v.cleared)
    th_log("%s: its query or %s parameters changed: the state it kept is dropped (%" PRIu64 " entries)",
           a->rule_name, type_name(it->type), v.cleared_entries);
  if (!v.alert) return TH_STATE_QUIET;
  int got;
  if (it->type == TH_STATE_SEQUENCE) {
    got = sequence_alerts(sf, it, &v);
    free(v.done);
    if (got < 0) return -1;
  } else if (it->type == TH_STATE_THRESHOLD) {
    if (a->slen == 0 || (uint64_t)a->at + a->slen > a->len) return TH_STATE_QUIET;  /* no marker: the worker's fault */
    size_t len;
    char *doc = threshold_text(it, &v, &len);
    if (doc == NULL) return -1;
    th_limit_alert b = *a;
    b.text = doc;
    b.len = len;
    b.at = b.slen = 0;
    b.suppress_s = 0;
    got = th_limiter_alert(sf->lim, &b);
    free(doc);
  } else {
    got = th_limiter_alert(sf->lim, a);
  }
  th_state_written(sf->s, th_outputs_next(sf->out));
  return got;
}

const th_state *th_stateful_store(const th_stateful *sf) { return sf->s; }

th_stateful *th_stateful_new(uv_loop_t *loop, th_outputs *out, th_limiter *lim, const char *state, size_t max_bytes) {
  th_stateful *sf = calloc(1, sizeof *sf);
  if (sf == NULL || (sf->s = th_state_new(max_bytes)) == NULL) {
    free(sf);
    return NULL;
  }
  sf->loop = loop;
  sf->out = out;
  sf->lim = lim;
  if (state && asprintf(&sf->path, "%s.rules", state) < 0) {
    th_state_free(sf->s);
    free(sf);
    return NULL;
  }
  if (sf->path) {
    int rc = th_state_load(sf->s, sf->path);
    if (rc != 0) {
      char aside[4200];
      snprintf(aside, sizeof aside, "%s.bad", sf->path);
      rename(sf->path, aside);
      if (rc < 0) th_log("read %s: %s; set aside as %s, starting without it", sf->path, strerror(-rc), aside);
      else th_log("%s: damaged at line %d; set aside as %s, starting with what came before", sf->path, rc, aside);
    }
  }
  uv_timer_init(loop, &sf->tick);
  sf->tick.data = sf;
  sf->swept_ms = uv_now(loop);
  uv_timer_start(&sf->tick, on_tick, TICK_MS, TICK_MS);
  uv_unref((uv_handle_t *)&sf->tick);
  return sf;
}

void th_stateful_close(th_stateful *sf) {
  if (sf && !uv_is_closing((uv_handle_t *)&sf->tick)) uv_close((uv_handle_t *)&sf->tick, NULL);
}

void th_stateful_free(th_stateful *sf) {
  if (sf == NULL) return;
  th_state_free(sf->s);
  free(sf->path);
  free(sf);
}
