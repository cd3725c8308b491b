-- examples/make-examples.lua: regenerate the sample logs in examples/ from tests/fixtures/.
--
-- Run from the repository root:   lua5.4 examples/make-examples.lua
--
-- Writes
--   examples/cloudtrail/stratus-red-team.ndjson          every real Stratus Red Team record, verbatim
--   examples/cloudtrail/bedrock-denied-derived.ndjson    denied variants of the Stratus Bedrock calls
--   examples/s3/<CloudTrail object key>.json.gz          a CloudTrail S3 object: Stratus Bedrock + 2 derived
--   examples/ecs/bedrock-ecs.ndjson                      Elastic Agent ECS documents (nested and dotted)
--
-- The output is reproducible: fixed ids and times, key order kept from the source (new objects get
-- sorted keys), and `gzip -n` (no name or time stamp in the header). examples/NOTICE.md says where
-- each file comes from and exactly what was changed.
--
-- JSON is handled here rather than with lua-cjson so that real events keep their exact bytes:
-- cjson 2.1.0 escapes "/" and cannot tell [] from {}, and Stratus strings contain escapes such as
-- \u0026 that a decode/encode round trip would rewrite. Real events are only minified (whitespace
-- outside strings dropped); edited ones go through an order-keeping decoder and an encoder that
-- re-emits every untouched string and number with its original bytes.

local STRATUS_DIR = "tests/fixtures/stratus-red-team/"
local CONVERSE_EXPECTED = "tests/fixtures/elastic-cloudtrail-pipeline/pipeline/test-converse-json.log-expected.json"

local OUT_STRATUS = "examples/cloudtrail/stratus-red-team.ndjson"
local OUT_DERIVED = "examples/cloudtrail/bedrock-denied-derived.ndjson"
local OUT_S3 = "examples/s3/123456789012_CloudTrail_us-east-1_20250326T1645Z_derived.json" -- gzip adds .gz
local OUT_ECS = "examples/ecs/bedrock-ecs.ndjson"

------------------------------------------------------------------------------------------------
-- Files

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error("read " .. err, 2) end
  local text = f:read("a")
  f:close()
  return text
end

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then error("write " .. err, 2) end
  assert(f:write(text))
  assert(f:close())
end

local function run(command)
  local ok, how, code = os.execute(command)
  if not ok then error(("command failed (%s %s): %s"):format(how, code, command), 2) end
end

