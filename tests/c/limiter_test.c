/* limiter_test.c: event times, and the limiter's decisions on alerts as the
 * host hands them over (duplicates, max_signals windows, suppression and the
 * update it writes), read back from a real output queue. TAP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "limiter.h"
#include "outputs.h"
#include "tap.h"

static void iso_times(void) {
  CHECK(th_iso_ms("1970-01-01T00:00:00Z", 20) == 0, "the epoch");
  CHECK(th_iso_ms("2024-07-30T21:31:21Z", 20) == 1722375081000LL, "a CloudTrail eventTime");
  CHECK(th_iso_ms("2024-07-30T21:31:21.250Z", 24) == 1722375081250LL, "milliseconds");
  CHECK(th_iso_ms("2024-07-30T21:31:21.5Z", 22) == 1722375081500LL, "a tenth");
  CHECK(th_iso_ms("2024-07-30T23:31:21+02:00", 25) == 1722375081000LL, "an offset east");
  CHECK(th_iso_ms("2024-07-30T19:31:21-0200", 24) == 1722375081000LL, "an offset west, no colon");
  CHECK(th_iso_ms("2024-02-29T00:00:00Z", 20) == 1709164800000LL, "a leap day");
  CHECK(th_iso_ms("1969-12-31T23:59:59Z", 20) == -1000, "before the epoch");
  const char *bad[] = {"", "2024-07-30", "2024-07-30T21:31:21", "2024-13-01T00:00:00Z", "2024-07-30T21:31:21ZZ",
                       "2024-07-30T25:00:00Z", "2024-07-30T21:31:21.Z", "2024-07-30T21:31:21+2", "x024-07-30T21:31:21Z",
                       "2024-07-30T21:31:21+24:00"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK(th_iso_ms(bad[i], strlen(bad[i])) == -1, "not a time: '%s'", bad[i]);
}

/* An alert as a worker sends it: with suppression, its object in the text. */
typedef struct made {
  char text[512];
  th_limit_alert a;
} made;

static void make(made *m, const char *rule, const char *uuid, const char *ts, const char *user, uint32_t max,
                 uint32_t suppress_s) {
  memset(m, 0, sizeof *m);
  char group[64] = "", obj[160] = "";
  if (suppress_s) {
    snprintf(group, sizeof group, "[{\"field\":\"user.name\",\"value\":[\"%s\"]}]", user);
    snprintf(obj, sizeof obj, "{\"docs_count\":0,\"end\":\"%s\",\"start\":\"%s\",\"terms\":%s}", ts, ts, group);
  }
  int head = snprintf(m->text, sizeof m->text, "{\"kibana\":{\"alert\":{%s%s%s\"uuid\":\"%s\"}},\"user\":\"%s\"}",
                      suppress_s ? "\"suppression\":" : "", obj, suppress_s ? "," : "", uuid, user);
  m->a = (th_limit_alert){.rule_id = rule, .rule_name = rule, .ts = ts, .tlen = strlen(ts), .uuid = uuid,
                          .ulen = strlen(uuid), .severity = 5, .text = m->text, .len = (size_t)head,
                          .max_signals = max, .interval_s = 300, .suppress_s = suppress_s};
  if (suppress_s) {
    static char groups[8][64];
    static int next;
    char *g = groups[next++ % 8];
    memcpy(g, group, sizeof group);
    m->a.group = g;
    m->a.glen = strlen(g);
    m->a.at = (uint32_t)(strstr(m->text, "{\"docs_count\"") - m->text);
    m->a.slen = (uint32_t)strlen(obj);
  }
}

static int decide(th_limiter *l, const char *rule, const char *uuid, const char *ts, const char *user, uint32_t max,
                  uint32_t suppress_s) {
  made m;
  make(&m, rule, uuid, ts, user, max, suppress_s);
  return th_limiter_alert(l, &m.a);
}

static void progress(void *ud) { (void)ud; }

/* An alert's text as a string (the queue holds it without a NUL). */
static const char *text_of(const th_alert *a) {
  static char buf[1024];
  size_t n = a->len < sizeof buf - 1 ? a->len : sizeof buf - 1;
  memcpy(buf, a->text, n);
  buf[n] = '\0';
  return buf;
}

