-- toml.lua: TOML 1.0 (https://toml.io/en/v1.0.0) to Lua tables and back, for
-- Elastic's detection rules (`trailhound import`, `trailhound export`).
--
--   toml.parse(text[, name]) -> table | nil, "name:line:col: message"
--   toml.encode(root[, opts]) -> text | nil, message
--
-- What the parser reads: comments; bare, quoted and dotted keys; tables,
-- arrays of tables, inline tables; basic, literal and multi-line strings with
-- every escape and the line-ending backslash; decimal, hexadecimal, octal and
-- binary integers (64-bit); floats, inf and nan; booleans; offset and local
-- date-times, dates and times, which are kept as the text written (a Lua
-- string), so they are written back as strings. A document that breaks the
-- specification (a key defined twice, a table defined twice, an inline table
-- extended, a bare carriage return, an invalid escape, an integer out of
-- range, invalid UTF-8, ...) is an error at its line and column (column in
-- characters, from 1). Newlines inside multi-line strings are read as "\n",
-- whether the file writes LF or CRLF.
--
-- Tables become Lua tables with string keys; arrays become sequences. An
-- empty Lua table is written back as an empty array.

local M = {}

------------------------------------------------------------------------------
-- Parsing
------------------------------------------------------------------------------

local ESCAPES = { b = "\b", t = "\t", n = "\n", f = "\f", r = "\r", ['"'] = '"', ["\\"] = "\\" }

local Error = {}

function M.parse(text, name)
  if type(text) ~= "string" then error("toml.parse: expected a string, got " .. type(text), 2) end
  name = name or "toml"
  local pos = 1
  -- How each table came to be, for the rules on defining tables once
  -- (toml.io, "Table" and "Array of Tables"): "header" ([a]), "implicit" (a
  -- parent named by a header: [a.b] makes a), "dotted" (made by a dotted key),
  -- "inline" ({ ... }, closed once written; "inline-open" while it is read).
  -- Arrays: "static" ([...]) or "tables" ([[a]]).
  local kind = {}

  local function position(at)
    local before = text:sub(1, at - 1)
    local _, newlines = before:gsub("\n", "")
    local line_start = (before:match(".*\n()") or 1)
    local col = utf8.len(text, line_start, at - 1, true) or (at - line_start)
    return newlines + 1, col + 1
  end

  local function fail(msg, at)
    local line, col = position(at or pos)
    error(setmetatable({ msg = string.format("%s:%d:%d: %s", name, line, col, msg) }, Error), 0)
  end


  local function char(at) return text:sub(at or pos, at or pos) end

  -- A control character where the specification allows none (tab aside).
  local function control(c)
    local b = c:byte()
    return b and (b < 0x20 and b ~= 0x09 or b == 0x7f)
  end

  -- What is at a position, for a message.
  local function describe(at)
    local c = text:match("^" .. utf8.charpattern, at or pos) or ""
    if c == "" then return "the end of the file" end
    if c == "\n" then return "the end of the line" end
    if c == "\r" then return "a carriage return" end
    if control(c) then return string.format("the control character U+%04X", c:byte()) end
    return "'" .. c .. "'"
  end

  local function skip_ws()
    local _, e = text:find("^[ \t]*", pos)
    pos = e + 1
  end

  local function comment()
    if char() ~= "#" then return end
    local e = text:find("[\r\n]", pos) or #text + 1
    for at = pos + 1, e - 1 do
      if control(text:sub(at, at)) then fail("control character U+" .. string.format("%04X", text:byte(at))
        .. " in a comment", at) end
    end
    pos = e
  end

  -- A newline (LF or CRLF); true when one was read.
  local function newline()
    local c = char()
    if c == "\n" then pos = pos + 1 return true end
    if c == "\r" then
      if char(pos + 1) == "\n" then pos = pos + 2 return true end
      fail("a carriage return must be followed by a line feed")
    end
    return false
  end

  -- Whitespace, comments and newlines, as between the values of an array.
  local function skip_all()
    while true do
      skip_ws()
      comment()
      if not newline() then return end
    end
  end

  local function hex_char(digits, at)
    local cp = tonumber(digits, 16)
    if not cp or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then
      fail("\\" .. (#digits == 4 and "u" or "U") .. digits .. " is not a Unicode scalar value", at)
    end
    return utf8.char(cp)
  end

  -- The body of a basic string, from pos to its closing quote(s).
  local function basic(multiline)
    local out = {}
    while true do
      local c = char()
      if c == "" then fail(multiline and 'unterminated """ string' or "unterminated string") end
      if c == '"' then
        if not multiline then pos = pos + 1 return table.concat(out) end
        local _, e = text:find('^"+', pos)
        local n = e - pos + 1
        if n >= 3 then
          if n > 5 then fail('too many quotes at the end of a """ string', pos + 5) end
          out[#out + 1] = string.rep('"', n - 3)
          pos = e + 1
          return table.concat(out)
        end
        out[#out + 1] = string.rep('"', n)
        pos = e + 1
      elseif c == "\\" then
        local d = char(pos + 1)
        if ESCAPES[d] then
          out[#out + 1] = ESCAPES[d]
          pos = pos + 2
        elseif d == "u" or d == "U" then
          local n = d == "u" and 4 or 8
          local digits = text:sub(pos + 2, pos + 1 + n)
          if not digits:find("^%x+$") or #digits ~= n then
            fail("\\" .. d .. " needs " .. n .. " hexadecimal digits", pos)
          end
          out[#out + 1] = hex_char(digits, pos)
          pos = pos + 2 + n
        elseif multiline and text:find("^[ \t]*[\r\n]", pos + 1) then
          -- A line-ending backslash: the newline and the whitespace after it go.
          pos = pos + 1
          repeat skip_ws() until not newline()
        else
          fail("invalid escape \\" .. (d == "" and "" or describe(pos + 1):gsub("^'(.*)'$", "%1")), pos)
        end
      elseif c == "\n" or c == "\r" then
        if not multiline then fail("unterminated string: a basic string ends on its line") end
        newline()
        out[#out + 1] = "\n"
      elseif control(c) then
        fail(describe() .. " must be escaped in a string")
      else
        local _, e = text:find('^[^"\\\r\n\0-\8\11-\31\127]+', pos)
        out[#out + 1] = text:sub(pos, e)
        pos = e + 1
      end
    end
  end

  local function literal(multiline)
    local out = {}
    while true do
      local c = char()
      if c == "" then fail(multiline and "unterminated ''' string" or "unterminated literal string") end
      if c == "'" then
        if not multiline then pos = pos + 1 return table.concat(out) end
        local _, e = text:find("^'+", pos)
        local n = e - pos + 1
        if n >= 3 then
          if n > 5 then fail("too many quotes at the end of a ''' string", pos + 5) end
          out[#out + 1] = string.rep("'", n - 3)
          pos = e + 1
          return table.concat(out)
        end
        out[#out + 1] = string.rep("'", n)
        pos = e + 1
      elseif c == "\n" or c == "\r" then
        if not multiline then fail("unterminated literal string: it ends on its line") end
        newline()
        out[#out + 1] = "\n"
      elseif control(c) then
        fail(describe() .. " is not allowed in a literal string")
      else
        local _, e = text:find("^[^'\r\n\0-\8\11-\31\127]+", pos)
        out[#out + 1] = text:sub(pos, e)
        pos = e + 1
      end
    end
  end

  -- A string at pos, any of the four forms.
  local function string_value()
    if text:sub(pos, pos + 2) == '"""' then
      pos = pos + 3
      newline()  -- a newline right after the opening quotes is not part of the string
      return basic(true)
    elseif text:sub(pos, pos + 2) == "'''" then
      pos = pos + 3
      newline()
      return literal(true)
    elseif char() == '"' then
      pos = pos + 1
      return basic(false)
    else
      pos = pos + 1
      return literal(false)
    end
  end

  -- A simple key: bare, or a single-line quoted string.
  local function simple_key()
    local c = char()
    if c == '"' or c == "'" then
      if text:sub(pos, pos + 2) == c:rep(3) then fail("a key cannot be a multi-line string") end
      return string_value()
    end
    local _, e = text:find("^[A-Za-z0-9_%-]+", pos)
    if not e then fail("expected a key, found " .. describe()) end
    local k = text:sub(pos, e)
    pos = e + 1
    return k
  end

  -- A key, dotted or not: its parts and where it starts.
  local function key()
    local at = pos
    local parts = { simple_key() }
    while true do
      skip_ws()
      if char() ~= "." then return parts, at end
      pos = pos + 1
      skip_ws()
      parts[#parts + 1] = simple_key()
    end
  end

  local function dotted(parts, n)
    local q = {}
    for i = 1, n or #parts do
      local p = parts[i]
      q[i] = p:find("^[A-Za-z0-9_%-]+$") and p or string.format("%q", p)
    end
    return table.concat(q, ".")
  end

  -- Dates and times, kept as text once checked.
  local DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  local function check_date(y, m, d, at)
    y, m, d = tonumber(y), tonumber(m), tonumber(d)
    if m < 1 or m > 12 then fail("month " .. m .. " out of range", at) end
    local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
    local max = (m == 2 and not leap) and 28 or DAYS[m]
    if d < 1 or d > max then fail("day " .. d .. " out of range for that month", at) end
  end
  local function check_time(h, mi, s, at)
    if tonumber(h) > 23 or tonumber(mi) > 59 or tonumber(s) > 60 then fail("time out of range", at) end
  end

  -- A bare token: a number, a boolean, inf, nan, or a date and/or time.
  local function bare()
    local at = pos
    local _, e = text:find("^[%w_%+%-%.:]+", pos)
    if not e then fail("expected a value, found " .. describe()) end
    local tok = text:sub(pos, e)
    -- "1979-05-27 07:32:00": a date, a space and a time are one value.
    if tok:find("^%d%d%d%d%-%d%d%-%d%d$") and char(e + 1) == " " then
      local _, e2 = text:find("^%d%d:%d%d:%d%d[%w_%+%-%.:]*", e + 2)
      if e2 then
        tok = text:sub(pos, e2)
        e = e2
      end
    end
    pos = e + 1
    if tok == "true" then return true end
    if tok == "false" then return false end
    if tok == "inf" or tok == "+inf" then return math.huge end
    if tok == "-inf" then return -math.huge end
    if tok == "nan" or tok == "+nan" or tok == "-nan" then return 0 / 0 end

    -- Dates and times.
    local y, mo, d, rest = tok:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
    if y then
      check_date(y, mo, d, at)
      if rest == "" then return tok end
      local h, mi, s, frac, off = rest:match("^[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
      if not h or frac == "." then fail("invalid date-time '" .. tok .. "'", at) end
      check_time(h, mi, s, at)
      if off == "" or off == "Z" or off == "z" then return tok end
      local oh, om = off:match("^[%+%-](%d%d):(%d%d)$")
      if not oh or tonumber(oh) > 23 or tonumber(om) > 59 then fail("invalid offset in '" .. tok .. "'", at) end
      return tok
    end
    local h, mi, s, frac = tok:match("^(%d%d):(%d%d):(%d%d)(%.?%d*)$")
    if h and frac ~= "." then
      check_time(h, mi, s, at)
      return tok
    end

    -- Integers in another base: no sign, underscores between digits.
    local prefix, digits = tok:match("^0([xob])(.*)$")
    if prefix then
      local class = ({ x = "0-9A-Fa-f", o = "0-7", b = "01" })[prefix]
      if not digits:find("^[" .. class .. "][" .. class .. "_]*$") or digits:find("__") or digits:find("_$") then
        fail("invalid number '" .. tok .. "'", at)
      end
      digits = digits:gsub("_", "")
      local base = ({ x = 16, o = 8, b = 2 })[prefix]
      local v = 0
      for ch in digits:gmatch(".") do
        local dv = tonumber(ch, 16)
        if v > (math.maxinteger - dv) // base then fail("integer '" .. tok .. "' is out of range (64 bits)", at) end
        v = v * base + dv
      end
      return v
    end

    -- Decimal integers and floats.
    local sign, int, fracpart, exp = tok:match("^([%+%-]?)([%d_]+)(%.?[%d_]*)([eE]?[%+%-]?[%d_]*)$")
    if not int then fail("invalid value '" .. tok .. "'", at) end
    local function digits_ok(ds) return ds:find("^%d[%d_]*$") and not ds:find("__") and not ds:find("_$") end
    if not digits_ok(int) then fail("invalid number '" .. tok .. "'", at) end
    if int:find("^0[%d_]") then fail("invalid number '" .. tok .. "': leading zeros are not allowed", at) end
    if fracpart == "" and exp == "" then
      local v = math.tointeger(tonumber(sign .. int:gsub("_", "")))
      if not v then fail("integer '" .. tok .. "' is out of range (64 bits)", at) end
      return v
    end
    if fracpart ~= "" and not digits_ok(fracpart:sub(2)) then fail("invalid float '" .. tok .. "'", at) end
    if exp ~= "" then
      local es = exp:match("^[eE][%+%-]?(.*)$")
      if not digits_ok(es) then fail("invalid float '" .. tok .. "'", at) end
    end
    local v = tonumber((tok:gsub("_", "")))
    if not v then fail("invalid float '" .. tok .. "'", at) end
    return v + 0.0
  end

  local value, inline_table
  local depth = 0  -- arrays and inline tables open: each is a few Lua calls deep

  local function enter(at)
    depth = depth + 1
    if depth > 50 then fail("arrays and inline tables nested more than 50 deep", at) end
  end

  local function array()
    local at = pos
    enter(at)
    pos = pos + 1
    local t = {}
    kind[t] = "static"
    while true do
      skip_all()
      if char() == "]" then
        pos = pos + 1
        depth = depth - 1
        return t
      end
      if char() == "" then fail("unterminated array (it starts here)", at) end
      t[#t + 1] = value()
      skip_all()
      local c = char()
      if c == "," then
        pos = pos + 1
      elseif c ~= "]" then
        if c == "" then fail("unterminated array (it starts here)", at) end
        fail("expected ',' or ']' in an array, found " .. describe())
      end
    end
  end

  -- Set parts (a key, dotted or not) to v in table t: dotted keys make
  -- tables of kind `make` on the way ("dotted", or "inline" inside an inline table).
  local function assign(t, parts, v, at, make)
    for i = 1, #parts - 1 do
      local p = parts[i]
      local x = t[p]
      if x == nil then
        x = {}
        kind[x] = make
        t[p] = x
      elseif type(x) ~= "table" or (kind[x] ~= "dotted" and kind[x] ~= "implicit" and kind[x] ~= make) then
        local what = type(x) ~= "table" and "a value" or kind[x] == "header" and "a table defined by a header"
          or kind[x] == "inline" and "an inline table" or "an array"
        fail("cannot add keys to " .. dotted(parts, i) .. ": it is already " .. what, at)
      elseif kind[x] == "implicit" then
        kind[x] = make
      end
      t = x
    end
    local last = parts[#parts]
    if t[last] ~= nil then fail("key " .. dotted(parts) .. " is defined twice", at) end
    t[last] = v
  end

  local function freeze(t)
    kind[t] = "inline"
    for _, v in pairs(t) do
      if type(v) == "table" and kind[v] ~= "static" then freeze(v) end
    end
  end

  function inline_table()
    local at = pos
    enter(at)
    pos = pos + 1
    local t = {}
    kind[t] = "inline-open"
    skip_ws()
    if char() == "}" then
      pos = pos + 1
      freeze(t)
      depth = depth - 1
      return t
    end
    while true do
      skip_ws()
      local c = char()
      if c == "\n" or c == "\r" or c == "" then
        fail("unterminated inline table (it starts here): an inline table is on one line", at)
      end
      local parts, kat = key()
      skip_ws()
      if char() ~= "=" then fail("expected '=' after the key " .. dotted(parts) .. ", found " .. describe()) end
      pos = pos + 1
      skip_ws()
      assign(t, parts, value(), kat, "inline-open")
      skip_ws()
      c = char()
      if c == "}" then
        pos = pos + 1
        freeze(t)
        depth = depth - 1
        return t
      elseif c == "," then
        pos = pos + 1
        skip_ws()
        if char() == "}" then fail("a trailing comma is not allowed in an inline table") end
      elseif c == "\n" or c == "\r" or c == "" then
        fail("unterminated inline table (it starts here): an inline table is on one line", at)
      else
        fail("expected ',' or '}' in an inline table, found " .. describe())
      end
    end
  end

  function value()
    local c = char()
    if c == '"' or c == "'" then return string_value() end
    if c == "[" then return array() end
    if c == "{" then return inline_table() end
    if c == "" or c == "\n" or c == "\r" or c == "#" then fail("expected a value, found " .. describe()) end
    return bare()
  end

  -- Headers: [a.b] and [[a.b]].
  local root = {}
  kind[root] = "header"

  local function header(parts, is_array, at)
    local t = root
    for i = 1, #parts - 1 do
      local p = parts[i]
      local x = t[p]
      if x == nil then
        x = {}
        kind[x] = "implicit"
        t[p] = x
      elseif type(x) ~= "table" or kind[x] == "static" or kind[x] == "inline" then
        fail("cannot define " .. dotted(parts) .. ": " .. dotted(parts, i) .. " is already "
          .. (type(x) ~= "table" and "a value" or kind[x] == "inline" and "an inline table" or "an array"), at)
      elseif kind[x] == "tables" then
        x = x[#x]
      end
      t = x
    end
    local last = parts[#parts]
    local x = t[last]
    if is_array then
      if x == nil then
        x = {}
        kind[x] = "tables"
        t[last] = x
      elseif kind[x] ~= "tables" then
        fail("cannot define [[" .. dotted(parts) .. "]]: " .. dotted(parts) .. " is already "
          .. (type(x) ~= "table" and "a value" or kind[x] == "static" and "an array" or "a table"), at)
      end
      local new = {}
      kind[new] = "header"
      x[#x + 1] = new
      return new
    end
    if x == nil then
      x = {}
      kind[x] = "header"
      t[last] = x
      return x
    end
    if type(x) == "table" and kind[x] == "implicit" then
      kind[x] = "header"
      return x
    end
    local what = type(x) ~= "table" and "a value" or kind[x] == "header" and "a table defined above"
      or kind[x] == "dotted" and "a table defined by dotted keys" or kind[x] == "inline" and "an inline table"
      or "an array"
    fail("cannot define [" .. dotted(parts) .. "]: it is already " .. what, at)
  end

  local ok, err = pcall(function()
    -- Valid UTF-8 throughout, as the specification requires.
    local valid, bad = utf8.len(text, 1, -1, true)
    if not valid then fail("invalid UTF-8", bad) end
    if text:sub(1, 3) == "\239\187\191" then pos = 4 end  -- a byte order mark
    local current = root
    while true do
      skip_ws()
      comment()
      if char() == "" then
        break
      elseif not newline() then  -- else an empty line
        local at = pos
        if char() == "[" then
          local is_array = char(pos + 1) == "["
          pos = pos + (is_array and 2 or 1)
          skip_ws()
          local parts = key()
          skip_ws()
          if is_array then
            if text:sub(pos, pos + 1) ~= "]]" then fail("expected ']]' to close the header, found " .. describe()) end
            pos = pos + 2
          else
            if char() ~= "]" then fail("expected ']' to close the header, found " .. describe()) end
            pos = pos + 1
          end
          current = header(parts, is_array, at)
        else
          local parts, kat = key()
          skip_ws()
          if char() ~= "=" then fail("expected '=' after the key " .. dotted(parts) .. ", found " .. describe()) end
          pos = pos + 1
          skip_ws()
          assign(current, parts, value(), kat, "dotted")
        end
        skip_ws()
        comment()
        if not newline() and char() ~= "" then
          fail("expected the end of the line after a " .. (char(at) == "[" and "header" or "value") .. ", found "
            .. describe())
        end
      end
    end
  end)
  if not ok then
    if getmetatable(err) == Error then return nil, err.msg end
    error(err, 0)
  end
  return root
end

------------------------------------------------------------------------------
-- Writing
------------------------------------------------------------------------------

-- A Lua table is an array when its keys are exactly 1..n (an empty table too).
local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end
M.is_array = is_array

local function is_table_array(v)
  if type(v) ~= "table" or not is_array(v) or #v == 0 then return false end
  for _, x in ipairs(v) do
    if type(x) ~= "table" or is_array(x) then return false end
  end
  return true
end

local function bare_key(k)
  if k:find("^[A-Za-z0-9_%-]+$") then return k end
  return M.basic_string(k)
end

local SHORT = { ["\b"] = "\\b", ["\t"] = "\\t", ["\n"] = "\\n", ["\f"] = "\\f", ["\r"] = "\\r",
  ['"'] = '\\"', ["\\"] = "\\\\" }

-- "s" with TOML's escapes.
function M.basic_string(s)
  return '"' .. s:gsub('[\0-\31\127"\\]', function(c)
    return SHORT[c] or string.format("\\u%04X", c:byte())
  end) .. '"'
end

local function has_control(s, allow_newline)
  for c in s:gmatch("[\0-\31\127]") do
    if c ~= "\t" and not (allow_newline and c == "\n") then return true end
  end
  return false
end

-- A multi-line string as written: the text between the quotes is the value,
-- read back exactly. literal: prefer '''...''' (no escapes at all).
local function multiline_string(s, literal)
  local lit_ok = not s:find("'''", 1, true) and not has_control(s, true)
  local basic_plain = not s:find('"""', 1, true) and not s:find("\\", 1, true) and not has_control(s, true)
  if literal and lit_ok then return "'''\n" .. s .. "'''" end
  if basic_plain then return '"""\n' .. s .. '"""' end
  if lit_ok then return "'''\n" .. s .. "'''" end
  return '"""\n' .. s:gsub('[\0-\9\11-\31\127"\\]', function(c)
    return SHORT[c] or string.format("\\u%04X", c:byte())
  end) .. '"""'
end

local function float_text(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  local s
  for digits = 15, 17 do
    s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

local inline_value

local function scalar(v, literal)
  local t = type(v)
  if t == "string" then
    if v:find("\n", 1, true) then return multiline_string(v, literal) end
    return M.basic_string(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif math.type(v) == "integer" then
    return string.format("%d", v)
  elseif t == "number" then
    return float_text(v)
  end
  return nil, "cannot write a " .. t .. " value in TOML"
end

function inline_value(v, path)
  if type(v) ~= "table" then
    local s, err = scalar(v)
    if not s then error(path .. ": " .. err, 0) end
    return s
  end
  if is_array(v) then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = inline_value(x, path .. "[" .. i .. "]") end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  local keys = {}
  for k in pairs(v) do
    if type(k) ~= "string" then error(path .. ": a table key must be a string, not a " .. type(k), 0) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = bare_key(k) .. " = " .. inline_value(v[k], path .. "." .. k) end
  if #parts == 0 then return "{}" end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

-- An array value: on one line when short and flat, else one element a line
-- (as Elastic's rule files write tags and field lists).
local function array_value(v, path)
  local parts, flat, len = {}, true, 0
  for i, x in ipairs(v) do
    parts[i] = inline_value(x, path .. "[" .. i .. "]")
    if parts[i]:find("\n", 1, true) or type(x) == "table" then flat = false end
    len = len + #parts[i] + 2
  end
  if #parts == 0 then return "[]" end
  if flat and len <= 80 then return "[" .. table.concat(parts, ", ") .. "]" end
  return "[\n    " .. table.concat(parts, ",\n    ") .. ",\n]"
end

-- opts.order(path, keys) -> keys in the order to write them (path: the
-- table's dotted path, "" for the root); default: sorted. opts.literal(path, key)
-- -> true to write a multi-line string as '''...''' (a query, say).
function M.encode(root, opts)
  opts = opts or {}
  if type(root) ~= "table" or (next(root) ~= nil and is_array(root)) then
    return nil, "toml.encode: the root must be a table with string keys"
  end
  local out = {}
  local function emit(s) out[#out + 1] = s end

  local function order(path, t)
    local keys = {}
    for k in pairs(t) do
      if type(k) ~= "string" then
        error((path == "" and "the root" or path) .. ": a table key must be a string, not a " .. type(k), 0)
      end
      keys[#keys + 1] = k
    end
    if opts.order then return opts.order(path, keys) end
    table.sort(keys)
    return keys
  end

  local function join(path, k) return path == "" and bare_key(k) or (path .. "." .. bare_key(k)) end

  -- A table's own keys, then its sub-tables and arrays of tables as sections.
  local function section(path, t, head)
    local keys = order(path, t)
    local values, subs = {}, {}
    for _, k in ipairs(keys) do
      local v = t[k]
      if type(v) == "table" and (is_table_array(v) or not is_array(v)) then
        subs[#subs + 1] = k
      else
        values[#values + 1] = k
      end
    end
    if head and (#values > 0 or #subs == 0 or head:sub(1, 2) == "[[") then
      if #out > 0 then emit("") end
      emit(head)
    end
    for _, k in ipairs(values) do
      local v = t[k]
      local text
      if type(v) == "table" then
        text = array_value(v, join(path, k))
      else
        local err
        text, err = scalar(v, opts.literal and opts.literal(path, k))
        if not text then error(join(path, k) .. ": " .. err, 0) end
      end
      if type(v) == "string" and text:find("\n", 1, true) and opts.literal and opts.literal(path, k) and #out > 0 then
        emit("")  -- a query stands apart, as in Elastic's files
      end
      emit(bare_key(k) .. " = " .. text)
    end
    for _, k in ipairs(subs) do
      local v, p = t[k], join(path, k)
      if is_array(v) then
        for _, x in ipairs(v) do section(p, x, "[[" .. p .. "]]") end
      else
        section(p, v, "[" .. p .. "]")
      end
    end
  end

  local ok, err = pcall(section, "", root, nil)
  if not ok then return nil, tostring(err) end
  return table.concat(out, "\n") .. "\n"
end

return M
