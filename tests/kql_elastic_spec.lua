-- Elastic's and Kibana's own KQL tests, ported to scripts/kql.lua (rewritten in Lua, not
-- copied):
--   detection-rules   tests/kuery/test_evaluator.py: the 66 assertions of Elastic's KQL
--                     evaluator, over the same documents;
--                     tests/kuery/test_parser.py: what its parser rejects and how it reads
--                     what it accepts, where no index schema is involved (with a schema:
--                     their analogues on ECS's ip and numeric fields);
--   kibana            kbn-es-query src/kuery/kuery_syntax_error.test.ts: Kibana's syntax
--                     errors, message and position; src/kuery/ast/ast.test.ts: how Kibana's
--                     grammar reads queries.
-- Where detection-rules' Python parser and Kibana differ, Kibana is the reference.

local event = require "event"
local kql = require "kql"

local function compile(src)
  local q, err = kql.compile(src)
  assert(q, err)
  return q
end

local function evaluate(src, doc)
  return compile(src).match(event.getter(doc))
end

local function rejects(src)
  local q, err = kql.compile(src)
  return q == nil and type(err) == "string"
end

-- A node as Kibana's buildNode would name it: is(field, value), range(field, gt, v), ...
local RANGE = { [">"] = "gt", [">="] = "gte", ["<"] = "lt", ["<="] = "lte" }
local function shape(node)
  local op = node.op
  local field = node.field or node.fieldtext or "null"
  if op == "all" then return "is(*, *)" end
  if op == "exists" then return "is(" .. field .. ", *)" end
  if op == "match" then
    return "is(" .. field .. ", " .. (node.quoted and ('"' .. node.literal .. '"') or node.literal) .. ")"
  end
  if op == "range" then return ("range(%s, %s, %s)"):format(field, RANGE[node.operator], node.literal) end
  if op == "nested" then return "nested(" .. node.field .. ", " .. shape(node.children[1]) .. ")" end
  local parts = {}
  for i, child in ipairs(node.children) do parts[i] = shape(child) end
  return op .. "(" .. table.concat(parts, ", ") .. ")"
end

local function parsed(src) return shape(compile(src).ast) end

describe("Elastic's KQL evaluator tests (detection-rules, test_evaluator.py)", function()
  local document = {
    number = 1,
    boolean = true,
    ip = "192.168.16.3",
    string = "hello world",
    string_list = { "hello world", "example" },
    number_list = { 1, 2, 3 },
    boolean_list = { true, false },
    structured = { { a = { { b = 1 } } } },
  }
  local nested_document = {
    deltas = {
      { action = "ADD", role = "roles/target" },
      { action = "REMOVE", role = "roles/other" },
    },
  }

  -- { test, query, expected[, document] }, in the order of the Python file.
  local cases = {
    { "single_value", "number:1", true }, { "single_value", 'number:"1"', true },
    { "single_value", "boolean:true", true }, { "single_value", 'string:"hello world"', true },
    { "single_value", "number:0", false }, { "single_value", "boolean:false", false },
    { "single_value", 'string:"missing"', false },

    { "list_value", "number_list:1", true }, { "list_value", "number_list:2", true },
    { "list_value", "number_list:3", true }, { "list_value", "boolean_list:true", true },
    { "list_value", "boolean_list:false", true }, { "list_value", 'string_list:"hello world"', true },
    { "list_value", "string_list:example", true }, { "list_value", "number_list:4", false },
    { "list_value", 'string_list:"missing"', false },

    { "and_values", "number_list:(1 and 2)", true }, { "and_values", "boolean_list:(false and true)", true },
    { "and_values", 'string:("missing" and "hello world")', false }, { "and_values", "number:(0 and 1)", false },
    { "and_values", "boolean:(false and true)", false },

    { "not_value", "number_list:1", true }, { "not_value", "not number_list:1", false },
    { "not_value", "number_list:(not 1)", false },

    { "or_values", "number:(0 or 1)", true }, { "or_values", "number:(1 or 2)", true },
    { "or_values", "boolean:(false or true)", true }, { "or_values", 'string:("missing" or "hello world")', true },
    { "or_values", "number:(0 or 3)", false },

    { "free_text", '"hello world"', true }, { "free_text", "example", true }, { "free_text", "hello*", true },
    { "free_text", "1", true }, { "free_text", 'not "missing"', true }, { "free_text", '"missing"', false },
    { "free_text", "goodbye*", false }, { "free_text", '"hello world" and "missing"', false },
    { "free_text", '"missing" or number:1', true },

    { "and_expr", "number:1 and boolean:true", true }, { "and_expr", "number:1 and boolean:false", false },

    { "or_expr", "number:1 or boolean:false", true }, { "or_expr", "number:0 or boolean:false", false },

    { "range", "number < 2", true }, { "range", "number > 2", false },

    { "cidr_match", "ip:192.168.0.0/16", true }, { "cidr_match", "ip:10.0.0.0/8", false },

    { "quoted_wildcard", "string:'*'", false }, { "quoted_wildcard", "string:'?'", false },

    { "wildcard", "string:hello*", true }, { "wildcard", "string:*world", true },
    { "wildcard", "string:foobar*", false },

    { "field_exists", "number:*", true }, { "field_exists", "boolean:*", true }, { "field_exists", "ip:*", true },
    { "field_exists", "string:*", true }, { "field_exists", "string_list:*", true },
    { "field_exists", "number_list:*", true }, { "field_exists", "boolean_list:*", true },
    { "field_exists", "a:*", false },

    { "flattening", "structured.a.b:*", true }, { "flattening", "structured.a.b:1", true },
    { "flattening", "structured.a.b:2", false },

    { "nested_query", "structured:{ a:{ b:1 } }", true }, { "nested_query", "structured:{ a:{ b:2 } }", false },

    { "same_object_match", 'deltas:{ action:ADD and role:"roles/target" }', true, nested_document },
    { "cross_object_no_match", 'deltas:{ action:ADD and role:"roles/other" }', false, nested_document },
  }

  it("has all 66 assertions", function()
    assert.equal(66, #cases)
  end)

  for i, c in ipairs(cases) do
    it(("%d test_%s: %s is %s"):format(i, c[1], c[2], tostring(c[3])), function()
      assert.equal(c[3], evaluate(c[2], c[4] or document))
    end)
  end
end)

describe("Elastic's KQL parser tests (detection-rules, test_parser.py)", function()
  it("rejects a keyword without whitespace around it (test_blank_space)", function()
    assert.is_true(rejects('"Test-ServiceDaclPermission" or"Update-ExeFunctions"'))
    assert.is_true(rejects('"Test-ServiceDaclPermission"and "Update-ExeFunctions"'))
    assert.equal('or(is(null, "Test-ServiceDaclPermission"), is(null, "Update-ExeFunctions"))',
      parsed('"Test-ServiceDaclPermission" or "Update-ExeFunctions"'))
    assert.is_not_nil(kql.compile('"Test-ServiceDaclPermission" \nor "Update-ExeFunctions"'))
    assert.is_not_nil(kql.compile('"Test-ServiceDaclPermission" or\n "Update-ExeFunctions"'))
    assert.is_not_nil(kql.compile('"Test-ServiceDaclPermissionOr" or\n "Update-ExeAndFunctions"'))
  end)

  it("rejects an escape Kibana does not know (test_wildcard_with_spaces_and_invalid_escape)", function()
    assert.is_true(rejects([[field: foo\'bar]]))
    assert.is_true(rejects([[field: *foo\' bar]]))
    assert.is_true(rejects([[field: foo\qbar*]]))
    assert.is_true(rejects([[field: *foo\q bar*]]))
  end)

  it("rejects unescaped < and > in a value, and reads them escaped "
    .. "(test_wildcard_with_spaces_and_unescaped_angle_brackets)", function()
    assert.is_true(rejects("field: foo<bar*"))
    assert.is_true(rejects("field: *foo bar<baz*"))
    assert.is_true(rejects("field: *foo bar>baz*"))
    assert.equal("is(field, *foo<bar baz*)", parsed([[field: *foo\<bar baz*]]))
    assert.equal("is(field, *foo>bar baz*)", parsed([[field: *foo\>bar baz*]]))
  end)

  it("rejects on a numeric field what Elasticsearch rejects (test_number_wildcard_fail, "
    .. "test_type_family_fail: there with a schema, here on ECS's numeric fields)", function()
    assert.is_true(rejects("source.port:*wc"))
    assert.is_true(rejects("source.port:wc*"))
    assert.is_true(rejects('event.risk_score : "hello world"'))
    assert.is_not_nil(kql.compile("event.risk_score : 1.2345"))
    assert.equal("is(source.port, *)", parsed("source.port:*"))     -- test_number_exists
  end)

  it("reads values with spaces and wildcards (test_wildcard_with_spaces)", function()
    assert.equal("is(field, *S3 Browser*)", parsed("field: *S3 Browser*"))
    assert.equal("is(field, *S3 Browser)", parsed("field: *S3 Browser"))
    assert.equal("is(field, S3 Browser*)", parsed("field: S3 Browser*"))
    assert.equal("is(field, S3 B*owser)", parsed("field: S3 B*owser"))
    assert.equal("is(field, S3* Browser)", parsed("field: S3* Browser"))
    assert.equal("is(field, foo* bar* baz)", parsed("field: foo* bar* baz"))
  end)

  it("reads escaped special characters in such values (test_wildcard_with_spaces_and_escaped_specials)", function()
    assert.equal("is(field, *: No such file*)", parsed([[field: *\: No such file*]]))
    assert.equal("is(app_message, *: No such file)", parsed([[app_message: *\: No such file]]))
    assert.equal("is(field, *foo(bar baz*)", parsed([[field: *foo\(bar baz*]]))
    assert.equal("is(field, foo* bar:baz)", parsed([[field: foo* bar\:baz]]))
    assert.equal("or(is(app_message, *: No such file), is(null, directory))",
      parsed([[app_message : *\: No such file or directory]]))
    assert.equal("or(is(app_message, *: No such file), is(app_message, directory))",
      parsed([[app_message : *\: No such file or app_message : directory]]))
  end)

  it("ends a value before and/or, keeps keywords inside a word (test_wildcard_with_spaces_and_keywords)", function()
    assert.equal("and(is(field, *S3 Browser*), is(other, value))", parsed("field: *S3 Browser* and other: value"))
    assert.equal("or(is(field, S3 Browser*), is(other, value))", parsed("field: S3 Browser* or other: value"))
    assert.equal("is(field, *or something*)", parsed("field: *or something*"))
  end)

  it("keeps * literal in quotes and escaped, and reads \\: (test_quoted_wildcard_as_literal, "
    .. "test_escaped_wildcard_is_literal, test_escaped_colon_with_leading_slash_wildcard)", function()
    local q = compile('field: "*text*"').ast
    assert.same({ false, "*text*" }, { q.wildcard, q.literal })
    q = compile([[field:\*]]).ast
    assert.same({ "match", false, "*" }, { q.op, q.wildcard, q.literal })
    q = compile([[field:foo\*bar]]).ast
    assert.same({ false, "foo*bar" }, { q.wildcard, q.literal })
    q = compile([[field:foo\*bar*]]).ast     -- the escaped * stays literal, unlike in detection-rules
    assert.same({ true, { "foo*bar", "" } }, { q.wildcard, q.segments })
    q = compile([[process.args:/lockscreenurl\:http*]]).ast
    assert.same({ true, { "/lockscreenurl:http", "" } }, { q.wildcard, q.segments })
    assert.is_true(evaluate([[field:\*]], { field = "*" }))
    assert.is_false(evaluate([[field:\*]], { field = "x" }))
  end)

  it("reads values with no field (test_free_text_value)", function()
    assert.equal('and(is(process.name, agent12), is(null, "Accepted password for root"))',
      parsed('process.name : agent12 and "Accepted password for root"'))
    assert.equal('is(null, "Accepted password for root")', parsed('"Accepted password for root"'))
    assert.equal("is(null, agent12)", parsed("agent12"))
    assert.equal("is(null, 1)", parsed("1"))
    assert.equal("is(null, *password*)", parsed("*password*"))
    assert.equal("is(null, *)", parsed("*"))
    assert.equal('is(null, "*password*")', parsed('"*password*"'))
    assert.same({ "match", false, "*" }, { compile([[\*]]).ast.op, compile([[\*]]).ast.wildcard,
                                          compile([[\*]]).ast.literal })
    assert.equal('not(is(null, "foo bar"))', parsed('not "foo bar"'))
    assert.equal('or(is(null, "a"), is(process.name, b))', parsed('"a" or process.name : b'))
  end)

  it("reads nested queries with fields relative to the nested field (test_nested_query)", function()
    assert.equal("nested(top, is(a, hello))", parsed("top:{ a:hello }"))
    assert.equal('nested(top, is(b, "1"))', parsed('top:{ b:"1" }'))
    assert.equal("nested(top, and(is(a, hello), is(b, 1)))", parsed("top:{ a:hello and b:1 }"))
    assert.equal("nested(top, nested(middle, is(bool, true)))", parsed("top:{ middle:{ bool: true } }"))
  end)

  it("names the full paths inside nested queries (test_get_field_names_resolves_nested_paths)", function()
    assert.same({ "email.attachments", "email.attachments.file.extension" },
      compile("email.attachments:{ file.extension: exe }").fields)
    assert.same({ "a", "top", "top.b", "top.middle", "top.middle.c" },
      compile("a:1 and top:{ b:2 and middle:{ c:true } }").fields)
    assert.same({ "host.name", "user.id" }, compile("host.name: foo and user.id: 1").fields)
  end)

  it("rejects not before a value, which Kibana's grammar does not take "
    .. "(test_not_prefix_with_wildcard and test_triple_not_optimization accept it)", function()
    assert.is_true(rejects("process.executable: not /test/go-build*"))
    assert.is_true(rejects("process.name: not not not foo"))
    assert.equal("not(is(process.executable, /test/go-build*))", parsed("process.executable: (not /test/go-build*)"))
  end)
end)

describe("Kibana's KQL syntax error tests (kuery_syntax_error.test.ts)", function()
  local cases = {
    { "response:", 'query:1:10: Expected "(", "{", value, whitespace but end of input found.' },
    { "response:200 or ", 'query:1:17: Expected "(", NOT, field name, value but end of input found.' },
    { "response:(200 or )", 'query:1:18: Expected "(", NOT, value but ")" found.' },
    { "response:200 and not ", 'query:1:22: Expected "(", field name, value but end of input found.' },
    { "response:(200 and not )", 'query:1:23: Expected "(", value but ")" found.' },
    { 'foo:"ba ', 'query:1:5: Expected "(", "{", value, whitespace but """ found.' },
    { 'foo:"ba "r"', 'query:1:10: Expected AND, OR, end of input but "r" found.' },
    { "foo:ba:r", 'query:1:7: Expected AND, OR, end of input but ":" found.' },
    { "foo > ", "query:1:7: Expected literal, whitespace but end of input found." },
    { "< 1000", 'query:1:1: Expected "(", NOT, end of input, field name, value, whitespace but "<" found.' },
  }
  for _, c in ipairs(cases) do
    it(("reports %q as Kibana does"):format(c[1]), function()
      local _, err = kql.compile(c[1])
      -- Kibana's message, at its place (its caret's offset + 1), then perhaps a hint of ours
      assert.equal(c[2], err:sub(1, #c[2]))
      assert.matches("^ %(", err:sub(#c[2] + 1) .. " (")
    end)
  end
end)

describe("Kibana's KQL grammar tests (ast.test.ts, fromKueryExpression)", function()
  local cases = {
    { "  ", "is(*, *)" },
    { "foo", "is(null, foo)" },
    { "  foo ", "is(null, foo)" },
    { "foo bar", "is(null, foo bar)" },
    { "foo and bar", "and(is(null, foo), is(null, bar))" },
    { "foo and\194\160bar", "and(is(null, foo), is(null, bar))" },
    { "foo or bar", "or(is(null, foo), is(null, bar))" },
    { "foo and bar and baz", "and(is(null, foo), is(null, bar), is(null, baz))" },
    { "foo or bar or baz", "or(is(null, foo), is(null, bar), is(null, baz))" },
    { "not (foo or bar)", "not(or(is(null, foo), is(null, bar)))" },
    { "foo or bar and baz or qux", "or(is(null, foo), and(is(null, bar), is(null, baz)), is(null, qux))" },
    { "(foo or bar) and baz", "and(or(is(null, foo), is(null, bar)), is(null, baz))" },
    { "foo:bar", "is(foo, bar)" },
    { "foo:bar baz", "is(foo, bar baz)" },
    { 'foo:"bar baz"', 'is(foo, "bar baz")' },
    { "foo:(bar or baz)", "or(is(foo, bar), is(foo, baz))" },
    { "foo:((bar or baz) and not qux)", "and(or(is(foo, bar), is(foo, baz)), not(is(foo, qux)))" },
    { "bytes > 1000 and bytes < 8000", "and(range(bytes, gt, 1000), range(bytes, lt, 8000))" },
    { "bytes >= 1000 and bytes <= 8000", "and(range(bytes, gte, 1000), range(bytes, lte, 8000))" },
    { "machine*:osx", "is(machine*, osx)" },
    { "foo:ba*", "is(foo, ba*)" },
    { "foo:*", "is(foo, *)" },
    { "nestedField:{ childOfNested: foo }", "nested(nestedField, is(childOfNested, foo))" },
    { "response:200 and nestedField:{ childOfNested:foo or childOfNested:bar }",
      "and(is(response, 200), nested(nestedField, or(is(childOfNested, foo), is(childOfNested, bar))))" },
    { "response:200 and ( nestedField:{ childOfNested:foo } or nestedField:{ childOfNested:bar } )",
      "and(is(response, 200), or(nested(nestedField, is(childOfNested, foo)), "
        .. "nested(nestedField, is(childOfNested, bar))))" },
    { "nestedField:{ nestedChild:{ doublyNestedChild:foo } }",
      "nested(nestedField, nested(nestedChild, is(doublyNestedChild, foo)))" },
    { "((((((((((foo))))))))))", "is(null, foo)" },
    { "field: (value AND value2 OR \"value3\") OR nested: { field2: value4 }",
      'or(or(and(is(field, value), is(field, value2)), is(field, "value3")), nested(nested, is(field2, value4)))' },
  }
  for _, c in ipairs(cases) do
    it(("reads %q as %s"):format(c[1], c[2]), function()
      assert.equal(c[2], parsed(c[1]))
    end)
  end

  it("reads escapes in unquoted and quoted literals (fromLiteralExpression)", function()
    assert.equal([[\():<>"*]], compile([[a: \\\(\)\:\<\>\"\*]]).ast.literal)
    assert.equal([[\u00A0]], compile([[a: \\u00A0]]).ast.literal)
    assert.equal([[\():<>"*]], compile([[a: "\():<>\"*"]]).ast.literal)
    assert.equal([[\]], compile([[a: "\\"]]).ast.literal)
    assert.equal([[\u00A0]], compile([[a: "\\u00A0"]]).ast.literal)
    assert.same({ true, { "foo", "bar" } }, { compile("a: foo*bar").ast.wildcard, compile("a: foo*bar").ast.segments })
  end)
end)
