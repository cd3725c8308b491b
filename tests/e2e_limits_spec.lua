-- End-to-end specs for what stands between the rules' alerts and the outputs (host/limiter.h):
-- max_signals per interval window, alert_suppression with its updates, duplicate uuids written
-- once, and all three carried across a restart (graceful or kill -9), on the real Stratus Red
-- Team CloudTrail of tests/fixtures. Each expectation is computed from the alerts of the same
-- query without limits, so a limit that drops, repeats or miscounts an alert fails.
local cjson = require "cjson"
local th = require "support.th"

local FIXTURES = "tests/fixtures/stratus-red-team"
local LIMITS = { limits = true }  -- the rules' max_signals apply (support/th.lua)

-- The fixtures as NDJSON, one record a line, in file order.
local function records()
  local list = {}
  local p = io.popen("ls " .. FIXTURES .. "/*.json")
  for path in p:lines() do
    for _, rec in ipairs(cjson.decode(th.read(path))) do list[#list + 1] = cjson.encode(rec) end
  end
  p:close()
  return list
end

local HEAD = [[
return {
  rule_id = "%s",
  name = "%s",
  description = "Any AWS API call denied.",
  severity = "low",
  risk_score = 21,
  query = 'event.outcome: "failure"',
]]

-- A rules folder: name -> extra lines of the rule's table.
local function rules(list)
  local d = th.tmpdir()
  local n = 0
  for name, extra in pairs(list) do
    n = n + 1
    local id = string.format("00000000-0000-4000-8000-%012d", n)
    th.write(d .. "/" .. name:gsub("%W", "_") .. ".lua", string.format(HEAD, id, name) .. extra .. "}\n")
  end
  return d
end

local function ms(iso)
  local y, mo, d, h, mi, s = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  return os.time({ year = y, month = mo, day = d, hour = h, min = mi, sec = s, isdst = false }) * 1000
end

local function of_rule(alerts, name)
  local list = {}
  for _, a in ipairs(alerts) do
    if a.kibana.alert.rule.name == name then list[#list + 1] = a end
  end
  return list
end

-- Each uuid's last document (an update replaces the first), in first-seen order.
local function final(alerts)
  local by, order = {}, {}
  for _, a in ipairs(alerts) do
    local id = a.kibana.alert.uuid
    if not by[id] then order[#order + 1] = id end
    by[id] = a
  end
  local list = {}
  for i, id in ipairs(order) do list[i] = by[id] end
  return list
end

-- Events accounted for by suppressed alerts: each final document's docs_count, plus itself.
local function accounted(alerts)
  local n = 0
  for _, a in ipairs(final(alerts)) do n = n + 1 + a.kibana.alert.suppression.docs_count end
  return n
end

local function count_of(s, plain)
  local n, at = 0, 1
  while true do
    local i, j = s:find(plain, at, true)
    if not i then return n end
    n, at = n + 1, j + 1
  end
end

-- A denied CloudTrail call, its id and time.
local function ct(id, t)
  return cjson.encode({ eventVersion = "1.08", eventTime = t, eventSource = "iam.amazonaws.com",
    eventName = "ListUsers", awsRegion = "us-east-1", sourceIPAddress = "192.0.2.4", errorCode = "AccessDenied",
    errorMessage = "denied", eventID = id, eventType = "AwsApiCall",
    userIdentity = { type = "IAMUser", userName = "bob" } })
end

-- e1 and e2 in the window of 00:00, n more there, then e3, e4 and e5 in the windows of 00:05,
-- 00:10 and 00:15 (a rule's four windows); then an S3 object of e6 (00:20: a fifth window) and
-- e7 (00:00 again).
local function five_windows(n)
  local lines = { ct("e1", "2024-01-01T00:00:10Z"), ct("e2", "2024-01-01T00:00:20Z") }
  for i = 1, n do lines[#lines + 1] = ct("f" .. i, "2024-01-01T00:01:00Z") end
  for i, t in ipairs({ "00:05:10", "00:10:10", "00:15:10" }) do
    lines[#lines + 1] = ct("e" .. (i + 2), "2024-01-01T" .. t .. "Z")
  end
  return lines
end
local LAST_OBJECT = '{"Records":[' .. ct("e6", "2024-01-01T00:20:10Z") .. "," .. ct("e7", "2024-01-01T00:00:30Z")
  .. "]}"

describe("limits", function()
  local d, log, all
  setup(function()
    d = th.tmpdir()
    log = d .. "/all.ndjson"
    th.write(log, table.concat(records(), "\n") .. "\n")
    local out, err, rc = th.run({ "replay", "--rules", rules({ all = "" }), log })
    assert.equal(0, rc, err)
    all = th.alerts(out)
    assert.truthy(#all > 40, "the fixtures hold denied calls")
  end)
  teardown(th.cleanup)

  it("holds max_signals per rule in each interval window of event time, counted and said once a window", function()
    local r = rules({ capped = "  max_signals = 2,\n", hourly = '  max_signals = 2,\n  interval = "1h",\n' })
    local out, err, rc = th.run({ "replay", "--rules", r, log }, LIMITS)
    assert.equal(0, rc, err)
    local alerts = th.alerts(out)
    for name, span in pairs({ capped = 300000, hourly = 3600000 }) do
      local per, want, full = {}, 0, 0
      for _, a in ipairs(all) do
        local w = ms(a.kibana.alert.original_time) // span
        per[w] = (per[w] or 0) + 1
      end
      for _, n in pairs(per) do
        want = want + math.min(n, 2)
        if n > 2 then full = full + 1 end
      end
      local got, seen = of_rule(alerts, name), {}
      assert.equal(want, #got, name)
      for _, a in ipairs(got) do
        local w = ms(a.kibana.alert.original_time) // span
        seen[w] = (seen[w] or 0) + 1
        assert.truthy(seen[w] <= 2, name)
      end
      assert.equal(full, count_of(err, name .. ": max_signals (2) reached in the window"), err)
      assert.matches(name .. ": " .. (#all - want) .. " held back by max_signals", err, 1, true)
    end
  end)

  it("has the workers skip building what a full window holds back, writing the same alerts", function()
    -- The fixtures 20 times over, each copy's events their own (eventID): thousands of denied
    -- calls in a few windows, two workers.
    local big, lines = d .. "/big.ndjson", {}
    for copy = 1, 20 do
      for _, line in ipairs(records()) do
        local rec = cjson.decode(line)
        rec.eventID = tostring(rec.eventID) .. "-" .. copy
        lines[#lines + 1] = cjson.encode(rec)
      end
    end
    th.write(big, table.concat(lines, "\n") .. "\n")
    local r = rules({ capped = "  max_signals = 2,\n" })
    local out, err, rc = th.run({ "replay", "--workers", "2", "--no-max-signals", "--rules", r, big }, LIMITS)
    assert.equal(0, rc, err)
    local every = th.alerts(out)
    out, err, rc = th.run({ "replay", "--workers", "2", "--rules", r, big }, LIMITS)
    assert.equal(0, rc, err)
    -- Written: what the host's windows let through, in file order, as without the workers'
    -- help: two a window, four windows kept (the earliest let go first), so each copy opens
    -- again the windows let go since the last; the workers were told those were full, and
    -- the host has those records evaluated again, whole.
    local want, windows, reopened, was = {}, {}, 0, {}
    for _, a in ipairs(every) do
      local index, w = ms(a.kibana.alert.original_time) // 300000, nil
      for _, x in ipairs(windows) do
        if x.index == index then w = x end
      end
      if not w then
        if #windows == 4 then
          table.sort(windows, function(x, y) return x.index < y.index end)
          table.remove(windows, 1)
        end
        w = { index = index, count = 0 }
        windows[#windows + 1] = w
        if was[index] then reopened = reopened + 1 end
        was[index] = true
      end
      if w.count < 2 then
        w.count = w.count + 1
        want[#want + 1] = a.kibana.alert.uuid
      end
    end
    assert.truthy(reopened > 0, "windows let go and opened again")
    local got = {}
    for i, a in ipairs(th.alerts(out)) do got[i] = a.kibana.alert.uuid end
    assert.same(want, got)
    local held, unbuilt = err:match("capped: (%d+) held back by max_signals %((%d+) never built: " ..
      "the window was known full%)")
    assert.equal(#every - #want, tonumber(held), err)
    assert.truthy(tonumber(unbuilt) > (#every - #want) / 2, err)  -- most: the workers learn it within a batch or two
    assert.matches("records? evaluated again: a max_signals window the workers were told was full had been let go", err)
  end)

  it("writes an unbuilt alert's event all the same when an earlier event of its S3 object lets its window go",
    function()
    -- Window 00:00 fills at once (max_signals 1) and the workers are told; 00:05, 00:10 and 00:15
    -- take up the other three of the rule's four windows; then one object holds an event of
    -- 00:20 (a fifth window: 00:00 let go) and one of 00:00 again, which the limiter writes.
    local lines = five_windows(3000)
    lines[#lines + 1] = LAST_OBJECT
    local object = d .. "/object.ndjson"
    th.write(object, table.concat(lines, "\n") .. "\n")
    local r = rules({ once = "  max_signals = 1,\n" })
    local out, err, rc = th.run({ "replay", "--workers", "1", "--rules", r, object }, LIMITS)
    assert.equal(0, rc, err)
    local ids = {}
    for i, a in ipairs(th.alerts(out)) do ids[i] = a.event.id end
    assert.same({ "e1", "e3", "e4", "e5", "e6", "e7" }, ids)
    assert.matches("once: 3001 held back by max_signals %(%d+ never built", err)
  end)

  it("writes every alert with --no-max-signals", function()
    local out, err, rc = th.run({ "replay", "--no-max-signals", "--rules", rules({ capped = "  max_signals = 2,\n" }),
      log }, LIMITS)
    assert.equal(0, rc, err)
    assert.equal(#all, #th.alerts(out))
    assert.not_matches("held back", err)
  end)

  it("writes an alert whose uuid was written already once: CloudTrail's duplicate deliveries", function()
    local lines = records()
    local twice = th.tmpdir()
    local many = {}
    for _ = 1, 400 do many[#many + 1] = lines[1] end  -- the issue's case: one event 400 times
    for _, l in ipairs(lines) do many[#many + 1] = l end
    th.write(twice .. "/a.ndjson", table.concat(many, "\n") .. "\n")
    th.write(twice .. "/b.ndjson", table.concat(lines, "\n") .. "\n")  -- the same events again
    local out, err, rc = th.run({ "replay", "--rules", rules({ all = "" }), twice .. "/a.ndjson",
      twice .. "/b.ndjson" })
    assert.equal(0, rc, err)
    local got = th.alerts(out)
    assert.equal(#all, #got)
    for i, a in ipairs(got) do assert.equal(all[i].kibana.alert.uuid, a.kibana.alert.uuid) end
    local first_matches = (cjson.decode(lines[1]).errorCode ~= nil) and 400 or 0
    assert.matches("all: " .. (#all + first_matches) .. " duplicates written once", err, 1, true)
  end)

  describe("alert_suppression", function()
    local SUPPRESS = '  alert_suppression = { group_by = { "user.name", "event.action" }, duration = "5m" },\n'

    it("writes a group's first alert, then its count under the same uuid, accounting for every event", function()
      local out, err, rc = th.run({ "replay", "--rules", rules({ grouped = SUPPRESS }), log })
      assert.equal(0, rc, err)
      local got = th.alerts(out)
      assert.truthy(#got < #all)
      assert.equal(#all, accounted(got))
      local firsts, updates = {}, 0
      for _, a in ipairs(got) do
        local s = a.kibana.alert.suppression
        assert.equal("user.name", s.terms[1].field)
        assert.equal(a.user.name, s.terms[1].value[1])
        assert.equal("event.action", s.terms[2].field)
        assert.same({ a.event.action }, s.terms[2].value)
        assert.truthy(ms(s.start) <= ms(s["end"]))
        if firsts[a.kibana.alert.uuid] then
          updates = updates + 1
          assert.truthy(s.docs_count > 0)
        else
          firsts[a.kibana.alert.uuid] = true
          assert.equal(0, s.docs_count)
          assert.equal(a.kibana.alert.original_time, s.start)
        end
      end
      assert.truthy(updates > 0)
      assert.matches("grouped: " .. (#all - #final(got)) .. " suppressed into their group's alert", err, 1, true)
      -- One group per caller and action within 5 minutes: no two firsts of a pair that close.
      local last = {}
      for _, a in ipairs(final(got)) do
        local k = a.user.name .. "/" .. a.event.action
        local t = ms(a.kibana.alert.original_time)
        if last[k] then assert.truthy(math.abs(t - last[k]) >= 300000, k) end
        last[k] = t
      end
    end)

    it("puts events missing a group_by field in one group, or writes each with doNotSuppress", function()
      local field = "aws.cloudtrail.user_identity.session_context.session_issuer.arn"
      local missing = 0
      for _, a in ipairs(all) do
        if not a.aws.cloudtrail.user_identity.session_context then missing = missing + 1 end
      end
      assert.truthy(missing > 1)
      local r = rules({
        together = '  alert_suppression = { group_by = { "' .. field .. '" }, duration = "1h" },\n',
        alone = '  alert_suppression = { group_by = { "' .. field .. '" }, duration = "1h", ' ..
          'missing_fields_strategy = "doNotSuppress" },\n',
      })
      local out, err, rc = th.run({ "replay", "--rules", r, log }, LIMITS)
      assert.equal(0, rc, err)
      local got = th.alerts(out)
      local function without(list)
        local n = 0
        for _, a in ipairs(list) do
          if not a.aws.cloudtrail.user_identity.session_context then n = n + 1 end
        end
        return n
      end
      local alone = of_rule(got, "alone")
      assert.equal(missing, without(alone))
      for _, a in ipairs(alone) do
        if not a.aws.cloudtrail.user_identity.session_context then assert.is_nil(a.kibana.alert.suppression) end
      end
      local together = final(of_rule(got, "together"))
      assert.equal(#all, accounted(together))
      assert.truthy(without(together) < missing)
      for _, a in ipairs(together) do
        if not a.aws.cloudtrail.user_identity.session_context then
          assert.equal(cjson.null, a.kibana.alert.suppression.terms[1].value)
        end
      end
    end)

    it("indexes the update over the first document in Elasticsearch, which ends with the final count", function()
      local sd = th.tmpdir()
      os.execute(string.format("python3 tests/support/sinkserver.py es --store %s/store --port-file %s/port " ..
        ">%s/log 2>&1 & echo $! > %s/pid", sd, sd, sd, sd))
      local port = th.wait_for(function() return th.read(sd .. "/port") end, 10)
      assert.truthy(port)
      local out, err, rc = th.run({ "replay", "--output", "elasticsearch:http://127.0.0.1:" .. port, "--output",
        "file:" .. sd .. "/alerts.ndjson", "--rules", rules({ grouped = SUPPRESS }), log })
      os.execute("kill " .. th.read(sd .. "/pid"):match("%d+"))
      assert.equal(0, rc, err)
      assert.equal("", out)
      local lines = th.alerts(th.read(sd .. "/alerts.ndjson"))
      local docs, versions = {}, 0
      for _, line in ipairs(th.lines(sd .. "/store")) do
        local doc = cjson.decode(line)
        docs[doc._id] = doc
      end
      local want = final(lines)
      for _, a in ipairs(want) do
        local doc = docs[a.kibana.alert.uuid]
        assert.truthy(doc, a.kibana.alert.uuid)
        assert.equal(a.kibana.alert.suppression.docs_count, doc._source.kibana.alert.suppression.docs_count)
        if doc.version > 1 then versions = versions + 1 end
      end
      local n = 0
      for _ in pairs(docs) do n = n + 1 end
      assert.equal(#want, n)
      assert.equal(#lines - #want, versions)
      assert.equal(#all, accounted(want))
    end)

    it("runs the example rule as the README shows it: 52 denied calls in 7 alerts", function()
      local out, err, rc = th.run({ "replay", "--rules", "examples/rules", log }, LIMITS)
      assert.equal(0, rc, err)
      local got = th.alerts(out)
      assert.equal(52, #all)
      assert.equal(7, #final(got))
      assert.equal(52, accounted(got))
      assert.equal(11, #got)
      assert.matches("4 alerts written again with their group's count", err, 1, true)
    end)

    it("is checked: a bad alert_suppression or interval is reported at its line and the rule not loaded", function()
      local r = rules({ broken = '  alert_suppression = { group_by = { "a", "b", "c", "d" } },\n',
        late = '  interval = "soon",\n' })
      local out, err, rc = th.run({ "check", r })
      assert.equal(1, rc, out .. err)
      local text = out .. err
      assert.matches("broken%.lua:8:.-alert_suppression%.group_by must list 1 to 3 field names", text)
      assert.matches("late%.lua:8:.-interval must be like 5m", text)
    end)

    it("is shown by show", function()
      local r = rules({ grouped = SUPPRESS .. "  max_signals = 7,\n" })
      local out, err, rc = th.run({ "show", r .. "/grouped.lua" })
      assert.equal(0, rc, err)
      assert.matches("at most 7 alerts in each 5m of event time", out, 1, true)
      assert.matches("one alert per user.name, event.action in 5m", out, 1, true)
    end)
  end)

  describe("across a restart", function()
    -- Longer than the fixtures' days: no group closes, so the counts a killed run made are left
    -- for the next run to write.
    local SUPPRESS = '  alert_suppression = { group_by = { "user.name", "event.action" }, duration = "30d" },\n'

    -- The offset committed for path in the state file (checkpoint.h), or nil.
    local function committed(state, path)
      for line in (th.read(state) or ""):gmatch("[^\n]+") do
        local offset, p = line:match("^%d+ %d+ %d+ %x+ (%d+) %d+ %d+ %x+ (.*)$")
        if p == path then return tonumber(offset) end
      end
    end

    local function run_until_read(r, dir, state, path)
      local h = th.start({ "run", "--rules", r, "--state", state, dir .. "/*.ndjson" }, LIMITS)
      local size = #th.read(path)
      assert.truthy(th.wait_for(function() return committed(state, path) == size end, 20), h.err())
      return h
    end

    it("goes on with the groups and duplicates of a run stopped, and of a run killed", function()
      local lines, odd, even = records(), {}, {}
      for i, l in ipairs(lines) do table.insert(i % 2 == 1 and odd or even, l) end
      local dir, sd = th.tmpdir(), th.tmpdir()
      local state = sd .. "/state"
      local r = rules({ grouped = SUPPRESS, all = "" })
      th.write(dir .. "/a.ndjson", table.concat(odd, "\n") .. "\n")
      local h = run_until_read(r, dir, state, dir .. "/a.ndjson")
      h.signal("TERM")
      assert.equal(0, h.wait(10), h.err())
      local first = th.alerts(h.out())
      assert.truthy(th.read(state .. ".alerts"):find("\ng ", 1, true))
      -- The other half, counted into the same groups, and the first again under another name
      -- (duplicates).
      th.write(dir .. "/b.ndjson", table.concat(even, "\n") .. "\n")
      th.write(dir .. "/c.ndjson", table.concat(odd, "\n") .. "\n")
      local h2 = run_until_read(r, dir, state, dir .. "/b.ndjson")
      local c = dir .. "/c.ndjson"
      assert.truthy(th.wait_for(function() return committed(state, c) == #th.read(c) end, 20), h2.err())
      -- Killed once its groups are kept, then started again on a fourth copy.
      assert.truthy(th.wait_for(function()
        local s = th.read(state .. ".alerts") or ""
        return #first > 0 and s:find("\ng ", 1, true)
      end, 10))
      th.sleep(1.2)  -- one more save: what the outputs have by now
      h2.signal("KILL")
      h2.wait(5)
      local second = th.alerts(th.complete_lines(h2.out()))
      th.write(dir .. "/d.ndjson", table.concat(lines, "\n") .. "\n")
      local h3 = run_until_read(r, dir, state, dir .. "/d.ndjson")
      h3.signal("TERM")
      assert.equal(0, h3.wait(10), h3.err())
      local third = th.alerts(h3.out())
      local every = {}
      for _, list in ipairs({ first, second, third }) do
        for _, a in ipairs(list) do every[#every + 1] = a end
      end
      -- The rule without suppression: each event's alert once over the three runs.
      local plain = of_rule(every, "all")
      assert.equal(#all, #plain)
      local seen = {}
      for _, a in ipairs(plain) do
        assert.is_nil(seen[a.kibana.alert.uuid])
        seen[a.kibana.alert.uuid] = true
      end
      -- The suppressed rule: every event counted once, in groups that went on across runs.
      local grouped = of_rule(every, "grouped")
      assert.equal(#all, accounted(grouped))
      local opened = {}
      for _, a in ipairs(grouped) do
        if a.kibana.alert.suppression.docs_count == 0 then
          assert.is_nil(opened[a.kibana.alert.uuid], "a group opened twice")
          opened[a.kibana.alert.uuid] = true
        end
      end
      assert.truthy(#of_rule(third, "grouped") > 0, "the stop wrote the counts the kill left unwritten")
      assert.matches("duplicates written once", h3.err())
    end)

    it("leaves a record to the next start when a stop comes before its unbuilt alert could be settled", function()
      local dir, sd = th.tmpdir(), th.tmpdir()
      local state, path = sd .. "/state", dir .. "/ct.ndjson"
      -- A second rule takes 0.4 s over e7: the stop comes while the worker has the object.
      local r = rules({ once = "  max_signals = 1,\n", slow = "  match = function(e) if e[\"event.id\"] == \"e7\" "
        .. "then local t = os.clock() + 0.4 while os.clock() < t do end end return false end,\n" })
      th.write(path, table.concat(five_windows(20), "\n") .. "\n")
      local h = th.start({ "run", "--rules", r, "--state", state, "--max-instructions", "2G", dir .. "/*.ndjson" },
        LIMITS)
      assert.truthy(th.wait_for(function() return committed(state, path) == #th.read(path) end, 20), h.err())
      local f = assert(io.open(path, "a"))
      f:write(LAST_OBJECT, "\n")
      f:close()
      th.sleep(0.2)
      h.signal("TERM")
      assert.equal(0, h.wait(10), h.err())
      local ids = {}
      for _, a in ipairs(of_rule(th.alerts(h.out()), "once")) do ids[#ids + 1] = a.event.id end
      assert.same({ "e1", "e3", "e4", "e5" }, ids, h.err())
      local h2 = run_until_read(r, dir, state, path)
      h2.signal("TERM")
      assert.equal(0, h2.wait(10), h2.err())
      ids = {}
      for _, a in ipairs(of_rule(th.alerts(h2.out()), "once")) do ids[#ids + 1] = a.event.id end
      assert.same({ "e6", "e7" }, ids, h.err() .. h2.err())
    end)
  end)
end)
