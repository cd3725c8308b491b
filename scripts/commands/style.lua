-- style.lua: how the authoring commands write to a terminal.
--
-- Colour only when asked (the caller decides: stdout is a TTY and NO_COLOR is
-- unset or empty, https://no-color.org); the same text with or without it, so
-- what a spec reads from a pipe is what a person sees, less the escapes.
-- Widths count characters (UTF-8), not bytes: guides carry "—" and field
-- values can hold any text.
--
--   local t = style.new(color)      t.red(s) t.green(s) t.yellow(s) t.bold(s) t.dim(s) t.cyan(s)
--   t.mark(ok)                     "✓" (green) or "✗" (red)
--   style.len(s), style.pad(s, n), style.wrap(text, width) -> lines, style.value(v)

local M = {}

local SGR = { bold = "1", dim = "2", red = "31", green = "32", yellow = "33", cyan = "36" }

M.OK, M.FAIL = "✓", "✗"

-- Is colour wanted for a stream that is (or is not) a terminal?
function M.want_color(isatty)
  local no = os.getenv("NO_COLOR")
  return isatty and (no == nil or no == "")
end

function M.new(color)
  local t = { color = color and true or false }
  for name, code in pairs(SGR) do
    if color then
      t[name] = function(s) return "\27[" .. code .. "m" .. s .. "\27[0m" end
    else
      t[name] = function(s) return s end
    end
  end
  function t.mark(ok)
    if ok then return t.green(M.OK) end
    return t.red(M.FAIL)
  end
  return t
end

-- Display width of s: characters, escapes not counted.
function M.len(s)
  s = s:gsub("\27%[[%d;]*m", "")
  return utf8.len(s) or #s
end

-- s padded with spaces to n characters (never cut).
function M.pad(s, n)
  local w = M.len(s)
  if w >= n then return s end
  return s .. string.rep(" ", n - w)
end

-- Words of text filled into lines of at most width characters; a word longer
-- than width gets a line of its own.
function M.wrap(text, width)
  local lines, line, w = {}, nil, 0
  for word in text:gmatch("%S+") do
    local n = M.len(word)
    if line and w + 1 + n <= width then
      line, w = line .. " " .. word, w + 1 + n
    else
      if line then lines[#lines + 1] = line end
      line, w = word, n
    end
  end
  if line then lines[#lines + 1] = line end
  return lines
end

local function is_array(t)
  return rawget(t, 1) ~= nil or next(t) == nil
end

-- A field value as a person reads it: strings quoted, arrays and objects as
-- JSON, nil as (absent). Long values are cut at limit characters.
function M.value(v, limit)
  limit = limit or 200
  local function enc(x)
    local ty = type(x)
    if ty == "string" then
      return '"' .. x:gsub('[\\"]', "\\%0"):gsub("\n", "\\n"):gsub("\t", "\\t") .. '"'
    elseif ty == "number" then
      if math.type(x) == "float" and x == math.floor(x) and x > -2^53 and x < 2^53 then
        return string.format("%d", x)
      end
      return tostring(x)
    elseif ty == "boolean" then
      return tostring(x)
    elseif ty == "table" then
      local parts = {}
      if is_array(x) then
        for i = 1, #x do parts[i] = enc(x[i]) end
        return "[" .. table.concat(parts, ", ") .. "]"
      end
      local keys = {}
      for k in pairs(x) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      for i, k in ipairs(keys) do parts[i] = '"' .. k .. '": ' .. enc(x[k]) end
      return "{" .. table.concat(parts, ", ") .. "}"
    end
    return "null"
  end
  if v == nil then return "(absent)" end
  local s = enc(v)
  if utf8.len(s) and utf8.len(s) > limit then
    s = s:sub(1, utf8.offset(s, limit) - 1) .. "…"
  end
  return s
end

return M
