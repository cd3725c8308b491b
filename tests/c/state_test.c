/* state_test.c: the store of stateful rules (state.h): new terms in their
 * history window, threshold groups in theirs (count, cardinality, an event
 * counted once), a changed rule starting empty, the byte cap's eviction,
 * expiry, and the state file with the acknowledged cut. TAP. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "state.h"
#include "tap.h"

#define MIN 60000LL
#define DAY (24 * 60 * MIN)

static int64_t T0 = 1722375081000LL;  /* 2024-07-30T21:31:21Z */

static th_state_verdict nt(th_state *s, const char *rule, uint64_t fp, const char *key, int64_t t) {
  th_state_event e = {.rule_id = rule, .fp = fp, .type = TH_STATE_NEW_TERMS, .t = t, .key = key,
                      .klen = strlen(key), .window_s = 7 * 86400};
  th_state_verdict v;
  if (th_state_decide(s, &e, &v) < 0) v.alert = -1;
  return v;
}

static th_state_verdict th(th_state *s, const char *group, uint64_t ev, const char *distinct, int64_t t,
                           uint32_t value, uint32_t card) {
  th_state_event e = {.rule_id = "thr", .fp = 7, .type = TH_STATE_THRESHOLD, .t = t, .key = group,
                      .klen = strlen(group), .ev = ev, .distinct = distinct, .dlen = distinct ? strlen(distinct) : 0,
                      .window_s = 360, .value = value, .cardinality = card};
  th_state_verdict v;
  if (th_state_decide(s, &e, &v) < 0) v.alert = -1;
  return v;
}

static void new_terms(void) {
  th_state *s = th_state_new(0);
  CHECK(nt(s, "r", 1, "[\"alice\"]", T0).alert == 1, "new_terms: a first combination alerts");
  CHECK(nt(s, "r", 1, "[\"alice\"]", T0 + MIN).alert == 0, "seen a minute before: not new");
  CHECK(nt(s, "r", 1, "[\"bob\"]", T0 + MIN).alert == 1, "another combination alerts");
  CHECK(nt(s, "r", 1, "[\"alice\"]", T0 + 6 * DAY).alert == 0, "within the 7 days of history: not new");
  CHECK(nt(s, "r", 1, "[\"bob\"]", T0).alert == 0, "a late event of a known term, within its history: not news");
  CHECK(nt(s, "r", 1, "[\"alice\"]", T0 + 14 * DAY).alert == 1, "8 days after it was last seen: new again");
  /* More than the history window behind the newest event: passed over (Elastic never looks
   * at an event that lands behind its run's interval), whether or not a sweep has dropped
   * the term yet. */
  CHECK(nt(s, "r", 1, "[\"bob\"]", T0).alert == 0, "an event a history window behind the newest: not news");
  CHECK(nt(s, "r", 1, "[\"carol\"]", T0).alert == 0, "... even of a term never seen");
  CHECK(nt(s, "r", 1, "[\"carol\"]", T0 + 14 * DAY - MIN).alert == 1, "... which it did not make known");
  {  /* one event stamped far in the future moves the clock a day past the wall clock at most */
    th_state *f = th_state_new(0);
    int64_t now = (int64_t)time(NULL) * 1000;
    nt(f, "r", 1, "[\"forged\"]", now + 3650 * DAY);
    CHECK(th_state_clock(f) <= now + 2 * DAY, "a future-dated event does not take the clock with it");
    CHECK(nt(f, "r", 1, "[\"today\"]", now).alert == 1, "... so an event of today is still news");
    th_state_free(f);
  }
  CHECK(nt(s, "other", 1, "[\"alice\"]", T0 + 14 * DAY).alert == 1, "rules keep apart");
  th_state_verdict v = nt(s, "r", 2, "[\"alice\"]", T0 + 14 * DAY + MIN);
  CHECK(v.alert == 1 && v.cleared && v.cleared_entries == 3, "a changed rule (fingerprint) starts empty: %llu dropped",
        (unsigned long long)v.cleared_entries);
  th_state_sweep(s, UINT64_MAX);
  th_state_counts c;
  th_state_totals(s, &c);
  CHECK(c.entries == 2 && c.cleared == 1,
        "the old version's entries are gone at the sweep (%llu left: each live rule's term)",
        (unsigned long long)c.entries);
  th_state_part_info pi;
  int n = 0;
  while (th_state_part(s, (size_t)n, &pi)) n++;
  CHECK(n == 2, "two live partitions are listed");
  th_state_free(s);
}

