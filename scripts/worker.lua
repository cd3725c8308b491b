-- worker.lua: what a worker process runs (DESIGN.md, "Flow of an event").
--
-- The C host never runs a rule: it starts worker processes (the same binary)
-- and hands them rule files' text and batches of records. This module is a
-- worker's Lua side; engine.c calls it.
--
-- Functions the worker's C side calls:
--   init(opts)                    opts: mode ("replay"|"run"), role ("eval"|"gate"),
--                                 quarantine_after (0: never), only (rule names, ids or
--                                 file names), and the callbacks below
--   rules(list, norm)             run exactly these rules from now on: list of { slot, path,
--                                 text, quarantined, load }; norm nil (keep the normalizer) or
--                                 { path, text, reloaded }. -> errors (rules that did not load)
--   quarantine(slot)              stop running a rule (the host decided)
--   record(bytes, path, offset, set, full)  one record: a JSON line (or a one-line S3 object);
--                                 set: the rules it could concern (BATCH_SETS, proto.h), or nil;
--                                 full: every new_terms candidate with its alert (TH_REC_FULL)
--   covers(slots)                 the rules a set's bits stand for, in order (the prefilter's)
--   document(bytes, path, full)   a whole file read at once: an S3 object, an array
--                                 of records, or NDJSON after all if it does not decode;
--                                 full as for record
--   undo()                        forget what the record at hand counted (it is given up)
--   counters()                    -> what was counted since the last call (records,
--                                 malformed, failed, and per rule slot: seen, errors, time)
--   pressure(cap, owned)          -> slot, load, message when a rule keeps more than its share
--                                 of the heap (after a full collection), else nil
--   load(files)                   gate: first load of rule files { { path, text } } ->
--                                 results { { path, ok, id|error, name, version } }, fatal
--   gate(req)                     gate: changed files through the gate (reload.lua)
--   preload(files)                evaluation worker, while the gate does load(files): compile
--                                 them for the rules() that follows
--   full(id, max_signals, interval_s, index)  the host holds back rule id's alerts in
--                                 that max_signals window: they are emitted unbuilt (line "")
-- Callbacks (opts): emit(slot, timestamp, uuid, severity, line, max_signals, interval_s,
-- suppress_s, group, at, len) (the last six: rule.limits, and the suppression object's place in
-- line, for the host's limits: 0 where none), candidate(slot, type, fingerprint, key, distinct,
-- window_s, value, cardinality, cardinality_field, and emit's from timestamp on) (a new_terms or
-- threshold rule's match, for the host to decide: proto.h), log(message), fail(slot, load, message),
-- quarantined(slot, load, message) (load: which version of the rule), and pressure() (the C
-- side's heap check). Each but pressure adds an item to the reply of the batch at hand, in
-- record order; the host writes alerts and messages in that order.
--
-- Nothing here raises: bad input and failing rules are reported and counted,
-- and the next record is processed. Rules (and a normalizer reloaded while
-- running) run under the C side's limits (thsys.limited).

local cjson = require("cjson").new()
local alert = require "alert"
local event = require "event"
local loader = require "loader"
local reload = require "reload"
local ruleindex = require "ruleindex"
local stateful = require "stateful"

-- The C side's limited call (limits.c); plain pcall where there is none
-- (specs under lua5.4).
local has_sys, sys = pcall(require, "thsys")
local limited = has_sys and sys.limited or function(_, fn, ...) return pcall(fn, ...) end
local clock = has_sys and sys.now or os.time

local W = {}

W.QUARANTINE_AFTER = 20  -- failures in a row

-- Deep enough for any real CloudTrail record; deeper is reported, not followed.
W.MAX_DEPTH = 128
cjson.decode_max_depth(W.MAX_DEPTH)
cjson.decode_invalid_numbers(false)  -- NaN, Infinity, 0x10 are not JSON

local cb = {
  emit = function() end,
  candidate = function() end,
  log = function(msg) io.stderr:write("trailhound: ", msg, "\n") end,
  fail = function() end,
  quarantined = function() end,
  pressure = nil,  -- the C side's heap check, after each event
}

local rules = {}         -- the running rules, in order
local by_slot = {}       -- slot -> rule
local rule_index = ruleindex.build(rules)  -- which of them an event can concern
-- The running normalizer module: the program's own until the host sends its text (the
-- gate needs one for the prefilter of the first rule set, before any RULES).
local normalize = require "normalize"
local ev = event.lazy()  -- the event at hand
local norm_path = "normalize.lua"
local norm_text          -- its text: a rule set with the same one does not load it again
local stats = { records = 0, malformed = 0, failed = 0 }
-- rule -> { slot, seen, errors, time (seconds in the rule), failing (failures
-- in a row), quarantined, failed_in_batch }. The table is also the rule's
-- account for thsys.limited (it adds to time; slot names the owner).
local per_rule = {}
local touched = {}  -- the accounts of rules that ran since W.counters last reported
local quarantine_after = W.QUARANTINE_AFTER
local role = "eval"
local only

-- A rule's account. A rule that is only a KQL query runs no code of its
-- author's: the compiled query's work is bounded by the event, so it is not
-- made to pay for counting instructions (instructions = -1: no count hook).
local function fresh(rule, slot)
  return { slot = slot, load = rule.load or 0, seen = 0, errors = 0, time = 0, failing = 0, quarantined = false,
    instructions = rule.meta.match == nil and -1 or nil }
end

-- The normalizer the worker starts with is the program's own, called like
-- the rest of it: limits cost (counting instructions makes Lua 5.4 check at
-- every one, 15 % of the throughput). A normalizer reloaded while running has
-- only been through the gate's tests: it runs under limits, with room for
-- large records (it takes about 8 instructions and 40 bytes per byte of
-- JSON), so that one that loops or swells on some record is stopped.
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

function W.init(opts)
  opts = opts or {}
  for _, k in ipairs({ "emit", "candidate", "log", "fail", "quarantined", "pressure" }) do
    if opts[k] then cb[k] = opts[k] end
  end
  -- Reachable from rules through the string metatable ("").dump: close it.
  local strlib = string
  strlib.dump = function() error("blocked: string.dump", 2) end  -- luacheck: ignore 122
  if has_sys then base_instructions, base_memory = sys.limits() end
  if opts.quarantine_after then quarantine_after = opts.quarantine_after end
  role = opts.role or role
  only = opts.only and #opts.only > 0 and opts.only or nil
  clock = opts.clock or clock
  return true
end

-- A normalizer module from its text. Returns the module, or nil and why.
local function load_normalizer(path, text)
  local chunk, err = load(text, "@" .. path, "t")
  if not chunk then return nil, err end
  local ok, mod = pcall(chunk, "normalize", path)
  if not ok then return nil, message(mod) end
  if type(mod) ~= "table" or type(mod.normalize) ~= "function" then
    return nil, path .. ":1: the normalizer must return a table with a normalize function"
  end
  return mod
end

-- Run exactly these rules from now on. A slot keeps its account across
-- versions (the host gives a new version of a rule the slot of the old).
-- Returns the messages of rules that did not load (the gate let them through,
-- so this is rare: a rule whose loading depends on something else).
-- Rules W.load (the gate) or W.preload (an evaluation worker) compiled, kept for the W.rules that
-- follows in the same process: compiling is most of what loading 500 rules costs.
local preloaded = {}

-- A rule file compiled under the call limits (a rule that loops while loading cannot hang the
-- worker): limited's ok, rule, err. step: the file's place in a list, published for the
-- watchdog, or nil.
local function compile(path, text, log, step)
  if step and has_sys and sys.step then sys.step(step) end
  return limited(nil, loader.load_file, path, { source = text, log = log })
end

function W.rules(list, norm)
  local errors = {}
  if norm and (norm.text ~= norm_text or (norm.reloaded and true or false) ~= norm_reloaded) then
    local mod, err = load_normalizer(norm.path, norm.text)
    if mod then
      normalize, norm_path, norm_reloaded = mod, norm.path, norm.reloaded and true or false
      norm_text = norm.text
      package.loaded.normalize = mod
    else
      errors[#errors + 1] = "normalizer " .. tostring(err)
    end
  end
  local old = per_rule
  rules, by_slot, per_rule = {}, {}, {}
  local accounts = {}
  for r, pr in pairs(old) do accounts[pr.slot] = { rule = r, pr = pr } end
  for _, item in ipairs(list) do
    local prev = accounts[item.slot]
    local rule
    local pre = preloaded[item.path]
    if prev and prev.rule.src == item.text and prev.rule.file == item.path and prev.rule.load == item.load then
      rule = prev.rule  -- unchanged: keep it, and what it holds
    elseif pre and pre.text == item.text then
      rule = pre.rule
      rule.src, rule.load = item.text, item.load
    else
      local ok, r, err = compile(item.path, item.text, function(m) cb.log(m) end)
      if not ok then r, err = nil, message(r) end
      if r then
        r.src, r.load = item.text, item.load
        rule = r
      else
        errors[#errors + 1] = err
      end
    end
    if rule then
      local pr = prev and prev.rule == rule and prev.pr or fresh(rule, item.slot)
      local was = pr.quarantined
      pr.quarantined = item.quarantined and true or false
      if was ~= pr.quarantined then pr.failing = 0 end  -- back in service (SIGHUP): counted afresh
      rules[#rules + 1] = rule
      by_slot[item.slot] = rule
      per_rule[rule] = pr
      pr.order = #rules
    end
  end
  preloaded = {}
  rule_index = ruleindex.build(rules, type(normalize.ON_DEMAND) == "table" and normalize.ON_DEMAND or nil)
  return errors
end

function W.quarantine(slot)
  local rule = by_slot[slot]
  if rule then per_rule[rule].quarantined = true end
end

-- The loaded rules and their accounts, for specs.
function W.loaded() return rules, per_rule end

local function where(path, offset, index)
  if index then return string.format("%s:%d: record %d", path, offset, index) end
  return string.format("%s:%d", path, offset)
end

local function reject(path, offset, reason)
  stats.malformed = stats.malformed + 1
  cb.log(string.format("%s: %s", where(path, offset), reason))
end
W.reject = reject

-- A rule's failure: counted; the first of a batch is reported to the host,
-- which says it at most once a minute. After quarantine_after failures in a
-- row the rule is quarantined here and the host is told, so that every
-- worker stops running it.
local function rule_failed(rule, pr, err, path, offset, index)
  pr.errors = pr.errors + 1
  -- The heap full (the cap, not this call's budget) is some rule's hoarding,
  -- not necessarily this one's: it does not count toward quarantine, and the
  -- C side looks for the one holding most right away.
  if has_sys and sys.capped and sys.capped() then
    if cb.pressure then cb.pressure() end
  else
    pr.failing = pr.failing + 1
  end
  if not pr.failed_in_batch then
    pr.failed_in_batch = true
    cb.fail(pr.slot, pr.load, string.format("rule %s failed on %s: %s", rule.file, where(path, offset, index),
      loader.full_path(message(err), rule.file)))
  end
  if quarantine_after > 0 and pr.failing >= quarantine_after then
    pr.quarantined = true
    cb.quarantined(pr.slot, pr.load, string.format("rule %s quarantined after %d failures in a row: \"%s\" no " ..
      "longer runs until %s changes (or SIGHUP); the other rules go on", rule.file, pr.failing, rule.name, rule.file))
  end
end

-- Handed to the normalizer with each event: the ingest time, the record's
-- JSON text (request_parameters keeps Elastic's key order with it), and the
-- MaxMind lookups when the configuration names databases (thsys.geoip). Reused.
local ctx = { now = nil, raw = nil, geoip = has_sys and sys.geoip or nil }

local function call_normalizer(fn, ...)
  if norm_reloaded then return limited(norm_acct, fn, ...) end
  return pcall(fn, ...)
end

-- The event cannot be evaluated: err is ev.FAILED (ev.failure says why) or another error.
local function normalizer_failed(err, path, offset, index)
  stats.failed = stats.failed + 1
  local why = err == ev.FAILED and ev.failure or err
  cb.log(string.format("%s: normalizer failed: %s", where(path, offset, index), message(why)))
end

-- What syslog calls a rule's severity (outputs): crit, err, warning, notice.
local SYSLOG_SEVERITY = { critical = 2, high = 3, medium = 4, low = 5 }
local function severity_of(rule) return SYSLOG_SEVERITY[rule.meta.severity] or 5 end

-- The host asks for every alert of the record at hand built: every new_terms one (stateful.lua,
-- KNOWN), and none unbuilt (W.full: the window was let go since).
local record_full

local function whole_doc()
  local doc = ev.whole()
  return doc, doc ~= ev.record()  -- fresh: normalized, not the record itself
end

-- A stateful rule's match (stateful.lua): its candidates, each with the alert it would make,
-- for the host to decide on. The document is built only for a candidate that carries its
-- alert: a new_terms combination this worker sent lately needs the fields of its key alone.
-- false: the normalizer failed on the event (ev.FAILED), which is then given up.
local function candidates(rule, pr, get, src)
  local ok, list = pcall(stateful.candidates, rule, get, src, now(), nil, whole_doc, record_full)
  local tok, t = pcall(get, "@timestamp")
  if list == ev.FAILED or t == ev.FAILED then return false end
  if not ok then
    cb.log(string.format("%s: could not build the alert of %s: %s", where(src.path, src.offset, src.index),
      rule.file, message(list)))
    return true
  end
  t = tok and type(t) == "string" and t or ""
  local st, lim = rule.state, rule.limits
  local sev = severity_of(rule)
  local card = st.cardinality
  if st.kind == "sequence" then  -- proto.h: a sequence's candidate
    for _, c in ipairs(list) do
      if c.line then
        cb.candidate(pr.slot, st.type, st.fingerprint, c.key, c.ancestor, st.span_ms, c.step, st.nsteps,
          c.shell or "", t, c.uuid, sev, c.line, lim.max_signals, lim.interval_s, 0, "", 0, 0)
      end
    end
    return true
  end
  for _, c in ipairs(list) do
    if c.line or c.light then  -- light: a combination the host knows, its time only (stateful.lua)
      local threshold = st.kind == "threshold"
      cb.candidate(pr.slot, st.type, st.fingerprint, c.key, c.distinct or "", st.window_s, st.value or 0,
        card and card.value or 0, card and alert.encode(card.field) or "", t, c.uuid or "", sev, c.line or "",
        lim.max_signals, lim.interval_s, (not threshold and c.len > 0) and lim.suppress.duration_s or 0,
        c.group or "", c.at, c.len)
    end
  end
  return true
end

-- The max_signals windows the host said are full (W.full): rule id -> { [key] = true, n }, key
-- "max_signals/interval_s/index". A window only fills, and the host holds back every later
-- alert of the rule there, so building the alert would be work for nothing: it is emitted
-- with its time and uuid alone (the host counts it held back, or a duplicate; if it let the
-- window go since, it asks for the record again, full). Not for a rule that suppresses
-- (suppression comes before max_signals), nor an event with no time of its own.
local known_full = {}
-- The host's reading of a time (thsys.iso_ms: limiter.c's); esdate's under plain lua5.4 (specs).
local iso_ms = has_sys and sys.iso_ms or function(t) return math.tointeger(require("esdate").value(t)) end

function W.full(id, max_signals, interval_s, index)
  local f = known_full[id]
  if f == nil or f.n >= 16 then  -- a few windows at a time: events come a little out of order
    f = { n = 0 }
    known_full[id] = f
  end
  local key = max_signals .. "/" .. interval_s .. "/" .. index
  if not f[key] then
    f[key] = true
    f.n = f.n + 1
  end
end

-- true when the rule's alert for the event at hand was emitted unbuilt.
local function unbuilt(rule, pr, get, src)
  local f, lim = known_full[rule.id], rule.limits
  if f == nil or lim.suppress then return false end
  local ok, t = pcall(get, "@timestamp")
  local ms = ok and type(t) == "string" and iso_ms(t)
  if not ms or not f[lim.max_signals .. "/" .. lim.interval_s .. "/" .. ms // (lim.interval_s * 1000)] then
    return false
  end
  local iok, id = pcall(alert.id_of, rule.id, get, src)
  if not iok then return false end  -- the whole way says what is wrong
  cb.emit(pr.slot, t, id, severity_of(rule), "", lim.max_signals, lim.interval_s, 0, "", 0, 0)
  return true
end

-- The rules the host's prefilter looks for (W.covers): slot -> the bit of a record's set
-- (bit k % 8 of byte k // 8), and the set of the record at hand, or nil: every rule runs.
local covered = {}
local record_set
local byte = string.byte

function W.covers(slots)
  covered = {}
  for i = 1, #slots do covered[slots[i]] = i - 1 end
end

-- One event: the rules it can concern run on its lazy view; an alert per
-- match, built from the whole document.
local function process(rec, path, offset, index)
  if type(rec) ~= "table" or (rec[1] ~= nil) then
    reject(path, offset, (index and ("record " .. index .. " ") or "") .. "is not a JSON object, skipped")
    return
  end
  stats.records = stats.records + 1
  ctx.now = now()
  ev.start(rec, ctx, normalize, call_normalizer)
  local get, view = ev.get, ev.view
  local ok, list = pcall(rule_index.candidates, get)
  if not ok then
    normalizer_failed(list, path, offset, index)
    return
  end
  for i = 1, #list do
    local rule = list[i]
    local pr = per_rule[rule]
    if pr.quarantined then goto next_rule end
    if record_set then  -- the record's text holds none of what the rule requires: it cannot match
      local k = covered[pr.slot]
      if k and byte(record_set, (k >> 3) + 1) & (1 << (k & 7)) == 0 then goto next_rule end
    end
    if pr.seen == 0 then touched[#touched + 1] = pr end  -- W.counters reports it
    pr.seen = pr.seen + 1
    local mok, hit = limited(pr, rule.match, get, view)
    if not mok then
      if hit == ev.FAILED then  -- the normalizer's fault, not the rule's: the event is given up
        normalizer_failed(hit, path, offset, index)
        return
      end
      rule_failed(rule, pr, hit, path, offset, index)
      goto next_rule
    end
    pr.failing = 0
    if hit then
      local src = { path = path, offset = offset, index = index }
      if rule.state then
        if not candidates(rule, pr, get, src) then
          normalizer_failed(ev.FAILED, path, offset, index)
          return
        end
        goto next_rule
      end
      if not record_full and unbuilt(rule, pr, get, src) then goto next_rule end
      local dok, doc = pcall(ev.whole)
      if not dok then
        normalizer_failed(doc, path, offset, index)
        return
      end
      local lim = rule.limits
      local sok, sup, key = pcall(alert.suppression, rule, doc)
      if not sok then sup, key = nil, nil end
      local aok, line, id, at, len = pcall(alert.line, rule, doc, src, now(), doc ~= rec, sup)
      if not aok then
        cb.log(string.format("%s: could not build the alert of %s: %s", where(path, offset, index),
          rule.file, message(line)))
      else
        local t = event.get(doc, "@timestamp")
        cb.emit(pr.slot, type(t) == "string" and t or "", id, severity_of(rule), line,
          lim.max_signals, lim.interval_s, len > 0 and lim.suppress.duration_s or 0, key or "", at, len)
      end
    end
    ::next_rule::
  end
  -- After every event, not only every record: an S3 object of thousands
  -- of events is one record, and a rule can hoard within it.
  if cb.pressure then cb.pressure() end
end

-- bytes: the size of the JSON text v came from, for the normalizer's budget
-- (records of a document get a share of it, four times the average).
local function events(v, path, offset, bytes)
  local recs = v.Records
  if recs ~= nil and v.eventSource == nil and v.eventName == nil then
    if type(recs) ~= "table" or (next(recs) ~= nil and recs[1] == nil) then
      reject(path, offset, "Records is not an array of records, skipped")
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

-- Counts at the start of the record at hand: a record given up in the middle
-- (its worker starts afresh, and a fresh one evaluates it) is not counted twice.
local mark = { records = 0, malformed = 0, failed = 0 }
local function start_record()
  mark.records, mark.malformed, mark.failed = stats.records, stats.malformed, stats.failed
end

function W.undo()
  stats.records, stats.malformed, stats.failed = mark.records, mark.malformed, mark.failed
end

function W.record(bytes, path, offset, set, full)
  start_record()
  record_set, record_full = set, full
  local ok, v = pcall(cjson.decode, bytes)
  if not ok then
    reject(path, offset, decode_error(v))
    return
  end
  if type(v) ~= "table" then
    reject(path, offset, "not a JSON object (a " .. (v == cjson.null and "null" or type(v)) .. "), skipped")
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
function W.document(bytes, path, full)
  start_record()
  record_set, record_full = nil, full
  local base = bytes:sub(1, 3) == "\239\187\191" and 3 or 0  -- skip a UTF-8 byte-order mark
  local text = base == 0 and bytes or bytes:sub(base + 1)
  local ok, v = pcall(cjson.decode, text)
  if ok then
    if type(v) ~= "table" then
      reject(path, 0, "not a JSON object (a " .. (v == cjson.null and "null" or type(v)) .. "), skipped")
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
    reject(path, 0, decode_error(v))
    return
  end
  for _, l in ipairs(lines) do W.record(l[2], path, l[1], nil, full) end
end

-- What was counted since the last call: the host adds it up across workers.
-- Per rule: { slot, seen, errors, time (ns) }, in the order of the rules. Only the rules that
-- ran since (touched: a rule's errors and time come with running) are looked at: a batch of a
-- few records beside 500 rules costs a few lookups, not 500.
function W.counters()
  local out = { records = stats.records, malformed = stats.malformed, failed = stats.failed, rules = {} }
  stats.records, stats.malformed, stats.failed = 0, 0, 0
  if #touched > 1 then table.sort(touched, function(a, b) return a.order < b.order end) end
  for i = 1, #touched do
    local pr = touched[i]
    if per_rule[by_slot[pr.slot]] == pr and (pr.seen > 0 or pr.errors > 0) then
      out.rules[#out.rules + 1] = { pr.slot, pr.seen, pr.errors, math.floor(pr.time * 1e9) }
    end
    pr.seen, pr.errors, pr.time, pr.failed_in_batch = 0, 0, 0, nil
    touched[i] = nil
  end
  return out
end

-- Called by the C side when the heap holds more than half its cap after a
-- full collection, with owned(slot) -> bytes held by what the rule's calls
-- allocated: the rule holding the most, if that is more than its share of
-- the cap (an even split between the rules, halved), is named.
function W.pressure(cap, owned)
  local worst, most = nil, 0
  for _, rule in ipairs(rules) do  -- quarantined ones too: what they kept is still held
    local n = owned(per_rule[rule].slot)
    if n > most then worst, most = rule, n end
  end
  local share = cap / (2 * math.max(#rules, 1))
  if not worst or most <= share then return nil end
  local pr = per_rule[worst]
  return pr.slot, pr.load, string.format("rule %s quarantined: it keeps %.0f MiB between calls, more than its " ..
    "share of the worker's heap (%.0f MiB of --max-worker-memory %.0f MiB); \"%s\" no longer runs until %s " ..
    "changes (or SIGHUP), and its worker starts afresh", worst.file, most / 2 ^ 20, share / 2 ^ 20, cap / 2 ^ 20,
    worst.name, worst.file)
end

-- The rules named in `only` (by name, rule_id, or file name with or without
-- .lua); or nil and a message naming what matched nothing.
local function picked(r)
  local file = r.file:match("([^/]+)$")
  for _, want in ipairs(only) do
    if want == r.name or want == r.id or want == file or want .. ".lua" == file then return want end
  end
  return nil
end

-- An evaluation worker, while the gate does its first load: the same files compiled, kept for
-- the W.rules that follows (what the gate lets through of them is not compiled twice in a row).
-- What a rule says while loading, the gate reports; a file that does not load is the gate's to
-- report too.
function W.preload(files)
  for i, f in ipairs(files) do
    local ok, rule = compile(f.path, f.text, function() end, i - 1)
    if ok and rule then preloaded[f.path] = { text = f.text, rule = rule } end
  end
end

-- Gate: the first load of the rules folder. files: { { path, text } } in
-- name order. Returns results { path, ok, id or error, name, version } and,
-- when `only` names a rule that did not load, a fatal message.
function W.load(files)
  local results, ids, used, names = {}, {}, {}, {}
  for i, f in ipairs(files) do
    local ok, rule, err = compile(f.path, f.text, function(m) cb.log(m) end, i - 1)
    if not ok then
      err = message(rule)
      if err:sub(1, #f.path + 1) ~= f.path .. ":" then err = f.path .. ":1: " .. err end
      rule = nil
    end
    if rule and ids[rule.id] then
      rule, err = nil, string.format("%s:%d: rule_id %s is already used by %s", f.path, 1, rule.id, ids[rule.id])
    end
    if rule and only then
      names[#names + 1] = "  " .. rule.name .. " (" .. rule.id .. ")"
      if not picked(rule) then rule, err = nil, false end  -- not asked for: nothing to say
    end
    if rule then
      preloaded[f.path] = { text = f.text, rule = rule }
      ids[rule.id] = f.path
      if only then used[picked(rule)] = true end
      results[#results + 1] = { path = f.path, ok = true, id = rule.id, name = rule.name,
        version = rule.meta.version ~= nil and tostring(rule.meta.version) or "",
        prefilter = ruleindex.prefilter(rule, normalize, call_normalizer) }
    elseif err then
      results[#results + 1] = { path = f.path, ok = false, error = err }
    end
  end
  if only then
    for _, want in ipairs(only) do
      if not used[want] then
        return results, string.format("--rule %s: no loaded rule has that name, rule_id or file name; " ..
          "the rules are:\n%s", want, table.concat(names, "\n"))
      end
    end
  end
  return results
end

-- Gate: changed files. req: { all, changed = { { path, text, mtime } }, removed = { paths },
-- missing = { paths }, normalizer = text or nil }. Returns the log lines, the
-- rules that would run ({ path, new, id, name, version }) and whether the
-- normalizer passed. Nothing changes here: the host sends the new set to
-- every worker, this one included.
function W.gate(req)
  local logs, result = {}, nil
  local g = reload.new({
    limited = limited, now = clock, log = function(m) logs[#logs + 1] = m end,
    rule_log = function(m) cb.log(m) end, normalizer = norm_path,
    accept = only and function(r) return picked(r) ~= nil end or nil,
    current = function() return rules, normalize end,
    swap = function(list, norm) result = { list = list, norm = norm } end,
    step = has_sys and sys.step or nil,
  })
  g:apply(req)
  -- A new normalizer is one reloaded: its code runs under limits, as call_normalizer runs it.
  local new_norm_call = result.norm ~= normalize and function(fn, ...) return limited(norm_acct, fn, ...) end
    or call_normalizer
  local live = {}
  for _, r in ipairs(result.list) do
    live[#live + 1] = { path = r.file, new = per_rule[r] == nil, id = r.id, name = r.name,
      version = r.meta.version ~= nil and tostring(r.meta.version) or "",
      prefilter = ruleindex.prefilter(r, result.norm or normalize, new_norm_call) }
  end
  return logs, live, result.norm ~= normalize
end

return W
