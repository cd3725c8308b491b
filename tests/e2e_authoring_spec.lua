-- End to end: the rule authoring commands (test, check, explain, show, new,
-- dev) through the built binary, as a rule author runs them: on good rules,
-- broken rules, misspelled fields and failing tests, checking what they print
-- and their exit codes (0 ok, 1 a failure or bad input, 2 bad usage).

local th = require "support.th"
local ev = require "support.events"

local POLICY = "rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua"
local MODEL = "rules/aws_bedrock_unauthorized_foundation_model_access_attempt.lua"

-- The binary by absolute path, for runs from another directory.
local BIN = th.bin:sub(1, 1) == "/" and th.bin or (os.getenv("PWD") .. "/" .. th.bin)

-- Run a shell command line: stdout, stderr, exit code.
local function sh(cmdline)
  local d = th.tmpdir()
  local p = io.popen(string.format("( %s ) >%s/out 2>%s/err; echo $?", cmdline, d, d))
  local rc = tonumber(p:read("a"):match("(%d+)"))
  p:close()
  return th.read(d .. "/out"), th.read(d .. "/err"), rc
end

-- trailhound ARGS run in dir (and with stdin from a file, when given).
local function run_in(dir, args, stdin)
  local parts = { "cd " .. th.quote(dir) .. " &&", th.quote(BIN) }
  for _, a in ipairs(args) do parts[#parts + 1] = th.quote(a) end
  parts[#parts + 1] = stdin and ("<" .. th.quote(stdin)) or "</dev/null"
  return sh(table.concat(parts, " "))
end

-- trailhound ARGS on a terminal (a pseudo-terminal made by script(1)), with
-- env prepended: what a person sees, escapes included.
local function run_tty(args, env, seconds)
  local parts = { th.quote(BIN) }
  for _, a in ipairs(args) do parts[#parts + 1] = th.quote(a) end
  local inner = (env and (env .. " ") or "") .. table.concat(parts, " ")
  local timeout = seconds and ("timeout " .. seconds .. " ") or ""
  return sh(timeout .. "script -qfec " .. th.quote(inner) .. " /dev/null </dev/null")
end

-- s ends with tail (compared as plain text).
local function ends_with(tail, s)
  assert.equal(tail, s:sub(-#tail))
end

local function no_traceback(err)
  assert.not_matches("stack traceback", err, 1, true)
  assert.not_matches("internal error", err, 1, true)
end

-- A small rule with a query over three fields and one test each way.
local RULE = [[
return {
  rule_id = "%s",
  name = "Bucket Deleted",
  description = "A bucket was deleted.",
  severity = "low",
  risk_score = 21,
  investigation_fields = { "user.name", "source.ip" },
  query = [=[
event.provider: "s3.amazonaws.com" and
    event.action: "DeleteBucket" and
    event.outcome: "success"
]=],
  tests = {
    { name = "bucket deleted", expect = true,
      event = { eventSource = "s3.amazonaws.com", eventName = "DeleteBucket" } },
    { name = "deletion denied", expect = false,
      event = { eventSource = "s3.amazonaws.com", eventName = "DeleteBucket", errorCode = "AccessDenied" } },
  },
}
]]
local ID = "0b7b5b39-86f5-4fb0-9d3f-0b9a4ab8f6a1"

-- A directory of rule files: name -> source.
local function rules(files)
  local d = th.tmpdir()
  for name, src in pairs(files) do th.write(d .. "/" .. name, src) end
  return d
end

local function good_rule() return RULE:format(ID) end

describe("trailhound test", function()
  after_each(th.cleanup)

  it("runs every bundled rule's tests, printing each test's name and result and a summary", function()
    local out, err, rc = th.run({ "test" })
    assert.equal(0, rc)
    assert.equal("", err)
    assert.matches(MODEL, out, 1, true)
    assert.matches("  ✓ denied PutResourcePolicy (AccessDeniedException)\n", out, 1, true)
    assert.matches("  ✓ successful DeleteResourcePolicy\n", out, 1, true)
    ends_with("\n25 tests passed (2 rules)\n", out)
  end)

  it("shows a failing test's expected and got verdicts, the fields the query reads and the deciding clause",
    function()
      local src = good_rule():gsub('expect = false', 'expect = true')
      local d = rules({ ["bucket.lua"] = src })
      local out, _, rc = th.run({ "test", d })
      assert.equal(1, rc)
      assert.matches("  ✓ bucket deleted\n  ✗ deletion denied\n", out, 1, true)
      assert.matches(d .. "/bucket.lua:16: expected match, got no match", out, 1, true)
      assert.matches('event.provider  "s3.amazonaws.com"\n', out, 1, true)
      assert.matches('event.action    "DeleteBucket"\n', out, 1, true)
      assert.matches('event.outcome   "failure"\n', out, 1, true)
      assert.matches('decided by: event.outcome: "success" is false (' .. d .. "/bucket.lua:11:5)", out, 1, true)
      assert.matches("2 tests: 1 passed, 1 failed (1 rule)", out, 1, true)
    end)

  it("shows a field the event lacks as (absent), and every clause holding when a match was not expected",
    function()
      local src = good_rule():gsub('event.outcome: "success"', 'not aws.cloudtrail.error_code: *')
        :gsub('expect = true', 'expect = false', 1)
      local d = rules({ ["bucket.lua"] = src })
      local out, _, rc = th.run({ "test", d })
      assert.equal(1, rc)
      assert.matches("expected no match, got match", out, 1, true)
      assert.matches("aws.cloudtrail.error_code  (absent)", out, 1, true)
      assert.matches("decided by: every clause held (" .. d .. "/bucket.lua:9:1)", out, 1, true)
    end)

  it("reports a test without expect at its file and line", function()
    local src = good_rule():gsub('{ name = "bucket deleted", expect = true,', '{ name = "bucket deleted",')
    local d = rules({ ["bucket.lua"] = src })
    local out, err, rc = th.run({ "test", d .. "/bucket.lua" })
    assert.equal(1, rc)
    no_traceback(err)
    assert.matches("✗ bucket deleted\n      " .. d .. "/bucket.lua:14: no expect = true or false", out, 1, true)
  end)

  it("reports a rule that does not compile at its file and line, and still runs the others", function()
    local d = rules({ ["a_broken.lua"] = "return {\n  name = \"x\",\n  severity = = 1,\n}\n", ["b.lua"] = good_rule() })
    local out, err, rc = th.run({ "test", d })
    assert.equal(1, rc)
    no_traceback(err)
    assert.matches("✗ " .. d .. "/a_broken.lua:3: unexpected symbol near '='", out, 1, true)
    assert.matches("✓ bucket deleted", out, 1, true)
    assert.matches("2 tests passed (2 rules, 1 not loaded)", out, 1, true)
  end)

  it("reports metadata of the wrong type with the line of the field", function()
    local d = rules({ ["r.lua"] = good_rule():gsub("risk_score = 21", 'risk_score = "21"') })
    local out, err, rc = th.run({ "test", d })
    assert.equal(1, rc)
    no_traceback(err)
    assert.matches(d .. "/r.lua:6: field 'risk_score' must be a number, not a string", out, 1, true)
  end)

  it("stops a rule that never returns, naming its line, and goes on", function()
    local src = good_rule():gsub("  tests = {", "  match = function(e)\n    while e[\"event.action\"] do end\n"
      .. "    return true\n  end,\n  tests = {", 1)
    local d = rules({ ["loop.lua"] = src })
    local out, err, rc = th.run({ "test", d })
    assert.equal(1, rc)
    no_traceback(err)
    assert.matches(d .. "/loop.lua:14: instruction budget exceeded", out, 1, true)
    assert.matches("deletion denied", out, 1, true)
  end)

  it("writes TAP for CI: the plan, ok and not ok lines, and a failure's details", function()
    local src = good_rule():gsub('expect = false', 'expect = true')
    local d = rules({ ["bucket.lua"] = src })
    local out, _, rc = th.run({ "test", "--format", "tap", d })
    assert.equal(1, rc)
    assert.matches("^TAP version 13\n1%.%.2\n", out)
    assert.matches("\nok 1 - " .. d .. "/bucket.lua: bucket deleted\n", out, 1, true)
    assert.matches("\nnot ok 2 - " .. d .. "/bucket.lua: deletion denied\n  ---\n", out, 1, true)
    assert.matches('  message: "expected match, got no match"\n', out, 1, true)
    assert.matches('  at: "' .. d .. '/bucket.lua:16"\n', out, 1, true)
    assert.matches('    "event.outcome": "\\"failure\\""\n', out, 1, true)
    local passing = th.run({ "test", "--format=tap" })
    assert.matches("^TAP version 13\n1%.%.25\n", passing)
    assert.not_matches("not ok", passing, 1, true)
  end)

  it("writes JUnit XML for CI: a testsuite per rule, a failure per failing test, text escaped", function()
    local src = good_rule():gsub('expect = false', 'expect = true'):gsub('"deletion denied"', '"denied <&> deletion"')
    local d = rules({ ["bucket.lua"] = src })
    local out, _, rc = th.run({ "test", "--format", "junit", d })
    assert.equal(1, rc)
    assert.matches('^<%?xml version="1.0" encoding="UTF%-8"%?>\n<testsuites name="trailhound test" tests="2" '
      .. 'failures="1" errors="0">\n', out)
    assert.matches('<testsuite name="Bucket Deleted" file="' .. d .. '/bucket.lua" tests="2" failures="1" errors="0">',
      out, 1, true)
    assert.matches('<testcase classname="' .. d .. '/bucket.lua" name="bucket deleted" file="' .. d
      .. '/bucket.lua" line="14"/>', out, 1, true)
    assert.matches('name="denied &lt;&amp;&gt; deletion"', out, 1, true)
    assert.matches('<failure message="expected match, got no match" type="verdict">', out, 1, true)
    assert.matches("</testsuites>\n$", out)
  end)

  it("refuses an unknown format as bad usage", function()
    local out, err, rc = th.run({ "test", "--format", "xml" })
    assert.equal(2, rc)
    assert.equal("", out)
    assert.matches("trailhound test: --format must be text, tap or junit, not 'xml'\nusage: trailhound test", err, 1,
      true)
  end)

  it("names an argument that is neither a file nor a directory", function()
    local _, err, rc = th.run({ "test", "/nonexistent/rules" })
    assert.equal(1, rc)
    assert.matches("trailhound test: /nonexistent/rules: no such file or directory", err, 1, true)
  end)
end)

describe("trailhound check", function()
  after_each(th.cleanup)

  it("passes both bundled rules with no error and no warning", function()
    local out, err, rc = th.run({ "check" })
    assert.equal(0, rc)
    assert.equal("", err)
    assert.equal("2 rules checked: 0 errors, 0 warnings\n", out)
  end)

  it("warns about a misspelled query field at its line and column, with the field meant", function()
    local d = rules({ ["r.lua"] = good_rule():gsub("event.action: \"DeleteBucket\"", "event.acton: \"DeleteBucket\"") })
    local out, _, rc = th.run({ "check", d })
    assert.equal(0, rc)
    assert.matches(d .. "/r.lua:10:5: warning: event.acton: no source produces this field; did you mean event.action?",
      out, 1, true)
    assert.matches("1 rule checked: 0 errors, 1 warning\n$", out)
    local _, _, strict = th.run({ "check", "--strict", d })
    assert.equal(1, strict)
  end)

  it("warns about a misspelled investigation field, and a raw CloudTrail name", function()
    local d = rules({ ["r.lua"] = good_rule():gsub('"user.name", "source.ip"', '"user.nmae",\n    "sourceIPAddress"') })
    local out, _, rc = th.run({ "check", d })
    assert.equal(0, rc)
    assert.matches(d .. "/r.lua:7: warning: user.nmae: no source produces this field; did you mean user.name?",
      out, 1, true)
    assert.matches(d .. "/r.lua:8: warning: sourceIPAddress: no source produces this field (it is the raw CloudTrail "
      .. "name); did you mean source.address?", out, 1, true)
  end)

  it("holds risk_score to its severity's band, as Elastic's schema does", function()
    local d = rules({ ["r.lua"] = good_rule():gsub("risk_score = 21", "risk_score = 73") })
    local out, _, rc = th.run({ "check", d })
    assert.equal(1, rc)
    assert.matches(d .. "/r.lua:6: error: risk_score 73 is in high's range (48-73), but severity is low (0-21; "
      .. "Elastic uses 21)", out, 1, true)
  end)

  it("wants rule_id a UUID, unique across the directory", function()
    local d = rules({ ["a.lua"] = good_rule(), ["b.lua"] = good_rule(), ["c.lua"] = RULE:format("rule-42") })
    local out, _, rc = th.run({ "check", d })
    assert.equal(1, rc)
    assert.matches(d .. "/b.lua:2: error: rule_id " .. ID .. " is already used by " .. d .. "/a.lua", out, 1, true)
    assert.matches(d .. "/c.lua:2: error: rule_id 'rule-42' is not a UUID", out, 1, true)
    assert.matches("3 rules checked: 2 errors, 0 warnings", out, 1, true)
  end)

  it("checks MITRE ATT&CK ids and that each reference is its id's page", function()
    local threat = [[
  threat = { {
    framework = "MITRE ATT&CK",
    tactic = { id = "TA005", name = "Defense Evasion", reference = "https://attack.mitre.org/tactics/TA0005/" },
    technique = { {
      id = "T1562", name = "Impair Defenses", reference = "https://attack.mitre.org/techniques/T1563/",
      subtechnique = { { id = "T1098.001", name = "Additional Cloud Credentials",
                         reference = "https://attack.mitre.org/techniques/T1098/001/" } },
    } },
  } },
]]
    local d = rules({ ["r.lua"] = good_rule():gsub("  investigation_fields", threat .. "  investigation_fields") })
    local out, _, rc = th.run({ "check", d })
    assert.equal(1, rc)
    assert.matches(":9: error: tactic id 'TA005' is not of the form TA0000", out, 1, true)
    assert.matches(":11: error: technique T1562: reference must be https://attack.mitre.org/techniques/T1562/, "
      .. "not 'https://attack.mitre.org/techniques/T1563/'", out, 1, true)
    assert.matches(":12: error: subtechnique T1098.001 is not a part of technique T1562", out, 1, true)
  end)

  it("warns about an unknown metadata key and names the key meant", function()
    local d = rules({ ["r.lua"] = good_rule():gsub("  severity = ", "  verison = 1,\n  severity = ") })
    local out, _, rc = th.run({ "check", d })
    assert.equal(0, rc)
    assert.matches(d .. "/r.lua:5: warning: unknown field 'verison'; did you mean 'version'?", out, 1, true)
  end)

  it("reports a test without expect at the test's line", function()
    local src = good_rule():gsub('{ name = "deletion denied", expect = false,', '{ name = "deletion denied",')
    local d = rules({ ["r.lua"] = src })
    local out, _, rc = th.run({ "check", d })
    assert.equal(1, rc)
    assert.matches(d .. "/r.lua:16: error: test 'deletion denied' has no expect = true or false", out, 1, true)
  end)

  it("reports a rule that does not compile, or whose KQL does not, at file, line and column", function()
    local d = rules({
      ["a.lua"] = "return {\n  rule_id = 'x',\n  name = \n}\n",
      ["b.lua"] = good_rule():gsub('and\n    event.outcome', 'and (\n    event.outcome'),
      ["c.lua"] = good_rule():gsub('severity = "low"', 'severity = "urgent"'),
    })
    local out, err, rc = th.run({ "check", d })
    assert.equal(1, rc)
    no_traceback(err)
    assert.matches(d .. "/a.lua:4: error: unexpected symbol near '}'", out, 1, true)
    local unclosed = [[/b.lua:12:1: error: Expected ")" but end of input found. (to close the '(' at 10:38)]]
    assert.matches(d .. unclosed, out, 1, true)
    assert.matches(d .. "/c.lua:5: error: severity must be low, medium, high or critical, not 'urgent'", out, 1, true)
  end)
end)

describe("trailhound explain", function()
  after_each(th.cleanup)

  local function event_file(e)
    local d = th.tmpdir()
    th.write(d .. "/e.json", ev.line(e))
    return d .. "/e.json"
  end

  it("shows the fields the rule reads, each clause's truth value and the verdict: a match", function()
    local f = event_file(ev.denied("PutResourcePolicy", "AccessDenied", "e-1"))
    local out, err, rc = th.run({ "explain", POLICY, f })
    assert.equal(0, rc)
    assert.equal("", err)
    assert.matches("event    " .. f .. ":1, raw CloudTrail, normalized to ECS\n", out, 1, true)
    assert.matches('\nfields the rule reads\n  data_stream.dataset        "aws.cloudtrail"\n'
      .. '  event.provider             "bedrock.amazonaws.com"\n  event.action               "PutResourcePolicy"\n',
      out, 1, true)
    assert.matches("\nclauses\n  219:1  ✓ and\n  219:1    ✓ data_stream.dataset: \"aws.cloudtrail\"\n", out, 1, true)
    assert.matches('  221:5    ✓ event.action: ("PutResourcePolicy" or "DeleteResourcePolicy")\n', out, 1, true)
    ends_with("\nverdict  match\nbecause  every clause held (" .. POLICY .. ":219:1)\n", out)
  end)

  it("marks the clause that failed and names it in the verdict: no match", function()
    local f = event_file(ev.denied("InvokeModel", "AccessDenied", "e-2"))
    local out, _, rc = th.run({ "explain", POLICY, f })
    assert.equal(0, rc)
    assert.matches('  221:5    ✗ event.action: ("PutResourcePolicy" or "DeleteResourcePolicy")\n', out, 1, true)
    assert.matches("  222:5    ✓ event.outcome: \"failure\"\n", out, 1, true)
    assert.matches('verdict  no match\nbecause  event.action: ("PutResourcePolicy" or "DeleteResourcePolicy") is '
      .. "false (" .. POLICY .. ":221:5)", out, 1, true)
  end)

  it("reads an ECS document from standard input, and finds a rule by its rule_id", function()
    local ecs = th.tmpdir() .. "/ecs.json"
    th.write(ecs, th.lines("examples/ecs/bedrock-ecs.ndjson")[1] .. "\n")
    local out, _, rc = run_in(os.getenv("PWD"), { "explain", "2e99477f", "-" }, ecs)
    assert.equal(0, rc)
    assert.matches("event    (stdin):1, an ECS document\n", out, 1, true)
    assert.matches("rule     AWS Bedrock Unauthorized Resource-Based Policy Modification Attempt", out, 1, true)
    assert.matches("\nverdict  ", out, 1, true)
  end)

  it("explains each event of a file of several", function()
    local d = th.tmpdir()
    th.write(d .. "/two.ndjson", ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "a"))
      .. ev.line(ev.real("PutFoundationModelEntitlement")))
    local out, _, rc = th.run({ "explain", POLICY, d .. "/two.ndjson" })
    assert.equal(0, rc)
    assert.matches(d .. "/two.ndjson:1 (1 of 2)", out, 1, true)
    assert.matches(d .. "/two.ndjson:2 (2 of 2)", out, 1, true)
    assert.matches("verdict  match\n.*verdict  no match\n", out)
  end)

  it("shows the fields a Lua match function reads and its verdict", function()
    local src = good_rule():gsub("  tests = {", "  match = function(e) return e[\"user.name\"] ~= \"robot\" end,\n"
      .. "  tests = {", 1)
    local d = rules({ ["r.lua"] = src })
    th.write(d .. "/e.json", '{"eventSource":"s3.amazonaws.com","eventName":"DeleteBucket",'
      .. '"userIdentity":{"type":"IAMUser","userName":"robot"}}')
    local out, _, rc = th.run({ "explain", d .. "/r.lua", d .. "/e.json" })
    assert.equal(0, rc)
    assert.matches('  user.name       "robot"\n', out, 1, true)
    assert.matches("  13      ✗ match function (Lua)\n", out, 1, true)
    assert.matches("because  the match function returned false (" .. d .. "/r.lua:13)", out, 1, true)
  end)

  it("reports an event file that is not JSON at its line", function()
    local d = th.tmpdir()
    th.write(d .. "/bad.json", '{"eventName": "A", "eventSource": "s"}\n{"eventName": "B",\n')
    local out, err, rc = th.run({ "explain", POLICY, d .. "/bad.json" })
    assert.equal(1, rc)
    assert.equal("", out)
    no_traceback(err)
    assert.matches("trailhound explain: " .. d .. "/bad.json:2: malformed JSON", err, 1, true)
    th.write(d .. "/pretty.json", '{\n  "eventName": "A",\n  "eventSource": ,\n}\n')
    local _, err2, rc2 = th.run({ "explain", POLICY, d .. "/pretty.json" })
    assert.equal(1, rc2)
    assert.matches("trailhound explain: " .. d .. "/pretty.json:3: malformed JSON", err2, 1, true)
    local _, err3, rc3 = th.run({ "explain", POLICY, d .. "/missing.json" })
    assert.equal(1, rc3)
    assert.matches("trailhound explain: " .. d .. "/missing.json: No such file or directory", err3, 1, true)
  end)

  it("reports a broken rule at its line, an unknown rule, and bad usage", function()
    local d = rules({ ["r.lua"] = good_rule():gsub('severity = "low"', "severity = 3") })
    th.write(d .. "/e.json", "{}")
    local _, err, rc = th.run({ "explain", d .. "/r.lua", d .. "/e.json" })
    assert.equal(1, rc)
    no_traceback(err)
    assert.matches("trailhound explain: " .. d .. "/r.lua:5: field 'severity' must be a string, not a number", err, 1,
      true)
    local _, err2, rc2 = th.run({ "explain", "no_such_rule", d .. "/e.json" })
    assert.equal(1, rc2)
    assert.matches("no_such_rule: no such rule file", err2, 1, true)
    local _, err3, rc3 = th.run({ "explain", POLICY })
    assert.equal(2, rc3)
    assert.matches("usage: trailhound explain [--record N] RULE EVENTS[:LINE]", err3, 1, true)
  end)

  it("picks one record of a gzip CloudTrail S3 object with --record, counted from 0 as alerts count", function()
    local s3 = "examples/s3/123456789012_CloudTrail_us-east-1_20250326T1645Z_derived.json.gz"
    local alerts = th.alerts((th.run({ "replay", "--rule", "2e99477f-6099-48a9-ae0e-68801d97079c", s3 })))
    assert.equal(1, #alerts)
    local index = math.tointeger(alerts[1].trailhound.source.index)
    local out, err, rc = th.run({ "explain", "--record", tostring(index), POLICY, s3 })
    assert.equal(0, rc, err)
    assert.matches("event    " .. s3 .. ":1: record " .. index .. ", raw CloudTrail, normalized to ECS\n", out, 1, true)
    assert.matches('  event.action               "PutResourcePolicy"\n', out, 1, true)
    ends_with("\nverdict  match\nbecause  every clause held (" .. POLICY .. ":219:1)\n", out)
    local _, err2, rc2 = th.run({ "explain", "--record", "19", POLICY, s3 })
    assert.equal(1, rc2)
    assert.equal("trailhound explain: " .. s3 .. ":1: no record 19: this CloudTrail S3 object holds 19 records "
      .. "(0 to 18)\n", err2)
    local _, err3, rc3 = th.run({ "explain", POLICY, s3 .. ":18" })
    assert.equal(1, rc3)
    assert.equal("trailhound explain: " .. s3 .. ":18: past the end: " .. s3 .. " has 1 line; its CloudTrail S3 "
      .. "object on line 1 holds 19 records: pick one with --record N (0 to 18)\n", err3)
  end)

  it("picks the record on FILE:LINE of NDJSON, plain or gzip found by its first bytes", function()
    local d = th.tmpdir()
    local src = "examples/cloudtrail/bedrock-denied-derived.ndjson"
    local want = th.lines(src)[4]
    os.execute("gzip -c " .. src .. " > " .. th.quote(d .. "/ct.log"))
    for _, f in ipairs({ src, d .. "/ct.log" }) do
      local out, err, rc = th.run({ "explain", POLICY, f .. ":4" })
      assert.equal(0, rc, err)
      assert.matches("event    " .. f .. ":4, raw CloudTrail, normalized to ECS\n", out, 1, true)
      assert.matches('  event.action               "' .. want:match('"eventName":"([^"]+)"') .. '"\n', out, 1, true)
      assert.not_matches("(1 of", out, 1, true)
    end
    local out, _, rc = sh("gzip -c " .. src .. " | " .. th.quote(BIN) .. " explain " .. POLICY .. " -:4")
    assert.equal(0, rc)
    assert.matches("event    (stdin):4, raw CloudTrail", out, 1, true)
  end)

  it("takes a name holding a colon whole when that file exists, else as FILE:LINE", function()
    local d = th.tmpdir()
    th.write(d .. "/a:2", ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "x1"))
      .. ev.line(ev.real("PutFoundationModelEntitlement")))
    local out, _, rc = th.run({ "explain", POLICY, d .. "/a:2" })
    assert.equal(0, rc)
    assert.matches(d .. "/a:2:1 (1 of 2)", out, 1, true)
    local one, _, rc2 = th.run({ "explain", POLICY, d .. "/a:2:2" })
    assert.equal(0, rc2)
    assert.matches("event    " .. d .. "/a:2:2, raw CloudTrail", one, 1, true)
    assert.matches("verdict  no match\n", one, 1, true)
  end)

  it("says how many lines there are past the end, names a malformed line, and refuses line 0 as bad usage",
    function()
      local d = th.tmpdir()
      th.write(d .. "/e.ndjson", ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "y1"))
        .. '{"eventName": \n' .. ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "y3")))
      local _, err, rc = th.run({ "explain", POLICY, d .. "/e.ndjson:4" })
      assert.equal(1, rc)
      assert.equal("trailhound explain: " .. d .. "/e.ndjson:4: past the end: " .. d .. "/e.ndjson has 3 lines\n", err)
      local _, err2, rc2 = th.run({ "explain", POLICY, d .. "/e.ndjson:2" })
      assert.equal(1, rc2)
      assert.equal(1, err2:find("trailhound explain: " .. d .. "/e.ndjson:2: malformed JSON (", 1, true))
      local out3, _, rc3 = th.run({ "explain", POLICY, d .. "/e.ndjson:3" })
      assert.equal(0, rc3)
      assert.matches("verdict  match\n", out3, 1, true)
      local _, err4, rc4 = th.run({ "explain", POLICY, d .. "/e.ndjson:0" })
      assert.equal(2, rc4)
      assert.matches("'" .. d .. "/e.ndjson:0': lines are counted from 1\nusage: trailhound explain", err4, 1, true)
      local _, err5, rc5 = th.run({ "explain", "--record", "-1", POLICY, d .. "/e.ndjson" })
      assert.equal(2, rc5)
      assert.matches("--record takes a record's index, from 0", err5, 1, true)
      local _, err6, rc6 = th.run({ "explain", POLICY, d .. "/nothing.ndjson:3" })
      assert.equal(1, rc6)
      assert.equal("trailhound explain: " .. d .. "/nothing.ndjson: No such file or directory\n", err6)
    end)

  it("reads gzip found by its first bytes: a CloudTrail S3 object, and NDJSON on standard input", function()
    local s3 = "examples/s3/123456789012_CloudTrail_us-east-1_20250326T1645Z_derived.json.gz"
    local out, err, rc = th.run({ "explain", POLICY, s3 })
    assert.equal(0, rc, err)
    local _, n = out:gsub("\nverdict  ", "")
    assert.equal(19, n)
    assert.matches(s3 .. ":1: record 18 (19 of 19), raw CloudTrail", out, 1, true)
    local out2, _, rc2 = sh("gzip -c examples/cloudtrail/bedrock-denied-derived.ndjson | " .. th.quote(BIN)
      .. " explain " .. POLICY .. " -")
    assert.equal(0, rc2)
    assert.matches("(stdin):13 (13 of 13), raw CloudTrail", out2, 1, true)
  end)

  it("reports a gzip file cut short, and one that is damaged, with the bytes of content before", function()
    local d = th.tmpdir()
    os.execute("gzip -c examples/cloudtrail/bedrock-denied-derived.ndjson | head -c 2000 > " .. th.quote(d .. "/t.gz"))
    local _, err, rc = th.run({ "explain", POLICY, d .. "/t.gz" })
    assert.equal(1, rc)
    assert.equal("trailhound explain: " .. d .. "/t.gz: truncated gzip (unexpected end of input) after N bytes of "
      .. "content\n", (err:gsub("%d+ bytes", "N bytes")))
    th.write(d .. "/bad", "\31\139\8\0\0\0\0\0\0\3garbage that is not deflate")
    local _, err2, rc2 = th.run({ "explain", POLICY, d .. "/bad" })
    assert.equal(1, rc2)
    assert.equal(1, err2:find("trailhound explain: " .. d .. "/bad: damaged gzip (", 1, true))
    assert.matches("%) after 0 bytes of content\n$", err2)
  end)
