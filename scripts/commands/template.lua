-- template.lua: `trailhound new NAME`, a rule file to start from.
--
--   template.path(name) -> path             snake_case file name, in ./rules unless name is a path
--   template.title(name) -> rule name       "bedrock_guardrail_deleted" -> "Bedrock Guardrail Deleted"
--   template.uuid4(bytes) -> UUID v4        from 16 random bytes
--   template.text(opts) -> source           opts: name, rule_id, author, date
--
-- The rule it writes is complete: metadata with every field Elastic's schema
-- asks for, a query, and one test the rule must match and one it must not,
-- so `trailhound check` and `trailhound test` pass on it as written. Its
-- query is a real detection (CloudTrail logging stopped) to be replaced.

local M = {}

-- "Logging Stopped" -> "logging_stopped"; an identifier without spaces has its
-- camelCase split too: "myRule" -> "my_rule" (but "CloudTrail Stop" -> "cloudtrail_stop").
function M.snake(name)
  if not name:find("%s") then name = name:gsub("(%l)(%u)", "%1_%2") end
  local s = name:lower():gsub("[^%w]+", "_"):gsub("^_+", ""):gsub("_+$", "")
  return s
end

function M.path(name)
  if name:find("/") or name:find("%.lua$") then
    if not name:find("%.lua$") then name = name .. ".lua" end
    return name
  end
  return "rules/" .. M.snake(name) .. ".lua"
end

function M.title(name)
  local base = name:gsub("^.*/", ""):gsub("%.lua$", "")
  if base:find(" ") then return base end
  local words = {}
  for w in M.snake(base):gmatch("[^_]+") do
    words[#words + 1] = w:sub(1, 1):upper() .. w:sub(2)
  end
  return table.concat(words, " ")
end

function M.uuid4(bytes)
  local b = { bytes:byte(1, 16) }
  b[7] = (b[7] & 0x0f) | 0x40  -- version 4
  b[9] = (b[9] & 0x3f) | 0x80  -- RFC 4122 variant
  local hex = string.format(string.rep("%02x", 16), table.unpack(b))
  return hex:sub(1, 8) .. "-" .. hex:sub(9, 12) .. "-" .. hex:sub(13, 16) .. "-" .. hex:sub(17, 20) .. "-" ..
    hex:sub(21, 32)
end

-- A Lua string literal of s.
local function lit(s)
  return string.format("%q", s):gsub("\\\n", "\\n")
end

local TEMPLATE = [==[
-- {{name}}
--
-- Written by `trailhound new`. Change the query and the tests to what you want to
-- detect, then:  trailhound dev {{path}} [sample.ndjson...]
-- Fields are ECS names, as Elastic's aws.cloudtrail integration writes them
-- (eventName -> event.action, eventSource -> event.provider, errorCode ->
-- aws.cloudtrail.error_code, ...); `trailhound check` warns about a field no source
-- produces.

-- A CloudTrail record for the tests: who, where and when, with `fields` laid over it.
local function record(fields)
  local r = {
    eventVersion = "1.09",
    userIdentity = {
      type = "AssumedRole",
      principalId = "AROAEXAMPLEPRINCIPAL:alice",
      arn = "arn:aws:sts::111122223333:assumed-role/Admin/alice",
      accountId = "111122223333",
      accessKeyId = "ASIAEXAMPLEKEY000001",
    },
    eventTime = "2024-05-01T12:00:00Z",
    awsRegion = "us-east-1",
    sourceIPAddress = "198.51.100.7",
    userAgent = "aws-cli/2.15.0",
    eventType = "AwsApiCall",
    managementEvent = true,
    recipientAccountId = "111122223333",
    eventCategory = "Management",
  }
  for k, v in pairs(fields) do r[k] = v end
  return r
end

return {
  rule_id = "{{rule_id}}",
  name = {{name_lit}},
  description = [[
Describe what this rule detects, why it matters, and what an alert means.
]],
  -- low 0-21, medium 22-47, high 48-73, critical 74-100 (Elastic's bands)
  severity = "low",
  risk_score = 21,
  tags = { "Domain: Cloud", "Data Source: AWS", "Data Source: Amazon Web Services", "Data Source: AWS CloudTrail" },
  -- threat = { { framework = "MITRE ATT&CK",
  --   tactic = { id = "TA0005", name = "Defense Evasion", reference = "https://attack.mitre.org/tactics/TA0005/" },
  --   technique = { { id = "T1562", name = "Impair Defenses",
  --                   reference = "https://attack.mitre.org/techniques/T1562/" } } } },
  references = {},
  false_positives = { [[
Name the legitimate activity that looks like this, and how to tell it apart.
]] },
  note = [[
## Triage and analysis

### Investigating {{name_md}}

#### Possible investigation steps

- Who made the call: `aws.cloudtrail.user_identity.arn`, `source.ip`, `user_agent.original`.
- What it changed: `aws.cloudtrail.request_parameters`.
]],
  investigation_fields = {
    "@timestamp",
    "user.name",
    "source.ip",
    "user_agent.original",
    "aws.cloudtrail.user_identity.arn",
    "event.action",
    "event.outcome",
    "cloud.account.id",
    "cloud.region",
    "aws.cloudtrail.request_parameters",
  },
  index = { "logs-aws.cloudtrail-*" },
  from = "now-6m",
  max_signals = 100,
  timestamp_override = "event.ingested",
  author = { {{author_lit}} },
  license = "Elastic License v2",
  type = "query",
  version = 1,
  metadata = { creation_date = "{{date}}", updated_date = "{{date}}", maturity = "development" },

  language = "kuery",
  query = [[
data_stream.dataset: "aws.cloudtrail" and
    event.provider: "cloudtrail.amazonaws.com" and
    event.action: "StopLogging" and
    event.outcome: "success"
]],

  -- Each test: a raw CloudTrail record and whether the rule matches it. For a rule of type
  -- new_terms or threshold, whose alerts depend on the events before, a test may also hold
  -- several records in order and the number of alerts they make:
  --   { name = "...", expect = 1, events = { record { ... }, record { ... } } },
  tests = {
    {
      name = "trail logging stopped", expect = true,
      event = record {
        eventID = "{{id1}}",
        eventSource = "cloudtrail.amazonaws.com", eventName = "StopLogging",
        requestParameters = { name = "arn:aws:cloudtrail:us-east-1:111122223333:trail/management-events" },
      },
    },
    {
      name = "StopLogging denied", expect = false,
      event = record {
        eventID = "{{id2}}",
        eventSource = "cloudtrail.amazonaws.com", eventName = "StopLogging",
        errorCode = "AccessDenied",
        errorMessage = "User: arn:aws:sts::111122223333:assumed-role/Admin/alice is not authorized to perform: "
          .. "cloudtrail:StopLogging",
        requestParameters = { name = "arn:aws:cloudtrail:us-east-1:111122223333:trail/management-events" },
      },
    },
  },
}
]==]

function M.text(opts)
  local values = {
    name = opts.name:gsub("\n", " "),
    name_lit = lit(opts.name),
    name_md = opts.name:gsub("[%]%[]", ""),
    path = opts.path or "",
    rule_id = opts.rule_id,
    author_lit = lit(opts.author or "trailhound user"),
    date = opts.date,
    id1 = opts.ids and opts.ids[1] or opts.rule_id,
    id2 = opts.ids and opts.ids[2] or opts.rule_id,
  }
  return (TEMPLATE:gsub("{{([%w_]+)}}", function(k) return values[k] end))
end

return M
