-- make-corpus.lua: the input of `make bench` (tests/bench/run.sh), from real CloudTrail events.
--
--   lua5.4 tests/bench/make-corpus.lua [EVENTS] [OUTDIR] [DENIED_EVERY]
--   EVENTS: argument, else $BENCH_EVENTS, else 200000.  OUTDIR: default build/bench.
--
-- The default corpus cycles the lines of examples/cloudtrail/stratus-red-team.ndjson (312
-- real Stratus Red Team events) and examples/cloudtrail/bedrock-denied-derived.ndjson (13
-- denied-attempt variants, 10 of which the two bundled rules alert on: 3 in 100 events are
-- alerts, an account under attack). Each copy gets a unique eventID by replacing the text
-- of its "eventID":"..." value with another UUID of the same length: every other byte is
-- the original's. Deterministic: the same arguments give the same bytes.
--
-- With DENIED_EVERY = N, the "quiet" corpus, closer to an account's everyday traffic: the
-- same real Stratus events, and every Nth event (N, 2N, ...) a denied Bedrock call the two
-- rules alert on, the next of those 10 variants in turn: 1 alert in N events. The other 3
-- variants (near misses: a denied InvokeModel, a ValidationException, a denied Secrets
-- Manager call) are left out; the Stratus events carry near misses of their own (successful
-- Bedrock calls to the rules' actions, denied calls to other services). No S3 objects.
--
-- Writes, under OUTDIR (NAME: "corpus", or "quiet" with DENIED_EVERY):
--   NAME.ndjson     one event per line
--   s3/AWSLogs/...  the default corpus's events as CloudTrail S3 objects ({"Records":[...]},
--                   gzip, 1,000 records each), laid out as `aws s3 sync` leaves them
--                   (skipped when $BENCH_S3 is 0, and for the quiet corpus)
--   NAME.expect     shell-readable facts run.sh checks against: events, bytes, alerts
--                   (denied Bedrock events the two bundled rules must alert on), denied
--                   (lines carrying a denied error code: what grep counts), s3_objects,
--                   denied_every (0 for the default corpus)
local cjson = require "cjson"

local SOURCES = {
  "examples/cloudtrail/stratus-red-team.ndjson",
  "examples/cloudtrail/bedrock-denied-derived.ndjson",
}
local PER_OBJECT = 1000

local events = math.tointeger(tonumber(arg[1] or os.getenv("BENCH_EVENTS") or "200000"))
if not events or events < 1 then
  io.stderr:write("make-corpus: EVENTS must be a positive integer\n")
  os.exit(2)
end
local outdir = arg[2] or "build/bench"
local denied_every = 0
if arg[3] then
  denied_every = math.tointeger(tonumber(arg[3]))
  if not denied_every or denied_every < 1 then
    io.stderr:write("make-corpus: DENIED_EVERY must be a positive integer\n")
    os.exit(2)
  end
end
local name = denied_every > 0 and "quiet" or "corpus"
local with_s3 = os.getenv("BENCH_S3") ~= "0" and denied_every == 0

-- What the two bundled rules match, written from their KQL queries without the
-- normalizer: a denied (AccessDenied/AccessDeniedException) Bedrock call to one of
-- these actions. ECS event.outcome is "failure" whenever errorCode is set.
local RULE_ACTIONS = {
  PutFoundationModelEntitlement = true, PutUseCaseForModelAccess = true,
  CreateFoundationModelAgreement = true, PutResourcePolicy = true, DeleteResourcePolicy = true,
}
local DENIED = { AccessDenied = true, AccessDeniedException = true }

local function should_alert(rec)
  return rec.eventSource == "bedrock.amazonaws.com" and RULE_ACTIONS[rec.eventName] == true
    and DENIED[rec.errorCode] == true
end

