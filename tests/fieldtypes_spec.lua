-- Specs for scripts/fieldtypes.lua: the ECS types that change how KQL compares.

local fieldtypes = require "fieldtypes"

describe("fieldtypes", function()
  describe("kind()", function()
    it("knows ECS's ip fields", function()
      for _, name in ipairs({ "source.ip", "destination.ip", "client.ip", "server.ip", "host.ip", "related.ip",
        "observer.ip", "source.nat.ip", "network.forwarded_ip", "dns.resolved_ip", "threat.indicator.ip" }) do
        assert.equal("ip", fieldtypes.kind(name), name)
      end
    end)

    it("knows ECS's numeric fields", function()
      for _, name in ipairs({ "source.port", "destination.bytes", "http.response.status_code", "process.pid",
        "event.severity", "event.risk_score", "source.as.number" }) do
        assert.equal("number", fieldtypes.kind(name), name)
      end
    end)

    it("knows ECS's date fields, and the AWS integration's", function()
      for _, name in ipairs({ "@timestamp", "event.created", "event.ingested", "event.start", "file.mtime",
        "aws.cloudtrail.user_identity.session_context.creation_date" }) do
        assert.equal("date", fieldtypes.kind(name), name)
      end
    end)

    it("calls any other field under ECS or the AWS integration a keyword", function()
      for _, name in ipairs({ "source.address", "event.action", "event.code", "aws.cloudtrail.error_code",
        "aws.cloudtrail.flattened.request_parameters.ipPermissions.items.ipRanges.items.cidrIp",
        "message", "tags", "user.name", "aws.cloudtrail.read_only" }) do
        assert.equal("keyword", fieldtypes.kind(name), name)
      end
    end)

    it("leaves fields outside them unknown", function()
      for _, name in ipairs({ "ip", "number", "structured.a.b", "sourceIPAddress", "eventName" }) do
        assert.equal("unknown", fieldtypes.kind(name), name)
      end
    end)
  end)
end)
