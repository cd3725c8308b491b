-- testrun.lua: running rules' embedded tests, and reporting them as text,
-- TAP and JUnit XML.

local ruleset = require "ruleset"
local style = require "style"
local testrun = require "testrun"
local th = require "support.th"

local BUNDLED = {
  "rules/aws_bedrock_unauthorized_foundation_model_access_attempt.lua",
  "rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua",
}

-- A rule whose tests are given as Lua source.
local function rule(tests, extra)
  return string.format([[
return {
  rule_id = "0b7b5b39-86f5-4fb0-9d3f-0b9a4ab8f6a1",
  name = "Bucket Deleted",
  description = "d",
  severity = "low",
  risk_score = 21,
  query = 'event.action: "DeleteBucket" and event.outcome: "success"',%s
  tests = {
%s
  },
}
]], extra or "", tests)
end

local DELETE = '{ eventSource = "s3.amazonaws.com", eventName = "DeleteBucket" }'
local DENIED = '{ eventSource = "s3.amazonaws.com", eventName = "DeleteBucket", errorCode = "AccessDenied" }'

local function run(files)
  local d = th.tmpdir()
  local paths = {}
  for i, src in ipairs(files) do
    paths[i] = string.format("%s/r%d.lua", d, i)
    th.write(paths[i], src)
  end
  return testrun.run(paths), paths
end

describe("testrun", function()
  after_each(th.cleanup)

  describe("run()", function()
    it("passes every test of the bundled rules", function()
      local report = testrun.run(BUNDLED)
      assert.is_true(report.ok)
      assert.same({ 25, 25, 0, 0 }, { report.tests, report.passed, report.failed, report.broken })
    end)

    it("gives a failing test its line, the fields the rule reads and the deciding clause", function()
      local report, paths = run({ rule("    { name = 'ok', expect = true, event = " .. DELETE .. " },\n"
        .. "    { name = 'wrong', expect = true, event = " .. DENIED .. " },") })
      assert.is_false(report.ok)
      local r = report.rules[1].results[2]
      assert.same({ "wrong", true, false, false, 10 }, { r.name, r.expect, r.got, r.ok, r.line })
      assert.same({ { name = "event.action", value = "DeleteBucket" }, { name = "event.outcome", value = "failure" } },
        r.fields)
      assert.equal('event.outcome: "success" is false (' .. paths[1] .. ":7:45)", r.because)
    end)

    it("reports tests that are not tables, lack expect or event, or make the rule fail, and runs the rest", function()
      local report = run({ rule("    'just a string',\n    { name = 'no expect', event = " .. DELETE .. " },\n"
        .. "    { expect = true },\n    { name = 'ok', expect = true, event = " .. DELETE .. " },\n"
        .. "    { name = 'raises', expect = true, event = { eventName = 'DeleteBucket', eventSource = 'boom' } },",
        "\n  match = function(e) if e['event.provider'] == 'boom' then error('bad') end return true end,") })
      local results = report.rules[1].results
      assert.same({ "test 1", "must be a table { name, expect, event }" }, { results[1].name, results[1].err })
      assert.equal("no expect = true or false (the verdict the rule must give)", results[2].err)
      assert.same({ "test 3", "no event table" }, { results[3].name, results[3].err })
      assert.is_true(results[4].ok)
      assert.matches("^the rule failed: .*r1%.lua:8: bad$", results[5].err)
      assert.same({ 5, 1, 4 }, { report.tests, report.passed, report.failed })
    end)

    it("stops a test that never ends and names the rule's line", function()
      local budget = ruleset.BUDGET
      ruleset.BUDGET = 100000
      local report = run({ rule("    { name = 'loops', expect = true, event = " .. DELETE .. " },",
        "\n  match = function(e)\n    while e['event.action'] do end\n  end,") })
      ruleset.BUDGET = budget
      assert.matches("r1%.lua:9: stopped after 100000 instructions", report.rules[1].results[1].err)
    end)

    it("reports a rule that does not load, and counts it", function()
      local report, paths = run({ "return {\n  name = 'x',\n}\n", rule("") })
      assert.same({ paths[1], 1 }, { report.rules[1].error.file, report.rules[1].error.line })
      assert.matches("^missing required field '", report.rules[1].error.msg)
      assert.same({ 1, 0, false }, { report.broken, report.tests, report.ok })
    end)
  end)

  describe("text()", function()
    it("marks each test and sums up", function()
      local report, paths = run({ rule("    { name = 'ok', expect = true, event = " .. DELETE .. " },\n"
        .. "    { name = 'wrong', expect = true, event = " .. DENIED .. " },"), "return 1\n", rule("") })
      local text = testrun.text(report, style.new(false))
      assert.matches(paths[1] .. "  Bucket Deleted\n  ✓ ok\n  ✗ wrong\n      " .. paths[1] .. ":10: expected match, "
        .. "got no match\n      fields the rule reads:\n        event.action   \"DeleteBucket\"\n", text, 1, true)
      assert.matches(paths[2] .. "\n  ✗ " .. paths[2] .. ":1: a rule module must return a table, not a number\n",
        text, 1, true)
      assert.matches(paths[3] .. "  Bucket Deleted\n  - no tests\n", text, 1, true)
      assert.equal("2 tests: 1 passed, 1 failed (3 rules, 1 not loaded)\n", text:match("\n\n(.*)$"))
    end)
  end)

  describe("tap()", function()
    it("plans one line per test, skips a rule without tests, and escapes # in names", function()
      local report = run({ rule("    { name = 'a # b', expect = true, event = " .. DELETE .. " },\n"
        .. "    { name = 'wrong', expect = true, event = " .. DENIED .. " },"), rule(""), "return {" })
      local tap = testrun.tap(report)
      assert.matches("^TAP version 13\n1%.%.4\n", tap)
      assert.matches("\nok 1 - [^\n]*r1%.lua: a \\# b\n", tap)
      assert.matches("\nnot ok 2 - [^\n]*r1%.lua: wrong\n  %-%-%-\n", tap)
      assert.matches("\nok 3 - [^\n]*r2%.lua # SKIP no tests\n", tap)
      assert.matches("\nnot ok 4 - [^\n]*r3%.lua: does not load\n", tap)
      local _, lines = tap:gsub("\nn?o?t? ?ok %d", "")
      assert.equal(4, lines)
    end)
  end)

  describe("junit()", function()
    it("counts tests, failures and errors, and escapes what it quotes", function()
      local report = run({ rule("    { name = '<a & b>', expect = true, event = " .. DENIED .. " },\n"
        .. "    { name = 'no expect', event = " .. DELETE .. " },"), "return {" })
      local xml = testrun.junit(report)
      assert.matches('<testsuites name="trailhound test" tests="3" failures="1" errors="2">', xml, 1, true)
      assert.matches('name="&lt;a &amp; b&gt;"', xml, 1, true)
      assert.matches('<error message="no expect = true or false (the verdict the rule must give)" type="error">',
        xml, 1, true)
      assert.matches('<testcase classname="[^"]*r2%.lua" name="load" file="[^"]*r2%.lua" line="1">', xml)
      assert.not_matches("<[^>]*<", xml)
    end)
  end)
end)
