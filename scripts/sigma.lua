-- sigma.lua: Sigma detections compiled to match functions over raw CloudTrail records.
--
-- A Sigma rule runs here as a rule module with language = "sigma" and a `sigma` table that
-- holds the Sigma rule's own keys word for word, as a YAML reader gives them (README,
-- "Sigma rules"). This module compiles its `detection`:
--
--   local d, err = sigma.compile(detection)
--   d.match(rec) -> boolean       rec: the raw CloudTrail record (a decoded JSON object)
--   d.explain(rec) -> tree        every node with value = true|false (see "Explaining")
--   d.fields                      the raw field paths the detection reads, sorted
--   d.requirements                what a record it matches must hold (see "Requirements")
--   d.warnings                    { { msg, ident, key } }: legal, but probably not meant
--   d.identifiers, d.defs         the search identifiers, sorted, and each one's compiled
--                                 node: an item { field, key, mods, raws, values, match } or
--                                 { kind = "and"|"or", items }
--   err                           { msg, ident, key }: where (search identifier, field key)
--                                 and what; sigma.message(err) is the text
--
--   sigma.NULL                    Sigma's null, as a rule module writes it:
--                                   local sigma = require "sigma"   (the only module a rule
--                                   may require) ... errorCode = sigma.NULL
--                                 (a YAML reader's null, lyaml.null, is another value: an
--                                 importer writes sigma.NULL in its place)
--   sigma.LEVELS[level]           { severity, risk_score }: informational and low -> low 21,
--                                 medium 47, high 73, critical 99
--   sigma.index_values(rec, path) the lower-cased text of every value at path (ruleindex.lua)
--
-- Semantics, as the Sigma specification (sigma-rules-specification.md, sigma-appendix-
-- modifiers.md) and pySigma, its reference implementation, define them:
--   - A search identifier is a map (every item holds), a list of maps (one holds), or a list
--     of plain values (keywords: one of them is in some value of the record). A field's list
--     of values is OR (AND with |all); an empty list or null: the field is absent or null.
--   - Fields are raw CloudTrail paths: userIdentity.type, requestParameters.bucketName. A
--     path through an array of objects reads every element; a field holding an object or an
--     array is matched by each of its values (leaves), as Elasticsearch's flattened and array
--     fields are: `requestParameters|contains: Suspended` holds when some value under
--     requestParameters contains it. Numbers and booleans compare as their JSON text ('true'
--     matches true, '22' matches 22).
--   - Strings match whole, case-insensitively (ASCII letters), with wildcards * (any run) and
--     ? (one character); \* \? \\ are the plain characters, and any other backslash is itself.
--     |cased: case-sensitive. A number matches that number (or text that reads as it); a
--     boolean that boolean (or "true"/"false").
--   - Modifiers: contains startswith endswith all cased neq exists re (with i m s, ignorecase
--     multiline dotall) cidr lt lte gt gte fieldref base64 base64offset utf16le utf16be utf16
--     wide windash minute hour day week month year. `expand` (placeholders) is refused, as the
--     specification asks of a tool that cannot fill them in; so is any other name.
--   - re: PCRE's syntax (regex.lua), a search anywhere in the value, case-sensitive unless |i.
--   - Conditions: and, or, not, parentheses, `1 of`/`any of`/`all of` a name or a name with *
--     wildcards, `them` (every identifier not starting with _); a list of conditions is OR.
--     Precedence: or < and < not < x of < ( ).

local cjson = require "cjson"
local event = require "event"
local esdate = require "esdate"
local kql = require "kql"
local regex = require "regex"

local M = {}

local type, pairs, ipairs, tostring, rawget = type, pairs, ipairs, tostring, rawget
local lower, format, concat = string.lower, string.format, table.concat
local jnull = cjson.null

M.NULL = setmetatable({}, {
  __name = "sigma.NULL",
  __tostring = function() return "null" end,
  __newindex = function() error("sigma.NULL cannot be changed", 2) end,
  __metatable = false,
})
local NULL = M.NULL

M.LEVELS = {
  informational = { severity = "low", risk_score = 21 },
  low = { severity = "low", risk_score = 21 },
  medium = { severity = "medium", risk_score = 47 },
  high = { severity = "high", risk_score = 73 },
  critical = { severity = "critical", risk_score = 99 },
}

-- The modifiers, by name: what they are, for check's list of known ones.
M.MODIFIERS = {
  "all", "base64", "base64offset", "cased", "cidr", "contains", "day", "dotall", "endswith", "exists",
  "expand", "fieldref", "gt", "gte", "hour", "i", "ignorecase", "lt", "lte", "m", "minute", "month",
  "multiline", "neq", "re", "s", "startswith", "utf16", "utf16be", "utf16le", "week", "wide", "windash",
  "year",
}

------------------------------------------------------------------------------
-- Values of a record
------------------------------------------------------------------------------

