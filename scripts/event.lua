-- event.lua: how rules read an event (DESIGN.md, "The event a rule sees").
--
-- A rule reads fields by dotted ECS name, e["event.action"], whatever the
-- document's shape: nested objects ({"event":{"action":...}}), dotted keys
-- ({"event.action": ...}) or a mix ({"aws.cloudtrail": {"error_code": ...}}).
-- Absent fields and JSON null are nil. The view a rule gets is read-only,
-- down to nested tables, so one rule cannot change what the next one sees.
-- This module is the only way rules touch events: a faster engine (a lazy view
-- over the raw bytes) can replace it without touching a rule.

local M = {}

local null = require("cjson").null

-- The key that asks a getter for the whole document, not one field: get(event.DOCUMENT).
-- KQL reads every field through it (a value with no field, a field name with a wildcard).
-- Rules cannot ask for it: the view passes string keys only.
local DOCUMENT = setmetatable({}, { __name = "event.DOCUMENT" })
M.DOCUMENT = DOCUMENT

-- The key that asks a getter for the event's raw CloudTrail record: get(event.RAW). Sigma
-- rules read raw paths (userIdentity.type) through it. For a raw CloudTrail record, the
-- record itself; for an ECS document, the record its event.original holds (as Elastic's
-- integration keeps it with preserve_original_event), decoded, when it is one; else nil.
-- Rules cannot ask for it either.
local RAW = setmetatable({}, { __name = "event.RAW" })
M.RAW = RAW

local decoder = require("cjson").new()
decoder.decode_max_depth(128)
decoder.decode_invalid_numbers(false)

-- A raw CloudTrail record as normalize.is_cloudtrail recognizes one.
local function is_raw(rec)
  if type(rec) ~= "table" then return false end
  if type(rawget(rec, "eventSource")) == "string" or type(rawget(rec, "eventName")) == "string" then return true end
  return type(rawget(rec, "insightDetails")) == "table" and rawget(rec, "eventVersion") ~= nil
end

