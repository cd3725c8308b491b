-- export.lua: rule modules back to Elastic's TOML. Import then export gives back the same
-- fields, for every one of Elastic's AWS rules that imports (166 of 194); the hand-carried
-- Bedrock rules export to their seeds; what Elastic cannot hold is refused.

local export = require "export"
local import = require "import"
local toml = require "toml"
local cli = require "cli"
local th = require "support.th"

local ELASTIC = "tests/fixtures/elastic-detection-rules-aws"
local SEEDS = "tests/fixtures/seeds"

local function parse(text, name)
  local t, err = toml.parse(text, name)
  assert(t, err)
  return t
end

local function exported(path)
  local mod, err = export.load(path)
  assert(mod, err)
  local text, why = export.toml(mod)
  assert(text, why)
  return text
end

local function sink()
  local s = { text = "" }
  function s.write(self, ...)
    for _, x in ipairs({ ... }) do self.text = self.text .. x end
    return self
  end
  function s.flush() end
  return s
end

local function main(argv)
  local o, e = sink(), sink()
  cli.set_sys({ isatty = function() return false end, columns = function() return nil end, home = "." })
  cli.set_streams(o, e)
  local code = cli.main(argv)
  cli.set_streams(io.stdout, io.stderr)
  return code, o.text, e.text
end

describe("export", function()
  teardown(th.cleanup)

  it("gives back the same fields after import, for each of the 166 Elastic AWS rules that import", function()
    local dir = th.tmpdir()
    local results = import.run({ ELASTIC }, { out = dir })
    local n = 0
    for _, r in ipairs(results) do
      if r.out then
        n = n + 1
        local original = parse(th.read(r.source), r.source)
        local back = parse(exported(r.out), r.out .. " exported")
        local d = import.difference(original, back, r.source)
        assert.is_nil(d, d)
      end
    end
    assert.equal(166, n)
  end)

  it("lays the file out as Elastic does: [metadata], [rule], the query last, then the rule's tables", function()
    local dir = th.tmpdir()
    local r = import.run({ SEEDS .. "/persistence_bedrock_resource_based_policy_denied_attempt.toml" }, { out = dir })
    local text = exported(r[1].out)
    assert.matches("^%[metadata%]\ncreation_date = \"2026/06/04\"\n", text)
    assert.truthy(text:find('\ntype = "query"\n\nquery = \'\'\'\ndata_stream.dataset: "aws.cloudtrail" and\n', 1, true))
    assert.truthy(text:find("\n[rule.investigation_fields]\nfield_names = [\n    \"@timestamp\",\n", 1, true))
    assert.truthy(text:find("\n[[rule.threat]]\nframework = \"MITRE ATT&CK\"\n", 1, true))
  end)

  for _, f in ipairs({ "aws_bedrock_unauthorized_foundation_model_access_attempt",
                       "aws_bedrock_unauthorized_resource_policy_modification_attempt" }) do
    it("writes rules/" .. f .. ".lua as its seed, with the max_signals and version it adds", function()
      local seed_name = f:find("foundation") and "persistence_bedrock_foundation_model_access_denied_attempt.toml"
        or "persistence_bedrock_resource_based_policy_denied_attempt.toml"
      local seed = parse(th.read(SEEDS .. "/" .. seed_name))
      local back = parse(exported("rules/" .. f .. ".lua"))
      assert.equal(100, back.rule.max_signals)
      assert.equal(1, back.rule.version)
      back.rule.max_signals, back.rule.version = nil, nil
      local d = import.difference(seed, back, f)
      assert.is_nil(d, d)
    end)
  end

  it("gives back an empty or unusual investigation_fields as it was", function()
    for _, inv in ipairs({ "field_names = []", 'field_names = ["a"]\nother = 1' }) do
      local dir = th.tmpdir()
      local src = '[metadata]\nmaturity = "production"\n\n[rule]\nname = "x"\nrule_id = "y"\n\n'
        .. "[rule.investigation_fields]\n" .. inv .. "\n"
      th.write(dir .. "/r.toml", src)
      local r = import.run({ dir .. "/r.toml" }, { out = dir })
      assert.truthy(r[1].out, r[1].why)
      local d = import.difference(parse(src), parse(exported(r[1].out)), inv)
      assert.is_nil(d, d)
    end
  end)

  it("refuses a Sigma rule and a rule with a Lua match function", function()
    local text, why = export.toml({ rule_id = "x", language = "sigma", sigma = {} })
    assert.is_nil(text)
    assert.matches("a Sigma rule", why)
    text, why = export.toml({ rule_id = "x", query = "a: b", match = function() return true end })
    assert.is_nil(text)
    assert.matches("Lua match function", why)
  end)

  describe("trailhound export", function()
    it("finds a rule by file, rule_id or name, even one that does not run here yet", function()
      local dir = th.tmpdir()
      import.run({ ELASTIC .. "/persistence_rds_instance_made_public.toml" }, { out = dir })
      local path = dir .. "/persistence_rds_instance_made_public.lua"
      local mod = assert(export.load(path))
      assert.equal(path, export.find(path, dir))
      assert.equal(path, export.find("persistence_rds_instance_made_public", dir))
      assert.equal(path, export.find(mod.rule_id, dir))
      assert.equal(path, export.find(mod.rule_id:sub(1, 8), dir))
      assert.equal(path, export.find(mod.name, dir))
      local code, out = main({ "export", path })
      assert.equal(0, code)
      assert.equal("eql", parse(out).rule.language)
    end)

    it("exits 1 on what it cannot export, 2 on bad usage", function()
      local dir = th.tmpdir()
      import.run({ "tests/fixtures/sigma-cloudtrail/aws_enum_buckets.yml" }, { out = dir })
      local code, out, err = main({ "export", dir .. "/aws_enum_buckets.lua" })
      assert.equal(1, code)
      assert.equal("", out)
      assert.matches("^trailhound export: .*/aws_enum_buckets%.lua: a Sigma rule %(language sigma%)", err)
      code, out, err = main({ "export", dir .. "/nothing.lua" })
      assert.equal("", out)
      assert.equal(1, code)
      assert.matches("no such rule file", err)
      assert.equal(2, (main({ "export" })))
      assert.equal(2, (main({ "export", "a", "b" })))
    end)
  end)
end)
