-- End-to-end specs for the outputs (host/outputs.h): file, exec, HTTP, Elasticsearch's bulk API
-- and syslog, against real processes on loopback (tests/support/sinkserver.py) that the specs
-- start, stop, restart, and make fail: statuses 500 and 429, refused bulk items, a full disk, a
-- program that exits. In every case each alert is delivered, none twice by uuid to
-- Elasticsearch, the host keeps going, and the log says what is wrong once.
local cjson = require "cjson"
local th = require "support.th"

local EXAMPLE = "examples/cloudtrail/bedrock-denied-derived.ndjson"

-- A server of sinkserver.py: h.port, h.store, h.stop(), h.start(extra args).
local servers = {}
local function server(mode, extra)
  local d = th.tmpdir()
  local h = { dir = d, store = d .. "/store" }
  function h.start(more)
    os.remove(d .. "/port")
    os.execute(string.format("python3 tests/support/sinkserver.py %s --store %s --port-file %s/port %s %s " ..
      ">>%s/log 2>&1 & echo $! > %s/pid", mode, th.quote(h.store), d, h.port and ("--port " .. h.port) or "",
      more or "", d, d))
    local port = th.wait_for(function() return th.read(d .. "/port") end, 10)
    assert(port, "the test server did not start: " .. (th.read(d .. "/log") or ""))
    h.port = tonumber(port)
    h.pid = tonumber(th.read(d .. "/pid"):match("%d+"))
  end
  function h.stop()
    if not h.pid then return end
    os.execute("kill " .. h.pid .. " 2>/dev/null")
    th.wait_for(function() return not th.read("/proc/" .. h.pid .. "/status") end, 5)
    h.pid = nil
  end
  -- What it took: lines of the store, decoded.
  function h.took()  -- whole lines only: the server may be writing the last one
    local list = {}
    for line in th.complete_lines(th.read(h.store) or ""):gmatch("[^\n]+") do list[#list + 1] = cjson.decode(line) end
    return list
  end
  h.start(extra)
  servers[#servers + 1] = h
  return h
end

local function uuids_of(alerts)
  local set, n = {}, 0
  for _, a in ipairs(alerts) do
    if not set[a.kibana.alert.uuid] then n = n + 1 end
    set[a.kibana.alert.uuid] = true
  end
  return set, n
end

local function count_of(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

describe("outputs", function()
  after_each(function()
    for _, h in ipairs(servers) do h.stop() end
    servers = {}
    th.cleanup()
  end)

  local want_out, want_uuids
  setup(function()
    want_out = th.run({ "replay", EXAMPLE })
    want_uuids = uuids_of(th.alerts(want_out))
  end)

  it("writes every alert to each output given, stdout and file:PATH alike", function()
    local d = th.tmpdir()
    local out, err, rc = th.run({ "replay", "--output", "file:" .. d .. "/alerts.ndjson", "--output", "stdout",
      EXAMPLE })
    assert.equal(0, rc, err)
    assert.equal(10, #th.alerts(out))
    assert.same(want_uuids, (uuids_of(th.alerts(th.read(d .. "/alerts.ndjson")))))
    assert.matches("queued%s+delivered", err)
  end)

  it("cuts the unfinished last line a killed run left in a file output, and appends", function()
    local d = th.tmpdir()
    th.write(d .. "/alerts.ndjson", '{"earlier":"alert"}\n{"cut sh')
    local _, err, rc = th.run({ "replay", "--output", "file:" .. d .. "/alerts.ndjson", EXAMPLE })
    assert.equal(0, rc, err)
    local lines = th.lines(d .. "/alerts.ndjson")
    assert.equal(11, #lines)
    assert.equal('{"earlier":"alert"}', lines[1])
    assert.matches("removed the unfinished last line", err)
  end)

  it("says an unknown output, a bad address or one given twice is a usage error", function()
    for _, args in ipairs({ { "--output", "kafka://x" }, { "--output", "syslog:tcp://nohost" },
                            { "--output", "elasticsearch:ftp://x" },
                            { "--output", "stdout", "--output", "stdout" } }) do
      local cmd = { "replay" }
      for _, a in ipairs(args) do cmd[#cmd + 1] = a end
      cmd[#cmd + 1] = EXAMPLE
      local _, err, rc = th.run(cmd)
      assert.equal(2, rc, table.concat(args, " ") .. ": " .. err)
      assert.matches("output", err)
    end
  end)

  it("follows logrotate: the file moved away and SIGHUP, nothing lost or repeated", function()
    local d = th.tmpdir()
    local log, alerts = d .. "/cloudtrail.ndjson", d .. "/alerts.ndjson"
    th.write(log, "")
    local h = th.start({ "run", "--no-state", "--output", "file:" .. alerts, log })
    th.writer(log, 400, "append", 0, 0.002)
    assert.truthy(th.wait_for(function() return #th.lines(alerts) >= 100 end, 20))
    os.rename(alerts, alerts .. ".1")
    h.signal("HUP")
    assert.truthy(th.wait_for(function() return th.read(d .. "/writer.done") end, 30))
    assert.truthy(th.wait_for(function() return #th.lines(alerts) + #th.lines(alerts .. ".1") >= 400 end, 20),
      h.err())
    local all = th.alerts((th.read(alerts .. ".1") or "") .. (th.read(alerts) or ""))
    local _, n = uuids_of(all)
    assert.equal(400, #all)
    assert.equal(400, n)
    assert.truthy(#th.lines(alerts) > 0, "the new file has the later alerts")
  end)

  it("waits out a full disk under a file output: says so once, keeps tailing, then writes all", function()
    local d = th.tmpdir()
    local mnt = d .. "/small"
    os.execute("mkdir -p " .. mnt)
    -- TH_SPEC_NO_MOUNT=1 tries the other way where mounting works.
    local mounted = not os.getenv("TH_SPEC_NO_MOUNT") and os.execute("mount -t tmpfs -o size=512k tmpfs " .. mnt ..
      " 2>/dev/null")
    if mounted then finally(function() os.execute("umount -l " .. mnt) end) end
    local log, alerts = d .. "/cloudtrail.ndjson", mnt .. "/alerts.ndjson"
    th.write(log, "")
    local h
    if mounted then
      th.write(mnt .. "/filler", string.rep("x", 460 * 1024))  -- room for about 12 of the 60 alerts
      h = th.start({ "run", "--no-state", "--output", "file:" .. alerts, log })
    else  -- no mount here: a file size limit instead (EFBIG, as the disk's ENOSPC)
      h = th.start({ "run", "--no-state", "--output", "file:" .. alerts, log }, { env = "true; ulimit -S -f 100;" })
    end
    th.writer(log, 60, "append", 0, 0)
    assert.truthy(th.wait_for(function() return h.err():find("trying again") end, 20), h.err())
    th.writer(d .. "/more.ndjson", 1, "append", 0, 0)  -- the host keeps tailing: stats go on
    h.signal("USR1")
    assert.truthy(th.wait_for(function() return h.err():find("down: write") end, 10), h.err())
    if mounted then
      os.remove(mnt .. "/filler")
    else
      os.execute("prlimit --pid " .. h.pid .. " --fsize=unlimited")
    end
    assert.truthy(th.wait_for(function() return count_of(th.read(alerts) or "", "\n") >= 60 end, 40), h.err())
    h.signal("TERM")
    h.wait(10)
    local all = th.alerts(th.read(alerts))
    local _, n = uuids_of(all)
    assert.equal(60, #all, "every line whole: " .. h.err())
    assert.equal(60, n)
    assert.equal(1, count_of(h.err(), "No space left on device; ") + count_of(h.err(), "File too large; "),
      "said once: " .. h.err())
    assert.matches("delivering again", h.err())
  end)

  it("feeds a program on its stdin and starts it again when it exits, losing no alert", function()
    local d = th.tmpdir()
    local got = d .. "/got"
    local prog = string.format('n=0; while IFS= read -r l; do printf "%%s\\n" "$l" >> %s; n=$((n+1)); ' ..
      '[ $n -ge 3 ] && exit 3; done', got)
    local _, err, rc = th.run({ "replay", "--output", "exec:" .. prog, EXAMPLE })
    assert.equal(0, rc, err)
    local all = th.alerts(th.read(got))
    local set, n = uuids_of(all)
    assert.equal(10, n)
    assert.equal(10, #all, "read line by line: nothing twice")
    assert.same(want_uuids, set)
    assert.matches("exited with status 3", err)
  end)

  it("POSTs NDJSON batches, and tries again after HTTP 500 and 429, said once each", function()
    local s = server("http", "--status 500,500,429")
    local _, err, rc = th.run({ "replay", "--output", "http://127.0.0.1:" .. s.port .. "/ingest", EXAMPLE })
    assert.equal(0, rc, err)
    local set, n = uuids_of(s.took())
    assert.equal(10, n)
    assert.same(want_uuids, set)
    assert.equal(1, count_of(err, "HTTP 500"), err)
    assert.equal(1, count_of(err, "HTTP 429"), err)
    assert.matches("the test server says 500", err)
    assert.matches("delivering again", err)
  end)

  it("says a connection refused, and delivers once the server is there", function()
    local s = server("http")
    local port = s.port
    s.stop()
    local d = th.tmpdir()
    local log = d .. "/cloudtrail.ndjson"
    os.execute("cp " .. EXAMPLE .. " " .. log)
    local h = th.start({ "run", "--state", d .. "/state", "--output", "http://127.0.0.1:" .. port .. "/", log })
    assert.truthy(th.wait_for(function() return h.err():find("Couldn't connect") end, 10), h.err())
    s.start()
    assert.truthy(th.wait_for(function() return #s.took() >= 10 end, 20), h.err())
    h.signal("TERM")
    assert.equal(0, h.wait(10))
    assert.equal(10, #s.took())
  end)

  it("creates each alert in Elasticsearch once by its uuid, a replay again changing nothing", function()
    local s = server("es")
    local url = "elasticsearch:http://127.0.0.1:" .. s.port .. "/alerts-test"
    for _ = 1, 2 do
      local _, err, rc = th.run({ "replay", "--output", url, EXAMPLE })
      assert.equal(0, rc, err)
    end
    local docs = s.took()
    assert.equal(10, #docs, "the second replay's creates are conflicts: delivered, not stored again")
    local ids = {}
    for _, doc in ipairs(docs) do
      assert.equal("alerts-test", doc._index)
      assert.equal(doc._id, doc._source.kibana.alert.uuid)
      ids[doc._id] = true
    end
    assert.same(want_uuids, ids)
  end)

  it("sends a bulk batch again when some items fail, and stores none twice", function()
    local s = server("es", "--fail-items 4")
    local _, err, rc = th.run({ "replay", "--output", "elasticsearch:http://127.0.0.1:" .. s.port, EXAMPLE })
    assert.equal(0, rc, err)
    assert.equal(10, #s.took())
    assert.matches("4 of 10 bulk items failed, the first with status 429: es_rejected_execution_exception", err)
    assert.equal("trailhound-alerts", s.took()[1]._index)
  end)

  it("loses nothing and stores nothing twice when Elasticsearch stops and the host is killed", function()
    local s = server("es")
    local d = th.tmpdir()
    local log = d .. "/cloudtrail.ndjson"
    th.write(log, "")
    local args = { "run", "--state", d .. "/state", "--output", "elasticsearch:http://127.0.0.1:" .. s.port, log }
    local h = th.start(args)
    th.writer(log, 600, "append", 0, 0.003)
    assert.truthy(th.wait_for(function() return #s.took() >= 100 end, 20), h.err())
    s.stop()
    th.sleep(0.5)
    h.signal("KILL")
    h.wait(5)
    s.start()
    local h2 = th.start(args)
    assert.truthy(th.wait_for(function() return th.read(d .. "/writer.done") end, 30))
    assert.truthy(th.wait_for(function() return #s.took() >= 600 end, 30), h2.err())
    th.sleep(0.3)
    local ids, n = {}, 0
    for _, doc in ipairs(s.took()) do
      assert.is_nil(ids[doc._id], "stored twice: " .. doc._id)
      ids[doc._id] = true
      n = n + 1
    end
    assert.equal(600, n)
  end)

  it("holds commits and then reading while an output is down, in bounded memory, then delivers all", function()
    local s = server("http")
    local port = s.port
    s.stop()
    local d = th.tmpdir()
    local log = d .. "/cloudtrail.ndjson"
    th.write(log, "")
    local h = th.start({ "run", "--state", d .. "/state", "--output-buffer", "1M", "--output",
      "http://127.0.0.1:" .. port .. "/", log })
    th.writer(log, 2000, "append", 0, 0, "--burst")
    assert.truthy(th.wait_for(function() return th.read(d .. "/writer.done") end, 30))
    th.sleep(1.5)
    h.signal("USR1")
    assert.truthy(th.wait_for(function() return h.err():find("not yet delivered") end, 5))
    local waiting = tonumber(h.err():match("(%d+) alerts? %([%d.]+ of 1.0 MiB%) not yet delivered"))
    assert.truthy(waiting and waiting < 2000, "reading waits for room: " .. tostring(waiting))
    for line in (th.read(d .. "/state") or ""):gmatch("[^\n]+") do  -- dev ino fp_len fp OFFSET ... path
      local offset = line:match("^%d+ %d+ %d+ %x+ (%d+) ")
      if offset then assert.equal("0", offset, "nothing committed while no alert is delivered") end
    end
    assert.truthy(th.proc_mib(h.pid, "VmHWM") < 64, "host memory")
    s.start()
    assert.truthy(th.wait_for(function() return #s.took() >= 2000 end, 60), h.err())
    h.signal("TERM")
    assert.equal(0, h.wait(10))
    local _, n = uuids_of(s.took())
    assert.equal(2000, n)
  end)

  -- Over TCP an alert is delivered once the socket has taken it: what a server that dies had
  -- not read is lost (RFC 6587 has no acknowledgement). The host says so, connects again with
  -- backoff, and sends everything from then on.
  it("writes RFC 5424 syslog over TCP, octet-counted, and over UDP, and connects again", function()
    local tcp, udp = server("syslog-tcp"), server("syslog-udp")
    local tport = tcp.port
    tcp.stop()
    local d = th.tmpdir()
    local log = d .. "/cloudtrail.ndjson"
    th.write(log, "")
    local h = th.start({ "run", "--no-state", "--output", "syslog:tcp://127.0.0.1:" .. tport,
      "--output", "syslog:udp://localhost:" .. udp.port, log })
    th.writer(log, 200, "append", 0, 0.004)
    assert.truthy(th.wait_for(function() return h.err():find("connection refused") end, 10), h.err())
    tcp.start()
    local function ids(server_took)
      local got, n = {}, 0
      for _, m in ipairs(server_took) do
        local id = cjson.decode(m:match("alert %- (.*)$")).event.id
        if not got[id] then n = n + 1 end
        got[id] = true
      end
      return got, n
    end
    assert.truthy(th.wait_for(function() return select(2, ids(tcp.took())) >= 200 end, 30), h.err())
    assert.truthy(th.wait_for(function() return select(2, ids(udp.took())) >= 200 end, 10), h.err())
    assert.equal(1, count_of(h.err(), "connection refused; "), "said once: " .. h.err())
    -- A server that goes away mid-stream: said, and what comes after its return arrives.
    tcp.stop()
    th.writer(log, 100, "append", 0, 0.004, "--prefix late-")
    assert.truthy(th.wait_for(function() return h.err():find("trying again after 2 s") end, 10), h.err())
    tcp.start()
    th.writer(log, 50, "append", 0, 0.004, "--prefix after-")
    assert.truthy(th.wait_for(function()
      local got = ids(tcp.took())
      for i = 1, 50 do if not got["after-" .. i] then return false end end
      return true
    end, 30), h.err())
    local m = udp.took()[1]
    assert.matches("^<13[1-5]>1 %d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ %S+ trailhound %d+ alert %- {", m)
    assert.matches("^<133>", m, nil, "a low rule: local0.notice")
  end)

  -- Alert documents (host/worker/jsontext.c, th_json_encode).
  it("writes the same bytes in two runs, but for the time the alert was made", function()
    local function run()
      local out = th.run({ "replay", "--workers", "2", "examples/cloudtrail/stratus-red-team.ndjson", EXAMPLE,
        "examples/ecs/bedrock-ecs.ndjson",
        "examples/s3/123456789012_CloudTrail_us-east-1_20250326T1645Z_derived.json.gz" })
      -- The time the alerts were made, wherever it is written (@timestamp, event.ingested,
      -- kibana.alert.start): a run may cross a second, the sanitizer build's most of all.
      local now = out:match('"@timestamp":"([^"]+)"')
      local function at_now(field) return '"' .. field .. '":"' .. now:sub(1, 4) .. '[^"]*"' end
      local same = out:gsub(at_now("@timestamp"), '"@timestamp":"NOW"'):gsub(at_now("ingested"), '"ingested":"NOW"')
        :gsub(at_now("start"), '"start":"NOW"')
      return same, now
    end
    local a, b = run(), run()
    assert.truthy(#a > 1000)
    assert.equal(a, b)
    local first = a:match("^[^\n]+")
    assert.matches('^{"@timestamp":"NOW","actor":{"entity":{"id":%[[^]]*%]}},"aws":{"cloudtrail":{', first,
      nil, "keys in byte order")
    assert.is_nil(first:find("\\/", 1, true), "slashes as they are")
  end)

  it("writes an alert whose event holds a number past a double, as it was written", function()
    local d = th.tmpdir()
    local line = th.lines(EXAMPLE)[1]:gsub('"requestParameters":{', '"requestParameters":{"n":1e999,"m":-1e999,', 1)
    assert.truthy(line:find("1e999", 1, true))
    th.write(d .. "/big.ndjson", line .. "\n")
    local out, err, rc = th.run({ "replay", d .. "/big.ndjson" })
    assert.equal(0, rc, err)
    assert.equal(1, #th.lines(d .. "/big.ndjson"))
    local alert = th.alerts(out)[1]
    assert.truthy(alert, err)
    assert.equal(math.huge, alert.aws.cloudtrail.flattened.request_parameters.n)
    assert.equal(-math.huge, alert.aws.cloudtrail.flattened.request_parameters.m)
    assert.matches('"n":1e999', out, 1, true)
  end)
end)
