-- AWS Bedrock Unauthorized Foundation Model Access Attempt
--
-- Carried over from Elastic's detection-rules, rules/integrations/aws/
-- persistence_bedrock_foundation_model_access_denied_attempt.toml (Elastic License v2; a copy is in
-- tests/fixtures/seeds/). Every piece of metadata, the investigation guide (note) and the KQL query
-- are word for word; tests/rules_spec.lua compares them with the TOML.
--
-- The embedded tests are raw CloudTrail records. They are based on the real Stratus Red Team
-- Bedrock events in tests/fixtures/stratus-red-team/aws.impact.bedrock-invoke-model.json (all
-- successful); the denied ones add errorCode/errorMessage as AWS writes them and drop
-- responseElements, as CloudTrail does for a failed call.

-- Who, where and when, shared by every test: the identity, network and TLS fields of the real
-- Stratus PutFoundationModelEntitlement event. Each test spells out what the query reads:
-- eventSource, eventName and errorCode (errorCode/errorMessage also make event.outcome "failure").
local ROLE_ARN = "arn:aws:sts::494659789341:assumed-role/test-role/cli"
local REGION = "megov-northeast-1r"
local MODEL_ID = "anthropic.claude-3-sonnet-20240229-v1:0"

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
  rule_id = "3d2e8c90-5be7-4a57-9de4-58be75af933f",
  name = "AWS Bedrock Unauthorized Foundation Model Access Attempt",
  description = [[
Identifies failed, access-denied attempts to enable account-level access to an Amazon Bedrock foundation model, either
by granting a foundation-model entitlement, submitting a use case for model access, or creating a foundation-model
agreement (accepting the EULA). These account-level "model access" actions unlock a foundation model so that it can
subsequently be invoked. A principal that is repeatedly denied when attempting these actions may be a compromised or
under-privileged identity probing for the ability to unlock expensive models (LLMjacking) or to establish a durable
ability to invoke models. Unlike the companion rule that detects successful model-access grants, this rule surfaces the
attempt itself, which is a high-signal indicator of credential boundary-testing even though access was not granted.
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
    "Use Case: Threat Detection",
    "Tactic: Persistence",
    "Resources: Investigation Guide",
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
    "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_PutFoundationModelEntitlement.html",
    "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_PutUseCaseForModelAccess.html",
    "https://docs.aws.amazon.com/bedrock/latest/APIReference/API_CreateFoundationModelAgreement.html",
  },
  false_positives = {
    [[
    Access-denied errors can result from benign permission gaps: a newly created role or user whose IAM policy has not
    yet been provisioned, automation pipelines running ahead of permission grants, or ML teams experimenting in
    non-production accounts during onboarding. Verify that the principal, source IP, and user agent are expected before
    escalating. Recurring denials from known onboarding or provisioning workflows can be exempted for specific users or
    roles.
    ]],
  },
  note = [[
## Triage and analysis

> **Disclaimer**:
> This investigation guide was created using generative AI technology and has been reviewed to improve its accuracy and relevance. While every effort has been made to ensure its quality, we recommend validating the content and adapting it to suit your specific environment and operational needs.

### Investigating AWS Bedrock Unauthorized Foundation Model Access Attempt

Amazon Bedrock exposes account-level "model access" controls that determine which foundation models a principal is allowed to invoke. Granting an entitlement (`PutFoundationModelEntitlement`), submitting a use case for model access (`PutUseCaseForModelAccess`), or creating a foundation-model agreement (`CreateFoundationModelAgreement`, which accepts the model EULA) all unlock a model for subsequent `InvokeModel`/`InvokeModelWithResponseStream` calls.

This rule detects Bedrock control-plane calls that enable model access at the account level but were denied (`AccessDenied` / unauthorized). A denial indicates an identity attempting an action it is not permitted to perform, which is a strong signal of boundary-testing by a compromised or under-privileged principal even though no model access was granted.

### Possible investigation steps

- Identify the principal by reviewing `aws.cloudtrail.user_identity.arn` and `aws.cloudtrail.user_identity.access_key_id`, and determine whether the identity has any legitimate reason to manage Bedrock model access. A denial for an identity that should never touch these APIs is more suspicious than one from an admin with a transient permission gap.
- Inspect `aws.cloudtrail.error_code` and `aws.cloudtrail.error_message` to confirm the denial reason, and review `event.action` to determine which model-access action was attempted.
- Verify the `source.ip` and `user_agent.original` of the request. An unexpected IP, geolocation, or automation user agent is suspicious.
- Confirm the `cloud.account.id` and `cloud.region` are expected for Bedrock usage in your environment.
- Correlate with recent activity from the same principal, such as new access key creation, IAM permission changes, or repeated denials across Bedrock/IAM APIs, which can indicate permission enumeration or escalation attempts.
- Determine whether the identity later succeeded on the same or related actions (e.g., after acquiring new permissions), and check for subsequent `InvokeModel`/`InvokeModelWithResponseStream` activity.

### False positive analysis

- Newly provisioned roles/users or infrastructure-as-code pipelines running before model-access permissions are applied may generate transient denials. Validate against change-management records and known provisioning workflows.
- ML teams exploring model adoption in sandbox accounts may hit denials; confirm the account and identity context.

### Response and remediation

- If the attempt is unexpected, treat the identity as potentially compromised: disable or rotate the credentials (`aws.cloudtrail.user_identity.access_key_id`) and review the actor's recent activity.
- Review all Bedrock and IAM activity from the same identity in the surrounding window for successful access grants, permission changes, or other persistence attempts.
- Review and constrain IAM permissions so that only approved principals can call Bedrock model-access APIs, and alert on both denied and successful calls.
- Implement preventative guardrails (SCPs, IAM conditions) to limit which principals and models can be enabled.
]],
  investigation_fields = {
    "@timestamp",
    "user.name",
    "user_agent.original",
    "source.ip",
    "aws.cloudtrail.user_identity.arn",
    "aws.cloudtrail.user_identity.access_key_id",
    "event.action",
    "event.outcome",
    "aws.cloudtrail.error_code",
    "cloud.account.id",
    "cloud.region",
    "aws.cloudtrail.request_parameters",
  },
  index = { "logs-aws.cloudtrail-*" },
  from = "now-6m",
  max_signals = 100,  -- the TOML omits max_signals: Elastic's default (100, as the published rule page shows)
  timestamp_override = "event.ingested",
  author = { "Elastic" },
  license = "Elastic License v2",
  type = "query",
  version = 1,  -- the TOML has no version: 1, as the published rule page shows
  metadata = {
    creation_date = "2026/06/04",
    updated_date = "2026/06/04",
    maturity = "production",
    integration = { "aws" },
  },

  language = "kuery",
  query = [[
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
]],

  tests = {
    -- Denied model-access actions: one alert each.
    {
      name = "denied PutFoundationModelEntitlement (AccessDeniedException)", expect = true,
      event = call {
        eventID = "7c919164-2a08-4221-b350-3e78a50c5b3e",
        eventSource = "bedrock.amazonaws.com", eventName = "PutFoundationModelEntitlement",
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("bedrock:PutFoundationModelEntitlement", "*"),
        requestParameters = { modelId = MODEL_ID },
      },
    },
    {
      name = "denied PutFoundationModelEntitlement (AccessDenied)", expect = true,
      event = call {
        eventID = "957121e5-6ec7-4107-950d-990f4f2b8cb6",
        eventSource = "bedrock.amazonaws.com", eventName = "PutFoundationModelEntitlement",
        errorCode = "AccessDenied",
        errorMessage = scp_denied("bedrock:PutFoundationModelEntitlement"),
        requestParameters = { modelId = MODEL_ID },
      },
    },
    {
      name = "denied PutUseCaseForModelAccess (AccessDeniedException)", expect = true,
      event = call {
        eventID = "96984457-2617-4efd-bc3b-fc4c7e9862fe",
        eventSource = "bedrock.amazonaws.com", eventName = "PutUseCaseForModelAccess",
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("bedrock:PutUseCaseForModelAccess", "*"),
        -- requestParameters is null in CloudTrail for this call (the use-case form is not logged)
      },
    },
    {
      name = "denied PutUseCaseForModelAccess (AccessDenied)", expect = true,
      event = call {
        eventID = "5921eca5-ed8f-4ff9-a589-e0bbb473853b",
        eventSource = "bedrock.amazonaws.com", eventName = "PutUseCaseForModelAccess",
        errorCode = "AccessDenied",
        errorMessage = scp_denied("bedrock:PutUseCaseForModelAccess"),
      },
    },
    {
      name = "denied CreateFoundationModelAgreement (AccessDeniedException)", expect = true,
      event = call {
        eventID = "413b5b3d-070d-4a7c-969b-225d50f67935",
        eventSource = "bedrock.amazonaws.com", eventName = "CreateFoundationModelAgreement",
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("bedrock:CreateFoundationModelAgreement", "*"),
        requestParameters = { modelId = MODEL_ID },
      },
    },
    {
      name = "denied CreateFoundationModelAgreement (AccessDenied)", expect = true,
      event = call {
        eventID = "208421b4-8db4-4a47-a34b-444161d2e2ef",
        eventSource = "bedrock.amazonaws.com", eventName = "CreateFoundationModelAgreement",
        errorCode = "AccessDenied",
        errorMessage = scp_denied("bedrock:CreateFoundationModelAgreement"),
        requestParameters = { modelId = MODEL_ID },
      },
    },

    -- The real Stratus Red Team calls, which succeeded: no errorCode, no alert.
    {
      name = "successful PutFoundationModelEntitlement (real Stratus event)", expect = false,
      event = call {
        eventID = "4031b2d2-5e47-4d71-9eda-4f22702c45f3",
        eventSource = "bedrock.amazonaws.com", eventName = "PutFoundationModelEntitlement",
        requestParameters = { modelId = MODEL_ID },
        responseElements = { status = "SUCCESS" },
      },
    },
    {
      name = "successful PutUseCaseForModelAccess (real Stratus event)", expect = false,
      event = call {
        eventID = "8452e2fb-1252-460b-8f58-d3f5333c2630",
        requestID = "94150f81-8f6e-45f2-80d8-7f229db388eb",
        eventTime = "2024-10-17T20:09:50Z",
        eventSource = "bedrock.amazonaws.com", eventName = "PutUseCaseForModelAccess",
      },
    },
    {
      name = "successful CreateFoundationModelAgreement (real Stratus event)", expect = false,
      event = call {
        eventID = "db9c43df-ae6f-4db3-8298-f5f779f74f4d",
        requestID = "b133ab25-9785-491b-98bc-a5160e7c1b88",
        eventTime = "2024-10-17T20:09:51Z",
        eventSource = "bedrock.amazonaws.com", eventName = "CreateFoundationModelAgreement",
        requestParameters = { modelId = MODEL_ID },
        responseElements = { modelId = "anthropic.claude-3-sonnet-20240229-v1" },
      },
    },

    -- Failed for another reason than a denial.
    {
      name = "PutFoundationModelEntitlement rejected with ValidationException", expect = false,
      event = call {
        eventID = "edbb5272-6d48-42d2-b0ef-c51f24126238",
        eventSource = "bedrock.amazonaws.com", eventName = "PutFoundationModelEntitlement",
        errorCode = "ValidationException",
        errorMessage = "The provided model identifier is invalid.",
        requestParameters = { modelId = "anthropic.claude-9-sonnet-v1:0" },
      },
    },
    {
      name = "PutUseCaseForModelAccess throttled (ThrottlingException)", expect = false,
      event = call {
        eventID = "01c41527-4ad1-4e12-b1b4-ea780a77f4c3",
        eventSource = "bedrock.amazonaws.com", eventName = "PutUseCaseForModelAccess",
        errorCode = "ThrottlingException",
        errorMessage = "Rate exceeded",
      },
    },

    -- Denied, but not a model-access action.
    {
      name = "denied InvokeModel (AccessDeniedException)", expect = false,
      event = call {
        eventID = "c95d6917-ef8e-4e77-bb29-dfe7b585b4a3",
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
        eventID = "4d6530a1-4bdf-4962-9570-a58c565c3168",
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
      name = "denied Bedrock PutResourcePolicy (the resource-policy rule's action)", expect = false,
      event = call {
        eventID = "d0a46dd9-378a-454e-8c00-8727051851db",
        eventSource = "bedrock.amazonaws.com", eventName = "PutResourcePolicy",
        errorCode = "AccessDeniedException",
        errorMessage = not_allowed("bedrock:PutResourcePolicy",
          "arn:aws:bedrock:" .. REGION .. ":494659789341:custom-model/amazon.titan-text-express-v1:0:8k/2xq7k9v4m1pz"),
        requestParameters = {
          resourceArn = "arn:aws:bedrock:" .. REGION .. ":494659789341:custom-model/amazon.titan-text-express-v1:0:8k/2xq7k9v4m1pz",
          resourcePolicy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
            .. '"Principal":{"AWS":"arn:aws:iam::210987654321:root"},"Action":"bedrock:InvokeModel","Resource":"*"}]}',
        },
      },
    },
  },
}
