-- check.lua: `trailhound check`, a rule against Elastic's rule schema.
--
--   local diags, stats = check.files(paths, opts)
--   diags[i] = { file, line, col, level = "error"|"warning", msg }, in file and line order
--   stats    = { rules = n checked, errors = n, warnings = n }
--
-- A rule is first compiled by the loader (its errors are errors here), then
-- held against the schema Elastic's detection rules follow, so that a rule
-- written here imports into Kibana and back:
--   - required fields and their types, non-empty name and description, known keys
--     (an unknown key is a warning with the nearest known one);
--   - severity one of low/medium/high/critical, risk_score an integer 0..100 in
--     that severity's band;
--   - rule_id a UUID, unique across the rules checked together;
--   - threat: MITRE ATT&CK tactic TA0000, technique T0000, subtechnique
--     T0000.000, each with a name and the reference URL of its id;
--   - the fields the query and investigation_fields name: one that no source
--     produces is a warning, with the nearest field that exists;
--   - embedded tests: an event table and a boolean expect each.
-- A Sigma rule (language = "sigma") is held to the same metadata schema; its fields are
-- raw CloudTrail paths, not ECS names, and are checked as such (M.sigma): the Sigma
-- rule's keys, level and status, logsource, that its id, title and level agree with
-- rule_id, name and severity, the compiler's warnings, field names a CloudTrail record
-- does not have, and values that name a field where |fieldref was meant.

local loader = require "loader"
local normalize = require "normalize"
local ruleset = require "ruleset"
local sigma = require "sigma"
local stateful = require "stateful"
local srcpos = require "srcpos"

local M = {}

-- Severity bands of risk_score, from Kibana's rule schema (elastic/kibana,
-- x-pack/solutions/security/plugins/security_solution/common/api/detection_engine/
-- model/rule_schema/common_attributes.schema.yaml, RiskScore): "0 - 21 represents
-- low severity, 22 - 47 medium, 48 - 73 high, 74 - 100 critical". Elastic's own
-- rules use 21, 47, 73 and 99.
M.BANDS = {
  { severity = "low", min = 0, max = 21, default = 21 },
  { severity = "medium", min = 22, max = 47, default = 47 },
  { severity = "high", min = 48, max = 73, default = 73 },
  { severity = "critical", min = 74, max = 100, default = 99 },
}

-- Patterns of elastic/detection-rules, detection_rules/schemas/definitions.py:
-- UUID_PATTERN (lowercase hex), TACTIC_URL, TECHNIQUE_URL, SUBTECHNIQUE_URL.
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local TACTIC_ID, TECHNIQUE_ID, SUBTECHNIQUE_ID = "^TA%d%d%d%d$", "^T%d%d%d%d$", "^T%d%d%d%d%.%d%d%d$"
local ATTACK = "https://attack.mitre.org/"

-- Keys of Elastic's query rules that trailhound keeps but does not use: no
-- warning for them, so rules move both ways.
local ELASTIC_KEYS = {
  "building_block_type", "enabled", "exceptions_list", "filters", "meta", "output_index",
  "related_integrations", "required_fields", "risk_score_mapping", "rule_name_override", "saved_id",
  "setup", "severity_mapping", "throttle", "timeline_id", "timeline_title", "to", "actions",
  "data_view_id", "namespace",
  -- the keys of Elastic's other rule types (new_terms, threshold, eql, machine_learning,
  -- threat_match), which `trailhound import` carries over: their type is the error, not their keys
  "new_terms", "threshold", "event_category_override", "tiebreaker_field", "timestamp_field",
  "anomaly_threshold", "machine_learning_job_id", "threat_query", "threat_index", "threat_mapping",
  "threat_filters", "threat_indicator_path", "threat_language", "concurrent_searches", "items_per_search",
}

