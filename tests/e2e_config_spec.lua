-- End-to-end specs for the configuration file (--config FILE, -o key=value; host/config.h):
-- every option from a Lua file, outputs with their headers, authentication and timeouts
-- (against tests/support/sinkserver.py on loopback), the command line winning, and mistakes
-- reported with the file, the line and what was meant.
local cjson = require "cjson"
local th = require "support.th"

local EXAMPLE = "examples/cloudtrail/bedrock-denied-derived.ndjson"

local function server(mode, extra, d)
  d = d or th.tmpdir()
  os.execute(string.format("python3 tests/support/sinkserver.py %s --store %s/store --port-file %s/port %s " ..
    ">%s/log 2>&1 & echo $! > %s/pid", mode, d, d, extra or "", d, d))
  local port = th.wait_for(function() return th.read(d .. "/port") end, 10)
  assert(port, "the test server did not start: " .. (th.read(d .. "/log") or ""))
  local pid = th.read(d .. "/pid"):match("%d+")
  finally(function() os.execute("kill " .. pid .. " 2>/dev/null") end)
  return tonumber(port), d
end

describe("--config", function()
  after_each(th.cleanup)

  it("takes every option from the file, outputs with their headers and bearer token", function()
    local d = th.tmpdir()
    local port = server("http", "--headers " .. d .. "/headers", d)
    th.write(d .. "/trailhound.lua", string.format([[
-- where alerts go, and what to read
return {
  rules = "rules",
  workers = 1,
  max_line = "2M",
  paths = { %q },
  outputs = {
    { "http://127.0.0.1:%d/ingest", headers = { "X-Team: detection", Source = "trailhound" },
      bearer = "s3cret", timeout = "5s" },
    "file:%s/alerts.ndjson",
  },
}
]], EXAMPLE, port, d))
    local out, err, rc = th.run({ "replay", "--config", d .. "/trailhound.lua" })
    assert.equal(0, rc, err)
    assert.equal("", out, "no stdout when the file names outputs")
    assert.equal(10, #th.lines(d .. "/alerts.ndjson"))
    assert.equal(10, #th.lines(d .. "/store"))
    local h = cjson.decode(th.lines(d .. "/headers")[1])
    assert.equal("detection", h["x-team"])
    assert.equal("trailhound", h["source"])
    assert.equal("Bearer s3cret", h["authorization"])
    assert.equal("application/x-ndjson", h["content-type"])
  end)

  it("sends basic authentication, and times out a server that never answers", function()
    local d = th.tmpdir()
    local port = server("http", "--hang 1 --headers " .. d .. "/headers", d)
    th.write(d .. "/c.lua", string.format([[return { outputs = { { "http://127.0.0.1:%d/",
      user = "elastic", password = "changeme", timeout = "1s" } } }]], port))
    local _, err, rc = th.run({ "replay", "--config", d .. "/c.lua", EXAMPLE })
    assert.equal(0, rc, err)
    assert.matches("Operation timed out", err, 1, true)
    assert.equal(10, #th.lines(d .. "/store"))
    local h = cjson.decode(th.lines(d .. "/headers")[2])
    assert.equal("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==", h["authorization"])
  end)

  it("lets the command line and -o win over the file", function()
    local d = th.tmpdir()
    local long = d .. "/long.ndjson"
    th.write(long, th.read(EXAMPLE))
    th.append(long, '{"eventSource":"x","pad":"' .. string.rep("y", 3000) .. '"}\n')
    th.write(d .. "/c.lua", 'return { max_line = "1K" }')
    local _, err = th.run({ "replay", "--config", d .. "/c.lua", long })
    assert.matches("longer than", err)
    local _, err2 = th.run({ "replay", "--config", d .. "/c.lua", "--max-line", "1M", long })
    assert.is_nil(err2:find("longer than"), err2)
    local _, err3 = th.run({ "replay", "--config", d .. "/c.lua", "-o", "max_line=1M", long })
    assert.is_nil(err3:find("longer than"), err3)
  end)

  it("reports a misspelt key with the file, the line and the key meant; and a syntax error", function()
    local d = th.tmpdir()
    th.write(d .. "/c.lua", 'return {\n  rules = "rules",\n  wokers = 2,\n}\n')
    local _, err, rc = th.run({ "replay", "--config", d .. "/c.lua", EXAMPLE })
    assert.equal(2, rc)
    assert.matches(d .. "/c.lua:3: unknown key 'wokers' (did you mean 'workers'?)", err, 1, true)
    th.write(d .. "/c2.lua", 'return {\n  outputs = { { "stdout", pasword = "x" } },\n}\n')
    _, err, rc = th.run({ "replay", "--config", d .. "/c2.lua", EXAMPLE })
    assert.equal(2, rc)
    assert.matches("c2.lua:2: unknown key 'pasword' (did you mean 'password'?)", err, 1, true)
    th.write(d .. "/c3.lua", 'return { rules = \n')
    _, err, rc = th.run({ "replay", "--config", d .. "/c3.lua", EXAMPLE })
    assert.equal(2, rc)
    assert.matches("c3.lua:2:", err, 1, true)
    _, err, rc = th.run({ "replay", "-o", "from_ed=true", EXAMPLE })
    assert.equal(2, rc)
    assert.matches("-o: unknown key 'from_ed' (did you mean 'from_end'?)", err, 1, true)
    _, err, rc = th.run({ "replay", "--config", d .. "/none.lua", EXAMPLE })
    assert.equal(2, rc)
    assert.matches("No such file or directory", err, 1, true)
    th.write(d .. "/c4.lua", 'os.execute("touch ' .. d .. '/ran")\nreturn {}')
    _, err, rc = th.run({ "replay", "--config", d .. "/c4.lua", EXAMPLE })
    assert.equal(2, rc, err)
    assert.matches("c4.lua:1:", err, 1, true)
    assert.is_nil(th.read(d .. "/ran"), "the file runs in an empty environment")
  end)
end)
