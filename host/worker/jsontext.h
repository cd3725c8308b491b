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

/* Writes s[0..n) to out (room for n bytes) with every escaped slash "\/"
 * written "/", other escapes kept as they are; returns the length written. */
size_t th_unslash(const char *s, size_t n, char *out);

#endif
