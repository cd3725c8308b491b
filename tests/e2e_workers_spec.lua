-- End to end: rules run in worker processes, never in the host.
--
-- The host (C, one libuv loop) reads files, keeps checkpoints and writes
-- alerts; `trailhound __worker` children evaluate, each under a seccomp
-- filter, watched by a wall-clock watchdog (--max-time) and a heap cap
-- (--max-worker-memory). What the issue measured on the old version is the
-- requirement here: a rule stuck inside one C call froze the host, SIGTERM
-- included; a rule keeping 30 MB per event grew the host to 8.5 GB; alerts
-- died in stdout's buffer. Real processes, real files, real signals, real
-- kill -9.
--
-- Timing targets are the issue's (signals served within 100 ms, a stop within
-- one second whatever a rule does); the assertions allow more where the
-- machine is shared (2 cores), and more again on the ASan build. Measured
-- figures are printed as TAP comments ("# ...").

local cjson = require "cjson"
local system = require "system"
local th = require "support.th"
local ev = require "support.events"

-- 13 events: 6 model-access and 4 policy attempts give exactly 10 alerts
-- (examples/NOTICE.md); the first PutResourcePolicy is the 7th line.
local DENIED = "examples/cloudtrail/bedrock-denied-derived.ndjson"
-- 312 real Stratus Red Team events, none of which the Bedrock rules match.
local STRATUS = "examples/cloudtrail/stratus-red-team.ndjson"
local BEDROCK = { [ev.MODEL_ACCESS] = 6, [ev.POLICY] = 4 }

local ASAN = th.bin:find("asan") ~= nil
-- The test build with a deliberate hole in the sandbox, built by `make test`.
local HOLE_BIN = "build/hole/trailhound"
-- The issue's targets, or what a sanitizer build (several times slower) gets.
local STOP_S = ASAN and 3 or 1      -- SIGTERM/SIGINT: stopped within
local SIGNAL_S = ASAN and 3 or 1    -- SIGUSR1: statistics within (target 0.1 s, shared machine)

local function now() return system.gettime() end

local function say(fmt, ...)
  io.stderr:write("# ", string.format(fmt, ...), ASAN and " (ASan build)" or "", "\n")
end

-- Lua pattern for a literal string.
local function lit(s) return (s:gsub("%p", "%%%0")) end

-- Each line of a file with the byte offset it starts at.
local function lines_at(path)
  local list, off = {}, 0
  for line in (th.read(path) or ""):gmatch("([^\n]*)\n") do
    list[#list + 1] = { offset = off, text = line }
    off = off + #line + 1
  end
  return list
end

-- Offset of the first line of DENIED whose eventName is name.
local function offset_of(name)
  for _, l in ipairs(lines_at(DENIED)) do
    if cjson.decode(l.text).eventName == name then return l.offset end
  end
  error("no " .. name .. " in " .. DENIED)
end

-- A rule module. o: n (its id's number), name, body (of match, after the
-- filter), on (the eventName it acts on; nil: every event), pre (code before
-- the module's table), tests (Lua source of a tests field).
local function rule(o)
  return table.concat({
    o.pre or "",
    "return {",
    string.format('  rule_id = "22222222-3333-4444-8555-%012d", name = "%s",', o.n, o.name),
    '  description = "workers spec", severity = "low", risk_score = 1,',
    o.tests and ("  tests = " .. o.tests .. ",") or "",
    "  match = function(e)",
    o.on and string.format('    if e["event.action"] ~= "%s" then return false end', o.on) or "",
    "    " .. o.body,
    "  end,",
    "}",
    "",
  }, "\n")
end

-- A rules folder: the two bundled Bedrock rules and these { file name = source }.
local rules_dir = th.rules_dir

-- Wait for fn with a fine poll (5 ms): for measuring how soon something happens.
local function wait_fine(fn, timeout)
  local deadline = now() + timeout
  repeat
    local v = fn()
    if v then return v end
    system.sleep(0.005)
  until now() > deadline
  return nil
end

-- Seconds from t0 until the host's process has ended (a zombie, or reaped), measured
-- finely; nil if it runs on past timeout seconds.
local function gone_after(h, t0, timeout)
  local gone = wait_fine(function()
    local stat = th.read("/proc/" .. h.pid .. "/stat")
    return stat == nil or stat == "" or stat:match("^%d+ %b() (%a)") == "Z"
  end, timeout)
  return gone and now() - t0 or nil
end

-- The worker table of the last statistics block in a host's stderr, once
-- the block is whole: { index, pid, batches, restarts, heap (MiB), in_flight,
-- role } per worker, and the block's text; nil while there is none.
local function last_stats(err)
  local at, from = nil, 1
  while true do
    local s = err:find("statistics after", from, true)
    if not s then break end
    at, from = s, s + 1
  end
  local stop = at and select(2, err:find("\n  queue: [^\n]*\n", at))
  if not stop then return nil end
  local block = err:sub(at, stop)
  local rows = {}
  for i, pid, b, r, heap, fl, role in block:gmatch("\n%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+([%d%.]+)%s+(%d+)%s+(%a+)") do
    rows[#rows + 1] = { index = tonumber(i), pid = tonumber(pid), batches = tonumber(b), restarts = tonumber(r),
      heap = tonumber(heap), in_flight = tonumber(fl), role = role }
  end
  return rows, block
end

local function nstats(err) return select(2, err:gsub("statistics after", "")) end

-- Ask a running host for statistics (SIGUSR1) and wait for the whole table.
local function stats(h)
  -- A SIGUSR1 before the host has set up its signals would end it, as any process.
  assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 20), h.err())
  local before = nstats(h.err())
  h.signal("USR1")
  local rows, block
  th.wait_for(function()
    local err = h.err()
    if nstats(err) <= before then return false end
    rows, block = last_stats(err)
    return rows ~= nil
  end, 10)
  assert.truthy(rows, "no statistics on SIGUSR1: " .. h.err())
  return rows, block
