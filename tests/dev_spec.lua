-- dev.lua: the authoring loop, on a simulated clock and file system: what it
-- sees as a save, and what it draws.

local dev = require "dev"
local style = require "style"
local th = require "support.th"

local RULE = [[
return {
  rule_id = "0b7b5b39-86f5-4fb0-9d3f-0b9a4ab8f6a1",
  name = "Bucket Deleted",
  description = "d",
  severity = "low",
  risk_score = 21,
  query = 'event.provider: "s3.amazonaws.com" and event.action: "DeleteBucket"',
  tests = {
    { name = "deleted", expect = true, event = { eventSource = "s3.amazonaws.com", eventName = "DeleteBucket" } },
    { name = "listed", expect = false, event = { eventSource = "s3.amazonaws.com", eventName = "ListBuckets" } },
  },
}
]]

-- A simulated system: stat answers from `files` (path -> { size, mtime, ino }),
-- sleeping moves the clock and plays the scripted events due by then.
local function fake(files, script)
  local sys = { t = 0 }
  function sys.stat(p)
    local f = files[p]
    if not f then return nil, p .. ": No such file or directory" end
    return { size = f.size, mtime = f.mtime, ino = f.ino, dev = 1, dir = false }
  end
  function sys.now() return sys.t end
  function sys.sleep(s)
    sys.t = sys.t + s
    for i = #script, 1, -1 do
      if script[i][1] <= sys.t + 1e-9 then
        table.remove(script, i)[2]()
      end
    end
    if sys.t > 20 then error("quiet", 0) end
  end
  return sys
end

