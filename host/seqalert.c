/* seqalert.c: a completed sequence's alert texts (seqalert.h). */
#define _GNU_SOURCE
#include "seqalert.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limiter.h"
#include "worker/sha1.h"

void th_seqalert_uuid(const char *rule_id, const unsigned char *done, size_t len, int index, char out[37]) {
  size_t cap = strlen(rule_id) + 64, n = 0;
  size_t off = 0;
  th_seq_event ev;
  while (th_sequence_next(done, len, &off, &ev)) cap += 17;
  char *name = malloc(cap);
  unsigned char h[20] = {0};
  if (name) {
    n = (size_t)snprintf(name, cap, "%s|sequence|%d", rule_id, index);
    off = 0;
    while (th_sequence_next(done, len, &off, &ev) && n + 18 < cap)
      n += (size_t)snprintf(name + n, cap - n, "|%016" PRIx64, ev.ev);
    th_sha1(name, n, h);
    free(name);
  }
  h[6] = (unsigned char)((h[6] & 0x0f) | 0x50);  /* version 5 */
  h[8] = (unsigned char)((h[8] & 0x3f) | 0x80);  /* RFC 4122 variant */
  static const char hex[] = "0123456789abcdef";
  char *p = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) *p++ = '-';
    *p++ = hex[h[i] >> 4];
    *p++ = hex[h[i] & 15];
  }
  *p = '\0';
}

typedef struct mark_fill {
  const char *mark;            /* the marker's JSON text */
  const char *with;            /* what goes in its place */
  size_t wlen;
} mark_fill;

/* text with each marker (once in it, in any order) replaced. NULL: a
 * marker missing or twice, or out of memory. Caller frees. */
static char *replace(const char *text, size_t len, const mark_fill *sp, int n, size_t *out_len) {
  const char *at[4];
  size_t need = len;
  for (int i = 0; i < n; i++) {
    size_t ml = strlen(sp[i].mark);
    at[i] = memmem(text, len, sp[i].mark, ml);
    if (at[i] == NULL) return NULL;
    const char *again = at[i] + ml;
    if (memmem(again, len - (size_t)(again - text), sp[i].mark, ml)) return NULL;
    need = need - ml + sp[i].wlen;
  }
  char *doc = malloc(need + 1), *q = doc;
  if (doc == NULL) return NULL;
  const char *p = text, *end = text + len;
  while (p < end) {
    int next = -1;
    for (int i = 0; i < n; i++)
      if (at[i] >= p && (next < 0 || at[i] < at[next])) next = i;
    const char *stop = next < 0 ? end : at[next];
    memcpy(q, p, (size_t)(stop - p)), q += stop - p;
    if (next < 0) break;
    memcpy(q, sp[next].with, sp[next].wlen), q += sp[next].wlen;
    p = stop + strlen(sp[next].mark);
  }
  *q = '\0';
  *out_len = (size_t)(q - doc);
  return doc;
}

char *th_seqalert_block(const th_seq_event *ev, int index, const char *gid, const char *uuid, size_t *len) {
  char id[40], group[120];
  int il = snprintf(id, sizeof id, "\"%s\"", uuid);
  int gl = snprintf(group, sizeof group, "{\"id\":\"%s\",\"index\":%d}", gid, index);
  mark_fill sp[] = {{TH_SEQ_MARK_UUID, id, (size_t)il}, {TH_SEQ_MARK_GROUP, group, (size_t)gl}};
  return replace(ev->line, ev->llen, sp, 2, len);
}

char *th_seqalert_shell(const char *tmpl, size_t tlen, const unsigned char *done, size_t dlen, const char *gid,
                        size_t *len) {
  size_t off = 0, cap = 3;
  th_seq_event ev, first = {0};
  int n = 0;
  while (th_sequence_next(done, dlen, &off, &ev)) {
    if (n++ == 0) first = ev;
    cap += ev.alen + 1;
  }
  char *anc = malloc(cap), *q = anc;
  if (anc == NULL) return NULL;
  *q++ = '[';
  off = 0;
  for (int i = 0; th_sequence_next(done, dlen, &off, &ev); i++) {
    if (i) *q++ = ',';
    memcpy(q, ev.anc, ev.alen), q += ev.alen;
  }
  *q++ = ']';
  char id[40], group[80], t[44], iso[40];
  int il = snprintf(id, sizeof id, "\"%s\"", gid);
  int gl = snprintf(group, sizeof group, "{\"id\":\"%s\"}", gid);
  th_ms_iso(first.t, iso);
  int tl = snprintf(t, sizeof t, "\"%s\"", iso);
  mark_fill sp[] = {{TH_SEQ_MARK_UUID, id, (size_t)il},
                 {TH_SEQ_MARK_GROUP, group, (size_t)gl},
                 {TH_SEQ_MARK_ANCESTORS, anc, (size_t)(q - anc)},
                 {TH_SEQ_MARK_TIME, t, (size_t)tl}};
  char *doc = replace(tmpl, tlen, sp, 4, len);
  free(anc);
  return doc;
}
