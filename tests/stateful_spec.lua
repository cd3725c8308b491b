-- The worker's half of new_terms and threshold rules (scripts/stateful.lua): their parameters as
-- Elastic's TOML has them, the fingerprint that keeps or drops a rule's state, and the keys an
-- event gives; and the loader taking such rules in.

local loader = require "loader"
local stateful = require "stateful"
local th = require "support.th"

local function rule_file(src)
  local d = th.tmpdir()
  th.write(d .. "/r.lua", src)
  return d .. "/r.lua"
end

local HEAD = [[
return {
  rule_id = "11111111-2222-4333-8444-555555555555",
  name = "Stateful",
  description = "d",
  severity = "low",
  risk_score = 1,
  query = 'event.action: "ConsoleLogin"',
]]

local NEW_TERMS = HEAD .. [[
  type = "new_terms",
  new_terms = {
    field = "new_terms_fields",
    value = { "cloud.account.id", "user.name" },
    history_window_start = {
      { field = "history_window_start", value = "now-7d" },
    },
  },
}
]]

local THRESHOLD = HEAD .. [[
  type = "threshold",
  from = "now-9m",
  threshold = {
    field = { "source.ip" },
    value = 10,
    cardinality = {
      { field = "user.name", value = 3 },
    },
  },
}
]]

local function load(src) return loader.load_file(rule_file(src)) end

