/* unpack.c: a stream of bytes, as it arrives, into records (see unpack.h).
 *
 * Two layers. th_unpack_step takes the bytes: plain, or inflated member by
 * member. The content that comes out goes to content(): NDJSON to the
 * framer, a document into `doc` until its unit (the plain input, or one
 * gzip member) ends.
 */
#include "unpack.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "log.h"  /* TH_PRINTF */

enum {
  OUT_CHUNK = 64 << 10,      /* one inflate call's output */
  DECIDE_MAX = 4096,         /* first bytes looked at to tell a document from NDJSON */
  DOC_KEEP = 1 << 20         /* a document buffer larger than this is freed once handed over */
};

enum { GZ_UNKNOWN, GZ_NO, GZ_YES, GZ_SKIP };
enum { K_UNDECIDED, K_LINES, K_WHOLE, K_SKIP };

/* A report, formatted. */
static void report(th_unpack *u, int what, const char *fmt, ...) TH_PRINTF(3, 4);
static void report(th_unpack *u, int what, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  u->o.on_report(u->o.ud, what, msg);
}

/* ---- the content --------------------------------------------------------------- */

static int blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* From the first bytes, as tfile.c's decide: JSON starting [ or {"Records" is
 * a whole document; anything else NDJSON; K_UNDECIDED while too few are in
 * (a byte order mark not whole yet counts as too few). Given at most
 * DECIDE_MAX bytes, and decided at DECIDE_MAX, so that the answer is the
 * same however the bytes came in. */
static int decide(const char *b, size_t n) {
  static const char bom[] = "\xEF\xBB\xBF";
  if (n < 3 && memcmp(b, bom, n) == 0) return K_UNDECIDED;
  size_t i = n >= 3 && memcmp(b, bom, 3) == 0 ? 3 : 0;
  while (i < n && blank(b[i])) i++;
  if (i == n) return n >= DECIDE_MAX ? K_LINES : K_UNDECIDED;
  if (b[i] == '[') return K_WHOLE;
  if (b[i] != '{') return K_LINES;
  size_t j = i + 1;
  while (j < n && blank(b[j])) j++;
  if (n - j < 9) return n >= DECIDE_MAX ? K_LINES : K_UNDECIDED;
  return memcmp(b + j, "\"Records\"", 9) == 0 ? K_WHOLE : K_LINES;
}

/* Append to doc. Returns 0, or -1 when it would hold more than max bytes or
 * memory is short. */
static int hold(th_unpack *u, const char *p, size_t n, size_t max) {
  size_t need = u->doc_len + n;
  if (need > max) return -1;
  if (need > u->doc_cap) {
    size_t cap = u->doc_cap ? u->doc_cap : (1u << 16);
    while (cap < need) cap *= 2;
    char *d = realloc(u->doc, cap);
    if (d == NULL) return -1;
    u->doc = d;
    u->doc_cap = cap;
  }
  if (n > 0) memcpy(u->doc + u->doc_len, p, n);
  u->doc_len = need;
  return 0;
}

/* NDJSON bytes to the framer (its offsets follow pos). */
static void frame(th_unpack *u, const char *p, size_t n) {
  if (th_framer_feed(&u->framer, p, n, u->o.on_line, u->o.ud) < 0) {
    report(u, TH_UNPACK_LINE_OOM, "read %s: out of memory at offset %llu; the line there is skipped", u->o.name,
           (unsigned long long)u->framer.pos);
    th_framer_reset(&u->framer, u->framer.pos + n);
  }
}

/* The document of the unit at hand is too large (or memory is short): it is
 * skipped to the end of its unit. */
static void skip(th_unpack *u) {
  report(u, TH_UNPACK_DOC_SKIPPED,
         "read %s: a document larger than %zu bytes (or out of memory) at offset %llu; skipped to its end",
         u->o.name, u->o.max_document, (unsigned long long)u->unit);
  u->kind = K_SKIP;
  u->doc_len = 0;
}

/* n bytes of content, at offset pos. Until the unit's kind is known, its
 * first bytes (DECIDE_MAX at most) are held in doc; max_document is for
 * documents alone. */
static void content(th_unpack *u, const char *p, size_t n) {
  if (n == 0) return;
  u->pos += n;
  if (u->kind == K_UNDECIDED) {
    size_t k = n < DECIDE_MAX - u->doc_len ? n : DECIDE_MAX - u->doc_len;
    if (hold(u, p, k, DECIDE_MAX) < 0) {
      skip(u);
      return;
    }
    if ((u->kind = decide(u->doc, u->doc_len)) == K_UNDECIDED) return;  /* k was n */
    p += k;
    n -= k;
    if (u->kind == K_LINES) {
      frame(u, u->doc, u->doc_len);
      u->doc_len = 0;
    } else if (u->doc_len > u->o.max_document) {
      skip(u);
      return;
    }
  }
  switch (u->kind) {
    case K_LINES:
      frame(u, p, n);
      return;
    case K_WHOLE:
      if (hold(u, p, n, u->o.max_document) < 0) skip(u);
      return;
    default:  /* K_SKIP */
      return;
  }
}

