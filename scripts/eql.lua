-- eql.lua: a compiler for Event Query Language (EQL) as Elasticsearch runs it, the "eql"
-- language of Elastic's detection rules (type = "eql").
--
--   local q, err = eql.compile(source, { chunkname = "rules/x.lua", line = 12, col = 3,
--                                        category_field = "event.category" })
--   err           "chunk:line:col: message", the place in the rule file
--   q.kind        "event" (category where condition) or "sequence"
--   q.fields      sorted list of the distinct fields the query reads (by-fields included)
--   q.ast         the tree (see "The tree" below)
-- An event query, which a rule runs like a KQL query:
--   q.match(get)    -> boolean; get(name) returns the event's value of a dotted field
--   q.category      the event category it asks for, or nil for `any`
--   q.explain(get)  -> display tree, as explain.lua shows one: nodes { op = "and"|"or"|"not",
--                      children } and leaves { op = "clause", text (as written), field, value,
--                      line, col }, every node with value = true|false
-- A sequence (which needs state the worker does not keep: see loader.lua):
--   q.sequence = {
--     maxspan = seconds (a number, 0.5 for 500ms) or nil,
--     by      = { "f1", ... }        the join keys of `sequence by`, shared by every step
--     steps   = { step, ... }        in order; `with runs=n` is n copies of its step
--     ["until"] = step or nil        the expiry step
--   }
--   step = {
--     match(get) -> boolean          the step's condition (category included)
--     by = { "f1", "f2", ... }       all its join keys: the shared ones first, then its own
--     optional = { [i] = true }      keys written ?field: a missing value is a key (null)
--     keys(get) -> { v1, v2, ... } | nil   the key values of an event (each a string, number
--                                    or boolean, the first element of an array; false for a
--                                    missing optional key); nil when a required key is missing
--     missing = true                 a `![...]` step: an event that must not happen
--     category, ast, fields, requirements (as eql.requirements gives them, for this step)
--   }
--
-- Syntax: Elasticsearch's EQL (EqlBase.g4, the syntax reference):
--   category where condition     category: a name, a "quoted name", or `any` (every event,
--                                those without a category too); the category is a value of
--                                opts.category_field (the rule's event_category_override)
--   a == b   a != b               equality, case-sensitive; no wildcards
--   a : "x"  a : ("x", "y*")     case-insensitive; * and ? wildcards (\ escapes one); only
--                                strings: the same as like~
--   a < b, <=, >, >=             numbers by value, strings by their bytes (case-sensitive)
--   a in (..), a in~ (..),       a list of constants; in~ ignores case; `not in` negates
--   a not in (..), a not in~ (..)
--   a like "p", like~, like (..) wildcard patterns (* any run, ? one character, \ escapes)
--   a regex "r", regex~, (..)    regular expressions (regex.lua's syntax) matching the whole
--                                value, as Lucene's do; . matches a newline too; regex~ folds
--                                ASCII letters
--   and, or, not, ( )            not binds tighter than and, and tighter than or
--   + - * / %                    arithmetic on numbers (an integer division truncates)
--   "text"                       escapes \n \r \t \b \f \\ \" \' \u{XXXX} (2 to 8 hex digits);
--   """raw text"""               no escapes inside
--   field.name, `odd name`, ?field   a backquoted name (`` is a backquote inside); ?field is
--                                an optional field: here every field may be missing, so the
--                                ? is kept in the tree and changes nothing else
--   null, true, false, 12, 1.5e3 constants
--   name(args), name~(args)      functions: add between~ cidrMatch concat divide endsWith~
--                                indexOf~ length modulo multiply number startsWith~ string
--                                stringContains~ substring subtract (~: ignore case)
--   /* comment */, // comment
--   sequence [by k, ...] [with maxspan=5m] [q] [by k, ...] [with runs=n] ... [until [q]]
--                                maxspan units: ms, s, m, h, d; ![q] a missing event
-- Refused, as Elasticsearch refuses them: comparing a field to a field (`a == b`, also through
-- functions), `=`, single quotes, chained comparisons; and, not run here: pipes (| head),
-- `sample` and `join` queries, array indexes in field names.
--
-- Matching, as Elasticsearch runs the query (its query DSL, where most of it goes):
--   An array field holds when any element does (a == "x" for ["y", "x"]); an object is no
--   value. A missing field (or JSON null, or an empty array) makes a comparison, a pattern
--   and a function false, so `not` of one holds (not a == "x" matches an event without a;
--   a != "x" is not a == "x"); a == null and a != null test presence.
--   == compares a number with the number a string names ("200" == 200) and a boolean with
--   its text; on an ECS ip field, addresses (2001:0db8::1 == 2001:db8::1).
--   Case-insensitive (:, in~, like~, name~): letters of ASCII, Latin-1, Latin Extended-A,
--   Greek and Cyrillic compared in lower case.
--   stringContains(field, "x") with a constant is Elasticsearch's wildcard query *x*: in
--   "x", * and ? are wildcards and \ escapes (rules rely on it: "Principal=\\*" is the text
--   Principal=*); with anything else, and as stringContains~, it is a plain substring.
--   Functions follow the function reference (null in, null out; positions count characters).
--
-- The tree: every node has op, line, col and s, e (its bytes in source).
--   { op = "event", category = , children = { condition } }    (category nil: any)
--   { op = "sequence", by = , maxspan = , children = { step... } }, steps { op = "step", ... }
--   { op = "and"|"or"|"not", children }
--   { op = "compare", operator = "=="|"!="|"<"|"<="|">"|">=", children = { a, b } }
--   { op = "lookup", operator = "in"|"in~"|":"|"like"|"like~"|"regex"|"regex~",
--     children = { value, constant... } }
--   { op = "call", name = , insensitive = bool, children = { arg... } }
--   { op = "arith", operator = "+"|"-"|"*"|"/"|"%", children = { a, b } }, { op = "neg", ... }
--   { op = "field", path = "a.b", optional = bool }
--   { op = "constant", value = (nil for null), vtype = "string"|"number"|"boolean"|"null" }

local fieldtypes = require "fieldtypes"
local kql = require "kql"
local regex = require "regex"

local M = {}

local byte, sub, find, format, lower = string.byte, string.sub, string.find, string.format, string.lower
local concat, sort = table.concat, table.sort
local mtype, tointeger = math.type, math.tointeger
local type, tonumber, ipairs, pairs = type, tonumber, ipairs, pairs

------------------------------------------------------------------------------
-- Values
------------------------------------------------------------------------------

local function numeric(s)
  if find(s, "^%s*[%+%-]?%d+%.?%d*%s*$") or find(s, "^%s*[%+%-]?%d*%.?%d+[eE][%+%-]?%d+%s*$")
      or find(s, "^%s*[%+%-]?%.%d+%s*$") then
    return tonumber(s)
  end
  return nil
end

-- The scalars of a value (strings, numbers, booleans; arrays flattened): calls fn on each
-- until it returns true. JSON null, objects and functions are no value.
local function any(v, fn)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return fn(v) end
  if t ~= "table" then return false end
  for i = 1, #v do
    if any(v[i], fn) then return true end
  end
  return false
end

local function is_scalar(x)
  local t = type(x)
  return t == "string" or t == "number" or t == "boolean"
end

-- Missing: nil, JSON null, or no scalar at all (an empty array); an object is present.
local function present(v)
  if is_scalar(v) then return true end
  if type(v) ~= "table" then return false end
  if v[1] == nil then return next(v) ~= nil end
  return any(v, function() return true end)
end

-- The text of a scalar, as string() and concat() give it.
local function text_of(x)
  local t = type(x)
  if t == "string" then return x end
  if t == "boolean" then return x and "true" or "false" end
  if t == "number" then
    if mtype(x) == "integer" then return format("%d", x) end
    local i = tointeger(x)
    if i then return format("%d.0", i) end
    for digits = 15, 17 do
      local shown = format("%." .. digits .. "g", x)
      if tonumber(shown) == x then return shown end
    end
    return format("%.17g", x)
  end
  return nil
end

-- Lower case of one code point, for the letters this compiler folds (see the head).
local function fold_cp(c)
  if c < 128 then
    if c >= 65 and c <= 90 then return c + 32 end
    return c
  end
  if c >= 0xC0 and c <= 0xDE and c ~= 0xD7 then return c + 32 end
  if c >= 0x100 and c <= 0x17F then
    if c == 0x178 then return 0xFF end
    if (c <= 0x137 or (c >= 0x14A and c <= 0x177)) and c % 2 == 0 then return c + 1 end
    if ((c >= 0x139 and c <= 0x148) or (c >= 0x179 and c <= 0x17E)) and c % 2 == 1 then return c + 1 end
    return c
  end
  if c >= 0x391 and c <= 0x3AB and c ~= 0x3A2 then return c + 32 end
  if c >= 0x410 and c <= 0x42F then return c + 32 end
  if c >= 0x400 and c <= 0x40F then return c + 80 end
  return c
end

local function fold(s)
  if not find(s, "[\128-\255]") then return lower(s) end
  local ok, out = pcall(function()
    local t = {}
    for _, c in utf8.codes(s) do t[#t + 1] = utf8.char(fold_cp(c)) end
    return concat(t)
  end)
  if ok then return out end
  return lower(s)   -- not UTF-8: its ASCII letters
end
M.fold = fold

-- Characters of s (code points), or its bytes when it is not UTF-8.
local function chars(s)
  local t = {}
  if not find(s, "[\128-\255]") or not utf8.len(s) then
    for i = 1, #s do t[i] = sub(s, i, i) end
    return t
  end
  for _, c in utf8.codes(s) do t[#t + 1] = utf8.char(c) end
  return t
end

-- == of two scalars (case-sensitive).
local function equal(x, y)
  if x == y then return true end
  local tx, ty = type(x), type(y)
  if tx == "number" and ty == "string" then return numeric(y) == x end
  if tx == "string" and ty == "number" then return numeric(x) == y end
  if tx == "boolean" and ty == "string" then return (x and "true" or "false") == y end
  if tx == "string" and ty == "boolean" then return x == (y and "true" or "false") end
  return false
end

-- a < b and friends on two scalars: numbers by value, strings by their bytes.
local ORDER = {
  ["<"] = function(c) return c < 0 end, ["<="] = function(c) return c <= 0 end,
  [">"] = function(c) return c > 0 end, [">="] = function(c) return c >= 0 end,
}
local function order(x, y)
  local tx, ty = type(x), type(y)
  if tx == "string" and ty == "number" then x, tx = numeric(x), "number" end
  if tx == "number" and ty == "string" then y, ty = numeric(y), "number" end
  if x == nil or y == nil or tx ~= ty or tx == "boolean" then return nil end
  if x == y then return 0 end
  return x < y and -1 or 1
end

------------------------------------------------------------------------------
-- Wildcard patterns (Lucene's: * any run, ? one character, \ escapes the next)
------------------------------------------------------------------------------

local ONE_CHAR = "[\0-\127\194-\244][\128-\191]*"

local function escape_lua(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- The pattern's segments between its *s: each { pat = Lua pattern, plain = its text when it
-- has no ?, runs = { literal texts between ?s } }.
local function wildcard_segments(p, insensitive)
  local segs, pats, runs, run, plain = {}, {}, {}, {}, true
  local function close_run()
    local r = concat(run)
    runs[#runs + 1] = r
    run = {}
  end
  local function close_seg()
    close_run()
    local text = nil
    if plain then text = runs[1] end
    segs[#segs + 1] = { pat = concat(pats), plain = text, runs = runs }
    pats, runs, plain = {}, {}, true
  end
  local i, n = 1, #p
  while i <= n do
    local c = byte(p, i)
    if c == 42 then            -- *
      close_seg()
      i = i + 1
    elseif c == 63 then        -- ?
      close_run()
      pats[#pats + 1] = ONE_CHAR
      plain = false
      i = i + 1
    else
      if c == 92 and i < n then i = i + 1 end   -- \x: x itself
      local ch = p:match("^" .. utf8.charpattern, i) or sub(p, i, i)
      if insensitive then ch = fold(ch) end
      pats[#pats + 1] = escape_lua(ch)
      run[#run + 1] = ch
      i = i + #ch
    end
  end
  close_seg()
  return segs
end

-- A matcher of whole strings for a wildcard pattern: the first segment at the start, the
-- last at the end, the middle ones leftmost in between (no backtracking: linear for
-- segments without ?).
local function wildcard(p, insensitive)
  local segs = wildcard_segments(p, insensitive)
  local k = #segs
  local first, last = segs[1], segs[k]
  local whole = k == 1 and ("^" .. first.pat .. "$")
  local head, tail = "^" .. first.pat, last.pat .. "$"
  local function test(s)
    if whole then
      if first.plain then return s == first.plain end
      return find(s, whole) ~= nil
    end
    local pos
    if first.plain then
      if sub(s, 1, #first.plain) ~= first.plain then return false end
      pos = #first.plain + 1
    else
      local _, e = find(s, head)
      if not e then return false end
      pos = e + 1
    end
    for i = 2, k - 1 do
      local seg = segs[i]
      if seg.plain ~= "" then
        local _, e
        if seg.plain then _, e = find(s, seg.plain, pos, true) else _, e = find(s, seg.pat, pos) end
        if not e then return false end
        pos = e + 1
      end
    end
    if last.plain == "" then return true end
    if last.plain then return #s - #last.plain + 1 >= pos and sub(s, -#last.plain) == last.plain end
    return find(s, tail, pos) ~= nil
  end
  if insensitive then
    return function(s) return type(s) == "string" and test(fold(s)) end, segs
  end
  return function(s) return type(s) == "string" and test(s) end, segs
end
M.wildcard = function(p, insensitive) return (wildcard(p, insensitive)) end

-- The longest literal run every match of the pattern holds that no number's text could hold
-- (the prefilter reads a record's text; 1e2 is 100); ASCII only when folded. Or nil.
local function best_run(runs, folded)
  local best
  for _, r in ipairs(runs) do
    local pieces = folded and {} or { r }
    if folded then for piece in r:gmatch("[\1-\127]+") do pieces[#pieces + 1] = piece end end
    for _, piece in ipairs(pieces) do
      if find(piece, "[^%d%.eE%+%-]") and (best == nil or #piece > #best) then best = piece end
    end
  end
  return best
end

local function wildcard_need(p, insensitive)
  local _, segs = wildcard(p, insensitive)
  local runs = {}
  for _, seg in ipairs(segs) do
    for _, r in ipairs(seg.runs) do runs[#runs + 1] = r end
  end
  return best_run(runs, insensitive)
end

------------------------------------------------------------------------------
-- Lexer
------------------------------------------------------------------------------

local KEYWORDS = {}
local WORDS = "and or not in like regex where any sequence sample join by with until maxspan true false null of"
for w in WORDS:gmatch("%S+") do
  KEYWORDS[w] = true
end
local PUNCT = { "==", "!=", "<=", ">=", "<", ">", ":", "(", ")", "[", "]", ",", ".", "?", "+", "-", "*", "/",
  "%", "|", "=", "!", "~" }
local ESC = { n = "\n", r = "\r", t = "\t", b = "\b", f = "\f", ["\\"] = "\\", ['"'] = '"', ["'"] = "'" }

local function lex(src, fail)
  local toks, i, n = {}, 1, #src
  local function push(t, v, s, e, extra)
    local tok = { t = t, v = v, s = s, e = e }
    if extra then for k, x in pairs(extra) do tok[k] = x end end
    toks[#toks + 1] = tok
  end
  while true do
    -- whitespace and comments
    while i <= n do
      local c = byte(src, i)
      if c == 32 or c == 9 or c == 10 or c == 13 or c == 12 then
        i = i + 1
      elseif sub(src, i, i + 1) == "//" then
        local nl = find(src, "\n", i, true)
        i = nl and nl + 1 or n + 1
      elseif sub(src, i, i + 1) == "/*" then
        local _, e = find(src, "*/", i + 2, true)
        if not e then fail(i, "a comment that starts here is not closed (*/)") end
        i = e + 1
      else
        break
      end
    end
    if i > n then break end
    local c = sub(src, i, i)
    if sub(src, i, i + 2) == '"""' then
      local s2 = find(src, '"""', i + 3, true)
      if not s2 then fail(i, "the raw string that starts here is not closed (\"\"\")") end
      push("string", sub(src, i + 3, s2 - 1), i, s2 + 2)
      i = s2 + 3
    elseif c == '"' then
      local buf, j = {}, i + 1
      while true do
        local a = find(src, '["\\\n\r]', j)
        if not a then fail(i, "the string that starts here is not closed") end
        buf[#buf + 1] = sub(src, j, a - 1)
        local d = sub(src, a, a)
        if d == '"' then
          j = a + 1
          break
        elseif d == "\n" or d == "\r" then
          fail(i, "the string that starts here is not closed on its line (write \\n for a newline)")
        end
        local x = sub(src, a + 1, a + 1)
        if ESC[x] then
          buf[#buf + 1] = ESC[x]
          j = a + 2
        elseif x == "u" then
          local hex, close = src:match("^{(%x+)}()", a + 2)
          if not hex or #hex < 2 or #hex > 8 then
            fail(a, "a \\u escape is \\u{XXXX}: 2 to 8 hexadecimal digits in braces")
          end
          local cp = tonumber(hex, 16)
          if cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then fail(a, "\\u{%s} is not a character", hex) end
          buf[#buf + 1] = utf8.char(cp)
          j = close
        else
          fail(a, "unknown escape \\%s in a string (\\n \\r \\t \\b \\f \\\\ \\\" \\' \\u{XXXX}; a raw "
            .. "string \"\"\"...\"\"\" takes none)", x == "" and "at the end" or x)
        end
      end
      push("string", concat(buf), i, j - 1)
      i = j
    elseif c == "'" then
      fail(i, "single quotes are not supported in EQL: enclose strings in double quotes (\")")
    elseif c == "`" then
      local buf, j = {}, i + 1
      while true do
        local a = find(src, "`", j, true)
        if not a then fail(i, "the backquoted field name that starts here is not closed") end
        buf[#buf + 1] = sub(src, j, a - 1)
        if sub(src, a + 1, a + 1) == "`" then
          buf[#buf + 1] = "`"
          j = a + 2
        else
          j = a + 1
          break
        end
      end
      if #buf == 1 and buf[1] == "" then fail(i, "an empty field name") end
      push("name", concat(buf), i, j - 1, { quoted = true })
      i = j
    elseif find(c, "%d") or (c == "." and find(src, "^%.%d", i)) then
      local s, e = find(src, "^%d*%.?%d*", i)
      local _, e2 = find(src, "^[eE][%+%-]?%d+", e + 1)
      e = e2 or e
      if find(src, "^[%a_@]", e + 1) then
        local _, ue = find(src, "^[%w_@]+", e + 1)
        push("number", sub(src, s, e), s, e, { unit = sub(src, e + 1, ue), ue = ue })
        i = ue + 1
      else
        push("number", sub(src, s, e), s, e)
        i = e + 1
      end
    elseif find(c, "[%a_@]") then
      local s, e = find(src, "^[%a_@][%w_@]*", i)
      local word = sub(src, s, e)
      local tilde = sub(src, e + 1, e + 1) == "~"
      push("name", word, s, tilde and e + 1 or e, { tilde = tilde })
      i = (tilde and e + 1 or e) + 1
    else
      local op
      for _, p in ipairs(PUNCT) do
        if sub(src, i, i + #p - 1) == p then op = p break end
      end
      if not op then
        local ch = src:match("^" .. utf8.charpattern, i) or c
        fail(i, "unexpected character '%s'", ch)
      end
      push("op", op, i, i + #op - 1)
      i = i + #op
    end
  end
  push("eof", nil, n + 1, n + 1)
  return toks
end

------------------------------------------------------------------------------
-- Parser
------------------------------------------------------------------------------

local FUNCTIONS = {   -- name -> minimum and maximum arguments (-1: any), whether ~ applies
  add = { 2, 2 }, between = { 3, 4, true }, cidrMatch = { 2, -1 }, concat = { 1, -1 },
  divide = { 2, 2 }, endsWith = { 2, 2, true }, indexOf = { 2, 3, true }, length = { 1, 1 },
  modulo = { 2, 2 }, multiply = { 2, 2 }, number = { 1, 2 }, startsWith = { 2, 2, true },
  string = { 1, 1 }, stringContains = { 2, 2, true }, substring = { 2, 3 }, subtract = { 2, 2 },
}
local FUNCTION_NAMES = {}
for name in pairs(FUNCTIONS) do FUNCTION_NAMES[#FUNCTION_NAMES + 1] = name end
sort(FUNCTION_NAMES)

local NO_ASSIGN = "'=' is not an operator in EQL: use == (case-sensitive) or : (case-insensitive)"
local UNITS = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400 }

local function parse(src, opts)
  local chunk = opts.chunkname or "query"
  local line0, col0 = opts.line or 1, opts.col or 1
  local starts = { 1 }
  for p in src:gmatch("()\n") do starts[#starts + 1] = p + 1 end

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
  local function fail(p, msg, ...)
    local l, c = where(p)
    error({ eql = format("%s:%d:%d: ", chunk, l, c) .. format(msg, ...) }, 0)
  end

  local toks = lex(src, fail)
  local k = 1
  local function peek(o) return toks[k + (o or 0)] end
  local function node(op, s, e, fields)
    local l, c = where(s)
    local nd = fields or {}
    nd.op, nd.s, nd.e, nd.line, nd.col = op, s, e, l, c
    return nd
  end
  local function describe(tok)
    if tok.t == "eof" then return "the end of the query" end
    if tok.t == "string" then return "a string" end
    return "'" .. sub(src, tok.s, tok.e) .. "'"
  end
  local function is_word(tok, w) return tok.t == "name" and not tok.quoted and not tok.tilde and tok.v == w end
  local function is_op(tok, o) return tok.t == "op" and tok.v == o end
  local function expect_op(o, what)
    local tok = peek()
    if not is_op(tok, o) then fail(tok.s, "expected '%s'%s, found %s", o, what or "", describe(tok)) end
    k = k + 1
    return tok
  end
  local function expect_word(w, what)
    local tok = peek()
    if not is_word(tok, w) then fail(tok.s, "expected '%s'%s, found %s", w, what or "", describe(tok)) end
    k = k + 1
    return tok
  end

  local expression

  -- field: [?] name (. name)*
  local function field()
    local tok = peek()
    local s, optional = tok.s, false
    if is_op(tok, "?") then
      optional = true
      k = k + 1
      tok = peek()
    end
    if tok.t ~= "name" or tok.tilde or (not tok.quoted and KEYWORDS[tok.v]) then
      fail(tok.s, "expected a field name, found %s", describe(tok))
    end
    k = k + 1
    local parts, e = { tok.v }, tok.e
    while is_op(peek(), ".") do
      local nxt = peek(1)
      if nxt.t ~= "name" or nxt.tilde or nxt.s ~= peek().e + 1 then
        fail(peek().s, "expected a field name after '.', found %s", describe(nxt))
      end
      parts[#parts + 1] = nxt.v
      e = nxt.e
      k = k + 2
    end
    if is_op(peek(), "[") and peek().s == e + 1 then
      fail(peek().s, "array indexes in field names are not supported here: the field's array is compared "
        .. "element by element (a comparison holds when one element does)")
    end
    return node("field", s, e, { path = concat(parts, "."), optional = optional })
  end

  local function constant_of(tok)
    if tok.t == "string" then return node("constant", tok.s, tok.e, { value = tok.v, vtype = "string" }) end
    if tok.t == "number" then
      if tok.unit then fail(tok.e + 1, "unexpected '%s' after a number", tok.unit) end
      local v = tonumber(tok.v)
      if not v then fail(tok.s, "'%s' is not a number", tok.v) end
      if find(tok.v, "^%d+$") then v = tointeger(v) or v end
      return node("constant", tok.s, tok.e, { value = v, vtype = "number" })
    end
    if is_word(tok, "true") or is_word(tok, "false") then
      return node("constant", tok.s, tok.e, { value = tok.v == "true", vtype = "boolean" })
    end
    if is_word(tok, "null") then return node("constant", tok.s, tok.e, { vtype = "null" }) end
    return nil
  end

  -- primary: constant | function call | field | ( expression )
  local function primary()
    local tok = peek()
    local c = constant_of(tok)
    if c then
      k = k + 1
      return c
    end
    if is_op(tok, "(") then
      k = k + 1
      local inner = expression()
      local close = expect_op(")", " to close the '(' at " .. table.concat({ where(tok.s) }, ":"))
      inner.s, inner.e = tok.s, close.e
      inner.paren = true
      return inner
    end
    if tok.t == "name" and not tok.quoted and not KEYWORDS[tok.v] and is_op(peek(1), "(") then
      local name = tok.v
      local spec = FUNCTIONS[name]
      if not spec then
        fail(tok.s, "unknown function '%s' (EQL's are: %s)", name, concat(FUNCTION_NAMES, ", "))
      end
      if tok.tilde and not spec[3] then
        fail(tok.s, "%s has no case-insensitive form (~ applies to between, endsWith, indexOf, startsWith "
          .. "and stringContains)", name)
      end
      k = k + 2
      local args = {}
      if not is_op(peek(), ")") then
        repeat
          if #args > 0 then k = k + 1 end
          args[#args + 1] = expression()
        until not is_op(peek(), ",")
      end
      local close = expect_op(")", " or ',' in the arguments of " .. name)
      if #args < spec[1] or (spec[2] >= 0 and #args > spec[2]) then
        local want = spec[2] < 0 and format("at least %d", spec[1])
          or spec[1] == spec[2] and format("%d", spec[1]) or format("%d to %d", spec[1], spec[2])
        fail(tok.s, "%s takes %s argument%s, not %d", name, want, want == "1" and "" or "s", #args)
      end
      return node("call", tok.s, close.e, { name = name, insensitive = tok.tilde, children = args })
    end
    if tok.t == "name" and tok.tilde then fail(tok.s, "unexpected '%s'", sub(src, tok.s, tok.e)) end
    if (tok.t == "name" and (tok.quoted or not KEYWORDS[tok.v])) or is_op(tok, "?") then return field() end
    if is_op(tok, "=") then fail(tok.s, NO_ASSIGN) end
    fail(tok.s, "expected a value (a field, a string, a number, a function), found %s", describe(tok))
  end

  -- unary: (- | +) unary | primary
  local function unary()
    local tok = peek()
    if is_op(tok, "-") or is_op(tok, "+") then
      k = k + 1
      local x = unary()
      if x.op == "constant" and x.vtype == "number" then
        if tok.v == "-" then x.value = -x.value end
        x.s = tok.s
        local l, c = where(tok.s)
        x.line, x.col = l, c
        return x
      end
      if tok.v == "+" then return x end
      return node("neg", tok.s, x.e, { children = { x } })
    end
    return primary()
  end

  local function binary(operand, ops)
    return function()
      local left = operand()
      while true do
        local tok = peek()
        if tok.t ~= "op" or not ops[tok.v] then return left end
        k = k + 1
        local right = operand()
        left = node("arith", left.s, right.e, { operator = tok.v, children = { left, right } })
        left.line, left.col = left.children[1].line, left.children[1].col
      end
    end
  end
  local product = binary(unary, { ["*"] = true, ["/"] = true, ["%"] = true })
  local sum = binary(product, { ["+"] = true, ["-"] = true })

  local CMP = { ["=="] = true, ["!="] = true, ["<"] = true, ["<="] = true, [">"] = true, [">="] = true }

  local function constants(what)
    local list = {}
    local open = peek()
    if is_op(open, "(") then
      k = k + 1
      repeat
        if #list > 0 then k = k + 1 end
        local tok = peek()
        local sign = 1
        if is_op(tok, "-") and peek(1).t == "number" then
          sign = -1
          k = k + 1
          tok = peek()
        end
        local c = constant_of(tok)
        if not c then fail(tok.s, "the values of %s must be constants (strings, numbers, true, false, null), "
          .. "found %s", what, describe(tok)) end
        if sign < 0 then c.value, c.s = -c.value, tok.s - 1 end
        k = k + 1
        list[#list + 1] = c
      until not is_op(peek(), ",")
      expect_op(")", " or ',' in the list of " .. what)
    else
      local c = constant_of(open)
      if not c then fail(open.s, "expected a constant or a list ( ... ) after %s, found %s", what, describe(open)) end
      k = k + 1
      list[1] = c
    end
    return list
  end

  local function has_field(nd)
    if nd.op == "field" then return true end
    for _, c in ipairs(nd.children or {}) do
      if has_field(c) then return true end
    end
    return false
  end

  -- predicated: sum [comparison sum | [not] in[~] (...) | : | like | regex ...]
  local function predicated()
    local left = sum()
    local tok = peek()
    if tok.t == "op" and CMP[tok.v] then
      k = k + 1
      local right = sum()
      local nxt = peek()
      if nxt.t == "op" and (CMP[nxt.v] or nxt.v == ":") then
        fail(nxt.s, "comparisons cannot be chained: write a < b and b <= c")
      end
      if has_field(left) and has_field(right) then
        fail(tok.s, "a field cannot be compared to another field in EQL (not even through a function): "
          .. "compare each to a constant")
      end
      local nd = node("compare", left.s, right.e, { operator = tok.v, children = { left, right } })
      nd.line, nd.col = left.line, left.col
      return nd
    end
    local negated = false
    if is_word(tok, "not") and peek(1).t == "name" and (peek(1).v == "in") then
      negated = true
      k = k + 1
      tok = peek()
    end
    local kind
    if tok.t == "op" and tok.v == ":" then
      kind = ":"
    elseif tok.t == "name" and not tok.quoted and (tok.v == "in" or tok.v == "like" or tok.v == "regex") then
      kind = tok.v .. (tok.tilde and "~" or "")
    end
    if not kind then
      if negated then fail(tok.s, "expected 'in' after 'not'") end
      if is_op(tok, "=") then fail(tok.s, NO_ASSIGN) end
      return left
    end
    k = k + 1
    if (kind == "in" or kind == "in~") and not is_op(peek(), "(") then
      fail(peek().s, "expected '(' after %s: a list of values", kind)
    end
    local list = constants(kind)
    if kind ~= "in" and kind ~= "in~" then
      for _, c in ipairs(list) do
        if c.vtype ~= "string" and kind ~= ":" then fail(c.s, "%s compares strings: this pattern is not one", kind) end
      end
    end
    local children = { left }
    for _, c in ipairs(list) do children[#children + 1] = c end
    local nd = node("lookup", left.s, list[#list].e, { operator = kind, children = children })
    if is_op(peek(-1), ")") then nd.e = peek(-1).e end
    nd.line, nd.col = left.line, left.col
    if negated then
      nd = node("not", nd.s, nd.e, { children = { nd }, written = "not in" })
      nd.line, nd.col = left.line, left.col
    end
    return nd
  end

  -- not binds tighter than and, and tighter than or
  local function notexpr()
    local tok = peek()
    if is_word(tok, "not") then
      k = k + 1
      local x = notexpr()
      return node("not", tok.s, x.e, { children = { x } })
    end
    return predicated()
  end
  local function chain(op, operand)
    return function()
      local first = operand()
      local list
      while is_word(peek(), op) do
        k = k + 1
        list = list or { first }
        list[#list + 1] = operand()
      end
      if not list then return first end
      local nd = node(op, first.s, list[#list].e, { children = list })
      nd.line, nd.col = first.line, first.col
      return nd
    end
  end
  local conj = chain("and", notexpr)
  expression = chain("or", conj)

  -- category where condition
  local function event_query()
    local tok = peek()
    local category
    if is_word(tok, "any") then
      k = k + 1
    elseif tok.t == "string" or (tok.t == "name" and not tok.tilde and (tok.quoted or not KEYWORDS[tok.v])) then
      category = tok.v
      k = k + 1
    else
      fail(tok.s, "expected an event category (a name, a \"quoted name\" or any), found %s", describe(tok))
    end
    expect_word("where", " after the event category")
    local cond = expression()
    local nd = node("event", tok.s, cond.e, { category = category, category_s = tok.s, category_e = tok.e,
      children = { cond } })
    return nd
  end

  local function join_keys()
    local keys = {}
    repeat
      if #keys > 0 then k = k + 1 end
      local tok = peek()
      if not (tok.t == "name" or is_op(tok, "?")) then
        fail(tok.s, "expected a field name (a join key), found %s", describe(tok))
      end
      local f = field()
      keys[#keys + 1] = f
    until not is_op(peek(), ",")
    return keys
  end

  local function duration()
    local tok = peek()
    if tok.t ~= "number" then fail(tok.s, "expected a duration (like 5m) after maxspan=, found %s", describe(tok)) end
    k = k + 1
    local unit = tok.unit
    if not unit and peek().t == "name" and UNITS[peek().v] then
      unit = peek().v
      k = k + 1
    end
    if not unit then fail(tok.e + 1, "maxspan needs a time unit: ms, s, m, h or d (as in 5m)") end
    if not UNITS[unit] then fail(tok.e + 1, "unknown time unit '%s' (ms, s, m, h or d)", unit) end
    local n = tonumber(tok.v)
    if not n or n <= 0 then fail(tok.s, "maxspan must be more than 0") end
    return n * UNITS[unit]
  end

  -- [ category where condition ] [by keys] [with runs=n]
  local function step(shared)
    local tok = peek()
    local missing = false
    if is_op(tok, "!") then
      missing = true
      k = k + 1
      tok = peek()
    end
    if not is_op(tok, "[") then fail(tok.s, "expected '[' to open a step of the sequence, found %s", describe(tok)) end
    k = k + 1
    local q = event_query()
    local close = expect_op("]", " to close the step that opens at " .. concat({ where(tok.s) }, ":"))
    local own = {}
    if is_word(peek(), "by") then
      k = k + 1
      own = join_keys()
    end
    local runs = 1
    if is_word(peek(), "with") and peek(1).t == "name" and peek(1).v == "runs" then
      k = k + 2
      expect_op("=", " after runs")
      local n = peek()
      if n.t ~= "number" or not find(n.v, "^%d+$") then fail(n.s, "runs takes a whole number") end
      runs = tonumber(n.v)
      if runs < 1 or runs > 100 then fail(n.s, "runs must be between 1 and 100") end
      k = k + 1
    end
    local keys = {}
    for _, f in ipairs(shared) do keys[#keys + 1] = f end
    for _, f in ipairs(own) do keys[#keys + 1] = f end
    return node("step", tok.s, close.e, { children = { q }, keys = keys, missing = missing, runs = runs })
  end

  local root
  local first = peek()
  if is_word(first, "sequence") then
    k = k + 1
    local shared, maxspan = {}, nil
    if is_word(peek(), "by") then
      k = k + 1
      shared = join_keys()
    end
    if is_word(peek(), "with") then
      k = k + 1
      expect_word("maxspan", " after with (sequence ... with maxspan=5m)")
      expect_op("=", " after maxspan")
      maxspan = duration()
      if is_word(peek(), "by") then fail(peek().s, "write sequence by ... before with maxspan=..., not after") end
    end
    local steps, until_step = {}, nil
    while is_op(peek(), "[") or is_op(peek(), "!") do steps[#steps + 1] = step(shared) end
    if is_word(peek(), "until") then
      k = k + 1
      until_step = step(shared)
      if until_step.missing then fail(until_step.s, "the until step cannot be a missing event") end
    end
    local count, positive = 0, 0
    for _, st in ipairs(steps) do
      count = count + st.runs
      if not st.missing then positive = positive + 1 end
    end
    if count < 2 then fail(peek().s, "a sequence needs at least two steps [ ... ], found %d", count) end
    if positive == 0 then fail(first.s, "a sequence needs at least one step that is not a missing event") end
    for _, st in ipairs(steps) do
      if st.missing and not maxspan then fail(st.s, "a missing event ![ ... ] needs with maxspan=...") end
    end
    for _, st in ipairs(until_step and { until_step } or {}) do steps[#steps + 1] = st end
    local nkeys = #steps[1].keys
    for _, st in ipairs(steps) do
      if #st.keys ~= nkeys then
        fail(st.s, "every step needs as many join keys (by) as the first: %d, not %d", nkeys, #st.keys)
      end
    end
    if until_step then steps[#steps] = nil end
    local last = until_step or steps[#steps]
    root = node("sequence", first.s, last.e, { by = shared, maxspan = maxspan, children = steps,
      ["until"] = until_step })
  elseif is_word(first, "sample") or is_word(first, "join") then
    fail(first.s, "%s queries are not supported here (an event query or a sequence)", first.v)
  else
    root = event_query()
  end
  local tok = peek()
  if is_op(tok, "|") then fail(tok.s, "pipes (| head, | tail, ...) are not supported here") end
  if tok.t ~= "eof" then
    if is_op(tok, "=") then fail(tok.s, NO_ASSIGN) end
    fail(tok.s, "expected and, or, or the end of the query, found %s", describe(tok))
  end
  return root
end

------------------------------------------------------------------------------
-- Functions
------------------------------------------------------------------------------

local MAX_COMBINATIONS = 4096

-- Calls fn with one scalar per argument for each combination of the arguments' values
-- (an array argument: each element); a nil argument is null. Stops when fn returns true.
local function combinations(args, fn)
  local n, cur, count = #args, {}, 0
  local function go(i)
    if i > n then
      count = count + 1
      if count > MAX_COMBINATIONS then error("eql: more than 4096 combinations of array values in one call", 0) end
      return fn(cur)
    end
    local v = args[i]
    if type(v) == "table" then
      local found = false
      local stop = any(v, function(x)
        found = true
        cur[i] = x
        return go(i + 1)
      end)
      if stop then return true end
      if not found then
        cur[i] = nil
        return go(i + 1)
      end
      return false
    end
    cur[i] = v
    return go(i + 1)
  end
  return go(1)
end

local function str(x) return type(x) == "string" and x or nil end
local function num(x) return type(x) == "number" and x or nil end
local function int(x)
  if type(x) ~= "number" then return nil end
  return tointeger(x) or (x >= 0 and math.floor(x) or math.ceil(x))
end

local function arith(op, a, b)
  if type(a) ~= "number" or type(b) ~= "number" then return nil end
  if op == "+" then return a + b end
  if op == "-" then return a - b end
  if op == "*" then return a * b end
  if b == 0 then error("eql: division by zero", 0) end
  if op == "/" then
    if mtype(a) == "integer" and mtype(b) == "integer" then
      local q = a // b
      if q < 0 and q * b ~= a then q = q + 1 end   -- truncate toward zero, as Java does
      return q
    end
    return a / b
  end
  if mtype(a) == "integer" and mtype(b) == "integer" then return math.fmod(a, b) end
  return math.fmod(a, b)
end

local function contains(s, sub_, insensitive)
  if sub_ == "" then return false end
  if insensitive then s, sub_ = fold(s), fold(sub_) end
  return find(s, sub_, 1, true) ~= nil
end

-- Each function: fn(args scalars) -> result (nil: null). p: a predicate (any array element).
local FN = {}
FN.add = function(a) return arith("+", a[1], a[2]) end
FN.subtract = function(a) return arith("-", a[1], a[2]) end
FN.multiply = function(a) return arith("*", a[1], a[2]) end
FN.divide = function(a) return arith("/", a[1], a[2]) end
FN.modulo = function(a) return arith("%", a[1], a[2]) end
FN.length = function(a)
  local s = str(a[1])
  return s and (utf8.len(s) or #s)
end
FN.string = function(a) return text_of(a[1]) end
FN.concat = function(a, n)
  local parts = {}
  for i = 1, n do
    local t = text_of(a[i])
    if t == nil then return nil end
    parts[i] = t
  end
  return concat(parts)
end
FN.number = function(a, n)
  local s = str(a[1])
  if not s then return num(a[1]) end
  s = s:match("^%s*(.-)%s*$")
  local base = n >= 2 and a[2] or nil
  local sign, body = s:match("^([%+%-]?)(.*)$")
  if find(body, "^0[xX]") then
    base, body = 16, sub(body, 3)
  end
  if base ~= nil then
    if not (math.type(base) == "integer" and base >= 2 and base <= 36) then return nil end
    if body == "" then return nil end
    local v = tonumber(body, base)
    if v == nil then return nil end
    return sign == "-" and -v or v
  end
  local v = numeric(s)
  return v
end
FN.startsWith = function(a, _, ci)
  local s, p = str(a[1]), str(a[2])
  if not s or not p then return nil end
  if ci then s, p = fold(s), fold(p) end
  return sub(s, 1, #p) == p
end
FN.endsWith = function(a, _, ci)
  local s, p = str(a[1]), str(a[2])
  if not s or not p then return nil end
  if ci then s, p = fold(s), fold(p) end
  return p == "" or sub(s, -#p) == p
end
FN.stringContains = function(a, _, ci)
  local s, p = str(a[1]), str(a[2])
  if not s or not p then return nil end
  return contains(s, p, ci)
end
FN.indexOf = function(a, n, ci)
  local s, p = str(a[1]), str(a[2])
  if not s or not p then return nil end
  local start = 0
  if n >= 3 then
    start = int(a[3])
    if start == nil then return nil end
    if start < 0 then start = 0 end
  end
  local cs = chars(ci and fold(s) or s)
  if start > #cs then return nil end
  local text = concat(cs, "", start + 1)
  local at = find(text, ci and fold(p) or p, 1, true)
  if not at then return nil end
  return start + (utf8.len(text, 1, at - 1) or (at - 1))
end
FN.substring = function(a, n)
  local s = str(a[1])
  local i, j = int(a[2]), n >= 3 and int(a[3]) or nil
  if not s or i == nil or (n >= 3 and j == nil) then return nil end
  local cs = chars(s)
  local len = #cs
  if i < 0 then i = math.max(len + i, 0) end
  if j == nil then j = len elseif j < 0 then j = math.max(len + j, 0) end
  if j > len then j = len end
  if i >= j then return "" end
  return concat(cs, "", i + 1, j)
end
FN.between = function(a, n, ci)
  local s, l, r = str(a[1]), str(a[2]), str(a[3])
  if not s or not l or not r then return nil end
  local greedy = n >= 4 and a[4] == true
  local hay = ci and fold(s) or s
  local L, R = ci and fold(l) or l, ci and fold(r) or r
  local _, le = find(hay, L, 1, true)
  if not le then return "" end
  local from = le + 1
  local rs
  if greedy then
    local p = from
    while true do
      local x = find(hay, R, p, true)
      if not x then break end
      rs, p = x, x + 1
    end
  else
    rs = find(hay, R, from, true)
  end
  if not rs then return "" end
  if ci then
    -- the folded text may differ in length from the original: cut by characters
    local before = utf8.len(hay, 1, from - 1) or (from - 1)
    local upto = utf8.len(hay, 1, rs - 1) or (rs - 1)
    return concat(chars(s), "", before + 1, upto)
  end
  return sub(s, from, rs - 1)
end
FN.cidrMatch = function(a, n)
  local ip = str(a[1])
  if not ip then return nil end
  local b = kql.ip_bytes(ip)
  if not b then return false end
  for i = 2, n do
    local block = a[i]
    if block == nil then return nil end
    local net, bits = kql.cidr(block)
    if not net then
      net, bits = kql.ip_bytes(block), 128
      if not net then return false end
    end
    local whole = bits // 8
    local ok = sub(b, 1, whole) == sub(net, 1, whole)
    if ok and bits % 8 ~= 0 then
      local mask = (0xFF << (8 - bits % 8)) & 0xFF
      ok = byte(b, whole + 1) & mask == byte(net, whole + 1) & mask
    end
    if ok then return true end
  end
  return false
end
local PREDICATES = { startsWith = true, endsWith = true, stringContains = true, cidrMatch = true }

------------------------------------------------------------------------------
-- Compiler: the tree into closures, once
------------------------------------------------------------------------------

local compile_value, compile_cond

-- A function(get) -> value (nil, a scalar, or a list of them).
compile_value = function(nd)
  local op = nd.op
  if op == "constant" then
    local v = nd.value
    return function() return v end
  end
  if op == "field" then
    local path = nd.path
    return function(get) return get(path) end
  end
  if op == "neg" then
    local x = compile_value(nd.children[1])
    return function(get)
      local v = x(get)
      if type(v) == "number" then return -v end
      if type(v) ~= "table" then return nil end
      local out = {}
      any(v, function(y)
        if type(y) == "number" then out[#out + 1] = -y end
        return false
      end)
      return out
    end
  end
  if op == "arith" then
    local a, b, o = compile_value(nd.children[1]), compile_value(nd.children[2]), nd.operator
    return function(get)
      local x, y = a(get), b(get)
      if type(x) ~= "table" and type(y) ~= "table" then return arith(o, x, y) end
      local out = {}
      combinations({ x, y }, function(c)
        local r = arith(o, c[1], c[2])
        if r ~= nil then out[#out + 1] = r end
        return false
      end)
      return out
    end
  end
  if op == "call" then
    local fn, ci, n = FN[nd.name], nd.insensitive, #nd.children
    local args = {}
    for i, c in ipairs(nd.children) do args[i] = compile_value(c) end
    -- stringContains(field, "constant"), case-sensitive: Elasticsearch's wildcard query *x*
    if nd.name == "stringContains" and not ci and nd.children[1].op == "field"
        and nd.children[2].op == "constant" and nd.children[2].vtype == "string" then
      local m = wildcard("*" .. nd.children[2].value .. "*", false)
      local path = nd.children[1].path
      return function(get)
        local v = get(path)
        if v == nil or not present(v) then return nil end
        return any(v, m)
      end
    end
    local predicate = PREDICATES[nd.name]
    local vals = {}
    return function(get)
      local lists = false
      for i = 1, n do
        local v = args[i](get)
        vals[i] = v
        if type(v) == "table" then lists = true end
      end
      if not lists then return fn(vals, n, ci) end
      local out, hit, all_null = {}, false, true
      combinations(vals, function(c)
        local r = fn(c, n, ci)
        if r ~= nil then all_null = false end
        if predicate then
          hit = r == true
          return hit
        end
        if r ~= nil then out[#out + 1] = r end
        return false
      end)
      if predicate then
        if hit then return true end
        return (not all_null) and false or nil
      end
      return out
    end
  end
  -- a condition used as a value (a comparison inside a function's arguments)
  local c = compile_cond(nd)
  return function(get) return c(get) end
end

local function truth(v)
  return any(v, function(x) return x == true end)
end

-- The kind of field a node is (fieldtypes), when it is a field; else nil.
local function kind_of(nd)
  return nd.op == "field" and fieldtypes.kind(nd.path) or nil
end

-- A predicate over one scalar for `x == constant`, by the field's kind.
local function eq_pred(lit, kind)
  if kind == "ip" and type(lit) == "string" then
    local want = kql.ip_bytes(lit)
    if want then return function(x) return x == lit or (type(x) == "string" and kql.ip_bytes(x) == want) end end
  end
  return function(x) return equal(x, lit) end
end

local function compare_cond(nd)
  local a, b, o = nd.children[1], nd.children[2], nd.operator
  -- x == null, x != null: presence
  if b.op == "constant" and b.vtype == "null" then a, b = b, a end
  if a.op == "constant" and a.vtype == "null" then
    if o ~= "==" and o ~= "!=" then return function() return false end end
    local x = compile_value(b)
    local want = o == "!="
    return function(get) return present(x(get)) == want end
  end
  local flip = false
  if a.op == "constant" and b.op ~= "constant" then a, b, flip = b, a, true end
  local left = compile_value(a)
  if b.op == "constant" then
    local lit = b.value
    if o == "==" or o == "!=" then
      local p = eq_pred(lit, kind_of(a))
      if a.op == "field" and type(lit) == "string" and kind_of(a) ~= "ip" then
        local path = a.path
        local hit = function(get)
          local v = get(path)
          if v == lit then return true end
          if type(v) == "string" then return false end
          return any(v, p)
        end
        if o == "==" then return hit end
        return function(get) return not hit(get) end
      end
      if o == "==" then return function(get) return any(left(get), p) end end
      return function(get) return not any(left(get), p) end
    end
    local test = ORDER[o]
    return function(get)
      return any(left(get), function(x)
        local c
        if flip then c = order(lit, x) else c = order(x, lit) end
        return c ~= nil and test(c)
      end)
    end
  end
  local right = compile_value(b)
  return function(get)
    local x, y = left(get), right(get)
    local hit = combinations({ x, y }, function(c)
      if c[1] == nil or c[2] == nil then return false end
      if o == "==" or o == "!=" then return equal(c[1], c[2]) end
      local r = order(c[1], c[2])
      return r ~= nil and ORDER[o](r)
    end)
    if o == "!=" then return not hit end
    return hit
  end
end

local function lookup_cond(nd)
  local o = nd.operator
  local value = compile_value(nd.children[1])
  local kind = kind_of(nd.children[1])
  local tests = {}
  local strs = {}   -- in: the string constants, for one lookup
  for i = 2, #nd.children do
    local c = nd.children[i]
    local lit = c.value
    if o == "in" then
      if type(lit) == "string" and kind ~= "ip" then
        strs[lit] = true
      elseif lit ~= nil then
        tests[#tests + 1] = eq_pred(lit, kind)
      end
    elseif o == "in~" then
      if type(lit) == "string" then
        local f = fold(lit)
        tests[#tests + 1] = function(x) return type(x) == "string" and fold(x) == f end
      elseif lit ~= nil then
        tests[#tests + 1] = eq_pred(lit, kind)
      end
    elseif o == ":" or o == "like" or o == "like~" then
      if type(lit) == "string" then
        tests[#tests + 1] = (wildcard(lit, o ~= "like"))
      elseif lit ~= nil then
        tests[#tests + 1] = eq_pred(lit, kind)
      end
    else   -- regex, regex~
      local re, err = regex.compile("\\A(?:" .. lit .. ")\\z", { i = o == "regex~", s = true })
      if not re then error({ eql_node = c, msg = "not a regular expression this compiler reads: " .. err }, 0) end
      local f = re.find
      tests[#tests + 1] = function(x) return type(x) == "string" and f(x) end
    end
  end
  local nt = #tests
  local function scalar(x)
    if strs[x] then return true end
    for i = 1, nt do
      if tests[i](x) then return true end
    end
    return false
  end
  if nt == 0 and nd.children[1].op == "field" then
    local path = nd.children[1].path
    return function(get)
      local v = get(path)
      if strs[v] then return true end
      if type(v) == "string" then return false end
      return any(v, scalar)
    end
  end
  return function(get) return any(value(get), scalar) end
end

compile_cond = function(nd)
  local op = nd.op
  if op == "and" or op == "or" then
    local fs = {}
    for i, c in ipairs(nd.children) do fs[i] = compile_cond(c) end
    local n = #fs
    if op == "and" then
      return function(get)
        for i = 1, n do
          if not fs[i](get) then return false end
        end
        return true
      end
    end
    return function(get)
      for i = 1, n do
        if fs[i](get) then return true end
      end
      return false
    end
  end
  if op == "not" then
    local c = compile_cond(nd.children[1])
    return function(get) return not c(get) end
  end
  if op == "compare" then return compare_cond(nd) end
  if op == "lookup" then return lookup_cond(nd) end
  if op == "constant" then
    local v = nd.value == true
    return function() return v end
  end
  local value = compile_value(nd)
  return function(get) return truth(value(get)) end
end

-- The condition of an event query, the category included.
local function event_matcher(nd, category_field)
  local cond = compile_cond(nd.children[1])
  local category = nd.category
  if category == nil then return cond end
  return function(get)
    local v = get(category_field)
    if v ~= category and not (type(v) == "table" and any(v, function(x) return x == category end)) then
      return false
    end
    return cond(get)
  end
end

------------------------------------------------------------------------------
-- Requirements: what an event must hold for a query to match (kql.requirements' shape)
------------------------------------------------------------------------------

local function string_only(lit)
  return type(lit) == "string" and numeric(lit) == nil and lit ~= "true" and lit ~= "false"
end

local function keyword_field(nd)
  if nd.op ~= "field" then return nil end
  local kind = fieldtypes.kind(nd.path)
  if kind ~= "keyword" and kind ~= "unknown" then return nil end
  return nd.path
end

-- A string that every value the pattern matches contains, as an alternative, or nil.
local function contains_alt(field, text, folded)
  if text == nil or text == "" then return nil end
  return { field = field, value = text, exact = false, fold = folded or nil }
end

local function narrowest(clauses)
  local best
  for _, c in ipairs(clauses) do
    if best == nil or #c < #best then best = c end
  end
  return best
end

local need

local function lookup_need(nd)
  local field = keyword_field(nd.children[1])
  if not field then return {} end
  local o, alts = nd.operator, {}
  for i = 2, #nd.children do
    local lit = nd.children[i].value
    local alt
    if type(lit) ~= "string" then return {} end
    if o == "in" then
      if string_only(lit) then alt = { field = field, value = lit, exact = true } end
    elseif o == "in~" then
      if string_only(lit) then alt = contains_alt(field, best_run({ lit }, true), true) end
    elseif o == ":" or o == "like" or o == "like~" then
      local folded = o ~= "like"
      alt = contains_alt(field, wildcard_need(lit, folded), folded)
    else
      local re = regex.compile(lit, { i = o == "regex~", s = true })
      local l = re and re.literal
      if l and o == "regex~" then l = best_run({ l }, true) end
      if l and find(l, "[^%d%.eE%+%-]") then alt = contains_alt(field, l, o == "regex~") end
    end
    if not alt then return {} end
    alts[#alts + 1] = alt
  end
  return { alts }
end

need = function(nd)
  local op = nd.op
  if op == "event" then
    local out = need(nd.children[1])
    return out
  end
  if op == "and" then
    local out = {}
    for _, c in ipairs(nd.children) do
      for _, cl in ipairs(need(c)) do out[#out + 1] = cl end
    end
    return out
  end
  if op == "or" then
    local clause = {}
    for _, c in ipairs(nd.children) do
      local best = narrowest(need(c))
      if best == nil then return {} end
      for _, alt in ipairs(best) do clause[#clause + 1] = alt end
    end
    return { clause }
  end
  if op == "compare" and nd.operator == "==" then
    local a, b = nd.children[1], nd.children[2]
    if a.op == "constant" then a, b = b, a end
    local field = keyword_field(a)
    if field and b.op == "constant" and string_only(b.value) then
      return { { { field = field, value = b.value, exact = true } } }
    end
    return {}
  end
  if op == "lookup" then return lookup_need(nd) end
  if op == "call" then
    local name, a, b = nd.name, nd.children[1], nd.children[2]
    local field = a and keyword_field(a)
    if not (field and b and b.op == "constant" and type(b.value) == "string") then return {} end
    local alt
    if name == "stringContains" and not nd.insensitive then
      alt = contains_alt(field, wildcard_need("*" .. b.value .. "*", false), false)
    elseif name == "stringContains" or name == "startsWith" or name == "endsWith" then
      local text = nd.insensitive and best_run({ b.value }, true) or b.value
      if text and find(text, "[^%d%.eE%+%-]") then alt = contains_alt(field, text, nd.insensitive) end
    end
    return alt and { { alt } } or {}
  end
  return {}
end

-- The category's own clause, ahead of the condition's.
local function event_need(nd, category_field)
  local out = {}
  if nd.category ~= nil then out[1] = { { field = category_field, value = nd.category, exact = true } } end
  for _, c in ipairs(need(nd.children[1])) do out[#out + 1] = c end
  return out
end

-- What every event a query matches holds, as kql.requirements has it: a conjunction of
-- clauses, each a list of alternatives { field, value, exact } (exact: the field's value is
-- value, or an array holding it; else it contains value), and here also fold = true: it
-- contains value in another ASCII case perhaps (the host's prefilter then ignores case; the
-- rule index only files exact ones). A sequence: one clause, any step's narrowest (an event
-- that concerns it concerns some step). Necessary, not sufficient.
function M.requirements(q)
  return q.requirements
end

-- What rules an event out: the top-level `not a == "x"`, `a != "x"`, `not a in (...)` of
-- exact strings: { field, values } (kql.exclusions' shape).
function M.exclusions(q)
  if q.kind ~= "event" then return {} end
  local cond = q.ast.children[1]
  local out = {}
  for _, nd in ipairs(cond.op == "and" and cond.children or { cond }) do
    local inner, negated = nd, false
    if nd.op == "not" then inner, negated = nd.children[1], true end
    local field, values
    if inner.op == "compare" and ((negated and inner.operator == "==") or (not negated and inner.operator == "!=")) then
      local a, b = inner.children[1], inner.children[2]
      if a.op == "constant" then a, b = b, a end
      field = keyword_field(a)
      if field and b.op == "constant" and string_only(b.value) then values = { b.value } end
    elseif negated and inner.op == "lookup" and inner.operator == "in" then
      field = keyword_field(inner.children[1])
      values = {}
      for i = 2, #inner.children do
        local v = inner.children[i].value
        if not string_only(v) then values = nil break end
        values[#values + 1] = v
      end
    end
    if field and values and #values > 0 then out[#out + 1] = { field = field, values = values } end
  end
  return out
end

------------------------------------------------------------------------------
-- Explain
------------------------------------------------------------------------------

local function first_field(nd)
  if nd.op == "field" then return nd.path end
  for _, c in ipairs(nd.children or {}) do
    local f = first_field(c)
    if f then return f end
  end
  return nil
end

local function text(src, nd)
  return (sub(src, nd.s, nd.e):gsub("%s+", " "))
end

-- The display tree of an event query: and/or/not nodes, and a clause per comparison.
local function explainer(root, src, category_field)
  local conds = {}
  local function prepare(nd)
    if (nd.op == "and" or nd.op == "or" or nd.op == "not") and not nd.written then
      for _, c in ipairs(nd.children) do prepare(c) end
    else
      conds[nd] = compile_cond(nd)
    end
  end
  prepare(root.children[1])
  local function walk(nd, get)
    if conds[nd] then
      return { op = "clause", text = text(src, nd), field = first_field(nd), value = conds[nd](get),
        line = nd.line, col = nd.col }
    end
    local kids, value = {}, nd.op == "and"
    for i, c in ipairs(nd.children) do
      kids[i] = walk(c, get)
      if nd.op == "and" then value = value and kids[i].value else value = value or kids[i].value end
    end
    if nd.op == "not" then value = not kids[1].value end
    return { op = nd.op, text = nd.op, value = value, line = nd.line, col = nd.col, children = kids }
  end
  return function(get)
    local tree = walk(root.children[1], get)
    if root.category == nil then return tree end
    local v = get(category_field)
    local cat = root.category
    local held = any(v, function(x) return x == cat end)
    local l, c = root.line, root.col
    local head = { op = "clause", text = format('%s == "%s" (%s where)', category_field, cat, cat),
      field = category_field, value = held, line = l, col = c }
    return { op = "and", text = "and", value = held and tree.value, line = l, col = c, children = { head, tree } }
  end
end

------------------------------------------------------------------------------
-- compile
------------------------------------------------------------------------------

local function fields_of(nd, out, seen)
  if nd.op == "field" and not seen[nd.path] then
    seen[nd.path] = true
    out[#out + 1] = nd.path
  end
  for _, c in ipairs(nd.children or {}) do fields_of(c, out, seen) end
  for _, f in ipairs(nd.keys or {}) do fields_of(f, out, seen) end
  return out
end

-- The key values of an event for a step's join keys, or nil (see the head).
local function key_reader(keys)
  local n = #keys
  return function(get)
    local out = {}
    for i = 1, n do
      local v = get(keys[i].path)
      local first
      any(v, function(x)
        first = x
        return true
      end)
      if first == nil then
        if not keys[i].optional then return nil end
        first = false
      end
      out[i] = first
    end
    return out
  end
end

-- Compile EQL source. opts: chunkname, line and col where the source starts in that file,
-- category_field (default event.category). Returns the query, or nil and a
-- "chunk:line:col: message" string.
function M.compile(source, opts)
  opts = opts or {}
  local chunk = opts.chunkname or "query"
  if type(source) ~= "string" then
    return nil, format("%s: the query must be a string, not %s", chunk, type(source))
  end
  local category_field = opts.category_field or "event.category"
  local ok, root = pcall(parse, source, opts)
  if not ok then
    if type(root) == "table" and root.eql then return nil, root.eql end
    error(root, 0)
  end
  local cok, q = pcall(function()
    local out = { source = source, ast = root, kind = root.op == "sequence" and "sequence" or "event" }
    local fields = fields_of(root, {}, {})
    if not (root.op == "event" and root.category == nil) then fields[#fields + 1] = category_field end
    local seen, list = {}, {}
    for _, f in ipairs(fields) do
      if not seen[f] then
        seen[f] = true
        list[#list + 1] = f
      end
    end
    sort(list)
    out.fields = list
    if root.op == "event" then
      out.category = root.category
      out.match = event_matcher(root, category_field)
      out.explain = explainer(root, source, category_field)
      out.requirements = event_need(root, category_field)
      return out
    end
    local function make_step(st)
      local ev = st.children[1]
      local by, optional = {}, {}
      for i, f in ipairs(st.keys) do
        by[i] = f.path
        if f.optional then optional[i] = true end
      end
      return { match = event_matcher(ev, category_field), by = by, optional = optional,
        keys = key_reader(st.keys), missing = st.missing or nil, category = ev.category, ast = ev,
        fields = fields_of(st, {}, {}), requirements = event_need(ev, category_field) }
    end
    local steps = {}
    for _, st in ipairs(root.children) do
      for _ = 1, st.runs do steps[#steps + 1] = make_step(st) end
    end
    local by = {}
    for i, f in ipairs(root.by) do by[i] = f.path end
    out.sequence = { maxspan = root.maxspan, by = by, steps = steps,
      ["until"] = root["until"] and make_step(root["until"]) or nil }
    -- any step's narrowest clause (missing and until steps too: their events change the state)
    local clause = {}
    local all = {}
    for _, st in ipairs(steps) do all[#all + 1] = st end
    if out.sequence["until"] then all[#all + 1] = out.sequence["until"] end
    for _, st in ipairs(all) do
      local best = narrowest(st.requirements)
      if best == nil then
        clause = nil
        break
      end
      for _, alt in ipairs(best) do clause[#clause + 1] = alt end
    end
    out.requirements = clause and { clause } or {}
    return out
  end)
  if not cok then
    if type(q) == "table" and q.eql_node then
      local nd = q.eql_node
      return nil, format("%s:%d:%d: %s", chunk, nd.line, nd.col, q.msg)
    end
    error(q, 0)
  end
  return q
end

return M
