/* alert_test.c: scripts/alert.lua's fast way against its marker way, with a
 * worker's encoder (host/worker/jsontext.c).
 *
 * In a worker, alert.line encodes the document itself with the rule's and
 * the suppression's objects spliced in as raw JSON (thsys.raw), and keeps
 * what the alerts of one event share for the next rule. Without thsys.raw it
 * builds the alert table and places the objects by searching for markers:
 * the way it always had. Both must give the same answer, text, uuid and the
 * suppression object's place, byte for byte: for every record of the
 * examples and the fixtures, normalized, for several rules alerting on each
 * (with and without suppression), and for events and rules that carry a
 * marker's text, where the marker way gives up splicing or suppressing. Run
 * from the repository root; prints TAP. */
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "tap.h"
#include "tap_lua.h"
#include "worker/javatext.h"
#include "worker/jsontext.h"
#include "worker/sha1.h"

static int c_encode(lua_State *L) {
  luaL_checkany(L, 1);
  return th_json_encode(L, 1, lua_isnoneornil(L, 2) ? 0 : 2);
}

static int c_key_order(lua_State *L) {
  size_t n, len;
  const char *text = luaL_checklstring(L, 1, &n);
  const char *key = luaL_checklstring(L, 2, &len);
  th_key_order(L, text, n, key, len);
  return 1;
}

static int c_sha1(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char h[20];
  th_sha1(s, n, h);
  lua_pushlstring(L, (const char *)h, sizeof h);
  return 1;
}

