-- End to end: Elastic's EQL rules for AWS, imported with the built binary and replayed over
-- real CloudTrail events (Stratus Red Team's detonations, as tests/fixtures and examples/
-- hold them): the rules about a technique's API call fire on it and on nothing else, with
-- and without the prefilter, and an EQL rule exports back to the TOML it came from.

local cjson = require "cjson"
local th = require "support.th"

local ELASTIC = "tests/fixtures/elastic-detection-rules-aws"
local STRATUS = "tests/fixtures/stratus-red-team"

-- The Elastic rule files whose language is EQL.
local function eql_sources()
  local list = {}
  local p = io.popen("grep -l '^language = \"eql\"' " .. ELASTIC .. "/*.toml")
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  return list
end

-- Import them all into a fresh folder; returns it and import's stdout.
local function imported()
  local src = th.tmpdir()
  for _, f in ipairs(eql_sources()) do os.execute("cp " .. th.quote(f) .. " " .. th.quote(src)) end
  local dir = th.tmpdir()
  local out, err, rc = th.run({ "import", "--out", dir, src })
  assert.equal(0, rc, err)
  return dir, out
end

-- Alerts without the times they were made.
local function stripped(out)
  local list = th.alerts(out)
  for _, a in ipairs(list) do
    a["@timestamp"], a.kibana.alert.start = nil, nil
    a.event.ingested, a.kibana.alert.original_event.ingested = nil, nil
  end
  return list
end

-- rule name -> { [source file name] = count }
local function by_rule_and_file(alerts)
  local t = {}
  for _, a in ipairs(alerts) do
    local name = a.kibana.alert.rule.name
    local file = a.trailhound.source.path:match("([^/]+)$")
    t[name] = t[name] or {}
    t[name][file] = (t[name][file] or 0) + 1
  end
  return t
end