-- "a.b.c" -> { "a", "b", "c", keys = { { "a", "a.b", "a.b.c" }, { "b", "b.c" }, { "c" } } },
-- computed once per distinct name: keys[i] are the keys that name[i..] can start with (search
-- tries each, and a field that is absent would otherwise join them again every time).
-- Rules may compute names, so the cache is emptied when it grows large.
local segments, cached = {}, 0
local function split(name)
  local s = segments[name]
  if s == nil then
    s = {}
    for part in string.gmatch(name, "[^.]+") do s[#s + 1] = part end
    local keys = {}
    for i = 1, #s do
      local k, ks = s[i], { s[i] }
      for j = i + 1, #s do
        k = k .. "." .. s[j]
        ks[#ks + 1] = k
      end
      keys[i] = ks
    end
    s.keys = keys
    if cached >= 4096 then segments, cached = {}, 0 end
    segments[name], cached = s, cached + 1
  end
  return s
end

local search

-- A path that runs into an array of objects continues in every element, as
-- in Elasticsearch: resources.arn is the list of every resource's arn.
local function through_array(arr, parts, i)
  local out = {}
  for n = 1, #arr do
    local el = rawget(arr, n)
    if type(el) == "table" then
      local v = search(el, parts, i)
      if type(v) == "table" and rawget(v, 1) ~= nil then
        for m = 1, #v do out[#out + 1] = v[m] end
      elseif v ~= nil then
        out[#out + 1] = v
      end
    end
  end
  if out[1] ~= nil then return out end
  return nil
end

-- Search every way of cutting name[i..] into keys present in t.
search = function(t, parts, i)
  if rawget(t, 1) ~= nil then return through_array(t, parts, i) end
  local keys = parts.keys[i]
  for j = i, #parts do
    local v = rawget(t, keys[j - i + 1])
    if v ~= nil and v ~= null then
      if j == #parts then return v end
      if type(v) == "table" then
        local found = search(v, parts, j + 1)
        if found ~= nil then return found end
      end
    end
  end
  return nil
end

-- The value of a dotted field in a document (a plain table), or nil; the document itself
-- for event.DOCUMENT.
function M.get(doc, name)
  if name == DOCUMENT then return doc end
  local v = rawget(doc, name)
  if v ~= nil then
    if v == null then return nil end
    return v
  end
  local parts = split(name)
  if #parts == 0 then return nil end  -- "" or ".": no field, never the document
  -- Fast path: fully nested, as the normalizer writes it.
  local t = doc
  for i = 1, #parts do
    if type(t) ~= "table" then t = nil break end
    t = rawget(t, parts[i])
  end
  if t ~= nil and t ~= null then return t end
  return search(doc, parts, 1)
end

-- Every field of a document: calls fn(name, value) for each string, number and boolean in
-- it, name the dotted path of keys that leads there (array elements have their array's
-- name: {"a":[{"b":1},{"b":2}]} gives a.b 1 and a.b 2). Stops at the first call that
-- returns true, and returns true then. Every value is visited: the cost is the document's
-- size, for each call.
local function leaves(t, prefix, fn)
  if rawget(t, 1) ~= nil then
    for i = 1, #t do
      local v = rawget(t, i)
      if type(v) == "table" then
        if leaves(v, prefix, fn) then return true end
      elseif v ~= nil and v ~= null and prefix and fn(prefix, v) then
        return true
      end
    end
    return false
  end
  for k, v in next, t do
    if type(k) == "string" then
      local name = prefix and prefix .. "." .. k or k
      if type(v) == "table" then
        if leaves(v, name, fn) then return true end
      elseif v ~= null and fn(name, v) then
        return true
      end
    end
  end
  return false
end

function M.leaves(doc, fn, prefix)
  if type(doc) ~= "table" then return false end
  return leaves(doc, prefix, fn)
end

-- The raw CloudTrail record in an ECS document's event.original, or nil.
function M.original(doc)
  local text = type(doc) == "table" and M.get(doc, "event.original")
  if type(text) ~= "string" or text:sub(1, 1) ~= "{" then return nil end
  local ok, rec = pcall(decoder.decode, text)
  if ok and is_raw(rec) then return rec end
  return nil
end

-- A function name -> value over one document, for compiled queries. rec: the record doc
-- was normalized from (get(event.RAW) returns it when it is a raw CloudTrail record; for
-- an ECS document, which the normalizer passes on as it is, the record of its
-- event.original).
function M.getter(doc, rec)
  local raw, looked = nil, false
  return function(name)
    if name == RAW then
      if not looked then
        looked = true
        if rec ~= nil and rec ~= doc and is_raw(rec) then raw = rec else raw = M.original(rec or doc) end
      end
      return raw
    end
    return M.get(doc, name)
  end
end

local readonly

local function wrap(v)
  if type(v) == "table" then return readonly(v) end
  if v == null then return nil end
  return v
end

local function refuse()
  error("the event is read-only", 2)
end

-- A read-only proxy over a nested table (an array or object field).
readonly = function(t)
  return setmetatable({}, {
    __index = function(_, k) return wrap(rawget(t, k)) end,
    __newindex = refuse,
    __len = function() return #t end,
    -- The state handed to the iterator is nil: pairs must not give out t.
    __pairs = function()
      local k
      return function()
        local nv
        k, nv = next(t, k)
        return k, wrap(nv)
      end, nil, nil
    end,
    __metatable = false,
  })
end

-- The view handed to a rule's match function, over get(name) -> value.
function M.view_of(get)
  return setmetatable({}, {
    __index = function(_, name)
      if type(name) ~= "string" then return nil end
      return wrap(get(name))
    end,
    __newindex = refuse,
    __pairs = function() error("iterate a field, not the event: e[\"event.action\"]", 2) end,
    __metatable = false,
  })
end

-- The view over a whole document.
function M.view(doc)
  return M.view_of(M.getter(doc))
end

-- A lazy event: one per worker, started afresh for each event.
--
--   local ev = event.lazy()
--   ev.start(rec, ctx, normalize, norm_call)
--   ev.get(name)   the field's value, computed on first ask and remembered for this event;
--                  ev.get(event.DOCUMENT): the whole normalized document (ev.whole());
--                  ev.get(event.RAW): the raw CloudTrail record (see M.RAW)
--   ev.view        the read-only view over ev.get (the same table for every event)
--   ev.whole()     the whole normalized document (built once per event)
--
-- For a raw CloudTrail record a field is computed alone when the normalizer has a function
-- for it (normalize.ON_DEMAND), else read from the whole document; an ECS document is read
-- as it is. norm_call(fn, ...) -> ok, result runs the normalizer's code (under limits when
-- it was reloaded). When the normalizer fails, ev.get raises ev.FAILED (ev.failure says
-- why): the event cannot be evaluated, and no rule is blamed.
function M.lazy()
  local ev = { FAILED = setmetatable({}, { __name = "event.FAILED" }) }
  local NIL = {}
  local rec, ctx, norm, call, memo, doc, raw
  local fields, whole_mark = {}, nil

  -- The normalizer failed on this event: say why, and give the event up.
  local function fail(why)
    ev.failure = type(why) == "string" and why or ("(error object is a " .. type(why) .. " value)")
    error(ev.FAILED, 0)
  end

  local function whole()
    if doc == nil then
      local ok, d = call(norm.normalize, rec, ctx)
      if not ok then fail(d) end
      if type(d) ~= "table" then fail("it returned a " .. type(d) .. ", not a table") end
      doc = d
    end
    return doc
  end

  local function get(name)
    if name == DOCUMENT then
      if raw then return whole() end
      return rec
    end
    if name == RAW then
      if raw then return rec end
      local v = memo[RAW]
      if v == nil then
        v = M.original(rec) or NIL
        memo[RAW] = v
      end
      if v == NIL then return nil end
      return v
    end
    local v = memo[name]
    if v ~= nil then
      if v == NIL then return nil end
      return v
    end
    if not raw then
      v = M.get(rec, name)
    else
      local f = fields[name]
      if f then
        local ok, r = call(f, rec, ctx)
        if not ok then fail(r) end
        v = r
        if v == whole_mark then v = M.get(whole(), name) end
      else
        v = M.get(whole(), name)
      end
    end
    if v == nil then memo[name] = NIL else memo[name] = v end
    return v
  end

  function ev.start(r, c, normalize, norm_call)
    rec, ctx, norm, call, memo, doc = r, c, normalize, norm_call, {}, nil
    ev.failure = nil
    raw = normalize.is_cloudtrail == nil or normalize.is_cloudtrail(r)
    if raw then
      fields = type(normalize.ON_DEMAND) == "table" and normalize.ON_DEMAND or {}
      whole_mark = normalize.WHOLE
    end
  end

  function ev.whole()
    if raw then return whole() end
    return rec
  end

  -- The record the event was started with (ev.whole() is another table once normalized).
  function ev.record() return rec end

  ev.get = get
  ev.view = M.view_of(get)
  return ev
end

return M
