-- stages.lua: trailhound's per-record work cut into stages, in plain lua5.4, for
-- tests/bench/run.sh ("where the time goes"). Each stage does everything the one before
-- does, plus one step, over every line of FILE:
--
--   lua5.4 tests/bench/stages.lua STAGE FILE [RULES_DIR]
--
--   read       read the lines, nothing else (Lua's I/O floor)
--   decode     + cjson.decode every line (lua-cjson, as scripts/worker.lua uses it)
--   filter     + the jq filter of run.sh on the raw record (decode + filter: what jq does)
--   normalize  decode + normalize.normalize (CloudTrail -> ECS, scripts/normalize.lua)
--   match      + every rule's compiled KQL match over event.getter (no alert built)
--   host       the whole of scripts/worker.lua: W.record per line, alerts built, encoded and
--              handed to a sink that drops them (what build/trailhound does, minus the C
--              framer and the write)
--
-- Prints one line: "STAGE records=N matches=M" (M is "-" for the stages that do not
-- select). Run from the repository root.
package.path = "scripts/?.lua;" .. package.path

local stage, path, rules_dir = arg[1], arg[2], arg[3] or "rules"
local STAGES = { read = true, decode = true, filter = true, normalize = true, match = true, host = true }
if not STAGES[stage] or not path then
  io.stderr:write("usage: lua5.4 tests/bench/stages.lua read|decode|filter|normalize|match|host FILE [RULES]\n")
  os.exit(2)
end

local f = assert(io.open(path, "rb"))
f:setvbuf("full", 1 << 20)
local records, matches = 0, 0

if stage == "host" then
  local worker = require "worker"
  worker.init({ mode = "replay", emit = function() matches = matches + 1 end,
                log = function(msg) io.stderr:write(msg, "\n") end })
  local list = {}
  local p = io.popen("ls " .. rules_dir .. "/*.lua")
  for file in p:lines() do
    local src = io.open(file):read("a")
    list[#list + 1] = { slot = #list, path = file, text = src }
  end
  p:close()
  worker.rules(list, { path = "scripts/normalize.lua", text = io.open("scripts/normalize.lua"):read("a") })
  local record, offset = worker.record, 0
  for line in f:lines() do
    record(line, path, offset)
    offset = offset + #line + 1
    records = records + 1
  end
else
  local cjson = require("cjson").new()
  local decode = cjson.decode
  local ACTIONS = {
    PutFoundationModelEntitlement = true, PutUseCaseForModelAccess = true,
    CreateFoundationModelAgreement = true, PutResourcePolicy = true, DeleteResourcePolicy = true,
  }
  local normalize, getter, rules
  if stage == "normalize" or stage == "match" then
    normalize = require("normalize").normalize
    getter = require("event").getter
    rules = require("loader").load_dir(rules_dir, { log = function() end })
  end
  local ctx = { now = os.date("!%Y-%m-%dT%H:%M:%S.000Z"), raw = nil }
  for line in f:lines() do
    records = records + 1
    if stage ~= "read" then
      local rec = decode(line)
      if stage == "filter" then
        local code = rec.errorCode
        if rec.eventSource == "bedrock.amazonaws.com" and ACTIONS[rec.eventName]
            and (code == "AccessDenied" or code == "AccessDeniedException") then
          matches = matches + 1
        end
      elseif normalize then
        ctx.raw = line
        local doc = normalize(rec, ctx)
        if stage == "match" then
          local get = getter(doc)
          for i = 1, #rules do
            if rules[i].match(get, doc) then matches = matches + 1 end
          end
        end
      end
    end
  end
end
f:close()
local counts = stage == "filter" or stage == "match" or stage == "host"
print(string.format("%s records=%d matches=%s", stage, records, counts and tostring(matches) or "-"))
