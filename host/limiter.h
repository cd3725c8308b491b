/* limiter.h: what stands between the alerts the workers make and the outputs
 * (DESIGN.md, "Limits, suppression and state"), in Elastic's terms.
 *
 * Each alert, in the order the host writes them, is:
 *   - a duplicate: its kibana.alert.uuid was seen within the last DEDUP_MAX
 *     alerts (CloudTrail delivers some events twice): written once, counted;
 *   - suppressed: its rule has alert_suppression and an alert of its group
 *     (the rule and the group_by values) was written within the duration:
 *     counted into that alert's kibana.alert.suppression (docs_count, start,
 *     end), which is written again, with the same uuid, as an update (an
 *     `index` in the bulk output): within a minute, when the group's window
 *     closes, and at a stop;
 *   - held back: its rule has max_signals, and that many alerts were written
 *     in its interval window (aligned to the interval, in event time): counted
 *     and said once per window;
 *   - else written.
 *
 * Windows are in event time (the alert's original time; the clock where an
 * event has none), so a replay gives the same answer as the run that read the
 * events live. A group's window closes once the newest event time seen passes
 * its end. Memory is bounded: DEDUP_MAX uuids, GROUPS_MAX groups (the oldest
 * is closed first), four windows per rule.
 *
 * With a state file (run), what holds is kept in PATH.alerts and read back at
 * start, so a restart neither writes a duplicate again nor opens a group
 * anew. Only what the outputs have acknowledged is kept: an alert that was
 * not delivered is written again after a restart, as the records it came from
 * are read again (checkpoint.h).
 */
#ifndef TH_LIMITER_H
#define TH_LIMITER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "outputs.h"

/* One alert from a worker (proto.h, TH_ITEM_ALERT). */
typedef struct th_limit_alert {
  const char *rule_id, *rule_name;
  const char *ts;              /* kibana.alert.original_time, ISO 8601; may be empty */
  size_t tlen;
  const char *uuid;
  size_t ulen;
  uint8_t severity;
  const char *text;            /* the alert document */
  size_t len;
  uint32_t max_signals;        /* 0: none */
  uint32_t interval_s;
  uint32_t suppress_s;         /* 0: not suppressed */
  const char *group;           /* the group_by terms' JSON */
  size_t glen;
  uint32_t at, slen;           /* the suppression object in text (slen 0: none) */
} th_limit_alert;

enum { TH_LIMIT_WRITTEN, TH_LIMIT_DUPLICATE, TH_LIMIT_SUPPRESSED, TH_LIMIT_HELD };

typedef struct th_limiter th_limiter;

/* state: the run's state file (the limiter's is state.alerts), or NULL. Reads
 * what a previous run kept; a damaged file is set aside and said.
 * no_max_signals: every rule's max_signals is left unapplied. NULL: out of
 * memory. */
th_limiter *th_limiter_new(uv_loop_t *loop, th_outputs *out, const char *state, int no_max_signals);

/* Decide on one alert and queue what is written. Returns TH_LIMIT_*, or -1
 * out of memory. */
int th_limiter_alert(th_limiter *l, const th_limit_alert *a);

/* Would a be held back or taken for a duplicate, as things stand (nothing
 * changes)? An alert the worker did not build (its line "", its rule's window
 * said full: proto.h, FULL) that would not (the window let go since: four per
 * rule) has its record evaluated again, whole (dispatch.c). */
int th_limiter_holds(const th_limiter *l, const th_limit_alert *a);

/* Would a, written, make its rule's limiter let one of its windows go (it
 * keeps four)? Then a later unbuilt alert of the same record may find its
 * window gone (dispatch.c). Conservative: 1 when unsure. */
int th_limiter_opens(const th_limiter *l, const th_limit_alert *a);

/* An unbuilt alert: held back and counted as th_limiter_alert does, or a
 * duplicate; held even where th_limiter_holds says otherwise (its record
 * could not be evaluated again: out of memory, or stopping). Returns
 * TH_LIMIT_HELD or TH_LIMIT_DUPLICATE, or -1 out of memory. */
int th_limiter_held(th_limiter *l, const th_limit_alert *a);

/* The max_signals window of a (its index: event time over the interval, as
 * held back), into *index: 0; -1 when it has none (no max_signals or interval,
 * or --no-max-signals), -2 when a has no event time (the clock's is used). */
int th_limiter_window(const th_limiter *l, const th_limit_alert *a, int64_t *index);

/* A stop: every group's count is written (updates queued). */
void th_limiter_flush(th_limiter *l);

/* Keep what holds in the state file (what the outputs have acknowledged). */
void th_limiter_save(th_limiter *l);

/* Totals since start. */
typedef struct th_limit_totals {
  uint64_t duplicates, suppressed, held, updates, groups;
} th_limit_totals;
void th_limiter_totals(const th_limiter *l, th_limit_totals *t);

void th_limiter_close(th_limiter *l);  /* its timer; before the loop ends */
void th_limiter_free(th_limiter *l);

/* Milliseconds since the epoch of an ISO 8601 time in UTC or with an offset
 * (2024-05-01T10:00:00Z, 2024-05-01T10:00:00.123+02:00); -1 if it is not one. */
int64_t th_iso_ms(const char *s, size_t len);
/* ... and back: "2024-05-01T10:00:00.000Z". */
void th_ms_iso(int64_t ms, char out[40]);

#endif
