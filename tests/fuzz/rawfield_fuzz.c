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
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) setup();
  char *text = fuzz_dup(data, size);
  th_rawval got[NPATHS], again[NPATHS];
  int rc = th_rawfield_read(text, size, paths, NPATHS, got);
  FUZZ_CHECK(th_rawfield_read(text, size, paths, NPATHS, again) == rc, "a second reading says otherwise");
  if (rc == 0) {
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
  free(text);
  return 0;
}