-- Fields Elastic's aws.cloudtrail integration (or the agent shipping it) writes
-- and the normalizer leaves out (see the head of normalize.lua): only ECS input
-- carries them.
local ELASTIC_ONLY = {
  "agent", "aws.cloudtrail.digest", "data_stream.namespace", "data_stream.type", "error.message",
  "event.created", "event.original", "file.path", "host", "input.type",
  "log", "message", "related.hash", "tags",
}

-- What the configuration provides (M.files' opts.geoip): { asn = true, city = true }.
local configured = {}
local CONFIG_HELP = {
  ["geoip.asn"] = "a MaxMind ASN database (--geoip-asn FILE, or geoip = { asn = FILE } in the configuration)",
  ["geoip.city"] = "a MaxMind City database (--geoip-city FILE, or geoip = { city = FILE } in the configuration)",
}

-- Raw CloudTrail names a rule author may reach for, and the ECS field the
-- normalizer puts them in.
local RAW_NAMES = {
  eventName = "event.action", eventSource = "event.provider", eventID = "event.id",
  eventTime = "@timestamp", errorCode = "aws.cloudtrail.error_code",
  errorMessage = "aws.cloudtrail.error_message", awsRegion = "cloud.region",
  sourceIPAddress = "source.address", userAgent = "user_agent.original",
  recipientAccountId = "cloud.account.id", ["userIdentity.arn"] = "aws.cloudtrail.user_identity.arn",
  ["userIdentity.type"] = "aws.cloudtrail.user_identity.type",
  ["userIdentity.accessKeyId"] = "aws.cloudtrail.user_identity.access_key_id",
  ["userIdentity.userName"] = "user.name", readOnly = "aws.cloudtrail.read_only",
  eventType = "aws.cloudtrail.event_type", requestParameters = "aws.cloudtrail.flattened.request_parameters",
  responseElements = "aws.cloudtrail.flattened.response_elements",
}

------------------------------------------------------------------------------
-- Names: known fields, suggestions
------------------------------------------------------------------------------

local known, candidates = {}, {}
for _, f in ipairs(normalize.FIELDS) do
  known[f] = true
  candidates[#candidates + 1] = f
  -- object fields: every prefix of a known field exists as an object
  local p = f
  while true do
    p = p:match("^(.*)%.[^.]+$")
    if not p or known[p] then break end
    known[p] = "object"
  end
end
for _, f in ipairs(normalize.OPEN_FIELDS) do candidates[#candidates + 1] = f end

-- Edit distance of two strings: insertions, deletions, substitutions and
-- swaps of two neighbours (optimal string alignment), over bytes.
local function distance(a, b)
  if a == b then return 0 end
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 1, #b do d[0][j] = j end
  for i = 1, #a do
    local ai = a:byte(i)
    for j = 1, #b do
      local bj = b:byte(j)
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ai == bj and 0 or 1))
      if i > 1 and j > 1 and ai == b:byte(j - 1) and a:byte(i - 1) == bj then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end
M.distance = distance

-- The nearest of list to name, when close enough to be a slip of the fingers:
-- one edit in a short name, two in a longer one, three past 12 characters.
function M.nearest(name, list)
  local best, bd = nil, math.huge
  local limit = #name <= 4 and 1 or #name < 12 and 2 or 3
  for _, c in ipairs(list) do
    local d = distance(name:lower(), c:lower())
    if d < bd then best, bd = c, d end
  end
  if bd <= limit then return best end
  return nil
end

local function has_prefix(name, list)
  for _, p in ipairs(list) do
    if name == p or name:sub(1, #p + 1) == p .. "." then return p end
  end
  return nil
end

-- nil when some source produces the field; else the warning text. negated: the field is read
-- under `not`, where a field that is never there makes the clause always true.
function M.field_problem(name, negated)
  local problem = M.field_problem_of(name)
  if problem and negated then
    problem = problem .. "; under 'not', the clause is then true for every CloudTrail event"
  end
  return problem
end

function M.field_problem_of(name)
  for prefix, key in pairs(normalize.CONFIGURED or {}) do
    if (name == prefix or name:sub(1, #prefix + 1) == prefix .. ".") and not configured[key:match("%.(.*)$")] then
      if known[name] then
        return string.format("%s: produced only when the configuration names %s; without one no source "
          .. "produces it", name, CONFIG_HELP[key] or key)
      end
    end
  end
  if known[name] or has_prefix(name, normalize.OPEN_FIELDS) then return nil end
  if RAW_NAMES[name] then
    return string.format("%s: no source produces this field (it is the raw CloudTrail name); did you mean %s?",
      name, RAW_NAMES[name])
  end
  if has_prefix(name, ELASTIC_ONLY) then
    return string.format("%s: the CloudTrail normalizer does not produce this field (Elastic's integration "
      .. "adds it); only ECS input can match it", name)
  end
  local near = M.nearest(name, candidates)
  if near then return string.format("%s: no source produces this field; did you mean %s?", name, near) end
  return string.format("%s: no source produces this field", name)
end

------------------------------------------------------------------------------
-- One rule
------------------------------------------------------------------------------

local SEVERITY_BAND = {}
for _, b in ipairs(M.BANDS) do SEVERITY_BAND[b.severity] = b end

local function band_of(score)
  for _, b in ipairs(M.BANDS) do
    if score >= b.min and score <= b.max then return b end
  end
  return nil
end

local function is_list_of_strings(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for k, x in pairs(v) do
    n = n + 1
    if math.type(k) ~= "integer" or type(x) ~= "string" then return false end
  end
  return n == #v
end

-- Line of `key =` in the rule's table (the first after its `return {`);
-- line of a string written in the rule's table (quoted), else nil.
M.key_line, M.value_line = srcpos.key_line, srcpos.value_line

function M.rule(rule, src, add)
  local meta = rule.meta
  local function key_line(key) return M.key_line(src, key) end
  local function value_line(value, key) return M.value_line(src, value) or key_line(key) end
  local function err(line, fmt, ...) add(line, nil, "error", string.format(fmt, ...)) end
  local function warn(line, fmt, ...) add(line, nil, "warning", string.format(fmt, ...)) end

  -- Keys
  local schema = {}
  for k in pairs(loader.REQUIRED) do schema[#schema + 1] = k end
  for k in pairs(loader.OPTIONAL) do schema[#schema + 1] = k end
  for _, k in ipairs(ELASTIC_KEYS) do schema[#schema + 1] = k end
  table.sort(schema)
  local allowed = {}
  for _, k in ipairs(schema) do allowed[k] = true end
  local keys = {}
  for k in pairs(meta) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not allowed[k] then
      local near = M.nearest(k, schema)
      warn(key_line(k), "unknown field '%s'%s", k, near and ("; did you mean '" .. near .. "'?") or
        " (not in Elastic's rule schema)")
    end
  end

  if meta.name == "" then err(key_line("name"), "name must not be empty") end
  if meta.description:find("^%s*$") then err(key_line("description"), "description must not be empty") end

  -- rule_id
  if not meta.rule_id:find(UUID) then
    err(value_line(meta.rule_id, "rule_id"),
      "rule_id '%s' is not a UUID (8-4-4-4-12 lowercase hex digits, as Elastic's detection-rules require)",
      meta.rule_id)
  end

  -- severity and risk_score
  local score = meta.risk_score
  if math.type(score) ~= "integer" and score ~= math.floor(score) then
    err(key_line("risk_score"), "risk_score must be an integer, not %s", tostring(score))
  else
    local want, got = SEVERITY_BAND[meta.severity], band_of(score)
    if want and got and want ~= got then
      err(key_line("risk_score"), "risk_score %d is in %s's range (%d-%d), but severity is %s (%d-%d; Elastic uses %d)",
        score, got.severity, got.min, got.max, meta.severity, want.min, want.max, want.default)
    end
  end

  -- Other scalars
  if meta.version ~= nil and (math.type(meta.version) ~= "integer" or meta.version < 1) then
    err(key_line("version"), "version must be an integer of 1 or more, not %s", tostring(meta.version))
  end
  if meta.max_signals ~= nil and (math.type(meta.max_signals) ~= "integer" or meta.max_signals < 1) then
    err(key_line("max_signals"), "max_signals must be an integer of 1 or more, not %s", tostring(meta.max_signals))
  end
  if meta.type ~= nil and meta.type ~= "query" and meta.type ~= "eql" and not stateful.TYPES[meta.type] then
    err(key_line("type"), "type '%s' is not supported here (query, eql, new_terms and threshold rules run)", meta.type)
  end
  if meta.from ~= nil and not meta.from:find("^now%-%d+[smhd]$") then
    err(key_line("from"), "from must be date math like now-6m, not '%s'", meta.from)
  end
  for _, k in ipairs({ "tags", "references", "author", "false_positives", "index" }) do
    if meta[k] ~= nil and not is_list_of_strings(meta[k]) then
      err(key_line(k), "%s must be a list of strings", k)
    end
  end

  -- threat
  if meta.threat ~= nil then M.threat(meta.threat, err, warn, key_line, value_line) end

  -- Fields: the query's, then the investigation fields.
  if rule.query or rule.eql then
    local seen = {}
    local function walk(node, negated)
      if node.children then
        for _, child in ipairs(node.children) do walk(child, negated or node.op == "not") end
      elseif node.path and not seen[node.path] then   -- a value with no field names none
        seen[node.path] = true
        local problem = M.field_problem(node.path, negated)
        if problem then add(node.line, node.col, "warning", problem) end
      end
    end
    walk((rule.query or rule.eql).ast, false)
  end
  local inv = meta.investigation_fields
  if inv ~= nil then
    local list = inv.field_names or inv   -- Elastic's TOML nests them under field_names
    if not is_list_of_strings(list) then
      err(key_line("investigation_fields"), "investigation_fields must be a list of field names")
    else
      for _, f in ipairs(list) do
        local problem = M.field_problem(f)
        if problem then warn(value_line(f, "investigation_fields"), "%s", problem) end
      end
    end
  end

  if rule.sigma then M.sigma(rule, src, add) end

  -- Tests
  M.tests(meta.tests, src, err, warn, key_line)
end

------------------------------------------------------------------------------
-- Sigma rules
------------------------------------------------------------------------------

-- The keys of a Sigma rule (sigma-rules-specification.md, "File Structure"), and those
-- Sigma tools add (pySigma, the SigmaHQ repository).
local SIGMA_KEYS = {
  "author", "date", "description", "detection", "falsepositives", "fields", "id", "level", "license",
  "logsource", "modified", "name", "references", "related", "scope", "status", "tags", "taxonomy", "title",
}
local SIGMA_STATUS = { stable = true, test = true, experimental = true, deprecated = "deprecated",
  unsupported = "unsupported" }

-- The fields of a CloudTrail record (AWS CloudTrail User Guide, "CloudTrail record contents
-- for management, data, and network activity events", and Insights events), and those of its
-- userIdentity element.
M.CLOUDTRAIL_FIELDS = {
  "additionalEventData", "addendum", "apiVersion", "awsRegion", "edgeDeviceDetails", "errorCode", "errorMessage",
  "eventCategory", "eventID", "eventName", "eventSource", "eventTime", "eventType", "eventVersion", "insightDetails",
  "managementEvent", "readOnly", "recipientAccountId", "requestID", "requestParameters", "resources",
  "responseElements", "serviceEventDetails", "sessionCredentialFromConsole", "sharedEventID", "sourceIPAddress",
  "tlsDetails", "userAgent", "userIdentity", "vpcEndpointAccountId", "vpcEndpointId",
}
M.USER_IDENTITY_FIELDS = {
  "accessKeyId", "accountId", "arn", "credentialId", "identityProvider", "inScopeOf", "invokedBy", "onBehalfOf",
  "principalId", "sessionContext", "type", "userName",
}
local CT_FIELDS, UI_FIELDS = {}, {}
for _, f in ipairs(M.CLOUDTRAIL_FIELDS) do CT_FIELDS[f] = true end
for _, f in ipairs(M.USER_IDENTITY_FIELDS) do UI_FIELDS[f] = true end

-- nil when a CloudTrail record may have the raw path; else the warning text.
function M.raw_field_problem(path)
  local top, rest = path:match("^([^.]+)%.?(.*)$")
  if not top then return nil end
  if not CT_FIELDS[top] then
    local near = M.nearest(top, M.CLOUDTRAIL_FIELDS)
    return string.format("%s: a CloudTrail record has no field %s%s", path, top,
      near and ("; did you mean " .. near .. "?") or "")
  end
  if top == "userIdentity" and rest ~= "" then
    local sub = rest:match("^[^.]+")
    if not UI_FIELDS[sub] then
      local near = M.nearest(sub, M.USER_IDENTITY_FIELDS)
      return string.format("%s: a CloudTrail userIdentity has no field %s%s", path, sub,
        near and ("; did you mean userIdentity." .. near .. "?") or "")
    end
  end
  return nil
end

-- Items of a compiled detection, each once: { ident, item }.
local function sigma_items(d)
  local out = {}
  local function walk(node, ident)
    if node.match then
      out[#out + 1] = { ident = ident, item = node }
    else
      for _, it in ipairs(node.items) do walk(it, ident) end
    end
  end
  for _, name in ipairs(d.identifiers) do walk(d.defs[name], name) end
  return out
end

function M.sigma(rule, src, add)
  local meta, sg, d = rule.meta, rule.meta.sigma, rule.sigma
  local function at(where) return sigma.locate(src, where) end
  local function key_at(key) return sigma.locate_key(src, key) end
  local function err(line, fmt, ...) add(line, nil, "error", string.format(fmt, ...)) end
  local function warn(line, fmt, ...) add(line, nil, "warning", string.format(fmt, ...)) end

  -- The Sigma rule's own keys
  local keys = {}
  for k in pairs(sg) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local is_key = {}
  for _, k in ipairs(SIGMA_KEYS) do is_key[k] = true end
  for _, k in ipairs(keys) do
    if not is_key[k] then
      local near = M.nearest(k, SIGMA_KEYS)
      warn(key_at(k), "sigma.%s is no key of a Sigma rule%s", k, near and ("; did you mean " .. near .. "?") or "")
    end
  end
  for _, k in ipairs({ "title", "id", "description", "status", "level", "author", "date", "modified", "license" }) do
    if sg[k] ~= nil and type(sg[k]) ~= "string" then err(key_at(k), "sigma.%s must be text", k) end
  end
  for _, k in ipairs({ "tags", "references", "falsepositives", "fields" }) do
    if sg[k] ~= nil and not is_list_of_strings(sg[k]) then err(key_at(k), "sigma.%s must be a list of texts", k) end
  end
  if sg.level ~= nil and not sigma.LEVELS[sg.level] then
    err(key_at("level"), "sigma.level '%s' is not one of informational, low, medium, high, critical",
      tostring(sg.level))
  end
  if type(sg.status) == "string" then
    if not SIGMA_STATUS[sg.status] then
      warn(key_at("status"), "sigma.status '%s' is not one of stable, test, experimental, deprecated, unsupported",
        sg.status)
    elseif SIGMA_STATUS[sg.status] ~= true then
      warn(key_at("status"), "sigma.status is %s: SigmaHQ no longer maintains this rule", sg.status)
    end
  end
  local ls = sg.logsource
  if type(ls) ~= "table" then
    warn(key_at("sigma"), "sigma.logsource is missing: a Sigma rule says which logs it reads (product: aws, " ..
      "service: cloudtrail)")
  elseif (ls.product ~= nil and ls.product ~= "aws") or (ls.service ~= nil and ls.service ~= "cloudtrail") then
    warn(key_at("logsource"), "sigma.logsource is %s/%s: trailhound reads AWS CloudTrail, whose records may not " ..
      "have this rule's fields", tostring(ls.product), tostring(ls.service))
  end

  -- Agreement with the rule's own metadata
  if type(sg.id) == "string" and sg.id ~= meta.rule_id then
    warn(M.key_line(src, "rule_id"), "rule_id %s is not the Sigma rule's id %s", meta.rule_id, sg.id)
  end
  if type(sg.title) == "string" and sg.title ~= meta.name then
    warn(M.key_line(src, "name"), "name '%s' is not the Sigma rule's title '%s'", meta.name, sg.title)
  end
  local lv = sigma.LEVELS[sg.level]
  if lv and lv.severity ~= meta.severity then
    warn(M.key_line(src, "severity"), "severity %s is not the Sigma rule's level %s (%s)", meta.severity, sg.level,
      lv.severity)
  end

  -- The detection: the compiler's warnings, fields, values that name a field
  for _, w in ipairs(d.warnings) do warn(at(w), "%s", w.msg) end
  local seen = {}
  for _, x in ipairs(sigma_items(d)) do
    local it = x.item
    local where = { ident = x.ident, key = it.key }
    if it.field and not seen[it.field] then
      seen[it.field] = true
      local problem = M.raw_field_problem(it.field)
      if problem then warn(at(where), "%s", problem) end
    end
    local is_ref = false
    for _, m in ipairs(it.mods) do if m == "fieldref" then is_ref = true end end
    for _, v in ipairs(it.raws) do
      if is_ref then
        local problem = type(v) == "string" and M.raw_field_problem(v)
        if problem then warn(at(where), "|fieldref %s", problem) end
      elseif type(v) == "string" and v:find("^[%a_][%w_]*%.[%w_.]+$") and CT_FIELDS[v:match("^[^.]+")] then
        warn(at(where), "%s: the value '%s' is the name of a field, compared as text; to compare with that " ..
          "field's value, use |fieldref", it.key, v)
      end
    end
  end
end

function M.threat(threat, err, warn, key_line, value_line)
  local tl = key_line("threat")
  if type(threat) ~= "table" or (next(threat) ~= nil and threat[1] == nil) then
    err(tl, "threat must be a list of { framework, tactic, technique } tables")
    return
  end
  local function entry(kind, e, id_pattern, url, form)
    if type(e) ~= "table" then
      err(tl, "a %s must be a table with id, name and reference", kind)
      return nil
    end
    local line = type(e.id) == "string" and value_line(e.id, "threat") or tl
    if type(e.id) ~= "string" or not e.id:find(id_pattern) then
      err(line, "%s id '%s' is not of the form %s", kind, tostring(e.id), form)
      return nil
    end
    if type(e.name) ~= "string" or e.name == "" then err(line, "%s %s has no name", kind, e.id) end
    if e.reference ~= url then
      err(type(e.reference) == "string" and value_line(e.reference, "threat") or line,
        "%s %s: reference must be %s, not %s", kind, e.id, url,
        e.reference == nil and "missing" or ("'" .. tostring(e.reference) .. "'"))
    end
    return e.id
  end
  for _, t in ipairs(threat) do
    if type(t) ~= "table" then
      err(tl, "threat must be a list of { framework, tactic, technique } tables")
    elseif t.framework ~= "MITRE ATT&CK" then
      warn(t.framework and value_line(t.framework, "threat") or tl,
        "framework '%s': only MITRE ATT&CK mappings are checked", tostring(t.framework))
    else
      local tac = t.tactic
      local id = type(tac) == "table" and tac.id
      entry("tactic", tac, TACTIC_ID, type(id) == "string" and (ATTACK .. "tactics/" .. id .. "/") or nil, "TA0000")
      if t.technique ~= nil and type(t.technique) ~= "table" then
        err(tl, "technique must be a list of techniques")
      end
      for _, tech in ipairs(type(t.technique) == "table" and t.technique or {}) do
        local tid = type(tech) == "table" and tech.id
        tid = entry("technique", tech, TECHNIQUE_ID,
          type(tid) == "string" and (ATTACK .. "techniques/" .. tid .. "/") or nil, "T0000")
        for _, sub in ipairs(tid and type(tech.subtechnique) == "table" and tech.subtechnique or {}) do
          local sid = type(sub) == "table" and sub.id
          local parent, num = (type(sid) == "string" and sid or ""):match("^(T%d%d%d%d)%.(%d%d%d)$")
          local sidv = entry("subtechnique", sub, SUBTECHNIQUE_ID,
            parent and (ATTACK .. "techniques/" .. parent .. "/" .. num .. "/") or nil, "T0000.000")
          if sidv and parent ~= tid then
            err(value_line(sidv, "threat"), "subtechnique %s is not a part of technique %s", sidv, tid)
          end
        end
      end
    end
  end
end

-- Line of a test: the line of its name in the file, else of `tests =`.
M.test_line = srcpos.test_line

function M.tests(tests, src, err, warn, key_line)
  if tests == nil or (type(tests) == "table" and #tests == 0) then
    warn(key_line("tests"), "no tests: add one event the rule must match and one it must not")
    return
  end
  local pos, neg = 0, 0
  for i, t in ipairs(tests) do
    local line = M.test_line(src, t)
    local label = type(t) == "table" and type(t.name) == "string" and ("test '" .. t.name .. "'") or ("test " .. i)
    if type(t) ~= "table" then
      err(line, "%s must be a table { name, expect, event }", label)
    else
      if t.name ~= nil and type(t.name) ~= "string" then err(line, "%s: name must be a string", label) end
      if t.events ~= nil then  -- several events in order, expect: the alerts they make
        if type(t.events) ~= "table" or #t.events == 0 then err(line, "%s: events must be a list of events", label) end
        if math.type(t.expect) ~= "integer" or t.expect < 0 then
          err(line, "%s has events: its expect must be the number of alerts they make", label)
        elseif t.expect > 0 then
          pos = pos + 1
        else
          neg = neg + 1
        end
      else
        if type(t.expect) ~= "boolean" then
          err(line, "%s has no expect = true or false (the verdict the rule must give)", label)
        elseif t.expect then
          pos = pos + 1
        else
          neg = neg + 1
        end
        if type(t.event) ~= "table" then err(line, "%s has no event table", label) end
      end
    end
  end
  if pos == 0 then warn(key_line("tests"), "no test expects a match (expect = true)") end
  if neg == 0 then warn(key_line("tests"), "no test expects no match (expect = false)") end
end

------------------------------------------------------------------------------
-- Files
------------------------------------------------------------------------------

-- What the configuration provides, for field_problem: geoip = { asn = true, city = true }.
function M.configure(geoip) configured = geoip or {} end

function M.files(paths, opts)
  M.configure(opts and opts.geoip)
  opts = opts or {}
  local diags, stats = {}, { rules = 0, errors = 0, warnings = 0 }
  local ids = {}
  for _, path in ipairs(paths) do
    stats.rules = stats.rules + 1
    local function add(line, col, level, msg)
      diags[#diags + 1] = { file = path, line = line, col = col, level = level, msg = msg, n = #diags }
    end
    local src = ruleset.source(path)
    local rule, d = ruleset.load(path, opts.log)
    if not rule then
      add(d.line, d.col, "error", d.msg)
    else
      M.rule(rule, src, add)
      local first = ids[rule.id]
      if first then
        local line = ruleset.line_of(src, rule.id) or 1
        add(line, nil, "error", string.format("rule_id %s is already used by %s", rule.id, first))
      else
        ids[rule.id] = path
      end
    end
  end
  for _, d in ipairs(diags) do
    if d.level == "error" then stats.errors = stats.errors + 1 else stats.warnings = stats.warnings + 1 end
  end
  table.sort(diags, function(a, b)
    if a.file ~= b.file then return a.n < b.n end
    if (a.line or 0) ~= (b.line or 0) then return (a.line or 0) < (b.line or 0) end
    return a.n < b.n
  end)
  return diags, stats
end

return M
