/* jsontext.c: work on JSON text that the Lua side hands to C in a worker.
 *
 * th_key_order (thsys.key_order): the key order of one payload of a
 * CloudTrail record's JSON text, for the normalizer's Map.toString text: keys
 * that share a Java HashMap bucket come out in the order they were written.
 *
 * normalize.lua's own scan (M.key_order) is the reference, and what plain
 * lua5.4 runs; this one returns the same tree for every text lua-cjson
 * decodes (tests/c/jsontext_test.c and the jsontext fuzz harness hold them
 * equal). It exists because the Lua scan steps through the whole record with
 * Lua patterns, some 20 ns a byte: 40 to 50 us an alert on an event whose
 * payload has two keys in one bucket, most of what such an alert cost.
 *
 * th_json_encode (thsys.encode): an alert's JSON text with its objects' keys
 * in byte order, so that two runs write the same bytes (lua-cjson follows
 * the table's order, which changes from run to run), "/" as it is, and a
 * number past a double as 1e999 rather than no alert at all, and every
 * number in as few digits as read back the same (lua-cjson's 14 lose some).
 * Otherwise as lua-cjson writes: its rule for arrays, cjson.null. A value made
 * by th_json_raw (thsys.raw) is written as the JSON text it holds, so that what
 * several alerts share is encoded once; the encoder says where one of them went.
 */
#include "jsontext.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "sort.h"

#define NONE ((size_t)-1)
/* lua-cjson refuses deeper nesting, so no text this is handed goes deeper. */
#define MAX_DEPTH 1000

typedef struct {
  lua_State *L;
  const unsigned char *s;
  size_t n;
  int depth;
} scan;

static int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The first non-blank index from i, or NONE at the end. */
static size_t skip_ws(const scan *c, size_t i) {
  while (i < c->n && is_ws(c->s[i])) i++;
  return i < c->n ? i : NONE;
}

/* The index after the string whose quote is at i, or NONE; *escaped is set
 * when it holds a backslash. As the Lua scan: a backslash skips the next byte. */
static size_t string_end(const scan *c, size_t i, int *escaped) {
  size_t j = i + 1;
  for (;;) {
    while (j < c->n && c->s[j] != '"' && c->s[j] != '\\') j++;
    if (j >= c->n) return NONE;
    if (c->s[j] == '"') return j + 1;
    *escaped = 1;
    j += 2;
  }
}

/* The end of a number, true, false or null: the next delimiter, or the end. */
static size_t scalar_end(const scan *c, size_t i) {
  while (i < c->n && !memchr(",]} \t\r\n", c->s[i], 7)) i++;
  return i;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out) {
  unsigned v = 0;
  if (end - p < 4) return 0;
  for (int k = 0; k < 4; k++) {
    unsigned char h = p[k];
    v <<= 4;
    if (h >= '0' && h <= '9') v |= h - '0';
    else if (h >= 'a' && h <= 'f') v |= h - 'a' + 10;
    else if (h >= 'A' && h <= 'F') v |= h - 'A' + 10;
    else return 0;
  }
  *out = v;
  return 1;
}

