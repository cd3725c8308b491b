-- End-to-end specs for EQL sequences (host/state.h, host/sequence.c, scripts/stateful.lua): Elastic's
-- one AWS sequence rule, imported from its TOML ("sequence by
-- aws.cloudtrail.user_identity.access_key_id with maxspan=15m [ListFoundationModels with an AKIA
-- key] [InvokeModel, Converse, ...]"), on CloudTrail records shaped as CloudTrail logs Bedrock's
-- calls (tests/fixtures/stratus-red-team/aws.impact.bedrock-invoke-model.json, made an IAM user's).
-- A sequence completing across two files, its alerts as Elastic writes them (building blocks and a
-- shell), maxspan and join keys, then its partials across a kill -9, a reload of the unchanged
-- rule, and a changed query.
local cjson = require "cjson"
local th = require "support.th"

local ELASTIC = "tests/fixtures/elastic-detection-rules-aws"
local RULE = "discovery_bedrock_model_recon_and_invocation_via_long_term_key"
local NAME = "AWS Bedrock Foundation Model Enumeration Followed by Invocation via Long-Term Key"

-- A Bedrock call as CloudTrail logs it, by the IAM user whose long-term key is key.
local function call(name, time, key, id)
  local rec = {
    eventVersion = "1.10", eventSource = "bedrock.amazonaws.com", eventName = name, eventTime = time,
    eventType = "AwsApiCall", eventCategory = "Management", managementEvent = true, readOnly = true,
    awsRegion = "us-east-1", sourceIPAddress = "35.249.253.232", userAgent = "aws-cli/2.15.30 md/Botocore#1.34.30",
    recipientAccountId = "494659789341", eventID = id, requestID = "7d83d020-f4a8-4643-85ac-" .. id,
    requestParameters = name ~= "ListFoundationModels" and { modelId = "anthropic.claude-3-sonnet-20240229-v1:0" }
      or cjson.null,
    responseElements = cjson.null,
    tlsDetails = { tlsVersion = "TLSv1.3", cipherSuite = "TLS_AES_128_GCM_SHA256",
      clientProvidedHostHeader = (name == "ListFoundationModels" and "bedrock" or "bedrock-runtime")
        .. ".us-east-1.amazonaws.com" },
    userIdentity = { type = "IAMUser", principalId = "AIDA2N7TQQRGKJYPCLOG0", accountId = "494659789341",
      arn = "arn:aws:iam::494659789341:user/dev-" .. key:sub(-4), userName = "dev-" .. key:sub(-4), accessKeyId = key },
  }
  return cjson.encode(rec) .. "\n"
end

local KEY, OTHER = "AKIA6FTSFH98XNF7DFZB", "AKIA6FTSFH98XNF7QQQQ"

local function import(dir)
  local _, err, rc = th.run({ "import", "--out", dir, ELASTIC .. "/" .. RULE .. ".toml" })
  assert.equal(0, rc, err)
  return dir .. "/" .. RULE .. ".lua"
end

local function of_sequence(alerts)
  local blocks, shells = {}, {}
  for _, a in ipairs(alerts) do
    if a.kibana.alert.rule.name == NAME then
      if a.kibana.alert.building_block_type then blocks[#blocks + 1] = a else shells[#shells + 1] = a end
    end
  end
  return blocks, shells
end

describe("EQL sequences", function()
  teardown(th.cleanup)

  it("complete across two files: a building block per event and a shell alert, as Elastic writes them", function()
    local r, d = th.tmpdir(), th.tmpdir()
    import(r)
    th.write(d .. "/a.ndjson", call("ListFoundationModels", "2024-10-17T20:09:50Z", KEY, "e-list"))
    th.write(d .. "/b.ndjson", call("InvokeModel", "2024-10-17T20:11:24Z", KEY, "e-invoke"))
    local out, err, rc = th.run({ "replay", "--rules", r, d .. "/a.ndjson", d .. "/b.ndjson" })
    assert.equal(0, rc, err)
    local blocks, shells = of_sequence(th.alerts(out))
    assert.equal(2, #blocks)
    assert.equal(1, #shells)
    local shell = shells[1].kibana.alert
    assert.equal("eql", shell.rule.type)
    assert.equal(shell.uuid, shell.group.id)
    assert.equal(KEY, shells[1].aws.cloudtrail.user_identity.access_key_id)
    assert.same({ { id = "e-list", type = "event", depth = 0 }, { id = "e-invoke", type = "event", depth = 0 } },
      shell.ancestors)
    assert.equal("2024-10-17T20:09:50.000Z", shell.original_time)
    assert.equal(d .. "/b.ndjson", shells[1].trailhound.source.path)  -- where it completed
    for i, b in ipairs(blocks) do
      local k = b.kibana.alert
      assert.equal("default", k.building_block_type)
      assert.same({ id = shell.uuid, index = i - 1 }, k.group)
      assert.equal(i == 1 and "ListFoundationModels" or "InvokeModel", b.event.action)
      assert.equal(KEY, b.aws.cloudtrail.user_identity.access_key_id)
    end
    assert.are_not.equal(blocks[1].kibana.alert.uuid, blocks[2].kibana.alert.uuid)
    -- The same events again: the same ids.
    local again = th.run({ "replay", "--rules", r, d .. "/a.ndjson", d .. "/b.ndjson" })
    local blocks2, shells2 = of_sequence(th.alerts(again))
    assert.equal(shell.uuid, shells2[1].kibana.alert.uuid)
    assert.equal(blocks[2].kibana.alert.uuid, blocks2[2].kibana.alert.uuid)
  end)

  it("do not complete past maxspan, in the wrong order, or across join keys", function()
    local r, d = th.tmpdir(), th.tmpdir()
    import(r)
    th.write(d .. "/a.ndjson", table.concat({
      call("ListFoundationModels", "2024-10-17T20:00:00Z", KEY, "a1"),
      call("InvokeModel", "2024-10-17T20:15:01Z", KEY, "a2"),           -- 15 minutes and a second on
      call("InvokeModel", "2024-10-17T21:00:00Z", OTHER, "b1"),         -- before its list, in event time
      call("ListFoundationModels", "2024-10-17T21:00:05Z", OTHER, "b2"),
      call("ListFoundationModels", "2024-10-17T22:00:00Z", KEY, "c1"),
      call("Converse", "2024-10-17T22:01:00Z", OTHER, "c2"),            -- another key
    }))
    local out, err, rc = th.run({ "replay", "--rules", r, d .. "/a.ndjson" })
    assert.equal(0, rc, err)
    local blocks, shells = of_sequence(th.alerts(out))
    assert.same({}, blocks)
    assert.same({}, shells)
    -- The key's partial is there still: an invocation within maxspan completes it.
    th.write(d .. "/b.ndjson", call("ConverseStream", "2024-10-17T22:14:00Z", KEY, "c3"))
    out = th.run({ "replay", "--rules", r, d .. "/a.ndjson", d .. "/b.ndjson" })
    blocks, shells = of_sequence(th.alerts(out))
    assert.equal(1, #shells)
    assert.same({ "c1", "c3" }, { blocks[1].kibana.alert.ancestors[1].id, blocks[2].kibana.alert.ancestors[1].id })
  end)

  it("are looked for by the prefilter: the same alerts, records of other services skipped undecoded", function()
    local r, d = th.tmpdir(), th.tmpdir()
    import(r)
    os.execute("lua5.4 tests/bench/make-corpus.lua 2000 " .. th.quote(d) .. " >/dev/null 2>&1")
    local function other(time, id)  -- a call of another service, later in event time than what follows it
      local rec = cjson.decode(call("ListBuckets", time, KEY, id))
      rec.eventSource = "s3.amazonaws.com"
      return cjson.encode(rec) .. "\n"
    end
    th.write(d .. "/seq.ndjson", table.concat({
      call("ListFoundationModels", "2024-10-17T20:00:00Z", KEY, "p1"),
      other("2024-10-17T20:40:00Z", "s1"),
      call("InvokeModel", "2024-10-17T20:10:00Z", KEY, "p2"),
      call("ListFoundationModels", "2024-10-17T21:00:00Z", OTHER, "q1"),
      (call("Converse", "2024-10-17T21:05:00Z", OTHER, "q2")
        :gsub('"bedrock%.amazonaws%.com"', '"b\\u0065drock.amazonaws.com"')),  -- escaped: found all the same
    }))
    local files = { d .. "/corpus.ndjson", d .. "/seq.ndjson" }
    local full_out, full_err, rc1 = th.run({ "replay", "--no-prefilter", "--rules", r, table.unpack(files) })
    local pre_out, pre_err, rc2 = th.run({ "replay", "--rules", r, table.unpack(files) })
    assert.equal(0, rc1, full_err)
    assert.equal(0, rc2, pre_err)
    local function stripped(out)
      local list = th.alerts(out)
      for _, a in ipairs(list) do
        a["@timestamp"], a.kibana.alert.start = nil, nil
        if a.event then a.event.ingested = nil end
        if a.kibana.alert.original_event then a.kibana.alert.original_event.ingested = nil end
      end
      return list
    end
    local full, pre = stripped(full_out), stripped(pre_out)
    assert.equal(#full, #pre)
    for i = 1, #full do assert.same(full[i], pre[i], "alert " .. i) end
    local _, shells = of_sequence(pre)
    local ids = {}
    for _, s in ipairs(shells) do
      local a = s.kibana.alert.ancestors
      ids[#ids + 1] = a[1].id .. "," .. a[2].id
    end
    table.sort(ids)
    assert.same({ "p1,p2", "q1,q2" }, ids)
    local skipped, of = pre_err:match("prefilter: (%d+) of (%d+) records skipped undecoded")
    assert.is_truthy(skipped, pre_err)
    assert.is_true(tonumber(skipped) > tonumber(of) / 2, pre_err)
  end)
end)

describe("the state of EQL sequences", function()
  teardown(th.cleanup)

  local function start(r, state, dir)
    return th.start({ "run", "--rules", r, "--state", state, "--poll", "50", dir .. "/*.ndjson" })
  end

  -- The offset committed for path in the state file (checkpoint.h), or nil.
  local function committed(state, path)
    for line in (th.read(state) or ""):gmatch("[^\n]+") do
      local offset, p = line:match("^%d+ %d+ %d+ %x+ (%d+) %d+ %d+ %x+ (.*)$")
      if p == path then return tonumber(offset) end
    end
  end

  local function read_all(h, state, path)
    assert.truthy(th.wait_for(function() return committed(state, path) == #th.read(path) end, 20), h.err())
  end

  local function saved(state)
    return th.wait_for(function() return (th.read(state .. ".rules") or ""):find("\ne ", 1, true) end, 10)
  end

  it("survive a kill -9: the first step before it, the second after the restart, and the alert comes", function()
    local r, dir, sd = th.tmpdir(), th.tmpdir(), th.tmpdir()
    import(r)
    local state = sd .. "/state"
    th.write(dir .. "/a.ndjson", call("ListFoundationModels", "2024-10-17T20:09:50Z", KEY, "k-list"))
    local h = start(r, state, dir)
    read_all(h, state, dir .. "/a.ndjson")
    assert.truthy(saved(state))
    th.sleep(1.2)  -- one more save
    h.signal("KILL")
    h.wait(5)
    local none, nothing = of_sequence(th.alerts(th.complete_lines(h.out())))
    assert.same({}, none)
    assert.same({}, nothing)
    th.write(dir .. "/b.ndjson", call("InvokeModel", "2024-10-17T20:11:24Z", KEY, "k-invoke"))
    local h2 = start(r, state, dir)
    read_all(h2, state, dir .. "/b.ndjson")
    local function completed() return #select(2, of_sequence(th.alerts(th.complete_lines(h2.out())))) end
    assert.truthy(th.wait_for(function() return completed() == 1 end, 10), h2.err())
    h2.signal("TERM")
    assert.equal(0, h2.wait(10), h2.err())
    local blocks, shells = of_sequence(th.alerts(h2.out()))
    assert.equal(2, #blocks)
    assert.same({ { id = "k-list", type = "event", depth = 0 }, { id = "k-invoke", type = "event", depth = 0 } },
      shells[1].kibana.alert.ancestors)
  end)

  it("are kept through a reload of the unchanged rule, and dropped when its query changes", function()
    local r, dir, sd = th.tmpdir(), th.tmpdir(), th.tmpdir()
    local path = import(r)
    local src = th.read(path)
    local state = sd .. "/state"
    th.write(dir .. "/a.ndjson", call("ListFoundationModels", "2024-10-17T20:00:00Z", KEY, "r1")
      .. call("ListFoundationModels", "2024-10-17T20:00:00Z", OTHER, "r2"))
    local h = start(r, state, dir)
    read_all(h, state, dir .. "/a.ndjson")
    local function shells() return #select(2, of_sequence(th.alerts(th.complete_lines(h.out())))) end
    local function reloads() return select(2, h.err():gsub("Long%-Term Key\" %(no version%) reloaded", "")) end
    -- Another description: the same sequence as far as its state goes.
    th.write(path, (src:gsub("\n  description = %[%[", "\n  description = [[Edited. ", 1)))
    assert.truthy(th.wait_for(function() return reloads() == 1 end, 10), h.err())
    th.write(dir .. "/b.ndjson", call("InvokeModel", "2024-10-17T20:01:00Z", KEY, "r3"))
    read_all(h, state, dir .. "/b.ndjson")
    assert.truthy(th.wait_for(function() return shells() == 1 end, 10), h.err())
    -- Another query: the other key's partial is dropped.
    th.write(path, (src:gsub('"InvokeModel", ', '"InvokeModel", "InvokeAgent", ', 1)))
    assert.truthy(th.wait_for(function() return reloads() == 2 end, 10), h.err())
    th.write(dir .. "/c.ndjson", call("InvokeModel", "2024-10-17T20:02:00Z", OTHER, "r4"))
    read_all(h, state, dir .. "/c.ndjson")
    th.sleep(0.5)
    assert.equal(1, shells())
    assert.matches("Long%-Term Key: its query or sequence parameters changed: the state it kept is dropped "
      .. "%(%d entries%)", h.err())
    h.signal("TERM")
    assert.equal(0, h.wait(10), h.err())
  end)
end)

describe("rule tests of EQL sequences", function()
  it("hold several events, a completed sequence counting once", function()
    local out, err, rc = th.run({ "test", "examples/sequence/aws_bedrock_models_listed_then_invoked.lua" })
    assert.equal(0, rc, err)
    assert.truthy(out:find("✓ two keys, each its own sequence\n", 1, true), out)
    assert.truthy(out:find("\n8 tests passed (1 rule)\n", 1, true), out)
  end)
end)
