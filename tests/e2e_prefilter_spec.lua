-- End to end: the host's prefilter (host/prefilter.c) changes no alert. Full evaluation
-- (--no-prefilter) and prefiltered evaluation over the bench corpus (real Stratus Red Team
-- events and denied Bedrock calls) plus an adversarial corpus (JSON escapes, odd spacing, the
-- values inside another field, other services, ECS documents nested and dotted, arrays)
-- must give the same alerts, in the same order; and a rule reloaded while running changes
-- the prefilter with it.

local cjson = require "cjson"
local th = require "support.th"
local ev = require "support.events"
local sigma_module = require "support.sigma_module"

local function rule(id, name, query, match)
  return table.concat({
    "return {",
    string.format("  rule_id = %q, name = %q,", id, name),
    '  description = "d", severity = "low", risk_score = 1, version = 1,',
    query and string.format("  language = \"kuery\", query = %q,", query) or "",
    match and ("  match = " .. match .. ",") or "",
    "}", "" }, "\n")
end

-- The rules folder: the two Bedrock rules and rules of other shapes.
local function rules_dir(extra)
  local files = {
    ["wildcard.lua"] = rule("11111111-2222-4333-8444-000000000101", "STS by Stratus",
      'event.provider: "sts.amazonaws.com" and user_agent.original: *stratus-red-team*'),
    ["not.lua"] = rule("11111111-2222-4333-8444-000000000102", "IAM but reads",
      'event.provider: "iam.amazonaws.com" and not event.action: (GetUser or ListUsers or GetRole)'),
    ["either.lua"] = rule("11111111-2222-4333-8444-000000000103", "Either",
      '(event.action: "CreateAccessKey" and cloud.region: "us-east-1") or ' ..
      '(event.provider: "ec2.amazonaws.com" and event.outcome: failure)'),
    ["failed_login.lua"] = rule("11111111-2222-4333-8444-000000000106", "Failed login",
      'event.action: ConsoleLogin and event.outcome: failure'),
    ["iam_failure.lua"] = rule("11111111-2222-4333-8444-000000000107", "IAM failure",
      'event.provider: "iam.amazonaws.com" and event.outcome: "failure"'),
  }
  for name, text in pairs(extra or {}) do files[name] = text end
  return th.rules_dir(files)
end

