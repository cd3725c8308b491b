-- reload.lua: the reload gate, run by the gate worker.
--
-- The C host watches the rules folder and the normalizer, reads what changed
-- (a save in place, by rename, by delete and create, or a file moved in from
-- elsewhere are all the same to it, and a `touch` is nothing), and sends the
-- changed texts to the gate worker, which runs apply.
--
-- A new version goes live only through the gate: it compiles, its metadata is
-- valid, its rule_id is its own, and its embedded tests pass (a rule's through
-- the running normalizer; a normalizer's: every test that passes with the
-- running one must pass with it). Otherwise the running version stays and the
-- log says why, at file and line, with the failing test's name. What passes
-- is sent by the host to every worker, which swap it in between two batches.
--
--   local g = reload.new(o)
--     o.normalizer   path of normalize.lua
--     o.limited      thsys.limited (or a stand-in): how rule code is called
--     o.now()        -> seconds (for "live N ms after the save")
--     o.log(msg)     o.rule_log(msg): where a rule's print goes
--     o.current()    -> the running rules (list; rule.src is each one's text), the running
--                       normalizer module
--     o.swap(rules, normalizer)   what would run now (the gate's verdict)
--     o.accept(rule) -> false to leave a rule out (--rule), optional
--     o.step(i)      publish "gate item i in flight" (the host's watchdog), optional
--   g:apply(req)     req.all: every rule reloaded (SIGHUP); req.changed: { { path, text,
--                    mtime (ns) } }; req.removed: paths gone for good; req.missing: paths
--                    gone for a moment (a file with their rule_id takes them over);
--                    req.normalizer: the normalizer's new text, or nil

local loader = require "loader"
local srcpos = require "srcpos"

local M = {}

-- Tests are normalized with a fixed ingest time, as `trailhound test` does.
local CTX = { now = "2024-01-01T00:00:00.000Z" }

local Reloader = {}
Reloader.__index = Reloader

function M.new(o)
  return setmetatable({ o = o }, Reloader)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- A message from any error value, without running a rule's __tostring
-- outside its limits.
local function message(err)
  if type(err) == "string" then return err end
  return "(error object is a " .. type(err) .. " value)"
end

local function ms_since(o, t0) return (o.now() - t0) * 1000 end

local function version(rule)
  local v = rule.meta.version
  return v ~= nil and ("version " .. tostring(v)) or "(no version)"
end

-- ", live 61 ms after the save": from the file's mtime (ns), when it is recent.
local function after_save(o, mtime)
  if not mtime or mtime <= 0 then return "" end
  local ms = (o.now() - mtime / 1e9) * 1000
  if ms < 0 or ms > 60000 then return "" end
  return string.format(", live %.0f ms after the save", ms)
end

-- One embedded test, under the limits. Returns the result { name, ok, err, got, expect }.
function Reloader:run_test(rule, test, i, normalize)
  local ok, results = self.o.limited(nil, loader.run_tests, rule, normalize, { test })
  local r = ok and results[1] or { ok = false, err = message(results) }
  r.name = type(test) == "table" and type(test.name) == "string" and test.name or ("test " .. i)
  return r
end

local function problem(r)
  if r.err then return r.err end
  local function word(v)
    if math.type(v) == "integer" then return v .. (v == 1 and " alert" or " alerts") end
    return v and "a match" or "no match"
  end
  return string.format("expected %s, got %s", word(r.expect), word(r.got))
end

-- "file:line: test "name" failed: why"
local function test_failure(rule, src, test, r)
  local ok, line = pcall(srcpos.test_line, src or "", test)
  return string.format("%s:%s: test \"%s\" failed: %s", rule.file, ok and line or 1, r.name,
    loader.full_path(problem(r), rule.file))
end

local function normalizer_of(mod)
  return function(rec) return mod.normalize(rec, CTX) end
end

-- Every test of a rule; returns the failures as messages and the count run.
function Reloader:test_rule(rule, src, normalize)
  local failures, n = {}, 0
  local tests = rule.meta.tests
  if type(tests) ~= "table" then return failures, 0 end
  for i, test in ipairs(tests) do
    n = n + 1
    local r = self:run_test(rule, test, i, normalize)
    if not r.ok then failures[#failures + 1] = test_failure(rule, src, test, r) end
  end
  return failures, n
end

local function first_of(failures)
  local s = failures[1]
  if #failures > 1 then s = s .. string.format(" (and %d more failing test%s)", #failures - 1,
    #failures == 2 and "" or "s") end
  return s
end

-- The gate of one rule file. Returns the rule and its test count, or nil and why.
function Reloader:gate_rule(path, src, normalize, live)
  local ok, rule, err = self.o.limited(nil, loader.load_file, path, { source = src, log = self.o.rule_log })
  if not ok then return nil, message(rule) end
  if not rule then return nil, err end
  for other_path, other in pairs(live) do
    if other_path ~= path and other.id == rule.id then
      local line = srcpos.key_line(src, "rule_id") or 1
      return nil, string.format("%s:%d: rule_id %s is already used by %s", path, line, rule.id, other_path)
    end
  end
  local failures, n = self:test_rule(rule, src, normalize)
  if #failures > 0 then return nil, first_of(failures) end
  return rule, n
end

-- The gate of a normalizer: it loads, and breaks no test that passes now.
function Reloader:gate_normalizer(src, running, rules)
  local path = self.o.normalizer
  local chunk, err = load(src, "@" .. path, "t")
  if not chunk then return nil, err end
  local ok, mod = self.o.limited(nil, chunk, "normalize", path)
  if not ok then return nil, message(mod) end
  if type(mod) ~= "table" or type(mod.normalize) ~= "function" then
    return nil, path .. ":1: the normalizer must return a table with a normalize function"
  end
  local old, new = normalizer_of(running), normalizer_of(mod)
  local failures, n = {}, 0
  for _, rule in ipairs(rules) do
    if rule.match and type(rule.meta.tests) == "table" then
      local rsrc = rule.src
      for i, test in ipairs(rule.meta.tests) do
        if self:run_test(rule, test, i, old).ok then
          n = n + 1
          local r = self:run_test(rule, test, i, new)
          if not r.ok then failures[#failures + 1] = test_failure(rule, rsrc, test, r) end
        end
      end
    end
  end
  if #failures > 0 then return nil, "with it, " .. first_of(failures) end
  return mod, n
end

-- Run the gate over a request (see the top of this file) and hand the
-- verdict to o.swap.
function Reloader:apply(req)
  local o = self.o
  local rules, normalize = o.current()
  local live = {}
  for _, r in ipairs(rules) do live[r.file] = r end
  local missing = {}
  for _, p in ipairs(req.missing or {}) do missing[p] = true end
  local all = req.all
  local function take_out(path, why)
    local r = live[path]
    if r then
      live[path] = nil
      o.log(string.format("rule \"%s\" %s removed: %s", r.name, version(r), why))
    end
  end
  local step = o.step or function() end

  if req.normalizer then
    step(0)
    local t0 = o.now()
    local mod, res = self:gate_normalizer(req.normalizer, normalize, rules)
    if mod then
      normalize = mod
      o.log(string.format("normalizer %s reloaded in %.1f ms, %d test%s of the rules still pass%s",
        o.normalizer, ms_since(o, t0), res, res == 1 and "" or "s",
        all and "" or after_save(o, req.normalizer_mtime)))
    else
      o.log(string.format("normalizer not reloaded: %s; the running version stays", res))
    end
  end

  for _, path in ipairs(req.removed or {}) do take_out(path, path .. " is gone") end

  local test_with = normalizer_of(normalize)
  for i, change in ipairs(req.changed or {}) do
    step(i)
    local path, src = change.path, change.text
    local t0 = o.now()
    local old = live[path]
    -- A rule whose file is missing gives way to a file with its rule_id.
    local others = {}
    for p, r in pairs(live) do
      if not missing[p] then others[p] = r end
    end
    local rule, res = self:gate_rule(path, src, test_with, others)
    if rule then
      rule.src = src
      for p in pairs(missing) do
        if live[p] and live[p].id == rule.id then
          take_out(p, string.format("%s is gone, %s has its rule_id", p, path))
        end
      end
    end
    if rule and o.accept and not o.accept(rule) then  -- luacheck: ignore 542
      -- not among the rules asked for (--rule): nothing to say
    elseif rule then
      live[path] = rule
      o.log(string.format("rule \"%s\" %s %s from %s in %.1f ms, %s%s", rule.name, version(rule),
        old and "reloaded" or "added", path, ms_since(o, t0),
        res == 0 and "no tests to run" or string.format("%d test%s passed", res, res == 1 and "" or "s"),
        all and "" or after_save(o, change.mtime)))
    else
      o.log(string.format("%s; %s", res, old and string.format("the running \"%s\" %s stays", old.name, version(old))
        or "not loaded"))
    end
  end

  local list = {}
  for _, path in ipairs(sorted_keys(live)) do list[#list + 1] = live[path] end
  o.swap(list, normalize)
end

return M
