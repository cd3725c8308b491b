-- End to end: `trailhound run` following real files while they are written.

local th = require "support.th"
local ev = require "support.events"

local function count_alerts(h)
  local n = 0
  for _ in h.out():gmatch("[^\n]+") do n = n + 1 end
  return n
end

local function until_alerts(h, n, timeout)
  return th.wait_for(function() return count_alerts(h) >= n end, timeout or 5)
end

describe("trailhound run", function()
  local h
  after_each(th.cleanup)  -- stops the hosts started too

  it("processes what the file holds, then every line appended, as it is appended", function()
    local d = th.tmpdir()
    local f = d .. "/ct.ndjson"
    th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "r1")))
    h = th.start({ "run", f })
    assert.truthy(until_alerts(h, 1), "existing line not processed: " .. h.err())
    for i = 2, 5 do
      th.append(f, ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "r" .. i)))
      assert.truthy(until_alerts(h, i), "appended line " .. i .. " not processed within 5 s")
    end
    h.signal("TERM")
    assert.equal(0, h.wait())
    assert.matches("SIGTERM: stopping", h.err(), 1, true)
    assert.matches("5 records, 0 malformed, 5 alerts", h.err(), 1, true)
  end)

  it("never processes a partial line until its newline arrives", function()
    local d = th.tmpdir()
    local f = d .. "/ct.ndjson"
    th.write(f, "")
    h = th.start({ "run", "--poll", "50", f })
    local line = ev.line(ev.denied("PutUseCaseForModelAccess", "AccessDeniedException", "p1"))
    local cut = math.floor(#line / 2)
    th.append(f, line:sub(1, cut))
    th.sleep(0.5)  -- ten polls and any change events: the half line must stay unread
    assert.equal(0, count_alerts(h))
    assert.not_matches("malformed", h.err(), 1, true)
    th.append(f, line:sub(cut + 1))
    assert.truthy(until_alerts(h, 1))
    h.signal("INT")
    assert.equal(0, h.wait())
    assert.matches("SIGINT: stopping", h.err(), 1, true)
    assert.matches("1 record, 0 malformed, 1 alert", h.err(), 1, true)
  end)

  it("with --from-end skips what is already there", function()
    local d = th.tmpdir()
    local f, ready = d .. "/ct.ndjson", d .. "/ready.ndjson"
    th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "old")))
    th.write(ready, "")
    h = th.start({ "run", "--from-end", f, ready })
    -- Tailing once a line appended to the other file alerts: a sanitizer build under load
    -- takes a while to start, and a line appended before it opened a file is skipped too.
    local n = 0
    assert.truthy(th.wait_for(function()
      n = n + 1
      th.append(ready, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "ready-" .. n)))
      return until_alerts(h, 1, 0.2)
    end, 20), h.err())
    th.append(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "new")))
    local function ids()
      local out = {}
      for _, a in ipairs(th.alerts(h.out())) do out[a.event.id] = (out[a.event.id] or 0) + 1 end
      return out
    end
    assert.truthy(th.wait_for(function() return ids().new end, 5), h.err())
    th.sleep(0.3)
    local seen = ids()
    assert.equal(1, seen.new)
    assert.is_nil(seen.old)
  end)

  it("finds growth by its periodic check alone, and picks up a file created later", function()
    local d = th.tmpdir()
    local f = d .. "/later.ndjson"
    h = th.start({ "run", "--poll", "100", f })
    assert.truthy(th.wait_for(function() return h.err():find("No such file or directory", 1, true) end))
    th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "l1")))
    assert.truthy(until_alerts(h, 1), h.err())
    local _, reports = h.err():gsub("No such file", "")
    assert.equal(1, reports, "a missing file is reported once")
  end)

  it("reads a truncated file again from its start", function()
    local d = th.tmpdir()
    local f = d .. "/t.ndjson"
    th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "t1")) ..
      ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "t2")))
    h = th.start({ "run", "--poll", "50", f })
    assert.truthy(until_alerts(h, 2))
    th.write(f, ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "t3")))
    assert.truthy(until_alerts(h, 3), h.err())
    assert.matches("truncated", h.err(), 1, true)
  end)

  it("follows a file rotated by rename-and-create, losing nothing", function()
    local d = th.tmpdir()
    local f = d .. "/r.ndjson"
    th.write(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "a1")))
    h = th.start({ "run", "--poll", "50", f })
    assert.truthy(until_alerts(h, 1))
    th.append(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "a2")))
    os.rename(f, f .. ".1")
    th.write(f, ev.line(ev.denied("DeleteResourcePolicy", "AccessDenied", "b1")))
    assert.truthy(until_alerts(h, 3), h.err())
    local ids = {}
    for _, a in ipairs(th.alerts(h.out())) do ids[#ids + 1] = a.event.id end
    table.sort(ids)
    assert.same({ "a1", "a2", "b1" }, ids)
  end)

  it("reports malformed lines with file and offset and keeps following", function()
    local d = th.tmpdir()
    local f = d .. "/m.ndjson"
    th.write(f, "")
    h = th.start({ "run", "--poll", "50", f })
    th.sleep(0.1)
    th.append(f, "{oops\n")
    th.append(f, ev.line(ev.denied("PutResourcePolicy", "AccessDenied", "m1")))
    assert.truthy(until_alerts(h, 1))
    assert.matches(f .. ":0: malformed JSON", h.err(), 1, true)
  end)
end)
