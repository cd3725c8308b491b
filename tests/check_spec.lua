-- check.lua: a rule against Elastic's rule schema, and the list of fields the
-- normalizer produces that the check relies on.

local cjson = require "cjson"
local check = require "check"
local normalize = require "normalize"
local th = require "support.th"

local RULE = [[
-- a helper above the table: its keys are not the rule's
local function name_of(x) return x end

return {
  rule_id = "0b7b5b39-86f5-4fb0-9d3f-0b9a4ab8f6a1",
  name = name_of("Bucket Deleted"),
  description = "A bucket was deleted.",
  severity = "low",
  risk_score = 21,
  investigation_fields = { "user.name", "source.ip" },
  query = [=[
event.provider: "s3.amazonaws.com" and
    event.action: "DeleteBucket"
]=],
  tests = {
    { name = "deleted", expect = true, event = { eventSource = "s3.amazonaws.com", eventName = "DeleteBucket" } },
    { name = "listed", expect = false, event = { eventSource = "s3.amazonaws.com", eventName = "ListBuckets" } },
  },
}
]]

-- The diagnostics of one rule source, as "line:col level msg" strings.
local function diags(src)
  local d = th.tmpdir()
  th.write(d .. "/r.lua", src)
  local list = check.files({ d .. "/r.lua" })
  local out = {}
  for i, x in ipairs(list) do
    out[i] = string.format("%s%s %s %s", tostring(x.line), x.col and (":" .. x.col) or "", x.level, x.msg)
  end
  return out
end

local function with(old, new) return (RULE:gsub(old, new, 1)) end

-- Every dotted leaf name of a document (objects under OPEN_FIELDS not entered).
local function leaves(doc, open)
  local names = {}
  local function walk(t, prefix)
    for k, v in pairs(t) do
      local name = prefix and (prefix .. "." .. k) or k
      if open[name] then
        names[name] = true
      elseif type(v) == "table" and rawget(v, 1) == nil and next(v) ~= nil then
        walk(v, name)
      else
        names[name] = true
      end
    end
  end
  walk(doc, nil)
  return names
end

-- A record with every part of CloudTrail the normalizer maps, the rare ones too.
local KITCHEN_SINK = {
  eventVersion = "1.10", eventTime = "2024-05-01T12:00:00Z", eventSource = "iam.amazonaws.com",
  eventName = "CreateGroup", awsRegion = "us-east-1", sourceIPAddress = "198.51.100.7",
  userAgent = "aws-cli/2", errorCode = "X", errorMessage = "y", requestID = "r", eventID = "e",
  eventType = "AwsApiCall", apiVersion = "2010-05-08", managementEvent = true, readOnly = false,
  recipientAccountId = "111122223333", sharedEventID = "s", vpcEndpointId = "vpce-1",
  vpcEndpointAccountId = "111122223333", eventCategory = "Management", sessionCredentialFromConsole = "true",
  userIdentity = {
    type = "IdentityCenterUser", principalId = "p", arn = "arn:aws:sts::111122223333:assumed-role/R/a@b.example",
    accountId = "111122223333", accessKeyId = "ASIA", invokedBy = "x.amazonaws.com", credentialId = "c",
    identityProvider = "idp", userName = "alice",
    invokedByDelegate = { accountId = "444455556666" },
    onBehalfOf = { userId = "u", identityStoreArn = "arn:aws:identitystore::1:identitystore/d-1" },
    inScopeOf = { issuerType = "t", credentialsIssuedTo = "c", sourceArn = "a", sourceAccount = "1" },
    sessionContext = {
      attributes = { creationDate = "2024-05-01T11:00:00Z", mfaAuthenticated = "true" },
      sessionIssuer = { type = "Role", principalId = "p", arn = "arn:aws:iam::1:role/R", accountId = "1",
                        userName = "R" },
      ec2RoleDelivery = "2.0", sourceIdentity = "s", assumedRoot = "true", signInSessionArn = "arn",
      webIdFederationData = { federatedProvider = "f", attributes = { ["cognito-identity.amazonaws.com:aud"] = "x" } },
    },
  },
  requestParameters = { groupName = "admins", userName = "bob", newUserName = "robert" },
  responseElements = { group = { groupId = "g" }, user = { userId = "u2" } },
  additionalEventData = { MFAUsed = "No" },
  serviceEventDetails = { sourceIpAddress = "203.0.113.9" },
  resources = { { ARN = "arn:aws:iam::1:group/admins", accountId = "1", type = "AWS::IAM::Group" } },
  addendum = { reason = "r", updatedFields = "f", originalRequestID = "o", originalEventID = "e" },
  tlsDetails = { tlsVersion = "TLSv1.3", cipherSuite = "c", clientProvidedHostHeader = "h", keyExchange = "k" },
}

