-- End to end: `trailhound replay` over real files, as a user runs it.

local cjson = require "cjson"
local th = require "support.th"
local ev = require "support.events"

local function has_dotted_key(t)
  for k, v in pairs(t) do
    if type(k) == "string" and k:find(".", 1, true) and k ~= "@timestamp" then return k end
    if type(v) == "table" then
      local d = has_dotted_key(v)
      if d then return d end
    end
  end
end

describe("trailhound replay", function()
  after_each(th.cleanup)

  -- The 35 technique files hold 310 events; the two branch-* files one more each.
  it("gives no alert on the 312 real Stratus Red Team events (every Bedrock call succeeded)", function()
    local files = {}
    local p = io.popen("ls tests/fixtures/stratus-red-team/*.json")
    for f in p:lines() do files[#files + 1] = f end
    p:close()
    local args = { "replay" }
    for _, f in ipairs(files) do args[#args + 1] = f end
    local out, err, rc = th.run(args)
    assert.equal(0, rc)
    assert.equal("", out)
    assert.matches("37 files, 312 records, 0 malformed, 0 alerts", err, 1, true)
  end)

  it("gives the bundled examples' alerts: 9 model-access and 7 policy attempts (examples/NOTICE.md)", function()
    local out, err, rc = th.run({ "replay", "examples/cloudtrail/stratus-red-team.ndjson",
      "examples/cloudtrail/bedrock-denied-derived.ndjson", "examples/ecs/bedrock-ecs.ndjson",
      "examples/s3/123456789012_CloudTrail_us-east-1_20250326T1645Z_derived.json.gz" })
    assert.equal(0, rc)
    local counts = th.by_rule(th.alerts(out))
    assert.equal(9, counts[ev.MODEL_ACCESS])
    assert.equal(7, counts[ev.POLICY])
    assert.matches("4 files, 349 records, 0 malformed, 16 alerts", err, 1, true)
    local stratus = th.run({ "replay", "examples/cloudtrail/stratus-red-team.ndjson" })
    assert.equal("", stratus)
  end)

  it("gives exactly one alert per denied attempt, from the right rule", function()
    local d = th.tmpdir()
    local cases = {
      { "PutFoundationModelEntitlement", "AccessDenied", ev.MODEL_ACCESS },
      { "PutFoundationModelEntitlement", "AccessDeniedException", ev.MODEL_ACCESS },
      { "PutUseCaseForModelAccess", "AccessDenied", ev.MODEL_ACCESS },
      { "PutUseCaseForModelAccess", "AccessDeniedException", ev.MODEL_ACCESS },
      { "CreateFoundationModelAgreement", "AccessDenied", ev.MODEL_ACCESS },
      { "CreateFoundationModelAgreement", "AccessDeniedException", ev.MODEL_ACCESS },
      { "PutResourcePolicy", "AccessDenied", ev.POLICY },
      { "PutResourcePolicy", "AccessDeniedException", ev.POLICY },
      { "DeleteResourcePolicy", "AccessDenied", ev.POLICY },
      { "DeleteResourcePolicy", "AccessDeniedException", ev.POLICY },
    }
    local text = {}
    for i, c in ipairs(cases) do
      text[#text + 1] = ev.line(ev.denied(c[1], c[2], string.format("00000000-0000-4000-8000-%012d", i)))
    end
    -- and attempts neither rule is about
    text[#text + 1] = ev.line(ev.denied("InvokeModel", "AccessDeniedException", "n-1"))
    text[#text + 1] = ev.line(ev.denied("PutResourcePolicy", "AccessDeniedException", "n-2",
      "secretsmanager.amazonaws.com"))
    text[#text + 1] = ev.line(ev.denied("PutFoundationModelEntitlement", "ValidationException", "n-3"))
    th.write(d .. "/denied.ndjson", table.concat(text))

    local out, err, rc = th.run({ "replay", d .. "/denied.ndjson" })
    assert.equal(0, rc)
    local alerts = th.alerts(out)
    assert.equal(#cases, #alerts)
    local seen = {}
    for _, a in ipairs(alerts) do
      local i = tonumber(a.event.id:sub(-12))
      assert.is_nil(seen[i], "two alerts for case " .. tostring(i))
      seen[i] = true
      assert.equal(cases[i][3], a.kibana.alert.rule.name)
      assert.equal(cases[i][1], a.event.action)
    end
    assert.matches("13 records, 0 malformed, 10 alerts", err, 1, true)
    assert.matches("%s+6%s+0%s+%S+%s+%S+%s+" .. ev.MODEL_ACCESS, err)
    assert.matches("%s+4%s+0%s+%S+%s+%S+%s+" .. ev.POLICY:gsub("%-", "%%-"), err)
  end)

  it("writes alerts in Elastic's shape, with a deterministic uuid and a readable reason", function()
    local d = th.tmpdir()
    th.write(d .. "/one.ndjson", ev.line(ev.denied("PutResourcePolicy", "AccessDeniedException", "evt-1")))
    local out1 = th.run({ "replay", d .. "/one.ndjson" })
    local out2 = th.run({ "replay", d .. "/one.ndjson" })
    local a = th.alerts(out1)[1]
    assert.equal(th.alerts(out2)[1].kibana.alert.uuid, a.kibana.alert.uuid)
    assert.matches("^%x+%-%x+%-5%x+%-[89ab]%x+%-%x+$", a.kibana.alert.uuid)
    assert.equal("signal", a.event.kind)
    assert.equal("event", a.kibana.alert.original_event.kind)
    assert.equal("PutResourcePolicy", a.kibana.alert.original_event.action)
    assert.equal("2e99477f-6099-48a9-ae0e-68801d97079c", a.kibana.alert.rule.rule_id)
    assert.equal("query", a.kibana.alert.rule.type)
    assert.equal(1, a.kibana.alert.rule.version)
    assert.equal("low", a.kibana.alert.severity)
    assert.equal(21, a.kibana.alert.risk_score)
    assert.equal("open", a.kibana.alert.workflow_status)
    assert.equal("TA0003", a.kibana.alert.rule.threat[1].tactic.id)
    assert.truthy(a.kibana.alert.rule.tags[1])
    assert.equal(a["@timestamp"] and "string", type(a.kibana.alert.original_time))
    assert.matches("PutResourcePolicy by arn:aws:sts::", a.kibana.alert.reason, 1, true)
    assert.matches("denied (AccessDeniedException)", a.kibana.alert.reason, 1, true)
    assert.equal(d .. "/one.ndjson", a.trailhound.source.path)
    assert.equal(0, a.trailhound.source.offset)
    assert.equal("bedrock.amazonaws.com", a.event.provider)
    assert.equal("AccessDeniedException", a.aws.cloudtrail.error_code)
    assert.is_nil(has_dotted_key(a), "alerts hold nested objects, not dotted keys")
    assert.not_matches("\\/", out1, 1, true)
  end)

  it("reads the last line even without a newline, and names each alert's offset", function()
    local d = th.tmpdir()
    local l1 = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "a"))
    local l2 = ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "b")):gsub("\n$", "")
    th.write(d .. "/f.ndjson", l1 .. l2)
    local out, _, rc = th.run({ "replay", d .. "/f.ndjson" })
    assert.equal(0, rc)
    local alerts = th.alerts(out)
    assert.equal(2, #alerts)
    assert.equal(#l1, alerts[2].trailhound.source.offset)
  end)

  it("alerts on an event with wide objects (100 keys, 100 elements) without losing its worker", function()
    -- A worker sorted keys with glibc's qsort, which asks the kernel for the memory size (sysinfo)
    -- past 1 KiB: the sandbox killed the worker (SIGSYS) and the event was skipped.
    local d = th.tmpdir()
    local rec = ev.denied("PutResourcePolicy", "AccessDenied", "wide")
    rec.requestParameters = { resourceArn = rec.requestParameters.resourceArn, tags = {} }
    for i = 1, 100 do rec.requestParameters["key" .. i] = i end
    for i = 1, 100 do rec.requestParameters.tags[i] = { key = "k" .. i, value = "v" .. i } end
    th.write(d .. "/wide.ndjson", ev.line(rec))
    local out, err, rc = th.run({ "replay", d .. "/wide.ndjson" })
    assert.equal(0, rc, err)
    assert.not_matches("SIGSYS", err)
    local alerts = th.alerts(out)
    assert.equal(1, #alerts, err)
    local rp = alerts[1].aws.cloudtrail.flattened.request_parameters
    assert.equal(100, rp.key100)
    assert.equal(100, #rp.tags)
  end)

  it("reads a CloudTrail S3 object, plain and gzip, each record an event", function()
    local d = th.tmpdir()
    local recs = { ev.real("PutUseCaseForModelAccess"), ev.denied("PutUseCaseForModelAccess", "AccessDenied", "s3-1"),
      ev.denied("DeleteResourcePolicy", "AccessDeniedException", "s3-2") }
    th.write(d .. "/obj.json", cjson.encode({ Records = recs }))
    recs[2] = ev.denied("PutUseCaseForModelAccess", "AccessDenied", "s3-3")  -- other events: not duplicates
    recs[3] = ev.denied("DeleteResourcePolicy", "AccessDeniedException", "s3-4")
    th.write(d .. "/obj2.json", cjson.encode({ Records = recs }))
    os.execute("gzip -n " .. th.quote(d .. "/obj2.json"))
    local out, err, rc = th.run({ "replay", d .. "/obj.json", d .. "/obj2.json.gz" })
    assert.equal(0, rc)
    local alerts = th.alerts(out)
    assert.equal(4, #alerts)
    assert.equal(1, alerts[1].trailhound.source.index)
    assert.equal(2, alerts[2].trailhound.source.index)
    assert.equal(d .. "/obj2.json.gz", alerts[3].trailhound.source.path)
    assert.matches("2 files, 6 records, 0 malformed, 4 alerts", err, 1, true)
  end)

  it("reads ECS documents, nested or with dotted keys", function()
    local d = th.tmpdir()
    local nested = {
      ["@timestamp"] = "2025-03-26T16:43:57.000Z",
      data_stream = { dataset = "aws.cloudtrail" },
      event = { provider = "bedrock.amazonaws.com", action = "PutResourcePolicy", outcome = "failure",
                id = "ecs-1", kind = "event" },
      aws = { cloudtrail = { error_code = "AccessDenied", user_identity = { arn = "arn:aws:iam::1:user/x" } } },
    }
    local dotted = {
      ["@timestamp"] = "2025-03-26T16:43:57.000Z",
      ["data_stream.dataset"] = "aws.cloudtrail",
      ["event.provider"] = "bedrock.amazonaws.com",
      ["event.action"] = "CreateFoundationModelAgreement",
      ["event.outcome"] = "failure",
      ["event.id"] = "ecs-2",
      ["aws.cloudtrail.error_code"] = "AccessDeniedException",
    }
    th.write(d .. "/ecs.ndjson", cjson.encode(nested) .. "\n" .. cjson.encode(dotted) .. "\n")
    local out, _, rc = th.run({ "replay", d .. "/ecs.ndjson" })
    assert.equal(0, rc)
    local alerts = th.alerts(out)
    assert.equal(2, #alerts)
    assert.equal(ev.POLICY, alerts[1].kibana.alert.rule.name)
    assert.equal(ev.MODEL_ACCESS, alerts[2].kibana.alert.rule.name)
    assert.equal("AccessDeniedException", alerts[2].aws.cloudtrail.error_code)
    assert.is_nil(has_dotted_key(alerts[2]))
  end)

  describe("bad input", function()
    it("reports each bad record with file and offset, skips it and reads the next", function()
      local d = th.tmpdir()
      local good = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "g"))
      local function goodn(n) return (good:gsub('"eventID":"g"', '"eventID":"g' .. n .. '"')) end
      local deep = string.rep("[", 300) .. string.rep("]", 300) .. "\n"
      local long = '{"eventName":"' .. string.rep("x", 3000) .. '"}\n'
      local junk = "\0\1\2\255\254garbage\0{\n"
      local parts = {
        "{not json\n", goodn(1),
        "42\n", goodn(2),
        '"a string"\n', goodn(3),
        deep, goodn(4),
        long, goodn(5),
        junk, goodn(6),
        "[1, 2]\n", goodn(7),
      }
      local offsets, pos = {}, 0
      for i, p in ipairs(parts) do
        if i % 2 == 1 then offsets[#offsets + 1] = pos end
        pos = pos + #p
      end
      local f = d .. "/bad.ndjson"
      th.write(f, table.concat(parts))
      os.execute("mkdir " .. th.quote(d .. "/empty"))
      local out, err, rc = th.run({ "replay", "--max-line", "2K", f, d .. "/missing.ndjson", d .. "/empty" })
      assert.equal(0, rc)
      assert.equal(7, #th.alerts(out), err)
      for _, off in ipairs(offsets) do
        assert.matches(f .. ":" .. off .. ":", err, 1, true)
      end
      assert.matches("malformed JSON", err, 1, true)
      assert.matches("not a JSON object", err, 1, true)
      assert.matches("too many nested", err, 1, true)
      assert.matches("longer than --max-line (2048 bytes)", err, 1, true)
      assert.matches("open " .. d .. "/missing.ndjson: No such file or directory", err, 1, true)
      assert.matches(d .. "/empty: a folder with no file in it", err, 1, true)
      assert.matches("1 file (1 unreadable), 7 records, 8 malformed, 7 alerts", err, 1, true)
      assert.not_matches("internal error", err, 1, true)
    end)

    it("reports a malformed S3 object and goes on with the next file", function()
      local d = th.tmpdir()
      th.write(d .. "/broken.json", '{"Records": [\n  {"eventName": "x",\n')
      th.write(d .. "/bad.json.gz", "this is not gzip at all")
      th.write(d .. "/next.ndjson", ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "n")))
      local out, err, rc = th.run({ "replay", d .. "/broken.json", d .. "/next.ndjson" })
      assert.equal(0, rc)
      assert.equal(1, #th.alerts(out))
      assert.matches(d .. "/broken.json:0: malformed JSON", err, 1, true)
    end)

    it("reads a .json file of NDJSON whose first line is broken, line by line", function()
      local d = th.tmpdir()
      th.write(d .. "/x.json", '{"eventSource":"bedrock.amazonaws.com","eventName":"Put\n' ..
        ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "j1")) ..
        ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "j2")))
      local out, err = th.run({ "replay", d .. "/x.json" })
      assert.equal(2, #th.alerts(out))
      assert.matches(d .. "/x.json:0: malformed JSON", err, 1, true)
    end)

    it("reports a truncated gzip object and keeps the records before the cut", function()
      local d = th.tmpdir()
      local lines = {}
      for i = 1, 200 do lines[i] = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "gz" .. i)) end
      th.write(d .. "/n.ndjson", table.concat(lines))
      os.execute("gzip -n " .. th.quote(d .. "/n.ndjson"))
      local gz = th.read(d .. "/n.ndjson.gz")
      th.write(d .. "/cut.json.gz", gz:sub(1, #gz // 2))
      local out, err, rc = th.run({ "replay", d .. "/cut.json.gz" })
      assert.equal(0, rc)
      assert.matches("read " .. d .. "/cut.json.gz: truncated gzip", err, 1, true)
      local n = #th.alerts(out)
      assert.is_true(n > 10 and n < 200, tostring(n))
    end)

    it("skips a UTF-8 byte-order mark at the start of a file", function()
      local d = th.tmpdir()
      th.write(d .. "/bom.ndjson", "\239\187\191" .. ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "b1")))
      th.write(d .. "/bom.json", "\239\187\191" .. require("cjson").encode({ Records = {
        ev.denied("PutResourcePolicy", "AccessDenied", "b2") } }))
      local out, err = th.run({ "replay", d .. "/bom.ndjson", d .. "/bom.json" })
      assert.equal(2, #th.alerts(out), err)
    end)

    it("stops with exit 1 and says so when alerts cannot be written", function()
      local _, err, rc = th.run({ "replay", "examples/cloudtrail/bedrock-denied-derived.ndjson" },
        { stdout = "/dev/full" })
      assert.equal(1, rc)
      assert.matches("output stdout: write: No space left on device; stopping", err, 1, true)
    end)

    it("exits 1 when the rules folder cannot be read", function()
      local _, err, rc = th.run({ "replay", "--rules", "/nonexistent/rules", "examples/ecs/bedrock-ecs.ndjson" })
      assert.equal(1, rc)
      assert.matches("rules folder /nonexistent/rules: No such file or directory", err, 1, true)
    end)

    it("exits 1 when no file could be read, and 2 on bad usage", function()
      local _, err, rc = th.run({ "replay", "/nonexistent/file.ndjson" })
      assert.equal(1, rc)
      assert.matches("No such file or directory", err, 1, true)
      local _, err2, rc2 = th.run({ "replay", "--bogus", "x" })
      assert.equal(2, rc2)
      assert.matches("unknown option '--bogus'", err2, 1, true)
      local _, _, rc3 = th.run({ "replay" })
      assert.equal(2, rc3)
      local _, _, rc4 = th.run({ "frobnicate", "x" })
      assert.equal(2, rc4)
      local _, err5, rc5 = th.run({ "replay", "--max-line", "lots", "x" })
      assert.equal(2, rc5)
      assert.matches("bad size 'lots'", err5, 1, true)
      local _, err6, rc6 = th.run({ "replay", "--rule", "nosuch", "examples/cloudtrail/bedrock-denied-derived.ndjson" })
      assert.equal(2, rc6)
      assert.matches("--rule nosuch: no loaded rule has that name", err6, 1, true)
    end)

    it("reads standard input for -, NDJSON or gzip found by its first bytes, and a folder's files", function()
      local function run_sh(cmd)
        local d = th.tmpdir()
        local rc = os.execute(cmd .. " >" .. d .. "/out 2>" .. d .. "/err")
        return th.read(d .. "/out"), th.read(d .. "/err"), rc
      end
      local bin = th.quote(th.bin)
      local want = #th.alerts((th.run({ "replay", "examples/cloudtrail/bedrock-denied-derived.ndjson" })))
      local out, err, rc = run_sh("cat examples/cloudtrail/bedrock-denied-derived.ndjson | " .. bin .. " replay -")
      assert.is_true(rc, err)
      assert.equal(want, #th.alerts(out))
      assert.equal("standard input", th.alerts(out)[1].trailhound.source.path)
      local _, bad = run_sh("printf '{}\\nnot json\\n' | " .. bin .. " replay -")
      assert.matches("trailhound: standard input:3: malformed JSON", bad, 1, true)
      out, err = run_sh("gzip -c examples/cloudtrail/bedrock-denied-derived.ndjson | " .. bin .. " replay -")
      assert.equal(want, #th.alerts(out), err)
      local _, s3err = run_sh("cat examples/s3/*.json.gz | " .. bin .. " replay -")
      assert.matches("19 records", s3err, 1, true)
      out = run_sh(bin .. " replay - </dev/null")
      assert.equal("", out)
      local d = th.tmpdir()
      os.execute("cp examples/cloudtrail/*.ndjson examples/s3/*.json.gz " .. th.quote(d) ..
        " && mkdir " .. th.quote(d .. "/sub") .. " && touch " .. th.quote(d .. "/.hidden"))
      local _, err2, rc2 = th.run({ "replay", d })
      assert.equal(0, rc2, err2)
      assert.matches("3 files, 344 records, 0 malformed, 12 alerts", err2, 1, true)
    end)

    it("answers help COMMAND with that command's usage, and an unknown one with exit 2", function()
      for _, cmd in ipairs({ "run", "replay", "test", "check", "explain", "show", "new", "dev" }) do
        local out, err, rc = th.run({ "help", cmd })
        assert.equal(0, rc, cmd .. ": " .. err)
        assert.matches("usage: trailhound", out, 1, true)
        local out2, _, rc2 = th.run({ cmd, "--help" })
        assert.equal(0, rc2, cmd)
        assert.equal(out, out2, cmd .. ": help " .. cmd .. " is " .. cmd .. " --help")
      end
      local _, err, rc = th.run({ "help", "nope" })
      assert.equal(2, rc)
      assert.matches("help: unknown command 'nope'", err, 1, true)
    end)
  end)

  describe("rules run apart", function()
    local function rules_with(extra)
      local d = th.tmpdir()
      os.execute("cp rules/*.lua " .. th.quote(d))
      for name, src in pairs(extra) do th.write(d .. "/" .. name, src) end
      return d
    end

    it("reports a rule with a syntax error with file and line; the others run", function()
      local d = rules_with({ ["broken.lua"] = "return {\n  rule_id = \"x\",\n  name = = 1,\n}\n" })
      local f = th.tmpdir() .. "/e.ndjson"
      th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "x")))
      local out, err, rc = th.run({ "replay", "--rules", d, f })
      assert.equal(0, rc)
      assert.matches(d .. "/broken.lua:3:", err, 1, true)
      assert.matches("2 rules loaded", err, 1, true)
      assert.equal(1, #th.alerts(out))
    end)

    it("reports a KQL syntax error with file, line and column", function()
      local src = th.read("rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua")
      src = src:gsub('rule_id = "[^"]+"', 'rule_id = "11111111-2222-4333-8444-555555555555"')
      src = src:gsub('event.outcome: "failure" and', 'event.outcome: ("failure" and', 1)
      local d = rules_with({ ["zz_bad_query.lua"] = src })
      local f = th.tmpdir() .. "/e.ndjson"
      th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "x")))
      local out, err = th.run({ "replay", "--rules", d, f })
      local at = err:find(d .. "/zz_bad_query.lua:", 1, true)
      assert.truthy(at, err)
      assert.matches('^:%d+:%d+: Expected [^\n]* but ":" found', err:sub(at + #d + #"/zz_bad_query.lua"))
      assert.equal(1, #th.alerts(out))
    end)

    it("reports a rule that fails on every event with its file and line, once; the others alert", function()
      local d = rules_with({ ["zz_fails.lua"] = table.concat({
        "return {",
        "  rule_id = \"11111111-2222-4333-8444-666666666666\", name = \"Fails\",",
        "  description = \"fails\", severity = \"low\", risk_score = 1,",
        "  match = function(e)",
        "    return e[\"event.action\"]:nothing()",
        "  end,",
        "}",
      }, "\n") })
      local f = th.tmpdir() .. "/e.ndjson"
      th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "x")) ..
        ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "y")))
      local out, err, rc = th.run({ "replay", "--rules", d, f })
      assert.equal(0, rc)
      assert.equal(2, #th.alerts(out))
      assert.matches(d .. "/zz_fails.lua:5:", err, 1, true)
      local _, n = err:gsub("zz_fails.lua:5:", "")
      assert.equal(1, n)
      assert.matches("%s+0%s+2%s+%-%s+%-%s+Fails", err)
    end)

    it("contains a rule that raises an error object whose __tostring fails, or returns a non-boolean", function()
      local function rule(id, name, body)
        return table.concat({ "return {",
          "  rule_id = \"11111111-2222-4333-8444-" .. id .. "\", name = \"" .. name .. "\",",
          "  description = \"d\", severity = \"low\", risk_score = 1,",
          "  match = function(e) " .. body .. " end,", "}" }, "\n")
      end
      local d = rules_with({
        ["000_tostring.lua"] = rule("000000000001", "Tostring",
          "error(setmetatable({}, { __tostring = function() error('boom') end }))"),
        ["001_string.lua"] = rule("000000000002", "Returns a string", "return e[\"event.action\"]"),
        ["002_dump.lua"] = rule("000000000003", "Dumps", "return (\"\").dump(print) ~= nil"),
      })
      local out, err, rc = th.run({ "replay", "--rules", d, "examples/cloudtrail/bedrock-denied-derived.ndjson",
        "examples/s3/123456789012_CloudTrail_us-east-1_20250326T1645Z_derived.json.gz" })
      assert.equal(0, rc)
      assert.equal(12, #th.alerts(out))
      assert.matches("32 records, 0 malformed, 12 alerts", err, 1, true)
      assert.matches("(error object is a table value)", err, 1, true)
      assert.matches("match must return true or false, not string", err, 1, true)
      assert.matches("blocked: string.dump", err, 1, true)
      assert.not_matches("internal error", err, 1, true)
    end)
  end)
