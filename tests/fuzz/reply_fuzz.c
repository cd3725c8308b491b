/* reply_fuzz.c: the host's check of a worker's BATCH reply
 * (th_proto_check_batch, host/proto.c). A worker is not trusted: a rule that
 * escapes the Lua sandbox could write anything on its pipe, and the host
 * reads every reply before it writes an alert of it.
 *
 * The input is used two ways:
 *
 *  - as a reply payload itself: the check reads only its bytes, and when it
 *    accepts them, a reader that walks the payload the way dispatch.c's
 *    write_batch does ends exactly at its end, without a bad read, every
 *    rule slot below the limit;
 *  - as the choices that build a well-formed reply (items of every kind,
 *    stateful rules' candidates too, strings of any length, counters): the
 *    check must accept it, and refuse it cut short anywhere, with a byte
 *    added, or with a slot at the limit.
 */
#include <string.h>

#include "fuzz.h"
#include "proto.h"

/* Walk an accepted payload as the writer of alerts does. */
static void walk(const char *p, size_t len, uint32_t nslots) {
  th_rd r;
  th_rd_init(&r, p, len);
  th_rd_u64(&r);
  th_rd_u32(&r);
  for (int i = 0; i < 3; i++) th_rd_u64(&r);
  uint32_t n = th_rd_u32(&r);
  size_t sl;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t kind = th_rd_u8(&r);
    th_rd_u32(&r);
    if (kind != TH_ITEM_LOG) FUZZ_CHECK(th_rd_u32(&r) < nslots, "a slot past the limit was accepted");
    if (kind == TH_ITEM_FAIL || kind == TH_ITEM_QUARANTINED) th_rd_u32(&r);  /* load */
    if (kind == TH_ITEM_STATE) {  /* type, fingerprint, key, distinct, parameters, field: then an alert's */
      th_rd_u8(&r);
      th_rd_u64(&r);
      FUZZ_CHECK(th_rd_str(&r, &sl) != NULL && th_rd_str(&r, &sl) != NULL, "a key past the end");
      for (int k = 0; k < 3; k++) th_rd_u32(&r);
      FUZZ_CHECK(th_rd_str(&r, &sl) != NULL, "a cardinality field past the end");
    }
    FUZZ_CHECK(th_rd_str(&r, &sl) != NULL, "a string past the end was accepted");
    if (kind == TH_ITEM_ALERT || kind == TH_ITEM_STATE) {  /* uuid, severity, the alert, its limits */
      FUZZ_CHECK(th_rd_str(&r, &sl) != NULL, "a uuid past the end");
      th_rd_u8(&r);
      size_t line;
      FUZZ_CHECK(th_rd_str(&r, &line) != NULL, "an alert line past the end");
      for (int k = 0; k < 3; k++) th_rd_u32(&r);
      FUZZ_CHECK(th_rd_str(&r, &sl) != NULL, "a group past the end");
      uint32_t at = th_rd_u32(&r), slen = th_rd_u32(&r);
      FUZZ_CHECK((uint64_t)at + slen <= line, "a suppression object outside its alert was accepted");
    }
  }
  n = th_rd_u32(&r);
  for (uint32_t i = 0; i < n; i++) {
    FUZZ_CHECK(th_rd_u32(&r) < nslots, "a counter's slot past the limit was accepted");
    for (int k = 0; k < 3; k++) th_rd_u64(&r);
  }
  FUZZ_CHECK(!r.bad && r.pos == len, "accepted, but the walk ends at %zu of %zu (bad %d)", r.pos, len, r.bad);
}

static int check(const char *p, size_t len, uint32_t nslots) {
  char *c = fuzz_dup(p, len);  /* exactly len bytes: ASan sees a read past them */
  int rc = th_proto_check_batch(c, len, nslots);
  FUZZ_CHECK(rc == 0 || rc == -1, "returned %d", rc);
  if (rc == 0) walk(c, len, nslots);
  free(c);
  return rc;
}

/* A well-formed reply from the choices in r; *last_slot: where the last slot
 * written sits in the buffer (or 0 if none), so that it can be spoiled. */
