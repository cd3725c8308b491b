-- explain.lua: a rule's verdict on one event, clause by clause.

local explain = require "explain"
local kql = require "kql"
local style = require "style"
local th = require "support.th"

-- A loaded-rule look-alike: a compiled query, and an optional Lua match.
local function rule(query, match, file)
  local q = assert(kql.compile(query, { chunkname = "r.lua" }))
  return { query = q, meta = { match = match }, file = file or "r.lua" }
end

-- The shape of a tree: op or text, value, children.
local function shape(node)
  local s = { node.text, node.value }
  for i, child in ipairs(node.children or {}) do s[i + 2] = shape(child) end
  return s
end

describe("explain", function()
  after_each(th.cleanup)

  describe("clause_text()", function()
    it("writes one field's condition back as KQL, value lists grouped as written", function()
      local cases = {
        { 'a: "x"', 'a: "x"' },
        { "a: x", "a: x" },
        { 'a: ("x" or "y")', 'a: ("x" or "y")' },
        { "a: *", "a: *" },
        { "a: x*y", "a: x*y" },
        { "a >= 5", "a >= 5" },
        { 'not a: "x"', 'not a: "x"' },
        { 'a: ("x" or not ("y" and "z"))', 'a: ("x" or not ("y" and "z"))' },
        { 'a: "say \\"hi\\""', 'a: "say \\"hi\\""' },
        { "a: x\\(1\\)", "a: x\\(1\\)" },
      }
      for _, c in ipairs(cases) do
        assert.equal(c[2], explain.clause_text(kql.compile(c[1]).ast), c[1])
      end
    end)

    it("gives text that compiles to the same clause", function()
      for _, src in ipairs({ 'a: ("x" or not "y*")', "a < 10", 'not a: (x or "y z")', "a: *x\\*y*" }) do
        local ast = kql.compile(src).ast
        local again = kql.compile(explain.clause_text(ast)).ast
        assert.equal(explain.clause_text(ast), explain.clause_text(again))
        for _, v in ipairs({ "x", "y", "z", "y z", "9", "11", "ax*yb", "x*y" }) do
          local get = function() return v end
          assert.equal(kql.compile(src).match(get), kql.compile(explain.clause_text(ast)).match(get), src .. " " .. v)
        end
      end
    end)
  end)

  describe("run()", function()
    local r = rule('a: "1" and (b: ("x" or "y") or c: *) and not d: "no"')

    it("lists the fields the query reads, in the order it names them, with their values", function()
      local x = explain.run(r, { a = "1", c = { 1, 2 } })
      assert.same({ { name = "a", value = "1" }, { name = "b" }, { name = "c", value = { 1, 2 } }, { name = "d" } },
        x.fields)
    end)

    it("keeps each field's condition one clause, and sets every node's truth value", function()
      local x = explain.run(r, { a = "1", b = "z", c = "here" })
      assert.is_true(x.verdict)
      assert.same({ "and", true, { 'a: "1"', true },
        { "or", true, { 'b: ("x" or "y")', false }, { "c: *", true } },
        { 'not d: "no"', true } }, shape(x.tree))
    end)

    it("names the first false clause of a failed and as the decider, with its line and column", function()
      local x = explain.run(r, { a = "1", b = "x", d = "no" })
      assert.is_false(x.verdict)
      assert.equal('not d: "no"', x.decider.text)
      assert.equal('not d: "no" is false (r.lua:1:42)', explain.because(x, "r.lua"))
    end)

    it("names the alternative that held in a true or, and says every clause held for a true and", function()
      local x = explain.run(rule('a: "1" or b: "2"'), { a = "0", b = "2" })
      assert.equal('b: "2"', x.decider.text)
      local all = explain.run(rule('a: "1" and b: "2"'), { a = "1", b = "2" })
      assert.equal("every clause held (f.lua:1:1)", explain.because(all, "f.lua"))
      local none = explain.run(rule('(a: "1" and b: "3") or b: "3"'), { a = "1", b = "2" })
      assert.equal("no alternative held (f.lua:1:2)", explain.because(none, "f.lua"))
    end)

    it("adds a Lua match function as a clause, with the fields it reads and its line", function()
      local d = th.tmpdir()
      th.write(d .. "/r.lua", "return {\n  query = 'a: 1',\n  match = function(e) return e.x == 2 end,\n}\n")
      local both = rule("a: 1", function(e) return e["user.name"] == "bob" and e["source.ip"] ~= nil end,
        d .. "/r.lua")
      local x = explain.run(both, { a = 1, user = { name = "bob" } })
      assert.is_false(x.verdict)
      assert.same({ { name = "a", value = 1 }, { name = "user.name", value = "bob" }, { name = "source.ip" } },
        x.fields)
      assert.equal("lua", x.decider.op)
      assert.equal(3, x.decider.line)
      assert.equal("the match function returned false (" .. d .. "/r.lua:3)", explain.because(x, d .. "/r.lua"))
    end)

    it("reports a Lua match function that raises, with no verdict", function()
      local x = explain.run(rule("a: 1", function() error("boom", 0) end, "/nonexistent.lua"), { a = 1 })
      assert.is_nil(x.verdict)
      assert.equal("boom", x.err)
    end)
  end)

  describe("tree_lines() and field_lines()", function()
    it("put line:col in a column, indent by depth, and show an absent field as (absent)", function()
      local x = explain.run(rule('a: "1" and\n  b: "2"'), { a = "1" })
      assert.same({ "  1:1  ✗ and", '  1:1    ✓ a: "1"', '  2:3    ✗ b: "2"' },
        explain.tree_lines(x.tree, style.new(false), "  "))
      assert.same({ '  a  "1"', "  b  (absent)" }, explain.field_lines(x.fields, "  "))
    end)
  end)
end)
