-- render.lua: markdown (an investigation guide) as text for a terminal.
--
--   render.markdown(text, t, width) -> lines     t: a term styler
--   render.dedent(text) -> text                  the common indentation removed
--
-- Headings stay headings (# and ## underlined with =, ### with -, deeper ones
-- bold), list items keep their marker and nesting with a hanging indent,
-- paragraphs are joined and wrapped to width (a line ending in two spaces
-- still breaks), fenced code and tables are kept as written. Inline markup is
-- dropped: `code` and **bold** keep their text (coloured on a terminal), a link
-- reads "text (url)".

local style = require "style"

local M = {}

function M.dedent(text)
  local min
  for line in text:gmatch("[^\n]*") do
    if line:find("%S") then
      local n = #line:match("^[ \t]*")
      if not min or n < min then min = n end
    end
  end
  if not min or min == 0 then return text end
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do out[#out + 1] = line:sub(min + 1) end
  if out[#out] == "" then out[#out] = nil end
  return table.concat(out, "\n")
end

-- Each word of s styled on its own, so wrapping never splits a style.
local function each_word(s, paint)
  return (s:gsub("%S+", paint))
end

-- Inline markup to styled text.
local function inline(s, t)
  local out = {}
  local pos = 1
  while true do
    local a, b, code = s:find("`([^`]+)`", pos)
    local before = s:sub(pos, (a or #s + 1) - 1)
    before = before:gsub("%[([^%]]+)%]%(([^%)%s]+)%)", function(text, url)
      if text == url then return url end
      return text .. " (" .. url .. ")"
    end)
    before = before:gsub("%*%*(.-)%*%*", function(x) return each_word(x, t.bold) end)
    before = before:gsub("__(.-)__", function(x) return each_word(x, t.bold) end)
    out[#out + 1] = before
    if not a then break end
    out[#out + 1] = each_word(code, t.cyan)
    pos = b + 1
  end
  return table.concat(out)
end

-- text wrapped to width, first line after `first`, the others after `rest`.
local function fill(text, first, rest, width, out)
  local lines = style.wrap(text, math.max(20, width - style.len(first)))
  if #lines == 0 then lines = { "" } end
  for i, l in ipairs(lines) do out[#out + 1] = (i == 1 and first or rest) .. l end
end

function M.markdown(text, t, width)
  width = width or 80
  local out = {}
  local para, para_first, para_rest = nil, "", ""
  local function blank()
    if #out > 0 and out[#out] ~= "" then out[#out + 1] = "" end
  end
  local function flush()
    if not para then return end
    for i, seg in ipairs(para) do
      fill(inline(seg, t), i == 1 and para_first or para_rest, para_rest, width, out)
    end
    para = nil
  end
  local function start(first, rest, textline)
    flush()
    para, para_first, para_rest = { textline }, first, rest
  end
  local function continue(textline, hard)
    if para[#para] == nil then para[#para + 1] = "" end
    para[#para] = (para[#para] == "" and "" or para[#para] .. " ") .. textline
    if hard then para[#para + 1] = "" end
  end

  local fence
  local lines = {}
  for line in (M.dedent(text) .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line:gsub("\r$", "") end
  for _, line in ipairs(lines) do
    local hard = line:find("  $") ~= nil
    local body = line:gsub("%s+$", "")
    if fence then
      if body:find("^%s*" .. fence) then
        fence = nil
        blank()
      else
        out[#out + 1] = "    " .. t.dim(line)
      end
    elseif body:find("^%s*```") or body:find("^%s*~~~") then
      flush()
      blank()
      fence = body:match("^%s*(```)") or "~~~"
    elseif body == "" then
      flush()
      blank()
    elseif body:find("^#+%s") then
      flush()
      blank()
      local hashes, title = body:match("^(#+)%s+(.-)%s*#*$")
      title = inline(title, { bold = function(x) return x end, cyan = function(x) return x end })
      local w = 0
      for _, l in ipairs(style.wrap(title, width)) do
        out[#out + 1] = t.bold(l)
        w = math.max(w, style.len(l))
      end
      if #hashes <= 2 then
        out[#out + 1] = string.rep("=", w)
      elseif #hashes == 3 then
        out[#out + 1] = string.rep("-", w)
      end
      out[#out + 1] = ""
    elseif body:find("^%s*|") then
      flush()
      out[#out + 1] = body
    elseif body:find("^%s*[-*_]%s*[-*_]%s*[-*_][-*_%s]*$") and not body:find("%w") then
      flush()
      blank()
      out[#out + 1] = string.rep("-", math.min(width, 40))
      out[#out + 1] = ""
    else
      local indent, marker, rest = body:match("^(%s*)([-*+])%s+(.*)$")
      if not marker then indent, marker, rest = body:match("^(%s*)(%d+[.)])%s+(.*)$") end
      if marker then
        local level = #indent // 2
        local lead = string.rep("  ", level)
        start(lead .. marker .. " ", lead .. string.rep(" ", #marker + 1), rest)
        if hard then para[#para + 1] = "" end
      elseif body:find("^%s*>") then
        local quoted = body:gsub("^%s*>%s?", "")
        if para and para_first == "> " then continue(quoted, hard) else start("> ", "> ", quoted) end
      elseif para then
        continue((body:gsub("^%s+", "")), hard)
      else
        start("", "", (body:gsub("^%s+", "")))
        if hard then para[#para + 1] = "" end
      end
    end
  end
  flush()
  while out[#out] == "" do out[#out] = nil end
  return out
end

return M
