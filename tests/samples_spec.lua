-- samples.lua: the events of a file, for explain and dev.

local samples = require "samples"
local th = require "support.th"

local function file(text)
  local d = th.tmpdir()
  th.write(d .. "/e", text)
  return d .. "/e"
end

local function wheres(list)
  local out = {}
  for i, s in ipairs(list) do out[i] = s.where:gsub("^.*/e:", "") end
  return out
end

describe("samples.read()", function()
  after_each(th.cleanup)

  it("reads one object, raw CloudTrail or ECS", function()
    local list = assert(samples.read(file('\n  {"eventName": "A", "eventSource": "s"}\n')))
    assert.same({ "2" }, wheres(list))
    assert.is_true(list[1].raw)
    assert.is_false(assert(samples.read(file('{"event": {"action": "A"}}')))[1].raw)
  end)

  it("reads one record per line, skipping blank lines", function()
    local list = assert(samples.read(file('{"eventName": "A"}\n\n{"eventName": "B"}\n')))
    assert.same({ "1", "3" }, wheres(list))
    assert.equal("B", list[2].record.eventName)
  end)

  it("reads the records of a CloudTrail S3 object and of an array", function()
    assert.same({ "1: record 0", "1: record 1" },
      wheres(assert(samples.read(file('{"Records": [{"eventName": "A"}, {"eventName": "B"}]}')))))
    assert.same({ "1: element 1" }, wheres(assert(samples.read(file('[{"eventName": "A"}]')))))
  end)

  it("reports malformed JSON at the line it breaks on", function()
    local _, err = samples.read(file('{"eventName": "A"}\n{"eventName": \n'))
    assert.matches("/e:2: malformed JSON %(", err)
    local _, err2 = samples.read(file('{\n  "a": 1,\n  "b": ]\n}'))
    assert.matches("/e:3: malformed JSON %(", err2)
  end)

  it("reports what is not an event: a number, an array of strings, an empty file", function()
    local _, e1 = samples.read(file("42"))
    assert.matches("/e:1: not a JSON object %(number%)", e1)
    local _, e2 = samples.read(file('["a"]'))
    assert.matches("/e:1: not a JSON object %(string%) %(element 1%)", e2)
    local _, e3 = samples.read(file("  \n"))
    assert.matches("/e:1: empty file", e3)
  end)

  it("reads gzip found by its first bytes, whatever the name: a CloudTrail S3 object, NDJSON, several members",
    function()
      local d = th.tmpdir()
      os.execute("cp examples/s3/*.json.gz " .. th.quote(d .. "/s3") .. " && gzip -c "
        .. "examples/cloudtrail/bedrock-denied-derived.ndjson > " .. th.quote(d .. "/nd.data") .. " && cat "
        .. th.quote(d .. "/nd.data") .. " " .. th.quote(d .. "/nd.data") .. " > " .. th.quote(d .. "/two"))
      local s3 = assert(samples.read(d .. "/s3"))
      assert.equal(19, #s3)
      assert.equal(d .. "/s3:1: record 18", s3[19].where)
      assert.equal("PutResourcePolicy", s3[19].record.eventName)
      local nd = assert(samples.read(d .. "/nd.data"))
      assert.equal(13, #nd)
      assert.equal(d .. "/nd.data:13", nd[13].where)
      assert.equal(26, #assert(samples.read(d .. "/two")))
    end)

  it("reports a truncated gzip file", function()
    local d = th.tmpdir()
    os.execute("gzip -c examples/cloudtrail/bedrock-denied-derived.ndjson | head -c 2000 > " .. th.quote(d .. "/t"))
    local list, err = samples.read(d .. "/t")
    assert.is_nil(list)
    assert.equal(d .. "/t: unexpected end of file", err)
  end)

  it("names a file it cannot open", function()
    local _, err = samples.read("/nonexistent/e.json")
    assert.equal("/nonexistent/e.json: No such file or directory", err)
  end)
end)
