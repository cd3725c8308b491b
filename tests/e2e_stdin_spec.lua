-- End to end: `trailhound run -` reading standard input, as `tail -F x |` or
-- `aws s3 cp ... - |` feed it: through a FIFO written a piece at a time, so
-- that what is evaluated before the writer closes shows it is read as it
-- comes.

local th = require "support.th"
local ev = require "support.events"

local S3 = "examples/s3/123456789012_CloudTrail_us-east-1_20250326T1645Z_derived.json.gz"
local DERIVED = "examples/cloudtrail/bedrock-denied-derived.ndjson"

-- A FIFO.
local function fifo()
  local path = th.tmpdir() .. "/in"
  assert(os.execute("mkfifo " .. th.quote(path)))
  return path
end

-- `trailhound ARGS` reading the FIFO at path, and the FIFO's writing end:
-- opened once the host has it open for reading (opened before, it would be
-- inherited by the host, and closing it here would be no end of input).
local function start(args, path)
  local h = th.start(args, { stdin = path })
  local w = assert(io.open(path, "wb"))
  w:setvbuf("no")
  return h, w
end

local function count(h) return #th.alerts(th.complete_lines(h.out())) end

local function until_alerts(h, n, timeout)
  return th.wait_for(function() return count(h) >= n end, timeout or 10)
end

-- Run a shell pipeline into trailhound: stdout, stderr, exit code.
local function sh(cmdline)
  local d = th.tmpdir()
  local p = io.popen(string.format("( %s ) >%s/out 2>%s/err; echo $?", cmdline, d, d))
  local rc = tonumber(p:read("a"):match("(%d+)"))
  p:close()
  return th.read(d .. "/out"), th.read(d .. "/err"), rc
end

local BIN = th.quote(th.bin)