-- The *.json files of dir, sorted by name (byte order), so the output does not depend on the locale.
local function json_files(dir)
  local p = assert(io.popen("ls -1 '" .. dir .. "'"))
  local names = {}
  for name in p:lines() do
    if name:sub(-5) == ".json" then names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  assert(#names > 0, "no .json files in " .. dir)
  return names
end

------------------------------------------------------------------------------------------------
-- JSON text: minify and split

-- Drop whitespace outside strings; everything else (escapes included) is kept byte for byte.
local function minify(text)
  local out, n = {}, 0
  local i, len = 1, #text
  while i <= len do
    local c = text:sub(i, i)
    if c == '"' then
      local j = i + 1
      while true do
        local d = text:sub(j, j)
        if d == "" then error("unterminated string at byte " .. i) end
        if d == "\\" then j = j + 2
        elseif d == '"' then break
        else j = j + 1 end
      end
      n = n + 1; out[n] = text:sub(i, j)
      i = j + 1
    elseif c == " " or c == "\t" or c == "\n" or c == "\r" then
      i = i + 1
    else
      local j = text:find('[%s"]', i) or len + 1
      n = n + 1; out[n] = text:sub(i, j - 1)
      i = j
    end
  end
  return table.concat(out)
end

-- The elements of a minified top-level array, or the text itself when it is a single object.
local function split_top(min)
  local first = min:sub(1, 1)
  if first == "{" then return { min } end
  assert(first == "[" and min:sub(-1) == "]", "expected a JSON array or object")
  local items, depth, start, i = {}, 0, 2, 2
  while i < #min do
    local c = min:sub(i, i)
    if c == '"' then
      repeat
        i = i + 1
        local d = min:sub(i, i)
        if d == "\\" then i = i + 1 end
      until d == '"'
    elseif c == "{" or c == "[" then depth = depth + 1
    elseif c == "}" or c == "]" then depth = depth - 1
    elseif c == "," and depth == 0 then
      items[#items + 1] = min:sub(start, i - 1)
      start = i + 1
    end
    i = i + 1
  end
  if start < #min then items[#items + 1] = min:sub(start, #min - 1) end
  return items
end

------------------------------------------------------------------------------------------------
-- JSON values that keep their source form
--
-- decode() gives plain Lua values: objects and arrays are tables, strings and numbers are Lua
-- strings and numbers, null is NULL. What plain tables cannot hold sits in INFO[table]: whether it
-- is an array, the object's key order, and the source token of each string or number field, which
-- encode() re-emits while the field still holds the value it was decoded to.

local NULL = setmetatable({}, { __name = "null" })
local INFO = setmetatable({}, { __mode = "k" })

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function decode_string(tok)
  local s = tok:sub(2, -2)
  s = s:gsub("\\u([dD][89abAB]%x%x)\\u([dD][c-fC-F]%x%x)", function(hi, lo)
    return utf8.char(0x10000 + (tonumber(hi, 16) - 0xD800) * 0x400 + (tonumber(lo, 16) - 0xDC00))
  end)
  s = s:gsub("\\u(%x%x%x%x)", function(h) return utf8.char(tonumber(h, 16)) end)
  return (s:gsub("\\(.)", function(c) return assert(ESCAPES[c], "bad escape \\" .. c) end))
end

local function decode(min)
  local pos = 1
  local value

  local function token()  -- a string, number or literal starting at pos: its text and Lua value
    local c = min:sub(pos, pos)
    if c == '"' then
      local j = pos + 1
      while min:sub(j, j) ~= '"' do j = j + (min:sub(j, j) == "\\" and 2 or 1) end
      local tok = min:sub(pos, j)
      pos = j + 1
      return tok, decode_string(tok)
    end
    local tok = assert(min:match("^[-+%w.]+", pos), "unexpected character at byte " .. pos)
    pos = pos + #tok
    if tok == "true" then return tok, true end
    if tok == "false" then return tok, false end
    if tok == "null" then return tok, NULL end
    return tok, math.tointeger(tonumber(tok)) or assert(tonumber(tok), "bad number " .. tok)
  end

  local function member(raw, key)  -- parse a value; remember the token of a scalar under key
    local c = min:sub(pos, pos)
    if c == "{" or c == "[" then return value() end
    local tok, v = token()
    if type(v) == "string" or type(v) == "number" then raw[key] = { value = v, token = tok } end
    return v
  end

  function value()
    local c = min:sub(pos, pos)
    local t, info = {}, { raw = {} }
    INFO[t] = info
    if c == "{" then
      info.keys = {}
      pos = pos + 1
      if min:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        local _, key = token()
        assert(min:sub(pos, pos) == ":", "expected ':' at byte " .. pos)
        pos = pos + 1
        info.keys[#info.keys + 1] = key
        t[key] = member(info.raw, key)
        c = min:sub(pos, pos)
        pos = pos + 1
        if c == "}" then return t end
        assert(c == ",", "expected ',' or '}' at byte " .. pos - 1)
      end
    elseif c == "[" then
      info.array = true
      pos = pos + 1
      if min:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = member(info.raw, #t + 1)
        c = min:sub(pos, pos)
        pos = pos + 1
        if c == "]" then return t end
        assert(c == ",", "expected ',' or ']' at byte " .. pos - 1)
      end
    end
    local _, v = token()
    return v
  end

  local v = value()
  assert(pos == #min + 1, "trailing text at byte " .. pos)
  return v
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                    ["\b"] = "\\b", ["\f"] = "\\f" }
    return named[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

-- Minified JSON. Decoded tables keep their key order and source tokens; new tables are arrays when
-- they are non-empty sequences, else objects with sorted keys.
local function encode(v, raw)
  local ty = type(v)
  if v == NULL then return "null"
  elseif ty == "boolean" then return tostring(v)
  elseif ty == "string" or ty == "number" then
    if raw and raw.value == v and math.type(raw.value) == math.type(v) then return raw.token end
    if ty == "string" then return encode_string(v) end
    if math.type(v) == "integer" then return ("%d"):format(v) end
    for digits = 14, 17 do  -- the shortest form that reads back as the same number
      local s = ("%." .. digits .. "g"):format(v)
      if tonumber(s) == v then return s end
    end
  end
  assert(ty == "table", "cannot encode a " .. ty)
  local info = INFO[v] or { raw = {} }
  local parts = {}
  if info.array or (not info.keys and #v > 0) then
    for i = 1, #v do parts[i] = encode(v[i], info.raw[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = info.keys
  if not keys then
    keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
  end
  for _, k in ipairs(keys) do
    if v[k] ~= nil then parts[#parts + 1] = encode_string(k) .. ":" .. encode(v[k], info.raw[k]) end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Set (or, with nil, remove) a field of a decoded object. A new key goes where it sorts, the way
-- the Stratus records order theirs.
local function set(obj, key, v)
  local keys = assert(INFO[obj] and INFO[obj].keys, "set: not a decoded object")
  if obj[key] == nil and v ~= nil then
    local at = #keys + 1
    for i, k in ipairs(keys) do
      if k > key then at = i; break end
    end
    table.insert(keys, at, key)
  elseif v == nil then
    for i, k in ipairs(keys) do
      if k == key then table.remove(keys, i); break end
    end
  end
  obj[key] = v
end

-- A deep copy that keeps key order and source tokens.
local function clone(v)
  if type(v) ~= "table" or v == NULL then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = clone(x) end
  local info = INFO[v]
  if info then
    local raw = {}
    for k, r in pairs(info.raw) do raw[k] = r end
    INFO[t] = { array = info.array, keys = info.keys and table.move(info.keys, 1, #info.keys, 1, {}), raw = raw }
  end
  return t
end

------------------------------------------------------------------------------------------------
-- 1. The real Stratus Red Team records, verbatim, one per line

local stratus = {}      -- { text = minified record, event = decoded, file = name }, in file order
local by_id = {}        -- eventID -> first record with that id

for _, name in ipairs(json_files(STRATUS_DIR)) do
  for _, text in ipairs(split_top(minify(read_file(STRATUS_DIR .. name)))) do
    local event = decode(text)
    assert(encode(event) == text, name .. ": the JSON codec does not round-trip " .. tostring(event.eventID))
    stratus[#stratus + 1] = { text = text, event = event, file = name }
    by_id[event.eventID] = by_id[event.eventID] or event
  end
end

local lines = {}
for i, r in ipairs(stratus) do lines[i] = r.text end
write_file(OUT_STRATUS, table.concat(lines, "\n") .. "\n")

------------------------------------------------------------------------------------------------
-- 2. Denied variants of the Stratus Bedrock calls

local PFME = by_id["4031b2d2-5e47-4d71-9eda-4f22702c45f3"]          -- PutFoundationModelEntitlement
local USE_CASE = by_id["8452e2fb-1252-460b-8f58-d3f5333c2630"]      -- PutUseCaseForModelAccess
local AGREEMENT = by_id["db9c43df-ae6f-4db3-8298-f5f779f74f4d"]     -- CreateFoundationModelAgreement
local INVOKE = by_id["51d580ea-04f5-421c-b733-b5e4ec485a6e"]        -- InvokeModel
local GET_SECRET = by_id["b9c3d881-1e77-426c-abd3-5ca20d903380"]    -- secretsmanager GetSecretValue
assert(PFME and USE_CASE and AGREEMENT and INVOKE and GET_SECRET, "a Stratus source event is missing")

-- errorMessage as AWS writes it: no IAM policy allows the action, or an SCP denies it.
local function error_message(code, arn, action, resource)
  if code == "AccessDenied" then
    return ("User: %s is not authorized to perform: %s with an explicit deny in a service control policy")
      :format(arn, action)
  end
  return ("User: %s is not authorized to perform: %s on resource: %s"
    .. " because no identity-based policy allows the %s action"):format(arn, action, resource, action)
end

-- Bedrock resource-policy calls are not in the Stratus data: they are made from the
-- PutFoundationModelEntitlement record (same caller, region, TLS) with the Bedrock API's parameters.
local REGION, ACCOUNT = PFME.awsRegion, PFME.recipientAccountId
local CUSTOM_MODEL_ARN = ("arn:aws:bedrock:%s:%s:custom-model/amazon.titan-text-express-v1:0:8k/2xq7k9v4m1pz")
  :format(REGION, ACCOUNT)
local CROSS_ACCOUNT_POLICY = '{"Version":"2012-10-17","Statement":[{"Sid":"ShareWithPartner","Effect":"Allow",'
  .. '"Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":["bedrock:InvokeModel","bedrock:GetCustomModel"],'
  .. '"Resource":"' .. CUSTOM_MODEL_ARN .. '"}]}'
local SECRET_ARN = GET_SECRET.requestParameters.secretId
local SECRET_POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
  .. '"Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}'

local FOUNDATION_MODEL = "*"  -- the model-access actions take no resource ARN in IAM
local BEDROCK_ACTION = {
  PutFoundationModelEntitlement = { from = PFME, resource = FOUNDATION_MODEL },
  PutUseCaseForModelAccess = { from = USE_CASE, resource = FOUNDATION_MODEL },
  CreateFoundationModelAgreement = { from = AGREEMENT, resource = FOUNDATION_MODEL },
  PutResourcePolicy = { from = PFME, resource = CUSTOM_MODEL_ARN,
                        params = { resourceArn = CUSTOM_MODEL_ARN, resourcePolicy = CROSS_ACCOUNT_POLICY } },
  DeleteResourcePolicy = { from = PFME, resource = CUSTOM_MODEL_ARN, params = { resourceArn = CUSTOM_MODEL_ARN } },
  InvokeModel = { from = INVOKE, resource = ("arn:aws:bedrock:%s::foundation-model/%s")
                    :format(INVOKE.awsRegion, INVOKE.requestParameters.modelId) },
}

-- A failed call made from a real record: new eventID, requestID and eventTime, the error fields
-- (errorMessage given, or AWS's denial text), responseElements null, and the given parameters.
local function failed(v)
  local e = clone(v.from)
  set(e, "eventName", v.action)
  set(e, "eventID", v.eventID)
  set(e, "requestID", v.requestID)
  set(e, "eventTime", v.eventTime)
  set(e, "errorCode", v.code)
  set(e, "errorMessage", v.message
    or error_message(v.code, e.userIdentity.arn, v.iam_action or "bedrock:" .. v.action, v.resource))
  set(e, "responseElements", NULL)
  if v.params then set(e, "requestParameters", v.params) end
  if v.readOnly ~= nil then set(e, "readOnly", v.readOnly) end
  return e
end

local function denied(action, code, eventID, requestID, eventTime)
  local a = assert(BEDROCK_ACTION[action], action)
  return failed { from = a.from, action = action, code = code, resource = a.resource, params = a.params,
                  eventID = eventID, requestID = requestID, eventTime = eventTime }
end

local derived = {
  -- one alert each (model-access rule: 6, resource-policy rule: 4)
  denied("PutFoundationModelEntitlement", "AccessDeniedException",
    "b59279a6-d53d-4f9f-b9fb-7d91e7bdf445", "3d397e6b-8b5f-4b5e-a8b4-09cef49101cb", "2024-10-17T20:31:02Z"),
  denied("PutFoundationModelEntitlement", "AccessDenied",
    "910da690-9dc0-4aa0-beda-769a99ac4920", "fc127c94-1f35-4eff-9387-565c5b335be4", "2024-10-17T20:31:09Z"),
  denied("PutUseCaseForModelAccess", "AccessDeniedException",
    "33f04e4e-d745-4095-be02-608d6ba327cc", "2acb40e1-80e7-484f-ad04-6ac07af68981", "2024-10-17T20:31:15Z"),
  denied("PutUseCaseForModelAccess", "AccessDenied",
    "d262bf8e-b6b0-4188-bad1-fad84fd1bec1", "8e3668d3-2a8f-46ba-a9d5-933758354df8", "2024-10-17T20:31:21Z"),
  denied("CreateFoundationModelAgreement", "AccessDeniedException",
    "9ae23cb4-a485-4386-a761-aebe4635154b", "7cfe08b3-8363-4a5b-93f8-a8d70c9b4bc8", "2024-10-17T20:31:28Z"),
  denied("CreateFoundationModelAgreement", "AccessDenied",
    "db963786-67b7-4c5f-b811-0d6cbaf11258", "bfc8d5e1-fa34-4d6e-b568-cfa1a0e99c09", "2024-10-17T20:31:34Z"),
  denied("PutResourcePolicy", "AccessDeniedException",
    "b6a6d7f0-4a9e-4deb-86aa-70d2c22b975b", "9d7d55de-e763-4de4-9130-fba7bcae2b1d", "2024-10-17T20:32:03Z"),
  denied("PutResourcePolicy", "AccessDenied",
    "40b623e3-fa71-4c20-847b-5fbf38a24b22", "dd22a3d2-37e9-4a48-b25a-21e5721e2e2e", "2024-10-17T20:32:10Z"),
  denied("DeleteResourcePolicy", "AccessDeniedException",
    "7947bf61-d21d-4602-a30a-2374507cb81f", "3ebbd127-fa94-472e-95a2-f9e21cc42eea", "2024-10-17T20:32:16Z"),
  denied("DeleteResourcePolicy", "AccessDenied",
    "70b6409a-14d5-4257-b874-5c5b3d5db3be", "e49abb66-7975-4753-833b-9070f51c3b17", "2024-10-17T20:32:22Z"),

  -- no alert: denied, but not an action of either rule
  denied("InvokeModel", "AccessDeniedException",
    "0c9b089c-70ac-494a-805b-9f9840bb1003", "d5cacbe6-26b6-488b-a651-1f2510980cc1", "2024-10-17T20:32:40Z"),
  -- no alert: PutResourcePolicy denied on Secrets Manager (from the Stratus GetSecretValue record)
  failed { from = GET_SECRET, action = "PutResourcePolicy", code = "AccessDeniedException",
           iam_action = "secretsmanager:PutResourcePolicy", resource = SECRET_ARN, readOnly = false,
           params = { secretId = SECRET_ARN, resourcePolicy = SECRET_POLICY, blockPublicPolicy = true },
           eventID = "1acf1a6f-b5d8-42bf-a4fb-7c82816e44a2", requestID = "ee2d3423-dd7d-4372-95a1-17a5523a3e09",
           eventTime = "2024-07-31T12:37:15Z" },
  -- no alert: failed, but not denied
  failed { from = PFME, action = "PutFoundationModelEntitlement", code = "ValidationException",
           message = "The provided model identifier is invalid.",
           params = { modelId = "anthropic.claude-9-sonnet-v1:0" },
           eventID = "be708cd4-3fa8-4bd4-8ef8-5f81681bf809", requestID = "9d60ac1d-ceb3-4bd1-96a4-baa54c3f7d7c",
           eventTime = "2024-10-17T20:32:47Z" },
}

lines = {}
for i, e in ipairs(derived) do lines[i] = encode(e) end
write_file(OUT_DERIVED, table.concat(lines, "\n") .. "\n")

------------------------------------------------------------------------------------------------
-- 3. A CloudTrail S3 object: every real Stratus Bedrock record, plus one denied variant per rule

local records = {}
for _, r in ipairs(stratus) do
  if r.event.eventSource == "bedrock.amazonaws.com" then records[#records + 1] = r.text end
end
records[#records + 1] = encode(denied("PutFoundationModelEntitlement", "AccessDeniedException",
  "4316f3c3-f6dd-42c1-9ff0-47161cc1ef15", "d294bb43-ed1e-4606-827b-db329a615112", "2024-10-17T20:33:05Z"))
records[#records + 1] = encode(denied("PutResourcePolicy", "AccessDeniedException",
  "8e10453d-cd9b-466b-a369-a7937f3ab4ce", "066f67af-a677-47cc-82d9-b41e6a773faa", "2024-10-17T20:33:11Z"))
write_file(OUT_S3, '{"Records":[' .. table.concat(records, ",") .. "]}")
run("gzip -n -9 -f '" .. OUT_S3 .. "'")

------------------------------------------------------------------------------------------------
-- 4. ECS documents as Elastic Agent stores them

-- The real Converse document of Elastic's pipeline tests, unchanged.
local converse_text = minify(read_file(CONVERSE_EXPECTED))
local converse = decode(converse_text).expected[1]
assert(converse["event.action"] == nil and converse.event.action == "Converse")

-- A denied call by the same EC2 instance role, from the same address and client, as the
-- aws.cloudtrail pipeline writes it (nested objects), in account 123456789012.
local ECS_ACCOUNT = "123456789012"
local ECS_REGION = converse.cloud.region
local INSTANCE = "i-03cd6b2a7eb4bf3ae"
local ROLE = "private-ec2-instance-role"
local ROLE_ARN = ("arn:aws:iam::%s:role/%s"):format(ECS_ACCOUNT, ROLE)
local SESSION_ARN = ("arn:aws:sts::%s:assumed-role/%s/%s"):format(ECS_ACCOUNT, ROLE, INSTANCE)
local ROLE_ID = "AROAQ3EGUJ2YPJMZ5R6TV"
local ECS_MODEL = converse.aws.cloudtrail.flattened.request_parameters.modelId
local ECS_CUSTOM_MODEL_ARN = ("arn:aws:bedrock:%s:%s:custom-model/amazon.titan-text-express-v1:0:8k/7hq2c5n8w3rt")
  :format(ECS_REGION, ECS_ACCOUNT)
local ECS_POLICY = '{"Version":"2012-10-17","Statement":[{"Sid":"ShareWithPartner","Effect":"Allow",'
  .. '"Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":["bedrock:InvokeModel","bedrock:GetCustomModel"],'
  .. '"Resource":"' .. ECS_CUSTOM_MODEL_ARN .. '"}]}'

-- Java's Map.toString, as the pipeline renders aws.cloudtrail.request_parameters.
local function map_to_string(params, order)
  local parts = {}
  for i, k in ipairs(order) do parts[i] = k .. "=" .. params[k] end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function plain(v)  -- a decoded value as a new table (re-encoded with sorted keys)
  if type(v) ~= "table" or v == NULL then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = plain(x) end
  return t
end

local function ecs_denied(d)
  local target = d.params.modelId or d.params.resourceArn
  return {
    ["@timestamp"] = d.time .. ".000Z",
    actor = { entity = { id = { SESSION_ARN } } },
    aws = { cloudtrail = {
      error_code = d.code,
      error_message = error_message(d.code, SESSION_ARN, "bedrock:" .. d.action, d.resource),
      event_category = "Management",
      event_type = "AwsApiCall",
      event_version = "1.09",
      flattened = { request_parameters = d.params },
      read_only = false,
      recipient_account_id = ECS_ACCOUNT,
      request_id = d.requestID,
      request_parameters = map_to_string(d.params, d.order),
      user_identity = {
        access_key_id = "ASIAQ3EGUJ2YHN7K4XLD",
        arn = SESSION_ARN,
        session_context = {
          creation_date = converse.aws.cloudtrail.user_identity.session_context.creation_date,
          mfa_authenticated = "false",
          session_issuer = { account_id = ECS_ACCOUNT, arn = ROLE_ARN, principal_id = ROLE_ID, type = "Role" },
        },
        type = "AssumedRole",
      },
    } },
    cloud = { account = { id = ECS_ACCOUNT }, provider = "aws", region = ECS_REGION },
    data_stream = { dataset = "aws.cloudtrail", namespace = "default", type = "logs" },
    ecs = { version = converse.ecs.version },
    event = {
      action = d.action,
      category = { "api" },
      dataset = "aws.cloudtrail",
      id = d.eventID,
      ingested = d.ingested,
      kind = "event",
      module = "aws",
      outcome = "failure",
      provider = "bedrock.amazonaws.com",
    },
    input = { type = "aws-s3" },
    related = {
      entity = { ROLE, ROLE_ARN, "ASIAQ3EGUJ2YHN7K4XLD", target, SESSION_ARN },
      user = { ROLE_ID .. ":" .. INSTANCE, ROLE, INSTANCE },
    },
    source = plain(converse.source),
    tags = { "forwarded", "aws-cloudtrail", "actor_target_mapping" },
    target = { entity = { id = { target } } },
    tls = {
      cipher = converse.tls.cipher,
      client = { server_name = "bedrock." .. ECS_REGION .. ".amazonaws.com" },
      version = converse.tls.version,
      version_protocol = converse.tls.version_protocol,
    },
    user = {
      changes = { name = INSTANCE },
      entity = { id = { SESSION_ARN } },
      id = ROLE_ID .. ":" .. INSTANCE,
      name = ROLE,
    },
    user_agent = plain(converse.user_agent),
  }
end

-- The same document with dotted keys ({"event.action": ...}), as some shippers write them. The
-- flattened request parameters stay one object field under their dotted name.
local function dotted(doc)
  local out = {}
  local function walk(t, prefix)
    for k, v in pairs(t) do
      local name = prefix .. k
      if type(v) == "table" and #v == 0 and name ~= "aws.cloudtrail.flattened.request_parameters" then
        walk(v, name .. ".")
      else
        out[name] = v
      end
    end
  end
  walk(doc, "")
  return out
end

local ecs = {
  converse_text:match('^{"expected":%[(.*)%]}$'),   -- verbatim: its bytes, not a re-encoding
  -- model-access rule
  encode(ecs_denied { action = "PutFoundationModelEntitlement", code = "AccessDeniedException",
    resource = FOUNDATION_MODEL, params = { modelId = ECS_MODEL }, order = { "modelId" },
    eventID = "7d14aa35-c0e1-4881-9c5b-7a745092af08", requestID = "9906795b-d18e-4e0a-b998-8648881be2bd",
    time = "2024-10-29T15:58:12", ingested = "2024-10-29T16:03:40.118Z" }),
  -- resource-policy rule
  encode(ecs_denied { action = "PutResourcePolicy", code = "AccessDeniedException",
    resource = ECS_CUSTOM_MODEL_ARN, params = { resourceArn = ECS_CUSTOM_MODEL_ARN, resourcePolicy = ECS_POLICY },
    order = { "resourceArn", "resourcePolicy" },
    eventID = "0d04d3ff-53f8-494b-8ba4-2c4a2eb82724", requestID = "fe2cfc0c-5059-4f0a-866b-413504721768",
    time = "2024-10-29T15:58:31", ingested = "2024-10-29T16:03:40.121Z" }),
  -- model-access rule, dotted keys
  encode(dotted(ecs_denied { action = "CreateFoundationModelAgreement", code = "AccessDenied",
    resource = FOUNDATION_MODEL, params = { modelId = ECS_MODEL }, order = { "modelId" },
    eventID = "ede24fe1-1f1d-47ab-b3c0-2f3b97bd049c", requestID = "45ffa068-3d51-40b0-9391-3f08a84e78f5",
    time = "2024-10-29T15:58:20", ingested = "2024-10-29T16:03:40.119Z" })),
  -- resource-policy rule, dotted keys
  encode(dotted(ecs_denied { action = "DeleteResourcePolicy", code = "AccessDenied",
    resource = ECS_CUSTOM_MODEL_ARN, params = { resourceArn = ECS_CUSTOM_MODEL_ARN }, order = { "resourceArn" },
    eventID = "a508ba96-f5c4-4de4-a201-bbf8ba5c991d", requestID = "570248d7-d40b-40de-827d-654ff7ddde28",
    time = "2024-10-29T15:58:44", ingested = "2024-10-29T16:03:40.124Z" })),
}
assert(ecs[1] and encode(converse) == ecs[1], "the Converse document does not round-trip")
write_file(OUT_ECS, table.concat(ecs, "\n") .. "\n")

------------------------------------------------------------------------------------------------

local distinct = {}
for _, r in ipairs(stratus) do distinct[r.event.eventID] = true end
local n_distinct = 0
for _ in pairs(distinct) do n_distinct = n_distinct + 1 end
io.stderr:write(("%s: %d records (%d distinct eventIDs)\n"):format(OUT_STRATUS, #stratus, n_distinct))
io.stderr:write(("%s: %d records\n"):format(OUT_DERIVED, #derived))
io.stderr:write(("%s.gz: %d records\n"):format(OUT_S3, #records))
io.stderr:write(("%s: %d documents\n"):format(OUT_ECS, #ecs))
