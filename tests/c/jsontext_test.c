/* jsontext_test.c: host/worker/jsontext.c against the Lua it stands in for.
 *
 * th_key_order must give the tree of normalize.lua's own scan (M.key_order,
 * run here by lua5.4 from scripts/) for every text lua-cjson decodes: each
 * line of Elastic's pipeline test inputs and of the examples, for each payload
 * key and for keys that are scalars or absent, and hand-made texts with
 * escaped keys, duplicate keys, odd spacing, brackets inside strings and deep
 * nesting. th_json_encode must write what lua-cjson reads back as the same
 * value, keys in byte order whatever the table's own order, "/" as it is,
 * 1e999 for a number past a double, cjson.null and lua-cjson's arrays, and
 * raw JSON (th_json_raw) as it is, saying where it went. th_order_scan must
 * build th_key_order's tree, wherever th_key_order is tested. Run
 * from the repository root; prints TAP. */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "tap.h"
#include "tap_lua.h"
#include "worker/jsontext.h"

static int c_key_order(lua_State *L) {
  size_t n, len;
  const char *text = luaL_checklstring(L, 1, &n);
  const char *key = luaL_checklstring(L, 2, &len);
  th_key_order(L, text, n, key, len);
  return 1;
}

/* th_order_scan's tree, as Lua tables (false when out of memory). */
static int c_order(lua_State *L) {
  size_t n, len;
  const char *text = luaL_checklstring(L, 1, &n);
  const char *key = luaL_checklstring(L, 2, &len);
  th_order *o = th_order_scan(text, n, key, len);
  if (o == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  th_order_push(L, o);
  th_order_free(o);
  return 1;
}

static int c_encode(lua_State *L) { return th_json_encode(L, 1, lua_isnoneornil(L, 2) ? 0 : 2); }

/* Returns a list of { what, ok, detail }. */
static const char *SCRIPT =
    "local lua_c_key_order, c_encode, c_raw, c_order = ...\n"
    /* Every comparison of C's tree with Lua's is made with th_order_scan's too. */
    "local c_mismatch\n"
    "local function c_key_order(text, key)\n"
    "  local a, b = lua_c_key_order(text, key), c_order(text, key)\n"
    "  if not c_mismatch then\n"
    "    local ok, why = (function(x, y)\n"
    "      local function eq(p, q, path)\n"
    "        if type(p) ~= type(q) then return false, path end\n"
    "        if type(p) ~= 'table' then return p == q, path end\n"
    "        for k, v in pairs(p) do local o, w = eq(v, q[k], path .. '.' .. tostring(k)) if not o then return false, w end end\n"
    "        for k in pairs(q) do if p[k] == nil then return false, path .. '.' .. tostring(k) end end\n"
    "        return true\n"
    "      end\n"
    "      return eq(x, y, key)\n"
    "    end)(a, b)\n"
    "    if not ok then c_mismatch = 'th_order_scan differs from th_key_order at ' .. why .. ' in ' .. text:sub(1, 200) end\n"
    "  end\n"
    "  return a\n"
    "end\n"
    "package.path = 'scripts/?.lua;' .. package.path\n"
    "local N = require 'normalize'\n"
    "local cjson = require 'cjson'\n"
    "local out = {}\n"
    "local function check(what, ok, detail) out[#out + 1] = { what, ok and true or false, not ok and detail or '' } end\n"
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) then return false, path .. ': ' .. type(a) .. ' vs ' .. type(b) end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a == b then return true end\n"
    "    return false, path .. ': ' .. tostring(a) .. ' vs ' .. tostring(b)\n"
    "  end\n"
    "  for k, v in pairs(a) do\n"
    "    local ok, why = same(v, b[k], path .. '.' .. tostring(k))\n"
    "    if not ok then return false, why end\n"
    "  end\n"
    "  for k in pairs(b) do if a[k] == nil then return false, path .. '.' .. tostring(k) .. ': only in C' end end\n"
    "  return true\n"
    "end\n"
    "local KEYS = { 'requestParameters', 'responseElements', 'additionalEventData',\n"
    "               'serviceEventDetails', 'eventName', 'userIdentity', 'nosuch' }\n"
    /* Every line of the real inputs. */
    "local lines, trees, bad = 0, 0, nil\n"
    "local p = io.popen('ls tests/fixtures/elastic-cloudtrail-pipeline/pipeline/*.log examples/cloudtrail/*.ndjson')\n"
    "for path in p:lines() do\n"
    "  for line in io.lines(path) do\n"
    "    if pcall(cjson.decode, line) then\n"
    "      lines = lines + 1\n"
    "      for _, key in ipairs(KEYS) do\n"
    "        local lua, c = N.key_order(line, key), c_key_order(line, key)\n"
    "        if c ~= nil then trees = trees + 1 end\n"
    "        local ok, why = same(lua, c, key)\n"
    "        if not ok and not bad then bad = path .. ': ' .. why end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "p:close()\n"
    /* The Stratus Red Team detonations: arrays of records, each written out alone. */
    "p = io.popen('ls tests/fixtures/stratus-red-team/*.json')\n"
    "for path in p:lines() do\n"
    "  local f = io.open(path)\n"
    "  local ok, recs = pcall(cjson.decode, f:read('a'))\n"
    "  f:close()\n"
    "  for _, rec in ipairs(ok and type(recs) == 'table' and recs or {}) do\n"
    "    local line = cjson.encode(rec)\n"
    "    lines = lines + 1\n"
    "    for _, key in ipairs(KEYS) do\n"
    "      local lua, c = N.key_order(line, key), c_key_order(line, key)\n"
    "      if c ~= nil then trees = trees + 1 end\n"
    "      local same_tree, why = same(lua, c, key)\n"
    "      if not same_tree and not bad then bad = path .. ': ' .. why end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "p:close()\n"
    "check(string.format('the tree of every payload of %d real records, %d of them objects or arrays, as Lua', lines, trees),\n"
    "      bad == nil and lines > 600 and trees > 1000, bad)\n"
    /* Hand-made texts: the Lua answer, and what it must be. */
    "local deep = '{\"requestParameters\":' .. string.rep('[', 998) .. string.rep(']', 998) .. '}'\n"
    "local CASES = {\n"
    "  { 'nested objects and arrays', '{\"requestParameters\":{\"b\":1,\"a\":{\"y\":[{\"q\":1},2],\"x\":3}}}',\n"
    "    function(t) return t.index.b == 1 and t.index.a == 2 and t.sub.a.index.y == 1 and t.sub.a.index.x == 2\n"
    "      and t.sub.a.sub.y.sub[1].index.q == 1 and t.sub.a.sub.y.sub[2] == nil and t.sub.b == nil end },\n"
    "  { 'escaped keys', '{\"request\\\\u0050arameters\":{\"k\\\\u00e9y\":1,\"\\\\ud83d\\\\ude00\":2,\"a\\\\\"b\":3,\"c\\\\/d\":4,\"\\\\\\\\\":5}}',\n"
    "    function(t) return t.index['k\\u{e9}y'] == 1 and t.index['\\u{1F600}'] == 2 and t.index['a\"b'] == 3\n"
    "      and t.index['c/d'] == 4 and t.index['\\\\'] == 5 end },\n"
    "  { 'a later scalar leaves the object', '{\"requestParameters\":{\"a\":1},\"requestParameters\":2}',\n"
    "    function(t) return t.index.a == 1 end },\n"
    "  { 'a later object replaces it', '{\"requestParameters\":{\"a\":1},\"requestParameters\":{\"b\":1}}',\n"
    "    function(t) return t.index.b == 1 and t.index.a == nil end },\n"
    "  { 'duplicate keys inside', '{\"requestParameters\":{\"a\":{\"x\":1},\"b\":2,\"a\":3}}',\n"
    "    function(t) return t.index.a == 3 and t.index.b == 2 and t.sub.a.index.x == 1 end },\n"
    "  { 'odd spacing', ' \\t\\r\\n{ \"x\" : [ 1 , \"]\" ] ,\\n \"requestParameters\" :\\t{ \"a\" : [ 1 , { \"b\" : 2 } ] } } ',\n"
    "    function(t) return t.index.a == 1 and t.sub.a.sub[2].index.b == 1 end },\n"
    "  { 'brackets and quotes inside strings', '{\"a\":\"}{][\\\\\"\",\"requestParameters\":{\"s\":\"}\\\\\\\\\",\"t\":{}}}',\n"
    "    function(t) return t.index.s == 1 and t.index.t == 2 and next(t.sub.t.sub) == nil end },\n"
    "  { 'an empty object', '{\"requestParameters\":{}}', function(t) return next(t.index) == nil end },\n"
    "  { 'an array of arrays', '{\"requestParameters\":[[],[{}],3]}',\n"
    "    function(t) return t.index == nil and t.sub[1] ~= nil and t.sub[2].sub[1].index ~= nil and t.sub[3] == nil end },\n"
    "  { 'deep nesting, as deep as lua-cjson goes', deep, function(t) return t.sub[1].sub[1] ~= nil end },\n"
    "  { 'a scalar payload', '{\"requestParameters\":\"x\"}', false },\n"
    "  { 'null', '{\"requestParameters\":null}', false },\n"
    "  { 'no such key', '{\"responseElements\":{\"a\":1}}', false },\n"
    "  { 'cut short', '{\"requestParameters\":{\"a\":1}', false },\n"
    "  { 'cut in a string', '{\"requestParameters\":{\"a\":\"x\\\\\"}}', false },\n"
    "  { 'an array', '[{\"requestParameters\":{\"a\":1}}]', false },\n"
    "  { 'nothing', '', false },\n"
    "  { 'a missing colon', '{\"requestParameters\" {\"a\":1}}', false },\n"
    "  { 'a missing comma', '{\"requestParameters\":{\"a\":1 \"b\":2}}', false },\n"
    "}\n"
    "for _, case in ipairs(CASES) do\n"
    "  local what, text, want = case[1], case[2], case[3]\n"
    "  local lua, c = N.key_order(text, 'requestParameters'), c_key_order(text, 'requestParameters')\n"
    "  local ok, why = same(lua, c, 'tree')\n"
    "  if ok and want then ok, why = lua ~= nil and want(lua), 'not the expected tree' end\n"
    "  if ok and not want then ok, why = lua == nil, 'a tree where there is none' end\n"
    "  check('key order: ' .. what, ok, why)\n"
    "end\n"
    /* encode: read back the same, in order, the same bytes however the table was built. */
    "local function roundtrip(v) local t = c_encode(v); return t and cjson.decode(t), t end\n"
    "local bad_doc\n"
    "for _, path in ipairs({ 'examples/cloudtrail/stratus-red-team.ndjson', 'examples/cloudtrail/bedrock-denied-derived.ndjson' }) do\n"
    "  for line in io.lines(path) do\n"
    "    local v = cjson.decode(line)\n"
    "    local back, text = roundtrip(v)\n"
    "    local ok, why = same(v, back, 'record')\n"
    "    if (not ok or text:find('\\\\/', 1, true)) and not bad_doc then bad_doc = why or text end\n"
    "  end\n"
    "end\n"
    "check('encode: every example record reads back the same, slashes unescaped', bad_doc == nil, bad_doc)\n"
    "local a, b = {}, {}\n"
    "for i = 1, 50 do a['k' .. i] = i end\n"
    "for i = 50, 1, -1 do b['k' .. i] = i end\n"
    "local ta, tb = c_encode(a), c_encode(b)\n"
    "check('encode: the same keys inserted in another order give the same bytes', ta == tb and ta:find('^{\"k1\":1,\"k10\":10,'), ta)\n"
    "check('encode: a number past a double is written 1e999', c_encode({ n = 1/0, m = -1/0 }) == '{\"m\":-1e999,\"n\":1e999}',\n"
    "      c_encode({ n = 1/0, m = -1/0 }))\n"
    "check('encode: cjson.null, booleans, integers and floats as lua-cjson writes them',\n"
    "      c_encode({ cjson.null, true, false, 3, 0.1, 1e300 }) == cjson.encode({ cjson.null, true, false, 3, 0.1, 1e300 }),\n"
    "      c_encode({ cjson.null, true, false, 3, 0.1, 1e300 }))\n"
    "check('encode: arrays with holes and sparse ones as lua-cjson has them',\n"
    "      c_encode({ 1, nil, 3 }) == '[1,null,3]' and c_encode({ [1] = 'a', [20] = 'b' }) == '{\"1\":\"a\",\"20\":\"b\"}'\n"
    "      and c_encode({}) == '{}', c_encode({ [1] = 'a', [20] = 'b' }))\n"
    /* the escape scan goes eight bytes at a time: every byte at every place of two words */
    "local bad_byte\n"
    "for pos = 1, 18 do for c = 0, 255 do\n"
    "  local s = ('a'):rep(pos - 1) .. string.char(c) .. ('b'):rep(18 - pos)\n"
    "  local want = cjson.encode(s):gsub('\\\\/', '/')\n"
    "  if c_encode(s) ~= want then bad_byte = bad_byte or (c .. ' at ' .. pos) end\n"
    "end end\n"
    "check('encode: each byte at each place of a word escaped as lua-cjson does', bad_byte == nil, bad_byte)\n"
    "check('encode: integers written whole, the smallest and largest too',\n"
    "      c_encode({ math.mininteger, math.maxinteger, 0, -1, 10, -10 }) ==\n"
    "      '[' .. math.mininteger .. ',' .. math.maxinteger .. ',0,-1,10,-10]',\n"
    "      c_encode({ math.mininteger, math.maxinteger, 0, -1, 10, -10 }))\n"
    "check('encode: escapes what JSON must, and not /',\n"
    "      c_encode('a\"b\\\\c/d\\n\\0\\127') == '\"a\\\\\"b\\\\\\\\c/d\\\\n\\\\u0000\\\\u007f\"', c_encode('a\"b\\\\c/d\\n\\0\\127'))\n"
    "local mixed = { name = 'x' }\n"
    "for _, i in ipairs({ 40, 3, 17, 1, 29, 8, 35, 12, 22, 5, 38, 2, 19, 31, 7, 26, 14, 33, 10, 24 }) do mixed[i * 7] = i end\n"
    "local mt = c_encode(mixed)\n"
    "local mok, mwhy = same(cjson.decode(mt), (function() local t = { name = 'x' } for k, v in pairs(mixed) do t[tostring(k)] = v end return t end)(), 'mixed')\n"
    "check('encode: a table of many number keys and a name, its keys in byte order, each with its own value',\n"
    "      mok and mt:find('^{\"119\":17,\"133\":19,\"14\":2,') ~= nil, mwhy or mt)\n"
    "local deep = {}\n"
    "local t = deep\n"
    "for _ = 1, 1100 do t.x = {} t = t.x end\n"
    "local none, why = c_encode(deep)\n"
    "check('encode: refuses what is nested past 1000, and says so', none == nil and why:find('deep'), why)\n"
    "local none2, why2 = c_encode({ f = print })\n"
    "check('encode: refuses a function, and says so', none2 == nil and why2:find('function'), why2)\n"
    "check('th_order_scan: the same tree as th_key_order, on every text above', c_mismatch == nil, c_mismatch)\n"
    "local inner = c_raw('{\"x\":[1,2]}')\n"
    "local rt, at, len = c_encode({ b = 2, a = inner, c = { inner } }, inner)\n"
    "check('encode: raw JSON as it is, wherever it is, and where it first went',\n"
    "      rt == '{\"a\":{\"x\":[1,2]},\"b\":2,\"c\":[{\"x\":[1,2]}]}' and at == 5 and len == 11, rt .. ' ' .. tostring(at))\n"
    "local nt, nat, nlen = c_encode({ a = 1 }, inner)\n"
    "check('encode: a mark not written is at -1', nt == '{\"a\":1}' and nat == -1 and nlen == 0, tostring(nat))\n"
    "local none3, why3 = c_encode({ u = io.stdout })\n"
    "check('encode: refuses a userdata that is not raw JSON, and says so', none3 == nil and why3:find('userdata'), why3)\n"
    "return out\n";

int main(void) {
  static const lua_CFunction fns[] = {c_key_order, c_encode, th_json_raw, c_order};
  lua_State *L = tap_lua(SCRIPT, fns, (int)(sizeof fns / sizeof fns[0]));
  if (L == NULL) return TAP_END();
  lua_close(L);
  return TAP_END();
}
