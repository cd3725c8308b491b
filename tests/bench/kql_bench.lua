-- kql_bench.lua: how fast a compiled KQL query matches, by hand:
--   lua5.4 tests/bench/kql_bench.lua [iterations]
-- Times q.match for the Bedrock rule's query over a table-backed get, for an
-- event that matches and one that does not, and the memory it allocates.
package.path = "scripts/?.lua;" .. package.path
local kql = require "kql"
local format = string.format

local iterations = tonumber(arg[1]) or 5000000
    local q = assert(kql.compile([[
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
    )]]))
  local events = {
    hit = { ["data_stream.dataset"] = "aws.cloudtrail", ["event.provider"] = "bedrock.amazonaws.com",
            ["event.action"] = "PutUseCaseForModelAccess", ["event.outcome"] = "failure",
            ["aws.cloudtrail.error_code"] = "AccessDeniedException" },
    miss = { ["data_stream.dataset"] = "aws.cloudtrail", ["event.provider"] = "s3.amazonaws.com",
             ["event.action"] = "GetObject", ["event.outcome"] = "success" },
  }
  for _, name in ipairs({ "hit", "miss" }) do
    local e = events[name]
    local function get(k) return e[k] end
    local match, hits = q.match, 0
    collectgarbage("collect")
    local kb0 = collectgarbage("count")
    local t0 = os.clock()
    for _ = 1, iterations do
      if match(get) then hits = hits + 1 end
    end
    local dt = os.clock() - t0
    print(format("%-4s %d matches in %.2fs: %.1f million/s, %d hits, %.0f KB allocated",
                 name, iterations, dt, iterations / dt / 1e6, hits, collectgarbage("count") - kb0))
  end
