-- The environment a rule runs in.

local sandbox = require "sandbox"

local function run(code, log)
  local env = sandbox.env("rules/t.lua", log)
  local chunk = assert(load(code, "=t", "t", env))
  return pcall(chunk)
end

describe("sandbox", function()
  describe("env()", function()
    it("offers the basic functions, string, table, math, utf8 and os.time/date/clock", function()
      local ok, v = run([[
        return string.upper("a") .. table.concat({ "b" }) .. math.max(1, 2) .. utf8.char(67)
          .. type(os.time()) .. type(os.date("!%Y")) .. type(os.clock()) .. select("#", 1, 2)
          .. tostring(pcall(error, "x")) .. ("%d"):format(3)
      ]])
      assert.is_true(ok, v)
      assert.equal("Ab2Cnumberstringnumber2false3", v)
    end)

    for _, call in ipairs({ "io.open('/etc/passwd')", "os.execute('true')", "os.exit(1)", "os.getenv('HOME')",
        "require('os')", "string.dump(print)", "debug.getinfo(1)", "collectgarbage()", "dofile('/x')",
        "loadfile('/x')", "package.loadlib('x', 'y')" }) do
      it("blocks " .. call .. " with an error that names it", function()
        local ok, err = run("return " .. call)
        assert.is_false(ok)
        local name = call:match("^[%w%.]+")
        assert.matches("blocked: " .. name:gsub("%.", "%%."), err)
      end)
    end

    it("lets a rule draw random numbers but not reseed the host's generator", function()
      local ok, v = run("return math.random(1, 6)")
      assert.is_true(ok)
      assert.is_true(v >= 1 and v <= 6)
      local ok2, err = run("math.randomseed(42)")
      assert.is_false(ok2)
      assert.matches("blocked: math.randomseed", err)
    end)

    it("refuses finalizers, which would run outside the rule's call", function()
      local ok, err = run("setmetatable({}, { __gc = function() end })")
      assert.is_false(ok)
      assert.matches("blocked: __gc", err)
      assert.is_true((run("return setmetatable({}, { __index = {} })")))
    end)

    it("refuses binary chunks through load", function()
      local ok, err = run("return load(string.dump and '\\27Lua', 'x', 'b')")
      assert.is_false(ok)
      assert.matches("blocked: load of binary chunks", err)
    end)

    it("runs text chunks through load in the rule's own environment", function()
      local ok, v = run("x_global = 5 return load('return x_global')()")
      assert.is_true(ok, v)
      assert.equal(5, v)
    end)

    it("refuses setmetatable on anything but a table: other metatables are the whole host's", function()
      local ok, err = run('setmetatable("", { __index = {} })')
      assert.is_false(ok)
      assert.matches("blocked: setmetatable on a string value", err, 1, true)
      assert.equal("A", ("a"):upper())
    end)

    it("raises a blocked call at the rule's line", function()
      local env = sandbox.env("rules/t.lua")
      local chunk = assert(load("local x = 1\nlocal f = io.open('/x')\nreturn f", "@rules/t.lua", "t", env))
      local ok, err = pcall(chunk)
      assert.is_false(ok)
      assert.equal("rules/t.lua:2: blocked: io.open", err)
    end)

    it("does not hand out the string metatable", function()
      local ok, v = run("return getmetatable('')")
      assert.is_true(ok)
      assert.is_nil(v)
      assert.equal("A", ("a"):upper())
    end)

    it("keeps each rule's globals and libraries apart from the host's and the others'", function()
      local a = sandbox.env("a")
      local b = sandbox.env("b")
      load("string.upper = nil; leaked = true", "=a", "t", a)()
      assert.is_nil(rawget(_G, "leaked"))
      assert.is_function(string.upper)
      assert.is_function(b.string.upper)
      assert.is_nil(b.leaked)
    end)

    it("sends print to the log, named after the rule, never to stdout", function()
      local lines = {}
      run("print('hello', 42)", function(m) lines[#lines + 1] = m end)
      assert.same({ "rules/t.lua: hello\t42" }, lines)
    end)
  end)
end)
