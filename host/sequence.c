/* sequence.c: EQL sequences on the store (state.h), as Elasticsearch matches
 * them, in event time.
 *
 * Elasticsearch keeps, per join key, for each step the latest partial
 * sequence that reached it: an event of step k takes the partial at k-1 on
 * to k (the one at k-1 is then gone), an event of the first step starts one
 * afresh (replacing the one before), and a partial older than maxspan (from
 * its first event) is dropped. Here the same, one candidate at a time.
 *
 * An entry per join key. Its payload: u32 slots (steps - 1), then per slot
 * u32 events (0: no partial there) and its events, each: i64 time, u64
 * identity, u32 line length, u32 ancestor length, the line, the ancestor.
 * The lines are the alerts the events would make: a completed sequence's
 * building blocks are written from them, after a restart too. A partial is
 * at most MAX_STEPS events; the store's cap bounds the rest.
 */
#include <stdlib.h>
#include <string.h>

#include "state.h"

enum { MAX_STEPS = 256, REC_HEAD = 24 };

typedef struct slot {
  const unsigned char *p;      /* its events' records (in the old payload, or the new event) */
  size_t len;
  uint32_t n;                  /* events; 0: no partial */
  int64_t first, last;         /* the times of its first and last events */
} slot;

int th_sequence_next(const unsigned char *p, size_t len, size_t *off, th_seq_event *out) {
  if (*off >= len || len - *off < REC_HEAD) return 0;
  const unsigned char *r = p + *off;
  memcpy(&out->t, r, 8);
  memcpy(&out->ev, r + 8, 8);
  memcpy(&out->llen, r + 16, 4);
  memcpy(&out->alen, r + 20, 4);
  size_t need = (size_t)REC_HEAD + out->llen + out->alen;
  if (len - *off < need) return 0;
  out->line = (const char *)r + REC_HEAD;
  out->anc = out->line + out->llen;
  *off += need;
  return 1;
}

/* The slots of a payload; 0 if it does not parse as one of nslots. */
static int parse(const unsigned char *p, size_t len, uint32_t nslots, slot *sl) {
  uint32_t have;
  if (len < 4) return 0;
  memcpy(&have, p, 4);
  if (have != nslots || have >= MAX_STEPS) return 0;
  size_t off = 4;
  for (uint32_t i = 0; i < nslots; i++) {
    if (len - off < 4) return 0;
    memcpy(&sl[i].n, p + off, 4);
    off += 4;
    if (sl[i].n > MAX_STEPS) return 0;
    sl[i].p = p + off;
    size_t start = off;
    for (uint32_t k = 0; k < sl[i].n; k++) {
      th_seq_event ev;
      size_t at = off - start;
      if (!th_sequence_next(sl[i].p, len - start, &at, &ev)) return 0;
      off = start + at;
      if (k == 0) sl[i].first = ev.t;
      sl[i].last = ev.t;
    }
    sl[i].len = off - start;
  }
  return off == len;
}

int th_sequence_valid(const unsigned char *p, size_t len) {
  uint32_t nslots;
  if (len < 4) return 0;
  memcpy(&nslots, p, 4);
  if (nslots == 0 || nslots >= MAX_STEPS) return 0;
  slot sl[MAX_STEPS];
  return parse(p, len, nslots, sl);
}

static int has(const slot *sl, uint64_t ev) {
  size_t off = 0;
  th_seq_event x;
  while (th_sequence_next(sl->p, sl->len, &off, &x))
    if (x.ev == ev) return 1;
  return 0;
}

/* The event's record; caller frees. */
static unsigned char *record(const th_state_event *e, size_t *len) {
  uint32_t ll = (uint32_t)e->llen, al = (uint32_t)e->alen;
  *len = (size_t)REC_HEAD + ll + al;
  unsigned char *r = malloc(*len);
  if (r == NULL) return NULL;
  memcpy(r, &e->t, 8);
  memcpy(r + 8, &e->ev, 8);
  memcpy(r + 16, &ll, 4);
  memcpy(r + 20, &al, 4);
  if (ll) memcpy(r + REC_HEAD, e->line, ll);
  if (al) memcpy(r + REC_HEAD + ll, e->anc, al);
  return r;
}

