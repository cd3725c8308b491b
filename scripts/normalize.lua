-- normalize.lua: maps one raw AWS CloudTrail record (decoded by lua-cjson) to the ECS document
-- that Elastic's `aws.cloudtrail` ingest pipeline would index, so that queries written for
-- Elastic run here unchanged. The spec is the pipeline in
-- tests/fixtures/elastic-cloudtrail-pipeline/ingest_pipeline/default.yml; its processors are
-- followed in their order. ECS documents (anything that is not a raw record) pass through.
-- A raw record has a string eventSource or eventName (M.is_cloudtrail); CloudTrail Insights
-- records, which only have them inside insightDetails, count as raw records too.
-- M.iso_date(text), M.key_order(raw, key), M.ORDER, M.convert and M.RENDER (see "Map.toString")
-- are exported for the specs.
--
--   local doc = normalize.normalize(rec, ctx)
--   ctx.now  ISO-8601 ingest time for event.ingested (and @timestamp when eventTime is missing
--            or unparsable, as the pipeline keeps the shipper's @timestamp); default: the current
--            UTC time, to the second (os.time has no milliseconds).
--   ctx.raw  optional: the record's own JSON text. Only read when two keys of one object fall in
--            the same Java HashMap bucket (see "Map.toString" below); without it such keys are
--            ordered by name.
--   ctx.geoip optional: { asn = function(ip), city = function(ip) }, each giving the MaxMind
--            database's record for an address (a worker's thsys.geoip, when the configuration
--            names the databases: --geoip-asn, --geoip-city, or geoip = { asn =, city = }).
--            source.as.* and source.geo.* are set from them as the pipeline's geoip processors
--            set them; without one, they are left out.
--   ctx.actor_target_mapping optional: true or false, the entity fields or not (see below);
--            default M.ACTOR_TARGET_MAPPING (true).
--
-- Map.toString: request_parameters, response_elements, additional_eventdata and
-- service_event_details are rendered as Elasticsearch renders them: the json processor parses
-- objects into java.util.HashMap (default capacity 16, load factor 0.75) and the pipeline calls
-- toString(), so keys come out in HashMap iteration order (bucket of the spread String.hashCode,
-- then insertion order within a bucket). lua-cjson does not keep key order, which only matters
-- for keys sharing a bucket: ctx.raw resolves those exactly. Numbers: cjson 2.1.0 decodes every
-- number to a float, so integral values are printed (and stored) as integers, like Jackson's
-- Integer/Long; a JSON "1.0" therefore prints as "1", not "1.0", and integers above 2^53 lose
-- precision. Other floats use Java's Double.toString format.
--
-- source.ip follows Elasticsearch's InetAddresses.isInetAddress (the `convert` type ip): IPv4
-- octets with leading zeros ("035.249.253.232") are rejected, so such values stay in
-- source.address only; IPv6 strings are kept as written, like the convert processor does.
--
-- event.dataset ("aws.cloudtrail") and event.module ("aws") are not the pipeline's: Elastic's
-- agent sets them (the data stream's constant fields); a raw record gets them here as Elastic
-- indexes it. user_agent.name/version/os/device come from useragent.lua (ua-parser's patterns
-- as Elasticsearch reads them, for the agents seen in CloudTrail), parsed once per distinct
-- string. related.hosts follows the pipeline's appends (tls.client.server_name, a source.address
-- that is a host name, requestParameters.computerName, EC2 instance ids).
--
-- The entity fields: related.entity, actor.entity.id, target.entity.id, user.entity.id,
-- service.entity.id, host.entity.id, entity.id, user.target.entity.id, host.target.entity.id,
-- host.target.id, service.target.entity.id and entity.target.id come from entity.lua (the
-- pipeline's entity script; how it reads the record is said there). Elastic runs that script only
-- for events tagged `actor_target_mapping`, which its integration adds when the policy turns the
-- option on; it is off unless asked for. Here they are on by default: Elastic's AWS rules read
-- them ("AWS IAM Assume Role Policy Update" and "AWS IAM Customer-Managed Policy Attached to
-- Role by Rare User" read entity.target.id; the latter leaves out AWS-managed policies with
-- `not related.entity: arn:aws:iam::aws:policy*`, so without the field it fires on every
-- AttachRolePolicy), and they cost nothing unless a rule asks for one or an event alerts.
-- M.ACTOR_TARGET_MAPPING = false (below; this file is hot-reloaded) leaves them out, as Elastic
-- does for an untagged event; ctx.actor_target_mapping, when a caller sets it, wins over it.
--
-- Left out on purpose:
--   event.original (not wanted), event.created (the shipper's read time, which has no
--   equivalent here), the digest-file
--   fields (digest records have no eventSource/eventName, so they are passed through), the
--   `_conf.retain` modes (we always behave as the default, `all`), and error.message /
--   event.kind "pipeline_error" (we never fail a record: an unparsable date is just left out).

local cjson = require "cjson"
local entity = require "entity"
local useragent = require "useragent"

local M = {}

local NULL = cjson.null
local type, next, tostring, rawget = type, next, tostring, rawget
local byte, sub, find, lower, format = string.byte, string.sub, string.find, string.lower, string.format
local concat, sort = table.concat, table.sort
local tointeger, huge = math.tointeger, math.huge
local os_time, os_date = os.time, os.date

-- ECS categorisation, copied from the `script_add_ecs_categorization` params. Every event gets
-- event.type ["info"]; the events listed here get their own event.category and event.type.
local CATEGORIZATION = {
  AddUserToGroup = { category = { "iam" }, type = { "group", "change" } },
  AssumeRole = { category = { "authentication" }, type = { "info" } },
  AttachGroupPolicy = { category = { "iam" }, type = { "group", "change" } },
  AttachUserPolicy = { category = { "iam" }, type = { "user", "change" } },
  ChangePassword = { category = { "iam" }, type = { "user", "change" } },
  ConsoleLogin = { category = { "authentication" }, type = { "info" } },
  CreateAccessKey = { category = { "iam" }, type = { "user", "change" } },
  CreateBucket = { category = { "file" }, type = { "creation" } },
  CreateGroup = { category = { "iam" }, type = { "group", "creation" } },
  CreateKeyPair = { category = { "iam" }, type = { "admin", "creation" } },
  CreateUser = { category = { "iam" }, type = { "user", "creation" } },
  CreateVirtualMFADevice = { category = { "iam" }, type = { "user", "change" } },
  DeactivateMFADevice = { category = { "iam" }, type = { "user", "change" } },
  DeleteAccessKey = { category = { "iam" }, type = { "user", "change" } },
  DeleteBucket = { category = { "file" }, type = { "deletion" } },
  DeleteGroup = { category = { "iam" }, type = { "group", "deletion" } },
  DeleteGroupPolicy = { category = { "iam" }, type = { "group", "change" } },
  DeleteSSHPublicKey = { category = { "iam" }, type = { "user", "change" } },
  DeleteUser = { category = { "iam" }, type = { "user", "deletion" } },
  DeleteUserPermissionsBoundary = { category = { "iam" }, type = { "user", "change" } },
  DeleteUserPolicy = { category = { "iam" }, type = { "user", "change" } },
  DeleteVirtualMFADevice = { category = { "iam" }, type = { "user", "change" } },
  DetachGroupPolicy = { category = { "iam" }, type = { "group", "change" } },
  DetachUserPolicy = { category = { "iam" }, type = { "user", "change" } },
  EnableMFADevice = { category = { "iam" }, type = { "user", "change" } },
  GetGroup = { category = { "iam" }, type = { "group", "info" } },
  GetGroupPolicy = { category = { "iam" }, type = { "group", "info" } },
  GetUser = { category = { "iam" }, type = { "user", "info" } },
  GetUserPolicy = { category = { "iam" }, type = { "user", "info" } },
  ListAttachedGroupPolicies = { category = { "iam" }, type = { "group", "info" } },
  ListAttachedUserPolicies = { category = { "iam" }, type = { "user", "info" } },
  ListGroupPolicies = { category = { "iam" }, type = { "group", "info" } },
  ListGroups = { category = { "iam" }, type = { "group", "info" } },
  ListGroupsForUser = { category = { "iam" }, type = { "user", "info" } },
  ListUserPolicies = { category = { "iam" }, type = { "user", "info" } },
  ListUsers = { category = { "iam" }, type = { "user", "info" } },
  ListUserTags = { category = { "iam" }, type = { "user", "info" } },
  PutGroupPolicy = { category = { "iam" }, type = { "group", "change" } },
  PutUserPermissionsBoundary = { category = { "iam" }, type = { "user", "change" } },
  PutUserPolicy = { category = { "iam" }, type = { "user", "change" } },
  RemoveUserFromGroup = { category = { "iam" }, type = { "group", "change" } },
  SetDefaultPolicyVersion = { category = { "iam" }, type = { "admin", "change" } },
  SetSecurityTokenServicePreferences = { category = { "iam" }, type = { "admin", "change" } },
  TagUser = { category = { "iam" }, type = { "user", "change" } },
  UntagUser = { category = { "iam" }, type = { "user", "change" } },
  UpdateAccessKey = { category = { "iam" }, type = { "user", "change" } },
  UpdateAccountPasswordPolicy = { category = { "iam" }, type = { "admin", "change" } },
  UpdateGroup = { category = { "iam" }, type = { "group", "change" } },
  UpdateLoginProfile = { category = { "iam" }, type = { "user", "change" } },
  UpdateRole = { category = { "iam" }, type = { "admin", "change" } },
  UpdateSSHPublicKey = { category = { "iam" }, type = { "user", "change" } },
  UpdateUser = { category = { "iam" }, type = { "user", "change" } },
  GetCallerIdentity = { category = { "authentication" }, type = { "info" } },
  DescribeInstances = { category = { "host" }, type = { "info" } },
  DescribeSecurityGroups = { category = { "network" }, type = { "info" } },
  ListBuckets = { category = { "file" }, type = { "info" } },
  DescribeNetworkInterfaces = { category = { "network" }, type = { "info" } },
  DescribeRegions = { category = { "api" }, type = { "info" } },
  ListRoles = { category = { "iam" }, type = { "info" } },
  DescribeVpcs = { category = { "network" }, type = { "info" } },
  DescribeNetworkAcls = { category = { "network" }, type = { "info" } },
  DescribeLoadBalancers = { category = { "network" }, type = { "info" } },
  DescribeVolumes = { category = { "host" }, type = { "info" } },
  DescribeTrails = { category = { "configuration" }, type = { "info" } },
  ListFunctions = { category = { "package" }, type = { "info" } },
  ListTables = { category = { "database" }, type = { "info" } },
  ListInstanceAssociations = { category = { "host" }, type = { "info" } },
  DescribeDBInstances = { category = { "database" }, type = { "info" } },
  AuthorizeSecurityGroupIngress = { category = { "network" }, type = { "access" } },
  CreateTopic = { category = { "configuration" }, type = { "creation" } },
  Subscribe = { category = { "configuration" }, type = { "change" } },
  Publish = { category = { "api" }, type = { "info" } },
  SendCommand = { category = { "process" }, type = { "start" } },
  GetPolicy = { category = { "iam" }, type = { "info" } },
  CreatePolicy = { category = { "iam" }, type = { "creation" } },
  ListAttachedRolePolicies = { category = { "iam" }, type = { "info" } },
  AttachRolePolicy = { category = { "iam" }, type = { "change" } },
  Converse = { category = { "api" }, type = { "info" } },
  CreateDocument = { category = { "file" }, type = { "creation" } },
  StartSession = { category = { "session" }, type = { "start" } },
  CreateControlChannel = { category = { "session" }, type = { "start" } },
  OpenControlChannel = { category = { "session" }, type = { "start" } },
  CreateDataChannel = { category = { "session" }, type = { "start" } },
  OpenDataChannel = { category = { "session" }, type = { "start" } },
  TerminateSession = { category = { "session" }, type = { "end" } },
  ListObjects = { category = { "file" }, type = { "info" } },
  HeadObject = { category = { "file" }, type = { "info" } },
  GetObject = { category = { "file" }, type = { "info" } },
  PutObject = { category = { "file" }, type = { "change" } },
  DeleteTrail = { category = { "configuration" }, type = { "deletion" } },
  DeleteObject = { category = { "file" }, type = { "deletion" } },
}

-- Values the pipeline's first clean-up script drops anywhere in the record (besides null and
-- empty objects/arrays).
local DROPPED = { [""] = true, ["-"] = true, ["none"] = true }

