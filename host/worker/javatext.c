/* javatext.c: the Java text of a CloudTrail payload in a worker.
 *
 * th_map_text (thsys.map_text) is normalize.lua's convert() in C: the
 * pipeline's clean-up of requestParameters, responseElements,
 * additionalEventData and serviceEventDetails (null, "", "-", "none", empty
 * objects and arrays dropped) and their text as Elasticsearch's Map.toString
 * writes it (keys in Java HashMap order, Java's numbers), in one walk over
 * the decoded table. convert() stays the reference, what plain lua5.4 runs
 * and what anyone edits; this walk gives its answer, byte for byte, or says
 * it cannot (false: then normalize.lua runs convert). tests/c/javatext_test.c
 * holds them equal on every payload of the real records and the javatext
 * fuzz harness on any decoded text. It exists because convert builds a string
 * per value and sorts in Lua: some 30 us of an alert on a 2 to 5 KB payload.
 *
 * Where it says it cannot, convert would do something only Lua knows how:
 * index a table through its metatable, hash a key that is not a string (an
 * error), sort a HashMap bucket in which some keys have a place in the order
 * tree and some have not (an order that depends on table.sort itself), or
 * nest deeper than this walk goes. */
#include "javatext.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"
#include "sort.h"

#define MAX_DEPTH 200           /* deeper: convert's business */
#define MAX_SLOTS 100000        /* Lua stack slots this walk may hold at once */
#define BOX "thsys.map_text"    /* registry name of the text buffer's metatable */

enum { KEEP, DROP, FALLBACK };  /* what became of a value */

struct ent;

/* What the walk allocates, in a userdata so that a memory error raised in the
 * middle of it (lua_createtable under a normalizer's limits) leaks nothing. */
typedef struct box {
  char *p;                      /* the text */
  size_t len, cap;
  struct ent *ents;             /* the keys of the objects being walked, outermost first */
  size_t n, ncap;
  th_order *tree;               /* the key order scanned from the record's text */
} box;

/* A key of an object being walked. */
typedef struct ent {
  const char *s;                /* the key (held by the table and the stack) */
  size_t n;
  int key, value;               /* their places on the Lua stack */
  uint32_t bucket;              /* its HashMap bucket */
  int has_pos;                  /* it has a place in order.index: pos */
  lua_Integer pos;
} ent;

/* The order tree is a Lua table (order, sub and index slots on the stack,
 * 0: none) or, when the walk scans the record's text itself, w->tree with a
 * node (-1: none). */
typedef struct walk {
  lua_State *L;
  int dropped;                  /* stack index of normalize.lua's DROPPED */
  box *t;
  th_order *tree;               /* the C tree, or NULL: Lua tables */
  int ambiguous;                /* two keys of a bucket were ordered by name */
} walk;

static void box_free(box *b) {
  free(b->p);
  free(b->ents);
  th_order_free(b->tree);
  b->p = NULL;
  b->ents = NULL;
  b->tree = NULL;
}

static int box_gc(lua_State *L) {
  box_free(lua_touserdata(L, 1));
  return 0;
}


static int put(walk *w, const char *s, size_t n) {
  box *b = w->t;
  if (n == 0) return 0;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) return -1;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

/* ---- Java ------------------------------------------------------------------------- */

/* Lua 5.4's strict utf8_decode: the code point at s[i..n), or -1 where utf8.len fails. */
static long utf8_at(const unsigned char *s, size_t n, size_t *i) {
  static const uint32_t limits[] = {~(uint32_t)0, 0x80, 0x800, 0x10000u, 0x200000u, 0x4000000u};
  unsigned c = s[*i];
  uint32_t res = 0;
  if (c < 0x80) {
    res = c;
  } else {
    int count = 0;
    for (; c & 0x40; c <<= 1) {
      size_t j = *i + (size_t)++count;
      unsigned cc = j < n ? s[j] : 0;  /* past the end: Lua reads the string's '\0' */
      if ((cc & 0xC0) != 0x80) return -1;
      res = (res << 6) | (cc & 0x3F);
    }
    if (count > 5) return -1;
    res |= ((uint32_t)(c & 0x7F) << (count * 5));
    if (res > 0x7FFFFFFFu || res < limits[count]) return -1;
    *i += (size_t)count;
  }
  if (res > 0x10FFFFu || (res >= 0xD800u && res <= 0xDFFFu)) return -1;
  (*i)++;
  return (long)res;
}

