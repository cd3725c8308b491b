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
 * th_unslash (thsys.unslash): lua-cjson's "\/" written "/" in an alert's text,
 * so ARNs read as written; a gsub over a 4 KB alert cost more than encoding it. */
#include "jsontext.h"

#include <string.h>

#include <lauxlib.h>

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

static void add_utf8(luaL_Buffer *b, unsigned cp) {
  char u[4];
  int n;
  if (cp < 0x80) u[0] = (char)cp, n = 1;
  else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  } else {
    u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (char)(0x80 | (cp >> 6 & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
  }
  luaL_addlstring(b, u, (size_t)n);
}

/* Pushes the text of the string whose quote is at i and whose end (after the
 * closing quote) is e, its escapes undone as lua-cjson undoes them. */
static void push_text(const scan *c, size_t i, size_t e, int escaped) {
  const unsigned char *p = c->s + i + 1, *end = c->s + e - 1;
  if (!escaped) {
    lua_pushlstring(c->L, (const char *)p, (size_t)(end - p));
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(c->L, &b);
  while (p < end) {
    if (*p != '\\' || p + 1 >= end) {
      luaL_addchar(&b, (char)*p++);
      continue;
    }
    unsigned char x = p[1];
    p += 2;
    unsigned cp, lo;
    switch (x) {
      case 'b': luaL_addchar(&b, '\b'); break;
      case 'f': luaL_addchar(&b, '\f'); break;
      case 'n': luaL_addchar(&b, '\n'); break;
      case 'r': luaL_addchar(&b, '\r'); break;
      case 't': luaL_addchar(&b, '\t'); break;
      case 'u':
        if (!hex4(p, end, &cp)) break;  /* not JSON: lua-cjson refuses it */
        p += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
            hex4(p + 2, end, &lo) && lo >= 0xDC00 && lo < 0xE000) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        }
        add_utf8(&b, cp);
        break;
      default: luaL_addchar(&b, (char)x); break;  /* \" \\ \/ */
    }
  }
  luaL_pushresult(&b);
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

size_t th_unslash(const char *s, size_t n, char *out) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\\' && i + 1 < n) {  /* an escape: two bytes, whatever the second */
      if (s[i + 1] != '/') out[m++] = s[i];
      out[m++] = s[++i];
    } else {
      out[m++] = s[i];
    }
  }
  return m;
}
