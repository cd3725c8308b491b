-- End to end: SigmaHQ's CloudTrail rules (tests/fixtures/sigma-cloudtrail, written as rule
-- modules) replayed over the Stratus Red Team detonations (tests/fixtures/stratus-red-team).
-- The alerts expected were found by reading each rule and the events: the event ids below
-- are the records each rule's condition holds for, and no others.

local cjson = require "cjson"
local sigma_module = require "support.sigma_module"
local th = require "support.th"

local SIGMA = "tests/fixtures/sigma-cloudtrail/"
local STRATUS = "tests/fixtures/stratus-red-team/"

local function stratus_files()
  local out = {}
  local p = io.popen("ls " .. STRATUS .. "*.json")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- A rules folder with these SigmaHQ rules (file names without .yml), as the importer writes them.
local function rules_dir(names)
  local dir = th.tmpdir() .. "/rules"
  os.execute("mkdir -p " .. th.quote(dir))
  local yaml = {}
  for _, name in ipairs(names) do
    local text, rule = sigma_module.convert(assert(th.read(SIGMA .. name .. ".yml")))
    th.write(dir .. "/" .. name .. ".lua", text)
    yaml[name] = rule
  end
  return dir, yaml
end

-- rule_id -> sorted event ids alerted on
local function by_rule(alerts)
  local out = {}
  for _, a in ipairs(alerts) do
    local id = a.kibana.alert.rule.rule_id
    out[id] = out[id] or {}
    table.insert(out[id], a.event.id)
  end
  for _, list in pairs(out) do table.sort(list) end
  return out
end