/* normalize.lua's java_hash: String.hashCode over UTF-16 units (over bytes
 * when the key is not UTF-8), spread as HashMap.hash() does. */
static uint32_t java_hash(const char *k, size_t n) {
  const unsigned char *s = (const unsigned char *)k;
  uint32_t h = 0;
  size_t i;
  for (i = 0; i < n && s[i] < 0x80; i++) h = h * 31 + s[i];
  if (i < n) {
    int valid = 1;
    for (size_t j = 0; j < n && valid;) valid = utf8_at(s, n, &j) >= 0;
    h = 0;
    if (valid) {
      for (size_t j = 0; j < n;) {
        uint32_t cp = (uint32_t)utf8_at(s, n, &j);
        if (cp >= 0x10000) {
          cp -= 0x10000;
          h = h * 31 + (0xD800 | (cp >> 10));
          cp = 0xDC00 | (cp & 0x3FF);
        }
        h = h * 31 + cp;
      }
    } else {
      for (size_t j = 0; j < n; j++) h = h * 31 + s[j];
    }
  }
  return h ^ (h >> 16);
}

/* Lua's own l_strcmp: what `x < y` does with two strings (strcoll, piece by
 * piece around '\0'). Both are Lua strings, so '\0'-terminated. */
static int lua_strcmp(const char *l, size_t ll, const char *r, size_t lr) {
  for (;;) {
    int c = strcoll(l, r);
    if (c != 0) return c;
    size_t len = strlen(l);
    if (len == lr) return len == ll ? 0 : 1;
    if (len == ll) return -1;
    len++;
    l += len, ll -= len, r += len, lr -= len;
  }
}

/* normalize.lua's jdouble: Double.toString of a float that is not integral. */
static int jdouble(char *out, size_t size, double x) {
  if (x != x) return snprintf(out, size, "NaN");
  if (x == HUGE_VAL) return snprintf(out, size, "Infinity");
  if (x == -HUGE_VAL) return snprintf(out, size, "-Infinity");
  char s[64];
  for (int p = 1; p <= 17; p++) {  /* the shortest %e that reads back the same */
    snprintf(s, sizeof s, "%.*e", p - 1, x);
    if (strtod(s, NULL) == x) break;
  }
  const char *q = s;
  const char *sign = "";
  if (*q == '-') sign = "-", q++;
  char digits[40];
  size_t dn = 0;
  digits[dn++] = *q++;
  if (*q == '.') {
    q++;
    while (*q >= '0' && *q <= '9') digits[dn++] = *q++;
  }
  while (dn > 1 && digits[dn - 1] == '0') dn--;  /* not the first digit */
  digits[dn] = '\0';
  int e = atoi(q + 1);  /* after the 'e' */
  double ax = x < 0 ? -x : x;
  if (ax >= 1e-3 && ax < 1e7) {
    if (e >= 0) {
      char intpart[40];
      size_t in = (size_t)e + 1 < dn ? (size_t)e + 1 : dn;
      memcpy(intpart, digits, in);
      while (in < (size_t)e + 1) intpart[in++] = '0';
      intpart[in] = '\0';
      const char *frac = (size_t)e + 1 < dn ? digits + e + 1 : "0";
      return snprintf(out, size, "%s%s.%s", sign, intpart, frac);
    }
    return snprintf(out, size, "%s0.%.*s%s", sign, -e - 1, "000", digits);  /* -e - 1 is 0 to 2 */
  }
  return snprintf(out, size, "%s%c.%sE%d", sign, digits[0], dn > 1 ? digits + 1 : "0", e);
}

/* ---- the walk ---------------------------------------------------------------------- */

static int convert(walk *w, int v, int order, int node, const char *skip, size_t skipn, int depth);

/* The table an order slot holds: 0 for none (no slot, nil or false), -1 for
 * anything else that is not a table (convert would index it: Lua's business). */
static int order_table(lua_State *L, int slot) {
  if (slot == 0 || !lua_toboolean(L, slot)) return 0;
  return lua_istable(L, slot) ? slot : -1;
}

