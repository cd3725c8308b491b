-- tests/rules_spec.lua: the Bedrock rules in rules/ carry their Elastic seeds over word for word
-- (tests/fixtures/seeds/*.toml), load in the rule sandbox, and embed the tests each one needs.
--
-- Running the embedded tests through the host's rule loader is not done here: that belongs with
-- scripts/loader.lua and its spec.

local DENIED = { "AccessDenied", "AccessDeniedException" }

local RULES = {
  {
    file = "rules/aws_bedrock_unauthorized_foundation_model_access_attempt.lua",
    seed = "tests/fixtures/seeds/persistence_bedrock_foundation_model_access_denied_attempt.toml",
    actions = { "PutFoundationModelEntitlement", "PutUseCaseForModelAccess", "CreateFoundationModelAgreement" },
  },
  {
    file = "rules/aws_bedrock_unauthorized_resource_policy_modification_attempt.lua",
    seed = "tests/fixtures/seeds/persistence_bedrock_resource_based_policy_denied_attempt.toml",
    actions = { "PutResourcePolicy", "DeleteResourcePolicy" },
  },
}

------------------------------------------------------------------------------------------------
-- A TOML extractor: just enough TOML for detection-rules files. It handles tables, arrays of
-- tables, bare keys, basic/literal strings (single- and multi-line), arrays, integers and
-- booleans. It fails loudly, with the line, on anything else.

local toml = {}

local ESCAPES = { b = "\b", t = "\t", n = "\n", f = "\f", r = "\r", ['"'] = '"', ["\\"] = "\\" }

-- The value of a basic string's body: escapes applied, and in a multi-line string a "line ending
-- backslash" drops the newline and the whitespace after it.
local function unescape(body, multiline)
  local out, i = {}, 1
  while i <= #body do
    local c = body:sub(i, i)
    if c ~= "\\" then
      out[#out + 1] = c
      i = i + 1
    else
      local d = body:sub(i + 1, i + 1)
      if ESCAPES[d] then
        out[#out + 1] = ESCAPES[d]
        i = i + 2
      elseif d == "u" or d == "U" then
        local n = d == "u" and 4 or 8
        local hex = body:sub(i + 2, i + 1 + n)
        assert(#hex == n and hex:match("^%x+$"), "bad \\" .. d .. " escape")
        out[#out + 1] = utf8.char(tonumber(hex, 16))
        i = i + 2 + n
      elseif multiline and body:find("^[ \t]*\r?\n", i + 1) then
        local _, e = body:find("^[ \t]*\r?\n[ \t\r\n]*", i + 1)
        i = e + 1
      else
        error("bad escape \\" .. d)
      end
    end
  end
  return table.concat(out)
end

function toml.parse(text, name)
  local pos = 1
  local root = {}
  local arrays = {}    -- the arrays made by [[...]] headers: a dotted path goes into their last table

  local function fail(msg)
    local line = select(2, text:sub(1, pos - 1):gsub("\n", "")) + 1
    error(("%s:%d: %s"):format(name or "toml", line, msg), 0)
  end

  local function skip(newlines)  -- spaces, tabs and comments; newlines too when asked
    while true do
      local _, e = text:find("^[ \t]+", pos)
      if e then pos = e + 1 end
      local c = text:sub(pos, pos)
      if c == "#" then
        pos = text:find("\n", pos, true) or #text + 1
      elseif newlines and (c == "\n" or c == "\r") then
        pos = pos + 1
      else
        return
      end
    end
  end

  local function after_opening(p)  -- a newline right after a multi-line opening is trimmed
    if text:sub(p, p) == "\n" then return p + 1 end
    if text:sub(p, p + 1) == "\r\n" then return p + 2 end
    return p
  end

  local value

  local function array()
    local t = {}
    pos = pos + 1
    while true do
      skip(true)
      if text:sub(pos, pos) == "]" then pos = pos + 1; return t end
      t[#t + 1] = value()
      skip(true)
      local c = text:sub(pos, pos)
      if c == "," then pos = pos + 1
      elseif c ~= "]" then fail("expected ',' or ']' in an array") end
    end
  end

  function value()
    local three = text:sub(pos, pos + 2)
    local c = text:sub(pos, pos)
    if three == '"""' then
      local start, j = after_opening(pos + 3), after_opening(pos + 3)
      while true do
        local d = text:sub(j, j)
        if d == "" then fail('unterminated """ string') end
        if d == "\\" then j = j + 2
        elseif text:sub(j, j + 2) == '"""' then break
        else j = j + 1 end
      end
      for _ = 1, 2 do  -- up to two quotes may precede the closing """
        if text:sub(j + 3, j + 3) ~= '"' then break end
        j = j + 1
      end
      local body = text:sub(start, j - 1)
      pos = j + 3
      return unescape(body, true)
    elseif three == "'''" then
      local start = after_opening(pos + 3)
      local e = text:find("'''", start, true) or fail("unterminated ''' string")
      for _ = 1, 2 do
        if text:sub(e + 3, e + 3) ~= "'" then break end
        e = e + 1
      end
      pos = e + 3
      return text:sub(start, e - 1)
    elseif c == '"' then
      local j = pos + 1
      while text:sub(j, j) ~= '"' do
        local d = text:sub(j, j)
        if d == "" or d == "\n" then fail("unterminated string") end
        j = j + (d == "\\" and 2 or 1)
      end
      local body = text:sub(pos + 1, j - 1)
      pos = j + 1
      return unescape(body, false)
    elseif c == "'" then
      local e = text:find("'", pos + 1, true) or fail("unterminated literal string")
      local s = text:sub(pos + 1, e - 1)
      if s:find("\n", 1, true) then fail("unterminated literal string") end
      pos = e + 1
      return s
    elseif c == "[" then
      return array()
    elseif text:find("^true", pos) then
      pos = pos + 4
      return true
    elseif text:find("^false", pos) then
      pos = pos + 5
      return false
    end
    local num = text:match("^[+-]?[%d_]+", pos)
    if num and not text:find("^[%d_]*[.eE:T-]", pos + #num) then
      pos = pos + #num
      return math.tointeger(tonumber((num:gsub("_", ""))))
    end
    fail("unsupported value starting with " .. ("%q"):format(text:sub(pos, pos + 10)))
  end

  local function header(path, is_array)
    local t = root
    local parts = {}
    for part in path:gmatch("[^.]+") do parts[#parts + 1] = part end
    for i, part in ipairs(parts) do
      local last = i == #parts
      if last and is_array then
        if t[part] == nil then t[part] = {}; arrays[t[part]] = true end
        if not arrays[t[part]] then fail("[[" .. path .. "]] redefines a table") end
        local new = {}
        table.insert(t[part], new)
        return new
      end
      if t[part] == nil then t[part] = {} end
      if type(t[part]) ~= "table" then fail(path .. ": " .. part .. " is not a table") end
      t = t[part]
      if arrays[t] and not last then t = t[#t] end
      if last and arrays[t] then fail("[" .. path .. "] redefines an array of tables") end
    end
    return t
  end

  local current = root
  while true do
    skip(true)
    if pos > #text then break end
    local path = text:match("^%[%[%s*([%w_.%-]+)%s*%]%]", pos)
    if path then
      current = header(path, true)
      pos = text:find("]]", pos, true) + 2
    else
      path = text:match("^%[%s*([%w_.%-]+)%s*%]", pos)
      if path then
        current = header(path, false)
        pos = text:find("]", pos, true) + 1
      else
        local key = text:match("^([%w_%-]+)", pos) or fail("expected a key or a table header")
        pos = pos + #key
        skip(false)
        if text:sub(pos, pos) ~= "=" then fail("expected '=' after " .. key) end
        pos = pos + 1
        skip(false)
        if current[key] ~= nil then fail("duplicate key " .. key) end
        current[key] = value()
      end
    end
    skip(false)
    local c = text:sub(pos, pos)
    if c ~= "" and c ~= "\n" and c ~= "\r" then fail("unexpected text after a value") end
  end
  return root
end

------------------------------------------------------------------------------------------------
-- Comparing what the rule carries with what the seed says

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function show(v)
  return type(v) == "string" and ("%q"):format(v) or tostring(v)
end

-- nil when expected and actual are equal, else a message naming the first difference. For
-- strings, it gives the character position (UTF-8 characters, from 1) with its line and column.
local function difference(expected, actual, path)
  if type(expected) ~= type(actual) then
    return ("%s: the seed has %s (%s), the rule has %s (%s)")
      :format(path, type(expected), show(expected), type(actual), show(actual))
  end
  if type(expected) == "string" then
    if expected == actual then return nil end
    local i = 1
    while expected:byte(i) == actual:byte(i) do i = i + 1 end
    local chars = utf8.len(expected, 1, i - 1, true) or (i - 1)
    if ((expected:byte(i) or 0) & 0xC0) ~= 0x80 then chars = chars + 1 end
    local before = expected:sub(1, i - 1)
    local line = select(2, before:gsub("\n", "")) + 1
    local column = i - (before:match(".*\n()") or 1) + 1
    return ("%s: first difference at character %d (byte %d, line %d, column %d): "
      .. "the seed has %s, the rule has %s (lengths %d and %d)")
      :format(path, chars, i, line, column, show(expected:sub(i, i + 40)), show(actual:sub(i, i + 40)),
        #expected, #actual)
  end
  if type(expected) == "table" then
    for _, k in ipairs(sorted_keys(expected)) do
      local where = type(k) == "number" and ("%s[%d]"):format(path, k) or path .. "." .. k
      local d = difference(expected[k], actual[k], where)
      if d then return d end
    end
    for _, k in ipairs(sorted_keys(actual)) do
      if expected[k] == nil then
        return ("%s: the rule has %s = %s, the seed does not"):format(path, tostring(k), show(actual[k]))
      end
    end
    return nil
  end
  if expected ~= actual or math.type(expected) ~= math.type(actual) then
    return ("%s: the seed has %s, the rule has %s"):format(path, show(expected), show(actual))
  end
  return nil
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

-- The environment a rule file runs in: only the sandbox's allow-list.
local function sandbox_env()
  local env = {}
  for _, name in ipairs { "pairs", "ipairs", "next", "type", "tostring", "tonumber", "select", "error",
                          "assert", "pcall", "setmetatable", "getmetatable", "rawget", "rawequal", "rawlen" } do
    env[name] = _G[name]
  end
  local function copy(lib, except)
    local t = {}
    for k, v in pairs(lib) do
      if k ~= except then t[k] = v end
    end
    return t
  end
  env.string = copy(string, "dump")
  env.table, env.math, env.utf8 = copy(table), copy(math), copy(utf8)
  env.os = { time = os.time, date = os.date, clock = os.clock }
  return env
end

local function load_rule(path)
  local chunk, err = loadfile(path, "t", sandbox_env())
  if not chunk then error(err, 0) end
  local ok, rule = pcall(chunk)
  if not ok then error(path .. ": " .. tostring(rule), 0) end
  if type(rule) ~= "table" then error(path .. ": returns a " .. type(rule) .. ", not a table", 0) end
  return rule
end

-- Where each field of a rule module comes from in the seed. `default` is used when the TOML omits
-- the field.
local FROM_SEED = {
  rule_id = { "rule_id" }, name = { "name" }, description = { "description" },
  severity = { "severity" }, risk_score = { "risk_score" }, tags = { "tags" }, threat = { "threat" },
  references = { "references" }, false_positives = { "false_positives" }, note = { "note" },
  investigation_fields = { "investigation_fields", "field_names" },
  index = { "index" }, from = { "from" }, timestamp_override = { "timestamp_override" },
  author = { "author" }, license = { "license" }, type = { "type" }, language = { "language" },
  query = { "query" },
  max_signals = { "max_signals", default = 100 },
  version = { "version", default = 1 },
}
local NOT_FROM_SEED = { metadata = true, tests = true, match = true }

local function seed_value(seed_rule, field)
  local how = FROM_SEED[field]
  local v = seed_rule
  for _, key in ipairs(how) do
    if type(v) ~= "table" then v = nil; break end
    v = v[key]
  end
  if v == nil then return how.default end
  return v
end

local function contains(list, x)
  for _, y in ipairs(list) do
    if y == x then return true end
  end
  return false
end

------------------------------------------------------------------------------------------------

describe("the TOML extractor", function()
  it("trims the newline after an opening \"\"\" and keeps the rest, indentation included", function()
    local t = toml.parse('a = """\nline one\n  line two\n    """\nb = \'\'\'\nraw \\n text\n\'\'\'\n')
    assert.are.equal("line one\n  line two\n    ", t.a)
    assert.are.equal("raw \\n text\n", t.b)
  end)

  it("applies basic-string escapes, line-ending backslashes included", function()
    local t = toml.parse('a = "x\\"y\\\\z\\u00e9"\nb = """\none \\\n    two"""\n')
    assert.are.equal('x"y\\z\u{e9}', t.a)
    assert.are.equal("one two", t.b)
  end)

  it("reads arrays, numbers and nested arrays of tables", function()
    local t = toml.parse([=[
[rule]
tags = [
    "a", # comment
    "b",
]
risk_score = 21

[[rule.threat]]
framework = "F"

[[rule.threat.technique]]
id = "T1"

[rule.threat.tactic]
id = "TA1"
]=])
    assert.are.same({ "a", "b" }, t.rule.tags)
    assert.are.equal(21, t.rule.risk_score)
    assert.are.same({ { framework = "F", technique = { { id = "T1" } }, tactic = { id = "TA1" } } }, t.rule.threat)
  end)

  it("names the line of what it cannot read", function()
    local ok, err = pcall(toml.parse, 'a = 1\nb = { c = 2 }\n', "x.toml")
    assert.is_false(ok)
    assert.matches("^x%.toml:2: unsupported value", err)
  end)

  it("reports the first differing character, not a byte, with its line and column", function()
    local d = difference("ab\n\u{2014}cd", "ab\n\u{2014}xd", "note")
    assert.matches("at character 5 %(byte 7, line 2, column 4%)", d)
  end)
end)

for _, spec in ipairs(RULES) do
  describe(spec.file, function()
    local rule, seed

    local function get()
      if not rule then
        seed = toml.parse(read_file(spec.seed), spec.seed)
        rule = load_rule(spec.file)
      end
      return rule, seed
    end

    it("loads in a sandbox that has only the allow-listed functions", function()
      local r = get()
      assert.are.equal("table", type(r))
    end)

    it("has no field the rule schema does not know", function()
      local r = get()
      for _, k in ipairs(sorted_keys(r)) do
        assert.is_true(FROM_SEED[k] ~= nil or NOT_FROM_SEED[k] ~= nil, "unknown field " .. tostring(k))
      end
    end)

    it("carries over every field of the seed's [rule] table", function()
      local _, s = get()
      local carried = {}
      for _, how in pairs(FROM_SEED) do carried[how[1]] = true end
      for _, k in ipairs(sorted_keys(s.rule)) do
        assert.is_true(carried[k] ~= nil, "the seed's rule." .. k .. " has no counterpart in the module")
      end
    end)

    for _, field in ipairs(sorted_keys(FROM_SEED)) do
      it("has " .. field .. " word for word as the seed", function()
        local r, s = get()
        local d = difference(seed_value(s.rule, field), r[field], field)
        assert.is_true(d == nil, d)
      end)
    end

    it("has the seed's [metadata] block under metadata", function()
      local r, s = get()
      local d = difference(s.metadata, r.metadata, "metadata")
      assert.is_true(d == nil, d)
    end)

    it("nests threat as the design says: framework, tactic, and a list of techniques", function()
      local r = get()
      for i, threat in ipairs(r.threat) do
        assert.is_string(threat.framework, "threat[" .. i .. "].framework")
        assert.is_string(threat.tactic.id, "threat[" .. i .. "].tactic.id")
        assert.is_true(#threat.technique >= 1, "threat[" .. i .. "].technique is not a list")
      end
    end)

    describe("embedded tests", function()
      local function tests()
        local r = get()
        assert.is_table(r.tests)
        return r.tests
      end

      local function find(pred)
        for _, t in ipairs(tests()) do
          if pred(t, t.event) then return t end
        end
        return nil
      end

      it("are named, unique, and hold raw CloudTrail records with unique eventIDs", function()
        local names, ids = {}, {}
        for i, t in ipairs(tests()) do
          local where = "tests[" .. i .. "]"
          assert.is_true(type(t.name) == "string" and t.name ~= "", where .. " has no name")
          assert.is_nil(names[t.name], "two tests are named " .. tostring(t.name))
          names[t.name] = true
          assert.is_boolean(t.expect, t.name .. ": expect")
          assert.is_table(t.event, t.name .. ": event")
          for _, key in ipairs { "eventVersion", "eventTime", "eventSource", "eventName", "eventID",
                                 "awsRegion", "recipientAccountId" } do
            assert.is_string(t.event[key], t.name .. ": event." .. key)
          end
          assert.is_table(t.event.userIdentity, t.name .. ": event.userIdentity")
          for key in pairs(t.event) do
            assert.is_nil(tostring(key):find(".", 1, true), t.name .. ": event has an ECS key " .. tostring(key))
          end
          assert.is_nil(ids[t.event.eventID], t.name .. ": eventID already used by " .. tostring(ids[t.event.eventID]))
          ids[t.event.eventID] = t.name
        end
      end)

      for _, action in ipairs(spec.actions) do
        for _, code in ipairs(DENIED) do
          it(("include a positive: denied %s (%s)"):format(action, code), function()
            local t = find(function(t, e)
              return t.expect == true and e.eventSource == "bedrock.amazonaws.com"
                and e.eventName == action and e.errorCode == code
            end)
            assert.is_table(t, "no expect = true test for " .. action .. " with errorCode " .. code)
            local message = t.event.errorMessage
            assert.is_string(message, t.name .. ": errorMessage")
            assert.is_truthy(message:find("not authorized to perform: bedrock:" .. action, 1, true),
              t.name .. ": errorMessage does not name bedrock:" .. action)
            assert.is_nil(t.event.responseElements, t.name .. ": a denied call has no responseElements")
          end)
        end
      end

      it("include a negative: the call succeeded (no errorCode)", function()
        assert.is_table(find(function(t, e)
          return t.expect == false and e.eventSource == "bedrock.amazonaws.com"
            and contains(spec.actions, e.eventName) and e.errorCode == nil and e.errorMessage == nil
        end))
      end)

      it("include a negative: PutResourcePolicy denied on another service", function()
        assert.is_table(find(function(t, e)
          return t.expect == false and e.eventSource ~= "bedrock.amazonaws.com"
            and e.eventName == "PutResourcePolicy" and contains(DENIED, e.errorCode)
        end))
      end)

      it("include a negative: the rule's action failed with another error code", function()
        assert.is_table(find(function(t, e)
          return t.expect == false and e.eventSource == "bedrock.amazonaws.com"
            and contains(spec.actions, e.eventName) and e.errorCode ~= nil and not contains(DENIED, e.errorCode)
        end))
      end)

      it("include a negative: InvokeModel denied", function()
        assert.is_table(find(function(t, e)
          return t.expect == false and e.eventSource == "bedrock.amazonaws.com"
            and e.eventName == "InvokeModel" and contains(DENIED, e.errorCode)
        end))
      end)

      it("expect an alert only for a denied Bedrock call of the rule's actions", function()
        for _, t in ipairs(tests()) do
          local e = t.event
          local should = e.eventSource == "bedrock.amazonaws.com" and contains(spec.actions, e.eventName)
            and contains(DENIED, e.errorCode)
          assert.are.equal(should, t.expect, t.name)
        end
      end)
    end)
  end)
end
