/* prefilter_fuzz.c: the raw-bytes prefilter (host/prefilter.c) on any record
 * and any literals.
 *
 * The input is literals, one per line, then a NUL byte, then the record
 * (without a NUL, the last line is the record). Rule i requires literal i;
 * one more rule requires the first two at once (two clauses). What must hold:
 *
 *  - th_json_unescape never lengthens, and leaves text without a backslash
 *    as it is;
 *  - th_prefilter_pass agrees with a plain search: a record that does not
 *    look like one JSON object passes; else it passes exactly when
 *    some rule's every literal occurs in the unescaped text (memmem), so the
 *    automaton finds every occurrence, overlapping ones included;
 *  - the same inside a long object (padded with spaces), which is looked
 *    at in pieces at once (up to four, as the record's quotes fall), cut
 *    anywhere in the record; and in an object of four copies of the record,
 *    spaced at random, cut anywhere in the copies;
 *  - th_prefilter_rules agrees with the same search rule by rule: the bit of
 *    each rule whose every literal occurs (all of them for a record that is
 *    not an object), returning whether any is set; beside a rule that
 *    requires nothing too, every record passing and that rule's bit set;
 *  - th_prefilter_check accepts each rule's list and refuses it cut short.
 */
#define _GNU_SOURCE
#include <string.h>

#include "fuzz.h"
#include "prefilter.h"
#include "proto.h"

enum { MAX_LITS = 64 };

static int ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Checks th_prefilter_rules on record p against the plain search's found[]
 * (per literal; object: whether p looks like one), for nr rules (n literal
 * ones and, past them, the one of the first two literals), in pf and in
 * open, the same rules and one requiring nothing. */
static void check_rules(th_prefilter *pf, th_prefilter *open, const char *p, size_t len, const int *found,
                        size_t n, size_t nr, int object) {
  uint8_t set[MAX_LITS / 8 + 2], oset[MAX_LITS / 8 + 2];
  int any = th_prefilter_rules(pf, p, len, set);
  int oany = th_prefilter_rules(open, p, len, oset);
  int want_any = !object;  /* passed to be reported, rules or none */
  for (size_t r = 0; r < nr; r++) {
    int want = !object || (r < n ? found[r] : found[0] && found[1]);
    want_any |= want;
    FUZZ_CHECK(((set[r / 8] >> (r % 8)) & 1) == want, "rule %zu: bit %d, a plain search says %d", r,
               (set[r / 8] >> (r % 8)) & 1, want);
    FUZZ_CHECK(((oset[r / 8] >> (r % 8)) & 1) == want, "beside a rule requiring nothing, rule %zu: bit %d, not %d", r,
               (oset[r / 8] >> (r % 8)) & 1, want);
  }
  FUZZ_CHECK(any == want_any, "rules says %d, its bits %d", any, want_any);
  FUZZ_CHECK(oany == 1 && ((oset[nr / 8] >> (nr % 8)) & 1), "a rule that requires nothing is not met");
}

