-- writer.lua: a log writer for the tailing specs, run as its own process.
--
--   lua5.4 tests/support/writer.lua PATH COUNT MODE EVERY [PAUSE] [--burst] [--rate N] [--prefix P]
--                                  [--copy-pause S] [--noise K]
--
-- Appends COUNT denied Bedrock events, one per line, with eventIDs w-1..w-COUNT
-- (P1..PCOUNT with --prefix P), at full speed, one write per line (or sleeping
-- PAUSE seconds between lines; or about N lines a second with --rate; or, with
-- --burst, 64 lines per write, at disk speed). With --noise K, each event is followed by K
-- denied S3 calls (ids n-I-1..n-I-K) that no bundled rule matches and the host's prefilter
-- skips undecoded; they are not counted in COUNT or EVERY. Every EVERY events:
--   MODE "rename":       rename PATH to PATH.N and reopen PATH (logrotate's create)
--   MODE "copytruncate": copy PATH to PATH.N, then truncate PATH (logrotate's copytruncate);
--                        with --copy-pause, the copy is written 64 KiB at a time, S seconds apart
--   MODE "append":       nothing
-- Ends by writing "done LINES SECONDS" to writer.done in PATH's folder.
package.path = "tests/?.lua;" .. package.path
local ev = require "support.events"
local system = require "system"

local path, count, mode, every, pause = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4]), tonumber(arg[5])
local burst, rate, prefix, copy_pause, noise = false, nil, "w-", nil, 0
for i = 5, #arg do
  if arg[i] == "--burst" then burst = true end
  if arg[i] == "--rate" then rate = tonumber(arg[i + 1]) end
  if arg[i] == "--prefix" then prefix = arg[i + 1] end
  if arg[i] == "--copy-pause" then copy_pause = tonumber(arg[i + 1]) end
  if arg[i] == "--noise" then noise = tonumber(arg[i + 1]) end
end
local template = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "W-ID"))
local pre, post = template:match("^(.-)W%-ID(.*)$")
local s3 = ev.line(ev.denied("PutBucketPolicy", "AccessDenied", "N-ID", "s3.amazonaws.com"))
local npre, npost = s3:match("^(.-)N%-ID(.*)$")

local function sleep(s) if s and s > 0 then system.sleep(s) end end

local f = assert(io.open(path, "ab"))
f:setvbuf("no")
local rotations = 0
local pending = {}
local function flush()
  if #pending > 0 then f:write(table.concat(pending)) end
  pending = {}
end

local function rotate()
  flush()
  rotations = rotations + 1
  if mode == "rename" then
    f:close()
    assert(os.rename(path, path .. "." .. rotations))
    f = assert(io.open(path, "ab"))
    f:setvbuf("no")
  elseif mode == "copytruncate" then
    local src = assert(io.open(path, "rb"))
    local data = src:read("a")
    src:close()
    local dst = assert(io.open(path .. "." .. rotations, "wb"))
    if copy_pause then
      dst:setvbuf("no")
      for at = 1, #data, 65536 do
        dst:write(data:sub(at, at + 65535))
        sleep(copy_pause)
      end
    else
      dst:write(data)
    end
    dst:close()
    local t = assert(io.open(path, "wb"))  -- truncates; f keeps appending at the new end
    t:close()
  end
end

local started = system.gettime()
for i = 1, count do
  local l = pre .. prefix .. i .. post
  for k = 1, noise do l = l .. npre .. "n-" .. i .. "-" .. k .. npost end
  if burst then
    pending[#pending + 1] = l
    if #pending >= 64 then flush() end
  else
    f:write(l)
  end
  if every > 0 and i % every == 0 and i < count then rotate() end
  if rate and i % math.max(1, rate // 100) == 0 then
    local ahead = started + i / rate - system.gettime()
    sleep(ahead)
  end
  sleep(pause and pause > 0 and pause or nil)
end
flush()
f:close()
local took = system.gettime() - started
local report = path:gsub("[^/]*$", "") .. "writer.done"
local done = assert(io.open(report .. ".tmp", "wb"))
done:write(string.format("done %d %.3f\n", count, took))
done:close()
assert(os.rename(report .. ".tmp", report))  -- whole, or not there