/* Writes code point cp as UTF-8 at out; returns its length. */
static size_t put_utf8(char *out, unsigned cp) {
  unsigned char *u = (unsigned char *)out;
  if (cp < 0x80) {
    u[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    u[0] = (unsigned char)(0xC0 | cp >> 6), u[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    u[0] = (unsigned char)(0xE0 | cp >> 12), u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    u[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  u[0] = (unsigned char)(0xF0 | cp >> 18), u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
  u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F)), u[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* The text of the string whose quote is at i and whose end (after the
 * closing quote) is e, its escapes undone as lua-cjson undoes them, written
 * at out (room for e - i - 2 bytes: undoing an escape never lengthens it).
 * Returns its length. */
static size_t unescape(const scan *c, size_t i, size_t e, char *out) {
  const unsigned char *p = c->s + i + 1, *end = c->s + e - 1;
  size_t n = 0;
  while (p < end) {
    if (*p != '\\' || p + 1 >= end) {
      out[n++] = (char)*p++;
      continue;
    }
    unsigned char x = p[1];
    p += 2;
    unsigned cp, lo;
    switch (x) {
      case 'b': out[n++] = '\b'; break;
      case 'f': out[n++] = '\f'; break;
      case 'n': out[n++] = '\n'; break;
      case 'r': out[n++] = '\r'; break;
      case 't': out[n++] = '\t'; break;
      case 'u':
        if (!hex4(p, end, &cp)) break;  /* not JSON: lua-cjson refuses it */
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
            hex4(p + 2, end, &lo) && lo >= 0xDC00 && lo < 0xE000) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        }
        n += put_utf8(out + n, cp);
        break;
      default: out[n++] = (char)x; break;  /* \" \\ \/ */
    }
  }
  return n;
}

/* Pushes the text of the string whose quote is at i and whose end (after the
 * closing quote) is e, its escapes undone as lua-cjson undoes them. */
static void push_text(const scan *c, size_t i, size_t e, int escaped) {
  if (!escaped) {
    lua_pushlstring(c->L, (const char *)c->s + i + 1, e - i - 2);
    return;
  }
  luaL_Buffer b;
  char *out = luaL_buffinitsize(c->L, &b, e - i - 2);
  luaL_pushresultsize(&b, unescape(c, i, e, out));
}

/* The index after the value at i, looking inside it no more than it takes. */
static size_t skip_value(const scan *c, size_t i) {
  int escaped = 0;
  unsigned char ch = c->s[i];
  if (ch == '"') return string_end(c, i, &escaped);
  if (ch != '{' && ch != '[') return scalar_end(c, i);
  long depth = 0;
  for (size_t j = i; j < c->n;) {
    ch = c->s[j];
    if (ch == '"') {
      j = string_end(c, j, &escaped);
      if (j == NONE) return NONE;
    } else if (ch == '{' || ch == '[' || ch == '}' || ch == ']') {
      depth += (ch == '{' || ch == '[') ? 1 : -1;
      j++;
      if (depth == 0) return j;
    } else {
      j++;
    }
  }
  return NONE;
}

/* The index after the value at i, or NONE. For an object or an array, pushes
 * its node and sets *node: { index = { key = position }, sub = { key = node } }
 * for an object, { sub = { [i] = node } } for an array. */
static size_t value(scan *c, size_t i, int *node) {
  lua_State *L = c->L;
  unsigned char open = c->s[i];
  *node = 0;
  if (open == '"') {
    int escaped = 0;
    return string_end(c, i, &escaped);
  }
  if (open != '{' && open != '[') return scalar_end(c, i);
  if (++c->depth > MAX_DEPTH) return NONE;
  luaL_checkstack(L, 8, "key order");
  int object = open == '{';
  unsigned char close = object ? '}' : ']';
  lua_createtable(L, 0, 2);  /* node */
  int at = lua_gettop(L);
  lua_newtable(L);  /* sub: at + 1 */
  lua_pushvalue(L, -1);
  lua_setfield(L, at, "sub");
  if (object) {
    lua_newtable(L);  /* index: at + 2 */
    lua_pushvalue(L, -1);
    lua_setfield(L, at, "index");
  }
  i = skip_ws(c, i + 1);
  if (i == NONE) return NONE;
  lua_Integer n = 0;
  if (c->s[i] != close) {
    for (;;) {
      if (object) {
        int escaped = 0;
        if (c->s[i] != '"') return NONE;
        size_t e = string_end(c, i, &escaped);
        if (e == NONE) return NONE;
        push_text(c, i, e, escaped);  /* key: at + 3 */
        i = skip_ws(c, e);
        if (i == NONE || c->s[i] != ':') return NONE;
        i = skip_ws(c, i + 1);
        if (i == NONE) return NONE;
      }
      int child;
      i = value(c, i, &child);
      if (i == NONE) return NONE;
      n++;
      if (object) {
        lua_pushvalue(L, at + 3);
        lua_pushinteger(L, n);
        lua_rawset(L, at + 2);
        if (child) {
          lua_pushvalue(L, at + 3);
          lua_insert(L, -2);
          lua_rawset(L, at + 1);
        }
        lua_settop(L, at + 2);
      } else if (child) {
        lua_rawseti(L, at + 1, n);
      }
      i = skip_ws(c, i);
      if (i == NONE) return NONE;
      if (c->s[i] == close) break;
      if (c->s[i] != ',') return NONE;
      i = skip_ws(c, i + 1);
      if (i == NONE) return NONE;
    }
  }
  lua_settop(L, at);
  c->depth--;
  *node = 1;
  return i + 1;
}

/* Is the key whose quote is at i (end e) the one asked for? */
static int is_key(const scan *c, size_t i, size_t e, int escaped, const char *key, size_t len) {
  if (!escaped) return e - i - 2 == len && memcmp(c->s + i + 1, key, len) == 0;
  push_text(c, i, e, escaped);
  size_t n;
  const char *k = lua_tolstring(c->L, -1, &n);
  int same = n == len && memcmp(k, key, len) == 0;
  lua_pop(c->L, 1);
  return same;
}

void th_key_order(lua_State *L, const char *text, size_t n, const char *key, size_t len) {
  scan c = {L, (const unsigned char *)text, n, 0};
  int base = lua_gettop(L);
  lua_pushnil(L);  /* the answer: base + 1 */
  size_t i = skip_ws(&c, 0);
  if (i == NONE || c.s[i] != '{') goto none;
  i = skip_ws(&c, i + 1);
  if (i == NONE) goto none;
  if (c.s[i] != '}') {
    for (;;) {
      int escaped = 0, node;
      if (c.s[i] != '"') goto none;
      size_t e = string_end(&c, i, &escaped);
      if (e == NONE) goto none;
      int wanted = is_key(&c, i, e, escaped, key, len);
      i = skip_ws(&c, e);
      if (i == NONE || c.s[i] != ':') goto none;
      i = skip_ws(&c, i + 1);
      if (i == NONE) goto none;
      if (wanted) {
        i = value(&c, i, &node);
        if (i == NONE) goto none;
        if (node) lua_replace(L, base + 1);  /* a later one replaces it, as in a table */
      } else {
        i = skip_value(&c, i);
        if (i == NONE) goto none;
      }
      i = skip_ws(&c, i);
      if (i == NONE) goto none;
      if (c.s[i] == '}') break;
      if (c.s[i] != ',') goto none;
      i = skip_ws(&c, i + 1);
      if (i == NONE) goto none;
    }
  }
  lua_settop(L, base + 1);
  return;
none:
  lua_settop(L, base);
  lua_pushnil(L);
}

/* ---- th_order: th_key_order's tree in C --------------------------------------------- */

/* A member of an object node (its keys sorted, each once: the place of its
 * last occurrence, the node of its last occurrence that was one), or an
 * element of an array node (in order: its node or -1). */
typedef struct oent {
  const char *key;         /* the key's text, escapes undone (in the record or o->keys) */
  size_t len;
  lua_Integer pos;         /* object: index[key] */
  int child;               /* sub[key] or sub[i]: a node, or -1 */
} oent;

typedef struct onode {
  int object;              /* an object (index and sub) or an array (sub) */
  size_t first, count;     /* its entries in o->ents */
} onode;

struct th_order {
  onode *nodes;
  size_t nn, ncap;
  oent *ents;              /* the nodes' entries, node after node */
  size_t en, ecap;
  oent *open;              /* the members of the objects being scanned, outermost first */
  size_t on, ocap;
  char *keys;              /* escaped keys, undone: as long as the record at most */
  size_t kn;
  int root;                /* the payload's node, or -1 */
  int oom;
};

static int grow(void **p, size_t *cap, size_t want, size_t size) {
  if (want <= *cap) return 0;
  size_t cap2 = *cap ? *cap : 16;
  while (cap2 < want) cap2 *= 2;
  void *q = realloc(*p, cap2 * size);
  if (q == NULL) return -1;
  *p = q;
  *cap = cap2;
  return 0;
}

static int oent_cmp(const void *a, const void *b) {
  const oent *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(x->key, y->key, n);
  if (c) return c;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return (x->pos > y->pos) - (x->pos < y->pos);  /* occurrences in order */
}

/* value() of th_key_order, building o's arrays instead of Lua tables: the
 * index after the value at i, or NONE; *node is the value's node or -1. */
static size_t ovalue(scan *c, th_order *o, size_t i, int *node) {
  unsigned char open = c->s[i];
  *node = -1;
  if (open == '"') {
    int escaped = 0;
    return string_end(c, i, &escaped);
  }
  if (open != '{' && open != '[') return scalar_end(c, i);
  if (++c->depth > MAX_DEPTH) return NONE;
  int object = open == '{';
  unsigned char close = object ? '}' : ']';
  size_t base = o->on;  /* this node's entries, while it is open */
  i = skip_ws(c, i + 1);
  if (i == NONE) return NONE;
  lua_Integer n = 0;
  if (c->s[i] != close) {
    for (;;) {
      const char *key = NULL;
      size_t klen = 0;
      if (object) {
        int escaped = 0;
        if (c->s[i] != '"') return NONE;
        size_t e = string_end(c, i, &escaped);
        if (e == NONE) return NONE;
        if (escaped) {
          key = o->keys + o->kn;
          klen = unescape(c, i, e, o->keys + o->kn);
          o->kn += klen;
        } else {
          key = (const char *)c->s + i + 1;
          klen = e - i - 2;
        }
        i = skip_ws(c, e);
        if (i == NONE || c->s[i] != ':') return NONE;
        i = skip_ws(c, i + 1);
        if (i == NONE) return NONE;
      }
      int child;
      i = ovalue(c, o, i, &child);
      if (i == NONE) return NONE;
      n++;
      if (grow((void **)&o->open, &o->ocap, o->on + 1, sizeof *o->open)) {
        o->oom = 1;
        return NONE;
      }
      o->open[o->on++] = (oent){key, klen, n, child};
      i = skip_ws(c, i);
      if (i == NONE) return NONE;
      if (c->s[i] == close) break;
      if (c->s[i] != ',') return NONE;
      i = skip_ws(c, i + 1);
      if (i == NONE) return NONE;
    }
  }
  /* Closed: its entries move from o->open to o->ents, an object's sorted by
   * key with one entry a key (index: the last place; sub: the last node). */
  size_t count = o->on - base;
  oent *list = o->open + base;
  if (object) th_sort(list, count, sizeof *list, oent_cmp);
  if (grow((void **)&o->ents, &o->ecap, o->en + count, sizeof *o->ents) ||
      grow((void **)&o->nodes, &o->ncap, o->nn + 1, sizeof *o->nodes)) {
    o->oom = 1;
    return NONE;
  }
  size_t first = o->en;
  for (size_t k = 0; k < count; k++) {
    oent *last = o->en > first ? &o->ents[o->en - 1] : NULL;
    if (object && last && last->len == list[k].len && memcmp(last->key, list[k].key, last->len) == 0) {
      last->pos = list[k].pos;  /* a later occurrence */
      if (list[k].child >= 0) last->child = list[k].child;
    } else {
      o->ents[o->en++] = list[k];
    }
  }
  o->on = base;
  o->nodes[o->nn] = (onode){object, first, o->en - first};
  *node = (int)o->nn++;
  c->depth--;
  return i + 1;
}

th_order *th_order_scan(const char *text, size_t n, const char *key, size_t len) {
  th_order *o = calloc(1, sizeof *o);
  if (o == NULL || (o->keys = malloc(n ? n : 1)) == NULL) {
    free(o);
    return NULL;
  }
  o->root = -1;
  scan c = {NULL, (const unsigned char *)text, n, 0};
  size_t i = skip_ws(&c, 0);
  if (i == NONE || c.s[i] != '{') goto none;
  i = skip_ws(&c, i + 1);
  if (i == NONE) goto none;
  if (c.s[i] != '}') {
    for (;;) {
      int escaped = 0, node;
      if (c.s[i] != '"') goto none;
      size_t e = string_end(&c, i, &escaped);
      if (e == NONE) goto none;
      int wanted;
      if (escaped) {
        char *scratch = o->keys + o->kn;  /* past the payload's keys, not kept */
        size_t klen = unescape(&c, i, e, scratch);
        wanted = klen == len && memcmp(scratch, key, len) == 0;
      } else {
        wanted = e - i - 2 == len && memcmp(c.s + i + 1, key, len) == 0;
      }
      i = skip_ws(&c, e);
      if (i == NONE || c.s[i] != ':') goto none;
      i = skip_ws(&c, i + 1);
      if (i == NONE) goto none;
      if (wanted) {
        i = ovalue(&c, o, i, &node);
        if (i == NONE) goto none;
        if (node >= 0) o->root = node;  /* a later one replaces it, as in a table */
      } else {
        i = skip_value(&c, i);
        if (i == NONE) goto none;
      }
      i = skip_ws(&c, i);
      if (i == NONE) goto none;
      if (c.s[i] == '}') break;
      if (c.s[i] != ',') goto none;
      i = skip_ws(&c, i + 1);
      if (i == NONE) goto none;
    }
  }
  return o;
none:
  if (o->oom) {
    th_order_free(o);
    return NULL;
  }
  o->root = -1;
  return o;
}

void th_order_free(th_order *o) {
  if (o == NULL) return;
  free(o->nodes);
  free(o->ents);
  free(o->open);
  free(o->keys);
  free(o);
}

int th_order_root(const th_order *o) { return o->root; }

int th_order_is_object(const th_order *o, int node) { return o->nodes[node].object; }

/* The entry of key in an object node, or NULL. */
static const oent *member(const th_order *o, int node, const char *key, size_t len) {
  const onode *nd = &o->nodes[node];
  size_t lo = nd->first, hi = nd->first + nd->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const oent *e = &o->ents[mid];
    size_t m = e->len < len ? e->len : len;
    int c = memcmp(e->key, key, m);
    if (c == 0) c = (e->len > len) - (e->len < len);
    if (c == 0) return e;
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return NULL;
}

int th_order_child(const th_order *o, int node, const char *key, size_t len) {
  if (!o->nodes[node].object) return -1;  /* an array's sub has no string keys */
  const oent *e = member(o, node, key, len);
  return e ? e->child : -1;
}

int th_order_pos(const th_order *o, int node, const char *key, size_t len, lua_Integer *pos) {
  if (!o->nodes[node].object) return 0;  /* an array node has no index */
  const oent *e = member(o, node, key, len);
  if (e == NULL) return 0;
  *pos = e->pos;
  return 1;
}

static void push_node(lua_State *L, const th_order *o, int node) {
  const onode *nd = &o->nodes[node];
  luaL_checkstack(L, 4, "key order");
  lua_createtable(L, 0, 2);
  lua_newtable(L);  /* sub */
  for (size_t k = 0; k < nd->count; k++) {
    const oent *e = &o->ents[nd->first + k];
    if (e->child < 0) continue;
    if (nd->object) lua_pushlstring(L, e->key, e->len);
    else lua_pushinteger(L, (lua_Integer)k + 1);
    push_node(L, o, e->child);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "sub");
  if (nd->object) {
    lua_createtable(L, 0, (int)nd->count);  /* index */
    for (size_t k = 0; k < nd->count; k++) {
      const oent *e = &o->ents[nd->first + k];
      lua_pushlstring(L, e->key, e->len);
      lua_pushinteger(L, e->pos);
      lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "index");
  }
}

void th_order_push(lua_State *L, const th_order *o) {
  if (o->root < 0) lua_pushnil(L);
  else push_node(L, o, o->root);
}

int th_order_elem(const th_order *o, int node, lua_Integer i) {
  const onode *nd = &o->nodes[node];
  if (nd->object || i < 1 || (size_t)i > nd->count) return -1;  /* an object's sub has no number keys */
  return o->ents[nd->first + (size_t)i - 1].child;
}

/* ---- th_json_encode ---------------------------------------------------------------- */

struct jkey;

typedef struct jbuf {
  char *p;
  size_t len, cap;
  const char *err;         /* why it cannot be written, or NULL */
  struct jkey *ks;         /* the keys of the tables being written, outermost first */
  size_t kn, kcap;
  int mark;                /* stack index of the raw value whose place is asked for, or 0 */
  long long at, at_len;    /* where it was written (at -1: nowhere) */
} jbuf;

#define JSON_MAX_DEPTH 1000
#define JSON_MAX_BYTES ((size_t)256 << 20)
/* Values kept on the Lua stack while their table is written: at most this
 * many slots in use, leaving room for the nesting beneath (a few a level). */
#define JSON_STACK_VALUES 100000

/* Room for n more bytes, or b->err set: 0 or -1. */
static int jroom(jbuf *b, size_t n) {
  if (b->err) return -1;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n) cap *= 2;
  char *p = cap <= JSON_MAX_BYTES ? realloc(b->p, cap) : NULL;
  if (p == NULL) {
    b->err = "the alert is too large to write";
    return -1;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

/* Appends n bytes; in line, since a text is written in thousands of small pieces. */
static inline void jput(jbuf *b, const char *s, size_t n) {
  if (n == 0 || (b->cap - b->len < n && jroom(b, n))) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static inline void jputc(jbuf *b, char c) {
  if (b->cap == b->len && jroom(b, 1)) return;
  b->p[b->len++] = c;
}

/* The bytes a JSON string holds escaped, as lua-cjson escapes them: the
 * controls, '"', '\\' and DEL. */
static const unsigned char ESCAPED[256] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  ['"'] = 1, ['\\'] = 1, [0x7f] = 1,
};

/* Does the word hold a byte ESCAPED marks: one below 0x20, '"', '\\' or DEL? Eight bytes
 * at a time, the way of "has a zero byte" ((v - 0x01..) & ~v & 0x80..: exact about whether
 * there is one), since most text needs no escape at all. */
static inline int word_escapes(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\'), del = w ^ (ones * 0x7f);
  uint64_t hit = ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs) | ((del - ones) & ~del);
  return (hit & highs) != 0;
}

static void jstr(jbuf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  jputc(b, '"');
  size_t run = 0;   /* bytes that need no escape, written in one go */
  size_t plain = 0; /* bytes before this are known to need none: a word was looked at */
  for (size_t i = 0; i < n; i++) {
    if (i >= plain) {  /* eight at a time while none of them needs an escape */
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (word_escapes(w)) break;
        i += 8;
      }
      if (i >= n) break;
      plain = i + 8;   /* the word at i holds one, or the text ends within it: byte by byte */
    }
    unsigned char c = (unsigned char)s[i];
    if (!ESCAPED[c]) continue;
    jput(b, s + run, i - run);
    run = i + 1;
    char e[6] = {'\\', 0, 0, 0, 0, 0};
    size_t en = 2;
    switch (c) {
      case '"': e[1] = '"'; break;
      case '\\': e[1] = '\\'; break;
      case '\b': e[1] = 'b'; break;
      case '\f': e[1] = 'f'; break;
      case '\n': e[1] = 'n'; break;
      case '\r': e[1] = 'r'; break;
      case '\t': e[1] = 't'; break;
      default:
        e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15];
        en = 6;
    }
    jput(b, e, en);
  }
  jput(b, s + run, n - run);
  jputc(b, '"');
}