/* order.sub or order.index of the order table at `order`, pushed; its slot, 0 or -1. */
static int order_field(lua_State *L, int order, const char *name) {
  if (order == 0) {
    lua_pushnil(L);
    return 0;
  }
  lua_getfield(L, order, name);
  return order_table(L, lua_gettop(L));
}

static ent *ent_push(box *b) {
  if (b->n == b->ncap) {
    size_t cap = b->ncap ? 2 * b->ncap : 64;
    ent *e = realloc(b->ents, cap * sizeof *e);
    if (e == NULL) return NULL;
    b->ents = e;
    b->ncap = cap;
  }
  return &b->ents[b->n++];
}

/* The HashMap's iteration order: by bucket, then as hashmap_order sorts a
 * bucket (by place in the text, or by name when no key has one). */
static int ent_cmp(const void *a, const void *b) {
  const ent *x = a, *y = b;
  if (x->bucket != y->bucket) return x->bucket < y->bucket ? -1 : 1;
  if (x->has_pos) return (x->pos > y->pos) - (x->pos < y->pos);
  return lua_strcmp(x->s, x->n, y->s, y->n);
}

static int array(walk *w, int v, int children, int node, int depth) {
  lua_State *L = w->L;
  lua_Integer len = (lua_Integer)lua_rawlen(L, v);
  lua_createtable(L, len < 64 ? (int)len : 64, 0);
  int out = lua_gettop(L);
  size_t start = w->t->len;
  if (put(w, "[", 1)) return FALLBACK;
  lua_Integer kept = 0;
  for (lua_Integer i = 1; i <= len; i++) {
    int child = 0, child_node = -1;
    if (children) {
      lua_geti(L, children, i);  /* `children[i]` */
      child = lua_gettop(L);
    } else if (node >= 0) {
      child_node = th_order_elem(w->tree, node, i);
    }
    lua_rawgeti(L, v, i);
    int value = lua_gettop(L);
    size_t mark = w->t->len;
    if (kept > 0 && put(w, ", ", 2)) return FALLBACK;
    int st = convert(w, value, child, child_node, NULL, 0, depth + 1);
    if (st == FALLBACK) return FALLBACK;
    if (st == KEEP) lua_rawseti(L, out, ++kept);  /* the cleaned value */
    else w->t->len = mark;
    lua_pop(L, children ? 2 : 1);
  }
  if (kept == 0) {
    w->t->len = start;
    return DROP;
  }
  if (put(w, "]", 1)) return FALLBACK;
  return KEEP;
}

