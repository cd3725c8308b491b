/* rawfield.c: JSON escapes, and a strict reading of a few fields of a record
 * (rawfield.h). */
#include "rawfield.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* ---- JSON escapes ----------------------------------------------------------------- */

static int hex4(const char *p, uint32_t *v) {
  uint32_t x = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    x <<= 4;
    if (c >= '0' && c <= '9') x |= (uint32_t)(c - '0');
    else if (c >= 'a' && c <= 'f') x |= (uint32_t)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') x |= (uint32_t)(c - 'A' + 10);
    else return -1;
  }
  *v = x;
  return 0;
}

static size_t utf8(uint32_t cp, char *o) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

size_t th_json_unescape_one(const char *p, size_t n, char out[4], size_t *nout) {
  *nout = 1;
  out[0] = '\\';
  if (n < 2) return 1;
  switch (p[1]) {
    case '"': out[0] = '"'; return 2;
    case '\\': out[0] = '\\'; return 2;
    case '/': out[0] = '/'; return 2;
    case 'b': out[0] = '\b'; return 2;
    case 'f': out[0] = '\f'; return 2;
    case 'n': out[0] = '\n'; return 2;
    case 'r': out[0] = '\r'; return 2;
    case 't': out[0] = '\t'; return 2;
    default: break;
  }
  uint32_t cp, lo;
  if (p[1] != 'u' || n < 6 || hex4(p + 2, &cp) < 0) return 1;
  size_t used = 6;
  if (cp >= 0xD800 && cp < 0xDC00 && n >= 12 && p[6] == '\\' && p[7] == 'u' && hex4(p + 8, &lo) == 0 &&
      lo >= 0xDC00 && lo < 0xE000) {
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    used = 12;
  }
  *nout = utf8(cp, out);  /* at most 4 bytes for at least 6 */
  return used;
}

size_t th_json_unescape(const char *p, size_t len, char *out) {
  size_t i = 0, o = 0;
  while (i < len) {
    const char *bs = memchr(p + i, '\\', len - i);
    size_t run = bs ? (size_t)(bs - (p + i)) : len - i;
    memmove(out + o, p + i, run);
    o += run;
    i += run;
    if (bs == NULL) break;
    size_t m;
    i += th_json_unescape_one(p + i, len - i, out + o, &m);
    o += m;
  }
  return o;
}

/* ---- paths ------------------------------------------------------------------------ */

int th_rawpath_parse(const char *name, size_t len, th_rawpath *p) {
  p->nseg = 0;
  size_t a = 0;
  for (;;) {
    const char *dot = memchr(name + a, '.', len - a);
    size_t z = dot ? (size_t)(dot - name) : len;
    if (z == a || z - a > TH_RAW_MAX_SEG || p->nseg == TH_RAW_MAX_SEGS) return -1;
    p->seg[p->nseg] = name + a;
    p->seglen[p->nseg++] = z - a;
    if (dot == NULL) return 0;
    a = z + 1;
  }
}

/* ---- the reader ------------------------------------------------------------------- */

typedef struct rd {
  const unsigned char *p, *end;
  const th_rawpath *paths;
  th_rawval *out;
} rd;

static void ws(rd *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

/* The string at r->p (its opening quote), as lua-cjson takes one: the escapes
 * of RFC 8259 only, a high surrogate escape followed by a low one, no low one
 * alone, no NUL byte (other control bytes it lets through, and so does this).
 * *s, *n: the text between the quotes; *esc: it holds a backslash. */
static int string(rd *r, const char **s, size_t *n, int *esc) {
  const unsigned char *b = ++r->p;
  *esc = 0;
  for (;;) {
    while (r->p < r->end && *r->p != '"' && *r->p != '\\' && *r->p != '\0') r->p++;
    if (r->p >= r->end || *r->p == '\0') return -1;
    if (*r->p == '"') break;
    *esc = 1;
    if (r->end - r->p < 2) return -1;
    unsigned char c = r->p[1];
    if (c != 'u') {
      if (c == '\0' || strchr("\"\\/bfnrt", c) == NULL) return -1;
      r->p += 2;
      continue;
    }
    uint32_t cp, lo;
    if (r->end - r->p < 6 || hex4((const char *)r->p + 2, &cp) < 0) return -1;
    r->p += 6;
    if (cp >= 0xDC00 && cp < 0xE000) return -1;
    if (cp >= 0xD800 && cp < 0xDC00) {
      if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || hex4((const char *)r->p + 2, &lo) < 0 ||
          lo < 0xDC00 || lo >= 0xE000)
        return -1;
      r->p += 6;
    }
  }
  *s = (const char *)b;
  *n = (size_t)(r->p - b);
  r->p++;
  return 0;
}

