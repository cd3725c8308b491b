-- host.lua: how a failing rule is reported, quarantined and counted.

local th = require "support.th"
local ev = require "support.events"

-- A fresh host module: it keeps its rules and counts in module state.
local function fresh_host()
  package.loaded.host = nil
  return require "host"
end

local FAILS = table.concat({
  "return {",
  '  rule_id = "11111111-2222-4333-8444-000000000001", name = "Fails",',
  '  description = "d", severity = "low", risk_score = 1,',
  '  match = function(e) error("no " .. e["event.action"]) end,',
  "}", "" }, "\n")

describe("host", function()
  local H, logs, t, rec
  local function start(quarantine_after)
    local d = th.tmpdir()
    os.execute("cp rules/*.lua " .. th.quote(d))
    th.write(d .. "/fails.lua", FAILS)
    H = fresh_host()
    logs, t = {}, 0
    assert(H.init({ rules = d, quarantine_after = quarantine_after, clock = function() return t end,
      log = function(m) logs[#logs + 1] = m end, emit = function() return true end }))
    return d
  end
  local function reports()
    local n = {}
    for _, m in ipairs(logs) do
      if m:find("fails.lua failed on", 1, true) then n[#n + 1] = m end
    end
    return n
  end
  local dump = string.dump
  before_each(function() rec = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "h1")) end)
  after_each(function()
    string.dump = dump  -- luacheck: ignore 122 (host.init closes it for rules)
    package.loaded.host = nil
    th.cleanup()
  end)

  it("reports a failing rule at most once a minute, with file and line, and how many failures it skipped", function()
    local d = start(0)
    for i = 0, 12 do
      t = i * 10  -- an event every 10 s for two minutes
      H.record(rec, "ct.ndjson", i * 100)
    end
    local r = reports()
    assert.equal(3, #r)  -- at 0 s, 60 s and 120 s
    assert.equal("rule " .. d .. "/fails.lua failed on ct.ndjson:0: " .. d .. "/fails.lua:4: no PutResourcePolicy " ..
      "(further failures are counted, and reported at most once a minute)", r[1])
    assert.matches("failed on ct.ndjson:600: .* %(5 more failures since the last report; reported at most once " ..
      "a minute%)$", r[2])
    local _, per_rule = H.stats()
    local errors = 0
    for _, pr in pairs(per_rule) do errors = errors + pr.errors end
    assert.equal(13, errors)
  end)

  it("quarantines a rule after N failures in a row; a success in between starts the count again", function()
    local d = start(3)
    for i = 1, 5 do H.record(rec, "ct.ndjson", i) end
    local q = {}
    for _, m in ipairs(logs) do if m:find("quarantined", 1, true) then q[#q + 1] = m end end
    assert.same({ "rule " .. d .. "/fails.lua quarantined after 3 failures in a row: \"Fails\" no longer runs until " ..
      d .. "/fails.lua changes (or SIGHUP); the other rules go on" }, q)
    local text = H.statistics({ { path = "ct.ndjson", offset = 400, size = 1000 } })
    assert.matches("\n%s+3%s+0%s+3%s+[%d.]+%s+quarantined%s+Fails\n", text)
    assert.matches("\n%s+5%s+5%s+0%s+[%d.]+%s+running%s+AWS Bedrock Unauthorized Resource", text)
    assert.matches("\n%s+400%s+1000%s+600%s+ct.ndjson\n", text)
    assert.matches("^trailhound: statistics after %d+ s: 5 records, 0 malformed, 5 alerts", text)
  end)

  it("never quarantines with quarantine_after 0", function()
    start(0)
    for i = 1, 30 do H.record(rec, "ct.ndjson", i) end
    for _, m in ipairs(logs) do assert.not_matches("quarantined", m, 1, true) end
  end)
end)
