-- End to end: trailhound import through the built binary, as a user runs it: Elastic's TOML and
-- SigmaHQ's YAML (lyaml found by the binary's own Lua state), the report and the exit codes.

local th = require "support.th"

local ELASTIC = "tests/fixtures/elastic-detection-rules-aws"
local SIGMA = "tests/fixtures/sigma-cloudtrail"

-- trailhound ARGS: stdout, stderr, exit code.
local function run(args)
  local d = th.tmpdir()
  local parts = { th.quote(th.bin) }
  for _, a in ipairs(args) do parts[#parts + 1] = th.quote(a) end
  local p = io.popen(string.format("%s >%s/out 2>%s/err </dev/null; echo $?", table.concat(parts, " "), d, d))
  local rc = tonumber(p:read("a"):match("(%d+)"))
  p:close()
  return th.read(d .. "/out"), th.read(d .. "/err"), rc
end

local function last_line(s)
  return s:match("([^\n]*)\n$")
end

describe("trailhound import (the binary)", function()
  after_each(th.cleanup)

  it("imports Elastic's 194 AWS rules: 166 runnable (85 query, 27 eql, 49 new_terms, 5 threshold), 28 not "
    .. "importable; exit 0", function()
    local dir = th.tmpdir()
    local out, err, rc = run({ "import", "--out", dir, ELASTIC })
    assert.equal(0, rc, err)
    assert.equal("", err)
    assert.equal("194 files: 166 imported; 28 not imported (23 type esql, 5 type machine_learning)", last_line(out))
  end)

  it("imports SigmaHQ's 57 CloudTrail rules with lyaml, and check passes them; exit 0", function()
    local dir = th.tmpdir()
    local out, err, rc = run({ "import", "--out", dir, SIGMA })
    assert.equal(0, rc, err)
    assert.equal("57 files: 57 imported", last_line(out))
    local cout, _, crc = run({ "check", dir })
    assert.equal(0, crc)
    assert.equal("57 rules checked: 0 errors, 59 warnings", last_line(cout))
  end)
end)

describe("an imported Elastic rule (the binary)", function()
  after_each(th.cleanup)

  it("runs with Kibana's max_signals, 100, where its TOML names none, and shows it", function()
    local ev = require "support.events"
    local dir = th.tmpdir()
    local src = "tests/fixtures/seeds/persistence_bedrock_resource_based_policy_denied_attempt.toml"
    local _, err, rc = run({ "import", "--out", dir, src })
    assert.equal(0, rc, err)
    assert.is_nil(th.read(src):find("max_signals", 1, true))
    local log, lines = th.tmpdir() .. "/denied.ndjson", {}
    for i = 1, 150 do lines[i] = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "e" .. i)) end
    th.write(log, table.concat(lines))
    local out, err2, rc2 = th.run({ "replay", "--rules", dir, log }, { limits = true })
    assert.equal(0, rc2, err2)
    assert.equal(100, #th.alerts(out))
    assert.matches(": 50 held back by max_signals", err2, 1, true)
    local shown = run({ "show", dir .. "/persistence_bedrock_resource_based_policy_denied_attempt.lua" })
    assert.matches("at most 100 alerts in each 5m of event time (Kibana's default", shown:gsub("%s+", " "), 1, true)
  end)
end)

describe("trailhound export (the binary)", function()
  after_each(th.cleanup)

  it("writes a rule imported from Elastic's TOML back to the same fields", function()
    local toml = require "toml"
    local dir = th.tmpdir()
    local src = ELASTIC .. "/persistence_route_table_created.toml"
    local _, err, rc = run({ "import", "--out", dir, src })
    assert.equal(0, rc, err)
    local out, err2, rc2 = run({ "export", dir .. "/persistence_route_table_created.lua" })
    assert.equal(0, rc2, err2)
    assert.same(toml.parse(th.read(src)), toml.parse(out))
  end)
end)

describe("trailhound check on rules of another format (the binary)", function()
  after_each(th.cleanup)

  it("says to import an Elastic rule, instead of a Lua parse error", function()
    local f = "tests/fixtures/seeds/persistence_bedrock_resource_based_policy_denied_attempt.toml"
    local out, err, rc = run({ "check", f })
    assert.equal(1, rc)
    assert.equal("", err)
    assert.equal(f .. ": error: this is an Elastic rule: run trailhound import " .. f
      .. "\n\n1 rule checked: 1 error, 0 warnings\n", out)
  end)

  it("says to import a Sigma rule, .yml or .yaml", function()
    local dir = th.tmpdir()
    th.write(dir .. "/r.yaml", th.read(SIGMA .. "/aws_enum_buckets.yml"))
    for _, f in ipairs({ SIGMA .. "/aws_enum_buckets.yml", dir .. "/r.yaml" }) do
      local out, _, rc = run({ "check", f })
      assert.equal(1, rc)
      assert.truthy(out:find(f .. ": error: this is a Sigma rule: run trailhound import " .. f .. "\n", 1, true), out)
    end
  end)

  it("says so for show, test and explain too", function()
    local f = SIGMA .. "/aws_enum_buckets.yml"
    local _, err, rc = run({ "show", f })
    assert.equal(1, rc)
    assert.equal("trailhound show: " .. f .. ": this is a Sigma rule: run trailhound import " .. f .. "\n", err)
  end)

  it("names a folder of rule files to import", function()
    local _, err, rc = run({ "check", ELASTIC })
    assert.equal(1, rc)
    assert.equal("trailhound check: " .. ELASTIC .. ": no rule files (*.lua) in this directory; it holds "
      .. "194 Elastic rules: run trailhound import " .. ELASTIC .. "\n", err)
  end)
end)

describe("import and export in the documentation", function()
  it("are in trailhound help, COMMAND --help, help COMMAND, the man page and bash completion", function()
    local usage = run({ "help" })
    assert.truthy(usage:find("trailhound test|check|explain|show|new|dev|import|export ...", 1, true), usage)
    for _, cmd in ipairs({ "import", "export" }) do
      local out, _, rc = run({ cmd, "--help" })
      assert.equal(0, rc)
      assert.matches("^usage: trailhound " .. cmd .. " ", out)
      assert.equal(out, (run({ "help", cmd })))
      local man = th.read("man/trailhound.1"):gsub("\\%-", "-")
      assert.truthy(man:find(".B trailhound " .. cmd, 1, true))
    end
    local completion = th.read("completion/trailhound.bash")
    assert.truthy(completion:find(" new dev import export help\"", 1, true))
    assert.truthy(completion:find("--out --force --help", 1, true))
  end)
end)