describe("stateful", function()
  teardown(th.cleanup)

  describe("params()", function()
    it("reads new_terms as Elastic's TOML has it", function()
      local r = assert(load(NEW_TERMS))
      assert.equal("new_terms", r.state.kind)
      assert.same({ "cloud.account.id", "user.name" }, r.state.fields)
      assert.equal(7 * 86400, r.state.window_s)
      assert.equal(stateful.TYPES.new_terms, r.state.type)
    end)

    it("reads threshold: group-by fields, value, cardinality, and `from` as its window", function()
      local r = assert(load(THRESHOLD))
      assert.same({ "source.ip" }, r.state.fields)
      assert.equal(10, r.state.value)
      assert.same({ field = "user.name", value = 3 }, r.state.cardinality)
      assert.equal(9 * 60, r.state.window_s)
      local none = assert(load(THRESHOLD:gsub('field = { "source.ip" },', 'field = {},')))
      assert.same({}, none.state.fields)
    end)

    it("reports bad parameters at their line", function()
      local _, err = load(NEW_TERMS:gsub('"now%-7d"', '"yesterday"'))
      assert.matches("r%.lua:9: new_terms%.history_window_start must be date math like now%-7d, not 'yesterday'", err)
      _, err = load(THRESHOLD:gsub("value = 10,", "value = 0,"))
      assert.matches("r%.lua:10: threshold%.value must be a whole number from 1 to 10000", err)
      _, err = load(HEAD .. '  type = "new_terms",\n}\n')
      assert.matches("r%.lua:8: a new_terms rule needs new_terms = ", err)
      _, err = load(HEAD .. '  type = "esql",\n}\n')
      assert.matches("type 'esql' is not supported here", err)
    end)

    it("keeps the fingerprint through other edits, and changes it with the query or the parameters", function()
      local fp = assert(load(NEW_TERMS)).state.fingerprint
      assert.equal(fp, assert(load(NEW_TERMS:gsub('description = "d"', 'description = "other"'))).state.fingerprint)
      assert.are_not.equal(fp, assert(load(NEW_TERMS:gsub('"ConsoleLogin"', '"GetCallerIdentity"'))).state.fingerprint)
      assert.are_not.equal(fp, assert(load(NEW_TERMS:gsub("now%-7d", "now-8d"))).state.fingerprint)
      assert.is_true(math.type(fp) == "integer")
    end)
  end)

  describe("keys()", function()
    local src = { path = "f", offset = 0 }

    it("gives one combination per element of an array field, and none when a field is missing", function()
      local r = assert(load(NEW_TERMS))
      local keys = stateful.keys(r, { cloud = { account = { id = "1" } }, user = { name = { "a", "b" } } }, src)
      assert.equal(2, #keys)
      assert.equal('["1","a"]', keys[1].key)
      assert.same({ "1", "b" }, keys[2].values)
      assert.is_nil(keys[1].uuid, "a new_terms candidate's uuid comes with its alert")
      assert.same({}, stateful.keys(r, { cloud = { account = { id = "1" } } }, src))
      assert.same({}, stateful.keys(r, { cloud = { account = { id = "1" } }, user = { name = {} } }, src))
    end)

    it("stops at MAX_COMBOS combinations an event", function()
      local r = assert(load(NEW_TERMS))
      local ids, names = {}, {}
      for i = 1, 10 do ids[i], names[i] = tostring(i), "u" .. i end
      assert.equal(stateful.MAX_COMBOS, #stateful.keys(r, { cloud = { account = { id = ids } },
        user = { name = names } }, src))
    end)

    it("gives a threshold group as Elastic's terms, with the cardinality field's value", function()
      local r = assert(load(THRESHOLD))
      local keys = stateful.keys(r, { source = { ip = "10.0.0.1" }, user = { name = "alice" } }, src)
      assert.equal(1, #keys)
      -- the key's text: keys in byte order in the binary (thsys.encode); under plain lua5.4,
      -- lua-cjson's order, which its hash decides: compared as what it says
      assert.same({ { field = "source.ip", value = "10.0.0.1" } }, require("cjson").decode(keys[1].key))
      assert.equal('"alice"', keys[1].distinct)
      assert.equal("", stateful.keys(r, { source = { ip = "10.0.0.1" } }, src)[1].distinct)
    end)
  end)

  describe("candidates()", function()
    it("sends a combination this worker sent whole lately without its alert, for half its window", function()
      local r = assert(load(NEW_TERMS))
      local function at(t, id)
        return stateful.candidates(r, { ["@timestamp"] = t, event = { id = id }, cloud = { account = { id = "1" } },
          user = { name = "a" } }, { path = "f", offset = 0 }, "2024-08-01T00:00:00.000Z", true)[1]
      end
      local first = at("2024-07-31T10:00:00.000Z", "e1")
      assert.truthy(first.line)
      assert.matches('"new_terms":%["1","a"%]', first.line)
      local again = at("2024-07-31T11:00:00.000Z", "e2")
      assert.is_true(again.light)
      assert.is_nil(again.line)
      assert.truthy(at("2024-08-04T11:00:00.000Z", "e3").line, "3.5 days on: whole again")
      assert.truthy(at("2024-07-30T10:00:00.000Z", "e4").line, "an earlier event: whole")
    end)

    it("gives each combination of one event its own alert id", function()
      local r = assert(load(NEW_TERMS))
      local list = stateful.candidates(r, { ["@timestamp"] = "2024-07-31T10:00:00.000Z", event = { id = "e1" },
        cloud = { account = { id = "1" } }, user = { name = { "x", "y" } } }, { path = "f", offset = 0 },
        "2024-08-01T00:00:00.000Z", true)
      assert.equal(2, #list)
      assert.matches("^%x+%-%x+%-5", list[1].uuid)
      assert.are_not.equal(list[1].uuid, list[2].uuid)
    end)

    it("builds the document from a getter only for a candidate that carries its alert", function()
      local r = assert(load(NEW_TERMS))
      local fields = { ["@timestamp"] = "2024-07-31T10:00:00.000Z", ["event.id"] = "g1",
        ["cloud.account.id"] = "7", ["user.name"] = "z" }
      local doc = { ["@timestamp"] = fields["@timestamp"], event = { id = "g1" }, cloud = { account = { id = "7" } },
        user = { name = "z" } }
      local built = 0
      local function whole() built = built + 1 return doc, true end
      local function get(name) return fields[name] end
      local src = { path = "f", offset = 0 }
      local first = stateful.candidates(r, get, src, "2024-08-01T00:00:00.000Z", nil, whole)[1]
      assert.truthy(first.line)
      assert.equal(1, built)
      fields["event.id"] = "g2"
      local again = stateful.candidates(r, get, src, "2024-08-01T00:00:00.000Z", nil, whole)[1]
      assert.is_true(again.light)
      assert.equal(1, built, "a combination sent lately: no document")
    end)
  end)

  describe("tests of several events", function()
    it("need the binary's store under plain lua5.4, and say so", function()
      local r = assert(load(NEW_TERMS))
      local res = loader.run_tests(r, function(rec) return rec end,
        { { name = "two", expect = 1, events = { { event = { action = "ConsoleLogin" } } } } })
      assert.is_false(res[1].ok)
      assert.matches("needs the trailhound binary", res[1].err)
    end)

    it("count a plain query rule's matches", function()
      local r = assert(loader.load_file(rule_file(HEAD .. "}\n")))
      local res = loader.run_tests(r, function(rec) return rec end, {
        { name = "two of three", expect = 2, events = { { event = { action = "ConsoleLogin" } },
          { event = { action = "Other" } }, { event = { action = "ConsoleLogin" } } } },
        { name = "not a number", expect = true, events = { {} } },
      })
      assert.is_true(res[1].ok)
      assert.equal(2, res[1].got)
      assert.equal("test has no whole number 'expect'", res[2].err)
    end)
  end)
end)
