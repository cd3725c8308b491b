-- End-to-end specs for the rule types with state (host/state.h, scripts/stateful.lua): Elastic's
-- new_terms and threshold rules, imported from Elastic's own TOML, run over the real Stratus Red
-- Team CloudTrail of tests/fixtures. Each expectation is computed from the alerts of the same
-- query run as a plain query rule (its twin), so a state that forgets, repeats or miscounts fails.
-- Then the state across a kill -9 and a restart, a reload of the unchanged rule, a reload with
-- another query, and the store's cap.
local cjson = require "cjson"
local th = require "support.th"

local FIXTURES = "tests/fixtures/stratus-red-team"
local ELASTIC = "tests/fixtures/elastic-detection-rules-aws"
local NEW_TERMS = "discovery_new_terms_sts_getcalleridentity"        -- by aws.cloudtrail.user_identity.arn
local THRESHOLD = "credential_access_rapid_secret_retrieval_attempts_from_secretsmanager"  -- per user.id,
-- 20 distinct aws.cloudtrail.request_parameters

-- The fixtures' records, one JSON text each, in file order; suffix: appended to every eventID
-- (the same activity again, as other events).
-- Each record a second after the one before, from one base time, in place of the
-- detonations' own times (years apart, out of order).
local function records(suffix)
  local list = {}
  local p = io.popen("ls " .. FIXTURES .. "/*.json")
  for path in p:lines() do
    local doc = cjson.decode(th.read(path))
    for _, rec in ipairs(doc.Records or doc) do
      if suffix and rec.eventID then rec.eventID = rec.eventID .. suffix end
      rec.eventTime = os.date("!%Y-%m-%dT%H:%M:%SZ", 1729195800 + #list)
      list[#list + 1] = cjson.encode(rec)
    end
  end
  p:close()
  return table.concat(list, "\n") .. "\n"
end

-- A rule module imported by `trailhound import` into dir, and its text.
local function import(dir, name)
  local _, err, rc = th.run({ "import", "--out", dir, ELASTIC .. "/" .. name .. ".toml" })
  assert.equal(0, rc, err)
  return dir .. "/" .. name .. ".lua", th.read(dir .. "/" .. name .. ".lua")
end

-- The same rule as a plain query rule: every event its query matches alerts.
local function twin(src)
  local text = src:gsub('\n  type = "[%w_]+",', '\n  type = "query",', 1)
    :gsub('\n  rule_id = "(%x+)', '\n  rule_id = "00000000', 1)
    :gsub('\n  name = "', '\n  name = "twin: ', 1)
  return text
end

local function of_rule(alerts, pattern)
  local list = {}
  for _, a in ipairs(alerts) do
    if a.kibana.alert.rule.name:find(pattern) then list[#list + 1] = a end
  end
  return list
end

local function get(doc, dotted)
  for part in dotted:gmatch("[^.]+") do
    if type(doc) ~= "table" then return nil end
    doc = doc[part]
  end
  return doc
end

-- The offset committed for path in the state file (checkpoint.h), or nil.
local function committed(state, path)
  for line in (th.read(state) or ""):gmatch("[^\n]+") do
    local offset, p = line:match("^%d+ %d+ %d+ %x+ (%d+) %d+ %d+ %x+ (.*)$")
    if p == path then return tonumber(offset) end
  end
end

local function read_all(h, state, path)
  assert.truthy(th.wait_for(function() return committed(state, path) == #th.read(path) end, 20), h.err())
end

describe("new_terms rules", function()
  teardown(th.cleanup)

  it("alert once for each new term, and not when it comes again", function()
    local r = th.tmpdir()
    local _, src = import(r, NEW_TERMS)
    th.write(r .. "/twin.lua", twin(src))
    local d = th.tmpdir()
    th.write(d .. "/a.ndjson", records())
    th.write(d .. "/b.ndjson", records("-again"))
    local out, err, rc = th.run({ "replay", "--rules", r, d .. "/a.ndjson", d .. "/b.ndjson" })
    assert.equal(0, rc, err)
    local alerts = th.alerts(out)
    local matches = of_rule(alerts, "^twin: ")
    local firsts, order = {}, {}
    for _, a in ipairs(matches) do
      local arn = get(a, "aws.cloudtrail.user_identity.arn")
      if not firsts[arn] then
        firsts[arn] = a
        order[#order + 1] = arn
      end
    end
    local nt = of_rule(alerts, "^AWS STS GetCallerIdentity API Called for the First Time$")
    assert.truthy(#order > 0 and #matches >= 2 * #order, "the fixtures repeat no term")
    assert.equal(#order, #nt)
    for i, a in ipairs(nt) do
      assert.same({ order[i] }, a.kibana.alert.new_terms)
      assert.equal("new_terms", a.kibana.alert.rule.type)
      assert.equal("New Terms Rule", a.kibana.alert.rule.category)
      -- the first event of the term: its fields, from the first file
      assert.equal(firsts[order[i]].kibana.alert.original_time, a.kibana.alert.original_time)
      assert.equal(d .. "/a.ndjson", a.trailhound.source.path)
      assert.equal(order[i], get(a, "aws.cloudtrail.user_identity.arn"))
    end
  end)

  it("alert the same whatever the workers, on events out of time order, and pass over late ones", function()
    -- The bench corpus: the Stratus events over and over, months apart in event time, so that a
    -- term a worker sent lately may be one the host's clock has since passed.
    local r, d = th.tmpdir(), th.tmpdir()
    import(r, "credential_access_iam_long_term_access_key_first_seen_from_source_ip")
    os.execute("lua5.4 tests/bench/make-corpus.lua 2000 " .. th.quote(d) .. " >/dev/null 2>&1")
    local function ids(workers)
      local out, err, rc = th.run({ "replay", "--workers", workers, "--rules", r, d .. "/corpus.ndjson" })
      assert.equal(0, rc, err)
      local list = {}
      for _, a in ipairs(th.alerts(out)) do list[#list + 1] = a.kibana.alert.uuid end
      return list, out, err
    end
    local one, out = ids("1")
    local two = ids("2")
    assert.truthy(#one > 0, out)
    assert.same(one, two)
    -- Each term alerts once: in the corpus's later rounds its events are passed over (more than
    -- its history window behind the newest event seen) or known.
    local seen = {}
    for _, a in ipairs(th.alerts(out)) do
      local key = table.concat(a.kibana.alert.new_terms, " ")
      assert.is_nil(seen[key], key .. " alerted twice")
      seen[key] = true
    end
  end)
end)

describe("threshold rules", function()
  teardown(th.cleanup)

  -- The threshold rule with other parameters (pairs of text, new text), beside its twin.
  local function variant(...)
    local r = th.tmpdir()
    local path, src = import(r, THRESHOLD)
    local subs = { ... }
    for i = 1, #subs, 2 do
      local n
      src, n = src:gsub(subs[i], subs[i + 1], 1)
      assert.equal(1, n, subs[i])
    end
    th.write(path, src)
    th.write(r .. "/twin.lua", twin(src))
    local out, err, rc = th.run({ "replay", "--rules", r, FIXTURES })
    assert.equal(0, rc, err)
    local alerts = th.alerts(out)
    return of_rule(alerts, "^AWS Secrets Manager Rapid"), of_rule(alerts, "^twin: ")
  end

  it("alert once a group's distinct values reach the cardinality, as Elastic's synthetic alert", function()
    local got, matches = variant()
    local distinct, users = {}, {}
    for _, a in ipairs(matches) do
      distinct[get(a, "aws.cloudtrail.request_parameters")] = true
      users[get(a, "user.id")] = true
    end
    local n = 0
    for _ in pairs(distinct) do n = n + 1 end
    assert.truthy(n >= 20, "the fixtures have " .. n .. " secrets")
    assert.equal(1, #got)
    local a = got[1]
    local tr = a.kibana.alert.threshold_result
    assert.same({ { field = "aws.cloudtrail.request_parameters", value = 20 } }, tr.cardinality)
    assert.same({ { field = "user.id", value = a.user.id } }, tr.terms)
    assert.truthy(users[a.user.id])
    assert.truthy(tr.count >= 20)
    assert.equal("threshold", a.kibana.alert.rule.type)
    assert.equal("Threshold Rule", a.kibana.alert.rule.category)
    -- the group-by fields and the rule's, not the source event's
    assert.is_nil(a.aws)
    assert.is_nil(a.source)
    assert.is_nil(a.cloud)
    assert.same({ kind = "signal" }, a.event)
    -- the window: `from` (now-6m) before the newest event counted, the one that reached the count
    -- or one after it read before it
    local function s(iso)
      local y, mo, d, h, mi, se = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
      return os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = se })
    end
    local back = s(a.kibana.alert.original_time) - s(tr.from)
    assert.truthy(back > 300 and back <= 360, back)
  end)

  it("alert at the count: the 5th event of a group within 6 minutes, then count afresh", function()
    local got, matches = variant("value = 20 },", "value = 1000 },", "value = 1,\n", "value = 5,\n",
      "    cardinality = {\n.-\n    },\n", "")
    assert.truthy(#matches >= 5)
    local times = {}
    for _, a in ipairs(matches) do times[#times + 1] = a.kibana.alert.original_time end
    assert.truthy(#got >= 1 and #got <= #matches // 5, #got .. " alerts of " .. #matches .. " events")
    assert.equal(5, got[1].kibana.alert.threshold_result.count)
    assert.equal(times[5], got[1].kibana.alert.original_time)
    assert.is_nil(got[1].kibana.alert.threshold_result.cardinality)
    local none = variant("value = 1,\n", "value = " .. (#matches + 1) .. ",\n", "    cardinality = {\n.-\n    },\n", "")
    assert.equal(0, #none)
  end)
end)

describe("the state of stateful rules", function()
  teardown(th.cleanup)

  local function rules()
    local r = th.tmpdir()
    import(r, NEW_TERMS)
    import(r, THRESHOLD)
    return r
  end

  local function start(r, state, dir, extra)
    local args = { "run", "--rules", r, "--state", state, "--poll", "50" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    args[#args + 1] = dir .. "/*.ndjson"
    return th.start(args)
  end

  it("survives a kill -9: a restart alerts for no term again, and counts no group again", function()
    local r, dir, sd = rules(), th.tmpdir(), th.tmpdir()
    local state = sd .. "/state"
    th.write(dir .. "/a.ndjson", records())
    local h = start(r, state, dir)
    read_all(h, state, dir .. "/a.ndjson")
    assert.truthy(th.wait_for(function() return (th.read(state .. ".rules") or ""):find("\ne ", 1, true) end, 10))
    th.sleep(1.2)  -- one more save: what the outputs have by now
    h.signal("KILL")
    h.wait(5)
    local first = th.alerts(th.complete_lines(h.out()))
    local terms = #of_rule(first, "GetCallerIdentity API Called")
    assert.truthy(terms > 0)
    assert.equal(1, #of_rule(first, "Rapid Secrets"))
    -- The same activity again, as new events.
    th.write(dir .. "/b.ndjson", records("-b"))
    local h2 = start(r, state, dir)
    read_all(h2, state, dir .. "/b.ndjson")
    h2.signal("TERM")
    assert.equal(0, h2.wait(10), h2.err())
    local second = th.alerts(h2.out())
    assert.same({}, of_rule(second, "GetCallerIdentity API Called"))
    assert.same({}, of_rule(second, "Rapid Secrets"))
    -- Without the state, the same events alert again.
    os.remove(state .. ".rules")
    os.remove(state .. ".alerts")
    th.write(dir .. "/c.ndjson", records("-c"))
    local h3 = start(r, state, dir)
    read_all(h3, state, dir .. "/c.ndjson")
    h3.signal("TERM")
    assert.equal(0, h3.wait(10), h3.err())
    assert.equal(terms, #of_rule(th.alerts(h3.out()), "GetCallerIdentity API Called"))
  end)

  it("is kept through a reload of the unchanged rule, and dropped when its query changes", function()
    local r, dir, sd = rules(), th.tmpdir(), th.tmpdir()
    local state = sd .. "/state"
    local path = r .. "/" .. NEW_TERMS .. ".lua"
    local src = th.read(path)
    th.write(dir .. "/a.ndjson", records())
    local h = start(r, state, dir, { "--metrics", "127.0.0.1:0" })
    read_all(h, state, dir .. "/a.ndjson")
    local function terms() return #of_rule(th.alerts(th.complete_lines(h.out())), "GetCallerIdentity API Called") end
    local n = terms()
    assert.truthy(n > 0)
    -- --metrics: what each stateful rule keeps
    local port = th.wait_for(function() return h.err():match("metrics: http://127%.0%.0%.1:(%d+)/metrics") end, 10)
    local p = io.popen("python3 tests/support/httpclient.py get 127.0.0.1 " .. port)
    local body = cjson.decode(p:read("a")).body
    p:close()
    assert.equal(tostring(n), body:match('\ntrailhound_rule_state_entries{rule_id="[^"]+",rule="AWS STS '
      .. 'GetCallerIdentity API Called for the First Time"} (%d+)\n'), body)
    assert.truthy(body:find('\ntrailhound_rule_state_bytes{rule_id="[^"]+",rule="AWS Secrets Manager Rapid Secrets '
      .. 'Retrieval"} %d+\n'), body)
    -- Another description: the same rule as far as its state goes.
    th.write(path, (src:gsub("\n  description = %[%[", "\n  description = [[Edited. ", 1)))
    local function reloads() return select(2, h.err():gsub('First Time" %(no version%) reloaded', "")) end
    assert.truthy(th.wait_for(function() return reloads() == 1 end, 10), h.err())
    th.write(dir .. "/b.ndjson", records("-b"))
    read_all(h, state, dir .. "/b.ndjson")
    assert.equal(n, terms())
    -- Another query: its state starts afresh.
    th.write(path, (src:gsub('and event.outcome: "success"', 'and event.outcome: "success" and not user.name: "x"', 1)))
    assert.truthy(th.wait_for(function() return reloads() == 2 end, 10), h.err())
    th.write(dir .. "/c.ndjson", records("-c"))
    read_all(h, state, dir .. "/c.ndjson")
    assert.truthy(th.wait_for(function() return terms() == 2 * n end, 10), terms() .. " alerts")
    assert.matches("API Called for the First Time: its query or new_terms parameters changed: the state it kept is "
      .. "dropped %(" .. n .. " entries%)", h.err())
    h.signal("TERM")
    assert.equal(0, h.wait(10), h.err())
  end)

  it("is bounded: past --max-state the least recently used terms go, counted and logged", function()
    local r = th.tmpdir()
    th.write(r .. "/every.lua", [[
return {
  rule_id = "6a1c8f2e-0000-4000-8000-000000000001",
  name = "Any call by a new principal and action",
  description = "Every combination of caller and API call.",
  severity = "low", risk_score = 21,
  type = "new_terms",
  query = 'event.provider: *',
  new_terms = { field = "new_terms_fields", value = { "aws.cloudtrail.user_identity.arn", "event.action" },
    history_window_start = { { field = "history_window_start", value = "now-7d" } } },
}
]])
    -- The second file the same events again, at the same times: every combination known. (At
    -- the detonations' own times, years apart, most of the second's events would lie more than
    -- their 7 days of history behind the first file's newest: passed over, as late.)
    local d = th.tmpdir()
    th.write(d .. "/a.ndjson", records())
    th.write(d .. "/b.ndjson", records("-b"))
    local function replay(extra, list)
      local args = { "replay", "--rules", r }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      args[#args + 1] = d .. "/a.ndjson"
      args[#args + 1] = d .. "/b.ndjson"
      local out, err, rc = th.run(args)
      assert.equal(0, rc, err)
      local from_b = 0
      for _, a in ipairs(th.alerts(out)) do
        if a.trailhound.source.path == d .. "/b.ndjson" then from_b = from_b + 1 end
      end
      if list then
        local ids = {}
        for _, a in ipairs(th.alerts(out)) do ids[#ids + 1] = a.kibana.alert.uuid end
        return ids, err
      end
      return #th.alerts(out), from_b, err
    end
    local all, again, err = replay({})
    assert.truthy(all > 50, all .. " combinations")
    assert.equal(0, again, "every combination of the second file was seen in the first")
    assert.is_nil(err:find("at its cap", 1, true))
    -- Capped: every combination still alerts, an evicted one again when it comes again (a worker
    -- that sent it lately sent it without its alert: the host has the record evaluated again,
    -- whole), and the evictions are counted and said, the memory within the cap.
    local capped, _, cerr = replay({ "--max-state", "4K" })
    assert.truthy(capped >= all, cerr)
    assert.truthy(cerr:find("records? evaluated again: a new_terms combination a worker had sent lately was news "
      .. "to the rule state"), cerr)
    -- The same alerts, in the same order, whatever the workers and whichever sent what lately.
    local one, err1 = replay({ "--max-state", "4K", "--workers", "1" }, true)
    local two, err2 = replay({ "--max-state", "4K", "--workers", "2" }, true)
    assert.equal(capped, #one, err1)
    assert.same(one, two, err2)
    local n = tonumber(cerr:match("rule state at its cap %(%d+ entries, %d+ KiB%): %d+ entries evicted since the last "
      .. "minute, the least recently used first %((%d+) in all%)"))
    assert.truthy(n and n > 0, cerr)
    local kib, evicted = cerr:match("Any call by a new principal and action: its state holds %d+ terms? "
      .. "%(([%d.]+) KiB%), (%d+) evicted at the cap")
    assert.truthy(tonumber(kib) <= 4 and tonumber(evicted) == n, cerr)
  end)
end)
