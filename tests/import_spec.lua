-- import.lua: Elastic's 194 AWS rules (tests/fixtures/elastic-detection-rules-aws) turned
-- into rule modules: what is imported, runnable or not, and why; every key word for word;
-- modules that pass check and luacheck, the same bytes every time; and the two Bedrock
-- rules of rules/ as import makes them from their TOML (tests/fixtures/seeds).

local import = require "import"
local toml = require "toml"
local check = require "check"
local cli = require "cli"
local th = require "support.th"

local ELASTIC = "tests/fixtures/elastic-detection-rules-aws"
local SEEDS = "tests/fixtures/seeds"

local function sh(cmd)
  local p = io.popen("( " .. cmd .. " ) 2>&1; echo \"rc=$?\"")
  local text = p:read("a")
  p:close()
  local rc = tonumber(text:match("rc=(%d+)\n$"))
  return text:gsub("rc=%d+\n$", ""), rc
end

-- A module's table, loaded as the rule sandbox loads it.
local function module(path)
  local mod, err = import.evaluate(path, th.read(path))
  assert(mod, err)
  return mod
end

local PLAIN = setmetatable({}, { __index = function() return function(s) return s end end })

-- The report of an import, as the command prints it.
local function report(results, summary)
  return table.concat(import.lines(results, summary, PLAIN), "\n")
end

