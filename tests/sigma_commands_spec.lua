-- The authoring commands on Sigma rules: check (raw CloudTrail fields, the Sigma rule's
-- keys, what its detection probably did not mean), explain (which selections matched), show
-- (the detection as YAML), and test and explain through the binary.

local check = require "check"
local explain = require "explain"
local loader = require "loader"
local normalize = require "normalize"
local show = require "show"
local style = require "style"
local th = require "support.th"

-- SigmaHQ's aws_enum_buckets.yml (DRL 1.1, Christopher Peacock @securepeacock, SCYTHE
-- @scythe_io), as the importer writes it, with two tests.
local ENUM = [[
return {
  rule_id = "f305fd62-beca-47da-ad95-7690a0620084",
  name = "Potential Bucket Enumeration on AWS",
  description = "Looks for potential enumeration of AWS buckets via ListBuckets.",
  severity = "low",
  risk_score = 21,
  author = { "Christopher Peacock @securepeacock, SCYTHE @scythe_io" },
  tags = { "attack.discovery", "attack.t1580", "attack.t1619" },
  license = "DRL-1.1",
  language = "sigma",
  sigma = {
    title = "Potential Bucket Enumeration on AWS",
    id = "f305fd62-beca-47da-ad95-7690a0620084",
    status = "test",
    level = "low",
    date = "2023-01-06",
    logsource = { product = "aws", service = "cloudtrail" },
    detection = {
      selection = {
        eventSource = "s3.amazonaws.com",
        eventName = "ListBuckets",
      },
      filter = {
        ["userIdentity.type"] = "AssumedRole",
      },
      condition = "selection and not filter",
    },
  },
  tests = {
    { name = "a user lists buckets", expect = true,
      event = { eventSource = "s3.amazonaws.com", eventName = "ListBuckets", userIdentity = { type = "IAMUser" } } },
    { name = "a role lists buckets", expect = false,
      event = { eventSource = "s3.amazonaws.com", eventName = "ListBuckets",
        userIdentity = { type = "AssumedRole" } } },
  },
}
]]

local function diags(src)
  local d = th.tmpdir()
  th.write(d .. "/r.lua", src)
  local list = check.files({ d .. "/r.lua" })
  local out = {}
  for i, x in ipairs(list) do out[i] = string.format("%s %s %s", tostring(x.line), x.level, x.msg) end
  return out
end

local function with(old, new) return (ENUM:gsub(old, new, 1)) end

-- The line of ENUM where text first is.
local function line_of(text)
  local at = assert(ENUM:find(text, 1, true), text)
  local _, n = ENUM:sub(1, at):gsub("\n", "")
  return n + 1
end

local function shape(node)
  local s = { node.text, node.value, node.line }
  for i, child in ipairs(node.children or {}) do s[i + 3] = shape(child) end
  return s
end

