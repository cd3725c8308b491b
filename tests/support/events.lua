-- support/events.lua: CloudTrail records for specs, made from the real
-- Stratus Red Team Bedrock events in tests/fixtures (see its NOTICE).

local cjson = require "cjson"
local th = require "support.th"

local M = {}

M.MODEL_ACCESS = "AWS Bedrock Unauthorized Foundation Model Access Attempt"
M.POLICY = "AWS Bedrock Unauthorized Resource-Based Policy Modification Attempt"

local stratus
-- The 15 real Bedrock events, decoded.
function M.bedrock()
  if not stratus then
    stratus = cjson.decode(th.read("tests/fixtures/stratus-red-team/aws.impact.bedrock-invoke-model.json"))
  end
  return stratus
end

-- A real event of eventName name, decoded (a fresh copy each call).
function M.real(name)
  for _, e in ipairs(M.bedrock()) do
    if e.eventName == name then return cjson.decode(cjson.encode(e)) end
  end
  error("no Stratus Bedrock event named " .. name)
end

-- A denied variant: the real PutFoundationModelEntitlement call with another
-- action, an error code, and a new event id.
function M.denied(action, code, id, source)
  local e = M.real("PutFoundationModelEntitlement")
  e.eventName = action
  e.eventSource = source or "bedrock.amazonaws.com"
  e.errorCode = code
  e.errorMessage = "User: " .. e.userIdentity.arn .. " is not authorized to perform: bedrock:" .. action
  e.responseElements = nil
  e.eventID = id
  return e
end

-- One JSON line.
function M.line(e) return cjson.encode(e) .. "\n" end

return M
