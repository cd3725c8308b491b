-- yamldoc.lua: YAML documents as lyaml reads them, with the order their
-- mappings write their keys in (a Lua table has none), for the Sigma rules
-- `trailhound import` reads.
--
--   yamldoc.lyaml() -> the lyaml module | nil, message
--   yamldoc.load(text) -> documents, order | nil, "line:col: message"
--     documents: a list, one value per YAML document, as lyaml.load reads it
--     (scalars converted as YAML 1.1 says, null as lyaml.null);
--     order[t]: the keys of the mapping t in the order the document writes them
--
-- lyaml is Debian's lua-yaml (the LibYAML binding). The binary's commands
-- look for Lua modules in its scripts folders only (engine.c, prepare), so
-- lyaml's Lua files are looked for where Debian's and a local install put
-- them; its C part (yaml.so) is on Lua's default C path, which the binary
-- keeps. package.path is restored once lyaml is loaded.

local M = {}

local LUA_DIRS = "/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua;"
  .. "/usr/local/share/lua/5.4/?.lua;/usr/local/share/lua/5.4/?/init.lua"

local lyaml, yaml

function M.lyaml()
  if lyaml then return lyaml end
  local ok, mod = pcall(require, "lyaml")
  if not ok then
    local saved = package.path
    package.path = saved .. ";" .. LUA_DIRS
    ok, mod = pcall(require, "lyaml")
    package.path = saved
  end
  if not ok then
    return nil, "reading Sigma rules needs lyaml, Debian's lua-yaml (apt-get install lua-yaml): "
      .. tostring(mod):match("^[^\n]*")
  end
  lyaml, yaml = mod, require "yaml"
  return lyaml
end

-- The shape of each document from LibYAML's events: a mapping's keys (their
-- text) and the shapes of its values, a sequence's elements' shapes.
local function shapes(text)
  local next_event = yaml.parser(text)
  local node
  function node(e)
    if e.type == "MAPPING_START" then
      local keys, values = {}, {}
      while true do
        local k = next_event()
        if k.type == "MAPPING_END" then return { keys = keys, values = values } end
        local raw = k.type == "SCALAR" and k.value or false
        if raw == false then node(k) end
        keys[#keys + 1] = raw
        values[#keys] = node(next_event()) or false
      end
    elseif e.type == "SEQUENCE_START" then
      local items = {}
      while true do
        local x = next_event()
        if x.type == "SEQUENCE_END" then return { items = items } end
        items[#items + 1] = node(x) or false
      end
    end
    return nil  -- a scalar or an alias
  end
  local docs = {}
  while true do
    local e = next_event()
    if e.type == "STREAM_END" then break end
    if e.type == "DOCUMENT_START" then
      docs[#docs + 1] = node(next_event()) or false
      next_event()  -- DOCUMENT_END
    end
  end
  return docs
end

-- Record in order[v] the keys of each mapping of v as its shape lists them
-- (keys lyaml turned into another type, or merged in with <<, come after).
local function zip(v, shape, order, null)
  if type(v) ~= "table" or v == null or not shape then return end
  if shape.keys then
    if order[v] then return end  -- an alias: seen already
    local list, seen = {}, {}
    for i, raw in ipairs(shape.keys) do
      local k = raw
      if raw and v[raw] == nil then
        k = nil
        for key in pairs(v) do
          if not seen[key] and type(key) ~= "string" and tostring(key) == raw then k = key break end
        end
      end
      if k ~= nil and v[k] ~= nil and not seen[k] then
        seen[k] = true
        list[#list + 1] = k
        zip(v[k], shape.values[i], order, null)
      end
    end
    local rest = {}
    for k in pairs(v) do
      if not seen[k] then rest[#rest + 1] = k end
    end
    table.sort(rest, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(rest) do list[#list + 1] = k end
    order[v] = list
  elseif shape.items then
    for i, s in ipairs(shape.items) do zip(v[i], s, order, null) end
  end
end

function M.load(text)
  local ly, err = M.lyaml()
  if not ly then return nil, err end
  local ok, docs = pcall(ly.load, text, { all = true })
  if not ok then return nil, tostring(docs) end
  local order = {}
  local sok, list = pcall(shapes, text)
  if sok then
    for i, d in ipairs(docs) do zip(d, list[i], order, ly.null) end
  end
  return docs, order
end

return M
