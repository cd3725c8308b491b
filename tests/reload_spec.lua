-- reload.lua: which changes go live, and when, over a file system in memory.

local reload = require "reload"
local normalize = require "normalize"
local th = require "support.th"

local POLICY = th.read("rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua")
local DIR = "rules"
local P = DIR .. "/policy.lua"
local NORM = "scripts/normalize.lua"

local function policy(version, from, to)
  local src = POLICY:gsub("\n  version = 1,", "\n  version = " .. version .. ",", 1)
  if from then src = src:gsub(from, to, 1) end
  return src
end

-- A reloader over files (path -> text) with a clock; running: the rules live.
local function setup(files)
  local t = { now = 1000, files = files, logs = {}, swaps = 0, rules = {}, normalizer = normalize }
  local fs = {
    list = function(dir)
      local names = {}
      for path in pairs(t.files) do
        local name = path:match("^" .. dir .. "/([^/]+)$")
        if name then names[#names + 1] = name end
      end
      return names
    end,
    read = function(path) return t.files[path] end,
    stat = function() return nil end,
    now = function() return t.now end,
  }
  t.r = reload.new({
    dir = DIR, normalizer = NORM, fs = fs, log = function(m) t.logs[#t.logs + 1] = m end,
    limited = function(_, fn, ...) return pcall(fn, ...) end,
    current = function() return t.rules, t.normalizer end,
    swap = function(list, norm)
      t.rules, t.normalizer, t.swaps = list, norm, t.swaps + 1
    end,
  })
  t.r:prime()
  t.r:scan(true, true)  -- load what is there, as the host's start does
  t.logs = {}
  function t.versions()
    local v = {}
    for _, r in ipairs(t.rules) do v[r.file] = r.meta.version or true end
    return v
  end
  function t.log() return table.concat(t.logs, "\n") end
  return t
end

describe("reload", function()
  it("takes a settled change at once", function()
    local t = setup({ [P] = policy(1), [NORM] = "-- normalizer" })
    t.files[P] = policy(2)
    assert.equal(0, t.r:scan(false, true))
    assert.same({ [P] = 2 }, t.versions())
    assert.matches('"AWS Bedrock Unauthorized Resource%-Based Policy Modification Attempt" version 2 reloaded ' ..
      "from rules/policy.lua in [%d.]+ ms, 11 tests passed", t.log())
  end)

  it("without events, waits until a change holds still between two looks", function()
    local t = setup({ [P] = policy(1) })
    t.files[P] = policy(2, "\n}%s*$", "")  -- half written
    assert.equal(reload.SETTLE_MS, t.r:scan(false, false))
    t.files[P] = policy(2)                 -- still being written
    assert.equal(reload.SETTLE_MS, t.r:scan(false, false))
    assert.same({ [P] = 1 }, t.versions())
    assert.equal(0, t.r:scan(false, false))  -- the same as last time: done
    assert.same({ [P] = 2 }, t.versions())
    assert.same({}, (t.log():match("unexpected") and { "half-written file loaded" }) or {})
  end)

  it("does nothing for a file saved with the same text", function()
    local t = setup({ [P] = policy(1) })
    local swaps = t.swaps
    assert.equal(0, t.r:scan(false, true))
    assert.equal(swaps, t.swaps)
    assert.same({}, t.logs)
  end)

  it("keeps the running version of a rule that does not compile, and does not try it again until it changes",
    function()
    local t = setup({ [P] = policy(1) })
    t.files[P] = policy(2, "\n  version = 2,", "\n  version = = 2,")
    t.r:scan(false, true)
    assert.same({ [P] = 1 }, t.versions())
    assert.matches("^rules/policy.lua:209: unexpected symbol near '='; the running \"AWS Bedrock [^\"]+\" " ..
      "version 1 stays$", t.log())
    t.r:scan(false, true)
    assert.equal(1, #t.logs)
  end)

  it("names the failing test, its line and the rule file", function()
    local t = setup({ [P] = policy(1) })
    t.files[P] = policy(2, '"PutResourcePolicy" or "DeleteResourcePolicy"', '"PutResourcePolicy"')
    t.r:scan(false, true)
    assert.same({ [P] = 1 }, t.versions())
    assert.matches('^rules/policy.lua:252: test "denied DeleteResourcePolicy %(AccessDeniedException%)" failed: ' ..
      "expected a match, got no match %(and 1 more failing test%); the running", t.log())
  end)

  it("takes a deleted rule out only once it stays away, and a renamed one over at once", function()
    local t = setup({ [P] = policy(1) })
    t.files[P] = nil
    local wait = t.r:scan(false, true)
    assert.is_true(wait > 0 and wait <= reload.GONE_MS)
    assert.same({ [P] = 1 }, t.versions())                   -- deleted ...
    t.files[P] = policy(2)                                   -- ... and re-created: no gap
    assert.equal(0, t.r:scan(false, true))
    assert.same({ [P] = 2 }, t.versions())
    assert.not_matches("removed", t.log())

    t.files[P], t.files[DIR .. "/renamed.lua"] = nil, policy(2)  -- renamed
    assert.equal(0, t.r:scan(false, true))
    assert.same({ [DIR .. "/renamed.lua"] = 2 }, t.versions())
    assert.matches("removed: rules/policy.lua is gone, rules/renamed.lua has its rule_id", t.log())

    t.files[DIR .. "/renamed.lua"] = nil                     -- deleted for good
    t.r:scan(false, true)
    t.now = t.now + reload.GONE_MS / 1000
    assert.equal(reload.SETTLE_MS, t.r:scan(false, false))
    assert.equal(0, t.r:scan(false, false))
    assert.same({}, t.versions())
    assert.matches("version 2 removed: rules/renamed.lua is gone", t.log())
  end)

  it("refuses a second file with a rule_id already running", function()
    local t = setup({ [P] = policy(1) })
    t.files[DIR .. "/twin.lua"] = policy(1)
    t.r:scan(false, true)
    assert.same({ [P] = 1 }, t.versions())
    assert.matches("^rules/twin.lua:92: rule_id 2e99477f%-6099%-48a9%-ae0e%-68801d97079c is already used by " ..
      "rules/policy.lua; not loaded$", t.log())
  end)

  it("ignores hidden files and files that are not .lua", function()
    local t = setup({ [P] = policy(1) })
    t.files[DIR .. "/.#policy.lua"] = "garbage"
    t.files[DIR .. "/policy.lua~"] = "garbage"
    t.r:scan(false, true)
    assert.same({}, t.logs)
  end)

  it("on SIGHUP reloads every rule, changed or not, and the normalizer when its text changed", function()
    local t = setup({ [P] = policy(1), [NORM] = th.read("scripts/normalize.lua") })
    t.r:scan(true, true)
    assert.same({ "rule \"AWS Bedrock Unauthorized Resource-Based Policy Modification Attempt\" version 1 " ..
      "reloaded from rules/policy.lua in " .. t.logs[1]:match("in ([%d.]+ ms)") .. ", 11 tests passed" }, t.logs)
    assert.equal(normalize, t.normalizer)  -- the same text: the running one stays, unlimited (host.lua)
    t.files[NORM] = t.files[NORM] .. "-- edited\n"
    t.r:scan(true, true)
    assert.matches("normalizer scripts/normalize.lua reloaded in [%d.]+ ms, 11 tests of the rules still pass", t.log())
    assert.not_equal(normalize, t.normalizer)
  end)

  it("refuses a normalizer that breaks a rule's passing test, or does not load", function()
    local t = setup({ [P] = policy(1), [NORM] = th.read("scripts/normalize.lua") })
    local running = t.normalizer
    t.files[NORM] = t.files[NORM]:gsub("\nreturn M\n$", "\nM.normalize = function() return {} end\nreturn M\n")
    t.r:scan(false, true)
    assert.equal(running, t.normalizer)
    assert.matches('^normalizer not reloaded: with it, rules/policy.lua:232: test "denied PutResourcePolicy ' ..
      '%(AccessDeniedException%)" failed: expected a match, got no match %(and 3 more failing tests%); ' ..
      "the running version stays$", t.log())
    t.files[NORM] = "return {"
    t.r:scan(false, true)
    assert.matches("normalizer not reloaded: scripts/normalize.lua:1: unexpected symbol near <eof>", t.logs[2])
    t.files[NORM] = "return { normalize = 1 }"
    t.r:scan(false, true)
    assert.matches("must return a table with a normalize function", t.logs[3])
    assert.equal(running, t.normalizer)
  end)

  it("keeps the running rules when the folder cannot be read, and says so once", function()
    local t = setup({ [P] = policy(1) })
    t.r.o.fs.list = function() return nil, "rules: No such file or directory" end
    t.r:scan(false, true)
    t.r:scan(false, true)
    assert.same({ "rules folder rules: No such file or directory; the running rules stay" }, t.logs)
    assert.same({ [P] = 1 }, t.versions())
  end)
end)
