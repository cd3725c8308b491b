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
--   reload(all, settled)          run: look for changed rule files and normalizer
--                                 (reload.lua); -> milliseconds to look again, or 0
--   statistics(files)             -> per-rule statistics and each file's progress
--                                 ({ path, offset, size }), for SIGUSR1
-- Nothing here raises: bad input and failing rules are reported and counted,
-- and the next record is processed.
--
-- Rules (and a normalizer reloaded while running) run under the C host's
-- limits (thsys.limited). A rule's failures are counted, reported at most once
-- a minute, and after quarantine_after failures in a row (opts; 0: never) the
-- rule is quarantined: it is no longer run, and comes back when its file
-- changes (or on SIGHUP).

local cjson = require("cjson").new()
local alert = require "alert"
local event = require "event"
local loader = require "loader"
local normalize = require "normalize"
local reload = require "reload"

-- The C host's limited call (engine.c, "Limits"); plain pcall where there is
-- none (specs under lua5.4).
local has_sys, sys = pcall(require, "thsys")
local limited = has_sys and sys.limited or function(_, fn, ...) return pcall(fn, ...) end
local clock = has_sys and sys.now or os.time

local H = {}

H.QUARANTINE_AFTER = 20  -- failures in a row
H.REPORT_EVERY = 60      -- seconds between two reports of one rule's failures

-- Deep enough for any real CloudTrail record; deeper is reported, not followed.
H.MAX_DEPTH = 128
cjson.decode_max_depth(H.MAX_DEPTH)
cjson.decode_invalid_numbers(false)  -- NaN, Infinity, 0x10 are not JSON

local log = function(msg) io.stderr:write("trailhound: ", msg, "\n") end
local emit = function(line) io.stdout:write(line, "\n") return true end

local rules = {}
local stats = { records = 0, malformed = 0, failed = 0 }
-- rule -> { alerts, errors, seen (events), time (seconds in the rule), failing
-- (failures in a row), quarantined, reported_at, unreported }. The table is
-- also the rule's account for thsys.limited (it adds to time).
local per_rule = {}
local output_ok = true
local quarantine_after = H.QUARANTINE_AFTER
local reloader, started

-- A rule's account. A rule that is only a KQL query runs no code of its
-- author's: the compiled query's work is bounded by the event, so it is not
-- made to pay for counting instructions (instructions = -1: no count hook).
local function fresh(rule, pr)
  pr = pr or { alerts = 0, errors = 0, seen = 0, time = 0, failing = 0, quarantined = false, unreported = 0 }
  pr.instructions = rule.meta.match == nil and -1 or nil
  return pr
end

-- The normalizer the host starts with is its own code, called like the rest
-- of it: limits cost (counting instructions makes Lua 5.4 check at every one,
-- 15 % of the throughput). A normalizer reloaded while running has only been
-- through the gate's tests: it runs under limits, with room for large records
-- (it takes about 8 instructions and 40 bytes per byte of JSON), so that one
-- that loops or swells on some record is stopped.
local norm_acct = { time = 0 }
local norm_reloaded = false
local base_instructions, base_memory = 1e7, 64 * 2 ^ 20
local function budget_for(bytes)
  if not norm_reloaded then return end
  norm_acct.instructions = math.floor(math.max(10 * base_instructions, 100 * bytes))
  norm_acct.memory = math.floor(math.max(4 * base_memory, 128 * bytes))
end

