/* jsontext_fuzz.c: the JSON text helpers of a worker (host/worker/jsontext.c)
 * on any bytes.
 *
 * The input is a record's text; a hash of it picks the key asked for, among
 * the payloads the normalizer renders and a few others. What must hold:
 *
 *  - th_key_order returns a table or nil, and leaves the Lua stack as it was
 *    plus that one value, whatever the bytes;
 *  - th_order_scan builds the same tree, whatever the bytes;
 *  - when lua-cjson decodes the text (what a worker hands it), the tree is
 *    the one normalize.lua's own scan (M.key_order) gives, key for key;
 *  - when lua-cjson decodes the text, th_json_encode writes what lua-cjson
 *    reads back as the same value, and encoding that again gives the same
 *    bytes (keys in order, whatever order the tables were built in).
 */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fuzz.h"
#include "worker/jsontext.h"

static const char *KEYS[] = {"requestParameters", "responseElements", "additionalEventData",
                             "serviceEventDetails", "eventName", "a", ""};

/* Lua: same(a, b) -> true, or false and where they differ. */
static const char *SAME =
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) then return false, path .. ': ' .. type(a) .. ' vs ' .. type(b) end\n"
    "  if type(a) ~= 'table' then return a == b, path end\n"
    "  for k, v in pairs(a) do\n"
    "    local ok, why = same(v, b[k], path .. '.' .. tostring(k))\n"
    "    if not ok then return false, why end\n"
    "  end\n"
    "  for k in pairs(b) do if a[k] == nil then return false, path .. '.' .. tostring(k) end end\n"
    "  return true\n"
    "end\n"
    "return same\n";

static lua_State *L;

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  const char *init =
      "package.path = '" TH_SRCDIR "/scripts/?.lua;' .. package.path\n"
      "return require('normalize').key_order, require('cjson').decode\n";
  if (luaL_dostring(L, init) != LUA_OK || luaL_dostring(L, SAME) != LUA_OK) {
    fprintf(stderr, "jsontext_fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  /* stack: 1 key_order, 2 decode, 3 same */
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

  int top = lua_gettop(L);
  th_key_order(L, text, size, key, strlen(key));
  FUZZ_CHECK(lua_gettop(L) == top + 1, "the stack grew by %d", lua_gettop(L) - top);
  FUZZ_CHECK(lua_istable(L, -1) || lua_isnil(L, -1), "a %s", luaL_typename(L, -1));

  /* th_order_scan: th_key_order's tree, whatever the bytes. */
  th_order *o = th_order_scan(text, size, key, strlen(key));
  FUZZ_CHECK(o != NULL, "out of memory");
  lua_pushvalue(L, 3);  /* same(key_order's, order_scan's, key) */
  lua_pushvalue(L, -2);
  th_order_push(L, o);
  th_order_free(o);
  lua_pushstring(L, key);
  lua_call(L, 3, 2);
  FUZZ_CHECK(lua_toboolean(L, -2), "th_order_scan and th_key_order differ at %s", lua_tostring(L, -1));
  lua_pop(L, 2);

  lua_pushvalue(L, 2);  /* does lua-cjson take it? */
  lua_pushlstring(L, text, size);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    lua_pop(L, 1);
    lua_pushvalue(L, 3);  /* same(lua, c, key) */
    lua_pushvalue(L, 1);
    lua_pushlstring(L, text, size);
    lua_pushstring(L, key);
    FUZZ_CHECK(lua_pcall(L, 2, 1, 0) == LUA_OK, "the Lua scan failed: %s", lua_tostring(L, -1));
    lua_pushvalue(L, -3);
    lua_pushstring(L, key);
    lua_call(L, 3, 2);
    FUZZ_CHECK(lua_toboolean(L, -2), "C and Lua differ at %s", lua_tostring(L, -1));
    lua_pop(L, 2);
  } else {
    lua_pop(L, 1);
  }
  lua_settop(L, top);

  lua_pushvalue(L, 2);  /* encode what lua-cjson makes of it */
  lua_pushlstring(L, text, size);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    int v = lua_gettop(L);
    FUZZ_CHECK(th_json_encode(L, v, 0) == 1, "could not encode: %s", lua_tostring(L, -1));
    size_t n1;
    const char *t1 = lua_tolstring(L, -1, &n1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    FUZZ_CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK, "lua-cjson cannot read what was written: %s", lua_tostring(L, -1));
    int back = lua_gettop(L);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, v);
    lua_pushvalue(L, back);
    lua_pushstring(L, "value");
    lua_call(L, 3, 2);
    FUZZ_CHECK(lua_toboolean(L, -2), "read back differently at %s", lua_tostring(L, -1));
    lua_pop(L, 2);
    FUZZ_CHECK(th_json_encode(L, back, 0) == 1, "could not encode again");
    size_t n2;
    const char *t2 = lua_tolstring(L, -1, &n2);
    FUZZ_CHECK(n1 == n2 && memcmp(t1, t2, n1) == 0, "written again, not the same bytes");
  }
  lua_settop(L, top);
  free(text);
  return 0;
}