-- The text a value compares as: a string itself, a number its JSON text (22, not 22.0), a
-- boolean true or false.
local function text_of(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then
    local i = math.tointeger(v)
    if i then return format("%d", i) end
    return tostring(v)
  end
  if t == "boolean" then return v and "true" or "false" end
  return nil
end
M.text_of = text_of

-- Calls fn(scalar) for each string, number and boolean in v (v itself, or the leaves of an
-- array or object), until one returns true. JSON null is no value.
local function any_scalar(v, fn)
  if type(v) == "table" then
    for _, x in pairs(v) do
      if any_scalar(x, fn) then return true end
    end
    return false
  end
  if v == nil or v == jnull then return false end
  return fn(v) == true
end

local function split(path)
  local parts = {}
  for part in path:gmatch("[^.]+") do parts[#parts + 1] = part end
  return parts
end

-- Is there a value at parts[i..] in t (JSON null counts, as |exists asks of presence only)?
-- Keys may hold dots: every way of cutting the path is tried, as event.get does.
local function present(t, parts, i)
  if type(t) ~= "table" then return false end
  if rawget(t, 1) ~= nil then
    for _, el in ipairs(t) do
      if present(el, parts, i) then return true end
    end
    return false
  end
  local key = parts[i]
  for j = i, #parts do
    if j > i then key = key .. "." .. parts[j] end
    local v = rawget(t, key)
    if v ~= nil then
      if j == #parts then return true end
      if present(v, parts, j + 1) then return true end
    end
  end
  return false
end

function M.index_values(rec, path)
  if type(rec) ~= "table" then return nil end
  local v = event.get(rec, path)
  if v == nil then return nil end
  local out = {}
  any_scalar(v, function(x)
    out[#out + 1] = lower(text_of(x))
  end)
  return out
end

------------------------------------------------------------------------------
-- Strings with wildcards
------------------------------------------------------------------------------

local STAR = setmetatable({}, { __name = "*" })
local ONE = setmetatable({}, { __name = "?" })

-- A Sigma string as pySigma's SigmaString reads it: plain runs, STAR and ONE.
local function parse_string(s)
  local parts, acc = {}, {}
  local escaped = false
  local function flush()
    if #acc > 0 then
      parts[#parts + 1] = concat(acc)
      acc = {}
    end
  end
  for i = 1, #s do
    local c = s:sub(i, i)
    if escaped then
      if c == "*" or c == "?" or c == "\\" then
        acc[#acc + 1] = c
      else
        acc[#acc + 1] = "\\" .. c
      end
      escaped = false
    elseif c == "\\" then
      escaped = true
    elseif c == "*" then
      flush()
      parts[#parts + 1] = STAR
    elseif c == "?" then
      flush()
      parts[#parts + 1] = ONE
    else
      acc[#acc + 1] = c
    end
  end
  if escaped then acc[#acc + 1] = "\\" end
  flush()
  return parts
end

local function has_wildcards(parts)
  for _, p in ipairs(parts) do
    if p == STAR or p == ONE then return true end
  end
  return false
end

-- A string's parts written back as Sigma text (for messages and explain).
local function string_text(parts)
  local out = {}
  for _, p in ipairs(parts) do
    if p == STAR then out[#out + 1] = "*"
    elseif p == ONE then out[#out + 1] = "?"
    else out[#out + 1] = (p:gsub("([*?])", "\\%1"):gsub("\\\\([*?])", "\\\\\\%1")) end
  end
  return concat(out)
end

-- Glob match over code points, * backtracking to its last position only: O(text x pattern).
local function glob_generic(tokens)
  return function(text)
    local t = regex.codepoints(text)
    local n, m = #t, #tokens
    local i, j = 1, 1
    local star_j, star_i = nil, 0
    while i <= n do
      local tok = tokens[j]
      if j <= m and tok ~= STAR and (tok == ONE or tok == t[i]) then
        i, j = i + 1, j + 1
      elseif j <= m and tok == STAR then
        star_j, star_i = j, i
        j = j + 1
      elseif star_j then
        star_i = star_i + 1
        i, j = star_i, star_j + 1
      else
        return false
      end
    end
    while j <= m and tokens[j] == STAR do j = j + 1 end
    return j > m
  end
end

-- A matcher text -> boolean for parts; cased: compare as written.
local function glob(parts, cased)
  local norm = cased and function(s) return s end or lower
  local lits = {}
  for i, p in ipairs(parts) do lits[i] = (p == STAR or p == ONE) and p or norm(p) end
  local n = #lits
  if n == 0 then return function(text) return text == "" end end
  if not has_wildcards(lits) then
    local want = concat(lits)
    return function(text) return norm(text) == want end
  end
  local has_one = false
  for _, p in ipairs(lits) do if p == ONE then has_one = true end end
  if has_one then
    local tokens = {}
    for _, p in ipairs(lits) do
      if p == STAR or p == ONE then
        if not (p == STAR and tokens[#tokens] == STAR) then tokens[#tokens + 1] = p end
      else
        for _, c in ipairs(regex.codepoints(p)) do tokens[#tokens + 1] = c end
      end
    end
    local g = glob_generic(tokens)
    return function(text) return g(norm(text)) end
  end
  -- Only *: a prefix, a suffix and the runs between them in order.
  local prefix = lits[1] ~= STAR and lits[1] or nil
  local suffix = lits[n] ~= STAR and lits[n] or nil
  local middle = {}
  for i = 1, n do
    local p = lits[i]
    if p ~= STAR and not (i == 1 and prefix) and not (i == n and suffix) then middle[#middle + 1] = p end
  end
  return function(text)
    text = norm(text)
    local from, to = 1, #text
    if prefix then
      if text:sub(1, #prefix) ~= prefix then return false end
      from = #prefix + 1
    end
    if suffix then
      if to - #suffix + 1 < from or text:sub(-#suffix) ~= suffix then return false end
      to = to - #suffix
    end
    for _, run in ipairs(middle) do
      local s, e = text:find(run, from, true)
      if not s or e > to then return false end
      from = e + 1
    end
    return true
  end
end
M.glob = function(s, cased) return glob(parse_string(s), cased) end

------------------------------------------------------------------------------
-- Encodings (base64, base64offset, utf16*, windash)
------------------------------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = (a << 16) | ((b or 0) << 8) | (c or 0)
    out[#out + 1] = B64:sub((v >> 18) + 1, (v >> 18) + 1) .. B64:sub(((v >> 12) & 63) + 1, ((v >> 12) & 63) + 1)
      .. (b and B64:sub(((v >> 6) & 63) + 1, ((v >> 6) & 63) + 1) or "=")
      .. (c and B64:sub((v & 63) + 1, (v & 63) + 1) or "=")
  end
  return concat(out)
end
M.base64 = base64

-- pySigma's SigmaBase64OffsetModifier: the three ways s shows inside base64 text.
local function base64_offsets(s)
  local starts, ends = { 0, 2, 3 }, { false, -3, -2 }
  local out = {}
  for i = 0, 2 do
    local enc = base64(string.rep(" ", i) .. s)
    local e = ends[(#s + i) % 3 + 1]
    out[#out + 1] = enc:sub(starts[i + 1] + 1, e and #enc + e or #enc)
  end
  return out
end
M.base64_offsets = base64_offsets

local function utf16(s, big)
  if s:find("[\128-\255]") then return nil end
  return (s:gsub(".", function(c) return big and ("\0" .. c) or (c .. "\0") end))
end

local function is_word_byte(b)
  return b and (b >= 128 or (b >= 48 and b <= 57) or (b >= 65 and b <= 90) or (b >= 97 and b <= 122) or b == 95)
end

local DASHES = { "-", "/", "\u{2013}", "\u{2014}", "\u{2015}" }
M.MAX_EXPANSION = 4096

-- pySigma's windash: every - or / that starts a word after a non-word character (\B[-/]\b)
-- is each of - / en dash, em dash and horizontal bar, in every combination.
local function windash(parts)
  local places = {}  -- { part index, byte index }
  for pi, p in ipairs(parts) do
    if p ~= STAR and p ~= ONE then
      for i = 1, #p do
        local b = p:byte(i)
        if (b == 45 or b == 47) and not is_word_byte(p:byte(i - 1)) and is_word_byte(p:byte(i + 1)) then
          places[#places + 1] = { pi, i }
        end
      end
    end
  end
  if (#DASHES) ^ #places > M.MAX_EXPANSION then return nil end
  local out = {}
  local function build(k, chosen)
    if k > #places then
      local np = {}
      for pi, p in ipairs(parts) do
        if p == STAR or p == ONE then
          np[pi] = p
        else
          local pieces, last = {}, 1
          for idx, pl in ipairs(places) do
            if pl[1] == pi then
              pieces[#pieces + 1] = p:sub(last, pl[2] - 1) .. chosen[idx]
              last = pl[2] + 1
            end
          end
          pieces[#pieces + 1] = p:sub(last)
          np[pi] = concat(pieces)
        end
      end
      out[#out + 1] = np
      return
    end
    for _, d in ipairs(DASHES) do
      chosen[k] = d
      build(k + 1, chosen)
    end
  end
  build(1, {})
  return out
end

------------------------------------------------------------------------------
-- Values and modifiers
------------------------------------------------------------------------------
-- A value while modifiers apply: { kind = "string", parts, cased } | "number" n | "bool" b |
-- "null" | "re" pattern, flags | "cidr" net, bits | "cmp" op, n | "fieldref" field, starts,
-- ends | "exists" b | "time" part, n | "expansion" values

local function describe(v)
  if v == NULL then return "null" end
  if type(v) == "string" then return "'" .. v .. "'" end
  return tostring(v)
end

local function value_of(raw, is_re)
  if raw == NULL then return { kind = "null" } end
  local t = type(raw)
  if is_re then
    if t ~= "string" then return nil, "re: the value " .. describe(raw) .. " is not text" end
    return { kind = "string", raw = raw, parts = { raw } }
  end
  if t == "string" then return { kind = "string", raw = raw, parts = parse_string(raw) } end
  if t == "number" then return { kind = "number", n = raw } end
  if t == "boolean" then return { kind = "bool", b = raw } end
  return nil, "a value must be text, a number, a boolean or null, not a " .. t
end

local function need(v, kinds, mod)
  if kinds[v.kind] then return true end
  local what = v.kind == "string" and "text" or v.kind == "number" and "a number" or v.kind == "bool" and
    "a boolean" or v.kind == "null" and "null" or ("a " .. v.kind .. " value")
  local wants = kinds.string and "text" or kinds.number and "a number" or kinds.bool and "a boolean" or
    "a regular expression (|re before it)"
  error({ msg = format("|%s needs %s, but the value is %s", mod, wants, what) }, 0)
end

local STRINGISH = { string = true, re = true, fieldref = true }

-- Apply one value modifier to v; returns the new value.
local VALUE_MODS = {}
VALUE_MODS.contains = function(v)
  need(v, STRINGISH, "contains")
  if v.kind == "string" then
    local p = v.parts
    if p[1] ~= STAR then table.insert(p, 1, STAR) end
    if p[#p] ~= STAR then p[#p + 1] = STAR end
  elseif v.kind == "fieldref" then
    v.starts, v.ends = true, true
  end
  return v  -- re: a search already finds the pattern anywhere
end
VALUE_MODS.startswith = function(v)
  need(v, STRINGISH, "startswith")
  if v.kind == "string" and v.parts[#v.parts] ~= STAR then v.parts[#v.parts + 1] = STAR end
  if v.kind == "fieldref" then v.starts = true end
  return v
end
VALUE_MODS.endswith = function(v)
  need(v, STRINGISH, "endswith")
  if v.kind == "string" and v.parts[1] ~= STAR then table.insert(v.parts, 1, STAR) end
  if v.kind == "fieldref" then v.ends = true end
  return v
end
VALUE_MODS.cased = function(v)
  need(v, { string = true }, "cased")
  v.cased = true
  return v
end
local function plain_text(v, mod)
  need(v, { string = true }, mod)
  if has_wildcards(v.parts) then
    error({ msg = format("|%s cannot encode a value with wildcards (%s)", mod, string_text(v.parts)) }, 0)
  end
  return concat(v.parts)
end
VALUE_MODS.base64 = function(v)
  return { kind = "string", parts = { base64(plain_text(v, "base64")) } }
end
VALUE_MODS.base64offset = function(v)
  local list = {}
  for _, s in ipairs(base64_offsets(plain_text(v, "base64offset"))) do
    list[#list + 1] = { kind = "string", parts = { s } }
  end
  return { kind = "expansion", values = list }
end
local function utf16_mod(name, big, bom)
  return function(v)
    need(v, { string = true }, name)
    local parts = {}
    for i, p in ipairs(v.parts) do
      if p == STAR or p == ONE then
        parts[i] = p
      else
        local enc = utf16(p, big)
        if not enc then error({ msg = format("|%s encodes ASCII text only", name) }, 0) end
        parts[i] = enc
      end
    end
    if bom then table.insert(parts, 1, big and "\254\255" or "\255\254") end
    return { kind = "string", parts = parts, cased = v.cased }
  end
end
VALUE_MODS.utf16le = utf16_mod("utf16le", false, false)
VALUE_MODS.wide = utf16_mod("wide", false, false)
VALUE_MODS.utf16be = utf16_mod("utf16be", true, false)
VALUE_MODS.utf16 = utf16_mod("utf16", false, true)
VALUE_MODS.windash = function(v)
  need(v, { string = true }, "windash")
  local list = windash(v.parts)
  if not list then
    error({ msg = format("|windash: too many dashes in one value (more than %d combinations)", M.MAX_EXPANSION) }, 0)
  end
  local vals = {}
  for i, parts in ipairs(list) do vals[i] = { kind = "string", parts = parts, cased = v.cased } end
  return { kind = "expansion", values = vals }
end
VALUE_MODS.fieldref = function(v)
  need(v, { string = true }, "fieldref")
  if has_wildcards(v.parts) then error({ msg = "|fieldref: a field name has no wildcards" }, 0) end
  local name = concat(v.parts)
  if name == "" then error({ msg = "|fieldref: the value must name a field" }, 0) end
  return { kind = "fieldref", field = name, parts = split(name) }
end
for _, f in ipairs({ "i", "ignorecase", "m", "multiline", "s", "dotall" }) do
  local flag = f:sub(1, 1)
  if f == "ignorecase" then flag = "i" elseif f == "multiline" then flag = "m" elseif f == "dotall" then flag = "s" end
  VALUE_MODS[f] = function(v)
    need(v, { re = true }, f)
    v.flags[flag] = true
    return v
  end
end
for _, op in ipairs({ "lt", "lte", "gt", "gte" }) do
  VALUE_MODS[op] = function(v)
    need(v, { number = true }, op)
    return { kind = "cmp", op = op, n = v.n }
  end
end
for _, part in ipairs({ "minute", "hour", "day", "week", "month", "year" }) do
  VALUE_MODS[part] = function(v)
    need(v, { number = true }, part)
    if math.type(v.n) ~= "integer" and v.n ~= math.floor(v.n) then
      error({ msg = format("|%s needs a whole number, not %s", part, tostring(v.n)) }, 0)
    end
    return { kind = "time", part = part, n = math.tointeger(v.n) }
  end
end

-- Modifiers that must come first: they read the value as written.
local FIRST = {
  re = function(v)
    need(v, { string = true }, "re")
    return { kind = "re", pattern = v.raw or concat(v.parts), flags = {} }
  end,
  cidr = function(v)
    need(v, { string = true }, "cidr")
    local text = v.raw or concat(v.parts)
    local net, bits = kql.cidr(text)
    if not net and not text:find("/", 1, true) then
      net = kql.ip_bytes(text)
      bits = 128
    end
    if not net then error({ msg = format("|cidr: '%s' is not an IPv4 or IPv6 network", text) }, 0) end
    -- The bits past the prefix must be zero, as Python's ip_network (pySigma) requires.
    for k = bits + 1, 128 do
      local by = net:byte((k - 1) // 8 + 1)
      if by & (1 << (7 - (k - 1) % 8)) ~= 0 then
        error({ msg = format("|cidr: '%s' has host bits set (the network is written with zeros past the prefix)",
          text) }, 0)
      end
    end
    return { kind = "cidr", net = net, bits = bits, text = text }
  end,
  exists = function(v)
    need(v, { bool = true }, "exists")
    return { kind = "exists", b = v.b }
  end,
}

local KNOWN = {}
for _, m in ipairs(M.MODIFIERS) do KNOWN[m] = true end

------------------------------------------------------------------------------
-- Matchers: value -> function(v, rec) -> boolean (v: the field's value, nil when absent)
------------------------------------------------------------------------------

local function same_prefix(a, b, bits)
  local whole = bits // 8
  if whole > 0 and a:sub(1, whole) ~= b:sub(1, whole) then return false end
  local rest = bits % 8
  if rest == 0 then return true end
  local mask = (0xFF << (8 - rest)) & 0xFF
  return a:byte(whole + 1) & mask == b:byte(whole + 1) & mask
end

-- A decimal number written as text ("22", "-1.5", "2e3"), else nil.
local function number_in(x)
  if type(x) == "number" then return x end
  if type(x) == "string" and x:find("^%s*[-+]?%d*%.?%d+[eE]?[-+]?%d*%s*$") then
    local n = tonumber(x)
    if n and n == n and n ~= math.huge and n ~= -math.huge then return n end
  end
  return nil
end

local CMP = {
  lt = function(a, b) return a < b end, lte = function(a, b) return a <= b end,
  gt = function(a, b) return a > b end, gte = function(a, b) return a >= b end,
}

-- ISO 8601 week number of a UTC time (seconds).
local function iso_week(secs)
  local t = os.date("!*t", secs)
  local wday = (t.wday + 5) % 7 + 1  -- Monday 1 .. Sunday 7
  local thursday = secs + (4 - wday) * 86400
  local th = os.date("!*t", thursday)
  return (th.yday - 1) // 7 + 1
end

local function time_part(x, part)
  local ms = esdate.value(x)
  if not ms then return nil end
  local secs = ms // 1000
  if part == "week" then return iso_week(secs) end
  local t = os.date("!*t", secs)
  if part == "minute" then return t.min end
  if part == "hour" then return t.hour end
  if part == "day" then return t.day end
  if part == "month" then return t.month end
  return t.year
end

local function scalar_matcher(v)
  local k = v.kind
  if k == "string" then
    local g = glob(v.parts, v.cased)
    return function(x) return g(text_of(x)) end
  elseif k == "number" then
    local n = v.n
    return function(x)
      if type(x) == "boolean" then return false end
      return number_in(x) == n
    end
  elseif k == "bool" then
    local want = v.b and "true" or "false"
    return function(x)
      if type(x) == "boolean" then return x == v.b end
      return type(x) == "string" and lower(x) == want
    end
  elseif k == "re" then
    local re, err = regex.compile(v.pattern, v.flags)
    if not re then error({ msg = format("|re: the regular expression '%s' %s", v.pattern, err) }, 0) end
    return function(x) return re.find(text_of(x)) end, re
  elseif k == "cidr" then
    return function(x)
      local b = type(x) == "string" and kql.ip_bytes(x)
      return b and same_prefix(b, v.net, v.bits) or false
    end
  elseif k == "cmp" then
    local f, n = CMP[v.op], v.n
    return function(x)
      local y = type(x) ~= "boolean" and number_in(x)
      return y and f(y, n) or false
    end
  elseif k == "time" then
    return function(x) return time_part(x, v.part) == v.n end
  end
  error({ msg = "internal: no matcher for " .. tostring(k) }, 0)
end

-- A matcher over a field's value v (and the record, for fieldref).
local function value_matcher(v)
  local k = v.kind
  if k == "null" then
    return function(x) return x == nil end
  elseif k == "exists" then  -- the item reads presence itself (compile_item)
    return function() return false end
  elseif k == "expansion" then
    local ms = {}
    for i, e in ipairs(v.values) do ms[i] = value_matcher(e) end
    return function(x, rec)
      for i = 1, #ms do
        if ms[i](x, rec) then return true end
      end
      return false
    end
  elseif k == "fieldref" then
    local path, starts, ends = v.field, v.starts, v.ends
    return function(x, rec)
      local other = event.get(rec, path)
      if x == nil or other == nil then return false end
      return any_scalar(x, function(a)
        local ta = lower(text_of(a))
        return any_scalar(other, function(b)
          local tb = lower(text_of(b))
          if starts and ends then return ta:find(tb, 1, true) ~= nil end
          if starts then return ta:sub(1, #tb) == tb end
          if ends then return tb == "" or ta:sub(-#tb) == tb end
          return ta == tb
        end)
      end)
    end
  end
  local m, re = scalar_matcher(v)
  return function(x)
    return any_scalar(x, m)
  end, re
end

------------------------------------------------------------------------------
-- Detection items
------------------------------------------------------------------------------

-- "field|mod|mod" -> field (nil: a keyword), { mods }
local function parse_key(key)
  local segs = {}
  for seg in (key .. "|"):gmatch("([^|]*)|") do segs[#segs + 1] = seg end
  local field = table.remove(segs, 1)
  if field == "" then field = nil end
  return field, segs
end

-- Values of an item as written: a list (a plain value is a list of one).
local function value_list(raw)
  if type(raw) == "table" and raw ~= NULL then
    local list = {}
    for k in pairs(raw) do
      if math.type(k) ~= "integer" or k < 1 then return nil end
    end
    for i = 1, #raw do list[i] = raw[i] end
    return list
  end
  return { raw }
end

-- One item: { field, key, mods, link = "or"|"and", negated, values = { v }, match(rec), text }.
local function compile_item(key, raw, warnings, ident)
  local field, mods = parse_key(key)
  for _, m in ipairs(mods) do
    if m == "expand" then
      error({ msg = format("|expand: placeholders (%%name%%) are not supported: trailhound has no values to put " ..
        "in their place, and the specification asks a tool that cannot fill them in to reject the rule") }, 0)
    end
    if not KNOWN[m] then
      error({ msg = format("unknown modifier '%s' (Sigma's are %s)", m, concat(M.MODIFIERS, ", ")) }, 0)
    end
  end
  local raws = value_list(raw)
  if not raws then error({ msg = "a field's values must be a value or a list of values, not a map" }, 0) end
  local is_re = false
  for _, m in ipairs(mods) do if m == "re" then is_re = true end end
  local item = { field = field, key = key, mods = mods, link = "or", negated = false, raws = raws, values = {} }
  local nulls, others = 0, 0
  for i, r in ipairs(raws) do
    local v, err = value_of(r, is_re)
    if not v then error({ msg = err }, 0) end
    if v.kind == "null" then nulls = nulls + 1 else others = others + 1 end
    item.values[i] = v
  end
  if nulls > 0 and others > 0 then
    warnings[#warnings + 1] = { ident = ident, key = key, msg = format("%s: null is in a list with other values; " ..
      "the specification wants it in a selection of its own (it still means: the field is absent or null)", key) }
  end
  local applied = 0
  for _, m in ipairs(mods) do
    if m == "all" then
      item.link = "and"
      if #raws == 1 then
        warnings[#warnings + 1] = { ident = ident, key = key, msg = format("%s: |all on a single value changes " ..
          "nothing (the specification does not allow it)", key) }
      end
    elseif m == "neq" then
      item.negated = true
    elseif FIRST[m] then
      if applied > 0 then error({ msg = format("|%s must be the first modifier of the value", m) }, 0) end
      if m == "exists" and not field then error({ msg = "|exists needs a field" }, 0) end
      for i, v in ipairs(item.values) do item.values[i] = FIRST[m](v) end
      applied = applied + 1
    else
      local f = VALUE_MODS[m]
      local function apply(v)
        if v.kind == "expansion" then
          for i, e in ipairs(v.values) do v.values[i] = apply(e) end
          return v
        end
        return f(v)
      end
      for i, v in ipairs(item.values) do item.values[i] = apply(v) end
      applied = applied + 1
    end
  end
  if #raws == 0 then item.values = { { kind = "null" } } end
  if not field then
    for _, v in ipairs(item.values) do
      if v.kind == "null" then error({ msg = "a null value must be bound to a field" }, 0) end
      if v.kind == "fieldref" then error({ msg = "|fieldref needs a field to compare" }, 0) end
    end
    -- A keyword is looked for inside the record's values, unless it says where.
    local shaped = false
    for _, m in ipairs(mods) do
      if m == "contains" or m == "startswith" or m == "endswith" or m == "re" or m == "cidr" then shaped = true end
    end
    for i, v in ipairs(item.values) do
      if v.kind == "number" then item.values[i] = { kind = "string", parts = { text_of(v.n) } } v = item.values[i] end
      if v.kind == "string" and not shaped then VALUE_MODS.contains(v) end
    end
  end
  local matchers = {}
  for i, v in ipairs(item.values) do
    local m, re = value_matcher(v)
    matchers[i] = m
    if re then v.compiled = re end
  end
  local parts = field and split(field)
  local exists_want
  if item.values[1] and item.values[1].kind == "exists" then exists_want = item.values[1].b end
  local link_and, negated = item.link == "and", item.negated
  local function holds(rec)
    if exists_want ~= nil then
      local r = present(rec, parts, 1) == exists_want
      if negated then return not r end
      return r
    end
    local x
    if field then
      x = event.get(rec, field)
    else
      x = rec
    end
    local r
    if link_and then
      r = true
      for i = 1, #matchers do
        if not matchers[i](x, rec) then r = false break end
      end
    else
      r = false
      for i = 1, #matchers do
        if matchers[i](x, rec) then r = true break end
      end
    end
    if negated then return not r end
    return r
  end
  if exists_want ~= nil and #item.values > 1 then error({ msg = "|exists takes one value, true or false" }, 0) end
  item.match = holds
  local shown = {}
  for i, r in ipairs(raws) do shown[i] = describe(r) end
  if field then
    item.text = key .. ": " .. (#raws == 1 and shown[1] or ("[" .. concat(shown, ", ") .. "]"))
  else  -- keywords: one of them (all, with |all) in some value of the record
    item.text = (key == "" and "" or (key .. ": ")) .. concat(shown, link_and and " and " or " or ")
  end
  return item
end

local function is_list(t)
  if type(t) ~= "table" or t == NULL then return false end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t and n > 0
end

local function is_scalar(v)
  return v == NULL or type(v) == "string" or type(v) == "number" or type(v) == "boolean"
end

-- A search identifier's definition -> node { kind = "and"|"or", items, text } or an item.
local function compile_definition(def, warnings, ident, depth)
  if depth > 16 then error({ msg = "search identifier nested too deeply" }, 0) end
  if is_scalar(def) and def ~= NULL then
    return compile_item("", { def }, warnings, ident)
  end
  if type(def) ~= "table" or def == NULL then
    error({ msg = "a search identifier must be a map, a list, or a value, not " .. describe(def) }, 0)
  end
  if next(def) == nil then error({ msg = "the search identifier is empty" }, 0) end
  if is_list(def) then
    local scalars = true
    for _, x in ipairs(def) do
      if not is_scalar(x) then scalars = false end
    end
    if scalars then return compile_item("", def, warnings, ident) end
    local node = { kind = "or", items = {} }
    for i, x in ipairs(def) do node.items[i] = compile_definition(x, warnings, ident, depth + 1) end
    return node
  end
  local keys = {}
  for k in pairs(def) do
    if type(k) ~= "string" then error({ msg = "a map's keys must be field names, not " .. tostring(k) }, 0) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local node = { kind = "and", items = {} }
  for i, k in ipairs(keys) do
    local ok, item = pcall(compile_item, k, def[k], warnings, ident)
    if not ok then
      if type(item) == "table" then item.key = item.key or k end
      error(item, 0)
    end
    node.items[i] = item
  end
  if #node.items == 1 then return node.items[1] end
  return node
end

local function node_match(node, rec)
  if node.match then return node.match(rec) end
  if node.kind == "and" then
    for _, it in ipairs(node.items) do
      if not node_match(it, rec) then return false end
    end
    return true
  end
  for _, it in ipairs(node.items) do
    if node_match(it, rec) then return true end
  end
  return false
end

------------------------------------------------------------------------------
-- Conditions
------------------------------------------------------------------------------

local function tokenize(s)
  local toks, pos = {}, 1
  while pos <= #s do
    local c = s:sub(pos, pos)
    if c:find("%s") then
      pos = pos + 1
    elseif c == "(" or c == ")" then
      toks[#toks + 1] = { t = c, at = pos }
      pos = pos + 1
    else
      local w = s:match("^[%w_%-*]+", pos)
      if not w then error({ msg = format("'%s': unexpected '%s' at character %d", s, c, pos) }, 0) end
      toks[#toks + 1] = { t = "word", w = w, at = pos }
      pos = pos + #w
    end
  end
  return toks
end

-- pySigma's selector: * matches any run; `them` every identifier; names starting with _ only
-- for a pattern that starts with _.
local function select(pattern, idents)
  local out = {}
  local rx
  if pattern ~= "them" then
    rx = "^" .. pattern:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", ".*") .. "$"
  end
  for _, name in ipairs(idents) do
    if (rx == nil or name:find(rx)) and (pattern:sub(1, 1) == "_" or name:sub(1, 1) ~= "_") then
      out[#out + 1] = name
    end
  end
  return out
end

local KEYWORDS = { ["and"] = true, ["or"] = true, ["not"] = true, of = true }

local function parse_condition(s, idents, known)
  local toks = tokenize(s)
  local i = 1
  local function fail(msg)
    error({ msg = format("'%s': %s", s, msg) }, 0)
  end
  local function peek() return toks[i] end
  local function word(w) return toks[i] and toks[i].t == "word" and toks[i].w == w end
  local expr
  local function primary()
    local t = peek()
    if not t then fail("ends where a search identifier or '(' was expected") end
    if t.t == "(" then
      i = i + 1
      local e = expr()
      if not (peek() and peek().t == ")") then fail("a '(' without its ')'") end
      i = i + 1
      return e
    end
    if t.t == ")" then fail("unexpected ')'") end
    local w = t.w
    if (w == "1" or w == "any" or w == "all") and toks[i + 1] and toks[i + 1].w == "of" then
      local pat = toks[i + 2]
      if not pat or pat.t ~= "word" then fail("'" .. w .. " of' needs a search identifier, a pattern or them") end
      i = i + 3
      if pat.w:find("[^%w_*]") then fail("'" .. pat.w .. "' is no search identifier pattern") end
      local names = select(pat.w, idents)
      if #names == 0 then fail("'" .. w .. " of " .. pat.w .. "' names no search identifier") end
      return { op = "of", quant = w == "all" and "all" or "1", pattern = pat.w, names = names }
    end
    if KEYWORDS[w] then fail("unexpected '" .. w .. "'") end
    if w:find("*", 1, true) then fail("'" .. w .. "': a pattern needs '1 of' or 'all of' before it") end
    if not known[w] then
      fail("'" .. w .. "' is not a search identifier of the detection (" .. concat(idents, ", ") .. ")")
    end
    i = i + 1
    return { op = "id", name = w }
  end
  local function unary()
    if word("not") then
      i = i + 1
      return { op = "not", children = { unary() } }
    end
    return primary()
  end
  local function conj()
    local left = unary()
    while word("and") do
      i = i + 1
      local right = unary()
      if left.op == "and" then
        left.children[#left.children + 1] = right
      else
        left = { op = "and", children = { left, right } }
      end
    end
    return left
  end
  expr = function()
    local left = conj()
    while word("or") do
      i = i + 1
      local right = conj()
      if left.op == "or" then
        left.children[#left.children + 1] = right
      else
        left = { op = "or", children = { left, right } }
      end
    end
    return left
  end
  local tree = expr()
  if i <= #toks then fail("unexpected '" .. (toks[i].w or toks[i].t) .. "'") end
  return tree
end

------------------------------------------------------------------------------
-- Requirements
------------------------------------------------------------------------------
-- A list of clauses, each { field = path|false, exact = bool, values = { text } }: a record the
-- detection matches holds, for every clause, one of its values, ASCII case aside: exact, as the
-- whole value of field (a string, or the text of a number or boolean); else inside some value
-- of the record. Derived from positive items only (a not, a null, |exists, |fieldref, |neq
-- give nothing); an or keeps, per field, the union of both sides' exact clauses, and else one
-- clause of both sides' best.

local INDEXED = { eventName = 3, eventSource = 2 }

local function score(c)
  return (c.exact and (INDEXED[c.field] or 1) or 0) * 1000 - #c.values
end

local function best(clauses)
  local b
  for _, c in ipairs(clauses) do
    if not b or score(c) > score(b) then b = c end
  end
  return b
end

local function union(a, b, field, exact)
  local seen, values = {}, {}
  for _, list in ipairs({ a.values, b.values }) do
    for _, v in ipairs(list) do
      local k = lower(v)
      if not seen[k] then
        seen[k] = true
        values[#values + 1] = v
      end
    end
  end
  return { field = field, exact = exact, values = values }
end

local function either(l, r)
  if #l == 0 or #r == 0 then return {} end
  local out = {}
  for f in pairs(INDEXED) do
    local lb, rb
    for _, c in ipairs(l) do
      if c.exact and c.field == f and (not lb or #c.values < #lb.values) then lb = c end
    end
    for _, c in ipairs(r) do
      if c.exact and c.field == f and (not rb or #c.values < #rb.values) then rb = c end
    end
    if lb and rb then out[#out + 1] = union(lb, rb, f, true) end
  end
  if #out == 0 then out[1] = union(best(l), best(r), false, false) end
  table.sort(out, function(a, b) return tostring(a.field) < tostring(b.field) end)
  return out
end

-- What one value guarantees: its text (exact when without wildcards), or the longest run of
-- plain characters it holds, or nil.
local function literal(v)
  if v.kind == "string" then
    if not has_wildcards(v.parts) then return concat(v.parts), true end
    local longest
    for _, p in ipairs(v.parts) do
      if p ~= STAR and p ~= ONE and (not longest or #p > #longest) then longest = p end
    end
    return longest, false
  elseif v.kind == "re" and v.compiled then
    return v.compiled.literal, false
  end
  return nil
end

local function item_requirements(item)
  if item.negated then return {} end
  local function of(v)
    if v.kind == "expansion" then
      local vals = {}
      for _, e in ipairs(v.values) do
        local lit = literal(e)
        if not lit or lit == "" then return nil end
        vals[#vals + 1] = lit
      end
      return vals, false
    end
    local lit, exact = literal(v)
    if not lit or lit == "" then return nil end
    return { lit }, exact
  end
  local field = item.field or false
  if item.link == "and" then
    local out = {}
    for _, v in ipairs(item.values) do
      local vals, exact = of(v)
      if vals then out[#out + 1] = { field = field, exact = exact and field and true or false, values = vals } end
    end
    return out
  end
  local values, all_exact = {}, true
  for _, v in ipairs(item.values) do
    local vals, exact = of(v)
    if not vals then return {} end
    if not exact then all_exact = false end
    for _, x in ipairs(vals) do values[#values + 1] = x end
  end
  if #values == 0 then return {} end
  return { { field = field, exact = all_exact and field and true or false, values = values } }
end

local function node_requirements(node)
  if node.match then return item_requirements(node) end
  if node.kind == "and" then
    local out = {}
    for _, it in ipairs(node.items) do
      for _, c in ipairs(node_requirements(it)) do out[#out + 1] = c end
    end
    return out
  end
  local acc
  for _, it in ipairs(node.items) do
    local r = node_requirements(it)
    acc = acc and either(acc, r) or r
  end
  return acc or {}
end

local function condition_requirements(c, defs)
  if c.op == "id" then return node_requirements(defs[c.name]) end
  if c.op == "not" then return {} end
  local kids = c.children
  if c.op == "of" then
    kids = {}
    for i, name in ipairs(c.names) do kids[i] = { op = "id", name = name } end
  end
  if c.op == "and" or (c.op == "of" and c.quant == "all") then
    local out = {}
    for _, k in ipairs(kids) do
      for _, cl in ipairs(condition_requirements(k, defs)) do out[#out + 1] = cl end
    end
    return out
  end
  local acc
  for _, k in ipairs(kids) do
    local r = condition_requirements(k, defs)
    acc = acc and either(acc, r) or r
  end
  return acc or {}
end

------------------------------------------------------------------------------
-- Explaining
------------------------------------------------------------------------------
-- explain(rec) -> { op = "and"|"or"|"not"|"clause", text, value, ident, key, field, children }:
-- the condition's operators, then each search identifier (an and of its map's items, an or of
-- its list's), then the items (op "clause", text "eventName: 'DeleteBucket'").

local function explain_node(node, rec, ident)
  if node.match then
    return { op = "clause", text = node.text, value = node.match(rec), ident = ident, key = node.key,
             field = node.field }
  end
  local kids = {}
  local v = node.kind == "and"
  for i, it in ipairs(node.items) do
    kids[i] = explain_node(it, rec, ident)
    if node.kind == "and" then v = v and kids[i].value else v = v or kids[i].value end
  end
  return { op = node.kind, text = node.kind == "and" and "all of" or "one of", value = v, ident = ident,
           children = kids }
end

local function explain_condition(c, defs, rec)
  if c.op == "id" then
    local n = explain_node(defs[c.name], rec, c.name)
    if n.op == "clause" then
      return { op = "and", text = c.name, value = n.value, ident = c.name, children = { n } }
    end
    n.text = c.name .. (n.op == "or" and " (one of)" or "")
    return n
  end
  if c.op == "not" then
    local k = explain_condition(c.children[1], defs, rec)
    return { op = "not", text = "not", value = not k.value, children = { k } }
  end
  local kids, op = {}, c.op
  local src = c.children
  if c.op == "of" then
    op = c.quant == "all" and "and" or "or"
    src = {}
    for i, name in ipairs(c.names) do src[i] = { op = "id", name = name } end
  end
  local v = op == "and"
  for i, k in ipairs(src) do
    kids[i] = explain_condition(k, defs, rec)
    if op == "and" then v = v and kids[i].value else v = v or kids[i].value end
  end
  local text = op
  if c.op == "of" then text = (c.quant == "all" and "all of " or "1 of ") .. c.pattern end
  return { op = op, text = text, value = v, children = kids }
end

------------------------------------------------------------------------------
-- Compiling a detection
------------------------------------------------------------------------------

local function condition_fn(c, defs, memo)
  if c.op == "id" then
    local node, name = defs[c.name], c.name
    return function(rec)
      local v = memo[name]
      if v == nil then
        v = node_match(node, rec)
        memo[name] = v
      end
      return v
    end
  end
  if c.op == "not" then
    local f = condition_fn(c.children[1], defs, memo)
    return function(rec) return not f(rec) end
  end
  local fs, all = {}, c.op == "and"
  if c.op == "of" then
    all = c.quant == "all"
    for i, name in ipairs(c.names) do fs[i] = condition_fn({ op = "id", name = name }, defs, memo) end
  else
    for i, k in ipairs(c.children) do fs[i] = condition_fn(k, defs, memo) end
  end
  if all then
    return function(rec)
      for i = 1, #fs do
        if not fs[i](rec) then return false end
      end
      return true
    end
  end
  return function(rec)
    for i = 1, #fs do
      if fs[i](rec) then return true end
    end
    return false
  end
end

local function used_names(c, out)
  if c.op == "id" then out[c.name] = true
  elseif c.op == "of" then for _, n in ipairs(c.names) do out[n] = true end
  else for _, k in ipairs(c.children) do used_names(k, out) end end
  return out
end

local function collect_fields(node, out)
  if node.match then
    if node.field then out[node.field] = true end
    for _, v in ipairs(node.values) do
      if v.kind == "fieldref" then out[v.field] = true end
    end
    return
  end
  for _, it in ipairs(node.items) do collect_fields(it, out) end
end

function M.message(err)
  if type(err) ~= "table" then return tostring(err) end
  local where = {}
  if err.ident then
    where[#where + 1] = "detection." .. err.ident
    if err.key and err.key ~= "" then where[#where + 1] = err.key end
  elseif err.key then
    where[#where + 1] = "detection." .. err.key
  end
  if #where == 0 then return err.msg end
  return concat(where, ": ") .. ": " .. err.msg
end

function M.compile(detection)
  if type(detection) ~= "table" or detection == NULL or is_list(detection) then
    return nil, { msg = "sigma.detection must be a map of search identifiers and a condition" }
  end
  local cond = detection.condition
  if cond == nil then return nil, { msg = "sigma.detection has no condition" } end
  if detection.timeframe ~= nil then
    return nil, { msg = "detection.timeframe (an aggregation of old Sigma) is not supported; neither are " ..
      "Sigma's correlation rules", key = "timeframe" }
  end
  local idents, defs, warnings = {}, {}, {}
  for k in pairs(detection) do
    if k ~= "condition" then
      if type(k) ~= "string" then return nil, { msg = "a search identifier must be a name, not " .. tostring(k) } end
      if not k:find("^[%w_%-]+$") then
        return nil, { msg = format("'%s' is no search identifier name (letters, digits, _ and -)", k), ident = k }
      end
      idents[#idents + 1] = k
    end
  end
  table.sort(idents)
  if #idents == 0 then return nil, { msg = "sigma.detection has no search identifier" } end
  for _, name in ipairs(idents) do
    local ok, node = pcall(compile_definition, detection[name], warnings, name, 0)
    if not ok then
      if type(node) ~= "table" then error(node, 0) end
      node.ident = node.ident or name
      return nil, node
    end
    defs[name] = node
  end
  local conds = {}
  if type(cond) == "string" then
    conds = { cond }
  elseif is_list(cond) then
    for _, c in ipairs(cond) do
      if type(c) ~= "string" then return nil, { msg = "a condition must be text", key = "condition" } end
      conds[#conds + 1] = c
    end
  else
    return nil, { msg = "detection.condition must be text or a list of texts", key = "condition" }
  end
  if cond and (type(cond) == "string" and cond:find("|", 1, true)) then
    return nil, { msg = "the condition's | (aggregation) syntax is deprecated and not supported; neither are " ..
      "Sigma's correlation rules", key = "condition" }
  end
  local known = {}
  for _, n in ipairs(idents) do known[n] = true end
  local trees = {}
  for i, c in ipairs(conds) do
    local ok, tree = pcall(parse_condition, c, idents, known)
    if not ok then
      if type(tree) ~= "table" then error(tree, 0) end
      tree.key = "condition"
      return nil, tree
    end
    trees[i] = tree
  end
  local tree = #trees == 1 and trees[1] or { op = "or", children = trees }
  local used = used_names(tree, {})
  for _, n in ipairs(idents) do
    if not used[n] then
      warnings[#warnings + 1] = { ident = n, msg = format("detection.%s is not used by the condition", n) }
    end
  end
  local memo = {}
  local fn = condition_fn(tree, defs, memo)
  local fields = {}
  for _, n in ipairs(idents) do collect_fields(defs[n], fields) end
  local list = {}
  for f in pairs(fields) do list[#list + 1] = f end
  table.sort(list)
  return {
    match = function(rec)
      for k in pairs(memo) do memo[k] = nil end
      return fn(rec)
    end,
    explain = function(rec) return explain_condition(tree, defs, rec) end,
    fields = list,
    requirements = condition_requirements(tree, defs),
    warnings = warnings,
    identifiers = idents,
    defs = defs,
    tree = tree,
  }
end

------------------------------------------------------------------------------
-- Where things are in a rule file
------------------------------------------------------------------------------

-- The position in src of a table key written `name =` or `["name"] =` (or with single
-- quotes), at or after position from; nil when not found.
function M.key_pos(src, name, from)
  local found
  local plain = name:find("^[%a_][%w_]*$") and ("[\n{,%s]" .. name .. "%s*=") or nil
  local function try(pat, is_plain)
    local s = src:find(pat, from or 1, is_plain)
    if s and (not found or s < found) then found = s end
  end
  if plain then try(plain, false) end
  try('["' .. name .. '"]', true)
  try("['" .. name .. "']", true)
  return found
end

function M.line_at(src, pos)
  local _, n = src:sub(1, pos - 1):gsub("\n", "")
  return n + 1
end

-- Line in src of a key of the sigma table (level, detection, ...), else of `sigma =`.
function M.locate_key(src, key)
  if type(src) ~= "string" then return 1 end
  local at = M.key_pos(src, "sigma")
  if not at then return 1 end
  local p = key and key ~= "sigma" and M.key_pos(src, key, at) or at
  if src:sub(p, p) == "\n" then p = p + 1 end
  return M.line_at(src, p)
end

-- Line in src of what an error or warning names: the search identifier, then its key, after
-- `detection`; else of `sigma =`; 1 when not found.
function M.locate(src, where)
  if type(src) ~= "string" then return 1 end
  local at = M.key_pos(src, "sigma") or 1
  local det = M.key_pos(src, "detection", at)
  if not det then return M.line_at(src, at) end
  at = det
  if where and where.ident then
    local p = M.key_pos(src, where.ident, at)
    if p then at = p end
  end
  if where and where.key and where.key ~= "" then
    local p = M.key_pos(src, where.key, at)
    if p then at = p end
  end
  -- a key found at the start of its line: that line (key_pos matches the character before it)
  if src:sub(at, at) == "\n" then at = at + 1 end
  return M.line_at(src, at)
end

return M
