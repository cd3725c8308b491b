-- import.lua: SigmaHQ's 57 CloudTrail rules (tests/fixtures/sigma-cloudtrail, DRL 1.1) turned
-- into rule modules of the shape the Sigma engine reads (README, "Sigma rules"): the module
-- loads in the rule sandbox and passes check, holds the Sigma rule's keys word for word under
-- `sigma` (YAML's null as sigma.NULL), and keeps each rule's author and license. What the Sigma
-- engine refuses, and what is not a rule over CloudTrail, is not imported.

local import = require "import"
local yamldoc = require "yamldoc"
local check = require "check"
local th = require "support.th"

local SIGMA = "tests/fixtures/sigma-cloudtrail"

local function module(path)
  local mod, err = import.evaluate(path, th.read(path))
  assert(mod, err)
  return mod
end

-- The module's sigma table with the null marker turned back into lyaml's null.
local function decoded(v, null)
  if import.is_sigma_null(v) then return null end
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = decoded(x, null) end
  return c
end

-- Same YAML values: lyaml's null is equal only to itself.
local function difference(a, b, path)
  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then
    return string.format("%s: %s vs %s", path, type(a), type(b))
  end
  if type(a) == "table" then
    if getmetatable(a) or getmetatable(b) then  -- lyaml.null
      if rawequal(a, b) then return nil end
      return path .. ": null vs a table"
    end
    for k, v in pairs(a) do
      local d = difference(v, b[k], path .. "." .. tostring(k))
      if d then return d end
    end
    for k in pairs(b) do
      if a[k] == nil then return path .. "." .. tostring(k) .. ": only in the module" end
    end
    return nil
  end
  if a ~= b then return path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
  return nil
end

local out, results, summary
local function all()
  if not results then
    out = th.tmpdir()
    results, summary = import.run({ SIGMA }, { out = out })
  end
  return results, summary
end

describe("import of SigmaHQ's 57 CloudTrail rules", function()
  teardown(th.cleanup)

  it("imports all 57, each passing check", function()
    local r, s = all()
    assert.equal(57, s.files)
    assert.equal(57, s.imported)
    assert.equal(0, s["not runnable"])
    assert.equal(0, s.failed)
    assert.equal(0, s.unsupported)
    assert.is_true(s.ok)
    local paths = {}
    for _, x in ipairs(r) do paths[#paths + 1] = x.out end
    local diags, stats = check.files(paths)
    assert.equal(57, stats.rules)
    assert.equal(0, stats.errors)
    local other = {}
    for _, d in ipairs(diags) do
      if not d.msg:find("^no tests: ") then other[#other + 1] = d.file:match("[^/]+$") .. ": " .. d.msg end
    end
    -- The two slips of the rules themselves (README, "Sigma rules"), nothing about the import.
    assert.equal(2, #other, table.concat(other, "\n"))
    assert.matches("^aws_delete_saml_provider%.lua: status: ", other[1])
    assert.matches("^aws_iam_backdoor_users_keys%.lua: userIdentity%.arn|contains: ", other[2])
  end)

  it("writes modules that parse as Lua in the rule sandbox and hold the Sigma rule word for word", function()
    local r = all()
    local null = yamldoc.lyaml().null
    for _, x in ipairs(r) do
      local docs = yamldoc.load(th.read(x.source))
      local doc = docs[1]
      local mod = module(x.out)
      local d = difference(doc, decoded(mod.sigma, null), x.source)
      assert.is_nil(d, d)
      -- The fields of the contract, taken from the Sigma keys.
      local level = ({ informational = { "low", 21 }, low = { "low", 21 }, medium = { "medium", 47 },
        high = { "high", 73 }, critical = { "critical", 99 } })[doc.level]
      assert.equal(doc.id, mod.rule_id)
      assert.equal(doc.title, mod.name)
      assert.equal(doc.description, mod.description)
      assert.equal(level[1], mod.severity, x.source)
      assert.equal(level[2], mod.risk_score, x.source)
      assert.same({ doc.author }, mod.author)
      assert.same(doc.references, mod.references)
      assert.same(doc.tags, mod.tags)
      assert.same(doc.falsepositives or {}, mod.false_positives)
      assert.equal("DRL-1.1", mod.license)
      assert.equal("sigma", mod.language)
      assert.same({}, mod.tests)
    end
  end)

  it("keeps each rule's author and names the DRL 1.1 in the header", function()
    local r = all()
    for _, x in ipairs(r) do
      local doc = yamldoc.load(th.read(x.source))[1]
      local head = th.read(x.out):match("^(.-)\n\n"):gsub("\n%-%- ", " ")
      assert.truthy(head:find("Author: " .. doc.author .. ". ", 1, true), x.out .. ": " .. head)
      assert.truthy(head:find("License: Detection Rule License (DRL) 1.1, "
        .. "https://github.com/SigmaHQ/Detection-Rule-License", 1, true), x.out)
    end
  end)

  it("writes keys in the order the rule writes them", function()
    local _ = all()
    local src = th.read(out .. "/aws_cloudtrail_bucket_deleted.lua")
    assert.truthy(src:find([[
    detection = {
      selection_event_name = { eventName = "DeleteBucket" },
      selection_status_success = { errorCode = "Success" },
      selection_status_null = { errorCode = sigma.NULL },
      condition = "selection_event_name and 1 of selection_status_*",
    },
    falsepositives = {]], 1, true))
    local a, b = src:find("\n    title = ", 1, true), src:find("\n    id = ", 1, true)
    local c = src:find("\n    level = ", 1, true)
    assert.truthy(a < b and b < c)
  end)

  it("writes YAML's null as sigma.NULL, requiring sigma at the top of the modules that have one", function()
    local r = all()
    local with = 0
    for _, x in ipairs(r) do
      local src = th.read(x.out)
      local declared = src:find('\nlocal sigma = require "sigma"', 1, true) ~= nil
      local used = src:find("= sigma.NULL[,%s}]") ~= nil
      assert.equal(used, declared, x.out)
      if used then with = with + 1 end
    end
    assert.equal(4, with)
    local mod = module(out .. "/aws_cloudtrail_bucket_deleted.lua")
    assert.is_true(import.is_sigma_null(mod.sigma.detection.selection_status_null.errorCode))
  end)

  it("writes modules that luacheck passes without a warning", function()
    local _ = all()
    local p = io.popen("luacheck -q " .. th.quote(out) .. " 2>&1; echo rc=$?")
    local text = p:read("a")
    p:close()
    assert.truthy(text:find("rc=0\n$"), text)
  end)
end)

describe("import of what trailhound's Sigma engine does not read", function()
  teardown(th.cleanup)

  local RULE = [[
title: A rule
id: 0b7b5b39-86f5-4fb0-9d3f-0b9a4ab8f6a1
author: someone
logsource:
    product: %s
    service: %s
detection:
    selection:
        %s: x
    condition: %s
level: %s
]]

  local function one(text, name)
    local dir = th.tmpdir()
    local path = dir .. "/" .. (name or "r.yml")
    th.write(path, text)
    local r, s = import.run({ path }, { out = dir .. "/out" })
    return r[1], s, dir
  end

  local CASES = {
    { "a correlation rule", "title: c\nid: x\ncorrelation:\n  type: event_count\n  rules: [a]\n",
      "sigma correlation", "a Sigma correlation rule" },
    { "another log source", RULE:format("windows", "security", "EventID", "selection", "low"),
      "sigma logsource", "logsource product windows, service security: trailhound reads AWS CloudTrail" },
    { "a Windows encoding modifier on another log source", RULE:format("windows", "security",
      "CommandLine|base64offset|contains", "selection", "low"), "sigma logsource", "logsource product windows" },
    { "placeholders", RULE:format("aws", "cloudtrail", "eventName|expand", "selection", "low"),
      "sigma detection refused", "the Sigma engine refuses it: detection.selection: eventName|expand: |expand: "
      .. "placeholders (%name%) are not supported" },
    { "an unknown modifier", RULE:format("aws", "cloudtrail", "eventName|beginswith", "selection", "low"),
      "sigma detection refused", "detection.selection: eventName|beginswith: unknown modifier 'beginswith'" },
    { "an aggregation", RULE:format("aws", "cloudtrail", "eventName", "selection | count() by userIdentity.arn > 5",
      "low"), "sigma detection refused", "the condition's | (aggregation) syntax is deprecated and not supported" },
    { "a timeframe", RULE:format("aws", "cloudtrail", "eventName", "selection\n    timeframe: 5m", "low"),
      "sigma detection refused", "detection.timeframe (an aggregation of old Sigma) is not supported" },
    { "a rule collection", "action: global\ntitle: a\n---\nid: b\n", "sigma collection",
      "a Sigma rule collection (2 YAML documents" },
  }
  for _, c in ipairs(CASES) do
    it("does not import " .. c[1] .. ", and says why", function()
      local r, s = one(c[2])
      assert.equal("unsupported", r.status, r.why)
      assert.equal(c[3], r.label)
      assert.truthy(r.why:find(c[4], 1, true), r.why)
      assert.is_true(s.ok)
      assert.is_nil(r.out)
    end)
  end

  it("imports the modifiers it reads, and maps informational to low", function()
    local r = one(RULE:format("aws", "cloudtrail", "requestParameters.x|re|i", "selection", "informational"))
    assert.equal("imported", r.status, r.why)
    local mod = module(r.out)
    assert.equal("low", mod.severity)
    assert.equal(21, mod.risk_score)
    assert.same({ "someone" }, mod.author)
  end)

  it("makes up no level: a rule without one is imported, and check says what it lacks", function()
    local r = one((RULE:format("aws", "cloudtrail", "eventName", "selection", "low"):gsub("level: low\n", "")))
    assert.equal("not runnable", r.status)
    assert.equal("check errors", r.label)
    assert.equal("a Sigma rule without severity needs sigma.level", r.why)
    local mod = module(r.out)
    assert.is_nil(mod.severity)
    assert.is_nil(mod.risk_score)
  end)

  it("reports a YAML error with its file, line and column", function()
    local r, s, dir = one("title: a\ndetection: [unclosed\n", "bad.yaml")
    assert.equal("failed", r.status)
    assert.matches("^" .. dir:gsub("%p", "%%%0") .. "/bad%.yaml:%d+:%d+: ", r.why)
    assert.is_false(s.ok)
  end)

  it("reports YAML that is not a Sigma rule", function()
    local r = one("- a\n- b\n")
    assert.equal("failed", r.status)
    assert.equal("not a Sigma rule: the YAML document is not a mapping", r.why)
    r = one("title: a\nlogsource: {product: aws, service: cloudtrail}\n")
    assert.equal("not a Sigma rule: it has no id", r.why)
  end)
end)
