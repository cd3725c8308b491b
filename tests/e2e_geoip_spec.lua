-- End-to-end specs for the MaxMind databases (--geoip-asn, --geoip-city, geoip = { ... } in
-- the configuration): the binary, its workers under their seccomp filter, libmaxminddb and
-- normalize.lua together put source.as and source.geo in alerts, and rules can match them.
local th = require "support.th"

local ASN, CITY = "tests/fixtures/geoip/test-asn.mmdb", "tests/fixtures/geoip/test-city.mmdb"

local RECORD = [[{"eventVersion":"1.08","eventTime":"2024-10-08T10:15:32Z","eventSource":"sts.amazonaws.com",]] ..
  [["eventName":"GetCallerIdentity","awsRegion":"us-east-1","sourceIPAddress":"%s",]] ..
  [["userAgent":"aws-cli/2.17.60 md/awscrt#0.21.2 ua/2.0 os/macos#23.6.0","eventID":"%s",]] ..
  [["eventType":"AwsApiCall","recipientAccountId":"111111111111"}]]

local RULE = [[
return {
  rule_id = "6c1f3b0e-52a4-4d4e-9a61-3f0d4c2b9e01", name = "GetCallerIdentity", description = "test",
  severity = "low", risk_score = 21, version = 1, language = "kuery",
  query = [=[event.action: "GetCallerIdentity"]=],
}
]]

local SWEDEN = [[
return {
  rule_id = "6c1f3b0e-52a4-4d4e-9a61-3f0d4c2b9e02", name = "From Bredband2 in Sweden", description = "test",
  severity = "low", risk_score = 21, version = 1, language = "kuery",
  query = [=[source.as.organization.name: "Bredband2 AB" and source.geo.country_iso_code: "SE"]=],
}
]]

-- Alerts grouped by rule name.
local function by_rule(out)
  local by = {}
  for _, a in ipairs(th.alerts(out)) do
    local name = a.kibana.alert.rule.name
    by[name] = by[name] or {}
    table.insert(by[name], a)
  end
  return by
end

local function setup()
  local d = th.tmpdir()
  os.execute("mkdir -p " .. d .. "/rules")
  th.write(d .. "/rules/any.lua", RULE)
  th.write(d .. "/rules/sweden.lua", SWEDEN)
  th.write(d .. "/in.ndjson", RECORD:format("89.160.20.156", "e1") .. "\n" .. RECORD:format("216.160.83.57", "e2")
    .. "\n" .. RECORD:format("8.8.8.8", "e3") .. "\n")
  return d
end

describe("MaxMind databases", function()
  after_each(th.cleanup)

  it("put source.as and source.geo in alerts, from the configuration file", function()
    local d = setup()
    th.write(d .. "/c.lua", string.format("return { geoip = { asn = %q, city = %q } }", ASN, CITY))
    local out, err, rc = th.run({ "replay", "--config", d .. "/c.lua", "--rules", d .. "/rules", "--workers", "2",
      d .. "/in.ndjson" })
    assert.equal(0, rc, err)
    local by = by_rule(out)
    local any = by["GetCallerIdentity"]
    assert.equal(3, #any)
    local by_ip = {}
    for _, a in ipairs(any) do by_ip[a.source.ip] = a end
    local se = by_ip["89.160.20.156"]
    assert.same({ number = 29518, organization = { name = "Bredband2 AB" } }, se.source.as)
    assert.same({ city_name = "Link\u{f6}ping", continent_name = "Europe", country_iso_code = "SE",
      country_name = "Sweden", region_iso_code = "SE-E", region_name = "\u{d6}sterg\u{f6}tland County",
      location = { lat = 58.4167, lon = 15.6167 } }, se.source.geo)
    assert.same({ number = 209 }, by_ip["216.160.83.57"].source.as)
    assert.equal("Milton", by_ip["216.160.83.57"].source.geo.city_name)
    assert.is_nil(by_ip["8.8.8.8"].source.as)
    assert.is_nil(by_ip["8.8.8.8"].source.geo)
    -- a rule that reads them
    assert.equal(1, #(by["From Bredband2 in Sweden"] or {}))
    -- and the other new fields
    assert.equal("aws.cloudtrail", se.kibana.alert.original_event.dataset)
    assert.equal("aws-cli", se.user_agent.name)
  end)

  it("take one database alone from the command line", function()
    local d = setup()
    local out, err, rc = th.run({ "replay", "--geoip-asn", ASN, "--rules", d .. "/rules", "--workers", "1",
      d .. "/in.ndjson" })
    assert.equal(0, rc, err)
    for _, a in ipairs(by_rule(out)["GetCallerIdentity"]) do
      assert.is_nil(a.source.geo)
      if a.source.ip == "89.160.20.156" then assert.equal(29518, a.source.as.number) end
    end
  end)

  it("leave them out without a database", function()
    local d = setup()
    local out, err, rc = th.run({ "replay", "--rules", d .. "/rules", "--workers", "1", d .. "/in.ndjson" })
    assert.equal(0, rc, err)
    local by = by_rule(out)
    for _, a in ipairs(by["GetCallerIdentity"]) do
      assert.is_nil(a.source.as)
      assert.is_nil(a.source.geo)
    end
    assert.is_nil(by["From Bredband2 in Sweden"])
  end)

  it("refuse a file that is not a MaxMind database, naming it", function()
    local d = setup()
    local _, err, rc = th.run({ "replay", "--geoip-city", d .. "/in.ndjson", "--rules", d .. "/rules",
      d .. "/in.ndjson" })
    assert.equal(2, rc)
    assert.matches("--geoip-city: not a MaxMind database: " .. d .. "/in.ndjson", err, 1, true)
    th.write(d .. "/c.lua", "return { geoip = { town = \"x.mmdb\" } }")
    _, err, rc = th.run({ "replay", "--config", d .. "/c.lua", d .. "/in.ndjson" })
    assert.equal(2, rc)
    assert.matches("unknown key 'town'", err, 1, true)
  end)
end)
