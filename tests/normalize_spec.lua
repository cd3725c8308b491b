-- Specs for scripts/normalize.lua.
--
-- 1. Conformance with Elastic's own pipeline tests: every non-blank line of
--    tests/fixtures/elastic-cloudtrail-pipeline/pipeline/*.log is normalized (with ctx.now set to
--    the test config's simulated shipper @timestamp, and ctx.raw set to the line so that keys
--    sharing a Java HashMap bucket keep their JSON order) and compared with the matching document
--    of <name>.log-expected.json, field by field, for the fields in FIELDS. Blank lines are not
--    normalized (the host never hands them over): Elastic's copy-object-json-minimal expected file
--    has a second, empty document that comes from its trailing blank line.
--
--    The expected files come from several generations of the pipeline (see the fixtures'
--    NOTICE.md and MANIFEST-full.md). A field is left out for a file only where that file's
--    expected document was produced by an older pipeline that did not do what the current
--    default.yml does; OLDER_GENERATION lists each case with its reason. In short:
--      - cloud.provider, cloud.service.name, related.ip: added by the newest generation; only the
--        four newest files have them.
--      - related.user: older generations did not add user.id or the STS session name, and the
--        "B" generation appended user.changes.name last; compared only where it is current.
--      - user.email (from an email-like user.name), ec2_role_delivery,
--        session_credential_from_console, the basic-format creation_date (ConsoleLogin's
--        "20131102T010628Z"), cloud.account.id from recipientAccountId, IdentityCenterUser's
--        user.id / on_behalf_of / credential_id, GetCallerIdentity's event.category: all newer
--        than the files that lack them.
--      - management_event: older generations kept the boolean; the current one converts it to a
--        string.
--      - converse: the "B" generation had no event.type for Converse and put the STS session name
--        in user.changes.name.
--      - assume-role-json: a very old generation stored resources as an object of arrays.
--      - copy-object-json-minimal: its test config sets `_conf.retain: minimal`, which trims
--        flattened.* to the fields detection rules need; we always keep them whole (the default).
--      - related.hosts: added by the newest generation too.
--    event.dataset and event.module are not in the expected documents: Elastic's agent adds them
--    (the data stream's constant fields), not the pipeline; AGENT_FIELDS adds them to each
--    expected document before comparing. user_agent.version: files made before Elasticsearch
--    8.16.2 end a version with an empty part in "." ("24.0."); that trailing "." is dropped
--    before comparing, as test-common-config.yml's dynamic_fields pattern allows.
--    source.geo.* and source.as.* are compared with ctx.geoip reading tests/fixtures/geoip/*.mmdb
--    (support/mmdb.lua), made to hold what Elastic's test databases give for these addresses.
--    The entity fields (ENTITY_FIELDS: related.entity, actor.entity.id, target.entity.id and the
--    type-specific *.entity.id / *.target.entity.id, entity.lua) are the pipeline's only for an event
--    tagged actor_target_mapping: a document whose tags have it is normalized with
--    ctx.actor_target_mapping = true and its entity fields compared; the others with false, and
--    must have none (their expected related.entity & co come from the older entity.yml, which ran
--    on every event). related.entity is compared as a set: the current script sorts it (a
--    TreeSet), while the expected files list it in the orders of the generations that made them
--    (sorted in one, Java HashSet order in others); the same values either way.
--    Never compared: event.original (not produced), event.created, ecs.version, tags (see the
--    header of normalize.lua).
--
-- 2. Focused unit specs.
-- 3. All Stratus Red Team detonation records normalize without error and carry the core fields.

local cjson = require "cjson"
local lfs = require "lfs"
local mmdb = require "support.mmdb"
local normalize = require "normalize"

local GEOIP = mmdb.geoip("tests/fixtures/geoip/test-asn.mmdb", "tests/fixtures/geoip/test-city.mmdb")

-- Set by Elastic's agent for the aws.cloudtrail data stream, not by the pipeline.
local AGENT_FIELDS = { event = { dataset = "aws.cloudtrail", module = "aws" } }

local PIPELINE_DIR = "tests/fixtures/elastic-cloudtrail-pipeline/pipeline/"
local STRATUS_DIR = "tests/fixtures/stratus-red-team/"
local SHIPPER_TIMESTAMP = "2021-11-11T01:02:03.123456789Z" -- test-common-config.yml's @timestamp

local FIELDS = {
  "@timestamp",
  "event.id", "event.kind", "event.provider", "event.action", "event.outcome", "event.type", "event.category",
  "cloud.provider", "cloud.region", "cloud.account.id", "cloud.service.name",
  "source.address", "source.ip",
  "event.dataset", "event.module",
  "source.geo", "source.as",
  "user_agent.original", "user_agent.name", "user_agent.version", "user_agent.os", "user_agent.device",
  "user.id", "user.name", "user.email", "user.changes.name", "user.target.name", "user.target.id",
  "group.id", "group.name",
  "service.name",
  "related.user", "related.ip", "related.hosts",
  "tls.version", "tls.version_protocol", "tls.cipher", "tls.client.server_name",
  "aws.cloudtrail.event_version", "aws.cloudtrail.event_type", "aws.cloudtrail.event_category",
  "aws.cloudtrail.error_code", "aws.cloudtrail.error_message",
  "aws.cloudtrail.request_id", "aws.cloudtrail.read_only", "aws.cloudtrail.recipient_account_id",
  "aws.cloudtrail.management_event", "aws.cloudtrail.api_version", "aws.cloudtrail.shared_event_id",
  "aws.cloudtrail.session_credential_from_console",
  "aws.cloudtrail.request_parameters", "aws.cloudtrail.response_elements",
  "aws.cloudtrail.additional_eventdata", "aws.cloudtrail.service_event_details",
  "aws.cloudtrail.flattened.request_parameters", "aws.cloudtrail.flattened.response_elements",
  "aws.cloudtrail.flattened.additional_eventdata", "aws.cloudtrail.flattened.service_event_details",
  "aws.cloudtrail.resources",
  "aws.cloudtrail.console_login.additional_eventdata",
  "aws.cloudtrail.tls_details.key_exchange",
  "aws.cloudtrail.user_identity.type",
  "aws.cloudtrail.user_identity.arn",
  "aws.cloudtrail.user_identity.access_key_id",
  "aws.cloudtrail.user_identity.invoked_by",
  "aws.cloudtrail.user_identity.credential_id",
  "aws.cloudtrail.user_identity.on_behalf_of.user_id",
  "aws.cloudtrail.user_identity.on_behalf_of.identity_store_arn",
  "aws.cloudtrail.user_identity.session_context.mfa_authenticated",
  "aws.cloudtrail.user_identity.session_context.creation_date",
  "aws.cloudtrail.user_identity.session_context.ec2_role_delivery",
  "aws.cloudtrail.user_identity.session_context.session_issuer.type",
  "aws.cloudtrail.user_identity.session_context.session_issuer.arn",
  "aws.cloudtrail.user_identity.session_context.session_issuer.account_id",
  "aws.cloudtrail.user_identity.session_context.session_issuer.principal_id",
}

-- The fields of entity.lua, compared on the documents tagged actor_target_mapping.
local ENTITY_FIELDS = {
  "related.entity", "actor.entity.id", "target.entity.id", "user.target.entity.id", "host.target.entity.id",
  "host.target.id", "service.target.entity.id", "entity.target.id", "user.entity.id", "service.entity.id",
  "host.entity.id", "entity.id",
}
local IS_ENTITY_FIELD = {}
for _, f in ipairs(ENTITY_FIELDS) do
  FIELDS[#FIELDS + 1] = f
  IS_ENTITY_FIELD[f] = true
end
-- Lists whose order is not the pipeline's to keep (see above).
local AS_SET = { ["related.entity"] = true }

-- Fields added by the newest pipeline generation, absent from files produced before it.
local NEWEST_ONLY = { "cloud.provider", "cloud.service.name", "related.ip", "related.hosts" }
local PRE_NEWEST = {
  "test-assume-role-json.log", "test-authorize-security-group-ingress-json.log", "test-console-login-json.log",
  "test-converse-json.log", "test-create-key-pair-json.log", "test-delete-bucket-json.log",
  "test-get-caller-identity-json.log", "test-get-password-data-json.log", "test-run-instances-json.log",
  "test-tls-details-json.log", "test-update-trail-json.log", "test-update-user-json.log",
  "test-us-gov-arn.log", "test-user-authentication.log",
}

-- file -> field -> why that file's expected value is not the current pipeline's.
local OLDER_GENERATION = {
  ["test-assume-role-json.log"] = {
    ["related.user"] = "no related.user in this (ecs 8.0.0) generation",
    ["aws.cloudtrail.resources"] = "this generation stored resources as an object of arrays",
  },
  ["test-console-login-json.log"] = {
    ["related.user"] = "user.id and the STS session name were not in related.user yet",
    ["aws.cloudtrail.user_identity.session_context.creation_date"] =
      "the basic_date_time_no_millis format (20131102T010628Z) was added later",
  },
  ["test-converse-json.log"] = {
    ["related.user"] = "generation B appended user.changes.name (the session name) last",
    ["user.changes.name"] = "generation B took it from the STS session name; now only from newUserName",
    ["event.type"] = "generation B had no event.type for Converse",
    ["user.entity.id"] = "generation B gave an assumed role's session ARN; now the role's ARN (the issuer)",
    ["aws.cloudtrail.user_identity.session_context.ec2_role_delivery"] = "mapped later",
  },
  ["test-create-key-pair-json.log"] = { ["related.user"] = "user.id was not in related.user yet" },
  ["test-delete-bucket-json.log"] = { ["related.user"] = "no related.user for assumed roles yet" },
  ["test-get-caller-identity-json.log"] = {
    ["related.user"] = "user.id was not in related.user yet",
    ["event.category"] = "GetCallerIdentity was categorised later",
  },
  ["test-get-password-data-json.log"] = {
    ["related.user"] = "user.id was not in related.user yet",
    ["user.email"] = "user.email from an email-like user.name was added later",
  },
  ["test-run-instances-json.log"] = {
    ["related.user"] = "user.id was not in related.user yet",
    ["user.email"] = "user.email from an email-like user.name was added later",
  },
  ["test-tls-details-json.log"] = {
    ["related.user"] = "user.id and the STS session name were not in related.user yet",
    ["user.email"] = "user.email from an email-like user.name / session name was added later",
    ["aws.cloudtrail.management_event"] = "kept as a boolean before the convert-to-string processor",
    ["aws.cloudtrail.session_credential_from_console"] = "mapped later",
    ["cloud.account.id"] = "the fallback to recipientAccountId was added later",
  },
  ["test-update-trail-json.log"] = { ["related.user"] = "user.id was not in related.user yet" },
  ["test-update-user-json.log"] = { ["related.user"] = "user.id was not in related.user yet" },
  ["test-us-gov-arn.log"] = {
    ["user.entity.id"] = "generation B gave an assumed role's session ARN; now the role's ARN (the issuer)",
    ["aws.cloudtrail.user_identity.session_context.ec2_role_delivery"] = "mapped later",
  },
  ["test-user-authentication.log"] = {
    ["related.user"] = "user.id (onBehalfOf.userId) was not in related.user yet",
    ["user.id"] = "IdentityCenterUser's onBehalfOf.userId became user.id later",
    ["aws.cloudtrail.user_identity.on_behalf_of.user_id"] = "mapped later",
    ["aws.cloudtrail.user_identity.on_behalf_of.identity_store_arn"] = "mapped later",
    ["aws.cloudtrail.user_identity.credential_id"] = "mapped later",
    ["related.entity"] = "generation B left out IdentityCenterUser's onBehalfOf.identityStoreArn",
    ["entity.id"] = "generation B had no type-specific actor field (an onBehalfOf.userId actor is entity.id)",
  },
  ["test-copy-object-json-minimal.log"] = {
    ["aws.cloudtrail.flattened.request_parameters"] = "test config sets _conf.retain: minimal",
    ["aws.cloudtrail.flattened.response_elements"] = "test config sets _conf.retain: minimal",
    ["aws.cloudtrail.flattened.additional_eventdata"] = "test config sets _conf.retain: minimal",
  },
}
for _, file in ipairs(PRE_NEWEST) do
  OLDER_GENERATION[file] = OLDER_GENERATION[file] or {}
  for _, field in ipairs(NEWEST_ONLY) do
    OLDER_GENERATION[file][field] = OLDER_GENERATION[file][field] or "added by the newest generation"
  end
end

---------------------------------------------------------------------------------------------
-- helpers
---------------------------------------------------------------------------------------------

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function list_dir(dir, suffix)
  local names = {}
  for name in lfs.dir(dir) do
    if name:sub(-#suffix) == suffix then names[#names + 1] = name end
  end
  table.sort(names)
  return names
end

-- Value at a dotted path in a nested document.
local function get(doc, path)
  local v = doc
  for part in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    v = v[part]
  end
  return v
end

local function deep_equal(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- A list as the set of its values (a sorted copy), for AS_SET's fields.
local function as_set(v)
  if type(v) ~= "table" then return v end
  local copy = {}
  for i = 1, #v do copy[i] = v[i] end
  table.sort(copy)
  return copy
end

-- Stable text for messages (sorted keys).
local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" then return tostring(v) end
  if v[1] ~= nil then
    local parts = {}
    for i = 1, #v do parts[i] = show(v[i]) end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. "=" .. show(v[k]) end
  return "{" .. table.concat(keys, ", ") .. "}"
end

-- Path of the first cjson.null (or function/userdata) found in v, or nil.
local function find_foreign(v, path)
  if type(v) == "table" then
    for k, x in pairs(v) do
      local p = find_foreign(x, path .. "." .. tostring(k))
      if p then return p end
    end
    return nil
  end
  if type(v) == "string" or type(v) == "number" or type(v) == "boolean" then return nil end
  return path
end

local function record(t)
  local base = {
    eventVersion = "1.08",
    eventTime = "2024-10-08T10:15:32Z",
    eventSource = "sts.amazonaws.com",
    eventName = "GetCallerIdentity",
    awsRegion = "us-east-1",
    sourceIPAddress = "81.2.69.144",
    userAgent = "aws-cli/2.17.60",
    eventID = "b3d7f1a2-6c4e-4d8b-8e21-5a9c0e7f4d33",
    eventType = "AwsApiCall",
    recipientAccountId = "111111111111",
  }
  for k, v in pairs(t or {}) do base[k] = v end
  return base
end

local CTX = { now = "2026-11-23T10:00:00.123Z" }

---------------------------------------------------------------------------------------------
-- 1. Elastic's pipeline tests
---------------------------------------------------------------------------------------------

describe("normalize, against Elastic's pipeline test cases,", function()
  local files = list_dir(PIPELINE_DIR, ".log")

  it("finds the 18 input files", function()
    assert.are.equal(18, #files)
  end)

  it("has 8 input events whose expected documents are tagged actor_target_mapping", function()
    local tagged = 0
    for _, file in ipairs(files) do
      local expected = cjson.decode(read_file(PIPELINE_DIR .. file .. "-expected.json")).expected
      local n = 0
      for line in io.lines(PIPELINE_DIR .. file) do
        if line:find("%S") then
          n = n + 1
          for _, tag in ipairs(expected[n].tags or {}) do
            if tag == "actor_target_mapping" then tagged = tagged + 1 end
          end
        end
      end
    end
    assert.are.equal(8, tagged)
  end)

  for _, file in ipairs(files) do
    it("matches the expected documents of " .. file, function()
      local expected = cjson.decode(read_file(PIPELINE_DIR .. file .. "-expected.json")).expected
      local skips = OLDER_GENERATION[file] or {}
      local problems, n = {}, 0
      for line in (read_file(PIPELINE_DIR .. file) .. "\n"):gmatch("([^\n]*)\n") do
        if line:find("%S") then
          n = n + 1
          local want = expected[n]
          assert.is_table(want, file .. ": no expected document for event " .. n)
          local tagged = false
          for _, tag in ipairs(want.tags or {}) do tagged = tagged or tag == "actor_target_mapping" end
          local got = normalize.normalize(cjson.decode(line),
            { now = SHIPPER_TIMESTAMP, raw = line, geoip = GEOIP, actor_target_mapping = tagged })
          want.event = want.event or {}
          for k, v in pairs(AGENT_FIELDS.event) do want.event[k] = v end
          if want.user_agent and type(want.user_agent.version) == "string" then
            want.user_agent.version = want.user_agent.version:gsub("%.$", "")
          end
          for _, field in ipairs(FIELDS) do
            if IS_ENTITY_FIELD[field] and not tagged then
              if get(got, field) ~= nil then
                problems[#problems + 1] = string.format("%s event %d: %s without the actor_target_mapping tag",
                  file, n, field)
              end
            elseif not skips[field] then
              local e, a = get(want, field), get(got, field)
              if AS_SET[field] then e, a = as_set(e), as_set(a) end
              if not deep_equal(e, a) then
                problems[#problems + 1] = string.format("%s event %d, field %s: expected %s, got %s",
                  file, n, field, show(e), show(a))
              end
            end
          end
        end
      end
      assert.is_true(n > 0, file .. " has no events")
      assert.is_true(#problems == 0, "\n" .. table.concat(problems, "\n"))
    end)
  end

  it("skips only fields that are compared (no stale OLDER_GENERATION entries)", function()
    local known = {}
    for _, f in ipairs(FIELDS) do known[f] = true end
    for file, fields in pairs(OLDER_GENERATION) do
      assert.is_truthy(lfs.attributes(PIPELINE_DIR .. file), file)
      for field in pairs(fields) do assert.is_true(known[field], file .. ": " .. field) end
    end
  end)
end)

---------------------------------------------------------------------------------------------
-- 2. Unit specs
---------------------------------------------------------------------------------------------

describe("normalize", function()
  it("maps eventSource to event.provider and cloud.service.name", function()
    local doc = normalize.normalize(record(), CTX)
    assert.are.equal("sts.amazonaws.com", doc.event.provider)
    assert.are.equal("sts", doc.cloud.service.name)
  end)

  it("maps eventName to event.action", function()
    assert.are.equal("GetCallerIdentity", normalize.normalize(record(), CTX).event.action)
  end)

  it("sets event.dataset and event.module as Elastic's agent does", function()
    local doc = normalize.normalize(record(), CTX)
    assert.are.equal("aws.cloudtrail", doc.event.dataset)
    assert.are.equal("aws", doc.event.module)
  end)

  it("parses user_agent.original into name, version, os and device", function()
    local doc = normalize.normalize(record({
      userAgent = "aws-cli/1.16.310 Python/3.8.1 Linux/5.4.0-1045-aws botocore/1.13.46" }), CTX)
    assert.are.same({ original = "aws-cli/1.16.310 Python/3.8.1 Linux/5.4.0-1045-aws botocore/1.13.46",
      name = "aws-cli", version = "1.16.310", os = { name = "Linux", version = "5.4.0", full = "Linux 5.4.0" },
      device = { name = "Spider" } }, doc.user_agent)
    doc = normalize.normalize(record({ userAgent = "console.amazonaws.com" }), CTX)
    assert.are.same({ original = "console.amazonaws.com", name = "Other", device = { name = "Other" } }, doc.user_agent)
  end)

  it("sets source.geo and source.as from ctx.geoip as the pipeline's geoip processors do", function()
    local ctx = { now = CTX.now, geoip = GEOIP }
    local doc = normalize.normalize(record({ sourceIPAddress = "89.160.20.156" }), ctx)
    assert.are.same({ city_name = "Link\u{f6}ping", continent_name = "Europe", country_iso_code = "SE",
      country_name = "Sweden", region_iso_code = "SE-E", region_name = "\u{d6}sterg\u{f6}tland County",
      location = { lat = 58.4167, lon = 15.6167 } }, doc.source.geo)
    assert.are.same({ number = 29518, organization = { name = "Bredband2 AB" } }, doc.source.as)
    doc = normalize.normalize(record({ sourceIPAddress = "216.160.83.56" }), ctx)
    assert.are.same({ number = 209 }, doc.source.as)
    -- not in the databases, not an address, or no database: nothing
    assert.is_nil(normalize.normalize(record({ sourceIPAddress = "8.8.8.8" }), ctx).source.geo)
    assert.is_nil(normalize.normalize(record({ sourceIPAddress = "ec2.amazonaws.com" }), ctx).source.as)
    doc = normalize.normalize(record({ sourceIPAddress = "89.160.20.156" }), CTX)
    assert.is_nil(doc.source.geo)
    assert.is_nil(doc.source.as)
    -- only the ASN database
    doc = normalize.normalize(record({ sourceIPAddress = "89.160.20.156" }), { now = CTX.now,
      geoip = { asn = GEOIP.asn } })
    assert.is_nil(doc.source.geo)
    assert.are.equal(29518, doc.source.as.number)
  end)

  it("fills related.hosts as the pipeline does", function()
    local doc = normalize.normalize(record({
      sourceIPAddress = "host.example.com",
      tlsDetails = { tlsVersion = "TLSv1.2", clientProvidedHostHeader = "api.example.org" },
      requestParameters = { computerName = "WIN-PC01", instanceId = "i-0123456789abcdef0",
        instancesSet = { items = { { instanceId = "i-0aaaaaaaaaaaaaaaa" }, { instanceId = "i-short" } } } },
      responseElements = { instanceIds = { "i-0123456789abcdef0", "i-0bbbbbbbbbbbbbbbb" } },
      resources = { { ARN = "arn:aws:ec2:us-east-1:111111111111:instance/i-0ccccccccccccccccc" } },
    }), CTX)
    assert.are.same({ "api.example.org", "host.example.com", "WIN-PC01", "i-0ccccccccccccccccc",
      "i-0123456789abcdef0", "i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb" }, doc.related.hosts)
    -- values the pipeline's clean-up drops ("none", "-") are no hosts
    doc = normalize.normalize(record({ sourceIPAddress = "10.0.0.1",
      requestParameters = { computerName = "none", instanceIds = { "-", "i-0dddddddddddddddd" } } }), CTX)
    assert.are.same({ "i-0dddddddddddddddd" }, doc.related.hosts)
    -- an AWS endpoint, an IP, "AWS Internal": no host
    doc = normalize.normalize(record({ sourceIPAddress = "AWS Internal",
      tlsDetails = { tlsVersion = "TLSv1.2", clientProvidedHostHeader = "sts.us-east-1.amazonaws.com" } }), CTX)
    assert.is_nil(doc.related and doc.related.hosts)
  end)

  it("sets the constant fields", function()
    local doc = normalize.normalize(record(), CTX)
    assert.are.equal("event", doc.event.kind)
    assert.are.equal("aws.cloudtrail", doc.data_stream.dataset)
    assert.are.equal("aws", doc.cloud.provider)
    assert.is_nil(doc.event.original)
  end)

  it("maps the record's identifiers", function()
    local doc = normalize.normalize(record(), CTX)
    assert.are.equal("b3d7f1a2-6c4e-4d8b-8e21-5a9c0e7f4d33", doc.event.id)
    assert.are.equal("us-east-1", doc.cloud.region)
    assert.are.equal("111111111111", doc.cloud.account.id)
    assert.are.equal("aws-cli/2.17.60", doc.user_agent.original)
    assert.are.equal("AwsApiCall", doc.aws.cloudtrail.event_type)
    assert.are.equal("1.08", doc.aws.cloudtrail.event_version)
  end)

  it("returns a new table nested by ECS field set", function()
    local rec = record()
    local doc = normalize.normalize(rec, CTX)
    assert.are_not.equal(rec, doc)
    assert.is_nil(doc["event.action"])
    assert.is_table(doc.aws.cloudtrail)
    assert.are.equal("GetCallerIdentity", rec.eventName)
  end)

  describe("user", function()
    local assumed = {
      type = "AssumedRole",
      principalId = "AROAEXAMPLE:alice@example.com",
      arn = "arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_Admin_8df5/alice@example.com",
      accountId = "111111111111",
      accessKeyId = "ASIAEXAMPLE",
      sessionContext = {
        sessionIssuer = {
          type = "Role",
          principalId = "AROAEXAMPLE",
          arn = "arn:aws:iam::111111111111:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_8df5",
          accountId = "111111111111",
          userName = "AWSReservedSSO_Admin_8df5",
        },
        attributes = { creationDate = "2024-10-08T09:00:00Z", mfaAuthenticated = "false" },
      },
    }

    it("names an assumed role's user after the role (sessionIssuer.userName), not the session", function()
      local doc = normalize.normalize(record({ userIdentity = assumed }), CTX)
      assert.are.equal("AWSReservedSSO_Admin_8df5", doc.user.name)
      assert.are.equal("AROAEXAMPLE:alice@example.com", doc.user.id)
      local ui = doc.aws.cloudtrail.user_identity
      assert.are.equal("AssumedRole", ui.type)
      assert.are.equal(assumed.arn, ui.arn)
      assert.are.equal("ASIAEXAMPLE", ui.access_key_id)
      assert.are.equal("Role", ui.session_context.session_issuer.type)
      assert.are.equal(assumed.sessionContext.sessionIssuer.arn, ui.session_context.session_issuer.arn)
      assert.are.equal("2024-10-08T09:00:00.000Z", ui.session_context.creation_date)
      assert.are.equal("false", ui.session_context.mfa_authenticated)
    end)

    it("puts an assumed role's session name in related.user and, when an email, in user.email", function()
      local doc = normalize.normalize(record({ userIdentity = assumed }), CTX)
      assert.are.equal("alice@example.com", doc.user.email)
      assert.are.same({ "alice@example.com", "alice", "AROAEXAMPLE:alice@example.com", "AWSReservedSSO_Admin_8df5" },
        doc.related.user)
    end)

    it("uses userName for an IAM user", function()
      local doc = normalize.normalize(record({ userIdentity = {
        type = "IAMUser", principalId = "AIDAEXAMPLE", userName = "bob", accountId = "222222222222",
        arn = "arn:aws:iam::222222222222:user/bob" } }), CTX)
      assert.are.equal("bob", doc.user.name)
      assert.are.equal("AIDAEXAMPLE", doc.user.id)
      assert.are.equal("222222222222", doc.cloud.account.id) -- userIdentity.accountId wins
    end)

    it("gives an AWS service actor service.name and no user", function()
      local doc = normalize.normalize(record({
        userIdentity = { type = "AWSService", invokedBy = "ec2.amazonaws.com" } }), CTX)
      assert.are.equal("ec2.amazonaws.com", doc.service.name)
      assert.are.equal("ec2.amazonaws.com", doc.aws.cloudtrail.user_identity.invoked_by)
      assert.is_nil(doc.user)
    end)

    it("treats a service-linked role as its service", function()
      local doc = normalize.normalize(record({ userIdentity = {
        type = "AssumedRole", principalId = "AROAX:session",
        arn = "arn:aws:sts::111111111111:assumed-role/AWSServiceRoleForConfig/session",
        sessionContext = { sessionIssuer = { userName = "AWSServiceRoleForConfig",
          arn = "arn:aws:iam::111111111111:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig" } },
      } }), CTX)
      assert.are.equal("config.amazonaws.com", doc.service.name)
      assert.is_nil(doc.user and doc.user.name)
      assert.is_nil(doc.user and doc.user.id)
    end)
  end)

  describe("source", function()
    local function source(address)
      return normalize.normalize(record({ sourceIPAddress = address }), CTX).source
    end

    it("sets source.ip for an IPv4 address", function()
      assert.are.same({ address = "81.2.69.144", ip = "81.2.69.144" }, source("81.2.69.144"))
    end)

    it("sets source.ip for an IPv6 address, as written", function()
      assert.are.equal("2001:DB8::1", source("2001:DB8::1").ip)
      assert.are.equal("::ffff:81.2.69.144", source("::ffff:81.2.69.144").ip)
    end)

    it("leaves source.ip out for a hostname like bedrock.amazonaws.com", function()
      assert.are.same({ address = "bedrock.amazonaws.com" }, source("bedrock.amazonaws.com"))
    end)

    it("leaves source.ip out for 'AWS Internal' and for a list of addresses", function()
      assert.are.same({ address = "AWS Internal" }, source("AWS Internal"))
      assert.is_nil(source("81.2.69.142, 192.168.10.10").ip)
    end)

    it("leaves source.ip out for IPv4 with leading zeros, as Elasticsearch rejects them", function()
      assert.are.same({ address = "035.249.253.232" }, source("035.249.253.232"))
      assert.is_nil(source("8.1.250.016").ip)
      assert.are.equal("10.0.0.0", source("10.0.0.0").ip)
    end)

    it("leaves source.ip out for octets above 255 and malformed addresses", function()
      assert.is_nil(source("256.1.1.1").ip)
      assert.is_nil(source("1.2.3").ip)
      assert.is_nil(source("1:2:3").ip)
      assert.is_nil(source("1::2::3").ip)
    end)

    it("puts source.ip in related.ip", function()
      assert.are.same({ "81.2.69.144" }, normalize.normalize(record(), CTX).related.ip)
    end)
  end)

  describe("event.outcome", function()
    it("is success without errorCode and errorMessage", function()
      assert.are.equal("success", normalize.normalize(record(), CTX).event.outcome)
    end)

    it("is failure on errorCode alone", function()
      local doc = normalize.normalize(record({ errorCode = "AccessDenied" }), CTX)
      assert.are.equal("failure", doc.event.outcome)
      assert.are.equal("AccessDenied", doc.aws.cloudtrail.error_code)
    end)

    it("is failure on errorMessage alone", function()
      local doc = normalize.normalize(record({ errorMessage = "User is not authorized" }), CTX)
      assert.are.equal("failure", doc.event.outcome)
      assert.are.equal("User is not authorized", doc.aws.cloudtrail.error_message)
    end)

    it("ignores an errorCode that the pipeline drops as empty", function()
      assert.are.equal("success", normalize.normalize(record({ errorCode = "" }), CTX).event.outcome)
      assert.are.equal("success", normalize.normalize(record({ errorCode = cjson.null }), CTX).event.outcome)
    end)

    it("is ConsoleLogin's lowercased result", function()
      local rec = record({ eventSource = "signin.amazonaws.com", eventName = "ConsoleLogin",
        responseElements = { ConsoleLogin = "Failure" },
        additionalEventData = { MobileVersion = "No", LoginTo = "https://console.aws.amazon.com/", MFAUsed = "No" } })
      local doc = normalize.normalize(rec, CTX)
      assert.are.equal("failure", doc.event.outcome)
      assert.are.same({ mobile_version = false, login_to = "https://console.aws.amazon.com/", mfa_used = false },
        doc.aws.cloudtrail.console_login.additional_eventdata)
    end)
  end)

  describe("categorisation", function()
    it("uses the pipeline's table for known actions", function()
      local doc = normalize.normalize(record({ eventSource = "iam.amazonaws.com", eventName = "CreateUser" }), CTX)
      assert.are.same({ "iam" }, doc.event.category)
      assert.are.same({ "user", "creation" }, doc.event.type)
    end)

    it("sets event.type info and no category otherwise", function()
      local doc = normalize.normalize(record({ eventName = "SomethingNew" }), CTX)
      assert.are.same({ "info" }, doc.event.type)
      assert.is_nil(doc.event.category)
    end)
  end)

  describe("@timestamp", function()
    it("comes from eventTime, with milliseconds", function()
      assert.are.equal("2024-10-08T10:15:32.000Z", normalize.normalize(record(), CTX)["@timestamp"])
    end)

    it("normalizes a non-ISO eventTime like '2025-03-26 16:43:57.000000000'", function()
      local doc = normalize.normalize(record({ eventTime = "2025-03-26 16:43:57.000000000" }), CTX)
      assert.are.equal("2025-03-26T16:43:57.000Z", doc["@timestamp"])
    end)

    it("converts offsets to UTC and keeps milliseconds only", function()
      assert.are.equal("2023-12-31T23:00:00.000Z", normalize.iso_date("2024-01-01T01:00:00+02:00"))
      assert.are.equal("2024-10-08T10:15:32.123Z", normalize.iso_date("2024-10-08T10:15:32.123456Z"))
      assert.are.equal("2013-11-02T01:06:28.000Z", normalize.iso_date("20131102T010628Z"))
      assert.is_nil(normalize.iso_date("2023-02-29T10:00:00Z"))
      assert.is_nil(normalize.iso_date("yesterday"))
    end)

    it("falls back to the ingest time when eventTime is missing or unparsable", function()
      assert.are.equal(CTX.now, normalize.normalize(record({ eventTime = cjson.null }), CTX)["@timestamp"])
      assert.are.equal(CTX.now, normalize.normalize(record({ eventTime = "garbage" }), CTX)["@timestamp"])
    end)
  end)

  describe("event.ingested", function()
    it("is ctx.now", function()
      assert.are.equal(CTX.now, normalize.normalize(record(), CTX).event.ingested)
    end)

    it("is the current UTC time without ctx", function()
      local ingested = normalize.normalize(record()).event.ingested
      assert.is_truthy(ingested:find("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), ingested)
      assert.are.equal(os.date("!%Y-%m-%d"), ingested:sub(1, 10))
    end)
  end)

  describe("request_parameters", function()
    it("is rendered as Java's Map.toString, nested maps and lists included", function()
      local line = '{"eventName":"AssumeRole","requestParameters":{"roleArn":"arn:aws:iam::1:role/r",' ..
        '"tags":[{"key":"k","value":"v"}],"durationSeconds":3600,"ids":["a","b"],"ratio":0.5,' ..
        '"big":12345678.5,"tiny":1e-5,"flag":false}}'
      local doc = normalize.normalize(cjson.decode(line), { now = CTX.now, raw = line })
      -- HashMap order (capacity 16, Java's String.hashCode; "tags" and "ratio" share a bucket,
      -- so their JSON order counts), integers without ".0", doubles as Double.toString.
      assert.are.equal("{big=1.23456785E7, flag=false, durationSeconds=3600, roleArn=arn:aws:iam::1:role/r, " ..
        "tiny=1.0E-5, ids=[a, b], tags=[{value=v, key=k}], ratio=0.5}", doc.aws.cloudtrail.request_parameters)
    end)

    it("renders modelId like Elastic does", function()
      local rec = record({ requestParameters = { modelId = "anthropic.claude-3-5-sonnet-20240620-v1:0" } })
      assert.are.equal("{modelId=anthropic.claude-3-5-sonnet-20240620-v1:0}",
        normalize.normalize(rec, CTX).aws.cloudtrail.request_parameters)
    end)

    it("drops null, '', '-', 'none' and empty objects and arrays, in the text and in flattened", function()
      local line = '{"eventName":"X","requestParameters":{"a":null,"b":"","c":"-","d":"none","e":{},"f":[],' ..
        '"g":{"h":null},"i":[null,"",{}],"j":"kept","k":0}}'
      local doc = normalize.normalize(cjson.decode(line), CTX)
      assert.are.equal("{j=kept, k=0}", doc.aws.cloudtrail.request_parameters)
      assert.are.same({ j = "kept", k = 0 }, doc.aws.cloudtrail.flattened.request_parameters)
    end)

    it("leaves request_parameters out when nothing is left", function()
      local doc = normalize.normalize(record({ requestParameters = { a = cjson.null } }), CTX)
      assert.is_nil(doc.aws.cloudtrail.request_parameters)
      assert.is_nil(doc.aws.cloudtrail.flattened)
    end)

    it("orders keys that share a HashMap bucket by ctx.raw, else by name", function()
      -- "assumedRoleId" and "arn" fall in the same bucket of a 16-slot HashMap.
      local line = '{"eventName":"AssumeRole","responseElements":{"assumedRoleId":"AROA:s","arn":"arn:x"}}'
      local with_raw = normalize.normalize(cjson.decode(line), { now = CTX.now, raw = line })
      local without = normalize.normalize(cjson.decode(line), CTX)
      assert.are.equal("{assumedRoleId=AROA:s, arn=arn:x}", with_raw.aws.cloudtrail.response_elements)
      assert.are.equal("{arn=arn:x, assumedRoleId=AROA:s}", without.aws.cloudtrail.response_elements)
    end)

    it("survives a ctx.raw that does not parse", function()
      local line = '{"eventName":"AssumeRole","responseElements":{"assumedRoleId":"AROA:s","arn":"arn:x"}}'
      local doc = normalize.normalize(cjson.decode(line), { now = CTX.now, raw = '{"responseElements":{"arn' })
      assert.are.equal("{arn=arn:x, assumedRoleId=AROA:s}", doc.aws.cloudtrail.response_elements)
    end)

    -- A worker scans the key order (in C) before it renders a payload; lua5.4 scans only after a
    -- rendering that met two keys in one bucket, and renders again. The documents must not differ.
    it("gives the same documents whether it finds the key order first or when needed", function()
      local lines = {}
      for _, file in ipairs(list_dir(PIPELINE_DIR, ".log")) do
        for line in read_file(PIPELINE_DIR .. file):gmatch("[^\n]+") do lines[#lines + 1] = line end
      end
      for _, path in ipairs({ "examples/cloudtrail/stratus-red-team.ndjson",
                              "examples/cloudtrail/bedrock-denied-derived.ndjson" }) do
        for line in read_file(path):gmatch("[^\n]+") do lines[#lines + 1] = line end
      end
      lines[#lines + 1] = '{"eventName":"AssumeRole","responseElements":{"assumedRoleId":"AROA:s","arn":"arn:x"}}'
      local eager, differ = normalize.ORDER.eager, {}
      finally(function() normalize.ORDER.eager = eager end)
      for i, line in ipairs(lines) do
        local docs = {}
        for k, first in ipairs({ false, true }) do
          normalize.ORDER.eager = first
          docs[k] = normalize.normalize(cjson.decode(line), { now = SHIPPER_TIMESTAMP, raw = line })
        end
        if not deep_equal(docs[1], docs[2]) then differ[#differ + 1] = "line " .. i end
      end
      assert.is_true(#lines > 300)
      assert.are.same({}, differ)
      normalize.ORDER.eager = true
      local doc = normalize.normalize(cjson.decode(lines[#lines]), { now = CTX.now, raw = '{"responseElements":{"arn' })
      assert.are.equal("{arn=arn:x, assumedRoleId=AROA:s}", doc.aws.cloudtrail.response_elements)
    end)
  end)

  describe("resources", function()
    it("renames ARN and accountId and drops duplicates", function()
      local r = { ARN = "arn:aws:iam::1:role/r", accountId = "1", type = "AWS::IAM::Role" }
      local doc = normalize.normalize(record({ resources = { r, r } }), CTX)
      assert.are.same({ { arn = "arn:aws:iam::1:role/r", account_id = "1", type = "AWS::IAM::Role" } },
        doc.aws.cloudtrail.resources)
    end)
  end)

  describe("tls", function()
    it("splits tlsVersion into protocol and version", function()
      local doc = normalize.normalize(record({ tlsDetails = { tlsVersion = "TLSv1.3",
        cipherSuite = "TLS_AES_128_GCM_SHA256", clientProvidedHostHeader = "sts.us-east-1.amazonaws.com" } }), CTX)
      assert.are.same({ version = "1.3", version_protocol = "tls", cipher = "TLS_AES_128_GCM_SHA256",
        client = { server_name = "sts.us-east-1.amazonaws.com" } }, doc.tls)
    end)

    it("ignores placeholder tlsDetails", function()
      local rec = record({ tlsDetails = { tlsVersion = "tlsVersion", cipherSuite = "cipherSuite" } })
      local doc = normalize.normalize(rec, CTX)
      assert.is_nil(doc.tls)
    end)
  end)

  describe("cjson.null", function()
    it("is treated as absent everywhere", function()
      local line = '{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":null,"arn":null,' ..
        '"sessionContext":null,"onBehalfOf":null},"eventTime":null,"eventSource":"s3.amazonaws.com",' ..
        '"eventName":"GetObject","awsRegion":null,"sourceIPAddress":null,"userAgent":null,"errorCode":null,' ..
        '"errorMessage":null,"requestParameters":null,"responseElements":null,"additionalEventData":null,' ..
        '"requestID":null,"eventID":null,"readOnly":null,"resources":null,"eventType":null,' ..
        '"recipientAccountId":null,"tlsDetails":null,"serviceEventDetails":null,"sharedEventID":null,' ..
        '"insightDetails":null,"addendum":null,"managementEvent":null}'
      local doc = normalize.normalize(cjson.decode(line), CTX)
      assert.is_nil(find_foreign(doc, "doc"))
      assert.are.equal("success", doc.event.outcome)
      assert.is_nil(doc.source)
      assert.is_nil(doc.aws.cloudtrail.error_code)
      assert.are.equal(CTX.now, doc["@timestamp"])
    end)

    it("is treated as absent in userIdentity's nested objects and lists", function()
      local line = '{"eventName":"X","userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":null,' ..
        '"attributes":{"creationDate":null,"mfaAuthenticated":null}}},"resources":[null,{"ARN":null}]}'
      local doc = normalize.normalize(cjson.decode(line), CTX)
      assert.is_nil(find_foreign(doc, "doc"))
      assert.is_nil(doc.aws.cloudtrail.resources)
      assert.are.same({ type = "AssumedRole" }, doc.aws.cloudtrail.user_identity)
    end)
  end)

  describe("on records of unexpected shape", function()
    it("does not fail when fields have the wrong JSON type", function()
      local odd = { {}, { 1, 2 }, 42, 1.5, true, cjson.null, "", "-", "x" }
      local fields = { "eventVersion", "userIdentity", "eventTime", "awsRegion", "sourceIPAddress", "userAgent",
        "errorCode", "errorMessage", "requestParameters", "responseElements", "additionalEventData", "requestID",
        "eventID", "readOnly", "resources", "eventType", "recipientAccountId", "tlsDetails", "serviceEventDetails",
        "managementEvent", "eventCategory", "sessionCredentialFromConsole", "addendum", "insightDetails" }
      for _, field in ipairs(fields) do
        for _, v in ipairs(odd) do
          local doc = normalize.normalize(record({ [field] = v, eventName = "ConsoleLogin" }), CTX)
          assert.is_nil(find_foreign(doc, "doc"), field)
          local doc2 = normalize.normalize(record({ userIdentity = { type = "AssumedRole", [field] = v,
            sessionContext = { sessionIssuer = v, attributes = v } } }), CTX)
          assert.is_nil(find_foreign(doc2, "doc"), field)
        end
      end
    end)
  end)

  describe("ECS documents", function()
    it("are passed through unchanged", function()
      local ecs = { ["@timestamp"] = "2024-10-08T10:15:32.000Z",
        event = { action = "AssumeRole", provider = "sts.amazonaws.com", outcome = "success" },
        aws = { cloudtrail = { user_identity = { type = "AWSService" } } } }
      local copy = cjson.decode(cjson.encode(ecs))
      local out = normalize.normalize(ecs, CTX)
      assert.are.equal(ecs, out)
      assert.are.same(copy, out)
    end)

    it("with dotted keys are passed through unchanged", function()
      local ecs = { ["event.action"] = "AssumeRole", ["event.provider"] = "sts.amazonaws.com" }
      assert.are.equal(ecs, normalize.normalize(ecs, CTX))
    end)

    it("do not include CloudTrail Insights records, which are normalized", function()
      local rec = { eventVersion = "1.07", eventTime = "2024-10-08T10:15:32Z", awsRegion = "us-east-1",
        eventID = "e1", eventType = "AwsCloudTrailInsight", recipientAccountId = "111111111111",
        sharedEventID = "s1", eventCategory = "Insight",
        insightDetails = { state = "Start", eventSource = "ec2.amazonaws.com", eventName = "RunInstances",
          insightType = "ApiCallRateInsight" } }
      assert.is_true(normalize.is_cloudtrail(rec))
      local doc = normalize.normalize(rec, CTX)
      assert.are.equal("ApiCallRateInsight", doc.aws.cloudtrail.flattened.insight_details.insightType)
      assert.are.equal("s1", doc.aws.cloudtrail.shared_event_id)
      assert.are.equal("111111111111", doc.cloud.account.id)
    end)

    it("are told apart from raw records by is_cloudtrail", function()
      assert.is_true(normalize.is_cloudtrail(record()))
      assert.is_true(normalize.is_cloudtrail({ eventSource = "s3.amazonaws.com" }))
      assert.is_true(normalize.is_cloudtrail({ eventName = "PutObject" }))
      assert.is_false(normalize.is_cloudtrail({ event = { action = "PutObject" } }))
      assert.is_false(normalize.is_cloudtrail({ ["event.action"] = "PutObject" }))
      assert.is_false(normalize.is_cloudtrail("eventName"))
    end)
  end)
end)

describe("normalize's entity fields (entity.lua)", function()
  local entity = require "entity"
  local IAM_USER = { type = "IAMUser", arn = "arn:aws:iam::111122223333:user/alice", userName = "alice",
    accessKeyId = "AKIAIOSFODNN7EXAMPLE" }

  local function doc_of(t, ctx)
    return normalize.normalize(record(t), ctx or CTX)
  end

  describe("classify_target()", function()
    it("reads an ARN's resource type: users, roles, assumed roles, instance profiles, MFA devices", function()
      for _, arn in ipairs({ "arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:role/Admin",
        "arn:aws:sts::111122223333:assumed-role/Admin/alice", "arn:aws:sts::111122223333:federated-user/bob",
        "arn:aws:iam::111122223333:instance-profile/web", "arn:aws:iam::111122223333:mfa/alice" }) do
        assert.equal("user", entity.classify_target(arn), arn)
      end
    end)

    it("makes an instance ARN or an i- id a host", function()
      assert.equal("host", entity.classify_target("arn:aws:ec2:us-east-1:111122223333:instance/i-0abc"))
      assert.equal("host", entity.classify_target("i-0123456789abcdef0"))
    end)

    it("makes trails, functions, keys, log groups, S3 buckets and network ids services", function()
      for _, t in ipairs({ "arn:aws:cloudtrail:us-east-1:111122223333:trail/main",
        "arn:aws:lambda:us-east-1:111122223333:function:f", "arn:aws:kms:us-east-1:111122223333:key/1234",
        "arn:aws:logs:us-east-1:111122223333:log-group:/aws/x:*", "arn:aws:s3:::bucket/key.txt",
        "arn:aws:s3:::bucket", "sg-0abc", "sgr-0abc", "vpc-1", "subnet-2", "eni-3", "acl-4" }) do
        assert.equal("service", entity.classify_target(t), t)
      end
    end)

    it("makes a service-linked role a service, not a user", function()
      assert.equal("service", entity.classify_target(
        "arn:aws:iam::111122223333:role/aws-service-role/guardduty.amazonaws.com/AWSServiceRoleForAmazonGuardDuty"))
    end)

    it("takes a 20-character AKIA id for a user's key; account ids, names and other ARNs are generic", function()
      assert.equal("user", entity.classify_target("AKIAIOSFODNN7EXAMPLE"))
      assert.equal("generic", entity.classify_target("ASIAIOSFODNN7EXAMPLE"))  -- temporary: not classified
      assert.equal("generic", entity.classify_target("AKIASHORT"))
      assert.equal("generic", entity.classify_target("111122223333"))
      assert.equal("generic", entity.classify_target("backdoor-role"))
      assert.equal("generic", entity.classify_target("arn:aws:bedrock:us-east-1::foundation-model/m"))
      assert.equal("generic", entity.classify_target("arn:aws:iam"))  -- fewer than six parts
    end)
  end)

  describe("classify_actor()", function()
    it("makes an IAM user, the root user and an assumed role users (the role's ARN for a session)", function()
      assert.same({ "user.entity.id", "arn:aws:iam::1:user/a" },
        { entity.classify_actor("arn:aws:iam::1:user/a", "IAMUser") })
      assert.same({ "user.entity.id", "arn:aws:iam::1:root" },
        { entity.classify_actor("arn:aws:iam::1:root", "Root") })
      assert.same({ "user.entity.id", "arn:aws:iam::1:role/R" },
        { entity.classify_actor("arn:aws:sts::1:assumed-role/R/s", "AssumedRole", "arn:aws:iam::1:role/R") })
    end)

    it("makes an AWS service and a service-linked role services", function()
      assert.same({ "service.entity.id", "ec2.amazonaws.com" },
        { entity.classify_actor("ec2.amazonaws.com", "AWSService") })
      local slr = "arn:aws:sts::1:assumed-role/AWSServiceRoleForConfig/s"
      assert.same({ "service.entity.id", slr }, { entity.classify_actor(slr, "AssumedRole", "arn:aws:iam::1:role/x") })
    end)

    it("reads the ARN when the identity type does not decide, then i- ids, else entity.id", function()
      assert.same({ "user.entity.id", "arn:aws:sts::1:federated-user/bob" },
        { entity.classify_actor("arn:aws:sts::1:federated-user/bob", "FederatedUser") })
      assert.same({ "host.entity.id", "arn:aws:ec2:us-east-1:1:instance/i-1" },
        { entity.classify_actor("arn:aws:ec2:us-east-1:1:instance/i-1", "Unknown") })
      assert.same({ "host.entity.id", "i-0abc" }, { entity.classify_actor("i-0abc", nil) })
      assert.same({ "entity.id", "906754a8e1-58e8" },
        { entity.classify_actor("906754a8e1-58e8", "IdentityCenterUser") })
    end)
  end)

  it("puts an IAM call's target role name in entity.target.id (UpdateAssumeRolePolicy)", function()
    local doc = doc_of({ eventSource = "iam.amazonaws.com", eventName = "UpdateAssumeRolePolicy",
      userIdentity = IAM_USER, requestParameters = { roleName = "backdoor", policyDocument = "{}" } })
    assert.same({ "backdoor" }, doc.entity.target.id)
    assert.same({ "backdoor" }, doc.target.entity.id)
    assert.same({ "arn:aws:iam::111122223333:user/alice" }, doc.actor.entity.id)
    assert.same({ "arn:aws:iam::111122223333:user/alice" }, doc.user.entity.id)
    assert.same({ "AKIAIOSFODNN7EXAMPLE", "alice", "arn:aws:iam::111122223333:user/alice", "backdoor" },
      doc.related.entity)
  end)

  it("splits AttachUserPolicy's targets into user.target.entity.id (the user) and entity.target.id", function()
    local doc = doc_of({ eventSource = "iam.amazonaws.com", eventName = "AttachUserPolicy", userIdentity = IAM_USER,
      requestParameters = { userName = "bob", policyArn = "arn:aws:iam::aws:policy/AdministratorAccess" } })
    assert.same({ "arn:aws:iam::aws:policy/AdministratorAccess", "bob" }, doc.target.entity.id)
    assert.same({ "arn:aws:iam::aws:policy/AdministratorAccess" }, doc.service.target.entity.id)  -- "policy"
    assert.same({ "bob" }, doc.entity.target.id)
    assert.equal("bob", doc.user.target.name)  -- user.target.* of the pipeline's other processors stay
  end)

  it("puts an instance target in host.target.entity.id and its id in host.target.id", function()
    local doc = doc_of({ eventSource = "ec2.amazonaws.com", eventName = "GetPasswordData", userIdentity = IAM_USER,
      requestParameters = { instanceId = "i-0123456789abcdef0" } })
    assert.same({ "i-0123456789abcdef0" }, doc.host.target.entity.id)
    assert.same({ "i-0123456789abcdef0" }, doc.host.target.id)
    local m = entity.map(record({ eventSource = "ssm.amazonaws.com", eventName = "SendCommand",
      requestParameters = { targets = { { key = "InstanceIds",
        values = { "arn:aws:ec2:us-east-1:1:instance/i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb" } } } } }))
    assert.same({ "arn:aws:ec2:us-east-1:1:instance/i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb" }, m.host_target)
    assert.same({ "i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb" }, m.host_target_id)
  end)

  it("targets the account on SendCommand to every instance, and the trail on StopLogging", function()
    local m = entity.map(record({ eventSource = "ssm.amazonaws.com", eventName = "SendCommand",
      requestParameters = { instanceIds = { "*" } } }))
    assert.same({ "111111111111" }, m.generic_target)
    m = entity.map(record({ eventSource = "cloudtrail.amazonaws.com", eventName = "StopLogging",
      requestParameters = { name = "arn:aws:cloudtrail:us-east-1:1:trail/main" } }))
    assert.same({ "arn:aws:cloudtrail:us-east-1:1:trail/main" }, m.service_target)
  end)

  it("takes AssumeRole's actor from the service, or the role behind a session", function()
    local doc = doc_of({ eventName = "AssumeRole",
      userIdentity = { type = "AWSService", invokedBy = "ec2.amazonaws.com" },
      requestParameters = { roleArn = "arn:aws:iam::1:role/web" } })
    assert.same({ "ec2.amazonaws.com" }, doc.actor.entity.id)
    assert.same({ "ec2.amazonaws.com" }, doc.service.entity.id)
    assert.equal("ec2.amazonaws.com", doc.service.name)
    assert.same({ "arn:aws:iam::1:role/web" }, doc.user.target.entity.id)
    doc = doc_of({ eventName = "AssumeRole", userIdentity = { type = "AssumedRole",
      arn = "arn:aws:sts::1:assumed-role/A/s", sessionContext = { sessionIssuer = { arn = "arn:aws:iam::1:role/A" } } },
      requestParameters = { roleArn = "arn:aws:iam::1:role/B" } })
    assert.same({ "arn:aws:iam::1:role/A" }, doc.actor.entity.id)
  end)

  it("stops adding a list at its first value already there, as the script's addValues does", function()
    local m = entity.map(record({ eventSource = "ec2.amazonaws.com", eventName = "AuthorizeSecurityGroupIngress",
      requestParameters = { groupId = "sg-1" },
      responseElements = { securityGroupRuleSet = {
        items = { { groupId = "sg-1", securityGroupRuleId = "sgr-1" } } } } }))
    assert.same({ "sg-1", "sgr-1" }, m.related)  -- sgr-1 comes in as a target, not from the list
    m = entity.map(record({ eventSource = "ec2.amazonaws.com", eventName = "DescribeInstances",
      responseElements = { securityGroupRuleSet = {
        items = { { groupId = "sg-1", securityGroupRuleId = "sgr-1" } } } },
      requestParameters = { groupId = "sg-1" } }))
    assert.same({ "sg-1" }, m.related)
  end)

  it("sets none of the fields where the script would fail or not run", function()
    assert.is_nil(entity.map(record({ eventSource = "iam.amazonaws.com", eventName = "CreateUser",
      requestParameters = { userName = 42 } })))  -- a number where it adds strings
    assert.is_nil(entity.map(record({ eventName = "-" })))  -- no eventName after the clean-up
    assert.is_nil(doc_of({ eventName = "-", userIdentity = IAM_USER }).related.entity)
  end)

  it("leaves them all out with ctx.actor_target_mapping = false", function()
    local doc = doc_of({ userIdentity = IAM_USER }, { now = CTX.now, actor_target_mapping = false })
    assert.is_nil(doc.actor)
    assert.is_nil(doc.target)
    assert.is_nil(doc.entity)
    assert.is_nil(doc.related.entity)
    assert.is_nil(doc.user.entity)
    doc = doc_of({ userIdentity = IAM_USER })  -- on by default
    assert.same({ "111111111111" }, doc.entity.target.id)  -- GetCallerIdentity: the account
  end)
end)

---------------------------------------------------------------------------------------------
-- 3. Stratus Red Team detonation logs
---------------------------------------------------------------------------------------------

describe("normalize, on the Stratus Red Team detonation logs,", function()
  local files = list_dir(STRATUS_DIR, ".json")
  local ISO = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"

  for _, file in ipairs(files) do
    it("normalizes every record of " .. file, function()
      local data = cjson.decode(read_file(STRATUS_DIR .. file))
      local records = data[1] ~= nil and data or { data } -- the branch-* files hold one object
      for i, rec in ipairs(records) do
        local where = file .. " record " .. i
        assert.is_true(normalize.is_cloudtrail(rec), where)
        local doc = normalize.normalize(rec, CTX)
        assert.are_not.equal(rec, doc, where)
        assert.is_string(doc.event.provider, where)
        assert.is_string(doc.event.action, where)
        assert.is_truthy(doc.event.outcome == "success" or doc.event.outcome == "failure", where)
        assert.is_truthy(doc["@timestamp"]:find(ISO), where .. ": " .. tostring(doc["@timestamp"]))
        assert.are_not.equal(CTX.now, doc["@timestamp"], where .. ": eventTime did not parse")
        assert.is_nil(find_foreign(doc, "doc"), where)
        if rec.errorCode ~= nil then assert.are.equal("failure", doc.event.outcome, where) end
      end
    end)
  end

  it("covers all 312 records (310 in the arrays, plus the two branch-* objects)", function()
    local total = 0
    for _, file in ipairs(files) do
      local data = cjson.decode(read_file(STRATUS_DIR .. file))
      total = total + (data[1] ~= nil and #data or 1)
    end
    assert.are.equal(312, total)
  end)
end)