end)

describe("make install", function()
  after_each(th.cleanup)

  it("installs a binary that finds its scripts and rules under PREFIX/share/trailhound", function()
    local d = th.tmpdir()
    assert.is_true(os.execute("make -s install DESTDIR=" .. th.quote(d) .. " PREFIX=/opt/th >/dev/null"))
    local p = io.popen("cd / && " .. th.quote(d .. "/opt/th/bin/trailhound") .. " replay " ..
      th.quote(os.getenv("PWD") .. "/examples/cloudtrail/bedrock-denied-derived.ndjson") .. " 2>&1 >/dev/null")
    local err = p:read("a")
    p:close()
    assert.matches("2 rules loaded from " .. d .. "/opt/th/share/trailhound/rules", err, 1, true)
    assert.matches("13 records, 0 malformed, 10 alerts", err, 1, true)
  end)

  it("installs the man page, bash completion, and a systemd unit running run with a configuration", function()
    local d = th.tmpdir()
    assert.is_true(os.execute("make -s install DESTDIR=" .. th.quote(d) .. " PREFIX=/opt/th >/dev/null"))
    local man = th.read(d .. "/opt/th/share/man/man1/trailhound.1")
    assert.matches("^%.TH TRAILHOUND 1", man)
    assert.matches("--output", man:gsub("\\%-", "-"), 1, true)
    assert.is_true(os.execute("bash -n " .. th.quote(d .. "/opt/th/share/bash-completion/completions/trailhound")))
    local unit = th.read(d .. "/opt/th/lib/systemd/system/trailhound.service")
    assert.matches("ExecStart=/opt/th/bin/trailhound run --config /etc/trailhound/trailhound.lua", unit, 1, true)
    assert.matches("ExecReload=/bin/kill -HUP $MAINPID", unit, 1, true)
    -- The example configuration it names is one trailhound takes.
    local conf = d .. "/opt/th/share/doc/trailhound/trailhound.lua"
    assert.matches('rules = "/opt/th/share/trailhound/rules"', th.read(conf), 1, true)
    local _, err, rc = th.run({ "replay", "--config", conf, "-o", "rules=rules", "-o", "outputs=stdout",
      "-o", "paths=examples/cloudtrail/bedrock-denied-derived.ndjson" })
    assert.equal(0, rc, err)
    assert.matches("10 alerts", err, 1, true)
  end)
end)