static th_state_verdict touch(th_state *s, const char *key, int64_t t) {
  th_state_event e = {.rule_id = "r", .fp = 1, .type = TH_STATE_NEW_TERMS, .t = t, .key = key, .klen = strlen(key),
                      .window_s = 7 * 86400, .touch = 1};
  th_state_verdict v;
  if (th_state_decide(s, &e, &v) < 0) v.alert = -1;
  return v;
}

/* A worker's light candidate: a combination it sent whole lately. */
static int stale(th_state *s, const char *key, int64_t t, int64_t late) {
  th_state_event e = {.rule_id = "r", .fp = 1, .type = TH_STATE_NEW_TERMS, .t = t, .key = key, .klen = strlen(key),
                      .window_s = 7 * 86400, .touch = 1};
  return th_state_touch_stale(s, &e, late);
}

static void touches(void) {
  th_state *s = th_state_new(0);
  CHECK(stale(s, "[\"x\"]", T0, T0) == 1, "stale: a touch in an empty store would be news");
  CHECK(touch(s, "[\"x\"]", T0).alert == 0, "touch: never an alert");
  CHECK(nt(s, "r", 1, "[\"x\"]", T0 + MIN).alert == 1,
        "a touch of an unknown term makes no entry: the whole one alerts");
  CHECK(stale(s, "[\"x\"]", T0 + 6 * DAY, T0 + 6 * DAY) == 0, "stale: not a known term in its window");
  CHECK(stale(s, "[\"x\"]", T0 + 6 * DAY, T0 + 9 * DAY) == 1,
        "stale: news once a later event of the record would move the clock past it");
  touch(s, "[\"x\"]", T0 + 6 * DAY);
  CHECK(nt(s, "r", 1, "[\"x\"]", T0 + 12 * DAY).alert == 0,
        "a touch in the window keeps the term known for another");
  touch(s, "[\"x\"]", T0 + 30 * DAY);
  CHECK(nt(s, "r", 1, "[\"x\"]", T0 + 30 * DAY + MIN).alert == 1,
        "a touch past the window is ignored: the term is new");
  th_state_free(s);
}

static void threshold(void) {
  th_state *s = th_state_new(0);
  int alerts = 0, at = -1;
  for (int i = 0; i < 12; i++) {
    th_state_verdict v = th(s, "[\"123\"]", 100 + (uint64_t)i, NULL, T0 + i * 10000, 10, 0);
    if (v.alert) {
      alerts++;
      if (at < 0) at = i;
    }
  }
  CHECK(alerts == 1 && at == 9, "threshold: the 10th event in 6 minutes alerts, once (%d alerts, at %d)", alerts, at);
  th_state_verdict v = th(s, "[\"123\"]", 105, NULL, T0 + 5 * 10000, 10, 0);
  CHECK(v.alert == 0, "an event read again is not counted again");
  alerts = 0;
  for (int i = 0; i < 20; i++) alerts += th(s, "[\"9\"]", 500 + (uint64_t)i, NULL, T0 + i * 60000, 10, 0).alert;
  CHECK(alerts == 0, "10 events spread over 20 minutes never fill 6 minutes");
  alerts = 0;
  for (int i = 0; i < 9; i++) alerts += th(s, "[\"7\"]", 700 + (uint64_t)i, NULL, T0 + i * 1000, 10, 0).alert;
  alerts += th(s, "[\"7\"]", 708, NULL, T0 + 9000, 10, 0).alert;
  CHECK(alerts == 0, "the same event nine times over counts once");

  /* value 1, cardinality 3 distinct values; a store of its own: the events above moved the
   * clock 19 minutes on, and events 6 minutes older than the newest no longer count */
  th_state_free(s);
  s = th_state_new(0);
  const char *vals[] = {"\"a\"", "\"a\"", "\"b\"", "\"a\"", "\"c\""};
  int got = -1;
  for (int i = 0; i < 5; i++) {
    v = th(s, "[]", 900 + (uint64_t)i, vals[i], T0 + i * 1000, 1, 3);
    if (v.alert && got < 0) got = i;
  }
  CHECK(got == 4, "with cardinality: the third distinct value alerts (at %d)", got);
  CHECK(v.count == 5 && v.distinct == 3 && v.from == T0 + 4000 - 360000,
        "threshold_result: count %llu, cardinality %llu, from the window's start", (unsigned long long)v.count,
        (unsigned long long)v.distinct);
  th_state_free(s);
}

