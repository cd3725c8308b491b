/* stdin_fuzz.c: standard input's bytes into records (host/unpack.c), what
 * `trailhound run -` does with whatever is piped into it, in whatever pieces
 * it comes.
 *
 * The input is standard input's bytes. They are fed as they are, and gzipped
 * here with zlib: in one member, in several (what `cat *.gz |` makes), with
 * bytes after the last member, cut short, and with a byte changed. Each is
 * fed as stdin.c feeds it: in pieces (one, random ones, byte by byte), a step
 * at a time with a random budget, what a step leaves given again with the
 * next piece, then the end of input in a step of its own. Every piece is in
 * a block of its own size, so a read past it is caught. max_line and
 * max_document are picked near the lengths of the input's lines and units.
 * What must hold:
 *
 *  - the records (lines, over-long lines skipped, documents, documents too
 *    large skipped) with their offsets and bytes, and the reports with their
 *    messages, are the same however the bytes were cut and whatever the
 *    budgets;
 *  - they are what a reference written from unpack.h says: the units are the
 *    plain input, or zlib's one-shot inflate of each member in turn (up to
 *    damage or the end); each unit is a document when its first 4096 bytes
 *    say so (else NDJSON, framed as framer.h says), skipped when larger than
 *    max_document; reports for that, damage, a cut, bytes that are no gzip;
 *  - the input gzipped in one member gives the very records of the input
 *    itself (offsets count content); in several, those of each member's
 *    content as a unit; with bytes that are no gzip after it, the same and a
 *    report; cut short, those of a prefix of the content and a report;
 *    with a byte changed, the content itself or a report, never a bad read;
 *  - every byte is accounted for: every input byte is worked off by the end,
 *    and every content byte is in one record, skipped line or skipped
 *    document, or else in a blank line;
 *  - no record is longer than max_line, no document than max_document;
 *  - a step uses no more than it is given, makes no more than its budget
 *    (plain) or 64 KiB (gzip), and is starved only with no end of input.
 */
#include <inttypes.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "unpack.h"

enum { E_LINE, E_LONG, E_DOC, E_BIGDOC, E_REPORT };

typedef struct ev {
  int type;       /* E_* */
  int what;       /* a report's TH_UNPACK_* */
  uint64_t off;   /* where it starts in the content */
  uint64_t end;   /* just after it (0 for E_LONG, E_REPORT) */
  size_t len;     /* a line's content length, a document's length */
  size_t txt;     /* its bytes (a line's as read, a document, a message) in the arena */
  size_t tlen;
} ev;

/* What one feeding gave, or what the reference says. */
typedef struct res {
  ev *e;
  size_t n, cap;
  char *arena;        /* the events' bytes */
  size_t alen, acap;
  uint64_t pos;       /* content bytes made */
  uint64_t used;      /* input bytes worked off */
} res;

static void keep(res *r, const char *p, size_t n, ev *e) {
  if (r->alen + n > r->acap || r->arena == NULL) {  /* never NULL once an event is in: arena + txt */
    while (r->alen + n > r->acap || r->acap == 0) r->acap = r->acap ? r->acap * 2 : 4096;
    r->arena = realloc(r->arena, r->acap);
    if (r->arena == NULL) abort();
  }
  if (n > 0) memcpy(r->arena + r->alen, p, n);
  e->txt = r->alen;
  e->tlen = n;
  r->alen += n;
}

static void add(res *r, int type, int what, uint64_t off, uint64_t end, size_t len, const char *p, size_t plen) {
  if (r->n == r->cap) {
    r->cap = r->cap ? r->cap * 2 : 64;
    r->e = realloc(r->e, r->cap * sizeof *r->e);
    if (r->e == NULL) abort();
  }
  ev *e = &r->e[r->n++];
  *e = (ev){type, what, off, end, len, 0, 0};
  keep(r, p, plen, e);
}

static void res_free(res *r) {
  free(r->e);
  free(r->arena);
  memset(r, 0, sizeof *r);
}

/* ---- feeding unpack.c as stdin.c does ------------------------------------------------ */

