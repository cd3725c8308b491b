-- toml.lua: TOML 1.0 read as the specification says (its own examples,
-- https://toml.io/en/v1.0.0), every one of Elastic's AWS rule files read as
-- Python's tomllib reads them, errors at their line and column, and what the
-- writer writes read back to the same values.

local toml = require "toml"

local ELASTIC = "tests/fixtures/elastic-detection-rules-aws"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function ls(dir, pattern)
  local p = io.popen("ls -1 " .. dir)
  local names = {}
  for name in p:lines() do
    if name:find(pattern) then names[#names + 1] = name end
  end
  p:close()
  return names
end

local function parse(text)
  local t, err = toml.parse(text, "t.toml")
  assert(t, err)
  return t
end

-- The message of a document that must not parse.
local function refuse(text)
  local t, err = toml.parse(text, "t.toml")
  assert.is_nil(t, "parsed, but should not have: " .. text)
  assert.is_string(err)
  return err
end

-- Same values, with integers and floats told apart (and nan equal to itself).
local function same(a, b, path)
  path = path or "value"
  if type(a) ~= type(b) then
    return string.format("%s: %s vs %s", path, type(a), type(b))
  end
  if type(a) == "table" then
    for k, v in pairs(a) do
      local d = same(v, b[k], path .. "." .. tostring(k))
      if d then return d end
    end
    for k in pairs(b) do
      if a[k] == nil then return path .. "." .. tostring(k) .. ": missing on the left" end
    end
    return nil
  end
  if math.type(a) ~= math.type(b) then return path .. ": " .. math.type(a) .. " vs " .. math.type(b) end
  if a ~= b and not (a ~= a and b ~= b) then return path .. ": " .. tostring(a) .. " vs " .. tostring(b) end
  return nil
end

-- A Lua table is an array when its keys are exactly 1..n.
local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

local function assert_same(a, b)
  local d = same(a, b)
  assert.is_nil(d, d)
end

describe("toml.parse()", function()
  describe("the specification's examples", function()
    it("reads comments, and a # inside a string is not one", function()
      local t = parse('# This is a full-line comment\nkey = "value"  # This is a comment at the end of a line\n'
        .. 'another = "# This is not a comment"\n')
      assert.same({ key = "value", another = "# This is not a comment" }, t)
    end)

    it("reads bare, quoted and empty keys", function()
      local t = parse('key = "value"\nbare_key = "value"\nbare-key = "value"\n1234 = "value"\n'
        .. '"127.0.0.1" = "value"\n"character encoding" = "value"\n"ʎǝʞ" = "value"\n\'key2\' = "value"\n'
        .. '\'quoted "value"\' = "value"\n"" = "blank"\n')
      assert.same({ key = "value", bare_key = "value", ["bare-key"] = "value", ["1234"] = "value",
        ["127.0.0.1"] = "value", ["character encoding"] = "value", ["ʎǝʞ"] = "value", key2 = "value",
        ['quoted "value"'] = "value", [""] = "blank" }, t)
    end)

    it("reads dotted keys, with whitespace around the dots and quoted parts", function()
      local t = parse('name = "Orange"\nphysical.color = "orange"\nphysical.shape = "round"\n'
        .. 'site."google.com" = true\nfruit.name = "banana"\nfruit. color = "yellow"\nfruit . flavor = "banana"\n'
        .. '3.14159 = "pi"\n')
      assert.same({ name = "Orange", physical = { color = "orange", shape = "round" }, site = { ["google.com"] = true },
        fruit = { name = "banana", color = "yellow", flavor = "banana" }, ["3"] = { ["14159"] = "pi" } }, t)
    end)

    it("reads dotted keys defined out of order", function()
      local t = parse('apple.type = "fruit"\norange.type = "fruit"\napple.skin = "thin"\norange.skin = "thick"\n')
      assert.same({ apple = { type = "fruit", skin = "thin" }, orange = { type = "fruit", skin = "thick" } }, t)
    end)

    it("reads basic strings with every escape", function()
      local t = parse([[str = "I'm a string. \"You can quote me\". Name\tJos\u00E9\nLocation\tSF."
all = "\b\t\n\f\r\"\\\u00e9\U0001F600"
]])
      assert.equal("I'm a string. \"You can quote me\". Name\tJos\u{E9}\nLocation\tSF.", t.str)
      assert.equal("\b\t\n\f\r\"\\\u{e9}\u{1F600}", t.all)
    end)

    it("trims the newline after an opening \"\"\" and keeps the others", function()
      assert.equal("Roses are red\nViolets are blue", parse('str1 = """\nRoses are red\nViolets are blue"""').str1)
    end)

    it("drops a line-ending backslash with the newlines and whitespace after it", function()
      local t = parse('str1 = "The quick brown fox jumps over the lazy dog."\n'
        .. 'str2 = """\nThe quick brown \\\n\n\n  fox jumps over \\\n    the lazy dog."""\n'
        .. 'str3 = """\\\n       The quick brown \\\n       fox jumps over \\\n       the lazy dog.\\\n       """\n'
        .. 'str4 = """a \\   \n  b"""\n')
      assert.equal(t.str1, t.str2)
      assert.equal(t.str1, t.str3)
      assert.equal("a b", t.str4)
    end)

    it("reads quotes next to the closing quotes of multi-line strings", function()
      local t = parse([[str4 = """Here are two quotation marks: "". Simple enough."""
str5 = """Here are three quotation marks: ""\"."""
str6 = """Here are fifteen quotation marks: ""\"""\"""\"""\"""\"."""
str7 = """"This," she said, "is just a pointless statement.""""
quot15 = '''Here are fifteen quotation marks: """""""""""""""'''
apos15 = "Here are fifteen apostrophes: '''''''''''''''"
str = ''''That,' she said, 'is still pointless.''''
]])
      assert.equal('Here are two quotation marks: "". Simple enough.', t.str4)
      assert.equal('Here are three quotation marks: """.', t.str5)
      assert.equal('Here are fifteen quotation marks: """"""""""""""".', t.str6)
      assert.equal('"This," she said, "is just a pointless statement."', t.str7)
      assert.equal('Here are fifteen quotation marks: """""""""""""""', t.quot15)
      assert.equal("Here are fifteen apostrophes: '''''''''''''''", t.apos15)
      assert.equal("'That,' she said, 'is still pointless.'", t.str)
    end)

    it("reads literal strings as written", function()
      local t = parse([[winpath  = 'C:\Users\nodejs\templates'
winpath2 = '\\ServerX\admin$\system32\'
quoted   = 'Tom "Dubs" Preston-Werner'
regex    = '<\i\c*\s*>'
regex2 = '''I [dw]on't need \d{2} apples'''
lines  = '''
The first newline is
trimmed in raw strings.
   All other whitespace
   is preserved.
'''
]])
      assert.equal([[C:\Users\nodejs\templates]], t.winpath)
      assert.equal([[\\ServerX\admin$\system32\]], t.winpath2)
      assert.equal([[Tom "Dubs" Preston-Werner]], t.quoted)
      assert.equal([[<\i\c*\s*>]], t.regex)
      assert.equal([[I [dw]on't need \d{2} apples]], t.regex2)
      assert.equal("The first newline is\ntrimmed in raw strings.\n   All other whitespace\n   is preserved.\n",
        t.lines)
    end)

    it("reads integers in every base, with underscores, to the limits of 64 bits", function()
      local t = parse("int1 = +99\nint2 = 42\nint3 = 0\nint4 = -17\nint5 = 1_000\nint6 = 5_349_221\n"
        .. "int7 = 53_49_221\nint8 = 1_2_3_4_5\nhex1 = 0xDEADBEEF\nhex2 = 0xdeadbeef\nhex3 = 0xdead_beef\n"
        .. "oct1 = 0o01234567\noct2 = 0o755\nbin1 = 0b11010110\nmax = 9223372036854775807\n"
        .. "min = -9223372036854775808\nhexmax = 0x7FFFFFFFFFFFFFFF\nzero = -0\n")
      assert_same({ int1 = 99, int2 = 42, int3 = 0, int4 = -17, int5 = 1000, int6 = 5349221, int7 = 5349221,
        int8 = 12345, hex1 = 0xDEADBEEF, hex2 = 0xDEADBEEF, hex3 = 0xDEADBEEF, oct1 = 342391, oct2 = 493,
        bin1 = 214, max = math.maxinteger, min = math.mininteger, hexmax = math.maxinteger, zero = 0 }, t)
    end)

    it("reads floats, inf and nan, as floats", function()
      local t = parse("flt1 = +1.0\nflt2 = 3.1415\nflt3 = -0.01\nflt4 = 5e+22\nflt5 = 1e06\nflt6 = -2E-2\n"
        .. "flt7 = 6.626e-34\nflt8 = 224_617.445_991_228\nsf1 = inf\nsf2 = +inf\nsf3 = -inf\nsf4 = nan\n"
        .. "sf5 = +nan\nsf6 = -nan\nz1 = -0.0\nz2 = +0.0\n")
      assert_same({ flt1 = 1.0, flt2 = 3.1415, flt3 = -0.01, flt4 = 5e22, flt5 = 1e6, flt6 = -2e-2,
        flt7 = 6.626e-34, flt8 = 224617.445991228, sf1 = math.huge, sf2 = math.huge, sf3 = -math.huge,
        sf4 = 0 / 0, sf5 = 0 / 0, sf6 = 0 / 0, z1 = -0.0, z2 = 0.0 }, t)
    end)

    it("reads booleans", function()
      assert.same({ bool1 = true, bool2 = false }, parse("bool1 = true\nbool2 = false\n"))
    end)

    it("keeps dates and times as the text written", function()
      local t = parse("odt1 = 1979-05-27T07:32:00Z\nodt2 = 1979-05-27T00:32:00-07:00\n"
        .. "odt3 = 1979-05-27T00:32:00.999999-07:00\nodt4 = 1979-05-27 07:32:00Z\nldt1 = 1979-05-27T07:32:00\n"
        .. "ldt2 = 1979-05-27T00:32:00.999999\nld1 = 1979-05-27\nlt1 = 07:32:00\nlt2 = 00:32:00.999999\n"
        .. "leap = 2024-02-29 # a comment\nd = [1979-05-27, 2000-01-01T00:00:00z]\n")
      assert.same({ odt1 = "1979-05-27T07:32:00Z", odt2 = "1979-05-27T00:32:00-07:00",
        odt3 = "1979-05-27T00:32:00.999999-07:00", odt4 = "1979-05-27 07:32:00Z", ldt1 = "1979-05-27T07:32:00",
        ldt2 = "1979-05-27T00:32:00.999999", ld1 = "1979-05-27", lt1 = "07:32:00", lt2 = "00:32:00.999999",
        leap = "2024-02-29", d = { "1979-05-27", "2000-01-01T00:00:00z" } }, t)
    end)

    it("reads arrays: nested, mixed, over several lines with comments and a trailing comma", function()
      local t = parse([[
integers = [ 1, 2, 3 ]
colors = [ "red", "yellow", "green" ]
nested_arrays_of_ints = [ [ 1, 2 ], [3, 4, 5] ]
nested_mixed_array = [ [ 1, 2 ], ["a", "b", "c"] ]
string_array = [ "all", 'strings', """are the same""", '''type''' ]
numbers = [ 0.1, 0.2, 0.5, 1, 2, 5 ]
contributors = [
  "Foo Bar <foo@example.com>",
  { name = "Baz Qux", email = "bazqux@example.com", url = "https://example.com/bazqux" }
]
integers2 = [
  1, 2, 3
]
integers3 = [
  1,
  2, # this is ok
]
empty = [ ]
]])
      assert_same({
        integers = { 1, 2, 3 }, colors = { "red", "yellow", "green" },
        nested_arrays_of_ints = { { 1, 2 }, { 3, 4, 5 } }, nested_mixed_array = { { 1, 2 }, { "a", "b", "c" } },
        string_array = { "all", "strings", "are the same", "type" }, numbers = { 0.1, 0.2, 0.5, 1, 2, 5 },
        contributors = { "Foo Bar <foo@example.com>",
          { name = "Baz Qux", email = "bazqux@example.com", url = "https://example.com/bazqux" } },
        integers2 = { 1, 2, 3 }, integers3 = { 1, 2 }, empty = {},
      }, t)
    end)

    it("reads tables, quoted and spaced header keys, and keys before the first header", function()
      local t = parse([=[
top = 1
[table-1]
key1 = "some string"
key2 = 123

[dog."tater.man"]
type.name = "pug"

[a.b.c]            # this is best practice
[ d.e.f ]          # same as [d.e.f]
[ g .  h  . i ]    # same as [g.h.i]
[ j . "ʞ" . 'l' ]  # same as [j."ʞ".'l']
]=])
      assert.same({ top = 1, ["table-1"] = { key1 = "some string", key2 = 123 },
        dog = { ["tater.man"] = { type = { name = "pug" } } }, a = { b = { c = {} } }, d = { e = { f = {} } },
        g = { h = { i = {} } }, j = { ["ʞ"] = { l = {} } } }, t)
    end)

    it("defines a super-table after its sub-table, and sub-tables of dotted tables", function()
      local t = parse([=[
[x.y.z.w]
[x]
a = 1

[fruit]
apple.color = "red"
apple.taste.sweet = true

[fruit.apple.texture]  # you can add sub-tables
smooth = true
]=])
      assert.same({ x = { a = 1, y = { z = { w = {} } } },
        fruit = { apple = { color = "red", taste = { sweet = true }, texture = { smooth = true } } } }, t)
    end)

    it("reads inline tables, dotted keys inside them included", function()
      local t = parse('name = { first = "Tom", last = "Preston-Werner" }\npoint = { x = 1, y = 2 }\n'
        .. 'animal = { type.name = "pug" }\nempty = {}\nnested = { a = { b = [1, {c = 2}] } }\n')
      assert.same({ name = { first = "Tom", last = "Preston-Werner" }, point = { x = 1, y = 2 },
        animal = { type = { name = "pug" } }, empty = {}, nested = { a = { b = { 1, { c = 2 } } } } }, t)
    end)

    it("reads arrays of tables, with their sub-tables and nested arrays of tables", function()
      local t = parse([=[
[[products]]
name = "Hammer"
sku = 738594937

[[products]]  # empty table within the array

[[products]]
name = "Nail"
sku = 284758393
color = "gray"

[[fruits]]
name = "apple"

[fruits.physical]  # subtable
color = "red"
shape = "round"

[[fruits.varieties]]  # nested array of tables
name = "red delicious"

[[fruits.varieties]]
name = "granny smith"

[[fruits]]
name = "banana"

[[fruits.varieties]]
name = "plantain"
]=])
      assert.same({
        products = { { name = "Hammer", sku = 738594937 }, {}, { name = "Nail", sku = 284758393, color = "gray" } },
        fruits = {
          { name = "apple", physical = { color = "red", shape = "round" },
            varieties = { { name = "red delicious" }, { name = "granny smith" } } },
          { name = "banana", varieties = { { name = "plantain" } } },
        },
      }, t)
    end)

    it("reads CRLF line endings, and a multi-line string's CRLF as \\n", function()
      local t = parse('a = 1\r\n# c\r\nb = """\r\nx\r\ny"""\r\nc = \'\'\'\r\nz\r\n\'\'\'\r\n[t]\r\nd = "e"\r\n')
      assert.same({ a = 1, b = "x\ny", c = "z\n", t = { d = "e" } }, t)
    end)

    it("reads the same values as the specification's own example document", function()
      local t = parse([=[
# This is a TOML document

title = "TOML Example"

[owner]
name = "Tom Preston-Werner"
dob = 1979-05-27T07:32:00-08:00

[database]
enabled = true
ports = [ 8000, 8001, 8002 ]
data = [ ["delta", "phi"], [3.14] ]
temp_targets = { cpu = 79.5, case = 72.0 }

[servers]

[servers.alpha]
ip = "10.0.0.1"
role = "frontend"

[servers.beta]
ip = "10.0.0.2"
role = "backend"
]=])
      assert_same({ title = "TOML Example", owner = { name = "Tom Preston-Werner", dob = "1979-05-27T07:32:00-08:00" },
        database = { enabled = true, ports = { 8000, 8001, 8002 }, data = { { "delta", "phi" }, { 3.14 } },
          temp_targets = { cpu = 79.5, case = 72.0 } },
        servers = { alpha = { ip = "10.0.0.1", role = "frontend" }, beta = { ip = "10.0.0.2", role = "backend" } } }, t)
    end)
  end)

  describe("what the specification forbids", function()
    local CASES = {
      -- { document, line:col, words of the message }
      { "key = # INVALID", "1:7", "expected a value" },
      { 'first = "Tom" last = "Preston-Werner" # INVALID', "1:15", "end of the line" },
      { '= "no key name"', "1:1", "expected a key" },
      { 'name = "Tom"\nname = "Pradyun"', "2:1", "key name is defined twice" },
      { 'spelling = "favorite"\n"spelling" = "favourite"', "2:1", "defined twice" },
      { "fruit.apple = 1\nfruit.apple.smooth = true", "2:1", "fruit.apple: it is already a value" },
      { '[fruit]\napple = "red"\n\n[fruit]\norange = "orange"', "4:1", "[fruit]: it is already a table defined above" },
      { '[fruit]\napple = "red"\n\n[fruit.apple]\ntexture = "smooth"', "4:1", "already a value" },
      { '[fruit]\napple.color = "red"\napple.taste.sweet = true\n[fruit.apple]', "4:1", "defined by dotted keys" },
      { '[fruit]\napple.color = "red"\n[fruit.apple.taste]\n[fruit.apple]', "4:1", "defined by dotted keys" },
      { '[product]\ntype = { name = "Nail" }\ntype.edible = false', "3:1", "an inline table" },
      { '[product]\ntype.name = "Nail"\ntype = { edible = false }', "3:1", "defined twice" },
      { '[a.b.c]\nz = 9\n[a]\nb.c.t = "no"', "4:1", "a table defined by a header" },
      { '[[fruits]]\nname = "apple"\n[[fruits.varieties]]\nname = "red delicious"\n[fruits.varieties]',
        "5:1", "already an array" },
      { '[[fruits]]\nname = "apple"\n[fruits.physical]\ncolor = "red"\n[[fruits.physical]]', "5:1", "already a table" },
      { "fruits = []\n[[fruits]]", "2:1", "already an array" },
      { "a = [1]\n[a.b]", "2:1", "already an array" },
      { "a = {}\n[a.b]", "2:1", "an inline table" },
      { 'a = "\\e"', "1:6", "invalid escape \\e" },
      { 'a = "\\x41"', "1:6", "invalid escape \\x" },
      { 'a = "\\uD800"', "1:6", "not a Unicode scalar value" },
      { 'a = "\\u12"', "1:6", "4 hexadecimal digits" },
      { 'a = "x\n"', "1:7", "unterminated string" },
      { "a = 'x", "1:7", "unterminated literal string" },
      { 'a = """x', "1:9", 'unterminated """ string' },
      { 'a = """x""""""', "1:14", "too many quotes" },
      { 'a = "tab\tok, but not \1"', "1:22", "U+0001 must be escaped" },
      { "a = 0123", "1:5", "leading zeros" },
      { "a = 1__2", "1:5", "invalid number" },
      { "a = _1", "1:5", "invalid" },
      { "a = 1_", "1:5", "invalid number" },
      { "a = +0x1", "1:5", "invalid" },
      { "a = 0xG", "1:5", "invalid number" },
      { "a = 0x10000000000000000", "1:5", "out of range" },
      { "a = 9223372036854775808", "1:5", "out of range" },
      { "a = .7", "1:5", "invalid" },
      { "a = 7.", "1:5", "invalid float" },
      { "a = 3.e+20", "1:5", "invalid float" },
      { "a = 1e", "1:5", "invalid float" },
      { "a = True", "1:5", "invalid value 'True'" },
      { "a = 1979-13-01", "1:5", "month 13 out of range" },
      { "a = 1979-02-29", "1:5", "day 29 out of range" },
      { "a = 1979-05-27T25:00:00", "1:5", "time out of range" },
      { "a = 1979-05-27T07:32", "1:5", "invalid date-time" },
      { "a = { b = 1,\n c = 2 }", "1:5", "inline table is on one line" },
      { "a = { b = 1, }", "1:14", "trailing comma" },
      { "a = { b = 1 c = 2 }", "1:13", "expected ',' or '}'" },
      { "a = [1 2]", "1:8", "expected ',' or ']'" },
      { "a = [1,", "1:5", "unterminated array" },
      { "a = 1\rb = 2", "1:6", "carriage return" },
      { "# comment \1 here", "1:11", "control character U+0001 in a comment" },
      { "a = \"\255\"", "1:6", "invalid UTF-8" },
      { "[a]b = 1", "1:4", "end of the line after a header" },
      { "[a\nb]", "1:3", "expected ']'" },
      { "[[a]\n", "1:4", "expected ']]'" },
      { '"""key""" = 1', "1:1", "multi-line string" },
      { "a.b = 1\n[a]", "2:1", "defined by dotted keys" },
    }
    for _, c in ipairs(CASES) do
      local shown = c[1]:gsub("[%c\128-\255]", function(ch)
        return ({ ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" })[ch] or string.format("\\%d", ch:byte())
      end)
      it(string.format("refuses '%s' at %s", shown, c[2]), function()
        local err = refuse(c[1])
        assert.truthy(err:find("t.toml:" .. c[2] .. ": ", 1, true), "where: " .. err)
        assert.truthy(err:find(c[3], 1, true), "what: " .. err)
      end)
    end

    it("refuses arrays and inline tables nested deeper than 50, and reads 50", function()
      local err = refuse("a = " .. string.rep("[", 51) .. string.rep("]", 51))
      assert.truthy(err:find("t.toml:1:55: arrays and inline tables nested more than 50 deep", 1, true), err)
      err = refuse("a = " .. string.rep("{ b = ", 10000))
      assert.truthy(err:find("nested more than 50 deep", 1, true), err)
      local t = parse("a = " .. string.rep("[", 50) .. string.rep("]", 50) .. "\nb = [[1], {c = [2]}]\n")
      assert.same({ { 1 }, { c = { 2 } } }, t.b)
    end)

    it("counts the column in characters, not bytes", function()
      local err = refuse('a = "ʎǝʞ\\q"')
      assert.truthy(err:find("t.toml:1:9:", 1, true), err)
    end)
  end)

  describe("Elastic's AWS rule files", function()
    local files = ls(ELASTIC, "%.toml$")

    it("are 194, and every one parses", function()
      assert.equal(194, #files)
      for _, f in ipairs(files) do
        local t, err = toml.parse(read(ELASTIC .. "/" .. f), f)
        assert(t, err)
        assert.is_table(t.rule, f)
        assert.is_table(t.metadata, f)
      end
    end)

    it("read as Python's tomllib reads them, integers and floats told apart", function()
      local script = [[
import glob, json, os, sys, tomllib
def typed(v):
    if isinstance(v, bool): return v
    if isinstance(v, int): return {"int": str(v)}
    if isinstance(v, float): return {"float": repr(v)}
    if isinstance(v, dict): return {"table": {k: typed(x) for k, x in v.items()}}
    if isinstance(v, list): return {"array": [typed(x) for x in v]}
    return v
out = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.toml"))):
    with open(f, "rb") as h:
        out[os.path.basename(f)] = typed(tomllib.load(h))
json.dump(out, sys.stdout)
]]
      local tmp = os.tmpname()
      local h = assert(io.open(tmp, "w"))
      h:write(script)
      h:close()
      local p = io.popen("python3 " .. tmp .. " " .. ELASTIC)
      local json = p:read("a")
      p:close()
      os.remove(tmp)
      local py = require("cjson").decode(json)
      local function typed(v)
        if type(v) == "boolean" or type(v) == "string" then return v end
        if math.type(v) == "integer" then return { int = tostring(v) } end
        if type(v) == "number" then return { float = string.format("%.17g", v) } end
        local out = {}
        if is_array(v) and next(v) ~= nil then
          for i, x in ipairs(v) do out[i] = typed(x) end
          return { array = out }
        end
        for k, x in pairs(v) do out[k] = typed(x) end
        return next(v) == nil and { array = {} } or { table = out }
      end
      local function untyped_py(v)  -- Python's empty dict and list are both {} in Lua
        if type(v) ~= "table" then return v end
        if v.float then return { float = string.format("%.17g", tonumber(v.float)) } end
        if v.table and next(v.table) == nil then return { array = {} } end
        local out = {}
        for k, x in pairs(v) do out[k] = untyped_py(x) end
        return out
      end
      assert.equal(194, (function() local n = 0 for _ in pairs(py) do n = n + 1 end return n end)())
      for _, f in ipairs(files) do
        local d = same(untyped_py(py[f]), typed(toml.parse(read(ELASTIC .. "/" .. f), f)), f)
        assert.is_nil(d, d)
      end
    end)
  end)
end)

describe("toml.encode()", function()
  local function round(t, opts)
    local text, err = toml.encode(t, opts)
    assert(text, err)
    local back, perr = toml.parse(text, "encoded")
    assert(back, tostring(perr) .. "\n" .. text)
    return back, text
  end

  it("writes what reads back as the same values: strings of every kind", function()
    local strings = {
      "", "plain", 'with "quotes"', "it's", "back\\slash", "tab\there", "line\nbreaks\n", "\nleading newline",
      "trailing quote\"", "trailing quotes\"\"", "three \"\"\" quotes\n", "three ''' apostrophes\n",
      "ends with apostrophe\n'", "ends with two\n''", "\r\n crlf kept \r", "bell \7 and \127 del\n", "é ʎǝʞ 😀\n",
      "]] and [[ and \\u0041\n", "both ''' and \"\"\" and \\\n",
    }
    local t = { s = strings, one = {} }
    for i, s in ipairs(strings) do t.one["k" .. i] = s end
    local back = round(t)
    assert_same(t, back)
  end)

  it("writes numbers so that integers stay integers and floats floats", function()
    local t = { i = { 0, -1, math.maxinteger, math.mininteger }, f = { 0.1, 2.0, -0.0, 1e300, 5e-324, 1 / 3,
      math.huge, -math.huge, 0 / 0 } }
    assert_same(t, round(t))
  end)

  it("quotes keys that are not bare", function()
    local t = { ["a.b"] = 1, [""] = 2, ["with space"] = { ["ʎ"] = 3 }, ["bare-key_1"] = 4 }
    assert_same(t, round(t))
  end)

  it("writes tables, arrays of tables with sub-tables, nested and mixed arrays", function()
    local t = {
      top = "x",
      rule = {
        threat = {
          { framework = "MITRE ATT&CK", tactic = { id = "TA0001" }, technique = { { id = "T1", subtechnique = {
            { id = "T1.001" } } } } },
          { framework = "other", technique = {} },
        },
        empty = {},
        deep = { only = { tables = { here = 1 } } },
        mixed = { 1, "two", { three = 3 }, { 4, { five = 5 } } },
        list_of_tables_in_array = { { 1 }, { { a = 1 }, { b = 2 } } },
      },
    }
    assert_same(t, round(t))
  end)

  it("keeps an array of tables whose elements have no keys of their own", function()
    local t = { a = { { b = { c = 1 } }, { b = { c = 2 } } } }
    local back, text = round(t)
    assert_same(t, back)
    assert.truthy(text:find("[[a]]", 1, true))
  end)

  it("writes multi-line text as written, and a query as '''...''' when asked", function()
    local _, text = round({ rule = { note = "## Guide\n\n- a step\n", query = 'a: "b" and\n  c: "d"\n' } },
      { literal = function(_, k) return k == "query" end })
    assert.truthy(text:find('note = """\n## Guide\n\n- a step\n"""', 1, true), text)
    assert.truthy(text:find("query = '''\na: \"b\" and\n  c: \"d\"\n'''", 1, true), text)
  end)

  it("orders keys as asked", function()
    local _, text = round({ b = 1, a = 2, c = 3 }, { order = function() return { "c", "a", "b" } end })
    assert.equal("c = 3\na = 2\nb = 1\n", text)
  end)

  it("refuses what TOML cannot hold", function()
    assert.is_nil((toml.encode({ f = print })))
    assert.is_nil((toml.encode({ t = { [1] = 1, x = 2 } })))
    assert.is_nil((toml.encode({ 1, 2 })))
  end)

  it("writes every Elastic AWS rule file back to the same values", function()
    for _, f in ipairs(ls(ELASTIC, "%.toml$")) do
      local t = parse(read(ELASTIC .. "/" .. f))
      local back = round(t, { literal = function(_, k) return k == "query" end })
      local d = same(t, back, f)
      assert.is_nil(d, d)
    end
  end)
end)