describe("check", function()
  after_each(th.cleanup)

  describe("normalize.FIELDS", function()
    local open = {}
    for _, f in ipairs(normalize.OPEN_FIELDS) do open[f] = true end
    local known = {}
    for _, f in ipairs(normalize.FIELDS) do known[f] = true end

    local function missing(rec)
      local out = {}
      for name in pairs(leaves(normalize.normalize(rec), open)) do
        if not known[name] and not open[name] then out[#out + 1] = name end
      end
      table.sort(out)
      return out
    end

    it("names every field the normalizer writes for a record with every part CloudTrail has", function()
      assert.same({}, missing(KITCHEN_SINK))
      local console = cjson.decode(cjson.encode(KITCHEN_SINK))
      console.eventName = "ConsoleLogin"
      console.additionalEventData = { MobileVersion = "No", LoginTo = "https://console", MFAUsed = "Yes" }
      console.userIdentity.type = "AWSService"
      assert.same({}, missing(console))
    end)

    it("names every field the normalizer writes for Elastic's pipeline cases and the Stratus events", function()
      local p = io.popen("ls tests/fixtures/elastic-cloudtrail-pipeline/pipeline/*.log "
        .. "tests/fixtures/stratus-red-team/*.json")
      local n = 0
      for path in p:lines() do
        local text = th.read(path)
        local ok, v = pcall(cjson.decode, text)
        local recs = {}
        if ok and type(v) == "table" then
          recs = v.Records or (v[1] and v) or { v }
        else
          for line in text:gmatch("[^\n]+") do recs[#recs + 1] = cjson.decode(line) end
        end
        for _, rec in ipairs(recs) do
          n = n + 1
          assert.same({}, missing(rec), path)
        end
      end
      p:close()
      assert.is_true(n > 300)
    end)

    it("is sorted within its groups and holds no name twice", function()
      local seen = {}
      for _, f in ipairs(normalize.FIELDS) do
        assert.is_nil(seen[f], f)
        seen[f] = true
      end
    end)
  end)

  describe("field_problem()", function()
    it("accepts fields the normalizer writes, their parent objects, and anything under an open object", function()
      assert.is_nil(check.field_problem("event.action"))
      assert.is_nil(check.field_problem("aws.cloudtrail.user_identity"))
      assert.is_nil(check.field_problem("aws.cloudtrail.flattened.request_parameters.modelId"))
      assert.is_nil(check.field_problem("@timestamp"))
    end)

    it("names the field meant for a misspelled one", function()
      assert.equal("event.acton: no source produces this field; did you mean event.action?",
        check.field_problem("event.acton"))
      assert.equal("aws.cloudtrail.errorcode: no source produces this field; did you mean aws.cloudtrail.error_code?",
        check.field_problem("aws.cloudtrail.errorcode"))
    end)

    it("names the ECS field of a raw CloudTrail name", function()
      assert.matches("(it is the raw CloudTrail name); did you mean event.provider?",
        check.field_problem("eventSource"), 1, true)
    end)

    it("tells a field only Elastic's integration adds from one nothing produces", function()
      assert.matches("does not produce this field (Elastic's integration adds it); only ECS input can match it",
        check.field_problem("related.hash"), 1, true)
      assert.equal("process.name: no source produces this field", check.field_problem("process.name"))
    end)

    it("knows the fields the normalizer now writes: event.dataset, user_agent.*, related.hosts, entities", function()
      for _, f in ipairs({ "event.dataset", "event.module", "user_agent.name", "user_agent.os.full",
        "user_agent.device.name", "related.hosts", "related.entity", "entity.target.id", "actor.entity.id",
        "target.entity.id", "user.entity.id", "user.target.entity.id", "host.target.entity.id", "host.target.id",
        "host.entity.id", "service.entity.id", "service.target.entity.id", "entity.id" }) do
        assert.is_nil(check.field_problem(f), f)
      end
    end)

    it("warns about source.as and source.geo unless the configuration names their database", function()
      check.configure({})
      assert.matches("source.as.number: produced only when the configuration names a MaxMind ASN database",
        check.field_problem("source.as.number"), 1, true)
      assert.matches("MaxMind City database", check.field_problem("source.geo.country_iso_code"), 1, true)
      check.configure({ asn = true })
      assert.is_nil(check.field_problem("source.as.organization.name"))
      assert.is_not_nil(check.field_problem("source.geo.city_name"))
      check.configure({ asn = true, city = true })
      assert.is_nil(check.field_problem("source.geo.city_name"))
      assert.matches("no source produces this field", check.field_problem("source.geo.nothing"), 1, true)
      check.configure({})
    end)

    it("says what a missing field does under not", function()
      assert.matches("under 'not', the clause is then true for every CloudTrail event",
        check.field_problem("related.hash", true), 1, true)
    end)
  end)

  describe("field_problem() on Elastic's own AWS rules", function()
    it("finds every field of their 139 KQL queries produced (related.entity too, now)", function()
      local kql = require "kql"
      local n, only_elastic = 0, {}
      local p = io.popen("ls tests/fixtures/elastic-detection-rules-aws/*.toml")
      for path in p:lines() do
        local text = th.read(path)
        local query = text:match("\nquery = '''\n(.-)'''")
        if text:find('\nlanguage = "kuery"') and query then
          n = n + 1
          for _, field in ipairs(assert(kql.compile(query)).fields) do
            check.configure({ asn = true, city = true })
            local problem = check.field_problem(field)
            if problem then
              assert.matches("Elastic's integration adds it", problem, 1, true)
              only_elastic[field] = true
            end
            check.configure({})
            problem = check.field_problem(field)
            if problem and not only_elastic[field] then
              assert.matches("produced only when the configuration names a MaxMind ASN database", problem, 1, true)
              assert.truthy(field:match("^source%.as%."), field)
            end
          end
        end
      end
      p:close()
      assert.equal(139, n)
      assert.same({}, only_elastic)
    end)
  end)

  describe("nearest()", function()
    it("counts a swap of two letters as one slip, and suggests nothing far off", function()
      assert.equal(1, check.distance("verison", "version"))
      assert.equal("version", check.nearest("verison", { "version", "severity" }))
      assert.is_nil(check.nearest("tags", { "note" }))
    end)
  end)

  describe("files()", function()
    it("finds nothing to say about the two bundled rules", function()
      local list, stats = check.files({
        "rules/aws_bedrock_unauthorized_foundation_model_access_attempt.lua",
        "rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua",
      })
      assert.same({}, list)
      assert.same({ rules = 2, errors = 0, warnings = 0 }, stats)
    end)

    it("finds nothing to say about a complete rule", function()
      assert.same({}, diags(RULE))
    end)

    it("accepts each severity with the edges of its risk_score band, and refuses the next score", function()
      for _, b in ipairs(check.BANDS) do
        for _, score in ipairs({ b.min, b.max }) do
          assert.same({}, diags(with('severity = "low",\n  risk_score = 21', string.format(
            'severity = "%s",\n  risk_score = %d', b.severity, score))), b.severity .. " " .. score)
        end
      end
      assert.same({ "9 error risk_score 22 is in medium's range (22-47), but severity is low (0-21; Elastic uses 21)" },
        diags(with("risk_score = 21", "risk_score = 22")))
      assert.same({ "9 error risk_score must be an integer, not 21.5" },
        diags(with("risk_score = 21", "risk_score = 21.5")))
    end)

    it("reports the loader's errors at their line: wrong types, bad severity, broken KQL", function()
      assert.same({ "9 error field 'risk_score' must be a number, not a string" },
        diags(with("risk_score = 21", 'risk_score = "21"')))
      assert.same({ "8 error severity must be low, medium, high or critical, not 'urgent'" },
        diags(with('"low"', '"urgent"')))
      assert.same({ '13:34 error Expected end of input but ")" found.' },
        diags(with('event.action: "DeleteBucket"', 'event.action: "DeleteBucket" )')))
    end)

    it("wants a UUID rule_id, a name and a description", function()
      assert.same({ "5 error rule_id 'X-1' is not a UUID (8-4-4-4-12 lowercase hex digits, as Elastic's "
        .. "detection-rules require)" }, diags(with("0b7b5b39%-86f5%-4fb0%-9d3f%-0b9a4ab8f6a1", "X-1")))
      assert.same({ "7 error description must not be empty" }, diags(with('"A bucket was deleted."', '"  "')))
    end)

    it("reports a rule_id used twice at the second file, naming the first", function()
      local d = th.tmpdir()
      th.write(d .. "/a.lua", RULE)
      th.write(d .. "/b.lua", RULE)
      local list, stats = check.files({ d .. "/a.lua", d .. "/b.lua" })
      assert.equal(1, stats.errors)
      assert.equal(d .. "/b.lua", list[1].file)
      assert.equal(5, list[1].line)
      assert.equal("rule_id 0b7b5b39-86f5-4fb0-9d3f-0b9a4ab8f6a1 is already used by " .. d .. "/a.lua", list[1].msg)
    end)

    it("warns about an unknown key, suggesting the key meant, and accepts Elastic's other keys", function()
      assert.same({ "8 warning unknown field 'severty'; did you mean 'severity'?" },
        diags(with('  severity = "low",', '  severty = "x",\n  severity = "low",')))
      assert.same({}, diags(with('  severity = "low",', '  interval = "5m",\n  setup = "",\n  severity = "low",')))
    end)

    it("checks the types and forms of the other fields", function()
      local src = with('  severity = "low",', '  version = 0,\n  max_signals = 1.5,\n'
        .. '  from = "yesterday",\n  tags = { 1 },\n  severity = "low",')
      assert.same({
        "8 error version must be an integer of 1 or more, not 0",
        "9 error max_signals must be an integer of 1 or more, not 1.5",
        "10 error from must be date math like now-6m, not 'yesterday'",
        "11 error tags must be a list of strings",
      }, diags(src))
      -- A type the host cannot run is the loader's refusal: said alone, at its line.
      assert.same({ "8 error type 'esql' is not supported here (query, eql, new_terms and threshold rules run)" },
        diags(with('  severity = "low",', '  type = "esql",\n  severity = "low",')))
    end)

    it("warns about query and investigation fields that no source produces, where they are written", function()
      local src = with('"user.name", "source.ip"', '"user.name", "source.ipp"')
      src = src:gsub('event.action: "DeleteBucket"', 'event.actoin: "DeleteBucket"')
      assert.same({
        "10 warning source.ipp: no source produces this field; did you mean source.ip?",
        "13:5 warning event.actoin: no source produces this field; did you mean event.action?",
      }, diags(src))
    end)

    describe("of threat", function()
      local function threat(t)
        return with("  investigation_fields", "  threat = " .. t .. ",\n  investigation_fields")
      end

      it("accepts a tactic, technique and subtechnique with the ids and reference pages of ATT&CK", function()
        assert.same({}, diags(threat([[{ {
    framework = "MITRE ATT&CK",
    tactic = { id = "TA0005", name = "Defense Evasion", reference = "https://attack.mitre.org/tactics/TA0005/" },
    technique = { { id = "T1562", name = "Impair Defenses", reference = "https://attack.mitre.org/techniques/T1562/",
      subtechnique = { { id = "T1562.008", name = "Disable or Modify Cloud Logs",
                         reference = "https://attack.mitre.org/techniques/T1562/008/" } } } } } }]])))
      end)

      it("reports malformed ids, wrong references, a missing name and a stray subtechnique", function()
        assert.same({
          "12 error tactic TA0005: reference must be https://attack.mitre.org/tactics/TA0005/, not "
            .. "'https://attack.mitre.org/tactics/TA0005'",
          "13 error technique id 'T15620' is not of the form T0000",
          "14 error technique T1098 has no name",
          "15 error subtechnique T1562.008 is not a part of technique T1098",
        }, diags(threat([[{ {
    framework = "MITRE ATT&CK",
    tactic = { id = "TA0005", name = "Defense Evasion", reference = "https://attack.mitre.org/tactics/TA0005" },
    technique = { { id = "T15620", name = "x", reference = "https://attack.mitre.org/techniques/T15620/" },
      { id = "T1098", reference = "https://attack.mitre.org/techniques/T1098/",
        subtechnique = { { id = "T1562.008", name = "Disable or Modify Cloud Logs",
                           reference = "https://attack.mitre.org/techniques/T1562/008/" } } } } } }]])))
      end)

      it("wants a list, and only checks the ids of MITRE ATT&CK", function()
        assert.same({ "10 error threat must be a list of { framework, tactic, technique } tables" },
          diags(threat('{ framework = "MITRE ATT&CK" }')))
        assert.same({ "10 warning framework 'MITRE ATLAS': only MITRE ATT&CK mappings are checked" },
          diags(threat('{ { framework = "MITRE ATLAS", tactic = { id = "AML.TA0000" } } }')))
      end)
    end)

    describe("of tests", function()
      it("reports a test without expect or event at the test's line", function()
        local src = with('{ name = "listed", expect = false, event = { eventSource = "s3.amazonaws.com", '
          .. 'eventName = "ListBuckets" } }', '{ name = "listed" }')
        assert.same({
          "15 warning no test expects no match (expect = false)",
          "17 error test 'listed' has no expect = true or false (the verdict the rule must give)",
          "17 error test 'listed' has no event table",
        }, diags(src))
      end)

      it("warns when there are no tests", function()
        local src = RULE:gsub("  tests = {.-\n  },\n", "")
        assert.same({ "1 warning no tests: add one event the rule must match and one it must not" }, diags(src))
      end)
    end)
  end)
end)