-- Watch until `runs` runs were drawn (or the clock passes 20 s: "quiet").
-- Returns the texts written and the error, if it went quiet.
local function watch(opts, runs)
  local writes = {}
  opts.write = function(s) writes[#writes + 1] = s end
  opts.until_runs = runs
  local ok, err = pcall(dev.watch, opts)
  return writes, not ok and err or nil
end

describe("dev", function()
  local d, rule, files

  before_each(function()
    d = th.tmpdir()
    rule = d .. "/r.lua"
    th.write(rule, RULE)
    files = { [rule] = { size = #RULE, mtime = 1, ino = 10 } }
  end)
  after_each(th.cleanup)

  describe("watch()", function()
    it("draws a first run at once, then nothing while nothing changes", function()
      local writes, err = watch({ rule = rule, sys = fake(files, {}) }, 2)
      assert.equal("quiet", err)
      assert.equal(1, #writes)
      assert.matches("run 1 at %d%d:%d%d:%d%d %(started%)", writes[1])
    end)

    it("sees a save that changes only the text, within one mtime tick", function()
      local script = { { 0.5, function() th.write(rule, (RULE:gsub('"d"', '"e"'))) end } }
      local writes, err = watch({ rule = rule, sys = fake(files, script) }, 2)
      assert.is_nil(err)
      assert.matches("run 2 at .* %(" .. rule:gsub("%p", "%%%0") .. " changed%)", writes[2])
    end)

    it("sees a save by rename: a new inode with the same text", function()
      local script = { { 0.5, function() files[rule] = { size = #RULE, mtime = 1, ino = 11 } end } }
      local writes, err = watch({ rule = rule, sys = fake(files, script) }, 2)
      assert.is_nil(err)
      assert.equal(2, #writes)
    end)

    it("waits out a delete-and-create, and draws once the file is back", function()
      local script = {
        { 0.5, function() files[rule] = nil end },
        { 0.8, function() files[rule] = { size = #RULE, mtime = 2, ino = 12 } end },
      }
      local writes, err = watch({ rule = rule, sys = fake(files, script) }, 2)
      assert.is_nil(err)
      assert.equal(2, #writes)
      assert.not_matches("gone", writes[2], 1, true)
      assert.matches("check: no problems", writes[2], 1, true)
    end)

    it("reports a rule file that stays away, and draws it again when it comes back", function()
      local script = {
        { 0.5, function() files[rule] = nil end },
        { 3.0, function() files[rule] = { size = #RULE, mtime = 2, ino = 12 } end },
      }
      local writes, err = watch({ rule = rule, sys = fake(files, script) }, 3)
      assert.is_nil(err)
      assert.matches("the rule file is gone; waiting for it to come back", writes[2], 1, true)
      assert.matches("run 3 at .*check: no problems", writes[3])
    end)

    it("reads the sample files again when they change", function()
      local events = d .. "/e.ndjson"
      th.write(events, '{"eventSource":"s3.amazonaws.com","eventName":"DeleteBucket"}\n')
      files[events] = { size = 1, mtime = 1, ino = 20 }
      local script = { { 0.5, function()
        th.append(events, '{"eventSource":"s3.amazonaws.com","eventName":"DeleteBucket"}\n')
        files[events] = { size = 2, mtime = 2, ino = 20 }
      end } }
      local writes = watch({ rule = rule, events = { events }, sys = fake(files, script) }, 2)
      assert.matches("samples: 1 of 1 event match", writes[1], 1, true)
      assert.matches(events .. " changed", writes[2], 1, true)
      assert.matches("samples: 2 of 2 events match", writes[2], 1, true)
    end)

    it("clears the screen on a terminal, and separates runs elsewhere", function()
      local script = { { 0.5, function() files[rule] = { size = #RULE, mtime = 3, ino = 10 } end } }
      local tty = watch({ rule = rule, tty = true, sys = fake(files, script) }, 2)
      assert.matches("^\27%[H\27%[2J\27%[3J", tty[1])
      assert.matches("^\27%[H\27%[2J\27%[3J", tty[2])
      script = { { 0.5, function() files[rule] = { size = #RULE, mtime = 4, ino = 10 } end } }
      local piped = watch({ rule = rule, sys = fake(files, script) }, 2)
      assert.matches("^trailhound dev", piped[1])
      assert.matches("^\n" .. string.rep("%-", 72) .. "\ntrailhound dev", piped[2])
    end)
  end)

  describe("render()", function()
    it("shows the check, the tests and which sample events match", function()
      local events = d .. "/e.ndjson"
      th.write(events, '{"eventSource":"s3.amazonaws.com","eventName":"DeleteBucket","userIdentity":'
        .. '{"arn":"arn:aws:iam::1:user/bob"}}\n{"eventSource":"s3.amazonaws.com","eventName":"ListBuckets"}\n')
      local text = dev.render({ rule = rule, events = { events }, t = style.new(false), run = 4, why = "x changed" })
      assert.equal("trailhound dev: " .. rule .. ", run 4 (x changed)\n\n✓ check: no problems\n"
        .. "✓ tests: 2 tests passed (1 rule)\n* samples: 1 of 2 events match\n"
        .. "  ✓ " .. events .. ":1  DeleteBucket success by arn:aws:iam::1:user/bob\n"
        .. "  ✗ " .. events .. ":2  ListBuckets success\n", text)
    end)

    it("lists only the matches of a large sample", function()
      local events = d .. "/e.ndjson"
      local lines = {}
      for i = 1, 30 do
        lines[i] = string.format('{"eventSource":"s3.amazonaws.com","eventName":"%s"}',
          i == 7 and "DeleteBucket" or "ListBuckets")
      end
      th.write(events, table.concat(lines, "\n"))
      local text = dev.render({ rule = rule, events = { events }, t = style.new(false) })
      assert.matches("samples: 1 of 30 events match\n  ✓ " .. events .. ":7  DeleteBucket success\n"
        .. "  ... 29 events that do not match, not listed\n", text, 1, true)
    end)

    it("shows a broken rule's error, and a sample file's, and goes no further", function()
      th.write(rule, "return {\n  name = = 1\n}\n")
      local text = dev.render({ rule = rule, t = style.new(false) })
      assert.matches("✗ check: 1 error, 0 warnings\n  " .. rule .. ":2: error: unexpected symbol near '='\n", text, 1,
        true)
      assert.matches("fix the rule and save", text, 1, true)
      assert.not_matches("tests:", text, 1, true)
      th.write(rule, RULE)
      local bad = d .. "/bad.json"
      th.write(bad, "{")
      local text2 = dev.render({ rule = rule, events = { bad }, t = style.new(false) })
      assert.matches("  ! " .. bad .. ":1: malformed JSON", text2, 1, true)
    end)
  end)
end)
