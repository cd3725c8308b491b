-- show.lua: `trailhound show`, a rule's metadata and investigation guide as
-- text a person reads in a terminal.
--
--   show.lines(rule, t, width) -> lines      t: a term styler

local loader = require "loader"
local render = require "render"
local sigma = require "sigma"
local style = require "style"

local M = {}

local function list_text(v)
  if type(v) ~= "table" then return v ~= nil and tostring(v) or nil end
  local parts = {}
  for i, x in ipairs(v) do parts[i] = tostring(x) end
  if #parts == 0 then return nil end
  return table.concat(parts, ", ")
end

-- A Sigma value as YAML writes it.
local function yaml_scalar(v)
  if v == sigma.NULL then return "null" end
  if type(v) == "string" then return "'" .. v:gsub("'", "''") .. "'" end
  if math.type(v) == "float" and v == math.floor(v) and v == v then return string.format("%.1f", v) end
  return tostring(v)
end

local function is_seq(v)
  return type(v) == "table" and v ~= sigma.NULL and (v[1] ~= nil or next(v) == nil)
end

-- A Sigma detection as YAML, each key in the order the rule file writes it (else by name),
-- the condition last.
function M.detection_lines(detection, src)
  local out = {}
  local function ordered(t, from)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    local pos = {}
    for _, k in ipairs(keys) do pos[k] = src and type(k) == "string" and sigma.key_pos(src, k, from) or math.huge end
    table.sort(keys, function(a, b)
      if a == "condition" or b == "condition" then return b == "condition" and a ~= "condition" end
      if pos[a] ~= pos[b] then return pos[a] < pos[b] end
      return tostring(a) < tostring(b)
    end)
    return keys, pos
  end
  local function emit(v, indent, from)
    if is_seq(v) then
      if next(v) == nil then out[#out + 1] = indent .. "[]" return end
      for _, x in ipairs(v) do
        if type(x) == "table" and x ~= sigma.NULL and not is_seq(x) then
          local keys, pos = ordered(x, from)
          for i, k in ipairs(keys) do
            local lead = (i == 1 and "- " or "  ")
            local val = x[k]
            if type(val) == "table" and val ~= sigma.NULL then
              out[#out + 1] = indent .. lead .. tostring(k) .. ":"
              emit(val, indent .. "      ", pos[k])
            else
              out[#out + 1] = indent .. lead .. tostring(k) .. ": " .. yaml_scalar(val)
            end
          end
        else
          out[#out + 1] = indent .. "- " .. (type(x) == "table" and x ~= sigma.NULL and "[...]" or yaml_scalar(x))
        end
      end
      return
    end
    local keys, pos = ordered(v, from)
    for _, k in ipairs(keys) do
      local val = v[k]
      if type(val) == "table" and val ~= sigma.NULL then
        out[#out + 1] = indent .. tostring(k) .. ":"
        emit(val, indent .. "    ", pos[k] ~= math.huge and pos[k] or from)
      elseif k == "condition" and type(val) == "string" then
        out[#out + 1] = indent .. "condition: " .. val
      else
        out[#out + 1] = indent .. tostring(k) .. ": " .. yaml_scalar(val)
      end
    end
  end
  if type(detection) == "table" then
    local from = src and sigma.key_pos(src, "detection", sigma.key_pos(src, "sigma"))
    emit(detection, "", from)
  end
  return out
end

function M.lines(rule, t, width)
  width = width or 80
  local meta = rule.meta
  local out = {}
  local function say(s) out[#out + 1] = s end
  local function section(title)
    say("")
    say(t.bold(title))
    say(string.rep("-", style.len(title)))
  end
  local LABEL = 10
  -- "label     value", the value wrapped under itself.
  -- A list value wraps between its items, never inside one.
  local function field(label, value, is_list)
    if value == nil or value == "" then return end
    local lead = style.pad(label, LABEL)
    if is_list then value = value:gsub(" ", "\0"):gsub(",\0", ", ") end
    local lines = style.wrap(value, math.max(20, width - LABEL))
    for i, l in ipairs(lines) do lines[i] = l:gsub("\0", " ") end
    for i, l in ipairs(lines) do say((i == 1 and t.dim(lead) or string.rep(" ", LABEL)) .. l) end
  end

  local w = 0
  for _, l in ipairs(style.wrap(meta.name, width)) do
    say(t.bold(l))
    w = math.max(w, style.len(l))
  end
  say(string.rep("=", w))
  field("file", rule.file)
  field("rule_id", meta.rule_id)
  field("severity", string.format("%s, risk score %s", meta.severity, tostring(meta.risk_score)))
  field("type", string.format("%s (%s)", meta.type or "query",
    meta.sigma and ("Sigma detection" .. (meta.match and " and a Lua match function" or "")) or
    meta.query and (meta.language or "kuery") .. (meta.match and " and a Lua match function" or "")
    or "Lua match function"))
  local sg = type(meta.sigma) == "table" and meta.sigma or nil
  if sg then
    local ls = type(sg.logsource) == "table" and sg.logsource or {}
    local parts = {}
    for _, k in ipairs({ "id", "level", "status" }) do
      if sg[k] ~= nil then parts[#parts + 1] = k .. " " .. tostring(sg[k]) end
    end
    for _, k in ipairs({ "product", "service", "category" }) do
      if ls[k] ~= nil then parts[#parts + 1] = k .. " " .. tostring(ls[k]) end
    end
    field("sigma", table.concat(parts, ", "))
    field("dates", sg.date and (tostring(sg.date) .. (sg.modified and (", modified " .. tostring(sg.modified)) or ""))
      or nil)
  end
  field("version", meta.version and tostring(meta.version))
  field("author", list_text(meta.author))
  field("license", meta.license)
  field("index", list_text(meta.index))
  field("from", meta.from)
  local interval = meta.interval or "5m"
  local max, default = loader.max_signals(meta)
  field("max_signals", max and string.format("at most %s alerts in each %s of event time%s", tostring(max), interval,
    default and " (Kibana's default: the rule names none)" or ""))
  local sup = type(meta.alert_suppression) == "table" and meta.alert_suppression
  if sup then
    local d = sup.duration
    if type(d) == "table" then d = tostring(d.value) .. tostring(d.unit) end
    field("suppression", string.format("one alert per %s in %s; %s", list_text(sup.group_by), d or interval,
      sup.missing_fields_strategy == "doNotSuppress" and "an event missing one of them is not suppressed"
      or "events missing them are one group"))
  end
  field("tags", list_text(meta.tags), true)
  if type(meta.threat) == "table" and #meta.threat > 0 then
    local first = true
    for _, th in ipairs(meta.threat) do
      local tac = type(th.tactic) == "table" and th.tactic or {}
      local line = string.format("%s %s (%s)", tostring(tac.id), tostring(tac.name), tostring(th.framework))
      field(first and "threat" or "", line)
      first = false
      for _, tech in ipairs(type(th.technique) == "table" and th.technique or {}) do
        field("", "  " .. tostring(tech.id) .. " " .. tostring(tech.name))
        for _, sub in ipairs(type(tech.subtechnique) == "table" and tech.subtechnique or {}) do
          field("", "    " .. tostring(sub.id) .. " " .. tostring(sub.name))
        end
      end
    end
  end
  if type(meta.tests) == "table" then
    local pos, n = 0, 0
    for _, test in ipairs(meta.tests) do
      n = n + 1
      if type(test) == "table" and test.expect == true then pos = pos + 1 end
    end
    field("tests", string.format("%d (%d expect a match, %d do not)", n, pos, n - pos))
  end

  section("Description")
  for _, l in ipairs(render.markdown(meta.description, t, width)) do say(l) end

  if sg and type(sg.detection) == "table" then
    section("Detection (Sigma)")
    local f = io.open(rule.file, "rb")
    local src = f and f:read("a")
    if f then f:close() end
    for _, l in ipairs(M.detection_lines(sg.detection, src)) do say("  " .. l) end
    if type(sg.fields) == "table" and #sg.fields > 0 then
      section("Fields (Sigma)")
      for _, l in ipairs(style.wrap(list_text(sg.fields) or "", width - 2)) do say("  " .. l) end
    end
  end
  if meta.query then
    section("Query")
    for l in (render.dedent(meta.query):gsub("^\n+", ""):gsub("%s+$", "") .. "\n"):gmatch("([^\n]*)\n") do
      say("  " .. l)
    end
  end
  if type(meta.investigation_fields) == "table" then
    local list = meta.investigation_fields.field_names or meta.investigation_fields
    section("Investigation fields")
    for _, l in ipairs(style.wrap(list_text(list) or "", width - 2)) do say("  " .. l) end
  end
  if type(meta.false_positives) == "table" and #meta.false_positives > 0 then
    section("False positives")
    for _, fp in ipairs(meta.false_positives) do
      local lines = render.markdown(tostring(fp), t, width - 2)
      for i, l in ipairs(lines) do say((i == 1 and "- " or "  ") .. l) end
    end
  end
  if type(meta.references) == "table" and #meta.references > 0 then
    section("References")
    for _, r in ipairs(meta.references) do say("- " .. tostring(r)) end
  end
  if type(meta.note) == "string" and meta.note:find("%S") then
    say("")
    local title = "Investigation guide"
    say(t.bold(title))
    say(string.rep("=", #title))
    say("")
    for _, l in ipairs(render.markdown(meta.note, t, width)) do say(l) end
  end
  return out
end

return M
