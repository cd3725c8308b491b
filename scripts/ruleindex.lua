-- ruleindex.lua: which rules an event can concern, before any of them runs.
--
-- Two uses of what a rule's query requires (kql.requirements, eql.requirements), or a Sigma
-- rule's detection (sigma.lua, "Requirements"):
--
--   ruleindex.prefilter(rule, normalize, call) -> clauses
--     What the host's prefilter (host/prefilter.c) looks for in a record's raw text before
--     sending it to a worker: a list of clauses, each a list of literal strings, at least one
--     of which a record the rule matches holds (after JSON unescaping). Only requirements on
--     fields the normalizer copies verbatim (normalize.VERBATIM) qualify: event.provider is
--     the record's own eventSource, while data_stream.dataset is a constant no record holds.
--     A computed field's value may name what the text then holds (normalize.IMPLIED:
--     event.outcome "failure" needs an errorCode, an errorMessage, a ConsoleLogin or the
--     word itself). An empty list: the rule may match any record (a Lua match alone).
--     An EQL requirement marked fold (event.action : "AddPermission*") makes its clause
--     fold too: met in any ASCII case. An EQL sequence has one clause: for every step, the
--     values of its clause with the fewest the text can show (an event that concerns the
--     sequence concerns some step); none when a step has no such clause.
--     A Sigma rule's clauses are its detection's requirements (eventName, and any text an
--     item requires of a value), marked fold: Sigma compares ASCII letters regardless of
--     case, so the host looks for them so too. Only literals of characters no JSON writer
--     escapes qualify (an ECS document's event.original holds the record's text escaped
--     once more), and none that a number's text could hold (1e2 is 100): of a value with
--     other characters, its longest such run (:assumed-role of :assumed-role/aws:).
--     Its `fields`: conditions on raw fields the host reads exactly (raw_conditions below):
--     { path = "userIdentity.type", exclude = true, values = { "AssumedRole" } }. call(fn, ...)
--     runs the normalizer's code (pcall by default).
--
--   local ix = ruleindex.build(rules, cheap)
--   ix.candidates(get) -> rules
--     The rules, in their order, that an event can match judging by the exact values they
--     require of fields the view computes cheaply (cheap: normalize.ON_DEMAND; nil: any
--     field): each rule is filed under the values of the two such clauses fewest other rules
--     share, as pairs (event.action CreateUser or DeleteUser with event.outcome "failure",
--     rather than event.provider "iam.amazonaws.com"), and its other such clauses are
--     checked with one lookup each, as are its top-level `not` clauses of exact values
--     (kql.exclusions: not aws.cloudtrail.user_identity.type: "AssumedRole"). An event asks
--     for each field once, and gets the rules filed under its pairs of values whose checks
--     hold, plus the rules filed under nothing. A rule that cannot match costs no call of
--     its own. A Sigma rule is filed under the values it requires of the raw record's
--     eventName and eventSource (sigma:eventName, read through get(event.RAW)), lower-cased.

local eql = require "eql"
local event = require "event"
local kql = require "kql"
local sigma = require "sigma"

local M = {}

local type, ipairs, sort = type, ipairs, table.sort

-- A Sigma rule's exact clauses on eventName and eventSource, as kql.requirements gives
-- them: fields "sigma:eventName", values lower-cased.
local SIGMA_FIELD = "sigma:"
local INDEXED = { eventName = true, eventSource = true }

