-- End to end: `trailhound run` while analysts change its rules and its
-- normalizer. Real files saved the ways editors save them, real signals,
-- events flowing all along.

local th = require "support.th"
local ev = require "support.events"

local POLICY_FILE = "aws_bedrock_unauthorized_resource_policy_modification_attempt.lua"
local POLICY_SRC = th.read("rules/" .. POLICY_FILE)

-- The policy rule at another version (and other changes: pairs of text, new text).
local function policy(version, ...)
  local src = POLICY_SRC:gsub("\n  version = 1,", "\n  version = " .. version .. ",", 1)
  local subs = { ... }
  for i = 1, #subs, 2 do src = src:gsub(subs[i], subs[i + 1], 1) end
  return src
end

local function rules_copy()
  local d = th.tmpdir() .. "/rules"
  os.execute("mkdir -p " .. th.quote(d) .. " && cp rules/*.lua " .. th.quote(d))
  return d
end

-- Wait for text on stderr after position from; returns the position after it.
local function logged(h, text, from, timeout)
  local at
  th.wait_for(function()
    at = select(2, h.err():find(text, from or 1, true))
    return at
  end, timeout or 5)
  assert.truthy(at, "not logged: " .. text .. "\n--- stderr:\n" .. h.err())
  return at + 1
end

local function line(id, action) return ev.line(ev.denied(action or "PutResourcePolicy", "AccessDenied", id)) end

local function writer(path, n, pause) th.writer(path, n, "append", 0, pause) end

