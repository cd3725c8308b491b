/* tap_lua.h: C tests that hold their cases in a Lua script. The script gets
 * the C functions under test as its arguments and returns a list of
 * { name, ok, detail }; each is one CHECK. Include after tap.h. */
#ifndef TH_TAP_LUA_H
#define TH_TAP_LUA_H

#include <lauxlib.h>
#include <lualib.h>

/* Run script with fns as its arguments and check what it returns. Returns the
 * state for more checks (the caller closes it), or NULL when the script did
 * not load or run (said as a failed check). */
static lua_State *tap_lua(const char *script, const lua_CFunction *fns, int n) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_loadstring(L, script) != LUA_OK) {
    CHECK(0, "the test script loads: %s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  for (int i = 0; i < n; i++) lua_pushcfunction(L, fns[i]);
  if (lua_pcall(L, n, 1, 0) != LUA_OK) {
    CHECK(0, "the test script runs: %s", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  lua_Integer count = luaL_len(L, -1);
  for (lua_Integer i = 1; i <= count; i++) {
    lua_geti(L, -1, i);
    lua_geti(L, -1, 1);
    lua_geti(L, -2, 2);
    lua_geti(L, -3, 3);
    const char *detail = lua_tostring(L, -1);
    CHECK(lua_toboolean(L, -2), "%s%s%s", lua_tostring(L, -3), detail && *detail ? ": " : "",
          detail ? detail : "");
    lua_pop(L, 4);
  }
  lua_pop(L, 1);
  return L;
}

#endif