/* A number as lua-cjson writes it (14 significant digits) when that reads
 * back the same, else with up to 17; one past a double (JSON's 1e999,
 * decoded to infinity) as 1e999, as it was written: lua-cjson refuses to
 * write it, and the alert was lost. */
static void jnum(jbuf *b, lua_State *L, int idx) {
  char t[64];
  int n;
  if (lua_isinteger(L, idx)) {  /* by hand: snprintf was a tenth of writing a number-rich alert */
    lua_Integer v = lua_tointeger(L, idx);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    char *e = t + sizeof t, *p = e;
    do *--p = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (v < 0) *--p = '-';
    jput(b, p, (size_t)(e - p));
    return;
  } else {
    double d = (double)lua_tonumber(L, idx);
    if (isnan(d)) n = snprintf(t, sizeof t, "null");
    else if (isinf(d)) n = snprintf(t, sizeof t, d > 0 ? "1e999" : "-1e999");
    else  /* lua-cjson's 14 digits, or as many more as it takes to read back the same */
      for (int prec = 14; prec <= 17; prec++)
        if ((n = snprintf(t, sizeof t, "%.*g", prec, d)) > 0 && strtod(t, NULL) == d) break;
  }
  jput(b, t, (size_t)n);
}

/* A key of a table being written. */
typedef struct jkey {
  const char *s;           /* a string key (held by the table); NULL for a number */
  size_t n;                /* its text's length */
  int value;               /* where its value is on the Lua stack; 0: not there, look it up */
  int isint;               /* a number key: an integer (i), else a float (d) */
  lua_Integer i;
  lua_Number d;
  char text[24];           /* a number key's text ("%lld" or "%.14g") */
} jkey;