static int object(walk *w, int v, int children, int index, int node, const char *skip, size_t skipn, int depth) {
  lua_State *L = w->L;
  size_t base = w->t->n;
  uint64_t total = 0;
  lua_pushnil(L);
  while (lua_next(L, v) != 0) {  /* ... keys and values kept, key, value */
    total++;
    if (lua_type(L, -2) != LUA_TSTRING) return FALLBACK;  /* convert: `..`, or #k in java_hash */
    size_t kn;
    const char *ks = lua_tolstring(L, -2, &kn);
    if (skip && kn == skipn && memcmp(ks, skip, kn) == 0) {
      lua_pop(L, 1);
      continue;
    }
    if (lua_gettop(L) > MAX_SLOTS || !lua_checkstack(L, 4)) return FALLBACK;
    ent *e = ent_push(w->t);
    if (e == NULL) return FALLBACK;
    e->s = ks, e->n = kn;
    e->key = lua_gettop(L) - 1, e->value = lua_gettop(L);
    e->has_pos = 0;
    lua_pushvalue(L, -2);  /* the key again, for lua_next; the pair stays */
  }
  size_t count = w->t->n - base;
  if (count == 0) return DROP;
  uint64_t cap = 16;
  while (total * 4 > cap * 3) cap *= 2;
  uint32_t mask = (uint32_t)(cap - 1);  /* past 2^32 keys, no bucket needs more bits */
  for (size_t i = 0; i < count; i++) {
    ent *e = &w->t->ents[base + i];
    e->bucket = java_hash(e->s, e->n) & mask;
  }
  /* Keys that share a bucket: their places in the text, if they have them. */
  if (count > 1) {
    th_sort(w->t->ents + base, count, sizeof *w->t->ents, ent_cmp);  /* by bucket (no key has a place yet) */
    for (size_t i = 0; i < count;) {
      size_t j = i + 1;
      while (j < count && w->t->ents[base + j].bucket == w->t->ents[base + i].bucket) j++;
      if (j - i > 1 && (index || (node >= 0 && th_order_is_object(w->tree, node)))) {
        size_t placed = 0;
        for (size_t k = i; k < j; k++) {
          ent *e = &w->t->ents[base + k];
          if (!index) {  /* the C tree: always an integer */
            if (th_order_pos(w->tree, node, e->s, e->n, &e->pos)) e->has_pos = 1, placed++;
            continue;
          }
          lua_pushvalue(L, e->key);
          lua_gettable(L, index);
          if (lua_toboolean(L, -1)) {
            if (!lua_isinteger(L, -1)) return FALLBACK;
            e->pos = lua_tointeger(L, -1);
            e->has_pos = 1;
            placed++;
          }
          lua_pop(L, 1);
        }
        if (placed != 0 && placed != j - i) return FALLBACK;  /* some placed, some not */
        if (placed) {
          th_sort(w->t->ents + base + i, j - i, sizeof *w->t->ents, ent_cmp);
          for (size_t k = i + 1; k < j; k++)
            if (w->t->ents[base + k].pos == w->t->ents[base + k - 1].pos) return FALLBACK;
        }
      }
      i = j;
    }
  }
  lua_createtable(L, 0, count < 64 ? (int)count : 64);
  int out = lua_gettop(L);
  size_t start = w->t->len;
  if (put(w, "{", 1)) return FALLBACK;
  size_t kept = 0, in_bucket = 0;
  for (size_t i = 0; i < count; i++) {
    ent e = w->t->ents[base + i];  /* a copy: the walk beneath may move the list */
    if (i > 0 && e.bucket != w->t->ents[base + i - 1].bucket) in_bucket = 0;
    size_t mark = w->t->len;
    if ((kept > 0 && put(w, ", ", 2)) || put(w, e.s, e.n) || put(w, "=", 1)) return FALLBACK;
    int child = 0, child_node = -1;
    if (children) {
      lua_pushvalue(L, e.key);
      lua_gettable(L, children);
      child = lua_gettop(L);
    } else if (node >= 0) {
      child_node = th_order_child(w->tree, node, e.s, e.n);
    }
    int st = convert(w, e.value, child, child_node, NULL, 0, depth + 1);
    if (st == FALLBACK) return FALLBACK;
    if (st == KEEP) {
      lua_pushvalue(L, e.key);
      lua_insert(L, -2);
      lua_rawset(L, out);  /* out[k] = the cleaned value */
      kept++;
      /* Two kept keys of one bucket, ordered by name: convert's `ambiguous`. */
      if (++in_bucket > 1 && !e.has_pos) w->ambiguous = 1;
    } else {
      w->t->len = mark;
    }
    if (children) lua_pop(L, 1);
  }
  if (kept == 0) {
    w->t->len = start;
    return DROP;
  }
  if (put(w, "}", 1)) return FALLBACK;
  return KEEP;
}

/* convert(v, order, skip) with v at `v` and order at `order` (0: none), or
 * the C tree's `node` (-1: none); skip (NULL: none) is the top-level key
 * renamed away. KEEP pushes the cleaned value and adds its text; DROP and
 * FALLBACK push nothing. */
