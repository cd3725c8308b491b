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
    assert.same({ "1: record 0" }, wheres(assert(samples.read(file('[{"eventName": "A"}]')))))
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
    assert.matches("/e:1: not a JSON object %(string%) %(record 0%)", e2)
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

  describe("with a line", function()
    local nd = '{"eventName": "A"}\n\n{"eventName": "B"}\n{"eventName": \n{"eventName": "D"}\n'

    it("picks the record on that line, whatever the other lines hold", function()
      local list = assert(samples.read(file(nd), { line = 5 }))
      assert.equal(1, #list)
      assert.equal("D", list[1].record.eventName)
      assert.matches("/e:5$", list[1].where)
      assert.equal("B", assert(samples.read(file(nd), { line = 3 }))[1].record.eventName)
    end)

    it("says how many lines there are past the end, and names a blank or malformed line", function()
      local _, e1 = samples.read(file(nd), { line = 6 })
      assert.matches("/e:6: past the end: .*/e has 5 lines$", e1)
      local _, e2 = samples.read(file('{"eventName": "A"}'), { line = 2 })
      assert.matches("/e:2: past the end: .*/e has 1 line$", e2)
      local _, e3 = samples.read(file(nd), { line = 2 })
      assert.matches("/e:2: a blank line, no event on it", e3)
      local _, e4 = samples.read(file(nd), { line = 4 })
      assert.matches("/e:4: malformed JSON %(", e4)
    end)

    it("picks a document by its first line, and says which that is for a line inside it", function()
      local pretty = '\n{\n  "Records": [\n    {"eventName": "A"},\n    {"eventName": "B"}\n  ]\n}\n'
      assert.equal(2, #assert(samples.read(file(pretty), { line = 2 })))
      local _, err = samples.read(file(pretty), { line = 4 })
      assert.matches("/e:4: inside the JSON document of lines 2 to 7: it is .*/e:2; its CloudTrail S3 object on "
        .. "line 2 holds 2 records: pick one with %-%-record N %(0 to 1%)", err)
      local _, blank = samples.read(file(pretty), { line = 1 })
      assert.matches("/e:1: a blank line", blank)
      local _, past = samples.read(file('{"Records": [{"eventName": "A"}]}'), { line = 9 })
      assert.matches("/e:9: past the end: .*/e has 1 line; its CloudTrail S3 object on line 1 holds 1 record: "
        .. "pick one with %-%-record N %(0 to 0%)", past)
    end)
  end)

  describe("with a record", function()
    it("picks that record of a CloudTrail S3 object or an array, counted from 0", function()
      local s3 = file('{"Records": [{"eventName": "A"}, {"eventName": "B"}, {"eventName": "C"}]}')
      local list = assert(samples.read(s3, { record = 1 }))
      assert.equal(1, #list)
      assert.equal("B", list[1].record.eventName)
      assert.equal(1, list[1].index)
      assert.matches("/e:1: record 1$", list[1].where)
      assert.equal("A", assert(samples.read(file('[{"eventName": "A"}]'), { record = 0 }))[1].record.eventName)
    end)

    it("picks a record of the document on a line of NDJSON", function()
      local f = file('{"eventName": "A"}\n{"Records": [{"eventName": "B"}, {"eventName": "C"}]}\n')
      local list = assert(samples.read(f, { line = 2, record = 1 }))
      assert.equal("C", list[1].record.eventName)
      assert.matches("/e:2: record 1$", list[1].where)
    end)

    it("says how many records there are past the end, and how to pick one of NDJSON or a single event", function()
      local _, e1 = samples.read(file('{"Records": [{"eventName": "A"}, {"eventName": "B"}]}'), { record = 2 })
      assert.matches("/e:1: no record 2: this CloudTrail S3 object holds 2 records %(0 to 1%)", e1)
      local _, e2 = samples.read(file('[{"eventName": "A"}]'), { record = 5 })
      assert.matches("/e:1: no record 5: this array holds 1 record %(0 to 0%)", e2)
      local _, e3 = samples.read(file('{"eventName": "A"}\n{"eventName": "B"}\n'), { record = 0 })
      assert.matches("/e holds one event per line %(NDJSON%): pick one with .*/e:LINE", e3)
      local _, e4 = samples.read(file('{"eventName": "A"}'), { record = 0 })
      assert.matches("/e:1: one event, not a CloudTrail S3 object or an array", e4)
    end)
  end)

  it("names a file it cannot open", function()
    local _, err = samples.read("/nonexistent/e.json")
    assert.equal("/nonexistent/e.json: No such file or directory", err)
  end)
end)
