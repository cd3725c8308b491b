/* statelua.c: the store of stateful rules (state.h) for Lua, so that rule
 * tests of several events (loader.run_tests: `trailhound test`, and the gate
 * before a reload) are decided by the code the host runs, not by a second
 * version of it in Lua.
 *
 *   thsys.state_new() -> store
 *   store:decide(rule_id, fingerprint, type, timestamp, key, uuid, distinct,
 *                window_s, value, cardinality) -> alert, count, distinct
 *       type: TH_STATE_* (stateful.lua's TYPES); timestamp ISO 8601 (else 0);
 *       distinct: the cardinality value's JSON or "" (none). A sequence
 *       (TH_STATE_SEQUENCE): window_s its maxspan in ms, value the step,
 *       cardinality the number of steps, as proto.h sends them; its alert is
 *       the completed sequence (counted once)
 *
 * The store is freed with its userdata (__gc); it is bounded like the host's.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "../checkpoint.h"
#include "../limiter.h"
#include "../state.h"
#include "statelua.h"

#define META "trailhound.state"

typedef struct box {
  th_state *s;
} box;

static int l_new(lua_State *L) {
  box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  luaL_setmetatable(L, META);
  if ((b->s = th_state_new(0)) == NULL) return luaL_error(L, "out of memory");
  return 1;
}

static uint32_t u32(lua_State *L, int idx) {
  lua_Integer v = luaL_optinteger(L, idx, 0);
  return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static int l_decide(lua_State *L) {
  box *b = luaL_checkudata(L, 1, META);
  size_t tlen, ulen;
  th_state_event e;
  memset(&e, 0, sizeof e);
  e.rule_id = luaL_checkstring(L, 2);
  e.fp = (uint64_t)luaL_checkinteger(L, 3);
  e.type = (int)luaL_checkinteger(L, 4);
  const char *ts = luaL_checklstring(L, 5, &tlen);
  e.t = th_iso_ms(ts, tlen);
  if (e.t < 0) e.t = 0;
  e.key = luaL_checklstring(L, 6, &e.klen);
  const char *uuid = luaL_checklstring(L, 7, &ulen);
  e.ev = th_fnv1a(uuid, ulen);
  e.distinct = luaL_optlstring(L, 8, "", &e.dlen);
  if (e.dlen == 0) e.distinct = NULL;
  e.window_s = u32(L, 9);
  e.value = u32(L, 10);
  e.cardinality = u32(L, 11);
  if (e.type == TH_STATE_SEQUENCE) {
    e.span_ms = e.window_s, e.step = e.value, e.nsteps = e.cardinality;
    e.window_s = e.value = e.cardinality = 0;
    e.distinct = NULL, e.dlen = 0;
  }
  th_state_verdict v;
  if (th_state_decide(b->s, &e, &v) < 0) return luaL_error(L, "out of memory");
  free(v.done);
  th_state_written(b->s, 1);
  lua_pushboolean(L, v.alert);
  lua_pushinteger(L, (lua_Integer)v.count);
  lua_pushinteger(L, (lua_Integer)v.distinct);
  return 3;
}

static int l_gc(lua_State *L) {
  box *b = luaL_checkudata(L, 1, META);
  th_state_free(b->s);
  b->s = NULL;
  return 0;
}

/* Registered into thsys by engine.c; the metatable is made on first use. */
static int l_state_new(lua_State *L) {
  if (luaL_newmetatable(L, META)) {
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    lua_pushcfunction(L, l_decide);
    lua_setfield(L, -2, "decide");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);  /* the metatable */
  return l_new(L);
}

const luaL_Reg th_state_lua_funcs[] = {
  {"state_new", l_state_new},
  {NULL, NULL},
};
