-- An example of a threshold rule (host/state.h): one caller reading many different secrets in a
-- few minutes, as a stolen credential harvesting Secrets Manager does. One alert per caller
-- and burst, in the shape of Elastic's threshold alerts (kibana.alert.threshold_result).
--
--   trailhound replay --rules examples/stateful tests/fixtures/stratus-red-team/*.json
--   trailhound test examples/stateful/aws_secrets_read_in_a_burst.lua
--
-- The tests are a trimmed real record of tests/fixtures/stratus-red-team (see its NOTICE),
-- made into bursts: a rule of this type alerts on several events, so its tests hold several.
local READ = {
  eventVersion = "1.09", eventTime = "2024-07-31T12:36:52Z", eventSource = "secretsmanager.amazonaws.com",
  eventName = "GetSecretValue", awsRegion = "us-east-1", sourceIPAddress = "203.0.113.7",
  userAgent = "stratus-red-team_10e7edf3-5063-4eba-8842-68f83bb52d65",
  requestParameters = { secretId = "arn:aws:secretsmanager:us-east-1:903144391865:secret:stratus-red-team-1" },
  userIdentity = {
    type = "IAMUser", accountId = "903144391865", principalId = "AIDA45XCCHPPLELFTIIM",
    arn = "arn:aws:iam::903144391865:user/christophe", userName = "christophe",
  },
  eventID = "b9c3d881-1e77-426c-abd3-5ca20d903380", eventType = "AwsApiCall", recipientAccountId = "903144391865",
}

-- n reads, every `every` seconds from 12:30:00, of `secrets` different secrets in turn.
local function reads(n, every, secrets)
  local list = {}
  for i = 1, n do
    local r = {}
    for k, v in pairs(READ) do r[k] = v end
    local s = (i - 1) * every
    r.eventTime = string.format("2024-07-31T%02d:%02d:%02dZ", 12 + (30 + s // 60) // 60, (30 + s // 60) % 60, s % 60)
    r.eventID = string.format("b9c3d881-1e77-426c-abd3-%012d", i)
    r.requestParameters = { secretId = READ.requestParameters.secretId:gsub("%d+$", tostring((i - 1) % secrets)) }
    list[i] = r
  end
  return list
end

return {
  rule_id = "8e2f4a61-3c0d-4b7e-9a15-6d4c2b8f0e73",
  name = "AWS Secrets Read in a Burst",
  description = "One caller read 10 or more different secrets from Secrets Manager within 6 minutes.",
  severity = "medium",
  risk_score = 47,
  version = 1,
  license = "Apache-2.0",
  author = { "trailhound" },
  tags = { "Domain: Cloud", "Data Source: AWS", "Data Source: AWS Secrets Manager", "Tactic: Credential Access" },
  index = { "logs-aws.cloudtrail-*" },
  from = "now-6m",
  type = "threshold",
  language = "kuery",
  query = [[
data_stream.dataset: "aws.cloudtrail" and event.provider: "secretsmanager.amazonaws.com"
    and event.action: "GetSecretValue" and event.outcome: "success"
]],
  threshold = {
    field = { "user.id" },
    value = 10,
    cardinality = { { field = "aws.cloudtrail.request_parameters", value = 10 } },
  },
  tests = {
    { name = "a read", expect = true, event = READ },
    { name = "12 secrets in 2 minutes: one alert", expect = 1, events = reads(12, 10, 12) },
    { name = "30 secrets in 5 minutes: three bursts", expect = 3, events = reads(30, 10, 30) },
    { name = "12 secrets over an hour", expect = 0, events = reads(12, 300, 12) },
    { name = "the same 3 secrets, 20 times", expect = 0, events = reads(20, 5, 3) },
  },
}
