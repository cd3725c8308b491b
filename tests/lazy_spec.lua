-- The lazy event view (event.lazy) and the rule index (ruleindex.lua), against the whole
-- normalizer on real records: Elastic's pipeline test inputs, the Stratus Red Team detonations
-- and the bundled examples (raw CloudTrail and ECS documents).

local cjson = require "cjson"
local lfs = require "lfs"
local event = require "event"
local kql = require "kql"
local mmdb = require "support.mmdb"
local normalize = require "normalize"

-- The specs' MaxMind databases (tests/fixtures/geoip), so that source.geo/as are compared too.
local GEOIP = mmdb.geoip("tests/fixtures/geoip/test-asn.mmdb", "tests/fixtures/geoip/test-city.mmdb")
local ruleindex = require "ruleindex"

local CTX = { now = "2026-01-02T03:04:05.000Z" }

local function lines_of(path, out)
  for line in io.lines(path) do
    if line:find("%S") then
      local ok, v = pcall(cjson.decode, line)
      if ok and type(v) == "table" then
        if v.Records then
          for _, r in ipairs(v.Records) do out[#out + 1] = { r, line } end
        else
          out[#out + 1] = { v, line }
        end
      end
    end
  end
end

-- Every real record the fixtures hold, with its JSON text.
local function records()
  local out = {}
  local dir = "tests/fixtures/elastic-cloudtrail-pipeline/pipeline/"
  for name in lfs.dir(dir) do
    if name:match("%.log$") then lines_of(dir .. name, out) end
  end
  dir = "tests/fixtures/stratus-red-team/"
  for name in lfs.dir(dir) do
    if name:match("%.json$") then
      local f = assert(io.open(dir .. name))
      local text = f:read("a")
      f:close()
      local v = cjson.decode(text)
      for _, r in ipairs(v.Records or v) do out[#out + 1] = { r, nil } end
    end
  end
  lines_of("examples/cloudtrail/bedrock-denied-derived.ndjson", out)
  lines_of("examples/ecs/bedrock-ecs.ndjson", out)
  return out
end

-- Every dotted name in a document: its leaves, the objects above them, and their arrays.
local function names(doc, prefix, out)
  for k, v in pairs(doc) do
    if type(k) == "string" then
      local name = prefix and (prefix .. "." .. k) or k
      out[name] = true
      if type(v) == "table" and rawget(v, 1) == nil then names(v, name, out) end
    end
  end
  return out
end

local function call(fn, ...) return pcall(fn, ...) end

describe("the lazy event view", function()
  local recs = records()

  it("has real records to check (pipeline inputs, Stratus, examples, ECS)", function()
    assert.is_true(#recs > 300, "only " .. #recs .. " records")
  end)

  it("gives every field a rule can ask for the whole normalizer's value, computed alone or not", function()
    local ev = event.lazy()
    local asked = 0
    for i, r in ipairs(recs) do
      local ctx = { now = CTX.now, raw = r[2], geoip = i % 2 == 0 and GEOIP or nil }
      local whole = normalize.normalize(r[1], ctx)
      local want = names(whole, nil, {})
      for _, f in ipairs(normalize.FIELDS) do want[f] = true end
      for f in pairs(normalize.ON_DEMAND) do want[f] = true end
      want["no.such.field"], want["event.nothing"], want["aws"] = true, true, true
      ev.start(r[1], ctx, normalize, call)
      for name in pairs(want) do
        asked = asked + 1
        assert.same(event.get(whole, name), ev.get(name), "record " .. i .. ": " .. name)
        assert.same(event.get(whole, name), ev.get(name), "record " .. i .. ", asked again: " .. name)
      end
      assert.same(whole, ev.whole(), "record " .. i .. ": the whole document")
    end
    assert.is_true(asked > 10000)
  end)

  it("computes user_agent.*, event.dataset/module and source.geo/as alone too", function()
    local built = 0
    local counting = setmetatable({ normalize = function(...)
      built = built + 1
      return normalize.normalize(...)
    end }, { __index = normalize })
    local ev = event.lazy()
    local rec = cjson.decode(io.lines("examples/cloudtrail/bedrock-denied-derived.ndjson")())
    rec.sourceIPAddress = "89.160.20.156"
    rec.userAgent = "aws-cli/1.16.248 Python/3.4.7 Linux/4.9.184-0.1.ac.235.83.329.metal1.x86_64 botocore/1.12.239"
    local ctx = { now = CTX.now, geoip = GEOIP }
    ev.start(rec, ctx, counting, call)
    local want = {
      ["event.dataset"] = "aws.cloudtrail", ["event.module"] = "aws", ["user_agent.name"] = "aws-cli",
      ["user_agent.version"] = "1.16.248", ["user_agent.os.full"] = "Linux 4.9.184",
      ["user_agent.device.name"] = "Spider", ["source.geo.city_name"] = "Link\u{f6}ping",
      ["source.geo.region_iso_code"] = "SE-E", ["source.as.number"] = 29518,
      ["source.as.organization.name"] = "Bredband2 AB",
    }
    for f, v in pairs(want) do assert.equal(v, ev.get(f), f) end
    assert.equal(0, built)
    local whole = ev.whole()
    for f, v in pairs(want) do assert.equal(v, event.get(whole, f), f) end
  end)

  it("computes the entity fields alone, equal to the whole document's, and none when turned off", function()
    local built = 0
    local counting = setmetatable({ normalize = function(...)
      built = built + 1
      return normalize.normalize(...)
    end }, { __index = normalize })
    local rec = {
      eventSource = "iam.amazonaws.com", eventName = "UpdateAssumeRolePolicy", recipientAccountId = "111122223333",
      userIdentity = { type = "AssumedRole", arn = "arn:aws:sts::111122223333:assumed-role/Admin/alice",
        accessKeyId = "ASIAEXAMPLE",
        sessionContext = { sessionIssuer = { arn = "arn:aws:iam::111122223333:role/Admin", userName = "Admin" } } },
      requestParameters = { roleName = "backdoor", policyDocument = "{}" },
    }
    local want = {
      ["entity.target.id"] = { "backdoor" }, ["target.entity.id"] = { "backdoor" },
      ["actor.entity.id"] = { "arn:aws:sts::111122223333:assumed-role/Admin/alice" },
      ["user.entity.id"] = { "arn:aws:iam::111122223333:role/Admin" },
      ["related.entity"] = { "ASIAEXAMPLE", "Admin", "arn:aws:iam::111122223333:role/Admin",
        "arn:aws:sts::111122223333:assumed-role/Admin/alice", "backdoor" },
    }
    local ev = event.lazy()
    ev.start(rec, CTX, counting, call)
    for f, v in pairs(want) do assert.same(v, ev.get(f), f) end
    for _, f in ipairs({ "user.target.entity.id", "host.target.entity.id", "host.target.id",
      "service.target.entity.id", "service.entity.id", "host.entity.id", "entity.id" }) do
      assert.is_nil(ev.get(f), f)
    end
    assert.equal(0, built)
    local whole = ev.whole()
    for f, v in pairs(want) do assert.same(v, event.get(whole, f), f) end
    local off = { now = CTX.now, actor_target_mapping = false }
    ev.start(rec, off, counting, call)
    for f in pairs(want) do assert.is_nil(ev.get(f), f) end
    whole = ev.whole()
    for f in pairs(want) do assert.is_nil(event.get(whole, f), f) end
    assert.is_nil(whole.actor)
    assert.is_nil(whole.entity)
  end)

  it("computes a field on demand without building the document", function()
    local built = 0
    local counting = setmetatable({ normalize = function(...)
      built = built + 1
      return normalize.normalize(...)
    end }, { __index = normalize })
    local ev = event.lazy()
    local rec = cjson.decode(io.lines("examples/cloudtrail/bedrock-denied-derived.ndjson")())
    ev.start(rec, CTX, counting, call)
    for _, f in ipairs({ "event.provider", "event.action", "event.outcome", "aws.cloudtrail.error_code",
      "data_stream.dataset", "cloud.region" }) do
      assert.is_not_nil(ev.get(f), f)
    end
    assert.equal(0, built)
    assert.equal("test-role", ev.get("user.name"))
    assert.equal(0, built)
    assert.equal("AROA2N7TQQRGKJYPCLOG0:cli", ev.get("user.id"))  -- not on demand: the whole document, once
    assert.equal("494659789341", ev.get("cloud.account.id"))
    assert.equal(1, built)
    ev.start(rec, CTX, counting, call)  -- the next event starts afresh
    assert.equal("AROA2N7TQQRGKJYPCLOG0:cli", ev.get("user.id"))
    assert.equal(2, built)
  end)

  it("reads an ECS document as it is, nested or dotted, arrays and objects as today", function()
    local ev = event.lazy()
    local doc = { ["event.action"] = "A", event = { provider = "p" }, related = { user = { "u1", "u2" } },
      aws = { cloudtrail = { flattened = { request_parameters = { name = "n" } } } } }
    ev.start(doc, CTX, normalize, call)
    assert.equal("A", ev.get("event.action"))
    assert.equal("p", ev.get("event.provider"))
    assert.same({ "u1", "u2" }, ev.get("related.user"))
    assert.same({ name = "n" }, ev.get("aws.cloudtrail.flattened.request_parameters"))
    assert.is_nil(ev.get("event.outcome"))
    assert.equal("u2", ev.view["related.user"][2])
    assert.has_error(function() ev.view["x"] = 1 end, "the event is read-only")
  end)

  it("hands out the whole document for event.DOCUMENT: normalized once, or the ECS document", function()
    local built = 0
    local counting = setmetatable({ normalize = function(...)
      built = built + 1
      return normalize.normalize(...)
    end }, { __index = normalize })
    local ev = event.lazy()
    local rec = cjson.decode(io.lines("examples/cloudtrail/bedrock-denied-derived.ndjson")())
    ev.start(rec, CTX, counting, call)
    local doc = ev.get(event.DOCUMENT)
    assert.equal(1, built)
    assert.equal(doc, ev.whole())
    assert.equal("test-role", event.get(doc, "user.name"))
    assert.equal(1, built)
    local ecs = { event = { action = "A" } }
    ev.start(ecs, CTX, counting, call)
    assert.equal(ecs, ev.get(event.DOCUMENT))
    assert.equal(1, built)
  end)

  it("hands out the raw CloudTrail record for event.RAW: the record, or an ECS document's event.original", function()
    local built = 0
    local counting = setmetatable({ normalize = function(...)
      built = built + 1
      return normalize.normalize(...)
    end }, { __index = normalize })
    local ev = event.lazy()
    local rec = cjson.decode(io.lines("examples/cloudtrail/bedrock-denied-derived.ndjson")())
    ev.start(rec, CTX, counting, call)
    assert.equal(rec, ev.get(event.RAW))
    assert.equal(0, built)
    local ecs = { event = { action = "PutResourcePolicy", original = cjson.encode(rec) } }
    ev.start(ecs, CTX, counting, call)
    local got = ev.get(event.RAW)
    assert.same(rec, got)
    assert.equal(got, ev.get(event.RAW))  -- decoded once per event
    ev.start({ event = { action = "A" } }, CTX, counting, call)
    assert.is_nil(ev.get(event.RAW))
    assert.is_nil(ev.get(event.RAW))
    assert.equal(0, built)
  end)

  it("raises FAILED, with the reason, when the normalizer fails: no rule is blamed", function()
    local broken = setmetatable({ normalize = function() error("boom") end }, { __index = normalize })
    local ev = event.lazy()
    ev.start({ eventSource = "s3.amazonaws.com", eventName = "X" }, CTX, broken, call)
    assert.equal("X", ev.get("event.action"))  -- on demand: fine
    local ok, err = pcall(ev.get, "user.id")
    assert.is_false(ok)
    assert.equal(ev.FAILED, err)
    assert.matches("boom", ev.failure)
  end)
end)

describe("kql.requirements", function()
  local function req(src) return kql.requirements(assert(kql.compile(src))) end
  local function alt(field, value, exact)
    return { field = field, value = value, exact = exact ~= false }
  end

  it("is the conjunction of the exact values a match needs", function()
    assert.same({ { alt("a", "x") }, { alt("b", "y"), alt("b", "z") } }, req('a: "x" and b: (y or z)'))
  end)

  it("names nothing under not, for ranges, exists, numbers and booleans", function()
    assert.same({}, req('not a: "x"'))
    assert.same({}, req('a > 5 and b: * and c: 200 and d: true'))
    assert.same({ { alt("e", "x") } }, req('not a: "x" and e: x'))
  end)

  it("keeps an or only when every branch needs something", function()
    assert.same({ { alt("a", "x"), alt("b", "y") } }, req('a: x or (b: y and c: z)'))
    assert.same({}, req('a: x or not b: y'))
  end)

  it("names nothing for a value with no field, a field name with wildcards, a nested query", function()
    assert.same({}, req('"AccessDenied"'))
    assert.same({}, req('event.*: "AccessDenied"'))
    assert.same({}, req('a:{ b: "x" }'))
    assert.same({ { alt("e", "x") } }, req('a:{ b: "x" } and e: x and "y"'))
    assert.same({}, req('e: x or "y"'))
  end)

  it("names nothing of an ip or numeric field: 2001:0db8::1 is 2001:db8::1, \"443.0\" is 443", function()
    assert.same({}, req('source.ip: "2001:db8::1"'))
    assert.same({}, req("source.ip: 10.0.0.0/8"))
    assert.same({}, req("related.ip: (10.1.2.3 or 10.1.2.4)"))
    assert.same({}, req("ip: 10.0.0.0/8"))                 -- outside ECS: a CIDR holds IP-shaped values
    assert.same({ { alt("ip", "10.1.2.3") } }, req("ip: 10.1.2.3"))
  end)

  it("takes the longest segment of a wildcard that no number's text can hold", function()
    assert.same({ { alt("ua", "aws-cli", false) } }, req('ua: *aws-cli*/2*'))
    assert.same({}, req('n: 12*34'))
  end)
end)

describe("kql.exclusions", function()
  local function ex(src) return kql.exclusions(assert(kql.compile(src))) end

  it("names the exact values a top-level not rules out", function()
    assert.same({ { field = "t", values = { "AssumedRole", "AWSService" } } },
      ex('a: x and not t: ("AssumedRole" or "AWSService")'))
    assert.same({ { field = "t", values = { "Root" } } }, ex("not t: Root"))
  end)

  it("names nothing for a not of an ip field, a CIDR block, a nested query or a value with no field", function()
    assert.same({}, ex('not source.ip: "10.1.2.3"'))
    assert.same({}, ex("not ip: 10.0.0.0/8"))
    assert.same({}, ex('not a:{ b: "x" }'))
    assert.same({}, ex('not "x"'))
    assert.same({}, ex('not a*: "x"'))
  end)

  it("names nothing for a not of a wildcard, of two fields, of an and, or under an or", function()
    assert.same({}, ex("not t: Ro*"))
    assert.same({}, ex("not (t: Root or u: x)"))
    assert.same({}, ex("not (t: Root and u: x)"))
    assert.same({}, ex("a: x or not t: Root"))
    assert.same({}, ex("a: x"))
  end)

  -- Sound: an event holding an excluded value never matches.
  it("never rules out an event the query matches", function()
    local queries = { 'not t: ("A" or "B")', 'e: x and not t: A', 'not t: 200', 'not t: "a b"' }
    local values = { "A", "B", "C", { "A" }, { "C", "B" }, 200, "200", "a b", true }
    for _, src in ipairs(queries) do
      local q = assert(kql.compile(src))
      for _, v in ipairs(values) do
        local ev = { t = v, e = "x" }
        local ruled_out = false
        for _, e in ipairs(kql.exclusions(q)) do
          local x = ev[e.field]
          for _, want in ipairs(e.values) do
            if x == want then ruled_out = true end
            if type(x) == "table" then
              for _, y in ipairs(x) do if y == want then ruled_out = true end end
            end
          end
        end
        if ruled_out then assert.is_false(q.match(function(n) return ev[n] end), src) end
      end
    end
  end)
end)

describe("the rule index", function()
  local function rule(src)
    return { query = assert(kql.compile(src)), src = src }
  end
  local function getter(t) return function(name) return t[name] end end

  it("hands an event only the rules filed under its values, in their order, and those filed under nothing", function()
    local a = rule('event.provider: "s3.amazonaws.com" and event.action: (PutBucketPolicy or DeleteBucketPolicy)')
    local b = rule('event.provider: "iam.amazonaws.com"')
    local c = rule('user.name: *admin*')
    local d = rule('event.action: PutBucketPolicy and aws.cloudtrail.error_code: AccessDenied')
    local ix = ruleindex.build({ a, b, c, d })
    local function cands(t)
      local out = {}
      for i, r in ipairs(ix.candidates(getter(t))) do out[i] = r end
      return out
    end
    local s3 = { ["event.provider"] = "s3.amazonaws.com", ["event.action"] = "PutBucketPolicy" }
    assert.same({ a, c }, cands(s3), "d also requires an error code")
    s3["aws.cloudtrail.error_code"] = "AccessDenied"
    assert.same({ a, c, d }, cands(s3))
    assert.same({ b, c }, cands({ ["event.provider"] = "iam.amazonaws.com", ["event.action"] = "CreateUser" }))
    assert.same({ c }, cands({ ["event.provider"] = "ec2.amazonaws.com" }))
    assert.same({ a, c, d }, cands({ ["event.provider"] = { "s3.amazonaws.com" },
      ["event.action"] = { "x", "PutBucketPolicy" }, ["aws.cloudtrail.error_code"] = { { "AccessDenied" } } }),
      "arrays: any of their values")
  end)

  it("keeps to the fields the view computes cheaply, and leaves out a clause most rules share", function()
    local rules = {}
    for i = 1, 20 do
      rules[i] = rule('data_stream.dataset: "aws.cloudtrail" and event.action: A' .. i .. ' and user.name: u' .. i)
    end
    local ix = ruleindex.build(rules, { ["event.action"] = true, ["data_stream.dataset"] = true })
    local asked = {}
    local got = ix.candidates(function(name)
      asked[name] = true
      return ({ ["event.action"] = "A7", ["data_stream.dataset"] = "aws.cloudtrail", ["user.name"] = "x" })[name]
    end)
    assert.equal(1, #got)
    assert.equal(rules[7], got[1])
    assert.is_nil(asked["user.name"], "not cheap: left to the rule")
  end)

  it("leaves out a rule whose top-level not an event's value rules out", function()
    local a = rule('event.action: PutBucketPolicy and not aws.cloudtrail.user_identity.type: ' ..
      '("AssumedRole" or "AWSService")')
    local ix = ruleindex.build({ a })
    local ev = { ["event.action"] = "PutBucketPolicy", ["aws.cloudtrail.user_identity.type"] = "AssumedRole" }
    assert.equal(0, #ix.candidates(getter(ev)))
    ev["aws.cloudtrail.user_identity.type"] = { "IAMUser", "AWSService" }
    assert.equal(0, #ix.candidates(getter(ev)), "arrays: any of their values")
    ev["aws.cloudtrail.user_identity.type"] = "IAMUser"
    assert.equal(1, #ix.candidates(getter(ev)))
    ev["aws.cloudtrail.user_identity.type"] = nil
    assert.equal(1, #ix.candidates(getter(ev)), "an absent field rules nothing out")
  end)

  it("files under nothing a rule with a Lua match alone, or no exact value", function()
    local ix = ruleindex.build({ { meta = {} }, rule("a > 1") })
    assert.equal(2, #ix.candidates(getter({})))
  end)

  it("gives the prefilter only the values of fields copied verbatim from the record, or implied", function()
    local r = rule('data_stream.dataset: "aws.cloudtrail" and event.provider: "bedrock.amazonaws.com" and ' ..
      'event.outcome: failure and event.action: (A or B) and cloud.region: ("us-east-1" or "")')
    local pf = ruleindex.prefilter(r, normalize)
    pf.fields = nil
    assert.same({ { "bedrock.amazonaws.com" }, { "errorCode", "errorMessage", "ConsoleLogin", "failure" },
      { "A", "B" } }, pf, "event.outcome failure: what the record holds (IMPLIED)")
    assert.same({ fields = {} }, ruleindex.prefilter(r, {}), "a normalizer that names no verbatim field: every record")
  end)

  it("gives the prefilter conditions on raw fields: exact clauses, and not clauses without dropped values", function()
    local r = rule('data_stream.dataset: "aws.cloudtrail" and event.provider: "iam.amazonaws.com" and ' ..
      'event.outcome: failure and event.action: (A or B) and cloud.region: ("us-east-1" or "") and ' ..
      'not aws.cloudtrail.user_identity.type: ("AssumedRole" or "-" or "") and not user.name: x and ' ..
      'not user_agent.original: "none"')
    assert.same({
      { path = "awsRegion", exclude = false, values = { "us-east-1", "" } },
      { path = "eventName", exclude = false, values = { "A", "B" } },
      { path = "eventSource", exclude = false, values = { "iam.amazonaws.com" } },
      { path = "userIdentity.type", exclude = true, values = { "AssumedRole" } },
    }, ruleindex.prefilter(r, normalize).fields,
      "event.outcome and user.name have no path; -, \"\" and none are dropped: no field, not ruled out")
    local wild = rule('event.action: Create* and not aws.cloudtrail.user_identity.type: Assumed*')
    assert.same({}, ruleindex.prefilter(wild, normalize).fields, "wildcards make no condition")
    local other = setmetatable({ ON_DEMAND = setmetatable({
      ["aws.cloudtrail.user_identity.type"] = function(rec) return rec.userIdentity.type:lower() end,
    }, { __index = normalize.ON_DEMAND }) }, { __index = normalize })
    assert.same({}, ruleindex.prefilter(rule('not aws.cloudtrail.user_identity.type: Root'), other).fields,
      "a normalizer that reads the field otherwise (lower-cased) excludes nothing by it")
    assert.same({ { path = "eventSource", exclude = false, values = { "iam.amazonaws.com" } } },
      ruleindex.prefilter(rule('event.provider: "iam.amazonaws.com" and aws.cloudtrail.user_identity.type: root'),
        other).fields, "... nor requires anything of it: Root is root there")
    local narrower = setmetatable({ is_cloudtrail = function(rec)
      return normalize.is_cloudtrail(rec) and rec.eventVersion ~= nil
    end }, { __index = normalize })
    assert.same({}, ruleindex.prefilter(rule('event.provider: "iam.amazonaws.com"'), narrower).fields,
      "a normalizer that takes other records for raw ones than the host does: no condition at all")
    local seen = {}
    local looping = setmetatable({ ON_DEMAND = normalize.ON_DEMAND }, { __index = normalize })
    ruleindex.prefilter(rule('not aws.cloudtrail.user_identity.type: Root'), looping, function(fn, ...)
      seen[#seen + 1] = fn
      return pcall(fn, ...)
    end)
    assert.equal(1, #seen, "the normalizer's code runs through the call given (limits, in a worker)")
  end)

  it("reads each field of normalize.RAW_PATHS as the string at its path, as its ON_DEMAND function does", function()
    local DROPPED = { [""] = true, ["-"] = true, ["none"] = true }
    local function at(rec, path)
      local v = rec
      for key in path:gmatch("[^.]+") do
        if type(v) ~= "table" then return nil end
        v = v[key]
      end
      return v
    end
    local checked = 0
    local recs = records()
    -- and variations: values dropped, absent, no string, an identity that is no object
    for _, v in ipairs({ "", "-", "none", "X" }) do
      recs[#recs + 1] = { { eventSource = v, eventName = v, errorCode = v, userIdentity = { type = v, arn = v },
        awsRegion = v, userAgent = v, sourceIPAddress = v } }
    end
    recs[#recs + 1] = { { eventSource = "s", userIdentity = "AssumedRole" } }
    recs[#recs + 1] = { { eventSource = "s", userIdentity = { "AssumedRole" } } }
    for _, one in ipairs(recs) do
      local rec = one[1]
      if normalize.is_cloudtrail(rec) then
        for field, entry in pairs(normalize.RAW_PATHS) do
          assert.equal(normalize.ON_DEMAND[field], entry.read, field)
          local raw, got = at(rec, entry.path), normalize.ON_DEMAND[field](rec, CTX)
          if raw == nil then
            assert.is_nil(got, field)
          elseif type(raw) == "string" then
            assert.equal(not DROPPED[raw] and raw or nil, got, field .. " of " .. raw)
          end
          checked = checked + 1
        end
      end
    end
    assert.is_true(checked > 1000, checked)
  end)

  it("gives the prefilter of an EQL sequence one clause: a value each step's text must show", function()
    local eql = require "eql"
    local function seq(q) return { eql = assert(eql.compile(q)) } end
    local r = seq('sequence by user.name with maxspan=15m ' ..
      '[any where data_stream.dataset == "aws.cloudtrail" and event.provider == "bedrock.amazonaws.com" ' ..
      'and event.action == "ListFoundationModels"] ' ..
      '[any where data_stream.dataset == "aws.cloudtrail" and event.action : ("InvokeModel", "Converse")]')
    -- Each step's clause with the fewest values the text shows (not data_stream.dataset, a
    -- constant no record holds); a folded one makes the clause fold.
    assert.same({ { "bedrock.amazonaws.com", "invokemodel", "converse", fold = true } },
      ruleindex.prefilter(r, normalize))
    local open = seq('sequence by user.name [any where event.provider == "sts.amazonaws.com"] ' ..
      '[any where user_agent.name == "curl"]')
    assert.same({}, ruleindex.prefilter(open, normalize), "a step the text cannot show: every record")
    local untl = seq('sequence by user.name [any where event.action == "A1"] [any where event.action == "B1"] ' ..
      'until [any where event.action == "C1"]')
    assert.same({ { "A1", "B1", "C1" } }, ruleindex.prefilter(untl, normalize), "the until step's events count")
  end)
end)
