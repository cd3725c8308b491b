/* statelua.h: thsys.state_new, the state store of stateful rules for Lua (statelua.c). */
#ifndef TH_STATELUA_H
#define TH_STATELUA_H

#include <lauxlib.h>

extern const luaL_Reg th_state_lua_funcs[];

#endif