static int looks_like_object(const char *p, size_t n) {
  size_t a = 0, z = n;
  while (a < z && ws(p[a])) a++;
  while (z > a && ws(p[z - 1])) z--;
  return z - a >= 2 && p[a] == '{' && p[z - 1] == '}';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  const char *nul = memchr(in, '\0', size);
  const char *rec;
  size_t rlen, llen;
  if (nul) {
    llen = (size_t)(nul - in);
    rec = nul + 1;
    rlen = size - llen - 1;
  } else {
    const char *last = memrchr(in, '\n', size);
    llen = last ? (size_t)(last - in) : 0;
    rec = last ? last + 1 : in;
    rlen = size - (size_t)(rec - in);
  }
  const char *lit[MAX_LITS];
  size_t len[MAX_LITS], n = 0;
  for (const char *p = in; p < in + llen && n < MAX_LITS;) {
    const char *e = memchr(p, '\n', (size_t)(in + llen - p));
    size_t k = e ? (size_t)(e - p) : (size_t)(in + llen - p);
    if (k > 0) {
      lit[n] = p;
      len[n++] = k;
    }
    p += k + 1;
  }

  th_buf bufs[MAX_LITS + 2];
  th_pf_rule rules[MAX_LITS + 2];
  size_t nr = 0;
  for (size_t i = 0; i < n; i++, nr++) {
    th_buf_init(&bufs[nr]);
    th_buf_u32(&bufs[nr], 1);
    th_buf_u32(&bufs[nr], 1);
    th_buf_str(&bufs[nr], lit[i], len[i]);
    th_buf_u32(&bufs[nr], 0);  /* no conditions on fields */
  }
  if (n >= 2) {
    th_buf_init(&bufs[nr]);
    th_buf_u32(&bufs[nr], 2);
    for (int k = 0; k < 2; k++) {
      th_buf_u32(&bufs[nr], 1);
      th_buf_str(&bufs[nr], lit[k], len[k]);
    }
    th_buf_u32(&bufs[nr], 0);
    nr++;
  }
  for (size_t i = 0; i < nr; i++) {
    FUZZ_CHECK(!bufs[i].oom, "out of memory");
    rules[i] = (th_pf_rule){bufs[i].p, bufs[i].len};
    FUZZ_CHECK(th_prefilter_check(bufs[i].p, bufs[i].len) == 0, "rule %zu refused", i);
    FUZZ_CHECK(th_prefilter_check(bufs[i].p, bufs[i].len - 1) < 0, "rule %zu cut short accepted", i);
  }

  char *text = malloc(rlen + 1);
  FUZZ_CHECK(text != NULL, "out of memory");
  size_t tlen = th_json_unescape(rec, rlen, text);
  FUZZ_CHECK(tlen <= rlen, "unescaping lengthened %zu bytes to %zu", rlen, tlen);
  if (memchr(rec, '\\', rlen) == NULL)
    FUZZ_CHECK(tlen == rlen && memcmp(text, rec, rlen) == 0, "text without escapes changed");

  int want = 0;
  if (!looks_like_object(rec, rlen)) {
    want = 1;
  } else {
    for (size_t i = 0; i < n && !want; i++) want = memmem(text, tlen, lit[i], len[i]) != NULL;
  }
  th_prefilter *pf = th_prefilter_new(rules, nr, NULL);
  FUZZ_CHECK(pf != NULL, "no prefilter built");
  int got = th_prefilter_pass(pf, rec, rlen);
  FUZZ_CHECK(got == want, "pass %d, a plain search says %d (%zu literals, %zu bytes)", got, want, n, rlen);
  got = th_prefilter_pass(pf, rec, rlen);  /* again: stamps of the first scan must not count */
  FUZZ_CHECK(got == want, "a second look says %d, not %d", got, want);

  th_buf none;  /* a rule that requires nothing, after the others */
  th_buf_init(&none);
  th_buf_u32(&none, 0);
  th_buf_u32(&none, 0);
  FUZZ_CHECK(!none.oom, "out of memory");
  rules[nr] = (th_pf_rule){none.p, none.len};
  th_prefilter *open = th_prefilter_new(rules, nr + 1, NULL);
  FUZZ_CHECK(open != NULL, "no prefilter built");
  FUZZ_CHECK(th_prefilter_pass(open, rec, rlen), "beside a rule that requires nothing, a record is skipped");
  int found[MAX_LITS];
  for (size_t i = 0; i < n; i++) found[i] = memmem(text, tlen, lit[i], len[i]) != NULL;
  check_rules(pf, open, rec, rlen, found, n, nr, looks_like_object(rec, rlen));

  /* The record inside a long object, so that it is looked at in pieces, cut
   * anywhere in it: padding of spaces before and after. Then four copies of
   * it, spaced at random, looked at in four pieces. */
  fuzz_rng rng = fuzz_rng_of(data, size);
  for (int copies = 1; copies <= 4; copies += 3) {
    size_t fill = copies == 1 ? 2 * 256 + 256 + rlen : 0, gap[5];
    for (int i = 0; i <= copies && copies > 1; i++) fill += gap[i] = (size_t)fuzz_below(&rng, (uint32_t)rlen + 64);
    size_t before = copies == 1 ? fill / 2 + rlen / 2 - (rlen ? (size_t)fuzz_below(&rng, (uint32_t)rlen + 1) : 0) : 0;
    size_t plen = 2 + fill + copies * rlen;
    char *padded = malloc(plen), *ptext = malloc(plen);
    FUZZ_CHECK(padded && ptext, "out of memory");
    memset(padded, ' ', plen);
    padded[0] = '{';
    if (copies == 1) {
      memcpy(padded + 1 + before, rec, rlen);
    } else {
      size_t at = 1;
      for (int i = 0; i < copies; i++) {
        at += gap[i];
        memcpy(padded + at, rec, rlen);
        at += rlen;
      }
    }
    padded[plen - 1] = '}';
    size_t ptlen = th_json_unescape(padded, plen, ptext);
    want = 0;
    for (size_t i = 0; i < n && !want; i++) want = memmem(ptext, ptlen, lit[i], len[i]) != NULL;
    got = th_prefilter_pass(pf, padded, plen);
    FUZZ_CHECK(got == want, "in a long object of %d cop%s: pass %d, a plain search says %d (%zu bytes)", copies,
               copies == 1 ? "y" : "ies", got, want, plen);
    for (size_t i = 0; i < n; i++) found[i] = memmem(ptext, ptlen, lit[i], len[i]) != NULL;
    check_rules(pf, open, padded, plen, found, n, nr, 1);
    free(padded);
    free(ptext);
  }
  th_prefilter_free(pf);
  th_prefilter_free(open);
  th_buf_free(&none);
  free(text);
  for (size_t i = 0; i < nr; i++) th_buf_free(&bufs[i]);
  return 0;
}
