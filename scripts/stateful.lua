-- stateful.lua: Elastic's new_terms and threshold rule types, the worker's half
-- (DESIGN.md, "Limits, suppression and state"; host/state.h has the other).
--
-- A worker evaluates the rule's query on one event, as for any rule; when it
-- matches, it does not alert but sends the host candidates (proto.h,
-- TH_ITEM_STATE): the event's key (its new-terms combination, its threshold
-- group), its time and the alert it would make. The host keeps the state of
-- every worker's candidates in one place and decides.
--
--   stateful.params(mod) -> state | nil, key, message
--       a module's new_terms or threshold parameters checked; state =
--       { kind, type (the host's TH_STATE_*), fields, window_s, value,
--       cardinality = { field, value } | nil, fingerprint }
--   stateful.keys(rule, ev, src) -> { { key, distinct, values | terms, uuid } }
--       the candidates of an event that matched (none when a field is missing); ev is its
--       document or a getter of its fields (event.lua's lazy view). A new_terms candidate's
--       uuid comes with its alert (candidates): the host's store does not use it.
--   stateful.candidates(rule, ev, src, now, fresh, whole, full) -> the same, each with its alert:
--       line, at, len (threshold: where kibana.alert.threshold_result goes); a new_terms
--       candidate this worker sent with its alert lately has none (line nil: see KNOWN),
--       unless full (the host found one such news to its state: it asks for the record whole).
--       With ev a getter, whole() -> document, fresh builds the document, only for an event
--       that needs its alert: a new_terms combination seen lately costs a few field reads.
--
-- new_terms: an event alerts when the combination of its new_terms_fields
-- values was not seen in the history window (history_window_start: now-7d)
-- before its time; an array field gives one combination per element (at most
-- MAX_COMBOS an event), each its own alert with kibana.alert.new_terms.
-- threshold: an event counts for its group (threshold.field values; none: one
-- group) within the rule's `from` (now-6m: 6 minutes); the group's alert is
-- Elastic's synthetic one: the group-by fields, the rule, threshold_result.
--
-- An EQL sequence (stateful.sequence): an event sends one candidate per step it matches, the
-- highest first (the host's store keeps the partial sequences: host/state.h), keyed by its join
-- values; each with the event's building block, and for the last step the sequence's shell
-- alert (alert.sequence_block, alert.sequence_shell). An event of `until` sends one too.
--
--   stateful.sequence(mod, q) -> state | nil, message
--       q an EQL sequence (eql.compile); state = { kind = "sequence", type, steps, ["until"],
--       nsteps, span_ms, fingerprint }
--
-- The fingerprint hashes what decides (type, query, parameters): a rule
-- reloaded with the same keeps its state; with another, it starts afresh.

local alert = require "alert"
local event = require "event"

local M = {}

M.TYPES = { new_terms = 1, threshold = 2 }
M.SEQUENCE = 3  -- host/state.h, TH_STATE_SEQUENCE; an EQL rule's query, not a rule type
M.SPAN_MAX_MS = 0xffffffff  -- maxspan goes as a u32 of milliseconds (proto.h): 49 days
M.MAX_COMBOS = 32
M.VALUE_MAX = 10000  -- host/state.h, TH_STATE_VALUE_MAX
M.DEFAULT_FROM = "now-6m"

local UNIT = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

-- Seconds back of date math "now-7d" (s, m, h, d, w); nil if it is not that.
function M.lookback(text)
  if type(text) ~= "string" then return nil end
  local n, unit = text:match("^now%-(%d+)([smhdw])$")
  n = tonumber(n)
  if not n or n < 1 or n > 3660 * 86400 // UNIT[unit] then return nil end
  return n * UNIT[unit]
end

local function is_field_list(v, min, max)
  if type(v) ~= "table" or #v < min or #v > max then return false end
  for k, f in pairs(v) do
    if math.type(k) ~= "integer" or type(f) ~= "string" or f == "" then return false end
  end
  return true
end

-- 64-bit FNV-1a of a string, as a Lua integer (its arithmetic wraps).
local function fnv(s)
  local h = -3750763034362895579  -- 0xcbf29ce484222325
  for i = 1, #s do
    h = (h ~ s:byte(i)) * 1099511628211
  end
  return h
end

local function new_terms(mod)
  local nt = mod.new_terms
  if type(nt) ~= "table" then
    return nil, "type", "a new_terms rule needs new_terms = { field = \"new_terms_fields\", value = { ... }, " ..
      "history_window_start = { { field = \"history_window_start\", value = \"now-7d\" } } }"
  end
  if nt.field ~= nil and nt.field ~= "new_terms_fields" then
    return nil, "new_terms", "new_terms.field must be \"new_terms_fields\""
  end
  if not is_field_list(nt.value, 1, 3) then
    return nil, "new_terms", "new_terms.value must list 1 to 3 field names (new_terms_fields)"
  end
  local hw = nt.history_window_start
  local start = type(hw) == "table" and (hw.value or (type(hw[1]) == "table" and hw[1].value)) or hw
  local window = M.lookback(start)
  if not window then
    return nil, "new_terms", string.format("new_terms.history_window_start must be date math like now-7d, not %s",
      type(start) == "string" and ("'" .. start .. "'") or tostring(start))
  end
  return { kind = "new_terms", type = M.TYPES.new_terms, fields = nt.value, window_s = window }
end

local function threshold(mod)
  local th = mod.threshold
  if type(th) ~= "table" then
    return nil, "type", "a threshold rule needs threshold = { field = { ... }, value = N }"
  end
  local fields = th.field
  if fields == nil or fields == "" then fields = {} end
  if type(fields) == "string" then fields = { fields } end
  if not is_field_list(fields, 0, 3) then
    return nil, "threshold", "threshold.field must be a field name or a list of at most 3"
  end
  local value = th.value
  if math.type(value) ~= "integer" or value < 1 or value > M.VALUE_MAX then
    return nil, "threshold", "threshold.value must be a whole number from 1 to " .. M.VALUE_MAX
  end
  local card = th.cardinality
  if card ~= nil then
    if type(card) == "table" and card.field ~= nil then card = { card } end
    if type(card) ~= "table" or #card > 1 then
      return nil, "threshold", "threshold.cardinality must be { { field = \"...\", value = N } }"
    end
    card = card[1]
    if card ~= nil then
      if type(card) ~= "table" or type(card.field) ~= "string" or card.field == "" or
          math.type(card.value) ~= "integer" or card.value < 1 or card.value > M.VALUE_MAX then
        return nil, "threshold", "threshold.cardinality must be { { field = \"...\", value = N } }, N from 1 to " ..
          M.VALUE_MAX
      end
    end
  end
  local from = mod.from or M.DEFAULT_FROM
  local window = M.lookback(from)
  if not window then return nil, "from", string.format("from must be date math like now-6m, not '%s'", from) end
  return { kind = "threshold", type = M.TYPES.threshold, fields = fields, value = value, window_s = window,
    cardinality = card and { field = card.field, value = card.value } or nil }
end

-- What decides, as one text: its hash is the rule's state fingerprint.
local function decides(mod, st)
  local parts = { st.kind, tostring(mod.language), tostring(mod.query), table.concat(st.fields, ","),
    tostring(st.window_s), tostring(st.value) }
  if st.cardinality then parts[#parts + 1] = st.cardinality.field .. "=" .. st.cardinality.value end
  return table.concat(parts, "\0")
end

function M.params(mod)
  local st, key, msg
  if mod.type == "new_terms" then
    st, key, msg = new_terms(mod)
  elseif mod.type == "threshold" then
    st, key, msg = threshold(mod)
  else
    return nil
  end
  if not st then return nil, key, msg end
  st.fingerprint = fnv(decides(mod, st))
  return st
end

function M.sequence(mod, q)
  local sq = q.sequence
  for i, st in ipairs(sq.steps) do
    if st.missing then
      return nil, string.format("step %d of the sequence is a missing event ![ ... ], which trailhound does not " ..
        "run yet (it needs a timer in event time); the other sequences run", i)
    end
  end
  local span = sq.maxspan and math.ceil(sq.maxspan * 1000) or 0
  if span > M.SPAN_MAX_MS then return nil, "maxspan must be at most 49d here" end
  local parts = { "sequence", tostring(mod.language), tostring(mod.query), tostring(mod.event_category_override) }
  return { kind = "sequence", type = M.SEQUENCE, steps = sq.steps, ["until"] = sq["until"], nsteps = #sq.steps,
    span_ms = span, fields = {}, fingerprint = fnv(table.concat(parts, "\0")) }
end

-- The values of a field as a list of scalars: nil when missing or empty.
local function values(get, field)
  local v = get(field)
  if v == nil then return nil end
  if type(v) ~= "table" then return { v } end
  local out = {}
  for _, x in ipairs(v) do
    if type(x) ~= "table" then out[#out + 1] = x end
  end
  return #out > 0 and out or nil
end

-- Every combination of one value per field, at most MAX_COMBOS.
local function combinations(get, fields)
  local lists = {}
  for i, f in ipairs(fields) do
    lists[i] = values(get, f)
    if not lists[i] then return {} end
  end
  local out = { {} }
  for i = 1, #fields do
    local next_out = {}
    for _, c in ipairs(out) do
      for _, v in ipairs(lists[i]) do
        if #next_out >= M.MAX_COMBOS then break end
        local n = { table.unpack(c) }
        n[i] = v
        next_out[#next_out + 1] = n
      end
    end
    out = next_out
  end
  return out
end

-- A sequence's candidates of an event: a step it matches (and until), the highest first.
local function sequence_keys(rule, get, src)
  local st = rule.state
  local out = {}
  local function add(step, def)
    if not def.match(get) then return end
    local vals = def.keys(get)
    if not vals then return end
    out[#out + 1] = { key = alert.encode(vals), step = step, def = def, values = vals,
      uuid = alert.id_of(rule.id, get, src) }
  end
  if st["until"] then add(st.nsteps, st["until"]) end
  for k = st.nsteps, 1, -1 do add(k - 1, st.steps[k]) end
  return out
end

-- A getter of ev's fields: ev itself, or its document's.
local function getter_of(ev)
  if type(ev) == "function" then return ev end
  return function(name) return event.get(ev, name) end
end

function M.keys(rule, ev, src)
  local st = rule.state
  local get = getter_of(ev)
  if st.kind == "sequence" then return sequence_keys(rule, get, src) end
  local out = {}
  local base = st.kind ~= "new_terms" and alert.id_of(rule.id, get, src) or nil
  for _, combo in ipairs(combinations(get, st.fields)) do
    if st.kind == "new_terms" then
      out[#out + 1] = { key = alert.encode(combo), values = combo }
    else
      local terms = {}
      for i, f in ipairs(st.fields) do terms[i] = { field = f, value = combo[i] } end
      local distinct = ""
      if st.cardinality then
        local v = get(st.cardinality.field)
        if v ~= nil then distinct = alert.encode(v) end
      end
      -- terms = {} encodes as {}: Elastic writes an empty list
      out[#out + 1] = { key = #terms > 0 and alert.encode(terms) or "[]", terms = terms, distinct = distinct,
        uuid = base }
    end
  end
  return out
end

-- Milliseconds since the epoch of an ISO 8601 time in UTC ("2024-07-31T12:36:52.000Z"), or nil.
local function ms(iso)
  if type(iso) ~= "string" then return nil end
  local y, mo, d, h, mi, se = iso:match("^(%d%d%d%d)-(%d%d)-(%d%d)[T ](%d%d):(%d%d):(%d%d)")
  if not y or not iso:find("Z$") then return nil end
  y, mo = tonumber(y), tonumber(mo)
  if mo <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local doy = (153 * (mo + (mo > 2 and -3 or 9)) + 2) // 5 + tonumber(d) - 1
  local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
  return ((days * 24 + tonumber(h)) * 60 + tonumber(mi)) * 60000 + tonumber(se) * 1000
end

-- KNOWN: a new_terms rule's combinations this worker sent with their alert, and the event time
-- it sent them at (rule.known, at most MAX_KNOWN, then started afresh). Within half the history
-- window after that, the host knows the combination (it saw it then, or decided on it first),
-- so the event goes without its alert, which building costs as much as a query rule's alert:
-- the host only takes its time. When the host's state took it as news after all (evicted at
-- its cap, or let go as the clock passed its window: events out of time order, or another
-- worker's events far ahead), the host asks for the record again, whole (full): the alerts are
-- those of sending every candidate whole, whatever the workers and the batches.
M.MAX_KNOWN = 4096

local function known(rule, key, t, full)
  if not t then return false end
  local k = rule.known
  if not k then
    k = { n = 0, at = {} }
    rule.known = k
  end
  local sent = k.at[key]
  if sent and not full and t >= sent and t < sent + rule.state.window_s * 500 then return true end
  if not sent then
    if k.n >= M.MAX_KNOWN then
      k.n, k.at = 0, {}
    end
    k.n = k.n + 1
  end
  k.at[key] = t
  return false
end

function M.candidates(rule, ev, src, now, fresh, whole, full)
  local get = getter_of(ev)
  local list = M.keys(rule, get, src)
  local doc = type(ev) == "table" and ev or nil
  local function document()
    if doc == nil then doc, fresh = whole() end
    return doc
  end
  if rule.state.kind == "sequence" then
    local line, anc
    for _, c in ipairs(list) do
      if c.step < rule.state.nsteps then
        if not line then line, anc = alert.sequence_block(rule, document(), src, now) end
        c.line, c.ancestor, c.at, c.len = line, anc, 0, 0
        if c.step == rule.state.nsteps - 1 then
          c.shell = alert.sequence_shell(rule, c.def.by, c.values, document(), src, now)
          if not c.shell then c.line = nil end
        end
      else
        c.line, c.ancestor, c.at, c.len = "", "", 0, 0  -- until: its key only
      end
    end
    return list
  end
  local t = rule.state.kind == "new_terms" and ms(get("@timestamp")) or nil
  for _, c in ipairs(list) do
    if rule.state.kind == "new_terms" and known(rule, c.key, t, full) then
      c.light, c.at, c.len = true, 0, 0  -- no line: the host takes its time only
    elseif rule.state.kind == "new_terms" then
      local d = document()
      local sok, sup, group = pcall(alert.suppression, rule, d)
      if not sok then sup, group = nil, nil end
      c.line, c.uuid, c.at, c.len = alert.line(rule, d, src, now, fresh, sup,
        { new_terms = c.values, tag = "new_terms=" .. c.key })
      c.group = group
    else
      c.line, c.uuid, c.at, c.len = alert.threshold_line(rule, c.terms, document(), src, now)
    end
  end
  return list
end

return M
