-- explain.lua: why a rule matches an event or not, clause by clause.
--
-- Shared by `trailhound explain`, the failures `trailhound test` prints and
-- the authoring loop of `trailhound dev`.
--
--   local x = explain.run(rule, doc, rec)   rec: the record doc was normalized from (a
--                                           Sigma rule reads its raw fields)
--   x.verdict   true | false | nil (nil: the rule raised an error, x.err says which)
--   x.fields    { { name =, value = }, ... }  the fields the rule reads, in query order,
--               then those its Lua match function read; a Sigma rule's are raw CloudTrail
--               paths
--   x.tree      the clause tree: { op, text, value, line, col, children } (see below)
--   x.decider   the node that decided the verdict (explain.decider)
--
-- An EQL rule's tree is its query's and/or/not, then each comparison or function as written
-- (eql.lua, explain).
-- Tree nodes: op "and" | "or" | "not" for clauses combining other fields;
-- op "clause" for one field's condition (`event.action: ("A" or "B")` is one
-- clause, as the rule author wrote it); op "lua" for the rule's match function.
-- A Sigma rule's tree is its condition's operators, then each search identifier (an and
-- of its map's items, an or of its list's), then the items as written
-- (`eventName|contains: ['a', 'b']`), each at its line in the rule file.

local event = require "event"
local kql = require "kql"
local sigma = require "sigma"
local style = require "style"

local M = {}

------------------------------------------------------------------------------
-- KQL text of a node
------------------------------------------------------------------------------

local single_field = kql.single_field

