-- Specs for scripts/useragent.lua: every user agent of tests/fixtures/user-agents/ (what
-- Elasticsearch's user_agent processor gives for it; see its README), and the cache.

local cjson = require "cjson"
local useragent = require "useragent"

local FIXTURE = "tests/fixtures/user-agents/cloudtrail-user-agents.ndjson"

local function fields(r)
  return {
    name = r.name, version = r.version or cjson.null,
    os_name = r.os and r.os.name or cjson.null, os_version = r.os and r.os.version or cjson.null,
    os_full = r.os and r.os.full or cjson.null, device = r.device and r.device.name,
  }
end

describe("useragent.parse()", function()
  local cases = {}
  for line in io.lines(FIXTURE) do cases[#cases + 1] = cjson.decode(line) end

  it("has the fixture's agents to check", function()
    assert.is_true(#cases >= 100, #cases .. " agents")
  end)

  it("gives what Elasticsearch gives for every agent of the fixture", function()
    local problems = {}
    for _, want in ipairs(cases) do
      local w, g = fields(want), fields(useragent.parse(want.original))
      for k, v in pairs(w) do
        if g[k] ~= v then
          problems[#problems + 1] = string.format("%s\n  %s: want %s, got %s", want.original, k, tostring(v),
            tostring(g[k]))
        end
      end
    end
    assert.is_true(#problems == 0, "\n" .. table.concat(problems, "\n"))
  end)

  it("reads the AWS CLI with its version and the OS it names", function()
    local r = useragent.parse("aws-cli/1.16.248 Python/3.4.7 Linux/4.9.184-0.1.ac.235.83.329.metal1.x86_64 " ..
      "botocore/1.12.239")
    assert.are.equal("aws-cli", r.name)
    assert.are.equal("1.16.248", r.version)
    assert.are.same({ name = "Linux", version = "4.9.184", full = "Linux 4.9.184" }, r.os)
    assert.are.equal("Spider", r.device.name)  -- "bot" in botocore, as ua-parser has it
  end)

  it("names the console and AWS services Other, with no version and no OS", function()
    for _, s in ipairs({ "console.amazonaws.com", "AWS Internal", "signin.amazonaws.com", "ec2.amazonaws.com" }) do
      local r = useragent.parse(s)
      assert.are.equal("Other", r.name, s)
      assert.is_nil(r.version, s)
      assert.is_nil(r.os, s)
      assert.are.equal("Other", r.device.name, s)
    end
  end)

  it("reads browsers: Chrome, Edge, Firefox, Safari", function()
    local chrome = useragent.parse("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 " ..
      "(KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36")
    assert.are.same({ "Chrome", "140.0.0.0", "Mac OS X 10.15.7", "Mac" },
      { chrome.name, chrome.version, chrome.os.full, chrome.device.name })
    local edge = useragent.parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " ..
      "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0")
    assert.are.same({ "Edge", "124.0.0.0", "Windows 10" }, { edge.name, edge.version, edge.os.full })
    local firefox = useragent.parse("Mozilla/5.0 (Windows NT 6.1; WOW64; rv:24.0) Gecko/20100101 Firefox/24.0")
    assert.are.same({ "Firefox", "24.0", "Windows 7" }, { firefox.name, firefox.version, firefox.os.full })
    local safari = useragent.parse("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 " ..
      "(KHTML, like Gecko) Version/17.2.1 Safari/605.1.15")
    assert.are.same({ "Safari", "17.2.1" }, { safari.name, safari.version })
  end)

  it("gives nil for what is not a string", function()
    assert.is_nil(useragent.parse(nil))
    assert.is_nil(useragent.parse(42))
  end)

  it("caches each distinct string, and starts over past MAX_CACHED", function()
    local a = useragent.parse("aws-cli/2.17.60 cache-test")
    assert.are.equal(a, useragent.parse("aws-cli/2.17.60 cache-test"))  -- the same table
    local max = useragent.MAX_CACHED
    useragent.MAX_CACHED = 8
    for i = 1, 20 do useragent.parse("cache-test-agent/" .. i .. ".0") end
    assert.is_true(useragent.cached() <= 8, useragent.cached() .. " cached")
    useragent.MAX_CACHED = max
  end)
end)
