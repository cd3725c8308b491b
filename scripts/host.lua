-- host.lua: what the C host calls (DESIGN.md, "Flow of an event").
--
-- Functions the host calls:
--   init(opts)                    load the normalizer and the rules. opts: rules (dir),
--                                 home, mode ("replay"|"run"), emit(line) -> ok, log(msg)
--   record(bytes, path, offset)   one record: a JSON line, or a whole document
--                                 (CloudTrail S3 object, array of records)
--   reject(path, offset, reason)  a record the framer could not hand over
--   summary(files, unreadable)    -> the closing summary text
-- Nothing here raises: bad input and failing rules are reported and counted,
-- and the next record is processed.

local cjson = require("cjson").new()
local alert = require "alert"
local event = require "event"
local loader = require "loader"
local normalize = require "normalize"

local H = {}

-- Deep enough for any real CloudTrail record; deeper is reported, not followed.
H.MAX_DEPTH = 128
cjson.decode_max_depth(H.MAX_DEPTH)

local log = function(msg) io.stderr:write("trailhound: ", msg, "\n") end
local emit = function(line) io.stdout:write(line, "\n") return true end

local rules = {}
local stats = { records = 0, malformed = 0, failed = 0 }
local per_rule = {}  -- rule -> { alerts, errors, reported = { [msg] = true } }

local clock = { sec = -1, text = nil }
local function now()
  local t = os.time()
  if t ~= clock.sec then
    clock.sec, clock.text = t, os.date("!%Y-%m-%dT%H:%M:%S.000Z", t)
  end
  return clock.text
end

function H.init(opts)
  opts = opts or {}
  log = opts.log or log
  emit = opts.emit or emit
  local errors
  rules, errors = loader.load_dir(opts.rules or "rules", { log = log })
  for _, err in ipairs(errors) do log("rule not loaded: " .. err) end
  for _, r in ipairs(rules) do per_rule[r] = { alerts = 0, errors = 0, reported = {} } end
  if #rules == 0 then
    log(string.format("no rules loaded from %s: records are read and counted, nothing can match",
      tostring(opts.rules)))
  else
    log(string.format("%d rule%s loaded from %s", #rules, #rules == 1 and "" or "s", tostring(opts.rules)))
  end
end

-- The loaded rules, for specs and for the commands that list them.
function H.rules() return rules end
function H.stats() return stats, per_rule end

local function where(path, offset, index)
  if index then return string.format("%s:%d: record %d", path, offset, index) end
  return string.format("%s:%d", path, offset)
end

function H.reject(path, offset, reason)
  stats.malformed = stats.malformed + 1
  log(string.format("%s: %s", where(path, offset), reason))
end

local function rule_failed(rule, err, src)
  local pr = per_rule[rule]
  pr.errors = pr.errors + 1
  local msg = tostring(err)
  if not pr.reported[msg] then
    pr.reported[msg] = true
    log(string.format("rule %s failed on %s: %s (further identical errors are counted, not shown)",
      rule.file, where(src.path, src.offset, src.index), msg))
  end
end

-- Handed to the normalizer with each event: the ingest time, and the record's
-- JSON text (request_parameters keeps Elastic's key order with it). Reused.
local ctx = { now = nil, raw = nil }

-- One event: normalize, run every rule, write an alert per match.
local function process(rec, path, offset, index)
  if type(rec) ~= "table" or (rec[1] ~= nil) then
    H.reject(path, offset, (index and ("record " .. index .. " ") or "") .. "is not a JSON object, skipped")
    return
  end
  stats.records = stats.records + 1
  ctx.now = now()
  local ok, doc = pcall(normalize.normalize, rec, ctx)
  if not ok or type(doc) ~= "table" then
    stats.failed = stats.failed + 1
    log(string.format("%s: normalizer failed: %s", where(path, offset, index), tostring(doc)))
    return
  end
  local get = event.getter(doc)
  for i = 1, #rules do
    local rule = rules[i]
    local mok, hit = pcall(rule.match, get, doc)
    if not mok then
      rule_failed(rule, hit, { path = path, offset = offset, index = index })
    elseif hit then
      local src = { path = path, offset = offset, index = index }
      local aok, line = pcall(function() return alert.encode(alert.build(rule, doc, src, now())) end)
      if aok then
        per_rule[rule].alerts = per_rule[rule].alerts + 1
        emit(line)
      else
        log(string.format("%s: could not build the alert of %s: %s", where(path, offset, index),
          rule.file, tostring(line)))
      end
    end
  end
end

function H.record(bytes, path, offset)
  local ok, v = pcall(cjson.decode, bytes)
  if not ok then
    local msg = tostring(v):gsub("^.-:%d+: ", "")
    H.reject(path, offset, "malformed JSON (" .. msg .. "), skipped")
    return
  end
  if type(v) ~= "table" then
    H.reject(path, offset, "not a JSON object (a " .. (v == cjson.null and "null" or type(v)) .. "), skipped")
    return
  end
  -- The text of a whole S3 object is not one record's: scanning it per record
  -- would cost its size times its records.
  ctx.raw = nil
  local recs = v.Records
  if type(recs) == "table" and v.eventSource == nil and v.eventName == nil then
    for i = 1, #recs do process(recs[i], path, offset, i - 1) end
  elseif v[1] ~= nil then
    for i = 1, #v do process(v[i], path, offset, i - 1) end
  else
    ctx.raw = bytes
    process(v, path, offset, nil)
  end
end

function H.summary(files, unreadable)
  local total = 0
  for _, pr in pairs(per_rule) do total = total + pr.alerts end
  local out = {
    string.format("trailhound: %d file%s%s, %d record%s, %d malformed, %d alert%s\n",
      files, files == 1 and "" or "s",
      (unreadable or 0) > 0 and string.format(" (%d unreadable)", unreadable) or "",
      stats.records, stats.records == 1 and "" or "s",
      stats.malformed, total, total == 1 and "" or "s"),
  }
  if #rules > 0 then
    out[#out + 1] = string.format("  %7s  %6s  %s\n", "alerts", "errors", "rule")
    for _, r in ipairs(rules) do
      local pr = per_rule[r]
      out[#out + 1] = string.format("  %7d  %6d  %s\n", pr.alerts, pr.errors, r.name)
    end
  end
  return table.concat(out)
end

return H
