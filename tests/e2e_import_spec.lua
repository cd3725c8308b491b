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

  it("imports Elastic's 194 AWS rules: 85 runnable, 81 not yet, 28 not importable; exit 0", function()
    local dir = th.tmpdir()
    local out, err, rc = run({ "import", "--out", dir, ELASTIC })
    assert.equal(0, rc, err)
    assert.equal("", err)
    assert.equal("194 files: 85 imported; 81 imported, not runnable yet (27 type eql, 49 type new_terms, "
      .. "5 type threshold); 28 not imported (23 type esql, 5 type machine_learning)", last_line(out))
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