describe("Sigma rules in the authoring commands", function()
  after_each(th.cleanup)

  describe("check", function()
    it("finds nothing to say about an imported rule with tests", function()
      assert.same({}, diags(ENUM))
    end)

    it("does not take raw CloudTrail paths for ECS fields, but warns of paths no record has", function()
      local out = diags(with('%["userIdentity.type"%] = "AssumedRole",',
        '["userIdentity.tipe"] = "AssumedRole", status = "x", evntName = "y",'))
      local at = line_of("userIdentity.type") .. " warning "
      assert.same({
        at .. "evntName: a CloudTrail record has no field evntName; did you mean eventName?",
        at .. "status: a CloudTrail record has no field status",
        at .. "userIdentity.tipe: a CloudTrail userIdentity has no field tipe; did you mean userIdentity.type?",
      }, out)
    end)

    it("warns of a value that names a field where |fieldref was meant", function()
      assert.same({ line_of("userIdentity.type") .. " warning userIdentity.type|contains: the value " ..
        "'responseElements.accessKey.userName' is the name of a field, compared as text; to compare with that " ..
        "field's value, use |fieldref" },
        diags(with('%["userIdentity.type"%] = "AssumedRole"',
          '["userIdentity.type|contains"] = "responseElements.accessKey.userName"')))
    end)

    it("passes on the compiler's warnings at their lines", function()
      assert.same({ line_of("eventName = ") .. " warning eventName|all: |all on a single value changes nothing " ..
        "(the specification does not allow it)" },
        diags(with('eventName = "ListBuckets"', '["eventName|all"] = "ListBuckets"')))
      assert.same({ line_of("filter = {") .. " warning detection.filter is not used by the condition" },
        diags(with('"selection and not filter"', '"selection"')))
    end)

    it("holds the Sigma rule's keys, level, status and logsource, and their agreement with the metadata", function()
      local function one(key, level, msg, old, new)
        assert.same({ line_of(key) .. " " .. level .. " " .. msg }, diags(with(old, new)))
      end
      one("name =", "warning", "name 'Enumeration' is not the Sigma rule's title 'Potential Bucket Enumeration on AWS'",
        'name = "Potential Bucket Enumeration on AWS"', 'name = "Enumeration"')
      one("severity =", "warning", "severity low is not the Sigma rule's level high (high)",
        'level = "low"', 'level = "high"')
      one("level =", "error", "sigma.level 'severe' is not one of informational, low, medium, high, critical",
        'level = "low"', 'level = "severe"')
      one("status =", "warning", "sigma.status is deprecated: SigmaHQ no longer maintains this rule",
        'status = "test"', 'status = "deprecated"')
      one("logsource =", "warning", "sigma.logsource is windows/nil: trailhound reads AWS CloudTrail, whose records " ..
        "may not have this rule's fields", 'product = "aws", service = "cloudtrail"', 'product = "windows"')
      one("date =", "warning", "sigma.dat is no key of a Sigma rule; did you mean date?", 'date = ', 'dat = ')
      one("rule_id =", "warning", "rule_id f305fd62-beca-47da-ad95-7690a0620085 is not the Sigma rule's id " ..
        "f305fd62-beca-47da-ad95-7690a0620084", 'rule_id = "f305fd62%-beca%-47da%-ad95%-7690a0620084"',
        'rule_id = "f305fd62-beca-47da-ad95-7690a0620085"')
    end)

    it("reports a broken detection as an error at its line", function()
      assert.same({ line_of("eventSource = ") .. " error detection.selection: eventSource|startwith: unknown " ..
        "modifier 'startwith' (Sigma's are all, base64, base64offset, cased, cidr, contains, day, dotall, endswith, " ..
        "exists, expand, fieldref, gt, gte, hour, i, ignorecase, lt, lte, m, minute, month, multiline, neq, re, s, " ..
        "startswith, utf16, utf16be, utf16le, week, wide, windash, year)" },
        diags(with('eventSource = "s3.amazonaws.com"', '["eventSource|startwith"] = "s3"')))
    end)
  end)

  describe("explain", function()
    local function load()
      local d = th.tmpdir()
      th.write(d .. "/r.lua", ENUM)
      return assert(loader.load_file(d .. "/r.lua"))
    end

    it("shows the condition, each selection and each item with its value and line", function()
      local rule = load()
      local rec = { eventSource = "s3.amazonaws.com", eventName = "ListBuckets",
        userIdentity = { type = "AssumedRole" } }
      local x = explain.run(rule, normalize.normalize(rec), rec)
      assert.is_false(x.verdict)
      local cond = line_of("condition =")
      assert.same({ "and", false, cond,
        { "selection", true, line_of("selection ="),
          { "eventSource: 's3.amazonaws.com'", true, line_of("eventSource =") },
          { "eventName: 'ListBuckets'", true, line_of("eventName =") } },
        { "not", false, cond, { "filter", true, line_of("filter ="),
          { "userIdentity.type: 'AssumedRole'", true, line_of("userIdentity.type") } } },
      }, shape(x.tree))
      assert.same({ { name = "eventName", value = "ListBuckets" }, { name = "eventSource", value = "s3.amazonaws.com" },
        { name = "userIdentity.type", value = "AssumedRole" } }, x.fields)
      assert.equal("not filter is false: filter held (r.lua:" .. cond .. ")", explain.because(x, "r.lua"))
      rec.userIdentity.type = "IAMUser"
      x = explain.run(rule, normalize.normalize(rec), rec)
      assert.is_true(x.verdict)
      rec.eventName = "ListObjects"
      x = explain.run(rule, normalize.normalize(rec), rec)
      assert.equal("eventName: 'ListBuckets' is false (r.lua:" .. line_of("eventName =") .. ")",
        explain.because(x, "r.lua"))
    end)

    it("says when an ECS document has no raw record to read", function()
      local x = explain.run(load(), { event = { action = "ListBuckets" } }, { event = { action = "ListBuckets" } })
      assert.is_false(x.verdict)
      assert.matches("a raw CloudTrail record to read", x.tree.text)
    end)
  end)

  describe("show", function()
    it("prints the Sigma id, level and logsource, and the detection as YAML in file order", function()
      local d = th.tmpdir()
      th.write(d .. "/r.lua", ENUM)
      local lines = show.lines(assert(loader.load_file(d .. "/r.lua")), style.new(false), 200)
      local text = table.concat(lines, "\n")
      assert.matches("type      query %(Sigma detection%)", text)
      assert.matches("sigma     id f305fd62%-beca%-47da%-ad95%-7690a0620084, level low, status test, product aws, " ..
        "service cloudtrail", text)
      assert.matches(table.concat({
        "Detection %(Sigma%)", "%-+",
        "  selection:",
        "      eventSource: 's3.amazonaws.com'",
        "      eventName: 'ListBuckets'",
        "  filter:",
        "      userIdentity.type: 'AssumedRole'",
        "  condition: selection and not filter",
      }, "\n"), text)
    end)
  end)

  describe("the binary", function()
    it("tests a Sigma rule and explains its failure with the raw fields it reads", function()
      local d = th.tmpdir()
      th.write(d .. "/r.lua", (ENUM:gsub('name = "a role lists buckets", expect = false',
        'name = "a role lists buckets", expect = true')))
      local out, _, rc = th.run({ "test", d .. "/r.lua" })
      assert.equal(1, rc)
      assert.matches("userIdentity.type  \"AssumedRole\"", out)
      assert.matches("decided by: not filter is false: filter held %(.-r.lua:" .. line_of("condition =") .. "%)", out)
    end)

    it("explains a Stratus Red Team record against a Sigma rule", function()
      local d = th.tmpdir()
      th.write(d .. "/r.lua", (ENUM:gsub('eventSource = "s3.amazonaws.com"', 'eventSource = "cloudtrail.amazonaws.com"')
        :gsub('eventName = "ListBuckets"', 'eventName = "StopLogging"')))
      local out, err, rc = th.run({ "explain", d .. "/r.lua",
        "tests/fixtures/stratus-red-team/aws.defense-evasion.cloudtrail-stop.json" })
      assert.equal(0, rc, err)
      assert.matches("verdict  match", out)
      assert.matches("userIdentity.type  \"IAMUser\"", out)
    end)
  end)
end)
