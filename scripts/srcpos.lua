-- srcpos.lua: where things are written in a rule file's source, for messages
-- that point at a line. Used by the reload gate (in the workers) and by the
-- authoring commands (check, test).
--
--   srcpos.key_line(src, key) -> line of `key =` in the rule's table (1 if absent)
--   srcpos.value_line(src, value) -> line of the quoted string value, or nil
--   srcpos.line_of(src, text) -> line of the first occurrence of text, or nil
--   srcpos.test_line(src, test) -> line of an embedded test (by its name), else of `tests =`

local M = {}

-- Where the rule's table starts: its keys are looked for after it, not in
-- the helper code above it.
local function body_start(src)
  local last = 1
  for at in src:gmatch("()\nreturn%s*{") do last = at end
  if src:find("^return%s*{") then last = 1 end
  return last
end

local function line_at(src, pos)
  local _, n = src:sub(1, pos - 1):gsub("\n", "")
  return n + 1
end

function M.key_line(src, key)
  local _, _, at = src:find("[\n{,]%s*()" .. key .. "%s*=", body_start(src))
  if not at then return 1 end
  return line_at(src, at)
end

function M.value_line(src, value)
  local base = body_start(src)
  for _, q in ipairs({ '"', "'" }) do
    local at = src:find(q .. value .. q, base, true)
    if at then return line_at(src, at) end
  end
  return nil
end

function M.line_of(src, text)
  local at = src and src:find(text, 1, true)
  if not at then return nil end
  return line_at(src, at)
end

function M.test_line(src, test)
  if type(test) == "table" and type(test.name) == "string" then
    local l = M.value_line(src, test.name) or M.line_of(src, test.name)
    if l then return l end
  end
  return M.key_line(src, "tests")
end

return M
