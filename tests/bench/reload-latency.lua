-- reload-latency.lua: how long after a rule file is saved its new version is live
-- in `trailhound run`. Figures, not a test: run by hand (tests/bench/README.md).
--
--   lua5.4 tests/bench/reload-latency.lua [SAVES] [LOAD]
--
-- Starts build/trailhound run on a copy of rules/, then saves the policy rule
-- SAVES times (default 60) with a new version number, cycling through the
-- four ways editors save: writing in place, writing a temporary file and
-- renaming it, deleting and re-creating, and `mv` from another folder. A save
-- is timed from just before its first system call to the moment the host's
-- line "version N reloaded" arrives on its stderr (a pipe read by this
-- script). The gate worker compiles and tests the new version and says so;
-- the host writes that line when the gate's answer arrives, just before it
-- sends the new rule set to the evaluation workers, which swap it in between
-- two batches (a batch already in a worker's pipe is evaluated with the old
-- version). So under a writer, whose events all alert on the saved rule, a save
-- is also timed until the first alert of its new version on the host's stdout
-- (a file this script reads): "save to live" in the workers. Saves are 100-300 ms
-- apart (100-1100 ms without inotify, so that saves do not fall into step with
-- the 1 s check). Series: with inotify (the default workers: one per core), the
-- same under a writer appending events (LOAD events/s, default 1000), and with
-- inotify disabled (the periodic check alone) by the LD_PRELOAD shim make bench
-- builds (build/bench/no-inotify.so), skipped when it is missing. p50 and p99
-- by nearest rank; the host's own "in X ms" (the gate: compile, validate, run
-- the 11 tests) is shown as the gate's p50 and p99.

package.path = "tests/?.lua;" .. package.path
local system = require "system"
local th = require "support.th"

local SAVES = tonumber(arg[1]) or 60
local LOAD = tonumber(arg[2]) or 1000
local BIN = os.getenv("TRAILHOUND_BIN") or "build/trailhound"
local FILE = "aws_bedrock_unauthorized_resource_policy_modification_attempt.lua"
local SRC = assert(th.read("rules/" .. FILE), "run from the top of the repository")

local function policy(v) return (SRC:gsub("\n  version = 1,", "\n  version = " .. v .. ",", 1)) end

