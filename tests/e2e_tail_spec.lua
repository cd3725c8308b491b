-- End to end: `trailhound run` as a tailer left running for months: globs and
-- directories, rotation, truncation, checkpoints, kill -9. Real processes,
-- real files, real signals.

local th = require "support.th"
local ev = require "support.events"

local function ids(out)
  local list, seen, dups = {}, {}, 0
  for _, a in ipairs(th.alerts(out)) do
    local id = a.event.id
    if seen[id] then dups = dups + 1 end
    seen[id] = true
    list[#list + 1] = id
  end
  return seen, #list, dups
end

local function count(out)
  local n = 0
  for _ in out:gmatch("[^\n]+") do n = n + 1 end
  return n
end

local function writer(path, n, mode, every, pause)
  os.execute(string.format("lua5.4 tests/support/writer.lua %s %d %s %d %s >/dev/null 2>&1 &",
    th.quote(path), n, mode, every, pause or 0))
end

local function line(id, action) return ev.line(ev.denied(action or "PutResourcePolicy", "AccessDenied", id)) end

describe("trailhound run, tailing for real", function()
  local h
  after_each(th.cleanup)  -- stops the hosts started too

  it("follows a glob with ** and a directory, and picks up new files within a second", function()
    local d = th.tmpdir()
    os.execute("mkdir -p " .. th.quote(d .. "/ct/a/b") .. " " .. th.quote(d .. "/dir"))
    th.write(d .. "/ct/one.ndjson", line("g1"))
    h = th.start({ "run", "--no-state", "--rescan", "30", d .. "/ct/**/*.ndjson", d .. "/dir" })
    assert.truthy(th.wait_for(function() return h.count() >= 1 end))
    th.write(d .. "/ct/a/b/deep.ndjson", line("g2"))     -- found by the rescan after a directory event
    th.write(d .. "/dir/any-name.log", line("g3"))        -- every file of a directory
    th.write(d .. "/ct/ignored.txt", line("g4"))          -- not matched by the glob
    assert.truthy(th.wait_for(function() return h.count() >= 3 end, 1.5), h.err())
    th.sleep(0.3)
    local seen = ids(h.out())
    assert.same({ g1 = true, g2 = true, g3 = true }, seen)
  end)

  it("leaves out --exclude and --ignore-older files", function()
    local d = th.tmpdir()
    th.write(d .. "/keep.ndjson", line("k1"))
    th.write(d .. "/skip.ndjson.tmp", line("x1"))
    th.write(d .. "/old.ndjson", line("o1"))
    os.execute("touch -d '3 days ago' " .. th.quote(d .. "/old.ndjson"))
    h = th.start({ "run", "--no-state", "--exclude", "*.tmp", "--ignore-older", "2d", d })
    assert.truthy(th.wait_for(function() return h.count() >= 1 end))
    th.sleep(0.5)
    assert.same({ k1 = true }, (ids(h.out())))
  end)

  it("with --max-open-files 2 serves all of 6 growing files, none starved", function()
    local d = th.tmpdir()
    for i = 1, 6 do th.write(d .. "/f" .. i .. ".ndjson", line("m" .. i .. "-1")) end
    h = th.start({ "run", "--no-state", "--max-open-files", "2", "--poll", "50", d })
    assert.truthy(th.wait_for(function() return h.count() >= 6 end), h.err())
    for i = 1, 6 do th.append(d .. "/f" .. i .. ".ndjson", line("m" .. i .. "-2")) end
    assert.truthy(th.wait_for(function() return h.count() >= 12 end), h.err())
    local _, n, dups = ids(h.out())
    assert.equal(12, n)
    assert.equal(0, dups)
  end)

  it("processes every line exactly once while the file is rotated by rename many times", function()
    local d = th.tmpdir()
    local f = d .. "/busy.ndjson"
    th.write(f, "")
    h = th.start({ "run", "--no-state", "--rotate-wait", "1", "--poll", "50", f })
    th.sleep(0.2)
    writer(f, 3000, "rename", 250)
    assert.truthy(th.wait_for(function() return th.read(d .. "/writer.done") end, 20))
    assert.truthy(th.wait_for(function() return h.count() >= 3000 end, 10), h.err())
    th.sleep(0.3)
    local seen, n, dups = ids(h.out())
    assert.equal(0, dups)
    assert.equal(3000, n)
    for i = 1, 3000 do assert.truthy(seen["w-" .. i], "w-" .. i .. " missing") end
  end)

  it("under copy-and-truncate reads every line once, the truncation window from the copy", function()
    local d = th.tmpdir()
    local f = d .. "/ct.ndjson"
    th.write(f, "")
    h = th.start({ "run", "--no-state", "--poll", "50", f })
    th.sleep(0.2)
    writer(f, 3000, "copytruncate", 250)
    assert.truthy(th.wait_for(function() return th.read(d .. "/writer.done") end, 20))
    th.wait_for(function() return h.count() >= 3000 end, 10)
    th.sleep(0.5)
    local _, n, dups = ids(h.out())
    -- Lines written after the host's last read and before a truncation are in
    -- the copy beside the file (ct.ndjson.N), read on from where the original
    -- was read to. What remains is the race between the host's check of the
    -- bytes before its offset and its next read: microseconds (see README).
    io.stderr:write(string.format("# copytruncate: %d of 3000 lines read, %d twice, 11 truncations\n", n, dups))
    assert.equal(0, dups)
    assert.is_true(3000 - n <= 3, (3000 - n) .. " lost")
    assert.matches("reading it again from the start", h.err(), 1, true)
  end)

  it("resumes at its checkpoint after a stop, even when the file was rotated meanwhile", function()
    local d = th.tmpdir()
    local f, state = d .. "/r.ndjson", d .. "/state"
    th.write(f, line("c1") .. line("c2"))
    h = th.start({ "run", "--state", state, "--rotate-wait", "0.5", f })
    assert.truthy(th.wait_for(function() return h.count() >= 2 end))
    h.signal("TERM")
    assert.equal(0, h.wait())
    assert.matches("trailhound%-state 2\n", th.read(state))
    -- while it is stopped: more lines, a rotation, and a new file
    th.append(f, line("c3"))
    os.rename(f, f .. ".1")
    th.write(f, line("c4"))
    local h2 = th.start({ "run", "--state", state, "--rotate-wait", "0.5", f })
    h = h2
    assert.truthy(th.wait_for(function() return h2.count() >= 2 end), h2.err())
    th.sleep(0.3)
    assert.same({ c3 = true, c4 = true }, (ids(h2.out())))
    assert.matches("rotated while stopped", h2.err(), 1, true)
  end)

  it("after kill -9 at random moments loses no alert, and repeats only ones with the same uuid", function()
    local d = th.tmpdir()
    local f, state = d .. "/k.ndjson", d .. "/state"
    th.write(f, "")
    writer(f, 1500, "append", 0, 0.001)
    local uuids, runs = {}, 0
    math.randomseed(os.time())
    repeat
      runs = runs + 1
      local k = th.start({ "run", "--state", state, "--poll", "50", f })
      th.sleep(0.1 + math.random() * 0.4)
      k.signal("KILL")
      k.wait(5)
      for _, a in ipairs(th.alerts(th.complete_lines(k.out()))) do uuids[a.kibana.alert.uuid] = true end
    until th.read(d .. "/writer.done") and runs >= 6
    local last = th.start({ "run", "--state", state, "--poll", "50", f })
    th.sleep(1)
    last.signal("TERM")
    assert.equal(0, last.wait())
    for _, a in ipairs(th.alerts(last.out())) do uuids[a.kibana.alert.uuid] = true end
    local out = th.run({ "replay", f })
    local want = {}
    for _, a in ipairs(th.alerts(out)) do want[a.kibana.alert.uuid] = true end
    local missing, extra = 0, 0
    for u in pairs(want) do if not uuids[u] then missing = missing + 1 end end
    for u in pairs(uuids) do if not want[u] then extra = extra + 1 end end
    assert.equal(1500, count(out))
    assert.equal(0, missing, missing .. " alerts missing after " .. runs .. " kills")
    assert.equal(0, extra)
  end)

  it("holds a partial line across a kill -9: committed before it, processed once complete", function()
    local d = th.tmpdir()
    local f, state = d .. "/p.ndjson", d .. "/state"
    local l = line("p1")
    th.write(f, line("p0") .. l:sub(1, 40))
    local k = th.start({ "run", "--state", state, f })
    assert.truthy(th.wait_for(function() return k.count() >= 1 end))
    th.sleep(1.3)  -- a checkpoint is written every second
    k.signal("KILL")
    k.wait(5)
    th.append(f, l:sub(41))
    h = th.start({ "run", "--state", state, f })
    assert.truthy(th.wait_for(function() return h.count() >= 1 end))
    th.sleep(0.3)
    assert.same({ p1 = true }, (ids(h.out())))
  end)

  it("reads a file deleted while open to its end, then closes it", function()
    local d = th.tmpdir()
    local f = d .. "/del.ndjson"
    th.write(f, line("d1"))
    h = th.start({ "run", "--no-state", "--rotate-wait", "0.3", "--poll", "50", f })
    assert.truthy(th.wait_for(function() return h.count() >= 1 end))
    local w = io.open(f, "ab")
    os.remove(f)
    w:write(line("d2"))
    w:close()
    assert.truthy(th.wait_for(function() return h.count() >= 2 end), h.err())
    local fd_open = th.wait_for(function()
      local p = io.popen("ls -l /proc/" .. h.pid .. "/fd 2>/dev/null | grep -c 'del.ndjson (deleted)'")
      local n = tonumber(p:read("a"))
      p:close()
      return n == 0
    end, 3)
    assert.truthy(fd_open, "the deleted file is still open")
  end)

  it("takes a new file with a reused inode for the new file it is", function()
    local d = th.tmpdir()
    local f = d .. "/i.ndjson"
    th.write(f, line("i1", "DeleteResourcePolicy"))
    h = th.start({ "run", "--no-state", "--poll", "50", "--rotate-wait", "0.2", f })
    assert.truthy(th.wait_for(function() return h.count() >= 1 end))
    local p = io.popen("stat -c %i " .. th.quote(f))
    local ino = p:read("l")
    p:close()
    os.remove(f)
    th.write(f, line("i2") .. line("i3"))  -- often the same inode, always other content
    p = io.popen("stat -c %i " .. th.quote(f))
    local ino2 = p:read("l")
    p:close()
    assert.truthy(th.wait_for(function() return h.count() >= 3 end), h.err())
    th.sleep(0.3)
    assert.same({ i1 = true, i2 = true, i3 = true }, (ids(h.out())))
    io.stderr:write("# inode " .. (ino == ino2 and "reused" or "not reused") .. " by the new file\n")
  end)

  it("does not resume a checkpoint whose inode now holds another file (inode reuse)", function()
    local d = th.tmpdir()
    local f, state = d .. "/reuse.ndjson", d .. "/state"
    th.write(f, line("n1") .. line("n2"))
    local p = io.popen("stat -c '%d %i' " .. th.quote(f))
    local dev, ino = p:read("l"):match("(%d+) (%d+)")
    p:close()
    -- the state of an older file that had this device and inode: another
    -- fingerprint, and an offset past the first line of the new one
    th.write(state, string.format("trailhound-state 1\n%s %s 1024 0123456789abcdef %d 0 %s\n",
      dev, ino, #line("n1"), f))
    h = th.start({ "run", "--state", state, f })
    assert.truthy(th.wait_for(function() return h.count() >= 2 end), h.err())
    assert.same({ n1 = true, n2 = true }, (ids(h.out())))
  end)

  it("processes an S3 object synced into a watched directory once, whole, and not again after a restart", function()
    local d = th.tmpdir()
    local dir, state = d .. "/s3", d .. "/state"
    os.execute("mkdir -p " .. th.quote(dir))
    h = th.start({ "run", "--state", state, "--poll", "100", dir })
    th.sleep(0.3)
    local cjson = require "cjson"
    local doc = cjson.encode({ Records = { ev.denied("PutResourcePolicy", "AccessDenied", "s3a"),
      ev.denied("DeleteResourcePolicy", "AccessDenied", "s3b") } })
    th.write(d .. "/obj.json", doc)
    os.execute("gzip -n " .. th.quote(d .. "/obj.json"))
    local gz = th.read(d .. "/obj.json.gz")
    local tmp = dir .. "/obj.json.gz.7f3a9c1e"   -- as aws s3 sync writes, then renames
    th.write(tmp, gz:sub(1, 30))
    th.sleep(0.25)
    th.append(tmp, gz:sub(31))
    os.rename(tmp, dir .. "/obj.json.gz")
    assert.truthy(th.wait_for(function() return h.count() >= 2 end), h.err())
    th.sleep(1.3)
    h.signal("TERM")
    assert.equal(0, h.wait())
    assert.equal(2, h.count())
    h = th.start({ "run", "--state", state, dir })
    th.sleep(0.8)
    assert.equal(0, h.count())
  end)

  it("keeps a damaged state file aside as .bad and starts from --from-*", function()
    local d = th.tmpdir()
    local f, state = d .. "/s.ndjson", d .. "/state"
    th.write(f, line("s1"))
    local k = th.start({ "run", "--state", state, f })
    assert.truthy(th.wait_for(function() return k.count() >= 1 end))
    k.signal("TERM")
    k.wait()
    local text = th.read(state)
    th.write(state, text:sub(1, #text // 2))
    h = th.start({ "run", "--state", state, f })
    assert.truthy(th.wait_for(function() return h.count() >= 1 end), h.err())
    assert.matches("damaged at line", h.err(), 1, true)
    assert.equal(text:sub(1, #text // 2), th.read(state .. ".bad"))
    h.signal("TERM")
    assert.equal(0, h.wait())
  end)
end)