-- What the rules below must alert on, read off the rules and the events.
local EXPECT = {
  -- eventSource cloudtrail.amazonaws.com, eventName StopLogging, UpdateTrail or DeleteTrail
  aws_cloudtrail_disable_logging = { "10163ed2-2253-469d-a5ee-cbc6651f8934", "ee73c230-44bc-4492-8542-cfb189eae287" },
  -- DeleteFlowLogs, errorCode Success or absent: the one detonation, no errorCode
  aws_cloudtrail_vpc_flow_logs_deleted = { "ded2f5af-f3a5-46d2-a170-a23206a32c36" },
  -- ssm SendCommand, errorCode Success or absent: in ssm-send-command and steal-instance-credentials
  aws_cloudtrail_ssm_malicious_usage = { "2a5178c8-b4c7-44ba-b066-1ecc79b7087c",
    "5288bfb8-e3fa-4c41-be02-6853521afe8b" },
  -- eventName|startswith UpdateFunctionConfiguration (UpdateFunctionConfiguration20150331v2) and
  -- requestParameters.layers|contains '*' (a list of one layer ARN)
  aws_new_lambda_layer_attached = { "da929d96-8e20-475c-a810-973addd64769" },
  -- UpdateLoginProfile and not userIdentity.arn|fieldref requestParameters.userName: the caller's
  -- ARN is never the user name
  aws_update_login_profile = { "a46a1a42-9ef1-48d4-9c61-507eb6d4019f" },
  -- CreateAccessKey; its filter compares the ARN with the text 'responseElements.accessKey.userName'
  -- (check warns of it), so it never filters: both CreateAccessKey calls
  aws_iam_backdoor_users_keys = { "94faedcc-0fa4-46e6-9322-022e8e934f04", "c64c4ded-ef03-4e5c-81eb-153b118d72f2" },
  -- ConsoleLogin, additionalEventData.MFAUsed 'NO' (the record says "No": case does not count),
  -- responseElements.ConsoleLogin Success
  aws_cloudtrail_console_login_success_without_mfa = { "865d9377-9c6b-4fd7-8aad-725e95f6a140" },
  -- bedrock.amazonaws.com DeleteGuardrail (its id is the DeleteTrail record's: another file)
  aws_cloudtrail_bedrock_guardrail_deleted = { "ee73c230-44bc-4492-8542-cfb189eae287" },
  -- ec2 AuthorizeSecurityGroupIngress (open port 22)
  aws_cloudtrail_security_group_change_ingress_egress = { "9fd68588-ecbf-4528-a345-199fa6bb0821" },
  -- ec2 ModifySnapshotAttribute (share an EBS snapshot)
  aws_snapshot_backup_exfiltration = { "6897ff63-d738-445c-9e86-43e5b1f8e12f" },
  -- requestParameters.attribute userData: the detonation passes userData itself, no attribute
  aws_ec2_startup_script_change = {},
  -- userIdentity.arn|re '.+:assumed-role/aws:.+': no detonation runs as an instance identity
  aws_cloudtrail_imds_malicious_usage = {},
  -- userIdentity.type Root: none
  aws_root_account_usage = {},
}

local NAMES = {}
for name in pairs(EXPECT) do NAMES[#NAMES + 1] = name end
table.sort(NAMES)

describe("Sigma rules end to end", function()
  after_each(th.cleanup)

  it("alert on the Stratus Red Team records their conditions hold for, and no others", function()
    local dir, yaml = rules_dir(NAMES)
    local out, err, rc = th.run({ "replay", "--rules", dir, table.unpack(stratus_files()) })
    assert.equal(0, rc, err)
    assert.matches(#NAMES .. " rules loaded", err)
    local got = by_rule(th.alerts(out))
    for _, name in ipairs(NAMES) do
      local want = EXPECT[name]
      table.sort(want)
      assert.same(want, got[yaml[name].id] or {}, name)
    end
  end)

  it("alert on every record a rule of many matches holds for, found here by reading each record", function()
    -- aws_sts_assumerole_misuse: userIdentity.type AssumedRole and
    -- userIdentity.sessionContext.sessionIssuer.type Role, ASCII case aside
    local want, seen, records = {}, {}, 0
    for _, f in ipairs(stratus_files()) do
      local v = cjson.decode(th.read(f))
      for _, r in ipairs(v[1] and v or { v }) do
        local ui = type(r.userIdentity) == "table" and r.userIdentity or {}
        local sc = type(ui.sessionContext) == "table" and ui.sessionContext or {}
        local si = type(sc.sessionIssuer) == "table" and sc.sessionIssuer or {}
        if type(ui.type) == "string" and ui.type:lower() == "assumedrole" and type(si.type) == "string"
          and si.type:lower() == "role" then
          records = records + 1
          if not seen[r.eventID] then want[#want + 1] = r.eventID end
          seen[r.eventID] = true
        end
      end
    end
    table.sort(want)
    -- Two of the 70 records share an eventID (the DeleteTrail detonation's and the DeleteGuardrail
    -- one's, in another file): one alert uuid, so one alert, as for any rule (DESIGN.md, "Alerts").
    assert.equal(70, records)
    assert.equal(69, #want)
    local dir, yaml = rules_dir({ "aws_sts_assumerole_misuse" })
    local out, err, rc = th.run({ "replay", "--rules", dir, table.unpack(stratus_files()) })
    assert.equal(0, rc, err)
    assert.same(want, by_rule(th.alerts(out))[yaml.aws_sts_assumerole_misuse.id])
  end)

  it("alert with the Sigma id, title, level as severity, and tags", function()
    local dir, yaml = rules_dir({ "aws_cloudtrail_disable_logging",
      "aws_cloudtrail_console_login_success_without_mfa" })
    local out, err, rc = th.run({ "replay", "--rules", dir, table.unpack(stratus_files()) })
    assert.equal(0, rc, err)
    local LEVEL = { low = { "low", 21 }, medium = { "medium", 47 }, high = { "high", 73 } }
    local seen = 0
    for _, a in ipairs(th.alerts(out)) do
      local r = a.kibana.alert.rule
      local y = r.rule_id == yaml.aws_cloudtrail_disable_logging.id and yaml.aws_cloudtrail_disable_logging or
        yaml.aws_cloudtrail_console_login_success_without_mfa
      assert.equal(y.id, r.rule_id)
      assert.equal(y.title, r.name)
      assert.same(y.tags, r.tags)
      assert.equal(LEVEL[y.level][1], a.kibana.alert.severity)
      assert.equal(LEVEL[y.level][2], a.kibana.alert.risk_score)
      assert.equal("aws.cloudtrail", a.data_stream.dataset)  -- the alert is the ECS event, as for any rule
      seen = seen + 1
    end
    assert.equal(3, seen)
  end)

  it("give the same alerts with the prefilter and without, over every rule and every record", function()
    local all = {}
    local p = io.popen("ls " .. SIGMA .. "*.yml")
    for line in p:lines() do all[#all + 1] = line:match("([^/]+)%.yml$") end
    p:close()
    local dir = rules_dir(all)
    local files = stratus_files()
    local full, ferr, rc1 = th.run({ "replay", "--no-prefilter", "--rules", dir, table.unpack(files) })
    local pre, perr, rc2 = th.run({ "replay", "--rules", dir, table.unpack(files) })
    assert.equal(0, rc1, ferr)
    assert.equal(0, rc2, perr)
    assert.matches("57 rules loaded", perr)
    assert.same(by_rule(th.alerts(full)), by_rule(th.alerts(pre)))
    assert.is_true(#th.alerts(pre) > 80)
  end)

  it("read an ECS document's raw record from event.original, and pass over one without it", function()
    local dir = rules_dir({ "aws_cloudtrail_disable_logging" })
    local stop = cjson.decode(th.read(STRATUS .. "aws.defense-evasion.cloudtrail-stop.json"))[1]
    local with = { ["@timestamp"] = stop.eventTime, event = { id = "ecs-with", action = "StopLogging",
      provider = "cloudtrail.amazonaws.com", original = cjson.encode(stop) },
      data_stream = { dataset = "aws.cloudtrail" } }
    local without = { ["@timestamp"] = stop.eventTime, event = { id = "ecs-without", action = "StopLogging",
      provider = "cloudtrail.amazonaws.com" }, data_stream = { dataset = "aws.cloudtrail" } }
    local f = th.tmpdir() .. "/ecs.ndjson"
    th.write(f, cjson.encode(with) .. "\n" .. cjson.encode(without) .. "\n")
    for _, flag in ipairs({ "--no-prefilter", "--no-max-signals" }) do  -- without the prefilter, and with it
      local out, err, rc = th.run({ "replay", flag, "--rules", dir, f })
      assert.equal(0, rc, err)
      local ids = {}
      for _, a in ipairs(th.alerts(out)) do ids[#ids + 1] = a.event.id end
      assert.same({ "ecs-with" }, ids)
    end
  end)
end)
