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

/* The same tree as th_key_order's, in C arrays (for th_map_text, which
 * reads it where convert reads the Lua tree): NULL when out of memory,
 * else a tree whose root is -1 where th_key_order pushes nil. Caller frees
 * it with th_order_free; it points into text, which must outlive it. */
typedef struct th_order th_order;
th_order *th_order_scan(const char *text, size_t n, const char *key, size_t len);
void th_order_free(th_order *o);
int th_order_root(const th_order *o);                  /* the payload's node, or -1 */
int th_order_is_object(const th_order *o, int node);   /* else an array */
/* node.sub[key] (an object node's; -1: none); node.index[key] into *pos
 * (returns 0: none, or an array node); node.sub[i] (an array node's). */
int th_order_child(const th_order *o, int node, const char *key, size_t len);
int th_order_pos(const th_order *o, int node, const char *key, size_t len, lua_Integer *pos);
int th_order_elem(const th_order *o, int node, lua_Integer i);
/* Pushes the tree as th_key_order does (for the tests). */
void th_order_push(lua_State *L, const th_order *o);

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
