/* stateful.h: the host's stage for stateful rules, before the limiter.
 *
 * A worker sends a candidate (proto.h, TH_ITEM_STATE) for every event a
 * new_terms or threshold rule's query matches, and for every step of an EQL
 * sequence an event matches; the store (state.h) decides, and an alert it
 * keeps goes on to the limiter like any other (duplicates, suppression,
 * max_signals). A threshold alert gets its kibana.alert.threshold_result
 * here: the count is known only here. A completed sequence's alerts are made
 * here (seqalert.h): a building block per event, then the shell.
 *
 * With a state file (run), the store lives in PATH.rules, saved every second
 * when it changed, with the limiter's cut (what the outputs acknowledged), and
 * read back at start. A rule whose state is dropped because its query
 * changed, and a store at its cap evicting, are said in the log.
 */
#ifndef TH_STATEFUL_H
#define TH_STATEFUL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "limiter.h"
#include "outputs.h"
#include "state.h"

/* A candidate as read from a reply: the store's part and the alert's. */
typedef struct th_state_item {
  int type;                   /* TH_STATE_* */
  uint64_t fp;
  const char *key, *distinct, *card_field;  /* JSON texts; distinct, card_field: len 0 when none */
  size_t klen, dlen, flen;
  uint32_t window_s, value, cardinality;  /* a sequence: maxspan ms, step, steps (proto.h) */
  th_limit_alert a;           /* threshold: a.at, a.slen are where threshold_result goes */
} th_state_item;

typedef struct th_stateful th_stateful;

/* state: the run's state file (ours is state.rules), or NULL. max_bytes: the
 * store's cap (0: TH_STATE_BYTES). NULL: out of memory. */
th_stateful *th_stateful_new(uv_loop_t *loop, th_outputs *out, th_limiter *lim, const char *state, size_t max_bytes);

enum { TH_STATE_QUIET = 100 };  /* the store kept no alert */

/* Decide on one candidate; its alert, if any, through the limiter. Returns
 * TH_LIMIT_* or TH_STATE_QUIET, or -1 out of memory. */
int th_stateful_item(th_stateful *sf, th_state_item *it);

/* A new_terms candidate the worker sent without its alert (it sent the
 * combination lately) that the store would take as news: the worker must
 * evaluate its record again and send it whole. late: the newest event time
 * of the candidates of its record (th_stateful_time). Changes nothing. */
int th_stateful_stale(const th_stateful *sf, const th_state_item *it, int64_t late);
int64_t th_stateful_time(const th_stateful *sf, const th_state_item *it);

void th_stateful_save(th_stateful *sf);
/* A stop: expired entries dropped, evictions said. */
void th_stateful_flush(th_stateful *sf);
const th_state *th_stateful_store(const th_stateful *sf);
void th_stateful_close(th_stateful *sf);  /* its timer; before the loop ends */
void th_stateful_free(th_stateful *sf);

#endif