describe("Elastic's EQL rules (the binary)", function()
  after_each(th.cleanup)

  it("imports the 27, runnable: 26 single-event queries and the sequence; check passes them", function()
    assert.equal(27, #eql_sources())
    local dir, out = imported()
    assert.equal("27 files: 27 imported", out:match("([^\n]*)\n$"))
    local cout, _, crc = th.run({ "check", dir })
    assert.equal(0, crc, cout)
    assert.matches("\n27 rules checked: 0 errors, %d+ warnings\n$", cout)
  end)

  it("fire on the Stratus Red Team detonations they are about, and only there, with or without the prefilter",
    function()
      local dir = imported()
      os.remove(dir .. "/discovery_bedrock_model_recon_and_invocation_via_long_term_key.lua")
      local inputs = { STRATUS, "examples/cloudtrail/stratus-red-team.ndjson" }
      local pre_out, pre_err, rc = th.run({ "replay", "--rules", dir, table.unpack(inputs) })
      assert.equal(0, rc, pre_err)
      local full_out, full_err, rc2 = th.run({ "replay", "--no-prefilter", "--rules", dir, table.unpack(inputs) })
      assert.equal(0, rc2, full_err)
      local pre, full = stripped(pre_out), stripped(full_out)
      assert.equal(#full, #pre)
      for i = 1, #full do assert.same(full[i], pre[i], "alert " .. i) end
      assert.same({
        ["AWS EC2 EBS Snapshot Shared or Made Public"] = { ["aws.exfiltration.ec2-share-ebs-snapshot.json"] = 1 },
        ["AWS RDS DB Snapshot Shared with Another Account"] = { ["aws.exfiltration.rds-share-snapshot.json"] = 1 },
        ["AWS IAM AdministratorAccess Policy Attached to Role"] = {
          ["aws.persistence.iam-create-backdoor-role.json"] = 1 },
        ["AWS IAM AdministratorAccess Policy Attached to User"] = {
          ["aws.persistence.iam-create-admin-user.json"] = 1 },
        ["AWS IAM Roles Anywhere Trust Anchor Created with External CA"] = {
          ["aws.persistence.rolesanywhere-create-trust-anchor.json"] = 1 },
        ["AWS Lambda Function Policy Updated to Allow Public Invocation"] = {
          ["aws.persistence.lambda-backdoor-function.json"] = 1 },
      }, by_rule_and_file(pre))
      -- the same detonations in examples/ are the same events: the same alerts, written once
      assert.matches("duplicate written once", pre_err)
      for _, a in ipairs(pre) do
        assert.equal("eql", a.kibana.alert.rule.type)
        assert.equal("siem.eqlRule", a.kibana.alert.rule.rule_type_id)
      end
    end)

  it("hold EQL's semantics on variants of real events: case, wildcards in stringContains, not on a missing field",
    function()
      local dir = imported()
      os.remove(dir .. "/discovery_bedrock_model_recon_and_invocation_via_long_term_key.lua")
      local function record(file, action)
        for _, r in ipairs(cjson.decode(th.read(STRATUS .. "/" .. file))) do
          if r.eventName == action then return r end
        end
        error(action .. " not in " .. file)
      end
      local lines = {}
      local function add(rec, id, edit)
        rec = cjson.decode(cjson.encode(rec))
        rec.eventID = id
        if edit then edit(rec) end
        lines[#lines + 1] = cjson.encode(rec)
      end
      local attach = record("aws.persistence.iam-create-admin-user.json", "AttachUserPolicy")
      add(attach, "quarantine", function(r)
        r.requestParameters.policyArn = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2"
      end)
      add(attach, "kali", function(r)
        r.userAgent = "aws-cli/2.13 Python/3.11 Linux/6.5.0-kali3-amd64 distrib#kali.2023"
      end)
      add(attach, "kali-upper", function(r) r.userAgent = "aws-cli/2.13 DISTRIB#KALI" end)  -- stringContains: cased
      add(attach, "kali-failed", function(r)   -- the rules want event.outcome == "success"
        r.userAgent = "TruffleHog"
        r.errorCode = "AccessDenied"
      end)
      local lambda = record("aws.persistence.lambda-backdoor-function.json", "AddPermission20150331v2")
      -- event.action : "AddPermission*" is case-insensitive; principal=\* is the text principal=*
      add(lambda, "cross-account", function(r)
        r.eventName = "addpermission20150331V2"
        r.requestParameters.principal = "123456789012"
      end)
      add(lambda, "service-principal", function(r) r.requestParameters.principal = "s3.amazonaws.com" end)
      -- a root login profile: `not stringContains(request_parameters, "userName=")` holds without one
      local profile = record("aws.persistence.iam-create-user-login-profile.json", "CreateLoginProfile")
      add(profile, "root-profile", function(r)
        r.userIdentity = { type = "Root", arn = "arn:aws:iam::123456789012:root", accountId = "123456789012" }
        r.requestParameters.userName = nil
      end)
      add(profile, "root-profile-for-user", function(r)
        r.userIdentity = { type = "Root", arn = "arn:aws:iam::123456789012:root", accountId = "123456789012" }
      end)
      local d = th.tmpdir()
      th.write(d .. "/variants.ndjson", table.concat(lines, "\n") .. "\n")
      local pre_out, pre_err, rc = th.run({ "replay", "--rules", dir, d .. "/variants.ndjson" })
      assert.equal(0, rc, pre_err)
      local full_out, _, rc2 = th.run({ "replay", "--no-prefilter", "--rules", dir, d .. "/variants.ndjson" })
      assert.equal(0, rc2)
      local pre, full = stripped(pre_out), stripped(full_out)
      assert.same(full, pre)
      local got = {}
      for _, a in ipairs(pre) do
        got[#got + 1] = a.event.id .. ": " .. a.kibana.alert.rule.name
      end
      table.sort(got)
      assert.same({
        "cross-account: AWS Lambda Function Policy Updated to Allow Cross-Account Invocation",
        "kali-upper: AWS IAM AdministratorAccess Policy Attached to User",
        "kali: AWS IAM AdministratorAccess Policy Attached to User",
        "kali: AWS Suspicious User Agent Fingerprint",
        "quarantine: AWS IAM CompromisedKeyQuarantine Policy Attached to User",
        "root-profile: AWS IAM Login Profile Added for Root",
      }, got)
    end)

  it("exports an EQL rule back to the TOML it was imported from", function()
    local toml = require "toml"
    local dir = imported()
    for _, name in ipairs({ "persistence_lambda_function_url_public_access",
      "impact_s3_bucket_object_uploaded_with_ransom_keyword",
      "discovery_bedrock_model_recon_and_invocation_via_long_term_key" }) do
      local out, err, rc = th.run({ "export", dir .. "/" .. name .. ".lua" })
      assert.equal(0, rc, err)
      assert.same(toml.parse(th.read(ELASTIC .. "/" .. name .. ".toml")), toml.parse(out), name)
    end
  end)
end)
