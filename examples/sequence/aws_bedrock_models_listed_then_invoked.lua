-- An example of an EQL sequence rule (host/state.h, host/sequence.c): Elastic's "AWS Bedrock
-- Foundation Model Enumeration Followed by Invocation via Long-Term Key" (its query as
-- `trailhound import` writes it from tests/fixtures/elastic-detection-rules-aws), with tests:
-- an IAM user's long-term key lists the Bedrock models, then invokes one within 15 minutes, as
-- a stolen key used for LLMjacking does. A completed sequence is a building block alert per
-- event and a shell alert, as Elastic writes them.
--
--   trailhound test examples/sequence/aws_bedrock_models_listed_then_invoked.lua
--
-- The tests are Bedrock calls as CloudTrail logs them (tests/fixtures/stratus-red-team's
-- aws.impact.bedrock-invoke-model.json, see its NOTICE), made an IAM user's: a sequence needs
-- several events in order, so its tests hold several.
local function call(name, time, key, id)
  return {
    eventVersion = "1.10", eventTime = time, eventSource = "bedrock.amazonaws.com", eventName = name,
    awsRegion = "us-east-1", sourceIPAddress = "35.249.253.232", userAgent = "aws-cli/2.15.30",
    requestParameters = name ~= "ListFoundationModels" and { modelId = "anthropic.claude-3-sonnet-20240229-v1:0" }
      or nil,
    userIdentity = {
      type = "IAMUser", accountId = "494659789341", principalId = "AIDA2N7TQQRGKJYPCLOG0",
      arn = "arn:aws:iam::494659789341:user/dev", userName = "dev", accessKeyId = key,
    },
    eventID = "51d580ea-04f5-421c-b733-" .. id, eventType = "AwsApiCall", recipientAccountId = "494659789341",
    readOnly = true, managementEvent = true, eventCategory = "Management",
  }
end

local KEY, OTHER = "AKIA6FTSFH98XNF7DFZB", "AKIA6FTSFH98XNF7QQQQ"

return {
  rule_id = "c3a5e1d2-7b4f-4e8a-9d6c-2f1b0a9e8d7c",
  name = "AWS Bedrock Models Listed then Invoked with a Long-Term Key",
  description = "An IAM user's long-term key (AKIA) listed the Bedrock foundation models, then invoked one "
    .. "within 15 minutes.",
  severity = "high",
  risk_score = 73,
  version = 1,
  license = "Apache-2.0",
  author = { "trailhound" },
  tags = { "Domain: Cloud", "Data Source: AWS", "Data Source: Amazon Bedrock", "Tactic: Discovery" },
  index = { "logs-aws.cloudtrail-*" },
  from = "now-30m",
  type = "eql",
  language = "eql",
  query = [[
sequence by aws.cloudtrail.user_identity.access_key_id with maxspan=15m
  [any where data_stream.dataset == "aws.cloudtrail"
    and event.provider == "bedrock.amazonaws.com"
    and event.action == "ListFoundationModels"
    and event.outcome == "success"
    and aws.cloudtrail.user_identity.access_key_id like "AKIA*"]
  [any where data_stream.dataset == "aws.cloudtrail"
    and event.provider == "bedrock.amazonaws.com"
    and event.action : ("InvokeModel", "InvokeModelWithResponseStream", "Converse", "ConverseStream")
    and event.outcome == "success"]
]],
  tests = {
    { name = "a list, then an invocation", expect = true,
      event = call("InvokeModel", "2024-10-17T20:11:24Z", KEY, "000000000002") },
    { name = "another Bedrock call", expect = false,
      event = call("GetFoundationModelAvailability", "2024-10-17T20:11:24Z", KEY, "000000000003") },
    { name = "listed, then invoked 2 minutes later: one sequence", expect = 1, events = {
      call("ListFoundationModels", "2024-10-17T20:09:50Z", KEY, "000000000001"),
      call("InvokeModel", "2024-10-17T20:11:24Z", KEY, "000000000002"),
    } },
    { name = "invoked 20 minutes later: past maxspan", expect = 0, events = {
      call("ListFoundationModels", "2024-10-17T20:09:50Z", KEY, "000000000001"),
      call("Converse", "2024-10-17T20:29:51Z", KEY, "000000000002"),
    } },
    { name = "invoked before the list", expect = 0, events = {
      call("InvokeModel", "2024-10-17T20:09:50Z", KEY, "000000000001"),
      call("ListFoundationModels", "2024-10-17T20:11:24Z", KEY, "000000000002"),
    } },
    { name = "listed with one key, invoked with another", expect = 0, events = {
      call("ListFoundationModels", "2024-10-17T20:09:50Z", KEY, "000000000001"),
      call("InvokeModel", "2024-10-17T20:11:24Z", OTHER, "000000000002"),
    } },
    { name = "a session key (ASIA) lists: no sequence", expect = 0, events = {
      call("ListFoundationModels", "2024-10-17T20:09:50Z", "ASIA6FTSFH98XNF7DFZB", "000000000001"),
      call("InvokeModel", "2024-10-17T20:11:24Z", "ASIA6FTSFH98XNF7DFZB", "000000000002"),
    } },
    { name = "two keys, each its own sequence", expect = 2, events = {
      call("ListFoundationModels", "2024-10-17T20:09:50Z", KEY, "000000000001"),
      call("ListFoundationModels", "2024-10-17T20:10:00Z", OTHER, "000000000002"),
      call("ConverseStream", "2024-10-17T20:11:00Z", OTHER, "000000000003"),
      call("InvokeModel", "2024-10-17T20:11:24Z", KEY, "000000000004"),
    } },
  },
}