static void bounds(void) {
  th_state *s = th_state_new(64 * 1024);
  char key[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "[\"u%d\"]", i);
    nt(s, "r", 1, key, T0 + i);
  }
  th_state_counts c;
  th_state_totals(s, &c);
  CHECK(c.bytes <= 64 * 1024 && c.evicted > 0 && c.entries + c.evicted == 5000,
        "the byte cap holds: %llu entries, %llu bytes, %llu evicted", (unsigned long long)c.entries,
        (unsigned long long)c.bytes, (unsigned long long)c.evicted);
  CHECK(nt(s, "r", 1, "[\"u4999\"]", T0 + 5000).alert == 0, "the most recent is kept");
  CHECK(nt(s, "r", 1, "[\"u0\"]", T0 + 5000).alert == 1, "the least recently used went first");
  nt(s, "r", 1, "[\"late\"]", T0 + 30 * DAY);
  th_state_sweep(s, UINT64_MAX);
  th_state_totals(s, &c);
  CHECK(c.entries == 1 && c.expired > 0, "past their history, terms expire at the sweep (%llu left)",
        (unsigned long long)c.entries);
  th_state_free(s);
}

static void file(void) {
  char path[] = "/tmp/th-state-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  th_state *s = th_state_new(0);
  nt(s, "r", 1, "[\"acked\"]", T0);
  th_state_written(s, 5);
  nt(s, "r", 1, "[\"pending\"]", T0);
  th_state_written(s, 9);
  for (int i = 0; i < 4; i++) th(s, "[\"g\"]", 10 + (uint64_t)i, NULL, T0 + i * 1000, 5, 0);
  /* new again 8 days on, twice: the first alert acknowledged, the second not */
  nt(s, "r", 1, "[\"twice\"]", T0 - 20 * DAY);
  th_state_written(s, 2);
  nt(s, "r", 1, "[\"twice\"]", T0 - 10 * DAY);
  th_state_written(s, 4);
  nt(s, "r", 1, "[\"twice\"]", T0);
  th_state_written(s, 8);
  CHECK(th_state_save(s, path, 6) == 0, "saved, acknowledged up to 6");
  th_state_free(s);

  s = th_state_new(0);
  CHECK(th_state_load(s, path) == 0, "read back");
  CHECK(nt(s, "r", 1, "[\"acked\"]", T0 + MIN).alert == 0, "a term whose alert was delivered is known");
  CHECK(nt(s, "r", 1, "[\"pending\"]", T0 + MIN).alert == 1, "one whose alert was not delivered alerts again");
  CHECK(nt(s, "r", 1, "[\"twice\"]", T0).alert == 1,
        "one alerting again before its last alert was delivered alerts again: its last alert is not lost");
  CHECK(th(s, "[\"g\"]", 12, NULL, T0 + 2000, 5, 0).alert == 0, "a counted event read again is not counted");
  CHECK(th(s, "[\"g\"]", 14, NULL, T0 + 4000, 5, 0).alert == 1, "the group goes on from its count: the 5th alerts");
  th_state_free(s);

  FILE *f = fopen(path, "w");
  fputs("trailhound-rule-state 1\nc 5\ne 9 0 0 0 0\n\n", f);
  fclose(f);
  s = th_state_new(0);
  CHECK(th_state_load(s, path) == 3, "a damaged file names its line");
  th_state_free(s);
  unlink(path);
}

/* The same candidates decide the same whether sweeps ran between them or not: sweeps run on
 * the wall clock, and a replay must write the same alerts each time. Times out of order, as a
 * corpus that cycles old events has them. */
static void sweeps_change_nothing(void) {
  int a[64], b[64], same = 1;
  for (int pass = 0; pass < 2; pass++) {
    th_state *s = th_state_new(0);
    for (int i = 0; i < 64; i++) {
      char key[16];
      snprintf(key, sizeof key, "[\"%d\"]", i % 5);
      int64_t t = T0 + (int64_t)((i * 37) % 23) * DAY;
      int64_t g = T0 + (int64_t)((i * 11) % 9) * MIN;
      int r = nt(s, "r", 1, key, t).alert * 4 + th(s, key, 2000 + (uint64_t)i, NULL, g, 2, 0).alert * 2;
      (pass ? b : a)[i] = r;
      if (pass) th_state_sweep(s, UINT64_MAX);
    }
    th_state_free(s);
  }
  for (int i = 0; i < 64; i++) same &= a[i] == b[i];
  CHECK(same, "the same verdicts with a sweep after every candidate and with none");
}

int main(void) {
  sweeps_change_nothing();
  new_terms();
  touches();
  threshold();
  bounds();
  file();
  return TAP_END();
}
