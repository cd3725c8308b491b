-- End to end: hostile rules, each run beside the two Bedrock rules on the same
-- events. Every one is contained and reported with its file and line, the
-- Bedrock rules give exactly their alerts, and the host neither hangs, nor
-- grows past its budgets, nor ignores a signal.

local system = require "system"
local th = require "support.th"
local ev = require "support.events"

-- 13 events: 6 model-access and 4 policy attempts (examples/NOTICE.md).
local DENIED = "examples/cloudtrail/bedrock-denied-derived.ndjson"

-- A rule whose match function's body is line 5 of its file.
local function rule(n, name, body)
  return table.concat({
    "return {",
    string.format('  rule_id = "11111111-2222-4333-8444-%012d", name = "%s",', n, name),
    '  description = "hostile", severity = "low", risk_score = 1,',
    "  match = function(e)",
    "    " .. body,
    "  end,",
    "}",
    "",
  }, "\n")
end

-- name, body of match (line 5), what the report says, at which line (5 unless said; false: a call in tail
-- position leaves no frame of the rule, and the report names its file)
local HOSTILE = {
  { "loop", "while true do end", "instruction budget exceeded" },
  { "loop_in_pcall", "while true do pcall(function() while true do end end) end", "instruction budget exceeded" },
  { "loop_caught", "local ok = pcall(function() while true do end end) return ok", "instruction budget exceeded" },
  { "loop_in_handler", "xpcall(function() error('x') end, function() while true do end end) return false",
    "instruction budget exceeded" },
  { "concat_bomb", 'local s = "x" while true do s = s .. s end', "memory budget exceeded" },
  { "rep_bomb", 'return #string.rep("x", 2^30) > 0', "memory budget exceeded" },
  { "bomb_caught", "pcall(function() local t = {} for i = 1, 1e9 do t[i] = {} end end) return false",
    "memory budget exceeded" },
  { "recursion", "local function f(n) return 1 + f(n + 1) end return f(1) > 0", "stack overflow" },
  { "errors", 'error("boom on every event")', "boom on every event" },
  { "io_open", 'return io.open("/etc/passwd") ~= nil', "blocked: io.open" },
  { "io_open_tail_call", 'return io.open("/etc/passwd")', "blocked: io.open", false },
  { "os_execute", 'return os.execute("touch /tmp/trailhound-pwned") == 0', "blocked: os.execute" },
  { "require_os", 'local os2 = require "os" return os2 ~= nil', "blocked: require" },
  { "binary_chunk", 'return load("\\27Lua\\84\\0", "x", "b") ~= nil', "blocked: load of binary chunks" },
  { "string_dump", "return #string.dump(print) > 0", "blocked: string.dump" },
  { "string_metatable", 'setmetatable("", { __index = function() return 1 end }) return true',
    "blocked: setmetatable on a string value" },
  { "debug", "debug.sethook() return true", "blocked: debug.sethook" },
  { "write_event", 'e["event.action"] = "Nothing" return true', "the event is read-only" },
  { "non_boolean", 'return e["event.action"]', "match must return true or false, not string", 4 },
}

-- Rules that try to reach what is not theirs; they must never alert.
local SNOOPING = {
  -- writes a global, and changes its string library and the string metatable's
  { "leaker", 'leaked = true string.upper = nil pcall(function() getmetatable("").__index = {} end) return false' },
  -- would alert on seeing any of it
  { "peeker",
    'return leaked ~= nil or string.upper("a") ~= "A" or ("a"):upper() ~= "A" or rawget(_G, "loader") ~= nil' },
}

local function rules_dir(list, first)
  local files = {}
  for i, h in ipairs(list) do files[h[1] .. ".lua"] = rule(first + i, h[1], h[2]) end
  return th.rules_dir(files)
end

-- Peak resident memory of a process, in MiB, from /proc.
local function peak_mib(pid) return th.proc_mib(pid, "VmHWM") end

-- The largest peak among a host and its workers (the rules run in these).
local function peak_of_all(pid)
  local peak = peak_mib(pid)
  local p = io.popen("cat /proc/" .. pid .. "/task/*/children 2>/dev/null")
  for child in p:read("a"):gmatch("%d+") do peak = math.max(peak, peak_mib(child)) end
  p:close()
  return peak