end)

describe("trailhound show", function()
  after_each(th.cleanup)

  it("prints the metadata and the investigation guide as plain wrapped text, headings and lists kept", function()
    local out, err, rc = th.run({ "show", POLICY })
    assert.equal(0, rc)
    assert.equal("", err)
    assert.matches("^AWS Bedrock Unauthorized Resource%-Based Policy Modification Attempt\n=+\n", out)
    assert.matches("\nrule_id   2e99477f-6099-48a9-ae0e-68801d97079c\n", out, 1, true)
    assert.matches("\nseverity  low, risk score 21\n", out, 1, true)
    assert.matches("\nthreat    TA0003 Persistence (MITRE ATT&CK)\n          T1098 Account Manipulation\n", out, 1,
      true)
    assert.matches("\nTriage and analysis\n===================\n", out, 1, true)
    assert.matches("\nFalse positive analysis\n%-+\n", out)
    assert.matches("\n%- Identify the actor and context\n  %- Review aws%.cloudtrail%.user_identity%.arn,", out)
    for line in out:gmatch("[^\n]+") do
      -- a file path or URL cannot wrap; the rest fits 80 columns
      if not line:find("^file ") and not line:find("https?://") then
        assert.is_true(utf8.len(line) <= 80, "longer than 80 columns: " .. line)
      end
      assert.not_matches("^#", line)
    end
    assert.not_matches("**", out, 1, true)
    assert.not_matches("`", out, 1, true)
  end)

  it("finds a rule by file name in the rules directory", function()
    local out, _, rc = th.run({ "show", "aws_bedrock_unauthorized_foundation_model_access_attempt" })
    assert.equal(0, rc)
    assert.matches("^AWS Bedrock Unauthorized Foundation Model Access Attempt\n", out)
  end)

  it("reports a rule that does not load, with its file and line", function()
    local d = rules({ ["r.lua"] = good_rule():gsub('name = "Bucket Deleted"', "name = { }") })
    local out, err, rc = th.run({ "show", d .. "/r.lua" })
    assert.equal(1, rc)
    assert.equal("", out)
    no_traceback(err)
    assert.matches("trailhound show: " .. d .. "/r.lua:3: field 'name' must be a string, not a table", err, 1, true)
  end)
end)

