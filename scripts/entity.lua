-- entity.lua: the actor and target entities of a raw CloudTrail record, as the entity script of
-- Elastic's aws.cloudtrail pipeline finds them (tests/fixtures/elastic-cloudtrail-pipeline/
-- ingest_pipeline/default.yml, the script tagged script_append_related_entity_31dc3369, which
-- runs when the event carries the tag `actor_target_mapping`). normalize.lua writes the fields.
--
--   local entity = require "entity"
--   local m = entity.map(rec)   -- nil: the script would not run, or would fail (see below)
--   entity.mapped(rec)          -- the same, kept for the last record asked about
--   m.related        related.entity: every identifier the record names (sorted, no duplicates)
--   m.target         target.entity.id: what the call acted on, or nil
--   m.user_target, m.host_target, m.service_target, m.generic_target
--                    user.target.entity.id, host.target.entity.id, service.target.entity.id,
--                    entity.target.id: m.target split by what each identifier looks like
--   m.host_target_id host.target.id: the bare EC2 instance ids of m.host_target
--   m.actor          actor.entity.id (one value), and m.actor_field the field that holds it
--                    too: user.entity.id (m.actor_id: the role's ARN for an assumed role),
--                    service.entity.id, host.entity.id or entity.id
--   entity.FIELDS    those field names -> the key of m that holds their value
--
-- How the script reads the record, kept here:
--   - It runs after the pipeline's first clean-up: null, "", "-", "none" and objects or arrays
--     left empty are gone, so they count as absent.
--   - Its sets are Java TreeSets of strings: lists come out sorted by String.compareTo (UTF-16
--     code units) and without duplicates.
--   - addValues (a list of values into a set) stops at the first value not added (absent, or
--     already there): `addedAll && addValue(...)` skips the rest. Kept, since it shows: a
--     security group rule whose groupId is already in related.entity adds nothing more.
--   - A value that is not a string (a number, an object) where it adds strings makes the script
--     fail in Elasticsearch (a ClassCastException): the event is then indexed with error.message
--     and none of these fields. We set none of them either (and no error.message: trailhound
--     never fails a record). DeleteNetworkAclEntry's ruleNumber, the one number it converts
--     itself, is the exception.
--   - A path into the record walks objects only; a path that meets an array is absent.
-- A few cases where the Painless would fail on a shape CloudTrail does not write (an element of
-- an items list that is not an object, say) are read as absent here instead.

local cjson = require "cjson"

local M = {}

local NULL = cjson.null
local type, next, rawget, select = type, next, rawget, select
local find, sub = string.find, string.sub
local sort = table.sort

local function set(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

---------------------------------------------------------------------------------------------
-- Classification tables (the script's params)
---------------------------------------------------------------------------------------------

-- The resource type of an ARN: its sixth ':' part, up to a '/' ("user" in
-- arn:aws:iam::111122223333:user/alice, "function" in arn:aws:lambda:...:function:name).
M.USER_RESOURCE_TYPES = set { "user", "role", "assumed-role", "federated-user", "instance-profile", "mfa",
  "serialNumber" }
M.HOST_RESOURCE_TYPES = set { "instance" }
M.SERVICE_RESOURCE_TYPES = set {
  "stack", "stack-set", "trail", "configuration-recorder", "file-system", "mount-target", "rule", "detector",
  "key", "function", "log-group", "log-stream", "alarm", "db", "cluster", "global-cluster", "trust-anchor",
  "resolver-query-log-config", "secret", "parameter", "document", "session", "webacl", "rulegroup", "ipset",
  "topic", "model", "loadbalancer", "table", "group", "policy", "security-group", "network-interface", "vpc",
  "subnet", "network-acl", "dhcp-options",
}
-- Identifiers that are not ARNs, by prefix.
M.HOST_ID_PREFIXES = { "i-" }
M.SERVICE_ID_PREFIXES = { "sg-", "sgr-", "eni-", "vpc-", "subnet-", "acl-", "rtb-", "igw-", "nat-", "vpce-", "tgw-",
  "pcx-" }
-- userIdentity.type values whose actor is a user.
M.USER_IDENTITY_TYPES = set { "IAMUser", "Root", "AssumedRole" }
-- An actor's ARN resource types (when its identity type did not decide).
M.ACTOR_USER_RESOURCE_TYPES = set { "user", "role", "assumed-role", "federated-user" }
M.ACTOR_HOST_RESOURCE_TYPES = set { "instance" }

M.FIELDS = {
  ["related.entity"] = "related",
  ["target.entity.id"] = "target",
  ["user.target.entity.id"] = "user_target",
  ["host.target.entity.id"] = "host_target",
  ["host.target.id"] = "host_target_id",
  ["service.target.entity.id"] = "service_target",
  ["entity.target.id"] = "generic_target",
  ["actor.entity.id"] = "actor",
  ["user.entity.id"] = "user.entity.id",
  ["service.entity.id"] = "service.entity.id",
  ["host.entity.id"] = "host.entity.id",
  ["entity.id"] = "entity.id",
}

---------------------------------------------------------------------------------------------
-- Reading the record as the script sees it
---------------------------------------------------------------------------------------------

local DROPPED = { [""] = true, ["-"] = true, ["none"] = true }

-- Whether v survives the pipeline's first clean-up.
local function present(v)
  local tv = type(v)
  if tv == "string" then return not DROPPED[v] end
  if tv == "number" or tv == "boolean" then return true end
  if tv ~= "table" then return false end
  for _, x in next, v do
    if present(x) then return true end
  end
  return false
end

local function is_array(t) return rawget(t, 1) ~= nil end

-- The value at a path of keys (a list), through objects only; nil when absent.
local function at(v, path)
  for i = 1, #path do
    if type(v) ~= "table" or rawget(v, 1) ~= nil then return nil end
    v = v[path[i]]
    if v == nil then return nil end
  end
  if type(v) == "string" then
    if DROPPED[v] then return nil end
    return v
  end
  if v == NULL or not present(v) then return nil end
  return v
end

-- "requestParameters.groupId" -> { "requestParameters", "groupId" }, once per path.
local paths = {}
local function path_of(dotted)
  local p = paths[dotted]
  if p == nil then
    p = {}
    for part in dotted:gmatch("[^.]+") do p[#p + 1] = part end
    paths[dotted] = p
  end
  return p
end

local function field(rec, dotted) return at(rec, path_of(dotted)) end

-- A key of an object (an element of a list), as after the clean-up; nil when absent.
local function key(t, k)
  if type(t) ~= "table" or is_array(t) then return nil end
  local v = t[k]
  if v == NULL or not present(v) then return nil end
  return v
end

-- The list at a path ($(path, []).stream()): its elements that survive the clean-up. A value
-- there that is not a list makes the script fail (st.failed).
local function list(st, rec, dotted)
  local v = field(rec, dotted)
  if v == nil then return {} end
  if type(v) ~= "table" or not is_array(v) then
    st.failed = true
    return {}
  end
  local out = {}
  for i = 1, #v do
    if present(v[i]) and v[i] ~= NULL then out[#out + 1] = v[i] end
  end
  return out
end

---------------------------------------------------------------------------------------------
-- The sets
---------------------------------------------------------------------------------------------

-- addValue: true when v was added.
local function add(st, s, v)
  if v == nil or v == NULL or not present(v) then return false end
  if type(v) ~= "string" then
    st.failed = true  -- cast to String
    return false
  end
  if s[v] then return false end
  s[v] = true
  return true
end

-- addValues over the arguments: stops at the first value not added.
local function add_values(st, s, ...)
  for i = 1, select("#", ...) do
    if not add(st, s, (select(i, ...))) then return false end
  end
  return true
end

local function add_list(st, s, values)
  for i = 1, #values do
    if not add(st, s, values[i]) then return false end
  end
  return true
end

-- addField / addFields.
local function add_fields(st, s, rec, names)
  for i = 1, #names do add(st, s, field(rec, names[i])) end
end

-- Every resource's ARN ($("json.resources", []).stream().forEach(f -> addValue(s, f.ARN))).
local function add_resource_arns(st, s, rec)
  for _, r in ipairs(list(st, rec, "resources")) do add(st, s, key(r, "ARN")) end
end

-- String.compareTo: UTF-16 code unit order. It differs from byte order only when a string holds
-- a character above U+FFFF and another one in U+E000..U+FFFF (UTF-8 lead bytes 0xEE to 0xF4).
local function utf16_units(s)
  local out = {}
  for _, cp in utf8.codes(s) do
    if cp >= 0x10000 then
      cp = cp - 0x10000
      out[#out + 1] = 0xD800 | (cp >> 10)
      out[#out + 1] = 0xDC00 | (cp & 0x3FF)
    else
      out[#out + 1] = cp
    end
  end
  return out
end

local function java_less(a, b)
  if not (find(a, "[\238-\244]") and find(b, "[\238-\244]")) or not utf8.len(a) or not utf8.len(b) then
    return a < b
  end
  local x, y = utf16_units(a), utf16_units(b)
  for i = 1, math.min(#x, #y) do
    if x[i] ~= y[i] then return x[i] < y[i] end
  end
  return #x < #y
end

-- A set as a sorted list; nil when empty.
local function sorted(s)
  local out, wide = {}, false
  for v in next, s do
    out[#out + 1] = v
    wide = wide or find(v, "[\238-\244]") ~= nil
  end
  if out[1] == nil then return nil end
  if wide then sort(out, java_less) else sort(out) end
  return out
end

---------------------------------------------------------------------------------------------
-- Per service: what a call names (related) and what it acts on (target)
---------------------------------------------------------------------------------------------

-- Each entry of SERVICES, by eventSource: related = fields of every call; targets = event name ->
-- fields; more = function(st, rec, name) for the rest, in the script's order (related, the
-- lists, then the targets). The fields are paths in the raw record.
local SERVICES = {}

SERVICES["cloudformation.amazonaws.com"] = {
  targets = { CreateStackSet = { "responseElements.stackSetId" }, CreateStack = { "responseElements.stackId" } },
}

SERVICES["cloudtrail.amazonaws.com"] = {
  related = { "requestParameters.name", "requestParameters.s3BucketName", "responseElements.cloudWatchLogsLogGroupArn",
    "responseElements.cloudWatchLogsRoleArn", "responseElements.kmsKeyId", "responseElements.snsTopicARN",
    "responseElements.trailARN", "responseElements.name" },
  targets = { DeleteTrail = { "requestParameters.name" }, StopLogging = { "requestParameters.name" },
    DescribeTrails = { "recipientAccountId" } },
}

SERVICES["config.amazonaws.com"] = {
  related = { "requestParameters.configurationRecorderName" },
  targets = { StopConfigurationRecorder = { "requestParameters.configurationRecorderName" },
    StartConfigurationRecorder = { "requestParameters.configurationRecorderName" } },
}

SERVICES["ec2-instance-connect.amazonaws.com"] = {
  targets = { SendSSHPublicKey = { "requestParameters.instanceId" },
    SendSerialConsoleSSHPublicKey = { "requestParameters.instanceId" } },
}

local ACCOUNT = { "recipientAccountId" }  -- a call on the whole account (Describe*, List*)

SERVICES["ec2.amazonaws.com"] = {
  related = { "requestParameters.groupId", "requestParameters.groupName", "requestParameters.roleName",
    "requestParameters.subnetId", "requestParameters.volumeId", "requestParameters.networkInterfaceId",
    "requestParameters.vpcId", "requestParameters.snapshotId", "responseElements.groupId",
    "responseElements.reservationId", "responseElements.vpc.vpcId", "responseElements.vpc.dhcpOptionsId",
    "responseElements.snapshotId", "responseElements.volumeId" },
  more = function(st, rec, name)
    local related = st.related
    for _, i in ipairs(list(st, rec, "responseElements.securityGroupRuleSet.items")) do
      add_values(st, related, key(i, "groupId"), key(key(i, "referencedGroupInfo"), "groupId"),
        key(i, "securityGroupRuleId"))
    end
    for _, i in ipairs(list(st, rec, "responseElements.groupSet.items")) do add(st, related, key(i, "groupId")) end
    for _, i in ipairs(list(st, rec, "requestParameters.groupSet.items")) do add(st, related, key(i, "groupId")) end
    for _, i in ipairs(list(st, rec, "requestParameters.instancesSet.items")) do
      add(st, related, key(i, "instanceId"))
    end
    for _, inst in ipairs(list(st, rec, "responseElements.instancesSet.items")) do
      add_values(st, related, key(inst, "subnetId"), key(inst, "vpcId"), key(inst, "instanceId"),
        key(inst, "imageId"), key(key(inst, "iamInstanceProfile"), "arn"))
      local nets = key(key(inst, "networkInterfaceSet"), "items")
      if type(nets) == "table" then
        for _, net in ipairs(nets) do
          add_values(st, related, key(net, "networkInterfaceId"), key(net, "vpcId"), key(net, "subnetId"))
          local groups = key(key(net, "groupSet"), "items")
          if type(groups) == "table" then
            for _, g in ipairs(groups) do add(st, related, key(g, "groupId")) end
          end
        end
      end
    end
    for _, i in ipairs(list(st, rec, "requestParameters.revokedSecurityGroupRuleSet.items")) do
      add_values(st, related, key(i, "securityGroupRuleId"), key(i, "groupId"))
    end
    local target = st.target
    if name == "AuthorizeSecurityGroupIngress" or name == "AuthorizeSecurityGroupEgress" then
      add(st, target, field(rec, "requestParameters.groupId"))
      for _, i in ipairs(list(st, rec, "responseElements.securityGroupRuleSet.items")) do
        add(st, target, key(i, "securityGroupRuleId"))
      end
    elseif name == "DeleteNetworkAclEntry" then
      add(st, target, field(rec, "requestParameters.networkAclId"))
      local n = field(rec, "requestParameters.ruleNumber")
      if type(n) == "number" then n = tostring(math.tointeger(n) or n) end  -- String.valueOf
      add(st, target, n)
    end
  end,
  targets = {
    CreateTrafficMirrorFilter = {
      "responseElements.CreateTrafficMirrorFilterResponse.trafficMirrorFilter.trafficMirrorFilterId" },
    CreateTrafficMirrorFilterRule = {
      "responseElements.CreateTrafficMirrorFilterRuleResponse.trafficMirrorFilterRule.trafficMirrorFilterRuleId" },
    CreateTrafficMirrorSession = {
      "responseElements.CreateTrafficMirrorSessionResponse.trafficMirrorSession.trafficMirrorSessionId" },
    CreateTrafficMirrorTarget = {
      "responseElements.CreateTrafficMirrorTargetResponse.trafficMirrorTarget.trafficMirrorTargetId" },
    DeleteFlowLogs = { "requestParameters.DeleteFlowLogsRequest.FlowLogId.content" },
    DeleteNetworkAcl = { "requestParameters.networkAclId" },
    GetPasswordData = { "requestParameters.instanceId" },
    ModifyImageAttribute = { "requestParameters.imageId" },
    ModifySnapshotAttribute = { "requestParameters.snapshotId" },
    DescribeSecurityGroups = ACCOUNT, DescribeNetworkInterfaces = ACCOUNT, DescribeRegions = ACCOUNT,
    DescribeVpcs = ACCOUNT, DescribeNetworkAcls = ACCOUNT, DescribeVolumes = ACCOUNT,
  },
}

SERVICES["elasticfilesystem.amazonaws.com"] = {
  targets = { DeleteFileSystem = { "requestParameters.fileSystemId" },
    DeleteMountTarget = { "requestParameters.mountTargetId" } },
}

SERVICES["events.amazonaws.com"] = { targets = { DeleteRule = { "requestParameters.name" } } }

SERVICES["guardduty.amazonaws.com"] = {
  related = { "requestParameters.detectorId", "responseElements.detectorId" },
  targets = { CreateDetector = { "responseElements.detectorId" }, DeleteDetector = { "requestParameters.detectorId" } },
}

local ROLE_NAME = { "requestParameters.roleName" }
SERVICES["iam.amazonaws.com"] = {
  related = { "requestParameters.userName", "requestParameters.serialNumber", "requestParameters.accessKeyId",
    "requestParameters.policyArn", "requestParameters.roleName", "requestParameters.policyName",
    "responseElements.accessKey.userName", "responseElements.accessKey.accessKeyId", "responseElements.user.arn",
    "responseElements.user.userId", "responseElements.user.userName", "responseElements.userId",
    "responseElements.role.arn", "responseElements.serialNumber" },
  targets = {
    AttachGroupPolicy = { "requestParameters.groupName" },
    AttachRolePolicy = ROLE_NAME, ListAttachedRolePolicies = ROLE_NAME, UpdateAssumeRolePolicy = ROLE_NAME,
    AttachUserPolicy = { "requestParameters.policyArn", "requestParameters.userName" },
    CreateAccessKey = { "responseElements.accessKey.accessKeyId", "requestParameters.userName" },
    CreateUser = { "requestParameters.userName" }, DeactivateMFADevice = { "requestParameters.userName" },
    DeleteVirtualMFADevice = { "requestParameters.serialNumber" },
    GetPolicy = { "requestParameters.policyArn" },
    CreatePolicy = { "responseElements.policy.arn" },
    ListRoles = ACCOUNT, ListUsers = ACCOUNT,
  },
}

SERVICES["kms.amazonaws.com"] = {
  related = { "requestParameters.keyId", "responseElements.keyId", "responseElements.keyMetadata.arn",
    "responseElements.keyMetadata.keyId" },
  more = function(st, rec, name)
    if name == "DisableKey" or name == "ScheduleKeyDeletion" then add_resource_arns(st, st.target, rec) end
  end,
}

SERVICES["lambda.amazonaws.com"] = {
  related = { "requestParameters.functionName", "responseElements.functionArn", "responseElements.functionName",
    "responseElements.role" },
  more = function(st, rec, name)
    add_list(st, st.related, list(st, rec, "responseElements.vpcConfig.securityGroupIds"))
    add_list(st, st.related, list(st, rec, "responseElements.vpcConfig.subnetIds"))
    -- Lambda's event names carry an API version ("AddPermission20150331v2"): contains, not equals.
    if find(name, "AddPermission", 1, true) then
      add(st, st.target, field(rec, "requestParameters.functionName"))
    elseif find(name, "ListFunctions", 1, true) then
      add(st, st.target, field(rec, "recipientAccountId"))
    end
  end,
}

SERVICES["logs.amazonaws.com"] = {
  targets = { DeleteLogGroup = { "requestParameters.logGroupName" },
    DeleteLogStream = { "requestParameters.logStreamName" } },
}

SERVICES["monitoring.amazonaws.com"] = {
  more = function(st, rec, name)
    if name == "DeleteAlarms" then
      for _, alarm in ipairs(list(st, rec, "requestParameters.alarmNames")) do add(st, st.target, alarm) end
    end
  end,
}

local DB_INSTANCE_ARN = { "responseElements.dBInstanceArn" }
local DB_CLUSTER_ARN = { "responseElements.dBClusterArn" }
SERVICES["rds.amazonaws.com"] = {
  related = { "requestParameters.dBInstanceIdentifier", "requestParameters.dBInstanceArn",
    "responseElements.dBInstanceIdentifier", "responseElements.dbInstanceArn", "responseElements.dBSubnetGroup.vpcId",
    "responseElements.vpcSecurityGroups.vpcSecurityGroupId" },
  more = function(st, rec)
    for _, s in ipairs(list(st, rec, "responseElements.dBSubnetGroup.subnets")) do
      add(st, st.related, key(s, "subnetIdentifier"))
    end
    for _, g in ipairs(list(st, rec, "responseElements.vpcSecurityGroups")) do
      add(st, st.related, key(g, "vpcSecurityGroupId"))
    end
  end,
  targets = {
    DeleteDBCluster = DB_CLUSTER_ARN, ModifyDBCluster = DB_CLUSTER_ARN, StopDBCluster = DB_CLUSTER_ARN,
    DeleteDBInstance = DB_INSTANCE_ARN, ModifyDBInstance = DB_INSTANCE_ARN,
    RestoreDBInstanceFromDBSnapshot = DB_INSTANCE_ARN, RestoreDBInstanceFromS3 = DB_INSTANCE_ARN,
    StopDBInstance = DB_INSTANCE_ARN,
    DeleteGlobalCluster = { "responseElements.globalClusterArn" },
    ModifyDBClusterSnapshotAttribute = { "responseElements.dBClusterSnapshotIdentifier" },
    ModifyDBSnapshotAttribute = { "responseElements.dBSnapshotIdentifier" },
    DescribeDBInstances = ACCOUNT,
  },
}

SERVICES["rolesanywhere.amazonaws.com"] = {
  targets = { CreateTrustAnchor = { "responseElements.trustAnchor.trustAnchorArn" } },
}

SERVICES["route53resolver.amazonaws.com"] = {
  targets = { DeleteResolverQueryLogConfig = { "responseElements.resolverQueryLogConfig.arn" } },
}

-- S3 calls whose targets are the record's resources (the bucket and the object).
local S3_RESOURCE_TARGETS = set { "CopyObject", "PutBucketLogging", "PutBucketVersioning", "PutObject",
  "GetBucketPolicy", "ListObjects", "HeadObject", "GetObject", "DeleteObject", "DeleteBucket",
  "PutBucketReplication" }
SERVICES["s3.amazonaws.com"] = {
  related = { "requestParameters.bucketName" },
  more = function(st, rec, name)
    if S3_RESOURCE_TARGETS[name] then add_resource_arns(st, st.target, rec) end
  end,
  targets = {
    PutBucketReplication = { "requestParameters.ReplicationConfiguration.Rule.Destination.Bucket" },
    ListBuckets = ACCOUNT,
  },
}

SERVICES["secretsmanager.amazonaws.com"] = {
  more = function(st, rec, name)
    if name == "BatchGetSecretValue" then
      for _, id in ipairs(list(st, rec, "requestParameters.secretIdList")) do add(st, st.target, id) end
    end
  end,
  targets = { GetSecretValue = { "requestParameters.secretId" } },
}

SERVICES["signin.amazonaws.com"] = { targets = { ConsoleLogin = ACCOUNT } }

local SSM_RESOURCE_TARGETS = set { "GetParameter", "GetParameters", "CreateControlChannel", "OpenControlChannel" }
SERVICES["ssm.amazonaws.com"] = {
  more = function(st, rec, name)
    if SSM_RESOURCE_TARGETS[name] then
      add_resource_arns(st, st.target, rec)
    elseif name == "SendCommand" then
      -- The instances, else the values of every target ({ key = "InstanceIds", values = [...] });
      -- "*" alone (every instance) is the account.
      local ids = list(st, rec, "requestParameters.instanceIds")
      if ids[1] == nil then
        for _, t in ipairs(list(st, rec, "requestParameters.targets")) do
          local values = key(t, "values")
          if type(values) ~= "table" or not is_array(values) then
            st.failed = true  -- target.values.stream() on null
          else
            for _, v in ipairs(values) do
              if present(v) then ids[#ids + 1] = v end
            end
          end
        end
      end
      if #ids == 1 and ids[1] == "*" then ids = { field(rec, "recipientAccountId") } end
      add_list(st, st.target, ids)
    end
  end,
  targets = {
    StartSession = { "requestParameters.target" }, CreateDocument = { "requestParameters.name" },
    TerminateSession = { "requestParameters.sessionId" }, OpenDataChannel = { "requestParameters.sessionId" },
    ListInstanceAssociations = ACCOUNT,
  },
}

SERVICES["sts.amazonaws.com"] = {
  related = { "requestParameters.roleArn", "sourceIdentity", "additionalEventData.MFAIdentifier",
    "responseElements.assumedRoleUser.arn", "requestParameters.roleSessionName", "responseElements.accessKeyId" },
  more = function(st, rec, name)
    if name == "AssumeRole" then
      -- The caller: the service, the role behind an assumed-role session, or the ARN.
      local utype = field(rec, "userIdentity.type")
      if utype == "AWSService" then
        st.actor = field(rec, "userIdentity.invokedBy")
      elseif utype == "AssumedRole" then
        st.actor = field(rec, "userIdentity.sessionContext.sessionIssuer.arn")
      else
        st.actor = field(rec, "userIdentity.arn")
      end
      add(st, st.target, field(rec, "requestParameters.roleArn"))
    elseif name == "GetCallerIdentity" then
      add(st, st.target, field(rec, "recipientAccountId"))
      st.actor = field(rec, "userIdentity.arn")
    end
  end,
}

SERVICES["wafv2.amazonaws.com"] = {
  related = { "requestParameters.id", "responseElements.summary" },
  targets = { DeleteRuleGroup = { "requestParameters.id" }, DeleteWebACL = { "requestParameters.id" } },
}

SERVICES["sns.amazonaws.com"] = {
  targets = { CreateTopic = { "responseElements.topicArn" }, Subscribe = { "requestParameters.topicArn" },
    Publish = { "requestParameters.topicArn" } },
}

SERVICES["bedrock.amazonaws.com"] = { targets = { Converse = { "requestParameters.modelId" } } }
SERVICES["elasticloadbalancing.amazonaws.com"] = { targets = { DescribeLoadBalancers = ACCOUNT } }
SERVICES["dynamodb.amazonaws.com"] = { targets = { ListTables = ACCOUNT } }

M.SERVICES = SERVICES

---------------------------------------------------------------------------------------------
-- Classification
---------------------------------------------------------------------------------------------

-- String.splitOnToken(":"): every part, empty ones included.
local function split_colon(s)
  local parts, i = {}, 1
  while true do
    local j = find(s, ":", i, true)
    if not j then
      parts[#parts + 1] = sub(s, i)
      return parts
    end
    parts[#parts + 1] = sub(s, i, j - 1)
    i = j + 1
  end
end

-- An ARN's parts and its resource type, or nil when it has fewer than six parts.
local function arn_parts(s)
  local parts = split_colon(s)
  if #parts < 6 then return nil end
  local resource = parts[6]
  local slash = find(resource, "/", 1, true)
  if slash and slash > 1 then resource = sub(resource, 1, slash - 1) end
  return parts, resource
end

local function starts(s, prefix) return sub(s, 1, #prefix) == prefix end

local function starts_any(s, prefixes)
  for i = 1, #prefixes do
    if starts(s, prefixes[i]) then return true end
  end
  return false
end

-- A service-linked role (AWSServiceRoleFor..., or under /aws-service-role/) is a service.
local function service_linked(s)
  return find(s, "/AWSServiceRoleFor", 1, true) ~= nil or find(s, "/aws-service-role/", 1, true) ~= nil
end

-- Java String.length(): UTF-16 code units (bytes, for text that is not UTF-8).
local function java_length(s)
  if not find(s, "[\128-\255]") or not utf8.len(s) then return #s end
  local n = 0
  for _, cp in utf8.codes(s) do n = n + (cp >= 0x10000 and 2 or 1) end
  return n
end

-- What a target is: "user", "host", "service" or "generic" (an account id, a bare name, ...).
function M.classify_target(t)
  if starts(t, "arn:") then
    local parts, resource = arn_parts(t)
    if not parts then return "generic" end
    if service_linked(t) then return "service" end
    if M.USER_RESOURCE_TYPES[resource] then return "user" end
    if M.HOST_RESOURCE_TYPES[resource] then return "host" end
    if M.SERVICE_RESOURCE_TYPES[resource] then return "service" end
    if parts[3] == "s3" then return "service" end  -- buckets and objects
    return "generic"
  end
  if starts(t, "AKIA") and java_length(t) == 20 then return "user" end  -- a long-term access key id
  if starts_any(t, M.HOST_ID_PREFIXES) then return "host" end
  if starts_any(t, M.SERVICE_ID_PREFIXES) then return "service" end
  return "generic"
end

-- The EC2 instance id of a host target (i-..., or the id in an ec2 instance ARN), or nil.
local function instance_id(t)
  if starts(t, "arn:") then
    local parts = split_colon(t)
    if #parts < 6 or parts[3] ~= "ec2" or not starts(parts[6], "instance/") then return nil end
    t = sub(parts[6], 10)
  end
  if starts(t, "i-") then return t end
  return nil
end

-- Java's toString of an actor that is not a string (it is never one in CloudTrail).
local function text_of(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return tostring(math.tointeger(v) or v) end
  return tostring(v)
end

-- The field that holds the actor besides actor.entity.id, and its value there.
function M.classify_actor(actor, utype, issuer_arn)
  local s = text_of(actor)
  local user_id = actor
  if utype == "AssumedRole" and issuer_arn ~= nil then user_id = issuer_arn end  -- every session, one role
  if utype == "AWSService" or service_linked(s) then return "service.entity.id", actor end
  if utype ~= nil and M.USER_IDENTITY_TYPES[utype] then return "user.entity.id", user_id end
  if starts(s, "arn:") then
    local parts, resource = arn_parts(s)
    if parts then
      if M.ACTOR_USER_RESOURCE_TYPES[resource] then return "user.entity.id", user_id end
      if M.ACTOR_HOST_RESOURCE_TYPES[resource] then return "host.entity.id", actor end
    end
  end
  if starts(s, "i-") then return "host.entity.id", actor end
  return "entity.id", actor
end

---------------------------------------------------------------------------------------------
-- The mapping
---------------------------------------------------------------------------------------------

local IDENTITY_FIELDS = { "userIdentity.accessKeyId", "userIdentity.arn", "userIdentity.userName",
  "userIdentity.sessionContext.sessionIssuer.arn", "userIdentity.sessionContext.sessionIssuer.userName" }

-- See the head of this file. Cost: a few table reads and a sort of a handful of strings; run
-- only for an event whose entity fields are asked for (a rule, or the alert's whole document).
function M.map(rec)
  if type(rec) ~= "table" then return nil end
  local name, source = field(rec, "eventName"), field(rec, "eventSource")
  if name == nil then return nil end  -- the script's condition
  if type(name) ~= "string" or (source ~= nil and type(source) ~= "string") then return nil end -- cast fails
  local st = { related = {}, target = {}, failed = false }

  st.actor = field(rec, "userIdentity.arn")
  if st.actor == nil then st.actor = field(rec, "userIdentity.onBehalfOf.userId") end
  add_fields(st, st.related, rec, IDENTITY_FIELDS)
  local utype = field(rec, "userIdentity.type")
  if utype == "IdentityCenterUser" then add(st, st.related, field(rec, "userIdentity.onBehalfOf.identityStoreArn")) end
  add_resource_arns(st, st.related, rec)

  local service = source and SERVICES[source]
  if service then
    if service.related then add_fields(st, st.related, rec, service.related) end
    if service.more then service.more(st, rec, name) end
    local targets = service.targets and service.targets[name]
    if targets then add_fields(st, st.target, rec, targets) end
  end
  if st.failed then return nil end

  local m = {}
  m.target = sorted(st.target)
  if m.target then
    local by = { user = {}, host = {}, service = {}, generic = {} }
    for _, t in ipairs(m.target) do
      local class = M.classify_target(t)
      by[class][#by[class] + 1] = t  -- m.target is sorted, so each class stays sorted
    end
    m.user_target = by.user[1] and by.user
    m.host_target = by.host[1] and by.host
    m.service_target = by.service[1] and by.service
    m.generic_target = by.generic[1] and by.generic
    if m.host_target then
      local ids = {}
      for _, t in ipairs(m.host_target) do
        local id = instance_id(t)
        if id then ids[id] = true end
      end
      m.host_target_id = sorted(ids)
    end
    for _, t in ipairs(m.target) do st.related[t] = true end
  end
  if st.actor ~= nil then
    m.actor = { st.actor }
    local f, v = M.classify_actor(st.actor, utype, field(rec, "userIdentity.sessionContext.sessionIssuer.arn"))
    m.actor_field = f
    m[f] = { v }
  end
  m.related = sorted(st.related)
  return m
end

-- M.map's answer, kept for the last record asked about: rules ask for several of its fields,
-- then the whole document for all of them, event by event. (The record is held, so no other
-- table can take its place; records are not changed.) Read-only: the document shares it.
local last_rec, last_map
function M.mapped(rec)
  if rec ~= last_rec then last_rec, last_map = rec, M.map(rec) or false end
  return last_map or nil
end

-- One field's value (a list), or nil.
function M.get(rec, name)
  local k = M.FIELDS[name]
  if k == nil then return nil end
  local m = M.mapped(rec)
  return m and m[k]
end

return M
