-- kql.lua: a compiler for Kibana Query Language (KQL), the "kuery" language of
-- Elastic's detection rules, with Kibana's grammar and Elastic's semantics.
--
--   local q, err = kql.compile(source, { chunkname = "rules/x.lua", line = 12, col = 3 })
--   q.match(get)    -> boolean; get(name) returns the event's value of a dotted field, and
--                      get(event.DOCUMENT) the whole document (read by a value with no
--                      field and by a field name with a wildcard, only)
--   q.fields        -> sorted list of the distinct field names the query reads by name
--   q.ast           -> the tree, with source positions (see "The tree" below)
--   q.explain(get)  -> a copy of the tree where every node carries value = true|false
--
-- Syntax: Kibana's kuery grammar (kbn-es-query, grammar.peggy), rule for rule:
--   field: value                 exact, case-sensitive match
--   field: "quoted value"        \" \\ \t \r \n \uXXXX escape; * is a plain character
--   field: unquoted*value        * is a wildcard; \ escapes \():<>"*{}, the keywords
--                                (\or) and \t \r \n \uXXXX; inner spaces belong to it
--   field: *                     the field exists
--   field: (a or b and not c)    values grouped with boolean operators
--   field > v, >=, <, <=         ranges
--   a and b, a or b, not a, ( )  not binds tighter than and, and tighter than or;
--                                keywords are case-insensitive and need whitespace
--                                around them (`a:1 and(b:2)` is an error, as in Kibana)
--   field: { query }             nested: the query holds within one object of field
--   value, "quoted value"        a value with no field: any field of the event holds it
--   event.*: value               a field name with wildcards: any field it names
--   (nothing)                    an empty query matches every event, as in Kibana
-- A syntax error is reported as Kibana reports it, at the place Kibana points to:
-- `Expected "(", "{", value, whitespace but end of input found.`
--
-- Matching: an array field (a Lua sequence) matches when any element matches; a
-- missing field (nil) matches nothing, so `not field: x` holds for it. How a value
-- compares depends on the field's type (fieldtypes.lua), as in Elasticsearch:
--   ip fields (source.ip, related.ip, ...)  addresses: 2001:0db8::1 equals 2001:db8::1,
--                                a CIDR block (10.0.0.0/8, 2001:db8::/32) holds its
--                                addresses; anything else is an error
--   numeric fields (source.port, http.response.status_code, ...)  numbers: 200.0 equals
--                                200 and "200"; anything else is an error, as are
--                                wildcards
--   date fields (@timestamp, event.created, ...)  instants (esdate.lua): ISO dates or
--                                parts of them, milliseconds, date math (now-1d/d); a
--                                bound rounds up for > and <=, down for >= and <, and
--                                `@timestamp: 2024-06-15` is the whole day; anything else
--                                is an error, as are wildcards
--   other ECS and aws.* fields   keywords: text, exactly; a JSON number is its text (22
--                                matches 22, not 22.0) and ranges compare text
--   fields outside them          numbers and booleans compare as their JSON text (200
--                                matches 200 and "200", true matches true and "true"); a
--                                number also equals a numeric literal of the same value
--                                (22 matches 22.0); a value that is an IP address is in a
--                                CIDR block the query names (Elastic's own KQL evaluator
--                                does so).
-- An object never equals a scalar, but it exists.
-- A value with no field, and a field name with a wildcard, are looked for in every field
-- of the event (event.leaves), each compared by its own type; a value no type accepts
-- just does not match there (Kibana's lenient multi_match). That reads the whole
-- document: for a raw CloudTrail record, the whole normalized record, for every event
-- the rule is run on.
--
-- The tree: every node has op and the line and col where it starts in the file.
--   { op = "or"|"and"|"not", children = { node, ... } }
--   { op = "nested", field = , path = , children = { node } }
--   { op = "match", field = , path = , literal = , quoted = bool, wildcard = bool,
--     segments = { text between wildcards } (wildcard only) }
--   { op = "exists", field = , path = }
--   { op = "range", field = , path = , operator = "<"|"<="|">"|">=", literal = , quoted = }
--   { op = "all" }               the empty query
-- field is the name as the query reads it (inside field: { ... }, relative to the
-- nested field), path the full name. A value with no field has neither; a field name
-- with wildcards has neither but fieldglob = { text between its wildcards } and
-- fieldtext = the name as written. Inside a nested query, such leaves have prefix = the
-- nested path.
-- The node of `field: ...` starts at the field; the values inside a list at themselves.
-- A value list is expanded: `f: (a or b)` is or(match f a, match f b), as Kibana does.

local esdate = require "esdate"
local event = require "event"
local fieldtypes = require "fieldtypes"

local M = {}

local DOCUMENT = event.DOCUMENT
local byte, char, sub, find, format = string.byte, string.char, string.sub, string.find, string.format
local concat, sort = table.concat, table.sort
local mtype, floor = math.type, math.floor
local type, tonumber, pairs, ipairs = type, tonumber, pairs, ipairs

------------------------------------------------------------------------------
-- Values
------------------------------------------------------------------------------

-- A number written the JSON way, as a Lua number; else nil. No allocation.
local function numeric(s)
  if find(s, "^%-?%d+%.?%d*$") or find(s, "^%-?%d+%.?%d*[eE][%+%-]?%d+$") then
    return tonumber(s)
  end
  return nil
end

-- The JSON text of a scalar: strings as they are, integers without ".0".
local function text_of(x)
  local t = type(x)
  if t == "string" then return x end
  if t == "boolean" then return x and "true" or "false" end
  if t ~= "number" then return nil end
  if mtype(x) == "integer" then return format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then return nil end
  if x == floor(x) and x >= -2^63 and x < 2^63 then return format("%d", x) end
  for digits = 14, 17 do
    local s = format("%." .. digits .. "g", x)
    if tonumber(s) == x then return s end
  end
  return format("%.17g", x)
end

-- Any element of a sequence (nested sequences flattened) satisfies scalar?
local function any(v, scalar)
  for i = 1, #v do
    local x = v[i]
    if type(x) == "table" then
      if any(x, scalar) then return true end
    elseif x ~= nil and scalar(x) then
      return true
    end
  end
  return false
end

-- Elastic's `exists`: a value, a non-empty object, or an array with one.
local function exists(v)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return true end
  if t ~= "table" then return false end
  local n = #v
  if n > 0 then
    for i = 1, n do
      if exists(v[i]) then return true end
    end
    return false
  end
  local iter, state, key = pairs(v)   -- pairs: read-only views have __pairs
  return iter(state, key) ~= nil
end

local function escape_pattern(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- A matcher for a wildcard pattern given as the literal text between its *s.
-- Linear: anchored prefix, suffix at its place, middles leftmost in between.
local function glob(segs)
  local k = #segs
  local first, last = segs[1], segs[k]
  local nf, nl = #first, #last
  local anchored = "^" .. escape_pattern(first)
  local minlen, mids = 0, {}
  for i = 1, k do
    minlen = minlen + #segs[i]
    if i > 1 and i < k and segs[i] ~= "" then mids[#mids + 1] = segs[i] end
  end
  local nm = #mids
  return function(s)
    local len = #s
    if len < minlen then return false end
    if nf > 0 and not find(s, anchored) then return false end
    if nl > 0 and not find(s, last, len - nl + 1, true) then return false end
    local p, limit = nf + 1, len - nl
    for i = 1, nm do
      local _, e = find(s, mids[i], p, true)
      if not e or e > limit then return false end
      p = e + 1
    end
    return true
  end
end

local CMP = {
  ["<"] = function(a, b) return a < b end,
  ["<="] = function(a, b) return a <= b end,
  [">"] = function(a, b) return a > b end,
  [">="] = function(a, b) return a >= b end,
}

-- Predicates over one field's value (any type, nil included).

local function bool_of(lit)
  if lit == "true" then return true elseif lit == "false" then return false end
  return nil
end

-- The number a literal names, for a field compared as text (textual: a keyword in
-- Elasticsearch: a number there is its JSON text, 22 is "22" and not "22.0"): only a literal
-- that is that number's text; else any number literal of the same value.
local function number_named(lit, textual)
  local num = numeric(lit)
  if textual and num and text_of(num) ~= lit then return nil end
  return num
end

local function exact_pred(lit, textual)
  local num, bool = number_named(lit, textual), bool_of(lit)
  local function scalar(x)
    if x == lit then return true end
    local t = type(x)
    if t == "number" then return x == num end
    if t == "boolean" then return x == bool end
    return false
  end
  return function(v)
    if v == lit then return true end
    local t = type(v)
    if t == "string" or v == nil then return false end
    if t == "table" then return any(v, scalar) end
    return scalar(v)
  end
end

-- One of several exact literals: hash lookups instead of a chain of compares.
local function set_pred(lits, textual)
  local strs, nums, bools = {}, {}, {}
  for _, lit in ipairs(lits) do
    strs[lit] = true
    local num, bool = number_named(lit, textual), bool_of(lit)
    if num and num == num then nums[num] = true end
    if bool ~= nil then bools[bool] = true end
  end
  local function scalar(x)
    local t = type(x)
    if t == "string" then return strs[x] == true end
    if t == "number" then return nums[x] == true end
    if t == "boolean" then return bools[x] == true end
    return false
  end
  return function(v)
    if type(v) == "table" then return any(v, scalar) end
    return scalar(v)
  end, strs
end

local function wildcard_pred(segs)
  local matches = glob(segs)
  local function scalar(x)
    if type(x) ~= "string" then
      x = text_of(x)
      if x == nil then return false end
    end
    return matches(x)
  end
  return function(v)
    if type(v) == "table" then return any(v, scalar) end
    if v == nil then return false end
    return scalar(v)
  end
end

local function range_pred(operator, lit, textual)
  local cmp, num = CMP[operator], not textual and numeric(lit) or nil
  local function scalar(x)
    local t = type(x)
    if t == "number" then
      if num then return cmp(x, num) end
      return cmp(text_of(x) or "", lit)
    elseif t == "string" then
      if num then
        local n = numeric(x)
        if n then return cmp(n, num) end
      end
      return cmp(x, lit)
    end
    return false
  end
  return function(v)
    if type(v) == "table" then return any(v, scalar) end
    if v == nil then return false end
    return scalar(v)
  end
end


------------------------------------------------------------------------------
-- Addresses: an IP address as the 16 bytes Elasticsearch indexes (IPv4 as the
-- IPv4-mapped IPv6 address ::ffff:a.b.c.d), CIDR blocks as such bytes and a prefix
------------------------------------------------------------------------------

local V4_MAPPED = string.rep("\0", 10) .. "\255\255"

-- a.b.c.d: 4 bytes, or nil. Octets of one to three digits, no leading zero (as
-- Elasticsearch's InetAddresses, which will not guess between octal and decimal).
local function ipv4_bytes(s)
  local a, b, c, d = s:match("^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
  if not a then return nil end
  local o = { a, b, c, d }
  for i = 1, 4 do
    if #o[i] > 1 and byte(o[i]) == 48 then return nil end
    o[i] = tonumber(o[i])
    if o[i] > 255 then return nil end
  end
  return char(o[1], o[2], o[3], o[4])
end

-- The 16-bit groups of one side of an IPv6 address ("1:2:3" or "" or "1:1.2.3.4"), or nil.
local function v6_groups(part, v4_ok)
  local gs = {}
  if part == "" then return gs end
  local items = {}
  for item in (part .. ":"):gmatch("([^:]*):") do items[#items + 1] = item end
  for i, item in ipairs(items) do
    if i == #items and v4_ok and find(item, ".", 1, true) then
      local v4 = ipv4_bytes(item)
      if not v4 then return nil end
      gs[#gs + 1] = byte(v4, 1) * 256 + byte(v4, 2)
      gs[#gs + 1] = byte(v4, 3) * 256 + byte(v4, 4)
    else
      if not item:find("^%x%x?%x?%x?$") then return nil end
      gs[#gs + 1] = tonumber(item, 16)
    end
  end
  return gs
end

-- An IP address's 16 bytes, or nil when s is not one.
local function ip_bytes(s)
  if type(s) ~= "string" or #s < 2 or #s > 45 then return nil end
  if not find(s, ":", 1, true) then
    local v4 = ipv4_bytes(s)
    return v4 and V4_MAPPED .. v4
  end
  local gap = find(s, "::", 1, true)
  local hi, lo
  if gap then
    hi, lo = v6_groups(sub(s, 1, gap - 1), false), v6_groups(sub(s, gap + 2), true)
    if not hi or not lo or #hi + #lo > 7 or find(s, "::", gap + 1, true) then return nil end
  else
    hi, lo = v6_groups(s, true), {}
    if not hi or #hi ~= 8 then return nil end
  end
  local out = {}
  for _, g in ipairs(hi) do out[#out + 1] = char(g >> 8, g & 255) end
  for _ = 1, 8 - #hi - #lo do out[#out + 1] = "\0\0" end
  for _, g in ipairs(lo) do out[#out + 1] = char(g >> 8, g & 255) end
  return concat(out)
end

-- A CIDR block "address/bits": its 16 bytes and its prefix length on them, or nil.
local function cidr(s)
  if type(s) ~= "string" then return nil end
  local addr, bits = s:match("^([^/]+)/(%d%d?%d?)$")
  if not addr then return nil end
  local b = ip_bytes(addr)
  bits = tonumber(bits)
  if not b then return nil end
  if not find(addr, ":", 1, true) then
    if bits > 32 then return nil end
    bits = bits + 96
  elseif bits > 128 then
    return nil
  end
  return b, bits
end

-- Are the first bits bits of a and b (16 bytes each) the same?
local function same_prefix(a, b, bits)
  local whole = bits // 8
  if whole > 0 and sub(a, 1, whole) ~= sub(b, 1, whole) then return false end
  local rest = bits % 8
  if rest == 0 then return true end
  local mask = (0xFF << (8 - rest)) & 0xFF
  return byte(a, whole + 1) & mask == byte(b, whole + 1) & mask
end

-- a < b, <= ... on 16-byte strings, byte by byte (not by the locale's collation).
local function cmp_bytes(a, b)
  for i = 1, 16 do
    local x, y = byte(a, i), byte(b, i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end

M.ip_bytes, M.cidr = ip_bytes, cidr

------------------------------------------------------------------------------
-- Predicates by field type (fieldtypes.kind)
------------------------------------------------------------------------------

local function never() return false end

local function on_scalars(scalar)
  return function(v)
    if type(v) == "table" then return any(v, scalar) end
    if v == nil then return false end
    return scalar(v)
  end
end

-- ip fields: an address equal to lit, or in the block lit; nil when lit is neither.
local function ip_pred(lit)
  local net, bits = cidr(lit)
  if net then
    return on_scalars(function(x)
      local b = ip_bytes(x)
      return b ~= nil and same_prefix(b, net, bits)
    end)
  end
  local want = ip_bytes(lit)
  if not want then return nil end
  return on_scalars(function(x) return x == lit or ip_bytes(x) == want end)
end

local function ip_range_pred(operator, lit)
  local want = ip_bytes(lit)
  if not want then return nil end
  local cmp = CMP[operator]
  return on_scalars(function(x)
    local b = ip_bytes(x)
    return b ~= nil and cmp(cmp_bytes(b, want), 0)
  end)
end

-- Numeric fields: Elasticsearch reads numeric strings as numbers ("200" is 200).
local function number_of(x)
  if type(x) == "number" then return x end
  if type(x) == "string" then return numeric(x) end
  return nil
end

local function number_pred(lit)
  local num = numeric(lit)
  if not num then return nil end
  return on_scalars(function(x) return number_of(x) == num end)
end

local function number_range_pred(operator, lit)
  local num, cmp = numeric(lit), CMP[operator]
  if not num then return nil end
  return on_scalars(function(x)
    local n = number_of(x)
    return n ~= nil and cmp(n, num)
  end)
end

-- Date fields: instants (esdate.lua). A bound is read rounding up for > and <=, down for
-- >= and <; an equality is the range from the value read down to the value read up (all of
-- 2024-06-15 for `@timestamp: 2024-06-15`), as Elasticsearch's term query on a date does.
-- A bound with now moves with the clock.
local function date_bound(lit, up)
  if esdate.uses_now(lit) then
    return function() return esdate.bound(lit, up, os.time() * 1000) end
  end
  local t = esdate.bound(lit, up)
  if t == nil then return nil end
  return function() return t end
end

local function date_range_pred(operator, lit)
  local bound = date_bound(lit, operator == ">" or operator == "<=")
  if not bound then return nil end
  local cmp, b = CMP[operator], nil
  local test = on_scalars(function(x)
    local t = esdate.value(x)
    return t ~= nil and cmp(t, b)
  end)
  return function(v)
    b = bound()
    return test(v)
  end
end

local function date_pred(lit)
  local lo, hi = date_bound(lit, false), date_bound(lit, true)
  if not lo or not hi then return nil end
  local a, b
  local test = on_scalars(function(x)
    local t = esdate.value(x)
    return t ~= nil and t >= a and t <= b
  end)
  return function(v)
    a, b = lo(), hi()
    return test(v)
  end
end

-- A field outside the known schema: exact as a keyword, and an IP address is in a CIDR
-- block lit names (as Elastic's KQL evaluator has it).
local function unknown_pred(lit)
  local exact = exact_pred(lit)
  local net, bits = cidr(lit)
  if not net then return exact end
  local inside = on_scalars(function(x)
    local b = ip_bytes(x)
    return b ~= nil and same_prefix(b, net, bits)
  end)
  return function(v) return exact(v) or inside(v) end
end

-- What a field of this kind accepts, or nil and why not (Elasticsearch would reject the
-- query: a rule with it fails in Kibana).
local function typed_problem(node, kind)
  local lit = node.literal
  if kind == "ip" then
    if node.op == "match" and node.wildcard then return "it takes no wildcards" end
    if node.op == "match" and not ip_bytes(lit) and not cidr(lit) then
      return format("'%s' is neither an IP address nor a CIDR block", lit)
    end
    if node.op == "range" and not ip_bytes(lit) then return format("'%s' is not an IP address", lit) end
  elseif kind == "number" then
    if node.op == "match" and node.wildcard then return "it takes no wildcards" end
    if (node.op == "match" or node.op == "range") and not numeric(lit) then
      return format("'%s' is not a number", lit)
    end
  elseif kind == "date" then
    if node.op == "match" and node.wildcard then return "it takes no wildcards" end
    local ok = esdate.bound(lit, false, 0) and esdate.bound(lit, true, 0)
    if (node.op == "match" or node.op == "range") and not ok then
      return format("'%s' is not a date (yyyy-MM-dd'T'HH:mm:ss.SSSZ or a part of it, milliseconds since "
        .. "1970, or date math: now-1d/d)", lit)
    end
  end
  return nil
end

-- The predicate over one field's value for a leaf, on a field of the given kind. lenient:
-- for a field that a wildcard or no field name picked, where a value the type does not
-- accept matches nothing, and a wildcard only strings of unknown and keyword fields.
local function leaf_pred(node, kind, lenient)
  local op = node.op
  if op == "exists" then return exists end
  if op == "range" then
    local p
    if kind == "ip" then
      p = ip_range_pred(node.operator, node.literal)
    elseif kind == "number" then
      p = number_range_pred(node.operator, node.literal)
    elseif kind == "date" then
      p = date_range_pred(node.operator, node.literal)
    else
      p = range_pred(node.operator, node.literal, kind == "keyword")
    end
    return p or never
  end
  if node.wildcard then
    if kind == "ip" or kind == "number" or kind == "date" then return never end
    if lenient then
      local matches = glob(node.segments)
      return on_scalars(function(x) return type(x) == "string" and matches(x) end)
    end
    return wildcard_pred(node.segments)
  end
  if kind == "ip" then return ip_pred(node.literal) or never end
  if kind == "number" then return number_pred(node.literal) or never end
  if kind == "date" then return date_pred(node.literal) or never end
  if kind == "unknown" then return unknown_pred(node.literal) end
  return exact_pred(node.literal, kind == "keyword")
end

------------------------------------------------------------------------------
-- Parser: Kibana's kuery grammar (grammar.peggy), as a PEG, rule for rule
------------------------------------------------------------------------------
--
-- Each rule is a function of a position that returns the position after what it
-- matched and its value, or nil. Failures are recorded the way peggy records them,
-- so that errors read and point as Kibana's do: the furthest position any terminal
-- failed at, and what was expected there. A rule with a display name ("value",
-- "fieldName", "literal", "whitespace", "OR", "AND", "NOT") records its name at its
-- start instead of what failed inside it.

local SPECIAL = {}
for c in ('\\():<>"*{}'):gmatch(".") do SPECIAL[byte(c)] = true end
local ESCAPED_WS = { t = "\t", r = "\r", n = "\n" }
local KEYWORDS = { "or", "and", "not" }
local KEYWORD_SET = { ["or"] = true, ["and"] = true, ["not"] = true }
local NBSP = "\194\160"
-- How a failure names a literal it expected: "(" as "\"(\"", made once.
local QUOTED = setmetatable({}, { __index = function(t, s)
  local q = '"' .. s .. '"'
  t[s] = q
  return q
end })
-- A run of characters an unquoted literal takes as they are: printable ASCII that is no
-- special character, no backslash or wildcard, no whitespace (where " or " and " and "
-- begin) and no n (where "not " begins). The rest go one at a time.
local PLAIN_RUN = "^[^%c%s\\():<>\"*{}nN\128-\255]+"

-- JavaScript's String.prototype.trim: its whitespace, at both ends.
local JS_SPACE = {}
for _, cp in ipairs({ 9, 10, 11, 12, 13, 32, 0xA0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
  0x2006, 0x2007, 0x2008, 0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF }) do
  JS_SPACE[utf8.char(cp)] = true
end

local function trim_start(s)
  local p = 1
  while p <= #s do
    local c = s:match("^" .. utf8.charpattern, p)
    if not c or not JS_SPACE[c] then break end
    p = p + #c
  end
  return sub(s, p)
end

local function trim_end(s)
  local e = #s
  while e > 0 do
    local b = e
    while b > 1 and byte(s, b) >= 0x80 and byte(s, b) < 0xC0 do b = b - 1 end
    if not JS_SPACE[sub(s, b, e)] then break end
    e = b - 1
  end
  return sub(s, 1, e)
end

-- The parser. Its grammar's functions are made once, here, and work on the state of the parse
-- at hand (parse does not run inside itself): made for each query, as they were, they were
-- most of what compiling a short query cost (fifty closures, each over a dozen upvalues).
local parse
do
  local src, n, chunk, line0, col0, starts   -- the query, and where it sits in its file
  local maxp, expected, silent, opened       -- peggy's failure bookkeeping (below)
  local memos = {}                           -- every named rule's cache, emptied per parse

  -- Line and column (in characters) of byte p, in the file.
  local function where(p)
    local lo, hi = 1, #starts
    while lo < hi do
      local mid = (lo + hi + 1) // 2
      if starts[mid] <= p then lo = mid else hi = mid - 1 end
    end
    local s = starts[lo]
    local col = (utf8.len(src, s, p - 1) or (p - s)) + 1
    if lo == 1 then col = col + col0 - 1 end
    return lo + line0 - 1, col
  end

  local function fail_at(p, msg, ...)
    local l, c = where(p)
    error({ kql = format("%s:%d:%d: ", chunk, l, c) .. format(msg, ...) }, 0)
  end

  -- peggy's bookkeeping of failures
  local function expect(p, what)
    if silent > 0 or p < maxp then return end
    if p > maxp then
      maxp, expected = p, {}
    end
    expected[#expected + 1] = what
  end
  -- A named rule, its results cached by position: Kibana builds its parser with
  -- peggy's cache, so a rule that failed once at a place (whitespace after a value,
  -- tried first inside OR) is not recorded again when tried there again.
  local function named(name, rule)
    local ends, values = {}, {}   -- by position: where the rule ended (false: it failed), its value
    memos[#memos + 1] = ends
    memos[#memos + 1] = values
    return function(p)
      local m = ends[p]
      if m ~= nil then
        if not m then return nil end
        return m, values[p]
      end
      silent = silent + 1
      local e, v = rule(p)
      silent = silent - 1
      if not e then
        expect(p, name)
        ends[p] = false
      else
        ends[p], values[p] = e, v
      end
      return e, v
    end
  end
  -- opened: where a ')' or '}' expected at a place would close: the '(' or '{'
  local function lit(p, s, open)
    if sub(src, p, p + #s - 1) == s then return p + #s end
    if silent == 0 and p >= maxp then expect(p, QUOTED[s]) end
    if open and silent == 0 and p == maxp then opened[p] = open end
    return nil
  end
  local function lit_i(p, s)   -- 'or'i
    if sub(src, p, p + #s - 1):lower() == s then return p + #s end
    if silent == 0 and p >= maxp then expect(p, QUOTED[s]) end
    return nil
  end

  -- Space "whitespace" = [\ \t\r\n\u00A0]
  local Space = named("whitespace", function(p)
    local c = byte(src, p)
    if c == 32 or c == 9 or c == 13 or c == 10 then return p + 1 end
    if sub(src, p, p + 1) == NBSP then return p + 2 end
    return nil
  end)
  local function Spaces(p)       -- Space*
    while true do
      local e = Space(p)
      if not e then return p end
      p = e
    end
  end
  local function Spaces1(p)      -- Space+
    local e = Space(p)
    if not e then return nil end
    return Spaces(e)
  end

  local function keyword_rule(kw, before)
    return function(p)
      if before then
        p = Spaces1(p)
        if not p then return nil end
      end
      p = lit_i(p, kw)
      if not p then return nil end
      return Spaces1(p)
    end
  end
  local Or = named("OR", keyword_rule("or", true))
  local And = named("AND", keyword_rule("and", true))
  local Not = named("NOT", keyword_rule("not", false))

  -- Keyword = Space 'or'i Space / Space 'and'i Space / 'not'i Space
  local function Keyword(p)
    silent = silent + 1
    local e
    local s = Space(p)
    if s then
      for i = 1, 2 do
        local k = lit_i(s, KEYWORDS[i])
        if k and Space(k) then e = true break end
      end
    end
    if not e then
      local k = lit_i(p, "not")
      e = k and Space(k) ~= nil
    end
    silent = silent - 1
    return e
  end

  -- \uXXXX at p (p at the backslash): its text and the position after it, as
  -- String.fromCharCode, a surrogate pair joined into its character.
  local function unicode_escape(p)
    local hex = src:match("^\\u(%x%x%x%x)", p)
    if not hex then return nil end
    local cp = tonumber(hex, 16)
    if cp >= 0xD800 and cp <= 0xDBFF then
      local low = src:match("^\\u([dD][c-fC-F]%x%x)", p + 6)
      if low then
        return utf8.char(0x10000 + ((cp - 0xD800) << 10) + (tonumber(low, 16) - 0xDC00)), p + 12
      end
    end
    return utf8.char(cp), p + 6
  end

  -- QuotedString = '"' QuotedCharacter* '"'
  local function QuotedString(p)
    if byte(src, p) ~= 34 then
      expect(p, '"\\""')
      return nil
    end
    local buf, q = {}, p + 1
    while true do
      local a = find(src, '["\\]', q)
      if not a then
        expect(n + 1, '"\\""')
        return nil
      end
      buf[#buf + 1] = sub(src, q, a - 1)
      if byte(src, a) == 34 then return a + 1, { text = concat(buf), quoted = true } end
      local d = sub(src, a + 1, a + 1)
      local text, e = nil, nil
      if ESCAPED_WS[d] then
        text, e = ESCAPED_WS[d], a + 2
      elseif d == "u" then
        text, e = unicode_escape(a)
      end
      if not text and (d == "\\" or d == '"') then text, e = d, a + 2 end
      if not text then text, e = "\\", a + 1 end   -- [^"]: a backslash is itself
      buf[#buf + 1] = text
      q = e
    end
  end

  -- UnquotedLiteral = UnquotedCharacter+, trimmed; null, true, false; * a wildcard.
  -- Its value: { segs = { text between wildcards }, wild = bool, text = joined with * }.
  local function UnquotedLiteral(p)
    local segs, buf, q = {}, {}, p
    local any_char = false
    while q <= n do
      local _, run = find(src, PLAIN_RUN, q)
      if run then  -- characters none of the cases below can apply to, at once
        buf[#buf + 1] = sub(src, q, run)
        any_char = true
        q = run + 1
        goto continue
      end
      local c = byte(src, q)
      local text, e
      if c == 92 then                                   -- \
        local d = sub(src, q + 1, q + 1)
        if ESCAPED_WS[d] then
          text, e = ESCAPED_WS[d], q + 2
        elseif d ~= "" and SPECIAL[byte(d)] then
          text, e = d, q + 2
        else
          text, e = unicode_escape(q)
          if not text then
            for _, kw in ipairs(KEYWORDS) do
              local w = sub(src, q + 1, q + #kw)
              if w:lower() == kw then
                text, e = w, q + 1 + #kw
                break
              end
            end
          end
        end
        if not text then break end
        buf[#buf + 1] = text
      elseif c == 42 then                               -- *
        segs[#segs + 1] = concat(buf)
        buf = {}
        e = q + 1
      elseif SPECIAL[c] or Keyword(q) then
        break
      else
        local ch = src:match("^" .. utf8.charpattern, q) or sub(src, q, q)
        buf[#buf + 1] = ch
        e = q + #ch
      end
      any_char = true
      q = e
      ::continue::
    end
    if not any_char then return nil end
    segs[#segs + 1] = concat(buf)
    segs[1] = trim_start(segs[1])
    segs[#segs] = trim_end(segs[#segs])
    return q, { segs = segs, wild = #segs > 1, text = concat(segs, "*"), quoted = false }
  end

  -- Literal "literal" = QuotedString / UnquotedLiteral; Value "value" likewise;
  -- Field "fieldName" = Literal.
  local function quoted_or_not(p)
    local e, v = QuotedString(p)
    if e then return e, v end
    return UnquotedLiteral(p)
  end
  local Literal = named("literal", quoted_or_not)
  local Value = named("value", quoted_or_not)
  local Field = named("fieldName", Literal)

  -- RangeOperator = '<=' / '>=' / '<' / '>'
  local function RangeOperator(p)
    for _, op in ipairs({ "<=", ">=", "<", ">" }) do
      local e = lit(p, op)
      if e then return e, op end
    end
    return nil
  end

  -- Nodes. pos: where the node starts; prefix: the path of the enclosing nested
  -- queries (nil at the top).
  local function field_of(node, f, prefix)
    if f.quoted or not f.wild then
      local name = f.text
      if not f.quoted and name == "null" then return node end  -- Kibana: a null field, no field
      node.field = name
      node.path = prefix and prefix .. "." .. name or name
    else
      node.fieldglob, node.fieldtext, node.prefix = f.segs, f.text, prefix
    end
    return node
  end

  local function leaf(p, f, v, prefix)
    local l, c = where(p)
    local node
    if not v.quoted and v.wild and #v.segs == 2 and v.segs[1] == "" and v.segs[2] == "" then
      node = { op = "exists", line = l, col = c }
    elseif v.wild then
      node = { op = "match", literal = v.text, quoted = false, wildcard = true, segments = v.segs, line = l, col = c }
    else
      node = { op = "match", literal = v.text, quoted = v.quoted, wildcard = false, line = l, col = c }
      if not v.quoted and v.text == "null" then
        node.bad = "a null value: Kibana sends it as null, which Elasticsearch rejects "
          .. "(quote it to match the word: \"null\")"
      end
    end
    if f then return field_of(node, f, prefix) end
    node.prefix = prefix
    return node
  end

  local function chain(op, operand, sep)
    return function(p, ...)
      local e, first = operand(p, ...)
      if not e then return nil end
      local list
      while true do
        local s = sep(e)
        if not s then break end
        local e2, nxt = operand(s, ...)
        if not e2 then break end
        list = list or { first }
        list[#list + 1] = nxt
        e = e2
      end
      if not list then return e, first end
      return e, { op = op, children = list, line = first.line, col = first.col }
    end
  end

  -- OptionalSpace = Space* (the cursor alternative never applies)
  local OptionalSpace = Spaces

  -- ListOfValues = '(' Space* OrListOfValues OptionalSpace ')' / Value
  local OrListOfValues
  local function ListOfValues(p, f, prefix)
    local e = lit(p, "(")
    if e then
      local e2, v = OrListOfValues(Spaces(e), f, prefix)
      if e2 then
        e2 = lit(OptionalSpace(e2), ")", p)
        if e2 then return e2, v end
      end
    end
    local e3, v = Value(p)
    if not e3 then return nil end
    return e3, leaf(p, f, v, prefix)
  end
  -- NotListOfValues = Not ListOfValues / ListOfValues
  local function NotListOfValues(p, f, prefix)
    local e = Not(p)
    if e then
      local e2, v = ListOfValues(e, f, prefix)
      if e2 then
        local l, c = where(p)
        return e2, { op = "not", children = { v }, line = l, col = c }
      end
    end
    return ListOfValues(p, f, prefix)
  end
  local AndListOfValues = chain("and", NotListOfValues, And)
  OrListOfValues = chain("or", AndListOfValues, Or)

  local OrQuery

  -- Expression = FieldRangeExpression / FieldValueExpression / ValueExpression
  local function Expression(p, prefix)
    local e, f = Field(p)
    if e then
      local s = Spaces(e)
      local e2, op = RangeOperator(s)                   -- field < value
      if e2 then
        local e3, v = Literal(Spaces(e2))
        if e3 then
          local l, c = where(p)
          local node = { op = "range", operator = op, literal = v.text, quoted = v.quoted, line = l, col = c }
          if not v.quoted and v.text == "null" then
            node.bad = "a null bound: Kibana sends it as null (quote it to compare with the word: \"null\")"
          end
          return e3, field_of(node, f, prefix)
        end
      end
      e2 = lit(s, ":")                                  -- field: values
      if e2 then
        local e3, v = ListOfValues(Spaces(e2), f, prefix)
        if e3 then
          local l, c = where(p)
          v.line, v.col = l, c                          -- field: ... starts at the field
          return e3, v
        end
      end
    end
    local e4, v = Value(p)                              -- a value, no field
    if not e4 then return nil end
    return e4, leaf(p, nil, v, prefix)
  end

  -- NestedQuery = Field Space* ':' Space* '{' Space* OrQuery OptionalSpace '}' / Expression
  local function NestedQuery(p, prefix)
    local e, f = Field(p)
    if e then
      e = lit(Spaces(e), ":")
      if e then e = lit(Spaces(e), "{") end
      if e then
        local path = prefix and prefix .. "." .. f.text or f.text
        local e2, inner = OrQuery(Spaces(e), path)
        if e2 then
          e2 = lit(OptionalSpace(e2), "}", e - 1)
          if e2 then
            local l, c = where(p)
            local node = { op = "nested", field = f.text, path = path, children = { inner }, line = l, col = c }
            if f.wild and not f.quoted then node.bad = format("a nested field takes no wildcards: '%s'", f.text) end
            return e2, node
          end
        end
      end
    end
    return Expression(p, prefix)
  end

  -- SubQuery = '(' Space* OrQuery OptionalSpace ')' / NestedQuery
  local function SubQuery(p, prefix)
    local e = lit(p, "(")
    if e then
      local e2, q = OrQuery(Spaces(e), prefix)
      if e2 then
        e2 = lit(OptionalSpace(e2), ")", p)
        if e2 then return e2, q end
      end
    end
    return NestedQuery(p, prefix)
  end

  -- NotQuery = Not SubQuery / SubQuery
  local function NotQuery(p, prefix)
    local e = Not(p)
    if e then
      local e2, q = SubQuery(e, prefix)
      if e2 then
        local l, c = where(p)
        return e2, { op = "not", children = { q }, line = l, col = c }
      end
    end
    return SubQuery(p, prefix)
  end
  local AndQuery = chain("and", NotQuery, And)
  OrQuery = chain("or", AndQuery, Or)

  -- start = Space* OrQuery? OptionalSpace, then the end of the input
  function parse(text, opts)
    src, n = text, #text
    chunk = opts.chunkname or "query"
    line0, col0 = opts.line or 1, opts.col or 1
    starts = { 1 }
    for p in src:gmatch("()\n") do starts[#starts + 1] = p + 1 end
    maxp, expected, silent, opened = 1, {}, 0, {}
    for _, t in ipairs(memos) do
      for k in pairs(t) do t[k] = nil end
    end
    local p = Spaces(1)
    local e, root = OrQuery(p)
    if e then p = e end
    p = OptionalSpace(p)
    if p <= n then
      expect(p, "end of input")
    elseif root == nil then
      local l, c = where(n + 1)
      root = { op = "all", line = l, col = c }
    end
    if p > n then return root end

    -- Kibana's message: what was expected at the furthest failure, sorted, and what
    -- stands there.
    local seen, list = {}, {}
    local SAY = { fieldName = "field name" }
    for _, x in ipairs(expected) do
      x = SAY[x] or x
      if not seen[x] then
        seen[x] = true
        list[#list + 1] = x
      end
    end
    sort(list)
    local found = "end of input"
    if maxp <= n then
      found = '"' .. (src:match("^" .. utf8.charpattern, maxp) or sub(src, maxp, maxp)) .. '"'
    end
    local hint = ""
    local before = sub(src, 1, maxp - 1):match("(%S+)%s*$") or ""
    if maxp <= n and byte(src, maxp) == 34 and not find(src, '"', maxp + 1, true) then
      hint = " (the string that starts here is not closed)"
    elseif opened[maxp] and (seen['")"'] or seen['"}"']) then
      local l, c = where(opened[maxp])
      hint = format(" (to close the '%s' at %d:%d)", sub(src, opened[maxp], opened[maxp]), l, c)
    elseif sub(before, -1) == ":" and sub(src, maxp, maxp + 3):lower():match("^not%s") then
      hint = " (write not field: value, or field: (not value))"
    elseif byte(src, maxp) == 40 and KEYWORD_SET[before:lower()] and sub(src, maxp - 1, maxp - 1) == before:sub(-1) then
      hint = format(" (Kibana needs whitespace between '%s' and '(')", before)
    else
      local kw = src:match("^(%a%a%a?)%(", maxp)
      if kw and KEYWORD_SET[kw:lower()] then hint = format(" (Kibana needs whitespace between '%s' and '(')", kw) end
    end
    fail_at(maxp, "Expected %s but %s found.%s", concat(list, ", "), found, hint)
  end
end

------------------------------------------------------------------------------
-- Compiler: the tree into closures, once
------------------------------------------------------------------------------

local function is_leaf(node)
  return node.children == nil
end

-- The one field every leaf under node reads by name, or nil. A nested query reads
-- its own fields, a value with no field or a wildcard field name every field: nil.
local function single_field(node)
  if node.op == "nested" then return nil end
  if is_leaf(node) then return node.field end
  local f
  for _, child in ipairs(node.children) do
    local g = single_field(child)
    if g == nil or (f ~= nil and g ~= f) then return nil end
    f = g
  end
  return f
end

-- A match that only a string equal to its literal satisfies, among strings (so that
-- a string can be decided by comparing it, and required or excluded as it is): not on
-- an ip or numeric field (2001:0db8::1 is 2001:db8::1, "200.0" is 200), nor a CIDR
-- block on a field outside the schema.
local function is_exact(node)
  if node.op ~= "match" or node.wildcard or node.field == nil then return false end
  return node.kind == "keyword" or (node.kind == "unknown" and cidr(node.literal) == nil)
end

-- f1 and f2 and ...; the same for or. Works for predicates over a value and
-- over get alike.
local function combine(op, fs)
  local k = #fs
  if k == 1 then return fs[1] end
  if op == "and" then
    if k == 2 then
      local a, b = fs[1], fs[2]
      return function(x) return a(x) and b(x) end
    end
    return function(x)
      for i = 1, k do
        if not fs[i](x) then return false end
      end
      return true
    end
  end
  if k == 2 then
    local a, b = fs[1], fs[2]
    return function(x) return a(x) or b(x) end
  end
  return function(x)
    for i = 1, k do
      if fs[i](x) then return true end
    end
    return false
  end
end

local function first_leaf(node)
  while node.children do node = node.children[1] end
  return node
end

-- A predicate over one field's value for a single-field subtree.
local function build(node, leaves)
  if is_leaf(node) then return leaves[node] end
  if node.op == "not" then
    local p = build(node.children[1], leaves)
    return function(v) return not p(v) end
  end
  local fs, exact = {}, {}
  for _, child in ipairs(node.children) do
    if node.op == "or" and is_exact(child) then
      exact[#exact + 1] = child.literal
    else
      fs[#fs + 1] = build(child, leaves)
    end
  end
  local textual = single_field(node) ~= nil and first_leaf(node).kind == "keyword"
  if #exact == 1 then
    table.insert(fs, 1, exact_pred(exact[1], textual))
  elseif #exact > 1 then
    table.insert(fs, 1, (set_pred(exact, textual)))
  end
  return combine(node.op, fs)
end

local NONE, EMPTY = {}, {}   -- NONE equals no field value; EMPTY holds none

-- How a check of one field is inlined: the literal L that matches at once, a
-- set S of strings that match at once, whether X any other string fails, and
-- the predicate P that decides every other value.
local function check_of(node, leaves)
  local p = build(node, leaves)
  if is_exact(node) then return node.literal, EMPTY, true, p end
  if node.op == "or" then
    local lits = {}
    for _, child in ipairs(node.children) do
      if not is_exact(child) then return NONE, EMPTY, false, p end
      lits[#lits + 1] = child.literal
    end
    local _, strs = set_pred(lits)
    return NONE, strs, true, p
  end
  return NONE, EMPTY, false, p
end

-- A get over one object of a nested field: its dotted fields, as event.get reads them.
local function object_getter(obj)
  return function(name) return event.get(obj, name) end
end

-- The objects of a nested field's value: itself, or an array's (nested arrays too).
local function each_object(v, fn)
  if type(v) ~= "table" then return false end
  if v[1] == nil then return fn(v) end
  for i = 1, #v do
    if each_object(v[i], fn) then return true end
  end
  return false
end

-- A function(get) -> boolean for a leaf that reads every field (no field name, or one
-- with wildcards): does some field of the document (of the nested object) satisfy it,
-- each compared by its own type?
local function every_field(node)
  local pick = node.fieldglob and glob(node.fieldglob)
  local prefix = node.prefix
  local preds = {}
  local function test(name, v)
    if pick and not pick(name) then return false end
    local kind = fieldtypes.kind(prefix and prefix .. "." .. name or name)
    local p = preds[kind]
    if p == nil then
      p = leaf_pred(node, kind, true)
      preds[kind] = p
    end
    return p(v)
  end
  return function(get)
    return event.leaves(get(DOCUMENT), test)
  end
end

-- A function(get) -> boolean for any subtree. An and/or runs one loop over
-- its children, with the checks of single fields inlined: per event, one call
-- of get per field checked, and for string values no other call.
local function compile_node(node, leaves, evals)
  local field = single_field(node)
  if field then
    local lit, strs, strict, p = check_of(node, leaves)
    return function(get)
      local v = get(field)
      if v == lit or strs[v] then return true end
      if strict and type(v) == "string" then return false end
      return p(v)
    end
  end
  if is_leaf(node) then return evals[node] end
  if node.op == "nested" then
    local inner, name = compile_node(node.children[1], leaves, evals), node.field
    local function holds(obj) return inner(object_getter(obj)) end
    return function(get) return each_object(get(name), holds) end
  end
  if node.op == "not" then
    local c = compile_node(node.children[1], leaves, evals)
    return function(get) return not c(get) end
  end
  local k, F, L, S, X, P, C = #node.children, {}, {}, {}, {}, {}, {}
  for i, child in ipairs(node.children) do
    F[i] = single_field(child) or false
    if F[i] then
      L[i], S[i], X[i], P[i] = check_of(child, leaves)
      C[i] = false
    else
      L[i], S[i], X[i], P[i] = NONE, EMPTY, false, false
      C[i] = compile_node(child, leaves, evals)
    end
  end
  if node.op == "and" then
    return function(get)
      for i = 1, k do
        local f = F[i]
        if f then
          local v = get(f)
          if v ~= L[i] and not S[i][v] then
            if X[i] and type(v) == "string" then return false end
            if not P[i](v) then return false end
          end
        elseif not C[i](get) then
          return false
        end
      end
      return true
    end
  end
  return function(get)
    for i = 1, k do
      local f = F[i]
      if f then
        local v = get(f)
        if v == L[i] or S[i][v] then return true end
        if not (X[i] and type(v) == "string") and P[i](v) then return true end
      elseif C[i](get) then
        return true
      end
    end
    return false
  end
end

local function explain(node, get, evals, nested)
  local copy = {}
  for k, v in pairs(node) do copy[k] = v end
  if node.segments then copy.segments = { table.unpack(node.segments) } end
  if is_leaf(node) then
    copy.value = evals[node](get)
    return copy
  end
  if node.op == "nested" then
    -- The inner query against the first object it holds in, else the first object.
    local first, hit
    each_object(get(node.field), function(obj)
      first = first or obj
      if nested[node](object_getter(obj)) then
        hit = obj
        return true
      end
      return false
    end)
    local obj = hit or first
    local inner = explain(node.children[1], obj and object_getter(obj) or function() return nil end, evals, nested)
    copy.children, copy.value = { inner }, hit ~= nil
    return copy
  end
  local kids, value = {}, node.op == "and"
  for i, child in ipairs(node.children) do
    local e = explain(child, get, evals, nested)
    kids[i] = e
    if node.op == "and" then value = value and e.value else value = value or e.value end
  end
  if node.op == "not" then value = not kids[1].value end
  copy.children, copy.value = kids, value
  return copy
end

local function always() return true end

local KIND_NAME = { ip = "an ip", number = "a numeric", date = "a date" }

-- Compile KQL source. opts: chunkname (for messages), line and col where the
-- source starts in that file (default 1, 1). Returns the query, or nil and a
-- "chunk:line:col: message" string.
function M.compile(source, opts)
  opts = opts or {}
  local chunk = opts.chunkname or "query"
  if type(source) ~= "string" then
    return nil, format("%s: the query must be a string, not %s", chunk, type(source))
  end
  local ok, root = pcall(parse, source, opts)
  if not ok then
    if type(root) == "table" and root.kql then return nil, root.kql end
    error(root, 0)
  end

  -- Leaves: their field's kind, what Elasticsearch would reject, their predicates.
  local leaves, evals, seen, fields, problem = {}, {}, {}, {}, nil
  local function name_field(path)
    if not seen[path] then
      seen[path] = true
      fields[#fields + 1] = path
    end
  end
  local function walk(node)
    if problem then return end
    if node.bad then
      problem = format("%s:%d:%d: %s", chunk, node.line, node.col, node.bad)
      return
    end
    if node.op == "nested" then name_field(node.path) end
    if not is_leaf(node) then
      for _, child in ipairs(node.children) do walk(child) end
      return
    end
    if node.op == "all" then
      evals[node] = always
    elseif node.field then
      node.kind = fieldtypes.kind(node.path)
      local why = typed_problem(node, node.kind)
      if why then
        problem = format("%s:%d:%d: %s is %s field in ECS: %s (Elasticsearch rejects the query)",
          chunk, node.line, node.col, node.path, KIND_NAME[node.kind], why)
        return
      end
      local p, field = leaf_pred(node, node.kind, false), node.field
      leaves[node] = p
      evals[node] = function(get) return p(get(field)) end
      name_field(node.path)
    else
      evals[node] = every_field(node)
    end
  end
  walk(root)
  if problem then return nil, problem end
  sort(fields)

  -- The inner query of each nested node, for explain.
  local nested = {}
  local function inner_of(node)
    if node.op == "nested" then nested[node] = compile_node(node.children[1], leaves, evals) end
    for _, child in ipairs(node.children or {}) do inner_of(child) end
  end
  inner_of(root)

  return {
    source = source,
    ast = root,
    fields = fields,
    match = compile_node(root, leaves, evals),
    explain = function(get) return explain(root, get, evals, nested) end,
  }
end

------------------------------------------------------------------------------
-- Requirements: what an event must hold for a query to match
------------------------------------------------------------------------------

-- A literal only an equal string can match: not a number's text, nor a
-- boolean's (200 matches the number 200.0, true matches the boolean).
local function string_only(lit)
  return numeric(lit) == nil and bool_of(lit) == nil
end

-- The wildcard segment a matching string must contain, or nil: the longest
-- one that no number's text can hold (a number is matched as its text, which
-- need not be how the record wrote it).
local function wildcard_need(segs)
  local best
  for _, s in ipairs(segs) do
    if find(s, "[^%d%.eE%+%-]") and (best == nil or #s > #best) then best = s end
  end
  return best
end

-- Of a child's clauses, the one with the fewest alternatives.
local function narrowest(clauses)
  local best
  for _, c in ipairs(clauses) do
    if best == nil or #c < #best then best = c end
  end
  return best
end

local function need(node)
  local op = node.op
  if op == "match" then
    -- no field name, a wildcard one, an ip or numeric field: no string a match needs
    if node.field == nil or (node.kind ~= "keyword" and node.kind ~= "unknown") then return {} end
    if node.wildcard then
      local s = wildcard_need(node.segments)
      if s then return { { { field = node.field, value = s, exact = false } } } end
    elseif is_exact(node) and string_only(node.literal) then
      return { { { field = node.field, value = node.literal, exact = true } } }
    end
    return {}
  end
  if op == "and" then
    local out = {}
    for _, child in ipairs(node.children) do
      for _, c in ipairs(need(child)) do out[#out + 1] = c end
    end
    return out
  end
  if op == "or" then
    local clause = {}
    for _, child in ipairs(node.children) do
      local c = narrowest(need(child))
      if c == nil then return {} end  -- this branch needs nothing we can name
      for _, alt in ipairs(c) do clause[#clause + 1] = alt end
    end
    return { clause }
  end
  return {}  -- not, exists, ranges, nested queries, the empty query: nothing a match must contain
end

-- What every event a query matches holds, as a conjunction of clauses, each
-- a list of alternatives of which at least one holds:
--   { field = , value = , exact = true }   the field's value is the string
--                                          value, or an array holding it
--   { field = , value = , exact = false }  the field's value is a string (or
--                                          an array holding one) containing value
-- Necessary, not sufficient: an event holding them all may still not match.
-- An empty list: nothing is known (every event may match). The prefilter
-- and the rule index are built on this (worker.lua).
function M.requirements(q)
  return need(q.ast)
end

-- The values of a field that rule an event out: for the child of a `not`, { field = ,
-- values = { ... } } when it is an exact string match or an `or` of them on one field, else nil.
local function exclusion(node)
  if is_exact(node) then return { field = node.field, values = { node.literal } } end
  if node.op ~= "or" then return nil end
  local out = { field = nil, values = {} }
  for _, child in ipairs(node.children) do
    if not is_exact(child) or (out.field and child.field ~= out.field) then return nil end
    out.field = child.field
    out.values[#out.values + 1] = child.literal
  end
  return out.field and out or nil
end

-- What rules every event a query matches out, from its top-level `not` clauses: a list of
-- { field = , values = { ... } }; an event whose field is one of the values (a string equal to
-- it, or an array holding one) cannot match (not x: "a", not x: ("a" or "b")). The rule index
-- checks them before a rule runs.
function M.exclusions(q)
  local root = q.ast
  local out = {}
  for _, node in ipairs(root.op == "and" and root.children or { root }) do
    local e = node.op == "not" and exclusion(node.children[1])
    if e then out[#out + 1] = e end
  end
  return out
end

-- For explain: the one field every leaf under a tree node reads, or nil.
M.single_field = single_field

return M