local SESSION_NAME_TYPES = { AssumedRole = true, FederatedUser = true, IdentityCenterUser = true }
local ISSUER_NAME_TYPES = { AssumedRole = true, FederatedUser = true }

local MAX_KEYWORD = 32766 -- the pipeline keeps flattened.* only when the text is shorter

---------------------------------------------------------------------------------------------
-- Java rendering helpers
---------------------------------------------------------------------------------------------

-- Shortest "%.Ne" format that round-trips, indexed by significant digits.
local EFMT = {}
for p = 1, 17 do EFMT[p] = "%." .. (p - 1) .. "e" end

-- Double.toString for a non-integral float.
local function jdouble(x)
  if x ~= x then return "NaN" end
  if x == huge then return "Infinity" end
  if x == -huge then return "-Infinity" end
  local s
  for p = 1, 17 do
    s = format(EFMT[p], x)
    if tonumber(s) == x then break end
  end
  local sign, d1, rest, e = s:match("^(%-?)(%d)%.?(%d*)e([-+]%d+)$")
  e = tonumber(e)
  local digits = d1 .. rest:gsub("0+$", "")
  local ax = x < 0 and -x or x
  if ax >= 1e-3 and ax < 1e7 then
    if e >= 0 then
      local int = sub(digits, 1, e + 1)
      int = int .. string.rep("0", e + 1 - #int)
      local frac = sub(digits, e + 2)
      return sign .. int .. "." .. (frac == "" and "0" or frac)
    end
    return sign .. "0." .. string.rep("0", -e - 1) .. digits
  end
  local frac = sub(digits, 2)
  return sign .. sub(digits, 1, 1) .. "." .. (frac == "" and "0" or frac) .. "E" .. e
end

-- String.hashCode over UTF-16 code units, spread as HashMap.hash() does. Cached: the same keys
-- come back in every record.
local hash_cache, hash_count = {}, 0

local function java_hash(k)
  local h = hash_cache[k]
  if h then return h end
  h = 0
  for i = 1, #k do
    local c = byte(k, i)
    if c >= 0x80 then h = nil break end
    h = (h * 31 + c) & 0xFFFFFFFF
  end
  if not h then
    h = 0
    if utf8.len(k) then
      for _, cp in utf8.codes(k) do
        if cp >= 0x10000 then
          cp = cp - 0x10000
          h = (h * 31 + (0xD800 | (cp >> 10))) & 0xFFFFFFFF
          cp = 0xDC00 | (cp & 0x3FF)
        end
        h = (h * 31 + cp) & 0xFFFFFFFF
      end
    else -- not UTF-8: Jackson would not have parsed it anyway
      for i = 1, #k do h = (h * 31 + byte(k, i)) & 0xFFFFFFFF end
    end
  end
  h = h ~ (h >> 16)
  if hash_count >= 8192 then hash_cache, hash_count = {}, 0 end
  hash_cache[k] = h
  hash_count = hash_count + 1
  return h
end

-- Set when two keys of one map share a bucket and their JSON order is unknown.
local ambiguous = false

-- Sorts keys[1..n] into HashMap iteration order. `total` is the number of keys the JSON
-- parser inserted (dropped ones included: removal never shrinks the table), `index` maps a key
-- to its position in the JSON text when known. A bucket sort: most buckets hold one key, and a
-- comparison sort over every key cost more than the rest of the rendering.
local function hashmap_order(keys, n, total, index)
  if n < 2 then return end
  local cap = 16
  while total * 4 > cap * 3 do cap = cap * 2 end
  local mask = cap - 1
  local bucket, lo, hi = {}, mask, 0
  for i = 1, n do
    local k = keys[i]
    local b = java_hash(k) & mask
    local held = bucket[b]
    if held == nil then
      bucket[b] = k
    elseif type(held) == "string" then
      bucket[b] = { held, k }
    else
      held[#held + 1] = k
    end
    if b < lo then lo = b end
    if b > hi then hi = b end
  end
  local within  -- keys sharing a bucket: in the order of the text, else by name
  local m = 0
  for b = lo, hi do
    local held = bucket[b]
    if type(held) == "string" then
      m = m + 1
      keys[m] = held
    elseif held ~= nil then
      within = within or function(x, y)
        local ix, iy = index and index[x], index and index[y]
        if ix and iy then return ix < iy end
        ambiguous = true
        return x < y
      end
      sort(held, within)
      for j = 1, #held do
        m = m + 1
        keys[m] = held[j]
      end
    end
  end
end

-- The pipeline's clean-up and Map.toString in one walk. Returns the cleaned copy of v (nil when
-- the pipeline drops it: null, "", "-", "none", empty object or array, after cleaning the
-- children) and its Java text. `order` is the node of the ctx.raw key-order tree for v, if any;
-- `skip` is a top-level key renamed away before toString. In a worker, render() below runs the
-- same walk in C first: change this walk (or jdouble, java_hash, hashmap_order, DROPPED's use) and
-- change host/worker/javatext.c alike, or turn the C one off there (M.RENDER.c = nil).
local function convert(v, order, skip)
  local tv = type(v)
  if tv == "string" then
    if DROPPED[v] then return nil end
    return v, v
  elseif tv == "number" then
    local i = tointeger(v)
    if i then return i, tostring(i) end
    return v, jdouble(v)
  elseif tv == "boolean" then
    return v, v and "true" or "false"
  elseif tv ~= "table" then
    return nil -- cjson.null
  end
  local children = order and order.sub
  if rawget(v, 1) ~= nil then -- JSON array
    local out, parts, n = {}, {}, 0
    for i = 1, #v do
      local cv, s = convert(v[i], children and children[i])
      if cv ~= nil then
        n = n + 1
        out[n], parts[n] = cv, s
      end
    end
    if n == 0 then return nil end
    return out, "[" .. concat(parts, ", ") .. "]"
  end
  local out, text, keys, n, total = {}, {}, {}, 0, 0
  for k, x in next, v do
    total = total + 1
    if k ~= skip then
      local cv, s = convert(x, children and children[k])
      if cv ~= nil then
        n = n + 1
        keys[n] = k
        out[k], text[k] = cv, s
      end
    end
  end
  if n == 0 then return nil end
  hashmap_order(keys, n, total, order and order.index)
  for i = 1, n do
    local k = keys[i]
    keys[i] = k .. "=" .. text[k]
  end
  return out, "{" .. concat(keys, ", ") .. "}"
end

-- Cleaning only (same rules as convert, no text).
local function clean(v)
  local tv = type(v)
  if tv == "string" then
    if DROPPED[v] then return nil end
    return v
  elseif tv == "number" then
    return tointeger(v) or v
  elseif tv == "boolean" then
    return v
  elseif tv ~= "table" then
    return nil
  end
  local out, n = {}, 0
  if rawget(v, 1) ~= nil then
    for i = 1, #v do
      local cv = clean(v[i])
      if cv ~= nil then
        n = n + 1
        out[n] = cv
      end
    end
  else
    for k, x in next, v do
      local cv = clean(x)
      if cv ~= nil then
        n = n + 1
        out[k] = cv
      end
    end
  end
  if n == 0 then return nil end
  return out
end

-- Java/mustache text of a scalar (the `{{{...}}}` templates and string concatenation).
local function jtext(v)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "number" then
    local i = tointeger(v)
    return i and tostring(i) or jdouble(v)
  end
  if tv == "boolean" then return v and "true" or "false" end
  return nil
end

---------------------------------------------------------------------------------------------
-- ctx.raw: key order of every object in the record's JSON text
---------------------------------------------------------------------------------------------

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function unescape(s)
  s = s:gsub("\\u([dD][89abAB]%x%x)\\u([dD][c-fC-F]%x%x)", function(hi, lo)
    return utf8.char(0x10000 + ((tonumber(hi, 16) - 0xD800) << 10) + (tonumber(lo, 16) - 0xDC00))
  end)
  return (s:gsub("\\(u?)(.)(%x?%x?%x?)", function(u, c, rest)
    if u == "u" then return utf8.char(tonumber(c .. rest, 16) or 0xFFFD) end
    return (ESCAPES[c] or c) .. rest
  end))
end

local function skip_ws(s, i)
  local c = byte(s, i)
  if c ~= 32 and c ~= 9 and c ~= 10 and c ~= 13 then return c and i end  -- compact JSON: at once
  return find(s, "[^ \t\r\n]", i)
end

-- Index after the string starting at s[i] == '"', and its decoded text when want_text.
local function scan_string(s, i, want_text)
  local j, escaped = i + 1, false
  while true do
    local q = find(s, '["\\]', j)
    if not q then return nil end
    if byte(s, q) == 34 then
      if not want_text then return q + 1 end
      local text = sub(s, i + 1, q - 1)
      if escaped then text = unescape(text) end
      return q + 1, text
    end
    escaped, j = true, q + 2
  end
end

-- The index after the value at s[i], without looking inside it more than it takes.
local function skip_value(s, i)
  local c = byte(s, i)
  if c == 34 then return scan_string(s, i, false) end
  if c ~= 123 and c ~= 91 then return find(s, "[,%]} \t\r\n]", i) or #s + 1 end
  local depth, j = 0, i
  while true do
    j = find(s, '["{}%[%]]', j)
    if not j then return nil end
    c = byte(s, j)
    if c == 34 then
      j = scan_string(s, j, false)
      if not j then return nil end
    else
      depth = depth + ((c == 123 or c == 91) and 1 or -1)
      j = j + 1
      if depth == 0 then return j end
    end
  end
end

-- Returns the index after the value at s[i] and, for objects and arrays, its order node:
-- { index = { key = position }, sub = { key = node } } or { sub = { [i] = node } }.
-- only: at the top, the keys whose values get a node (the others are skipped).
local function scan_value(s, i, only)
  local c = byte(s, i)
  if c == 123 or c == 91 then -- { or [
    local is_object = c == 123
    local close = is_object and 125 or 93
    local node, n = { sub = {} }, 0
    if is_object then node.index = {} end
    i = skip_ws(s, i + 1)
    if not i then return nil end
    if byte(s, i) == close then return i + 1, node end
    while true do
      local key
      if is_object then
        if byte(s, i) ~= 34 then return nil end
        i, key = scan_string(s, i, true)
        if not i then return nil end
        i = skip_ws(s, i)
        if not i or byte(s, i) ~= 58 then return nil end
        i = skip_ws(s, i + 1)
        if not i then return nil end
      end
      local child
      if only and not only[key] then
        i = skip_value(s, i)
      else
        i, child = scan_value(s, i)
      end
      if not i then return nil end
      n = n + 1
      if is_object then node.index[key] = n else key = n end
      if child then node.sub[key] = child end
      i = skip_ws(s, i)
      if not i then return nil end
      c = byte(s, i)
      if c == close then return i + 1, node end
      if c ~= 44 then return nil end
      i = skip_ws(s, i + 1)
      if not i then return nil end
    end
  elseif c == 34 then
    return scan_string(s, i, false)
  elseif c == nil then
    return nil
  end
  return find(s, "[,%]} \t\r\n]", i) or #s + 1
end

-- The key-order tree of one payload of the record (requestParameters & co, the objects rendered
-- with Map.toString), or nil; the rest of the record is only stepped over.
function M.key_order(raw, key)
  local i = skip_ws(raw, 1)
  if not i or byte(raw, i) ~= 123 then return nil end
  local _, node = scan_value(raw, i, { [key] = true })
  return node and node.sub[key]
end

-- In a worker, the same scan in C (host/worker/jsontext.c), some 30 times faster than Lua
-- patterns stepping through the record: cheap enough to run before rendering a payload (one walk)
-- instead of after a walk that met two keys in one bucket (then a second walk).
-- M.ORDER.eager: scan before rendering (the specs set it to compare the two ways).
local has_sys, sys = pcall(require, "thsys")
local c_key_order = has_sys and type(sys) == "table" and sys.key_order or nil
M.ORDER = { scan = c_key_order or M.key_order, eager = c_key_order ~= nil }
local ORDER = M.ORDER
local function scan_raw(raw, key)
  if type(raw) ~= "string" then return nil end
  return ORDER.scan(raw, key)
end

-- convert(v, order, skip), in a worker by thsys.map_text (host/worker/javatext.c): the same
-- walk in C, which gives convert's answer byte for byte or says it cannot (then convert runs).
-- convert stays the reference, what plain lua5.4 and the authoring commands run;
-- tests/c/javatext_test.c and the javatext fuzz harness hold the two equal. The C walk costs
-- a fifth of the Lua one, most of what normalizing an event that alerts cost. As a guard
-- against an edit of convert alone, the two are compared on a few payloads when this file
-- loads: any difference turns the C one off (M.RENDER.c = nil) and convert runs everywhere.
M.RENDER = { c = has_sys and type(sys) == "table" and sys.map_text or nil }

-- The reference, for the specs and the C tests: cv, text, and whether two keys of one bucket
-- were ordered by name (their order in the text unknown).
function M.convert(v, order, skip)
  local was = ambiguous
  ambiguous = false
  local cv, text = convert(v, order, skip)
  local amb = ambiguous
  ambiguous = was
  return cv, text, amb
end

local RENDER = M.RENDER
local function render(v, order, skip)
  local c = RENDER.c
  if c then
    local done, cv, text, amb = c(v, order, skip, DROPPED)
    if done then
      if amb then ambiguous = true end
      return cv, text
    end
  end
  return convert(v, order, skip)
end
M.render = render

-- render(v, scan_raw(raw, key), skip): with the C scan, done inside the C walk, which reads
-- the key order from the text into arrays of its own instead of a tree of Lua tables.
local function render_scanned(v, raw, key, skip)
  local c = RENDER.c
  if c and ORDER.scan == c_key_order and type(raw) == "string" then
    local done, cv, text, amb = c(v, nil, skip, DROPPED, raw, key)
    if done then
      if amb then ambiguous = true end
      return cv, text
    end
  end
  return render(v, scan_raw(raw, key), skip)
end

if RENDER.c then
  local SAMPLES = {
    { { b = 1, a = { "x", "", { c = "-", d = 0.5 }, 1e300, -2.5e-7, true }, Aa = false, BB = "none", e = {} } },
    { { b = 1, a = 2, Aa = 3, BB = 4, c = 5.0, ["\u{e9}"] = 6, ["\u{1F600}"] = 7, zz = cjson.null },
      { index = { Aa = 2, BB = 1, zz = 3 } }, "c" },
    { { 1.25, "none", { 3 } } }, { "text" }, { 123456789.0 }, { 0.001 },
  }
  for _, s in ipairs(SAMPLES) do
    local lv, lt, la = M.convert(s[1], s[2], s[3])
    local done, cv, ct, ca = RENDER.c(s[1], s[2], s[3], DROPPED)
    if done and (ct ~= lt or ca ~= la or type(cv) ~= type(lv)) then
      RENDER.c = nil
      break
    end
  end
end

---------------------------------------------------------------------------------------------
-- IP addresses: Elasticsearch's InetAddresses.isInetAddress, ported
---------------------------------------------------------------------------------------------

-- Bytes i..j as a dotted quad; returns the 4 octets or nil.
local function ipv4_octets(s, i, j)
  local octets, current, digits, count = {}, 0, 0, 0
  for p = i, j do
    local c = byte(s, p)
    if c == 46 then -- .
      if count >= 3 or digits == 0 or current > 255 then return nil end
      count = count + 1
      octets[count] = current
      current, digits = 0, 0
    elseif c >= 48 and c <= 57 then
      if digits ~= 0 and current == 0 then return nil end -- leading zero
      current = current * 10 + (c - 48)
      digits = digits + 1
    else
      return nil
    end
  end
  if count ~= 3 or digits == 0 or current > 255 then return nil end
  octets[4] = current
  return octets
end

local function hexval(c)
  if c >= 48 and c <= 57 then return c - 48 end
  if c >= 97 and c <= 102 then return c - 87 end
  if c >= 65 and c <= 70 then return c - 55 end
  return nil
end

local function ipv6_valid(s, i, j)
  local len = j - i + 1
  if len < 2 then return false end
  if byte(s, i) == 58 and byte(s, i + 1) ~= 58 then return false end
  if byte(s, j) == 58 and byte(s, j - 1) ~= 58 then return false end
  local compressed, hextets, start, current = -1, 0, i, 0
  for p = i, j do
    local c = byte(s, p)
    if c == 58 then
      if start == p then
        if compressed >= 0 and p - i ~= 1 then return false end
        compressed = hextets
      else
        if hextets >= 8 or current > 0xFFFF then return false end
        hextets = hextets + 1
        current = 0
      end
      start = p + 1
    else
      local h = hexval(c)
      if not h then return false end
      current = current * 16 + h
      if current > 0xFFFFF then current = 0x10000 end -- stays invalid, never overflows
    end
  end
  if start <= j then
    if hextets >= 8 or current > 0xFFFF then return false end
    hextets = hextets + 1
  end
  if compressed >= 0 then return hextets < 8 end
  return hextets == 8
end

local function is_ip_uncached(s)
  local n = #s
  local last_colon, has_dot = nil, false
  for p = 1, n do
    local c = byte(s, p)
    if c >= 0x80 then
      return false
    elseif c == 46 then
      has_dot = true
    elseif c == 58 then
      if has_dot then return false end
      last_colon = p
    elseif c == 37 then -- % starts a scope id
      if p == n then return false end
      n = p - 1
      break
    end
  end
  if last_colon then
    if has_dot then
      local q = ipv4_octets(s, last_colon + 1, n)
      if not q then return false end
      local v6 = sub(s, 1, last_colon) .. format("%x:%x", q[1] * 256 + q[2], q[3] * 256 + q[4])
      return ipv6_valid(v6, 1, #v6)
    end
    return ipv6_valid(s, 1, n)
  end
  if has_dot then return ipv4_octets(s, 1, n) ~= nil end
  return false
end

local ip_cache, ip_count = {}, 0

local function is_ip(s)
  local r = ip_cache[s]
  if r == nil then
    r = is_ip_uncached(s)
    if ip_count >= 4096 then ip_cache, ip_count = {}, 0 end
    ip_cache[s] = r
    ip_count = ip_count + 1
  end
  return r
end

---------------------------------------------------------------------------------------------
-- Dates: the `date` processor with ISO8601 (and the basic formats), printed as
-- yyyy-MM-dd'T'HH:mm:ss.SSS'Z' in UTC
---------------------------------------------------------------------------------------------

local MONTH_DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- Parses the time-of-day part (after 'T' or ' '); returns h, mi, sec, millis, offset seconds.
local function parse_time(t, basic)
  local h, mi, sec, rest
  if basic then
    h, mi, sec, rest = t:match("^(%d%d)(%d%d)(%d%d)(.*)$")
  else
    h, mi, rest = t:match("^(%d%d):(%d%d)(.*)$")
    if not h then
      h, rest = t:match("^(%d%d)(.*)$")
      mi = "0"
    end
    if rest then
      local s2, r2 = rest:match("^:(%d%d)(.*)$")
      if s2 then sec, rest = s2, r2 end
    end
  end
  if not h then return nil end
  local ms = 0
  local frac, r3 = rest:match("^[.,](%d+)(.*)$")
  if frac then
    if not sec then return nil end
    ms = tonumber((frac .. "00"):sub(1, 3))
    rest = r3
  end
  local off = 0
  if rest ~= "" and rest ~= "Z" and rest ~= "z" then
    local sign, oh, om
    if basic then
      sign, oh, om = rest:match("^([-+])(%d%d)(%d%d)$")
    else
      sign, oh, om = rest:match("^([-+])(%d%d):?(%d%d)$")
      if not sign then
        sign, oh = rest:match("^([-+])(%d%d)$")
        om = "0"
      end
    end
    if not sign then return nil end
    oh, om = tonumber(oh), tonumber(om)
    if oh > 18 or om > 59 then return nil end
    off = (oh * 3600 + om * 60) * (sign == "-" and -1 or 1)
  end
  h, mi, sec = tonumber(h), tonumber(mi), tonumber(sec or "0")
  if h > 23 or mi > 59 or sec > 59 then return nil end
  return h, mi, sec, ms, off
end

local function iso_date_slow(s)
  local y, m, d, rest = s:match("^(%d%d%d%d)-(%d%d)-(%d%d)(.*)$")
  local basic = false
  if not y then
    y, m, d, rest = s:match("^(%d%d%d%d)(%d%d)(%d%d)(T.*)$")
    basic = true
  end
  if not y then return nil end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 or d > MONTH_DAYS[m] then return nil end
  if m == 2 and d == 29 and not (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then return nil end
  local h, mi, sec, ms, off = 0, 0, 0, 0, 0
  if rest ~= "" then
    local sep = byte(rest, 1)
    -- 'T' is ISO 8601; ' ' is accepted too for eventTimes like "2025-03-26 16:43:57.000000000".
    if sep ~= 84 and not (sep == 32 and not basic) then return nil end
    h, mi, sec, ms, off = parse_time(sub(rest, 2), basic)
    if not h then return nil end
  end
  local epoch = days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + sec - off
  if off == 0 then
    return format("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d, h, mi, sec, ms)
  end
  return os_date("!%Y-%m-%dT%H:%M:%S", epoch) .. format(".%03dZ", ms)
end

-- ISO-8601 text to the pipeline's output format; nil when it does not parse.
local function iso_date(s)
  if type(s) ~= "string" then return nil end
  local n = #s
  -- Fast path: CloudTrail's own "2024-10-08T10:15:32Z".
  if n == 20 and byte(s, 20) == 90 and byte(s, 11) == 84 and byte(s, 5) == 45 and byte(s, 14) == 58
    and find(s, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$") then
    local m, d = tonumber(sub(s, 6, 7)), tonumber(sub(s, 9, 10))
    if m >= 1 and m <= 12 and d >= 1 and d <= MONTH_DAYS[m] and tonumber(sub(s, 12, 13)) < 24
      and tonumber(sub(s, 15, 16)) < 60 and tonumber(sub(s, 18, 19)) < 60 and not (m == 2 and d == 29) then
      return sub(s, 1, 19) .. ".000Z"
    end
  end
  return iso_date_slow(s)
end

M.iso_date = iso_date

-- event.ingested when ctx.now is not given: second resolution (os.time), formatted once a second.
local last_second, last_now

local function now_iso()
  local t = os_time()
  if t ~= last_second then
    last_second, last_now = t, os_date("!%Y-%m-%dT%H:%M:%S.000Z", t)
  end
  return last_now
end

---------------------------------------------------------------------------------------------
-- The record
---------------------------------------------------------------------------------------------

local function tbl(v)
  if type(v) == "table" then return v end
  return nil
end

-- A field as the pipeline sees it after its first clean-up: nil when dropped; objects cleaned.
local val = clean

-- A string field (nil when dropped or not a string).
local function str(v)
  if type(v) == "string" and not DROPPED[v] then return v end
  return nil
end

-- Appends v to list unless present (append with allow_duplicates: false).
local function add_unique(list, v)
  if v == nil or v == "" then return end
  for i = 1, #list do
    if list[i] == v then return end
  end
  list[#list + 1] = v
end

local function is_cloudtrail(rec)
  if type(rec) ~= "table" then return false end
  if type(rec.eventSource) == "string" or type(rec.eventName) == "string" then return true end
  -- CloudTrail Insights records carry eventSource/eventName inside insightDetails only.
  return type(rec.insightDetails) == "table" and rec.eventVersion ~= nil
end

M.is_cloudtrail = is_cloudtrail

-- Every field M.normalize can write, by dotted name (for `trailhound check`, which warns about
-- a query or investigation field that no source produces). An array is one field. Under the
-- names in M.OPEN_FIELDS any subfield can appear: they hold the record's own objects.
-- tests/check_spec.lua checks that no normalized fixture has a field missing here.
M.FIELDS = {
  "@timestamp",
  "aws.cloudtrail.additional_eventdata", "aws.cloudtrail.addendum.original_event_id",
  "aws.cloudtrail.addendum.original_request_id", "aws.cloudtrail.addendum.reason",
  "aws.cloudtrail.addendum.updated_fields", "aws.cloudtrail.api_version",
  "aws.cloudtrail.console_login.additional_eventdata.login_to",
  "aws.cloudtrail.console_login.additional_eventdata.mfa_used",
  "aws.cloudtrail.console_login.additional_eventdata.mobile_version",
  "aws.cloudtrail.error_code", "aws.cloudtrail.error_message", "aws.cloudtrail.event_category",
  "aws.cloudtrail.event_type", "aws.cloudtrail.event_version", "aws.cloudtrail.management_event",
  "aws.cloudtrail.read_only", "aws.cloudtrail.recipient_account_id", "aws.cloudtrail.request_id",
  "aws.cloudtrail.request_parameters", "aws.cloudtrail.resources", "aws.cloudtrail.response_elements",
  "aws.cloudtrail.service_event_details", "aws.cloudtrail.session_credential_from_console",
  "aws.cloudtrail.shared_event_id", "aws.cloudtrail.tls_details.key_exchange",
  "aws.cloudtrail.user_identity.access_key_id", "aws.cloudtrail.user_identity.arn",
  "aws.cloudtrail.user_identity.credential_id", "aws.cloudtrail.user_identity.identity_provider",
  "aws.cloudtrail.user_identity.in_scope_of.credentials_issued_to",
  "aws.cloudtrail.user_identity.in_scope_of.issuer_type",
  "aws.cloudtrail.user_identity.in_scope_of.source_account",
  "aws.cloudtrail.user_identity.in_scope_of.source_arn",
  "aws.cloudtrail.user_identity.invoked_by", "aws.cloudtrail.user_identity.invoked_by_delegate.account_id",
  "aws.cloudtrail.user_identity.on_behalf_of.identity_store_arn",
  "aws.cloudtrail.user_identity.on_behalf_of.user_id",
  "aws.cloudtrail.user_identity.session_context.assumed_root",
  "aws.cloudtrail.user_identity.session_context.creation_date",
  "aws.cloudtrail.user_identity.session_context.ec2_role_delivery",
  "aws.cloudtrail.user_identity.session_context.mfa_authenticated",
  "aws.cloudtrail.user_identity.session_context.session_issuer.account_id",
  "aws.cloudtrail.user_identity.session_context.session_issuer.arn",
  "aws.cloudtrail.user_identity.session_context.session_issuer.principal_id",
  "aws.cloudtrail.user_identity.session_context.session_issuer.type",
  "aws.cloudtrail.user_identity.session_context.sign_in_session_arn",
  "aws.cloudtrail.user_identity.session_context.source_identity",
  "aws.cloudtrail.user_identity.session_context.web_id_federation_data.federated_provider",
  "aws.cloudtrail.user_identity.type", "aws.cloudtrail.vpc_endpoint_account_id",
  "aws.cloudtrail.vpc_endpoint_id",
  "cloud.account.id", "cloud.provider", "cloud.region", "cloud.service.name",
  "data_stream.dataset", "ecs.version",
  "event.action", "event.category", "event.dataset", "event.id", "event.ingested", "event.kind", "event.module",
  "event.outcome", "event.provider", "event.type",
  "group.id", "group.name", "related.hosts", "related.ip", "related.user", "service.name", "source.address",
  "source.ip",
  "tls.cipher", "tls.client.server_name", "tls.version", "tls.version_protocol",
  "user.changes.name", "user.email", "user.id", "user.name", "user.target.id", "user.target.name",
  "user_agent.device.name", "user_agent.name", "user_agent.original", "user_agent.os.full", "user_agent.os.name",
  "user_agent.os.version", "user_agent.version",
  -- entity.lua's (unless ctx.actor_target_mapping is false)
  "related.entity", "actor.entity.id", "target.entity.id", "user.entity.id", "service.entity.id", "host.entity.id",
  "entity.id", "user.target.entity.id", "host.target.entity.id", "host.target.id", "service.target.entity.id",
  "entity.target.id",
  -- only with a MaxMind database (M.CONFIGURED)
  "source.as.number", "source.as.organization.name",
  "source.geo.city_name", "source.geo.continent_name", "source.geo.country_iso_code", "source.geo.country_name",
  "source.geo.location.lat", "source.geo.location.lon", "source.geo.region_iso_code", "source.geo.region_name",
}
-- Fields of M.FIELDS produced only when the configuration names a database: field prefix ->
-- the configuration key that must be set (`trailhound check` warns about them otherwise).
M.CONFIGURED = {
  ["source.as"] = "geoip.asn",
  ["source.geo"] = "geoip.city",
}
M.OPEN_FIELDS = {
  "aws.cloudtrail.flattened.additional_eventdata", "aws.cloudtrail.flattened.insight_details",
  "aws.cloudtrail.flattened.request_parameters", "aws.cloudtrail.flattened.response_elements",
  "aws.cloudtrail.flattened.service_event_details",
  "aws.cloudtrail.user_identity.session_context.web_id_federation_data.attributes",
  "aws.cloudtrail.resources", -- the record's resources: arn, account_id, type, ...
}

local PAYLOADS = {
  { "requestParameters", "request_parameters" },
  { "responseElements", "response_elements" },
  { "additionalEventData", "additional_eventdata" },
  { "serviceEventDetails", "service_event_details" },
}

-- Fields on demand, for the lazy event view (event.lua): a rule that reads event.action gets
-- it without the rest of the document being built. Each function(rec, ctx) returns the field's
-- value in M.normalize's document (nil: absent), or M.WHOLE when this record needs the whole
-- mapping. A field not listed here is read from the whole document, built once per event
-- when first needed (and for every event that alerts). M.normalize writes these fields with
-- these same functions; tests/lazy_spec.lua checks every field against the whole document.
M.WHOLE = setmetatable({}, { __name = "normalize.WHOLE" })
local function user_identity(key)
  return function(rec)
    local uid = tbl(rec.userIdentity)
    return uid and val(uid[key])
  end
end
local ON_DEMAND = {
  ["data_stream.dataset"] = function() return "aws.cloudtrail" end,
  ["ecs.version"] = function() return "8.11.0" end,
  ["cloud.provider"] = function() return "aws" end,
  ["event.kind"] = function() return "event" end,
  ["event.provider"] = function(rec) return val(rec.eventSource) end,
  ["event.action"] = function(rec) return jtext(val(rec.eventName)) end,
  ["event.id"] = function(rec) return val(rec.eventID) end,
  ["cloud.region"] = function(rec) return val(rec.awsRegion) end,
  ["aws.cloudtrail.error_code"] = function(rec) return val(rec.errorCode) end,
  ["aws.cloudtrail.error_message"] = function(rec) return val(rec.errorMessage) end,
  ["aws.cloudtrail.event_category"] = function(rec) return val(rec.eventCategory) end,
  ["aws.cloudtrail.event_type"] = function(rec) return val(rec.eventType) end,
  ["aws.cloudtrail.event_version"] = function(rec) return val(rec.eventVersion) end,
  ["aws.cloudtrail.api_version"] = function(rec) return val(rec.apiVersion) end,
  ["aws.cloudtrail.request_id"] = function(rec) return val(rec.requestID) end,
  ["aws.cloudtrail.read_only"] = function(rec) return val(rec.readOnly) end,
  ["aws.cloudtrail.user_identity.type"] = user_identity("type"),
  ["aws.cloudtrail.user_identity.arn"] = user_identity("arn"),
  ["aws.cloudtrail.user_identity.access_key_id"] = user_identity("accessKeyId"),
  ["aws.cloudtrail.user_identity.invoked_by"] = user_identity("invokedBy"),
  ["user_agent.original"] = function(rec) return str(rec.userAgent) end,
  ["source.address"] = function(rec) return val(rec.sourceIPAddress) end,
}
-- "failure" when the record has an error code or message, else "success"; a ConsoleLogin's
-- response says it itself ("Success", "Failure"), when the pipeline keeps it.
local function outcome_of(rec)
  if rec.eventName == "ConsoleLogin" and type(rec.responseElements) == "table" then
    local said = rec.responseElements.ConsoleLogin
    if type(said) == "string" and not DROPPED[said] then return lower(said) end
  end
  if ON_DEMAND["aws.cloudtrail.error_code"](rec) ~= nil or ON_DEMAND["aws.cloudtrail.error_message"](rec) ~= nil then
    return "failure"
  end
  return "success"
end
ON_DEMAND["event.outcome"] = outcome_of

-- The time the event is read: ctx.now, else the clock's.
local function now_of(ctx)
  local now = ctx and ctx.now
  if type(now) ~= "string" then now = now_iso() end
  return now
end

-- @timestamp: the event's time, else the time it is read.
local function event_time(rec, now) return iso_date(str(rec.eventTime)) or now end
ON_DEMAND["@timestamp"] = function(rec, ctx) return event_time(rec, now_of(ctx)) end

-- service.name of an AWS service acting on its own (AWSService, or a service-linked role),
-- which then has no user.*; nil for anyone else.
local function service_name_of(uid, utype, iss)
  local invoked_by = str(uid.invokedBy)
  if utype == "AWSService" then return invoked_by end
  if utype == "AssumedRole" then
    local issuer_arn = iss and str(iss.arn)
    local at = issuer_arn and find(issuer_arn, ":role/aws-service-role/", 1, true)
    if at then
      local rest = sub(issuer_arn, at + 23)
      local slash = find(rest, "/", 1, true)
      return invoked_by or (slash and slash > 1 and sub(rest, 1, slash - 1)) or nil
    end
  end
  return nil
end

-- user.name: the identity's userName, an assumed role's or federated user's issuer's name
-- instead, and for a UserAuthentication without either, additionalEventData.UserName (the
-- normalizer then leaves that key out of additional_eventdata).
local function user_name(rec)
  local uid = tbl(rec.userIdentity)
  local name
  if uid then
    local utype = val(uid.type)
    local session = tbl(uid.sessionContext)
    local iss = session and tbl(session.sessionIssuer)
    if not service_name_of(uid, utype, iss) then
      name = val(uid.userName)
      if iss and ISSUER_NAME_TYPES[utype] then
        local issuer_name = val(iss.userName)
        if issuer_name ~= nil then name = issuer_name end
      end
    end
  end
  if name == nil and ON_DEMAND["event.action"](rec) == "UserAuthentication" then
    local aed = tbl(rec.additionalEventData)
    if aed then
      local from_aed = val(aed.UserName)
      if from_aed ~= nil then return from_aed, true end
    end
  end
  return name, false
end
ON_DEMAND["user.name"] = user_name

ON_DEMAND["event.dataset"] = function() return "aws.cloudtrail" end
ON_DEMAND["event.module"] = function() return "aws" end

-- user_agent.*: useragent.parse caches its answer per string, so each costs a table read.
local function agent_of(rec)
  return useragent.parse(ON_DEMAND["user_agent.original"](rec))
end
ON_DEMAND["user_agent.name"] = function(rec)
  local a = agent_of(rec)
  return a and a.name
end
ON_DEMAND["user_agent.version"] = function(rec)
  local a = agent_of(rec)
  return a and a.version
end
ON_DEMAND["user_agent.device.name"] = function(rec)
  local a = agent_of(rec)
  return a and a.device.name
end
for _, k in ipairs({ "name", "version", "full" }) do
  ON_DEMAND["user_agent.os." .. k] = function(rec)
    local a = agent_of(rec)
    return a and a.os and a.os[k]
  end
end

-- The entity fields (entity.lua): on unless this says false (or ctx.actor_target_mapping does).
M.ACTOR_TARGET_MAPPING = true
local function entity_mapping_on(ctx)
  local on
  if type(ctx) == "table" then on = ctx.actor_target_mapping end
  if on == nil then return M.ACTOR_TARGET_MAPPING ~= false end
  return on ~= false
end
for name in pairs(entity.FIELDS) do
  ON_DEMAND[name] = function(rec, ctx)
    if not entity_mapping_on(ctx) then return nil end
    return entity.get(rec, name)
  end
end

-- source.ip: source.address when it is an IP address (the `convert` processor, type ip).
local function source_ip(rec)
  local text = jtext(ON_DEMAND["source.address"](rec))
  if text and is_ip(text) then return text end
  return nil
end
ON_DEMAND["source.ip"] = source_ip

-- The geoip processors. City: source.geo.{continent_name, country_iso_code, country_name,
-- region_iso_code, region_name, city_name, location} from the record's English names, the
-- most specific subdivision (the last) and latitude/longitude; ASN: source.as.number and
-- source.as.organization.name. Only what the record has; nothing for an address it lacks.
local function english(t)
  local names = type(t) == "table" and t.names
  local en = type(names) == "table" and names.en
  return type(en) == "string" and en or nil
end

local GEO_MAP = {
  city = function(r)
    local g = {}
    local country = type(r.country) == "table" and r.country or nil
    g.continent_name = english(r.continent)
    g.country_iso_code = country and type(country.iso_code) == "string" and country.iso_code or nil
    g.country_name = english(country)
    local subs = type(r.subdivisions) == "table" and r.subdivisions or nil
    local sub1 = subs and subs[#subs]
    if type(sub1) == "table" then
      if g.country_iso_code and type(sub1.iso_code) == "string" then
        g.region_iso_code = g.country_iso_code .. "-" .. sub1.iso_code
      end
      g.region_name = english(sub1)
    end
    g.city_name = english(r.city)
    local loc = type(r.location) == "table" and r.location or nil
    if loc and type(loc.latitude) == "number" and type(loc.longitude) == "number" then
      g.location = { lat = loc.latitude, lon = loc.longitude }
    end
    return next(g) and g or nil
  end,
  asn = function(r)
    local as = {}
    if math.type(r.autonomous_system_number) == "integer" then as.number = r.autonomous_system_number end
    if type(r.autonomous_system_organization) == "string" then
      as.organization = { name = r.autonomous_system_organization }
    end
    return next(as) and as or nil
  end,
}

-- Per lookup function, address -> mapped table or false; emptied when it grows large.
local geo_cache = setmetatable({}, { __mode = "k" })
M.GEO_CACHE_MAX = 4096

-- source.geo (which = "city") or source.as ("asn") of the record, shared: copy before changing.
local function geo_of(rec, ctx, which)
  local g = type(ctx) == "table" and ctx.geoip
  local lookup = type(g) == "table" and g[which]
  if not lookup then return nil end
  local ip = source_ip(rec)
  if ip == nil then return nil end
  local c = geo_cache[lookup]
  if c == nil or c.n >= M.GEO_CACHE_MAX then
    c = { n = 0, by_ip = {} }
    geo_cache[lookup] = c
  end
  local v = c.by_ip[ip]
  if v == nil then
    local r = lookup(ip)
    v = type(r) == "table" and GEO_MAP[which](r) or false
    c.by_ip[ip] = v
    c.n = c.n + 1
  end
  return v or nil
end

for _, k in ipairs({ "city_name", "continent_name", "country_iso_code", "country_name", "region_iso_code",
  "region_name" }) do
  ON_DEMAND["source.geo." .. k] = function(rec, ctx)
    local g = geo_of(rec, ctx, "city")
    return g and g[k]
  end
end
ON_DEMAND["source.as.number"] = function(rec, ctx)
  local as = geo_of(rec, ctx, "asn")
  return as and as.number
end
ON_DEMAND["source.as.organization.name"] = function(rec, ctx)
  local as = geo_of(rec, ctx, "asn")
  return as and as.organization and as.organization.name
end

M.ON_DEMAND = ON_DEMAND

-- Fields whose string values are always the record's own strings, or parts of one, as the
-- record has them (after JSON unescaping): for raw records here, and for ECS documents, which
-- pass through. The host's prefilter relies on it: it skips, undecoded, a record whose text
-- holds none of the values a rule requires of these fields. A field computed otherwise (a
-- constant, a lowercased or reformatted value) must not be listed.
M.VERBATIM = {}
for _, name in ipairs({
  "event.provider", "event.action", "event.id", "cloud.region", "cloud.account.id",
  "cloud.service.name", "service.name",
  "aws.cloudtrail.error_code", "aws.cloudtrail.error_message", "aws.cloudtrail.event_category",
  "aws.cloudtrail.event_type", "aws.cloudtrail.request_id", "aws.cloudtrail.recipient_account_id",
  "aws.cloudtrail.shared_event_id", "aws.cloudtrail.vpc_endpoint_id",
  "aws.cloudtrail.user_identity.type", "aws.cloudtrail.user_identity.arn",
  "aws.cloudtrail.user_identity.access_key_id", "aws.cloudtrail.user_identity.invoked_by",
  "aws.cloudtrail.user_identity.session_context.session_issuer.type",
  "aws.cloudtrail.user_identity.session_context.session_issuer.arn",
  "aws.cloudtrail.user_identity.session_context.session_issuer.principal_id",
  "aws.cloudtrail.user_identity.session_context.session_issuer.account_id",
  "user.name", "user.id", "user.email", "user.target.name", "user.target.id", "user.changes.name",
  "group.name", "group.id", "related.user", "related.ip",
  "source.address", "source.ip", "user_agent.original", "tls.cipher", "tls.client.server_name",
}) do M.VERBATIM[name] = true end

-- Values of computed fields and what a record's text must then hold (some of it): the
-- prefilter may use them as it uses VERBATIM's values. event.outcome is "failure" when the
-- record has errorCode or errorMessage, or is a ConsoleLogin whose response says so (in any
-- case), or when an ECS document says "failure" itself.
M.IMPLIED = {
  ["event.outcome"] = { failure = { "errorCode", "errorMessage", "ConsoleLogin", "failure" } },
}

-- Fields that a raw record's text gives as they are: the string at the path (a field whose string
-- is one the pipeline drops, "", "-" or "none", is absent; a path the record lacks, the field too).
-- The host reads these paths in a record's text and skips a rule whose exact clause the string
-- does not meet, or whose `not` clause it does, before the record is decoded (host/rawfield.h).
-- Each entry names the ON_DEMAND function whose reading it is (tests/lazy_spec.lua holds them to
-- it); a normalizer that puts another function in its place loses the entry's conditions
-- (ruleindex.lua). The host takes a record for a raw one when its eventSource or eventName is a
-- string, as M.RAW_RECORD (is_cloudtrail) does; a normalizer whose is_cloudtrail is another loses
-- them all.
M.RAW_PATHS = {}
for field, path in pairs({
  ["event.provider"] = "eventSource", ["event.action"] = "eventName", ["event.id"] = "eventID",
  ["cloud.region"] = "awsRegion", ["aws.cloudtrail.error_code"] = "errorCode",
  ["aws.cloudtrail.error_message"] = "errorMessage", ["aws.cloudtrail.event_category"] = "eventCategory",
  ["aws.cloudtrail.event_type"] = "eventType", ["aws.cloudtrail.event_version"] = "eventVersion",
  ["aws.cloudtrail.api_version"] = "apiVersion", ["aws.cloudtrail.request_id"] = "requestID",
  ["aws.cloudtrail.user_identity.type"] = "userIdentity.type",
  ["aws.cloudtrail.user_identity.arn"] = "userIdentity.arn",
  ["aws.cloudtrail.user_identity.access_key_id"] = "userIdentity.accessKeyId",
  ["aws.cloudtrail.user_identity.invoked_by"] = "userIdentity.invokedBy",
  ["user_agent.original"] = "userAgent", ["source.address"] = "sourceIPAddress",
}) do
  M.RAW_PATHS[field] = { path = path, read = ON_DEMAND[field] }
end
M.RAW_RECORD = is_cloudtrail

-- Java String.length() (UTF-16 units) is at most the byte length; count exactly only near the limit.
local function java_length(s)
  local n = #s
  if n < MAX_KEYWORD then return n end
  local cps = utf8.len(s)
  if not cps then return n end
  local astral = 0
  for p = 1, n do
    if byte(s, p) >= 0xF0 then astral = astral + 1 end
  end
  return cps + astral
end

-- related.hosts, in the pipeline's order: tls.client.server_name (not an AWS endpoint), a
-- source.address that is a host name rather than an IP (not an AWS service, not "AWS
-- Internal"), requestParameters.computerName, then EC2 instance ids ("i-" and at least 10
-- characters) from resource ARNs (":instance/"), and from requestParameters and
-- responseElements: instanceId, target, resourceId, instanceIds[], instancesSet.items[].instanceId.
-- request and response: those two as cleaned for flattened (cleaning them again, a deep copy
-- of each, was a tenth of normalizing a large record).
local HOST_KEYS = { "instanceId", "target", "resourceId" }
local function related_hosts(doc, src_ip, address, resources, request, response)
  local hosts = {}
  local server = doc.tls and doc.tls.client and doc.tls.client.server_name
  if type(server) == "string" and sub(server, -14) ~= ".amazonaws.com" then add_unique(hosts, server) end
  if src_ip == nil and type(address) == "string" and find(address, ".", 1, true) and not find(address, " ", 1, true)
    and sub(address, -14) ~= ".amazonaws.com" then
    add_unique(hosts, address)
  end
  request, response = tbl(request), tbl(response)
  if request then add_unique(hosts, jtext(request.computerName)) end
  local function instance(v)
    if type(v) == "string" and #v >= 10 and sub(v, 1, 2) == "i-" then add_unique(hosts, v) end
  end
  if type(resources) == "table" then
    for _, r in ipairs(resources) do
      local arn = type(r) == "table" and r.arn
      if type(arn) == "string" and find(arn, ":instance/", 1, true) then instance(arn:match("([^/]*)$")) end
    end
  end
  for _, container in ipairs({ request or false, response or false }) do
    if container then
      for _, k in ipairs(HOST_KEYS) do instance(container[k]) end
      if type(container.instanceIds) == "table" then
        for _, id in ipairs(container.instanceIds) do instance(id) end
      end
      local set = tbl(container.instancesSet)
      if set and type(set.items) == "table" then
        for _, item in ipairs(set.items) do
          if type(item) == "table" then instance(item.instanceId) end
        end
      end
    end
  end
  return hosts
end

-- The entity fields of entity.map's answer but user.* and related.entity.
local function place_entities(doc, m)
  if m.actor then doc.actor = { entity = { id = m.actor } } end
  if m.target then doc.target = { entity = { id = m.target } } end
  local host = {}
  if m.host_target or m.host_target_id then
    host.target = { entity = m.host_target and { id = m.host_target } or nil, id = m.host_target_id }
  end
  if m["host.entity.id"] then host.entity = { id = m["host.entity.id"] } end
  if next(host) then doc.host = host end
  local service_entity, service_target = m["service.entity.id"], m.service_target
  if service_entity or service_target then
    local service = doc.service or {}
    if service_entity then service.entity = { id = service_entity } end
    if service_target then service.target = { entity = { id = service_target } } end
    doc.service = service
  end
  if m["entity.id"] or m.generic_target then
    doc.entity = { id = m["entity.id"], target = m.generic_target and { id = m.generic_target } or nil }
  end
end

function M.normalize(rec, ctx)
  if not is_cloudtrail(rec) then return rec end
  local now = now_of(ctx)

  local event = { kind = "event", ingested = now }
  local ct = {}            -- aws.cloudtrail
  local ui = {}            -- aws.cloudtrail.user_identity
  local sc = {}            -- aws.cloudtrail.user_identity.session_context
  local issuer = {}        -- ...session_context.session_issuer
  local user = {}
  local account = {}
  local cloud = { provider = "aws", account = account }
  local related_user = {}
  local doc = {
    event = event,
    aws = { cloudtrail = ct },
    cloud = cloud,
    data_stream = { dataset = "aws.cloudtrail" },
    ecs = { version = "8.11.0" },
  }
  event.dataset, event.module = "aws.cloudtrail", "aws"

  doc["@timestamp"] = event_time(rec, now)
  ct.event_version = ON_DEMAND["aws.cloudtrail.event_version"](rec)

  -- userIdentity
  local uid = tbl(rec.userIdentity)
  local session = uid and tbl(uid.sessionContext)
  local attributes = session and tbl(session.attributes)
  local iss = session and tbl(session.sessionIssuer)
  local obo = uid and tbl(uid.onBehalfOf)
  local utype = uid and val(uid.type)
  ui.type = utype

  -- AWS services acting on their own (AWSService, or a service-linked role) get service.name
  -- and no user.*.
  local service_name
  if uid then
    service_name = service_name_of(uid, utype, iss)
    if service_name then doc.service = { name = service_name } end

    if not service_name then user.id = val(uid.principalId) end
    ui.arn = val(uid.arn)
    account.id = val(uid.accountId)
    ui.access_key_id = val(uid.accessKeyId)
    if attributes then
      sc.mfa_authenticated = val(attributes.mfaAuthenticated)
      sc.creation_date = iso_date(str(attributes.creationDate))
    end
    if iss then
      issuer.type = val(iss.type)
      issuer.principal_id = val(iss.principalId)
    end

    -- Session name: the last part of an STS ARN, for related.user (and user.email if an email).
    local arn = ui.arn
    if SESSION_NAME_TYPES[utype] and type(arn) == "string" and find(arn, "^arn:[a-z0-9%-]+:sts:") then
      local session_name = arn:match("^arn:[a-z0-9%-]+:sts:.*/(.*)$")
      if session_name and session_name ~= "" then
        add_unique(related_user, session_name)
        local at = find(session_name, "@", 1, true)
        if at then
          add_unique(related_user, sub(session_name, 1, at - 1))
          user.email = session_name
        end
      end
    end

    if obo then
      local obo_user = val(obo.userId)
      local store = val(obo.identityStoreArn)
      if obo_user ~= nil or store ~= nil then
        ui.on_behalf_of = { user_id = obo_user, identity_store_arn = store }
      end
      if utype == "IdentityCenterUser" and user.id == nil then user.id = obo_user end
    end
    if iss then
      issuer.arn = val(iss.arn)
      issuer.account_id = val(iss.accountId)
    end
    ui.invoked_by = val(uid.invokedBy)
    local delegate = tbl(uid.invokedByDelegate)
    if delegate then
      local delegate_account = val(delegate.accountId)
      if delegate_account ~= nil then ui.invoked_by_delegate = { account_id = delegate_account } end
    end
    ui.credential_id = val(uid.credentialId)
    ui.identity_provider = val(uid.identityProvider)
    local scope = tbl(uid.inScopeOf)
    if scope then
      local s = {
        issuer_type = val(scope.issuerType),
        credentials_issued_to = val(scope.credentialsIssuedTo),
        source_arn = val(scope.sourceArn),
        source_account = val(scope.sourceAccount),
      }
      if next(s) then ui.in_scope_of = s end
    end
    if session then
      sc.ec2_role_delivery = val(session.ec2RoleDelivery)
      sc.source_identity = val(session.sourceIdentity)
      local web = tbl(session.webIdFederationData)
      if web then
        local w = { federated_provider = val(web.federatedProvider), attributes = clean(web.attributes) }
        if next(w) then sc.web_id_federation_data = w end
      end
      sc.assumed_root = val(session.assumedRoot)
      sc.sign_in_session_arn = val(session.signInSessionArn)
    end
    if next(issuer) then sc.session_issuer = issuer end
    if next(sc) then ui.session_context = sc end
  end
  ct.session_credential_from_console = val(rec.sessionCredentialFromConsole)
  if next(ui) then ct.user_identity = ui end

  -- What happened
  local source = str(rec.eventSource)
  if source then
    local at = find(source, ".amazonaws.com", 1, true)
    if at and at > 1 and at + 13 == #source then cloud.service = { name = sub(source, 1, at - 1) } end
  end
  event.provider = ON_DEMAND["event.provider"](rec)
  local action = ON_DEMAND["event.action"](rec)
  event.action = action
  ct.event_category = ON_DEMAND["aws.cloudtrail.event_category"](rec)

  local aed_skip
  local name_from_aed
  user.name, name_from_aed = user_name(rec)
  if name_from_aed then aed_skip = "UserName" end

  cloud.region = ON_DEMAND["cloud.region"](rec)
  local address = ON_DEMAND["source.address"](rec)
  local src_ip
  if address ~= nil then
    src_ip = source_ip(rec)
    local src = { address = address, ip = src_ip }
    local geo, as = geo_of(rec, ctx, "city"), geo_of(rec, ctx, "asn")
    if geo then
      src.geo = {}
      for k, v in next, geo do src.geo[k] = v end
      if geo.location then src.geo.location = { lat = geo.location.lat, lon = geo.location.lon } end
    end
    if as then
      src.as = { number = as.number, organization = as.organization and { name = as.organization.name } }
    end
    doc.source = src
  end
  local ua = ON_DEMAND["user_agent.original"](rec)
  if ua then
    local a = useragent.parse(ua)
    local os = a.os and { name = a.os.name, version = a.os.version, full = a.os.full }
    doc.user_agent = { original = ua, name = a.name, version = a.version, os = os, device = { name = a.device.name } }
  end
  ct.error_code = ON_DEMAND["aws.cloudtrail.error_code"](rec)
  ct.error_message = ON_DEMAND["aws.cloudtrail.error_message"](rec)

  -- requestParameters & co: Map.toString text, and the cleaned objects under flattened.
  local flattened = {}
  local cleaned = {}       -- the cleaned payloads, by CloudTrail name
  for i = 1, #PAYLOADS do
    local from, to = PAYLOADS[i][1], PAYLOADS[i][2]
    local v = rec[from]
    if v ~= nil and v ~= NULL then
      ambiguous = false
      local skip = from == "additionalEventData" and aed_skip or nil
      local raw = ctx and ctx.raw
      local cv, text
      if ORDER.eager and raw and type(v) == "table" then
        cv, text = render_scanned(v, raw, from, skip)
      else
        cv, text = render(v, nil, skip)
        if cv ~= nil and ambiguous and raw and not ORDER.eager then
          local node = scan_raw(raw, from)  -- only the payload whose key order matters
          if node then cv, text = render(v, node, skip) end
        end
      end
      if cv ~= nil then
        cleaned[from] = cv
        ct[to] = text
        if java_length(text) < MAX_KEYWORD then flattened[to] = cv end
      end
    end
  end

  ct.request_id = ON_DEMAND["aws.cloudtrail.request_id"](rec)
  event.id = ON_DEMAND["event.id"](rec)
  ct.event_type = ON_DEMAND["aws.cloudtrail.event_type"](rec)
  ct.api_version = ON_DEMAND["aws.cloudtrail.api_version"](rec)
  local management = val(rec.managementEvent)
  if management ~= nil then ct.management_event = jtext(management) or management end
  ct.read_only = ON_DEMAND["aws.cloudtrail.read_only"](rec)

  -- resources: ARN -> arn, accountId -> account_id, duplicates dropped via a HashMap keyed on
  -- "arn_account_type" (so the list comes out in that HashMap's order).
  local resources = val(rec.resources)
  if type(resources) ~= "table" or rawget(resources, 1) == nil then
    ct.resources = resources -- not a list: kept as is
  elseif resources ~= nil then
    local by_key, position, keys, n = {}, {}, {}, 0
    for i = 1, #resources do
      local r = resources[i]
      if type(r) == "table" and rawget(r, 1) == nil then
        local copy = {}
        for k, x in next, r do copy[k] = x end
        if copy.ARN ~= nil then copy.arn, copy.ARN = copy.ARN, nil end
        if copy.accountId ~= nil then copy.account_id, copy.accountId = copy.accountId, nil end
        local key = (jtext(copy.arn) or "") .. "_" .. (jtext(copy.account_id) or "") .. "_" .. (jtext(copy.type) or "")
        if by_key[key] == nil then
          n = n + 1
          keys[n], position[key] = key, n
        end
        by_key[key] = copy
      end
    end
    if n > 0 then
      hashmap_order(keys, n, n, position)
      local list = {}
      for i = 1, n do list[i] = by_key[keys[i]] end
      ct.resources = list
    end
  end

  ct.recipient_account_id = val(rec.recipientAccountId)
  if account.id == nil then account.id = ct.recipient_account_id end
  local shared = val(rec.sharedEventID)
  if shared == nil then shared = val(rec.sharedEventId) end
  ct.shared_event_id = shared
  ct.vpc_endpoint_id = val(rec.vpcEndpointId)
  ct.vpc_endpoint_account_id = val(rec.vpcEndpointAccountId)
  local addendum = tbl(rec.addendum)
  if addendum then
    local a = {
      reason = val(addendum.reason),
      updated_fields = val(addendum.updatedFields),
      original_request_id = val(addendum.originalRequestID),
      original_event_id = val(addendum.originalEventID),
    }
    if next(a) then ct.addendum = a end
  end

  local request = tbl(cleaned.requestParameters)
  local response = tbl(cleaned.responseElements)
  if request then
    add_unique(related_user, jtext(request.userName))
    add_unique(related_user, jtext(request.newUserName))
  end
  local response_user = response and tbl(response.user)
  if response_user then add_unique(related_user, jtext(response_user.userId)) end

  -- ConsoleLogin details
  local aed_clean = tbl(cleaned.additionalEventData)
  if action == "ConsoleLogin" and aed_clean then
    local c = {}
    if aed_clean.MobileVersion ~= nil then c.mobile_version = aed_clean.MobileVersion ~= "No" end
    c.login_to = aed_clean.LoginTo
    if aed_clean.MFAUsed ~= nil then c.mfa_used = aed_clean.MFAUsed ~= "No" end
    if next(c) then ct.console_login = { additional_eventdata = c } end
  end

  -- Categorisation and outcome
  event.type = { "info" }
  event.outcome = outcome_of(rec)
  if action ~= nil then
    local cat = CATEGORIZATION[action]
    if cat then
      local c, t = {}, {}
      for i = 1, #cat.category do c[i] = cat.category[i] end
      for i = 1, #cat.type do t[i] = cat.type[i] end
      event.category, event.type = c, t
    end
  end

  if account.id == nil then account.id = val(rec.awsAccountId) end
  if account.id == nil then cloud.account = nil end

  local response_group = response and tbl(response.group)
  local group = { id = response_group and response_group.groupId, name = request and request.groupName }
  if next(group) then doc.group = group end
  local changes = request and request.newUserName
  if changes ~= nil then user.changes = { name = changes } end
  local target = { id = response_user and response_user.userId, name = request and request.userName }
  if next(target) then user.target = target end

  local insight = clean(rec.insightDetails)
  if insight ~= nil then flattened.insight_details = insight end
  if next(flattened) then ct.flattened = flattened end

  -- TLS
  local tls_details = tbl(rec.tlsDetails)
  if tls_details and tls_details.tlsVersion ~= "tlsVersion" then
    local tls = {}
    local version = val(tls_details.tlsVersion)
    if version ~= nil then
      local v_at = type(version) == "string" and find(version, "v", 1, true)
      if v_at then
        local protocol, number = lower(sub(version, 1, v_at - 1)), sub(version, v_at + 1)
        if protocol ~= "" then tls.version_protocol = protocol end
        if number ~= "" then tls.version = number end
      else
        tls.version = version
      end
    end
    tls.cipher = val(tls_details.cipherSuite)
    local host = val(tls_details.clientProvidedHostHeader)
    if host ~= nil then tls.client = { server_name = host } end
    if next(tls) then doc.tls = tls end
    local key_exchange = val(tls_details.keyExchange)
    if key_exchange ~= nil then ct.tls_details = { key_exchange = key_exchange } end
  end

  -- user.email, related.*
  local name = user.name
  if user.email == nil and type(name) == "string" then
    local at = find(name, "@", 1, true)
    if at and at > 1 then user.email = name end
  end
  add_unique(related_user, jtext(user.id))
  add_unique(related_user, jtext(name))
  add_unique(related_user, jtext(changes))
  add_unique(related_user, jtext(ui.on_behalf_of and ui.on_behalf_of.user_id))
  local entities = entity_mapping_on(ctx) and entity.mapped(rec) or nil
  if entities then
    if entities.user_target then
      user.target = user.target or {}
      user.target.entity = { id = entities.user_target }
    end
    if entities["user.entity.id"] then user.entity = { id = entities["user.entity.id"] } end
  end
  if next(user) then doc.user = user end
  local related = {}
  if entities then
    related.entity = entities.related
    place_entities(doc, entities)
  end
  if related_user[1] then related.user = related_user end
  local ips = {}
  add_unique(ips, src_ip)
  local sed = tbl(rec.serviceEventDetails)
  local sed_ip = sed and str(sed.sourceIpAddress)
  if sed_ip and is_ip(sed_ip) then add_unique(ips, sed_ip) end
  if ips[1] then related.ip = ips end
  local hosts = related_hosts(doc, src_ip, address, ct.resources, cleaned.requestParameters,
    cleaned.responseElements)
  if hosts[1] then related.hosts = hosts end
  if next(related) then doc.related = related end

  return doc
end

return M
