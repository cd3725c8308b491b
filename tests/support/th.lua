-- support/th.lua: drive the built trailhound binary from specs, as a user would.
--
-- The binary is $TRAILHOUND_BIN (the test runner points it at the optimised
-- and at the sanitizer build), else build/trailhound.

local cjson = require "cjson"
local system = require "system"

local M = {}

M.bin = os.getenv("TRAILHOUND_BIN") or "build/trailhound"

function M.sleep(s) system.sleep(s) end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = quote

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.write(path, data, mode)
  local f = assert(io.open(path, mode or "wb"))
  f:write(data)
  f:close()
end

function M.append(path, data) M.write(path, data, "ab") end

-- A fresh directory, removed by M.cleanup(). Hosts started by M.start are
-- stopped by it too, so a spec's after_each needs only M.cleanup.
local dirs, started = {}, {}
function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/trailhound-spec.XXXXXX")
  local d = p:read("l")
  p:close()
  dirs[#dirs + 1] = d
  return d
end
function M.cleanup()
  for _, h in ipairs(started) do h.stop() end
  started = {}
  for _, d in ipairs(dirs) do os.execute("rm -rf " .. quote(d)) end
  dirs = {}
end

local function argv(args)
  local parts = {}
  for i, a in ipairs(args) do parts[i] = quote(a) end
  return table.concat(parts, " ")
end

-- run and replay get --no-max-signals unless opts.limits: the specs' traffic puts thousands of
-- alerts of the Bedrock rules (max_signals = 100, as Elastic ships them) in one 5 minute
-- window, and only tests/e2e_limits_spec.lua is about max_signals.
local function unlimited(args, opts)
  if opts.limits or (args[1] ~= "run" and args[1] ~= "replay") then return args end
  local a = { args[1], "--no-max-signals" }
  for i = 2, #args do a[#a + 1] = args[i] end
  return a
end

-- Run the binary to completion: returns stdout, stderr, exit code.
function M.run(args, opts)
  opts = opts or {}
  args = unlimited(args, opts)
  local d = M.tmpdir()
  local stdout = opts.stdout or (d .. "/out")
  local cmd = string.format("%s %s >%s 2>%s/err </dev/null; echo $?", quote(M.bin), argv(args), stdout, d)
  if opts.env then cmd = opts.env .. " " .. cmd end
  local p = io.popen(cmd)
  local rc = tonumber(p:read("a"):match("(%d+)"))
  p:close()
  return M.read(d .. "/out") or "", M.read(d .. "/err"), rc
end

-- Decode alert lines (one JSON object per line).
function M.alerts(out)
  local list = {}
  for line in out:gmatch("[^\n]+") do list[#list + 1] = cjson.decode(line) end
  return list
end

-- The text up to its last newline: what a killed process wrote whole.
function M.complete_lines(s)
  local tail = s:reverse():find("\n", 1, true)
  return tail and s:sub(1, #s - tail + 1) or ""
end

-- Count alerts per rule name.
function M.by_rule(alerts)
  local counts = {}
  for _, a in ipairs(alerts) do
    local name = a.kibana.alert.rule.name
    counts[name] = (counts[name] or 0) + 1
  end
  return counts
end

-- Start `trailhound run ...` in the background. Returns a handle with
-- :out(), :err(), :signal(sig), :wait(timeout) -> exit code or nil.
-- opts.env: "NAME=value ..." set for the binary.
-- opts.bin: another binary than M.bin (the test build with a hole).
-- opts.limits: the rules' max_signals apply (see unlimited).
-- opts.stdout: where alerts go (default: a file of the handle's folder);
-- opts.append: open it with >> (O_APPEND), as `trailhound run >> alerts` does.
-- opts.stdin: a file (or FIFO) for its standard input (default /dev/null).
function M.start(args, opts)
  opts = opts or {}
  args = unlimited(args, opts)
  local d = M.tmpdir()
  local out = opts.stdout or (d .. "/out")
  -- The default state file goes to a folder of the spec's own.
  local cmd = string.format(
    "( XDG_STATE_HOME=%s/xdg %s %s %s %s%s 2>%s/err <%s & echo $! >%s/pid; wait $!; " ..
    "echo $? >%s/rc.tmp; mv %s/rc.tmp %s/rc ) >/dev/null 2>&1 &",
    d, opts.env or "", quote(opts.bin or M.bin), argv(args), opts.append and ">>" or ">", quote(out), d,
    quote(opts.stdin or "/dev/null"), d, d, d, d)
  os.execute(cmd)
  local h = { dir = d, stdout = out }
  local deadline = os.time() + 10
  while not M.read(d .. "/pid") or M.read(d .. "/pid") == "" do
    assert(os.time() < deadline, "trailhound did not start")
    M.sleep(0.01)
  end
  h.pid = tonumber(M.read(d .. "/pid"):match("%d+"))
  function h.out() return M.read(out) or "" end
  -- Lines written to stdout so far, counted without reading them into Lua.
  function h.count()
    local p = io.popen("wc -l < " .. quote(out) .. " 2>/dev/null")
    local n = tonumber(p:read("a")) or 0
    p:close()
    return n
  end
  function h.err() return M.read(d .. "/err") or "" end
  function h.signal(sig) os.execute(string.format("kill -%s %d 2>/dev/null", sig, h.pid)) end
  function h.wait(timeout)
    return M.wait_for(function()
      local rc = M.read(d .. "/rc")
      return rc and tonumber(rc:match("%d+"))
    end, timeout or 10)
  end
  function h.stop()
    if not M.read(d .. "/rc") then
      h.signal("KILL")
      h.wait(5)
    end
  end
  started[#started + 1] = h
  return h
end

-- Poll fn every 20 ms until it returns a true value or timeout seconds pass.
function M.wait_for(fn, timeout)
  local deadline = system.gettime() + (timeout or 5)
  repeat
    local v = fn()
    if v then return v end
    M.sleep(0.02)
  until system.gettime() > deadline
  return nil
end

-- Start tests/support/writer.lua in the background: count events appended to
-- path, rotated or truncated every `every` lines by mode (see that file).
function M.writer(path, count, mode, every, pause, extra)
  os.execute(string.format("lua5.4 tests/support/writer.lua %s %d %s %d %s %s >/dev/null 2>&1 &",
    quote(path), count, mode or "append", every or 0, pause or 0, extra or ""))
end

-- A process's memory from /proc/PID/status, in MiB (field: VmRSS now, VmHWM
-- its peak); 0 once it is gone.
function M.proc_mib(pid, field)
  local status = M.read("/proc/" .. pid .. "/status") or ""
  return (tonumber(status:match(field .. ":%s*(%d+)")) or 0) / 1024
end

-- The pids of a process's children (a host's workers).
function M.children(pid)
  local list = {}
  local p = io.popen("pgrep -P " .. pid)
  for l in p:lines() do list[#list + 1] = tonumber(l) end
  p:close()
  return list
end

-- A copy of rules/ in a fresh directory, with more files: extra = { [name] = text }.
function M.rules_dir(extra)
  local d = M.tmpdir()
  os.execute("cp rules/*.lua " .. quote(d))
  for name, text in pairs(extra or {}) do M.write(d .. "/" .. name, text) end
  return d
end

-- Lines of a file of JSON records as a list of strings (skipping blanks).
function M.lines(path)
  local list = {}
  for line in (M.read(path) or ""):gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

return M
