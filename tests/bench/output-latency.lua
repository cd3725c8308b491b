-- output-latency.lua: how long an alert takes to reach each kind of output, and what the host
-- holds while an output is down. Run from the repository root after `make`:
--
--   lua5.4 tests/bench/output-latency.lua [N]
--
-- For each output (file:, exec:, http://, elasticsearch:, syslog over TCP and UDP, against
-- tests/support/sinkserver.py on loopback), `trailhound run` follows an empty file; N denied
-- Bedrock lines (default 40) are appended one at a time, 50 ms apart, and the time from the
-- append to the alert being in the sink's store is taken (p50, p99 by nearest rank, max).
-- Then, for the HTTP output: the server is stopped, 2,000 lines are appended, the host's
-- resident memory is read with everything held, the server is started again and the time
-- until every alert is delivered is taken.
package.path = "tests/?.lua;" .. package.path
local ev = require "support.events"
local system = require "system"

local N = tonumber(arg[1] or "") or 40
local BIN = os.getenv("TRAILHOUND_BIN") or "build/trailhound"
local function sh(cmd) return os.execute(cmd) end
local function read(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local function lines(p)
  local n = 0
  for _ in (read(p) or ""):gmatch("\n") do n = n + 1 end
  return n
end
local tmp = io.popen("mktemp -d /tmp/th-outlat.XXXXXX"):read("l")

local function server(mode, dir)
  sh(string.format("mkdir -p %s && python3 tests/support/sinkserver.py %s --store %s/store --port-file %s/port " ..
    ">/dev/null 2>&1 & echo $! > %s/spid", dir, mode, dir, dir, dir))
  for _ = 1, 500 do
    if read(dir .. "/port") then break end
    system.sleep(0.01)
  end
  return tonumber(read(dir .. "/port")), read(dir .. "/spid"):match("%d+")
end

local function host(dir, output)
  -- Thousands of alerts in one window of event time: --no-max-signals writes them all.
  sh(string.format(": > %s/ct.ndjson; %s run --no-state --no-max-signals --output %q %s/ct.ndjson " ..
    ">/dev/null 2>%s/err & echo $! > %s/pid", dir, BIN, output, dir, dir, dir))
  for _ = 1, 500 do
    if (read(dir .. "/err") or ""):find("rules loaded") then break end
    system.sleep(0.01)
  end
  return read(dir .. "/pid"):match("%d+")
end

local function series(name, output_of, mode, count_of)
  local dir = tmp .. "/" .. name:gsub("%W", "_")
  sh("mkdir -p " .. dir)
  local port, spid
  if mode then port, spid = server(mode, dir) end
  local pid = host(dir, output_of(dir, port))
  local f = assert(io.open(dir .. "/ct.ndjson", "ab"))
  f:setvbuf("no")
  local times = {}
  for i = 1, N do
    local before = count_of(dir)
    local t0 = system.gettime()
    f:write(ev.line(ev.denied("PutResourcePolicy", "AccessDenied", name .. "-" .. i)), "\n")
    local deadline = t0 + 10
    while count_of(dir) <= before and system.gettime() < deadline do system.sleep(0.0002) end
    times[#times + 1] = (system.gettime() - t0) * 1000
    system.sleep(0.05)
  end
  f:close()
  sh("kill " .. pid .. " 2>/dev/null")
  if spid then sh("kill " .. spid .. " 2>/dev/null") end
  table.sort(times)
  local function rank(p) return times[math.max(1, math.ceil(p * #times))] end
  print(string.format("%-34s %4d %10.1f %10.1f %10.1f", name, #times, rank(0.5), rank(0.99), times[#times]))
end

print(string.format("Alert latency through each output: append one denied line, until its alert is in the " ..
  "sink (%d appends, 50 ms apart; p99 by nearest rank)", N))
print()
print(string.format("%-34s %4s %10s %10s %10s", "output", "n", "p50 ms", "p99 ms", "max ms"))
series("file:", function(d) return "file:" .. d .. "/alerts" end, nil, function(d) return lines(d .. "/alerts") end)
series("exec:cat >> FILE", function(d) return "exec:cat >> " .. d .. "/alerts" end, nil,
  function(d) return lines(d .. "/alerts") end)
series("http://", function(_, p) return "http://127.0.0.1:" .. p .. "/" end, "http",
  function(d) return lines(d .. "/store") end)
series("elasticsearch:http://", function(_, p) return "elasticsearch:http://127.0.0.1:" .. p .. "/a" end, "es",
  function(d) return lines(d .. "/store") end)
series("syslog:tcp://", function(_, p) return "syslog:tcp://127.0.0.1:" .. p end, "syslog-tcp",
  function(d) return lines(d .. "/store") end)
series("syslog:udp://", function(_, p) return "syslog:udp://127.0.0.1:" .. p end, "syslog-udp",
  function(d) return lines(d .. "/store") end)

-- An outage: what is held, and how long delivering it all takes once the server is back.
local dir = tmp .. "/outage"
sh("mkdir -p " .. dir)
local port, spid = server("http", dir)
sh("kill " .. spid)
system.sleep(0.2)
local pid = host(dir, "http://127.0.0.1:" .. port .. "/")
sh(string.format("lua5.4 tests/support/writer.lua %s/ct.ndjson 2000 append 0 0 --burst >/dev/null 2>&1", dir))
system.sleep(2)
local status = read("/proc/" .. pid .. "/status") or ""
local rss = (tonumber(status:match("VmRSS:%s*(%d+)")) or 0) / 1024
local hwm = (tonumber(status:match("VmHWM:%s*(%d+)")) or 0) / 1024
sh(string.format("python3 tests/support/sinkserver.py http --store %s/store --port %d >/dev/null 2>&1 & " ..
  "echo $! > %s/spid", dir, port, dir))
local t0 = system.gettime()
while lines(dir .. "/store") < 2000 and system.gettime() < t0 + 120 do system.sleep(0.01) end
local took = system.gettime() - t0
print()
print(string.format("Outage: 2000 alerts (about 8 MiB) appended while the HTTP server is down (default " ..
  "--output-buffer 64M): host RSS %.1f MiB, peak %.1f MiB; all %d delivered %.2f s after the server came back",
  rss, hwm, lines(dir .. "/store"), took))
sh("kill " .. pid .. " " .. read(dir .. "/spid"):match("%d+") .. " 2>/dev/null")
sh("rm -rf " .. tmp)
