-- End to end: every rule `trailhound import` writes from Elastic's AWS rules and SigmaHQ's
-- CloudTrail rules, replayed over each Stratus Red Team detonation alone, raises the detections a
-- reader of each rule expects there and no others: the pairs of tests/fixtures/stratus-pairs.lua
-- (how they were found, and what `pending` means, is said there).
--
-- Loading some two hundred rules is what a replay costs, so there are few replays:
--  * The rules without state (query, Sigma, EQL) run over all the files at once, their alerts told
--    apart by trailhound.source.path. Files sharing an eventID go to separate replays: an alert's
--    uuid is the rule's id and the eventID, so a second file's alert of the same rule would be a
--    duplicate, written once.
--  * With them run a twin of each new_terms and threshold rule (the same query as a query rule),
--    and a probe (`FIELD: *`) for each field a pending pair waits for from the normalizer.
--  * A new_terms or threshold rule alerts only where its query matches, so each file is replayed
--    alone (its state starting empty, as for that technique alone) with the stateful rules that
--    load and whose twin matched there.
--  * A pair marked pending is skipped while its rule is not loaded ("rule not loaded: FILE:LINE:
--    type 'x' is not supported ...") or its field's probe does not fire on the file; then it is
--    asserted like any other. A pending pair whose rule fires anyway fails: drop the mark.

local cjson = require "cjson"
local th = require "support.th"

local STRATUS = "tests/fixtures/stratus-red-team/"
local SOURCES = { "tests/fixtures/elastic-detection-rules-aws", "tests/fixtures/sigma-cloudtrail" }
local PAIRS = dofile("tests/fixtures/stratus-pairs.lua")
local TYPES = { eql = true, new_terms = true, threshold = true }   -- pending marks of a rule type

local function basename(path) return (path:match("([^/]+)$")) end

local function list(cmd)
  local out = {}
  local p = io.popen(cmd)
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- A pair's pending marks, as a list.
local function marks(pair)
  if pair.pending == nil then return {} end
  return type(pair.pending) == "table" and pair.pending or { pair.pending }
end

-- "rule not loaded: PATH:LINE[:COL]: why" lines -> { [module file name] = why }
local function not_loaded(err)
  local out = {}
  for path, why in err:gmatch("rule not loaded: ([^\n]-%.lua):[%d:]+: ([^\n]*)") do out[basename(path)] = why end
  return out
end

local function module_text(text, kind, name, rule_id)
  return (text:gsub('\n  type = "[%w_]+",', '\n  type = "' .. kind .. '",', 1)
    :gsub('\n  rule_id = "[^"]*"', '\n  rule_id = "' .. rule_id .. '"', 1)
    :gsub('\n  name = "', '\n  name = "' .. name, 1))
end

-- The state of the world the pairs are asserted against, made once.
local world

local function build()
  local w = {
    files = list("ls " .. STRATUS .. "*.json"),
    rules = {},          -- module file name -> { name, type, language, text }
    by_name = {},        -- rule name -> { module file name, ... }
    refused = {},        -- module file name -> why the loader refused it
    got = {},            -- technique file -> { [rule name] = true }
    twin = {},           -- technique file -> { [stateful rule name] = true }: its query matched there
    field = {},          -- technique file -> { [field] = true }: the normalizer produced it there
  }
  for _, f in ipairs(w.files) do
    local b = basename(f)
    w.got[b], w.twin[b], w.field[b] = {}, {}, {}
  end

  local imported = th.tmpdir()
  local out, err, rc = th.run({ "import", "--out", imported, table.unpack(SOURCES) })
  assert.equal(0, rc, err)
  w.import_summary = out:match("([^\n]*)\n?$")
  for _, path in ipairs(list("ls " .. imported .. "/*.lua")) do
    local m = dofile(path)
    local file = basename(path)
    w.rules[file] = { name = m.name, type = m.type, language = m.language, text = th.read(path) }
    w.by_name[m.name] = w.by_name[m.name] or {}
    table.insert(w.by_name[m.name], file)
  end

  -- The folder of rules without state, twins and probes.
  local plain, stateful = th.tmpdir(), {}
  local n = 0
  for _, file in ipairs(sorted_keys(w.rules)) do
    local r = w.rules[file]
    if r.type == "new_terms" or r.type == "threshold" then
      stateful[#stateful + 1] = file
      n = n + 1
      th.write(plain .. "/twin_" .. file,
        module_text(r.text, "query", "twin: ", string.format("00000000-0000-4000-8000-%012d", n)))
    else
      th.write(plain .. "/" .. file, r.text)
    end
  end
  local fields = {}
  for _, list_ in pairs(PAIRS) do
    for _, pair in ipairs(list_) do
      for _, m in ipairs(marks(pair)) do
        local f = m:match("^normalizer: (%S+)$")
        if f then fields[f] = true end
      end
    end
  end
  for i, f in ipairs(sorted_keys(fields)) do
    th.write(string.format("%s/probe_%d.lua", plain, i), string.format(
      'return { rule_id = "00000000-0000-4000-9000-%012d", name = "probe: %s", description = "probe",\n' ..
      '  severity = "low", risk_score = 21, type = "query", language = "kuery", query = [[%s: *]] }\n', i, f, f))
  end

  -- Files in groups that share no eventID.
  local groups = {}
  for _, f in ipairs(w.files) do
    local ids = {}
    local doc = cjson.decode(th.read(f))
    for _, rec in ipairs(doc[1] and doc or { doc }) do ids[#ids + 1] = rec.eventID end
    local home
    for _, g in ipairs(groups) do
      local clash = false
      for _, id in ipairs(ids) do clash = clash or g.ids[id] ~= nil end
      if not clash then home = g break end
    end
    if not home then
      home = { ids = {}, files = {} }
      groups[#groups + 1] = home
    end
    for _, id in ipairs(ids) do home.ids[id] = true end
    home.files[#home.files + 1] = f
  end
  for _, g in ipairs(groups) do
    local o, e, code = th.run({ "replay", "--rules", plain, table.unpack(g.files) })
    assert.equal(0, code, e)
    for file, why in pairs(not_loaded(e)) do w.refused[file] = why end
    for _, a in ipairs(th.alerts(o)) do
      local b, name = basename(a.trailhound.source.path), a.kibana.alert.rule.name
      if name:find("^twin: ") then
        w.twin[b][name:sub(7)] = true
      elseif name:find("^probe: ") then
        w.field[b][name:sub(8)] = true
      else
        w.got[b][name] = true
      end
    end
  end

  -- Which stateful rules load: a replay of nothing.
  local stateful_dir = th.tmpdir()
  for _, file in ipairs(stateful) do th.write(stateful_dir .. "/" .. file, w.rules[file].text) end
  th.write(stateful_dir .. "/empty.json", "")
  local _, e, code = th.run({ "replay", "--rules", stateful_dir, stateful_dir .. "/empty.json" })
  assert.equal(0, code, e)
  for file, why in pairs(not_loaded(e)) do w.refused[file] = why end

  -- Each file alone with the stateful rules that load and whose query matched there.
  for _, f in ipairs(w.files) do
    local b, dir = basename(f), nil
    for _, file in ipairs(stateful) do
      if not w.refused[file] and w.twin[b][w.rules[file].name] then
        dir = dir or th.tmpdir()
        th.write(dir .. "/" .. file, w.rules[file].text)
      end
    end
    if dir then
      local o, e2, code2 = th.run({ "replay", "--rules", dir, f })
      assert.equal(0, code2, e2)
      for _, a in ipairs(th.alerts(o)) do w.got[b][a.kibana.alert.rule.name] = true end
    end
  end
  return w
end

-- Why a pair cannot be asserted yet, or nil.
local function waiting(w, technique, pair)
  local why = {}
  for _, m in ipairs(marks(pair)) do
    if TYPES[m] then
      for _, file in ipairs(w.by_name[pair[1]] or {}) do
        if w.refused[file] then why[#why + 1] = m .. " (" .. w.refused[file] .. ")" break end
      end
    else
      local f = m:match("^normalizer: (%S+)$")
      if not w.field[technique][f] then why[#why + 1] = m .. " (no " .. f .. " on its records)" end
    end
  end
  return #why > 0 and table.concat(why, "; ") or nil
end

describe("Stratus Red Team detonations with every imported rule", function()
  setup(function() world = build() end)
  teardown(th.cleanup)

  it("the pairs name every technique file and existing rules, marked with their rules' own types", function()
    local files = {}
    for _, f in ipairs(world.files) do files[basename(f)] = true end
    assert.same(sorted_keys(files), sorted_keys(PAIRS))
    for technique, list_ in pairs(PAIRS) do
      for _, pair in ipairs(list_) do
        local where = technique .. ": " .. tostring(pair[1])
        assert.is_string(pair[2], where .. ": a reason")
        local modules = world.by_name[pair[1]]
        assert.is_truthy(modules, where .. ": no imported rule has this name")
        for _, m in ipairs(marks(pair)) do
          assert.is_truthy(TYPES[m] or m:match("^normalizer: %S+$"), where .. ": pending " .. tostring(m))
          if TYPES[m] then
            local r = world.rules[modules[1]]
            assert.equal(m, r.type or r.language, where .. ": pending " .. m)
          end
        end
      end
    end
  end)

  it("every imported rule loads, or is refused only for a type not runnable yet", function()
    for _, file in ipairs(sorted_keys(world.refused)) do
      local why = world.refused[file]
      assert.is_truthy(why:find("not supported", 1, true), file .. ": " .. why)
    end
  end)

  for _, technique in ipairs(sorted_keys(PAIRS)) do
    it(technique, function()
      local got = world.got[technique]
      local want, skipped, problems = {}, {}, {}
      for _, pair in ipairs(PAIRS[technique]) do
        local name = pair[1]
        if pair.expect ~= false then
          local why = waiting(world, technique, pair)
          if why then skipped[name] = why else want[name] = pair[2] end
        end
      end
      for _, name in ipairs(sorted_keys(got)) do
        if skipped[name] then
          problems[#problems + 1] = "fires though pending, drop the mark: " .. name .. " [" .. skipped[name] .. "]"
        elseif not want[name] then
          problems[#problems + 1] = "unexpected: " .. name
        end
      end
      for _, name in ipairs(sorted_keys(want)) do
        if not got[name] then problems[#problems + 1] = "missing: " .. name .. " (" .. want[name] .. ")" end
      end
      for _, file in ipairs(sorted_keys(world.refused)) do
        local name = world.rules[file].name
        if want[name] then problems[#problems + 1] = "not loaded, and not marked pending: " .. name end
      end
      assert(#problems == 0, technique .. ":\n  " .. table.concat(problems, "\n  "))
    end)
  end
end)
