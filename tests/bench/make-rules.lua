-- make-rules.lua: a rule folder of N rules for the rule-count rows of `make bench`
-- (tests/bench/run.sh): what 50 or 500 rules cost beside the two bundled ones.
--
--   lua5.4 tests/bench/make-rules.lua N DIR [silent]
--
-- DIR gets a copy of every rule of rules/ (the two Bedrock rules) and N minus their number
-- generated rules, and nothing else (DIR's *.lua files are removed first). Run from the
-- repository root. Deterministic: the same N and sources give the same files, and the
-- rules generated for a smaller N are the first of those for a larger one.
--
-- A generated rule is a Lua rule module in the shape of rules/*.lua (rule_id, a name-based
-- UUID; name, description, severity, risk_score, tags, type = "query", language = "kuery",
-- query; no tests) whose KQL looks like an Elastic AWS rule:
--
--   data_stream.dataset: "aws.cloudtrail"
--       and event.provider: "iam.amazonaws.com"
--       and event.action: ("CreateAccessKey" or "CreateLoginProfile")
--       and event.outcome: "failure"
--
-- over real eventSource/eventName pairs: those of the events the bench corpus is made of
-- (examples/cloudtrail/stratus-red-team.ndjson and bedrock-denied-derived.ndjson, 14
-- services), one to three actions of one service, drawn at random (a fixed seed). Rule n's
-- kind comes in turn from a cycle of 20: 4 plain (nothing more; actions that change
-- something, readOnly false), 2 with event.outcome "success" (the same), 4 with "failure",
-- 4 with aws.cloudtrail.error_code (denied codes), 4 with aws.cloudtrail.user_identity.type
-- "Root", 1 with a wildcard on user_agent.original (*aws-cli*, *Boto3*, *aws-sdk-go*) and
-- 1 with a `not` on the identity type.
--
-- Real rules fire rarely, and an alert costs far more than a rule that does not match
-- (the whole ECS document is built and written). With 500 rules over some 70 pairs, every
-- corpus event would match several of them and the rows would measure alert building, not
-- rules. So each candidate is run (scripts/normalize.lua, scripts/loader.lua, as the host
-- runs it) over the corpus's 325 source events, and it is kept only while the generated
-- rules together alert on no more of them than the bundled rules do (10 of 325): the rule
-- folders of 50 and 500 rules write at most twice the alerts of the two rules. A candidate
-- that would go over is drawn again, as is one whose query is already in the folder. A
-- plain or success rule over the corpus's own actions always alerts, so once the budget
-- is spent their turns go to failure, error_code and Root rules that find nothing here:
-- of 498 generated rules, 12 are plain or success, about 145 each failure, error_code and
-- Root, 25 wildcard and 25 not (make-rules prints the count of each).
--
-- With "silent", the generated rules alert on none of the source events (a budget of 0):
-- the rows then measure what the rules cost apart from the alerts they write.
package.path = "scripts/?.lua;" .. package.path
local cjson = require "cjson"
local loader = require "loader"
local normalize = require("normalize").normalize
local getter = require("event").getter
local uuid = require "uuid"

local total, dir, silent = math.tointeger(tonumber(arg[1] or "")), arg[2], arg[3] == "silent"
if not total or total < 0 or not dir or (arg[3] ~= nil and not silent) then
  io.stderr:write("usage: lua5.4 tests/bench/make-rules.lua N DIR [silent]\n")
  os.exit(2)
end

local SOURCES = {
  "examples/cloudtrail/stratus-red-team.ndjson",
  "examples/cloudtrail/bedrock-denied-derived.ndjson",
}
-- The namespace of the generated rules' rule_id (UUID version 5 of the rule's name).
local NAMESPACE = "5d0c6a36-1f4e-4c52-9b7e-2a3f8c1d9e47"

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The source events, normalized once, and their eventSource/eventName pairs.
local docs = {}
local services, by_service = {}, {}  -- by_service[src] = { any = {...}, write = {...} }
local ctx = { now = "2026-01-01T00:00:00.000Z" }
for _, path in ipairs(SOURCES) do
  for line in io.lines(path) do
    if line ~= "" then
      local rec = cjson.decode(line)
      ctx.raw = line
      local doc = normalize(rec, ctx)
      docs[#docs + 1] = { get = getter(doc), doc = doc }
      local src, name = rec.eventSource, rec.eventName
      local s = by_service[src]
      if not s then
        s = { any = {}, write = {}, seen = {} }
        by_service[src] = s
        services[#services + 1] = src
      end
      if not s.seen[name] then
        s.seen[name] = true
        s.any[#s.any + 1] = name
      end
      -- A call that changes something (readOnly false): what a rule without an outcome or
      -- error clause is written for; nobody alerts on every DescribeInstances.
      if rec.readOnly == false and not s.seen["write " .. name] then
        s.seen["write " .. name] = true
        s.write[#s.write + 1] = name
      end
    end
  end
end
table.sort(services)
for _, s in pairs(by_service) do
  table.sort(s.any)
  table.sort(s.write)
end

-- How many source events a rule (its file text) alerts on; errors if it does not load.
local function alerts_of(path, text)
  local rule, err = loader.load_file(path, { source = text, log = function() end })
  if not rule then error("make-rules: a generated rule does not load: " .. err) end
  local n = 0
  for _, d in ipairs(docs) do
    if rule.match(d.get, d.doc) then n = n + 1 end
  end
  return n
end

-- The folder: the bundled rules first.
assert(os.execute("mkdir -p " .. shell_quote(dir) .. " && rm -f " .. shell_quote(dir) .. "/*.lua"))
local bundled, budget = {}, 0
local p = assert(io.popen("ls rules/*.lua"))
for path in p:lines() do bundled[#bundled + 1] = path end
p:close()
table.sort(bundled)
for _, path in ipairs(bundled) do
  local text = read(path)
  local name = path:match("[^/]+$")
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(text)
  f:close()
  budget = budget + alerts_of(path, text)
end
local want = total - #bundled
if want < 0 then
  io.stderr:write(string.format("make-rules: N must be at least the %d rules of rules/\n", #bundled))
  os.exit(2)
end

local SERVICE_NAMES = {
  ["bedrock.amazonaws.com"] = "Bedrock", ["cloudtrail.amazonaws.com"] = "CloudTrail",
  ["ec2-instance-connect.amazonaws.com"] = "EC2 Instance Connect", ["ec2.amazonaws.com"] = "EC2",
  ["iam.amazonaws.com"] = "IAM", ["lambda.amazonaws.com"] = "Lambda",
  ["organizations.amazonaws.com"] = "Organizations", ["rds.amazonaws.com"] = "RDS",
  ["rolesanywhere.amazonaws.com"] = "IAM Roles Anywhere",
  ["route53resolver.amazonaws.com"] = "Route 53 Resolver",
  ["secretsmanager.amazonaws.com"] = "Secrets Manager", ["signin.amazonaws.com"] = "Sign-In",
  ["ssm.amazonaws.com"] = "Systems Manager", ["sts.amazonaws.com"] = "STS",
}
local USER_AGENTS = {  -- wildcard values of user_agent.original, and what a name says of them
  { "*aws-cli*", "via the AWS CLI" }, { "*Boto3*", "via Boto3" }, { "*aws-sdk-go*", "via the AWS SDK for Go" },
}
local SEVERITIES = { { "low", 21 }, { "medium", 47 }, { "high", 73 }, { "critical", 99 } }

-- The kinds of rule: the clause after provider and action, the actions it is written for,
-- how its name ends, and what make-rules calls it when it counts them.
local function kind(label, clause, pool, suffix)
  return { label = label, clause = clause, pool = pool, suffix = suffix }
end
local PLAIN = kind("plain", nil, "write", "")
local SUCCESS = kind("success", 'event.outcome: "success"', "write", "Succeeded")
local FAILURE = kind("failure", 'event.outcome: "failure"', "any", "Failure")
local DENIED = kind("error_code",
  'aws.cloudtrail.error_code: ("AccessDenied" or "AccessDeniedException" or "Client.UnauthorizedOperation")',
  "any", "Access Denied")
local ROOT = kind("Root", 'aws.cloudtrail.user_identity.type: "Root"', "any", "by the Root User")
local AGENT = kind("wildcard", "user_agent.original: %s", "any", "%s")
local NOT_ROLE = kind("not", 'not aws.cloudtrail.user_identity.type: ("AssumedRole" or "AWSService")', "write",
  "by a Long-Term Identity")
-- Rule n is of kind TURN[n] (20 to a turn), unless no rule of that kind fits the alert
-- budget any more (plain and success rules over the corpus's own actions always alert):
-- then of one of FALLBACK, which fire only on failed calls or never here.
local TURN = { PLAIN, FAILURE, SUCCESS, ROOT, DENIED, PLAIN, FAILURE, AGENT, ROOT, DENIED,
               PLAIN, SUCCESS, FAILURE, NOT_ROLE, ROOT, PLAIN, DENIED, FAILURE, ROOT, DENIED }
local FALLBACK = { FAILURE, DENIED, ROOT }
local DRAWS = 60  -- candidates of one kind drawn for a rule before the next kind

-- A small deterministic generator (an LCG, the high bits used).
local state = 20261202
local function rand(n)
  state = (state * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
  return (state >> 33) % n + 1
end

local function lua_string(s) return string.format("%q", s) end

-- A candidate of kind k: its name, query and what its description says; nil when the
-- service drawn has no action of the kind's pool.
local function candidate(k)
  local src = services[rand(#services)]
  local pool = by_service[src][k.pool]
  if #pool == 0 then return nil end
  -- One to three distinct actions of the pool, drawn at random, in name order.
  local actions, taken = {}, {}
  for _ = 1, math.min(rand(3), #pool) do
    local i = rand(#pool)
    while taken[i] do i = i % #pool + 1 end
    taken[i], actions[#actions + 1] = true, pool[i]
  end
  table.sort(actions)
  local clause, suffix = k.clause, k.suffix
  if k == AGENT then
    local ua = USER_AGENTS[rand(#USER_AGENTS)]
    clause, suffix = clause:format(ua[1]), ua[2]
  end
  local quoted = {}
  for i, a in ipairs(actions) do quoted[i] = '"' .. a .. '"' end
  local action_kql = #quoted == 1 and quoted[1] or "(" .. table.concat(quoted, " or ") .. ")"
  local query = 'data_stream.dataset: "aws.cloudtrail"\n    and event.provider: "' .. src .. '"\n'
    .. "    and event.action: " .. action_kql .. "\n"
    .. (clause and "    and " .. clause .. "\n" or "")
  local svc = SERVICE_NAMES[src] or src:match("^[^.]+")
  local listed = #actions == 1 and actions[1]
    or table.concat(actions, ", ", 1, #actions - 1) .. " or " .. actions[#actions]
  local name = ("AWS " .. svc .. " " .. listed .. " " .. suffix):gsub("%s+$", "")
  return { name = name, query = query, service = svc, actions = listed, kind = k, clause = clause }
end

local function module_text(c, n)
  local sev = SEVERITIES[(n - 1) % #SEVERITIES + 1]
  local tactic = ({ "Persistence", "Defense Evasion", "Credential Access", "Discovery", "Privilege Escalation" })
    [(n - 1) % 5 + 1]
  return table.concat({
    "-- Generated by tests/bench/make-rules.lua for the rule-count rows of `make bench`: a rule",
    "-- in the shape of rules/*.lua over real CloudTrail names, not a bundled detection.",
    "return {",
    "  rule_id = " .. lua_string(uuid.v5(NAMESPACE, c.name)) .. ",",
    "  name = " .. lua_string(c.name) .. ",",
    "  description = " .. lua_string("Identifies " .. c.actions .. " calls to AWS " .. c.service
      .. (c.clause and " where " .. c.clause or "")
      .. ". Generated for the rule-count benchmark.") .. ",",
    string.format("  severity = %q,", sev[1]),
    string.format("  risk_score = %d,", sev[2]),
    "  tags = { \"Domain: Cloud\", \"Data Source: AWS\", \"Data Source: Amazon Web Services\",",
    "    " .. lua_string("Data Source: AWS " .. c.service) .. ", \"Use Case: Threat Detection\", "
      .. lua_string("Tactic: " .. tactic) .. " },",
    "  index = { \"filebeat-*\", \"logs-aws.cloudtrail-*\" },",
    "  type = \"query\",",
    "  language = \"kuery\",",
    "  query = [[",
    c.query .. "]],",
    "}",
    "",
  }, "\n")
end

local used, spent, by_kind = {}, 0, {}
for n = 1, want do
  local path = string.format("%s/bench_rule_%04d.lua", dir, n)
  local order = { TURN[(n - 1) % #TURN + 1] }
  for i = 0, #FALLBACK - 1 do order[#order + 1] = FALLBACK[(n + i) % #FALLBACK + 1] end
  local chosen, text, hits
  for _, k in ipairs(order) do
    for _ = 1, DRAWS do
      local c = candidate(k)
      if c and not used[c.query] then
        text = module_text(c, n)
        hits = alerts_of(path, text)
        if spent + hits <= (silent and 0 or budget) then chosen = c break end
      end
    end
    if chosen then break end
  end
  if not chosen then error(string.format("make-rules: found no rule %d within the alert budget", n)) end
  used[chosen.query], spent = true, spent + hits
  by_kind[chosen.kind.label] = (by_kind[chosen.kind.label] or 0) + 1
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local kinds = {}
for _, k in ipairs({ PLAIN, SUCCESS, FAILURE, DENIED, ROOT, AGENT, NOT_ROLE }) do
  if by_kind[k.label] then kinds[#kinds + 1] = string.format("%d %s", by_kind[k.label], k.label) end
end
print(string.format("make-rules: %s: %d rules, %d of rules/ and %d generated (%s); on the %d source "
  .. "events the generated ones alert %d times, the bundled ones %d", dir, #bundled + want, #bundled, want,
  #kinds > 0 and table.concat(kinds, ", ") or "none", #docs, spent, budget))