end

local ASAN = th.bin:find("asan") ~= nil

describe("the sandbox, end to end", function()
  local h
  after_each(th.cleanup)  -- stops the hosts started too

  it("contains every hostile rule and reports it with file and line; the Bedrock rules give exactly their alerts",
    function()
    local d = rules_dir(HOSTILE, 0)
    os.remove("/tmp/trailhound-pwned")
    -- The budgets are what this is about: the wall-clock limit must not come
    -- first, even on a sanitizer build (tests/e2e_workers_spec.lua has the clock).
    h = th.start({ "replay", "--rules", d, "--quarantine-after", "0", "--max-time", "60000", DENIED })
    local rc = h.wait(120)
    assert.equal(0, rc, "replay did not finish: " .. h.err())
    local err = h.err()
    local counts = th.by_rule(th.alerts(h.out()))
    assert.same({ [ev.MODEL_ACCESS] = 6, [ev.POLICY] = 4 }, counts)
    assert.matches(#HOSTILE + 2 .. " rules loaded", err, 1, true)
    for _, x in ipairs(HOSTILE) do
      local file = d .. "/" .. x[1] .. ".lua"
      -- reported once (at most once a minute), at the rule's line 5
      local at_line = x[4] == false and "" or ":" .. (x[4] or 5)
      local line = "rule " .. file .. " failed on " .. DENIED .. ":0: " .. file .. at_line .. ": " .. x[3]
      local at = err:find(line, 1, true)
      assert.truthy(at, x[1] .. ": no report '" .. line .. "' in:\n" .. err)
      assert.is_nil(err:find("rule " .. file .. " failed", at + 1, true), x[1] .. " reported twice")
      -- and counted on every event
      assert.matches("\n%s+0%s+13%s+%S+%s+%S+%s+" .. x[1]:gsub("_", "%%_") .. "\n", err)
    end
    assert.is_nil(io.open("/tmp/trailhound-pwned"), "os.execute ran")
    assert.matches("13 records, 0 malformed, 10 alerts", err, 1, true)
    assert.not_matches("internal error", err, 1, true)
  end)

  it("keeps each rule's globals, libraries and the string metatable its own", function()
    local d = rules_dir(SNOOPING, 100)
    local out, err, rc = th.run({ "replay", "--rules", d, DENIED })
    assert.equal(0, rc)
    assert.same({ [ev.MODEL_ACCESS] = 6, [ev.POLICY] = 4 }, th.by_rule(th.alerts(out)))
    assert.not_matches("peeker.lua", err, 1, true)
    assert.matches("%s+0%s+0%s+%S+%s+%S+%s+peeker\n", err)
  end)

  it("quarantines a failing rule after --quarantine-after failures in a row, and the others go on", function()
    local d = rules_dir({ HOSTILE[1], HOSTILE[9] }, 200)
    local out, err, rc = th.run({ "replay", "--rules", d, "--quarantine-after", "3", DENIED })
    assert.equal(0, rc)
    assert.equal(10, #th.alerts(out))
    for _, name in ipairs({ "loop", "errors" }) do
      assert.matches("rule " .. d .. "/" .. name .. ".lua quarantined after 3 failures in a row", err, 1, true)
      assert.matches("\n%s+0%s+3%s+%S+%s+%S+%s+" .. name .. "\n", err)
    end
  end)

  it("gives up a rule that loops or allocates while it loads, and starts with the others", function()
    local d = th.tmpdir()
    os.execute("cp rules/*.lua " .. th.quote(d))
    th.write(d .. "/load_loop.lua", "while true do end\nreturn {}\n")
    th.write(d .. "/load_bomb.lua", 'local t = {}\nfor i = 1, 1e9 do t[i] = ("x"):rep(100) .. i end\nreturn {}\n')
    local out, err, rc = th.run({ "replay", "--rules", d, DENIED })
    assert.equal(0, rc)
    assert.equal(10, #th.alerts(out))
    assert.matches("rule not loaded: " .. d .. "/load_loop.lua:1: instruction budget exceeded", err, 1, true)
    -- The memory budget stops it at about 1 s, the wall-clock limit at 1 s: either is a right answer.
    local at = "rule not loaded: " .. d .. "/load_bomb.lua"
    assert.is_truthy(err:find(at .. ":2: memory budget exceeded", 1, true) or
      err:find(at:gsub("%p", "%%%0") .. ": loading it ran for %d+ ms, past %-%-max%-time"), err)
    assert.matches("2 rules loaded", err, 1, true)
  end)

  it("takes --max-instructions and --max-memory, and refuses bad values", function()
    local d = rules_dir({
      { "busy", "local n = 0 for i = 1, 200000 do n = n + i end return false" },
      { "greedy", 'local s = ("x"):rep(3 * 2^20) return #s < 0' },
    }, 300)
    local out, err = th.run({ "replay", "--rules", d, DENIED })
    assert.equal(10, #th.alerts(out))
    assert.not_matches("budget exceeded", err, 1, true)  -- within the defaults
    out, err = th.run({ "replay", "--rules", d, "--max-instructions", "100k", "--max-memory", "2M", DENIED })
    assert.equal(10, #th.alerts(out))
    assert.matches("busy.lua:5: instruction budget exceeded (100000 instructions per call)", err, 1, true)
    assert.matches("greedy.lua:5: memory budget exceeded (2 MiB per call)", err, 1, true)
    for _, bad in ipairs({ { "--max-instructions", "lots" }, { "--max-instructions", "10" },
        { "--max-memory", "1K" }, { "--quarantine-after", "-1" } }) do
      local _, berr, brc = th.run({ "replay", bad[1], bad[2], DENIED })
      assert.equal(2, brc, bad[1] .. " " .. bad[2])
      assert.matches(bad[1] .. ": bad", berr, 1, true)
    end
  end)

  it("stays responsive while tailing: bombs stay within the budget and SIGTERM stops it at once", function()
    local d = rules_dir(HOSTILE, 400)
    local f = th.tmpdir() .. "/live.ndjson"
    th.write(f, "")
    h = th.start({ "run", "--no-state", "--rules", d, "--quarantine-after", "0", "--max-memory", "16M",
      "--max-instructions", "1M", "--poll", "50", f })
    assert.truthy(th.wait_for(function() return h.err():find("rules loaded", 1, true) end, 10))
    local lines = th.lines(DENIED)
    for i, l in ipairs(lines) do
      th.append(f, l .. "\n")
      if i % 4 == 0 then th.sleep(0.05) end
    end
    assert.truthy(th.wait_for(function() return h.count() >= 10 end, 60), h.err())
    th.sleep(0.3)
    assert.same({ [ev.MODEL_ACCESS] = 6, [ev.POLICY] = 4 }, th.by_rule(th.alerts(h.out())))
    -- Without the memory budget, the bombs alone would take gigabytes: in the host or any worker.
    local peak = peak_of_all(h.pid)
    io.stderr:write(string.format("# hostile rules while tailing: peak RSS of the host and its workers %.0f MiB%s\n",
      peak,
      ASAN and " (ASan build)" or ""))
    assert.is_true(peak < (ASAN and 600 or 150), string.format("peak RSS %.0f MiB", peak))
    -- A rule in an endless loop holds the loop for one budget at most.
    th.append(f, lines[1] .. "\n")
    local t0 = system.gettime()
    h.signal("TERM")
    assert.equal(0, h.wait(10), h.err())
    assert.is_true(system.gettime() - t0 < 5)
    assert.matches("SIGTERM: stopping", h.err(), 1, true)
  end)

  it("gives the authoring commands the same limits", function()
    local d = th.tmpdir()
    local src = rule(500, "bomb", 'local s = "x" while true do s = s .. s end'):gsub("  end,\n}",
      "  end,\n  tests = { { name = \"any event\", expect = false, event = { eventName = \"X\" } } },\n}")
    th.write(d .. "/bomb.lua", src)
    local out, err, rc = th.run({ "test", d .. "/bomb.lua" })
    assert.equal(1, rc)
    assert.matches("bomb.lua:5: memory budget exceeded", out, 1, true)
    assert.not_matches("traceback", err or "", 1, true)
  end)
end)
