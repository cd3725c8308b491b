-- kql.lua: a compiler for Kibana Query Language (KQL), the "kuery" language of
-- Elastic's detection rules, with Elastic's semantics for keyword fields.
--
--   local q, err = kql.compile(source, { chunkname = "rules/x.lua", line = 12, col = 3 })
--   q.match(get)    -> boolean; get(name) returns the event's value of a dotted field
--   q.fields        -> sorted list of the distinct field names the query reads
--   q.ast           -> the tree, with source positions (see "The tree" below)
--   q.explain(get)  -> a copy of the tree where every node carries value = true|false
--
-- Syntax (Kibana's kuery grammar, less nested queries and value-only searches):
--   field: value                 exact, case-sensitive match
--   field: "quoted value"        \" and \\ escape; * is a plain character
--   field: unquoted*value        * is a wildcard; \ escapes \():<>"*{}, whitespace
--                                and the keywords (\or); \t \r \n \uXXXX too
--   field: *                     the field exists
--   field: (a or b and not c)    values grouped with boolean operators
--   field > v, >=, <, <=         ranges: numeric when both sides are numbers
--   a and b, a or b, not a, ( )  not binds tighter than and, and tighter than or;
--                                keywords are case-insensitive
-- An unquoted value may contain spaces (*S3 Browser*); it ends before a
-- keyword, a special character or the next "field:".
--
-- Matching: an array field (a Lua sequence) matches when any element matches; a
-- missing field (nil) matches nothing, so `not field: x` holds for it. Numbers
-- and booleans compare as their JSON text (200 matches 200 and "200", true
-- matches true and "true"); a number also equals a numeric literal of the same
-- value (22 matches 22.0). An object never equals a scalar, but it exists.
--
-- The tree: every node has op and the line and col where it starts in the file.
--   { op = "or"|"and"|"not", children = { node, ... } }
--   { op = "match", field = , literal = , quoted = bool, wildcard = bool,
--     segments = { text between wildcards } (wildcard only) }
--   { op = "exists", field = }
--   { op = "range", field = , operator = "<"|"<="|">"|">=", literal = , quoted = }
-- The node of `field: ...` starts at the field; the values inside a list at
-- themselves.
-- A value list is expanded: `f: (a or b)` is or(match f a, match f b), as Kibana does.

local M = {}

local byte, sub, find, format = string.byte, string.sub, string.find, string.format
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

local function exact_pred(lit)
  local num, bool = numeric(lit), bool_of(lit)
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
local function set_pred(lits)
  local strs, nums, bools = {}, {}, {}
  for _, lit in ipairs(lits) do
    strs[lit] = true
    local num, bool = numeric(lit), bool_of(lit)
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

local function range_pred(operator, lit)
  local cmp, num = CMP[operator], numeric(lit)
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

local function leaf_pred(node)
  if node.op == "exists" then return exists end
  if node.op == "range" then return range_pred(node.operator, node.literal) end
  if node.wildcard then return wildcard_pred(node.segments) end
  return exact_pred(node.literal)
end

------------------------------------------------------------------------------
-- Parser: recursive descent over Kibana's kuery grammar
------------------------------------------------------------------------------

local WS = { [32] = true, [9] = true, [10] = true, [13] = true }
local SPECIAL = {}
for c in ('\\():<>"*{}'):gmatch(".") do SPECIAL[byte(c)] = true end
local STOP = '[ \t\r\n\\():<>"*{}]'           -- ends a run of plain characters
local WORD = '^[^ \t\r\n\\():<>"*{}]+'
local UNESCAPE = { t = "\t", r = "\r", n = "\n" }
local KEYWORDS = { "and", "not", "or" }

local function parse(src, opts)
  local n, pos = #src, 1
  local chunk = opts.chunkname or "query"
  local line0, col0 = opts.line or 1, opts.col or 1

  local starts = { 1 }
  for p in src:gmatch("()\n") do starts[#starts + 1] = p + 1 end

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

  local function at(p)
    local l, c = where(p)
    return l .. ":" .. c
  end

  local function fail(p, msg, ...)
    local l, c = where(p)
    error({ kql = format("%s:%d:%d: ", chunk, l, c) .. format(msg, ...) }, 0)
  end

  local function shorten(s)
    if utf8.len(s) and utf8.len(s) > 24 then
      return sub(s, 1, utf8.offset(s, 22) - 1) .. "..."
    end
    return s
  end

  -- What stands at p, for "found ..." in messages.
  local function found(p)
    if p > n then return "end of query" end
    local c = byte(src, p)
    if c == 34 then
      local s = src:match('^"[^"\n]*"?', p)
      return shorten(s)
    end
    if SPECIAL[c] then return "'" .. sub(src, p, p) .. "'" end
    return "'" .. shorten(src:match(WORD, p)) .. "'"
  end

  -- A keyword at p (case-insensitive, followed by a boundary): its lowercase
  -- name and the position after it.
  local function keyword(p)
    for _, kw in ipairs(KEYWORDS) do
      local e = p + #kw
      if sub(src, p, e - 1):lower() == kw then
        local d = byte(src, e)
        if d == nil or WS[d] or d == 40 or d == 41 or d == 34 then return kw, e end
      end
    end
    return nil
  end

  local function skip_ws()
    while WS[byte(src, pos)] do pos = pos + 1 end
  end

  -- A backslash escape at p: its text and the position after it.
  local function escape(p)
    local d = sub(src, p + 1, p + 1)
    if d == "" then fail(p, "expected a character after '\\', found end of query") end
    if UNESCAPE[d] then return UNESCAPE[d], p + 2 end
    if SPECIAL[byte(d)] or WS[byte(d)] then return d, p + 2 end
    if d == "u" then
      local hex = src:match("^%x%x%x%x", p + 2)
      if not hex then fail(p, "expected four hex digits after '\\u', found %s", found(p + 2)) end
      return utf8.char(tonumber(hex, 16)), p + 6
    end
    for _, kw in ipairs(KEYWORDS) do
      local w = sub(src, p + 1, p + #kw)
      if w:lower() == kw then return w, p + 1 + #kw end
    end
    fail(p, "invalid escape '\\%s': \\ escapes \\():<>\"*{}, whitespace, \\t \\r \\n, \\uXXXX and the keywords", d)
  end

  -- "...": its text. Like Kibana, \" \\ \t \r \n \uXXXX are escapes, and any
  -- other backslash is itself.
  local function quoted()
    local open, p, buf = pos, pos + 1, {}
    while true do
      local a = find(src, '["\\]', p)
      if not a then fail(n + 1, "expected '\"' to close the string at %s, found end of query", at(open)) end
      buf[#buf + 1] = sub(src, p, a - 1)
      if byte(src, a) == 34 then
        pos = a + 1
        return concat(buf)
      end
      local d = sub(src, a + 1, a + 1)
      if d == '"' or d == "\\" then
        buf[#buf + 1] = d
        p = a + 2
      elseif UNESCAPE[d] then
        buf[#buf + 1] = UNESCAPE[d]
        p = a + 2
      elseif d == "u" and src:match("^%x%x%x%x", a + 2) then
        buf[#buf + 1] = utf8.char(tonumber(sub(src, a + 2, a + 5), 16))
        p = a + 6
      else
        buf[#buf + 1] = "\\"
        p = a + 1
      end
    end
  end

  -- Does a "field:" (or "field <") start at p? Ends an unquoted value.
  local function field_ahead(p)
    local w = src:match(WORD, p)
    if not w then return false end
    p = p + #w
    while WS[byte(src, p)] do p = p + 1 end
    local c = byte(src, p)
    return c == 58 or c == 60 or c == 62
  end

  -- An unquoted literal: the texts between its wildcards, and whether it has
  -- any. Inner whitespace belongs to it; it ends before a special character,
  -- a keyword, a "field:", or (a field name) any whitespace.
  local function unquoted(is_field)
    local segs, buf, wild = {}, {}, false
    local p = pos
    while p <= n do
      local c = byte(src, p)
      if c == 92 then
        local text
        text, p = escape(p)
        buf[#buf + 1] = text
      elseif c == 42 then
        wild = true
        segs[#segs + 1] = concat(buf)
        buf = {}
        p = p + 1
      elseif SPECIAL[c] then
        break
      elseif WS[c] then
        if is_field then break end
        local q = p
        while WS[byte(src, q)] do q = q + 1 end
        local d = byte(src, q)
        if d == nil or (SPECIAL[d] and d ~= 42 and d ~= 92) or keyword(q) or field_ahead(q) then break end
        buf[#buf + 1] = sub(src, p, q - 1)
        p = q
      else
        local e = find(src, STOP, p) or n + 1
        buf[#buf + 1] = sub(src, p, e - 1)
        p = e
      end
    end
    segs[#segs + 1] = concat(buf)
    pos = p
    return segs, wild
  end

  -- A value can start at pos (else fail with what was expected).
  local function check_value_start(ctx)
    local c = byte(src, pos)
    if c == nil or (SPECIAL[c] and c ~= 34 and c ~= 42 and c ~= 92) then
      fail(pos, "expected a value %s, found %s", ctx, found(pos))
    end
    local kw, e = keyword(pos)
    if kw == "not" and ctx == "after ':'" then
      fail(pos, "expected a value after ':', found the keyword '%s' (write not field: value, or field: (not value))",
           sub(src, pos, e - 1))
    elseif kw then
      fail(pos, "expected a value %s, found the keyword '%s' (quote it to match the word)", ctx, sub(src, pos, e - 1))
    end
  end

  local function value(field, ctx)
    check_value_start(ctx)
    local l, c = where(pos)
    if byte(src, pos) == 34 then
      return { op = "match", field = field, literal = quoted(), quoted = true, wildcard = false, line = l, col = c }
    end
    local segs, wild = unquoted(false)
    if not wild then
      return { op = "match", field = field, literal = segs[1], quoted = false, wildcard = false, line = l, col = c }
    end
    if concat(segs) == "" then return { op = "exists", field = field, line = l, col = c } end
    return { op = "match", field = field, literal = concat(segs, "*"), quoted = false, wildcard = true,
             segments = segs, line = l, col = c }
  end

  local function close_paren(open)
    skip_ws()
    if byte(src, pos) ~= 41 then
      fail(pos, "expected ')' to close '(' at %s, found %s", at(open), found(pos))
    end
    pos = pos + 1
  end

  -- Boolean chains, shared by queries and value lists: operand(ctx) parses one
  -- operand; ctx says what came before, for messages.
  local function chain(op, operand, ctx)
    local first = operand(ctx)
    local list
    while true do
      local save = pos
      skip_ws()
      local kw, e = keyword(pos)
      if kw ~= op then
        pos = save
        break
      end
      pos = e
      skip_ws()
      list = list or { first }
      list[#list + 1] = operand("after '" .. kw .. "'")
    end
    if not list then return first end
    return { op = op, children = list, line = first.line, col = first.col }
  end

  -- Value lists: field: ( a or b and not (c or d) )
  local vor
  local function vprimary(field, ctx)
    skip_ws()
    if byte(src, pos) == 40 then
      local open = pos
      pos = pos + 1
      skip_ws()
      local e = vor(field, "after '('")
      close_paren(open)
      return e
    end
    return value(field, ctx)
  end
  local function vnot(field, ctx)
    skip_ws()
    local kw, e = keyword(pos)
    if kw == "not" then
      local l, c = where(pos)
      pos = e
      return { op = "not", children = { vnot(field, "after 'not'") }, line = l, col = c }
    end
    return vprimary(field, ctx)
  end
  local function vand(field, ctx)
    return chain("and", function(cx) return vnot(field, cx) end, ctx)
  end
  vor = function(field, ctx)
    return chain("or", function(cx) return vand(field, cx) end, ctx)
  end

  local function sp(ctx) return ctx == "" and "" or " " .. ctx end

  -- field: values | field <op> value
  local function expression(ctx)
    local start = pos
    local c = byte(src, pos)
    if c == nil or (SPECIAL[c] and c ~= 34 and c ~= 92 and c ~= 42) then
      fail(pos, "expected a query%s, found %s", sp(ctx), found(pos))
    end
    local kw, e = keyword(pos)
    if kw then fail(pos, "expected a query%s, found the keyword '%s'", sp(ctx), sub(src, pos, e - 1)) end
    local field
    if c == 34 then
      field = quoted()
    else
      local segs, wild = unquoted(true)
      if wild then
        fail(start, "wildcards in field names are not supported: '%s'", sub(src, start, pos - 1))
      end
      field = segs[1]
    end
    if field == "" then fail(start, "expected a field name, found an empty one") end
    skip_ws()
    c = byte(src, pos)
    if c == 58 then                                   -- :
      pos = pos + 1
      skip_ws()
      if byte(src, pos) == 123 then
        fail(pos, "nested field queries (field: { ... }) are not supported")
      end
      local node = vprimary(field, "after ':'")
      node.line, node.col = where(start)       -- field: ... starts at the field
      return node
    elseif c == 60 or c == 62 then                    -- < <= > >=
      local l, cl = where(start)
      local operator = byte(src, pos + 1) == 61 and sub(src, pos, pos + 1) or sub(src, pos, pos)
      pos = pos + #operator
      skip_ws()
      local vstart = pos
      check_value_start("after '" .. operator .. "'")
      local literal, quoted_
      if byte(src, pos) == 34 then
        literal, quoted_ = quoted(), true
      else
        local segs, wild = unquoted(false)
        if wild then
          fail(vstart, "expected a value after '%s', found the wildcard '%s' (ranges take no wildcards)",
               operator, sub(src, vstart, pos - 1))
        end
        literal, quoted_ = segs[1], false
      end
      return { op = "range", field = field, operator = operator, literal = literal, quoted = quoted_,
               line = l, col = cl }
    end
    if c == nil or c == 41 or keyword(pos) then
      fail(start, "expected ':' after '%s', found %s: a value needs a field (field: value); "
           .. "searching every field is not supported", sub(src, start, pos - 1):match("^(.-)%s*$"), found(pos))
    end
    fail(pos, "expected ':' or a range operator (< <= > >=) after the field name '%s', found %s",
         field, found(pos))
  end

  local qor
  local function primary(ctx)
    skip_ws()
    if byte(src, pos) == 40 then
      local open = pos
      pos = pos + 1
      skip_ws()
      local e = qor("after '('")
      close_paren(open)
      return e
    end
    return expression(ctx)
  end
  local function qnot(ctx)
    skip_ws()
    local kw, e = keyword(pos)
    if kw == "not" then
      local l, c = where(pos)
      pos = e
      return { op = "not", children = { qnot("after 'not'") }, line = l, col = c }
    end
    return primary(ctx)
  end
  local function qand(ctx)
    return chain("and", qnot, ctx)
  end
  qor = function(ctx)
    return chain("or", qand, ctx)
  end

  skip_ws()
  if pos > n then fail(pos, "expected a query, found end of query (the query is empty)") end
  local root = qor("")
  skip_ws()
  if pos <= n then
    if byte(src, pos) == 41 then fail(pos, "found ')' with no matching '('") end
    fail(pos, "expected 'and', 'or' or end of query, found %s", found(pos))
  end
  return root
end

------------------------------------------------------------------------------
-- Compiler: the tree into closures, once
------------------------------------------------------------------------------

local function is_leaf(node)
  return node.children == nil
end

-- The one field every leaf under node reads, or nil.
local function single_field(node)
  if is_leaf(node) then return node.field end
  local f
  for _, child in ipairs(node.children) do
    local g = single_field(child)
    if g == nil or (f ~= nil and g ~= f) then return nil end
    f = g
  end
  return f
end

local function is_exact(node)
  return node.op == "match" and not node.wildcard
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
  if #exact == 1 then
    table.insert(fs, 1, exact_pred(exact[1]))
  elseif #exact > 1 then
    table.insert(fs, 1, (set_pred(exact)))
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

-- A function(get) -> boolean for any subtree. An and/or runs one loop over
-- its children, with the checks of single fields inlined: per event, one call
-- of get per field checked, and for string values no other call.
local function compile_node(node, leaves)
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
  if node.op == "not" then
    local c = compile_node(node.children[1], leaves)
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
      C[i] = compile_node(child, leaves)
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

local function explain(node, get, leaves)
  local copy = {}
  for k, v in pairs(node) do copy[k] = v end
  if node.segments then copy.segments = { table.unpack(node.segments) } end
  if is_leaf(node) then
    copy.value = leaves[node](get(node.field))
    return copy
  end
  local kids, value = {}, node.op == "and"
  for i, child in ipairs(node.children) do
    local e = explain(child, get, leaves)
    kids[i] = e
    if node.op == "and" then value = value and e.value else value = value or e.value end
  end
  if node.op == "not" then value = not kids[1].value end
  copy.children, copy.value = kids, value
  return copy
end

-- Compile KQL source. opts: chunkname (for messages), line and col where the
-- source starts in that file (default 1, 1). Returns the query, or nil and a
-- "chunk:line:col: message" string.
function M.compile(source, opts)
  opts = opts or {}
  if type(source) ~= "string" then
    return nil, format("%s: the query must be a string, not %s", opts.chunkname or "query", type(source))
  end
  local ok, root = pcall(parse, source, opts)
  if not ok then
    if type(root) == "table" and root.kql then return nil, root.kql end
    error(root, 0)
  end

  local leaves, seen, fields = {}, {}, {}
  local function walk(node)
    if is_leaf(node) then
      leaves[node] = leaf_pred(node)
      if not seen[node.field] then
        seen[node.field] = true
        fields[#fields + 1] = node.field
      end
    else
      for _, child in ipairs(node.children) do walk(child) end
    end
  end
  walk(root)
  sort(fields)

  return {
    source = source,
    ast = root,
    fields = fields,
    match = compile_node(root, leaves),
    explain = function(get) return explain(root, get, leaves) end,
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
    if node.wildcard then
      local s = wildcard_need(node.segments)
      if s then return { { { field = node.field, value = s, exact = false } } } end
    elseif string_only(node.literal) then
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
  return {}  -- not, exists, ranges: nothing a match must contain
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