local wall = { sec = -1, text = nil }
local function now()
  local t = os.time()
  if t ~= wall.sec then
    wall.sec, wall.text = t, os.date("!%Y-%m-%dT%H:%M:%S.000Z", t)
  end
  return wall.text
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
  if has_sys then base_instructions, base_memory = sys.limits() end
  if opts.quarantine_after then quarantine_after = opts.quarantine_after end
  clock = opts.clock or clock
  started = clock()
  local dir = opts.rules or "rules"
  local only = opts.only and #opts.only > 0 and opts.only or nil
  if opts.mode == "run" then
    -- What the files hold is noted before they are loaded: a change made
    -- meanwhile is seen by the first look.
    reloader = H.reloader(dir, opts, only)
    reloader:prime()
  end
  local errors
  rules, errors = loader.load_dir(dir, { log = log, call = function(fn, ...) return limited(nil, fn, ...) end })
  if not rules then return nil, "rules folder " .. tostring(errors) end
  for _, err in ipairs(errors) do log("rule not loaded: " .. err) end
  if only then
    local chosen, err = H.select(rules, only)
    if not chosen then return nil, err end
    rules = chosen
  end
  for _, r in ipairs(rules) do per_rule[r] = fresh(r) end
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

-- Make list the running rules and norm the running normalizer, at once. A
-- rule keeps its statistics across versions (found by rule_id, else by file);
-- a new version starts out of quarantine.
local function swap(list, norm)
  local by_id, by_file = {}, {}
  for r in pairs(per_rule) do by_id[r.id], by_file[r.file] = r, r end
  for _, r in ipairs(list) do
    if not per_rule[r] then
      local old = by_id[r.id] or by_file[r.file]
      local pr = fresh(r, old and per_rule[old])
      if old then per_rule[old] = nil end
      pr.failing, pr.quarantined, pr.reported_at, pr.unreported = 0, false, nil, 0
      per_rule[r] = pr
    end
  end
  rules = list
  if norm ~= normalize then
    normalize = norm
    package.loaded.normalize = norm
    norm_reloaded = true
  end
end

-- The reloader of run (reload.lua) over the rules folder dir and the
-- normalizer this host runs. opts.fs replaces the file system (specs).
function H.reloader(dir, opts, only)
  local fs = opts.fs
  if not fs then
    fs = {
      list = has_sys and sys.listdir or loader.list,
      stat = has_sys and sys.stat or function() return nil end,
      now = clock,
      read = function(path)
        local f = io.open(path, "rb")
        if not f then return nil end
        local text = f:read("a")
        f:close()
        return text
      end,
    }
  end
  local accept
  if only then
    accept = function(r)
      local file = r.file:match("([^/]+)$")
      for _, want in ipairs(only) do
        if want == r.name or want == r.id or want == file or want .. ".lua" == file then return true end
      end
      return false
    end
  end
  return reload.new({
    dir = dir, fs = fs, limited = limited, log = log, rule_log = log, accept = accept, swap = swap,
    normalizer = opts.normalizer or package.searchpath("normalize", package.path) or "scripts/normalize.lua",
    current = function() return rules, normalize end,
  })
end

function H.reload(all, settled)
  if not reloader then return 0 end
  return reloader:scan(all, settled)
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

-- A rule's failures are counted; one is reported at most every REPORT_EVERY
-- seconds. After quarantine_after in a row the rule is quarantined, and what
-- its code holds is let go.
local function rule_failed(rule, pr, err, path, offset, index)
  pr.errors = pr.errors + 1
  pr.failing = pr.failing + 1
  local t = clock()
  if pr.reported_at == nil or t - pr.reported_at >= H.REPORT_EVERY then
    log(string.format("rule %s failed on %s: %s (%s)", rule.file, where(path, offset, index),
      loader.full_path(message(err), rule.file),
      pr.reported_at and string.format("%d more failure%s since the last report; reported at most once a minute",
        pr.unreported, pr.unreported == 1 and "" or "s")
        or "further failures are counted, and reported at most once a minute"))
    pr.reported_at, pr.unreported = t, 0
  else
    pr.unreported = pr.unreported + 1
  end
  if quarantine_after > 0 and pr.failing >= quarantine_after then
    pr.quarantined = true
    log(string.format("rule %s quarantined after %d failures in a row: \"%s\" no longer runs until %s changes " ..
      "(or SIGHUP); the other rules go on", rule.file, pr.failing, rule.name, rule.file))
    rule.match, rule.meta.match = nil, nil
    collectgarbage()
  end
end