-- Adversarial records: the ids of those that must alert, and the text of all.
local function adversarial()
  local function denied(id) return cjson.encode(ev.denied("PutResourcePolicy", "AccessDenied", id)) end
  local lines, want = {}, {}
  local function add(text, alerts)  -- text: one value, not gsub's two
    lines[#lines + 1] = text
    if alerts then want[#want + 1] = alerts end
  end
  add((denied("esc-source"):gsub('"eventSource":"bedrock', '"eventSource":"b\\u0065drock')), "esc-source")
  add((denied("esc-action"):gsub('"eventName":"PutResourcePolicy"', '"eventName":"Put\\u0052esourcePolicy"')),
    "esc-action")
  add((denied("esc-code"):gsub('"errorCode":"AccessDenied"', '"errorCode":"Access\\u0044enied"')), "esc-code")
  local all = ("bedrock.amazonaws.com"):gsub(".", function(c) return string.format("\\u%04x", c:byte()) end)
  add((denied("all-escaped"):gsub('"eventSource":"bedrock%.amazonaws%.com"', '"eventSource":"' .. all .. '"')),
    "all-escaped")
  add((denied("spaced"):gsub('"eventSource":"', '"eventSource"  :\t "')), "spaced")
  add((denied("surrogate"):gsub('"eventID"', '"note":"\\ud83d\\ude00 \\\\ \\"x\\"","eventID"')), "surrogate")
  add("[" .. denied("array") .. "]", "array")
  add(cjson.encode({ ["@timestamp"] = "2024-10-17T20:09:52.000Z", data_stream = { dataset = "aws.cloudtrail" },
    event = { provider = "bedrock.amazonaws.com", action = "PutResourcePolicy", outcome = "failure",
      id = "ecs-nested" }, aws = { cloudtrail = { error_code = "AccessDeniedException" } } }), "ecs-nested")
  add(('{"@timestamp":"2024-10-17T20:09:52.000Z","data_stream.dataset":"aws.cloudtrail",' ..
    '"event.provider":"bedrock.amazonaws.com","event.action":"Delete\\u0052esourcePolicy",' ..
    '"event.outcome":"failure","event.id":"ecs-dotted","aws.cloudtrail":{"error_code":"AccessDenied"}}'), "ecs-dotted")
  -- A failed console login says so only in its response, in capitals: event.outcome is
  -- "failure" with no errorCode in the record.
  local login = ev.real("PutFoundationModelEntitlement")
  login.eventSource, login.eventName, login.eventID = "signin.amazonaws.com", "ConsoleLogin", "login-failed"
  login.responseElements = { ConsoleLogin = "FAILURE" }
  add(cjson.encode(login), "login-failed")
  -- Must not alert, whatever the prefilter makes of them.
  local other = ev.denied("PutBucketPolicy", "AccessDenied", "inside-other", "s3.amazonaws.com")
  other.errorMessage = "bedrock.amazonaws.com PutResourcePolicy AccessDenied"
  add(cjson.encode(other))
  add((denied("upper"):gsub('"eventSource":"bedrock', '"eventSource":"Bedrock')))
  add((denied("quoted"):gsub('"eventSource":"bedrock%.amazonaws%.com"',
    '"eventSource":"s3.amazonaws.com","x":"\\"bedrock.amazonaws.com\\""')))
  add(cjson.encode(ev.denied("PutResourcePolicy", "AccessDenied", "ecr", "ecr.amazonaws.com")))
  return table.concat(lines, "\n") .. "\n", want
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

-- The same files replayed with full evaluation (--no-prefilter) and prefiltered: both succeed and
-- write the same alerts, in the same order. Returns both runs' alerts and their stderr.
local function differential(rules, files)
  local full_out, full_err, rc1 = th.run({ "replay", "--no-prefilter", "--rules", rules, table.unpack(files) })
  local pre_out, pre_err, rc2 = th.run({ "replay", "--rules", rules, table.unpack(files) })
  assert.equal(0, rc1, full_err)
  assert.equal(0, rc2, pre_err)
  local full, pre = stripped(full_out), stripped(pre_out)
  assert.equal(#full, #pre)
  for i = 1, #full do assert.same(full[i], pre[i], "alert " .. i) end
  return full, pre, full_err, pre_err
end

-- A bench corpus of n events (tests/bench/make-corpus.lua) in a new folder: the folder and the
-- corpus's path.
local function bench_corpus(n)
  local d = th.tmpdir()
  os.execute("lua5.4 tests/bench/make-corpus.lua " .. n .. " " .. th.quote(d) .. " >/dev/null 2>&1")
  local corpus = d .. "/corpus.ndjson"
  assert.is_truthy(th.read(corpus), "no corpus")
  return d, corpus
end

describe("the prefilter", function()
  after_each(th.cleanup)

  it("changes no alert on the bench corpus and an adversarial corpus, and skips most records", function()
    local d, corpus = bench_corpus(10000)
    local text, want = adversarial()
    th.write(d .. "/adversarial.ndjson", text)
    local rules = rules_dir()
    local files = { corpus, d .. "/adversarial.ndjson" }
    local full, pre, full_err, pre_err = differential(rules, files)
    assert.is_true(#full > 600, #full .. " alerts")
    -- The adversarial records that must alert did, with and without it.
    local ids = {}
    for _, a in ipairs(pre) do ids[a.event.id] = true end
    for _, id in ipairs(want) do assert.is_true(ids[id], id .. " did not alert") end
    for _, id in ipairs({ "inside-other", "upper", "quoted", "ecr" }) do assert.is_nil(ids[id], id) end
    -- Both count every record; the prefiltered run skipped most undecoded.
    local n = full_err:match("(%d+) records")
    assert.equal(n, pre_err:match("(%d+) records"))
    local skipped, of = pre_err:match("prefilter: (%d+) of (%d+) records skipped undecoded")
    assert.equal(n, of)
    assert.is_true(tonumber(skipped) > tonumber(n) / 2, pre_err)
    assert.not_matches("prefilter:", full_err)
  end)

  it("changes no alert with rules on addresses, values with no field, field name wildcards and nested queries",
    function()
      local d, corpus = bench_corpus(3000)
      -- Addresses written otherwise than the rules write them.
      local extra = {}
      local function add(e, id, ip)
        e.eventID, e.sourceIPAddress = id, ip
        extra[#extra + 1] = ev.line(e)
      end
      add(ev.denied("PutResourcePolicy", "AccessDenied", "x"), "v6-long", "2001:0db8:0000::0001")
      add(ev.denied("PutResourcePolicy", "AccessDenied", "x"), "v4-mapped", "::ffff:10.1.2.3")
      add(ev.denied("PutResourcePolicy", "AccessDenied", "x"), "v4-plain", "10.200.0.1")
      add(ev.denied("PutResourcePolicy", "AccessDenied", "x"), "v4-zero", "010.1.2.3")
      extra[#extra + 1] = cjson.encode({ ["@timestamp"] = "2024-10-17T20:09:52.000Z",
        event = { provider = "bedrock.amazonaws.com", action = "PutResourcePolicy", id = "ecs-v6" },
        source = { ip = "2001:DB8::1" }, deltas = { { a = "x", b = "y" }, { a = "y", b = "x" } } })
      local text = adversarial()
      th.write(d .. "/adversarial.ndjson", text .. table.concat(extra))
      local rules = rules_dir({
        ["cidr.lua"] = rule("11111111-2222-4333-8444-000000000111", "CIDR",
          'event.provider: "bedrock.amazonaws.com" and source.ip: (10.0.0.0/8 or "2001:db8::/32")'),
        ["ip.lua"] = rule("11111111-2222-4333-8444-000000000112", "IP",
          'event.action: PutResourcePolicy and source.ip: "2001:db8::1" and not related.ip: 10.1.2.3'),
        ["anyfield.lua"] = rule("11111111-2222-4333-8444-000000000113", "Any field",
          'event.provider: "bedrock.amazonaws.com" and "AccessDenied"'),
        ["anyfield_alone.lua"] = rule("11111111-2222-4333-8444-000000000114", "Any field alone",
          '"sts.amazonaws.com" and (*stratus-red-team* or 10.0.0.0/8)'),
        ["fieldglob.lua"] = rule("11111111-2222-4333-8444-000000000115", "Field glob",
          'event.action: PutResourcePolicy and aws.cloudtrail.*: Access*'),
        ["nested.lua"] = rule("11111111-2222-4333-8444-000000000116", "Nested",
          'deltas:{ a: x and b: y } and not event.action: GetUser'),
      })
      local files = { corpus, d .. "/adversarial.ndjson" }
      local _, pre = differential(rules, files)
      local by = {}
      for _, a in ipairs(pre) do
        local name = a.kibana.alert.rule.name
        by[name] = by[name] or {}
        by[name][a.event.id] = true
      end
      for _, id in ipairs({ "esc-source", "all-escaped", "spaced", "array" }) do
        assert.is_true(by["Any field"][id], id)
      end
      assert.is_nil(by["Any field"]["ecs-nested"])   -- AccessDeniedException is another value
      for _, id in ipairs({ "v6-long", "v4-mapped", "v4-plain", "ecs-v6" }) do assert.is_true(by.CIDR[id], id) end
      assert.is_nil(by.CIDR["v4-zero"])          -- 010.1.2.3 is no address: no source.ip
      assert.same({ ["v6-long"] = true, ["ecs-v6"] = true }, by.IP)
      assert.is_true(by["Field glob"]["esc-code"])
      assert.same({ ["ecs-v6"] = true }, by.Nested)
      assert.is_true(next(by["Any field alone"]) ~= nil)
    end)

  it("changes no alert with conditions on raw fields: keys and values escaped, repeated, of other types, dropped",
    function()
      local d, corpus = bench_corpus(3000)
      -- Denied PutResourcePolicy calls (their identity an assumed role, its issuer's type "Role"),
      -- their identity type and region written every way a decoder reads the same or otherwise.
      local lines = {}
      local function add(id, edit, text_edit)
        local e = ev.denied("PutResourcePolicy", "AccessDenied", id)
        e.awsRegion = "us-east-1"
        if edit then edit(e) end
        local text = cjson.encode(e)
        if text_edit then text = text_edit(text) end
        lines[#lines + 1] = text
      end
      local function type_is(v) return function(e) e.userIdentity.type = v end end
      add("role")
      add("role-escaped", nil, function(t) return (t:gsub('"type":"AssumedRole"', '"type":"Assumed\\u0052ole"')) end)
      add("key-escaped", nil, function(t) return (t:gsub('"userIdentity":', '"user\\u0049dentity":')) end)
      add("user", type_is("IAMUser"))
      add("dash", type_is("-"))
      add("empty", type_is(""))
      add("array", type_is({ "AssumedRole" }))
      add("array-other", type_is({ "Root" }))
      add("number", type_is(7))
      add("no-type", type_is(nil))
      add("identity-string", function(e) e.userIdentity = "AssumedRole" end)
      add("twice-last-user", type_is("IAMUser"), function(t)
        return (t:gsub("^{", '{"userIdentity":{"type":"AssumedRole"},', 1))
      end)
      add("twice-last-role", nil, function(t)
        return (t:gsub('"userIdentity":{', '"userIdentity":{"type":"IAMUser",', 1))
      end)
      add("region-escaped", type_is("IAMUser"), function(t) return (t:gsub('"us%-east%-1"', '"us-\\u0065ast-1"')) end)
      add("region-array", function(e) e.userIdentity.type, e.awsRegion = "IAMUser", { "us-east-1" } end)
      add("region-other", function(e) e.userIdentity.type, e.awsRegion = "IAMUser", "us-east-2" end)
      add("region-none", function(e) e.userIdentity.type, e.awsRegion = "IAMUser", nil end)
      add("region-spaced", type_is("IAMUser"), function(t) return (t:gsub('"awsRegion":', '"awsRegion" :\t ')) end)
      th.write(d .. "/fields.ndjson", table.concat(lines, "\n") .. "\n")
      local rules = rules_dir({
        ["not_role.lua"] = rule("11111111-2222-4333-8444-000000000121", "Not a role",
          'event.provider: "bedrock.amazonaws.com" and event.action: PutResourcePolicy' ..
          ' and not aws.cloudtrail.user_identity.type: ("AssumedRole" or "-" or "")'),
        ["region.lua"] = rule("11111111-2222-4333-8444-000000000122", "Region",
          'event.action: PutResourcePolicy and cloud.region: "us-east-1" and aws.cloudtrail.error_code: AccessDenied'),
      })
      local _, pre = differential(rules, { corpus, d .. "/fields.ndjson" })
      local by = { ["Not a role"] = {}, Region = {} }
      for _, a in ipairs(pre) do
        local name = a.kibana.alert.rule.name
        if by[name] then by[name][a.event.id] = true end
      end
      -- "-" and "" are dropped: no type, not ruled out. An array holding the value is ruled out
      -- by the rule (KQL), not by the prefilter; the last of two keys counts.
      assert.same({ user = true, dash = true, empty = true, ["array-other"] = true, number = true,
        ["no-type"] = true, ["identity-string"] = true, ["twice-last-user"] = true, ["region-escaped"] = true,
        ["region-array"] = true, ["region-other"] = true, ["region-none"] = true, ["region-spaced"] = true },
        by["Not a role"])
      for _, id in ipairs({ "role", "region-escaped", "region-array", "region-spaced" }) do
        assert.is_true(by.Region[id], id)
      end
      for _, id in ipairs({ "region-other", "region-none" }) do assert.is_nil(by.Region[id], id) end
    end)

  it("changes no alert with Sigma rules: values in any case, escaped, inside an ECS document's event.original",
    function()
      local d, corpus = bench_corpus(3000)
      local stop = cjson.decode(th.read("tests/fixtures/stratus-red-team/aws.defense-evasion.cloudtrail-stop.json"))[1]
      local lines = {}
      local function add(e, id, edit)
        e = cjson.decode(cjson.encode(e))
        e.eventID = id
        local text = cjson.encode(e)
        if edit then text = edit(text) end
        lines[#lines + 1] = text
      end
      add(stop, "stop-upper", function(t) return (t:gsub('"StopLogging"', '"STOPLOGGING"')) end)
      add(stop, "stop-escaped", function(t) return (t:gsub('"StopLogging"', '"Stop\\u004cogging"')) end)
      add(stop, "stop-source-upper", function(t)
        return (t:gsub('"cloudtrail%.amazonaws%.com"', '"CloudTrail.AmazonAWS.com"'))
      end)
      local imds = cjson.decode(cjson.encode(stop))
      imds.userIdentity.arn = "arn:aws:sts::1:assumed-role/aws:ec2-instance/i-0a"
      imds.eventSource, imds.eventName = "ec2.amazonaws.com", "DescribeInstances"
      add(imds, "imds")
      add(imds, "imds-upper", function(t) return (t:gsub("assumed%-role", "ASSUMED-ROLE")) end)  -- re: no match
      local root = cjson.decode(cjson.encode(stop))
      root.userIdentity = { type = "ROOT", arn = "arn:aws:iam::1:root" }
      add(root, "root")
      local th_ua = cjson.decode(cjson.encode(stop))
      th_ua.userAgent = "TRUFFLEHOG"  -- the rule wants the whole value TruffleHog
      add(th_ua, "trufflehog")
      -- ECS documents, the raw record in event.original (escaped once more), or not there
      local function ecs(rec, id, keep)
        rec = cjson.decode(cjson.encode(rec))
        rec.eventID = id
        return cjson.encode({ ["@timestamp"] = rec.eventTime, event = { id = id, action = rec.eventName,
          provider = rec.eventSource, original = keep and cjson.encode(rec) or nil },
          data_stream = { dataset = "aws.cloudtrail" } })
      end
      lines[#lines + 1] = ecs(stop, "ecs-stop", true)
      lines[#lines + 1] = ecs(imds, "ecs-imds", true)
      lines[#lines + 1] = ecs(stop, "ecs-stop-no-original", false)
      th.write(d .. "/sigma.ndjson", table.concat(lines, "\n") .. "\n")
      local extra = {}
      for _, name in ipairs({ "aws_cloudtrail_disable_logging", "aws_cloudtrail_imds_malicious_usage",
        "aws_root_account_usage", "aws_cloudtrail_pua_trufflehog", "aws_sts_assumerole_misuse",
        "aws_cloudtrail_console_login_success_without_mfa" }) do
        extra[name .. ".lua"] = sigma_module.convert(th.read("tests/fixtures/sigma-cloudtrail/" .. name .. ".yml"))
      end
      local rules = rules_dir(extra)
      local files = { corpus, d .. "/sigma.ndjson" }
      local _, pre, full_err, pre_err = differential(rules, files)
      local by = {}
      for _, a in ipairs(pre) do
        local name = a.kibana.alert.rule.name
        by[name] = by[name] or {}
        by[name][a.event.id] = true
      end
      local logging = by["AWS CloudTrail Important Change"] or {}
      for _, id in ipairs({ "stop-upper", "stop-escaped", "stop-source-upper", "ecs-stop" }) do
        assert.is_true(logging[id], id)
      end
      assert.is_nil(logging["ecs-stop-no-original"])
      local imds_alerts = by["Malicious Usage Of IMDS Credentials Outside Of AWS Infrastructure"] or {}
      assert.is_true(imds_alerts.imds and imds_alerts["ecs-imds"])
      assert.is_nil(imds_alerts["imds-upper"])  -- re is case-sensitive
      assert.is_true((by["AWS Root Credentials"] or {}).root)
      assert.is_true((by["PUA - AWS TruffleHog Execution"] or {}).trufflehog)
      -- the prefilter still skips most of the corpus with these rules loaded
      local skipped, of = pre_err:match("prefilter: (%d+) of (%d+) records skipped undecoded")
      assert.is_truthy(skipped, pre_err)
      assert.is_true(tonumber(skipped) > 0, pre_err)
      assert.equal(full_err:match("(%d+) records"), of)
    end)

  it("changes no alert with EQL rules: values in another case, wildcards, regex~, the category", function()
    local d, corpus = bench_corpus(3000)
    local text = adversarial()
    local function denied(id) return cjson.encode(ev.denied("PutResourcePolicy", "AccessDenied", id)) end
    local more = {
      (denied("action-upper"):gsub('"PutResourcePolicy"', '"PUTRESOURCEPOLICY"')),
      (denied("action-escaped-upper"):gsub('"PutResourcePolicy"', '"\\u0050UTRESOURCEPOLICY"')),
      (denied("source-upper"):gsub('"bedrock%.amazonaws%.com"', '"BEDROCK.AmazonAWS.com"')),
    }
    th.write(d .. "/adversarial.ndjson", text .. table.concat(more, "\n") .. "\n")
    local function eql_rule(id, name, query)
      return table.concat({ "return {",
        string.format("  rule_id = %q, name = %q,", id, name),
        '  description = "d", severity = "low", risk_score = 1, version = 1, type = "eql", language = "eql",',
        string.format("  query = %q,", query), "}", "" }, "\n")
    end
    local rules = rules_dir({
      ["eql_fold.lua"] = eql_rule("11111111-2222-4333-8444-000000000121", "EQL fold",
        'any where event.provider == "bedrock.amazonaws.com" and event.action : "putresource*" '
          .. 'and event.outcome == "failure"'),
      ["eql_in.lua"] = eql_rule("11111111-2222-4333-8444-000000000122", "EQL in~",
        'any where event.action in~ ("createaccesskey", "PUTRESOURCEPOLICY") and cloud.region like "*-northeast-*"'),
      ["eql_contains.lua"] = eql_rule("11111111-2222-4333-8444-000000000123", "EQL contains",
        'any where stringContains(user_agent.original, "stratus-red-team") and event.provider == "sts.amazonaws.com"'),
      ["eql_category.lua"] = eql_rule("11111111-2222-4333-8444-000000000124", "EQL category",
        'iam where event.action in ("CreateUser", "CreateAccessKey")'),
      ["eql_regex.lua"] = eql_rule("11111111-2222-4333-8444-000000000125", "EQL regex",
        'any where event.provider regex~ "BEDROCK\\\\.amazonaws\\\\.com" and not event.action == "GetUser"'),
    })
    local files = { corpus, d .. "/adversarial.ndjson" }
    local _, pre, _, pre_err = differential(rules, files)
    local by = {}
    for _, a in ipairs(pre) do
      local name = a.kibana.alert.rule.name
      by[name] = by[name] or {}
      by[name][a.event.id] = true
    end
    for _, id in ipairs({ "action-upper", "action-escaped-upper", "esc-action", "ecs-nested" }) do
      assert.is_true((by["EQL fold"] or {})[id], id)
    end
    assert.is_nil((by["EQL fold"] or {})["source-upper"])       -- == is case-sensitive
    assert.is_true((by["EQL regex"] or {})["source-upper"])     -- regex~ is not
    assert.is_true((by["EQL regex"] or {})["upper"])
    assert.is_true((by["EQL in~"] or {})["action-upper"])
    assert.is_truthy(by["EQL contains"], "no alert of EQL contains")
    assert.is_truthy(by["EQL category"], "no alert of EQL category")
    local skipped = pre_err:match("prefilter: (%d+) of %d+ records skipped undecoded")
    assert.is_truthy(skipped, pre_err)
    assert.is_true(tonumber(skipped) > 0, pre_err)
  end)

  it("passes every record when a rule requires nothing it can look for (a Lua match alone)", function()
    local d = th.tmpdir()
    local text = adversarial()
    th.write(d .. "/adversarial.ndjson", text)
    local rules = rules_dir({ ["lua.lua"] = rule("11111111-2222-4333-8444-000000000104", "Lua", nil,
      'function(e) return e["event.provider"] == "ecr.amazonaws.com" end') })
    local out, err, rc = th.run({ "replay", "--rules", rules, d .. "/adversarial.ndjson" })
    assert.equal(0, rc, err)
    assert.not_matches("prefilter:", err)
    local lua = 0
    for _, a in ipairs(th.alerts(out)) do
      if a.kibana.alert.rule.name == "Lua" then lua = lua + 1 end
    end
    assert.equal(1, lua)
  end)

  it("changes no alert with every imported Elastic AWS and Sigma CloudTrail rule", function()
    local imported = th.tmpdir()
    local _, ierr, irc = th.run({ "import", "--out", imported, "tests/fixtures/elastic-detection-rules-aws",
      "tests/fixtures/sigma-cloudtrail" })
    assert.equal(0, irc, ierr)
    local d, corpus = bench_corpus(2000)
    local text = adversarial()
    th.write(d .. "/adversarial.ndjson", text)
    local files = { corpus, d .. "/adversarial.ndjson" }
    for f in io.popen("ls tests/fixtures/stratus-red-team/*.json"):lines() do files[#files + 1] = f end
    local full = differential(imported, files)
    assert.is_true(#full > 900, #full .. " alerts")
  end)

  it("runs each rule only on records holding what it requires, beside a rule that requires nothing", function()
    -- A wildcard on the user agent files the rule under no value in the rule index: only the
    -- prefilter's per-rule sets keep it off records without the text, while a Lua match makes
    -- every record go to the workers.
    local d = th.tmpdir()
    local rules = th.rules_dir({
      ["lua.lua"] = rule("11111111-2222-4333-8444-000000000104", "Lua", nil,
        'function(e) return e["event.provider"] == "ecr.amazonaws.com" end'),
      ["ua.lua"] = rule("11111111-2222-4333-8444-000000000108", "UA", "user_agent.original: *stratus-red-team*"),
    })
    local lines = {}
    for line in io.lines("examples/cloudtrail/stratus-red-team.ndjson") do
      lines[#lines + 1] = line
      if #lines == 10 then break end
    end
    for i = 1, 10 do lines[#lines + 1] = (lines[i]:gsub("stratus%-red%-team", "aws-cli-x")) end
    local f = d .. "/ct.ndjson"
    th.write(f, table.concat(lines, "\n") .. "\n")
    local function events(extra)
      local args = { "run", "--no-state", "--rules", rules, "--poll", "50", f }
      for _, a in ipairs(extra) do table.insert(args, 2, a) end
      local h = th.start(args)
      assert.is_truthy(th.wait_for(function() return h.count() >= 10 end, 10), h.err())
      th.sleep(0.3)
      h.signal("USR1")
      local seen
      th.wait_for(function()
        local block = h.err():match("statistics after.-\n  queue: ")
        if not block then return false end
        seen = {}
        for n, name in block:gmatch("\n%s+(%d+)%s+%d+%s+%d+%s+[%d%.]+%s+%a+%s+([^\n]+)") do seen[name] = tonumber(n) end
        return true
      end, 10)
      h.signal("TERM")
      assert.equal(0, h.wait(10))
      assert.is_truthy(seen, h.err())
      return seen, h
    end
    local seen, h = events({})
    assert.same({ Lua = 20, UA = 10 }, { Lua = seen.Lua, UA = seen.UA }, h.err())
    assert.equal(10, #th.alerts(h.out()))
    seen, h = events({ "--no-prefilter" })
    assert.same({ Lua = 20, UA = 20 }, { Lua = seen.Lua, UA = seen.UA }, h.err())
    assert.equal(10, #th.alerts(h.out()))
  end)

  it("changes with a rule reloaded while running: the next record is looked at with the new rule", function()
    local d = th.tmpdir()
    local rules = d .. "/rules"
    os.execute("mkdir -p " .. th.quote(rules))
    local path = rules .. "/mine.lua"
    th.write(path, rule("11111111-2222-4333-8444-000000000105", "Mine",
      'event.provider: "ecr.amazonaws.com" and event.action: "First"'))
    local f = d .. "/ct.ndjson"
    local function line(action, id)
      local e = ev.denied(action, "AccessDenied", id, "ecr.amazonaws.com")
      return ev.line(e)
    end
    th.write(f, line("First", "first-1") .. line("Second", "second-1"))
    local h = th.start({ "run", "--no-state", "--rules", rules, "--poll", "50", f })
    assert.is_truthy(th.wait_for(function() return h.count() >= 1 end, 10), h.err())
    th.write(path, rule("11111111-2222-4333-8444-000000000105", "Mine",
      'event.provider: "ecr.amazonaws.com" and event.action: "Second"'))
    assert.is_truthy(th.wait_for(function() return h.err():find('"Mine" version 1 reloaded', 1, true) end, 10),
      h.err())
    th.append(f, line("First", "first-2") .. line("Second", "second-2"))
    assert.is_truthy(th.wait_for(function() return h.count() >= 2 end, 10), h.err())
    th.sleep(0.3)
    h.signal("TERM")
    assert.equal(0, h.wait(10))
    local ids = {}
    for _, a in ipairs(th.alerts(h.out())) do ids[#ids + 1] = a.event.id end
    assert.same({ "first-1", "second-2" }, ids)
  end)
end)
