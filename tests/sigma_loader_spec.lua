-- Sigma rule modules through the loader: the module contract the importer writes
-- (README, "Sigma rules"), its defaults, its errors with file and line, embedded tests on
-- raw CloudTrail and on ECS documents, and the rule index and prefilter clauses.

local cjson = require "cjson"
local event = require "event"
local loader = require "loader"
local normalize = require "normalize"
local ruleindex = require "ruleindex"
local th = require "support.th"

local function rule_file(src)
  local d = th.tmpdir()
  th.write(d .. "/r.lua", src)
  return d .. "/r.lua"
end

-- SigmaHQ's aws_cloudtrail_bucket_deleted.yml (DRL 1.1, author Sittikorn S), as the importer
-- writes it.
local BUCKET_DELETED = [[
local sigma = require "sigma"

return {
  rule_id = "39c9f26d-6e3b-4dbb-9c7a-4154b0281112",
  name = "AWS S3 Bucket Deleted",
  description = "Detects the deletion of S3 buckets.",
  severity = "medium",
  risk_score = 47,
  author = { "Sittikorn S" },
  references = { "https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteBucket.html" },
  tags = { "attack.impact", "attack.t1485" },
  false_positives = { "Legitimate bucket deletions." },
  license = "DRL-1.1",
  language = "sigma",
  sigma = {
    title = "AWS S3 Bucket Deleted",
    id = "39c9f26d-6e3b-4dbb-9c7a-4154b0281112",
    status = "test",
    level = "medium",
    logsource = { product = "aws", service = "cloudtrail" },
    detection = {
      selection_event_name = { eventName = "DeleteBucket" },
      selection_status_success = { errorCode = "Success" },
      selection_status_null = { errorCode = sigma.NULL },
      condition = "selection_event_name and 1 of selection_status_*",
    },
  },
  tests = {
    { name = "deleted", expect = true, event = { eventSource = "s3.amazonaws.com", eventName = "DeleteBucket" } },
    { name = "denied", expect = false, event = { eventSource = "s3.amazonaws.com", eventName = "DeleteBucket",
      errorCode = "AccessDenied" } },
  },
}
]]

local function run(rule, rec)
  local doc = normalize.normalize(rec)
  return rule.match(event.getter(doc, rec), event.view(doc))
end