static int digits(rd *r) {
  const unsigned char *b = r->p;
  while (r->p < r->end && *r->p >= '0' && *r->p <= '9') r->p++;
  return r->p > b ? 0 : -1;
}

/* RFC 8259's number: lua-cjson takes these (and more: "1." is no number here). */
static int number(rd *r) {
  if (*r->p == '-') r->p++;
  if (r->p >= r->end) return -1;
  if (*r->p == '0') r->p++;
  else if (digits(r) < 0) return -1;
  if (r->p < r->end && *r->p == '.') {
    r->p++;
    if (digits(r) < 0) return -1;
  }
  if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    r->p++;
    if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
    if (digits(r) < 0) return -1;
  }
  return 0;
}

static int word(rd *r, const char *w, size_t n) {
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0) return -1;
  r->p += n;
  return 0;
}

/* Is the key k[0..n) (escapes as written, valid: string() read it) the path
 * segment s? Undone escape by escape, up to the first byte that differs. */
static int key_is(const char *k, size_t n, int esc, const char *s, size_t sn) {
  if (!esc) return n == sn && memcmp(k, s, n) == 0;
  size_t i = 0, o = 0;
  while (i < n) {
    char b[4];
    size_t m = 1;
    if (k[i] == '\\') {
      i += th_json_unescape_one(k + i, n - i, b, &m);
    } else {
      b[0] = k[i++];
    }
    if (o + m > sn || memcmp(s + o, b, m) != 0) return 0;
    o += m;
  }
  return o == sn;
}

static int value(rd *r, int depth, uint32_t want, int level);

/* Into a container at r->p ('{' or '['), nested depth deep: 1 when it closes
 * at once, 0 when its first member follows, -1 when too deep. */
static int open_container(rd *r, int depth, unsigned char close) {
  if (depth > TH_RAW_MAX_DEPTH) return -1;
  r->p++;
  ws(r);
  if (r->p < r->end && *r->p == close) {
    r->p++;
    return 1;
  }
  return 0;
}

/* After a member: 1 when the container closes, 0 when another member
 * follows (after the comma), -1 when neither. */
static int after_member(rd *r, unsigned char close) {
  ws(r);
  if (r->p >= r->end) return -1;
  if (*r->p == close) {
    r->p++;
    return 1;
  }
  if (*r->p != ',') return -1;
  r->p++;
  ws(r);
  return 0;
}

/* An object at r->p ('{'). want: the paths whose first `level` keys led here. */
static int object(rd *r, int depth, uint32_t want, int level) {
  int at = open_container(r, depth, '}');
  if (at != 0) return at < 0 ? -1 : 0;
  for (;;) {
    if (r->p >= r->end || *r->p != '"') return -1;
    const char *k;
    size_t n;
    int esc;
    if (string(r, &k, &n, &esc) < 0) return -1;
    ws(r);
    if (r->p >= r->end || *r->p != ':') return -1;
    r->p++;
    ws(r);
    if (r->p >= r->end) return -1;
    uint32_t here = 0, deeper = 0;
    for (uint32_t w = want; w; w &= w - 1) {
      int i = __builtin_ctz(w);
      const th_rawpath *pa = &r->paths[i];
      if (!key_is(k, n, esc, pa->seg[level], pa->seglen[level])) continue;
      if (pa->nseg == level + 1) here |= 1u << i;
      else deeper |= 1u << i;
    }
    /* A later key of the same name replaces what an earlier one said. */
    for (uint32_t w = here; w; w &= w - 1) {
      th_rawval *o = &r->out[__builtin_ctz(w)];
      if (*r->p == '"') {
        o->kind = TH_RAW_STRING;
        const unsigned char *save = r->p;
        if (string(r, &o->p, &o->len, &o->escaped) < 0) return -1;
        r->p = save;
      } else {
        o->kind = TH_RAW_OTHER;
      }
    }
    for (uint32_t w = deeper; w; w &= w - 1) r->out[__builtin_ctz(w)].kind = *r->p == '{' ? TH_RAW_ABSENT : TH_RAW_OTHER;
    if (value(r, depth, *r->p == '{' ? deeper : 0, level + 1) < 0) return -1;
    int next = after_member(r, '}');
    if (next != 0) return next < 0 ? -1 : 0;
  }
}