/* A key's text: its own, or its number's (never a pointer into the array,
 * which grows and is sorted). */
static const char *jkey_text(const jkey *k) { return k->s ? k->s : k->text; }

static int jkey_cmp(const void *a, const void *b) {
  const jkey *x = a, *y = b;
  size_t n = x->n < y->n ? x->n : y->n;
  int c = memcmp(jkey_text(x), jkey_text(y), n);
  return c ? c : (x->n > y->n) - (x->n < y->n);
}

/* Room for one more key at the end of the encoder's key stack. */
static jkey *jkey_push(jbuf *b) {
  if (b->kn == b->kcap) {
    size_t cap = b->kcap ? 2 * b->kcap : 64;
    jkey *k = realloc(b->ks, cap * sizeof *k);
    if (k == NULL) {
      b->err = "out of memory";
      return NULL;
    }
    b->ks = k;
    b->kcap = cap;
  }
  return &b->ks[b->kn++];
}

static void jvalue(jbuf *b, lua_State *L, int idx, int depth);

/* A table: lua-cjson's array when its keys are 1..n (holes allowed, not too
 * sparse), else an object with its keys in byte order. Its keys go on the
 * encoder's key stack (b->ks, one allocation for the whole text; a nested
 * table's keys above them) and its values stay on the Lua stack as lua_next
 * hands them over, so that writing them in key order takes no second lookup
 * (a key pushed again is a string to intern); past what the Lua stack can
 * hold, the rest are looked up again. */