static void on_line(void *ud, const char *line, size_t len, uint64_t off, uint64_t end) {
  res *r = ud;
  if (line == NULL) {  /* len: as much as was known when it was found too long */
    FUZZ_CHECK(end == 0, "a skipped line at %" PRIu64 " has end %" PRIu64, off, end);
    add(r, E_LONG, 0, off, 0, 0, NULL, 0);
    return;
  }
  FUZZ_CHECK(end > off && len <= end - off, "line [%" PRIu64 ", %" PRIu64 ") with len %zu", off, end, len);
  add(r, E_LINE, 0, off, end, len, line, (size_t)(end - off));
}

static void on_document(void *ud, const char *buf, size_t len, uint64_t off, uint64_t end) {
  res *r = ud;
  FUZZ_CHECK(end >= off, "document [%" PRIu64 ", %" PRIu64 ")", off, end);
  if (buf == NULL) {
    add(r, E_BIGDOC, 0, off, end, 0, NULL, 0);
    return;
  }
  FUZZ_CHECK(len == end - off, "document [%" PRIu64 ", %" PRIu64 ") of %zu bytes", off, end, len);
  add(r, E_DOC, 0, off, end, len, buf, len);
}

static void on_report(void *ud, int what, const char *msg) {
  res *r = ud;
  FUZZ_CHECK(what >= TH_UNPACK_LINE_OOM && what <= TH_UNPACK_TRUNCATED && msg != NULL && msg[0] != '\0',
             "report %d", what);
  FUZZ_CHECK(what != TH_UNPACK_LINE_OOM && what != TH_UNPACK_GZIP_OOM, "out of memory: %s", msg);
  add(r, E_REPORT, what, 0, 0, 0, msg, strlen(msg));
}

typedef struct limits {
  size_t max_line, max_doc;
} limits;

enum { ONE, PIECES, BYTES };  /* how the input is cut */
static const char *HOW[] = {"in one piece", "in random pieces", "byte by byte"};

/* Steps over in[*at .. fed) until it is all worked off or a step is starved.
 * one: a block of one byte. */
static void pump(th_unpack *u, const uint8_t *in, size_t *at, size_t fed, int eof, int how, fuzz_rng *rng,
                 char *one) {
  int idle = 0;
  while (*at < fed) {
    size_t n = fed - *at, used;
    uint64_t made, budget;
    switch (how == ONE ? 0 : fuzz_below(rng, 4)) {
      case 0: budget = 1 << 20; break;  /* stdin.c's turn */
      case 1: budget = 1 + fuzz_below(rng, 8); break;
      case 2: budget = 1 + fuzz_below(rng, 600); break;
      default: budget = 4096; break;
    }
    if (n > 1024 && budget < 64) budget = 64;  /* a small budget on a large piece: slow, and no different */
    /* Exactly n bytes: ASan sees a read past them (one block for all single bytes). */
    char *p = n == 1 ? one : fuzz_dup(in + *at, n);
    if (n == 1) *one = (char)in[*at];
    uint64_t pos = u->pos;
    int starved = th_unpack_step(u, p, n, eof, budget, &used, &made);
    if (p != one) free(p);
    FUZZ_CHECK(used <= n, "a step used %zu of %zu bytes", used, n);
    FUZZ_CHECK(u->pos - pos == made, "a step made %" PRIu64 " bytes and said %" PRIu64, u->pos - pos, made);
    FUZZ_CHECK(made <= budget || made <= (64u << 10), "a step made %" PRIu64 " bytes, its budget %" PRIu64, made,
               budget);
    if (starved) {
      FUZZ_CHECK(used == 0 && made == 0, "a starved step used %zu bytes and made %" PRIu64, used, made);
      FUZZ_CHECK(!eof, "a step is starved at the end of input, with %zu bytes held", n);
      return;
    }
    *at += used;
    idle = used == 0 && made == 0 ? idle + 1 : 0;
    FUZZ_CHECK(idle < 3, "steps make no progress on %zu bytes", n);
  }
}

static int by_value(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return x < y ? -1 : x > y;
}