/* Returns a list of { what, ok, detail }. */
static const char *SCRIPT =
    "local c_encode, c_raw, c_key_order, c_sha1, c_map_text = ...\n"
    "package.path = 'scripts/?.lua;' .. package.path\n"
    "local cjson = require 'cjson'\n"
    "local out = {}\n"
    "local function check(what, ok, detail) out[#out + 1] = { what, ok and true or false, not ok and detail or '' } end\n"
    /* Two alert modules: a worker's, and one without thsys.raw (the marker way). */
    "local function module(with_raw)\n"
    "  package.loaded.alert, package.loaded.uuid, package.loaded.normalize, package.loaded.thsys = nil, nil, nil, nil\n"
    "  package.preload.thsys = function()\n"
    "    return { encode = c_encode, raw = with_raw and c_raw or nil, key_order = c_key_order, sha1 = c_sha1,\n"
    "             map_text = c_map_text }\n"
    "  end\n"
    "  return require 'alert', require 'normalize'\n"
    "end\n"
    "local marker = module(false)\n"
    "local fast, N = module(true)\n"
    /* The marker way builds the alert table (M.build); the fast way does not, unless it gives way. */
    "local built = 0\n"
    "local build = fast.build\n"
    "fast.build = function(...) built = built + 1 return build(...) end\n"
    "local loader = require 'loader'\n"
    "local RULES = {}\n"
    "for _, path in ipairs({ 'rules/aws_bedrock_unauthorized_foundation_model_access_attempt.lua',\n"
    "                        'rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua' }) do\n"
    "  RULES[#RULES + 1] = assert(loader.load_file(path, { log = function() end }))\n"
    "end\n"
    "local function rule(name, extra)\n"
    "  local text = 'return { rule_id = \"' .. string.format('00000000-0000-4000-8000-%012d', #RULES + 1) ..\n"
    "    '\", name = \"' .. name .. '\", description = \"d\", severity = \"high\", risk_score = 73,\\n' ..\n"
    "    'query = \\'event.kind: *\\', ' .. (extra or '') .. ' }'\n"
    "  local r = assert(loader.load_file('rules/' .. name .. '.lua', { source = text, log = function() end }))\n"
    "  RULES[#RULES + 1] = r\n"
    "  return r\n"
    "end\n"
    "rule('suppressed', 'alert_suppression = { group_by = { \"user.name\", \"event.action\" }, duration = \"5m\" }')\n"
    "rule('suppressed by a list', 'alert_suppression = { group_by = { \"related.user\" } }')\n"
    "rule('suppressed strictly', 'alert_suppression = { group_by = { \"aws.cloudtrail.user_identity.session_context.session_issuer.arn\" },' ..\n"
    "  ' missing_fields_strategy = \"doNotSuppress\" }')\n"
    "local NOW = '2026-12-02T07:12:34.000Z'\n"
    /* One event through every rule, both ways: nil when they agree, else why. */
    "local fast_count = 0\n"
    "local function both(doc, src, fresh, rules)\n"
    "  for _, r in ipairs(rules or RULES) do\n"
    "    local sup = marker.suppression(r, doc)\n"
    "    local a = table.pack(marker.line(r, doc, src, NOW, fresh, sup))\n"
    "    local b = table.pack(fast.line(r, doc, src, NOW, fresh, sup))\n"
    "    for i = 1, 4 do\n"
    "      if a[i] ~= b[i] then\n"
    "        return string.format('%s: answer %d: %s | %s', r.name, i, tostring(a[i]):sub(1, 300), tostring(b[i]):sub(1, 300))\n"
    "      end\n"
    "    end\n"
    "    if sup and a[3] > 0 then\n"
    "      fast_count = fast_count + 1\n"
    "      local o = cjson.decode(a[1]:sub(a[3] + 1, a[3] + a[4]))\n"
    "      if o.docs_count ~= 0 then return r.name .. ': the suppression object is not where it is said to be' end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local ctx = { now = NOW }\n"
    "local events, as_read, bad = 0, 0, nil\n"
    "local function each(rec, path, offset)\n"
    "  ctx.raw = cjson.encode(rec)\n"
    "  local doc = N.normalize(rec, ctx)\n"
    "  events = events + 1\n"
    "  if doc == rec then as_read = as_read + 1 end\n"
    "  local why = both(doc, { path = path, offset = offset }, doc ~= rec)\n"
    "  if why and not bad then bad = path .. ':' .. offset .. ': ' .. why end\n"
    "end\n"
    "local p = io.popen('ls tests/fixtures/elastic-cloudtrail-pipeline/pipeline/*.log examples/cloudtrail/*.ndjson examples/ecs/*.ndjson')\n"
    "for path in p:lines() do\n"
    "  local offset = 0\n"
    "  for line in io.lines(path) do\n"
    "    local ok, rec = pcall(cjson.decode, line)\n"
    "    if ok and type(rec) == 'table' then each(rec, path, offset) end\n"
    "    offset = offset + #line + 1\n"
    "  end\n"
    "end\n"
    "p:close()\n"
    "p = io.popen('ls tests/fixtures/stratus-red-team/*.json')\n"
    "for path in p:lines() do\n"
    "  local f = io.open(path)\n"
    "  local ok, recs = pcall(cjson.decode, f:read('a'))\n"
    "  f:close()\n"
    "  for i, rec in ipairs(ok and type(recs) == 'table' and recs or {}) do each(rec, path, i) end\n"
    "end\n"
    "p:close()\n"
    "check(string.format('%d events, %d rules each (%d alerts suppressible): the same text, uuid and suppression place both ways',\n"
    "  events, #RULES, fast_count), bad == nil and events > 600 and fast_count > 500, bad)\n"
    "check(string.format('the fast way gave way to the marker way for none of them but the %d ECS documents as read', as_read),\n"
    "  as_read > 0 and built == as_read * #RULES, built .. ' alerts built the marker way')\n"
    /* Markers in events and rules: the fast way must give the marker way's answer. */
    "local base = N.normalize(cjson.decode(io.lines('examples/cloudtrail/bedrock-denied-derived.ndjson')()), ctx)\n"
    "local function with(path, value)\n"
    "  local doc = N.normalize(cjson.decode(io.lines('examples/cloudtrail/bedrock-denied-derived.ndjson')()), ctx)\n"
    "  local t = doc\n"
    "  for i = 1, #path - 1 do t[path[i]] = t[path[i]] or {} t = t[path[i]] end\n"
    "  t[path[#path]] = value\n"
    "  return doc\n"
    "end\n"
    "local RULE_MARK = '\\0trailhound: kibana.alert.rule\\0'\n"
    "local SUP_MARK = '\\0trailhound: kibana.alert.suppression\\0'\n"
    "local sly = {\n"
    "  { 'the rule marker in a value', with({ 'user', 'name' }, RULE_MARK) },\n"
    "  { 'the suppression marker in a value', with({ 'user', 'name' }, SUP_MARK) },\n"
    "  { 'the suppression marker in a grouped field', with({ 'event', 'action' }, SUP_MARK) },\n"
    "  { 'a marker after a quote in a value', with({ 'aws', 'cloudtrail', 'error_message' }, 'x\"' .. RULE_MARK) },\n"
    "  { 'a marker as a key', with({ 'aws', 'cloudtrail', 'flattened', 'request_parameters', RULE_MARK }, 1) },\n"
    "  { 'half a marker', with({ 'user', 'name' }, '\\0trailhound: kibana.alert.') },\n"
    "  { 'a zero byte', with({ 'user', 'name' }, 'a\\0b') },\n"
    "}\n"
    "for i, case in ipairs(sly) do\n"
    "  local why = both(case[2], { path = 'sly', offset = i }, true)\n"
    "  check('the marker way\\'s answer for ' .. case[1], why == nil, why)\n"
    "end\n"
    "local marked = rule('marked', 'description = \"' .. SUP_MARK:gsub('%z', '\\\\0') .. '\",' ..\n"
    "  ' alert_suppression = { group_by = { \"event.action\" } }')\n"
    "local why = both(base, { path = 'marked', offset = 1 }, true, { marked })\n"
    "check('the marker way\\'s answer for a rule that carries the suppression marker', why == nil, why)\n"
    /* Documents the fast way leaves alone: the marker way's answer. */
    "local dotted = { ['event.action'] = 'A', event = { id = 'E3' }, user = { name = 'u' } }\n"
    "why = both(dotted, { path = 'dotted', offset = 1 }, true)\n"
    "check('a dotted key at the top (a normalizer of one\\'s own): as the marker way', why == nil, why)\n"
    "local nulls = { event = { id = 'E4', outcome = cjson.null }, user = cjson.null, x = { 1, cjson.null } }\n"
    "why = both(nulls, { path = 'nulls', offset = 1 }, true)\n"
    "check('null at the top and inside: as the marker way', why == nil, why)\n"
    "local inside = { event = { id = 'E5', outcome = cjson.null, category = { 'a', cjson.null, 'b' } }, user = { name = 'u' } }\n"
    "why = both(inside, { path = 'inside', offset = 1 }, true)\n"
    "check('null inside the event object only (the fast way copies it, dropping null): as the marker way', why == nil, why)\n"
    "local sparse = { event = { id = 'E6', list = { [1] = 'a', [2] = cjson.null, [30] = 'z' } } }\n"
    "for i = 3, 29 do sparse.event.list[i] = cjson.null end\n"
    "why = both(sparse, { path = 'sparse', offset = 1 }, true)\n"
    "check('an event array of null but its ends (its copy an object): as the marker way', why == nil, why)\n"
    "local odd = { event = 'not an object', [3] = 'three', x = { y = 1 } }\n"
    "why = both(odd, { path = 'odd', offset = 1 }, true)\n"
    "check('an event that is not an object, a number key: as the marker way', why == nil, why)\n"
    "why = both(base, { path = 'ecs', offset = 1 }, false)\n"
    "check('an ECS document as read (not fresh): as the marker way', why == nil, why)\n"
    /* The same event again for the next rules: what is shared is reused, and stays right. */
    "local docs = {}\n"
    "for line in io.lines('examples/cloudtrail/stratus-red-team.ndjson') do\n"
    "  ctx.raw = line\n"
    "  docs[#docs + 1] = N.normalize(cjson.decode(line), ctx)\n"
    "  if #docs == 20 then break end\n"
    "end\n"
    "local interleaved\n"
    "for round = 1, 3 do\n"
    "  for i, doc in ipairs(docs) do\n"
    "    interleaved = interleaved or both(doc, { path = 'again', offset = i, index = round % 2 }, true)\n"
    "  end\n"
    "end\n"
    "check('events alerted on again, by turns: each alert its own event\\'s', interleaved == nil, interleaved)\n"
    "local s1 = fast.line(RULES[3], docs[1], { path = 'p', offset = 1 }, NOW, true)\n"
    "local s2 = fast.line(RULES[3], docs[1], { path = 'p', offset = 2 }, NOW, true)\n"
    "check('another place in the file is another event: trailhound.source follows',\n"
    "  cjson.decode(s1).trailhound.source.offset == 1 and cjson.decode(s2).trailhound.source.offset == 2, s2)\n"
    "return out\n";

int main(void) {
  static const lua_CFunction fns[] = {c_encode, th_json_raw, c_key_order, c_sha1, th_map_text};
  lua_State *L = tap_lua(SCRIPT, fns, (int)(sizeof fns / sizeof fns[0]));
  if (L == NULL) return TAP_END();
  lua_close(L);
  return TAP_END();
}
