-- template.lua: the rule `trailhound new` writes.

local check = require "check"
local template = require "template"
local testrun = require "testrun"
local th = require "support.th"

describe("template", function()
  after_each(th.cleanup)

  it("makes a snake_case file name in rules/, or takes a path", function()
    assert.equal("rules/cloudtrail_logging_stopped.lua", template.path("CloudTrail Logging Stopped"))
    assert.equal("rules/my_rule.lua", template.path("myRule"))
    assert.equal("rules/s3_public_bucket.lua", template.path("S3: public-bucket!"))
    assert.equal("x/y.lua", template.path("x/y"))
    assert.equal("y.lua", template.path("y.lua"))
  end)

  it("makes a rule name from a file-like name, and keeps a title as written", function()
    assert.equal("Bedrock Guardrail Deleted", template.title("bedrock_guardrail_deleted"))
    assert.equal("My Rule", template.title("rules/myRule.lua"))
    assert.equal("CloudTrail Logging Stopped", template.title("CloudTrail Logging Stopped"))
  end)

  it("makes a version 4 UUID of 16 random bytes", function()
    assert.equal("ffffffff-ffff-4fff-bfff-ffffffffffff", template.uuid4(string.rep("\255", 16)))
    assert.equal("00000000-0000-4000-8000-000000000000", template.uuid4(string.rep("\0", 16)))
  end)

  it("writes a rule that check finds nothing to say about and whose tests pass", function()
    local d = th.tmpdir()
    local path = d .. "/r.lua"
    th.write(path, template.text({ name = 'Odd "name" ]] here', rule_id = "7d1e1b49-0f2c-4a8e-9b43-6b1b6c4f3a10",
      path = path, date = "2024/05/01", author = "ana" }))
    local diags = check.files({ path })
    assert.same({}, diags)
    local report = testrun.run({ path })
    assert.is_true(report.ok)
    assert.equal(2, report.tests)
    assert.equal(true, report.rules[1].results[1].expect)
    assert.equal(false, report.rules[1].results[2].expect)
    assert.equal('Odd "name" ]] here', report.rules[1].name)
  end)
end)