/* Feed in[0..n) cut as how says; the result in *r (caller frees). */
static void feed(const uint8_t *in, size_t n, const limits *l, int how, fuzz_rng *rng, res *r) {
  memset(r, 0, sizeof *r);
  th_unpack_opts o = {.name = "standard input", .max_line = l->max_line, .max_document = l->max_doc,
                      .on_line = on_line, .on_document = on_document, .on_report = on_report, .ud = r};
  th_unpack u;
  th_unpack_init(&u, &o);
  size_t ncuts = how == ONE ? 0 : how == BYTES ? n : (size_t)fuzz_below(rng, n < 64 ? n + 1 : 65);
  size_t *cuts = malloc((ncuts + 1) * sizeof *cuts);
  if (cuts == NULL) abort();
  for (size_t i = 0; i < ncuts; i++) cuts[i] = how == BYTES ? i + 1 : (size_t)fuzz_below(rng, n + 1);
  if (how == PIECES) qsort(cuts, ncuts, sizeof *cuts, by_value);  /* equal cuts: a read of nothing */
  size_t at = 0;
  char *one = fuzz_dup("", 1);
  for (size_t i = 0; i < ncuts; i++) pump(&u, in, &at, cuts[i], 0, how, rng, one);
  pump(&u, in, &at, n, 0, how, rng, one);
  pump(&u, in, &at, n, 1, how, rng, one);  /* read(2) gave 0: the end, in a turn of its own */
  th_unpack_finish(&u);
  free(one);
  free(cuts);
  r->pos = u.pos;
  r->used = u.used;
  th_unpack_free(&u);
}

/* ---- the reference, from unpack.h ------------------------------------------------------ */

typedef struct unit {
  uint64_t start, end;  /* in the content */
} unit;

/* The content of an input and its units, as zlib's one-shot inflate says. */
typedef struct content {
  uint8_t *c;
  size_t len, cap;
  unit *u;
  size_t nu;
  int why;        /* a report ending it: TH_UNPACK_DAMAGED, _TRUNCATED, _NOT_GZIP, or 0 */
} content;

static void grow(content *c, size_t need) {
  if (need <= c->cap) return;
  while (c->cap < need) c->cap = c->cap ? c->cap * 2 : 4096;
  c->c = realloc(c->c, c->cap);
  if (c->c == NULL) abort();
}

static void unit_add(content *c, uint64_t start) {
  c->u = realloc(c->u, (c->nu + 1) * sizeof *c->u);
  if (c->u == NULL) abort();
  c->u[c->nu++] = (unit){start, c->len};
}

/* Inflate the member at in[0..n) whole; returns the bytes it took. */
static size_t inflate_member(const uint8_t *in, size_t n, content *c, int *why) {
  z_stream z;
  memset(&z, 0, sizeof z);
  FUZZ_CHECK(inflateInit2(&z, 15 + 16) == Z_OK, "inflateInit2");
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  uint64_t start = c->len;
  int zr;
  for (;;) {
    grow(c, c->len + 8192);
    z.next_out = c->c + c->len;
    z.avail_out = (uInt)(c->cap - c->len);
    zr = inflate(&z, Z_NO_FLUSH);
    c->len = c->cap - z.avail_out;
    if (zr == Z_STREAM_END || zr == Z_DATA_ERROR || zr == Z_NEED_DICT) break;
    FUZZ_CHECK(zr == Z_OK || zr == Z_BUF_ERROR, "inflate: %d", zr);
    if (z.avail_out > 0) {  /* all the input is in, and it wants more */
      FUZZ_CHECK(z.avail_in == 0, "inflate stopped with %u bytes left", z.avail_in);
      break;
    }
  }
  *why = zr == Z_STREAM_END ? 0 : zr == Z_DATA_ERROR || zr == Z_NEED_DICT ? TH_UNPACK_DAMAGED : TH_UNPACK_TRUNCATED;
  unit_add(c, start);
  size_t took = n - z.avail_in;
  inflateEnd(&z);
  return took;
}

static int magic(const uint8_t *p, size_t n) { return n >= 2 && p[0] == 0x1f && p[1] == 0x8b; }

static int eq(const void *a, const void *b, size_t n) { return n == 0 || memcmp(a, b, n) == 0; }

static void unpack_ref(const uint8_t *in, size_t n, content *c) {
  memset(c, 0, sizeof *c);
  size_t at = 0;
  unsigned members = 0;
  while (at < n && c->why == 0) {
    if (magic(in + at, n - at)) {
      at += inflate_member(in + at, n - at, c, &c->why);
      members++;
    } else if (members > 0) {
      c->why = TH_UNPACK_NOT_GZIP;
    } else {  /* plain: the whole input is one unit */
      grow(c, n);
      memcpy(c->c, in, n);
      c->len = n;
      unit_add(c, 0);
      at = n;
    }
  }
}