local function quote(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

local function unquoted(s)
  return (s:gsub('[\\():<>"*{}]', "\\%0"))
end

-- The field of a leaf as written: its name, a name with wildcards, or none.
local function field_text(node)
  if node.field then return node.field end
  if node.fieldtext then
    local segs = {}
    for i, s in ipairs(node.fieldglob) do segs[i] = unquoted(s) end
    return table.concat(segs, "*")
  end
  return nil
end

-- The value side of a single-field node: "x", (a or b), not "c", *.
local function value_text(node, nested)
  local op = node.op
  if op == "exists" then return "*" end
  if op == "match" then
    if node.quoted then return quote(node.literal) end
    if node.wildcard then
      local segs = {}
      for i, s in ipairs(node.segments) do segs[i] = unquoted(s) end
      return table.concat(segs, "*")
    end
    return unquoted(node.literal)
  end
  if op == "not" then return "not " .. value_text(node.children[1], true) end
  local parts = {}
  for i, child in ipairs(node.children) do parts[i] = value_text(child, true) end
  local s = table.concat(parts, " " .. op .. " ")
  if nested or #parts > 1 then s = "(" .. s .. ")" end
  return s
end

local query_text

-- One field's condition as KQL text: a leaf (of any field, or none), a single
-- field's values, or a nested query.
function M.clause_text(node)
  if node.op == "all" then return "(empty query: every event)" end
  if node.op == "nested" then
    return node.field .. ": { " .. query_text(node.children[1]) .. " }"
  end
  if node.op == "range" then
    local bound = node.quoted and quote(node.literal) or unquoted(node.literal)
    return field_text(node) .. " " .. node.operator .. " " .. bound
  end
  if node.op == "not" and single_field(node) then
    return "not " .. M.clause_text(node.children[1])
  end
  local field = single_field(node) or (node.children == nil and field_text(node))
  if not field then return value_text(node, false) end
  return field .. ": " .. value_text(node, false)
end

-- Any subtree as KQL text (for the inside of a nested query).
query_text = function(node, inner)
  if node.children == nil or single_field(node) or node.op == "nested" then return M.clause_text(node) end
  if node.op == "not" then return "not " .. query_text(node.children[1], true) end
  local parts = {}
  for i, child in ipairs(node.children) do parts[i] = query_text(child, true) end
  local s = table.concat(parts, " " .. node.op .. " ")
  if inner then s = "(" .. s .. ")" end
  return s
end

------------------------------------------------------------------------------
-- The tree
------------------------------------------------------------------------------

-- The explained KQL tree (values set by kql's explain) as display nodes.
local function convert(node)
  local field = single_field(node)
  if field or node.children == nil or node.op == "nested" then
    return { op = "clause", field = field or node.path, text = M.clause_text(node), value = node.value,
             line = node.line, col = node.col }
  end
  local kids = {}
  for i, child in ipairs(node.children) do kids[i] = convert(child) end
  return { op = node.op, text = node.op, value = node.value, line = node.line, col = node.col, children = kids }
end

-- Fields in the order the query names them (by their full name inside a nested query;
-- a value with no field and a field name with wildcards name none).
local function query_fields(node, out, seen)
  if node.children == nil then
    if node.path and not seen[node.path] then
      seen[node.path] = true
      out[#out + 1] = node.path
    end
    return
  end
  for _, child in ipairs(node.children) do query_fields(child, out, seen) end
end

-- Line of the `match =` key in the rule file, for the Lua node.
local function match_line(file)
  local f = io.open(file, "rb")
  if not f then return nil end
  local src = f:read("a")
  f:close()
  local _, _, at = src:find("[\n{,]%s*()match%s*=")
  if not at then return nil end
  local _, n = src:sub(1, at - 1):gsub("\n", "")
  return n + 1
end

-- A view over doc that records the names a Lua match function reads.
local function recording_view(doc, names, seen)
  local view = event.view(doc)
  return setmetatable({}, {
    __index = function(_, k)
      if type(k) == "string" and not seen[k] then
        seen[k] = true
        names[#names + 1] = k
      end
      return view[k]
    end,
    __newindex = function() error("the event is read-only", 2) end,
    __pairs = function() error("iterate a field, not the event: e[\"event.action\"]", 2) end,
    __metatable = false,
  })
end

local function read_source(file)
  local f = file and io.open(file, "rb")
  if not f then return nil end
  local src = f:read("a")
  f:close()
  return src
end

-- A Sigma rule's tree over the raw record (get(event.RAW)), lines from the rule file, and
-- the raw fields it reads.
local function sigma_tree(rule, get, names, seen, fields)
  local rec = get(event.RAW)
  local src = read_source(rule.file)
  for _, f in ipairs(rule.sigma.fields) do
    if not seen[f] then
      seen[f] = true
      names[#names + 1] = f
      fields[f] = true
    end
  end
  if rec == nil then
    return { op = "clause", value = false, line = src and sigma.locate_key(src, "detection"),
      text = "a raw CloudTrail record to read (an ECS document carries it in event.original)" }, nil
  end
  local tree = rule.sigma.explain(rec)
  local function walk(node)
    if src then
      if node.ident or node.key then
        node.line = sigma.locate(src, { ident = node.ident, key = node.key })
      else
        node.line = sigma.locate(src, { key = "condition" })
      end
    end
    for _, child in ipairs(node.children or {}) do walk(child) end
    -- a map's items in the order they are written
    if src and node.children and node.children[1] and node.children[1].key then
      table.sort(node.children, function(a, b)
        if (a.line or 0) ~= (b.line or 0) then return (a.line or 0) < (b.line or 0) end
        return a.text < b.text
      end)
    end
  end
  walk(tree)
  return tree, rec
end

function M.run(rule, doc, rec)
  local get = event.getter(doc, rec)
  local names, seen = {}, {}
  local nodes = {}
  local x = {}
  local raw_fields, raw = {}, nil
  if rule.sigma then
    local ok, tree, r = pcall(sigma_tree, rule, get, names, seen, raw_fields)
    if not ok then
      x.err = tostring(tree)
      return x
    end
    nodes[#nodes + 1] = tree
    raw = r
  end
  if rule.query then
    local ok, tree = pcall(rule.query.explain, get)
    if not ok then
      x.err = tostring(tree)
      return x
    end
    query_fields(rule.query.ast, names, seen)
    nodes[#nodes + 1] = convert(tree)
  end
  if rule.eql then  -- an EQL query explains itself in explain's tree shape (eql.lua)
    local ok, tree = pcall(rule.eql.explain, get)
    if not ok then
      x.err = tostring(tree)
      return x
    end
    query_fields(rule.eql.ast, names, seen)
    nodes[#nodes + 1] = tree
  end
  local lua_match = rule.meta and rule.meta.match
  if type(lua_match) == "function" then
    local ok, got = pcall(lua_match, recording_view(doc, names, seen))
    local node = { op = "lua", text = "match function (Lua)", line = match_line(rule.file) }
    if ok and (got == true or got == false) then
      node.value = got
    elseif ok then
      node.err = string.format("match must return true or false, not %s", got == nil and "nil" or type(got))
      x.err = node.err
    else
      node.err = tostring(got)
      x.err = node.err
    end
    nodes[#nodes + 1] = node
  end
  if #nodes == 1 then
    x.tree = nodes[1]
  else
    x.tree = { op = "and", text = rule.sigma and "and (Sigma detection and match function)" or
               "and (query and match function)", value = nodes[1].value and nodes[2].value, children = nodes }
  end
  x.fields = {}
  for i, name in ipairs(names) do
    local v
    if raw_fields[name] then v = raw and event.get(raw, name) else v = event.get(doc, name) end
    x.fields[i] = { name = name, value = v }
  end
  if x.err then return x end
  x.verdict = x.tree.value
  x.decider = M.decider(x.tree)
  return x
end

-- The node that decided a tree's value: down a false "and" to its first false
-- child, down a true "or" to its first true child; anything else decides by
-- itself (a true "and": every clause held; a false "or": none did).
function M.decider(node)
  if node.op == "and" and node.value == false then
    for _, child in ipairs(node.children) do
      if child.value == false then return M.decider(child) end
    end
  elseif node.op == "or" and node.value == true then
    for _, child in ipairs(node.children) do
      if child.value == true then return M.decider(child) end
    end
  end
  return node
end

------------------------------------------------------------------------------
-- Text
------------------------------------------------------------------------------

function M.verdict_word(v) return v and "match" or "no match" end

local function loc(node)
  if not node.line then return "" end
  return node.col and (node.line .. ":" .. node.col) or tostring(node.line)
end

-- One sentence on the deciding node: what it is, its value, where.
function M.because(x, file)
  local d = x.decider
  local where = d.line and string.format(" (%s:%s)", file, loc(d)) or ""
  if d.op == "and" then return "every clause held" .. where end
  if d.op == "or" then return "no alternative held" .. where end
  if d.op == "lua" then return "the match function returned " .. tostring(d.value) .. where end
  if d.op == "not" and d.children and d.children[1] then
    local c = d.children[1]
    return string.format("not %s is %s: %s %s%s", c.text, tostring(d.value), c.text,
      c.value and "held" or "did not hold", where)
  end
  return string.format("%s is %s%s", d.text, tostring(d.value), where)
end

-- Lines of "name  value", names padded to one column.
function M.field_lines(fields, indent)
  local w = 0
  for _, f in ipairs(fields) do w = math.max(w, style.len(f.name)) end
  local out = {}
  for i, f in ipairs(fields) do
    out[i] = indent .. style.pad(f.name, w) .. "  " .. style.value(f.value)
  end
  return out
end

-- The clause tree, one line a node: line:col in the rule file, then the
-- node's mark and text, indented by depth.
function M.tree_lines(tree, t, indent)
  local rows = {}
  local function walk(node, depth)
    local mark = node.value == nil and t.yellow("!") or t.mark(node.value)
    local text = node.text
    if node.err then text = text .. ": error: " .. node.err end
    rows[#rows + 1] = { loc = loc(node), text = string.rep("  ", depth) .. mark .. " " .. text }
    for _, child in ipairs(node.children or {}) do walk(child, depth + 1) end
  end
  walk(tree, 0)
  local w = 0
  for _, r in ipairs(rows) do w = math.max(w, #r.loc) end
  local out = {}
  for i, r in ipairs(rows) do
    out[i] = indent .. t.dim(style.pad(r.loc, w)) .. "  " .. r.text
  end
  return out
end

return M
