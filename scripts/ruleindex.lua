-- ruleindex.lua: which rules an event can concern, before any of them runs.
--
-- Two uses of what a rule's query requires (kql.requirements):
--
--   ruleindex.prefilter(rule, normalize) -> clauses
--     What the host's prefilter (host/prefilter.c) looks for in a record's raw text before
--     sending it to a worker: a list of clauses, each a list of literal strings, at least one
--     of which a record the rule matches holds (after JSON unescaping). Only requirements on
--     fields the normalizer copies verbatim (normalize.VERBATIM) qualify: event.provider is
--     the record's own eventSource, while data_stream.dataset is a constant no record holds.
--     An empty list: the rule may match any record (a Lua match alone, a query of ranges).
--
--   local ix = ruleindex.build(rules)
--   ix.candidates(get) -> rules
--     The rules, in their order, that an event can match judging by the exact values they
--     require: each rule is filed under one field and the values it needs there
--     (event.action: PutResourcePolicy or DeleteResourcePolicy), so an event asks for each
--     such field once and gets only the rules filed under its value, plus the rules filed
--     under nothing. get(name) is the event's field (event.lua's lazy view): a rule that
--     cannot match costs no call of its own.

local kql = require "kql"

local M = {}

local type, ipairs, sort = type, ipairs, table.sort

local function requirements(rule)
  if rule.query == nil then return {} end
  return kql.requirements(rule.query)
end

function M.prefilter(rule, normalize)
  local verbatim = type(normalize) == "table" and type(normalize.VERBATIM) == "table" and normalize.VERBATIM or {}
  local out = {}
  for _, clause in ipairs(requirements(rule)) do
    local lits, usable = {}, true
    for _, alt in ipairs(clause) do
      -- "" is in every record: the clause says nothing.
      if not verbatim[alt.field] or alt.value == "" then usable = false break end
      lits[#lits + 1] = alt.value
    end
    if usable and #lits > 0 then out[#out + 1] = lits end
  end
  return out
end

-- The field a rule is filed under: of its clauses that are a list of exact values of one
-- field, the one on the most telling field, then with the fewest values.
local RANK = { ["event.action"] = 1, ["event.provider"] = 2 }

local function key_of(rule)
  local best, best_rank
  for _, clause in ipairs(requirements(rule)) do
    local field = clause[1].field
    local ok = true
    for _, alt in ipairs(clause) do
      if not alt.exact or alt.field ~= field then ok = false break end
    end
    if ok then
      local rank = (RANK[field] or 3) * 1e6 + #clause
      if best == nil or rank < best_rank then best, best_rank = clause, rank end
    end
  end
  return best
end

function M.build(rules)
  local fields, by_field = {}, {}   -- index fields in order; field -> value -> positions
  local always = {}                 -- positions of rules filed under nothing
  for pos, rule in ipairs(rules) do
    local clause = key_of(rule)
    if clause == nil then
      always[#always + 1] = pos
    else
      local field = clause[1].field
      local map = by_field[field]
      if map == nil then
        map = {}
        by_field[field] = map
        fields[#fields + 1] = field
      end
      for _, alt in ipairs(clause) do
        local list = map[alt.value]
        if list == nil then
          list = {}
          map[alt.value] = list
        end
        if list[#list] ~= pos then list[#list + 1] = pos end
      end
    end
  end
  local maps = {}
  for i, f in ipairs(fields) do maps[i] = by_field[f] end
  local nfields = #fields

  local out, seen, stamp = {}, {}, 0
  local n

  local function add(list)
    if list == nil then return end
    for i = 1, #list do
      local pos = list[i]
      if seen[pos] ~= stamp then
        seen[pos] = stamp
        n = n + 1
        out[n] = pos
      end
    end
  end

  local ix = { fields = fields }

  -- Reuses one table: valid until the next call.
  function ix.candidates(get)
    stamp = stamp + 1
    n = 0
    add(always)
    local lists = n > 0 and 1 or 0
    for i = 1, nfields do
      local v = get(fields[i])
      local map = maps[i]
      local before = n
      if type(v) == "string" then
        add(map[v])
      elseif type(v) == "table" then  -- an array: any of its strings (nested arrays too)
        local stack = { v }
        while #stack > 0 do
          local t = stack[#stack]
          stack[#stack] = nil
          for k = 1, #t do
            local x = t[k]
            if type(x) == "string" then add(map[x]) elseif type(x) == "table" then stack[#stack + 1] = x end
          end
        end
      end
      if n > before then lists = lists + 1 end
    end
    for k = n + 1, #out do out[k] = nil end
    if lists > 1 then sort(out) end
    for k = 1, n do out[k] = rules[out[k]] end
    return out
  end

  return ix
end

return M
