-- sandbox.lua: the environment a rule runs in.
--
-- Each rule gets a fresh environment built from an allow-list (DESIGN.md,
-- "The sandbox"): the basic functions, copies of string (without dump),
-- table, math and utf8, and os.time/os.date/os.clock. Everything else a rule
-- might reach for (io, the rest of os, package, require, debug, load of binary
-- chunks, collectgarbage) is there only as a function that raises
-- "blocked: NAME", so the rule author learns what happened. require gives one
-- helper module, "sigma" (its NULL, for Sigma rules), and blocks any other.
-- Instruction and memory limits come from the C host (issue: sandbox limits).

local M = {}

local has_sys, sys = pcall(require, "thsys")
local HOLE = has_sys and sys.hole or nil

local BASIC = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "rawlen",
  "rawset", "select", "tonumber", "tostring", "type", "xpcall",
}

-- The host's own scripts: an error is raised at the first frame outside them.
local SCRIPTS = debug.getinfo(1, "S").source:match("^@(.*/)") or "\0"

-- Raise msg at the rule's line that called for it: the first frame of rule
-- code above the caller. A call in tail position (`return io.open(p)`) has
-- no such frame left; then the message names the rule file.
local function raise(file, msg)
  for level = 3, 64 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    local src = info.source
    if info.currentline > 0 and src:sub(1, 1) == "@" and src:sub(2, #SCRIPTS + 1) ~= SCRIPTS then
      error(src:sub(2) .. ":" .. info.currentline .. ": " .. msg, 0)
    end
  end
  error((file and (file .. ": ") or "") .. msg, 0)
end

local function blocked(name, file)
  return function() raise(file, "blocked: " .. name) end
end

-- A table whose every field is a blocked function named after it.
local function blocked_library(lib, allowed, file)
  local t = {}
  for k, v in pairs(allowed or {}) do t[k] = v end
  return setmetatable(t, { __index = function(_, k) return blocked(lib .. "." .. tostring(k), file) end })
end

local function copy(t, except)
  local c = {}
  for k, v in pairs(t) do
    if not (except and except[k]) then c[k] = v end
  end
  return c
end

-- Build a new environment. `name` is the rule file (for print and errors),
-- `log` a function that writes a line on stderr.
function M.env(name, log)
  local env = {}
  for _, k in ipairs(BASIC) do env[k] = _G[k] end
  env._VERSION = _VERSION

  local str = copy(string, { dump = true })
  str.dump = blocked("string.dump", name)
  env.string = str
  env.table = copy(table)
  -- One generator serves the whole host: a rule may draw from it, not reseed it.
  env.math = copy(math, { randomseed = true })
  env.math.randomseed = blocked("math.randomseed", name)
  env.utf8 = copy(utf8)
  env.os = blocked_library("os", { time = os.time, date = os.date, clock = os.clock }, name)
  env.io = blocked_library("io", nil, name)
  env.debug = blocked_library("debug", nil, name)
  env.package = blocked_library("package", nil, name)
  -- The one helper module a rule may require: "sigma", for sigma.NULL (Sigma's null in a
  -- rule's sigma table). Each rule gets its own copy of the little it needs.
  env.require = function(mod)
    if mod == "sigma" then return { NULL = require("sigma").NULL } end
    raise(name, "blocked: require" .. (type(mod) == "string" and (" \"" .. mod .. "\"") or "") ..
      " (a rule may require \"sigma\" only)")
  end
  env.dofile = blocked("dofile", name)
  env.loadfile = blocked("loadfile", name)
  env.collectgarbage = blocked("collectgarbage", name)

  env.setmetatable = function(t, mt)
    -- Only tables: the metatables of other types are shared by the whole host.
    if type(t) ~= "table" then raise(name, "blocked: setmetatable on a " .. type(t) .. " value") end
    -- A finalizer would run later, outside the rule's call and its limits.
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then raise(name, "blocked: __gc metamethod") end
    return setmetatable(t, mt)
  end
  -- The string metatable is shared by every string in the host: hand out
  -- metatables of tables only.
  env.getmetatable = function(v)
    if type(v) ~= "table" then return nil end
    return getmetatable(v)
  end
  -- Text chunks only, and by default in the rule's own environment.
  env.load = function(chunk, chunkname, mode, e)
    if mode ~= nil and mode ~= "t" then raise(name, "blocked: load of binary chunks") end
    return load(chunk, chunkname, "t", e or env)
  end
  -- Alerts own stdout: a rule's print goes to stderr, named.
  env.print = function(...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    if log then log(name .. ": " .. table.concat(parts, "\t", 1, parts.n)) end
  end
  -- The test build's deliberate hole (engine.c, TH_TEST_HOLE): nil everywhere else.
  if HOLE then env.hole = HOLE end
  env._G = env
  return env
end

return M