static int convert(walk *w, int v, int order, int node, const char *skip, size_t skipn, int depth) {
  lua_State *L = w->L;
  char t[64];
  int n;
  switch (lua_type(L, v)) {
    case LUA_TSTRING: {
      lua_pushvalue(L, v);
      lua_gettable(L, w->dropped);  /* DROPPED[v] */
      int dropped = lua_toboolean(L, -1);
      lua_pop(L, 1);
      if (dropped) return DROP;
      size_t len;
      const char *s = lua_tolstring(L, v, &len);
      if (put(w, s, len)) return FALLBACK;
      lua_pushvalue(L, v);
      return KEEP;
    }
    case LUA_TNUMBER: {
      int isint;
      lua_Integer i = lua_tointegerx(L, v, &isint);  /* math.tointeger */
      if (isint) {
        n = snprintf(t, sizeof t, LUA_INTEGER_FMT, (LUAI_UACINT)i);
        lua_pushinteger(L, i);
      } else {
        n = jdouble(t, sizeof t, (double)lua_tonumber(L, v));
        lua_pushvalue(L, v);
      }
      if (n < 0 || put(w, t, (size_t)n)) {
        lua_pop(L, 1);
        return FALLBACK;
      }
      return KEEP;
    }
    case LUA_TBOOLEAN: {
      int b = lua_toboolean(L, v);
      if (put(w, b ? "true" : "false", b ? 4 : 5)) return FALLBACK;
      lua_pushboolean(L, b);
      return KEEP;
    }
    case LUA_TTABLE: break;
    default: return DROP;  /* cjson.null, and what JSON has not */
  }
  if (depth > MAX_DEPTH || lua_gettop(L) > MAX_SLOTS || !lua_checkstack(L, 8)) return FALLBACK;
  if (lua_getmetatable(L, v)) {
    lua_pop(L, 1);
    return FALLBACK;
  }
  int top = lua_gettop(L);
  size_t base = w->t->n;
  int st = FALLBACK;
  lua_rawgeti(L, v, 1);
  int is_array = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (w->tree) {
    lua_pushnil(L);  /* the first slot of the walk, for the cleaned table */
    st = is_array ? array(w, v, 0, node, depth) : object(w, v, 0, 0, node, skip, skipn, depth);
    goto done;
  }
  order = order_table(L, order);
  if (order < 0) goto done;
  int children = order_field(L, order, "sub");  /* `order and order.sub` */
  if (children < 0) goto done;
  if (is_array) {
    st = array(w, v, children, -1, depth);
  } else {
    int index = order_field(L, order, "index");
    if (index >= 0) st = object(w, v, children, index, -1, skip, skipn, depth);
  }
done:
  w->t->n = base;
  if (st == KEEP) {
    lua_replace(L, top + 1);  /* the cleaned table, where the first slot of the walk was */
    lua_settop(L, top + 1);
  } else {
    lua_settop(L, top);
  }
  return st;
}

int th_map_text(lua_State *L) {
  lua_settop(L, 6);
  luaL_checktype(L, 4, LUA_TTABLE);
  const char *skip = NULL;
  size_t skipn = 0;
  if (lua_type(L, 3) == LUA_TSTRING) {
    skip = lua_tolstring(L, 3, &skipn);
  } else if (!lua_isnil(L, 3)) {
    lua_pushboolean(L, 0);  /* `k ~= skip` of another type: convert's */
    return 1;
  }
  box *b = lua_newuserdatauv(L, sizeof *b, 0);  /* 7: freed by its __gc should Lua raise */
  memset(b, 0, sizeof *b);
  if (luaL_newmetatable(L, BOX)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  walk w = {L, 4, b, NULL, 0};
  int root = -1;
  if (lua_isnil(L, 2) && lua_type(L, 5) == LUA_TSTRING && lua_type(L, 6) == LUA_TSTRING) {
    size_t n, keyn;  /* order: th_key_order(raw, key), scanned here into C arrays */
    const char *raw = lua_tolstring(L, 5, &n), *key = lua_tolstring(L, 6, &keyn);
    if ((b->tree = th_order_scan(raw, n, key, keyn)) == NULL) {
      lua_pushboolean(L, 0);  /* out of memory: convert's */
      return 1;
    }
    w.tree = b->tree;
    root = th_order_root(b->tree);
  }
  int st = convert(&w, 1, 2, root, skip, skipn, 0);  /* KEEP: the cleaned value at 8 */
  if (st == FALLBACK) {
    box_free(b);
    lua_pushboolean(L, 0);
    return 1;
  }
  lua_pushboolean(L, 1);
  if (st == KEEP) {
    lua_insert(L, -2);  /* true, the cleaned value */
    lua_pushlstring(L, b->p ? b->p : "", b->len);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  box_free(b);
  lua_pushboolean(L, w.ambiguous);
  return 4;
}
