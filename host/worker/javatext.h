/* javatext.h: the Java text of a CloudTrail payload, as Elastic's pipeline
 * renders it, in a worker (see javatext.c). */
#ifndef TH_JAVATEXT_H
#define TH_JAVATEXT_H

#include <lua.h>

/* thsys.map_text(v, order, skip, dropped [, raw, key]): normalize.lua's
 * convert(v, order, skip), the pipeline's clean-up and Map.toString in one
 * walk, with the values of the table `dropped` (normalize.lua's DROPPED)
 * dropped as strings. With order nil and raw and key strings:
 * convert(v, th_key_order(raw, key), skip), the tree scanned into C arrays
 * instead of Lua tables.
 * Returns true, the cleaned copy of v (nil when dropped), its text and
 * whether two keys of one HashMap bucket had no known order (convert's
 * `ambiguous`); or false when this walk cannot promise convert's answer (a
 * metatable, a key that is not a string, two keys of a bucket of which one
 * has a place in `order` and one has not, nesting past 200, huge objects):
 * then run convert. Raises only Lua's memory errors. */
int th_map_text(lua_State *L);

#endif
