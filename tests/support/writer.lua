-- writer.lua: a log writer for the tailing specs, run as its own process.
--
--   lua5.4 tests/support/writer.lua PATH COUNT MODE EVERY [PAUSE]
--
-- Appends COUNT denied Bedrock events, one per line, with eventIDs w-1..w-COUNT,
-- at full speed (or sleeping PAUSE seconds between lines). Every EVERY lines:
--   MODE "rename":       rename PATH to PATH.N and reopen PATH (logrotate's create)
--   MODE "copytruncate": copy PATH to PATH.N, then truncate PATH (logrotate's copytruncate)
--   MODE "append":       nothing
-- Ends by writing "done" to writer.done in PATH's folder.
package.path = "tests/?.lua;" .. package.path
local ev = require "support.events"

local path, count, mode, every, pause = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4]), tonumber(arg[5])
local template = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "W-ID"))
local pre, post = template:match("^(.-)W%-ID(.*)$")

local system = require "system"
local function sleep(s) if s and s > 0 then system.sleep(s) end end

local f = assert(io.open(path, "ab"))
f:setvbuf("no")
local rotations = 0
for i = 1, count do
  f:write(pre, "w-", i, post)
  if every > 0 and i % every == 0 and i < count then
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
      dst:write(data)
      dst:close()
      local t = assert(io.open(path, "wb"))  -- truncates; f keeps appending at the new end
      t:close()
    end
  end
  sleep(pause)
end
f:close()
local done = assert(io.open(path:gsub("[^/]*$", "") .. "writer.done", "wb"))
done:write("done\n")
done:close()