describe("trailhound new", function()
  after_each(th.cleanup)

  it("writes a rule that check and test pass at once, with a fresh UUID v4, and never overwrites", function()
    local d = th.tmpdir()
    local out, err, rc = run_in(d, { "new", "S3 Bucket Policy Deleted" })
    assert.equal(0, rc)
    assert.equal("", err)
    assert.matches("created rules/s3_bucket_policy_deleted.lua\n", out, 1, true)
    local id = out:match("rule_id  (%S+)")
    assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", id)
    local src = th.read(d .. "/rules/s3_bucket_policy_deleted.lua")
    assert.matches('rule_id = "' .. id .. '"', src, 1, true)
    assert.matches('name = "S3 Bucket Policy Deleted"', src, 1, true)

    local cout, _, crc = run_in(d, { "check" })
    assert.equal(0, crc)
    assert.equal("1 rule checked: 0 errors, 0 warnings\n", cout)
    local tout, _, trc = run_in(d, { "test" })
    assert.equal(0, trc)
    assert.matches("2 tests passed (1 rule)", tout, 1, true)

    th.write(d .. "/rules/s3_bucket_policy_deleted.lua", "-- mine\n")
    local _, err2, rc2 = run_in(d, { "new", "S3 Bucket Policy Deleted" })
    assert.equal(1, rc2)
    assert.matches("rules/s3_bucket_policy_deleted.lua already exists; not overwritten", err2, 1, true)
    assert.equal("-- mine\n", th.read(d .. "/rules/s3_bucket_policy_deleted.lua"))
  end)

  it("takes a path, and gives every new rule its own rule_id", function()
    local d = th.tmpdir()
    local out1 = th.run({ "new", d .. "/one" })
    local out2 = th.run({ "new", d .. "/two.lua" })
    assert.matches("created " .. d .. "/one.lua", out1, 1, true)
    assert.not_equal(out1:match("rule_id  (%S+)"), out2:match("rule_id  (%S+)"))
    local cout, _, crc = th.run({ "check", d })
    assert.equal(0, crc)
    assert.equal("2 rules checked: 0 errors, 0 warnings\n", cout)
  end)

  it("refuses a missing name as bad usage, and a folder that does not exist", function()
    local _, err, rc = th.run({ "new" })
    assert.equal(2, rc)
    assert.matches("usage: trailhound new NAME", err, 1, true)
    local _, err2, rc2 = th.run({ "new", "/nonexistent/dir/rule" })
    assert.equal(1, rc2)
    assert.matches("trailhound new: /nonexistent/dir: no such directory", err2, 1, true)
  end)
end)