local function quantile(xs, q)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  return s[math.max(1, math.ceil(q * #s))]
end

local SAVERS = {
  { "in place", function(p, text) th.write(p, text) end },
  { "rename into place", function(p, text)
    th.write(p .. ".tmp", text)
    os.rename(p .. ".tmp", p)
  end },
  { "delete and re-create", function(p, text)
    os.remove(p)
    th.write(p, text)
  end },
  { "mv from elsewhere", function(p, text, other)
    th.write(other, text)
    assert(os.rename(other, p))  -- the same file system: what mv does
  end },
}

local function series(name, preload, load, spread)
  local d = th.tmpdir()
  os.execute("mkdir -p " .. d .. "/rules " .. d .. "/elsewhere && cp rules/*.lua " .. d .. "/rules")
  local p, events = d .. "/rules/" .. FILE, d .. "/ct.ndjson"
  th.write(events, "")
  local alerts = d .. "/alerts.ndjson"
  local cmd = string.format(
    "%s sh -c 'echo $$ > %s/pid; exec %s run --no-state --no-max-signals --rules %s/rules %s' 2>&1 >%s",
    preload and ("LD_PRELOAD=" .. preload) or "", d, BIN, d, events, alerts)
  local pipe = assert(io.popen(cmd, "r"))
  repeat
    local l = pipe:read("l")
  until l == nil or l:find("rules loaded", 1, true)
  if load then
    os.execute(string.format(
      "lua5.4 tests/support/writer.lua %s 1000000 append 0 %f >/dev/null 2>&1 & echo $! > %s/wpid",
      events, 1 / load, d))
  end
  local all, gate, per, live, lag = {}, {}, {}, {}, {}
  local out = load and assert(io.open(alerts, "rb"))
  local pos, tail = 0, ""
  -- Is there an alert of version v on stdout since the last look? The rule's version is the
  -- only unquoted number after "version": in an alert (the others are strings). Plain finds:
  -- a pattern scan of the megabytes of alerts a writer makes would add milliseconds.
  local function alert_of(v)
    local a, b = '"version":' .. v .. ",", '"version":' .. v .. "}"
    out:seek("set", pos)  -- clears end of file: the host appends
    while true do
      local chunk = out:read(1 << 16)
      if not chunk then return false end
      pos = pos + #chunk
      local text = tail .. chunk
      if text:find(a, 1, true) or text:find(b, 1, true) then return true end
      tail = text:sub(-32)
    end
  end
  for i = 1, SAVES do
    local saver = SAVERS[(i - 1) % #SAVERS + 1]
    local v = i + 1
    system.sleep(0.1 + math.random() * spread)
    if out then pos, tail = out:seek("end"), "" end  -- no alert of version v can be older
    local t0 = system.gettime()
    saver[2](p, policy(v), d .. "/elsewhere/" .. FILE)
    local want = "version " .. v .. " reloaded"
    local l
    repeat
      l = pipe:read("l")
      assert(l, "the host stopped")
      if l:find("not loaded", 1, true) or l:find("stays", 1, true) then error("refused: " .. l) end
    until l:find(want, 1, true)
    local t1 = system.gettime()
    local ms = (t1 - t0) * 1000
    all[#all + 1] = ms
    if out then
      while not alert_of(v) do
        if system.gettime() - t1 > 10 then error("no alert of version " .. v .. " within 10 s of its reload") end
        system.sleep(0.0005)
      end
      local t2 = system.gettime()
      live[#live + 1] = (t2 - t0) * 1000
      lag[#lag + 1] = (t2 - t1) * 1000
    end
    per[saver[1]] = per[saver[1]] or {}
    table.insert(per[saver[1]], ms)
    gate[#gate + 1] = tonumber(l:match(" in ([%d.]+) ms"))
  end
  if load then os.execute("kill $(cat " .. d .. "/wpid) 2>/dev/null") end
  if out then out:close() end
  local lines = 0
  for _ in (th.read(events) or ""):gmatch("\n") do lines = lines + 1 end
  os.execute("kill $(cat " .. d .. "/pid) 2>/dev/null")
  pipe:close()
  local function row(label, xs)
    print(string.format("  %-36s %5d %9.1f %9.1f %9.1f", label, #xs, quantile(xs, 0.5), quantile(xs, 0.99),
      quantile(xs, 1)))
  end
  print(string.format("%s%s", name, load and string.format(" (%d events appended meanwhile)", lines) or ""))
  print(string.format("  %-36s %5s %9s %9s %9s", "save", "n", "p50 ms", "p99 ms", "max ms"))
  for _, s in ipairs(SAVERS) do row(s[1], per[s[1]]) end
  row("all", all)
  print(string.format("  gate (compile, validate, run 11 tests): p50 %.1f ms, p99 %.1f ms", quantile(gate, 0.5),
    quantile(gate, 0.99)))
  if #live > 0 then
    print(string.format("  save to the first alert of the new version: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
      quantile(live, 0.5), quantile(live, 0.99), quantile(live, 1)))
    print(string.format("  ... of which after the reloaded line: p50 %.1f ms, p99 %.1f ms, max %.1f ms",
      quantile(lag, 0.5), quantile(lag, 0.99), quantile(lag, 1)))
  end
  print()
  th.cleanup()
end

math.randomseed(1)
local f = io.popen("nproc")
local cores = f:read("l")
f:close()
local lf = io.open("/proc/loadavg")
local loadavg = lf and lf:read("n") or -1
if lf then lf:close() end
print(string.format("Reload latency of %s run: save a rule file, until its new version is live " ..
  "(%d saves per series; %s cores; load average before: %.2f)", BIN, SAVES, cores,
  loadavg))
print()
series("inotify (default), saves 100-300 ms apart", nil, nil, 0.2)
series("inotify, under a writer", nil, LOAD, 0.2)
local shim = "build/bench/no-inotify.so"
if th.read(shim) then
  series("periodic check only (inotify disabled), saves 100-1100 ms apart", shim, nil, 1.0)
else
  print("(" .. shim .. " missing: run make bench once to build it; the periodic-check series is skipped)")
end