static void decisions(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  th_outputs out;
  char err[256];
  th_output_conf conf = {.spec = "file:/dev/null"};
  if (th_outputs_init(&out, &loop, &conf, 1, 1 << 20, err, sizeof err) < 0) {
    CHECK(0, "outputs: %s", err);
    return;
  }
  if (th_outputs_start(&out, progress, NULL, err, sizeof err) < 0) {
    CHECK(0, "outputs: %s", err);
    return;
  }
  th_limiter *l = th_limiter_new(&loop, &out, NULL, 0);

  CHECK(decide(l, "r", "u1", "2024-07-30T21:31:21Z", "a", 0, 0) == TH_LIMIT_WRITTEN, "an alert is written");
  CHECK(decide(l, "r", "u1", "2024-07-30T21:31:21Z", "a", 0, 0) == TH_LIMIT_DUPLICATE, "its uuid again is not");
  CHECK(th_outputs_next(&out) == 1, "one queued");

  /* max_signals 2 in 5m windows: 21:30-21:35 holds two, 21:35 opens another. */
  CHECK(decide(l, "m", "m1", "2024-07-30T21:31:00Z", "a", 2, 0) == TH_LIMIT_WRITTEN, "1st of the window");
  CHECK(decide(l, "m", "m2", "2024-07-30T21:34:59Z", "a", 2, 0) == TH_LIMIT_WRITTEN, "2nd of the window");
  CHECK(decide(l, "m", "m3", "2024-07-30T21:32:00Z", "a", 2, 0) == TH_LIMIT_HELD, "3rd held back");
  CHECK(decide(l, "m", "m4", "2024-07-30T21:35:00Z", "a", 2, 0) == TH_LIMIT_WRITTEN, "the next window");
  CHECK(decide(l, "other", "o1", "2024-07-30T21:31:00Z", "a", 2, 0) == TH_LIMIT_WRITTEN, "windows are per rule");
  CHECK(decide(l, "m", "m3", "2024-07-30T21:32:00Z", "a", 2, 0) == TH_LIMIT_DUPLICATE, "a held alert is known");

  /* The window a held alert was in, for the workers (proto.h, FULL); then alerts sent unbuilt. */
  made h;
  int64_t index = 0;
  make(&h, "m", "m3", "2024-07-30T21:32:00Z", "a", 2, 0);
  CHECK(th_limiter_window(l, &h.a, &index) == 0 && index == 5741250,  /* 1722375120000 ms / 300000 */
        "its window: 21:30 to 21:35, index %lld", (long long)index);
  h.a.max_signals = 0;
  CHECK(th_limiter_window(l, &h.a, &index) < 0, "no window without max_signals");
  make(&h, "m", "m5", "not a time", "a", 2, 0);
  CHECK(th_limiter_window(l, &h.a, &index) < 0, "nor without an event time");
  uint64_t queued = th_outputs_next(&out);
  make(&h, "m", "m5", "2024-07-30T21:33:00Z", "a", 2, 0);
  h.a.text = "";
  h.a.len = 0;
  CHECK(th_limiter_held(l, &h.a) == TH_LIMIT_HELD, "an unbuilt alert is held back");
  CHECK(th_limiter_held(l, &h.a) == TH_LIMIT_DUPLICATE, "and known: its uuid again is a duplicate");
  CHECK(decide(l, "m", "m6", "2024-07-30T21:33:00Z", "a", 2, 0) == TH_LIMIT_HELD, "the window is full still");
  make(&h, "m", "m1", "2024-07-30T21:31:00Z", "a", 2, 0);
  h.a.len = 0;
  CHECK(th_limiter_held(l, &h.a) == TH_LIMIT_DUPLICATE, "an unbuilt alert already written is a duplicate");
  CHECK(th_outputs_next(&out) == queued, "none of them queued");

  /* Suppression by user.name for 5 minutes. */
  uint64_t before = th_outputs_next(&out);
  CHECK(decide(l, "s", "s1", "2024-07-30T21:31:00Z", "alice", 0, 300) == TH_LIMIT_WRITTEN, "a group's first");
  CHECK(decide(l, "s", "s2", "2024-07-30T21:33:00Z", "alice", 0, 300) == TH_LIMIT_SUPPRESSED, "counted into it");
  CHECK(decide(l, "s", "s3", "2024-07-30T21:30:30Z", "alice", 0, 300) == TH_LIMIT_SUPPRESSED, "an earlier one too");
  CHECK(decide(l, "s", "s4", "2024-07-30T21:32:00Z", "bob", 0, 300) == TH_LIMIT_WRITTEN, "another group");
  CHECK(th_outputs_next(&out) == before + 2, "two written");
  CHECK(decide(l, "s", "s5", "2024-07-30T21:36:00Z", "alice", 0, 300) == TH_LIMIT_WRITTEN,
        "past the window: a new group, its first alert");
  /* The new group's alert came after the old group's count: an update of s1. */
  const th_alert *u = th_outputs_get(&out, before + 2);
  CHECK(u->update && strcmp(u->uuid, "s1") == 0, "the closed group's update, with its uuid");
  CHECK(strstr(text_of(u), "\"suppression\":{\"docs_count\":2,\"end\":\"2024-07-30T21:33:00.000Z\","
                        "\"start\":\"2024-07-30T21:30:30.000Z\",\"terms\":[{\"field\":\"user.name\","
                        "\"value\":[\"alice\"]}]},\"uuid\":\"s1\"}") != NULL,
        "with the count, the times and the terms in place: %s", text_of(u));
  const th_alert *f = th_outputs_get(&out, before + 3);
  CHECK(!f->update && strcmp(f->uuid, "s5") == 0, "then the new group's first alert");

  th_limit_totals t;
  th_limiter_totals(l, &t);
  CHECK(t.duplicates == 4 && t.held == 3 && t.suppressed == 2 && t.updates == 1 && t.groups == 3,
        "counted: %llu duplicates, %llu held, %llu suppressed, %llu updates, %llu groups",
        (unsigned long long)t.duplicates, (unsigned long long)t.held, (unsigned long long)t.suppressed,
        (unsigned long long)t.updates, (unsigned long long)t.groups);

  /* A stop writes what a group counted since it was last written. */
  decide(l, "s", "s6", "2024-07-30T21:37:00Z", "alice", 0, 300);
  uint64_t n = th_outputs_next(&out);
  th_limiter_flush(l);
  CHECK(th_outputs_next(&out) == n + 1, "the flush writes the one group with a new count");
  u = th_outputs_get(&out, n);
  CHECK(u->update && strcmp(u->uuid, "s5") == 0 && strstr(text_of(u), "\"docs_count\":1,") != NULL,
        "s5's group, with 1");

  th_limiter_close(l);
  th_outputs_close(&out);
  uv_run(&loop, UV_RUN_DEFAULT);
  th_limiter_free(l);
  th_outputs_free(&out);
  uv_loop_close(&loop);
}

int main(void) {
  iso_times();
  decisions();
  return TAP_END();
}
