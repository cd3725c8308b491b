/* jsontext_fuzz.c: the JSON text helpers of a worker (host/worker/jsontext.c)
 * on any bytes.
 *
 * The input is a record's text; a hash of it picks the key asked for, among
 * the payloads the normalizer renders and a few others. What must hold:
 *
 *  - th_key_order returns a table or nil, and leaves the Lua stack as it was
 *    plus that one value, whatever the bytes;
 *  - when lua-cjson decodes the text (what a worker hands it), the tree is
 *    the one normalize.lua's own scan (M.key_order) gives, key for key;
 *  - th_unslash never lengthens, leaves text without a backslash as it is,
 *    and writes no backslash that was not in the input.
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

  char *out = malloc(size ? size : 1);
  FUZZ_CHECK(out != NULL, "out of memory");
  size_t m = th_unslash(text, size, out);
  FUZZ_CHECK(m <= size, "unslash lengthened %zu bytes to %zu", size, m);
  if (memchr(text, '\\', size) == NULL) FUZZ_CHECK(m == size && memcmp(out, text, size) == 0, "changed text without a backslash");
  size_t in_bs = 0, out_bs = 0;
  for (size_t i = 0; i < size; i++) in_bs += text[i] == '\\';
  for (size_t i = 0; i < m; i++) out_bs += out[i] == '\\';
  FUZZ_CHECK(out_bs <= in_bs, "%zu backslashes out of %zu", out_bs, in_bs);
  free(out);
  free(text);
  return 0;
}