end

-- Resident memory of a process now, in MiB (0 once it is gone).
local function rss_mib(pid) return th.proc_mib(pid, "VmRSS") end

-- Size of a file (0 when there is none).
local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return 0 end
  local n = f:seek("end")
  f:close()
  return n
end

local children = th.children

-- Start tests/support/writer.lua: count denied PutResourcePolicy events with
-- ids w-1..w-count appended to path (pause seconds between lines); it writes
-- writer.done beside path when it is through.
local function writer(path, count, pause) th.writer(path, count, "append", 0, pause) end

-- A large CloudTrail file: the Stratus lines `copies` times, with a denied
-- PutResourcePolicy (one alert each) after every `every`th line. Returns the
-- denied events' ids, in file order.
local function corpus(path, copies, every)
  local stratus = th.lines(STRATUS)
  local template = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "D-ID"))
  local pre, post = template:match("^(.-)D%-ID(.*)$")
  local f = assert(io.open(path, "wb"))
  local ids = {}
  for c = 1, copies do
    for i, l in ipairs(stratus) do
      f:write(l, "\n")
      if i % every == 0 then
        ids[#ids + 1] = "d-" .. c .. "-" .. i
        f:write(pre, ids[#ids], post)
      end
    end
  end
  f:close()
  return ids
end

-- Alerts of one or more outputs by the source event's id: { [id] = { uuid = count } },
-- and the number of alert lines.
local function by_event(...)
  local seen, n = {}, 0
  for _, out in ipairs({ ... }) do
    for line in out:gmatch("[^\n]+") do
      local a = cjson.decode(line)
      local id = a.event.id
      seen[id] = seen[id] or {}
      seen[id][a.kibana.alert.uuid] = (seen[id][a.kibana.alert.uuid] or 0) + 1
      n = n + 1
    end
  end
  return seen, n
end

-- Every id alerted at least once, each with one uuid however often.
local function assert_covered(ids, seen)
  for _, id in ipairs(ids) do
    local uuids = seen[id]
    assert.truthy(uuids, "no alert for event " .. id)
    local k = 0
    for _ in pairs(uuids) do k = k + 1 end
    assert.equal(1, k, "event " .. id .. " has alerts with different uuids")
  end
end

-- The four stalls of the issue: each runs inside one C call (or a quadratic
-- string of them), where no instruction is counted. Measured with lua5.4
-- alone, each runs past 10 s.
local STALLS = {
  { "string_rep", 'return #string.rep("", math.maxinteger) > 0' },
  { "table_move", "return #table.move({}, 1, math.maxinteger - 1, 2) > 0" },
  { "concat", 'local s = "" for _ = 1, 3000000 do s = s .. "x" end return #s < 0' },
  -- a 30 KB string made of the event's own field, and a backtracking pattern
  { "backtrack", 'local s = e["event.action"]:rep(1800) return s:find(".-.-.-x") ~= nil' },
}

local function stall_rule(i, s, tests)
  return rule({ n = 100 + i, name = "stall " .. s[1], on = "PutResourcePolicy", body = s[2], tests = tests })
end

describe("workers", function()
  local h
  after_each(th.cleanup)  -- stops the hosts started too

  describe("a rule stuck in one C call", function()
    local at = offset_of("PutResourcePolicy")

    for i, s in ipairs(STALLS) do
      it("(" .. s[1] .. ") is stopped after --max-time in replay: quarantined with file, record and time, and every " ..
        "Bedrock alert is there", function()
        local d = rules_dir({ [s[1] .. ".lua"] = stall_rule(i, s) })
        local t0 = now()
        h = th.start({ "replay", "--rules", d, "--max-time", "300", DENIED })
        local rc = h.wait(60)
        local took = now() - t0
        assert.equal(0, rc, "replay did not finish within 60 s: " .. h.err())
        say("%s: replay with --max-time 300 took %.2f s", s[1], took)
        local err = h.err()
        assert.same(BEDROCK, th.by_rule(th.alerts(h.out())))
        assert.matches("13 records, 0 malformed, 10 alerts", err, 1, true)
        local file = d .. "/" .. s[1] .. ".lua"
        local ms = err:match("rule " .. lit(file) .. " quarantined: a call ran for (%d+) ms on " .. lit(DENIED) ..
          ":" .. at .. ", past %-%-max%-time %(300 ms%)")
        assert.truthy(ms, "no quarantine naming the rule, the record and the time in:\n" .. err)
        assert.is_true(tonumber(ms) >= 300, ms .. " ms reported")
        -- About --max-time, not forever: the watchdog ticks every 60 ms at this limit.
        assert.is_true(took >= 0.3, string.format("%.2f s: the rule cannot have run for 300 ms", took))
        assert.is_true(took < (ASAN and 10 or 3), string.format("replay took %.2f s", took))
      end)
    end

    for i, s in ipairs(STALLS) do
      -- SIGTERM for two of them, SIGINT (Ctrl-C) for the others.
      local sig = i % 2 == 1 and "TERM" or "INT"
      it("(" .. s[1] .. ") added while running: statistics and SIG" .. sig .. " are served while it is stuck, no " ..
        "event is lost, and the restart does not stall on the same record", function()
        local d = rules_dir()
        local dir = th.tmpdir()
        local f, state = dir .. "/ct.ndjson", dir .. "/state"
        local lines = th.lines(DENIED)
        th.write(f, table.concat(lines, "\n", 1, 6) .. "\n")  -- the 6 model-access attempts
        -- --max-time 30000: the stop, not the watchdog, must end what is stuck.
        h = th.start({ "run", "--rules", d, "--state", state, "--max-time", "30000", "--poll", "50", f })
        assert.truthy(th.wait_for(function() return h.count() >= 6 end, 20), h.err())
        -- Saved into the folder; its test does not reach the stall, so it passes the gate.
        local file = d .. "/" .. s[1] .. ".lua"
        th.write(file, stall_rule(i, s,
          '{ { name = "another action", expect = false, event = { eventName = "ListFoundationModels" } } }'))
        assert.truthy(th.wait_for(function() return h.err():find("added from " .. file, 1, true) end, 20),
          "the rule did not pass the gate: " .. h.err())
        th.append(f, table.concat(lines, "\n", 7) .. "\n")
        -- The batch holding the 7 new lines is stuck at the first PutResourcePolicy.
        local rows = th.wait_for(function()
          local r = stats(h)
          for _, w in ipairs(r) do
            if w.role == "evaluate" and w.in_flight > 0 then return r end
          end
          th.sleep(0.1)
        end, 20)
        assert.truthy(rows, "no batch went to a worker: " .. h.err())
        th.sleep(0.3)
        -- SIGUSR1 while the call is stuck.
        local t0 = now()
        local before = nstats(h.err())
        h.signal("USR1")
        local got = wait_fine(function() return nstats(h.err()) > before end, 10)
        local usr1 = now() - t0
        say("%s: statistics %.0f ms after SIGUSR1, while a rule call is stuck", s[1], usr1 * 1000)
        assert.truthy(got, "no statistics while the rule is stuck: " .. h.err())
        assert.is_true(usr1 < SIGNAL_S, string.format("statistics %.2f s after SIGUSR1", usr1))
        assert.equal(6, h.count(), "alerts after the stuck record came out: it was not stuck")
        -- SIGTERM (SIGINT) while the call is stuck.
        t0 = now()
        h.signal(sig)
        local took = gone_after(h, t0, 35)
        assert.truthy(took, "no stop on SIG" .. sig .. " within 35 s: " .. h.err())
        local rc = h.wait(5)
        say("%s: stopped %.0f ms after SIG%s, while a rule call is stuck", s[1], took * 1000, sig)
        assert.equal(0, rc, h.err())
        assert.is_true(took < STOP_S, string.format("SIG%s took %.2f s", sig, took))
        assert.matches("SIG" .. sig .. ": stopping", h.err(), 1, true)
        local first = h.out()
        -- The restart meets the same record: the watchdog quarantines the rule, the rest goes on.
        local h2 = th.start({ "run", "--rules", d, "--state", state, "--max-time", "300", "--poll", "50", f })
        assert.truthy(th.wait_for(function() return h2.count() >= 4 end, 30), "the restart stalled: " .. h2.err())
        assert.matches("rule " .. lit(file) .. " quarantined: a call ran for %d+ ms on " .. lit(f) .. ":" .. at ..
          ", past", h2.err())
        -- and follows the file on
        th.append(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "after-restart")))
        assert.truthy(th.wait_for(function() return h2.count() >= 5 end, 20), h2.err())
        h2.signal("TERM")
        assert.equal(0, h2.wait(10))
        -- Across the two runs: every alert once (the first run's batch was committed before the stop).
        local all = th.alerts(first .. h2.out())
        assert.same({ [ev.MODEL_ACCESS] = 6, [ev.POLICY] = 5 }, th.by_rule(all))
        local seen, n = by_event(first, h2.out())
        assert.truthy(seen["after-restart"])
        local distinct = 0
        for _ in pairs(seen) do distinct = distinct + 1 end
        assert.equal(n, distinct, "an alert was written twice")
      end)
    end
  end)

  it("quarantines a rule that keeps 30 MB per event, with its name and share, and every process stays bounded",
    function()
    -- Without a heap cap this rule takes 30 MB more at every event: 6 GB over these 210.
    local d = rules_dir({ ["hoarder.lua"] = rule({ n = 200, name = "hoarder", pre = "local kept = {}",
      body = 'kept[#kept + 1] = string.rep("x", 30 * 2^20) return false' }) })
    local dir = th.tmpdir()
    local f = dir .. "/ct.ndjson"
    th.write(f, th.read(DENIED))
    -- The memory is what this is about: on a busy machine a 30 MB string.rep can take a second,
    -- and the wall-clock limit must not come first.
    h = th.start({ "run", "--no-state", "--rules", d, "--max-worker-memory", "256M", "--max-time", "60000",
      "--poll", "50", f })
    assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 20), h.err())
    writer(f, 200, 0.005)
    local peak, pids = { [h.pid] = 0 }, {}
    local done = th.wait_for(function()
      for _, pid in ipairs(children(h.pid)) do
        if not peak[pid] then peak[pid], pids[#pids + 1] = 0, pid end
      end
      for pid, mib in pairs(peak) do peak[pid] = math.max(mib, rss_mib(pid)) end
      return th.read(dir .. "/writer.done") and h.count() >= 210
    end, 60)
    assert.truthy(done, "alerts: " .. h.count() .. "\n" .. h.err())
    th.sleep(0.2)
    local err = h.err()
    local file = d .. "/hoarder.lua"
    local kept = err:match("rule " .. lit(file) .. " quarantined: it keeps (%d+) MiB between calls, more than its " ..
      "share of the worker's heap %(43 MiB of %-%-max%-worker%-memory 256 MiB%); \"hoarder\" no longer runs")
    assert.truthy(kept, "no quarantine naming the rule and its share in:\n" .. err)
    assert.same({ [ev.MODEL_ACCESS] = 6, [ev.POLICY] = 204 }, th.by_rule(th.alerts(h.out())))
    local rows = stats(h)
    local restarts = 0
    for _, w in ipairs(rows) do restarts = restarts + w.restarts end
    assert.is_true(restarts >= 1, "the worker that held the memory was not started afresh")
    local limit = ASAN and 600 or 400
    local text = {}
    for pid, mib in pairs(peak) do
      text[#text + 1] = string.format("%s %d: %.0f MiB", pid == h.pid and "host" or "worker", pid, mib)
    end
    table.sort(text)
    say("rule keeping 30 MB per event, --max-worker-memory 256M: it kept %s MiB; peak RSS %s", kept,
      table.concat(text, ", "))
    assert.is_true(#pids >= 3, "the workers were not seen")
    for pid, mib in pairs(peak) do
      assert.is_true(mib < limit, string.format("pid %d reached %.0f MiB", pid, mib))
    end
  end)

  it("stops within a second on SIGTERM in the middle of a large backlog, and the restart resumes", function()
    local dir = th.tmpdir()
    local f, state = dir .. "/big.ndjson", dir .. "/state"
    local ids = corpus(f, 45, 16)  -- 20 MB, 855 denied events among 14,000 others
    local size = #th.read(f)
    h = th.start({ "run", "--state", state, "--poll", "50", f })
    assert.truthy(th.wait_for(function() return h.count() >= 50 end, 30), h.err())
    local t0 = now()
    h.signal("TERM")
    local took = gone_after(h, t0, 30)
    assert.truthy(took, "no stop on SIGTERM within 30 s: " .. h.err())
    local rc = h.wait(5)
    local first = h.out()
    local _, n1 = by_event(first)
    say("SIGTERM with a 20 MB backlog, %d of %d alerts out: stopped in %.0f ms", n1, #ids, took * 1000)
    assert.equal(0, rc, h.err())
    assert.is_true(took < STOP_S, string.format("SIGTERM took %.2f s", took))
    assert.is_true(n1 < #ids, "the whole file was done before SIGTERM: nothing left to resume")
    -- For the report: the offset the state holds (checkpoint.c's format: dev ino fp_len fp offset ...).
    local committed = (th.read(state) or ""):match("\n%d+ %d+ %d+ %x+ (%d+) ") or "?"
    local h2 = th.start({ "run", "--state", state, "--poll", "50", f })
    local seen
    assert.truthy(th.wait_for(function()
      if n1 + h2.count() < #ids then return false end  -- cheap, before decoding
      seen = by_event(first, h2.out())
      for _, id in ipairs(ids) do if not seen[id] then return false end end
      return true
    end, 60), "the restart did not reach the end: " .. h2.err())
    h2.signal("TERM")
    assert.equal(0, h2.wait(10))
    local _, n2 = by_event(h2.out())
    say("restart: %d alerts (%d written by both runs); the state said %s of %d bytes", n2, n1 + n2 - #ids,
      committed, size)
    assert_covered(ids, by_event(first, h2.out()))
    assert.is_true(n2 < #ids, "the restart read the file from its start again")
  end)

  it("loses and repeats nothing when workers are killed from outside while a writer appends", function()
    local dir = th.tmpdir()
    local f = dir .. "/ct.ndjson"
    th.write(f, "")
    local N = 8000
    h = th.start({ "run", "--no-state", "--workers", "2", "--poll", "50", f })
    assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 20), h.err())
    -- At full speed the writer is through in 50 ms, before any kill: 3,000 lines a second keeps
    -- it writing (4.5 MB/s) while the workers are killed.
    writer(f, N, 0.0002)
    -- Three times, kill -9 the evaluation worker with the most batches in hand.
    local killed, writing = {}, 0
    for k, at in ipairs({ N // 8, N // 3, N // 2 }) do
      assert.truthy(th.wait_for(function() return h.count() >= at end, 60), h.err())
      if not th.read(dir .. "/writer.done") then writing = writing + 1 end
      local victim
      for _, w in ipairs(stats(h)) do
        if w.role == "evaluate" and w.pid > 0 and (victim == nil or w.in_flight > victim.in_flight) then victim = w end
      end
      assert.truthy(victim, "no evaluation worker in the statistics")
      local cmdline = (th.read("/proc/" .. victim.pid .. "/cmdline") or ""):gsub("%z", " ")
      assert.matches("__worker", cmdline, 1, true)
      os.execute("kill -9 " .. victim.pid)
      killed[k] = victim
      assert.truthy(th.wait_for(function()
        return h.err():find("worker " .. victim.index .. " (pid " .. victim.pid .. ", evaluating) was ended by SIGKILL",
          1, true)
      end, 10), "the host did not say the worker was lost: " .. h.err())
    end
    assert.truthy(th.wait_for(function() return th.read(dir .. "/writer.done") and h.count() >= N end, 120),
      "alerts: " .. h.count() .. " of " .. N .. "\n" .. h.err())
    th.sleep(0.3)
    -- Started again: the statistics show the restarts, and new pids.
    local rows = stats(h)
    local restarts = 0
    for _, w in ipairs(rows) do
      if w.role == "evaluate" then restarts = restarts + w.restarts end
      for _, v in ipairs(killed) do assert.are_not.equal(v.pid, w.pid) end
    end
    assert.equal(3, restarts)
    local err = h.err()
    local _, resent = err:gsub("worker %d+: its %d+ batch%a* %a+ sent again", "")
    say("%d alerts while 3 workers were killed with kill -9 (%d of them with batches in hand, sent again; " ..
      "the writer still writing at %d of the kills)", h.count(), resent, writing)
    local seen, n = by_event(h.out())
    local missing, dups = {}, 0
    for i = 1, N do
      local uuids = seen["w-" .. i]
      if not uuids then missing[#missing + 1] = "w-" .. i end
      for _, c in pairs(uuids or {}) do dups = dups + c - 1 end
    end
    assert.is_true(resent >= 1, "no kill caught a worker with batches in hand: " .. err)
    assert.same({}, missing)
    assert.equal(0, dups, "alerts written twice in one run")
    assert.equal(N, n)
  end)

  it("leaves no torn line in an output appended to (>>) across kill -9 of the host and restarts", function()
    local dir = th.tmpdir()
    local f, state, alerts = dir .. "/ct.ndjson", dir .. "/state", dir .. "/alerts.ndjson"
    local N = 4000
    -- Every line an alert: the output is written all the time.
    local template = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "T-ID"))
    local pre, post = template:match("^(.-)T%-ID(.*)$")
    local buf = {}
    for i = 1, N do buf[i] = pre .. "t-" .. i .. post end
    th.write(f, table.concat(buf))
    math.randomseed(os.time())
    local torn, natural, kills, unrepaired = false, 0, 5, {}
    local t0 = now()
    for k = 1, kills + 1 do
      local size0 = size_of(alerts)
      h = th.start({ "run", "--state", state, "--poll", "50", f }, { stdout = alerts, append = true })
      assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 20), h.err())
      -- The last kill left a torn line (the kernel, or the spec): the start has cut it off, and said so.
      if torn and not h.err():find("stdout: removed the unfinished last line", 1, true) then
        unrepaired[#unrepaired + 1] = "run " .. k
      end
      if k <= kills then
        -- kill -9 at a random moment while alerts are being written
        assert.truthy(th.wait_for(function() return size_of(alerts) > size0 end, 30), h.err())
        th.sleep(math.random() * 0.2)
        h.signal("KILL")
        assert.equal(137, h.wait(10))
        local out = th.read(alerts) or ""
        torn = out:sub(-1) ~= "\n"
        if torn then natural = natural + 1 end
        if not torn and k == 1 then
          -- As the kernel leaves a write it stopped at a page: half of a line.
          local nl = #out - (out:sub(1, -2):reverse():find("\n", 1, true) or #out)  -- the newline before it
          th.append(alerts, out:sub(nl + 1, nl + (#out - 1 - nl) // 2))
          torn = true
        end
      else
        -- Lines of earlier runs count too: wait until every event has one.
        assert.truthy(th.wait_for(function()
          local ok, seen = pcall(by_event, th.complete_lines(th.read(alerts) or ""))
          if not ok then return false end
          for i = 1, N do
            if not seen["t-" .. i] then return false end
          end
          return true
        end, 60), "not every event alerted after the restarts: " .. h.err())
        th.sleep(0.2)
        h.signal("TERM")
        assert.equal(0, h.wait(10))
      end
    end
    -- Every line parses, and the uuids cover every event (one uuid per event).
    local out = th.read(alerts)
    local n, bad = 0, {}
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      if not pcall(cjson.decode, line) then bad[#bad + 1] = n .. ": " .. line:sub(1, 80) end
    end
    say("%d kill -9 while writing alerts in %.1f s: %d left a torn last line (and the spec tore one), " ..
      "%d lines for %d events", kills, now() - t0, natural, n, N)
    assert.same({}, bad, "lines that do not parse")
    assert.same({}, unrepaired, "starts that did not cut off the torn last line the kill before left")
    assert.equal("\n", out:sub(-1))
    local ids = {}
    for i = 1, N do ids[i] = "t-" .. i end
    assert_covered(ids, by_event(out))
  end)

  it("with --workers 2 both workers evaluate a large replay, and the alerts are the same as with one, " ..
    "in the order of the input", function()
    local dir = th.tmpdir()
    local f = dir .. "/big.ndjson"
    local ids = corpus(f, 100, 16)  -- 44 MB: about 180 batches
    local outs = {}
    for _, workers in ipairs({ "1", "2" }) do
      local t0 = now()
      -- --no-prefilter: every batch goes to a worker (with it, most are done without one, and
      -- the replay may be over before any statistics).
      h = th.start({ "replay", "--no-prefilter", "--workers", workers, f, DENIED })
      assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 20), h.err())
      -- Statistics during the replay, until it ends: the last table counts (nearly) every batch.
      -- (Not in its last tenth: the replay may be over before the answer.)
      local rows
      local rc = th.wait_for(function()
        local done = th.read(h.dir .. "/rc")
        if done then return tonumber(done:match("%d+")) + 1 end
        if h.count() < #ids * 0.9 then h.signal("USR1") end
        th.sleep(0.1)
        rows = last_stats(h.err()) or rows
      end, 120)
      assert.equal(1, rc, "replay --workers " .. workers .. ": " .. h.err())
      assert.truthy(rows, "no statistics during the replay: " .. h.err())
      local eval, per = 0, {}
      for _, w in ipairs(rows) do
        if w.role == "evaluate" then
          eval = eval + 1
          per[#per + 1] = w.batches
        end
      end
      say("replay of 44 MB with --workers %s: %.2f s; batches per evaluation worker at the last statistics: %s",
        workers, now() - t0, table.concat(per, ", "))
      assert.equal(tonumber(workers), eval)
      for i, b in ipairs(per) do assert.is_true(b > 0, "evaluation worker " .. (i - 1) .. " got no batch") end
      outs[workers] = h.out()
      assert.matches(#ids + 10 .. " alerts", h.err(), 1, true)
    end
    -- The same alerts, in the same order: the input's (the big file's lines, then DENIED's).
    local one, two = th.alerts(outs["1"]), th.alerts(outs["2"])
    assert.equal(#ids + 10, #two)
    local last_path, last_off = f, -1
    for i, a in ipairs(two) do
      assert.equal(one[i].kibana.alert.uuid, a.kibana.alert.uuid, "alert " .. i .. " differs or is out of place")
      local src = a.trailhound.source
      if src.path ~= last_path then
        assert.equal(f, last_path, "alerts of " .. src.path .. " before the end of " .. last_path)
        last_path, last_off = src.path, -1
      end
      assert.is_true(src.offset > last_off, "alert " .. i .. " out of the file's order")
      last_off = src.offset
      -- The whole alert is the same but for the times it was made (and the event ingested).
      for _, x in ipairs({ one[i], a }) do
        x["@timestamp"], x.kibana.alert.start = nil, nil
        x.event.ingested, x.kibana.alert.original_event.ingested = nil, nil
      end
      assert.same(one[i], a)
    end
    assert.equal(DENIED, last_path)
    for i, id in ipairs(ids) do assert.equal(id, two[i].event.id) end
  end)

  it("skips a record that stalls workers with no rule in flight twice, and says where it is", function()
    -- Three million numbers in one record: decoding it takes longer than ten times --max-time
    -- (the limit of decoding and normalizing one record), before any rule runs.
    local dir = th.tmpdir()
    local f = dir .. "/slow.ndjson"
    local before = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "before"))
    local slow = '{"eventSource":"s3.amazonaws.com","a":[' .. string.rep("1,", 3000000) .. '1]}\n'
    th.write(f, before .. slow .. ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "after")))
    -- No rule could match it (an S3 call): the prefilter would skip it undecoded.
    h = th.start({ "replay", "--no-prefilter", "--max-time", "10", "--max-line", "64M", f })
    assert.equal(0, h.wait(60), h.err())
    local err = h.err()
    local ids = {}
    for _, a in ipairs(th.alerts(h.out())) do ids[#ids + 1] = a.event.id end
    assert.same({ "before", "after" }, ids)
    assert.matches(f .. ":" .. #before .. ": skipped: this record stopped a worker twice with no rule in flight",
      err, 1, true)
    local _, lost = err:gsub("%(pid %d+, evaluating%) was stopped by the watchdog", "")
    assert.equal(2, lost)
    assert.matches("2 records, 1 malformed, 2 alerts", err, 1, true)
  end)

  it("reports a record larger than a worker's heap can hold, and goes on", function()
    local dir = th.tmpdir()
    local f = dir .. "/huge.ndjson"
    local big = ev.denied("PutResourcePolicy", "AccessDenied", "huge")
    big.requestParameters = { blob = string.rep("A", 20 * 2 ^ 20) }
    local before = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "before"))
    th.write(f, before .. ev.line(big) .. ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "after")))
    h = th.start({ "replay", "--max-worker-memory", "16M", "--max-line", "64M", f })
    assert.equal(0, h.wait(60), h.err())
    local err = h.err()
    local ids = {}
    for _, a in ipairs(th.alerts(h.out())) do ids[#ids + 1] = a.event.id end
    assert.same({ "before", "after" }, ids)
    assert.matches(f .. ":" .. #before .. ": larger than a worker's heap can hold (--max-worker-memory 16 MiB), " ..
      "skipped", err, 1, true)
    assert.not_matches("was ended by", err)
    assert.matches("2 records, 1 malformed, 2 alerts", err, 1, true)
  end)

  it("quarantines a rule hoarding inside one S3 object before it fills the heap, and loses no other alert",
    function()
    -- One CloudTrail S3 object of 52 events is one record: the heap is looked at after every event of it,
    -- not only after the record, and a full heap is not held against whichever rule allocated last.
    local dir = th.tmpdir()
    local recs = {}
    for i = 1, 52 do
      recs[i] = ev.denied(i % 2 == 0 and "PutResourcePolicy" or "PutFoundationModelEntitlement", "AccessDenied",
        "s3-" .. i)
    end
    th.write(dir .. "/object.json", cjson.encode({ Records = recs }))
    local d = rules_dir({
      ["hoarder.lua"] = rule({ n = 41, name = "hoarder", pre = "local kept = {}",
        body = 'kept[#kept + 1] = string.rep(e["event.id"], 30 * 2 ^ 20 // 5) return false' }),
      ["builder.lua"] = rule({ n = 42, name = "builder",
        body = 'local s = string.rep("y", 25 * 2 ^ 20) return #s > 0' }),
    })
    h = th.start({ "replay", "--workers", "1", "--rules", d, "--max-worker-memory", "256M", "--max-time", "60000",
      "--max-line", "64M", dir .. "/object.json" })
    assert.equal(0, h.wait(120), h.err())
    local err = h.err()
    local counts = th.by_rule(th.alerts(h.out()))
    assert.equal(52, counts.builder, err)   -- every event, hoarding or not
    assert.equal(26, counts[ev.MODEL_ACCESS])
    assert.equal(26, counts[ev.POLICY])
    assert.matches("rule " .. lit(d) .. "/hoarder.lua quarantined: it keeps %d+ MiB between calls", err)
    assert.not_matches("builder.lua quarantined", err, 1, true)
    assert.not_matches("could not build the alert", err, 1, true)
  end)

  it("does not hold a verdict on a rule's old version against its new one", function()
    -- Version 1 is stuck in one C call; version 2 is saved while it is: the watchdog's kill of the
    -- call still running version 1 must not quarantine version 2.
    local d = rules_dir()
    local file = d .. "/stall.lua"
    local function version(v, body)
      return (rule({ n = 43, name = "stall", on = "PutResourcePolicy", body = body }):gsub("risk_score = 1,",
        "risk_score = 1, version = " .. v .. ","))
    end
    th.write(file, version(1, 'return #string.rep("", math.maxinteger) > 0'))
    local f = th.tmpdir() .. "/ct.ndjson"
    th.write(f, "")
    h = th.start({ "run", "--no-state", "--workers", "1", "--max-time", "3000", "--rules", d, f })
    assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 20), h.err())
    th.append(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "old-1")))
    th.sleep(0.5)  -- stuck in version 1 now
    th.write(file, version(2, "return true"))
    assert.truthy(th.wait_for(function() return h.err():find('"stall" version 2 reloaded', 1, true) end, 20),
      h.err())
    -- the watchdog ends the stuck call at 3 s; then more events, for version 2
    assert.truthy(th.wait_for(function() return h.err():find("was stopped by the watchdog", 1, true) end, 20),
      h.err())
    th.append(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "new-1")))
    assert.truthy(th.wait_for(function()
      return (th.by_rule(th.alerts(h.out())).stall or 0) >= 2
    end, 20), "version 2 does not run: " .. h.err())
    h.signal("TERM")
    assert.equal(0, h.wait(10))
    assert.not_matches("stall.lua quarantined", h.err(), 1, true)
  end)

  it("skips no record and quarantines no rule when a worker is killed from outside twice on it", function()
    -- A slow rule keeps each worker on one record for a while; kill -9 hits it twice there.
    local d = rules_dir({ ["slow.lua"] = rule({ n = 44, name = "slow", on = "PutResourcePolicy",
      body = "local t = os.clock() while os.clock() - t < 0.8 do end return true" }) })
    -- --max-time well past the rule's 0.8 s of CPU: on a loaded machine that is more than the
    -- default 1 s of wall time, and only the kills from outside are this spec's.
    h = th.start({ "replay", "--workers", "1", "--rules", d, "--max-instructions", "2G", "--max-time", "30000",
      DENIED })
    local killed = 0
    for _ = 1, 2 do
      local pid
      th.wait_for(function()
        local rows = select(1, stats(h))
        for _, r in ipairs(rows or {}) do
          if r.role == "evaluate" and r.in_flight > 0 then pid = r.pid end
        end
        return pid
      end, 20)
      if pid then
        th.sleep(0.3)
        os.execute("kill -9 " .. pid)
        killed = killed + 1
        th.wait_for(function() return select(2, h.err():gsub("was ended by SIGKILL", "")) >= killed end, 10)
      end
    end
    assert.equal(2, killed)
    assert.equal(0, h.wait(120), h.err())
    local err = h.err()
    assert.not_matches("skipped", err, 1, true)
    assert.not_matches("quarantined", err, 1, true)
    -- DENIED holds 3 PutResourcePolicy
    assert.same({ [ev.MODEL_ACCESS] = 6, [ev.POLICY] = 4, slow = 3 }, th.by_rule(th.alerts(h.out())))
  end)

  it("stops within a second on SIGTERM while stdout's reader does not read", function()
    local dir = th.tmpdir()
    local f = dir .. "/big.ndjson"
    corpus(f, 10, 16)
    local fifo = dir .. "/out.fifo"
    os.execute("mkfifo " .. th.quote(fifo))
    -- a reader that opens the pipe and never reads it
    os.execute(string.format("( exec 3<%s; sleep 30 ) >/dev/null 2>&1 &", th.quote(fifo)))
    h = th.start({ "run", "--no-state", f }, { stdout = fifo })
    assert.truthy(th.wait_for(function()
      local _, block = stats(h)
      local waiting = block and tonumber(block:match("(%d+) alerts? %([%d.]+ of [%d.]+ MiB%) not yet delivered"))
      return waiting and waiting > 0
    end, 30), h.err())
    local t0 = now()
    h.signal("TERM")
    local took = gone_after(h, t0, 10)
    say("SIGTERM with stdout's reader stalled: stopped in %.0f ms", (took or 99) * 1000)
    assert.truthy(took and took < STOP_S + 0.5, "did not stop: " .. h.err())
    assert.matches("not committed: the next start reads their records again", h.err(), 1, true)
  end)

  it("keeps its rules when the gate worker answers what does not hold together", function()
    -- A gate worker that escaped its sandbox may answer anything: here one that says a file it was
    -- never sent is a new rule. The host checks the whole answer before it changes anything.
    local home = th.tmpdir()
    os.execute("cp -r scripts " .. th.quote(home))
    local w = th.read(home .. "/scripts/worker.lua")
    w = w:gsub("\n  return logs, live, result%.norm ~= normalize\n",
      '\n  live[#live + 1] = { path = "/nonexistent.lua", new = true, id = "evil", name = "evil", version = "" }' ..
      "\n  return logs, live, result.norm ~= normalize\n")
    assert.truthy(w:find("/nonexistent.lua", 1, true), "the gate was not tampered with")
    th.write(home .. "/scripts/worker.lua", w)
    local d = rules_dir()
    local f = th.tmpdir() .. "/ct.ndjson"
    th.write(f, "")
    h = th.start({ "run", "--no-state", "--rules", d, f }, { env = "TRAILHOUND_HOME=" .. home })
    assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 20), h.err())
    local p = d .. "/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua"
    th.write(p, (th.read(p):gsub("\n  version = 1,", "\n  version = 2,", 1)))
    assert.truthy(th.wait_for(function()
      return h.err():find("keeps answering what does not hold together; the running rules stay", 1, true)
    end, 30), h.err())
    th.append(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "after-nonsense")))
    assert.truthy(th.wait_for(function() return h.count() >= 1 end, 20), h.err())
    h.signal("TERM")
    assert.equal(0, h.wait(10), h.err())
    assert.same({ [ev.POLICY] = 1 }, th.by_rule(th.alerts(h.out())))
    assert.not_matches("evil", h.err(), 1, true)
  end)

  it("lets no SIGUSR1 kill it or starve it: statistics asked for while it works and exits", function()
    -- Closing a signal's last handle gives it back its default action, which is to terminate:
    -- a monitoring loop asking for statistics must not end a replay that is finishing. Nor may
    -- it keep the loop printing statistics instead of working (at most one print per 100 ms).
    local rcs, summaries = {}, 0
    for i = 1, 8 do
      h = th.start({ "replay", DENIED })
      assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 20), h.err())
      -- as fast as the shell's kill builtin goes, until the process is gone (or a minute passed)
      os.execute(string.format("timeout 60 sh -c 'while kill -USR1 %d 2>/dev/null; do :; done'", h.pid))
      rcs[i] = h.wait(20)
      if h.err():find("13 records, 0 malformed, 10 alerts", 1, true) then summaries = summaries + 1 end
    end
    say("replays under a storm of SIGUSR1: exit statuses %s", table.concat(rcs, " "))
    assert.same({ 0, 0, 0, 0, 0, 0, 0, 0 }, rcs)
    assert.equal(8, summaries)
  end)

  describe("the seccomp filter, with the test build's deliberate hole (" .. HOLE_BIN .. ")", function()
    -- Three rules that escape the Lua sandbox through hole.* (engine.c, TH_TEST_HOLE): a file
    -- opened for writing, a program run, a connection to a port of this machine.
    local function hole_rules(tmp, port)
      return rules_dir({
        ["hole_open.lua"] = rule({ n = 701, name = "hole open", on = "PutResourcePolicy",
          body = string.format("hole.open(%q) return false", tmp .. "/opened") }),
        ["hole_exec.lua"] = rule({ n = 702, name = "hole exec", on = "PutResourcePolicy",
          body = string.format("hole.exec(%q) return false", "touch " .. tmp .. "/ran") }),
        ["hole_connect.lua"] = rule({ n = 703, name = "hole connect", on = "PutResourcePolicy",
          body = string.format("hole.connect(%d) return false", port) }),
      })
    end

    -- A listener on 127.0.0.1 (perl-base, essential on Debian) that writes a line to trace
    -- for each connection; it ends by itself after 60 s. Returns its port and pid.
    local function listen(tmp)
      local p = io.popen(string.format("perl -MIO::Socket::INET -e '%s' %s %s >/dev/null 2>&1 & echo $!",
        "my $s = IO::Socket::INET->new(LocalAddr => q(127.0.0.1), LocalPort => 0, Listen => 5) or die; " ..
        "open(my $p, q(>), $ARGV[0]) or die; print $p $s->sockport, qq(\\n); close $p; alarm 60; " ..
        "while (my $c = $s->accept) { open(my $t, q(>>), $ARGV[1]); print $t qq(connected\\n); close $t; close $c }",
        th.quote(tmp .. "/port"), th.quote(tmp .. "/trace")))
      local pid = tonumber(p:read("l"))
      p:close()
      local port = th.wait_for(function() return tonumber((th.read(tmp .. "/port") or ""):match("%d+")) end, 10)
      assert.truthy(port, "the listener did not start")
      return port, pid
    end

    local listener
    after_each(function()
      if listener then os.execute("kill " .. listener .. " 2>/dev/null") end
      listener = nil
    end)

    for _, case in ipairs({ { "on", "" }, { "off", "TH_TEST_NO_SECCOMP=1" } }) do
      it("with the filter " .. case[1] .. ": " .. (case[1] == "on" and
        "no file appears, nothing runs, nothing connects; the rules are quarantined (SIGSYS); all Bedrock alerts" or
        "the control case: the hole is real, the file, the program's trace and the connection appear"), function()
        if ASAN then
          pending("the hole build is not a sanitizer build: run once, in the pass with build/trailhound")
          return
        end
        local tmp = th.tmpdir()
        local port
        port, listener = listen(tmp)
        local d = hole_rules(tmp, port)
        h = th.start({ "replay", "--rules", d, DENIED }, { bin = HOLE_BIN, env = case[2] })
        assert.equal(0, h.wait(60), h.err())
        th.sleep(0.2)  -- the listener writes its trace
        local err = h.err()
        assert.same(BEDROCK, th.by_rule(th.alerts(h.out())))
        local opened, ran = th.read(tmp .. "/opened") ~= nil, th.read(tmp .. "/ran") ~= nil
        local connected = th.read(tmp .. "/trace") ~= nil
        if case[1] == "on" then
          assert.is_false(opened, "the rule opened a file for writing")
          assert.is_false(ran, "the rule ran a program")
          assert.is_false(connected, "the rule connected to 127.0.0.1:" .. port)
          local at = offset_of("PutResourcePolicy")
          for _, name in ipairs({ "hole_open", "hole_exec", "hole_connect" }) do
            assert.matches("rule " .. d .. "/" .. name .. ".lua quarantined: it made a system call the sandbox " ..
              "forbids on " .. DENIED .. ":" .. at .. " (SIGSYS)", err, 1, true)
          end
          local _, sigsys = err:gsub("%(pid %d+, evaluating%) was ended by SIGSYS", "")
          assert.equal(3, sigsys)
        else
          assert.is_true(opened, "hole.open did not open the file: no hole to test")
          assert.is_true(ran, "hole.exec did not run touch: no hole to test")
          assert.is_true(connected, "hole.connect did not connect: no hole to test")
          assert.not_matches("SIGSYS", err, 1, true)
          assert.not_matches("quarantined", err, 1, true)
        end
      end)
    end
  end)
end)
