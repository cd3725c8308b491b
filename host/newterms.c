/* newterms.c: Elastic's new_terms rule type on the store (state.h).
 *
 * An entry per combination of the rule's new_terms_fields values (the worker
 * sends one candidate per combination, arrays expanded): its time is the
 * newest event that had it. An event's combination is new when no entry has
 * it, or its newest event is older than the history window before this
 * event: Elastic's "not seen between history_window_start and now". A late
 * event is not news: one older than an entry's finds it known, and one more
 * than the history window older than the newest event seen (the store's
 * clock) is passed over, changing nothing. What was seen in its window may
 * have been let go since, and Elastic, which queries each run's interval by
 * event time, never looks at an event that lands behind it.
 */
#include "state.h"

int th_newterms_late(const th_state *s, const th_state_event *e) {
  int64_t clock = th_state_clock(s);  /* INT64_MIN before any event */
  return clock != INT64_MIN && e->t < clock - (int64_t)e->window_s * 1000;
}

int th_newterms_decide(th_state *s, uint32_t part, const th_state_event *e, th_state_verdict *v) {
  int64_t hist = (int64_t)e->window_s * 1000;
  if (th_newterms_late(s, e)) return 0;
  th_sentry *x = th_state_find(s, part, e->key, e->klen);
  if (e->touch) {
    if (x && x->t >= e->t - hist && e->t > x->t) {
      x->t = e->t;
      x->until = e->t + hist;
    }
    return 0;
  }
  if (x == NULL) {
    if ((x = th_state_add(s, part, e->key, e->klen, e->t)) == NULL) return -1;
    x->until = e->t + hist;
    th_state_keep(s, x, 0);  /* made by this alert: not saved before it is acknowledged */
    v->alert = 1;
    return 0;
  }
  if (x->t < e->t - hist) {  /* last seen before the history window: new again */
    if (th_state_keep(s, x, 1) < 0) return -1;
    v->alert = 1;
  }
  if (e->t > x->t) {
    x->t = e->t;
    x->until = e->t + hist;
  }
  return 0;
}