describe("trailhound run -", function()
  after_each(th.cleanup)

  it("evaluates NDJSON as it is written, and once the pipe closes delivers its alerts and exits 0", function()
    local h, w = start({ "run", "--metrics", "127.0.0.1:0", "-" }, fifo())
    local line1 = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "p1"))
    w:write(line1)
    assert.truthy(until_alerts(h, 1), "the first line was not evaluated while the pipe is open: " .. h.err())
    -- SIGUSR1's statistics and /metrics list it among the files, read to the end of its first line.
    h.signal("USR1")
    assert.truthy(th.wait_for(function()
      return h.err():find("%s+" .. #line1 .. "%s+" .. #line1 .. "%s+0  standard input\n")
    end), h.err())
    local port = h.err():match("metrics: http://127%.0%.0%.1:(%d+)/metrics")
    local p = io.popen("python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
      .. "\"http://127.0.0.1:" .. tostring(port) .. "/metrics\").read().decode())'")
    local metrics = p:read("a")
    p:close()
    assert.matches('trailhound_file_lag_bytes{path="standard input"} 0\n', metrics, 1, true)
    w:write(ev.line(ev.real("InvokeModel")) .. ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "p2")))
    assert.truthy(until_alerts(h, 2), h.err())
    assert.is_nil(h.wait(0.3), "run ended before its standard input did")
    w:close()
    assert.equal(0, h.wait())
    local alerts = th.alerts(h.out())
    assert.equal(2, #alerts)
    assert.same({ "p1", "p2" }, { alerts[1].event.id, alerts[2].event.id })
    assert.equal("standard input", alerts[1].trailhound.source.path)
    assert.equal(0, alerts[1].trailhound.source.offset)
    assert.matches("1 file, 3 records, 0 malformed, 2 alerts", h.err(), 1, true)
    assert.not_matches("state:", h.err(), 1, true)
    assert.is_not_true(os.execute("test -e " .. th.quote(h.dir .. "/xdg")), "a state folder was made for standard "
      .. "input alone")
  end)

  it("inflates gzip as it arrives, before the writer has finished", function()
    local d = th.tmpdir()
    -- The first three records, compressed and flushed; the rest after, with the gzip trailer.
    assert(os.execute("python3 -c " .. th.quote([[
import sys, zlib
lines = open(sys.argv[1], 'rb').read().splitlines(keepends=True)
c = zlib.compressobj(6, zlib.DEFLATED, 31)
open(sys.argv[2], 'wb').write(c.compress(b''.join(lines[:3])) + c.flush(zlib.Z_SYNC_FLUSH))
open(sys.argv[3], 'wb').write(c.compress(b''.join(lines[3:])) + c.flush())
]]) .. " " .. DERIVED .. " " .. th.quote(d .. "/a") .. " " .. th.quote(d .. "/b")))
    local want = #th.alerts((th.run({ "replay", DERIVED })))
    local first = #th.alerts((sh("head -3 " .. DERIVED .. " | " .. BIN .. " replay -")))
    local h, w = start({ "run", "-" }, fifo())
    w:write(th.read(d .. "/a"))
    assert.truthy(first > 0 and first < want, "the first three records give some of the alerts")
    assert.truthy(until_alerts(h, first), "the flushed gzip was not inflated as it came: " .. h.err())
    th.sleep(0.3)
    assert.equal(first, count(h))
    w:write(th.read(d .. "/b"))
    w:close()
    assert.equal(0, h.wait())
    assert.equal(want, count(h))
    assert.matches("1 file, 13 records, 0 malformed, " .. want .. " alerts", h.err(), 1, true)
  end)

  it("reads every CloudTrail S3 object of concatenated gzip files, a file redirected, and nothing", function()
    local out, err, rc = sh("cat " .. S3 .. " " .. S3 .. " | " .. BIN .. " run -")
    assert.equal(0, rc, err)
    assert.matches("1 file, 38 records, 0 malformed, 2 alerts", err, 1, true)
    assert.matches("1 duplicate written once", err, 1, true)  -- the second object's, same uuids
    assert.equal(2, #th.alerts(out))
    local out2, err2, rc2 = sh(BIN .. " run - < " .. DERIVED)
    assert.equal(0, rc2, err2)
    assert.equal(#th.alerts((th.run({ "replay", DERIVED }))), #th.alerts(out2))
    local out3, err3, rc3 = sh(BIN .. " run - < /dev/null")
    assert.equal(0, rc3, err3)
    assert.equal("", out3)
    assert.matches("1 file, 0 records", err3, 1, true)
  end)

  it("reports a bad line as standard input with its offset and goes on, and a gzip stream cut short", function()
    local d = th.tmpdir()
    local good = ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "g1"))
    th.write(d .. "/in", good .. "{\"eventName\": \n" .. ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "g3")))
    local out, err, rc = sh(BIN .. " run - < " .. th.quote(d .. "/in"))
    assert.equal(0, rc)
    assert.equal(2, #th.alerts(out))
    assert.matches("trailhound: standard input:" .. #good .. ": malformed JSON", err, 1, true)
    assert.matches("1 file, 2 records, 1 malformed, 2 alerts", err, 1, true)
    local _, err2, rc2 = sh("gzip -c " .. DERIVED .. " | head -c 1500 | " .. BIN .. " run -")
    assert.equal(0, rc2)
    assert.matches("trailhound: read standard input: truncated gzip %(unexpected end of input%) after %d+ bytes "
      .. "of content; reading what came before", err2)
  end)

  it("keeps following the other PATHs when standard input ends, and saves only their offsets", function()
    local d = th.tmpdir()
    local f = d .. "/ct.ndjson"
    th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "f1")))
    local state = d .. "/state"
    local h, w = start({ "run", "--state", state, "-", f }, fifo())
    w:write(ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "s1")))
    assert.truthy(until_alerts(h, 2), h.err())
    w:close()
    assert.truthy(th.wait_for(function() return h.err():find("standard input: at its end; following the other "
      .. "PATHs", 1, true) end))
    th.append(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "f2")))
    assert.truthy(until_alerts(h, 3), "the file is no longer followed: " .. h.err())
    assert.is_nil(h.wait(0.2))
    h.signal("TERM")
    assert.equal(0, h.wait())
    assert.matches("2 files, 3 records, 0 malformed, 3 alerts", h.err(), 1, true)
    local saved = th.read(state)
    assert.matches(f, saved, 1, true)
    assert.not_matches("standard input", saved, 1, true)
    local _, entries = saved:gsub("\n", "")
    assert.equal(2, entries, "a header and one file: " .. saved)
  end)

  it("stops on SIGTERM while standard input is open, saving no entry for it, and refuses - twice as bad usage",
    function()
      local state = th.tmpdir() .. "/s"
      local h, w = start({ "run", "--state", state, "-" }, fifo())
      w:write(ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "t1")))
      assert.truthy(until_alerts(h, 1), h.err())
      h.signal("TERM")
      assert.equal(0, h.wait())
      assert.matches("SIGTERM: stopping", h.err(), 1, true)
      assert.equal("trailhound-state 2\n", th.read(state))
      w:close()
      local _, err, rc = th.run({ "run", "-", "-" })
      assert.equal(2, rc)
      assert.matches("- (standard input) given twice", err, 1, true)
    end)
end)