-- Handed to the normalizer with each event: the ingest time, and the record's
-- JSON text (request_parameters keeps Elastic's key order with it). Reused.
local ctx = { now = nil, raw = nil }

local function call_normalizer(rec)
  if norm_reloaded then return limited(norm_acct, normalize.normalize, rec, ctx) end
  return pcall(normalize.normalize, rec, ctx)
end

-- One event: normalize, run every rule, write an alert per match.
local function process(rec, path, offset, index)
  if type(rec) ~= "table" or (rec[1] ~= nil) then
    H.reject(path, offset, (index and ("record " .. index .. " ") or "") .. "is not a JSON object, skipped")
    return
  end
  stats.records = stats.records + 1
  ctx.now = now()
  local ok, doc = call_normalizer(rec)
  if not ok or type(doc) ~= "table" then
    stats.failed = stats.failed + 1
    log(string.format("%s: normalizer failed: %s", where(path, offset, index), message(doc)))
    return
  end
  local get = event.getter(doc)
  for i = 1, #rules do
    local rule = rules[i]
    local pr = per_rule[rule]
    if pr.quarantined then goto next_rule end
    pr.seen = pr.seen + 1
    local mok, hit = limited(pr, rule.match, get, doc)
    if not mok then
      rule_failed(rule, pr, hit, path, offset, index)
      goto next_rule
    end
    pr.failing = 0
    if hit then
      local src = { path = path, offset = offset, index = index }
      local aok, line = pcall(function() return alert.encode(alert.build(rule, doc, src, now())) end)
      if not aok then
        log(string.format("%s: could not build the alert of %s: %s", where(path, offset, index),
          rule.file, message(line)))
      elseif output_ok and emit(line) then
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
    ::next_rule::
  end
end

-- bytes: the size of the JSON text v came from, for the normalizer's budget
-- (records of a document get a share of it, four times the average).
local function events(v, path, offset, bytes)
  local recs = v.Records
  if recs ~= nil and v.eventSource == nil and v.eventName == nil then
    if type(recs) ~= "table" or (next(recs) ~= nil and recs[1] == nil) then
      H.reject(path, offset, "Records is not an array of records, skipped")
      return
    end
    budget_for(4 * bytes / math.max(#recs, 1))
    for i = 1, #recs do process(recs[i], path, offset, i - 1) end
  elseif v[1] ~= nil then
    budget_for(4 * bytes / #v)
    for i = 1, #v do process(v[i], path, offset, i - 1) end
  else
    budget_for(bytes)
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
  events(v, path, offset, #bytes)
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
      events(v, path, 0, #text)
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

-- For SIGUSR1 and --stats-interval: per rule, the events it saw, its alerts
-- and failures, the time spent in it and whether it is quarantined; per file
-- ({ path, offset, size }), where it is read to and how far behind that is.
function H.statistics(files)
  local total = 0
  for _, pr in pairs(per_rule) do total = total + pr.alerts end
  local out = {
    string.format("trailhound: statistics after %.0f s: %d record%s, %d malformed, %d alert%s\n",
      clock() - (started or clock()), stats.records, stats.records == 1 and "" or "s", stats.malformed,
      total, total == 1 and "" or "s"),
    string.format("  %9s  %7s  %7s  %9s  %-11s  %s\n", "events", "alerts", "errors", "time ms", "state", "rule"),
  }
  for _, r in ipairs(rules) do
    local pr = per_rule[r]
    out[#out + 1] = string.format("  %9d  %7d  %7d  %9.1f  %-11s  %s\n", pr.seen, pr.alerts, pr.errors,
      pr.time * 1000, pr.quarantined and "quarantined" or "running", r.name)
  end
  if files and #files > 0 then
    out[#out + 1] = string.format("  %12s  %12s  %12s  %s\n", "offset", "size", "lag bytes", "file")
    for _, f in ipairs(files) do
      out[#out + 1] = string.format("  %12d  %12d  %12d  %s\n", f.offset, f.size, math.max(f.size - f.offset, 0),
        f.path)
    end
  end
  return table.concat(out)
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