/* The unit at hand (the plain input, or one gzip member) is over: a last
 * line without its newline is a record, a document is handed over. The next
 * unit starts at pos. */
static void unit_end(th_unpack *u) {
  if (u->kind == K_UNDECIDED && u->doc_len > 0) frame(u, u->doc, u->doc_len);  /* too short to tell: lines */
  if (u->kind == K_UNDECIDED || u->kind == K_LINES) th_framer_finish(&u->framer, u->o.on_line, u->o.ud);
  if (u->kind == K_WHOLE) u->o.on_document(u->o.ud, u->doc, u->doc_len, u->unit, u->pos);
  if (u->kind == K_SKIP) u->o.on_document(u->o.ud, NULL, 0, u->unit, u->pos);
  th_framer_reset(&u->framer, u->pos);
  u->unit = u->pos;
  u->kind = K_UNDECIDED;
  u->doc_len = 0;
  if (u->doc_cap > DOC_KEEP) {
    free(u->doc);
    u->doc = NULL;
    u->doc_cap = 0;
  }
}

/* ---- the bytes ------------------------------------------------------------------ */

/* Inflate the n bytes at p; returns the content bytes it gave, and sets
 * *stuck when it cannot go on without more input. */
static size_t inflate_some(th_unpack *u, const char *p, size_t n, size_t *used, int *stuck) {
  z_stream *z = u->z;
  z->next_in = (unsigned char *)p;  /* inflate does not write through it */
  z->avail_in = n > UINT_MAX ? UINT_MAX : (unsigned)n;
  z->next_out = (unsigned char *)u->out;
  z->avail_out = OUT_CHUNK;
  int zr = inflate(z, Z_NO_FLUSH);
  size_t got = OUT_CHUNK - z->avail_out;
  *used = (size_t)(z->next_in - (unsigned char *)p);
  if (got > 0) content(u, u->out, got);
  if (zr == Z_STREAM_END) {  /* a member is over: another may follow */
    unit_end(u);
    u->members++;
    u->gz = GZ_UNKNOWN;
    inflateReset(z);
  } else if (zr == Z_DATA_ERROR || zr == Z_NEED_DICT || zr == Z_MEM_ERROR) {
    report(u, TH_UNPACK_DAMAGED, "read %s: %s (%s) after %llu bytes of content; the rest is skipped", u->o.name,
           zr == Z_MEM_ERROR ? "out of memory in gzip" : "damaged gzip", z->msg ? z->msg : "bad data",
           (unsigned long long)u->pos);
    unit_end(u);
    u->gz = GZ_SKIP;
  } else if (*used == 0 && got == 0) {
    *stuck = 1;  /* Z_BUF_ERROR: the rest of the member is not here yet */
  }
  return got;
}

void th_unpack_init(th_unpack *u, const th_unpack_opts *o) {
  memset(u, 0, sizeof *u);
  u->o = *o;
  th_framer_init(&u->framer, o->max_line, 0);
}

int th_unpack_step(th_unpack *u, const char *p, size_t n, int eof, uint64_t budget, size_t *used,
                   uint64_t *made) {
  const unsigned char *b = (const unsigned char *)p;
  *used = 0;
  *made = 0;
  if (u->gz == GZ_UNKNOWN) {
    if (n < 2 && !eof) return 1;
    if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
      if (u->z == NULL) {
        u->z = calloc(1, sizeof *u->z);
        if (u->out == NULL) u->out = malloc(OUT_CHUNK);
        if (u->z == NULL || u->out == NULL || inflateInit2(u->z, 15 + 16) != Z_OK) {  /* 16: gzip */
          free(u->z);
          u->z = NULL;
          report(u, TH_UNPACK_GZIP_OOM, "read %s: gzip, and out of memory to inflate it; skipped", u->o.name);
          u->gz = GZ_SKIP;
          return 0;
        }
      }
      u->gz = GZ_YES;
    } else if (u->members > 0) {
      report(u, TH_UNPACK_NOT_GZIP,
             "read %s: the bytes after gzip member %u (at byte %llu of the input) are no gzip; skipped", u->o.name,
             u->members, (unsigned long long)u->used);
      u->gz = GZ_SKIP;
    } else {
      u->gz = GZ_NO;
    }
  }
  if (u->gz == GZ_SKIP) {
    *used = n;
  } else if (u->gz == GZ_NO) {
    size_t k = n < budget ? n : (size_t)budget;
    content(u, p, k);
    *used = k;
    *made = k;
  } else {
    int stuck = 0;
    *made = inflate_some(u, p, n, used, &stuck);
    if (stuck) return 1;
  }
  u->used += *used;
  return 0;
}

void th_unpack_finish(th_unpack *u) {
  if (u->gz == GZ_YES)
    report(u, TH_UNPACK_TRUNCATED,
           "read %s: truncated gzip (unexpected end of input) after %llu bytes of content; reading what came before",
           u->o.name, (unsigned long long)u->pos);
  unit_end(u);
}

void th_unpack_free(th_unpack *u) {
  th_framer_free(&u->framer);
  if (u->z) inflateEnd(u->z);
  free(u->z);
  free(u->out);
  free(u->doc);
  memset(u, 0, sizeof *u);
}
