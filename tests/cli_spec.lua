-- cli.lua: argument parsing, exit codes, and that nothing escapes main.

local cli = require "cli"

-- A stream that keeps what is written to it.
local function sink()
  local s = { text = "" }
  function s.write(self, ...)
    for _, x in ipairs({ ... }) do self.text = self.text .. x end
    return self
  end
  function s.flush() end
  return s
end

local SYS = {
  isatty = function() return false end,
  columns = function() return nil end,
  home = ".",
}

-- main(argv) with the output kept: exit code, stdout, stderr.
local function main(argv)
  local out, err = sink(), sink()
  cli.set_sys(SYS)
  cli.set_streams(out, err)
  local code = cli.main(argv)
  cli.set_streams(io.stdout, io.stderr)
  return code, out.text, err.text
end

-- parse() raising a usage failure: its code and message.
local function parse_failure(args, spec)
  local ok, e = pcall(cli.parse, "test", args, spec)
  assert.is_false(ok)
  return e.code, e.msg
end

describe("cli", function()
  describe("parse()", function()
    it("takes options with a value, spaced or with =, flags, and the rest as arguments", function()
      local opts, pos = cli.parse("test", { "--format", "tap", "a", "--strict", "-", "b" },
        { format = "value", strict = "flag" })
      assert.same({ format = "tap", strict = true }, opts)
      assert.same({ "a", "-", "b" }, pos)
      opts = cli.parse("test", { "--format=junit" }, { format = "value" })
      assert.equal("junit", opts.format)
    end)

    it("ends options at --", function()
      local _, pos = cli.parse("test", { "--", "--strict", "-x" }, { strict = "flag" })
      assert.same({ "--strict", "-x" }, pos)
    end)

    it("refuses unknown options, a missing value and a value for a flag, as bad usage", function()
      local code, msg = parse_failure({ "--nope" }, {})
      assert.equal(2, code)
      assert.matches("^trailhound test: unknown option '%-%-nope'\nusage: trailhound test", msg)
      assert.equal(2, (parse_failure({ "--format" }, { format = "value" })))
      assert.equal(2, (parse_failure({ "--strict=yes" }, { strict = "flag" })))
      assert.equal(2, (parse_failure({ "-q" }, {})))
    end)

    it("takes - and -:LINE (standard input and a line of it) as arguments, not options", function()
      local _, pos = cli.parse("explain", { "r", "-:12" }, {})
      assert.same({ "r", "-:12" }, pos)
      assert.equal(2, (parse_failure({ "-:x" }, {})))
    end)
  end)

  describe("main()", function()
    it("answers an unknown command, or none, with the usage of every command and code 2", function()
      local code, out, err = main({ "frobnicate" })
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("trailhound frobnicate: unknown command", err, 1, true)
      assert.matches("usage: trailhound test [--format text|tap|junit] [RULE|DIR]...\n"
        .. "       trailhound check [--strict] [--config FILE] [--geoip-asn FILE] [--geoip-city FILE] [RULE|DIR]...\n",
        err, 1, true)
      assert.equal(2, (main({})))
    end)

    it("prints a command's usage on --help, with code 0", function()
      local code, out = main({ "explain", "--help" })
      assert.equal(0, code)
      assert.matches("^usage: trailhound explain %[%-%-record N%] RULE EVENTS%[:LINE%]\n", out)
    end)

    it("runs a command and returns its code", function()
      local code, out = main({ "check", "rules" })
      assert.equal(0, code)
      assert.equal("2 rules checked: 0 errors, 0 warnings\n", out)
    end)

    it("turns an error that escapes a command into one line, code 1, no traceback", function()
      local show = cli.commands.show
      cli.commands.show = function() error("boom", 0) end
      local code, _, err = main({ "show", "x" })
      cli.commands.show = show
      assert.equal(1, code)
      assert.equal("trailhound show: internal error: boom\n", err)
    end)
  end)
end)