static int array(rd *r, int depth) {
  int at = open_container(r, depth, ']');
  if (at != 0) return at < 0 ? -1 : 0;
  for (;;) {
    if (value(r, depth, 0, 0) < 0) return -1;
    int next = after_member(r, ']');
    if (next != 0) return next < 0 ? -1 : 0;
  }
}

/* The value at r->p (no space before it); depth: of the container it is in. */
static int value(rd *r, int depth, uint32_t want, int level) {
  if (r->p >= r->end) return -1;
  const char *s;
  size_t n;
  int esc;
  switch (*r->p) {
    case '{': return object(r, depth + 1, want, level);
    case '[': return array(r, depth + 1);
    case '"': return string(r, &s, &n, &esc);
    case 't': return word(r, "true", 4);
    case 'f': return word(r, "false", 5);
    case 'n': return word(r, "null", 4);
    default: return number(r);
  }
}

int th_rawfield_read(const char *p, size_t len, const th_rawpath *paths, int n, th_rawval *out) {
  if (n < 0 || n > TH_RAW_MAX_PATHS) return -1;
  for (int i = 0; i < n; i++) out[i] = (th_rawval){TH_RAW_ABSENT, NULL, 0, 0};
  rd r = {(const unsigned char *)p, (const unsigned char *)p + len, paths, out};
  ws(&r);
  if (r.p >= r.end || *r.p != '{') return -1;
  uint32_t want = n == 32 ? 0xffffffffu : (1u << n) - 1;
  if (object(&r, 1, want, 0) < 0) return -1;
  ws(&r);
  return r.p == r.end ? 0 : -1;
}

/* ---- conditions on fields ---------------------------------------------------------- */

enum { MAX_CONDS = 64, MAX_VALUES = 1 << 16, MAX_PATH = TH_RAW_MAX_SEGS * (TH_RAW_MAX_SEG + 1) };

typedef struct cond {
  uint8_t path, exclude;
  uint32_t v0, v1;  /* its values: vals[v0 .. v1) */
} cond;

typedef struct value_text {
  size_t at, len;  /* in bytes */
} value_text;

struct th_rawconds {
  uint32_t nrules;
  uint32_t *at;  /* rule r's conditions are conds[at[r] .. at[r + 1]) */
  cond *conds;
  uint32_t nconds, ccap;
  value_text *vals;
  uint32_t nvals, vcap;
  th_buf bytes;  /* the values' text, one after another */
  th_rawpath paths[TH_RAW_MAX_PATHS];  /* 0 and 1: eventSource and eventName, which say a record is raw */
  char *names[TH_RAW_MAX_PATHS];       /* their dotted names (paths[] points into them) */
  size_t name_len[TH_RAW_MAX_PATHS];
  int npaths;
  uint32_t added;                      /* rules added so far */
  int raw;        /* it is one valid object, and a raw CloudTrail record */
  th_rawval got[TH_RAW_MAX_PATHS];
  char *buf;      /* a string value with its escapes undone */
  size_t bufcap;
};

long th_rawconds_span(const char *p, size_t len) {
  th_rd r;
  th_rd_init(&r, p, len);
  uint32_t k = th_rd_u32(&r);
  if (k > MAX_CONDS) return -1;
  for (uint32_t i = 0; i < k && !r.bad; i++) {
    size_t n;
    const char *path = th_rd_str(&r, &n);
    th_rawpath pa;
    if (r.bad || n > MAX_PATH || th_rawpath_parse(path, n, &pa) < 0) return -1;
    if (th_rd_u8(&r) > 1) return -1;
    uint32_t m = th_rd_u32(&r);
    if (m > MAX_VALUES) return -1;
    for (uint32_t v = 0; v < m && !r.bad; v++) th_rd_str(&r, &n);
  }
  return r.bad ? -1 : (long)r.pos;
}

static int add_path(th_rawconds *c, const char *name, size_t n) {
  for (int i = 0; i < c->npaths; i++)
    if (c->name_len[i] == n && memcmp(c->names[i], name, n) == 0) return i;
  if (c->npaths == TH_RAW_MAX_PATHS) return -1;
  char *copy = malloc(n + 1);
  if (copy == NULL) return -2;
  memcpy(copy, name, n);
  copy[n] = '\0';
  th_rawpath_parse(copy, n, &c->paths[c->npaths]);
  c->names[c->npaths] = copy;
  c->name_len[c->npaths] = n;
  return c->npaths++;
}