static void jtable(jbuf *b, lua_State *L, int idx, int depth) {
  if (depth > JSON_MAX_DEPTH) {
    b->err = "the alert is nested too deep to write";
    return;
  }
  size_t base = b->kn;
  lua_Integer max = 0;
  int all_positive_ints = 1;
  int top = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {  /* ... values, key, value */
    int kt = lua_type(L, -2);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
      b->err = "a table key is neither a string nor a number";
      break;
    }
    jkey *k = jkey_push(b);
    if (k == NULL) break;
    k->s = NULL;
    if (kt == LUA_TSTRING) {
      k->s = lua_tolstring(L, -2, &k->n);
      all_positive_ints = 0;
    } else if ((k->isint = lua_isinteger(L, -2))) {
      k->i = lua_tointeger(L, -2);
      k->n = 0;  /* its text only if the table is written as an object (below) */
      if (k->i < 1) all_positive_ints = 0;
      else if (k->i > max) max = k->i;
    } else {
      k->d = lua_tonumber(L, -2);
      k->n = (size_t)snprintf(k->text, sizeof k->text, "%.14g", (double)k->d);
      all_positive_ints = 0;
    }
    if (lua_gettop(L) < JSON_STACK_VALUES && lua_checkstack(L, 2)) {
      k->value = lua_gettop(L) - 1;
      lua_insert(L, -2);  /* the value stays, below the key */
    } else {
      k->value = 0;
      lua_pop(L, 1);
    }
  }
  size_t count = b->kn - base;
  if (b->err) goto done;
  /* lua-cjson's arrays: positive integer keys, not too sparse (holes are null). */
  if (count > 0 && all_positive_ints && !(max > 2 * (lua_Integer)count && max > 10)) {
    lua_settop(L, top);
    jputc(b, '[');
    for (lua_Integer i = 1; i <= max && !b->err; i++) {
      if (i > 1) jputc(b, ',');
      lua_rawgeti(L, idx, i);
      jvalue(b, L, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
    }
    jputc(b, ']');
    goto done;
  }
  /* An object, its keys in byte order: the same alert is the same text. */
  for (size_t i = base; i < b->kn; i++)
    if (b->ks[i].s == NULL && b->ks[i].isint)
      b->ks[i].n = (size_t)snprintf(b->ks[i].text, sizeof b->ks[i].text, "%lld", (long long)b->ks[i].i);
  th_sort(b->ks + base, count, sizeof *b->ks, jkey_cmp);
  jputc(b, '{');
  for (size_t i = 0; i < count && !b->err; i++) {
    const jkey *k = &b->ks[base + i];  /* again each time: a nested table may move the stack */
    if (i > 0) jputc(b, ',');
    jstr(b, jkey_text(k), k->n);
    jputc(b, ':');
    if (k->value) {
      jvalue(b, L, k->value, depth + 1);
      continue;
    }
    if (k->s) lua_pushlstring(L, k->s, k->n);
    else if (k->isint) lua_pushinteger(L, k->i);
    else lua_pushnumber(L, k->d);
    lua_rawget(L, idx);
    jvalue(b, L, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  jputc(b, '}');
done:
  lua_settop(L, top);
  b->kn = base;
}

static void jvalue(jbuf *b, lua_State *L, int idx, int depth) {
  if (b->err) return;
  luaL_checkstack(L, 4, "encode");
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      jstr(b, s, n);
      break;
    }
    case LUA_TNUMBER: jnum(b, L, idx); break;
    case LUA_TBOOLEAN: lua_toboolean(L, idx) ? jput(b, "true", 4) : jput(b, "false", 5); break;
    case LUA_TNIL: jput(b, "null", 4); break;
    case LUA_TTABLE: jtable(b, L, idx, depth); break;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) {  /* cjson.null */
        jput(b, "null", 4);
        break;
      }
      b->err = "a value of a type JSON has not (a function, a userdata)";
      break;
    case LUA_TUSERDATA:
      if (luaL_testudata(L, idx, TH_JSON_RAW) != NULL) {  /* thsys.raw: its text as it is */
        size_t n, at = b->len;
        lua_getiuservalue(L, idx, 1);
        const char *s = lua_tolstring(L, -1, &n);
        jput(b, s, n);
        lua_pop(L, 1);
        if (b->mark && b->at < 0 && lua_rawequal(L, idx, b->mark)) b->at = (long long)at, b->at_len = (long long)n;
        break;
      }
      /* fall through */
    default: b->err = "a value of a type JSON has not (a function, a userdata)"; break;
  }
}

