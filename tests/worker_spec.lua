-- worker.lua: a worker's Lua side, driven as engine.c drives it.

local th = require "support.th"
local ev = require "support.events"

local POLICY_PATH = "rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua"
local MODEL_PATH = "rules/aws_bedrock_unauthorized_foundation_model_access_attempt.lua"

local FAILS = table.concat({
  "return {",
  '  rule_id = "11111111-2222-4333-8444-000000000001", name = "Fails",',
  '  description = "d", severity = "low", risk_score = 1,',
  '  match = function(e) error("no " .. e["event.action"]) end,',
  "}", "" }, "\n")

-- A fresh worker module (it keeps its rules and counts in module state),
-- with callbacks that record what it says.
local function fresh(opts)
  package.loaded.worker = nil
  local W = require "worker"
  local said = { alerts = {}, logs = {}, fails = {}, quarantined = {} }
  opts = opts or {}
  opts.emit = function(slot, ts, uuid, severity, line)
    said.alerts[#said.alerts + 1] = { slot = slot, ts = ts, uuid = uuid, severity = severity, line = line }
  end
  opts.log = function(m) said.logs[#said.logs + 1] = m end
  opts.fail = function(slot, load, m) said.fails[#said.fails + 1] = { slot = slot, load = load, msg = m } end
  opts.quarantined = function(slot, load, m)
    said.quarantined[#said.quarantined + 1] = { slot = slot, load = load, msg = m }
  end
  assert(W.init(opts))
  return W, said
end

local function ruleset(extra)
  local list = {
    { slot = 0, path = MODEL_PATH, text = th.read(MODEL_PATH) },
    { slot = 1, path = POLICY_PATH, text = th.read(POLICY_PATH) },
  }
  for _, r in ipairs(extra or {}) do list[#list + 1] = r end
  return list
end

local NORM = { path = "scripts/normalize.lua", text = th.read("scripts/normalize.lua") }

describe("worker", function()
  local dump = string.dump
  local rec
  before_each(function() rec = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "w1")) end)
  after_each(function()
    string.dump = dump  -- luacheck: ignore 122 (worker.init closes it for rules)
    package.loaded.worker = nil
  end)

  it("runs the rules it is handed as text, and emits each alert with its rule's slot and event time", function()
    local W, said = fresh()
    assert.same({}, W.rules(ruleset(), NORM))
    W.record(rec, "ct.ndjson", 0)
    assert.equal(1, #said.alerts)
    assert.equal(1, said.alerts[1].slot)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT", said.alerts[1].ts)
    local a = require("cjson").decode(said.alerts[1].line)
    assert.equal("w1", a.event.id)
    local c = W.counters()
    assert.equal(1, c.records)
    -- Only the rule filed under PutResourcePolicy saw it (ruleindex.lua): the other
    -- requires another event.action.
    assert.same({ { 1, 1, 0, c.rules[1][4] } }, c.rules)
    assert.equal(0, #W.counters().rules)  -- counted once
  end)

  it("emits an alert unbuilt, with its time and uuid alone, in a max_signals window the host said is full", function()
    local W, said = fresh()
    W.rules(ruleset(), NORM)
    W.record(rec, "ct.ndjson", 0)
    local built = said.alerts[1]
    assert.is_true(#built.line > 0)
    local window = math.tointeger(require("esdate").value(built.ts)) // 300000  -- interval 5m
    local id = "2e99477f-6099-48a9-ae0e-68801d97079c"
    W.full(id, 50, 300, window)         -- another max_signals: not this rule's window
    W.full(id, 100, 300, window + 1)    -- another window
    W.full("another-rule", 100, 300, window)
    W.record(rec, "ct.ndjson", 0)
    assert.is_true(#said.alerts[2].line > 0)
    W.full(id, 100, 300, window)
    W.record(rec, "ct.ndjson", 0)
    local light = said.alerts[3]
    assert.same({ slot = 1, ts = built.ts, uuid = built.uuid, severity = built.severity, line = "" }, light)
    -- A record read elsewhere is another alert (its uuid), still unbuilt.
    W.record(ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "w2")), "ct.ndjson", 100)
    assert.equal("", said.alerts[4].line)
    assert.is_not.equal(built.uuid, said.alerts[4].uuid)
    -- A new rule set keeps what the host said: a window only fills.
    W.rules(ruleset(), NORM)
    W.record(rec, "ct.ndjson", 0)
    assert.equal("", said.alerts[5].line)
  end)

  it("dispatches by the rule set of the moment: a rule added, changed or removed counts at the next record", function()
    local W, said = fresh()
    local function mine(action, load)
      return { slot = 2, path = "/tmp/mine.lua", load = load, text = table.concat({
        "return {",
        '  rule_id = "11111111-2222-4333-8444-000000000201", name = "Mine",',
        '  description = "d", severity = "low", risk_score = 1,',
        '  query = [[event.provider: "bedrock.amazonaws.com" and event.action: ' .. action .. ']],',
        "}", "" }, "\n") }
    end
    local function slots()
      local out = {}
      for _, a in ipairs(said.alerts) do out[#out + 1] = a.slot end
      said.alerts = {}
      return out
    end
    W.rules(ruleset(), NORM)
    W.record(rec, "ct.ndjson", 0)
    assert.same({ 1 }, slots())
    W.rules(ruleset({ mine("PutResourcePolicy", 1) }), NORM)  -- added
    W.record(rec, "ct.ndjson", 1)
    assert.same({ 1, 2 }, slots())
    W.rules(ruleset({ mine("DeleteResourcePolicy", 2) }), NORM)  -- changed: another action
    W.record(rec, "ct.ndjson", 2)
    assert.same({ 1 }, slots())
    W.record(ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "w2")), "ct.ndjson", 3)
    assert.same({ 1, 2 }, slots())
    W.rules(ruleset(), NORM)  -- removed
    W.record(ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "w3")), "ct.ndjson", 4)
    assert.same({ 1 }, slots())
  end)

  it("says a rule's failure once per batch, and quarantines it after N failures in a row", function()
    local W, said = fresh({ quarantine_after = 3 })
    W.rules(ruleset({ { slot = 2, path = "/tmp/fails.lua", text = FAILS } }), NORM)
    W.record(rec, "ct.ndjson", 0)
    W.record(rec, "ct.ndjson", 100)
    assert.equal(1, #said.fails)
    assert.equal(2, said.fails[1].slot)
    assert.equal("rule /tmp/fails.lua failed on ct.ndjson:0: /tmp/fails.lua:4: no PutResourcePolicy", said.fails[1].msg)
    W.counters()  -- the end of a batch
    W.record(rec, "ct.ndjson", 200)
    assert.equal(2, #said.fails)
    assert.same({ { slot = 2, load = 0, msg = "rule /tmp/fails.lua quarantined after 3 failures in a row: \"Fails\" " ..
      "no longer runs until /tmp/fails.lua changes (or SIGHUP); the other rules go on" } }, said.quarantined)
    W.record(rec, "ct.ndjson", 300)  -- quarantined: no longer run
    local c = W.counters()
    assert.equal(2, c.records)
    for _, r in ipairs(c.rules) do
      if r[1] == 2 then assert.same({ 2, 1, 1 }, { r[1], r[2], r[3] }) end
    end
    assert.equal(4, #said.alerts)  -- the Bedrock rules went on
  end)

  it("never quarantines with quarantine_after 0", function()
    local W, said = fresh({ quarantine_after = 0 })
    W.rules(ruleset({ { slot = 2, path = "/tmp/fails.lua", text = FAILS } }), NORM)
    for i = 1, 30 do W.record(rec, "ct.ndjson", i) end
    assert.equal(0, #said.quarantined)
  end)

  it("stops running a rule the host quarantines, and runs it again in a new rule set", function()
    local W, said = fresh()
    W.rules(ruleset(), NORM)
    W.quarantine(1)
    W.record(rec, "ct.ndjson", 0)
    assert.equal(0, #said.alerts)
    W.rules(ruleset())
    W.record(rec, "ct.ndjson", 0)
    assert.equal(1, #said.alerts)
  end)

  it("keeps an unchanged rule, and what it holds, across rule sets", function()
    local W = fresh()
    W.rules(ruleset(), NORM)
    local before = W.loaded()[1]
    W.rules(ruleset())
    assert.equal(before, W.loaded()[1])
  end)

  it("reports records that never reached it whole, in order, as malformed", function()
    local W, said = fresh()
    W.rules(ruleset(), NORM)
    W.reject("ct.ndjson", 42, "record longer than --max-line (10 bytes), skipped")
    W.record("{not json", "ct.ndjson", 60)
    assert.same({ "ct.ndjson:42: record longer than --max-line (10 bytes), skipped",
      "ct.ndjson:60: malformed JSON (Expected object key string but found invalid token at character 2), skipped" },
      said.logs)
    assert.equal(2, W.counters().malformed)
  end)

  it("names the rule keeping more than its share of the heap", function()
    local W = fresh()
    W.rules(ruleset(), NORM)
    local owned = { [0] = 10, [1] = 300 * 2 ^ 20 }
    local slot, load, msg = W.pressure(512 * 2 ^ 20, function(s) return owned[s] end)
    assert.equal(1, slot)
    assert.equal(0, load)
    assert.matches("^rule " .. POLICY_PATH:gsub("%p", "%%%0") .. " quarantined: it keeps 300 MiB between calls, " ..
      "more than its share of the worker's heap %(128 MiB of %-%-max%-worker%-memory 512 MiB%)", msg)
    owned[1] = 100 * 2 ^ 20
    assert.is_nil(W.pressure(512 * 2 ^ 20, function(s) return owned[s] end))
  end)

  it("loads a rules folder for the host: what loads, what does not and why, and --rule", function()
    local W = fresh({ only = { "Fails" } })
    local results, fatal = W.load({ { path = MODEL_PATH, text = th.read(MODEL_PATH) },
      { path = "/tmp/fails.lua", text = FAILS }, { path = "/tmp/broken.lua", text = "return {" } })
    assert.is_nil(fatal)
    assert.equal(2, #results)
    assert.same({ path = "/tmp/fails.lua", ok = true, id = "11111111-2222-4333-8444-000000000001", name = "Fails",
      version = "", prefilter = { fields = {} } }, results[1])
    assert.same({ path = "/tmp/broken.lua", ok = false, error = "/tmp/broken.lua:1: unexpected symbol near <eof>" },
      results[2])
    W = fresh({ only = { "Nothing" } })
    local _, why = W.load({ { path = MODEL_PATH, text = th.read(MODEL_PATH) } })
    assert.matches("^%-%-rule Nothing: no loaded rule has that name, rule_id or file name; the rules are:\n" ..
      "  AWS Bedrock Unauthorized Foundation Model Access Attempt %(3d2e8c90", why)
  end)

  it("compiles the rules while the gate does (preload), and does not compile them again for rules()", function()
    local loader = require "loader"
    local real, compiled = loader.load_file, {}
    loader.load_file = function(path, ...)
      compiled[#compiled + 1] = path
      return real(path, ...)
    end
    local ok, err = pcall(function()
      local W, said = fresh()
      local files = ruleset({ { slot = 2, path = "/tmp/broken.lua", text = "return {" } })
      W.preload(files)
      assert.same({ MODEL_PATH, POLICY_PATH, "/tmp/broken.lua" }, compiled)
      assert.same({}, said.logs, "what does not load is the gate's to say")
      compiled = {}
      local list = ruleset()
      list[2].text = list[2].text:gsub("\n  version = 1,", "\n  version = 2,", 1)
      assert.same({}, W.rules(list, NORM))
      assert.same({ POLICY_PATH }, compiled, "only a text other than the one preloaded is compiled")
      assert.equal(2, #W.loaded())
      compiled = {}
      W.rules(ruleset(), NORM)
      assert.same({ POLICY_PATH }, compiled, "a later rules() compiles what changed since, preloaded or not")
    end)
    loader.load_file = real
    assert(ok, err)
  end)

  it("gates changes for the host without swapping them in itself", function()
    local W = fresh()
    W.rules(ruleset(), NORM)
    local text = th.read(POLICY_PATH):gsub("\n  version = 1,", "\n  version = 2,", 1)
    local logs, live, norm = W.gate({ changed = { { path = POLICY_PATH, text = text } } })
    assert.matches("version 2 reloaded from " .. POLICY_PATH:gsub("%p", "%%%0"), logs[1])
    -- With each, what a record it matches holds in its text, for the host's prefilter:
    -- data_stream.dataset is no string of the record's; event.outcome "failure" implies one.
    -- And the raw fields its exact clauses read, which the host reads exactly.
    local function fields(actions)
      return { { path = "errorCode", exclude = false, values = { "AccessDenied", "AccessDeniedException" } },
        { path = "eventName", exclude = false, values = actions },
        { path = "eventSource", exclude = false, values = { "bedrock.amazonaws.com" } } }
    end
    local model = { "PutFoundationModelEntitlement", "PutUseCaseForModelAccess", "CreateFoundationModelAgreement" }
    local policy = { "PutResourcePolicy", "DeleteResourcePolicy" }
    assert.same({ { path = MODEL_PATH, new = false, id = "3d2e8c90-5be7-4a57-9de4-58be75af933f",
      name = "AWS Bedrock Unauthorized Foundation Model Access Attempt", version = "1",
      prefilter = { { "bedrock.amazonaws.com" }, model,
        { "errorCode", "errorMessage", "ConsoleLogin", "failure" }, { "AccessDenied", "AccessDeniedException" },
        fields = fields(model) } },
      { path = POLICY_PATH, new = true, id = "2e99477f-6099-48a9-ae0e-68801d97079c",
        name = "AWS Bedrock Unauthorized Resource-Based Policy Modification Attempt", version = "2",
        prefilter = { { "bedrock.amazonaws.com" }, policy,
          { "errorCode", "errorMessage", "ConsoleLogin", "failure" }, { "AccessDenied", "AccessDeniedException" },
          fields = fields(policy) } } },
      live)
    assert.is_false(norm)
    assert.equal("1", tostring(W.loaded()[2].meta.version))  -- still the running one
  end)
end)
