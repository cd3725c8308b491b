-- End-to-end specs for --metrics ADDR:PORT (host/httpd.h, host/metrics.h): the binary runs on real
-- CloudTrail files, a real HTTP client (tests/support/httpclient.py) scrapes /metrics, and the
-- text is parsed strictly as Prometheus's text format 0.0.4 before its numbers are held against
-- what the run did: records read, alerts per rule as written, lag back to 0 once caught up, an
-- output that is down, workers killed. Clients that connect and send nothing, or never read
-- their answer, must not stop alerts being written.
local cjson = require "cjson"
local th = require "support.th"
local ev = require "support.events"

local EXAMPLE = "examples/cloudtrail/bedrock-denied-derived.ndjson"  -- 13 records, 10 alerts

-- ---- Prometheus's text format, read strictly ------------------------------------------------

-- A label value: "..." with \\, \" and \n escapes, from position i of s (at the quote).
-- Returns the value and the position after the closing quote.
local function label_value(s, i)
  assert(s:sub(i, i) == '"', "a label value starts with a quote: " .. s)
  local out, j = {}, i + 1
  while true do
    local c = s:sub(j, j)
    assert(c ~= "", "an unterminated label value: " .. s)
    if c == '"' then return table.concat(out), j + 1 end
    if c == "\\" then
      local e = s:sub(j + 1, j + 1)
      local map = { ["\\"] = "\\", ['"'] = '"', n = "\n" }
      assert(map[e], "an escape the format does not have: \\" .. e)
      out[#out + 1] = map[e]
      j = j + 2
    else
      assert(c ~= "\n", "a raw newline in a label value")
      out[#out + 1] = c
      j = j + 1
    end
  end
end

-- Parse the whole exposition. Every sample must belong to the family its HELP and TYPE lines
-- just named, each family appears once, counters end in _total, no series twice, the text
-- ends with a newline. Returns { [name] = { type =, help =, samples = { { labels =, value = } } } }.
local function parse(text)
  assert(text:sub(-1) == "\n", "the text ends with a newline")
  local fams, current, seen = {}, nil, {}
  for line in text:gmatch("([^\n]*)\n") do
    assert(line ~= "", "no empty lines")
    local name, help = line:match("^# HELP ([%a_:][%w_:]*) (.*)$")
    if name then
      assert(not fams[name], "family " .. name .. " appears twice")
      fams[name] = { help = help, samples = {} }
      current = name
    else
      local tname, typ = line:match("^# TYPE ([%a_:][%w_:]*) (%a+)$")
      if tname then
        assert(tname == current, "TYPE of " .. tname .. " follows its HELP")
        assert(typ == "counter" or typ == "gauge", "type " .. typ)
        assert(#fams[tname].samples == 0, "TYPE before the samples")
        if typ == "counter" then assert(tname:match("_total$"), "counter " .. tname .. " ends in _total") end
        fams[tname].type = typ
      else
        assert(not line:match("^#"), "a comment line: " .. line)
        local sname, rest = line:match("^([%a_:][%w_:]*)(.*)$")
        assert(sname, "a sample line: " .. line)
        assert(sname == current and fams[current].type, "sample " .. sname .. " under its own family")
        local labels, key = {}, sname
        local i = 1
        if rest:sub(1, 1) == "{" then
          i = 2
          while rest:sub(i, i) ~= "}" do
            local lname = rest:match("^([%a_][%w_]*)=", i)
            assert(lname, "a label name in: " .. line)
            i = i + #lname + 1
            local v
            v, i = label_value(rest, i)
            assert(labels[lname] == nil, "label " .. lname .. " twice")
            labels[lname] = v
            if rest:sub(i, i) == "," then i = i + 1 end
          end
          key = key .. rest:sub(1, i)
          i = i + 1
        end
        local value = rest:sub(i):match("^ (%S+)$")
        assert(value, "one space, then the value: " .. line)
        local n = tonumber(value)
        if value == "NaN" then n = 0 / 0 elseif value == "+Inf" then n = math.huge end
        assert(n, "a number: " .. value)
        assert(not seen[key], "series twice: " .. key)
        seen[key] = true
        table.insert(fams[current].samples, { labels = labels, value = n })
      end
    end
  end
  return fams
end

-- The value of the sample of family name whose labels include want (nil: none); it must be one.
local function value(m, name, want)
  local fam = m[name]
  if not fam then return nil end
  local found
  for _, s in ipairs(fam.samples) do
    local ok = true
    for k, v in pairs(want or {}) do ok = ok and s.labels[k] == v end
    if ok then
      assert(found == nil, name .. ": more than one sample matches")
      found = s.value
    end
  end
  return found
end

local function sum(m, name)
  local n = 0
  for _, s in ipairs(m[name] and m[name].samples or {}) do n = n + s.value end
  return n
end

-- ---- the host and a client ------------------------------------------------------------------

local function client(mode, host, port, extra)
  local p = io.popen(string.format("python3 tests/support/httpclient.py %s %s %d %s 2>&1", mode, host, port,
    extra or ""))
  local out = p:read("a")
  p:close()
  local ok, r = pcall(cjson.decode, out)
  assert(ok, "httpclient.py: " .. out)
  return r
end

-- GET /metrics, checked and parsed: the answer and its families.
local function scrape(host, port)
  local r = client("get", host, port)
  assert.equal(200, r.status, r.body)
  assert.equal("text/plain; version=0.0.4; charset=utf-8", r.headers["content-type"])
  assert.equal(#r.body, tonumber(r.headers["content-length"]))
  return parse(r.body), r
end

-- The port the host said it listens on.
local function port_of(h, host)
  local pattern = "metrics: http://" .. host:gsub("[%[%]%.]", "%%%0") .. ":(%d+)/metrics"
  local port = th.wait_for(function() return h.err():match(pattern) end, 10)
  assert(port, "no metrics line: " .. h.err())
  return tonumber(port)
end

-- Scrape until fn(metrics) holds; returns the last metrics.
local function until_metrics(host, port, fn, timeout)
  local last
  local ok = th.wait_for(function()
    last = scrape(host, port)
    return fn(last)
  end, timeout or 20)
  return ok, last
end

local function size_of(path)
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

-- Sockets the process holds (its listener, its workers' pipes, clients).
local function sockets(pid)
  local p = io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null")
  local n = 0
  for l in p:lines() do if l:find("socket:", 1, true) then n = n + 1 end end
  p:close()
  return n
end

local function files_in(dir)
  local list = {}
  local p = io.popen("ls " .. th.quote(dir))
  for f in p:lines() do list[#list + 1] = dir .. "/" .. f end
  p:close()
  return list
end

-- A sinkserver.py HTTP server: start(port or nil) -> port; stop().
local function http_server()
  local d = th.tmpdir()
  local s = { store = d .. "/store" }
  function s.start(port)
    os.remove(d .. "/port")
    os.execute(string.format("python3 tests/support/sinkserver.py http --store %s --port-file %s/port %s " ..
      ">>%s/log 2>&1 & echo $! > %s/pid", s.store, d, port and ("--port " .. port) or "", d, d))
    local p = th.wait_for(function() return th.read(d .. "/port") end, 10)
    assert(p, "the test server did not start: " .. (th.read(d .. "/log") or ""))
    s.pid = th.read(d .. "/pid"):match("%d+")
    return tonumber(p)
  end
  function s.stop()
    if not s.pid then return end
    os.execute("kill " .. s.pid .. " 2>/dev/null")
    local pid = s.pid
    th.wait_for(function() return not th.read("/proc/" .. pid .. "/status") end, 5)
    s.pid = nil
  end
  return s
end

describe("--metrics", function()
  local servers = {}
  after_each(function()
    for _, s in ipairs(servers) do s.stop() end
    servers = {}
    th.cleanup()
  end)

  it("serves what a run did: records, malformed, alerts per rule as written, lag 0 once caught up", function()
    local d = th.tmpdir()
    local logs = d .. "/logs"
    -- The 35 Stratus Red Team technique files (arrays of 310 events, read whole), the 13 derived
    -- events (NDJSON) and two malformed records.
    os.execute("mkdir " .. logs .. " && cp tests/fixtures/stratus-red-team/aws.*.json " .. EXAMPLE .. " " .. logs)
    th.write(logs .. "/bad.ndjson", "not json at all\n42\n")
    local files = files_in(logs)
    assert.equal(37, #files)
    local alerts = d .. "/alerts.ndjson"
    local h = th.start({ "run", "--no-state", "--workers", "2", "--metrics", "127.0.0.1:0",
      "--output", "file:" .. alerts, logs .. "/*" })
    local port = port_of(h, "127.0.0.1")
    local ok, m = until_metrics("127.0.0.1", port, function(x)
      return value(x, "trailhound_records_total") == 323 and value(x, "trailhound_lag_bytes") == 0
        and value(x, "trailhound_files") == 37 and #th.lines(alerts) == 10
    end)
    assert.truthy(ok, h.err())

    assert.equal(323, value(m, "trailhound_records_total"))
    assert.equal(2, value(m, "trailhound_malformed_total"))
    assert.equal(0, value(m, "trailhound_normalize_failures_total"))
    assert.equal(10, value(m, "trailhound_alerts_total"))
    assert.equal("counter", m.trailhound_rule_alerts_total.type)
    local written = th.by_rule(th.alerts(th.read(alerts)))
    assert.equal(2, #m.trailhound_rule_alerts_total.samples)
    for _, s in ipairs(m.trailhound_rule_alerts_total.samples) do
      assert.equal(written[s.labels.rule] or 0, s.value, s.labels.rule)
      assert.truthy(s.labels.rule_id:match("^%x+%-%x+%-%x+%-%x+%-%x+$"))
      assert.equal(0, value(m, "trailhound_rule_errors_total", { rule_id = s.labels.rule_id }))
      assert.truthy(value(m, "trailhound_rule_events_total", { rule_id = s.labels.rule_id }) >= s.value)
      assert.equal(0, value(m, "trailhound_rule_quarantined", { rule_id = s.labels.rule_id }))
    end
    assert.equal(6, value(m, "trailhound_rule_alerts_total", { rule = ev.MODEL_ACCESS }))
    assert.equal(4, value(m, "trailhound_rule_alerts_total", { rule = ev.POLICY }))
    assert.equal(2, value(m, "trailhound_rules", { state = "running" }))

    -- Every file: read and committed to its end.
    assert.equal(37, #m.trailhound_file_lag_bytes.samples)
    for _, f in ipairs(files) do
      assert.equal(0, value(m, "trailhound_file_lag_bytes", { path = f }), f)
      assert.equal(size_of(f), value(m, "trailhound_file_offset_bytes", { path = f }), f)
    end

    local out = "file:" .. alerts
    assert.equal(10, value(m, "trailhound_output_delivered_total", { output = out }))
    assert.equal(0, value(m, "trailhound_output_queued", { output = out }))
    assert.equal(1, value(m, "trailhound_output_up", { output = out }))
    assert.equal(0, value(m, "trailhound_output_failures_total", { output = out }))
    assert.equal(0, value(m, "trailhound_output_oldest_unacked_seconds", { output = out }))
    assert.equal(2, value(m, "trailhound_workers"))
    assert.equal(2, value(m, "trailhound_workers_configured"))
    assert.equal(0, sum(m, "trailhound_worker_restarts_total"))
    assert.equal(1, value(m, "trailhound_build_info", { command = "run" }))
    local started = value(m, "process_start_time_seconds")
    assert.truthy(started > os.time() - 120 and started <= os.time() + 1, tostring(started))

    -- Two more denied calls appended: counted, alerted, and caught up again.
    local bedrock = logs .. "/bedrock-denied-derived.ndjson"
    th.append(bedrock, ev.line(ev.denied("PutUseCaseForModelAccess", "AccessDenied", "m-1")) ..
      ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "m-2")))
    ok, m = until_metrics("127.0.0.1", port, function(x)
      return value(x, "trailhound_records_total") == 325 and value(x, "trailhound_lag_bytes") == 0
    end)
    assert.truthy(ok, h.err())
    assert.equal(size_of(bedrock), value(m, "trailhound_file_offset_bytes", { path = bedrock }))
    assert.equal(7, value(m, "trailhound_rule_alerts_total", { rule = ev.MODEL_ACCESS }))
    assert.equal(5, value(m, "trailhound_rule_alerts_total", { rule = ev.POLICY }))
    assert.equal(12, value(m, "trailhound_output_delivered_total", { output = out }))
    assert.equal(12, #th.lines(alerts))
    h.signal("INT")
    assert.equal(0, h.wait(10))
  end)

  it("counts per rule the alerts the limits did not write: held back, suppressed, duplicates", function()
    local d = th.tmpdir()
    local logs = d .. "/logs"
    os.execute("mkdir " .. logs .. " && cp tests/fixtures/stratus-red-team/aws.*.json " .. logs)
    os.execute("cp " .. logs .. "/aws.credential-access.ec2-get-password-data.json " .. logs .. "/again.json")
    local head = 'return { rule_id = "%s", name = "%s", description = "Denied.", severity = "low", ' ..
      'risk_score = 21, query = \'event.outcome: "failure"\', %s }\n'
    local r = th.tmpdir()
    th.write(r .. "/all.lua", head:format("00000000-0000-4000-8000-000000000001", "all", ""))
    th.write(r .. "/capped.lua", head:format("00000000-0000-4000-8000-000000000002", "capped", "max_signals = 1"))
    th.write(r .. "/grouped.lua", head:format("00000000-0000-4000-8000-000000000003", "grouped",
      'alert_suppression = { group_by = { "user.name" }, duration = "1h" }'))
    local h = th.start({ "run", "--no-state", "--rules", r, "--metrics", "127.0.0.1:0", logs .. "/*.json" },
      { limits = true })
    local port = port_of(h, "127.0.0.1")
    local ok, m = until_metrics("127.0.0.1", port, function(x)
      return value(x, "trailhound_records_total") == 344 and value(x, "trailhound_lag_bytes") == 0
    end)
    assert.truthy(ok, h.err())
    local function of(name, rule) return value(m, name, { rule = rule }) end
    local matches = of("trailhound_rule_alerts_total", "all")
    local again = of("trailhound_rule_duplicates_total", "all")
    assert.truthy(matches > 10 and again > 10, matches .. " " .. again)
    for _, rule in ipairs({ "capped", "grouped" }) do
      assert.equal(again, of("trailhound_rule_duplicates_total", rule), rule)
    end
    local held = of("trailhound_rule_held_back_total", "capped")
    assert.truthy(held > 0)
    assert.equal(matches, of("trailhound_rule_alerts_total", "capped") + held)
    local suppressed = of("trailhound_rule_suppressed_total", "grouped")
    assert.truthy(suppressed > 0)
    assert.equal(matches, of("trailhound_rule_alerts_total", "grouped") + suppressed)
    assert.equal(0, of("trailhound_rule_held_back_total", "all") + of("trailhound_rule_suppressed_total", "all"))
    h.signal("TERM")
    assert.equal(0, h.wait(10))
  end)

  it("shows an output that is down: failures, up 0, its queue and age, lag held; then delivering", function()
    local srv = http_server()
    servers[#servers + 1] = srv
    local port = srv.start()
    srv.stop()  -- nothing listens there now
    local d = th.tmpdir()
    local log = d .. "/ct.ndjson"
    os.execute("cp " .. EXAMPLE .. " " .. log)
    local url = "http://trailhound:s3cret@127.0.0.1:" .. port .. "/ingest"
    local h = th.start({ "run", "--no-state", "--metrics", "127.0.0.1:0", "--output", url, log })
    local mport = port_of(h, "127.0.0.1")
    local out = "http://127.0.0.1:" .. port .. "/ingest"  -- its name: no credentials
    local ok, m = until_metrics("127.0.0.1", mport, function(x)
      return value(x, "trailhound_output_up", { output = out }) == 0
        and value(x, "trailhound_output_queued", { output = out }) == 10
        and (value(x, "trailhound_output_oldest_unacked_seconds", { output = out }) or 0) > 0
    end)
    assert.truthy(ok, h.err())
    assert.is_nil(m.trailhound_output_up.samples[1].labels.output:find("s3cret", 1, true))
    assert.truthy(value(m, "trailhound_output_failures_total", { output = out }) >= 1)
    assert.equal(0, value(m, "trailhound_output_delivered_total", { output = out }))
    assert.equal(13, value(m, "trailhound_records_total"))
    -- Nothing is committed while the alerts wait: the whole file is lag.
    assert.equal(size_of(log), value(m, "trailhound_file_lag_bytes", { path = log }))
    assert.equal(0, value(m, "trailhound_file_offset_bytes", { path = log }))

    srv.start(port)
    ok, m = until_metrics("127.0.0.1", mport, function(x)
      return value(x, "trailhound_output_delivered_total", { output = out }) == 10
        and value(x, "trailhound_lag_bytes") == 0
    end, 90)  -- the backoff may have reached a few seconds
    assert.truthy(ok, h.err())
    assert.equal(1, value(m, "trailhound_output_up", { output = out }))
    assert.equal(0, value(m, "trailhound_output_queued", { output = out }))
    assert.equal(0, value(m, "trailhound_output_oldest_unacked_seconds", { output = out }))
    assert.equal(10, #th.lines(srv.store))
  end)

  it("keeps detecting while clients connect and send nothing, or never read their answer", function()
    local d = th.tmpdir()
    local log = d .. "/ct.ndjson"
    th.write(log, "")
    local h = th.start({ "run", "--no-state", "--metrics", "127.0.0.1:0", log })
    local port = port_of(h, "127.0.0.1")
    assert.truthy(th.wait_for(function() return value(scrape("127.0.0.1", port), "trailhound_workers") >= 1 end, 20))
    th.sleep(0.3)
    local base = sockets(h.pid)
    -- One client that asks and never reads, then 24 silent ones, more than the 16 held at once.
    -- The asking one's request is sent before the silent ones come: a newcomer makes room by
    -- closing the oldest connection whose request has not arrived, and a client between its
    -- connect and its send is one (under a loaded machine the silent ones could close it so).
    os.execute(string.format("python3 tests/support/httpclient.py slow 127.0.0.1 %d --seconds 6 " ..
      "--report %s/slow >%s/slow.log 2>&1 &", port, d, d))
    assert.truthy(th.wait_for(function() return th.read(d .. "/slow.ready") end, 10), th.read(d .. "/slow.log"))
    os.execute(string.format("python3 tests/support/httpclient.py hold 127.0.0.1 %d --count 24 --seconds 15 " ..
      "--report %s/hold >%s/hold.log 2>&1 &", port, d, d))
    assert.truthy(th.wait_for(function() return th.read(d .. "/hold.ready") end, 10), th.read(d .. "/hold.log"))
    th.sleep(0.3)
    assert.truthy(sockets(h.pid) <= base + 16, "at most 16 clients held: " .. sockets(h.pid) .. " over " .. base)

    -- Alerts come while they hold.
    local t0 = os.time()
    local lines = {}
    for i = 1, 10 do lines[i] = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "hold-" .. i)) end
    th.append(log, table.concat(lines))
    assert.truthy(th.wait_for(function() return h.count() == 10 end, 3), h.err())
    assert.truthy(os.time() - t0 <= 3)
    -- And a scrape is answered (a silent client makes room for it).
    local m, r = scrape("127.0.0.1", port)
    assert.truthy(r.elapsed < 2, tostring(r.elapsed))
    assert.equal(10, value(m, "trailhound_alerts_total"))

    -- The silent ones are closed by the host: at once for those past 16, the others after 5 s.
    local hold = th.wait_for(function() local s = th.read(d .. "/hold"); return s and cjson.decode(s) end, 20)
    assert.truthy(hold, th.read(d .. "/hold.log"))
    local early = 0
    for i, t in ipairs(hold.closed_after) do
      assert.is_not.equal(cjson.null, t, "client " .. i .. " still open after 15 s")
      assert.truthy(t < 8, "client " .. i .. " closed after " .. t .. " s")
      if t < 2 then early = early + 1 end
    end
    assert.truthy(early >= 8, early .. " closed at once")
    -- The one that never read got its whole answer from the kernel's buffers: the host held nothing.
    local slow = th.wait_for(function() local s = th.read(d .. "/slow"); return s and cjson.decode(s) end, 20)
    assert.truthy(slow, th.read(d .. "/slow.log"))
    assert.truthy(slow.eof)
    assert.equal(slow.content_length, slow.received)
    assert.truthy(th.wait_for(function() return sockets(h.pid) == base end, 5), sockets(h.pid) .. " over " .. base)
    h.signal("INT")
    assert.equal(0, h.wait(10))
  end)

  it("answers 404 elsewhere, 405 to other methods, HEAD without a body, 400 and 431 to bad requests", function()
    local d = th.tmpdir()
    local h = th.start({ "run", "--no-state", "--metrics", "127.0.0.1:0", d })
    local port = port_of(h, "127.0.0.1")
    local r = client("get", "127.0.0.1", port, "--path /")
    assert.equal(404, r.status)
    r = client("get", "127.0.0.1", port, "--path /metricsx")
    assert.equal(404, r.status)
    r = client("get", "127.0.0.1", port, "--path '/metrics?name[]=x'")
    assert.equal(200, r.status)
    for _, method in ipairs({ "POST", "PUT", "DELETE", "OPTIONS" }) do
      r = client("get", "127.0.0.1", port, "--method " .. method)
      assert.equal(405, r.status, method)
      assert.equal("GET, HEAD", r.headers.allow)
    end
    r = client("get", "127.0.0.1", port, "--method HEAD")
    assert.equal(200, r.status)
    assert.equal("", r.body)
    assert.truthy(tonumber(r.headers["content-length"]) > 1000)
    r = client("get", "127.0.0.1", port, "--raw 'hello\\r\\n\\r\\n'")
    assert.equal(400, r.status)
    r = client("get", "127.0.0.1", port, "--raw 'GET /metrics HTTP/2.0\\r\\n\\r\\n'")
    assert.equal(400, r.status)
    r = client("get", "127.0.0.1", port, "--raw 'GET /metrics HTTP/1.1\\r\\nX: " .. ("a"):rep(9000) .. "\\r\\n\\r\\n'")
    assert.equal(431, r.status)
    -- HTTP/1.0, bare newlines, and a request split over several reads are fine.
    r = client("get", "127.0.0.1", port, "--raw 'GET /metrics HTTP/1.0\\n\\n'")
    assert.equal(200, r.status)
    assert.equal("close", r.headers.connection)
    assert.truthy(r.eof)
    h.signal("INT")
    assert.equal(0, h.wait(10))
  end)

  it("escapes label values: quotes, backslashes, newlines; bytes that are not UTF-8 become U+FFFD", function()
    local d = th.tmpdir()
    local names = { 'say "hi".ndjson', "back\\slash.ndjson", "two\nlines.ndjson", "caf\xc3\xa9.ndjson",
                    "latin1-caf\xe9.ndjson" }
    for _, n in ipairs(names) do th.write(d .. "/" .. n, ev.line(ev.real("PutFoundationModelEntitlement"))) end
    local h = th.start({ "run", "--no-state", "--metrics", "127.0.0.1:0", d })
    local port = port_of(h, "127.0.0.1")
    local ok, m = until_metrics("127.0.0.1", port, function(x)
      return value(x, "trailhound_records_total") == #names and value(x, "trailhound_lag_bytes") == 0
    end)
    assert.truthy(ok, h.err())
    for _, n in ipairs(names) do
      local want = (d .. "/" .. n):gsub("\xe9", "\xef\xbf\xbd")
      assert.equal(0, value(m, "trailhound_file_lag_bytes", { path = want }), want)
    end
    h.signal("INT")
    assert.equal(0, h.wait(10))
  end)

  it("serves a replay on IPv6 while it waits for an output", function()
    local srv = http_server()
    servers[#servers + 1] = srv
    local port = srv.start()
    srv.stop()
    local h = th.start({ "replay", "--workers", "1", "--metrics", "[::1]:0", "--output",
      "http://127.0.0.1:" .. port .. "/", EXAMPLE })
    local mport = port_of(h, "[::1]")
    local out = "http://127.0.0.1:" .. port .. "/"
    local ok, m = until_metrics("::1", mport, function(x)
      return value(x, "trailhound_records_total") == 13 and value(x, "trailhound_output_queued", { output = out }) == 10
    end)
    assert.truthy(ok, h.err())
    assert.equal(1, value(m, "trailhound_build_info", { command = "replay" }))
    assert.equal(0, value(m, "trailhound_output_up", { output = out }))
    assert.is_nil(m.trailhound_files, "no files followed in a replay")
    h.signal("INT")  -- stops waiting for the output
    assert.equal(130, h.wait(10))
  end)

  it("counts workers killed and started again", function()
    local d = th.tmpdir()
    local log = d .. "/ct.ndjson"
    th.write(log, "")
    local h = th.start({ "run", "--no-state", "--workers", "1", "--metrics", "127.0.0.1:0", log })
    local port = port_of(h, "127.0.0.1")
    assert.truthy(until_metrics("127.0.0.1", port, function(x) return value(x, "trailhound_workers") == 1 end))
    local before = th.children(h.pid)
    assert.equal(2, #before)  -- one evaluating, the gate
    for _, pid in ipairs(before) do os.execute("kill -9 " .. pid) end
    local ok, m = until_metrics("127.0.0.1", port, function(x)
      return sum(x, "trailhound_worker_restarts_total") == 2 and value(x, "trailhound_workers") == 1
    end)
    assert.truthy(ok, h.err())
    assert.equal(1, value(m, "trailhound_worker_restarts_total", { worker = "0", role = "evaluate" }))
    assert.equal(1, value(m, "trailhound_worker_restarts_total", { worker = "1", role = "gate" }))
    -- And detection goes on.
    th.append(log, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "after-kill")))
    assert.truthy(th.wait_for(function() return h.count() == 1 end, 10), h.err())
    h.signal("INT")
    assert.equal(0, h.wait(10))
  end)

  it("is in trailhound help run, the man page, bash completion and the example configuration", function()
    local help = th.run({ "help", "run" })
    assert.matches("--metrics ADDR:PORT", help, 1, true)
    assert.matches('--metrics " ADDR:PORT"', th.read("man/trailhound.1"):gsub("\\%-", "-"), 1, true)
    local completion = th.read("completion/trailhound.bash")
    assert.matches(" --metrics ", completion, 1, true)
    assert.matches(" metrics= ", completion, 1, true)
    assert.matches('metrics = "127.0.0.1:9464"', th.read("examples/trailhound.lua"), 1, true)
  end)

  it("says a malformed address is a usage error (exit 2) and a port in use a failure to start (exit 1)", function()
    for _, addr in ipairs({ "9464", ":9464", "localhost:9464", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1",
                            "::1:9464", "[::1]", "[::1:9464", "1.2.3:9464", "127.0.0.1:94x" }) do
      local _, err, rc = th.run({ "replay", "--metrics", addr, EXAMPLE })
      assert.equal(2, rc, addr .. ": " .. err)
      assert.matches("--metrics: bad address '" .. addr:gsub("%p", "%%%0") .. "'", err)
    end
    local _, err, rc = th.run({ "replay", "-o", "metrics=nowhere", EXAMPLE })
    assert.equal(2, rc, err)
    assert.matches("bad address 'nowhere'", err, 1, true)

    local d = th.tmpdir()
    local h = th.start({ "run", "--no-state", "--metrics", "127.0.0.1:0", d })
    local port = port_of(h, "127.0.0.1")
    local out
    out, err, rc = th.run({ "replay", "--metrics", "127.0.0.1:" .. port, EXAMPLE })
    assert.equal(1, rc, err)
    assert.equal("", out)
    assert.matches("--metrics: listen on 127.0.0.1:" .. port .. ": address already in use", err, 1, true)
    -- The configuration file's key.
    th.write(d .. "/c.lua", string.format("return { metrics = %q }", "127.0.0.1:" .. port))
    _, err, rc = th.run({ "run", "--no-state", "--config", d .. "/c.lua", d })
    assert.equal(1, rc, err)
    assert.matches("address already in use", err, 1, true)
    h.signal("INT")
    assert.equal(0, h.wait(10))
  end)
end)
