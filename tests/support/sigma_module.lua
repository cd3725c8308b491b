-- support/sigma_module.lua: a Sigma rule's YAML written as a trailhound rule module, the
-- shape `trailhound import` gives it (README, "Sigma rules"), for the specs. Reads the YAML
-- with lyaml (Debian's lua-yaml); YAML's null, lyaml.null, becomes sigma.NULL.
--
--   local text, rule = sigma_module.convert(yaml_text)   rule: the YAML as lyaml reads it

local lyaml = require "lyaml"

local M = {}

local LEVELS = { informational = { "low", 21 }, low = { "low", 21 }, medium = { "medium", 47 },
  high = { "high", 73 }, critical = { "critical", 99 } }

local KEYWORDS = {}
for k in ("and break do else elseif end false for function goto if in local nil not or repeat return then true " ..
  "until while"):gmatch("%a+") do KEYWORDS[k] = true end

local function is_seq(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" then return false end
    n = n + 1
  end
  return n == #t
end

-- A Lua literal of v (lyaml's value), indented for nested tables; uses_null[1] set when null
-- is written.
local function literal(v, indent, uses_null)
  if v == lyaml.null then
    uses_null[1] = true
    return "sigma.NULL"
  end
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    return string.format("%.17g", v)
  end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then error("no Lua literal for a " .. t) end
  if next(v) == nil then return "{}" end
  local inner = indent .. "  "
  local items = {}
  if is_seq(v) then
    for i, x in ipairs(v) do items[i] = inner .. literal(x, inner, uses_null) end
  else
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local key = (type(k) == "string" and k:find("^[%a_][%w_]*$") and not KEYWORDS[k]) and k
        or ("[" .. literal(k, inner, uses_null) .. "]")
      items[#items + 1] = inner .. key .. " = " .. literal(v[k], inner, uses_null)
    end
  end
  return "{\n" .. table.concat(items, ",\n") .. ",\n" .. indent .. "}"
end

local function list(v)
  if v == nil then return nil end
  if type(v) == "table" then return v end
  return { v }
end

function M.convert(yaml_text)
  local rule = lyaml.load(yaml_text)
  local level = LEVELS[rule.level] or LEVELS.medium
  local uses_null = {}
  local fields = {
    { "rule_id", rule.id }, { "name", rule.title }, { "description", rule.description or rule.title },
    { "severity", level[1] }, { "risk_score", level[2] }, { "author", list(rule.author) },
    { "references", list(rule.references) }, { "tags", list(rule.tags) },
    { "false_positives", list(rule.falsepositives) }, { "license", "DRL-1.1" }, { "language", "sigma" },
    { "sigma", rule },
  }
  local out = {}
  for _, f in ipairs(fields) do
    if f[2] ~= nil then out[#out + 1] = "  " .. f[1] .. " = " .. literal(f[2], "  ", uses_null) .. "," end
  end
  local head = uses_null[1] and 'local sigma = require "sigma"\n\n' or ""
  return head .. "return {\n" .. table.concat(out, "\n") .. "\n}\n", rule
end

return M
