/* proto.c: writing and reading messages (see proto.h). */
#include "proto.h"

#include <stdlib.h>
#include <string.h>

void th_buf_init(th_buf *b) { memset(b, 0, sizeof *b); }

void th_buf_free(th_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static int reserve(th_buf *b, size_t n) {
  if (b->oom) return -1;
  if (b->len + n <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n) {
    if (cap > SIZE_MAX / 2) {
      b->oom = 1;
      return -1;
    }
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (p == NULL) {
    b->oom = 1;
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

void th_buf_bytes(th_buf *b, const void *p, size_t len) {
  if (len == 0 || reserve(b, len) < 0) return;
  memcpy(b->p + b->len, p, len);
  b->len += len;
}

void th_buf_u8(th_buf *b, uint8_t v) { th_buf_bytes(b, &v, 1); }
void th_buf_u32(th_buf *b, uint32_t v) { th_buf_bytes(b, &v, 4); }
void th_buf_u64(th_buf *b, uint64_t v) { th_buf_bytes(b, &v, 8); }

void th_buf_str(th_buf *b, const char *s, size_t len) {
  th_buf_u32(b, (uint32_t)len);
  th_buf_bytes(b, s, len);
}

void th_buf_cstr(th_buf *b, const char *s) { th_buf_str(b, s ? s : "", s ? strlen(s) : 0); }

/* The header goes at the start of the buffer: one frame per buffer. */
void th_buf_begin(th_buf *b, uint32_t type) {
  b->len = 0;
  th_buf_u32(b, type);
  th_buf_u32(b, 0);
  th_buf_u64(b, 0);
}

void th_buf_end(th_buf *b) {
  if (b->oom || b->len < TH_FRAME_HEADER) return;
  uint64_t n = b->len - TH_FRAME_HEADER;
  memcpy(b->p + 8, &n, 8);
}

void th_rd_init(th_rd *r, const char *p, size_t len) {
  r->p = p;
  r->len = len;
  r->pos = 0;
  r->bad = 0;
}

static const char *take(th_rd *r, size_t n) {
  if (r->bad || n > r->len - r->pos) {
    r->bad = 1;
    return NULL;
  }
  const char *p = r->p + r->pos;
  r->pos += n;
  return p;
}

uint8_t th_rd_u8(th_rd *r) {
  const char *p = take(r, 1);
  return p ? (uint8_t)*p : 0;
}

uint32_t th_rd_u32(th_rd *r) {
  uint32_t v = 0;
  const char *p = take(r, 4);
  if (p) memcpy(&v, p, 4);
  return v;
}

uint64_t th_rd_u64(th_rd *r) {
  uint64_t v = 0;
  const char *p = take(r, 8);
  if (p) memcpy(&v, p, 8);
  return v;
}

const char *th_rd_str(th_rd *r, size_t *len) {
  uint32_t n = th_rd_u32(r);
  const char *p = take(r, n);
  *len = p ? n : 0;
  return p ? p : (r->bad ? NULL : "");
}

char *th_rd_strdup(th_rd *r) {
  size_t n;
  const char *p = th_rd_str(r, &n);
  if (p == NULL) return NULL;
  char *s = malloc(n + 1);
  if (s == NULL) {
    r->bad = 1;
    return NULL;
  }
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

int th_frame_header(const char *h, uint32_t *type, uint64_t *length) {
  uint32_t zero;
  memcpy(type, h, 4);
  memcpy(&zero, h + 4, 4);
  memcpy(length, h + 8, 8);
  return zero == 0 && *length <= TH_FRAME_MAX ? 0 : -1;
}

int th_proto_check_batch(const char *p, size_t len, uint32_t nslots) {
  th_rd r;
  th_rd_init(&r, p, len);
  th_rd_u64(&r);  /* id */
  th_rd_u32(&r);  /* done */
  th_rd_u64(&r);  /* records */
  th_rd_u64(&r);  /* malformed */
  th_rd_u64(&r);  /* failed */
  uint32_t n = th_rd_u32(&r);
  size_t sl, line;
  uint32_t at;
  for (uint32_t i = 0; i < n && !r.bad; i++) {
    uint8_t kind = th_rd_u8(&r);
    th_rd_u32(&r);  /* record */
    switch (kind) {
      case TH_ITEM_ALERT:
        if (th_rd_u32(&r) >= nslots) return -1;
        th_rd_str(&r, &sl);  /* timestamp */
        th_rd_str(&r, &sl);  /* uuid */
        th_rd_u8(&r);        /* severity */
        th_rd_str(&r, &line);  /* the alert */
        for (int k = 0; k < 3; k++) th_rd_u32(&r);  /* max_signals, interval_s, suppress_s */
        th_rd_str(&r, &sl);  /* group */
        at = th_rd_u32(&r);  /* the suppression object: inside the alert */
        if (at + (uint64_t)th_rd_u32(&r) > line) return -1;
        break;
      case TH_ITEM_STATE:
        if (th_rd_u32(&r) >= nslots) return -1;
        th_rd_u8(&r);   /* type */
        th_rd_u64(&r);  /* fingerprint */
        th_rd_str(&r, &sl);  /* key */
        th_rd_str(&r, &sl);  /* distinct */
        for (int k = 0; k < 3; k++) th_rd_u32(&r);  /* window_s, value, cardinality */
        th_rd_str(&r, &sl);  /* cardinality field */
        th_rd_str(&r, &sl);  /* timestamp */
        th_rd_str(&r, &sl);  /* uuid */
        th_rd_u8(&r);        /* severity */
        th_rd_str(&r, &line);
        for (int k = 0; k < 3; k++) th_rd_u32(&r);
        th_rd_str(&r, &sl);  /* group */
        at = th_rd_u32(&r);
        if (at + (uint64_t)th_rd_u32(&r) > line) return -1;
        break;
      case TH_ITEM_LOG: th_rd_str(&r, &sl); break;
      case TH_ITEM_FAIL:
      case TH_ITEM_QUARANTINED:
        if (th_rd_u32(&r) >= nslots) return -1;
        th_rd_u32(&r);  /* load */
        th_rd_str(&r, &sl);
        break;
      default: return -1;
    }
  }
  n = th_rd_u32(&r);
  for (uint32_t i = 0; i < n && !r.bad; i++) {
    if (th_rd_u32(&r) >= nslots) return -1;
    th_rd_u64(&r);
    th_rd_u64(&r);
    th_rd_u64(&r);
  }
  return r.bad || r.pos != len ? -1 : 0;
}
