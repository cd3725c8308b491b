-- luasource.lua: Lua values written as source that reads back to the same values, text in
-- long brackets as written, tables kept on one line when they fit.

local luasource = require "luasource"

local function back(src)
  return assert(load("return " .. src, "=src", "t", { math = math }))()
end

describe("luasource", function()
  describe("string()", function()
    local CASES = {
      "", "plain", 'a "quote"', "back\\slash", "a\nb\n", "\nleading newline", "ends with ]", "ends with ]=",
      "holds ]] and ]=]", "]]\n]=]\n]==]", "tab\there", "cr\r\nlf", "bell \7", "del \127", "é ʎǝʞ 😀",
      "not utf-8 \255\254", "  trailing spaces  \n  kept  ",
    }
    for _, s in ipairs(CASES) do
      local shown = ("%q"):format(s):gsub("\\\n", "\\n")
      if not utf8.len(s) then shown = shown:gsub("[\128-\255]", function(c) return "\\" .. c:byte() end) end
      it(string.format("writes %s so that it reads back the same", shown), function()
        assert.equal(s, back(luasource.string(s)))
      end)
    end

    it("puts text with a newline, a quote or a backslash in long brackets, as written", function()
      assert.equal('[[\n## Guide\n\nSteps "quoted"\n]]', luasource.string('## Guide\n\nSteps "quoted"\n'))
      assert.equal('[[event.action: "X"]]', luasource.string('event.action: "X"'))
      assert.equal("[=[\na]]b\n]=]", luasource.string("a]]b\n"))
      assert.equal('"plain"', luasource.string("plain"))
    end)

    it("quotes text that long brackets would change: a carriage return, control characters", function()
      assert.equal('"a\\r\\nb"', luasource.string("a\r\nb"))
      assert.equal('"x\\x07"', luasource.string("x\7"))
    end)
  end)

  describe("value()", function()
    it("writes numbers, booleans and keys of every kind so that they read back the same", function()
      local v = { 1, 2.0, -0.5, math.maxinteger, math.mininteger, 1e300, math.huge, -math.huge, true, false,
        ["end"] = 1, ["with space"] = 2, [20] = 3, [1.5] = 4, [true] = 5, _x = { y = {} } }
      assert.same(v, back(luasource.value(v)))
      assert.equal("float", math.type(back(luasource.value(2.0))))
      local nan = back(luasource.value(0 / 0))
      assert.is_true(nan ~= nan)
    end)

    it("keeps a table of scalars on one line when it fits, else one entry a line", function()
      assert.equal('{ id = "TA0003", name = "Persistence" }', luasource.value({ name = "Persistence", id = "TA0003" }))
      local long = luasource.value({ string.rep("a", 70), string.rep("b", 70) })
      assert.equal('{\n  "' .. string.rep("a", 70) .. '",\n  "' .. string.rep("b", 70) .. '",\n}', long)
      assert.equal("{\n  x = { 1 },\n}", luasource.value({ x = { 1 } }, { width = 12 }))
    end)

    it("orders keys as asked, and writes a value another way when asked", function()
      local src = luasource.value({ b = 1, a = 2, n = "NULL" }, {
        order = function(_, keys) table.sort(keys, function(x, y) return x > y end) return keys end,
        special = function(v) return v == "NULL" and "sigma.NULL" or nil end,
      })
      assert.equal("{ n = sigma.NULL, b = 1, a = 2 }", src)
    end)

    it("refuses what is not data", function()
      assert.has_error(function() luasource.value({ f = print }) end)
    end)
  end)
end)
