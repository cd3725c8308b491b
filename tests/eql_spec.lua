-- eql.lua: Elasticsearch's EQL, its grammar and how it matches events.

local eql = require "eql"

local function getter(doc)
  return function(name) return doc[name] end
end

-- Does the query (an event query) match the flat document doc?
local function matches(src, doc, opts)
  local q, err = eql.compile(src, opts)
  assert(q, err)
  return q.match(getter(doc))
end

local function compile_error(src, opts)
  local q, err = eql.compile(src, opts)
  assert.is_nil(q, "compiled: " .. src)
  return err
end

describe("eql", function()
  describe("compile()", function()
    it("reads category where condition, any where condition, and a quoted category", function()
      local doc = { ["event.category"] = "iam", a = "x" }
      assert.is_true(matches('iam where a == "x"', doc))
      assert.is_false(matches('process where a == "x"', doc))
      assert.is_true(matches('any where a == "x"', doc))
      assert.is_true(matches('"iam" where true', doc))
      assert.is_true(matches('any where true', {}))
      assert.is_false(matches('any where false', {}))
      assert.equal("iam", eql.compile('iam where true').category)
      assert.is_nil(eql.compile('any where true').category)
    end)

    it("matches the category against an array of them, and in the field the rule names", function()
      assert.is_true(matches('iam where true', { ["event.category"] = { "web", "iam" } }))
      local doc = { ["event.type"] = { "info" }, ["event.category"] = "iam" }
      assert.is_true(matches('info where true', doc, { category_field = "event.type" }))
      assert.is_false(matches('iam where true', doc, { category_field = "event.type" }))
    end)

    it("keeps == case-sensitive and : case-insensitive", function()
      local doc = { a = "CreateUser" }
      assert.is_true(matches('any where a == "CreateUser"', doc))
      assert.is_false(matches('any where a == "createuser"', doc))
      assert.is_true(matches('any where a : "createuser"', doc))
      assert.is_true(matches('any where a : "CREATEUSER"', doc))
      assert.is_false(matches('any where a != "CreateUser"', doc))
      assert.is_true(matches('any where a != "createuser"', doc))
      -- letters beyond ASCII too
      assert.is_true(matches('any where a : "ÉTÉ"', { a = "été" }))
      assert.is_true(matches('any where a : "привет"', { a = "ПРИВЕТ" }))
    end)

    it("reads * and ? as wildcards in : and like, and == as plain text", function()
      local doc = { a = "AddPermission20150331v2" }
      assert.is_true(matches('any where a : "addpermission*"', doc))
      assert.is_true(matches('any where a : "*2015*v?"', doc))
      assert.is_false(matches('any where a : "*2015*v"', doc))
      assert.is_true(matches('any where a like "Add*v2"', doc))
      assert.is_false(matches('any where a like "add*v2"', doc))
      assert.is_true(matches('any where a like~ "add*V2"', doc))
      assert.is_false(matches('any where a == "Add*"', doc))
      assert.is_true(matches('any where a == "Add*"', { a = "Add*" }))
      assert.is_true(matches('any where a like "d?c"', { a = "doc" }))
      assert.is_false(matches('any where a like "d?c"', { a = "disc" }))
      assert.is_true(matches('any where a like "é?"', { a = "éà" }))    -- ? is one character
      assert.is_true(matches([[any where a like "a\\*b"]], { a = "a*b" }))   -- \ escapes
      assert.is_false(matches([[any where a like "a\\*b"]], { a = "axb" }))
      assert.is_true(matches('any where a : ("x", "add*")', doc))
      assert.is_true(matches('any where a like ("x", "Add*")', doc))
    end)

    it("looks values up with in (case-sensitive), in~, not in and not in~", function()
      local doc = { a = "ModifyDBInstance" }
      assert.is_true(matches('any where a in ("ModifyDBInstance", "ModifyDBCluster")', doc))
      assert.is_false(matches('any where a in ("modifydbinstance")', doc))
      assert.is_true(matches('any where a in~ ("modifydbinstance")', doc))
      assert.is_false(matches('any where a in ("Modify*")', doc))   -- no wildcards in in
      assert.is_true(matches('any where a not in ("x", "y")', doc))
      assert.is_false(matches('any where a not in~ ("MODIFYDBINSTANCE")', doc))
      assert.is_true(matches('any where port in (22, 3389)', { port = 22 }))
    end)

    it("holds a comparison when any element of an array field holds it", function()
      local doc = { arn = { "arn:aws:s3:::b/a", "arn:aws:s3:::b/HOW_TO_DECRYPT.txt" }, n = { 1, 5 } }
      assert.is_true(matches('any where arn == "arn:aws:s3:::b/a"', doc))
      assert.is_true(matches('any where arn : "*decrypt*"', doc))
      assert.is_true(matches('any where arn in ("x", "arn:aws:s3:::b/a")', doc))
      assert.is_true(matches('any where n > 4', doc))
      assert.is_false(matches('any where n > 5', doc))
      assert.is_true(matches('any where stringContains(arn, "DECRYPT")', doc))
      assert.is_true(matches('any where length(arn) == 16', doc))
      assert.is_false(matches('any where arn != "arn:aws:s3:::b/a"', doc))   -- not (any element ==)
    end)

    it("makes comparisons on a missing field false, so that their not holds, and tests presence with null", function()
      assert.is_false(matches('any where a == "x"', {}))
      assert.is_true(matches('any where not a == "x"', {}))
      assert.is_true(matches('any where a != "x"', {}))
      assert.is_false(matches('any where stringContains(a, "x")', {}))
      assert.is_true(matches('any where not stringContains(a, "x")', {}))
      assert.is_false(matches('any where a < 3 or a >= 3', {}))
      assert.is_true(matches('any where a == null', {}))
      assert.is_true(matches('any where ?a == null', { a = {} }))   -- an empty array: no value
      assert.is_false(matches('any where ?a != null', {}))
      assert.is_true(matches('any where ?a != null', { a = "" }))
      assert.is_true(matches('any where null == a', {}))
    end)

    it("reads ?field as an optional field and `quoted` names", function()
      local q = eql.compile('any where ?user.id != null and `odd-name` == "x" and `a``b` == "y"')
      assert.same({ "a`b", "odd-name", "user.id" }, q.fields)
      assert.is_true(q.match(getter({ ["user.id"] = "u", ["odd-name"] = "x", ["a`b"] = "y" })))
      assert.is_true(q.ast.children[1].children[1].children[1].optional)
    end)

    it("compares numbers by value, numeric strings as numbers, strings by their bytes", function()
      assert.is_true(matches('any where n == 200', { n = "200" }))
      assert.is_true(matches('any where n == "200"', { n = 200 }))
      assert.is_true(matches('any where n == 2.0', { n = 2 }))
      assert.is_true(matches('any where n >= 10 and n < 1e3', { n = 12 }))
      assert.is_true(matches('any where s < "b"', { s = "B" }))     -- B (66) before b (98)
      assert.is_false(matches('any where s > "b"', { s = "B" }))
      assert.is_true(matches('any where flag == true', { flag = true }))
      assert.is_true(matches('any where flag == "true"', { flag = true }))
      assert.is_true(matches('any where a == 1 + 2 * 3 and b == -4 and c % 5 == 2 and 7 / 2 == 3',
        { a = 7, b = -4, c = 12 }))
      assert.is_true(matches('any where source.ip == "2001:0db8::1"', { ["source.ip"] = "2001:db8::1" }))
    end)

    it("runs EQL's functions, ~ ignoring case where it applies", function()
      local doc = { s = "start regsvr32.exe", p = "C:\\Windows\\System32\\cmd.exe", ip = "192.168.152.12" }
      assert.is_true(matches('any where startsWith(s, "start")', doc))
      assert.is_false(matches('any where startsWith(s, "START")', doc))
      assert.is_true(matches('any where startsWith~(s, "START")', doc))
      assert.is_true(matches('any where endsWith(s, ".exe") and endsWith~(s, ".EXE")', doc))
      assert.is_true(matches('any where stringContains(s, "regsvr32") and not stringContains(s, "Regsvr32")', doc))
      assert.is_true(matches('any where stringContains~(s, "Regsvr32")', doc))
      assert.is_true(matches('any where length(s) == 18 and length("") == 0', doc))
      assert.is_true(matches('any where indexOf(s, "r") == 3 and indexOf(s, "r", 4) == 6', doc))
      assert.is_true(matches('any where indexOf~(s, "R") == 3', doc))
      assert.is_true(matches('any where substring(s, 6) == "regsvr32.exe" and substring(s, -4, -1) == ".ex"', doc))
      assert.is_true(matches([[any where between(p, "System32\\", ".exe") == "cmd"]], doc))
      assert.is_true(matches([[any where between~(p, "system32\\", ".EXE") == "cmd"]], doc))
      assert.is_true(matches([[any where between(p, "\\", "\\", true) == "Windows\\System32"]], doc))
      assert.is_true(matches('any where cidrMatch(ip, "10.0.0.0/8", "192.168.0.0/16")', doc))
      assert.is_false(matches('any where cidrMatch(ip, "10.0.0.0/8")', doc))
      assert.is_true(matches('any where concat("a", 1, true) == "a1true" and string(42) == "42"', doc))
      assert.is_true(matches('any where number("0xdeadbeef") == 3735928559 and number("  1337 ") == 1337', doc))
      assert.is_true(matches('any where number("ff", 16) == 255 and number("-42.5") == -42.5', doc))
      assert.is_true(matches('any where add(2, 3) == 5 and subtract(1, 3) == -2 and multiply(2, 2) == 4', doc))
      assert.is_true(matches('any where divide(4, 3) == 1 and divide(-4, 3) == -1 and modulo(10, 6) == 4', doc))
      assert.is_false(matches('any where length(missing) == 0', doc))  -- null in, null out
      assert.is_true(matches('any where stringContains(s, p2)', { s = "a1234b", p2 = "1234" }))  -- two fields
    end)

    it("reads stringContains(field, \"x\") as Elasticsearch's wildcard query *x*, as rules rely on", function()
      local rp = "{bucketPolicy={Statement=[{Effect=Allow, Principal=*, Action=s3:GetObject}]}}"
      assert.is_true(matches([[any where stringContains(r, "Principal=\\*")]], { r = rp }))
      assert.is_false(matches([[any where stringContains(r, "Principal=\\*")]], { r = "{Principal=arn}" }))
      assert.is_true(matches('any where stringContains(r, "masterUserPassword=*")', { r = "{masterUserPassword=x}" }))
      assert.is_true(matches('any where stringContains(r, "valuesToAdd=[*]")', { r = "{valuesToAdd=[123456789012]}" }))
      assert.is_false(matches('any where stringContains(r, "valuesToAdd=[*]")', { r = "{valuesToAdd=}" }))
      -- not a field: a plain substring
      assert.is_false(matches('any where stringContains("abc", "a*c")', {}))
    end)

    it("matches regex and regex~ against the whole value", function()
      local q = 'any where a regex~ "arn:aws:s3:::[^/]+/.*?(how|decrypt|ransom).*"'
      assert.is_true(matches(q, { a = "arn:aws:s3:::bucket/HOW_to_recover.txt" }))
      assert.is_false(matches(q, { a = "arn:aws:s3:::bucket/photo.jpg" }))
      assert.is_false(matches('any where a regex "abc"', { a = "xabcx" }))
      assert.is_true(matches('any where a regex "a.c"', { a = "a\nc" }))
      assert.is_false(matches('any where a regex "ABC"', { a = "abc" }))
      assert.is_true(matches('any where a regex ("x", "[a-c]+")', { a = "abc" }))
    end)

    it("reads strings with escapes, raw strings, comments and numbers", function()
      assert.is_true(matches([[any where a == "t\tn\nq\"b\\u\u{e9}"]], { a = 't\tn\nq"b\\u\195\169' }))
      assert.is_true(matches([=[any where a == """raw \n "quoted" \"""]=], { a = 'raw \\n "quoted" \\' }))
      assert.is_true(matches('any /* a comment */ where a == 1.5e1 // to the end of the line\n and b == .5',
        { a = 15, b = 0.5 }))
    end)

    it("binds not tighter than and, and and tighter than or", function()
      assert.is_true(matches('any where not a == "x" and b == "y"', { b = "y" }))
      assert.is_true(matches('any where a == "x" or b == "y" and c == "z"', { a = "x" }))
      assert.is_false(matches('any where (a == "x" or b == "y") and c == "z"', { a = "x" }))
    end)

    it("exposes a sequence's structure for the host's state machinery", function()
      local q, err = eql.compile([[
sequence by k with maxspan=500ms
  [any where event.action == "A"] by user.name
  [iam where event.action : ("b", "c")] by ?user.id with runs=2
  ![any where event.action == "N"] by user.id
until [any where event.action == "Stop"] by user.name]])
      assert(q, err)
      assert.equal("sequence", q.kind)
      local s = q.sequence
      assert.equal(0.5, s.maxspan)
      assert.same({ "k" }, s.by)
      assert.equal(4, #s.steps)           -- runs=2 is two steps
      assert.same({ "k", "user.name" }, s.steps[1].by)
      assert.same({ "k", "user.id" }, s.steps[2].by)
      assert.same({ [2] = true }, s.steps[2].optional)
      assert.is_true(s.steps[4].missing)
      assert.same({ "k", "user.name" }, s["until"].by)
      assert.equal("iam", s.steps[2].category)
      local get = getter({ ["event.action"] = "B", ["event.category"] = "iam", k = { "key1", "key2" } })
      assert.is_true(s.steps[2].match(get))
      assert.is_false(s.steps[1].match(get))
      assert.same({ "key1", false }, s.steps[2].keys(get))   -- an optional key may be missing
      assert.is_nil(s.steps[1].keys(get))                    -- a required one may not
      assert.same({ { field = "event.action", value = "A", exact = true } }, s.steps[1].requirements[1])
      assert.is_nil(q.match)
      assert.equal(1, #q.requirements)                       -- one clause: any step's
      assert.equal(5, #q.requirements[1])
      assert.same({ 30, 60, 3600, 86400 }, {
        eql.compile('sequence with maxspan=30s [any where true] [any where true]').sequence.maxspan,
        eql.compile('sequence with maxspan=1m [any where true] [any where true]').sequence.maxspan,
        eql.compile('sequence with maxspan=1h [any where true] [any where true]').sequence.maxspan,
        eql.compile('sequence with maxspan=1d [any where true] [any where true]').sequence.maxspan })
    end)

    it("reports the line and column of a syntax error, in the rule file", function()
      local opts = { chunkname = "rules/x.lua", line = 10, col = 11 }
      assert.equal("rules/x.lua:10:19: expected 'where' after the event category, found 'and'",
        compile_error('process and a == "x"', opts))
      assert.equal("rules/x.lua:11:8: expected a value (a field, a string, a number, a function), found the end "
        .. "of the query", compile_error('any where\n  a == ', opts))
      assert.equal("rules/x.lua:12:3: expected and, or, or the end of the query, found 'b'",
        compile_error('any where a == "x"\n\n  b', opts))
      assert.equal("query:1:13: the string that starts here is not closed", compile_error('any where a "x'))
    end)

    it("rejects what EQL does not allow, saying why", function()
      assert.matches("'=' is not an operator", compile_error('any where a = "x"'))
      assert.matches("single quotes are not supported", compile_error("any where a == 'x'"))
      assert.matches("cannot be compared to another field", compile_error('any where a == b'))
      assert.matches("cannot be compared to another field", compile_error('any where length(a) == length(b)'))
      assert.matches("cannot be chained", compile_error('any where 1 < a < 3'))
      assert.matches("unknown function 'wildcard'", compile_error('any where wildcard(a, "x*")'))
      assert.matches("length takes 1 argument, not 2", compile_error('any where length(a, "b")'))
      assert.matches("length has no case%-insensitive form", compile_error('any where length~(a) > 1'))
      assert.matches("unknown escape \\q", compile_error('any where a == "\\q"'))
      assert.matches("pipes", compile_error('any where true | head 5'))
      assert.matches("sample queries are not supported", compile_error('sample by a [any where true] [any where true]'))
      assert.matches("not a regular expression", compile_error('any where a regex "(x"'))
      assert.matches("like compares strings", compile_error('any where a like 5'))
      assert.matches("expected '%(' after in", compile_error('any where a in "x"'))
      assert.matches("array indexes", compile_error('any where a[0] == "x"'))
      assert.matches("at least two steps", compile_error('sequence [any where true]'))
      assert.matches("as many join keys", compile_error('sequence by a [any where true] by b [any where true]'))
      assert.matches("maxspan needs a time unit",
        compile_error('sequence with maxspan=5 [any where true] [any where true]'))
      assert.matches("before with maxspan",
        compile_error('sequence with maxspan=5m by a [any where true] [any where true]'))
      assert.matches("needs with maxspan", compile_error('sequence [any where true] ![any where true]'))
      assert.matches("expected an event category", compile_error('where a == "x"'))
      assert.matches("expected a field name", compile_error('any where a. == "x"'))
    end)
  end)

  describe("explain()", function()
    it("shows each comparison as written, with its value and place", function()
      local q = eql.compile('iam where a == "x" and not stringContains(b, "y")', { line = 3, col = 5 })
      local tree = q.explain(getter({ ["event.category"] = "iam", a = "x", b = "zyz" }))
      assert.is_false(tree.value)
      assert.equal('event.category == "iam" (iam where)', tree.children[1].text)
      local cond = tree.children[2]
      assert.equal("and", cond.op)
      assert.same({ op = "clause", text = 'a == "x"', field = "a", value = true, line = 3, col = 15 }, cond.children[1])
      assert.equal("not", cond.children[2].op)
      assert.equal('stringContains(b, "y")', cond.children[2].children[1].text)
    end)
  end)

  describe("requirements()", function()
    it("names what an event must hold: exact values, and text found regardless of case", function()
      local q = eql.compile('iam where event.provider == "iam.amazonaws.com" and event.action in ("A", "B") '
        .. 'and event.action : "Add*" and stringContains(user_agent.original, "kali*amd") and not user.name == "x"')
      assert.same({
        { { field = "event.category", value = "iam", exact = true } },
        { { field = "event.provider", value = "iam.amazonaws.com", exact = true } },
        { { field = "event.action", value = "A", exact = true },
          { field = "event.action", value = "B", exact = true } },
        { { field = "event.action", value = "add", exact = false, fold = true } },
        { { field = "user_agent.original", value = "kali", exact = false } },
      }, eql.requirements(q))
      assert.same({ { field = "user.name", values = { "x" } } }, eql.exclusions(q))
    end)

    it("takes one narrowest clause of each side of an or, and nothing from a side that needs nothing", function()
      local q = eql.compile('any where (a == "x" and b == "y") or c like "z*"')
      assert.same({ { { field = "a", value = "x", exact = true }, { field = "c", value = "z", exact = false } } },
        eql.requirements(q))
      assert.same({}, eql.requirements(eql.compile('any where a == "x" or length(b) > 2')))
      -- a number's text, a boolean's, an ip field: nothing a string must be
      assert.same({}, eql.requirements(eql.compile(
        'any where a == "200" and b == "true" and source.ip == "1.2.3.4"')))
    end)
  end)
end)