describe("trailhound dev", function()
  local start = th.start
  after_each(th.cleanup)  -- stops the watchers too: a failed spec leaves none behind

  -- Wait until the output holds run n; returns the text of that run.
  local function run_n(h, n)
    local text = th.wait_for(function()
      local out = h.out()
      local at = out:find(", run " .. n .. " at ", 1, true)
      if at and out:find("\n$") and not out:find(", run " .. (n + 1) .. " at ", 1, true) then
        -- a run is complete once the next poll has passed with nothing new
        th.sleep(0.3)
        if h.out() == out then return out:sub(at) end
      end
      return nil
    end, 10)
    assert.is_string(text, "no run " .. n .. " in:\n" .. h.out() .. h.err())
    return text
  end

  it("re-runs check, tests and the sample events at every save, however the editor saves", function()
    local d = rules({ ["r.lua"] = good_rule() })
    local rule = d .. "/r.lua"
    th.write(d .. "/events.ndjson", '{"eventSource":"s3.amazonaws.com","eventName":"DeleteBucket",'
      .. '"userIdentity":{"arn":"arn:aws:iam::1:user/bob"}}\n'
      .. '{"eventSource":"s3.amazonaws.com","eventName":"ListBuckets"}\n')
    local h = start({ "dev", rule, d .. "/events.ndjson" })

    local first = run_n(h, 1)
    assert.matches("✓ check: no problems\n✓ tests: 2 tests passed (1 rule)\n", first, 1, true)
    assert.matches("samples: 1 of 2 events match\n", first, 1, true)
    assert.matches("✓ " .. d .. "/events.ndjson:1  DeleteBucket success by arn:aws:iam::1:user/bob\n", first, 1, true)
    assert.matches("✗ " .. d .. "/events.ndjson:2  ListBuckets success\n", first, 1, true)

    -- saved in place, with a misspelled field: a warning, a failing test, no match
    th.write(rule, (good_rule():gsub("event.action: \"DeleteBucket\"", "event.acton: \"DeleteBucket\"")))
    local second = run_n(h, 2)
    assert.matches("(" .. rule .. " changed)", second, 1, true)
    assert.matches(rule .. ":10:5: warning: event.acton: no source produces this field; did you mean event.action?",
      second, 1, true)
    assert.matches("✗ bucket deleted\n", second, 1, true)
    assert.matches("event.acton     (absent)", second, 1, true)
    assert.matches("samples: 0 of 2 events match", second, 1, true)

    -- saved by rename, broken: the error, and it keeps watching
    th.write(d .. "/r.lua.tmp", "return {\n  name = = 1\n}\n")
    os.rename(d .. "/r.lua.tmp", rule)
    local third = run_n(h, 3)
    assert.matches(rule .. ":2: error: unexpected symbol near '='", third, 1, true)
    assert.matches("fix the rule and save", third, 1, true)

    -- saved by delete and create: fixed again
    os.remove(rule)
    th.sleep(0.05)
    th.write(rule, good_rule())
    local fourth = run_n(h, 4)
    assert.matches("✓ check: no problems", fourth, 1, true)

    -- a sample file that changes is read again
    th.append(d .. "/events.ndjson", '{"eventSource":"s3.amazonaws.com","eventName":"DeleteBucket"}\nnot json\n')
    local fifth = run_n(h, 5)
    assert.matches("(" .. d .. "/events.ndjson changed)", fifth, 1, true)
    assert.matches(d .. "/events.ndjson:4: malformed JSON", fifth, 1, true)

    h.signal("TERM")
    h.wait(5)
    assert.not_matches("\27[", h.out(), 1, true)
    assert.matches("\n" .. string.rep("-", 72) .. "\ntrailhound dev: " .. rule .. ", run 2", h.out(), 1, true)
    no_traceback(h.err())
  end)

  it("clears and redraws the screen on a terminal", function()
    local out = run_tty({ "dev", POLICY }, nil, 2)
    assert.matches("^\27%[H\27%[2J\27%[3J", out)
    assert.matches("run 1", out, 1, true)
  end)

  it("refuses a rule file that does not exist", function()
    local _, err, rc = th.run({ "dev", "/nonexistent/r.lua" })
    assert.equal(1, rc)
    assert.matches("trailhound dev: /nonexistent/r.lua: no such rule file", err, 1, true)
  end)
end)

describe("the authoring commands", function()
  after_each(th.cleanup)

  it("colour their output on a terminal, unless NO_COLOR is set, and never in a pipe", function()
    local d = rules({ ["r.lua"] = good_rule():gsub("risk_score = 21", "risk_score = 99") })
    local tty = run_tty({ "check", d })
    assert.matches("\27[31merror\27[0m: risk_score 99", tty, 1, true)
    local plain = run_tty({ "check", d }, "NO_COLOR=1")
    assert.matches(": error: risk_score 99", plain, 1, true)
    assert.not_matches("\27[", plain, 1, true)
    local piped = th.run({ "check", d })
    assert.not_matches("\27[", piped, 1, true)
  end)

  it("answer an unknown command or option with the usage and exit code 2", function()
    local _, err, rc = th.run({ "check", "--fast" })
    assert.equal(2, rc)
    assert.matches("trailhound check: unknown option '--fast'\nusage: trailhound check", err, 1, true)
    local out, _, rc2 = th.run({ "test", "--help" })
    assert.equal(0, rc2)
    assert.matches("^usage: trailhound test %[%-%-format text|tap|junit%]", out)
  end)
end)
