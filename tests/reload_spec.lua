-- reload.lua: which changes go live, and when, over a file system in memory.

-- reload.lua: the gate the gate worker runs over the changes the host found.
-- (Which files changed, and when to look, is the host's: tests/e2e_reload_spec.lua.)

local reload = require "reload"
local normalize = require "normalize"
local loader = require "loader"
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

-- A gate over running rules (path -> text), as the gate worker holds them.
local function setup(files)
  local t = { now = 1000, logs = {}, rules = {}, normalizer = normalize }
  for path, text in pairs(files) do
    local rule = assert(loader.load_file(path, { source = text }))
    rule.src = text
    t.rules[#t.rules + 1] = rule
  end
  t.g = reload.new({
    normalizer = NORM, now = function() return t.now end, log = function(m) t.logs[#t.logs + 1] = m end,
    limited = function(_, fn, ...) return pcall(fn, ...) end,
    current = function() return t.rules, t.normalizer end,
    swap = function(list, norm) t.rules, t.normalizer = list, norm end,
  })
  function t.apply(req) t.g:apply(req) end
  function t.change(path, text, mtime) t.apply({ changed = { { path = path, text = text, mtime = mtime } } }) end
  function t.versions()
    local v = {}
    for _, r in ipairs(t.rules) do v[r.file] = r.meta.version or true end
    return v
  end
  function t.log() return table.concat(t.logs, "\n") end
  return t
end

describe("reload", function()
  it("takes a new version that passes the gate, and says when it is live after the save", function()
    local t = setup({ [P] = policy(1) })
    t.change(P, policy(2), (t.now - 0.061) * 1e9)
    assert.same({ [P] = 2 }, t.versions())
    assert.matches('^rule "AWS Bedrock Unauthorized Resource%-Based Policy Modification Attempt" version 2 reloaded ' ..
      "from rules/policy.lua in [%d.]+ ms, 11 tests passed, live 61 ms after the save$", t.log())
  end)

  it("adds a rule from a new file", function()
    local t = setup({})
    t.change(P, policy(1))
    assert.same({ [P] = 1 }, t.versions())
    assert.matches("version 1 added from rules/policy.lua", t.log())
  end)

  it("keeps the running version of a rule that does not compile", function()
    local t = setup({ [P] = policy(1) })
    t.change(P, policy(2, "\n  version = 2,", "\n  version = = 2,"))
    assert.same({ [P] = 1 }, t.versions())
    assert.matches("^rules/policy.lua:209: unexpected symbol near '='; the running \"AWS Bedrock [^\"]+\" " ..
      "version 1 stays$", t.log())
  end)

  it("names the failing test, its line and the rule file", function()
    local t = setup({ [P] = policy(1) })
    t.change(P, policy(2, '"PutResourcePolicy" or "DeleteResourcePolicy"', '"PutResourcePolicy"'))
    assert.same({ [P] = 1 }, t.versions())
    assert.matches('^rules/policy.lua:252: test "denied DeleteResourcePolicy %(AccessDeniedException%)" failed: ' ..
      "expected a match, got no match %(and 1 more failing test%); the running", t.log())
  end)

  it("takes out a removed rule, and a missing one as soon as a new file has its rule_id", function()
    local t = setup({ [P] = policy(1) })
    t.apply({ missing = { P } })                             -- gone for a moment: stays
    assert.same({ [P] = 1 }, t.versions())
    t.apply({ missing = { P }, changed = { { path = DIR .. "/renamed.lua", text = policy(2) } } })
    assert.same({ [DIR .. "/renamed.lua"] = 2 }, t.versions())
    assert.matches("removed: rules/policy.lua is gone, rules/renamed.lua has its rule_id", t.log())
    t.apply({ removed = { DIR .. "/renamed.lua" } })
    assert.same({}, t.versions())
    assert.matches("version 2 removed: rules/renamed.lua is gone", t.log())
  end)

  it("refuses a second file with a rule_id already running", function()
    local t = setup({ [P] = policy(1) })
    t.change(DIR .. "/twin.lua", policy(1))
    assert.same({ [P] = 1 }, t.versions())
    assert.matches("^rules/twin.lua:92: rule_id 2e99477f%-6099%-48a9%-ae0e%-68801d97079c is already used by " ..
      "rules/policy.lua; not loaded$", t.log())
  end)

  it("on SIGHUP reloads every rule it is given, without saying when it was saved", function()
    local t = setup({ [P] = policy(1) })
    t.apply({ all = true, changed = { { path = P, text = policy(1), mtime = t.now * 1e9 } } })
    assert.same({ "rule \"AWS Bedrock Unauthorized Resource-Based Policy Modification Attempt\" version 1 " ..
      "reloaded from rules/policy.lua in " .. t.logs[1]:match("in ([%d.]+ ms)") .. ", 11 tests passed" }, t.logs)
  end)

  it("takes a normalizer that keeps every passing test passing", function()
    local t = setup({ [P] = policy(1) })
    t.apply({ normalizer = th.read("scripts/normalize.lua") .. "-- edited\n" })
    assert.matches("normalizer scripts/normalize.lua reloaded in [%d.]+ ms, 11 tests of the rules still pass", t.log())
    assert.not_equal(normalize, t.normalizer)
  end)

  it("refuses a normalizer that breaks a rule's passing test, or does not load", function()
    local t = setup({ [P] = policy(1) })
    local running = t.normalizer
    local broken = th.read("scripts/normalize.lua"):gsub("\nreturn M\n$",
      "\nM.normalize = function() return {} end\nreturn M\n")
    t.apply({ normalizer = broken })
    assert.equal(running, t.normalizer)
    assert.matches('^normalizer not reloaded: with it, rules/policy.lua:232: test "denied PutResourcePolicy ' ..
      '%(AccessDeniedException%)" failed: expected a match, got no match %(and 3 more failing tests%); ' ..
      "the running version stays$", t.log())
    t.apply({ normalizer = "return {" })
    assert.matches("normalizer not reloaded: scripts/normalize.lua:1: unexpected symbol near <eof>", t.logs[2])
    t.apply({ normalizer = "return { normalize = 1 }" })
    assert.matches("must return a table with a normalize function", t.logs[3])
    assert.equal(running, t.normalizer)
  end)

  it("publishes the item in flight for the host's watchdog: 0 the normalizer, then each file", function()
    local t = setup({ [P] = policy(1) })
    local steps = {}
    t.g.o.step = function(i) steps[#steps + 1] = i end
    t.apply({ normalizer = th.read("scripts/normalize.lua"), changed = { { path = P, text = policy(2) },
      { path = DIR .. "/b.lua", text = "return {" } } })
    assert.same({ 0, 1, 2 }, steps)
  end)
end)
