/* sequence_test.c: EQL sequences on the store (state.h, sequence.c) and
 * their alerts (seqalert.h): steps in order, maxspan, join keys kept apart,
 * until, `with runs` (repeated steps), the byte cap's eviction, the state
 * file with the acknowledged cut, a changed rule starting empty, and the
 * building blocks and shell made of a completed sequence. TAP. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seqalert.h"
#include "state.h"
#include "tap.h"

#define MIN 60000LL

static int64_t T0 = 1722375081000LL;  /* 2024-07-30T21:31:21Z */

static const char *LINE = "{\"kibana\":{\"alert\":{\"group\":" TH_SEQ_MARK_GROUP ",\"uuid\":" TH_SEQ_MARK_UUID "}}}";

/* Step `step` of a sequence of `n` (until: n) for key, event ev at t; with
 * 15 minutes of maxspan unless span says otherwise. Returns the verdict's
 * alert (the completed sequence's events counted in *events), -1 out of memory. */
static int seq_in(th_state *s, uint64_t fp, const char *key, uint32_t step, uint32_t n, uint64_t ev, int64_t t,
                  int64_t span, int *events) {
  char anc[64];
  snprintf(anc, sizeof anc, "{\"id\":\"e%llu\"}", (unsigned long long)ev);
  th_state_event e = {.rule_id = "seq", .fp = fp, .type = TH_STATE_SEQUENCE, .t = t, .key = key,
                      .klen = strlen(key), .ev = ev, .step = step, .nsteps = n, .span_ms = span,
                      .line = LINE, .llen = strlen(LINE), .anc = anc, .alen = strlen(anc)};
  th_state_verdict v;
  if (th_state_decide(s, &e, &v) < 0) return -1;
  th_state_written(s, 1);
  if (events) {
    *events = 0;
    size_t off = 0;
    th_seq_event x;
    while (th_sequence_next(v.done, v.done_len, &off, &x)) ++*events;
  }
  free(v.done);
  return v.alert;
}

static int seq(th_state *s, const char *key, uint32_t step, uint32_t n, uint64_t ev, int64_t t) {
  return seq_in(s, 1, key, step, n, ev, t, 15 * MIN, NULL);
}

static void order(void) {
  th_state *s = th_state_new(0);
  int events = 0;
  CHECK(seq(s, "[\"k\"]", 1, 2, 1, T0) == 0, "a second step with no first: nothing");
  CHECK(seq(s, "[\"k\"]", 0, 2, 2, T0 + MIN) == 0, "a first step: no alert yet");
  CHECK(seq_in(s, 1, "[\"k\"]", 1, 2, 3, T0 + 2 * MIN, 15 * MIN, &events) == 1 && events == 2,
        "the second step after it completes the sequence, of 2 events");
  CHECK(seq(s, "[\"k\"]", 1, 2, 4, T0 + 3 * MIN) == 0, "completed: its partial is gone");
  seq(s, "[\"k\"]", 0, 2, 5, T0 + 10 * MIN);
  CHECK(seq(s, "[\"k\"]", 1, 2, 6, T0 + 9 * MIN) == 0, "a second step earlier than the first: no sequence");
  CHECK(seq(s, "[\"k\"]", 1, 2, 7, T0 + 10 * MIN) == 1, "at the same time, after it in file order: a sequence");
  seq(s, "[\"k\"]", 0, 2, 8, T0 + 20 * MIN);
  CHECK(seq(s, "[\"k\"]", 1, 2, 8, T0 + 20 * MIN) == 0, "an event never follows itself");

  /* three steps: the latest partial per step, as Elasticsearch keeps them (a store of its own:
   * the clock is 20 minutes on, past the maxspan of partials that start at T0) */
  th_state_free(s);
  s = th_state_new(0);
  seq(s, "[\"3\"]", 0, 3, 10, T0);
  seq(s, "[\"3\"]", 1, 3, 11, T0 + MIN);
  CHECK(seq(s, "[\"3\"]", 1, 3, 12, T0 + 2 * MIN) == 0, "a second step with no partial at the first: nothing");
  seq(s, "[\"3\"]", 0, 3, 13, T0 + 3 * MIN);
  CHECK(seq_in(s, 1, "[\"3\"]", 2, 3, 14, T0 + 4 * MIN, 15 * MIN, &events) == 1 && events == 3,
        "the third step completes the partial at the second (3 events)");
  CHECK(seq(s, "[\"3\"]", 2, 3, 15, T0 + 5 * MIN) == 0, "the other partial is at the first step: no sequence");
  th_state_free(s);
}

