-- An example of a noisy rule made readable with alert suppression: every AWS API call that was
-- denied, one alert per caller and action every 30 minutes, the later calls counted into it
-- (kibana.alert.suppression.docs_count), and at most 50 alerts in any hour.
--
--   trailhound replay --rules examples/rules tests/fixtures/stratus-red-team/*.json
--
-- The tests are trimmed real records of tests/fixtures/stratus-red-team (see its NOTICE).
local DENIED = {
  eventVersion = "1.09", eventTime = "2024-07-30T21:31:21Z", eventSource = "ec2.amazonaws.com",
  eventName = "GetPasswordData", awsRegion = "us-east-1", sourceIPAddress = "203.0.113.7",
  userAgent = "stratus-red-team_4d3c1f4e-1b7a-4b8e-9f0a-8f3f6f0f1a2b",
  errorCode = "Client.UnauthorizedOperation",
  errorMessage = "You are not authorized to perform this operation.",
  userIdentity = {
    type = "AssumedRole", accountId = "751353041310",
    arn = "arn:aws:sts::751353041310:assumed-role/stratus-red-team-ec2-get-password-data-role/aws-go-sdk",
  },
  eventID = "1c5ffb8d-1fa0-4b8e-8a4f-2a52f6b0f3a1", eventType = "AwsApiCall", recipientAccountId = "751353041310",
}

-- The same call, allowed: no error.
local ALLOWED = {}
for k, v in pairs(DENIED) do ALLOWED[k] = v end
ALLOWED.errorCode, ALLOWED.errorMessage, ALLOWED.eventID = nil, nil, "9d2e4c61-0b3f-4a57-8c1e-5f6a7b8c9d0e"

return {
  rule_id = "3f0b8c1e-5a7d-4c2b-9e61-7d2a4f9c8b10",
  name = "AWS API Calls Denied, by Caller",
  description = "An AWS API call was denied. One alert per caller and action in 30 minutes, counting the "
    .. "later calls into it: a credential probing what it may do shows as a few alerts with large counts.",
  severity = "low",
  risk_score = 21,
  version = 1,
  license = "Apache-2.0",
  author = { "trailhound" },
  tags = { "Domain: Cloud", "Data Source: AWS", "Data Source: AWS CloudTrail", "Use Case: Threat Detection" },
  index = { "logs-aws.cloudtrail-*" },
  from = "now-6m",
  interval = "1h",
  max_signals = 50,
  alert_suppression = {
    group_by = { "user.name", "event.action" },
    duration = { value = 30, unit = "m" },
    missing_fields_strategy = "suppress",
  },
  language = "kuery",
  query = 'data_stream.dataset: "aws.cloudtrail" and event.outcome: "failure"',
  tests = {
    { name = "a denied call", expect = true, event = DENIED },
    { name = "the call allowed", expect = false, event = ALLOWED },
  },
}
