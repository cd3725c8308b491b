-- host.lua: what the C host calls (DESIGN.md, "Flow of an event").
--
-- Functions the host calls:
--   init(opts)                    load the normalizer and the rules. opts: rules (dir),
--                                 home, mode ("replay"|"run"), emit(line) -> ok, log(msg),
--                                 only (a list of rule names, ids or file names: run those)
--   record(bytes, path, offset)   one record: a JSON line (or a one-line S3 object)
--   document(bytes, path)         a whole file read at once: an S3 object, an array
--                                 of records, or NDJSON after all if it does not decode
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
cjson.decode_invalid_numbers(false)  -- NaN, Infinity, 0x10 are not JSON

local log = function(msg) io.stderr:write("trailhound: ", msg, "\n") end
local emit = function(line) io.stdout:write(line, "\n") return true end

local rules = {}
local stats = { records = 0, malformed = 0, failed = 0 }
local per_rule = {}  -- rule -> { alerts, errors, reported }
local output_ok = true

local clock = { sec = -1, text = nil }
local function now()
  local t = os.time()
  if t ~= clock.sec then
    clock.sec, clock.text = t, os.date("!%Y-%m-%dT%H:%M:%S.000Z", t)
  end
  return clock.text
end

-- A message from any error value, without running a rule's __tostring.
local function message(err)
  if type(err) == "string" then return err end
  return "(error object is a " .. type(err) .. " value)"
end

-- Returns true, or nil and a message when detection cannot start.
function H.init(opts)
  opts = opts or {}
  log = opts.log or log
  emit = opts.emit or emit
  -- Reachable from rules through the string metatable ("").dump: close it.
  local strlib = string
  strlib.dump = function() error("blocked: string.dump", 2) end  -- luacheck: ignore 122
  local errors
  rules, errors = loader.load_dir(opts.rules or "rules", { log = log })
  if not rules then return nil, "rules folder " .. tostring(errors) end
  for _, err in ipairs(errors) do log("rule not loaded: " .. err) end
  if opts.only and #opts.only > 0 then
    local chosen, err = H.select(rules, opts.only)
    if not chosen then return nil, err end
    rules = chosen
  end
  for _, r in ipairs(rules) do per_rule[r] = { alerts = 0, errors = 0, reported = false } end
  if #rules == 0 then
    log(string.format("no rules loaded from %s: records are read and counted, nothing can match",
      tostring(opts.rules)))
  else
    log(string.format("%d rule%s loaded from %s", #rules, #rules == 1 and "" or "s", tostring(opts.rules)))
  end
  return true
end

-- The rules named in `only` (by name, rule_id, or file name with or without
-- .lua), in load order; or nil and a message naming what matched nothing.
function H.select(all, only)
  local chosen, used = {}, {}
  for _, r in ipairs(all) do
    local file = r.file:match("([^/]+)$")
    for _, want in ipairs(only) do
      if want == r.name or want == r.id or want == file or want .. ".lua" == file then
        chosen[#chosen + 1] = r
        used[want] = true
        break
      end
    end
  end
  for _, want in ipairs(only) do
    if not used[want] then
      local names = {}
      for _, r in ipairs(all) do names[#names + 1] = "  " .. r.name .. " (" .. r.id .. ")" end
      return nil, string.format("--rule %s: no loaded rule has that name, rule_id or file name; " ..
        "the rules are:\n%s", want, table.concat(names, "\n"))
    end
  end
  return chosen
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

-- A rule's first failure is reported; the rest are counted in the summary.
local function rule_failed(rule, err, src)
  local pr = per_rule[rule]
  pr.errors = pr.errors + 1
  if not pr.reported then
    pr.reported = true
    log(string.format("rule %s failed on %s: %s (further failures of this rule are counted, not shown)",
      rule.file, where(src.path, src.offset, src.index), message(err)))
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
    log(string.format("%s: normalizer failed: %s", where(path, offset, index), message(doc)))
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
      if not aok then
        log(string.format("%s: could not build the alert of %s: %s", where(path, offset, index),
          rule.file, message(line)))
      elseif output_ok and emit(line) then
        local pr = per_rule[rule]
        pr.alerts = pr.alerts + 1
        local t = event.get(doc, "@timestamp")
        if type(t) == "string" then  -- ISO 8601 in UTC: text order is time order
          if pr.first == nil or t < pr.first then pr.first = t end
          if pr.last == nil or t > pr.last then pr.last = t end
        end
      else
        output_ok = false  -- the host reports the write error and stops
      end
    end
  end
end

local function events(v, path, offset)
  local recs = v.Records
  if recs ~= nil and v.eventSource == nil and v.eventName == nil then
    if type(recs) ~= "table" or (next(recs) ~= nil and recs[1] == nil) then
      H.reject(path, offset, "Records is not an array of records, skipped")
      return
    end
    for i = 1, #recs do process(recs[i], path, offset, i - 1) end
  elseif v[1] ~= nil then
    for i = 1, #v do process(v[i], path, offset, i - 1) end
  else
    process(v, path, offset, nil)
  end
end

local function decode_error(err)
  return "malformed JSON (" .. tostring(err):gsub("^.-:%d+: ", "") .. "), skipped"
end

function H.record(bytes, path, offset)
  local ok, v = pcall(cjson.decode, bytes)
  if not ok then
    H.reject(path, offset, decode_error(v))
    return
  end
  if type(v) ~= "table" then
    H.reject(path, offset, "not a JSON object (a " .. (v == cjson.null and "null" or type(v)) .. "), skipped")
    return
  end
  -- The text of a whole S3 object is not one record's: scanning it per record
  -- would cost its size times its records.
  ctx.raw = v.Records == nil and v[1] == nil and bytes or nil
  events(v, path, offset)
end

-- A whole file. If it does not decode as one JSON value but some of its lines
-- do, it is NDJSON after all (its first line may be the broken one): each line
-- is a record. Otherwise the document is reported once.
function H.document(bytes, path)
  local base = bytes:sub(1, 3) == "\239\187\191" and 3 or 0  -- skip a UTF-8 byte-order mark
  local text = base == 0 and bytes or bytes:sub(base + 1)
  local ok, v = pcall(cjson.decode, text)
  if ok then
    if type(v) ~= "table" then
      H.reject(path, 0, "not a JSON object (a " .. (v == cjson.null and "null" or type(v)) .. "), skipped")
    else
      ctx.raw = nil
      events(v, path, 0)
    end
    return
  end
  local lines = {}
  for pos, line in text:gmatch("()([^\n]*)") do
    if line:find("%S") then lines[#lines + 1] = { base + pos - 1, (line:gsub("\r$", "")) } end
  end
  local any = false
  for i = 2, #lines do
    local lok, lv = pcall(cjson.decode, lines[i][2])
    if lok and type(lv) == "table" then any = true break end
  end
  if not any then
    H.reject(path, 0, decode_error(v))
    return
  end
  for _, l in ipairs(lines) do H.record(l[2], path, l[1]) end
end

-- False once an alert could not be written: the host stops.
function H.output_ok() return output_ok end

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
    out[#out + 1] = string.format("  %7s  %6s  %-24s  %-24s  %s\n", "alerts", "errors", "first event",
      "last event", "rule")
    for _, r in ipairs(rules) do
      local pr = per_rule[r]
      out[#out + 1] = string.format("  %7d  %6d  %-24s  %-24s  %s\n", pr.alerts, pr.errors,
        pr.first or "-", pr.last or "-", r.name)
    end
  end
  return table.concat(out)
end

return H