/* The text and key list of the last encoding, kept for the next: a worker
 * encodes an alert after another, and a block of 4 KiB or more malloc'd and
 * freed each time made glibc consolidate its small free blocks each time
 * (a tenth of an alert's encoding). Not past KEEP_BYTES. Encoding calls no
 * Lua code, so it never runs inside itself. */
#define KEEP_BYTES ((size_t)1 << 20)
static jbuf kept;

int th_json_encode(lua_State *L, int idx, int mark) {
  idx = lua_absindex(L, idx);
  jbuf b = {kept.p, 0, kept.cap, NULL, kept.ks, 0, kept.kcap, mark ? lua_absindex(L, mark) : 0, -1, 0};
  kept.p = NULL, kept.ks = NULL, kept.cap = kept.kcap = 0;
  jvalue(&b, L, idx, 0);
  if (b.err) lua_pushnil(L), lua_pushstring(L, b.err);
  else lua_pushlstring(L, b.p ? b.p : "", b.len);
  if (b.cap <= KEEP_BYTES) kept.p = b.p, kept.cap = b.cap;
  else free(b.p);
  if (b.kcap * sizeof *b.ks <= KEEP_BYTES) kept.ks = b.ks, kept.kcap = b.kcap;
  else free(b.ks);
  if (b.err) return 2;
  if (!mark) return 1;
  lua_pushinteger(L, (lua_Integer)b.at);
  lua_pushinteger(L, (lua_Integer)b.at_len);
  return 3;
}

int th_json_raw(lua_State *L) {
  luaL_checktype(L, 1, LUA_TSTRING);
  lua_newuserdatauv(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  if (luaL_newmetatable(L, TH_JSON_RAW)) {
    lua_pushliteral(L, "thsys.raw");
    lua_setfield(L, -2, "__name");
  }
  lua_setmetatable(L, -2);
  return 1;
}
