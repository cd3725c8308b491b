/* javatext_test.c: host/worker/javatext.c against the Lua it stands in for.
 *
 * th_map_text must give normalize.lua's own convert() (M.convert, run here by
 * lua5.4 from scripts/): the same cleaned copy (types and values, integers as
 * integers), the same Map.toString text byte for byte, the same `ambiguous`,
 * for every payload of every real record (Elastic's pipeline test inputs, the
 * examples, the Stratus Red Team detonations, the bench corpus's sources),
 * with no key order, Lua's and C's key-order trees, and a key renamed away;
 * and for hand-made values: Java's numbers at the edges of its formats, keys
 * that share a bucket with and without places, keys that are not UTF-8,
 * values the pipeline drops at every depth. Where convert would do something
 * only Lua does (metatables, keys that are not strings, a bucket half placed,
 * nesting past 200, a cycle) it must answer false. Run from the repository
 * root; prints TAP. */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "tap.h"
#include "tap_lua.h"
#include "worker/javatext.h"
#include "worker/jsontext.h"

/* An allocator that refuses once `budget` more blocks have been asked for. */
typedef struct {
  lua_Alloc real;
  void *ud;
  long budget;
} failing;

static void *fail_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  failing *f = ud;
  if (nsize > 0 && (ptr == NULL || nsize > osize) && f->budget-- <= 0) return NULL;
  return f->real(f->ud, ptr, osize, nsize);
}

/* A memory error raised anywhere in the walk (a normalizer under limits)
 * leaks nothing: what the walk mallocs is freed by a userdata's __gc
 * (LeakSanitizer looks at exit). Returns how many walks were cut short. */
static int cut_short(lua_State *L) {
  const char *make =
      "local t = { list = {} }\n"
      "for i = 1, 200 do t.list[i] = { Aa = i, BB = tostring(i), c = { d = i + 0.5, e = { 'x', 'none' } } } end\n"
      "for i = 1, 100 do t['key' .. i] = { n = i } end\n"
      "return t\n";
  if (luaL_dostring(L, make) != LUA_OK) return -1;
  int v = lua_gettop(L);
  failing f;
  f.real = lua_getallocf(L, &f.ud);
  int cut = 0;
  for (long budget = 0; budget < 5000; budget += 7) {
    lua_pushcfunction(L, th_map_text);
    lua_pushvalue(L, v);
    lua_pushnil(L);
    lua_pushnil(L);
    lua_newtable(L);
    f.budget = budget;
    lua_setallocf(L, fail_alloc, &f);
    int rc = lua_pcall(L, 4, 1, 0);
    lua_setallocf(L, f.real, f.ud);
    if (rc == LUA_ERRMEM) cut++;
    lua_pop(L, 1);
    if (rc == LUA_OK) break;
  }
  lua_settop(L, v - 1);
  lua_gc(L, LUA_GCCOLLECT);
  return cut;
}

static int c_key_order(lua_State *L) {
  size_t n, len;
  const char *text = luaL_checklstring(L, 1, &n);
  const char *key = luaL_checklstring(L, 2, &len);
  th_key_order(L, text, n, key, len);
  return 1;
}