static void content_free(content *c) {
  free(c->c);
  free(c->u);
}

static int space(uint8_t b) { return b == ' ' || b == '\t' || b == '\r' || b == '\n'; }

/* Is a unit a document? Its first 4096 bytes say: a byte order mark, then
 * whitespace, then [ or { "Records". */
static int is_document(const uint8_t *p, size_t n) {
  if (n > 4096) n = 4096;
  size_t i = n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
  while (i < n && space(p[i])) i++;
  if (i < n && p[i] == '[') return 1;
  if (i == n || p[i] != '{') return 0;
  i++;
  while (i < n && space(p[i])) i++;
  return n - i >= 9 && memcmp(p + i, "\"Records\"", 9) == 0;
}

/* A line's content length: without its newline and one CR before it. */
static size_t line_len(const uint8_t *p, size_t s, size_t e) {
  size_t len = e - s;
  return len > 0 && p[e - 1] == '\r' ? len - 1 : len;
}

static int blank(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t') return 0;
  return 1;
}

/* The records of the unit c[start..end), and its report, as unpack.h says. */
static void model_unit(const content *c, uint64_t start, uint64_t end, const limits *l, res *r) {
  const uint8_t *p = c->c;
  size_t s0 = (size_t)start, e0 = (size_t)end;
  if (is_document(p + s0, e0 - s0)) {
    if (e0 - s0 > l->max_doc) {
      add(r, E_REPORT, TH_UNPACK_DOC_SKIPPED, 0, 0, 0, NULL, 0);
      add(r, E_BIGDOC, 0, start, end, 0, NULL, 0);
    } else {
      add(r, E_DOC, 0, start, end, e0 - s0, (const char *)p + s0, e0 - s0);
    }
    return;
  }
  for (size_t s = s0; s < e0;) {
    const uint8_t *nl = memchr(p + s, '\n', e0 - s);
    size_t e = nl ? (size_t)(nl - p) : e0, next = nl ? e + 1 : e0, len = line_len(p, s, e);
    if (len > l->max_line)
      add(r, E_LONG, 0, s, 0, 0, NULL, 0);
    else if (!blank(p + s, len))
      add(r, E_LINE, 0, s, next, len, (const char *)p + s, next - s);
    s = next;
  }
}

/* The records and reports of a content; reports carry no message. */
static void model(const content *c, const limits *l, res *r) {
  memset(r, 0, sizeof *r);
  for (size_t i = 0; i < c->nu; i++) {
    model_unit(c, c->u[i].start, c->u[i].end, l, r);
    if (i + 1 == c->nu && (c->why == TH_UNPACK_DAMAGED || c->why == TH_UNPACK_TRUNCATED))
      add(r, E_REPORT, c->why, 0, 0, 0, NULL, 0);
  }
  if (c->why == TH_UNPACK_NOT_GZIP) add(r, E_REPORT, c->why, 0, 0, 0, NULL, 0);
  r->pos = c->len;
}

/* ---- comparing ------------------------------------------------------------------------ */

static const char *TYPE[] = {"line", "skipped line", "document", "skipped document", "report"};

/* The next event of r at or after *k of the kind asked for (records, or
 * reports), or NULL. */
static const ev *next(const res *r, int reports, size_t *k) {
  for (; *k < r->n; ++*k)
    if ((r->e[*k].type == E_REPORT) == reports) return &r->e[(*k)++];
  return NULL;
}

/* Records equal, reports of the same kinds in the same order (and with the
 * same messages when both have them). */