-- A module's header comment as one line of text.
local function header(src)
  local words = {}
  for line in src:gmatch("([^\n]*)\n") do
    if line:sub(1, 2) ~= "--" then break end
    words[#words + 1] = line:sub(4)
  end
  return table.concat(words, " ")
end

-- Import Elastic's AWS rules once for the whole file.
local out, results, summary
local function all()
  if not results then
    out = th.tmpdir() .. "/rules"
    results, summary = import.run({ ELASTIC }, { out = out })
  end
  return results, summary
end

describe("import of Elastic's 194 AWS rules", function()
  teardown(th.cleanup)

  it("imports the 85 KQL query, 27 EQL (1 sequence), 49 new_terms and 5 threshold rules", function()
    local _, s = all()
    assert.equal(194, s.files)
    assert.equal(166, s.imported)
    assert.equal(0, s["not runnable"])
    assert.equal(0, s.failed)
    assert.is_true(s.ok)
  end)

  it("does not import the 23 ES|QL and 5 machine learning rules, and says why", function()
    local r, s = all()
    assert.equal(28, s.unsupported)
    assert.same({ ["type esql"] = 23, ["type machine_learning"] = 5 }, s.labels.unsupported)
    for _, x in ipairs(r) do
      if x.status == "unsupported" then
        assert.is_nil(x.out)
        local doc = toml.parse(th.read(x.source))
        assert.truthy(doc.rule.type == "esql" or doc.rule.type == "machine_learning", x.source)
        assert.is_nil(io.open(out .. "/" .. x.source:match("([^/]+)%.toml$") .. ".lua"), x.source)
      end
    end
  end)

  it("reports each file on a line, then the counts", function()
    local r, s = all()
    local text = report(r, s)
    local lines = {}
    for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(195, #lines)
    assert.equal("194 files: 166 imported; "
      .. "28 not imported (23 type esql, 5 type machine_learning)", lines[195])
    local f = ELASTIC .. "/"
    assert.truthy(text:find("✓ " .. f .. "persistence_bedrock_resource_based_policy_denied_attempt.toml: imported as "
      .. out .. "/persistence_bedrock_resource_based_policy_denied_attempt.lua\n", 1, true))
    assert.truthy(text:find("✓ " .. f .. "persistence_route_table_created.toml: imported as " .. out
      .. "/persistence_route_table_created.lua\n", 1, true))
    assert.truthy(text:find("✓ " .. f .. "persistence_rds_instance_made_public.toml: imported as " .. out
      .. "/persistence_rds_instance_made_public.lua\n", 1, true))
    assert.truthy(text:find("✓ " .. f .. "discovery_bedrock_model_recon_and_invocation_via_long_term_key.toml: "
      .. "imported as " .. out .. "/discovery_bedrock_model_recon_and_invocation_via_long_term_key.lua\n", 1, true))
    assert.truthy(text:find("- " .. f .. "persistence_sagemaker_lifecycle_config_suspicious_script_content.toml: "
      .. "not imported: type esql: ES|QL is a query language of its own, with no engine in trailhound\n", 1, true))
    assert.truthy(text:find(": not imported: type machine_learning: it runs an Elastic machine learning job", 1, true))
  end)

  it("carries every key of each [rule] table and the [metadata] table word for word", function()
    local r = all()
    local n = 0
    for _, x in ipairs(r) do
      if x.out then
        n = n + 1
        local doc = toml.parse(th.read(x.source))
        local mod = module(x.out)
        for k, v in pairs(doc.rule) do
          if k == "investigation_fields" then v = v.field_names end
          local d = import.difference(v, mod[k], x.source .. ": rule." .. k)
          assert.is_nil(d, d)
        end
        local d = import.difference(doc.metadata, mod.metadata, x.source .. ": metadata")
        assert.is_nil(d, d)
        for k in pairs(mod) do
          assert.truthy(doc.rule[k] ~= nil or k == "metadata" or k == "tests",
            x.out .. ": " .. k .. " is not the rule's")
        end
        assert.same({}, mod.tests)
      end
    end
    assert.equal(166, n)
  end)

  it("writes the guide and the query as written, in long brackets", function()
    local _ = all()
    local src = th.read(out .. "/persistence_bedrock_resource_based_policy_denied_attempt.lua")
    assert.truthy(src:find('\n  query = [[\ndata_stream.dataset: "aws.cloudtrail" and\n    event.provider: '
      .. '"bedrock.amazonaws.com" and\n', 1, true))
    assert.truthy(src:find("\n  note = [[\n## Triage and analysis\n\n### Investigating AWS Bedrock", 1, true))
  end)

  it("writes query, EQL, new_terms and threshold rules that pass check: no error, only the warning that asks for "
    .. "tests", function()
    local r = all()
    local paths = {}
    for _, x in ipairs(r) do
      if x.status == "imported" then paths[#paths + 1] = x.out end
    end
    assert.equal(166, #paths)
    local diags, stats = check.files(paths)
    assert.equal(166, stats.rules)
    local errors = {}
    for _, d in ipairs(diags) do
      if d.level == "error" then errors[#errors + 1] = d.file .. ":" .. tostring(d.line) .. ": " .. d.msg end
    end
    assert.same({}, errors)
    local no_tests = 0
    for _, d in ipairs(diags) do
      if d.msg:find("^no tests: ") then no_tests = no_tests + 1 end
    end
    assert.equal(166, no_tests)
  end)

  it("writes modules that luacheck passes without a warning", function()
    local _ = all()
    local text, rc = sh("luacheck -q " .. th.quote(out))
    assert.equal(0, rc, text)
  end)

  it("writes a header naming the source, the repository and the license", function()
    local _ = all()
    local src = th.read(out .. "/collection_cloudtrail_logging_created.lua")
    assert.equal("AWS CloudTrail Log Created  Imported by `trailhound import` from "
      .. "collection_cloudtrail_logging_created.toml, one of Elastic's detection rules "
      .. "(https://github.com/elastic/detection-rules). License: Elastic License v2. Author: Elastic. "
      .. "Every key of its [rule] table is here word for word (investigation_fields as the list of its "
      .. "field_names), its [metadata] table as `metadata`, the investigation guide (note) and the query as "
      .. "written. `trailhound export` writes it back as TOML. The rule's text is kept as written, long lines "
      .. "and trailing spaces too: luacheck: no max line length, ignore 611 613", header(src))
  end)

  it("gives the same bytes every time, and replaces a module only with --force", function()
    local r = all()
    local again = th.tmpdir()
    import.run({ ELASTIC }, { out = again })
    for _, x in ipairs(r) do
      if x.out then
        assert.equal(th.read(x.out), th.read(again .. "/" .. x.out:match("[^/]+$")), x.out)
      end
    end
    local r2, s2 = import.run({ ELASTIC .. "/collection_cloudtrail_logging_created.toml" }, { out = again })
    assert.is_false(s2.ok)
    assert.equal("failed", r2[1].status)
    assert.equal(again .. "/collection_cloudtrail_logging_created.lua already exists "
      .. "(not replaced; --force replaces it)", r2[1].why)
    local _, s3 = import.run({ ELASTIC .. "/collection_cloudtrail_logging_created.toml" },
      { out = again, force = true })
    assert.is_true(s3.ok)
    assert.equal(1, s3.imported)
  end)
end)

describe("import of the Bedrock seeds", function()
  teardown(th.cleanup)

  local RULES = {
    { lua = "rules/aws_bedrock_unauthorized_foundation_model_access_attempt.lua",
      toml = "persistence_bedrock_foundation_model_access_denied_attempt.toml" },
    { lua = "rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua",
      toml = "persistence_bedrock_resource_based_policy_denied_attempt.toml" },
  }

  for _, spec in ipairs(RULES) do
    it("makes " .. spec.lua .. " from its TOML: metadata and guide identical", function()
      local dir = th.tmpdir()
      local r, s = import.run({ SEEDS .. "/" .. spec.toml }, { out = dir })
      assert.equal(1, s.imported, r[1].why)
      local made, carried = module(r[1].out), module(spec.lua)
      for k, v in pairs(made) do
        if k ~= "tests" then
          local d = import.difference(v, carried[k], k)
          assert.is_nil(d, d)
        end
      end
      -- What the hand-carried module adds: Elastic's defaults the TOML leaves out, and its tests.
      for k in pairs(carried) do
        if made[k] == nil then assert.truthy(k == "max_signals" or k == "version", k) end
      end
      assert.equal(100, carried.max_signals)
      assert.equal(1, carried.version)
      assert.equal(carried.note, made.note)
      assert.same(carried.metadata, made.metadata)
    end)
  end
end)

describe("import of what is not an Elastic rule", function()
  teardown(th.cleanup)

  local function one(name, text)
    local dir = th.tmpdir()
    th.write(dir .. "/" .. name, text)
    local r, s = import.run({ dir .. "/" .. name }, { out = dir .. "/out" })
    return r[1], s, dir
  end

  it("reports a TOML error with its file, line and column", function()
    local r, s, dir = one("broken.toml", '[rule]\nname = "x"\nname = "y"\n')
    assert.equal("failed", r.status)
    assert.equal(dir .. "/broken.toml:3:1: key name is defined twice", r.why)
    assert.is_false(s.ok)
  end)

  it("reports a TOML file with no [rule] table", function()
    local r = one("config.toml", 'a = 1\n')
    assert.equal("failed", r.status)
    assert.equal("it has no [rule] table: not an Elastic detection rule", r.why)
  end)

  it("reports a file that is not TOML, and a folder with no rule files", function()
    local r = one("notes.txt", "hello")
    assert.equal("failed", r.status)
    assert.matches("not an Elastic rule", r.why)
    local dir = th.tmpdir()
    local r2, s2 = import.run({ dir }, { out = dir .. "/out" })
    assert.equal("failed", r2[1].status)
    assert.is_false(s2.ok)
  end)
end)

describe("trailhound import", function()
  teardown(th.cleanup)

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

  it("exits 0 when every importable file was imported, ES|QL and machine learning left out", function()
    local dir = th.tmpdir()
    local code, text = main({ "import", "--out", dir, ELASTIC })
    assert.equal(0, code)
    assert.matches("\n194 files: 166 imported; 28 not imported %(", text)
  end)

  it("exits 1 when a file could not be imported, 2 without a file", function()
    local dir = th.tmpdir()
    th.write(dir .. "/bad.toml", "[rule\n")
    local code, text = main({ "import", "--out", dir .. "/out", dir .. "/bad.toml" })
    assert.equal(1, code)
    assert.matches("bad%.toml: not imported: .*bad%.toml:1:6: expected ']' to close the header", text)
    local code2, _, err = main({ "import" })
    assert.equal(2, code2)
    assert.matches("expected rule files or folders to import", err)
  end)
end)

describe("check on the rules import carries over", function()
  teardown(th.cleanup)

  it("passes new_terms, threshold and EQL sequence rules, and knows Elastic's keys for them", function()
    local dir = th.tmpdir()
    local r = import.run({ ELASTIC .. "/persistence_route_table_created.toml",
      ELASTIC .. "/credential_access_rapid_secret_retrieval_attempts_from_secretsmanager.toml",
      ELASTIC .. "/discovery_bedrock_model_recon_and_invocation_via_long_term_key.toml" }, { out = dir })
    local paths = {}
    for _, x in ipairs(r) do paths[#paths + 1] = x.out end
    local diags = check.files(paths)
    local errors = {}
    for _, d in ipairs(diags) do
      assert.is_nil(d.msg:find("unknown field", 1, true), d.msg)
      if d.level == "error" then errors[#errors + 1] = d.msg end
    end
    assert.same({}, errors)
  end)
end)
