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
 * or pushes nil and why it cannot be written and returns 2. With mark (a
 * stack index, 0: none), also pushes where the raw value at mark was first
 * written: its first byte (from 0; -1 when it was not) and its length, and
 * returns 3. */
int th_json_encode(lua_State *L, int idx, int mark);

/* Registry name of the metatable of th_json_raw's values. */
#define TH_JSON_RAW "thsys.raw"

/* thsys.raw(text) -> a value th_json_encode writes as text, byte for byte and
 * unchecked: text must be JSON (the encoder's own output). */
int th_json_raw(lua_State *L);

#endif
