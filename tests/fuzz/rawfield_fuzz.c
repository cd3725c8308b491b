/* rawfield_fuzz.c: the strict reading of a record's fields (host/rawfield.c),
 * against lua-cjson, the worker's decoder, set as the worker sets it.
 *
 * The input is a record's text. th_rawfield_read reads a few paths of it
 * (eventSource, eventName, userIdentity.type, userIdentity, a.b.c.d). What
 * must hold, whenever it reads the text (returns 0):
 *
 *  - lua-cjson decodes the text too, to an object;
 *  - a field read as a string is, in the decoded table, that string with its
 *    escapes undone (th_json_unescape);
 *  - a field read as absent is nil there; one read as anything else is no
 *    string there.
 *
 * A text it refuses (-1) is any the worker decodes or reports: nothing to check
 * but that it is refused whole, each time the same.
 *
 * Few mutations of a record are valid JSON, so each input also seeds a
 * generated object (keys of the paths, plain and escaped, repeated; values
 * of every type, escapes, surrogate pairs; spaces anywhere), checked the same
 * way. And for each text read, th_rawconds_ok is asked about one rule per
 * path, an exact or an exclusion of the string read (or of another), and must
 * say what the reading says: only a raw record (eventSource or eventName a
 * string) rules a rule out; a field read as no string rules out nothing.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proto.h"
#include "rawfield.h"

static const char *PATHS[] = {"eventSource", "eventName", "userIdentity.type", "userIdentity", "a.b.c.d"};
enum { NPATHS = sizeof PATHS / sizeof PATHS[0] };

/* Lua: check(text, path, kind, value) -> ok, why. kind: 0 absent, 1 string, 2 other. */
static const char *CHECK_LUA =
    "local cjson = require('cjson')\n"
    "cjson.decode_max_depth(128)\n"
    "cjson.decode_invalid_numbers(false)\n"
    "return function(text, path, kind, value)\n"
    "  local ok, v = pcall(cjson.decode, text)\n"
    "  if not ok then return false, 'read, but lua-cjson refuses it: ' .. tostring(v) end\n"
    "  if type(v) ~= 'table' then return false, 'read, but it decodes to a ' .. type(v) end\n"
    "  for key in path:gmatch('[^.]+') do\n"
    "    if type(v) ~= 'table' then v = nil break end\n"
    "    v = v[key]\n"
    "  end\n"
    "  if kind == 0 and v ~= nil then return false, path .. ': absent, but decoded ' .. tostring(v) end\n"
    "  if kind == 1 and v ~= value then\n"
    "    return false, path .. ': read ' .. value .. ', decoded ' .. tostring(v)\n"
    "  end\n"
    "  if kind == 2 and type(v) == 'string' then return false, path .. ': no string, but decoded ' .. v end\n"
    "  return true\n"
    "end\n";

static lua_State *L;
static th_rawpath paths[NPATHS];

