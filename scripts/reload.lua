-- reload.lua: rules and the normalizer, changed while the host runs.
--
-- The C host watches the rules folder and the normalizer's folder and calls
-- host.reload (which calls scan) after a burst of file events has settled,
-- on every periodic check, and on SIGHUP. A change is found by the files'
-- text, so a save in place, by rename, by delete and create, or a file moved
-- in from elsewhere are all the same to it, and a `touch` is nothing.
--
-- A new version goes live only through the gate: it compiles, its metadata is
-- valid, its rule_id is its own, and its embedded tests pass (a rule's through
-- the running normalizer; a normalizer's: every test that passes with the
-- running one must pass with it). Otherwise the running version stays and the
-- log says why, at file and line, with the failing test's name. What passes
-- is swapped in by one assignment in the host, between two events.
--
--   local r = reload.new(o)
--     o.dir          the rules folder        o.normalizer  path of normalize.lua
--     o.fs           { list(dir) -> names | nil, message;  read(path) -> text | nil;
--                      stat(path) -> { mtime (ns) } | nil;  now() -> seconds }
--     o.limited      thsys.limited (or a stand-in): how rule code is called
--     o.log(msg)     o.rule_log(msg): where a rule's print goes
--     o.current()    -> the running rules (list), the running normalizer module
--     o.swap(rules, normalizer)   make these the running ones
--     o.accept(rule) -> false to leave a rule out (replay's --rule), optional
--   r:prime()              remember what the files hold now (call before loading them)
--   r:scan(all, settled)   -> milliseconds to look again (a change still being
--                            written), or 0. all: reload every rule, changed or
--                            not, and take out deleted ones at once (SIGHUP);
--                            settled: the files have had no events for a while.

local loader = require "loader"
local srcpos = require "srcpos"

local M = {}

-- A change seen without file events (the periodic check) is loaded once the
-- file has held still for this long; with events, the C host waits as long
-- after the last one.
M.SETTLE_MS = 50
-- A rule file that disappears is taken out once it has been gone this long:
-- an editor that deletes and re-creates must not open a gap in detection. A
-- file that shows up meanwhile with the same rule_id (a rename) replaces it
-- at once.
M.GONE_MS = 500

-- Tests are normalized with a fixed ingest time, as `trailhound test` does.
local CTX = { now = "2024-01-01T00:00:00.000Z" }

local Reloader = {}
Reloader.__index = Reloader

function M.new(o)
  return setmetatable({
    o = o,
    seen = {},        -- path -> text of the version last considered (live or refused)
    seen_norm = nil,  -- text of the normalizer last considered
    pending = {},     -- path -> text seen by a check that was not settled
    gone_since = {},  -- path -> when a live rule's file was first seen missing
    missing_dir = false,
  }, Reloader)
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- path -> text of every rule file now; nil and a message if the folder
-- cannot be listed.
function Reloader:files()
  local names, err = self.o.fs.list(self.o.dir)
  if not names then return nil, err end
  local files = {}
  for _, name in ipairs(names) do
    if loader.is_rule_file(name) then
      local path = self.o.dir .. "/" .. name
      local text = self.o.fs.read(path)
      if text then files[path] = text end  -- gone since the listing: as if never there
    end
  end
  return files
end

function Reloader:prime()
  self.seen = self:files() or {}
  self.seen_norm = self.o.fs.read(self.o.normalizer)
end

-- A message from any error value, without running a rule's __tostring
-- outside its limits.
local function message(err)
  if type(err) == "string" then return err end
  return "(error object is a " .. type(err) .. " value)"
end

local function ms_since(fs, t0) return (fs.now() - t0) * 1000 end

local function version(rule)
  local v = rule.meta.version
  return v ~= nil and ("version " .. tostring(v)) or "(no version)"
end

-- " (live 61 ms after the save)": from the file's mtime, when it is recent.
local function after_save(fs, path)
  local st = fs.stat(path)
  if not st or not st.mtime then return "" end
  local ms = (fs.now() - st.mtime / 1e9) * 1000
  if ms < 0 or ms > 60000 then return "" end
  return string.format(", live %.0f ms after the save", ms)
end

-- One embedded test, under the limits. Returns the result { name, ok, err, got, expect }.
function Reloader:run_test(rule, test, i, normalize)
  local one = { meta = { tests = { test } }, match = rule.match }
  local ok, results = self.o.limited(nil, loader.run_tests, one, normalize)
  local r = ok and results[1] or { ok = false, err = message(results) }
  r.name = type(test) == "table" and type(test.name) == "string" and test.name or ("test " .. i)
  return r
end

local function problem(r)
  if r.err then return r.err end
  local function word(v) return v and "a match" or "no match" end
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
      local rsrc = self.seen[rule.file]
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

-- Apply the changes found by scan. removed: files gone long enough; missing:
-- files gone, not yet for long (path -> true).
function Reloader:apply(changed, removed, missing, norm_src, files, all)
  local o, fs = self.o, self.o.fs
  local rules, normalize = o.current()
  local live = {}
  for _, r in ipairs(rules) do live[r.file] = r end
  local started = fs.now()
  local function take_out(path, why)
    local r = live[path]
    if r then
      live[path] = nil
      o.log(string.format("rule \"%s\" %s removed: %s", r.name, version(r), why))
    end
    self.seen[path], self.gone_since[path] = nil, nil
  end

  if norm_src then
    local t0 = fs.now()
    local mod, res = self:gate_normalizer(norm_src, normalize, rules)
    self.seen_norm = norm_src
    if mod then
      normalize = mod
      o.log(string.format("normalizer %s reloaded in %.1f ms, %d test%s of the rules still pass%s",
        o.normalizer, ms_since(fs, t0), res, res == 1 and "" or "s", all and "" or after_save(fs, o.normalizer)))
    else
      o.log(string.format("normalizer not reloaded: %s; the running version stays", res))
    end
  end

  for _, path in ipairs(removed) do take_out(path, path .. " is gone") end

  local test_with = normalizer_of(normalize)
  for _, path in ipairs(changed) do
    local src = files[path]
    local t0 = fs.now()
    local old = live[path]
    -- A rule whose file is missing gives way to a file with its rule_id.
    local others = {}
    for p, r in pairs(live) do
      if not missing[p] then others[p] = r end
    end
    local rule, res = self:gate_rule(path, src, test_with, others)
    if rule then
      for p in pairs(missing) do
        if live[p] and live[p].id == rule.id then
          take_out(p, string.format("%s is gone, %s has its rule_id", p, path))
        end
      end
    end
    self.seen[path] = src
    if rule and o.accept and not o.accept(rule) then  -- luacheck: ignore 542
      -- not among the rules asked for (--rule): nothing to say
    elseif rule then
      live[path] = rule
      o.log(string.format("rule \"%s\" %s %s from %s in %.1f ms, %s%s", rule.name, version(rule),
        old and "reloaded" or "added", path, ms_since(fs, t0),
        res == 0 and "no tests to run" or string.format("%d test%s passed", res, res == 1 and "" or "s"),
        all and "" or after_save(fs, path)))
    else
      o.log(string.format("%s; %s", res, old and string.format("the running \"%s\" %s stays", old.name, version(old))
        or "not loaded"))
    end
  end

  local list = {}
  for _, path in ipairs(sorted_keys(live)) do list[#list + 1] = live[path] end
  o.swap(list, normalize)
  return ms_since(fs, started)
end

function Reloader:scan(all, settled)
  local o = self.o
  local files, err = self:files()
  if not files then
    if not self.missing_dir then
      o.log(string.format("rules folder %s; the running rules stay", tostring(err)))
      self.missing_dir = true
    end
    return 0
  end
  if self.missing_dir then
    o.log(string.format("rules folder %s is back", o.dir))
    self.missing_dir = false
  end

  local changed, removed, missing, wait = {}, {}, {}, 0
  for _, path in ipairs(sorted_keys(files)) do
    if all or self.seen[path] ~= files[path] then changed[#changed + 1] = path end
    self.gone_since[path] = nil
  end
  local now = o.fs.now()
  for _, path in ipairs(sorted_keys(self.seen)) do
    if files[path] == nil then
      local since = self.gone_since[path] or now
      self.gone_since[path] = since
      local left = M.GONE_MS - (now - since) * 1000
      if all or left <= 0 then
        removed[#removed + 1] = path
      else
        missing[path] = true
        wait = math.max(wait, math.ceil(left))
      end
    end
  end
  -- The normalizer only when its text changed, SIGHUP or not: the one the
  -- host started with runs faster, without limits (host.lua).
  local norm = o.fs.read(o.normalizer)
  local norm_changed = norm ~= nil and norm ~= self.seen_norm

  if #changed == 0 and #removed == 0 and not norm_changed then
    self.pending = {}
    return wait
  end
  -- Without events to say the writing is over, a change must hold still
  -- between two looks before it is loaded.
  if not all and not settled then
    local stable = true
    local look = { [o.normalizer] = norm_changed and norm or nil }
    for _, p in ipairs(changed) do look[p] = files[p] end
    for _, p in ipairs(removed) do look[p] = false end
    for p, v in pairs(look) do
      if self.pending[p] ~= v then stable = false end
    end
    if not stable then
      self.pending = look
      return M.SETTLE_MS
    end
  end
  self.pending = {}
  self:apply(changed, removed, missing, norm_changed and norm or nil, files, all)
  -- Look again when a missing file's time is up, unless a rename took it over.
  for p in pairs(missing) do
    if self.seen[p] ~= nil then return wait end
  end
  return 0
end

return M