/* A partial's events then the new one's record, in one buffer; caller frees. */
static unsigned char *join(const slot *sl, const unsigned char *rec, size_t rlen, size_t *len) {
  *len = sl->len + rlen;
  unsigned char *b = malloc(*len);
  if (b == NULL) return NULL;
  if (sl->len) memcpy(b, sl->p, sl->len);
  memcpy(b + sl->len, rec, rlen);
  return b;
}

static unsigned char *payload(const slot *sl, uint32_t nslots, size_t *len) {
  *len = 4;
  for (uint32_t i = 0; i < nslots; i++) *len += 4 + (sl[i].n ? sl[i].len : 0);
  unsigned char *b = malloc(*len), *q = b;
  if (b == NULL) return NULL;
  memcpy(q, &nslots, 4), q += 4;
  for (uint32_t i = 0; i < nslots; i++) {
    memcpy(q, &sl[i].n, 4), q += 4;
    if (sl[i].n && sl[i].len) memcpy(q, sl[i].p, sl[i].len), q += sl[i].len;
  }
  return b;
}

int th_sequence_decide(th_state *s, uint32_t part, const th_state_event *e, th_state_verdict *v) {
  uint32_t n = e->nsteps, k = e->step, nslots = n - 1;
  if (n < 2 || n > MAX_STEPS || k > n) return 0;
  th_sentry *x = th_state_find(s, part, e->key, e->klen);
  if (x == NULL && k != 0) return 0;  /* nothing to advance, nothing to stop */
  int existed = x != NULL;
  if (x == NULL && (x = th_state_add(s, part, e->key, e->klen, e->t)) == NULL) return -1;
  slot sl[MAX_STEPS];
  if (!existed || !parse(x->data, x->len, nslots, sl)) memset(sl, 0, nslots * sizeof *sl);

  for (uint32_t i = 0; i < nslots; i++)  /* past maxspan: gone, as Elasticsearch trims them */
    if (sl[i].n && e->span_ms && e->t - sl[i].first > e->span_ms) sl[i].n = 0;

  unsigned char *rec = NULL, *grown = NULL;
  size_t rlen = 0, glen = 0;
  if (k == n) {  /* until: the key's partials stop here */
    for (uint32_t i = 0; i < nslots; i++) sl[i].n = 0;
  } else if ((rec = record(e, &rlen)) == NULL) {
    return -1;
  } else if (k == 0) {
    sl[0] = (slot){rec, rlen, 1, e->t, e->t};
  } else {
    slot *from = &sl[k - 1];
    if (from->n && e->t >= from->last && !(e->ev && has(from, e->ev)) &&
        !(e->span_ms && e->t - from->first > e->span_ms)) {
      if ((grown = join(from, rec, rlen, &glen)) == NULL) {
        free(rec);
        return -1;
      }
      int64_t first = from->first;
      uint32_t got = from->n + 1;
      from->n = 0;  /* it moved on */
      if (k == n - 1) {
        if (th_state_keep(s, x, existed) < 0) {
          free(rec);
          free(grown);
          return -1;
        }
        v->alert = 1;
        v->done = grown;
        v->done_len = glen;
        grown = NULL;
      } else {
        sl[k] = (slot){grown, glen, got, first, e->t};
      }
    }
  }

  size_t len;
  unsigned char *data = payload(sl, nslots, &len);
  free(rec);
  free(grown);
  if (data == NULL) {
    free(v->done);
    v->done = NULL;
    v->alert = 0;
    return -1;
  }
  int any = 0;
  int64_t until = e->t;
  for (uint32_t i = 0; i < nslots; i++) {
    if (!sl[i].n) continue;
    any = 1;
    int64_t u = e->span_ms ? sl[i].first + e->span_ms : INT64_MAX;
    if (u > until) until = u;
  }
  th_state_set(s, x, data, len);  /* sl points into the old payload: not read from here on */
  if (e->t > x->t) x->t = e->t;
  x->until = any ? until : e->t;  /* no partial left: dropped at a sweep once time moves on */
  return 0;
}