static void same(const res *a, const res *b, const char *what) {
  for (int reports = 0; reports <= 1; reports++) {
    size_t ka = 0, kb = 0;
    for (size_t i = 0;; i++) {
      const ev *x = next(a, reports, &ka), *y = next(b, reports, &kb);
      if (x == NULL && y == NULL) break;
      FUZZ_CHECK(x != NULL && y != NULL, "%s: %s %zu is %s, and %s", what, reports ? "report" : "record", i,
                 x ? TYPE[x->type] : "missing", y ? TYPE[y->type] : "missing");
      FUZZ_CHECK(x->type == y->type && x->what == y->what && x->off == y->off && x->end == y->end &&
                     x->len == y->len,
                 "%s: %s %zu is %s %d [%" PRIu64 ", %" PRIu64 ") len %zu, and %s %d [%" PRIu64 ", %" PRIu64
                 ") len %zu",
                 what, reports ? "report" : "record", i, TYPE[x->type], x->what, x->off, x->end, x->len,
                 TYPE[y->type], y->what, y->off, y->end, y->len);
      if (x->type != E_REPORT || (x->tlen > 0 && y->tlen > 0))
        FUZZ_CHECK(x->tlen == y->tlen && eq(a->arena + x->txt, b->arena + y->txt, x->tlen),
                   "%s: %s %zu at %" PRIu64 " has other bytes (%zu and %zu): '%.*s' and '%.*s'", what,
                   TYPE[x->type], i, x->off, x->tlen, y->tlen, (int)(x->tlen < 200 ? x->tlen : 200),
                   a->arena + x->txt, (int)(y->tlen < 200 ? y->tlen : 200), b->arena + y->txt);
    }
  }
  FUZZ_CHECK(a->pos == b->pos, "%s: %" PRIu64 " bytes of content, and %" PRIu64, what, a->pos, b->pos);
}

/* The same, and in the same order, messages included: two feedings. */
static void identical(const res *a, const res *b, const char *what) {
  same(a, b, what);
  FUZZ_CHECK(a->n == b->n, "%s: %zu events and %zu", what, a->n, b->n);
  for (size_t i = 0; i < a->n; i++)
    FUZZ_CHECK(a->e[i].type == b->e[i].type, "%s: event %zu is a %s and a %s", what, i, TYPE[a->e[i].type],
               TYPE[b->e[i].type]);
}

/* Every content byte in one record, skipped line or document, or in a blank
 * line; every record inside its unit and within its limit. */
static void accounted(const res *r, const content *c, const limits *l, const char *what) {
  uint64_t cur = 0;
  size_t k = 0;  /* the unit at cur */
  for (size_t i = 0; i <= r->n; i++) {
    const ev *e = i < r->n ? &r->e[i] : NULL;
    if (e && e->type == E_REPORT) continue;
    uint64_t off = e ? e->off : c->len;
    FUZZ_CHECK(off >= cur && off <= c->len, "%s: a %s at %" PRIu64 ", after %" PRIu64 " of %zu bytes accounted for",
               what, e ? TYPE[e->type] : "end", off, cur, c->len);
    for (uint64_t j = cur; j < off; j++)
      FUZZ_CHECK(space(c->c[j]), "%s: content byte %" PRIu64 " (0x%02x) is in no record", what, j, c->c[j]);
    if (e == NULL) break;
    while (k < c->nu && c->u[k].end <= off) k++;
    FUZZ_CHECK(k < c->nu && c->u[k].start <= off, "%s: a %s at %" PRIu64 " is in no unit", what, TYPE[e->type], off);
    uint64_t ue = c->u[k].end;
    switch (e->type) {
      case E_LINE:
        FUZZ_CHECK(e->end <= ue, "%s: line [%" PRIu64 ", %" PRIu64 ") crosses its unit's end %" PRIu64, what, off,
                   e->end, ue);
        FUZZ_CHECK(e->len <= l->max_line, "%s: line at %" PRIu64 " of %zu bytes, max_line %zu", what, off, e->len,
                   l->max_line);
        FUZZ_CHECK(eq(r->arena + e->txt, c->c + off, e->tlen), "%s: line at %" PRIu64 " is not the content's",
                   what, off);
        cur = e->end;
        break;
      case E_LONG: {
        const uint8_t *nl = memchr(c->c + off, '\n', (size_t)(ue - off));
        cur = nl ? (uint64_t)(nl - c->c) + 1 : ue;
        break;
      }
      case E_DOC:
      case E_BIGDOC:
        FUZZ_CHECK(off == c->u[k].start && e->end == ue, "%s: %s [%" PRIu64 ", %" PRIu64 ") is not its unit [%" PRIu64
                   ", %" PRIu64 ")", what, TYPE[e->type], off, e->end, c->u[k].start, ue);
        if (e->type == E_DOC)
          FUZZ_CHECK(e->len <= l->max_doc && eq(r->arena + e->txt, c->c + off, e->len),
                     "%s: document of %zu bytes, max_document %zu", what, e->len, l->max_doc);
        else
          FUZZ_CHECK(ue - off > l->max_doc, "%s: document of %" PRIu64 " bytes skipped, max_document %zu", what,
                     ue - off, l->max_doc);
        cur = ue;
        break;
    }
  }
}