th_rawconds *th_rawconds_new(uint32_t nrules) {
  th_rawconds *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  th_buf_init(&c->bytes);
  c->at = calloc((size_t)nrules + 1, sizeof *c->at);
  if (c->at == NULL || add_path(c, "eventSource", 11) != 0 || add_path(c, "eventName", 9) != 1) {
    th_rawconds_free(c);
    return NULL;
  }
  c->nrules = nrules;
  return c;
}

/* Room in *v (cap elements of size bytes) for element n. Returns 0 or -1. */
static int room(void **v, uint32_t *cap, uint32_t n, size_t size) {
  if (n < *cap) return 0;
  uint32_t more = *cap ? *cap * 2 : 16;
  void *nv = realloc(*v, more * size);
  if (nv == NULL) return -1;
  *v = nv;
  *cap = more;
  return 0;
}

int th_rawconds_add(th_rawconds *c, uint32_t rule, const char *p, size_t len) {
  if (rule != c->added || rule >= c->nrules || th_rawconds_span(p, len) < 0) return -1;
  th_rd r;
  th_rd_init(&r, p, len);
  uint32_t k = th_rd_u32(&r);
  for (uint32_t i = 0; i < k; i++) {
    size_t n;
    const char *name = th_rd_str(&r, &n);
    int path = add_path(c, name, n);
    if (path == -2) return -1;
    uint8_t exclude = th_rd_u8(&r);
    uint32_t m = th_rd_u32(&r), v0 = c->nvals;
    for (uint32_t v = 0; v < m; v++) {
      const char *s = th_rd_str(&r, &n);
      if (path < 0) continue;  /* too many paths: this condition is left out (it only ever narrows) */
      if (room((void **)&c->vals, &c->vcap, c->nvals, sizeof *c->vals) < 0) return -1;
      c->vals[c->nvals++] = (value_text){c->bytes.len, n};
      th_buf_bytes(&c->bytes, s, n);
      if (c->bytes.oom) return -1;
    }
    if (path < 0) continue;
    if (room((void **)&c->conds, &c->ccap, c->nconds, sizeof *c->conds) < 0) return -1;
    c->conds[c->nconds++] = (cond){(uint8_t)path, exclude, v0, c->nvals};
  }
  c->at[rule + 1] = c->nconds;
  c->added++;
  return 0;
}

/* Is the string value v one of cond's values? */
static int holds(th_rawconds *c, const cond *k, const th_rawval *v) {
  const char *s = v->p;
  size_t n = v->len;
  if (v->escaped) {
    if (c->bufcap < n) {
      char *b = realloc(c->buf, n);
      if (b == NULL) return -1;
      c->buf = b;
      c->bufcap = n;
    }
    n = th_json_unescape(v->p, v->len, c->buf);
    s = c->buf;
  }
  for (uint32_t i = k->v0; i < k->v1; i++)
    if (c->vals[i].len == n && (n == 0 || memcmp(c->bytes.p + c->vals[i].at, s, n) == 0)) return 1;
  return 0;
}

int th_rawconds_ok(th_rawconds *c, uint32_t rule, const char *p, size_t len, int *read) {
  if (c == NULL || rule >= c->added || c->at[rule] == c->at[rule + 1]) return 1;
  if (!*read) {
    *read = 1;
    c->raw = th_rawfield_read(p, len, c->paths, c->npaths, c->got) == 0 &&
             (c->got[0].kind == TH_RAW_STRING || c->got[1].kind == TH_RAW_STRING);
  }
  if (!c->raw) return 1;  /* not one we can read, or an ECS document: the worker decides */
  for (uint32_t i = c->at[rule]; i < c->at[rule + 1]; i++) {
    const cond *k = &c->conds[i];
    const th_rawval *v = &c->got[k->path];
    if (v->kind == TH_RAW_OTHER) continue;  /* a number, an array...: it may hold */
    int in = v->kind == TH_RAW_STRING ? holds(c, k, v) : 0;
    if (in < 0) return 1;  /* out of memory: let it through */
    if (k->exclude ? in : !in) return 0;
  }
  return 1;
}

void th_rawconds_free(th_rawconds *c) {
  if (c == NULL) return;
  th_buf_free(&c->bytes);
  for (int i = 0; i < c->npaths; i++) free(c->names[i]);
  free(c->vals);
  free(c->conds);
  free(c->at);
  free(c->buf);
  free(c);
}
