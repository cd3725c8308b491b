-- export.lua: `trailhound export RULE`, a rule module back to Elastic's TOML.
--
--   export.toml(mod) -> text | nil, why     mod: the table a rule module returns
--   export.find(arg, dir) -> path | nil, message
--                      a file, or a module of dir by file name, rule_id (or its
--                      first 8 characters) or name
--   export.load(path) -> mod | nil, message
--
-- The TOML is laid out as Elastic's rule files are: [metadata] (the module's
-- metadata), then [rule] with every other key of the module but its tests,
-- sorted, the query last, its tables and arrays of tables after;
-- investigation_fields, which a module holds as a list, goes back under
-- field_names, and a module's transform back to a top-level [transform]. So
-- importing a rule and exporting it gives back the same fields. A module is
-- read as the rule sandbox runs it, without the loader's checks: a rule of a
-- type that does not run here yet exports too. A Lua match function, or a
-- Sigma rule, cannot be written as an Elastic rule: an error says so.

local toml = require "toml"
local import = require "import"
local ruleset = require "ruleset"
local loader = require "loader"

local M = {}

-- Keys of a module that are top-level tables of an Elastic rule file.
local TOP_LEVEL = { metadata = true, transform = true }
-- Keys of a module that are trailhound's own.
local OWN = { tests = true }

local function order(path, keys)
  table.sort(keys, function(a, b)
    if path == "" then  -- [metadata], [rule], then the others
      local rank = { metadata = 1, rule = 2 }
      local ra, rb = rank[a] or 3, rank[b] or 3
      if ra ~= rb then return ra < rb end
    elseif path == "rule" and (a == "query" or b == "query") then
      return b == "query"
    end
    return a < b
  end)
  return keys
end

function M.toml(mod)
  if type(mod) ~= "table" then return nil, "the module does not return a table" end
  if mod.language == "sigma" or mod.sigma ~= nil then
    return nil, "a Sigma rule (language sigma): it is not an Elastic rule, and its own YAML is under `sigma`"
  end
  if mod.match ~= nil then
    return nil, "it has a Lua match function, which an Elastic rule cannot hold: not exported"
  end
  local root, rule = {}, {}
  root.rule = rule
  for k, v in pairs(mod) do
    if type(k) ~= "string" then return nil, "a key of the rule is not a string: " .. tostring(k) end
    if TOP_LEVEL[k] then
      root[k] = v
    elseif not OWN[k] then
      rule[k] = v
    end
  end
  local inv = rule.investigation_fields
  if type(inv) == "table" and toml.is_array(inv) and #inv > 0 then
    rule.investigation_fields = { field_names = inv }
  end
  return toml.encode(root, { order = order, literal = function(path, k) return path == "rule" and k == "query" end })
end

local function is_file(p) return ruleset.exists(p) and not ruleset.is_dir(p) end

function M.load(path)
  local text = ruleset.source(path)
  if not text then return nil, path .. ": cannot read it" end
  local mod, err = import.evaluate(path, text)
  if not mod then return nil, loader.full_path(tostring(err), path) end
  return mod
end

function M.find(arg, dir)
  if is_file(arg) then return arg end
  if ruleset.is_dir(arg) then return nil, arg .. ": a directory; name one rule file" end
  for _, p in ipairs({ dir .. "/" .. arg, dir .. "/" .. arg .. ".lua" }) do
    if is_file(p) then return p end
  end
  for _, p in ipairs(ruleset.list(dir)) do
    local mod = M.load(p)
    if type(mod) == "table" and (mod.rule_id == arg or mod.name == arg
        or (#arg >= 8 and type(mod.rule_id) == "string" and mod.rule_id:sub(1, #arg) == arg)) then
      return p
    end
  end
  return nil, string.format("%s: no such rule file, and no rule in %s has this file name, rule_id or name", arg, dir)
end

return M
