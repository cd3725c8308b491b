-- AWS Bedrock Unauthorized Resource-Based Policy Modification Attempt
--
-- Carried over from Elastic's detection-rules, rules/integrations/aws/
-- persistence_bedrock_resource_based_policy_denied_attempt.toml (Elastic License v2; a copy is in
-- tests/fixtures/seeds/). Every piece of metadata, the investigation guide (note) and the KQL query
-- are word for word; tests/rules_spec.lua compares them with the TOML.
--
-- The embedded tests are raw CloudTrail records. They are based on the real Stratus Red Team
-- Bedrock events in tests/fixtures/stratus-red-team/aws.impact.bedrock-invoke-model.json (all
-- successful). Stratus has no PutResourcePolicy/DeleteResourcePolicy call, so those tests keep the
-- identity, network and TLS fields of the real PutFoundationModelEntitlement event and carry
-- requestParameters as the Bedrock API takes them (resourceArn, and resourcePolicy, a JSON string,
-- for PutResourcePolicy). The denied ones add errorCode/errorMessage as AWS writes them and have no
-- responseElements, as CloudTrail records a failed call.

-- Who, where and when, shared by every test: the identity, network and TLS fields of the real
-- Stratus PutFoundationModelEntitlement event. Each test spells out what the query reads:
-- eventSource, eventName and errorCode (errorCode/errorMessage also make event.outcome "failure").
local ROLE_ARN = "arn:aws:sts::494659789341:assumed-role/test-role/cli"
local REGION = "megov-northeast-1r"
local MODEL_ID = "anthropic.claude-3-sonnet-20240229-v1:0"

-- A custom model of the account, and a policy that would share it with another account.
local CUSTOM_MODEL_ARN = "arn:aws:bedrock:" .. REGION .. ":494659789341:custom-model/amazon.titan-text-express-v1:0:8k/2xq7k9v4m1pz"
local CROSS_ACCOUNT_POLICY = '{"Version":"2012-10-17","Statement":[{"Sid":"ShareWithPartner","Effect":"Allow",'
  .. '"Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":["bedrock:InvokeModel","bedrock:GetCustomModel"],'
  .. '"Resource":"' .. CUSTOM_MODEL_ARN .. '"}]}'

local BASE = {
  eventVersion = "1.09",
  userIdentity = {
    type = "AssumedRole",
    principalId = "AROA2N7TQQRGKJYPCLOG0:cli",
    arn = ROLE_ARN,
    accountId = "494659789341",
    accessKeyId = "ASIA6FTSFH98XNF7DFZB",
    sessionContext = {
      sessionIssuer = {
        type = "Role",
        principalId = "AROA2N7TQQRGKJYPCLOG0",
        arn = "arn:aws:iam::494659789341:role/test-role",
        accountId = "494659789341",
        userName = "test-role",
      },
      attributes = { creationDate = "2024-10-17T20:07:50Z", mfaAuthenticated = "false" },
    },
  },
  eventTime = "2024-10-17T20:09:52Z",
  awsRegion = REGION,
  sourceIPAddress = "035.249.253.232",
  userAgent = "stratus-red-team_e0cb7ef1-0d48-463f-8988-277de94752b6",
  requestID = "ad8d9b62-bd64-4276-92bd-f8f6bc829370",
  readOnly = false,
  eventType = "AwsApiCall",
  managementEvent = true,
  recipientAccountId = "494659789341",
  eventCategory = "Management",
  tlsDetails = {
    tlsVersion = "TLSv1.3",
    cipherSuite = "TLS_AES_128_GCM_SHA256",
    clientProvidedHostHeader = "bedrock." .. REGION .. ".amazonaws.com",
  },
}

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return t
end

-- A CloudTrail record: a copy of BASE with `fields` laid over it (a table value replaces the whole field).
local function call(fields)
  local e = copy(BASE)
  for k, v in pairs(fields) do e[k] = copy(v) end
  return e
end

-- errorMessage of a call refused because no IAM policy allows it (AWS's wording).
local function not_allowed(action, resource)
  return "User: " .. ROLE_ARN .. " is not authorized to perform: " .. action .. " on resource: " .. resource
    .. " because no identity-based policy allows the " .. action .. " action"
end

-- errorMessage of a call refused by an organization's service control policy (AWS's wording).
local function scp_denied(action)
  return "User: " .. ROLE_ARN .. " is not authorized to perform: " .. action
    .. " with an explicit deny in a service control policy"