describe("Sigma rule modules", function()
  after_each(th.cleanup)

  it("load with language = \"sigma\", a sigma table and sigma.NULL from require \"sigma\"", function()
    local rule = assert(loader.load_file(rule_file(BUCKET_DELETED)))
    assert.is_not_nil(rule.sigma)
    assert.equal("39c9f26d-6e3b-4dbb-9c7a-4154b0281112", rule.id)
    assert.equal(require("sigma").NULL, rule.meta.sigma.detection.selection_status_null.errorCode)
    for _, r in ipairs(loader.run_tests(rule, normalize.normalize)) do assert.is_true(r.ok, r.name) end
    assert.is_true(run(rule, { eventName = "deletebucket", errorCode = "Success" }))
    assert.is_false(run(rule, { eventName = "DeleteBucket", errorCode = "NoSuchBucket" }))
  end)

  it("take what the module leaves out from the Sigma rule: id, title, level, tags, author", function()
    local rule = assert(loader.load_file(rule_file([[
return {
  language = "sigma",
  sigma = {
    title = "AWS Root Credentials", id = "8ad1600d-e9dc-4251-b0ee-a65268f29add", level = "informational",
    description = "Detects AWS root account usage", author = "vitaliy0x1", tags = { "attack.t1078.004" },
    falsepositives = { "AWS Tasks That Require AWS Account Root User Credentials" },
    detection = { selection_usertype = { ["userIdentity.type"] = "Root" },
      selection_eventtype = { eventType = "AwsServiceEvent" },
      condition = "selection_usertype and not selection_eventtype" },
  },
}
]])))
    local m = rule.meta
    assert.same({ "8ad1600d-e9dc-4251-b0ee-a65268f29add", "AWS Root Credentials", "Detects AWS root account usage",
      "low", 21 }, { m.rule_id, m.name, m.description, m.severity, m.risk_score })
    assert.same({ "attack.t1078.004" }, m.tags)
    assert.same({ "vitaliy0x1" }, m.author)
    assert.same({ "AWS Tasks That Require AWS Account Root User Credentials" }, m.false_positives)
    assert.is_true(run(rule, { eventName = "ListBuckets", userIdentity = { type = "Root" }, eventType = "AwsApiCall" }))
    assert.is_false(run(rule, { eventName = "ListBuckets", userIdentity = { type = "Root" },
      eventType = "AwsServiceEvent" }))
  end)

  it("report a broken detection at its line in the rule file", function()
    local src = BUCKET_DELETED:gsub('errorCode = "Success"', '["errorCode|containz"] = "Success"')
    local path = rule_file(src)
    local rule, err = loader.load_file(path)
    assert.is_nil(rule)
    assert.matches("^" .. path:gsub("%p", "%%%0") .. ":23: detection.selection_status_success: errorCode|containz: " ..
      "unknown modifier 'containz'", err)
    src = BUCKET_DELETED:gsub("1 of selection_status_%*", "1 of selection_state_*")
    rule, err = loader.load_file(rule_file(src))
    assert.is_nil(rule)
    assert.matches(":25: detection.condition: 'selection_event_name and 1 of selection_state_%*': " ..
      "'1 of selection_state_%*' names no search identifier", err)
  end)

  it("refuse a sigma table without language, a query beside it, and a level that is none", function()
    local _, err = loader.load_file(rule_file(BUCKET_DELETED:gsub('  language = "sigma",\n', "")))
    assert.matches(':14: a rule with a \'sigma\' table needs language = "sigma"', err)
    _, err = loader.load_file(rule_file(BUCKET_DELETED:gsub('  language = "sigma",\n',
      '  language = "sigma", query = "event.action: x",\n')))
    assert.matches("a Sigma rule has no 'query'", err)
    _, err = loader.load_file(rule_file(BUCKET_DELETED:gsub('  severity = "medium",\n', "")
      :gsub('level = "medium"', 'level = "severe"')))
    assert.matches(":18: sigma.level 'severe' is not one of informational, low, medium, high, critical", err)
  end)

  it("block any other module a rule requires", function()
    local _, err = loader.load_file(rule_file('local os2 = require "os"\n' .. BUCKET_DELETED))
    assert.matches(':1: blocked: require "os" %(a rule may require "sigma" only%)', err)
  end)

  it("match an ECS document by the raw record in its event.original, and no other", function()
    local rule = assert(loader.load_file(rule_file(BUCKET_DELETED)))
    local raw = { eventSource = "s3.amazonaws.com", eventName = "DeleteBucket" }
    local ecs = { event = { action = "DeleteBucket", provider = "s3.amazonaws.com", original = cjson.encode(raw) } }
    assert.is_true(run(rule, ecs))
    ecs.event.original = nil
    assert.is_false(run(rule, ecs))
  end)

  it("give the rule index eventName's exact values, and the prefilter its folded literals", function()
    local rule = assert(loader.load_file(rule_file(BUCKET_DELETED)))
    assert.same({ { "DeleteBucket", fold = true } }, ruleindex.prefilter(rule, normalize))
    local ix = ruleindex.build({ rule }, normalize.ON_DEMAND)
    local function candidates(rec)
      local doc = normalize.normalize(rec)
      return #ix.candidates(event.getter(doc, rec))
    end
    assert.equal(1, candidates({ eventSource = "s3.amazonaws.com", eventName = "DELETEBUCKET" }))
    assert.equal(0, candidates({ eventSource = "s3.amazonaws.com", eventName = "CreateBucket" }))
  end)

  it("give the prefilter the longest run of a value that no JSON writer escapes", function()
    local rule = assert(loader.load_file(rule_file((BUCKET_DELETED:gsub('eventName = "DeleteBucket"',
      '["userIdentity.arn|re"] = ".+:assumed-role/aws:.+"')))))
    assert.same({ { ":assumed-role", fold = true } }, ruleindex.prefilter(rule, normalize))
  end)

  it("give the prefilter no literal a JSON writer may escape or a number's text may hold", function()
    assert.is_true(ruleindex.safe_literal("s3.amazonaws.com"))
    assert.is_true(ruleindex.safe_literal("$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
    for _, s in ipairs({ "a/b", 'a"b', "a\\b", "<x>", "a&b", "it's", "é", "123", "1.5e3", "" }) do
      assert.is_false(ruleindex.safe_literal(s), s)
    end
  end)
end)
