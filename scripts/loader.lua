-- loader.lua: rule modules in, runnable rules out.
--
-- A rule file is a Lua chunk returning one table (DESIGN.md, "A rule module").
-- It is compiled as text in its own sandboxed environment, its metadata is
-- checked, its KQL query compiled, and the result is a rule:
--
--   rule.file     the path it came from
--   rule.meta     the table the module returned
--   rule.id       meta.rule_id
--   rule.name     meta.name
--   rule.query    the compiled KQL query (kql.compile), or nil
--   rule.eql      the compiled EQL query (eql.compile), or nil: a rule with language = "eql"
--                 (type = "eql"), its query an event query; the category field is the rule's
--                 event_category_override, else event.category. rule.query is then nil.
--   rule.state    a new_terms or threshold rule's parameters (stateful.params), an EQL sequence's
--                 (stateful.sequence), or nil
--   rule.sigma    the compiled Sigma detection (sigma.compile), or nil: a rule with
--                 language = "sigma" and a `sigma` table (the Sigma rule's own keys)
--   rule.match(get, view) -> boolean  get(name): a field of the event (get(event.DOCUMENT):
--                                     the whole document, which KQL reads for a value with
--                                     no field; get(event.RAW): the raw CloudTrail record,
--                                     which a Sigma detection reads); view: the read-only
--                                     event a Lua match function is handed (event.lua)
--
-- Every error names the file and line: "rules/x.lua:12: ...".

local eql = require "eql"
local kql = require "kql"
local stateful = require "stateful"
local event = require "event"
local sandbox = require "sandbox"
local sigma = require "sigma"

-- The host lists folders in C (thsys); specs running under plain lua5.4 list
-- them with ls, the folder name quoted for the shell.
local has_sys, sys = pcall(require, "thsys")

local M = {}
local find, byte = string.find, string.byte

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local src = f:read("a")
  f:close()
  return src
end

-- Line of the first "key =" in the source, for messages about a field.
local function line_of(src, key)
  local _, _, at = src:find("[\n{,]%s*()" .. key .. "%s*=")
  if not at then return 1 end
  local _, n = src:sub(1, at - 1):gsub("\n", "")
  return n + 1
end

-- Where the query's text starts in the file: line and column of its first
-- character, so KQL errors point into the rule file.
--
-- The end of the first "query = " and its opening in src, preceded as "[\n{,]%s*query" has
-- it, or nil. Plain finds of "query": a pattern that starts with a class is tried at every
-- byte, and a rule's file is often kilobytes of description and guide before its query.
local function after_query(src, opening)
  local at = 1
  while true do
    local q = find(src, "query", at, true)
    if not q then return nil end
    local p, newline = q - 1, false
    while p >= 1 do
      local c = byte(src, p)
      if c == 10 then newline = true end
      if c ~= 32 and (c < 9 or c > 13) then break end
      p = p - 1
    end
    local c = p >= 1 and byte(src, p) or nil
    if newline or c == 123 or c == 44 then  -- \n (in the spaces), { or ,
      local _, e = find(src, opening, q + 5)
      if e then return e end
    end
    at = q + 1
  end
end

local function query_position(src)
  local quote = false
  local e = after_query(src, "^%s*=%s*%[=*%[")
  if not e then
    e = after_query(src, "^%s*=%s*[\"']")
    quote = true
  end
  if not e then return 1, 1 end
  -- The newlines before e, counted with plain finds: a pattern anchored at the last one
  -- (".*()\n") backtracks over the whole prefix, and a rule's file is often kilobytes.
  local line, last = 1, 0
  local nl = find(src, "\n", 1, true)
  while nl and nl <= e do
    line, last = line + 1, nl
    nl = find(src, "\n", nl + 1, true)
  end
  local col = e - last + 1
  if not quote and src:sub(e + 1, e + 1) == "\n" then  -- a long string skips its first newline
    line, col = line + 1, 1
  end
  return line, col
end

local REQUIRED = {
  rule_id = "string", name = "string", description = "string", severity = "string",
  risk_score = "number",
}
local OPTIONAL = {
  tags = "table", threat = "table", references = "table", false_positives = "table",
  note = "string", investigation_fields = "table", index = "table", from = "string",
  max_signals = "number", timestamp_override = "string", author = "table", license = "string",
  version = "number", language = "string", query = "string", match = "function",
  tests = "table", type = "string", metadata = "table", interval = "string", alert_suppression = "table",
  sigma = "table", new_terms = "table", threshold = "table",
}
local SEVERITIES = { low = true, medium = true, high = true, critical = true }

-- Seconds in a duration as Elastic writes one: "5m", "30s", "1h", "2d", or
-- (alert_suppression.duration) { value = 5, unit = "m" }. nil when it is not one.
local UNIT = { s = 1, m = 60, h = 3600, d = 86400 }
function M.seconds(v)
  local n, unit
  if type(v) == "string" then
    n, unit = v:match("^(%d+)([smhd])$")
    n = tonumber(n)
  elseif type(v) == "table" then
    n, unit = v.value, v.unit
  end
  if math.type(n) ~= "integer" or n < 1 or not UNIT[unit] or n > 366 * 86400 // UNIT[unit] then return nil end
  return n * UNIT[unit]
end

-- alert_suppression as Elastic's rule schema has it; nil, or a message.
local STRATEGIES = { suppress = true, doNotSuppress = true }
local function suppression_error(s)
  local by = s.group_by
  if type(by) ~= "table" or #by < 1 or #by > 3 then
    return "alert_suppression.group_by must list 1 to 3 field names"
  end
  for k, f in pairs(by) do
    if math.type(k) ~= "integer" or type(f) ~= "string" or f == "" then
      return "alert_suppression.group_by must list 1 to 3 field names"
    end
  end
  if s.duration ~= nil and not M.seconds(s.duration) then
    return "alert_suppression.duration must be like \"5m\" (s, m or h) or { value = 5, unit = \"m\" }"
  end
  local m = s.missing_fields_strategy
  if m ~= nil and not STRATEGIES[m] then
    return string.format("alert_suppression.missing_fields_strategy must be \"suppress\" or \"doNotSuppress\", not %s",
      type(m) == "string" and ("'" .. m .. "'") or type(m))
  end
  for k in pairs(s) do
    if k ~= "group_by" and k ~= "duration" and k ~= "missing_fields_strategy" then
      return string.format("alert_suppression has no key '%s' (group_by, duration, missing_fields_strategy)",
        tostring(k))
    end
  end
end

-- Kibana's max_signals for a rule that names none.
M.ELASTIC_MAX_SIGNALS = 100

-- The max_signals a rule runs with, and whether it is Kibana's default: the rule's own, or for a
-- rule in Elastic's format that names none (it carries Elastic's [metadata] table, as every rule
-- `trailhound import` writes from Elastic's TOML does, and is no Sigma rule) Kibana's default, as
-- Elastic would run it; else none (nil).
function M.max_signals(mod)
  if mod.max_signals ~= nil then return mod.max_signals, false end
  if type(mod.metadata) == "table" and mod.sigma == nil and mod.language ~= "sigma" then
    return M.ELASTIC_MAX_SIGNALS, true
  end
  return nil, false
end

-- What the host holds a rule's alerts to (DESIGN.md, "Limits, suppression and
-- state"): max_signals in each interval window of event time (0: no limit),
-- (one that is not a whole number is `check`'s error, and no limit here),
-- and alert suppression (nil: none; a duration left out is the interval, as a
-- rule that suppresses "per rule execution" does in Elastic).
local function limits(mod)
  local interval = M.seconds(mod.interval or "5m")
  local s = mod.alert_suppression
  local max = M.max_signals(mod)
  return {
    max_signals = math.type(max) == "integer" and max > 0 and max or 0,
    interval_s = interval,
    suppress = s and {
      fields = s.group_by,
      duration_s = s.duration and M.seconds(s.duration) or interval,
      missing = s.missing_fields_strategy or "suppress",
    },
  }
end

-- The keys a rule may have and their Lua types, for `trailhound check`.
M.REQUIRED, M.OPTIONAL = REQUIRED, OPTIONAL

local function validate(path, src, mod)
  local function fail(key, msg)
    return nil, string.format("%s:%d: %s", path, line_of(src, key), msg)
  end
  for key, ty in pairs(REQUIRED) do
    if mod[key] == nil then return nil, string.format("%s:1: missing required field '%s'", path, key) end
    if type(mod[key]) ~= ty then
      return fail(key, string.format("field '%s' must be a %s, not a %s", key, ty, type(mod[key])))
    end
  end
  for key, ty in pairs(OPTIONAL) do
    if mod[key] ~= nil and type(mod[key]) ~= ty then
      return fail(key, string.format("field '%s' must be a %s, not a %s", key, ty, type(mod[key])))
    end
  end
  if not SEVERITIES[mod.severity] then
    return fail("severity", string.format("severity must be low, medium, high or critical, not '%s'", mod.severity))
  end
  if mod.risk_score < 0 or mod.risk_score > 100 then
    return fail("risk_score", "risk_score must be between 0 and 100")
  end
  if mod.language == "sigma" or mod.sigma ~= nil then
    if mod.language ~= "sigma" then
      return fail("sigma", "a rule with a 'sigma' table needs language = \"sigma\"")
    end
    if mod.sigma == nil then return fail("language", "language \"sigma\" needs a 'sigma' table (the Sigma rule)") end
    if mod.query ~= nil then
      return fail("query", "a Sigma rule has no 'query': its detection is in sigma.detection")
    end
  elseif mod.query == nil and mod.match == nil then
    return nil, string.format("%s:1: a rule needs a 'query', a 'match' function or a 'sigma' table", path)
  end
  if mod.interval ~= nil and not M.seconds(mod.interval) then
    return fail("interval", string.format("interval must be like 5m (s, m, h or d), not '%s'", mod.interval))
  end
  if mod.alert_suppression ~= nil then
    local why = suppression_error(mod.alert_suppression)
    if why then return fail("alert_suppression", why) end
  end
  -- new_terms and threshold keep state in the host (stateful.lua); an EQL rule runs (its
  -- sequences with their state in the host too); other types (ES|QL, machine learning) are refused,
  -- rather than run as if they were a plain query.
  if mod.type ~= nil and mod.type ~= "query" and mod.type ~= "eql" and not stateful.TYPES[mod.type] then
    return fail("type", string.format("type '%s' is not supported here (query, eql, new_terms and threshold " ..
      "rules run)", tostring(mod.type)))
  end
  if stateful.TYPES[mod.type] then
    if mod.query == nil then return fail("type", string.format("a %s rule needs a 'query'", mod.type)) end
    local st, key, why = stateful.params(mod)
    if not st then return fail(key, why) end
  end
  if (mod.type == "eql" and mod.language ~= "eql") or (mod.language == "eql" and (mod.type or "eql") ~= "eql") then
    return fail(mod.type == "eql" and "type" or "language", "an EQL rule has type = \"eql\" and language = \"eql\"")
  end
  if mod.language == "eql" and mod.query == nil then return fail("language", "language \"eql\" needs a 'query'") end
  if mod.event_category_override ~= nil and type(mod.event_category_override) ~= "string" then
    return fail("event_category_override", "event_category_override must be a field name (a string)")
  end
  if mod.query ~= nil and mod.language ~= nil and mod.language ~= "kuery" and mod.language ~= "eql" then
    return fail("language", string.format("language '%s' is not supported (kuery or eql)", mod.language))
  end
  if mod.query == nil and mod.language ~= nil and mod.language ~= "kuery" and mod.language ~= "sigma" then
    return fail("language", string.format("language '%s' is not supported (kuery or sigma)", mod.language))
  end
  return true
end

-- A copy made with next (raw): whatever metatables the rule's tables carry,
-- the host never runs rule code when it reads metadata.
local function plain(v, depth)
  if type(v) ~= "table" or v == sigma.NULL then return v end
  if depth > 32 then error("metadata nested more than 32 levels deep", 0) end
  local c = {}
  local k, x = next(v)
  while k ~= nil do
    c[k] = plain(x, depth + 1)
    k, x = next(v, k)
  end
  return c
end

-- A Sigma rule's metadata, where the module leaves it out, from the Sigma rule's own keys
-- (the importer writes both): rule_id from id, name from title, description, severity and
-- risk_score from level, tags, author, references, false_positives from falsepositives.
-- Returns nil, or a message about the sigma table.
local function sigma_defaults(mod)
  local sg = mod.sigma
  if type(sg) ~= "table" then return nil end
  local function str(v) return type(v) == "string" and v or nil end
  mod.rule_id = mod.rule_id or str(sg.id)
  mod.name = mod.name or str(sg.title)
  mod.description = mod.description or str(sg.description) or str(sg.title)
  if mod.severity == nil then
    local lv = sigma.LEVELS[sg.level]
    if sg.level == nil then return "level", "a Sigma rule without severity needs sigma.level" end
    if not lv then
      return "level", string.format("sigma.level '%s' is not one of informational, low, medium, high, critical",
        tostring(sg.level))
    end
    mod.severity = lv.severity
  end
  local band = sigma.LEVELS[mod.severity]
  if mod.risk_score == nil and band then mod.risk_score = band.risk_score end
  local function list(v)
    if type(v) == "string" then return { v } end
    if type(v) == "table" then return v end
    return nil
  end
  mod.tags = mod.tags or list(sg.tags)
  mod.author = mod.author or list(sg.author)
  mod.references = mod.references or list(sg.references)
  mod.false_positives = mod.false_positives or list(sg.falsepositives)
  return nil
end

-- A match function's answer; anything but a boolean is an error at the
-- line of the function (where, "file:line").
local function verdict(v, where)
  if v == true or v == false then return v end
  error(string.format("%s: match must return true or false, not %s", where, v == nil and "nil" or type(v)), 0)
end

-- Lua names a file in its messages by at most 60 characters, the start cut
-- to "...": put path back in a message about it.
function M.full_path(msg, path)
  if type(msg) ~= "string" or msg:sub(1, 3) ~= "..." then return msg end
  local shown = msg:match("^%.%.%.(.-):%d+:")
  if shown and #shown < #path and path:sub(-#shown) == shown then return path .. msg:sub(#shown + 4) end
  return msg
end

-- Load one rule file. Returns the rule, or nil and a message naming file and line.
-- opts.log: where a rule's print goes; opts.source: the file's text, already read.
function M.load_file(path, opts)
  opts = opts or {}
  local src, err = opts.source, nil
  if not src then src, err = read(path) end
  if not src then return nil, string.format("%s: %s", path, err) end
  local env = sandbox.env(path, opts.log)
  local chunk, cerr = load(src, "@" .. path, "t", env)
  if not chunk then return nil, M.full_path(cerr, path) end
  local ok, mod = pcall(chunk)
  if not ok then return nil, M.full_path(tostring(mod), path) end
  if type(mod) ~= "table" then
    return nil, string.format("%s:1: a rule module must return a table, not a %s", path, type(mod))
  end
  local cok, copy = pcall(plain, mod, 0)
  if not cok then return nil, string.format("%s:1: %s", path, tostring(copy)) end
  mod = copy
  if mod.language == "sigma" then
    local key, why = sigma_defaults(mod)
    if key then return nil, string.format("%s:%d: %s", path, sigma.locate_key(src, key), why) end
  end
  local valid, verr = validate(path, src, mod)
  if not valid then return nil, verr end

  local rule = { file = path, meta = mod, id = mod.rule_id, name = mod.name, limits = limits(mod),
    state = stateful.params(mod) }
  local query, lua_match = nil, mod.match
  if mod.query and mod.language == "eql" then
    local line, col = query_position(src)
    local q, qerr = eql.compile(mod.query, { chunkname = path, line = line, col = col,
      category_field = mod.event_category_override })
    if not q then return nil, qerr end
    if q.kind == "sequence" then
      -- Its state is the host's (stateful.lua, host/state.h): an event matches when a step or
      -- until does, and the worker sends the steps it matches.
      local st, why = stateful.sequence(mod, q)
      if not st then return nil, string.format("%s:%d:%d: %s", path, q.ast.line, q.ast.col, why) end
      rule.state = st
      local defs = { table.unpack(st.steps) }
      defs[#defs + 1] = st["until"]
      query = function(get)
        for _, d in ipairs(defs) do
          if d.match(get) then return true end
        end
        return false
      end
    else
      query = q.match
    end
    rule.eql = q
  elseif mod.query then
    local line, col = query_position(src)
    local q, qerr = kql.compile(mod.query, { chunkname = path, line = line, col = col })
    if not q then return nil, qerr end
    query = q.match
    rule.query = q
  end
  if mod.sigma then
    local det = type(mod.sigma.detection) == "table" and mod.sigma.detection or nil
    local d, derr = sigma.compile(mod.sigma.detection)
    if not d then
      return nil, string.format("%s:%d: %s", path, det and sigma.locate(src, derr) or sigma.locate_key(src, "sigma"),
        sigma.message(derr))
    end
    rule.sigma = d
    local sigma_match = d.match
    -- A record with no raw CloudTrail form (an ECS document without event.original) is
    -- nothing a Sigma rule's raw paths can be read from: it does not match.
    query = function(get)
      local rec = get(event.RAW)
      if rec == nil then return false end
      return sigma_match(rec)
    end
  end
  -- get(name) reads a field of the event; view is what a Lua match function sees.
  local at = lua_match and path .. ":" .. math.max(debug.getinfo(lua_match, "S").linedefined, 1)
  if query and lua_match then
    rule.match = function(get, view) return query(get) and verdict(lua_match(view), at) end
  elseif query then
    rule.match = function(get) return query(get) end
  else
    rule.match = function(_, view) return verdict(lua_match(view), at) end
  end
  return rule
end

-- Names in a folder, sorted; or nil and a message.
local function list(dir)
  if has_sys then
    local names, err = sys.listdir(dir)
    if not names then return nil, err end
    table.sort(names)
    return names
  end
  local p = io.popen("ls -1 '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  local names = {}
  for name in p:lines() do names[#names + 1] = name end
  if not p:close() then return nil, dir .. ": cannot list the folder" end
  return names
end
M.list = list

-- A rule file: *.lua, and not hidden (editors' lock and swap files are).
function M.is_rule_file(name)
  return name:match("%.lua$") ~= nil and name:sub(1, 1) ~= "."
end

-- Load every rule file of a directory, in name order. Returns the rules and
-- a list of error messages (a broken rule is left out; the others load), or
-- nil and a message when the folder itself cannot be read. opts.call: how to
-- call load_file (pcall by default; the host passes its limited call, so a
-- rule that loops at load time cannot hang the start).
function M.load_dir(dir, opts)
  opts = opts or {}
  local names, lerr = list(dir)
  if not names then return nil, lerr end
  local call = opts.call or pcall
  local rules, errors, seen = {}, {}, {}
  for _, name in ipairs(names) do
    if M.is_rule_file(name) then
      local path = dir .. "/" .. name
      local ok, rule, err = call(M.load_file, path, opts)
      if not ok then
        err = type(rule) == "string" and rule or "(error object is a " .. type(rule) .. " value)"
        if err:sub(1, #path + 1) ~= path .. ":" then err = path .. ":1: " .. err end
        rule = nil
      end
      if rule and seen[rule.id] then
        rule, err = nil, string.format("%s:%d: rule_id %s is already used by %s", path,
          1, rule.id, seen[rule.id])
      end
      if rule then
        seen[rule.id] = path
        rules[#rules + 1] = rule
      else
        errors[#errors + 1] = err
      end
    end
  end
  return rules, errors
end

-- The alerts a rule makes of events in order, its state (stateful.lua) starting empty and kept
-- by the host's own store (thsys.state_new, host/state.h): a test of several events is decided
-- as a run would decide it. Raises when the rule does or the store is not there (plain lua5.4).
function M.count_alerts(rule, normalize, events)
  local st, store = rule.state, nil
  if st then
    if not (has_sys and sys.state_new) then error("a test of several events needs the trailhound binary", 0) end
    store = sys.state_new()
  end
  local n = 0
  for i, rec in ipairs(events) do
    if type(rec) ~= "table" then error(string.format("events[%d] is not a table", i), 0) end
    local doc = normalize(rec)
    if rule.match(event.getter(doc, rec), event.view(doc)) then
      if not st then
        n = n + 1
      else
        local t = event.get(doc, "@timestamp")
        local src = { path = "test", offset = 0, index = i - 1 }
        for _, c in ipairs(stateful.keys(rule, doc, src)) do
          local card = st.cardinality
          local alerted
          if st.kind == "sequence" then  -- a completed sequence counts once (its shell alert)
            alerted = store:decide(rule.id, st.fingerprint, st.type, type(t) == "string" and t or "", c.key,
              c.uuid, "", st.span_ms, c.step, st.nsteps)
          else
            alerted = store:decide(rule.id, st.fingerprint, st.type, type(t) == "string" and t or "", c.key,
              c.uuid or "", c.distinct or "", st.window_s, st.value or 0, card and card.value or 0)
          end
          if alerted then n = n + 1 end
        end
      end
    end
  end
  return n
end

-- Run a rule's embedded tests (tests: these instead of rule.meta.tests). normalize(rec) -> ECS
-- document. A test is { name, expect = true|false, event = {...} } (does the rule match the
-- event), or { name, expect = N, events = { {...}, ... } } (the number of alerts the events
-- make, in order: for new_terms and threshold rules, and EQL sequences, with their state; a
-- sequence counts once when it completes).
-- Returns a list of { name, expect, got, ok, err }.
function M.run_tests(rule, normalize, tests)
  local results = {}
  for i, t in ipairs(tests or rule.meta.tests or {}) do
    local r = { name = t.name or ("test " .. i), expect = t.expect }
    local run
    if t.events ~= nil then
      if type(t.events) ~= "table" or #t.events == 0 then
        r.ok, r.err = false, "test has no events list"
      elseif math.type(t.expect) ~= "integer" then
        r.ok, r.err = false, "test has no whole number 'expect'"
      else
        run = function() return M.count_alerts(rule, normalize, t.events) end
      end
    elseif type(t.event) ~= "table" then
      r.ok, r.err = false, "test has no event table"
    elseif type(t.expect) ~= "boolean" then
      r.ok, r.err = false, "test has no boolean 'expect'"
    else
      run = function()
        local doc = normalize(t.event)
        return rule.match(event.getter(doc, t.event), event.view(doc))
      end
    end
    if run then
      local ok, got = pcall(run)
      if ok then
        r.got, r.ok = got, got == t.expect
      else
        r.ok, r.err = false, tostring(got)
      end
    end
    results[#results + 1] = r
  end
  return results
end

return M