describe("replay for hunting", function()
  after_each(th.cleanup)
  local DENIED = "examples/cloudtrail/bedrock-denied-derived.ndjson"

  it("limits to the rules named with --rule, by name, rule_id or file name", function()
    local out, err, rc = th.run({ "replay", "--rule", ev.POLICY, DENIED })
    assert.equal(0, rc)
    assert.equal(4, #th.alerts(out))
    assert.not_matches(ev.MODEL_ACCESS, err, 1, true)
    local out2 = th.run({ "replay", "--rule", "2e99477f-6099-48a9-ae0e-68801d97079c",
      "--rule", "aws_bedrock_unauthorized_foundation_model_access_attempt", DENIED })
    assert.equal(10, #th.alerts(out2))
  end)

  it("refuses a --rule that names no loaded rule, and lists the rules", function()
    local out, err, rc = th.run({ "replay", "--rule", "No Such Rule", DENIED })
    assert.equal(2, rc, "a usage error")
    assert.equal("", out)
    assert.matches("--rule No Such Rule: no loaded rule has that name", err, 1, true)
    assert.matches(ev.POLICY .. " (2e99477f-6099-48a9-ae0e-68801d97079c)", err, 1, true)
  end)

  it("closes with a table per rule: matches, first and last event time", function()
    local _, err = th.run({ "replay", DENIED, "examples/ecs/bedrock-ecs.ndjson" })
    assert.matches("alerts%s+errors%s+first event%s+last event%s+rule", err)
    assert.matches("%s8%s+0%s+2024%-10%-17T20:31:02%.000Z%s+2024%-10%-29T15:58:20%.000Z%s+" ..
      ev.MODEL_ACCESS, err)
  end)

  it("shows a progress line on a terminal only, and erases it", function()
    local d = th.tmpdir()
    local p = io.popen("script -qc " .. th.quote(th.quote(th.bin) .. " replay " .. DENIED ..
      " >/dev/null") .. " " .. th.quote(d .. "/typescript") .. " >/dev/null 2>&1; cat " .. th.quote(d .. "/typescript"))
    local tty = p:read("a")
    p:close()
    assert.matches("of 0.0 MB %(%d+%%%), %d+ records/s", tty)
    assert.matches("\r\27%[K", tty)
    local _, err = th.run({ "replay", DENIED })
    assert.not_matches("records/s", err, 1, true)
  end)
end)