static void teardown(void) {
  if (L) lua_close(L);
}

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, CHECK_LUA) != LUA_OK) {
    fprintf(stderr, "rawfield_fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  /* stack: 1 check */
  for (int i = 0; i < NPATHS; i++)
    if (th_rawpath_parse(PATHS[i], strlen(PATHS[i]), &paths[i]) < 0) abort();
  atexit(teardown);
}

/* ---- a generated object ---------------------------------------------------------- */

typedef struct gen {
  char *p;
  size_t len, cap;
  fuzz_rng *rng;
} gen;

static void put(gen *g, const char *s) {
  size_t n = strlen(s);
  if (g->len + n + 1 > g->cap) {
    g->cap = (g->len + n + 1) * 2;
    g->p = realloc(g->p, g->cap);
    FUZZ_CHECK(g->p != NULL, "out of memory");
  }
  memcpy(g->p + g->len, s, n + 1);
  g->len += n;
}

static const char *pick(gen *g, const char *const *v, size_t n) { return v[fuzz_below(g->rng, n)]; }

static void space(gen *g) {
  static const char *const SP[] = {"", "", "", " ", "\t", "\n ", "\r\n"};
  put(g, pick(g, SP, sizeof SP / sizeof SP[0]));
}

static void gen_value(gen *g, int depth);

static void gen_string(gen *g) {
  static const char *const PARTS[] = {"AssumedRole", "Root", "iam.amazonaws.com", "Create", "User", "\\u0052",
                                      "\\u0000", "\\\"", "\\\\", "\\/", "\\n", "\\ud83d\\ude00", "\xc3\xa9", "-",
                                      " ", "type"};
  put(g, "\"");
  for (uint64_t i = fuzz_below(g->rng, 4); i > 0; i--) put(g, pick(g, PARTS, sizeof PARTS / sizeof PARTS[0]));
  put(g, "\"");
}

static void gen_object(gen *g, int depth) {
  static const char *const KEYS[] = {"\"eventSource\"", "\"eventName\"", "\"userIdentity\"", "\"type\"", "\"a\"",
                                     "\"b\"", "\"c\"", "\"d\"", "\"user\\u0049dentity\"", "\"t\\u0079pe\"",
                                     "\"event\\u004eame\"", "\"\"", "\"x\""};
  put(g, "{");
  space(g);
  uint64_t n = fuzz_below(g->rng, depth < 4 ? 6 : 2);
  for (uint64_t i = 0; i < n; i++) {
    if (i) {
      put(g, ",");
      space(g);
    }
    put(g, pick(g, KEYS, sizeof KEYS / sizeof KEYS[0]));
    space(g);
    put(g, ":");
    space(g);
    gen_value(g, depth + 1);
    space(g);
  }
  put(g, "}");
}

static void gen_value(gen *g, int depth) {
  static const char *const WORDS[] = {"true", "false", "null", "0", "-12.5e+3", "7", "1E2"};
  switch (fuzz_below(g->rng, depth < 5 ? 5 : 2)) {
    case 0: gen_string(g); return;
    case 1: put(g, pick(g, WORDS, sizeof WORDS / sizeof WORDS[0])); return;
    case 2: gen_object(g, depth); return;
    case 3: gen_string(g); return;
    default: break;
  }
  put(g, "[");
  space(g);
  for (uint64_t i = fuzz_below(g->rng, 3); i > 0; i--) {
    gen_value(g, depth + 1);
    space(g);
    put(g, i > 1 ? "," : "");
    space(g);
  }
  put(g, "]");
}

/* ---- the checks --------------------------------------------------------------------- */

/* The values read agree with lua-cjson's. */
static void against_cjson(const char *text, size_t size, const th_rawval *got) {
  for (int i = 0; i < NPATHS; i++) {
    int top = lua_gettop(L);
    lua_pushvalue(L, 1);
    lua_pushlstring(L, text, size);
    lua_pushstring(L, PATHS[i]);
    lua_pushinteger(L, got[i].kind == TH_RAW_ABSENT ? 0 : got[i].kind == TH_RAW_STRING ? 1 : 2);
    if (got[i].kind == TH_RAW_STRING) {
      FUZZ_CHECK(got[i].p >= text && got[i].p + got[i].len <= text + size, "a string outside the text");
      FUZZ_CHECK(got[i].escaped == (memchr(got[i].p, '\\', got[i].len) != NULL), "escaped is wrong");
      char *s = malloc(got[i].len + 1);
      FUZZ_CHECK(s != NULL, "out of memory");
      size_t n = th_json_unescape(got[i].p, got[i].len, s);
      lua_pushlstring(L, s, n);
      free(s);
    } else {
      lua_pushnil(L);
    }
    FUZZ_CHECK(lua_pcall(L, 4, 2, 0) == LUA_OK, "the check failed to run: %s", lua_tostring(L, -1));
    FUZZ_CHECK(lua_toboolean(L, -2), "C and lua-cjson differ: %s", lua_tostring(L, -1));
    lua_settop(L, top);
  }
}

/* Rule i: one condition on path i, an exclusion or not, of the string read
 * there (or of "zz" when none was read, or when other is set). */
static void conditions(const char *text, size_t size, const th_rawval *got, fuzz_rng *rng) {
  th_rawconds *c = th_rawconds_new(NPATHS);
  FUZZ_CHECK(c != NULL, "out of memory");
  int exclude[NPATHS], same[NPATHS];
  char *unesc[NPATHS] = {0};
  for (int i = 0; i < NPATHS; i++) {
    exclude[i] = (int)fuzz_below(rng, 2);
    same[i] = got[i].kind == TH_RAW_STRING && fuzz_below(rng, 4) != 0;
    size_t n = 2;
    if (same[i]) {
      unesc[i] = malloc(got[i].len + 1);
      FUZZ_CHECK(unesc[i] != NULL, "out of memory");
      n = th_json_unescape(got[i].p, got[i].len, unesc[i]);
    }
    th_buf b;
    th_buf_init(&b);
    th_buf_u32(&b, 1);
    th_buf_cstr(&b, PATHS[i]);
    th_buf_u8(&b, (uint8_t)exclude[i]);
    th_buf_u32(&b, 1);
    th_buf_str(&b, same[i] ? unesc[i] : "zz", n);
    FUZZ_CHECK(!b.oom && th_rawconds_span(b.p, b.len) == (long)b.len, "a condition does not hold together");
    FUZZ_CHECK(th_rawconds_add(c, (uint32_t)i, b.p, b.len) == 0, "a condition was refused");
    th_buf_free(&b);
  }
  int raw = got[0].kind == TH_RAW_STRING || got[1].kind == TH_RAW_STRING, read = 0;
  for (int i = 0; i < NPATHS; i++) {
    int is_zz = 0;
    if (got[i].kind == TH_RAW_STRING && !same[i]) {
      char *t = malloc(got[i].len + 1);
      FUZZ_CHECK(t != NULL, "out of memory");
      is_zz = th_json_unescape(got[i].p, got[i].len, t) == 2 && memcmp(t, "zz", 2) == 0;
      free(t);
    }
    int in = got[i].kind == TH_RAW_STRING && (same[i] || is_zz);
    int want = !raw || got[i].kind == TH_RAW_OTHER || (exclude[i] ? !in : in);
    FUZZ_CHECK(th_rawconds_ok(c, (uint32_t)i, text, size, &read) == want, "rule %d (%s, %s): ok is not %d", i,
               PATHS[i], exclude[i] ? "exclude" : "exact", want);
    free(unesc[i]);
  }
  th_rawconds_free(c);
}

static void check(const char *text, size_t size, fuzz_rng *rng) {
  th_rawval got[NPATHS], again[NPATHS];
  int rc = th_rawfield_read(text, size, paths, NPATHS, got);
  FUZZ_CHECK(th_rawfield_read(text, size, paths, NPATHS, again) == rc, "a second reading says otherwise");
  if (rc != 0) return;
  against_cjson(text, size, got);
  conditions(text, size, got, rng);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) setup();
  char *text = fuzz_dup(data, size);
  fuzz_rng rng = fuzz_rng_of(data, size);
  check(text, size, &rng);
  free(text);

  gen g = {NULL, 0, 0, &rng};
  space(&g);
  gen_object(&g, 0);
  space(&g);
  th_rawval got[NPATHS];
  FUZZ_CHECK(th_rawfield_read(g.p, g.len, paths, NPATHS, got) == 0, "a generated object is refused: %s", g.p);
  check(g.p, g.len, &rng);
  free(g.p);
  return 0;
}