local function start(d, f, extra)
  local args = { "run", "--no-state", "--rules", d, "--poll", "50" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  args[#args + 1] = f
  local h = th.start(args)
  logged(h, "rules loaded")
  return h
end

describe("trailhound run, reloading", function()
  local h
  after_each(th.cleanup)  -- stops the hosts started too

  it("sees a rule saved in place, renamed into place, deleted and re-created, and moved in from elsewhere",
    function()
    local d = rules_copy()
    local p = d .. "/" .. POLICY_FILE
    local f = th.tmpdir() .. "/ct.ndjson"
    th.write(f, "")
    h = start(d, f)
    local at = 1
    local name = '"' .. ev.POLICY .. '"'

    th.write(p, policy(2))                                      -- in place
    at = logged(h, name .. " version 2 reloaded from " .. p .. " in ", at)
    th.write(p .. ".new", policy(3))                            -- a temporary file renamed into place
    os.rename(p .. ".new", p)
    at = logged(h, name .. " version 3 reloaded from " .. p, at)
    os.remove(p)                                                -- deleted and re-created
    th.write(p, policy(4))
    at = logged(h, name .. " version 4 reloaded from " .. p, at)
    local elsewhere = th.tmpdir() .. "/policy.lua"              -- moved in from elsewhere
    th.write(elsewhere, policy(5))
    os.execute("mv " .. th.quote(elsewhere) .. " " .. th.quote(p))
    logged(h, name .. " version 5 reloaded from " .. p, at)

    th.append(f, line("v5"))
    assert.truthy(th.wait_for(function() return h.count() >= 1 end))
    assert.equal(5, th.alerts(h.out())[1].kibana.alert.rule.version)
    -- Each reload says how long it took and how long after the save it was live.
    assert.matches("version 5 reloaded from [^\n]+ in %d+%.%d ms, 11 tests passed, live %d+ ms after the save",
      h.err())
    assert.not_matches("removed", h.err(), 1, true)  -- delete and re-create left no gap
  end)

  it("keeps the running version when the new one does not compile, fails a test or takes a rule_id, and says why",
    function()
    local d = rules_copy()
    local p = d .. "/" .. POLICY_FILE
    local f = th.tmpdir() .. "/ct.ndjson"
    th.write(f, "")
    h = start(d, f)
    local stays = '; the running "' .. ev.POLICY .. '" version 1 stays'

    th.write(p, policy(2, "\n  version = 2,", "\n  version = = 2,"))
    local at = logged(h, p .. ":209: unexpected symbol near '='" .. stays)
    th.write(p, policy(3, '"PutResourcePolicy" or "DeleteResourcePolicy"', '"PutResourcePolicy"'))
    at = logged(h, p .. ':252: test "denied DeleteResourcePolicy (AccessDeniedException)" failed: ' ..
      "expected a match, got no match (and 1 more failing test)" .. stays, at)
    local model = th.read(d .. "/aws_bedrock_unauthorized_foundation_model_access_attempt.lua")
    th.write(d .. "/zz_twin.lua", (POLICY_SRC:gsub('name = "AWS Bedrock', 'name = "Twin of AWS Bedrock', 1)))
    at = logged(h, d .. "/zz_twin.lua:92: rule_id 2e99477f-6099-48a9-ae0e-68801d97079c is already used by " .. p ..
      "; not loaded", at)
    assert.truthy(model)

    th.append(f, line("x1") .. line("x2", "DeleteResourcePolicy"))
    assert.truthy(th.wait_for(function() return h.count() >= 2 end))
    th.sleep(0.2)
    local alerts = th.alerts(h.out())
    assert.equal(2, #alerts)
    for _, a in ipairs(alerts) do assert.equal(1, a.kibana.alert.rule.version) end
    -- Fixed, it goes live.
    th.write(p, policy(4))
    logged(h, '"' .. ev.POLICY .. '" version 4 reloaded', at)
  end)

  it("adds a rule from a new file, and takes out a deleted one once it stays away", function()
    local d = rules_copy()
    local f = th.tmpdir() .. "/ct.ndjson"
    th.write(f, "")
    h = start(d, f)
    local copy = POLICY_SRC:gsub('rule_id = "[^"]+"', 'rule_id = "11111111-2222-4333-8444-000000000001"', 1)
      :gsub('name = "AWS Bedrock', 'name = "Copy of AWS Bedrock', 1)
    th.write(d .. "/copy.lua", copy)
    local at = logged(h, '"Copy of ' .. ev.POLICY .. '" version 1 added from ' .. d .. "/copy.lua")
    th.append(f, line("a1"))
    assert.truthy(th.wait_for(function() return h.count() >= 2 end))
    os.remove(d .. "/copy.lua")
    logged(h, '"Copy of ' .. ev.POLICY .. '" version 1 removed: ' .. d .. "/copy.lua is gone", at, 3)
    th.append(f, line("a2"))
    assert.truthy(th.wait_for(function() return h.count() >= 3 end))
    th.sleep(0.3)
    assert.equal(3, h.count())
  end)

  it("loses no event and evaluates none twice while rules are edited, renamed, broken and deleted under a writer",
    function()
    local d = rules_copy()
    local p = d .. "/" .. POLICY_FILE
    local dir = th.tmpdir()
    local f = dir .. "/busy.ndjson"
    th.write(f, "")
    h = start(d, f)
    local N = 2000
    writer(f, N, 0.002)
    local name = '"' .. ev.POLICY .. '"'
    local at = 1
    local steps = {
      function() th.write(p, policy(2)) return name .. " version 2 reloaded" end,
      function()
        th.write(p .. ".swp", policy(3))
        os.rename(p .. ".swp", p)
        return name .. " version 3 reloaded"
      end,
      function() th.write(p, "return {\n  rule_id = ,\n}\n") return p .. ":2: unexpected symbol near ','" end,
      function()
        os.remove(p)
        th.write(p, policy(4))
        return name .. " version 4 reloaded"
      end,
      function()
        th.write(d .. "/other.lua", 'return { rule_id = "11111111-2222-4333-8444-000000000002", name = "Other",\n' ..
          '  description = "d", severity = "low", risk_score = 1, version = 1, query = [[event.action: "Nothing"]] }\n')
        return '"Other" version 1 added'
      end,
      function()
        h.signal("HUP")
        return name .. " version 4 reloaded from " .. p .. " in "
      end,
      function()
        local tmp = th.tmpdir() .. "/x.lua"
        th.write(tmp, policy(5))
        os.execute("mv " .. th.quote(tmp) .. " " .. th.quote(p))
        return name .. " version 5 reloaded"
      end,
      function()
        os.remove(d .. "/other.lua")
        return '"Other" version 1 removed'
      end,
      function() th.write(p, policy(6)) return name .. " version 6 reloaded" end,
    }
    for _, step in ipairs(steps) do
      at = logged(h, step(), at)
      th.sleep(0.1)
    end
    assert.truthy(th.wait_for(function() return th.read(dir .. "/writer.done") end, 60))
    assert.truthy(th.wait_for(function() return h.count() >= N end, 20), h.err())
    th.sleep(0.3)

    local seen, n, dups, versions, last, backwards = {}, 0, 0, {}, 0, 0
    for _, a in ipairs(th.alerts(h.out())) do
      assert.equal(ev.POLICY, a.kibana.alert.rule.name)
      local id = a.event.id
      if seen[id] then dups = dups + 1 end
      seen[id] = true
      n = n + 1
      local v = a.kibana.alert.rule.version
      versions[v] = (versions[v] or 0) + 1
      if v < last then backwards = backwards + 1 end
      last = v
    end
    local spread = {}
    for v, c in pairs(versions) do spread[#spread + 1] = string.format("v%d: %d", v, c) end
    table.sort(spread)
    io.stderr:write(string.format("# reloads under a writer: %d events, %d alerts, %d twice; %s\n", N, n, dups,
      table.concat(spread, ", ")))
    assert.equal(0, dups)
    assert.equal(N, n)
    for i = 1, N do assert.truthy(seen["w-" .. i], "w-" .. i .. " missing") end
    -- Each version took over between two events, in order.
    assert.equal(0, backwards)
    assert.is_true(#spread >= 4, "reloads did not happen while events flowed: " .. table.concat(spread, ", "))
    assert.not_matches("internal error", h.err(), 1, true)
  end)

  it("quarantines a failing rule, runs it again when its file changes or on SIGHUP, and reports statistics",
    function()
    local d = rules_copy()
    local bad = table.concat({
      "return {",
      '  rule_id = "11111111-2222-4333-8444-000000000003", name = "Flaky",',
      '  description = "d", severity = "low", risk_score = 1,',
      '  match = function(e) error("flaky " .. e["event.action"]) end,',
      "}", "" }, "\n")
    th.write(d .. "/flaky.lua", bad)
    local f = th.tmpdir() .. "/ct.ndjson"
    th.write(f, line("q1") .. line("q2") .. line("q3"))
    -- One worker: "2 failures in a row" is counted per worker (each quarantines the rule for all).
    h = start(d, f, { "--quarantine-after", "2", "--workers", "1" })
    local at = logged(h, "rule " .. d .. "/flaky.lua quarantined after 2 failures in a row")
    assert.truthy(th.wait_for(function() return h.count() >= 3 end))
    -- reported once, at its line
    local _, reports = h.err():gsub("flaky.lua:4: flaky PutResourcePolicy", "")
    assert.equal(1, reports)

    h.signal("USR1")
    at = logged(h, "statistics after", at)
    assert.truthy(th.wait_for(function() return h.err():sub(at):find(f, 1, true) end))
    local stats = h.err():sub(at - 20)
    assert.matches("%s+3%s+3%s+0%s+[%d.]+%s+running%s+" .. ev.POLICY:gsub("%-", "%%-"), stats)
    assert.matches("%s+2%s+0%s+2%s+[%d.]+%s+quarantined%s+Flaky", stats)
    local size = #th.read(f)
    assert.matches("%s+" .. size .. "%s+" .. size .. "%s+0%s+" .. f:gsub("%p", "%%%0"), stats)

    -- SIGHUP: every rule reloaded, the quarantined one back in service
    h.signal("HUP")
    at = logged(h, '"Flaky" (no version) reloaded from ' .. d .. "/flaky.lua", at)
    h.signal("USR1")
    at = logged(h, "statistics after", at)
    assert.truthy(th.wait_for(function() return h.err():sub(at):find("Flaky", 1, true) end))
    assert.matches("running%s+Flaky", h.err():sub(at))

    -- it fails again, is quarantined again; fixed, it runs and alerts
    th.append(f, line("q4") .. line("q5"))
    at = logged(h, "flaky.lua quarantined after 2 failures in a row", at)
    th.write(d .. "/flaky.lua", (bad:gsub('error%("flaky " .. e%["event.action"%]%)',
      'return e["event.action"] == "PutResourcePolicy"')))
    at = logged(h, '"Flaky" (no version) reloaded from ' .. d .. "/flaky.lua", at)
    th.append(f, line("q6"))
    assert.truthy(th.wait_for(function() return th.by_rule(th.alerts(h.out())).Flaky == 1 end), h.err())
  end)

  it("prints statistics every --stats-interval", function()
    local d = rules_copy()
    local f = th.tmpdir() .. "/ct.ndjson"
    th.write(f, line("s1"))
    h = start(d, f, { "--stats-interval", "0.3" })
    assert.truthy(th.wait_for(function()
      local _, n = h.err():gsub("statistics after", "")
      return n >= 2
    end, 3))
    local _, e2 = th.run({ "run", "--stats-interval", "soon", f })
    assert.matches("--stats-interval: bad duration 'soon'", e2, 1, true)
  end)

  it("reloads the normalizer through the gate: a version that breaks a rule's test is refused", function()
    local home = th.tmpdir()
    os.execute("cp -r scripts " .. th.quote(home .. "/scripts"))
    local n = home .. "/scripts/normalize.lua"
    local src = th.read(n)
    local f = th.tmpdir() .. "/ct.ndjson"
    th.write(f, line("n1"))
    h = th.start({ "run", "--no-state", "--rules", "rules", "--poll", "50", f }, { env = "TRAILHOUND_HOME=" .. home })
    assert.truthy(th.wait_for(function() return h.count() >= 1 end))

    local function wrapped(body)
      return (src:gsub("\nreturn M\n$", "\nlocal inner = M.normalize\nM.normalize = function(rec, ctx)\n" ..
        "  local doc = inner(rec, ctx)\n  " .. body .. "\n  return doc\nend\nreturn M\n"))
    end
    th.write(n, wrapped('doc.event.action = "Renamed"'))
    local at = logged(h, "normalizer not reloaded: with it, " .. "rules/aws_bedrock_unauthorized_")
    at = logged(h, "expected a match, got no match", at)
    logged(h, "the running version stays", at)
    th.write(n .. ".tmp", wrapped('doc.labels = { normalizer = "v2" }'))
    os.rename(n .. ".tmp", n)
    logged(h, "normalizer " .. n .. " reloaded in ", at)
    th.append(f, line("n2"))
    assert.truthy(th.wait_for(function() return h.count() >= 2 end))
    local alerts = th.alerts(h.out())
    assert.is_nil(alerts[1].labels)
    assert.equal("v2", alerts[2].labels.normalizer)
    assert.equal("PutResourcePolicy", alerts[2].event.action)
  end)
end)