static void build(th_buf *b, fuzz_rng *r, uint32_t nslots, size_t *last_slot) {
  char text[300];
  for (size_t i = 0; i < sizeof text; i++) text[i] = (char)('a' + fuzz_below(r, 26));
  *last_slot = 0;
  th_buf_u64(b, fuzz_next(r));
  th_buf_u32(b, (uint32_t)fuzz_below(r, 2000));
  for (int i = 0; i < 3; i++) th_buf_u64(b, fuzz_next(r));
  uint32_t n = (uint32_t)fuzz_below(r, 12);
  th_buf_u32(b, n);
  for (uint32_t i = 0; i < n; i++) {
    uint8_t kind = (uint8_t)(1 + fuzz_below(r, 5));
    th_buf_u8(b, kind);
    th_buf_u32(b, (uint32_t)fuzz_below(r, 1000));
    if (kind != TH_ITEM_LOG) {
      *last_slot = b->len;
      th_buf_u32(b, (uint32_t)fuzz_below(r, nslots));
    }
    if (kind == TH_ITEM_FAIL || kind == TH_ITEM_QUARANTINED) th_buf_u32(b, (uint32_t)fuzz_next(r));
    if (kind == TH_ITEM_STATE) {
      th_buf_u8(b, (uint8_t)fuzz_below(r, 4));
      th_buf_u64(b, fuzz_next(r));
      th_buf_str(b, text, (size_t)fuzz_below(r, 64));
      th_buf_str(b, text, (size_t)fuzz_below(r, 16));
      for (int k = 0; k < 3; k++) th_buf_u32(b, (uint32_t)fuzz_next(r));
      th_buf_str(b, text, (size_t)fuzz_below(r, 16));
    }
    th_buf_str(b, text, (size_t)fuzz_below(r, sizeof text));
    if (kind == TH_ITEM_ALERT || kind == TH_ITEM_STATE) {
      th_buf_str(b, text, (size_t)fuzz_below(r, 37));
      th_buf_u8(b, (uint8_t)fuzz_below(r, 8));
      size_t line = (size_t)fuzz_below(r, sizeof text);
      th_buf_str(b, text, line);
      for (int k = 0; k < 3; k++) th_buf_u32(b, (uint32_t)fuzz_next(r));
      th_buf_str(b, text, (size_t)fuzz_below(r, 64));
      uint32_t at = (uint32_t)fuzz_below(r, line + 1);
      th_buf_u32(b, at);
      th_buf_u32(b, (uint32_t)fuzz_below(r, line - at + 1));
    }
  }
  n = (uint32_t)fuzz_below(r, 6);
  th_buf_u32(b, n);
  for (uint32_t i = 0; i < n; i++) {
    *last_slot = b->len;
    th_buf_u32(b, (uint32_t)fuzz_below(r, nslots));
    for (int k = 0; k < 3; k++) th_buf_u64(b, fuzz_next(r));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_rng r = fuzz_rng_of(data, size);
  uint32_t nslots = (uint32_t)(1 + fuzz_below(&r, 8));
  check((const char *)data, size, nslots);

  th_buf b;
  th_buf_init(&b);
  size_t last_slot;
  build(&b, &r, nslots, &last_slot);
  FUZZ_CHECK(!b.oom, "out of memory");
  FUZZ_CHECK(check(b.p, b.len, nslots) == 0, "a well-formed reply of %zu bytes was refused", b.len);
  size_t cut = (size_t)fuzz_below(&r, b.len);
  FUZZ_CHECK(check(b.p, cut, nslots) == -1, "a reply cut to %zu of %zu bytes was accepted", cut, b.len);
  th_buf_u8(&b, (uint8_t)fuzz_next(&r));
  FUZZ_CHECK(check(b.p, b.len, nslots) == -1, "a reply with a byte after its end was accepted");
  b.len--;
  if (last_slot) {
    memcpy(b.p + last_slot, &nslots, 4);  /* one past the last rule */
    FUZZ_CHECK(check(b.p, b.len, nslots) == -1, "a slot equal to the number of rules was accepted");
  }
  th_buf_free(&b);
  return 0;
}