static void maxspan_and_keys(void) {
  th_state *s = th_state_new(0);
  seq(s, "[\"a\"]", 0, 2, 1, T0);
  CHECK(seq(s, "[\"a\"]", 1, 2, 2, T0 + 16 * MIN) == 0, "16 minutes after the first: past the 15 of maxspan");
  seq(s, "[\"a\"]", 0, 2, 3, T0 + 20 * MIN);
  CHECK(seq(s, "[\"a\"]", 1, 2, 4, T0 + 35 * MIN) == 1, "15 minutes exactly: within maxspan");
  CHECK(seq_in(s, 1, "[\"b\"]", 0, 2, 5, T0, 0, NULL) == 0 && seq_in(s, 1, "[\"b\"]", 1, 2, 6, T0 + 1000 * MIN, 0, NULL) == 1,
        "without maxspan, any time later");
  th_state_free(s);  /* the clock is 1000 minutes on: a store of its own for the next */
  s = th_state_new(0);
  seq(s, "[\"x\"]", 0, 2, 7, T0);
  CHECK(seq(s, "[\"y\"]", 1, 2, 8, T0 + MIN) == 0, "keys do not mix");
  CHECK(seq(s, "[\"x\"]", 1, 2, 9, T0 + MIN) == 1, "... the right key completes");
  th_state_free(s);
}

static void until_and_runs(void) {
  th_state *s = th_state_new(0);
  seq(s, "[\"u\"]", 0, 2, 1, T0);
  CHECK(seq(s, "[\"u\"]", 2, 2, 2, T0 + MIN) == 0, "until: no alert of its own");
  CHECK(seq(s, "[\"u\"]", 1, 2, 3, T0 + 2 * MIN) == 0, "after until, the partial is gone");
  seq(s, "[\"v\"]", 0, 2, 4, T0);
  seq(s, "[\"u\"]", 2, 2, 5, T0 + MIN);
  CHECK(seq(s, "[\"v\"]", 1, 2, 6, T0 + 2 * MIN) == 1, "until drops its own key's partials only");

  /* [a] with runs=3, [b]: steps a, a, a, b; an a event is sent for steps 2, 1, 0 (highest first) */
  int events = 0;
  for (uint64_t i = 0; i < 3; i++)
    for (int k = 2; k >= 0; k--) seq(s, "[\"r\"]", (uint32_t)k, 4, 10 + i, T0 + (int64_t)i * MIN);
  CHECK(seq_in(s, 1, "[\"r\"]", 3, 4, 20, T0 + 4 * MIN, 15 * MIN, &events) == 1 && events == 4,
        "runs=3: three a events then b complete (4 events)");
  for (uint64_t i = 0; i < 2; i++)
    for (int k = 2; k >= 0; k--) seq(s, "[\"r2\"]", (uint32_t)k, 4, 30 + i, T0 + (int64_t)i * MIN);
  CHECK(seq(s, "[\"r2\"]", 3, 4, 40, T0 + 4 * MIN) == 0, "runs=3 with two a events: no sequence");
  th_state_free(s);
}

static void bounds(void) {
  th_state *s = th_state_new(64 * 1024);
  char key[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(key, sizeof key, "[\"k%d\"]", i);
    seq(s, key, 0, 2, (uint64_t)i + 1, T0 + i);
  }
  th_state_counts c;
  th_state_totals(s, &c);
  CHECK(c.bytes <= 64 * 1024 && c.evicted > 0, "the cap holds: %llu bytes, %llu evicted",
        (unsigned long long)c.bytes, (unsigned long long)c.evicted);
  CHECK(seq(s, "[\"k0\"]", 1, 2, 5000, T0 + 2000) == 0, "the least recently used partial went");
  CHECK(seq(s, "[\"k999\"]", 1, 2, 5001, T0 + 2000) == 1, "the newest is there");
  th_state_free(s);

  s = th_state_new(0);
  seq(s, "[\"old\"]", 0, 2, 1, T0);
  seq(s, "[\"new\"]", 0, 2, 2, T0 + 30 * MIN);
  th_state_sweep(s, UINT64_MAX);
  th_state_totals(s, &c);
  CHECK(c.entries == 1 && c.expired == 1, "a partial past its maxspan expires at the sweep");
  th_state_free(s);
}