static int reported(const res *r, int what) {
  for (size_t i = 0; i < r->n; i++)
    if (r->e[i].type == E_REPORT && r->e[i].what == what) return 1;
  return 0;
}

/* Feed in[0..n) as how says, and check it against the reference; the result
 * in *got when asked for (caller frees), the content in *cout. */
static void check(const uint8_t *in, size_t n, const limits *l, int how, fuzz_rng *rng, const char *what, res *got,
                  content *cout) {
  char label[160];
  snprintf(label, sizeof label, "%s, %s, max_line %zu, max_document %zu", what, HOW[how], l->max_line, l->max_doc);
  content c;
  unpack_ref(in, n, &c);
  res want, r;
  model(&c, l, &want);
  feed(in, n, l, how, rng, &r);
  FUZZ_CHECK(r.used == n, "%s: %" PRIu64 " of %zu input bytes worked off", label, r.used, n);
  same(&r, &want, label);
  accounted(&r, &c, l, label);
  res_free(&want);
  if (got) *got = r;
  else res_free(&r);
  if (cout) *cout = c;
  else content_free(&c);
}

/* ---- gzip, made here ------------------------------------------------------------------- */

typedef struct buf {
  uint8_t *p;
  size_t len, cap;
} buf;

/* in gzipped, appended to b, at a level and with a window and memory that
 * the generator picks (small ones mostly: zlib clears what it allocates, and
 * the inputs are small). */
