-- import.lua: `trailhound import`, the rules people already have as rule modules.
--
--   import.run(args, opts) -> results, summary
--     args: files and folders (a folder: its *.toml, *.yml and *.yaml files, by name)
--     opts: out (the folder to write modules to, ./rules by default), force (replace a module there)
--   import.elastic(doc, source) -> module text, the table it returns | nil, why[, label]
--     doc: an Elastic rule file as toml.parse reads it; source: its path. A
--     label ("type esql") when the rule is of a kind not imported; none when
--     the file is not a rule.
--   import.sigma(text, source) -> the same, for a Sigma rule's YAML
--   import.lines(results, summary, t) -> the report, one line per file, then the counts
--   import.evaluate(path, text) -> the table a module returns, run as the rule sandbox runs it
--   import.difference(a, b, path) -> nil when a and b hold the same values, else where they differ
--
-- Elastic's detection rules (TOML) become modules of this project's shape
-- (DESIGN.md, "A rule module", as rules/*.lua): every key of the file's
-- [rule] table word for word, investigation_fields as the list of its
-- field_names, the [metadata] table as `metadata`, the investigation guide
-- (`note`) and the query as written, a header saying where the rule came
-- from and under which license, and an empty `tests` list to fill in. ES|QL
-- and machine learning rules are not imported: no engine here could run them.
--
-- A Sigma rule (YAML) becomes the module agreed with the Sigma engine:
-- rule_id, name, description, severity and risk_score (from level), author,
-- references, tags, false_positives and license taken from it, language =
-- "sigma", and the rule's own keys word for word, as lyaml reads them and in
-- the order it writes them, under `sigma` (YAML's null as sigma.NULL: see
-- SIGMA_NULL). Each rule's author is kept, in the header too, as the DRL 1.1
-- asks. What the Sigma engine refuses (correlations, placeholders, old
-- aggregations, unknown modifiers, ...), and a log source other than
-- CloudTrail, is not imported, with the reason.
--
-- Each result: { source, status, out, why, label }. status is "imported" (the
-- module passes `trailhound check`), "not runnable" (written, but check finds
-- an error, such as a rule type whose engine is not there yet: label says
-- which, why what check says), "unsupported" (not written: why, label), or
-- "failed" (a file that cannot be read, parsed or written: why). The command
-- exits 1 only when one failed.

local toml = require "toml"
local luasource = require "luasource"
local loader = require "loader"
local ruleset = require "ruleset"
local sandbox = require "sandbox"
local stateful = require "stateful"

local M = {}

------------------------------------------------------------------------------
-- Writing a module
------------------------------------------------------------------------------

-- `  key = value,` at the top of a rule's table.
local function field(key, value, order, special)
  return "  " .. luasource.key(key) .. " = " .. luasource.value(value, {
    indent = "  ", path = key, order = order, special = special, room = #key + 4,
  }) .. ","
end

-- Keys listed first, in that order, then the rest sorted.
local function ordered(first, keys)
  local rank = {}
  for i, k in ipairs(first or {}) do rank[k] = i end
  table.sort(keys, function(a, b)
    local ra, rb = rank[a], rank[b]
    if ra and rb then return ra < rb end
    if ra or rb then return ra ~= nil end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- The path of a source file as the header names it: from its repository's
-- rules/ folder when it is in one (rules/integrations/aws/x.toml), else its
-- name. The same rule gives the same module wherever its checkout lives.
function M.source_name(path)
  local from = path:match("^.*/(rules/.*)$") or path:match("^(rules/.*)$")
  return from or path:match("([^/]+)$")
end

-- Comment lines, wrapped at 100 columns.
local function comment(text)
  local lines = {}
  for para in (text .. "\n"):gmatch("(.-)\n") do
    local line = "--"
    for word in para:gmatch("%S+") do
      if #line + 1 + #word > 100 and line ~= "--" then
        lines[#lines + 1] = line
        line = "--"
      end
      line = line .. " " .. word
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

local TESTS_TODO = [[
  -- TO FILL IN: the %s carries no events to test it with. Add raw CloudTrail records, as
  -- CloudTrail logs them, that this rule must match (expect = true) and must not (expect = false):
  --   { name = "what happened", expect = true, event = { eventSource = "...", eventName = "...", ... } },
  -- Until there is one of each, `trailhound check` warns "no tests"; `trailhound test` runs them.
  tests = {},]]

local STATEFUL_TODO = [[
  -- %s alerts depend on the events before: a test may hold several, in order, with
  -- expect = the number of alerts they make together (its state starting empty%s):
  --   { name = "what happened", expect = 1, events = { { eventSource = "...", ... }, { ... } } },]]

-- An EQL sequence's query: its alerts depend on the events before, as a stateful type's do.
local function is_sequence(mod)
  return mod.language == "eql" and type(mod.query) == "string" and mod.query:find("^%s*sequence[%s%[]") ~= nil
end

------------------------------------------------------------------------------
-- Elastic
------------------------------------------------------------------------------

-- The order of a module's keys: rules/*.lua's, then what else the rule has
-- (sorted), metadata, and the detection logic apart at the end.
local ELASTIC_TOP = {
  "rule_id", "name", "description", "severity", "risk_score", "tags", "threat", "references",
  "false_positives", "note", "setup", "investigation_fields", "index", "from", "interval", "max_signals",
  "timestamp_override", "author", "license", "type", "version",
}
local ELASTIC_LOGIC = {
  "language", "query", "new_terms", "threshold", "event_category_override", "tiebreaker_field",
  "timestamp_field", "machine_learning_job_id", "anomaly_threshold", "threat_query", "threat_index",
  "threat_mapping", "threat_indicator_path", "threat_language", "filters", "saved_id",
}
local ELASTIC_NESTED = {
  ["threat[]"] = { "framework", "tactic", "technique" },
  ["threat[].tactic"] = { "id", "name", "reference" },
  ["threat[].technique[]"] = { "id", "name", "reference", "subtechnique" },
  ["threat[].technique[].subtechnique[]"] = { "id", "name", "reference" },
  metadata = { "creation_date", "updated_date", "maturity", "integration" },
  new_terms = { "field", "value", "history_window_start" },
  ["new_terms.history_window_start[]"] = { "field", "value" },
  threshold = { "field", "value", "cardinality" },
  ["threshold.cardinality[]"] = { "field", "value" },
  alert_suppression = { "group_by", "duration", "missing_fields_strategy" },
  ["alert_suppression.duration"] = { "value", "unit" },
}
M.ELASTIC_TOP, M.ELASTIC_LOGIC = ELASTIC_TOP, ELASTIC_LOGIC

local function elastic_order(path, keys) return ordered(ELASTIC_NESTED[path], keys) end

-- Rule types no engine here can run, ever: not imported.
local NOT_IMPORTED = {
  esql = "ES|QL is a query language of its own, with no engine in trailhound",
  machine_learning = "it runs an Elastic machine learning job (anomaly detection), which trailhound does not have",
}

-- Keys the module itself uses: a rule that has them cannot be carried over.
local RESERVED = { metadata = true, tests = true, match = true }

-- Elastic's investigation_fields is { field_names = { ... } }; a module holds
-- the list (DESIGN.md, as rules/*.lua). Export nests it back. An empty list
-- stays nested: in Lua it could not be told from an empty table.
function M.flat_investigation_fields(v)
  if type(v) == "table" and type(v.field_names) == "table" and next(v, next(v)) == nil
      and #v.field_names > 0 then
    return v.field_names
  end
  return v
end

local function list_text(v)
  if type(v) == "table" then
    local parts = {}
    for _, x in ipairs(v) do parts[#parts + 1] = tostring(x) end
    return table.concat(parts, ", ")
  end
  return v ~= nil and tostring(v) or nil
end

function M.elastic(doc, source)
  local rule = doc.rule
  if type(rule) ~= "table" or toml.is_array(rule) then
    return nil, "it has no [rule] table: not an Elastic detection rule"
  end
  local ty = rule.type
  local why = NOT_IMPORTED[ty] or NOT_IMPORTED[rule.language]
  if why then
    local label = NOT_IMPORTED[ty] and ("type " .. ty) or ("language " .. rule.language)
    return nil, label .. ": " .. why, label
  end
  local mod = {}
  for k, v in pairs(rule) do
    if RESERVED[k] then
      return nil, "its [rule] table has a key '" .. k .. "', which a rule module uses for its own"
    end
    mod[k] = v
  end
  mod.investigation_fields = M.flat_investigation_fields(mod.investigation_fields)
  for k, v in pairs(doc) do  -- [metadata], and any other table of the file ([transform], ...)
    if k ~= "rule" then
      if mod[k] ~= nil and k ~= "metadata" then
        return nil, "its top-level '" .. k .. "' is also a key of its [rule] table"
      end
      mod[k] = v
    end
  end

  local authors = list_text(rule.author) or "(no author named)"
  local license = rule.license and tostring(rule.license) or "(no license named)"
  local from = "from " .. M.source_name(source)
  if authors:find("Elastic") then
    from = from .. ", one of Elastic's detection rules (https://github.com/elastic/detection-rules)"
  else
    from = from .. ", a rule in Elastic's detection rule format (TOML)"
  end
  local head = {
    "-- " .. tostring(rule.name or "(no name)"):gsub("\n", " "),
    "--",
    comment("Imported by `trailhound import` " .. from .. ". License: " .. license .. ". Author: " .. authors
      .. ".\nEvery key of its [rule] table is here word for word (investigation_fields as the list of its "
      .. "field_names), its [metadata] table as `metadata`, the investigation guide (note) and the query as "
      .. "written. `trailhound export` writes it back as TOML."),
    "-- The rule's text is kept as written, long lines and trailing spaces too:",
    "-- luacheck: no max line length, ignore 611 613",
    "",
    "return {",
  }

  local logic = {}
  for _, k in ipairs(ELASTIC_LOGIC) do logic[k] = true end
  local top, rest, tail = {}, {}, {}
  local listed = {}
  for _, k in ipairs(ELASTIC_TOP) do
    listed[k] = true
    if mod[k] ~= nil then top[#top + 1] = k end
  end
  for k in pairs(mod) do
    if not listed[k] and not logic[k] and k ~= "metadata" then rest[#rest + 1] = k end
  end
  table.sort(rest)
  for _, k in ipairs(ELASTIC_LOGIC) do
    if mod[k] ~= nil then tail[#tail + 1] = k end
  end
  local lines = head
  local function add(k) lines[#lines + 1] = field(k, mod[k], elastic_order) end
  for _, k in ipairs(top) do add(k) end
  for _, k in ipairs(rest) do add(k) end
  if mod.metadata ~= nil then add("metadata") end
  if #tail > 0 then lines[#lines + 1] = "" end
  for _, k in ipairs(tail) do add(k) end
  lines[#lines + 1] = ""
  local todo = TESTS_TODO:format("Elastic rule")
  if stateful.TYPES[mod.type] or is_sequence(mod) then  -- alerts depend on the events before: several
    local what, how = "A " .. tostring(mod.type) .. " rule's", ""
    if is_sequence(mod) then what, how = "An EQL sequence's", "; a sequence, once" end
    todo = todo:sub(1, -#"\n  tests = {}," - 1) .. "\n" .. STATEFUL_TODO:format(what, how) .. "\n  tests = {},"
  end
  lines[#lines + 1] = todo
  lines[#lines + 1] = "}"
  mod.tests = {}
  return table.concat(lines, "\n") .. "\n", mod
end

------------------------------------------------------------------------------
-- Sigma
------------------------------------------------------------------------------

-- YAML's null in a Sigma rule (`errorCode: null`: the field is absent, or
-- null) is the Sigma engine's sigma.NULL (lyaml's null is another value), which
-- a module gets with `local sigma = require "sigma"`, the one module the rule
-- sandbox lets a rule require. The module declares it only when the rule has a
-- null. All of it is here.
M.SIGMA_NULL = {
  name = "sigma.NULL",
  declaration = { 'local sigma = require "sigma"  -- sigma.NULL: YAML\'s null in the rule below' },
}
function M.sigma_null() return require("sigma").NULL end
function M.is_sigma_null(v) return v == require("sigma").NULL end

-- Why a Sigma rule cannot be imported (a label and the reason), or nil. The
-- Sigma engine (sigma.lua) says what in a detection it does not read
-- (placeholders, aggregations, timeframe, unknown modifiers); import adds
-- what is not one rule over CloudTrail.
local function sigma_unsupported(doc, null, detection)
  if doc.correlation ~= nil then
    return "sigma correlation", "a Sigma correlation rule (over several rules' matches), which trailhound does not run"
  end
  if doc.filter ~= nil and doc.detection == nil then
    return "sigma filter", "a Sigma filter (a meta rule applied to other rules), which trailhound does not run"
  end
  local ls = type(doc.logsource) == "table" and doc.logsource ~= null and doc.logsource or {}
  if ls.product ~= "aws" or ls.service ~= "cloudtrail" then
    local parts = {}
    for _, k in ipairs({ "product", "service", "category" }) do
      if ls[k] ~= nil then parts[#parts + 1] = k .. " " .. tostring(ls[k] == null and "null" or ls[k]) end
    end
    return "sigma logsource", string.format("logsource %s: trailhound reads AWS CloudTrail "
      .. "(product aws, service cloudtrail)", #parts > 0 and table.concat(parts, ", ") or "(none)")
  end
  if detection == nil then return nil end
  local sigma = require "sigma"
  local ok, err = sigma.compile(detection)
  if not ok then return "sigma detection refused", "the Sigma engine refuses it: " .. sigma.message(err) end
  return nil
end

-- A copy of v with lyaml's null as the module writes it.
local function nulls_as_written(v, null)
  if v == null then return M.sigma_null() end
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = nulls_as_written(x, null) end
  return c
end

local function has_null(v, null, seen)
  if v == null then return true end
  if type(v) ~= "table" or seen[v] then return false end
  seen[v] = true
  for _, x in pairs(v) do
    if has_null(x, null, seen) then return true end
  end
  return false
end

-- A Sigma field that may be one string or a list of them, as a list.
local function list_of(v, null)
  if v == nil or v == null then return {} end
  if type(v) ~= "table" then return { v } end
  local out = {}
  for _, x in ipairs(v) do
    if x ~= null then out[#out + 1] = x end
  end
  return out
end

local SIGMA_TOP = {
  "title", "id", "related", "name", "taxonomy", "status", "description", "license", "references", "author",
  "date", "modified", "tags", "logsource", "detection", "fields", "falsepositives", "level", "scope",
}

function M.sigma(text, source)
  local yamldoc = require "yamldoc"
  local docs, order = yamldoc.load(text)
  if not docs then
    local msg = order
    if msg:find("^%d+:%d+: ") then return nil, source .. ":" .. msg end
    return nil, source .. ": " .. msg
  end
  local null = yamldoc.lyaml().null
  if #docs ~= 1 then
    if #docs == 0 then return nil, "an empty YAML file, not a Sigma rule" end
    return nil, "a Sigma rule collection (" .. #docs .. " YAML documents, as `action: global` writes them)",
      "sigma collection"
  end
  local doc = docs[1]
  if type(doc) ~= "table" or doc == null or luasource.is_array(doc) then
    return nil, "not a Sigma rule: the YAML document is not a mapping"
  end
  local written = nulls_as_written(doc, null)  -- the sigma table as the module holds it
  local label, why = sigma_unsupported(doc, null, written.detection)
  if label then return nil, why, label end
  for _, k in ipairs({ "title", "id", "detection" }) do
    if doc[k] == nil or doc[k] == null then return nil, "not a Sigma rule: it has no " .. k end
  end
  if type(doc.id) ~= "string" or type(doc.title) ~= "string" then
    return nil, "not a Sigma rule: its id and title must be text"
  end

  -- severity and risk_score from level (none when the rule has no level the
  -- engine knows: the loader then says so, nothing is made up)
  local level = require("sigma").LEVELS[doc.level] or {}
  local mod = {
    rule_id = doc.id,
    name = doc.title,
    description = type(doc.description) == "string" and doc.description or doc.title,
    severity = level.severity,
    risk_score = level.risk_score,
    author = list_of(doc.author, null),
    references = list_of(doc.references, null),
    tags = list_of(doc.tags, null),
    false_positives = list_of(doc.falsepositives, null),
    license = type(doc.license) == "string" and doc.license or "DRL-1.1",
    language = "sigma",
  }
  local authors = #mod.author > 0 and table.concat(mod.author, ", ") or "(no author named)"
  local license
  if type(doc.license) == "string" then
    license = "License: " .. doc.license .. " (the rule's own license field)."
  else
    license = "License: Detection Rule License (DRL) 1.1, https://github.com/SigmaHQ/Detection-Rule-License, "
      .. "SigmaHQ's license: whoever shares or converts this rule must credit its author (kept here and in "
      .. "`author`) and name the license."
  end
  local lines = {
    "-- " .. doc.title:gsub("\n", " "),
    "--",
    comment("Imported by `trailhound import` from " .. M.source_name(source) .. ", a Sigma rule "
      .. "(https://github.com/SigmaHQ/sigma). Author: " .. authors .. ". " .. license
      .. "\nThe Sigma rule's own keys are under `sigma`, word for word as lyaml reads them; name, "
      .. "description, severity (from level: informational and low are low), risk_score, author, references, "
      .. "tags and false_positives above are taken from them."),
    "-- The rule's text is kept as written, long lines and trailing spaces too:",
    "-- luacheck: no max line length, ignore 611 613",
    "",
  }
  local uses_null = has_null(doc, null, {})
  if uses_null then
    for _, l in ipairs(M.SIGMA_NULL.declaration) do lines[#lines + 1] = l end
    lines[#lines + 1] = ""
  end
  lines[#lines + 1] = "return {"
  for _, k in ipairs({ "rule_id", "name", "description", "severity", "risk_score", "author", "references", "tags",
                       "false_positives", "license" }) do
    if mod[k] ~= nil then lines[#lines + 1] = field(k, mod[k]) end
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = field("language", mod.language)
  -- The document's own order; SigmaHQ's for a mapping whose order is not known.
  local function sigma_order(path, keys, t)
    return order[t] or ordered(path == "sigma" and SIGMA_TOP or nil, keys)
  end
  local function special(v)
    if v == null then return M.SIGMA_NULL.name end
    return nil
  end
  lines[#lines + 1] = field("sigma", doc, sigma_order, special)
  lines[#lines + 1] = ""
  lines[#lines + 1] = TESTS_TODO:format("Sigma rule")
  lines[#lines + 1] = "}"
  mod.sigma = written
  mod.tests = {}
  return table.concat(lines, "\n") .. "\n", mod
end

------------------------------------------------------------------------------
-- Checking what was written
------------------------------------------------------------------------------

-- Same values (integers and floats told apart); nil, or where they differ.
local function difference(a, b, path)
  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then
    return string.format("%s: %s written as %s", path, math.type(a) or type(a), math.type(b) or type(b))
  end
  if type(a) == "table" then
    for k, v in pairs(a) do
      local d = difference(v, b[k], path .. "." .. tostring(k))
      if d then return d end
    end
    for k in pairs(b) do
      if a[k] == nil then return path .. "." .. tostring(k) .. ": written, but not in the rule" end
    end
    return nil
  end
  if a ~= b and not (a ~= a and b ~= b) then return path .. ": not written as it is" end
  return nil
end
M.difference = difference

-- The table a module's text returns, run as rules are (the sandbox, a budget).
function M.evaluate(path, text)
  local chunk, err = load(text, "@" .. path, "t", sandbox.env(path))
  if not chunk then return nil, err end
  local ok, mod = ruleset.guard(chunk)
  if not ok then return nil, tostring(mod) end
  return mod
end

-- nil when the module passes `trailhound check` (no error), else the first error.
local function check_error(path, text)
  local check = require "check"
  local rule, d = ruleset.load(path)
  if not rule then return d.msg end
  local first
  check.rule(rule, text, function(_, _, level, msg)
    if level == "error" and not first then
      first = msg
    end
  end)
  return first
end

-- What keeps a module that check refuses from running, in a word: its type or
-- its language, when it is not a KQL query rule.
local RUNS = { kuery = true, sigma = true, eql = true }  -- the languages the loader runs
local TYPES = { query = true, eql = true }                -- and the rule types
local function blocker(mod)
  if mod.type ~= nil and not TYPES[mod.type] and not stateful.TYPES[mod.type] then
    return "type " .. tostring(mod.type)
  end
  if mod.language ~= nil and not RUNS[mod.language] then return "language " .. tostring(mod.language) end
  return "check errors"
end

------------------------------------------------------------------------------
-- Files
------------------------------------------------------------------------------

local function read(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("a")
  f:close()
  if not s then return nil, path .. ": cannot read it (a folder?)" end
  return s
end

local KINDS = { toml = "elastic", yml = "sigma", yaml = "sigma" }

function M.kind(path)
  local ext = path:match("%.([%w]+)$")
  return ext and KINDS[ext:lower()]
end

-- The files of the arguments: a folder gives its rule files, by name.
local function sources(args)
  local list, failed = {}, {}
  for _, a in ipairs(args) do
    if ruleset.is_dir(a) then
      local n = 0
      for _, name in ipairs(loader.list(a) or {}) do
        if M.kind(name) and name:sub(1, 1) ~= "." then
          list[#list + 1] = (a:gsub("/+$", "")) .. "/" .. name
          n = n + 1
        end
      end
      if n == 0 then
        failed[#failed + 1] = { source = a, status = "failed",
          why = "no Elastic (.toml) or Sigma (.yml, .yaml) rule files in this folder" }
      end
    else
      list[#list + 1] = a
    end
  end
  return list, failed
end

local function module_path(out, source)
  local base = source:match("([^/]+)$"):gsub("%.[%w]+$", "")
  return (out:gsub("/+$", "")) .. "/" .. base .. ".lua"
end

local function write(path, text)
  local tmp = path .. ".import-tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    return nil, tostring(werr or cerr)
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    return nil, rerr
  end
  return true
end

-- One file to one result.
local function import_file(source, opts)
  local r = { source = source }
  local kind = M.kind(source)
  if not kind then
    r.status, r.why = "failed", "not an Elastic rule (.toml) or a Sigma rule (.yml, .yaml)"
    return r
  end
  local text, err = read(source)
  if not text then
    r.status, r.why = "failed", tostring(err)
    return r
  end
  local module_text, mod, label
  if kind == "elastic" then
    local doc, perr = toml.parse(text, source)
    if not doc then
      r.status, r.why = "failed", perr
      return r
    end
    module_text, mod, label = M.elastic(doc, source)
  else
    module_text, mod, label = M.sigma(text, source)
  end
  if not module_text then
    r.status, r.why, r.label = (label and "unsupported" or "failed"), mod, label
    return r
  end

  local out = module_path(opts.out, source)
  r.out = out
  -- What the module returns must be what the rule says, word for word.
  local back, eerr = M.evaluate(out, module_text)
  local d = back and difference(mod, back, "rule") or eerr
  if d then
    r.status, r.why = "failed", "internal error: the module written does not hold the rule as it is (" .. d .. ")"
    return r
  end
  if ruleset.exists(out) and not opts.force then
    r.status, r.why = "failed", out .. " already exists (not replaced; --force replaces it)"
    return r
  end
  local ok, werr = write(out, module_text)
  if not ok then
    r.status, r.why = "failed", tostring(werr)
    return r
  end
  local cerr = check_error(out, module_text)
  if cerr then
    r.status, r.label = "not runnable", blocker(mod)
    r.why = cerr
  else
    r.status = "imported"
  end
  return r
end

function M.run(args, opts)
  opts = opts or {}
  opts.out = opts.out or "rules"
  local files, results = sources(args)
  local need_dir = #files > 0
  if need_dir and not ruleset.is_dir(opts.out) then
    os.execute("mkdir -p '" .. opts.out:gsub("'", "'\\''") .. "'")
    if not ruleset.is_dir(opts.out) then
      for _, f in ipairs(files) do
        results[#results + 1] = { source = f, status = "failed", why = opts.out .. ": cannot create this folder" }
      end
      files = {}
    end
  end
  for _, f in ipairs(files) do results[#results + 1] = import_file(f, opts) end
  local summary = { files = #results, imported = 0, ["not runnable"] = 0, unsupported = 0, failed = 0, labels = {} }
  for _, r in ipairs(results) do
    summary[r.status] = summary[r.status] + 1
    if r.label and (r.status == "not runnable" or r.status == "unsupported") then
      local by = summary.labels[r.status] or {}
      summary.labels[r.status] = by
      by[r.label] = (by[r.label] or 0) + 1
    end
  end
  summary.ok = summary.failed == 0
  return results, summary
end

------------------------------------------------------------------------------
-- The report
------------------------------------------------------------------------------

local function counts(by)
  local labels = {}
  for l in pairs(by or {}) do labels[#labels + 1] = l end
  table.sort(labels)
  local parts = {}
  for i, l in ipairs(labels) do parts[i] = by[l] .. " " .. l end
  return table.concat(parts, ", ")
end

local function plural(n, word) return n .. " " .. word .. (n == 1 and "" or "s") end

function M.lines(results, summary, t)
  local lines = {}
  for _, r in ipairs(results) do
    if r.status == "imported" then
      lines[#lines + 1] = t.green("✓") .. " " .. r.source .. ": imported as " .. r.out
    elseif r.status == "not runnable" and r.label == "check errors" then
      lines[#lines + 1] = t.yellow("~") .. " " .. r.source .. ": imported as " .. r.out
        .. ", not runnable: trailhound check reports: " .. r.why
    elseif r.status == "not runnable" then
      lines[#lines + 1] = t.yellow("~") .. " " .. r.source .. ": imported as " .. r.out .. ", not runnable yet: "
        .. r.label .. "; trailhound check reports: " .. r.why
    elseif r.status == "unsupported" then
      lines[#lines + 1] = t.dim("-") .. " " .. r.source .. ": not imported: " .. r.why
    else
      lines[#lines + 1] = t.red("✗") .. " " .. r.source .. ": not imported: " .. r.why
    end
  end
  local s = summary
  local parts = { plural(s.files, "file") .. ": " .. s.imported .. " imported" }
  if s["not runnable"] > 0 then
    parts[#parts + 1] = s["not runnable"] .. " imported, not runnable yet (" .. counts(s.labels["not runnable"]) .. ")"
  end
  if s.unsupported > 0 then
    parts[#parts + 1] = s.unsupported .. " not imported (" .. counts(s.labels.unsupported) .. ")"
  end
  if s.failed > 0 then parts[#parts + 1] = s.failed .. " failed" end
  local text = table.concat(parts, "; ")
  lines[#lines + 1] = ""
  lines[#lines + 1] = s.failed > 0 and t.red(text) or t.green(text)
  return lines
end

return M