-- The template lines: text split around the eventID value, and what each one is.
-- by_source[k]: those of SOURCES[k], for the quiet corpus.
local templates, by_source = {}, {}
for k, path in ipairs(SOURCES) do
  by_source[k] = {}
  local f = assert(io.open(path, "rb"))
  local n = 0
  for line in f:lines() do
    if line ~= "" then
      n = n + 1
      local rec = cjson.decode(line)
      local a, b = line:find('"eventID":"[^"]*"')
      if not a then error(string.format("%s:%d: no \"eventID\":\"...\" to replace", path, n)) end
      if line:find('"eventID":"', b + 1, true) then
        error(string.format("%s:%d: more than one eventID", path, n))
      end
      local t = {
        head = line:sub(1, a - 1) .. '"eventID":"',
        tail = '"' .. line:sub(b + 1),
        alert = should_alert(rec),
        denied = DENIED[rec.errorCode] == true,
      }
      templates[#templates + 1] = t
      table.insert(by_source[k], t)
    end
  end
  f:close()
end

-- Event i gets eventID 7b3e0000-0000-4000-8000-<i in 12 hex digits>: a valid v4-shaped
-- UUID, 36 characters like the originals, unique within the corpus.
local function event_id(i)
  return string.format("7b3e0000-0000-4000-8000-%012x", i)
end

-- The template of event i (from 1).
local pick = function(i) return templates[(i - 1) % #templates + 1] end
if denied_every > 0 then
  local stratus, denied_alerts = by_source[1], {}
  for _, t in ipairs(by_source[2]) do
    if t.alert then denied_alerts[#denied_alerts + 1] = t end
  end
  pick = function(i)
    local n = i // denied_every  -- denied calls up to and including event i
    if i % denied_every == 0 then return denied_alerts[(n - 1) % #denied_alerts + 1] end
    return stratus[(i - n - 1) % #stratus + 1]  -- the Stratus events run on unbroken
  end
end

local function event_line(i)
  local t = pick(i)
  return t.head .. event_id(i) .. t.tail, t
end

assert(os.execute("mkdir -p '" .. outdir .. "'"))
local ndjson_path = outdir .. "/" .. name .. ".ndjson"
local out = assert(io.open(ndjson_path .. ".tmp", "wb"))
out:setvbuf("full", 1 << 20)
local bytes, alerts, denied = 0, 0, 0
for i = 1, events do
  local line, t = event_line(i)
  out:write(line, "\n")
  bytes = bytes + #line + 1
  if t.alert then alerts = alerts + 1 end
  if t.denied then denied = denied + 1 end
end
assert(out:close())
assert(os.rename(ndjson_path .. ".tmp", ndjson_path))

-- CloudTrail S3 objects, one per 1,000 events, five minutes of "delivery" apart.
local objects = 0
if with_s3 then
  local account, region = "494659789341", "us-east-1"
  local prefix = string.format("%s/s3/AWSLogs/%s/CloudTrail/%s", outdir, account, region)
  assert(os.execute("rm -rf '" .. outdir .. "/s3'"))
  local base = 1729123200  -- 2024-10-17T00:00:00Z
  for first = 1, events, PER_OBJECT do
    objects = objects + 1
    local t = base + (objects - 1) * 300
    local day = os.date("!%Y/%m/%d", t)
    local dir = prefix .. "/" .. day
    if objects == 1 or os.date("!%H%M", t) == "0000" then assert(os.execute("mkdir -p '" .. dir .. "'")) end
    local object = string.format("%s/%s_CloudTrail_%s_%s_%s.json.gz", dir, account, region,
      os.date("!%Y%m%dT%H%MZ", t), string.format("b3nch%011x", objects))
    local gz = assert(io.popen("gzip -n -c > '" .. object .. "'", "w"))
    gz:setvbuf("full", 1 << 20)
    gz:write('{"Records":[')
    for i = first, math.min(first + PER_OBJECT - 1, events) do
      if i > first then gz:write(",") end
      gz:write((event_line(i)))
    end
    gz:write("]}\n")
    assert(gz:close())
  end
end

local expect = assert(io.open(outdir .. "/" .. name .. ".expect", "wb"))
expect:write(string.format("events=%d\nbytes=%d\nalerts=%d\ndenied=%d\ns3_objects=%d\ndenied_every=%d\n",
  events, bytes, alerts, denied, objects, denied_every))
assert(expect:close())

print(string.format("make-corpus: %s: %d events, %.1f MB; %d denied Bedrock events the rules must alert on "
  .. "(%d lines with a denied error code)", ndjson_path, events, bytes / 1e6, alerts, denied))
if with_s3 then
  print(string.format("make-corpus: %s/s3/: the same events in %d gzip CloudTrail S3 objects of up to %d records",
    outdir, objects, PER_OBJECT))
end