/* Returns a list of { what, ok, detail }. */
static const char *SCRIPT =
    "local c_key_order, c_map_text = ...\n"
    "package.path = 'scripts/?.lua;' .. package.path\n"
    "package.preload.thsys = function() return { map_text = c_map_text, key_order = c_key_order } end  -- a worker's, in part\n"
    "local N = require 'normalize'\n"
    "local cjson = require 'cjson'\n"
    "local out = {}\n"
    "local function check(what, ok, detail) out[#out + 1] = { what, ok and true or false, not ok and detail or '' } end\n"
    "local DROPPED = { [''] = true, ['-'] = true, ['none'] = true }\n"
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then\n"
    "    return false, path .. ': ' .. tostring(a) .. ' vs ' .. tostring(b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a == b or (a ~= a and b ~= b) then return true end\n"
    "    return false, path .. ': ' .. tostring(a) .. ' vs ' .. tostring(b)\n"
    "  end\n"
    "  for k, v in pairs(a) do\n"
    "    local ok, why = same(v, b[k], path .. '.' .. tostring(k))\n"
    "    if not ok then return false, why end\n"
    "  end\n"
    "  for k in pairs(b) do if a[k] == nil then return false, path .. '.' .. tostring(k) .. ': only in C' end end\n"
    "  return true\n"
    "end\n"
    /* C against Lua on one value: nil when they agree, else why. fallback: C said it cannot. */
    "local fallbacks = 0\n"
    "local function differ(v, order, skip, raw, key)\n"
    "  local lv, lt, la = N.convert(v, raw and N.key_order(raw, key) or order, skip)\n"
    "  local done, cv, ct, ca = c_map_text(v, order, skip, DROPPED, raw, key)\n"
    "  if not done then fallbacks = fallbacks + 1 return nil end\n"
    "  local ok, why = same(lv, cv, 'value')\n"
    "  if not ok then return why end\n"
    "  if lt ~= ct then return 'text: ' .. tostring(lt) .. ' vs ' .. tostring(ct) end\n"
    "  if la ~= ca then return 'ambiguous: ' .. tostring(la) .. ' vs ' .. tostring(ca) end\n"
    "  return nil\n"
    "end\n"
    "check('the program\\'s own normalizer passes its check of the C walk, and keeps it', N.RENDER.c == c_map_text,\n"
    "      'turned off')\n"
    "local PAYLOADS = { 'requestParameters', 'responseElements', 'additionalEventData', 'serviceEventDetails',\n"
    "                   'userIdentity', 'resources', 'tlsDetails', 'insightDetails' }\n"
    "local records, values, scanned, ambiguous, bad = 0, 0, 0, 0, nil\n"
    "local function each_record(rec, path)\n"
    "  local raw = cjson.encode(rec)\n"
    "  records = records + 1\n"
    "  for _, key in ipairs(PAYLOADS) do\n"
    "    local v = rec[key]\n"
    "    if v ~= nil then\n"
    "      local orders = { false, N.key_order(raw, key) or false, c_key_order(raw, key) or false }\n"
    "      for _, order in ipairs(orders) do\n"
    "        for _, skip in ipairs({ false, 'UserName', 'roleArn' }) do\n"
    "          values = values + 1\n"
    "          if select(3, N.convert(v, order or nil, skip or nil)) then ambiguous = ambiguous + 1 end\n"
    "          local why = differ(v, order or nil, skip or nil)\n"
    "          if why and not bad then bad = path .. ': ' .. key .. ': ' .. why end\n"
    "        end\n"
    "      end\n"
    "      for _, skip in ipairs({ false, 'UserName' }) do\n"
    "        values, scanned = values + 1, scanned + 1\n"
    "        local why = differ(v, nil, skip or nil, raw, key)\n"
    "        if why and not bad then bad = path .. ': ' .. key .. ' (scanned by C): ' .. why end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local p = io.popen('ls tests/fixtures/elastic-cloudtrail-pipeline/pipeline/*.log examples/cloudtrail/*.ndjson')\n"
    "for path in p:lines() do\n"
    "  for line in io.lines(path) do\n"
    "    local ok, rec = pcall(cjson.decode, line)\n"
    "    if ok and type(rec) == 'table' then each_record(rec, path) end\n"
    "  end\n"
    "end\n"
    "p:close()\n"
    "p = io.popen('ls tests/fixtures/stratus-red-team/*.json')\n"
    "for path in p:lines() do\n"
    "  local f = io.open(path)\n"
    "  local ok, recs = pcall(cjson.decode, f:read('a'))\n"
    "  f:close()\n"
    "  for _, rec in ipairs(ok and type(recs) == 'table' and recs or {}) do each_record(rec, path) end\n"
    "end\n"
    "p:close()\n"
    "check(string.format('every payload of %d real records, %d walks (%d reading the key order from the text, %d with two keys'\n"
    "      .. ' of a bucket by name), as Lua', records, values, scanned, ambiguous),\n"
    "      bad == nil and records > 600 and scanned > 1000 and ambiguous > 1000 and fallbacks == 0,\n"
    "      bad or (fallbacks .. ' fell back to Lua'))\n"
    /* Hand-made values. */
    "local function case(what, v, order, skip)\n"
    "  fallbacks = 0\n"
    "  local why = differ(v, order, skip)\n"
    "  check('as Lua: ' .. what, why == nil and fallbacks == 0, why or 'it fell back to Lua')\n"
    "end\n"
    "local floats = {}\n"
    "for _, x in ipairs({ 0.5, -0.5, 1.5, 0.001, 0.00099999, 9999999.5, 10000000.5, 1e7 + 0.25, 123456.789,\n"
    "                     1e-5, -1.25e-10, 1e21, 1e300, -1e300, 2^53 + 0.0, 2^63, -2^63, 2^64, 5e-324, 2.2250738585072014e-308,\n"
    "                     0.1, 0.2, 0.1 + 0.2, 1/3, 100.0, -0.0, 3.0, 1/0, -1/0, 0/0, 12345678.9, 0.0012345 }) do\n"
    "  floats[#floats + 1] = x\n"
    "end\n"
    "case('Java\\'s numbers: integers, Double.toString both ways, infinities, NaN', floats)\n"
    "case('integers as Long', { 0, -1, math.maxinteger, math.mininteger, 42 })\n"
    "case('what the pipeline drops, at every depth', { a = '', b = '-', c = 'none', d = cjson.null, e = {},\n"
    "  f = { {}, { x = cjson.null } }, g = { 'none', { '' } }, h = 'kept', i = { j = { k = { l = '-' } } } })\n"
    "case('a payload of nothing kept', { a = '', b = { c = cjson.null } })\n"
    "case('a scalar payload', 'just text')\n"
    "case('a dropped scalar payload', 'none')\n"
    "case('booleans', { t = true, f = false, list = { false, true } })\n"
    "case('keys that share a bucket, no order: by name', { Aa = 1, BB = 2, AaAa = 3, BBBB = 4, AaBB = 5, BBAa = 6 })\n"
    "case('keys that share a bucket, placed', { Aa = 1, BB = 2, c = 3 }, { index = { BB = 1, Aa = 2, c = 3 } })\n"
    "case('keys that share a bucket in nested objects, placed', { x = { Aa = 1, BB = { Aa = 'a', BB = 'b' } } },\n"
    "  { index = { x = 1 }, sub = { x = { index = { BB = 1, Aa = 2 }, sub = { BB = { index = { BB = 1, Aa = 2 } } } } } })\n"
    "case('keys that share a bucket inside arrays, placed', { { Aa = 1, BB = 2 }, { Aa = 3, BB = 4 } },\n"
    "  { sub = { { index = { BB = 1, Aa = 2 } }, { index = { Aa = 1, BB = 2 } } } })\n"
    "case('a place that is false is no place', { Aa = 1, BB = 2 }, { index = { Aa = false, BB = false } })\n"
    "case('an order that is false is none', { Aa = 1, BB = 2 }, false)\n"
    "local many = {}\n"
    "for i = 1, 300 do many['key' .. i] = i end\n"
    "case('300 keys: a table of 512 buckets', many)\n"
    "local many_placed = { index = {} }\n"
    "for i = 1, 300 do many_placed.index['key' .. i] = 301 - i end\n"
    "case('300 keys, placed', many, many_placed)\n"
    "case('keys past ASCII: UTF-16 units, surrogate pairs', { ['\\u{e9}t\\u{e9}'] = 1, ['\\u{1F600}'] = 2, ['\\u{FFFF}'] = 3, ['a\\u{10FFFF}'] = 4 })\n"
    "case('keys that are not UTF-8: their bytes', { ['\\xff\\xfe'] = 1, ['a\\x80'] = 2, ['\\xed\\xa0\\x80'] = 3, ['\\xc0\\x80'] = 4,\n"
    "  ['\\xf4\\x90\\x80\\x80'] = 5, ['\\xe2\\x82'] = 6, ['\\xfc\\x80\\x80\\x80\\x80\\x80'] = 7, ['\\xfe\\x80\\x80\\x80\\x80\\x80\\x80'] = 8 })\n"
    "case('keys with a zero byte, ordered by name', { ['a\\0b'] = 1, ['a\\0c'] = 2, ['a'] = 3, ['a\\0'] = 4 })\n"
    "case('the key renamed away is skipped, and still counted', { UserName = 'x', a = 1 }, nil, 'UserName')\n"
    "case('only the key renamed away: dropped', { UserName = 'x' }, nil, 'UserName')\n"
    "case('the key renamed away, only at the top', { UserName = { UserName = 'y' } }, nil, 'UserName')\n"
    "case('an array with holes (null)', { 1, cjson.null, 3 })\n"
    "case('an order node for a scalar', { a = 1 }, { index = { a = 1 }, sub = { a = 'x' } })\n"
    "local deep = {}\n"
    "local t = deep\n"
    "for _ = 1, 150 do t.x = { y = 1 } t = t.x end\n"
    "case('150 deep', deep)\n"
    /* The key order read from the text by C: th_key_order's cases. */
    "local deep_text = '{\"requestParameters\":' .. string.rep('[', 126) .. '{\"b\":1,\"a\":2}' .. string.rep(']', 126) .. '}'\n"
    "local TEXTS = {\n"
    "  { 'escaped keys', '{\"request\\\\u0050arameters\":{\"B\\\\u0042\":1,\"Aa\":2,\"k\\\\u00e9y\":3,\"\\\\ud83d\\\\ude00\":4,\"a\\\\\"b\":5}}' },\n"
    "  { 'duplicate keys: the last place, the last node', '{\"requestParameters\":{\"Aa\":{\"x\":1},\"BB\":2,\"Aa\":{\"BB\":1,\"Aa\":2},\"BB\":3}}' },\n"
    "  { 'a later scalar leaves the node', '{\"requestParameters\":{\"Aa\":[{\"BB\":1,\"Aa\":2}],\"BB\":1,\"Aa\":7}}' },\n"
    "  { 'the payload twice: the last object', '{\"requestParameters\":{\"BB\":1,\"Aa\":2},\"requestParameters\":{\"Aa\":1,\"BB\":2}}' },\n"
    "  { 'the payload twice, the last a scalar', '{\"requestParameters\":{\"BB\":1,\"Aa\":2},\"requestParameters\":3}' },\n"
    "  { 'arrays of objects and arrays', '{\"requestParameters\":[{\"BB\":1,\"Aa\":2},[{\"Aa\":1,\"BB\":2}],3]}' },\n"
    "  { 'an array where the value has an object', '{\"requestParameters\":{\"x\":[{\"BB\":1,\"Aa\":2}]}}' },\n"
    "  { 'odd spacing', ' {\"requestParameters\" : { \"BB\" : 1 , \"Aa\" : { \"BB\" : 1, \"Aa\" : 2 } } } ' },\n"
    "  { 'malformed after the payload: no order', '{\"requestParameters\":{\"BB\":1,\"Aa\":2},\"x\":}', { BB = 1, Aa = 2 } },\n"
    "  { 'an escaped key after the payload', '{\"requestParameters\":{\"BB\":1,\"Aa\":2},\"\\\\u0078\\\\u0079\":{\"Aa\":1}}' },\n"
    "  { 'nested as deep as a worker decodes (128)', deep_text },\n"
    "}\n"
    "for _, t in ipairs(TEXTS) do\n"
    "  local v = t[3] or cjson.decode(t[2]).requestParameters\n"
    "  fallbacks = 0\n"
    "  local why = differ(v, nil, nil, t[2], 'requestParameters')\n"
    "  check('as Lua, the key order read by C: ' .. t[1], why == nil and fallbacks == 0, why or 'it fell back to Lua')\n"
    "end\n"
    "fallbacks = 0\n"
    "local why_none = differ({ Aa = 1, BB = 2 }, nil, nil, '{\"other\":1}', 'requestParameters')\n"
    "check('as Lua, no such payload in the text: no order', why_none == nil and fallbacks == 0, why_none)\n"
    "local why_half = differ({ Aa = 1, BB = 2 }, nil, nil, '{\"requestParameters\":{\"Aa\":1}}', 'requestParameters')\n"
    "check('leaves it to Lua: a text that places one key of a bucket and not the other', why_half == nil and fallbacks == 1,\n"
    "      why_half or (fallbacks .. ' fallbacks'))\n"
    /* Where C must leave it to Lua. */
    "local function falls(what, v, order, skip)\n"
    "  local done = c_map_text(v, order, skip, DROPPED)\n"
    "  check('leaves it to Lua: ' .. what, done == false, 'it answered')\n"
    "end\n"
    "falls('a metatable', setmetatable({ a = 1 }, { __index = function() return 1 end }))\n"
    "falls('a metatable deep inside', { a = { b = setmetatable({}, {}) } })\n"
    "falls('a number key', { [2] = 'x', a = 1 })\n"
    "falls('a boolean key', { [true] = 'x' })\n"
    "falls('a bucket with a placed key and one without', { Aa = 1, BB = 2 }, { index = { Aa = 1 } })\n"
    "falls('two keys of a bucket in one place', { Aa = 1, BB = 2 }, { index = { Aa = 1, BB = 1 } })\n"
    "falls('a place that is not an integer', { Aa = 1, BB = 2 }, { index = { Aa = 1, BB = 'x' } })\n"
    "falls('an order that is not a table', { a = 1 }, 'order')\n"
    "falls('order.sub that is not a table', { a = { b = 1 } }, { sub = 3 })\n"
    "falls('the order of an array element that is not a table', { { a = 1 } }, { sub = { 7 } })\n"
    "falls('a skip that is not a string', { a = 1 }, nil, 4)\n"
    "local deeper = {}\n"
    "t = deeper\n"
    "for _ = 1, 250 do t.x = {} t = t.x end\n"
    "t.y = 1\n"
    "falls('250 deep', deeper)\n"
    "local cycle = { a = 1 }\n"
    "cycle.self = cycle\n"
    "falls('a cycle', cycle)\n"
    /* The normalizer's own use: whole documents, C against convert. */
    "local ctx = { now = '2026-01-01T00:00:00.000Z' }\n"
    "local docs_bad\n"
    "for line in io.lines('examples/cloudtrail/stratus-red-team.ndjson') do\n"
    "  local rec = cjson.decode(line)\n"
    "  ctx.raw = line\n"
    "  N.RENDER.c = c_map_text\n"
    "  local c_doc = N.normalize(rec, ctx)\n"
    "  N.RENDER.c = nil\n"
    "  local lua_doc = N.normalize(rec, ctx)\n"
    "  local ok, why = same(lua_doc, c_doc, 'doc')\n"
    "  if not ok and not docs_bad then docs_bad = why end\n"
    "end\n"
    "check('normalize with the C walk: the same documents as with convert', docs_bad == nil, docs_bad)\n"
    "return out\n";

int main(void) {
  static const lua_CFunction fns[] = {c_key_order, th_map_text};
  lua_State *L = tap_lua(SCRIPT, fns, (int)(sizeof fns / sizeof fns[0]));
  if (L == NULL) return TAP_END();
  int cut = cut_short(L);
  CHECK(cut > 10, "a walk cut short by a memory error %d times raised it, and leaked nothing (LeakSanitizer)", cut);
  lua_close(L);
  return TAP_END();
}
