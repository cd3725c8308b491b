-- SigmaHQ's 57 CloudTrail rules (tests/fixtures/sigma-cloudtrail, DRL 1.1): each one,
-- written as the rule module `trailhound import` makes of it (support/sigma_module.lua),
-- loads and passes `trailhound check`; their metadata carries the Sigma id, title, level
-- and tags; and each requires something the prefilter can look for.

local check = require "check"
local loader = require "loader"
local normalize = require "normalize"
local ruleindex = require "ruleindex"
local sigma_module = require "support.sigma_module"
local th = require "support.th"

local DIR = "tests/fixtures/sigma-cloudtrail"

local function yaml_files()
  local out = {}
  local p = io.popen("ls " .. DIR .. "/*.yml")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- Every rule written as a module into a fresh folder: { yml, path, yaml (as lyaml read it) }.
local function modules()
  local dir = th.tmpdir() .. "/rules"
  os.execute("mkdir -p " .. th.quote(dir))
  local out = {}
  for _, yml in ipairs(yaml_files()) do
    local text, yaml = sigma_module.convert(assert(th.read(yml)))
    local path = dir .. "/" .. yml:match("([^/]+)%.yml$") .. ".lua"
    th.write(path, text)
    out[#out + 1] = { yml = yml, path = path, yaml = yaml }
  end
  return out, dir
end

describe("SigmaHQ's CloudTrail rules", function()
  after_each(th.cleanup)

  it("are all 57 here", function()
    assert.equal(57, #yaml_files())
  end)

  it("load, each as a rule module, with the Sigma id, title, level and tags as its metadata", function()
    local LEVEL = { informational = "low", low = "low", medium = "medium", high = "high", critical = "critical" }
    local list = modules()
    local loaded = 0
    for _, m in ipairs(list) do
      local rule, err = loader.load_file(m.path)
      assert.is_nil(err, m.yml)
      assert.equal(m.yaml.id, rule.id)
      assert.equal(m.yaml.title, rule.name)
      assert.equal(LEVEL[m.yaml.level], rule.meta.severity)
      assert.same(m.yaml.tags, rule.meta.tags)
      assert.same({ m.yaml.author }, rule.meta.author)
      assert.equal("DRL-1.1", rule.meta.license)
      loaded = loaded + 1
    end
    assert.equal(57, loaded)
  end)

  it("pass check: no error; the warnings are the missing tests and two real slips of the rules", function()
    local list = modules()
    local paths = {}
    for i, m in ipairs(list) do paths[i] = m.path end
    local diags, stats = check.files(paths)
    assert.equal(57, stats.rules)
    assert.equal(0, stats.errors)
    local other = {}
    local no_tests = 0
    for _, d in ipairs(diags) do
      if d.msg:find("^no tests") then
        no_tests = no_tests + 1
      else
        other[#other + 1] = d.file:match("([^/]+)$") .. ": " .. d.msg
      end
    end
    assert.equal(57, no_tests)  -- a Sigma rule carries none
    assert.same({
      -- it reads `status`, which CloudTrail records do not have (NOTICE.md says so too)
      "aws_delete_saml_provider.lua: status: a CloudTrail record has no field status",
      -- the filter compares the ARN with the text of a field's name, not its value
      "aws_iam_backdoor_users_keys.lua: userIdentity.arn|contains: the value 'responseElements.accessKey.userName' " ..
        "is the name of a field, compared as text; to compare with that field's value, use |fieldref",
    }, other)
  end)

  it("pass the binary's check, exit status 0", function()
    local _, dir = modules()
    local out, err, rc = th.run({ "check", dir })
    assert.equal(0, rc, out .. err)
    assert.matches("57 rules checked: 0 errors, 59 warnings", out)
  end)

  it("each give the prefilter something to look for, and most the rule index eventName", function()
    local list = modules()
    local indexed = 0
    for _, m in ipairs(list) do
      local rule = assert(loader.load_file(m.path))
      assert.is_true(#ruleindex.prefilter(rule, normalize) > 0, m.yml)
      for _, c in ipairs(rule.sigma.requirements) do
        if c.exact and c.field == "eventName" then
          indexed = indexed + 1
          break
        end
      end
    end
    assert.is_true(indexed >= 50, indexed .. " rules")
  end)
end)
