-- alert.lua: the alert document (DESIGN.md, "Alerts").
--
-- An alert is the source event's ECS fields, nested, with event.kind
-- "signal", the original event.* under kibana.alert.original_event, the rule
-- and verdict under kibana.alert, and where the event came from under
-- trailhound.source, in the shape of Elastic's alert documents so it can be
-- shipped to Elasticsearch or read with jq.

local cjson = require("cjson").new()
local event = require "event"
local uuid = require "uuid"

local M = {}

cjson.encode_sparse_array(true)  -- never fail on a table with holes

-- Namespace of alert ids (UUID v5); fixed forever, or every id changes.
M.NAMESPACE = "5c3f3b0e-8f1a-4a57-9d2c-7a1e60b9c2d4"

local null = cjson.null

local function copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do
    if x ~= null then c[k] = copy(x) end
  end
  return c
end

-- Merge src into dst, objects into objects.
local function merge(dst, k, v)
  if type(v) == "table" and type(dst[k]) == "table" then
    for kk, vv in pairs(v) do merge(dst[k], kk, vv) end
  else
    dst[k] = v
  end
end

-- Copy of a document with its top-level dotted keys ("event.action",
-- "aws.cloudtrail") expanded into nested objects and JSON nulls dropped:
-- alerts hold nested objects. Keys inside values are data (request
-- parameters, tags) and are kept as they are.
local function nest(src, dst)
  for k, v in pairs(src) do
    if v ~= null then
      v = copy(v)
      local parts = {}
      if type(k) == "string" and k ~= "@timestamp" and k:find(".", 1, true) then
        for p in k:gmatch("[^.]+") do parts[#parts + 1] = p end
      end
      if #parts < 2 then
        merge(dst, k, v)
      else
        local t = dst
        for i = 1, #parts - 1 do
          if type(t[parts[i]]) ~= "table" then t[parts[i]] = {} end
          t = t[parts[i]]
        end
        merge(t, parts[#parts], v)
      end
    end
  end
  return dst
end
M.nest = nest

-- A shallow copy of a document the normalizer built for this event: its objects are its own
-- and hold no JSON null, so the alert may share them (only event is changed, and copied). nil
-- when it has a dotted or null member at the top (a normalizer of one's own): then nest.
local function top(doc)
  local a = {}
  for k, v in pairs(doc) do
    if v == null or (type(k) == "string" and k ~= "@timestamp" and k:find(".", 1, true)) then return nil end
    a[k] = v
  end
  if type(a.event) == "table" then a.event = copy(a.event) end
  return a
end

-- The id of an alert: the rule and the event's identity (CloudTrail's
-- eventID, else where the event was read).
local function identity(eid, src)
  if eid ~= nil then return "event.id=" .. tostring(eid) end
  return string.format("source=%s@%d#%d", src.path, src.offset, src.index or 0)
end

-- tag: what tells apart the alerts one event makes for one rule (a new_terms
-- rule's combinations), or nil.
function M.id(rule_id, doc, src, tag)
  local eid = event.get(doc, "event.id")
  return uuid.v5(M.NAMESPACE, rule_id .. "|" .. identity(eid, src) .. (tag and ("|" .. tag) or ""))
end

-- The same from an event's getter (event.lua): no document needed.
function M.id_of(rule_id, get, src, tag)
  return uuid.v5(M.NAMESPACE, rule_id .. "|" .. identity(get("event.id"), src) .. (tag and ("|" .. tag) or ""))
end

local DENIED = { "AccessDenied", "Unauthorized", "Forbidden", "NotAuthorized" }

-- What happened, for the reason: the same in every alert of an event.
local function about(doc)
  local function g(name)  -- a value to write as it is: an array or object is left out
    local v = event.get(doc, name)
    if type(v) == "table" then return nil end
    return v
  end
  local parts = {}
  local provider, action = g("event.provider"), g("event.action")
  parts[#parts + 1] = provider and (tostring(provider) .. " ") or ""
  parts[#parts + 1] = tostring(action or "event")
  local who = g("aws.cloudtrail.user_identity.arn") or g("user.name") or g("user.id")
  if who then parts[#parts + 1] = " by " .. tostring(who) end
  local from = g("source.address") or g("source.ip")
  if from then parts[#parts + 1] = " from " .. tostring(from) end
  local code = g("aws.cloudtrail.error_code")
  if code then
    local verb = "failed"
    for _, d in ipairs(DENIED) do
      if tostring(code):find(d, 1, true) then verb = "denied" break end
    end
    parts[#parts + 1] = string.format(" %s (%s)", verb, tostring(code))
  elseif g("event.outcome") then
    parts[#parts + 1] = " (" .. tostring(g("event.outcome")) .. ")"
  end
  local account, region = g("cloud.account.id"), g("cloud.region")
  if account then parts[#parts + 1] = " in account " .. tostring(account) end
  if region then parts[#parts + 1] = (account and " " or " in ") .. "(" .. tostring(region) .. ")" end
  return table.concat(parts)
end

local function verdict(meta)
  return string.format(" created %s alert %s.", tostring(meta.severity), tostring(meta.name))
end

-- A sentence a person can read in a terminal.
function M.reason(meta, doc)
  return about(doc) .. verdict(meta)
end

-- Elastic's names of the rule types, for kibana.alert.rule.
local CATEGORY = {
  query = { "Custom Query Rule", "siem.queryRule" },
  new_terms = { "New Terms Rule", "siem.newTermsRule" },
  threshold = { "Threshold Rule", "siem.thresholdRule" },
  eql = { "Event Correlation Rule", "siem.eqlRule" },
}

-- The kibana.alert.rule object of a rule: the same in each of its alerts.
local function rule_block(meta)
  local kind = meta.type or (meta.language == "eql" and "eql") or "query"   -- as Elastic names it
  local cat = CATEGORY[kind] or CATEGORY.query
  return {
    rule_id = meta.rule_id,
    name = meta.name,
    type = kind,
    version = meta.version,
    tags = copy(meta.tags),
    threat = copy(meta.threat),
    description = meta.description,
    severity = meta.severity,
    risk_score = meta.risk_score,
    references = copy(meta.references),
    from = meta.from,
    author = copy(meta.author),
    license = meta.license,
    category = cat[1],
    rule_type_id = cat[2],
    producer = "siem",
  }
end

-- Build the alert table. rule: a loaded rule (rule.meta is the module);
-- doc: the event's ECS document; src: { path, offset, index }; now: ISO time.
-- rule_as: what kibana.alert.rule holds instead of the rule's object (M.line). fresh: doc was
-- built by the normalizer for this event alone (not an ECS document as read), so it is not
-- copied whole. suppression: what kibana.alert.suppression holds (M.suppression), if anything.
-- extra: { new_terms = values, tag = M.id's } for a new_terms rule's alert, or nil.
function M.build(rule, doc, src, now, rule_as, fresh, suppression, extra)
  local meta = rule.meta
  local a = fresh and top(doc) or nest(doc, {})
  local ev = type(a.event) == "table" and a.event or {}
  a.event = ev
  local original = copy(ev)
  ev.kind = "signal"
  local id = M.id(meta.rule_id, doc, src, extra and extra.tag)
  local original_time = event.get(doc, "@timestamp")
  a["@timestamp"] = now
  a.kibana = {
    alert = {
      uuid = id,
      status = "active",
      workflow_status = "open",
      depth = 1,
      reason = M.reason(meta, doc),
      severity = meta.severity,
      risk_score = meta.risk_score,
      original_time = original_time,
      original_event = original,
      start = now,
      ancestors = { { id = event.get(doc, "event.id"), type = "event", depth = 0 } },
      rule = rule_as or rule_block(meta),
      suppression = suppression,
      new_terms = extra and extra.new_terms,
    },
  }
  a.trailhound = { source = { path = src.path, offset = src.offset, index = src.index } }
  return a
end

-- JSON text of an alert, one line. In the binary (thsys.encode, host/worker/jsontext.c): every
-- object's keys in byte order, so the same alert is the same bytes in every run, "/" as it is,
-- and a number past a double (JSON's 1e999) written 1e999 rather than failing the alert.
-- Under plain lua5.4 (the specs), lua-cjson, its "\/" written "/" again (a "\/" in its output
-- is always an escaped slash) so ARNs read as written.
local has_sys, sys = pcall(require, "thsys")
local c_encode = has_sys and type(sys) == "table" and sys.encode
function M.encode(a)
  if c_encode then return assert(c_encode(a)) end
  return (cjson.encode(a):gsub("\\/", "/"))
end

-- kibana.alert.suppression of a rule's first alert for its group, as Elastic
-- writes it (docs_count 0: the alerts suppressed into it are counted by the
-- host, which writes the group's alert again with the count), and the group's
-- key: the terms' JSON. nil when the rule does not suppress, or when a field
-- is missing and missing_fields_strategy is "doNotSuppress".
function M.suppression(rule, doc)
  local s = rule.limits and rule.limits.suppress
  if not s then return nil end
  local terms = {}
  for i, field in ipairs(s.fields) do
    local v = event.get(doc, field)
    if v == nil then
      if s.missing == "doNotSuppress" then return nil end
      v = null
    elseif type(v) ~= "table" then
      v = { v }
    end
    terms[i] = { field = field, value = v }
  end
  local t = event.get(doc, "@timestamp")
  t = type(t) == "string" and t or nil
  return { docs_count = 0, start = t, ["end"] = t, terms = terms }, M.encode(terms)
end

-- The alert's JSON text and its uuid: M.encode(M.build(...)), with the rule's object (half
-- the text: description, tags, threat) encoded once per rule and put in the
-- place of a marker. An event that holds the marker's text itself is encoded
-- the plain way. With suppression (M.suppression), also where its object is in
-- the text: its first byte (from 0) and its length, so the host can write the
-- count into it (0, 0 when it cannot be found once: the alert is not suppressed).
local MARK = "\0trailhound: kibana.alert.rule\0"
local MARK_JSON = M.encode(MARK)
local SUPPRESSION = "\0trailhound: kibana.alert.suppression\0"
local SUPPRESSION_JSON = M.encode(SUPPRESSION)
local encoded_rules = setmetatable({}, { __mode = "k" })

local function place(text, mark, with)
  local at, last = text:find(mark, 1, true)
  if at == nil or text:find(mark, last + 1, true) then return nil end
  return text:sub(1, at - 1) .. with .. text:sub(last + 1), at - 1
end

-- The fast way, in a worker (thsys.raw): the alert encoded from the document itself (only its
-- event object is copied, as M.build does), with the rule's object and the suppression object
-- spliced in as raw JSON whose place the encoder reports: no marker to search for. What the
-- alerts of one event share (its members, event objects, source, the reason's first half) is
-- kept for the next rule that alerts on it, its members encoded once from the second alert on.
-- Byte for byte the marker way's text whenever that text holds no marker: a text holding
-- "\u0000trailhound: kibana.alert." (an event or a rule that carries a marker's text, where
-- the marker way may give up the splice or the suppression) is built the marker way instead.
local c_raw = has_sys and type(sys) == "table" and sys.raw
local NEEDLE = "\\u0000trailhound: kibana.alert."
local OVERLAID = { ["@timestamp"] = true, event = true, kibana = true, trailhound = true }
local raw_rules = setmetatable({}, { __mode = "k" })
local last = {}  -- the event of the last alert built the fast way
local find = string.find

local function has_null(v)
  for _, x in pairs(v) do
    if x == null or (type(x) == "table" and has_null(x)) then return true end
  end
  return false
end

-- What the alerts of the event (doc, src) share, or nil when doc is not one the normalizer built
-- for this event alone, as top() requires (then the marker way: nest).
local function shared(doc, src)
  if last.doc == doc and last.path == src.path and last.offset == src.offset and last.index == src.index then
    return last
  end
  for k, v in pairs(doc) do
    if v == null or type(k) ~= "string" or (k ~= "@timestamp" and find(k, ".", 1, true)) then return nil end
  end
  -- M.build's copies of the event object drop JSON nulls; without any, the object itself encodes
  -- as its copy, and a shallow copy takes event.kind.
  local e, ev, original = doc.event, {}
  if type(e) == "table" and not has_null(e) then
    for k, v in pairs(e) do ev[k] = v end
    original = e
  else
    ev = type(e) == "table" and copy(e) or ev
    original = copy(ev)
  end
  ev.kind = "signal"
  last = { doc = doc, path = src.path, offset = src.offset, index = src.index, alerts = 0,
    event = ev, original = original, eid = event.get(doc, "event.id"), time = event.get(doc, "@timestamp"),
    about = about(doc), identity = identity(event.get(doc, "event.id"), src),
    trailhound = { source = { path = src.path, offset = src.offset, index = src.index } } }
  return last
end

-- The event's members as raw JSON, and its event, original event and source: from the second
-- alert of an event on, its alerts encode only what is theirs. nil if one cannot be encoded.
local function encode_shared(s)
  local members = {}
  for k, v in pairs(s.doc) do
    if not OVERLAID[k] then
      local text = c_encode(v)
      if not text then return nil end
      members[k] = c_raw(text)
    end
  end
  local ev, original, th = c_encode(s.event), c_encode(s.original), c_encode(s.trailhound)
  if not (ev and original and th) then return nil end
  s.members, s.event, s.original, s.trailhound = members, c_raw(ev), c_raw(original), c_raw(th)
  return true
end

local function fast_line(rule, block, doc, src, now, suppression, extra)
  local s = shared(doc, src)
  if not s then return nil end
  s.alerts = s.alerts + 1
  local a = {}
  if s.alerts == 1 then
    for k, v in pairs(doc) do a[k] = v end  -- the encoder only reads them
  else
    if not s.members and not encode_shared(s) then return nil end
    for k, v in pairs(s.members) do a[k] = v end
  end
  local meta = rule.meta
  local rule_raw = raw_rules[rule]
  if rule_raw == nil then
    rule_raw = c_raw(block)
    raw_rules[rule] = rule_raw
  end
  local sup
  if suppression then
    local stext = c_encode(suppression)
    if not stext then return nil end
    sup = c_raw(stext)
  end
  local tag = extra and extra.tag
  local id = uuid.v5(M.NAMESPACE, meta.rule_id .. "|" .. s.identity .. (tag and ("|" .. tag) or ""))  -- M.id
  a["@timestamp"] = now
  a.event = s.event
  a.trailhound = s.trailhound
  a.kibana = {
    alert = {
      uuid = id,
      status = "active",
      workflow_status = "open",
      depth = 1,
      reason = s.about .. verdict(meta),
      severity = meta.severity,
      risk_score = meta.risk_score,
      original_time = s.time,
      original_event = s.original,
      start = now,
      ancestors = { { id = s.eid, type = "event", depth = 0 } },
      rule = rule_raw,
      suppression = sup,
      new_terms = extra and extra.new_terms,
    },
  }
  local text, at, len = c_encode(a, sup)
  if not text or text:find(NEEDLE, 1, true) then return nil end
  if sup then return text, id, at, len end
  return text, id, 0, 0
end

function M.line(rule, doc, src, now, fresh, suppression, extra)
  local block = encoded_rules[rule]
  if block == nil then
    block = M.encode(rule_block(rule.meta))
    encoded_rules[rule] = block
  end
  if fresh and c_raw then
    local text, id, at, len = fast_line(rule, block, doc, src, now, suppression, extra)
    if text then return text, id, at, len end
  end
  local a = M.build(rule, doc, src, now, MARK, fresh, suppression and SUPPRESSION, extra)
  local id = a.kibana.alert.uuid
  local text = place(M.encode(a), MARK_JSON, block)
  if text and suppression then
    local stext = M.encode(suppression)
    local at
    text, at = place(text, SUPPRESSION_JSON, stext)
    if text then return text, id, at, #stext end
  end
  if text then return text, id, 0, 0 end
  return M.encode(M.build(rule, doc, src, now, nil, false, suppression, extra)), id, 0, 0
end

-- A threshold rule's alert (stateful.lua): Elastic's synthetic document, not the event's: the
-- group-by fields (terms: { { field, value } }), the rule, and kibana.alert.threshold_result,
-- which the host writes (it alone knows the count) where the marker is: the text, the uuid
-- (of the event that reached the threshold), and the marker's first byte (from 0) and length.
local THRESHOLD = "\0trailhound: kibana.alert.threshold_result\0"
local THRESHOLD_JSON = M.encode(THRESHOLD)

function M.threshold_line(rule, terms, doc, src, now)
  local meta = rule.meta
  local block = encoded_rules[rule]
  if block == nil then
    block = M.encode(rule_block(meta))
    encoded_rules[rule] = block
  end
  local fields, said = {}, {}
  for _, t in ipairs(terms) do
    fields[t.field] = t.value
    said[#said + 1] = t.field .. " " .. tostring(t.value)
  end
  local a = nest(fields, {})
  local id = M.id(meta.rule_id, doc, src)
  a["@timestamp"] = now
  a.event = { kind = "signal" }
  a.kibana = {
    alert = {
      uuid = id,
      status = "active",
      workflow_status = "open",
      depth = 1,
      reason = (#said > 0 and ("threshold reached by " .. table.concat(said, ", ")) or "threshold reached")
        .. verdict(meta),
      severity = meta.severity,
      risk_score = meta.risk_score,
      original_time = event.get(doc, "@timestamp"),
      start = now,
      rule = MARK,
      threshold_result = THRESHOLD,
    },
  }
  a.trailhound = { source = { path = src.path, offset = src.offset, index = src.index } }
  local text = place(M.encode(a), MARK_JSON, block)
  if text then
    local at, stop = text:find(THRESHOLD_JSON, 1, true)
    if at and not text:find(THRESHOLD_JSON, stop + 1, true) then return text, id, at - 1, #THRESHOLD_JSON end
  end
  return nil, id, 0, 0  -- a group value holding a marker's text: no alert can be made of it
end

-- An EQL sequence's alerts (stateful.lua), as Elastic writes them: the building block of an
-- event (its alert, with kibana.alert.building_block_type "default" and kibana.alert.group), and
-- the shell alert of the sequence (the join keys, the rule, kibana.alert.group.id, the events'
-- ancestors). What only the host knows, once a sequence completes (the ids, the group, the
-- events), it writes where markers are (host/seqalert.h): JSON strings holding a NUL, each once
-- in its text (an event holding a marker's text makes no candidate: nil).
local SEQ = {}
for _, k in ipairs({ "uuid", "group", "ancestors", "original_time" }) do
  SEQ[k] = "\0trailhound: kibana.alert." .. k .. "\0"
end

local function once(text, marks)
  if not text then return nil end
  for _, m in ipairs(marks) do
    local json = M.encode(SEQ[m])
    local at, stop = text:find(json, 1, true)
    if not at or text:find(json, stop + 1, true) then return nil end
  end
  return text
end

-- The building block of the event (doc, src), and its ancestor's JSON: text, ancestor.
function M.sequence_block(rule, doc, src, now)
  local block = encoded_rules[rule]
  if block == nil then
    block = M.encode(rule_block(rule.meta))
    encoded_rules[rule] = block
  end
  local a = M.build(rule, doc, src, now, MARK, false)
  local k = a.kibana.alert
  k.uuid, k.group, k.building_block_type = SEQ.uuid, SEQ.group, "default"
  local text = once(place(M.encode(a), MARK_JSON, block), { "uuid", "group" })
  return text, M.encode(k.ancestors[1])
end

-- The shell alert of a sequence whose last event is doc (read at src: trailhound.source says
-- where the sequence completed): fields, the join keys' names, and values, theirs (shared by
-- every event of the sequence). The text, or nil.
function M.sequence_shell(rule, fields, values, doc, src, now)
  local meta = rule.meta
  local block = encoded_rules[rule]
  if block == nil then
    block = M.encode(rule_block(meta))
    encoded_rules[rule] = block
  end
  local keys, said = {}, {}
  for i, f in ipairs(fields) do
    if values[i] ~= false then
      keys[f] = values[i]
      said[#said + 1] = f .. " " .. tostring(values[i])
    end
  end
  local a = nest(keys, {})
  a["@timestamp"] = now
  a.event = { kind = "signal" }
  a.kibana = {
    alert = {
      uuid = SEQ.uuid,
      group = SEQ.group,
      ancestors = SEQ.ancestors,
      original_time = SEQ.original_time,
      status = "active",
      workflow_status = "open",
      depth = 1,
      reason = "sequence" .. (#said > 0 and (" by " .. table.concat(said, ", ")) or "") .. " (" ..
        about(doc) .. ")" .. verdict(meta),
      severity = meta.severity,
      risk_score = meta.risk_score,
      start = now,
      rule = MARK,
    },
  }
  a.trailhound = { source = { path = src.path, offset = src.offset, index = src.index } }
  return once(place(M.encode(a), MARK_JSON, block), { "uuid", "group", "ancestors", "original_time" })
end

return M
