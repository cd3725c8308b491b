-- regex.lua: Sigma's `re`, PCRE's syntax, matched without backtracking; checked against
-- fixed cases and, where python3 is there (the Makefile installs it), against Python's re.

local regex = require "regex"

local function find(pattern, text, flags)
  local re = assert(regex.compile(pattern, flags))
  return re.find(text)
end

local function refused(pattern, flags)
  local re, err = regex.compile(pattern, flags)
  assert.is_nil(re, pattern)
  return err
end

describe("regex", function()
  describe("compile() and find()", function()
    it("searches anywhere in the text, as PCRE and Python's re.search do", function()
      assert.is_true(find(".+:assumed-role/aws:.+", "arn:aws:sts::123456789012:assumed-role/aws:ec2-instance/i-0a"))
      assert.is_false(find(".+:assumed-role/aws:.+", "arn:aws:sts::123456789012:assumed-role/admin/bob"))
      assert.is_true(find("role", "arn:aws:iam::1:role/x"))
      assert.is_false(find("^role", "arn:aws:iam::1:role/x"))
    end)

    it("anchors ^ and $ at the ends, $ also before a final newline; with m at every line", function()
      assert.is_true(find("^abc$", "abc"))
      assert.is_true(find("^abc$", "abc\n"))
      assert.is_false(find("^abc$", "abc\n\n"))
      assert.is_false(find("^b$", "a\nb\nc"))
      assert.is_true(find("^b$", "a\nb\nc", { m = true }))
      assert.is_true(find("\\Aabc\\z", "abc"))
      assert.is_false(find("abc\\z", "abc\n"))
      assert.is_true(find("abc\\Z", "abc\n"))
    end)

    it("matches . but not a newline, unless s", function()
      assert.is_false(find("a.b", "a\nb"))
      assert.is_true(find("a.b", "a\nb", { s = true }))
      assert.is_true(find("a.b", "a\226\130\172b"))  -- one character of three bytes
    end)

    it("is case-sensitive, and with i ignores the case of ASCII letters", function()
      assert.is_false(find("AssumeRole", "assumerole"))
      assert.is_true(find("AssumeRole", "assumerole", { i = true }))
      assert.is_true(find("(?i)assumerole", "ASSUMEROLE"))
      assert.is_true(find("[a-c]+x", "ABCX", { i = true }))
      assert.is_true(find("a(?i:b)c", "aBc"))
      assert.is_false(find("a(?i:b)c", "aBC"))
      assert.is_false(find("(?i)a(?-i)b", "AB"))
      assert.is_true(find("(?i)a(?-i)b", "Ab"))
    end)

    it("repeats with * + ? {n} {n,} {n,m} {,m}, lazy forms matching the same", function()
      assert.is_true(find("^a{3}$", "aaa"))
      assert.is_false(find("^a{3}$", "aa"))
      assert.is_true(find("^a{2,}$", "aaaa"))
      assert.is_true(find("^a{1,2}b$", "aab"))
      assert.is_false(find("^a{1,2}b$", "aaab"))
      assert.is_true(find("^x{,2}y$", "xxy"))
      assert.is_true(find("^a+?b*?c??$", "aab"))
      assert.is_true(find("^colou?r$", "color"))
      assert.is_true(find("a{x}", "a{x}"))  -- no quantifier: plain braces
      assert.is_true(find("^{", "{"))
    end)

    it("has classes, their negations, ranges, escapes and \\d \\w \\s", function()
      assert.is_true(find("^[0-9a-f]{8}-", "1f2e3d4c-aa"))
      assert.is_false(find("^[^/]+$", "a/b"))
      assert.is_true(find("[]x]", "]"))
      assert.is_true(find("[a\\]]", "]"))
      assert.is_true(find("[a-]", "-"))
      assert.is_true(find("^\\d+\\.\\d+$", "1.10"))
      assert.is_true(find("^\\w+\\s\\S+$", "ab_1 x"))
      assert.is_true(find("[\\d-]+", "-"))
      assert.is_true(find("\\x41\\x{42}", "AB"))
      assert.is_true(find("\\t\\n", "\t\n"))
      assert.is_true(find("a\\.b\\/c\\*", "a.b/c*"))
      assert.is_true(find("[é-ë]", "cafê"))
    end)

    it("has alternation, groups, named groups and word boundaries", function()
      assert.is_true(find("^(Get|List)(Bucket|Object)s?$", "ListObjects"))
      assert.is_false(find("^(Get|List)(Bucket|Object)s?$", "PutObject"))
      assert.is_true(find("^(?:ab)+$", "ababab"))
      assert.is_true(find("(?P<x>a)(?<y>b)", "ab"))
      assert.is_true(find("\\bfoo\\b", "a foo b"))
      assert.is_false(find("\\bfoo\\b", "afoo"))
      assert.is_true(find("\\Bfoo", "afoo"))
      assert.is_true(find("a|", "zzz"))
      assert.is_true(find("()*x", "x"))
    end)

    it("takes time in proportion to the text, whatever the pattern", function()
      local text = string.rep("a", 20000)
      local t0 = os.clock()
      assert.is_false(find("(a+)+b", text))
      assert.is_false(find("(a|a)*c", text))
      assert.is_false(find("(a*)*b", text))
      assert.is_true(os.clock() - t0 < 5)
    end)

    it("matches bytes when the text is not UTF-8", function()
      assert.is_true(find("^a.b$", "a\255b"))
    end)

    it("gives the longest run of characters every match holds", function()
      assert.equal(":assumed-role/aws:", regex.compile(".+:assumed-role/aws:.+").literal)
      assert.equal("ListBucket", regex.compile("^ListBuckets?$").literal)
      assert.equal("xyabc", regex.compile("(?i)xy(ABC)").literal)
      assert.equal("role", regex.compile("(a|b)role").literal)
      assert.is_nil(regex.compile("a|b").literal)
      assert.is_nil(regex.compile("[ab]+").literal)
    end)
  end)

  describe("what it refuses", function()
    it("names the construct and where it is", function()
      assert.equal("at offset 0: backreferences and octal escapes (\\1) are not supported", refused("\\1"))
      assert.equal("at offset 0: lookaround assertions are not supported", refused("(?=a)b"))
      assert.equal("at offset 1: lookaround assertions are not supported", refused("a(?<!b)"))
      assert.equal("at offset 0: atomic groups are not supported", refused("(?>a)"))
      assert.equal("at offset 2: possessive quantifiers are not supported", refused("a*+"))
      assert.equal("at offset 0: the escape \\p is not supported", refused("\\p{L}"))
      assert.equal("at offset 0: the escape \\Q is not supported", refused("\\Qa\\E"))
      assert.matches("POSIX classes", refused("[[:alpha:]]"))
      assert.matches("inline flag 'x'", refused("(?x)a"))
      assert.matches("group %(%?%(", refused("(?(1)a|b)"))
      assert.matches("group %(%?R", refused("(?R)"))
    end)

    it("reports syntax errors as PCRE would", function()
      assert.equal("at offset 0: a group without its )", refused("(a"))
      assert.equal("at offset 1: an unmatched )", refused("a)"))
      assert.equal("at offset 0: a character class without its ]", refused("[a"))
      assert.equal("at offset 0: nothing to repeat before '*'", refused("*a"))
      assert.equal("at offset 2: multiple repeat", refused("a**"))
      assert.equal("at offset 1: nothing to repeat", refused("^*"))
      assert.equal("at offset 3: a range out of order in a character class", refused("[z-a]"))
      assert.equal("at offset 1: a repetition {n,m} with m below n", refused("a{3,2}"))
      assert.equal("at offset 0: a pattern cannot end with a lone backslash", refused("\\"))
    end)

    it("bounds the program: counts above 1000, and programs above 20000 steps", function()
      assert.equal("at offset 1: a repetition count above 1000", refused("a{1001}"))
      assert.matches("too large", refused("(a{1000}){1000}"))
      assert.matches("too large", refused("((((a{10}){10}){10}){10}){10}"))
    end)
  end)

  describe("against Python's re", function()
    -- Patterns from a small grammar and texts over a small alphabet: every verdict must be
    -- re.search's. Skipped when python3 is missing.
    local python = os.execute("python3 -c 'import re, json' >/dev/null 2>&1")

    local function random_pattern(rnd, depth)
      local atoms = { "a", "b", "c", ".", "[ab]", "[^a]", "\\d", "\\w", "\\s", "x", "-", "\\.", "[a-c]", "\\b" }
      local n = rnd(1, 4)
      local parts = {}
      for _ = 1, n do
        local a
        if depth < 2 and rnd(1, 6) == 1 then
          local alt = rnd(1, 2) == 1 and ("|" .. random_pattern(rnd, depth + 1)) or ""
          a = "(" .. random_pattern(rnd, depth + 1) .. alt .. ")"
        else
          a = atoms[rnd(1, #atoms)]
        end
        if a ~= "\\b" then
          local q = rnd(1, 9)
          if q == 1 then a = a .. "*" elseif q == 2 then a = a .. "+" elseif q == 3 then a = a .. "?"
          elseif q == 4 then a = a .. "{1,2}" elseif q == 5 then a = a .. "{2}" end
        end
        parts[#parts + 1] = a
      end
      local p = table.concat(parts)
      if depth == 0 then
        if rnd(1, 5) == 1 then p = "^" .. p end
        if rnd(1, 5) == 1 then p = p .. "$" end
      end
      return p
    end

    it("gives re.search's verdict on 3000 random patterns and texts, with and without IGNORECASE", function()
      if not python then
        pending("python3 is not installed")
        return
      end
      local seed = 20240731
      local function rnd(lo, hi)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return lo + seed % (hi - lo + 1)
      end
      local alphabet = { "a", "b", "c", "A", "B", "x", "1", "-", ".", " ", "\n", "_" }
      local cases = {}
      for i = 1, 3000 do
        local p = random_pattern(rnd, 0)
        local t = {}
        for k = 1, rnd(0, 8) do t[k] = alphabet[rnd(1, #alphabet)] end
        cases[i] = { p = p, t = table.concat(t), i = rnd(1, 3) == 1 }
      end
      local cjson = require "cjson"
      local dir = os.tmpname()
      local f = io.open(dir, "w")
      f:write(cjson.encode(cases))
      f:close()
      local p = io.popen("python3 -c 'import re, json, sys\n" ..
        "cases = json.load(open(sys.argv[1]))\n" ..
        "print(json.dumps([bool(re.search(c[\"p\"], c[\"t\"], re.I if c[\"i\"] else 0, )) for c in cases]))' " .. dir)
      local want = cjson.decode(p:read("a"))
      p:close()
      os.remove(dir)
      local wrong = {}
      for i, c in ipairs(cases) do
        local got = find(c.p, c.t, { i = c.i })
        if got ~= want[i] then
          wrong[#wrong + 1] = string.format("%q on %q%s: python %s, here %s", c.p, c.t, c.i and " (i)" or "",
            tostring(want[i]), tostring(got))
        end
      end
      assert.same({}, wrong)
    end)
  end)
end)