end

return {
  rule_id = "2e99477f-6099-48a9-ae0e-68801d97079c",
  name = "AWS Bedrock Unauthorized Resource-Based Policy Modification Attempt",
  description = [[
Detects failed, access-denied attempts to modify or delete resource-based access policies on AWS Bedrock resources via
the PutResourcePolicy and DeleteResourcePolicy API calls. Resource-based policies govern which principals (including
external accounts) may access Bedrock resources such as agents, knowledge bases, and custom models. A principal that is
repeatedly denied when attempting to attach or remove these policies may be a compromised or under-privileged identity
probing for the ability to grant external or cross-account access, or to weaken existing access controls. Unlike the
companion rule that detects successful changes, this rule surfaces the attempt itself, which is a high-signal indicator
of credential boundary-testing even though no change occurred.
]],
  severity = "low",
  risk_score = 21,
  tags = {
    "Domain: Cloud",
    "Domain: LLM",
    "Data Source: AWS",
    "Data Source: AWS CloudTrail",
    "Data Source: Amazon Web Services",
    "Data Source: Amazon Bedrock",
    "Use Case: Identity and Access Audit",
    "Resources: Investigation Guide",
    "Tactic: Persistence",
  },
  threat = {
    {
      framework = "MITRE ATT&CK",
      tactic = { id = "TA0003", name = "Persistence", reference = "https://attack.mitre.org/tactics/TA0003/" },
      technique = {
        { id = "T1098", name = "Account Manipulation", reference = "https://attack.mitre.org/techniques/T1098/" },
      },
    },
  },
  references = {
    "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_PutResourcePolicy.html",
    "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_DeleteResourcePolicy.html",
  },
  false_positives = {
    [[
    Access-denied errors can result from benign permission gaps: a newly created role or user whose IAM policy has not
    yet been provisioned, infrastructure-as-code pipelines running ahead of permission grants, or developers
    experimenting in non-production accounts. Verify whether the user identity, user agent, and source IP are expected
    to manage Bedrock resource policies in your environment. Recurring denials from known automation or onboarding
    workflows can be exempted from the rule.
    ]],
  },
  note = [[
## Triage and analysis

### Investigating AWS Bedrock Unauthorized Resource-Based Policy Modification Attempt

AWS Bedrock resource-based policies control which principals can access Bedrock resources such as agents,
knowledge bases, and custom models. An adversary who has compromised a credential may attempt to attach a policy
that grants an external principal access for persistence or cross-account access, or delete a policy to break
existing access controls. This rule detects `PutResourcePolicy` and `DeleteResourcePolicy` calls that were denied
(`AccessDenied` / unauthorized), which indicates an identity attempting an action it is not permitted to perform —
a strong signal of boundary-testing by a compromised or under-privileged principal even though the change did not
take effect.

#### Possible investigation steps

- **Identify the actor and context**
  - Review `aws.cloudtrail.user_identity.arn`, `aws.cloudtrail.user_identity.type`,
    `aws.cloudtrail.user_identity.access_key_id`, `user_agent.original`, and `source.ip`.
  - Determine whether this identity has any legitimate reason to manage Bedrock resource policies. A denial for an
    identity that should never touch these APIs is more suspicious than one from an admin with a transient gap.
- **Assess the attempt**
  - Inspect `aws.cloudtrail.error_code` and `aws.cloudtrail.error_message` to confirm the denial reason.
  - For `PutResourcePolicy`, review `aws.cloudtrail.request_parameters` and
    `aws.cloudtrail.flattened.request_parameters` for the target resource ARN and the attempted policy document.
    Look for `Principal` values referencing external AWS account IDs, `"*"`, or unfamiliar roles.
- **Correlate activity**
  - Look for repeated denials across Bedrock or IAM APIs from the same identity, which can indicate permission
    enumeration or escalation attempts.
  - Check whether the identity later succeeded (e.g., after acquiring new permissions) on the same or related
    resources, and review any IAM changes in the surrounding window.

### False positive analysis

- **Permission gaps**: Newly provisioned roles/users or IaC pipelines running before policy grants are applied may
  generate transient denials. Validate against change tickets and known automation.
- **Exploration in non-production**: Developers testing in sandbox accounts may hit denials. Confirm the account and
  identity context.

### Response and remediation

- If the attempt is unexpected, treat the identity as potentially compromised: disable or rotate the credentials in
  `aws.cloudtrail.user_identity.access_key_id` and review the actor's recent activity.
- Review all Bedrock and IAM activity from the same identity in the surrounding time window for successful access
  grants, permission changes, or other persistence attempts.
- Confirm least-privilege on `bedrock:PutResourcePolicy` and `bedrock:DeleteResourcePolicy`, and alert on both denied
  and successful calls.
]],
  investigation_fields = {
    "@timestamp",
    "user.name",
    "user_agent.original",
    "source.ip",
    "aws.cloudtrail.user_identity.arn",
    "aws.cloudtrail.user_identity.type",
    "aws.cloudtrail.user_identity.access_key_id",
    "event.action",
    "event.provider",
    "event.outcome",
    "aws.cloudtrail.error_code",
    "cloud.account.id",
    "cloud.region",
    "aws.cloudtrail.request_parameters",
    "aws.cloudtrail.response_elements",
  },
  index = { "logs-aws.cloudtrail-*" },
  from = "now-6m",
  max_signals = 100,  -- the TOML omits max_signals: Elastic's default, 100
  timestamp_override = "event.ingested",
  author = { "Elastic" },
  license = "Elastic License v2",
  type = "query",
  version = 1,  -- the TOML has no version: a new rule is version 1
  metadata = {
    creation_date = "2026/06/04",
    updated_date = "2026/06/04",
    maturity = "production",
    integration = { "aws" },
  },

  language = "kuery",
  query = [[
data_stream.dataset: "aws.cloudtrail" and
    event.provider: "bedrock.amazonaws.com" and
    event.action: ("PutResourcePolicy" or "DeleteResourcePolicy") and
    event.outcome: "failure" and
    aws.cloudtrail.error_code: (
        "AccessDenied" or
        "AccessDeniedException"
    )
]],

  tests = {
    -- Denied resource-policy changes: one alert each.
    {
      name = "denied PutResourcePolicy (AccessDeniedException)", expect = true,
      event = call {
        eventID = "57993857-6c36-4510-8a38-8e95eeafb231",
        eventSource = "bedrock.amazonaws.com", eventName = "PutResourcePolicy",
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("bedrock:PutResourcePolicy", CUSTOM_MODEL_ARN),
        requestParameters = { resourceArn = CUSTOM_MODEL_ARN, resourcePolicy = CROSS_ACCOUNT_POLICY },
      },
    },
    {
      name = "denied PutResourcePolicy (AccessDenied)", expect = true,
      event = call {
        eventID = "0181774a-4484-4b80-b45c-a27072800bb1",
        eventSource = "bedrock.amazonaws.com", eventName = "PutResourcePolicy",
        errorCode = "AccessDenied",
        errorMessage = scp_denied("bedrock:PutResourcePolicy"),
        requestParameters = { resourceArn = CUSTOM_MODEL_ARN, resourcePolicy = CROSS_ACCOUNT_POLICY },
      },
    },
    {
      name = "denied DeleteResourcePolicy (AccessDeniedException)", expect = true,
      event = call {
        eventID = "c3e4d2f1-2b65-4ed3-b053-072a3482c02a",
        eventSource = "bedrock.amazonaws.com", eventName = "DeleteResourcePolicy",
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("bedrock:DeleteResourcePolicy", CUSTOM_MODEL_ARN),
        requestParameters = { resourceArn = CUSTOM_MODEL_ARN },
      },
    },
    {
      name = "denied DeleteResourcePolicy (AccessDenied)", expect = true,
      event = call {
        eventID = "9a45434c-2f19-4146-b17b-8146139b1799",
        eventSource = "bedrock.amazonaws.com", eventName = "DeleteResourcePolicy",
        errorCode = "AccessDenied",
        errorMessage = scp_denied("bedrock:DeleteResourcePolicy"),
        requestParameters = { resourceArn = CUSTOM_MODEL_ARN },
      },
    },

    -- The same calls, successful: no errorCode, no alert.
    {
      name = "successful PutResourcePolicy", expect = false,
      event = call {
        eventID = "cd855293-1a1e-45a6-863d-186183e0f4de",
        eventSource = "bedrock.amazonaws.com", eventName = "PutResourcePolicy",
        requestParameters = { resourceArn = CUSTOM_MODEL_ARN, resourcePolicy = CROSS_ACCOUNT_POLICY },
        responseElements = { resourceArn = CUSTOM_MODEL_ARN },
      },
    },
    {
      name = "successful DeleteResourcePolicy", expect = false,
      event = call {
        eventID = "7288411e-1903-460c-b254-0a8a23e22739",
        eventSource = "bedrock.amazonaws.com", eventName = "DeleteResourcePolicy",
        requestParameters = { resourceArn = CUSTOM_MODEL_ARN },
      },
    },

    -- Failed for another reason than a denial.
    {
      name = "PutResourcePolicy rejected with ValidationException", expect = false,
      event = call {
        eventID = "2be931e2-e433-47b4-b235-a53204c151d1",
        eventSource = "bedrock.amazonaws.com", eventName = "PutResourcePolicy",
        errorCode = "ValidationException",
        errorMessage = "The resource policy is not a valid JSON document.",
        requestParameters = { resourceArn = CUSTOM_MODEL_ARN, resourcePolicy = '{"Version":"2012-10-17","Statement":[' },
      },
    },
    {
      name = "DeleteResourcePolicy throttled (ThrottlingException)", expect = false,
      event = call {
        eventID = "de43c74f-0dfb-4d13-94a4-6a71983beabb",
        eventSource = "bedrock.amazonaws.com", eventName = "DeleteResourcePolicy",
        errorCode = "ThrottlingException",
        errorMessage = "Rate exceeded",
        requestParameters = { resourceArn = CUSTOM_MODEL_ARN },
      },
    },

    -- Denied, but not a Bedrock resource-policy change.
    {
      name = "denied InvokeModel (AccessDeniedException)", expect = false,
      event = call {
        eventID = "bd4a8b40-357c-4bfb-9a1a-27fef415c6df",
        eventSource = "bedrock.amazonaws.com", eventName = "InvokeModel",
        readOnly = true,
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("bedrock:InvokeModel",
          "arn:aws:bedrock:" .. REGION .. "::foundation-model/" .. MODEL_ID),
        requestParameters = { modelId = MODEL_ID },
        tlsDetails = {
          tlsVersion = "TLSv1.3",
          cipherSuite = "TLS_AES_128_GCM_SHA256",
          clientProvidedHostHeader = "bedrock-runtime." .. REGION .. ".amazonaws.com",
        },
      },
    },
    {
      name = "denied PutResourcePolicy on secretsmanager.amazonaws.com (AccessDeniedException)", expect = false,
      event = call {
        eventID = "b936a15a-ecb7-423f-97ec-1656a9ac343d",
        eventSource = "secretsmanager.amazonaws.com", eventName = "PutResourcePolicy",
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("secretsmanager:PutResourcePolicy",
          "arn:aws:secretsmanager:" .. REGION .. ":494659789341:secret:prod/db-credentials-Xy12Ab"),
        requestParameters = {
          secretId = "arn:aws:secretsmanager:" .. REGION .. ":494659789341:secret:prod/db-credentials-Xy12Ab",
          resourcePolicy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
            .. '"Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}',
          blockPublicPolicy = true,
        },
        tlsDetails = {
          tlsVersion = "TLSv1.3",
          cipherSuite = "TLS_AES_128_GCM_SHA256",
          clientProvidedHostHeader = "secretsmanager." .. REGION .. ".amazonaws.com",
        },
      },
    },
    {
      name = "denied PutFoundationModelEntitlement (the model-access rule's action)", expect = false,
      event = call {
        eventID = "02c56574-f84d-4887-a672-a78b99862f14",
        eventSource = "bedrock.amazonaws.com", eventName = "PutFoundationModelEntitlement",
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("bedrock:PutFoundationModelEntitlement", "*"),
        requestParameters = { modelId = MODEL_ID },
      },
    },
  },
}
