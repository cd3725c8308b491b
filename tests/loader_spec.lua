-- The rule loader: compiling rule modules, reporting broken ones, running
-- their embedded tests.

local loader = require "loader"
local normalize = require "normalize"
local th = require "support.th"

local RULES = {
  "rules/aws_bedrock_unauthorized_foundation_model_access_attempt.lua",
  "rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua",
}

local function rule_file(src)
  local d = th.tmpdir()
  th.write(d .. "/r.lua", src)
  return d .. "/r.lua"
end

local MINIMAL = [[
return {
  rule_id = "11111111-2222-4333-8444-555555555555",
  name = "Minimal",
  description = "d",
  severity = "low",
  risk_score = 1,
  query = 'event.action: "X"',
}
]]

describe("loader", function()
  after_each(th.cleanup)

  describe("the two Bedrock rules", function()
    for _, path in ipairs(RULES) do
      it("loads " .. path .. " and passes every embedded test", function()
        local rule, err = loader.load_file(path)
        assert.is_nil(err)
        local results = loader.run_tests(rule, function(rec) return normalize.normalize(rec) end)
        assert.is_true(#results >= 10)
        for _, r in ipairs(results) do
          assert.is_true(r.ok, string.format("%s: %s expected %s, got %s %s", path, r.name,
            tostring(r.expect), tostring(r.got), r.err or ""))
        end
      end)
    end

    it("loads both from the rules directory, in name order", function()
      local rules, errors = loader.load_dir("rules")
      assert.same({}, errors)
      assert.equal(2, #rules)
      assert.equal(RULES[1], rules[1].file)
    end)
  end)

  describe("load_file()", function()
    it("reports a syntax error with file and line", function()
      local path = rule_file("return {\n  name = \"x\",\n  risk_score = = 1,\n}\n")
      local rule, err = loader.load_file(path)
      assert.is_nil(rule)
      assert.matches(path .. ":3:", err, 1, true)
    end)

    it("reports an error raised while the module runs with file and line", function()
      local path = rule_file("local x = nil\n\nreturn x.y\n")
      local _, err = loader.load_file(path)
      assert.matches(path .. ":3:", err, 1, true)
    end)

    it("reports metadata of the wrong type with the line of the field", function()
      local path = rule_file(MINIMAL:gsub("risk_score = 1", 'risk_score = "high"'))
      local _, err = loader.load_file(path)
      assert.matches(path .. ":6: field 'risk_score' must be a number, not a string", err, 1, true)
    end)

    it("reports a missing required field and a bad severity", function()
      local _, err = loader.load_file(rule_file(MINIMAL:gsub('  name = "Minimal",\n', "")))
      assert.matches("missing required field 'name'", err, 1, true)
      local _, err2 = loader.load_file(rule_file(MINIMAL:gsub('"low"', '"urgent"')))
      assert.matches(":5: severity must be low, medium, high or critical, not 'urgent'", err2, 1, true)
    end)

    it("reports a KQL syntax error at its line and column in the rule file", function()
      local path = rule_file(MINIMAL:gsub("query = 'event.action: \"X\"'",
        "query = [[\n  event.action: \"X\" and\n    (event.outcome: \"failure\"\n]]"))
      local _, err = loader.load_file(path)
      assert.matches(path .. ":10:", err, 1, true)
    end)

    it("refuses binary chunks", function()
      local path = rule_file(string.dump(function() return {} end))
      local rule, err = loader.load_file(path)
      assert.is_nil(rule)
      assert.matches("binary", err)
    end)

    it("holds an Elastic-format rule naming no max_signals to Kibana's default, 100; others to theirs", function()
      local function max(extra)
        return assert(loader.load_file(rule_file(MINIMAL:gsub("}\n$", extra .. "}\n")))).limits.max_signals
      end
      local meta = '  metadata = { maturity = "production" },\n'
      assert.equal(0, max(""))                                      -- a rule of one's own: none
      assert.equal(100, max(meta))                                  -- imported from Elastic's TOML
      assert.equal(7, max(meta .. "  max_signals = 7,\n"))          -- its own
      assert.same({ 100, true }, { loader.max_signals({ metadata = {} }) })
      assert.same({ 7, false }, { loader.max_signals({ metadata = {}, max_signals = 7 }) })
      assert.same({ nil, false }, { loader.max_signals({ metadata = {}, language = "sigma", sigma = {} }) })
    end)

    it("runs a Lua match function together with the query (both must hold)", function()
      local src = MINIMAL:gsub("}\n$", "  match = function(e) return e[\"event.outcome\"] == \"failure\" end,\n}\n")
      local rule = assert(loader.load_file(rule_file(src)))
      local event = require "event"
      local function m(doc) return rule.match(event.getter(doc), event.view(doc)) end
      assert.is_true(m({ event = { action = "X", outcome = "failure" } }))
      assert.is_false(m({ event = { action = "X", outcome = "success" } }))
      assert.is_false(m({ event = { action = "Y", outcome = "failure" } }))
    end)
  end)

  describe("load_dir()", function()
    it("reads a module's metadata without running its metamethods", function()
      local d = th.tmpdir()
      th.write(d .. "/a.lua", MINIMAL)
      th.write(d .. "/b.lua", "return setmetatable({}, { __index = function(_, k) error('no field ' .. k) end })")
      local rules, errors = loader.load_dir(d)
      assert.equal(1, #rules)
      assert.matches("b.lua:1: missing required field", errors[1])
    end)

    it("fails on a folder that cannot be read, and never passes its name to a shell", function()
      local d = th.tmpdir()
      local rules, err = loader.load_dir(d .. "/no$(touch " .. d .. "/pwned)")
      assert.is_nil(rules)
      assert.matches("cannot list", err)
      assert.is_nil(th.read(d .. "/pwned"))
    end)

    it("leaves out a broken rule and a duplicate rule_id, and loads the rest", function()
      local d = th.tmpdir()
      th.write(d .. "/a.lua", MINIMAL)
      th.write(d .. "/b.lua", MINIMAL)
      th.write(d .. "/c.lua", "return {")
      th.write(d .. "/notes.txt", "not a rule")
      local rules, errors = loader.load_dir(d)
      assert.equal(1, #rules)
      assert.equal(2, #errors)
      assert.matches("b.lua:1: rule_id 11111111-2222-4333-8444-555555555555 is already used by " .. d .. "/a.lua",
        errors[1], 1, true)
      assert.matches(d .. "/c.lua:1:", errors[2], 1, true)
    end)
  end)

  describe("run_tests()", function()
    it("reports a failing test and a test without expect", function()
      local src = MINIMAL:gsub("}\n$", [[
  tests = {
    { name = "wrong", expect = true, event = { eventName = "Y", eventSource = "s" } },
    { name = "no expect", event = { eventName = "X", eventSource = "s" } },
  },
}
]])
      local rule = assert(loader.load_file(rule_file(src)))
      local results = loader.run_tests(rule, normalize.normalize)
      assert.is_false(results[1].ok)
      assert.is_false(results[1].got)
      assert.is_false(results[2].ok)
      assert.matches("expect", results[2].err)
    end)
  end)
end)

describe("loader and EQL rules", function()
  after_each(th.cleanup)

  local function eql_rule(query, extra)
    return table.concat({
      "return {",
      '  rule_id = "11111111-2222-4333-8444-555555555556", name = "EQL", description = "d",',
      '  severity = "low", risk_score = 1, type = "eql", language = "eql",',
      extra or "",
      "  query = [[",
      query,
      "]],",
      "}", "" }, "\n")
  end

  it("runs an event query on the event's fields, the category in event_category_override's field", function()
    local path = rule_file(eql_rule('info where event.action : "addpermission*"\n  and event.outcome == "success"',
      '  event_category_override = "event.type",'))
    local rule, err = loader.load_file(path)
    assert(rule, err)
    assert.is_nil(rule.query)
    assert.equal("event", rule.eql.kind)
    local get = function(n)
      return ({ ["event.type"] = { "info" }, ["event.action"] = "AddPermission20150331v2",
        ["event.outcome"] = "success" })[n]
    end
    assert.is_true(rule.match(get))
    assert.is_false(rule.match(function(n) return n ~= "event.type" and get(n) or nil end))
  end)

  it("reports an EQL syntax error at its line and column in the rule file", function()
    local path = rule_file(eql_rule('any where event.action == "X"\n  and event.outcome = "success"'))
    local rule, err = loader.load_file(path)
    assert.is_nil(rule)
    assert.equal(path .. ":7:21: '=' is not an operator in EQL: use == (case-sensitive) or : (case-insensitive)", err)
  end)

  it("loads a sequence with its state: an event matches when a step or until does", function()
    local path = rule_file(eql_rule('sequence by user.name with maxspan=5m\n  [any where event.action == "a"]\n' ..
      '  [any where event.action == "b"]\nuntil [any where event.action == "u"]'))
    local rule = assert(loader.load_file(path))
    assert.equal("sequence", rule.state.kind)
    assert.equal(3, rule.state.type)
    assert.equal(2, rule.state.nsteps)
    assert.equal(300000, rule.state.span_ms)
    for _, action in ipairs({ "a", "b", "u" }) do
      assert.is_true(rule.match(function(n) return n == "event.action" and action or nil end))
    end
    assert.is_false(rule.match(function(n) return n == "event.action" and "c" or nil end))
    local other = assert(loader.load_file(rule_file(eql_rule('sequence by user.name with maxspan=5m\n' ..
      '  [any where event.action == "a"]\n  [any where event.action == "c"]'))))
    assert.are_not.equal(rule.state.fingerprint, other.state.fingerprint)
  end)

  it("refuses a sequence with a missing event, at its line", function()
    local path = rule_file(eql_rule('sequence by user.name with maxspan=5m\n  [any where true]\n  ![any where true]'))
    local rule, err = loader.load_file(path)
    assert.is_nil(rule)
    assert.matches("^" .. path:gsub("%p", "%%%0") .. ":6:1: step 2 of the sequence is a missing event", err)
  end)

  it("wants type and language eql together", function()
    local _, err = loader.load_file(rule_file((eql_rule('any where true'):gsub('language = "eql"',
      'language = "kuery"'))))
    assert.matches(':3: an EQL rule has type = "eql" and language = "eql"', err)
    local rule = loader.load_file(rule_file((eql_rule('any where true'):gsub('type = "eql", ', ''))))
    assert.is_truthy(rule)
  end)
end)