static void file(void) {
  char path[] = "/tmp/th-seq-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  th_state *s = th_state_new(0);
  seq(s, "[\"kept\"]", 0, 3, 1, T0);
  seq(s, "[\"kept\"]", 1, 3, 2, T0 + MIN);
  seq(s, "[\"done\"]", 0, 2, 3, T0);
  seq(s, "[\"done\"]", 1, 2, 4, T0 + MIN);
  seq(s, "[\"acked\"]", 0, 2, 5, T0);
  th_state_event e = {.rule_id = "seq", .fp = 1, .type = TH_STATE_SEQUENCE, .t = T0 + MIN, .key = "[\"acked\"]",
                      .klen = 9, .ev = 6, .step = 1, .nsteps = 2, .span_ms = 15 * MIN, .line = LINE,
                      .llen = strlen(LINE), .anc = "{}", .alen = 2};
  th_state_verdict v;
  th_state_decide(s, &e, &v);
  free(v.done);
  th_state_written(s, 3);
  /* "done" completed at position 1 (seq()), acknowledged; "acked" at 3: not
   * acknowledged at 2 */
  CHECK(th_state_save(s, path, 2) == 0, "saved, acknowledged up to 2");
  th_state_free(s);

  s = th_state_new(0);
  CHECK(th_state_load(s, path) == 0, "read back");
  int events = 0;
  CHECK(seq_in(s, 1, "[\"kept\"]", 2, 3, 7, T0 + 2 * MIN, 15 * MIN, &events) == 1 && events == 3,
        "a partial survives the file: its third step completes it, with the two events before");
  CHECK(seq(s, "[\"done\"]", 1, 2, 4, T0 + MIN) == 0, "a sequence whose alerts were delivered is not made again");
  CHECK(seq(s, "[\"acked\"]", 1, 2, 6, T0 + MIN) == 1,
        "one whose alerts were not delivered is made again when its last event is read again");
  th_state_free(s);

  s = th_state_new(0);
  th_state_load(s, path);
  e.fp = 2;
  th_state_decide(s, &e, &v);
  CHECK(v.cleared && v.cleared_entries >= 1 && !v.alert, "a changed query (fingerprint) drops the partials (%llu)",
        (unsigned long long)v.cleared_entries);
  CHECK(seq_in(s, 2, "[\"kept\"]", 2, 3, 7, T0 + 2 * MIN, 15 * MIN, NULL) == 0, "... the new version starts empty");
  th_state_free(s);

  FILE *f = fopen(path, "w");
  fputs("trailhound-rule-state 1\nc 5\np 0 3 0000000000000001 3\nseq\ne 0 1 0 0 4\nabcd\n", f);
  fclose(f);
  s = th_state_new(0);
  CHECK(th_state_load(s, path) == 5, "a damaged partial names its line");
  th_state_free(s);
  unlink(path);
}

static void alerts(void) {
  th_state *s = th_state_new(0);
  seq(s, "[\"k\"]", 0, 2, 1, T0);
  th_state_event e = {.rule_id = "seq", .fp = 1, .type = TH_STATE_SEQUENCE, .t = T0 + MIN, .key = "[\"k\"]",
                      .klen = 5, .ev = 2, .step = 1, .nsteps = 2, .span_ms = 15 * MIN, .line = LINE,
                      .llen = strlen(LINE), .anc = "{\"id\":\"e2\"}", .alen = 11};
  th_state_verdict v;
  th_state_decide(s, &e, &v);
  char gid[37], b0[37], b1[37], again[37];
  th_seqalert_uuid("seq", v.done, v.done_len, -1, gid);
  th_seqalert_uuid("seq", v.done, v.done_len, 0, b0);
  th_seqalert_uuid("seq", v.done, v.done_len, 1, b1);
  th_seqalert_uuid("seq", v.done, v.done_len, -1, again);
  CHECK(strlen(gid) == 36 && gid[14] == '5' && strcmp(gid, again) == 0 && strcmp(gid, b0) && strcmp(b0, b1),
        "uuids: version 5, the same for the same events, one per alert (%s)", gid);
  size_t off = 0, len;
  th_seq_event ev;
  th_sequence_next(v.done, v.done_len, &off, &ev);
  char *doc = th_seqalert_block(&ev, 0, gid, b0, &len);
  char want[300];
  snprintf(want, sizeof want, "{\"kibana\":{\"alert\":{\"group\":{\"id\":\"%s\",\"index\":0},\"uuid\":\"%s\"}}}", gid,
           b0);
  CHECK(doc && strcmp(doc, want) == 0 && len == strlen(want), "a building block: its group and uuid written in");
  free(doc);
  const char *shell = "{\"a\":" TH_SEQ_MARK_ANCESTORS ",\"g\":" TH_SEQ_MARK_GROUP ",\"t\":" TH_SEQ_MARK_TIME
                      ",\"u\":" TH_SEQ_MARK_UUID "}";
  doc = th_seqalert_shell(shell, strlen(shell), v.done, v.done_len, gid, &len);
  snprintf(want, sizeof want,
           "{\"a\":[{\"id\":\"e1\"},{\"id\":\"e2\"}],\"g\":{\"id\":\"%s\"},\"t\":\"2024-07-30T21:31:21.000Z\",\"u\":\"%s\"}",
           gid, gid);
  CHECK(doc && strcmp(doc, want) == 0, "the shell: the events' ancestors, the group id, the first event's time");
  free(doc);
  CHECK(th_seqalert_shell("{}", 2, v.done, v.done_len, gid, &len) == NULL, "a text without its markers: no alert");
  free(v.done);
  th_state_free(s);
}

int main(void) {
  order();
  maxspan_and_keys();
  until_and_runs();
  bounds();
  file();
  alerts();
  return TAP_END();
}
