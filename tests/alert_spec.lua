-- Alert documents and their ids.

local alert = require "alert"
local uuid = require "uuid"

local RULE = { meta = {
  rule_id = "2e99477f-6099-48a9-ae0e-68801d97079c", name = "R", severity = "low", risk_score = 21,
  version = 1, tags = { "t" }, threat = { { framework = "MITRE ATT&CK" } },
} }

describe("uuid", function()
  it("computes SHA-1 (FIPS 180 test vectors)", function()
    local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(uuid.sha1("abc")))
    assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", hex(uuid.sha1("")))
    assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      hex(uuid.sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
  end)

  it("makes RFC 4122 version 5 UUIDs (the RFC's DNS example)", function()
    assert.equal("886313e1-3b8a-5372-9b90-0c9aee199e5d", uuid.v5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org"))
  end)
end)

describe("alert", function()
  local doc = {
    ["@timestamp"] = "2025-01-01T00:00:00.000Z",
    event = { id = "E1", kind = "event", action = "PutResourcePolicy", provider = "bedrock.amazonaws.com",
              outcome = "failure" },
    aws = { cloudtrail = { error_code = "AccessDeniedException",
                           user_identity = { arn = "arn:aws:iam::123456789012:user/alice" } } },
    source = { address = "203.0.113.9" },
    cloud = { account = { id = "123456789012" }, region = "us-east-1" },
  }
  local src = { path = "f.ndjson", offset = 10 }

  it("ids an alert by rule and CloudTrail eventID, wherever the event was read", function()
    local a = alert.id(RULE.meta.rule_id, doc, src)
    assert.equal(a, alert.id(RULE.meta.rule_id, doc, { path = "other", offset = 99 }))
    assert.not_equal(a, alert.id("other-rule", doc, src))
  end)

  it("ids an event without an id by file, offset and record index", function()
    local d = { event = { action = "X" } }
    local a = alert.id("r", d, { path = "f", offset = 1 })
    assert.equal(a, alert.id("r", d, { path = "f", offset = 1 }))
    assert.not_equal(a, alert.id("r", d, { path = "f", offset = 2 }))
    assert.not_equal(a, alert.id("r", d, { path = "f", offset = 1, index = 3 }))
  end)

  it("writes a reason a person can read", function()
    assert.equal("bedrock.amazonaws.com PutResourcePolicy by arn:aws:iam::123456789012:user/alice from 203.0.113.9 "
      .. "denied (AccessDeniedException) in account 123456789012 (us-east-1) created low alert R.",
      alert.reason(RULE.meta, doc))
  end)

  it("builds Elastic's shape without changing the source document", function()
    local a = alert.build(RULE, doc, src, "2026-01-01T00:00:00.000Z")
    assert.equal("signal", a.event.kind)
    assert.equal("event", doc.event.kind)
    assert.equal("event", a.kibana.alert.original_event.kind)
    assert.equal("2025-01-01T00:00:00.000Z", a.kibana.alert.original_time)
    assert.equal("2026-01-01T00:00:00.000Z", a["@timestamp"])
    assert.same({ path = "f.ndjson", offset = 10 }, a.trailhound.source)
    assert.equal("E1", a.kibana.alert.ancestors[1].id)
  end)

  it("nests dotted keys and drops JSON nulls", function()
    local null = require("cjson").null
    local n = alert.nest({ ["event.action"] = "A", ["event.outcome"] = null, event = { id = "1" },
                           ["@timestamp"] = "t", ["aws.cloudtrail"] = { error_code = "E" } }, {})
    assert.same({ event = { action = "A", id = "1" }, ["@timestamp"] = "t",
                  aws = { cloudtrail = { error_code = "E" } } }, n)
  end)

  it("keeps keys inside values as they are: request parameters and tags are data", function()
    local n = alert.nest({ aws = { cloudtrail = { flattened = { request_parameters = {
      tags = { ["."] = "x", ["env.name"] = "prod", env = "top" } } } } } }, {})
    assert.same({ ["."] = "x", ["env.name"] = "prod", env = "top" },
      n.aws.cloudtrail.flattened.request_parameters.tags)
  end)

  it("writes the same line with the rule's object encoded once, even for an event holding the marker", function()
    local cjson = require "cjson"
    local now = "2026-01-01T00:00:00.000Z"
    local want = cjson.decode(alert.encode(alert.build(RULE, doc, src, now)))
    assert.same(want, cjson.decode((alert.line(RULE, doc, src, now))))
    assert.same(want, cjson.decode((alert.line(RULE, doc, src, now))), "from the cache")
    local sly = { event = { id = "E2" }, ["\0trailhound: kibana.alert.rule\0"] = "\0trailhound: kibana.alert.rule\0" }
    assert.same(cjson.decode(alert.encode(alert.build(RULE, sly, src, now))),
      cjson.decode((alert.line(RULE, sly, src, now))))
    assert.matches('"rule":{', alert.line(RULE, sly, src, now), 1, true)
    local line, id = alert.line(RULE, doc, src, now)
    assert.equal(cjson.decode(line).kibana.alert.uuid, id, "and the alert's uuid, for the outputs")
  end)

  it("writes the same alert from a normalizer's document without copying it whole", function()
    local cjson = require "cjson"
    local now = "2026-01-01T00:00:00.000Z"
    local want = cjson.decode(alert.encode(alert.build(RULE, doc, src, now)))
    assert.same(want, cjson.decode((alert.line(RULE, doc, src, now, true))))
    assert.equal("event", doc.event.kind, "the document is left as it was")
    -- A dotted key at the top (a normalizer of one's own): nested the plain way.
    local dotted = { ["event.action"] = "A", event = { id = "E3" } }
    assert.same(cjson.decode(alert.encode(alert.build(RULE, dotted, src, now))),
      cjson.decode((alert.line(RULE, dotted, src, now, true))))
  end)

  it("encodes slashes as they are", function()
    assert.equal('{"a":"arn:aws:iam::1:role/x\\\\/y"}', alert.encode({ a = "arn:aws:iam::1:role/x\\/y" }))
  end)
end)
