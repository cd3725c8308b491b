/* threshold.c: Elastic's threshold rule type on the store (state.h).
 *
 * Elastic runs a threshold rule every `interval` over the last `from` of
 * events and alerts for each group (the threshold.field values) whose count
 * reaches `value` (and whose distinct cardinality.field values reach theirs),
 * then leaves out of later runs what that alert counted. In event time, with
 * no schedule to follow: a group alerts at the event after which `value` of
 * its events lie within `from` of its newest one, and counts afresh from the
 * next event after the alert. That catches every burst Elastic's overlapping
 * runs would, at the event that completes it rather than at the next run.
 *
 * An entry per group. Its payload: the time up to which events were counted
 * into an alert, then the events in the window (uuid hash, time) and the
 * distinct values (hash, newest time), each at most max(value, cardinality):
 * the newest ones are all the conditions need (the count in the alert goes
 * on past that cap, approximately). An event counts once: one read
 * again (after a crash) finds its hash there, or its time consumed.
 */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "state.h"

typedef struct rec {
  uint64_t h;
  int64_t t;
} rec;

/* int64 consumed, u32 events, u32 values, u64 dropped: events the cap let go
 * of while the window still held others, still in the count */
enum { HEAD = 24 };

int th_threshold_valid(const unsigned char *p, size_t len) {
  if (len < HEAD) return 0;
  uint32_t nev, ncard;
  memcpy(&nev, p + 8, 4);
  memcpy(&ncard, p + 12, 4);
  return nev <= TH_STATE_VALUE_MAX && ncard <= TH_STATE_VALUE_MAX &&
         len == HEAD + ((size_t)nev + ncard) * sizeof(rec);
}

/* Keep the records newer than floor; returns how many are left, in place. */
static uint32_t prune(rec *r, uint32_t n, int64_t floor) {
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; i++)
    if (r[i].t > floor) r[k++] = r[i];
  return k;
}

/* Past cap: the oldest goes (counted in *dropped). */
static uint32_t cap_to(rec *r, uint32_t n, uint32_t cap, uint64_t *dropped) {
  while (n > cap) {
    if (dropped) ++*dropped;
    uint32_t old = 0;
    for (uint32_t i = 1; i < n; i++)
      if (r[i].t < r[old].t) old = i;
    r[old] = r[--n];
  }
  return n;
}

int th_threshold_decide(th_state *s, uint32_t part, const th_state_event *e, th_state_verdict *v) {
  int64_t span = (int64_t)e->window_s * 1000;
  uint32_t value = e->value ? e->value : 1, card = e->cardinality;
  if (value > TH_STATE_VALUE_MAX) value = TH_STATE_VALUE_MAX;
  if (card > TH_STATE_VALUE_MAX) card = TH_STATE_VALUE_MAX;
  uint32_t cap = value > card ? value : card;

  th_sentry *x = th_state_find(s, part, e->key, e->klen);
  int existed = x != NULL;
  if (x == NULL && (x = th_state_add(s, part, e->key, e->klen, e->t)) == NULL) return -1;
  int64_t consumed = INT64_MIN;
  uint32_t nev = 0, ncard = 0;
  uint64_t dropped = 0;
  if (x->len >= HEAD) {
    memcpy(&consumed, x->data, 8);
    memcpy(&nev, x->data + 8, 4);
    memcpy(&ncard, x->data + 12, 4);
    memcpy(&dropped, x->data + 16, 8);
  }
  if (e->t <= consumed) return 0;  /* counted into an alert already */
  const rec *old = (const rec *)(x->data + HEAD);
  for (uint32_t i = 0; i < nev; i++) {
    rec r;
    memcpy(&r, &old[i], sizeof r);
    if (r.h == e->ev) return 0;  /* this very event, read again */
  }

  /* The new lists: events then values, each with room for one more. */
  rec *ev = malloc(((size_t)nev + ncard + 2) * sizeof *ev);
  if (ev == NULL) return -1;
  rec *val = ev + nev + 1;
  if (nev) memcpy(ev, x->data + HEAD, nev * sizeof *ev);
  if (ncard) memcpy(val, x->data + HEAD + nev * sizeof *ev, ncard * sizeof *val);
  int64_t newest = e->t;
  for (uint32_t i = 0; i < nev; i++)
    if (ev[i].t > newest) newest = ev[i].t;
  nev = prune(ev, nev, newest - span);
  if (nev == 0) dropped = 0;  /* the window emptied: what it dropped is gone too */
  ev[nev++] = (rec){e->ev, e->t};
  nev = cap_to(ev, nev, cap, &dropped);
  if (card && e->distinct) {
    uint64_t h = th_fnv1a(e->distinct, e->dlen);
    ncard = prune(val, ncard, newest - span);
    uint32_t i = 0;
    while (i < ncard && val[i].h != h) i++;
    if (i < ncard) {
      if (e->t > val[i].t) val[i].t = e->t;
    } else {
      val[ncard++] = (rec){h, e->t};
    }
    ncard = cap_to(val, ncard, card, NULL);
  } else {
    ncard = card ? prune(val, ncard, newest - span) : 0;
  }

  if (nev >= value && (card == 0 || ncard >= card)) {
    v->alert = 1;
    v->count = nev + dropped;
    v->distinct = ncard;
    v->from = newest - span;
    if (th_state_keep(s, x, existed) < 0) {
      free(ev);
      return -1;
    }
    consumed = newest;
    nev = ncard = 0;
    dropped = 0;
  }
  size_t len = HEAD + ((size_t)nev + ncard) * sizeof(rec);
  unsigned char *data = malloc(len);
  if (data == NULL) {
    free(ev);
    return -1;
  }
  memcpy(data, &consumed, 8);
  memcpy(data + 8, &nev, 4);
  memcpy(data + 12, &ncard, 4);
  memcpy(data + 16, &dropped, 8);
  memcpy(data + HEAD, ev, nev * sizeof(rec));
  memcpy(data + HEAD + nev * sizeof(rec), val, ncard * sizeof(rec));
  free(ev);
  th_state_set(s, x, data, len);
  if (e->t > x->t) x->t = e->t;
  if (newest + span > x->until) x->until = newest + span;
  return 0;
}