static void gzip(const uint8_t *in, size_t n, fuzz_rng *r, buf *b) {
  int level = (int)fuzz_below(r, 10), bits = 9 + (int)fuzz_below(r, 4), mem = 1 + (int)fuzz_below(r, 3);
  if (fuzz_below(r, 8) == 0) {  /* zlib's defaults */
    bits = 15;
    mem = 8;
  }
  z_stream z;
  memset(&z, 0, sizeof z);
  FUZZ_CHECK(deflateInit2(&z, level, Z_DEFLATED, bits + 16, mem, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
  size_t need = b->len + deflateBound(&z, (uLong)n) + 32;
  if (need > b->cap) {
    b->cap = need;
    b->p = realloc(b->p, b->cap);
    if (b->p == NULL) abort();
  }
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = b->p + b->len;
  z.avail_out = (uInt)(b->cap - b->len);
  FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  b->len += z.total_out;
  deflateEnd(&z);
}

static void put(buf *b, const uint8_t *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = b->len + n + 64;
    b->p = realloc(b->p, b->cap);
    if (b->p == NULL) abort();
  }
  if (n > 0) memcpy(b->p + b->len, p, n);
  b->len += n;
}

/* ---- limits near the input's ----------------------------------------------------------- */

static size_t pick_line(fuzz_rng *r, const uint8_t *in, size_t n) {
  switch (fuzz_below(r, 5)) {
    case 0: return (size_t)fuzz_below(r, 8);
    case 1: return (size_t)1 << 20;
    default: {
      if (n == 0) return 0;
      size_t at = (size_t)fuzz_below(r, n), s = at, e = at;
      while (s > 0 && in[s - 1] != '\n') s--;
      while (e < n && in[e] != '\n') e++;
      size_t len = line_len(in, s, e), delta = (size_t)fuzz_below(r, 3);
      return len + delta > 0 ? len + delta - 1 : 0;
    }
  }
}

static size_t pick_doc(fuzz_rng *r, size_t n) {
  switch (fuzz_below(r, 3)) {
    case 0: return (size_t)1 << 30;  /* TH_MAX_DOCUMENT */
    case 1: return n + 1 - (size_t)fuzz_below(r, 3);
    default: return (size_t)fuzz_below(r, 2 * n + 2);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_rng rng = fuzz_rng_of(data, size);
  int repeat = 1 + (int)fuzz_below(&rng, 3);  /* the content, once or more, for documents beyond a limit */
  limits l = {pick_line(&rng, data, size), pick_doc(&rng, size * (size_t)repeat)};

  /* The bytes as they are: the same in every cutting, and as the reference says. */
  res one, pieces, bytes;
  content c;
  check(data, size, &l, ONE, &rng, "the input", &one, &c);
  int big = c.len > (1u << 20);  /* a gzip bomb: once is enough */
  content_free(&c);
  check(data, size, &l, PIECES, &rng, "the input", &pieces, NULL);
  identical(&pieces, &one, "the input, in random pieces and in one");
  if (!big) {
    check(data, size, &l, BYTES, &rng, "the input", &bytes, NULL);
    identical(&bytes, &one, "the input, byte by byte and in one");
    res_free(&bytes);
  }
  res_free(&pieces);

  /* Gzipped in one member: the records of the input itself. */
  buf z = {0};
  gzip(data, size, &rng, &z);
  res gz;
  check(z.p, z.len, &l, PIECES, &rng, "gzip", &gz, &c);
  FUZZ_CHECK(c.len == size && c.nu == 1 && c.why == 0 && eq(c.c, data, size),
             "zlib inflates the gzip of %zu bytes to %zu", size, c.len);
  content_free(&c);
  if (!magic(data, size)) same(&gz, &one, "gzip, and the input itself");
  res_free(&gz);
  res_free(&one);

  /* Cut short: a prefix of the content, and a report. */
  size_t cut = 2 + (size_t)fuzz_below(&rng, z.len - 2);
  res r;
  check(z.p, cut, &l, PIECES, &rng, "gzip cut short", &r, &c);
  FUZZ_CHECK(c.len <= size && eq(c.c, data, c.len) && reported(&r, TH_UNPACK_TRUNCATED),
             "gzip cut at %zu of %zu bytes: %zu bytes of content, not a prefix of the input's, or no report", cut,
             z.len, c.len);
  content_free(&c);
  res_free(&r);

  /* The content (repeated) in several members, maybe with bytes after them. */
  size_t total = size * (size_t)repeat;
  uint8_t *x = malloc(total + 1);
  if (x == NULL) abort();
  for (int i = 0; i < repeat; i++) memcpy(x + (size_t)i * size, data, size);
  size_t members = 2 + (size_t)fuzz_below(&rng, 3), from = 0;
  z.len = 0;
  for (size_t i = 0; i < members; i++) {
    size_t to = i + 1 == members ? total : from + (size_t)fuzz_below(&rng, total - from + 1);
    gzip(x + from, to - from, &rng, &z);
    from = to;
  }
  size_t zlen = z.len, junk = 0;
  if (fuzz_below(&rng, 2)) {
    junk = 1 + (size_t)fuzz_below(&rng, size < 8 ? size + 1 : 8);
    if (fuzz_below(&rng, 3) == 0) put(&z, (const uint8_t *)"\x1f", 1);  /* a byte that may begin gzip, then the end */
    else if (size == 0) put(&z, (const uint8_t *)"x", 1);
    else put(&z, data, junk < size ? junk : size);
    junk = z.len - zlen;
  }
  check(z.p, z.len, &l, fuzz_below(&rng, 2) ? BYTES : PIECES, &rng, "gzip in members", &r, &c);
  FUZZ_CHECK(c.nu >= members && c.len >= total && eq(c.c, x, total),
             "%zu members of %zu bytes inflate to %zu bytes in %zu units", members, total, c.len, c.nu);
  if (junk > 0 && !magic(z.p + zlen, junk))
    FUZZ_CHECK(reported(&r, TH_UNPACK_NOT_GZIP) && c.len == total, "%zu bytes after the members, not reported", junk);
  content_free(&c);
  res_free(&r);

  /* A byte changed: the content itself, or a report. */
  size_t at = (size_t)fuzz_below(&rng, zlen);
  z.p[at] ^= (uint8_t)(1 + fuzz_below(&rng, 255));
  check(z.p, zlen, &l, PIECES, &rng, "gzip with a byte changed", &r, &c);
  if (at < 2)  /* no gzip: read as it is */
    FUZZ_CHECK(c.len == zlen && eq(c.c, z.p, zlen), "gzip with its magic changed: not read as it is");
  else
    FUZZ_CHECK(reported(&r, TH_UNPACK_DAMAGED) || reported(&r, TH_UNPACK_TRUNCATED) ||
                   reported(&r, TH_UNPACK_NOT_GZIP) || (c.len == total && eq(c.c, x, total)),
               "gzip with byte %zu of %zu changed: %zu bytes of other content, and no report", at, zlen, c.len);
  content_free(&c);
  res_free(&r);
  free(x);
  free(z.p);
  return 0;
}
