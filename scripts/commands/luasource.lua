-- luasource.lua: Lua values written as readable Lua source, for the rule
-- modules `trailhound import` writes.
--
--   luasource.string(s) -> a literal that reads back as s
--   luasource.key(k) -> `name` or `["key"]`, for `key = value` in a table
--   luasource.value(v, opts) -> source text of v
--     opts.indent   the indentation of the line v starts on ("" by default)
--     opts.path     where v is ("" by default): the keys from the top joined
--                   with ".", an array's elements as "[]" ("threat[].tactic")
--     opts.order(path, keys, t) -> keys in the order to write them (default:
--                   sorted); keys is the keys of table t
--     opts.special(v) -> source text for a value written otherwise (the
--                   sentinel standing for YAML's null, say), or nil
--     opts.width    the line length a table is kept on one line within (120)
--
-- Text is written as it reads: a string holding a newline, a quote or a
-- backslash goes in
-- long brackets ([[...]], [=[...]=] when it holds "]]", ...), so a guide
-- and a query read as their authors wrote them; a string with a carriage return or another control
-- character (which long brackets would change or hide) is quoted with escapes.
-- A table of scalars that fits on its line stays on it; any other is one key
-- (or element) a line. The same value gives the same text every time.

local M = {}

local KEYWORDS = {}
for w in ([[and break do else elseif end false for function goto if in local nil not or repeat return then
  true until while]]):gmatch("%a+") do
  KEYWORDS[w] = true
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- "s" with escapes; bytes that are not UTF-8 as \xNN too.
local function quoted(s)
  local class = utf8.len(s) and '[%c"\\\127]' or '[%c"\\\127-\255]'
  return '"' .. s:gsub(class, function(c)
    return ESC[c] or string.format("\\x%02X", c:byte())
  end) .. '"'
end

-- Long brackets with the fewest "=" whose closing cannot end the text early.
local function long(s)
  local n = 0
  while true do
    local close = "]" .. string.rep("=", n) .. "]"
    if (s .. close):find(close, 1, true) == #s + 1 then
      local open = "[" .. string.rep("=", n) .. "["
      -- Lua drops a newline right after the opening bracket: give it one to drop.
      if s:find("\n", 1, true) then return open .. "\n" .. s .. close end
      return open .. s .. close
    end
    n = n + 1
  end
end

function M.string(s)
  local awkward = s:gsub("[\n\t]", ""):find("[%c\127]")  -- a CR or another control character
  if not awkward and utf8.len(s) and s:find('[\n"\\]') then return long(s) end
  return quoted(s)
end

local function number(x)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x then return "0 / 0" end
  if x == math.huge then return "math.huge" end
  if x == -math.huge then return "-math.huge" end
  local s
  for digits = 15, 17 do
    s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[%.eEn]") then s = s .. ".0" end
  return s
end

function M.key(k)
  if type(k) == "string" and k:find("^[%a_][%w_]*$") and not KEYWORDS[k] then return k end
  if type(k) == "string" then return "[" .. quoted(k) .. "]" end
  if type(k) == "number" then return "[" .. number(k) .. "]" end
  return "[" .. tostring(k) .. "]"
end

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

-- Keys sorted: numbers first, then strings, then the others by their text.
local RANK = { number = 1, string = 2 }
function M.sorted(keys)
  table.sort(keys, function(a, b)
    local ra, rb = RANK[type(a)] or 3, RANK[type(b)] or 3
    if ra ~= rb then return ra < rb end
    if ra == 3 then return tostring(a) < tostring(b) end
    return a < b
  end)
  return keys
end
local sorted = M.sorted

function M.value(v, opts)
  opts = opts or {}
  local width = opts.width or 120
  local order = opts.order

  local function keys_of(t, path)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    if order then return order(path, keys, t) end
    return sorted(keys)
  end

  local write

  -- The one-line form of a table whose values are all scalars, or nil.
  local function inline(t, path)
    local parts = {}
    if is_array(t) then
      for i, x in ipairs(t) do
        if type(x) == "table" and not (opts.special and opts.special(x)) then return nil end
        parts[i] = write(x, "", path .. "[]")
      end
    else
      for _, k in ipairs(keys_of(t, path)) do
        local x = t[k]
        if type(x) == "table" and not (opts.special and opts.special(x)) then return nil end
        parts[#parts + 1] = M.key(k) .. " = " .. write(x, "", path .. "." .. tostring(k))
      end
    end
    local s = "{ " .. table.concat(parts, ", ") .. " }"
    if s:find("\n", 1, true) then return nil end
    return s
  end

  function write(x, indent, path, room)
    local special = opts.special and opts.special(x)
    if special then return special end
    local ty = type(x)
    if ty == "string" then return M.string(x) end
    if ty == "number" then return number(x) end
    if ty == "boolean" then return tostring(x) end
    if ty ~= "table" then error("luasource: cannot write a " .. ty .. " value (at " .. path .. ")", 0) end
    if next(x) == nil then return "{}" end
    local one = inline(x, path)
    if one and #indent + (room or 0) + utf8.len(one) <= width then return one end
    local inner = indent .. "  "
    local lines = { "{" }
    if is_array(x) then
      for _, e in ipairs(x) do
        lines[#lines + 1] = inner .. write(e, inner, path .. "[]") .. ","
      end
    else
      for _, k in ipairs(keys_of(x, path)) do
        local key = M.key(k)
        local sub = path == "" and tostring(k) or (path .. "." .. tostring(k))
        lines[#lines + 1] = inner .. key .. " = " .. write(x[k], inner, sub, #key + 4) .. ","
      end
    end
    lines[#lines + 1] = indent .. "}"
    return table.concat(lines, "\n")
  end

  return write(v, opts.indent or "", opts.path or "", opts.room)
end

return M
