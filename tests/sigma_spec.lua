-- sigma.lua: Sigma detections over raw CloudTrail records, modifier by modifier and
-- condition by condition, with the Sigma specification's own examples
-- (SigmaHQ/sigma-specification, specification/sigma-rules-specification.md and
-- sigma-appendix-modifiers.md) and pySigma's (tests/test_modifiers.py) where they give some.

local cjson = require "cjson"
local sigma = require "sigma"

local NULL = sigma.NULL

local function compile(detection)
  local d, err = sigma.compile(detection)
  assert(d, err and sigma.message(err))
  return d
end

-- Does selection (one search identifier) match the record (a table or JSON text)?
local function matches(selection, rec)
  if type(rec) == "string" then rec = cjson.decode(rec) end
  return compile({ selection = selection, condition = "selection" }).match(rec)
end

local function refused(detection)
  local d, err = sigma.compile(detection)
  assert.is_nil(d)
  return sigma.message(err)
end

describe("sigma", function()
  describe("values", function()
    it("match whole strings regardless of ASCII case", function()
      assert.is_true(matches({ eventName = "DeleteBucket" }, { eventName = "deletebucket" }))
      assert.is_true(matches({ eventName = "deletebucket" }, { eventName = "DELETEBUCKET" }))
      assert.is_false(matches({ eventName = "DeleteBucket" }, { eventName = "DeleteBuckets" }))
      assert.is_false(matches({ eventName = "DeleteBucket" }, {}))
    end)

    it("are case-sensitive with |cased", function()
      assert.is_true(matches({ ["eventName|cased"] = "DeleteBucket" }, { eventName = "DeleteBucket" }))
      assert.is_false(matches({ ["eventName|cased"] = "DeleteBucket" }, { eventName = "deletebucket" }))
      assert.is_false(matches({ ["eventName|contains|cased"] = "bucket" }, { eventName = "DeleteBucket" }))
    end)

    it("have wildcards: * any run, ? one character", function()
      assert.is_true(matches({ eventName = "Get*Policy" }, { eventName = "GetBucketPolicy" }))
      assert.is_true(matches({ eventName = "Get*Policy" }, { eventName = "GetPolicy" }))
      assert.is_false(matches({ eventName = "Get*Policy" }, { eventName = "GetBucketPolicyStatus" }))
      assert.is_true(matches({ eventName = "prog?.exe" }, { eventName = "progA.exe" }))
      assert.is_false(matches({ eventName = "prog?.exe" }, { eventName = "prog.exe" }))
      assert.is_true(matches({ eventName = "antivirus_V*.exe" }, { eventName = "antivirus_V21.2.1.exe" }))
      assert.is_true(matches({ userAgent = "?" }, { userAgent = "é" }))  -- one character, two bytes
      assert.is_true(matches({ userAgent = "a*b*c?d" }, { userAgent = "axxbyyczd" }))
      assert.is_false(matches({ userAgent = "a*b*c?d" }, { userAgent = "axxbyyczzd" }))
    end)

    it("escape wildcards with \\ as the specification lists", function()
      assert.is_true(matches({ f = "a\\*b" }, { f = "a*b" }))
      assert.is_false(matches({ f = "a\\*b" }, { f = "axb" }))
      assert.is_true(matches({ f = "a\\?b" }, { f = "a?b" }))
      assert.is_false(matches({ f = "a\\?b" }, { f = "axb" }))
      -- a plain backslash not followed by a wildcard: single or double
      assert.is_true(matches({ f = "C:\\Windows\\System32" }, { f = "C:\\Windows\\System32" }))
      assert.is_true(matches({ f = "C:\\\\Windows" }, { f = "C:\\Windows" }))
      -- \\* : a backslash and a wildcard; \\\* : a backslash and a star
      assert.is_true(matches({ f = "a\\\\*" }, { f = "a\\xyz" }))
      assert.is_true(matches({ f = "a\\\\\\*" }, { f = "a\\*" }))
      assert.is_false(matches({ f = "a\\\\\\*" }, { f = "a\\x" }))
      -- three or four backslashes: two
      assert.is_true(matches({ f = "a\\\\\\\\b" }, { f = "a\\\\b" }))
      assert.is_true(matches({ f = "a\\\\\\b" }, { f = "a\\\\b" }))
      assert.is_true(matches({ f = "end\\" }, { f = "end\\" }))
    end)

    it("are OR in a list, AND with |all", function()
      local sel = { eventSource = "cloudtrail.amazonaws.com",
        eventName = { "StopLogging", "UpdateTrail", "DeleteTrail" } }
      assert.is_true(matches(sel, { eventSource = "cloudtrail.amazonaws.com", eventName = "UpdateTrail" }))
      assert.is_false(matches(sel, { eventSource = "cloudtrail.amazonaws.com", eventName = "CreateTrail" }))
      local all = { ["userAgent|contains|all"] = { "S3", "Browser" } }
      assert.is_true(matches(all, { userAgent = "S3 Browser 9.5.5" }))
      assert.is_false(matches(all, { userAgent = "S3 client" }))
    end)

    it("compare numbers and booleans as their JSON text, and numbers as numbers", function()
      assert.is_true(matches({ ["requestParameters.enable"] = "false" }, '{"requestParameters":{"enable":false}}'))
      assert.is_false(matches({ ["requestParameters.enable"] = "false" }, '{"requestParameters":{"enable":true}}'))
      assert.is_true(matches({ ["responseElements.publiclyAccessible"] = "true" },
        '{"responseElements":{"publiclyAccessible":true}}'))
      assert.is_true(matches({ port = "22" }, '{"port":22}'))
      assert.is_true(matches({ port = 22 }, '{"port":22}'))
      assert.is_true(matches({ port = 22 }, '{"port":"22"}'))
      assert.is_true(matches({ port = 22 }, '{"port":22.0}'))
      assert.is_false(matches({ port = 22 }, '{"port":"22a"}'))
      assert.is_true(matches({ enabled = true }, '{"enabled":true}'))
      assert.is_true(matches({ enabled = true }, '{"enabled":"True"}'))
      assert.is_false(matches({ enabled = true }, '{"enabled":false}'))
      -- The specification's example: EventLog Security and EventID 517 or 1102
      local sel = { EventLog = "Security", EventID = { 517, 1102 } }
      assert.is_true(matches(sel, { EventLog = "Security", EventID = 1102 }))
      assert.is_false(matches(sel, { EventLog = "Security", EventID = 4624 }))
    end)

    it("treat null and an empty list as a field absent or null", function()
      assert.is_true(matches({ errorCode = NULL }, '{"eventName":"DeleteBucket"}'))
      assert.is_true(matches({ errorCode = NULL }, '{"errorCode":null}'))
      assert.is_false(matches({ errorCode = NULL }, '{"errorCode":"AccessDenied"}'))
      assert.is_false(matches({ errorCode = NULL }, '{"errorCode":""}'))
      assert.is_true(matches({ errorCode = {} }, '{}'))
      -- '' is the empty string, not null
      assert.is_true(matches({ errorCode = "" }, '{"errorCode":""}'))
      assert.is_false(matches({ errorCode = "" }, '{}'))
    end)

    it("read raw paths, through arrays of objects and keys that hold dots", function()
      local rec = cjson.decode([[{"userIdentity":{"type":"AssumedRole","sessionContext":{"sessionIssuer":
        {"type":"Role"}}},"requestParameters":{"containerDefinitions":[{"command":["sh","-c",
        "curl $AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]},
        {"command":["true"]}]},"additionalEventData":{"MFAUsed":"No"},"a.b":{"c":"dotted"}}]])
      assert.is_true(matches({ ["userIdentity.type"] = "AssumedRole",
        ["userIdentity.sessionContext.sessionIssuer.type"] = "Role" }, rec))
      assert.is_true(matches({ ["requestParameters.containerDefinitions.command|contains"] =
        "$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" }, rec))
      assert.is_true(matches({ ["additionalEventData.MFAUsed"] = "NO" }, rec))
      assert.is_true(matches({ ["a.b.c"] = "dotted" }, rec))
    end)

    it("match a field holding an object or array by any of its values", function()
      local rec = cjson.decode([[{"requestParameters":{"bucketName":"b","VersioningConfiguration":
        {"Status":"Suspended"}},"resources":[{"ARN":"arn:aws:s3:::b"}]}]])
      assert.is_true(matches({ ["requestParameters|contains"] = "Suspended" }, rec))
      assert.is_false(matches({ ["requestParameters|contains"] = "Enabled" }, rec))
      assert.is_true(matches({ resources = "arn:aws:s3:::b" }, rec))
      -- a policy document is a string holding JSON: its quotes are plain characters there
      local put = cjson.decode([[{"requestParameters":{"userName":"u","policyDocument":
        "{\"Statement\":[{\"Action\":\"s3:GetObject\",\"Effect\":\"Allow\",]] ..
        [[\"Resource\":\"arn:aws:s3:::<YOUR-BUCKET-NAME>/*\"}]}"}}]])
      assert.is_true(matches({ ["requestParameters|contains|all"] = { '"arn:aws:s3:::<YOUR-BUCKET-NAME>/*"',
        '"s3:GetObject"', '"Allow"' } }, put))
    end)
  end)

  describe("modifiers", function()
    it("contains, startswith, endswith", function()
      assert.is_true(matches({ ["userAgent|contains"] = "TruffleHog" }, { userAgent = "trufflehog v3.63" }))
      assert.is_true(matches({ ["eventName|startswith"] = "UpdateFunctionConfiguration" },
        { eventName = "UpdateFunctionConfiguration20150331v2" }))
      assert.is_false(matches({ ["eventName|startswith"] = "Update" }, { eventName = "CreateUpdate" }))
      assert.is_true(matches({ ["Image|endswith"] = "\\cmd.exe" }, { Image = "C:\\Windows\\System32\\cmd.exe" }))
      assert.is_false(matches({ ["Image|endswith"] = "\\cmd.exe" }, { Image = "C:\\cmd.exe.bak" }))
      -- contains '*': the field holds some value
      assert.is_true(matches({ ["errorMessage|contains"] = "*" }, { errorMessage = "" }))
      assert.is_false(matches({ ["errorMessage|contains"] = "*" }, cjson.decode('{"errorMessage":null}')))
      assert.is_false(matches({ ["errorMessage|contains"] = "*" }, {}))
      assert.is_true(matches({ ["userAgent|contains"] = "Jersey/${project.version}" },
        { userAgent = "Jersey/${project.version} (HttpUrlConnection 17.0.7)" }))
    end)

    it("exists: the field is there (null counts) or not", function()
      assert.is_true(matches({ ["errorCode|exists"] = true }, cjson.decode('{"errorCode":null}')))
      assert.is_true(matches({ ["errorCode|exists"] = true }, { errorCode = "x" }))
      assert.is_false(matches({ ["errorCode|exists"] = true }, {}))
      assert.is_true(matches({ ["errorCode|exists"] = false }, {}))
      assert.is_true(matches({ ["a.b|exists"] = true }, { a = { { c = 1 }, { b = 0 } } }))
    end)

    it("neq: different from every value (an absent field is)", function()
      assert.is_true(matches({ ["eventType|neq"] = "AwsServiceEvent" }, { eventType = "AwsApiCall" }))
      assert.is_false(matches({ ["eventType|neq"] = { "AwsServiceEvent", "AwsApiCall" } },
        { eventType = "AwsApiCall" }))
      assert.is_true(matches({ ["eventType|neq"] = "AwsServiceEvent" }, {}))
      assert.is_true(matches({ ["count|neq"] = 3 }, { count = 4 }))
    end)

    it("re: a case-sensitive search, case-insensitive with |i, and m and s", function()
      local sel = { ["userIdentity.arn|re"] = ".+:assumed-role/aws:.+" }
      assert.is_true(matches(sel, { userIdentity = { arn = "arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1" } }))
      assert.is_false(matches(sel, { userIdentity = { arn = "arn:aws:sts::1:assumed-role/admin/bob" } }))
      assert.is_false(matches({ ["f|re"] = "abc" }, { f = "xABCx" }))
      assert.is_true(matches({ ["f|re|i"] = "abc" }, { f = "xABCx" }))
      assert.is_true(matches({ ["f|re|ignorecase"] = "abc" }, { f = "xABCx" }))
      assert.is_true(matches({ ["f|re|m"] = "^b$" }, { f = "a\nb\nc" }))
      assert.is_false(matches({ ["f|re"] = "^b$" }, { f = "a\nb\nc" }))
      assert.is_true(matches({ ["f|re|s"] = "a.b" }, { f = "a\nb" }))
      assert.is_true(matches({ ["f|re"] = "^\\d+$" }, '{"f":443}'))
      -- a value is the pattern as written: \ and * are the regex's
      assert.is_true(matches({ ["f|re"] = "a\\*b" }, { f = "a*b" }))
      assert.matches("at offset 0: lookaround assertions are not supported",
        refused({ s = { ["f|re"] = "(?=x)" }, condition = "s" }))
      assert.matches("|re must be the first modifier", refused({ s = { ["f|contains|re"] = "x" }, condition = "s" }))
      assert.matches("|i needs a regular expression", refused({ s = { ["f|i"] = "x" }, condition = "s" }))
    end)

    it("cidr: IPv4 and IPv6 networks", function()
      assert.is_true(matches({ ["sourceIPAddress|cidr"] = "10.0.0.0/8" }, { sourceIPAddress = "10.1.2.3" }))
      assert.is_false(matches({ ["sourceIPAddress|cidr"] = "10.0.0.0/8" }, { sourceIPAddress = "11.1.2.3" }))
      assert.is_false(matches({ ["sourceIPAddress|cidr"] = "10.0.0.0/8" }, { sourceIPAddress = "AWS Internal" }))
      assert.is_true(matches({ ["sourceIPAddress|cidr"] = { "192.168.0.0/16", "2001:db8::/32" } },
        { sourceIPAddress = "2001:0db8:0:0::1" }))
      assert.is_true(matches({ ["sourceIPAddress|cidr"] = "1.2.3.4" }, { sourceIPAddress = "1.2.3.4" }))
      assert.matches("not an IPv4 or IPv6 network", refused({ s = { ["ip|cidr"] = "10.0.0.0/33" }, condition = "s" }))
      assert.matches("host bits set", refused({ s = { ["ip|cidr"] = "10.0.0.1/8" }, condition = "s" }))
    end)

    it("lt, lte, gt, gte: numbers, and text that reads as one", function()
      assert.is_true(matches({ ["n|lt"] = 10 }, { n = 9 }))
      assert.is_false(matches({ ["n|lt"] = 10 }, { n = 10 }))
      assert.is_true(matches({ ["n|lte"] = 10 }, { n = "10" }))
      assert.is_true(matches({ ["n|gt"] = 1.5 }, { n = 2 }))
      assert.is_true(matches({ ["n|gte"] = 2 }, { n = 2.0 }))
      assert.is_false(matches({ ["n|gt"] = 1 }, { n = "many" }))
      assert.is_false(matches({ ["n|gt"] = 1 }, {}))
      assert.matches("|gt needs a number, but the value is text", refused({ s = { ["n|gt"] = "1" }, condition = "s" }))
    end)

    it("fieldref: the value of another field, alone or with contains, startswith, endswith", function()
      local rec = { userIdentity = { arn = "arn:aws:iam::1:user/Alice" }, requestParameters = { userName = "alice" } }
      assert.is_false(matches({ ["userIdentity.arn|fieldref"] = "requestParameters.userName" }, rec))
      assert.is_true(matches({ ["userIdentity.arn|fieldref|endswith"] = "requestParameters.userName" }, rec))
      assert.is_true(matches({ ["userIdentity.arn|fieldref|contains"] = "requestParameters.userName" }, rec))
      assert.is_false(matches({ ["userIdentity.arn|fieldref|startswith"] = "requestParameters.userName" }, rec))
      assert.is_true(matches({ ["a|fieldref"] = "b" }, { a = "X", b = "x" }))
      assert.is_false(matches({ ["a|fieldref"] = "b" }, { a = "X" }))
      assert.matches("no wildcards", refused({ s = { ["a|fieldref"] = "b*" }, condition = "s" }))
    end)

    it("base64 and base64offset (pySigma's values)", function()
      assert.equal("Zm9vYmFy", sigma.base64("foobar"))
      assert.same({ "Zm9vYmFy", "Zvb2Jhc", "mb29iYX" }, sigma.base64_offsets("foobar"))
      assert.same({ "L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2" }, sigma.base64_offsets("/bin/bash"))
      assert.is_true(matches({ ["cmd|base64"] = "foobar" }, { cmd = "Zm9vYmFy" }))
      assert.is_true(matches({ ["cmd|base64offset|contains"] = "/bin/bash" }, { cmd = "ZWNobyAvYmluL2Jhc2ggLWk=" }))
      assert.is_false(matches({ ["cmd|base64offset|contains"] = "/bin/bash" }, { cmd = "ZWNobyBoZWxsbw==" }))
      assert.matches("cannot encode a value with wildcards", refused({ s = { ["c|base64"] = "a*" }, condition = "s" }))
    end)

    it("utf16le (wide), utf16be and utf16 encode ASCII text", function()
      assert.is_true(matches({ ["c|wide|base64"] = "cmd" }, { c = "YwBtAGQA" }))
      assert.is_true(matches({ ["c|utf16le|base64offset|contains"] = "cmd" }, { c = "xxjAG0AZAxx" }))
      assert.is_true(matches({ ["c|utf16be"] = "ab" }, { c = "\0a\0b" }))
      assert.is_true(matches({ ["c|utf16"] = "ab" }, { c = "\255\254a\0b\0" }))
      assert.matches("encodes ASCII text only", refused({ s = { ["c|wide"] = "é" }, condition = "s" }))
    end)

    it("windash: - and / that start a parameter, as any of the five dashes (pySigma's example)", function()
      local sel = { ["CommandLine|windash"] = "-param-1 -param2" }
      assert.is_true(matches(sel, { CommandLine = "-param-1 -param2" }))
      assert.is_true(matches(sel, { CommandLine = "/param-1 \u{2014}param2" }))
      assert.is_false(matches(sel, { CommandLine = "-param/1 -param2" }))
      assert.is_true(matches({ ["CommandLine|windash|contains"] = " -f " }, { CommandLine = "x /f y" }))
    end)

    it("minute, hour, day, week, month, year of a date", function()
      local rec = { eventTime = "2024-07-31T13:06:24Z" }
      assert.is_true(matches({ ["eventTime|hour"] = 13 }, rec))
      assert.is_false(matches({ ["eventTime|hour"] = 14 }, rec))
      assert.is_true(matches({ ["eventTime|minute"] = 6, ["eventTime|day"] = 31, ["eventTime|month"] = 7,
        ["eventTime|year"] = 2024, ["eventTime|week"] = 31 }, rec))
      assert.is_true(matches({ ["eventTime|week"] = 1 }, { eventTime = "2024-12-30T00:00:00Z" }))
      assert.is_false(matches({ ["eventTime|hour"] = 13 }, { eventTime = "yesterday" }))
    end)

    it("refuses expand, unknown modifiers and values a modifier cannot take", function()
      assert.matches("detection.s: f|expand: |expand: placeholders",
        refused({ s = { ["f|expand"] = "%Servers%" }, condition = "s" }))
      assert.matches("detection.s: f|containz: unknown modifier 'containz'",
        refused({ s = { ["f|containz"] = "x" }, condition = "s" }))
      assert.matches("|contains needs text, but the value is a number",
        refused({ s = { ["f|contains"] = 1 }, condition = "s" }))
      assert.matches("|exists needs a boolean", refused({ s = { ["f|exists"] = "yes" }, condition = "s" }))
      assert.matches("a value must be text, a number, a boolean or null",
        refused({ s = { f = { { a = 1 } } }, condition = "s" }))
    end)
  end)

  describe("search identifiers", function()
    it("a list of maps: one of them holds", function()
      local d = compile({
        selection = { ["userIdentity.arn|re"] = ".+:assumed-role/aws:.+" },
        filter_main_generic = { { eventSource = "ssm.amazonaws.com" }, { eventName = "RegisterManagedInstance" },
          { sourceIPAddress = "AWS Internal" } },
        condition = "selection and not 1 of filter_main_*",
      })
      local arn = { arn = "arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1" }
      assert.is_true(d.match({ userIdentity = arn, eventSource = "ec2.amazonaws.com", sourceIPAddress = "1.2.3.4" }))
      assert.is_false(d.match({ userIdentity = arn, eventSource = "ec2.amazonaws.com",
        sourceIPAddress = "AWS Internal" }))
      assert.is_false(d.match({ userIdentity = arn, eventName = "RegisterManagedInstance" }))
    end)

    it("keywords: a list of plain values, one of them inside some value of the record", function()
      -- the specification's example
      local d = compile({ keywords = { "EVILSERVICE", "svchost.exe -n evil" }, condition = "keywords" })
      assert.is_true(d.match({ a = { b = "started evilservice now" } }))
      assert.is_true(d.match({ list = { "x", "svchost.exe -n evil" } }))
      assert.is_false(d.match({ evilservice = "keys are not values" }))
      -- one value, a number, and |all (the specification's '|all' example)
      assert.is_true(compile({ k = "stratus", condition = "k" }).match({ userAgent = "stratus-red-team" }))
      assert.is_true(compile({ k = { 4624 }, condition = "k" }).match({ code = 4624 }))
      local all = compile({ keywords_cmdlet = { ["|all"] = { "OabVirtualDirectory", " -ExternalUrl " } },
        condition = "keywords_cmdlet" })
      assert.is_true(all.match({ cmd = "Set-OabVirtualDirectory -ExternalUrl http://x" }))
      assert.is_false(all.match({ cmd = "Set-OabVirtualDirectory" }))
      assert.matches("null value must be bound to a field", refused({ k = { NULL }, condition = "k" }))
    end)

    it("the specification's null example: not null is a negated selection of its own", function()
      local d = compile({ selection = { EventID = 4738 }, filter = { PasswordLastSet = NULL },
        condition = "selection and not filter" })
      assert.is_true(d.match({ EventID = 4738, PasswordLastSet = "2024-01-01" }))
      assert.is_false(d.match({ EventID = 4738 }))
      local e = compile({ selection_main = { FieldA = "something" }, selection_empty1 = { FieldB = "" },
        selection_empty2 = { FieldB = NULL }, condition = "selection_main and 1 of selection_empty*" })
      assert.is_true(e.match({ FieldA = "something", FieldB = "" }))
      assert.is_true(e.match({ FieldA = "something" }))
      assert.is_false(e.match({ FieldA = "something", FieldB = "x" }))
    end)

    it("refuses what is no detection", function()
      assert.equal("sigma.detection has no condition", refused({ selection = { a = 1 } }))
      assert.equal("detection.selection: the search identifier is empty",
        refused({ selection = {}, condition = "selection" }))
      assert.matches("timeframe", refused({ selection = { a = 1 }, timeframe = "5m", condition = "selection" }))
      assert.matches("| %(aggregation%)", refused({ selection = { a = 1 }, condition = "selection | count() > 5" }))
    end)
  end)

  describe("conditions", function()
    local det = {
      selection_a = { a = "1" }, selection_b = { b = "1" }, filter = { c = "1" }, _private = { d = "1" },
    }
    local function cond(c, rec)
      local t = {}
      for k, v in pairs(det) do t[k] = v end
      t.condition = c
      return compile(t).match(rec)
    end

    it("and, or, not and parentheses, with or < and < not", function()
      assert.is_true(cond("selection_a and selection_b", { a = "1", b = "1" }))
      assert.is_false(cond("selection_a and selection_b", { a = "1" }))
      assert.is_true(cond("selection_a or selection_b", { b = "1" }))
      assert.is_true(cond("selection_a and not filter", { a = "1" }))
      assert.is_false(cond("selection_a and not filter", { a = "1", c = "1" }))
      -- a or b and c is a or (b and c)
      assert.is_true(cond("selection_a or selection_b and filter", { a = "1" }))
      assert.is_false(cond("(selection_a or selection_b) and filter", { a = "1" }))
      -- not a and b is (not a) and b
      assert.is_true(cond("not selection_a and selection_b", { b = "1" }))
      assert.is_false(cond("not (selection_a and selection_b)", { a = "1", b = "1" }))
      assert.is_true(cond("not not selection_a", { a = "1" }))
    end)

    it("1 of, any of and all of a pattern, with * anywhere in it", function()
      assert.is_true(cond("1 of selection_*", { b = "1" }))
      assert.is_true(cond("any of selection_*", { b = "1" }))
      assert.is_false(cond("all of selection_*", { b = "1" }))
      assert.is_true(cond("all of selection_*", { a = "1", b = "1" }))
      assert.is_true(cond("1 of *_a", { a = "1" }))
      assert.is_true(cond("1 of sel*_b", { b = "1" }))
      assert.is_true(cond("1 of filter", { c = "1" }))
      assert.is_true(cond("1 of selection_* and not 1 of filter*", { a = "1" }))
    end)

    it("them: every search identifier but those starting with _", function()
      assert.is_true(cond("1 of them", { c = "1" }))
      assert.is_false(cond("1 of them", { d = "1" }))
      assert.is_true(cond("all of them", { a = "1", b = "1", c = "1" }))
      assert.is_true(cond("1 of _*", { d = "1" }))  -- a pattern starting with _ names them
    end)

    it("a list of conditions: one of them holds", function()
      local d = compile({ s1 = { a = "1" }, s2 = { b = "1" }, condition = { "s1", "s2" } })
      assert.is_true(d.match({ b = "1" }))
      assert.is_false(d.match({ c = "1" }))
    end)

    it("says what is wrong with a condition", function()
      assert.equal("detection.condition: 'selection_a and': ends where a search identifier or '(' was expected",
        refused({ selection_a = { a = 1 }, condition = "selection_a and" }))
      assert.equal("detection.condition: 'selection': 'selection' is not a search identifier of the detection " ..
        "(selection_a)", refused({ selection_a = { a = 1 }, condition = "selection" }))
      assert.equal("detection.condition: '1 of filter*': '1 of filter*' names no search identifier",
        refused({ selection_a = { a = 1 }, condition = "1 of filter*" }))
      assert.equal("detection.condition: '(selection_a': a '(' without its ')'",
        refused({ selection_a = { a = 1 }, condition = "(selection_a" }))
      assert.equal("detection.condition: 'selection_*': 'selection_*': a pattern needs '1 of' or 'all of' before it",
        refused({ selection_a = { a = 1 }, condition = "selection_*" }))
      assert.equal("detection.condition: 'selection_a selection_a': unexpected 'selection_a'",
        refused({ selection_a = { a = 1 }, condition = "selection_a selection_a" }))
    end)

    it("warns of search identifiers the condition does not use, and of |all on one value", function()
      local d = compile({ selection = { ["a|contains|all"] = "x" }, unused = { b = 1 }, condition = "selection" })
      local msgs = {}
      for _, w in ipairs(d.warnings) do msgs[#msgs + 1] = w.msg end
      table.sort(msgs)
      assert.same({ "a|contains|all: |all on a single value changes nothing (the specification does not allow it)",
        "detection.unused is not used by the condition" }, msgs)
    end)
  end)

  describe("requirements", function()
    local function reqs(detection)
      local out = {}
      for _, c in ipairs(compile(detection).requirements) do
        local vals = {}
        for i, v in ipairs(c.values) do vals[i] = v end
        table.sort(vals)
        out[#out + 1] = (c.field or "*") .. (c.exact and " = " or " ~ ") .. table.concat(vals, ",")
      end
      table.sort(out)
      return out
    end

    it("are the values every branch requires: exact ones of a field, runs of text inside any", function()
      assert.same({ "eventName = ListBuckets", "eventSource = s3.amazonaws.com" },
        reqs({ selection = { eventSource = "s3.amazonaws.com", eventName = "ListBuckets" },
          filter = { ["userIdentity.type"] = "AssumedRole" }, condition = "selection and not filter" }))
      assert.same({ "eventName = DeleteBucket" }, reqs({ s1 = { eventName = "DeleteBucket" },
        s2 = { errorCode = "Success" }, s3 = { errorCode = NULL }, condition = "s1 and (s2 or s3)" }))
      assert.same({ "eventName = AssumeRoleWithSAML,UpdateSAMLProvider",
        "eventSource = iam.amazonaws.com,sts.amazonaws.com" },
        reqs({ selection_sts = { eventSource = "sts.amazonaws.com", eventName = "AssumeRoleWithSAML" },
          selection_iam = { eventSource = "iam.amazonaws.com", eventName = "UpdateSAMLProvider" },
          condition = "1 of selection_*" }))
      assert.same({ "userAgent ~ TruffleHog" },
        reqs({ s = { ["userAgent|contains"] = "TruffleHog" }, condition = "s" }))
      assert.same({ "eventName ~ UpdateFunctionConfiguration" },
        reqs({ s = { ["eventName|startswith"] = "UpdateFunctionConfiguration" }, condition = "s" }))
      assert.same({ "userIdentity.arn ~ :assumed-role/aws:" },
        reqs({ s = { ["userIdentity.arn|re"] = ".+:assumed-role/aws:.+" }, condition = "s" }))
    end)

    it("are none where a branch requires nothing: not, null, exists, an or with a bare side", function()
      assert.same({}, reqs({ s = { a = "x" }, f = { b = "y" }, condition = "not s" }))
      assert.same({}, reqs({ s = { a = NULL }, condition = "s" }))
      assert.same({}, reqs({ s = { ["a|exists"] = true }, condition = "s" }))
      assert.same({}, reqs({ s = { a = "x" }, t = { b = NULL }, condition = "s or t" }))
      assert.same({}, reqs({ s = { ["a|contains"] = "*" }, condition = "s" }))
      assert.same({}, reqs({ s = { a = 1 }, condition = "s" }))
      assert.same({}, reqs({ s = { ["eventName|neq"] = "x" }, condition = "s" }))
    end)

    it("mix fields across an or into one clause of text", function()
      assert.same({ "* ~ ListBuckets,stratus" },
        reqs({ s = { eventName = "ListBuckets" }, t = { ["userAgent|contains"] = "stratus" }, condition = "s or t" }))
    end)
  end)

  describe("explain()", function()
    it("gives every operator, search identifier and item its value", function()
      local d = compile({ selection = { eventSource = "s3.amazonaws.com", eventName = "ListBuckets" },
        filter = { ["userIdentity.type"] = "AssumedRole" }, condition = "selection and not filter" })
      local t = d.explain({ eventSource = "s3.amazonaws.com", eventName = "ListBuckets",
        userIdentity = { type = "AssumedRole" } })
      assert.equal("and", t.op)
      assert.is_false(t.value)
      local sel, notf = t.children[1], t.children[2]
      assert.equal("selection", sel.text)
      assert.is_true(sel.value)
      assert.same({ "eventName: 'ListBuckets'", "eventSource: 's3.amazonaws.com'" },
        { sel.children[1].text, sel.children[2].text })
      assert.equal("not", notf.op)
      assert.is_false(notf.value)
      assert.equal("filter", notf.children[1].text)
      assert.equal("userIdentity.type: 'AssumedRole'", notf.children[1].children[1].text)
      assert.same({ "eventName", "eventSource", "userIdentity.type" }, d.fields)
    end)
  end)
end)
