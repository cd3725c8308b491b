/* jsontext.h: work on JSON text that the Lua side hands to C in a worker
 * (see jsontext.c). */
#ifndef TH_JSONTEXT_H
#define TH_JSONTEXT_H

#include <stddef.h>

#include <lua.h>

/* Pushes the order tree of the value of the top-level key `key` of the JSON
 * object `text` (the same tree as normalize.lua's M.key_order), or nil when
 * that value is not an object or an array, or the text is not an object:
 * { index = { key = position }, sub = { key = node } } for an object,
 * { sub = { [i] = node } } for an array. */
void th_key_order(lua_State *L, const char *text, size_t n, const char *key, size_t len);

/* Pushes the JSON text of the value at idx (see jsontext.c) and returns 1,
 * or pushes nil and why it cannot be written and returns 2. */
int th_json_encode(lua_State *L, int idx);

#endif
