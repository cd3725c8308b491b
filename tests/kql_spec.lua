-- Specs for scripts/kql.lua, the Kibana Query Language compiler.

local events = require "event"
local kql = require "kql"

local FIXTURES = "tests/fixtures/elastic-detection-rules-aws/"

-- get(name) over a table of dotted field names.
local function getter(event)
  return function(name) return event[name] end
end

local function compile(source, opts)
  local q, err = kql.compile(source, opts)
  assert(q, err)
  return q
end

local function matches(source, event)
  return compile(source).match(getter(event))
end

local function compile_error(source, opts)
  local q, err = kql.compile(source, opts)
  assert.is_nil(q)
  assert.is_string(err)
  return err
end

-- A read-only view like the one scripts/event.lua hands to rules: proxies with
-- __index, __len and __pairs, whose raw tables are empty.
local function view(t)
  if type(t) ~= "table" then return t end
  return setmetatable({}, {
    __index = function(_, k) return view(t[k]) end,
    __len = function() return #t end,
    __pairs = function()
      return function(_, k)
        local nk, nv = next(t, k)
        return nk, view(nv)
      end, t, nil
    end,
  })
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The rule files of the fixture folder, sorted (NOTICE.md lists them all).
local function rule_files()
  local files = {}
  local p = assert(io.popen('ls "' .. FIXTURES .. '"'))
  for name in p:lines() do
    if name:match("%.toml$") then files[#files + 1] = name end
  end
  p:close()
  table.sort(files)
  return files
end

-- The kuery query of a rule file, and the line and column where it starts.
local function kuery_of(text)
  if not text:match('\nlanguage = "kuery"\n') then return nil end
  local before, query = text:match("^(.-\nquery = ''')(.-)'''")
  if not query then return nil end
  local _, newlines = before:gsub("\n", "")
  return query, newlines + 1, #before:match("[^\n]*$") + 1
end

local BEDROCK = [[
data_stream.dataset: "aws.cloudtrail"
    and event.provider: "bedrock.amazonaws.com"
    and event.action: (
        "PutFoundationModelEntitlement" or
        "PutUseCaseForModelAccess" or
        "CreateFoundationModelAgreement"
    )
    and event.outcome: "failure"
    and aws.cloudtrail.error_code: (
        "AccessDenied" or
        "AccessDeniedException"
    )
]]

local function bedrock_event()
  return {
    ["data_stream.dataset"] = "aws.cloudtrail",
    ["event.provider"] = "bedrock.amazonaws.com",
    ["event.action"] = "PutUseCaseForModelAccess",
    ["event.outcome"] = "failure",
    ["aws.cloudtrail.error_code"] = "AccessDeniedException",
  }
end

describe("kql", function()
  describe("compile()", function()
    it("compiles a query into match, fields, ast and explain", function()
      local q = compile(BEDROCK)
      assert.is_function(q.match)
      assert.is_function(q.explain)
      assert.is_table(q.ast)
      assert.are.equal("and", q.ast.op)
      assert.are.same({
        "aws.cloudtrail.error_code", "data_stream.dataset", "event.action", "event.outcome", "event.provider",
      }, q.fields)
    end)

    it("lists each field once, sorted, however often the query reads it", function()
      local q = compile("b: 1 or a: 2 or (b: 3 and not a > 4) or c: *")
      assert.are.same({ "a", "b", "c" }, q.fields)
    end)

    it("keeps the source position of every node in the tree", function()
      local q = compile('a: x or\n  not b: ("y" or z*) and c >= 10', { line = 5, col = 7 })
      local ast = q.ast
      assert.are.same({ "or", 5, 7 }, { ast.op, ast.line, ast.col })
      local a = ast.children[1]
      assert.are.same({ "match", "a", "x", false, false, 5, 7 },
                      { a.op, a.field, a.literal, a.quoted, a.wildcard, a.line, a.col })
      local conj = ast.children[2]
      assert.are.same({ "and", 6, 3 }, { conj.op, conj.line, conj.col })
      local neg = conj.children[1]
      assert.are.same({ "not", 6, 3 }, { neg.op, neg.line, neg.col })
      local list = neg.children[1]
      assert.are.same({ "or", 6, 7 }, { list.op, list.line, list.col })
      local y, z = list.children[1], list.children[2]
      assert.are.same({ "match", "b", "y", true, false, 6, 11 },
                      { y.op, y.field, y.literal, y.quoted, y.wildcard, y.line, y.col })
      assert.are.same({ "match", "b", "z*", true, { "z", "" }, 6, 18 },
                      { z.op, z.field, z.literal, z.wildcard, z.segments, z.line, z.col })
      local range = conj.children[2]
      assert.are.same({ "range", "c", ">=", "10", 6, 26 },
                      { range.op, range.field, range.operator, range.literal, range.line, range.col })
    end)

    it("represents field: * as an exists node", function()
      local ast = compile("source.ip: *").ast
      assert.are.same({ op = "exists", field = "source.ip", path = "source.ip", kind = "ip", line = 1, col = 1 }, ast)
      local star = compile("a: (x or *)").ast.children[2]
      assert.are.same({ op = "exists", field = "a", path = "a", kind = "unknown", line = 1, col = 10 }, star)
    end)

    it("returns nil and a message when the query is not a string", function()
      local q, err = kql.compile(nil, { chunkname = "rules/x.lua" })
      assert.is_nil(q)
      assert.are.equal("rules/x.lua: the query must be a string, not nil", err)
    end)

    it("reports the line and column of a syntax error", function()
      local err = compile_error('a: x and (\n  b: y or\n    c: (z', { chunkname = "rules/x.lua", line = 12, col = 14 })
      assert.are.equal("rules/x.lua:14:10: Expected \")\", AND, OR but end of input found. (to close the '(' at 14:8)",
                       err)
    end)

    it("counts opts.col on the first line only", function()
      local expected = 'Expected "(", "{", value, whitespace but ")" found.'
      assert.are.equal("rules/x.lua:12:23: " .. expected,
                       compile_error("a: )", { chunkname = "rules/x.lua", line = 12, col = 20 }))
      assert.are.equal("rules/x.lua:13:4: " .. expected,
                       compile_error("a: x or\nb: )", { chunkname = "rules/x.lua", line = 12, col = 20 }))
    end)

    it("counts columns in characters, not bytes", function()
      assert.are.equal('query:1:14: Expected "(", "{", value, whitespace but ")" found.',
                       compile_error('"é": x or b: )'))
    end)

    it("names the chunk 'query' and starts at 1:1 by default", function()
      assert.are.equal('query:1:1: Expected "(", NOT, end of input, field name, value, whitespace but ")" found.',
                       compile_error(") or a: b"))
    end)
  end)

  -- Kibana's own message, at the place it points to (peggy's furthest failure), with a
  -- hint of ours in parentheses where one helps.
  describe("syntax errors", function()
    local cases = {
      { "(a: b", [[1:6: Expected ")", AND, OR but end of input found. (to close the '(' at 1:1)]] },
      { "(a: b c: d)", [[1:8: Expected ")", AND, OR but ":" found. (to close the '(' at 1:1)]] },
      { "a: (b or c", [[1:11: Expected ")", AND, OR but end of input found. (to close the '(' at 1:4)]] },
      { "a: (b or (c and d)", [[1:19: Expected ")", AND, OR but end of input found. (to close the '(' at 1:4)]] },
      { "a: b)", [[1:5: Expected AND, OR, end of input but ")" found.]] },
      { 'a: "abc', [[1:4: Expected "(", "{", value, whitespace but """ found. ]]
                   .. "(the string that starts here is not closed)" },
      { 'a: "abc\\"', [[1:4: Expected "(", "{", value, whitespace but """ found.]] },
      { "a:", [[1:3: Expected "(", "{", value, whitespace but end of input found.]] },
      { "a: )", [[1:4: Expected "(", "{", value, whitespace but ")" found.]] },
      { "a: :b", [[1:4: Expected "(", "{", value, whitespace but ":" found.]] },
      { "a: (b or )", [[1:10: Expected "(", NOT, value but ")" found.]] },
      { "a: ()", [[1:5: Expected "(", NOT, value, whitespace but ")" found.]] },
      { "a: not b", [[1:4: Expected "(", "{", value, whitespace but "n" found. ]]
                    .. "(write not field: value, or field: (not value))" },
      { "not not a: 1", [[1:5: Expected "(", field name, value but "n" found.]] },
      { "not )", [[1:5: Expected "(", field name, value but ")" found.]] },
      { "()", [[1:2: Expected "(", NOT, field name, value, whitespace but ")" found.]] },
      { "a: b c: d", [[1:7: Expected AND, OR, end of input but ":" found.]] },
      { "a: b not c: d", [[1:6: Expected AND, OR, end of input but "n" found.]] },
      { "a: cannot be", [[1:7: Expected AND, OR, end of input but "n" found.]] },
      { 'a: "b" "c"', [[1:8: Expected end of input but """ found.]] },
      { "n:9 and(n:9)", [[1:8: Expected AND, OR, end of input but "(" found. ]]
                        .. "(Kibana needs whitespace between 'and' and '(')" },
      { 'a: "x" and(b: 1)', [[1:8: Expected end of input but "a" found. ]]
                            .. "(Kibana needs whitespace between 'and' and '(')" },
      { "not(a: 1)", [[1:4: Expected ":", "<", "<=", ">", ">=", AND, OR, end of input but "(" found. ]]
                     .. "(Kibana needs whitespace between 'not' and '(')" },
      { "a:{ b: c", [[1:9: Expected "}", AND, OR but end of input found. (to close the '{' at 1:3)]] },
      { "a:{ b: c }}", [[1:11: Expected AND, OR, end of input but "}" found.]] },
      { "a: {", [[1:5: Expected "(", NOT, field name, value, whitespace but end of input found.]] },
      { "a: }", [[1:4: Expected "(", "{", value, whitespace but "}" found.]] },
      { "a >", [[1:4: Expected literal, whitespace but end of input found.]] },
      { "a <= )", [[1:6: Expected literal, whitespace but ")" found.]] },
      { "a: b\\", [[1:5: Expected AND, OR, end of input but "\" found.]] },
      { "a: b\\q", [[1:5: Expected AND, OR, end of input but "\" found.]] },
      { "a: x\\ ", [[1:5: Expected AND, OR, end of input but "\" found.]] },
      { "a: \\u12G4", [[1:4: Expected "(", "{", value, whitespace but "\" found.]] },
      { "a: foo<bar*", [[1:7: Expected AND, OR, end of input but "<" found.]] },
      { "a: x\n  and b: (y or\n  z", [[3:4: Expected ")", AND, OR but end of input found. ]]
                                  .. "(to close the '(' at 2:10)" },
      { "a: null", [[1:1: a null value: Kibana sends it as null, which Elasticsearch rejects ]]
                   .. [[(quote it to match the word: "null")]] },
      { "a*:{ b: 1 }", "1:1: a nested field takes no wildcards: 'a*'" },
    }
    for _, case in ipairs(cases) do
      local source, message = case[1], case[2]
      it(("reports %q as %q"):format(source, message), function()
        assert.are.equal("query:" .. message, compile_error(source))
      end)
    end

    -- What the grammar reads otherwise than one might think, as Kibana does.
    it("accepts what Kibana's grammar accepts", function()
      local function ast(src) return compile(src).ast end
      assert.are.same({ "match", "a", "b and" }, { ast("a: (b and)").op, ast("a: (b and)").field,
                                                   ast("a: (b and)").literal })
      assert.are.equal("not", ast("a: (not)").literal)
      assert.are.equal("or", ast("a: or").literal)
      assert.are.equal("b or", ast("a: b or").literal)
      assert.are.equal("and aws.x", ast("x: y and and aws.x: z").children[2].field)
      assert.are.equal("a b", ast("a b: c").field)
      assert.are.equal("", ast('"": x').field)
      assert.are.same({ "range", "1*" }, { ast("a > 1*").op, ast("a > 1*").literal })
      assert.are.same({ "match", nil, "a = b" }, { ast("a = b").op, ast("a = b").field, ast("a = b").literal })
      assert.are.same({ "all" }, { ast("").op })
      assert.are.same({ "all" }, { ast("  \n\t ").op })
    end)
  end)

  describe("match()", function()
    it("matches a field's exact value, case-sensitively", function()
      assert.is_true(matches('event.action: "GetObject"', { ["event.action"] = "GetObject" }))
      assert.is_true(matches("event.action: GetObject", { ["event.action"] = "GetObject" }))
      assert.is_false(matches("event.action: GetObject", { ["event.action"] = "getobject" }))
      assert.is_false(matches("event.action: GetObject", { ["event.action"] = "GetObjectAcl" }))
      assert.is_false(matches("event.action: GetObject", { ["event.action"] = " GetObject" }))
      assert.is_false(matches("event.action: GetObject", { ["event.provider"] = "GetObject" }))
    end)

    it("matches the two Bedrock rules' query", function()
      local q = compile(BEDROCK)
      local e = bedrock_event()
      assert.is_true(q.match(getter(e)))
      for _, action in ipairs({ "PutFoundationModelEntitlement", "CreateFoundationModelAgreement" }) do
        e["event.action"] = action
        assert.is_true(q.match(getter(e)))
      end
      e["aws.cloudtrail.error_code"] = "AccessDenied"
      assert.is_true(q.match(getter(e)))
      for field, other in pairs({
        ["data_stream.dataset"] = "aws.guardduty", ["event.provider"] = "s3.amazonaws.com",
        ["event.action"] = "putUseCaseForModelAccess", ["event.outcome"] = "success",
        ["aws.cloudtrail.error_code"] = "ThrottlingException",
      }) do
        local changed = bedrock_event()
        changed[field] = other
        assert.is_false(q.match(getter(changed)), field)
        changed[field] = nil
        assert.is_false(q.match(getter(changed)), field)
      end
    end)

    it("binds and tighter than or", function()
      local source = "a: 1 or b: 1 and c: 1"
      assert.is_true(matches(source, { a = "1" }))
      assert.is_false(matches(source, { b = "1" }))
      assert.is_true(matches(source, { b = "1", c = "1" }))
      local source2 = "a: 1 and b: 1 or c: 1"
      assert.is_true(matches(source2, { c = "1" }))
      assert.is_false(matches(source2, { a = "1" }))
    end)

    it("binds not tighter than and", function()
      local source = "not a: 1 and b: 1"
      assert.is_true(matches(source, { b = "1" }))
      assert.is_false(matches(source, { a = "1", b = "1" }))
      assert.is_false(matches(source, {}))
    end)

    it("lets parentheses override precedence", function()
      local source = "(a: 1 or b: 1) and c: 1"
      assert.is_false(matches(source, { a = "1" }))
      assert.is_true(matches(source, { a = "1", c = "1" }))
      assert.is_true(matches("not (a: 1 and b: 1)", { a = "1" }))
      assert.is_false(matches("not (a: 1 and b: 1)", { a = "1", b = "1" }))
      assert.is_true(matches("not (not a: 1)", { a = "1" }))
    end)

    it("reads keywords in any case", function()
      local source = "a: 1 OR b: 1 AnD NOT c: 1"
      assert.is_true(matches(source, { a = "1" }))
      assert.is_true(matches(source, { b = "1" }))
      assert.is_false(matches(source, { b = "1", c = "1" }))
      assert.is_true(matches("a: (x Or y)", { a = "y" }))
    end)

    it("groups values of one field with or, and and not", function()
      assert.is_true(matches("a: (x or y)", { a = "y" }))
      assert.is_false(matches("a: (x or y)", { a = "z" }))
      assert.is_true(matches("a: (x* and not (xy or xz))", { a = "xa" }))
      assert.is_false(matches("a: (x* and not (xy or xz))", { a = "xz" }))
      assert.is_true(matches("a: (not x)", { a = "y" }))
      assert.is_true(matches("a: (not x)", {}))
      assert.is_true(matches("a: (x or y and z)", { a = "x" }))
      assert.is_false(matches("a: (x or y and z)", { a = "y" }))
    end)

    it("matches any element of an array field", function()
      local e = { tags = { "alpha", "beta" } }
      assert.is_true(matches("tags: beta", e))
      assert.is_true(matches("tags: (gamma or alpha)", e))
      assert.is_false(matches("tags: gamma", e))
      assert.is_true(matches("tags: b*", e))
      assert.is_true(matches("tags: *", e))
      assert.is_true(matches("not tags: gamma", e))
      assert.is_false(matches("not tags: alpha", e))
    end)

    it("applies each value of a list to the whole array, as Elastic does", function()
      local e = { tags = { "alpha", "beta" } }
      assert.is_true(matches("tags: (alpha and beta)", e))
      assert.is_true(matches("tags: alpha and tags: beta", e))
      assert.is_false(matches("tags: (alpha and gamma)", e))
      assert.is_false(matches("tags: (not alpha)", e))
    end)

    it("flattens nested arrays and skips holes", function()
      assert.is_true(matches("a: x", { a = { { "w" }, { "v", "x" } } }))
      assert.is_true(matches("a: 3", { a = { "1", nil, 3 } }))
      assert.is_true(matches("a: *", { a = { nil, "b" } }))
    end)

    it("reads read-only views (proxy tables) like plain tables", function()
      local e = { tags = view({ "alpha", "beta" }), obj = view({ k = "v" }), empty = view({}) }
      assert.is_true(matches("tags: beta", e))
      assert.is_true(matches("tags: (gamma or alpha)", e))
      assert.is_true(matches("tags: *", e))
      assert.is_true(matches("obj: *", e))
      assert.is_false(matches("empty: *", e))
      assert.is_false(matches("obj: v", e))
    end)

    it("never matches a missing field, so not field: value holds for it", function()
      assert.is_false(matches("a: x", {}))
      assert.is_false(matches("a: x*", {}))
      assert.is_false(matches("a: (x or y)", {}))
      assert.is_false(matches("a > 1", {}))
      assert.is_false(matches("a: *", {}))
      assert.is_true(matches("not a: x", {}))
      assert.is_true(matches("not a: (x or y)", {}))
      assert.is_true(matches("not a: *", {}))
      assert.is_true(matches("b: 1 and not a: x", { b = 1 }))
    end)

    it("tests whether a field exists with field: *", function()
      assert.is_true(matches("a: *", { a = "" }))
      assert.is_true(matches("a: *", { a = 0 }))
      assert.is_true(matches("a: *", { a = false }))
      assert.is_true(matches("a: *", { a = { "x" } }))
      assert.is_true(matches("a: *", { a = { k = "v" } }))
      assert.is_false(matches("a: *", { a = {} }))
      assert.is_false(matches("a: *", {}))
      assert.is_true(matches("a: **", { a = "x" }))
      assert.is_true(matches("a: (* and not x)", { a = "y" }))
      assert.is_false(matches("a: (* and not x)", { a = "x" }))
      assert.is_false(matches("a: (* and not x)", {}))
    end)

    it("never equals an object field to a scalar", function()
      local e = { obj = { a = "x", [1] = nil } }
      assert.is_false(matches("obj: x", e))
      assert.is_false(matches("obj: *x*", e))
      assert.is_false(matches("obj > a", e))
      assert.is_true(matches("not obj: x", e))
    end)

    it("treats * in an unquoted value as a wildcard", function()
      local e = { ua = "aws-cli/2.0 Terraform/1.5" }
      assert.is_true(matches("ua: *Terraform*", e))
      assert.is_true(matches("ua: aws-cli*", e))
      assert.is_true(matches("ua: *1.5", e))
      assert.is_true(matches("ua: aws*/*Terra*", e))
      assert.is_false(matches("ua: *terraform*", e))
      assert.is_false(matches("ua: Terraform*", e))
      assert.is_false(matches("ua: *cli", e))
      assert.is_true(matches("ua: a*w*s*", { ua = "aws" }))
      assert.is_false(matches("ua: ab*ba", { ua = "aba" }))
      assert.is_true(matches("ua: ab*ba", { ua = "abba" }))
      assert.is_true(matches("ua: a**b", { ua = "ab" }))
    end)

    it("treats * inside quotes as a plain character", function()
      assert.is_false(matches('a: "*Terraform*"', { a = "Terraform" }))
      assert.is_true(matches('a: "*Terraform*"', { a = "*Terraform*" }))
      assert.is_false(matches('a: "*"', { a = "x" }))
      assert.is_true(matches('a: "*"', { a = "*" }))
    end)

    it("keeps inner spaces of an unquoted value and trims the ends", function()
      assert.is_true(matches("ua: (*S3 Browser* or *Cyberduck*)", { ua = "S3 Browser 9.5.5" }))
      assert.is_false(matches("ua: (*S3 Browser* or *Cyberduck*)", { ua = "S3Browser 9" }))
      assert.is_true(matches("a: ( two  words )", { a = "two  words" }))
      assert.is_true(matches("a:\n  spaced out\nand b: 1", { a = "spaced out", b = 1 }))
    end)

    it("unescapes quoted values: \\\" and \\\\, and keeps other backslashes", function()
      assert.is_true(matches([[a: "say \"hi\""]], { a = 'say "hi"' }))
      assert.is_true(matches([[a: "C:\\Windows"]], { a = "C:\\Windows" }))
      assert.is_true(matches([[a: "C:\Windows"]], { a = "C:\\Windows" }))
      assert.is_true(matches([[a: "tab\there"]], { a = "tab\there" }))
      assert.is_true(matches([[a: "caf\u00e9"]], { a = "café" }))
      assert.is_true(matches([[a: "x and y or not z"]], { a = "x and y or not z" }))
    end)

    it("unescapes special characters, whitespace and keywords in unquoted values", function()
      assert.is_true(matches([[user.id: *\:i-*]], { ["user.id"] = "AROAXXX:i-0abc" }))
      assert.is_false(matches([[user.id: *\:i-*]], { ["user.id"] = "AROAXXX-i-0abc" }))
      assert.is_true(matches([[a: arn\:aws\:iam\:\:aws\:policy*]], { a = "arn:aws:iam::aws:policy/Admin" }))
      assert.is_true(matches([[a: 100\*]], { a = "100*" }))
      assert.is_false(matches([[a: 100\*]], { a = "1000" }))
      assert.is_true(matches([[a: \(x\)\"\\\<\>\{\}]], { a = [[(x)"\<>{}]] }))
      assert.is_true(matches([[a: a\tb]], { a = "a\tb" }))
      assert.is_true(matches([[a: \and]], { a = "and" }))
      assert.is_true(matches([[a: (x or \or)]], { a = "or" }))
      assert.is_true(matches([[a: caf\u00e9]], { a = "café" }))
    end)

    it("does not take a keyword inside a word for an operator", function()
      assert.is_true(matches("a: cannot", { a = "cannot" }))
      assert.is_true(matches("a: (order or android)", { a = "android" }))
      assert.is_true(matches("or: 1 and and: 2", { ["or"] = 1, ["and"] = 2 }))
      assert.is_true(matches("notes: x", { notes = "x" }))
    end)

    it("accepts quoted field names", function()
      assert.is_true(matches('"field with spaces": x', { ["field with spaces"] = "x" }))
    end)

    it("compares numbers as their JSON text", function()
      assert.is_true(matches("status: 200", { status = 200 }))
      assert.is_true(matches('status: "200"', { status = 200 }))
      assert.is_true(matches("status: 200", { status = "200" }))
      assert.is_true(matches("status: 200", { status = 200.0 }))
      assert.is_true(matches("status: (404 or 200)", { status = 200.0 }))
      assert.is_false(matches("status: 200", { status = 201 }))
      assert.is_false(matches("status: 200", { status = "200.0" }))
      assert.is_false(matches("status: abc", { status = 200 }))
      assert.is_true(matches("status: 2*", { status = 200 }))
      assert.is_true(matches("status: *00", { status = 200.0 }))
      assert.is_false(matches("status: *.0", { status = 200.0 }))
      assert.is_true(matches("ratio: 0.5", { ratio = 0.5 }))
      assert.is_true(matches("ratio: 0.1*", { ratio = 0.1 }))
      assert.is_true(matches("port: (21 or 22 or 23)", { port = { 8080, 22 } }))
    end)

    it("equals a number to a numeric literal of the same value", function()
      assert.is_true(matches("n: 22.0", { n = 22 }))
      assert.is_true(matches("n: 1e3", { n = 1000 }))
      assert.is_true(matches("n: -5", { n = -5.0 }))
      assert.is_false(matches("n: 0x10", { n = 16 }))
    end)

    it("compares booleans as true and false", function()
      assert.is_true(matches("ok: true", { ok = true }))
      assert.is_true(matches('ok: "true"', { ok = true }))
      assert.is_true(matches("ok: false", { ok = false }))
      assert.is_true(matches("ok: true", { ok = "true" }))
      assert.is_false(matches("ok: true", { ok = false }))
      assert.is_false(matches("ok: false", {}))
      assert.is_false(matches("ok: TRUE", { ok = true }))
      assert.is_true(matches("ok: (true or false)", { ok = false }))
      assert.is_true(matches("ok: t*", { ok = true }))
      assert.is_true(matches("not ok: true", { ok = false }))
    end)

    it("compares ranges numerically when both sides are numbers", function()
      assert.is_true(matches("n > 9", { n = 10 }))
      assert.is_true(matches("n > 9", { n = "10" }))
      assert.is_false(matches("n > 10", { n = 10 }))
      assert.is_true(matches("n >= 10", { n = 10.0 }))
      assert.is_true(matches("n < 10.5", { n = 10 }))
      assert.is_true(matches("n <= -1", { n = -1 }))
      assert.is_true(matches('n > "9"', { n = 10 }))
      assert.is_true(matches("n > 100", { n = { 5, 500 } }))
      assert.is_false(matches("n > 100", { n = { 5, 50 } }))
      assert.is_false(matches("n > 1", { n = true }))
    end)

    it("compares ranges as strings otherwise", function()
      assert.is_true(matches("t >= 2024-01-01", { t = "2024-06-01T00:00:00Z" }))
      assert.is_false(matches('t < "2024-01-01"', { t = "2024-06-01T00:00:00Z" }))
      assert.is_true(matches("name > b", { name = "c" }))
      assert.is_false(matches("name > b", { name = "B" }))
      assert.is_false(matches("name > abc", { name = 5 }))
      assert.is_true(matches("name < abc", { name = 5 }))
    end)

    it("does not allocate memory while matching", function()
      local q = compile(BEDROCK .. " and not user.name: (*admin* or root) and source.port > 1024 and source.ip: *")
      local e = bedrock_event()
      e["user.name"], e["source.port"], e["source.ip"] = "alice", 40000, "10.0.0.1"
      local get = getter(e)
      assert.is_true(q.match(get))
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      for _ = 1, 10000 do q.match(get) end
      local after = collectgarbage("count")
      collectgarbage("restart")
      assert.are.equal(before, after)
    end)
  end)

  describe("match() on every field", function()
    -- A getter over a nested document, as the worker's (event.DOCUMENT: the document).
    local function over(doc) return events.getter(doc) end
    local function m(src, doc) return compile(src).match(over(doc)) end

    local doc = { event = { action = "GetObject", code = 4648 }, user = { name = "alice" },
                  tags = { "prod", "eu" }, n = 7, flag = true, source = { ip = "10.1.2.3", port = 443 } }

    it("finds a value with no field in any field, arrays and nested objects too", function()
      assert.is_true(m("alice", doc))
      assert.is_true(m('"GetObject"', doc))
      assert.is_true(m("eu", doc))
      assert.is_true(m("7", doc))
      assert.is_true(m("true", doc))
      assert.is_true(m("Get*", doc))
      assert.is_false(m("getobject", doc))
      assert.is_false(m("bob", doc))
      assert.is_true(m("not bob", doc))
      assert.is_true(m("bob or alice", doc))
      assert.is_false(m("alice and bob", doc))
      assert.is_true(m("user.name: alice and prod", doc))
    end)

    it("compares each field by its type: addresses on ip fields, numbers on numeric ones", function()
      assert.is_true(m("10.0.0.0/8", doc))
      assert.is_true(m('"::ffff:10.1.2.3"', doc))
      assert.is_true(m("443.0", doc))
      assert.is_false(m("4*", doc))         -- a wildcard matches no number
      assert.is_false(m("192.168.0.0/16", doc))
    end)

    it("treats a lone * with no field as any field existing", function()
      assert.is_true(m("*", doc))
      assert.is_false(m("*", {}))
    end)

    it("reads a field name with wildcards as every field it names", function()
      assert.is_true(m("event.*: GetObject", doc))
      assert.is_true(m("*.name: alice", doc))
      assert.is_false(m("event.*: alice", doc))
      assert.is_true(m("event.*: *", doc))
      assert.is_false(m("process.*: *", doc))
      assert.is_true(m("source.* >= 443", doc))
      assert.is_true(m("*: eu", doc))
      assert.is_true(m("not user.*: bob", doc))
    end)

    it("takes an unquoted null as a field name for a value with no field, as Kibana does", function()
      assert.is_true(m("null: alice", doc))
      assert.is_true(m('"null": alice', { null = "alice" }))
      assert.is_false(m('"null": alice', doc))
    end)

    it("matches every event with the empty query", function()
      assert.is_true(m("", doc))
      assert.is_true(m("   ", {}))
    end)
  end)

  describe("match() of nested queries", function()
    local function m(src, doc) return compile(src).match(events.getter(doc)) end
    local deltas = { deltas = { { action = "ADD", role = "roles/target" },
                                { action = "REMOVE", role = "roles/other" } } }

    it("holds when one object of the field satisfies the whole inner query", function()
      assert.is_true(m('deltas:{ action: ADD and role: "roles/target" }', deltas))
      assert.is_false(m('deltas:{ action: ADD and role: "roles/other" }', deltas))
      assert.is_true(m('deltas:{ action: REMOVE and not role: "roles/target" }', deltas))
      assert.is_true(m('deltas.action: ADD and deltas.role: "roles/other"', deltas))  -- not nested: any element
      assert.is_false(m("deltas:{ action: NONE }", deltas))
      assert.is_false(m("missing:{ action: ADD }", deltas))
      assert.is_false(m("deltas:{ action: ADD }", { deltas = "ADD" }))
    end)

    it("reads a single object, dotted names inside it, and nests", function()
      assert.is_true(m("a:{ b.c: 1 }", { a = { b = { c = 1 } } }))
      assert.is_true(m("a:{ b.c: 1 }", { a = { ["b.c"] = 1 } }))
      assert.is_true(m("a:{ b:{ c: 1 and d: 2 } }", { a = { { b = { { c = 1, d = 1 }, { c = 1, d = 2 } } } } }))
      assert.is_false(m("a:{ b:{ c: 1 and d: 2 } }", { a = { { b = { { c = 1, d = 1 }, { c = 2, d = 2 } } } } }))
      assert.is_true(m("a:{ *: 2 }", { a = { { x = 1 }, { y = 2 } } }))
      assert.is_true(m("a:{ 2 }", { a = { { x = 1 }, { y = 2 } } }))
      assert.is_false(m("a:{ 2 }", { a = { x = 1 }, b = 2 }))
    end)

    it("types the fields inside by their full name", function()
      assert.is_true(m("source:{ ip: 10.0.0.0/8 and port: 443.0 }",
                       { source = { ip = "10.9.9.9", port = "443" } }))
      assert.is_nil(kql.compile("source:{ ip: hello }"))
    end)

    it("names the nested field and the full names inside it among the fields", function()
      assert.same({ "a", "a.b", "a.c", "a.c.d", "e" }, compile("a:{ b: 1 and c:{ d: 2 } } and e: 3").fields)
    end)
  end)

  describe("match() on ip fields", function()
    local function m(src, ip, field) return compile(src).match(getter({ [field or "source.ip"] = ip })) end

    it("holds an address in a CIDR block, IPv4 and IPv6", function()
      assert.is_true(m("source.ip: 10.0.0.0/8", "10.1.2.3"))
      assert.is_false(m("source.ip: 10.0.0.0/8", "11.1.2.3"))
      assert.is_true(m("source.ip: 192.168.16.0/20", "192.168.31.255"))
      assert.is_false(m("source.ip: 192.168.16.0/20", "192.168.32.0"))
      assert.is_true(m("source.ip: 0.0.0.0/0", "8.8.8.8"))
      assert.is_true(m('source.ip: "2001:db8::/32"', "2001:db8:ffff::1"))
      assert.is_false(m('source.ip: "2001:db8::/32"', "2001:db9::1"))
      assert.is_true(m('source.ip: "::/0"', "fe80::1"))
      assert.is_true(m("source.ip: 10.0.0.0/8", "::ffff:10.1.2.3"))       -- IPv4-mapped
      assert.is_true(m('source.ip: "::ffff:0:0/96"', "1.2.3.4"))
      assert.is_true(m("source.ip: 10.1.2.3/32", "10.1.2.3"))
      assert.is_true(m("source.ip: 10.1.2.3/8", "10.200.0.1"))            -- host bits are ignored
      assert.is_false(m("source.ip: 10.0.0.0/8", "bedrock.amazonaws.com"))
      assert.is_true(m("source.ip: (10.0.0.0/8 or 192.168.0.0/16)", { "8.8.8.8", "192.168.1.1" }))
      assert.is_true(m("not source.ip: 10.0.0.0/8", "8.8.8.8"))
      assert.is_true(m("not source.ip: 10.0.0.0/8", nil))
    end)

    it("equals addresses however they are written", function()
      assert.is_true(m('source.ip: "2001:0db8::1"', "2001:db8::1"))
      assert.is_true(m('source.ip: "2001:db8::1"', "2001:0DB8:0:0:0:0:0:1"))
      assert.is_true(m('source.ip: "::ffff:10.1.2.3"', "10.1.2.3"))
      assert.is_true(m("source.ip: 10.1.2.3", "::ffff:a01:203"))
      assert.is_false(m("source.ip: 10.1.2.3", "10.1.2.4"))
      assert.is_false(m('source.ip: "::1"', "::2"))
      assert.is_true(m("related.ip: 10.1.2.3", { "1.1.1.1", "10.1.2.3" }, "related.ip"))
    end)

    it("compares ranges as addresses", function()
      assert.is_true(m("source.ip >= 10.0.0.0", "10.0.0.1"))
      assert.is_true(m("source.ip < 10.0.0.10", "10.0.0.9"))
      assert.is_false(m("source.ip < 10.0.0.10", "10.0.0.10"))
      assert.is_true(m('source.ip > "::1"', "10.0.0.1"))   -- ::ffff:a.b.c.d sorts after ::1
    end)

    it("rejects what Elasticsearch rejects on an ip field: other text, wildcards", function()
      local function err(src) return select(2, kql.compile(src)) end
      assert.equal("query:1:1: source.ip is an ip field in ECS: 'hello' is neither an IP address nor a CIDR block "
        .. "(Elasticsearch rejects the query)", err("source.ip: hello"))
      assert.equal("query:1:11: destination.ip is an ip field in ECS: it takes no wildcards "
        .. "(Elasticsearch rejects the query)", err("a: x and (destination.ip: 10.*)"))
      assert.matches("'10.0.0.0/33' is neither", err("source.ip: 10.0.0.0/33"))
      assert.matches("'010.0.0.1' is neither", err("source.ip: 010.0.0.1"))
      assert.matches("'1::2::3' is neither", err('source.ip: "1::2::3"'))
      assert.matches("'10.0.0.0/8' is not an IP address", err("source.ip > 10.0.0.0/8"))
    end)

    it("reads an unquoted IPv6 address only escaped, as Kibana's grammar does", function()
      assert.is_nil(kql.compile("source.ip: 2001:db8::1"))
      assert.is_true(m([[source.ip: 2001\:0db8\:\:1]], "2001:db8::1"))
    end)

    it("holds an IP-shaped value of a field outside ECS in a CIDR block, as Elastic's evaluator does", function()
      assert.is_true(m("ip: 192.168.0.0/16", "192.168.16.3", "ip"))
      assert.is_false(m("ip: 10.0.0.0/8", "192.168.16.3", "ip"))
      assert.is_true(m("ip: 10.0.0.0/8", "10.0.0.0/8", "ip"))
      assert.is_false(m("source.address: 10.0.0.0/8", "10.1.2.3", "source.address"))  -- a keyword in ECS
    end)
  end)

  describe("match() on numeric fields", function()
    local function m(src, v, field) return compile(src).match(getter({ [field or "source.port"] = v })) end

    it("compares numbers, the strings of numbers too", function()
      assert.is_true(m("source.port: 443", 443))
      assert.is_true(m("source.port: 443.0", 443))
      assert.is_true(m("source.port: 443.0", "443"))
      assert.is_true(m("source.port: 443", "443.0"))
      assert.is_true(m("source.port: 4.43e2", 443))
      assert.is_false(m("source.port: 443", 444))
      assert.is_false(m("source.port: 443", "x443"))
      assert.is_true(m("http.response.status_code: (200.0 or 204)", { 404, 200 },
                       "http.response.status_code"))
      assert.is_true(m("source.port > 1023.5", "1024"))
      assert.is_false(m("source.port < 1024", "1024"))
    end)

    it("compares a keyword field as text, a field outside ECS by what it holds", function()
      assert.is_false(m("event.code: 4648.0", "4648", "event.code"))
      assert.is_false(m("event.code: 4648.0", 4648, "event.code"))      -- indexed as the text "4648"
      assert.is_true(m("event.code: 4648", 4648, "event.code"))
      assert.is_true(m("event.code: (1 or 4648)", 4648, "event.code"))
      assert.is_false(m("event.code: (1 or 4648.0)", 4648, "event.code"))
      assert.is_true(m("event.code > 10", 9, "event.code"))           -- "9" > "10": text
      assert.is_false(m("n > 10", 9, "n"))
      assert.is_false(m("n: 200.0", "200", "n"))
      assert.is_true(m("n: 200.0", 200, "n"))
    end)

    it("rejects what Elasticsearch rejects on a numeric field: other text, wildcards", function()
      assert.equal("query:1:1: source.port is a numeric field in ECS: 'https' is not a number "
        .. "(Elasticsearch rejects the query)", select(2, kql.compile("source.port: https")))
      assert.matches("it takes no wildcards", select(2, kql.compile("source.port: 44*")))
      assert.matches("'x' is not a number", select(2, kql.compile("source.bytes > x")))
      assert.is_not_nil(kql.compile("source.port: *"))
    end)
  end)

  describe("match() on date fields", function()
    local function m(src, v, field) return compile(src).match(getter({ [field or "@timestamp"] = v })) end
    local T = "2024-10-17T20:09:52.000Z"

    it("compares instants, whatever the format", function()
      assert.is_true(m('@timestamp >= "2024-10-17T20:09:52Z"', T))
      assert.is_false(m('@timestamp > "2024-10-17T20:09:52Z"', T))
      assert.is_true(m('@timestamp < "2024-10-17T22:09:52.001+02:00"', T))
      assert.is_true(m("@timestamp >= 1729195792000", T))
      assert.is_true(m("@timestamp >= 2024-10-17", 1729195792000))
      assert.is_true(m("event.created < 2025", "2024-10-17T20:09:52Z", "event.created"))
    end)

    it("rounds a bound up for > and <=, down for >= and <", function()
      assert.is_true(m("@timestamp >= 2024-10-17", T))
      assert.is_false(m("@timestamp > 2024-10-17", T))      -- after the whole of that day
      assert.is_true(m("@timestamp <= 2024-10-17", T))      -- up to its last millisecond
      assert.is_false(m("@timestamp < 2024-10-17", T))
    end)

    it("equals a date to the whole of the period it names", function()
      assert.is_true(m("@timestamp: 2024-10-17", T))
      assert.is_true(m('@timestamp: "2024-10-17T20"', T))
      assert.is_false(m("@timestamp: 2024-10-18", T))
      assert.is_true(m('@timestamp: "2024-10-17T20:09:52Z"', T))
    end)

    it("reads date math, now moving with the clock", function()
      assert.is_true(m("@timestamp < now", T))
      assert.is_false(m("@timestamp > now-1d", T))
      assert.is_true(m("@timestamp > now-100y/y", T))
      assert.is_true(m('@timestamp < "2024-10-17||+1d/d"', T))
      assert.is_false(m('@timestamp <= "2024-10-16||+1d/d" and @timestamp < 2024-10-17', T))
    end)

    it("rejects what Elasticsearch rejects on a date field: other text, wildcards", function()
      assert.matches("@timestamp is a date field in ECS: 'yesterday' is not a date", select(2, kql.compile(
        "@timestamp > yesterday")))
      assert.matches("it takes no wildcards", select(2, kql.compile("@timestamp: 2024*")))
      assert.is_not_nil(kql.compile("@timestamp: *"))
    end)

    it("leaves a field outside the schema to text: t >= 2024-01-01 compares strings", function()
      assert.is_true(m("t >= 2024-01-01", "2024-06-01T00:00:00Z", "t"))
      assert.is_false(m("t >= 2024-01-01", 1729195792000, "t"))
    end)
  end)

  describe("match() on real CloudTrail events (Stratus Red Team, normalized)", function()
    local cjson = require "cjson"
    local normalize = require "normalize"

    local records = {}
    local p = assert(io.popen("ls tests/fixtures/stratus-red-team/*.json"))
    for path in p:lines() do
      local t = cjson.decode(read(path))
      if t[1] == nil then t = { t } end
      for _, r in ipairs(t) do
        records[#records + 1] = { raw = r, doc = normalize.normalize(r, { now = "2026-01-01T00:00:00.000Z" }) }
      end
    end
    p:close()

    local function count(src)
      local q = compile(src)
      local n = 0
      for _, r in ipairs(records) do
        if q.match(events.getter(r.doc)) then n = n + 1 end
      end
      return n
    end
    -- Records whose sourceIPAddress satisfies pred.
    local function raw_count(pred)
      local n = 0
      for _, r in ipairs(records) do
        if type(r.raw.sourceIPAddress) == "string" and pred(r.raw.sourceIPAddress) then n = n + 1 end
      end
      return n
    end
    -- An IPv4 address as Elasticsearch reads it: no octet with a leading zero.
    local function v4(s)
      local o = { s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$") }
      if #o ~= 4 then return false end
      for _, x in ipairs(o) do
        if #x > 1 and x:sub(1, 1) == "0" or tonumber(x) > 255 then return false end
      end
      return true
    end

    it("has the 312 events of the fixture files", function()
      assert.equal(312, #records)
    end)

    it("finds an address by CIDR block, in source.ip and related.ip", function()
      local n = raw_count(function(s) return s == "18.236.253.47" end)
      assert.equal(45, n)
      assert.equal(n, count("source.ip: 18.236.253.47"))
      assert.equal(n, count("source.ip: 18.0.0.0/8"))
      assert.equal(n, count("related.ip: 18.236.0.0/16"))
      assert.equal(34, count("source.ip: 200.249.253.0/24"))
      -- 253.252.51.07 has a leading zero: no address, so not in source.ip (only source.address)
      local in253 = raw_count(function(s) return v4(s) and s:sub(1, 4) == "253." end)
      assert.equal(28, in253)
      assert.equal(in253, count("source.ip: 253.0.0.0/8"))
      assert.equal(56, count('source.address: "253.252.51.07"'))
      assert.equal(raw_count(v4), count("source.ip: 0.0.0.0/0"))
      assert.equal(#records - raw_count(v4), count("not source.ip: 0.0.0.0/0"))
      assert.equal(0, count("source.ip: 10.0.0.0/8 or source.ip: 192.168.0.0/16 or source.ip: 172.16.0.0/12"))
    end)

    it("equals an address however it is written", function()
      assert.equal(45, count('source.ip: "::ffff:18.236.253.47"'))
      assert.equal(45, count('source.ip: "::ffff:12ec:fd2f"'))
      assert.equal(45, count('source.ip: "0:0:0:0:0:ffff:12EC:FD2F"'))
    end)

    it("leaves keyword fields to text: source.address takes no CIDR block", function()
      assert.equal(0, count("source.address: 18.0.0.0/8"))
      assert.equal(45, count("source.address: 18.236.253.47"))
    end)

    it("finds an address or a block with no field, on the ip fields", function()
      assert.equal(45, count("18.236.253.47"))
      assert.equal(45, count('"18.0.0.0/8"'))
      assert.equal(count("source.ip: 253.0.0.0/8"), count("253.0.0.0/8 and source.ip: *"))
    end)

    it("compares @timestamp as instants", function()
      local on17 = 0
      for _, r in ipairs(records) do
        if type(r.raw.eventTime) == "string" and r.raw.eventTime:sub(1, 10) == "2024-10-17" then on17 = on17 + 1 end
      end
      assert.equal(count("@timestamp: 2024-10-17"), on17)
      assert.equal(#records, count("@timestamp < now"))
      assert.equal(count("@timestamp >= 2024-10-17 and @timestamp < 2024-10-18"), on17)
      assert.equal(count("@timestamp: *"), count("@timestamp > 1970") + count("@timestamp <= 1970"))
    end)

    it("compares numbers in flattened fields as Elasticsearch's keywords: as their text", function()
      local port = "aws.cloudtrail.flattened.request_parameters.fromPort"
      local n = count(port .. ": 22")
      assert.is_true(n > 0)
      assert.equal(0, count(port .. ": 22.0"))
      assert.equal(n, count(port .. ' > "100"'))   -- "22" > "100": text
      assert.equal(n, count("aws.cloudtrail.flattened.*: 22 and " .. port .. ": *"))
    end)
  end)

  describe("explain()", function()
    it("returns a copy of the tree with the value of every node", function()
      local q = compile("a: x and not (b: (y or z) or c > 5)")
      local tree = q.explain(getter({ a = "x", b = "z", c = 1 }))
      assert.are.same({ "and", false }, { tree.op, tree.value })
      assert.are.same({ "match", true }, { tree.children[1].op, tree.children[1].value })
      local neg = tree.children[2]
      assert.are.same({ "not", false }, { neg.op, neg.value })
      local any = neg.children[1]
      assert.are.same({ "or", true }, { any.op, any.value })
      assert.are.same({ "or", true }, { any.children[1].op, any.children[1].value })
      assert.are.same({ false, true }, { any.children[1].children[1].value, any.children[1].children[2].value })
      assert.are.same({ "range", false }, { any.children[2].op, any.children[2].value })
      assert.are.equal(1, any.children[2].line)
      assert.are.equal(30, any.children[2].col)
      assert.is_nil(q.ast.value)
      assert.is_nil(q.ast.children[1].value)
    end)

    it("agrees with match() on every node it evaluates", function()
      local q = compile(BEDROCK)
      local e = bedrock_event()
      assert.is_true(q.explain(getter(e)).value)
      e["event.outcome"] = "success"
      local tree = q.explain(getter(e))
      assert.is_false(tree.value)
      assert.is_false(tree.children[4].value)
      assert.is_true(tree.children[5].value)
    end)
  end)

  describe("the Elastic AWS detection rules", function()
    -- Queries that are known not to compile, by file, with the reason: none.
    local known_failures = {}

    it("come with all 194 rule files", function()
      assert.are.equal(194, #rule_files())
    end)

    it("compile every kuery query", function()
      local compiled, failures = 0, {}
      for _, name in ipairs(rule_files()) do
        local query, line, col = kuery_of(read(FIXTURES .. name))
        if query then
          local q, err = kql.compile(query, { chunkname = name, line = line, col = col })
          if q then
            compiled = compiled + 1
            assert.is_true(#q.fields > 0, name)
            assert.is_boolean(q.match(getter({})), name)
            assert.is_nil(known_failures[name], name .. " compiles now: take it off the list")
          elseif not known_failures[name] then
            failures[#failures + 1] = err
          end
        end
      end
      assert.are.same({}, failures)
      assert.are.equal(139, compiled)
    end)

    it("point errors into the rule file", function()
      local name = "persistence_bedrock_foundation_model_access_denied_attempt.toml"
      local query, line, col = kuery_of(read(FIXTURES .. name))
      assert.are.equal(86, line)
      assert.are.equal(12, col)
      local broken = query:gsub('"failure"', '"failure" or)', 1)
      local _, err = kql.compile(broken, { chunkname = name, line = line, col = col })
      assert.are.equal(name .. ':94:34: Expected end of input but "o" found.', err)
    end)

    it("match what their queries describe", function()
      local function rule(name)
        local query, line, col = kuery_of(read(FIXTURES .. name))
        return compile(query, { chunkname = name, line = line, col = col })
      end

      local denied = rule("persistence_bedrock_resource_based_policy_denied_attempt.toml")
      local e = bedrock_event()
      e["event.action"] = "PutResourcePolicy"
      assert.is_true(denied.match(getter(e)))
      e["event.action"] = "PutUseCaseForModelAccess"
      assert.is_false(denied.match(getter(e)))

      local ec2_user = rule("persistence_iam_create_user_via_assumed_role_on_ec2_instance.toml")
      local creds = {
        ["data_stream.dataset"] = "aws.cloudtrail", ["event.provider"] = "iam.amazonaws.com",
        ["event.action"] = "CreateUser", ["event.outcome"] = "success",
        ["aws.cloudtrail.user_identity.type"] = "AssumedRole", ["user.id"] = "AROAEXAMPLE:i-0123456789abcdef0",
      }
      assert.is_true(ec2_user.match(getter(creds)))
      creds["user.id"] = "AROAEXAMPLE:alice"
      assert.is_false(ec2_user.match(getter(creds)))

      local keypair = rule("persistence_new_terms_ec2_create_keypair_unusual_source_as.toml")
      local kp = {
        ["event.dataset"] = "aws.cloudtrail", ["event.provider"] = "ec2.amazonaws.com",
        ["event.action"] = "CreateKeyPair", ["event.outcome"] = "success",
        ["source.as.organization.name"] = "Example Hosting Ltd",
      }
      assert.is_true(keypair.match(getter(kp)))
      kp["source.as.organization.name"] = "Amazon.com, Inc."
      assert.is_false(keypair.match(getter(kp)))
      kp["source.as.organization.name"] = "AMAZON-02"
      assert.is_false(keypair.match(getter(kp)))
      kp["source.as.organization.name"] = nil
      assert.is_false(keypair.match(getter(kp)))
    end)

    it("give the same answer through match() and explain() on varied events", function()
      -- A small deterministic generator, so a failure reproduces.
      local seed = 12345
      local function rand(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n + 1
      end
      local function values_of(node, field, out)
        if node.children then
          for _, child in ipairs(node.children) do values_of(child, field, out) end
        elseif node.field == field then
          if node.op == "match" and node.wildcard then
            out[#out + 1] = table.concat(node.segments, "x")
          elseif node.literal then
            out[#out + 1] = node.literal
            out[#out + 1] = tonumber(node.literal)
          end
        end
        return out
      end
      local others = { "other", 22, true, false, {}, { k = "v" } }
      local checked, hits = 0, 0
      for _, name in ipairs(rule_files()) do
        local query = kuery_of(read(FIXTURES .. name))
        if query then
          local q = compile(query)
          for _ = 1, 40 do
            local e = {}
            for _, field in ipairs(q.fields) do
              -- mostly values the query names, so that whole rules match too
              local named = values_of(q.ast, field, {})
              local pick = rand(10)
              if pick <= 7 and #named > 0 then
                e[field] = named[rand(#named)]
              elseif pick == 8 and #named > 0 then
                e[field] = { others[rand(#others)], named[rand(#named)] }
              elseif pick <= 9 then
                e[field] = others[rand(#others)]
              end
            end
            local get = getter(e)
            local matched = q.match(get)
            assert.are.equal(q.explain(get).value, matched, name)
            checked = checked + 1
            if matched then hits = hits + 1 end
          end
        end
      end
      assert.are.equal(139 * 40, checked)
      assert.is_true(hits > checked // 10 and hits < checked - checked // 10)
    end)
  end)
end)
