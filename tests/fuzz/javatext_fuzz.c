/* javatext_fuzz.c: the Java text of a payload (host/worker/javatext.c) on
 * any decoded record.
 *
 * The input is a record's text. When lua-cjson decodes it (what a worker
 * walks), th_map_text runs on each payload the normalizer renders, on a few
 * other members and on the whole value, with no key order, with the order
 * normalize.lua's own scan (M.key_order) finds in the text, and with the
 * order it reads from the text itself, with and without a key renamed away
 * (picked by a hash of the input). What must hold:
 *
 *  - it answers true, the cleaned copy, the text and `ambiguous`, each equal
 *    to normalize.lua's convert() (M.convert, the reference): the same types
 *    (integers as integers), values, bytes; or false, only where convert
 *    would do what only Lua does (a key order half known, nesting past 200);
 *  - it raises nothing, and leaves the Lua stack as it was plus its answer.
 */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fuzz.h"
#include "worker/javatext.h"

static const char *KEYS[] = {"requestParameters", "responseElements", "additionalEventData",
                             "serviceEventDetails", "a", ""};

/* Lua: compare(text, key, skip) -> nil when lua-cjson refuses the text, else
 * a list of answers to check: { c_results..., lua_results... } per walk. */
static const char *COMPARE =
    "local c_map_text = ...\n"
    "local N, cjson = require('normalize'), require('cjson')\n"
    "local DROPPED = { [''] = true, ['-'] = true, ['none'] = true }\n"
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false, path end\n"
    "  if type(a) ~= 'table' then return a == b or (a ~= a and b ~= b), path end\n"
    "  for k, v in pairs(a) do\n"
    "    local ok, why = same(v, b[k], path .. '.' .. tostring(k))\n"
    "    if not ok then return false, why end\n"
    "  end\n"
    "  for k in pairs(b) do if a[k] == nil then return false, path .. '.' .. tostring(k) end end\n"
    "  return true\n"
    "end\n"
    "local function walk(v, order, skip, raw, key)\n"
    "  local ok, done, cv, ct, ca = pcall(c_map_text, v, order, skip, DROPPED, raw, key)\n"
    "  if not ok then return false, 'C raised: ' .. tostring(done) end\n"
    "  if not done then return true end\n"
    "  local lv, lt, la = N.convert(v, raw and N.key_order(raw, key) or order, skip)\n"
    "  local same_value, where = same(lv, cv, 'value')\n"
    "  if not same_value then return false, 'cleaned copies differ at ' .. where end\n"
    "  if lt ~= ct then return false, 'texts differ: ' .. tostring(lt) .. ' | ' .. tostring(ct) end\n"
    "  if la ~= ca then return false, 'ambiguous differs' end\n"
    "  return true\n"
    "end\n"
    "return function(text, key, skip)\n"
    "  local ok, rec = pcall(cjson.decode, text)\n"
    "  if not ok then return true end\n"
    "  local good, why = walk(rec, nil, skip)\n"
    "  if not good then return false, 'the whole value: ' .. why end\n"
    "  if type(rec) ~= 'table' then return true end\n"
    "  local v = rec[key]\n"
    "  if v == nil then return true end\n"
    "  for _, order in ipairs({ false, N.key_order(text, key) or false }) do\n"
    "    good, why = walk(v, order or nil, skip)\n"
    "    if not good then return false, key .. (order and ' (ordered)' or '') .. ': ' .. why end\n"
    "  end\n"
    "  good, why = walk(v, nil, skip, text, key)\n"
    "  if not good then return false, key .. ' (order read from the text by C): ' .. why end\n"
    "  return true\n"
    "end\n";

static lua_State *L;

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, "package.path = '" TH_SRCDIR "/scripts/?.lua;' .. package.path") != LUA_OK ||
      luaL_loadstring(L, COMPARE) != LUA_OK) {
    fprintf(stderr, "javatext_fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_pushcfunction(L, th_map_text);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "javatext_fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  /* stack: 1 compare */
}

static void teardown(void) {
  if (L) lua_close(L);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) {
    setup();
    atexit(teardown);
  }
  char *text = fuzz_dup(data, size);
  fuzz_rng r = fuzz_rng_of(data, size);
  const char *key = KEYS[fuzz_below(&r, sizeof KEYS / sizeof KEYS[0])];
  static const char *SKIPS[] = {NULL, "UserName", "a", "Aa"};
  const char *skip = SKIPS[fuzz_below(&r, sizeof SKIPS / sizeof SKIPS[0])];

  int top = lua_gettop(L);
  lua_pushvalue(L, 1);
  lua_pushlstring(L, text, size);
  lua_pushstring(L, key);
  if (skip) lua_pushstring(L, skip);
  else lua_pushnil(L);
  FUZZ_CHECK(lua_pcall(L, 3, 2, 0) == LUA_OK, "the comparison failed to run: %s", lua_tostring(L, -1));
  FUZZ_CHECK(lua_toboolean(L, -2), "C and Lua differ: %s", lua_tostring(L, -1));
  lua_settop(L, top);

  /* The stack: C adds its answer and nothing else. */
  lua_pushcfunction(L, th_map_text);
  lua_pushlstring(L, text, size);
  lua_pushnil(L);
  lua_pushnil(L);
  lua_newtable(L);
  FUZZ_CHECK(lua_pcall(L, 4, LUA_MULTRET, 0) == LUA_OK, "it raised: %s", lua_tostring(L, -1));
  int answers = lua_gettop(L) - top;
  FUZZ_CHECK(answers == 4 || (answers == 1 && !lua_toboolean(L, -1)), "%d values", answers);
  lua_settop(L, top);
  free(text);
  return 0;
}