local function sigma_clauses(d)
  local out = {}
  for _, c in ipairs(d.requirements) do
    if c.exact and INDEXED[c.field] then
      local alts = {}
      for i, v in ipairs(c.values) do alts[i] = { field = SIGMA_FIELD .. c.field, value = v:lower(), exact = true } end
      out[#out + 1] = alts
    end
  end
  return out
end

-- Worked out once per rule: the index is rebuilt for every change of the rule set.
local function requirements(rule)
  if rule.sigma ~= nil then
    if rule.requirements == nil then rule.requirements = sigma_clauses(rule.sigma) end
    return rule.requirements
  end
  if rule.eql ~= nil then return eql.requirements(rule.eql) end
  if rule.query == nil then return {} end
  if rule.requirements == nil then rule.requirements = kql.requirements(rule.query) end
  return rule.requirements
end

local function exclusions(rule)
  if rule.eql ~= nil then
    if rule.exclusions == nil then rule.exclusions = eql.exclusions(rule.eql) end
    return rule.exclusions
  end
  if rule.query == nil or rule.sigma ~= nil then return {} end
  if rule.exclusions == nil then rule.exclusions = kql.exclusions(rule.query) end
  return rule.exclusions
end

local function table_of(t, k)
  return type(t) == "table" and type(t[k]) == "table" and t[k] or {}
end

-- A literal the host may look for on a Sigma rule's behalf: characters no JSON writer
-- escapes (not " \ / < > & ' or beyond ASCII), and one that no number's text holds.
local function safe_literal(s)
  return s:find("^[%w .,:;_@#$%%+=~!^|(){}%[%]%-]+$") ~= nil and s:find("[^%d%.eE%+%-]") ~= nil
end
M.safe_literal = safe_literal

-- A value's longest safe run (a record holding the value holds it): the value, or the
-- longest piece between characters that are not safe; nil when none is.
local function safe_part(v)
  if safe_literal(v) then return v end
  local best
  for run in v:gmatch("[%w .,:;_@#$%%+=~!^|(){}%[%]%-]+") do
    if safe_literal(run) and (not best or #run > #best) then best = run end
  end
  return best
end

local function sigma_prefilter(d)
  local out = {}
  for _, c in ipairs(d.requirements) do
    local lits = { fold = true }
    for _, v in ipairs(c.values) do
      local part = safe_part(v)
      if not part then lits = nil break end
      lits[#lits + 1] = part
    end
    if lits and #lits > 0 then out[#out + 1] = lits end
  end
  return out
end

-- A requirement clause as literals the text of a record meeting it holds, or nil when a value
-- cannot be looked for (a field the normalizer computes, with nothing implied).
local function literals(clause, verbatim, implied)
  local lits = {}
  for _, alt in ipairs(clause) do
    local also = alt.exact and type(implied[alt.field]) == "table" and implied[alt.field][alt.value]
    if verbatim[alt.field] and alt.value ~= "" then  -- "" is in every record: it says nothing
      lits[#lits + 1] = alt.value
      if alt.fold then lits.fold = true end
    elseif type(also) == "table" and #also > 0 then  -- a computed value: what the text then holds
      for _, lit in ipairs(also) do lits[#lits + 1] = lit end
    else
      return nil
    end
  end
  if #lits == 0 then return nil end
  return lits
end

-- An EQL sequence: one clause, for each step (missing and until steps too: their events change
-- the state) the literals of its clause with the fewest, all together. An event that concerns
-- the sequence concerns some step, so it holds one of them. eql.requirements' own clause takes
-- each step's narrowest by alternatives, which may be data_stream.dataset, a constant no record
-- holds: this picks among the clauses the text can show.
local function sequence_prefilter(seq, verbatim, implied)
  local steps = {}
  for _, st in ipairs(seq.steps) do steps[#steps + 1] = st end
  if seq["until"] then steps[#steps + 1] = seq["until"] end
  local union = {}
  for _, st in ipairs(steps) do
    local best
    for _, clause in ipairs(st.requirements) do
      local lits = literals(clause, verbatim, implied)
      if lits and (best == nil or #lits < #best) then best = lits end
    end
    if best == nil then return {} end  -- a step any event may meet
    for _, lit in ipairs(best) do union[#union + 1] = lit end
    if best.fold then union.fold = true end
  end
  if #union == 0 then return {} end
  return { union }
end

-- The clauses a rule can be filed under: those that are a list of exact values of one field
-- (the narrowest per field), on fields the view computes cheaply (cheap: a set of field
-- names, or nil for every field).
local function keyed_clauses(rule, cheap)
  local by_field = {}
  for _, clause in ipairs(requirements(rule)) do
    local field, ok = clause[1].field, true
    for _, alt in ipairs(clause) do
      if not alt.exact or alt.field ~= field then ok = false break end
    end
    local is_cheap = cheap == nil or cheap[field] or field:sub(1, #SIGMA_FIELD) == SIGMA_FIELD
    if ok and is_cheap and (by_field[field] == nil or #clause < #by_field[field]) then
      by_field[field] = clause
    end
  end
  local out = {}
  for field, clause in pairs(by_field) do out[#out + 1] = { field = field, clause = clause } end
  table.sort(out, function(a, b) return a.field < b.field end)
  return out
end

-- A raw record holding v at the dotted path (for checking what the normalizer makes of it).
local function record_with(path, v)
  local rec = {}
  local t, last = rec, nil
  for key in path:gmatch("[^.]+") do
    if last then
      t[last] = {}
      t = t[last]
    end
    last = key
  end
  t[last] = v
  return rec
end

-- The rule's conditions on raw fields (prefilter's fields, host/rawfield.h): its exact
-- clauses and top-level `not` clauses of exact values, on fields the normalizer takes from a
-- path of a raw record as they are (normalize.RAW_PATHS), read by the function the entry names
-- (one put in its place may read otherwise: no condition), in a normalizer whose is_cloudtrail
-- is the one that says which records are raw as the host does (normalize.RAW_RECORD). An
-- exclusion keeps only the values the normalizer gives back as they are (it drops "", "-" and
-- "none": a record holding those has no such field, and is not ruled out), asked through call
-- (pcall, or the worker's limited call for a reloaded normalizer).
local function raw_conditions(rule, normalize, keyed, call)
  if type(normalize) ~= "table" or normalize.RAW_RECORD == nil or normalize.is_cloudtrail ~= normalize.RAW_RECORD then
    return {}
  end
  local paths, on_demand = table_of(normalize, "RAW_PATHS"), table_of(normalize, "ON_DEMAND")
  local function path_of(field)
    local raw = paths[field]
    if type(raw) == "table" and type(raw.path) == "string" and raw.read ~= nil and on_demand[field] == raw.read then
      return raw.path, raw.read
    end
  end
  local out = {}
  for _, k in ipairs(keyed) do
    local path = path_of(k.field)
    if path then
      local values = {}
      for _, alt in ipairs(k.clause) do
        if type(alt.value) ~= "string" then values = nil break end
        values[#values + 1] = alt.value
      end
      if values then out[#out + 1] = { path = path, exclude = false, values = values } end
    end
  end
  for _, e in ipairs(exclusions(rule)) do
    local path, fn = path_of(e.field)
    if path then
      local values = {}
      for _, v in ipairs(e.values) do
        local ok, got = call(fn, record_with(path, v), {})
        if ok and type(v) == "string" and got == v then values[#values + 1] = v end
      end
      if #values > 0 then out[#out + 1] = { path = path, exclude = true, values = values } end
    end
  end
  return out
end

function M.prefilter(rule, normalize, call)
  if rule.sigma ~= nil then return sigma_prefilter(rule.sigma) end
  local verbatim, implied = table_of(normalize, "VERBATIM"), table_of(normalize, "IMPLIED")
  local seq = rule.eql ~= nil and rule.eql.sequence
  if seq then return sequence_prefilter(seq, verbatim, implied) end
  local out = {}
  for _, clause in ipairs(requirements(rule)) do
    local lits = literals(clause, verbatim, implied)
    if lits then out[#out + 1] = lits end
  end
  out.fields = raw_conditions(rule, normalize, keyed_clauses(rule, table_of(normalize, "ON_DEMAND")), call or pcall)
  return out
end


-- Does v (a field's value) hold one of the strings of set? An array: any of its strings.
local function holds(v, set)
  if type(v) == "string" then return set[v] == true end
  if type(v) ~= "table" then return false end
  for i = 1, #v do
    if holds(v[i], set) then return true end
  end
  return false
end

-- The strings of v (a field's value): itself, or an array's (nested arrays too).
local function strings_of(v, out)
  if type(v) == "string" then
    out[#out + 1] = v
  elseif type(v) == "table" then
    for i = 1, #v do strings_of(v[i], out) end
  end
  return out
end

function M.build(rules, cheap)
  local keyed, popular = {}, {}  -- per rule its clauses; per field and value the rules needing it
  for pos, rule in ipairs(rules) do
    keyed[pos] = keyed_clauses(rule, cheap)
    for _, k in ipairs(keyed[pos]) do
      local p = popular[k.field] or {}
      popular[k.field] = p
      for _, alt in ipairs(k.clause) do p[alt.value] = (p[alt.value] or 0) + 1 end
    end
  end
  -- Each rule is filed under the values of its two clauses fewest other rules share (their
  -- values' most popular first: event.action before event.provider), as pairs (CreateUser
  -- and "failure"); its other clauses are checked, one lookup each, before it runs.
  local sigs, maps, sig_at = {}, {}, {}  -- { f1, f2 } filed under; their maps: key -> { pos... }
  local checks, always = {}, {}          -- per rule { { field, set }... }; filed under nothing
  for pos = 1, #rules do
    local ranked = {}
    for _, k in ipairs(keyed[pos]) do
      local most = 0
      for _, alt in ipairs(k.clause) do most = math.max(most, popular[k.field][alt.value]) end
      ranked[#ranked + 1] = { k = k, most = most }
    end
    table.sort(ranked, function(a, b)
      if a.most ~= b.most then return a.most < b.most end
      return a.k.field < b.k.field
    end)
    checks[pos] = {}
    for _, e in ipairs(exclusions(rules[pos])) do  -- not x: "a": an event with x "a" is not a candidate
      if cheap == nil or cheap[e.field] then
        local set = {}
        for _, v in ipairs(e.values) do set[v] = true end
        checks[pos][#checks[pos] + 1] = { field = e.field, set = set, exclude = true }
      end
    end
    if #ranked == 0 then
      always[#always + 1] = pos
    else
      -- An action names its service: event.provider beside event.action tells nothing more,
      -- so another clause is preferred as the second of the pair.
      local a, second = ranked[1].k, 2
      for i = 2, #ranked do
        if not (a.field == "event.action" and ranked[i].k.field == "event.provider") then
          second = i
          break
        end
      end
      local b = ranked[second] and ranked[second].k
      for i = 2, #ranked do
        if i ~= second then
          local set = {}
          for _, alt in ipairs(ranked[i].k.clause) do set[alt.value] = true end
          checks[pos][#checks[pos] + 1] = { field = ranked[i].k.field, set = set, exclude = false }
        end
      end
      local name = a.field .. "\0" .. (b and b.field or "")
      local si = sig_at[name]
      if si == nil then
        sigs[#sigs + 1] = { a.field, b and b.field }
        si = #sigs
        sig_at[name] = si
        maps[si] = {}
      end
      local map = maps[si]  -- first value -> second value ("" without one) -> rules
      for _, x in ipairs(a.clause) do
        local inner = map[x.value]
        if inner == nil then
          inner = {}
          map[x.value] = inner
        end
        for _, y in ipairs(b and b.clause or { { value = "" } }) do
          local list = inner[y.value]
          if list == nil then
            list = {}
            inner[y.value] = list
          end
          if list[#list] ~= pos then list[#list + 1] = pos end
        end
      end
    end
  end
  local nsigs = #sigs

  local out, seen, stamp, n = {}, {}, 0, 0
  local get

  -- A field's value: get's, or for sigma:NAME the lower-cased text of the raw record's NAME.
  local raw_name = {}
  for _, sig in ipairs(sigs) do
    for k = 1, 2 do
      local f = sig[k]
      if f and f:sub(1, #SIGMA_FIELD) == SIGMA_FIELD then raw_name[f] = f:sub(#SIGMA_FIELD + 1) end
    end
  end
  for _, c in ipairs(checks) do
    for _, x in ipairs(c) do
      if x.field:sub(1, #SIGMA_FIELD) == SIGMA_FIELD then raw_name[x.field] = x.field:sub(#SIGMA_FIELD + 1) end
    end
  end
  local has_raw = next(raw_name) ~= nil
  local fetch
  local raw_at, raw_val = {}, {}  -- per field: the stamp of the event its value is of; the value
  local function raw_fetch(field)
    local name = raw_name[field]
    if name == nil then return get(field) end
    if raw_at[field] == stamp then return raw_val[field] end
    local vs = sigma.index_values(get(event.RAW), name)
    if vs and #vs == 1 then vs = vs[1] end
    raw_at[field], raw_val[field] = stamp, vs
    return vs
  end

  local function consider(list)
    if list == nil then return end
    for i = 1, #list do
      local pos = list[i]
      if seen[pos] ~= stamp then
        seen[pos] = stamp
        local c, ok = checks[pos], true
        for k = 1, #c do
          if holds(fetch(c[k].field), c[k].set) == c[k].exclude then ok = false break end
        end
        if ok then
          n = n + 1
          out[n] = pos
        end
      end
    end
  end

  local ix = { sigs = sigs }
  local NONE = { "" }

  -- Reuses one table: valid until the next call.
  function ix.candidates(getter)
    get = getter
    fetch = has_raw and raw_fetch or getter
    stamp = stamp + 1
    n = 0
    for i = 1, #always do
      n = n + 1
      out[n] = always[i]
    end
    local lists = n > 0 and 1 or 0
    for i = 1, nsigs do
      local sig, map = sigs[i], maps[i]
      local before = n
      local v1 = fetch(sig[1])
      if type(v1) == "string" then
        local inner = map[v1]
        if inner ~= nil then
          if sig[2] == nil then
            consider(inner[""])
          else
            local v2 = fetch(sig[2])
            if type(v2) == "string" then
              consider(inner[v2])
            elseif v2 ~= nil then  -- an array: each of its strings
              for _, y in ipairs(strings_of(v2, {})) do consider(inner[y]) end
            end
          end
        end
      elseif v1 ~= nil then  -- arrays: every pair of their strings
        local v2 = sig[2] and fetch(sig[2])
        if sig[2] == nil or v2 ~= nil then
          local ys = sig[2] and strings_of(v2, {}) or NONE
          for _, x in ipairs(strings_of(v1, {})) do
            local inner = map[x]
            if inner ~= nil then
              for _, y in ipairs(ys) do consider(inner[y]) end
            end
          end
        end
      end
      if n > before then lists = lists + 1 end
    end
    for k = n + 1, #out do out[k] = nil end
    if lists > 1 then sort(out) end
    for k = 1, n do out[k] = rules[out[k]] end
    get, fetch = nil, nil
    return out
  end

  return ix
end

return M
