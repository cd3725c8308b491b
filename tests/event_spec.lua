-- How rules read events: dotted ECS names over any document shape.

local cjson = require "cjson"
local event = require "event"

describe("event", function()
  describe("get()", function()
    it("reads nested, dotted and mixed documents by dotted name", function()
      local nested = { event = { action = "A" }, aws = { cloudtrail = { error_code = "E" } } }
      local dotted = { ["event.action"] = "A", ["aws.cloudtrail.error_code"] = "E" }
      local mixed = { event = { action = "A" }, ["aws.cloudtrail"] = { ["error_code"] = "E" } }
      for _, doc in ipairs({ nested, dotted, mixed }) do
        assert.equal("A", event.get(doc, "event.action"))
        assert.equal("E", event.get(doc, "aws.cloudtrail.error_code"))
        assert.is_nil(event.get(doc, "event.outcome"))
      end
    end)

    it("reads a field through an array of objects as the list of its values", function()
      local doc = { aws = { cloudtrail = { resources = {
        { arn = "arn:aws:bedrock:us-east-1:1:custom-model/a", type = "AWS::Bedrock::CustomModel" },
        { type = "AWS::IAM::Role" },
        { arn = "arn:aws:iam::1:role/r" },
      } } } }
      assert.same({ "arn:aws:bedrock:us-east-1:1:custom-model/a", "arn:aws:iam::1:role/r" },
        event.get(doc, "aws.cloudtrail.resources.arn"))
      assert.is_nil(event.get(doc, "aws.cloudtrail.resources.nothing"))
      local kql = require "kql"
      local q = assert(kql.compile('aws.cloudtrail.resources.arn: "arn:aws:iam::1:role/r"'))
      assert.is_true(q.match(event.getter(doc)))
    end)

    it("treats JSON null as absent", function()
      local doc = cjson.decode('{"a":{"b":null},"c.d":null}')
      assert.is_nil(event.get(doc, "a.b"))
      assert.is_nil(event.get(doc, "c.d"))
    end)

    it("returns arrays and objects as tables", function()
      local doc = { event = { type = { "info", "change" } }, aws = { cloudtrail = { flattened = {
        request_parameters = { modelId = "m" } } } } }
      assert.same({ "info", "change" }, event.get(doc, "event.type"))
      assert.same({ modelId = "m" }, event.get(doc, "aws.cloudtrail.flattened.request_parameters"))
    end)
  end)

  describe("view()", function()
    local doc = { event = { action = "A", type = { "info" } }, aws = { cloudtrail = { flattened = {
      request_parameters = { modelId = "m" } } } } }

    it("reads fields with e[\"dotted.name\"], arrays as sequences, objects as tables", function()
      local e = event.view(doc)
      assert.equal("A", e["event.action"])
      assert.equal(1, #e["event.type"])
      assert.equal("info", e["event.type"][1])
      for _, v in ipairs(e["event.type"]) do assert.equal("info", v) end
      assert.equal("m", e["aws.cloudtrail.flattened.request_parameters"].modelId)
      local keys = {}
      for k in pairs(e["aws.cloudtrail.flattened.request_parameters"]) do keys[#keys + 1] = k end
      assert.same({ "modelId" }, keys)
    end)

    it("never hands out the table behind a field, not even through pairs", function()
      local e = event.view(doc)
      local _, state = pairs(e["aws.cloudtrail.flattened.request_parameters"])
      assert.is_nil(state)
      assert.is_nil(e[""])
      assert.is_nil(e["."])
      assert.is_nil(event.get(doc, ""))
    end)

    it("is read-only, down to nested tables", function()
      local e = event.view(doc)
      assert.has_error(function() e["event.action"] = "B" end, "the event is read-only")
      assert.has_error(function() e["event.type"][1] = "x" end, "the event is read-only")
      assert.has_error(function() e["aws.cloudtrail.flattened.request_parameters"].modelId = "x" end)
      assert.has_error(function() setmetatable(e, nil) end)
      assert.equal("A", doc.event.action)
      assert.equal("m", doc.aws.cloudtrail.flattened.request_parameters.modelId)
    end)

    it("gives a rule no way to the whole document", function()
      assert.is_nil(event.view(doc)[event.DOCUMENT])
    end)
  end)

  describe("DOCUMENT", function()
    it("asks a getter for the whole document", function()
      local d = { event = { action = "A" } }
      assert.equal(d, event.get(d, event.DOCUMENT))
      assert.equal(d, event.getter(d)(event.DOCUMENT))
    end)
  end)

  describe("RAW", function()
    local raw = { eventSource = "s3.amazonaws.com", eventName = "ListBuckets", userIdentity = { type = "Root" } }

    it("asks a getter for the raw CloudTrail record a document was normalized from", function()
      local doc = { event = { action = "ListBuckets" } }
      assert.equal(raw, event.getter(doc, raw)(event.RAW))
      assert.equal("ListBuckets", event.getter(doc, raw)("event.action"))
      assert.is_nil(event.getter(doc)(event.RAW))
    end)

    it("reads an ECS document's raw record from event.original, decoded once", function()
      local text = cjson.encode(raw)
      for _, ecs in ipairs({ { event = { original = text } }, { ["event.original"] = text } }) do
        local get = event.getter(ecs, ecs)
        local got = get(event.RAW)
        assert.same(raw, got)
        assert.equal(got, get(event.RAW))
        assert.same(raw, event.original(ecs))
      end
    end)

    it("gives nil for an ECS document without a raw CloudTrail record in event.original", function()
      for _, ecs in ipairs({ { event = { action = "A" } }, { event = { original = "not json" } },
        { event = { original = '{"message":"not CloudTrail"}' } }, { event = { original = 42 } },
        { event = { original = '{"eventName":' } } }) do
        assert.is_nil(event.getter(ecs, ecs)(event.RAW))
      end
    end)

    it("gives a rule no way to the raw record", function()
      assert.is_nil(event.view({ a = 1 })[event.RAW])
    end)
  end)

  describe("leaves()", function()
    local function all(d, prefix)
      local out = {}
      event.leaves(d, function(name, v)
        out[#out + 1] = name .. "=" .. (type(v) == "number" and ("%g"):format(v) or tostring(v))
        return false
      end, prefix)
      table.sort(out)
      return out
    end

    it("visits every string, number and boolean by its dotted name", function()
      local d = cjson.decode('{"a":{"b":"x","c":[1,2],"d":[{"e":true},{"e":null,"f":"y"}]},'
        .. '"g.h":"z","n":null,"o":{},"p":[]}')
      assert.same({ "a.b=x", "a.c=1", "a.c=2", "a.d.e=true", "a.d.f=y", "g.h=z" }, all(d))
      assert.same({ "top.k=v" }, all({ k = "v" }, "top"))
    end)

    it("stops at the first call that returns true", function()
      local calls = 0
      local hit = event.leaves({ a = { 1, 2, 3, 4 } }, function(_, v)
        calls = calls + 1
        return v == 2
      end)
      assert.is_true(hit)
      assert.equal(2, calls)
      assert.is_false(event.leaves({}, function() return true end))
      assert.is_false(event.leaves(nil, function() return true end))
    end)
  end)
end)
