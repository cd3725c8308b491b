-- cpu-split.lua: where a trailhound run's CPU time goes, process by process: the host (reading,
-- framing, batching, writing alerts) and each worker (decoding, normalizing, rules, alerts).
-- Figures, not a test (tests/bench/README.md); make bench runs it on the NDJSON corpus.
--
--   lua5.4 tests/bench/cpu-split.lua LABEL EVENTS OUT ERR CMD [ARG...]
--   lua5.4 tests/bench/cpu-split.lua --header
--
-- Runs CMD (stdout to OUT, stderr to ERR) and reads /proc/PID/stat of it and of its children
-- every 10 ms: utime + stime of each, the last value seen before it ended. A process's final
-- 10 ms may be missed. GNU time cannot split this: its %U and %S add up the host and every
-- worker it reaped. The gate worker (it loads and tests rule files) is the last worker
-- started; the others evaluate. Prints one row: LABEL, the host's CPU seconds, the workers'
-- (all, then each evaluation worker's, then the gate's), and microseconds of CPU per event
-- (EVENTS events) in the host and in the workers. Linux only (/proc/PID/task/PID/children).
local system = require "system"

local ROW = "%-30s %7s %9s  %-16s %6s %10s %12s"

if arg[1] == "--header" then
  print(string.format(ROW, "run", "host s", "workers s", "each eval s", "gate s", "host us/ev", "workers us/ev"))
  print(string.format(ROW, "---", "------", "---------", "-----------", "------", "----------", "-------------"))
  os.exit(0)
end

local label, events, out, err = arg[1], tonumber(arg[2]), arg[3], arg[4]
if not (label and events and out and err and arg[5]) then
  io.stderr:write("usage: lua5.4 tests/bench/cpu-split.lua LABEL EVENTS OUT ERR CMD [ARG...]\n")
  os.exit(2)
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local words = {}
for i = 5, #arg do words[#words + 1] = quote(arg[i]) end

if not io.open("/proc/self/stat", "rb") then
  io.stderr:write("cpu-split: no /proc here: Linux only\n")
  os.exit(1)
end
local tck_pipe = assert(io.popen("getconf CLK_TCK"))
local TCK = tonumber(tck_pipe:read("l"))
tck_pipe:close()

-- sh starts CMD, says its pid, and waits for it (so that it is reaped, and its children by it).
local sh = assert(io.popen(string.format("%s >%s 2>%s & echo $!; wait $!; echo rc=$?",
  table.concat(words, " "), quote(out), quote(err)), "r"))
local pid = assert(sh:read("n"), "no pid")

local function read(path)
  local h = io.open(path, "rb")
  if not h then return nil end
  local s = h:read("a")
  h:close()
  return s
end

-- utime + stime in ticks and the state, or nil when the process is gone.
local function cpu(p)
  local s = read("/proc/" .. p .. "/stat")
  if not s then return nil end
  local rest = s:match("%) (.*)$")
  local fields = {}
  for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
  -- fields[1] is the state (field 3 of stat): utime and stime are fields 14 and 15.
  return tonumber(fields[12]) + tonumber(fields[13]), fields[1]
end

local host, workers, order = 0, {}, {}
while true do
  local t, state = cpu(pid)
  if not t or state == "Z" then break end
  host = t
  for c in (read("/proc/" .. pid .. "/task/" .. pid .. "/children") or ""):gmatch("%d+") do
    local ct = cpu(c)
    if ct then
      if not workers[c] then order[#order + 1] = tonumber(c) end
      workers[c] = ct
    end
  end
  system.sleep(0.01)
end
local rest = sh:read("a")
sh:close()
local rc = tonumber(rest:match("rc=(%d+)"))
if rc ~= 0 then
  io.stderr:write(string.format("cpu-split: %s exited with status %s (see %s)\n", arg[5], tostring(rc), err))
  os.exit(1)
end

table.sort(order)
local total, each = 0, {}
for i, c in ipairs(order) do
  local s = workers[tostring(c)] / TCK
  total = total + s
  if i < #order then each[#each + 1] = string.format("%.2f", s) end
end
local gate = #order > 0 and workers[tostring(order[#order])] / TCK or 0
host = host / TCK
print(string.format(ROW, label, string.format("%.2f", host), string.format("%.2f", total), table.concat(each, " "),
  string.format("%.2f", gate), string.format("%.1f", host / events * 1e6), string.format("%.1f", total / events * 1e6)))
