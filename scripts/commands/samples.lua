-- samples.lua: events from a file, for `explain` and `dev`.
--
-- A file holds one JSON object (a raw CloudTrail record or an ECS document), a
-- CloudTrail S3 object {"Records": [...]}, a JSON array of records, or one
-- record per line (NDJSON); plain or gzip, found by its first bytes (1f 8b),
-- whatever its name. Each event comes back with where it was found, so every
-- message names the file and line.
--
--   local list, err = samples.read(path)      path "-" reads standard input
--   list[i] = { record = decoded table, where = "file:line", raw = bool, line = n }
--   err     = "file:line: malformed JSON (...)" and the like

local cjson = require("cjson").new()
local normalize = require "normalize"

local M = {}

cjson.decode_max_depth(128)

-- The C host gives gunzip (thsys, zlib); under plain lua5.4 (specs) gzip(1) answers.
local has_sys, sys = pcall(require, "thsys")

local function shell_gunzip(data)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(data)
  f:close()
  local p = io.popen("gzip -dc < '" .. tmp .. "' 2> '" .. tmp .. ".err'")
  local text = p:read("a")
  local ok = p:close()
  local e = io.open(tmp .. ".err", "rb")
  local why = e and e:read("a") or ""
  if e then e:close() end
  os.remove(tmp)
  os.remove(tmp .. ".err")
  if not ok then return nil, (why:gsub("^%s*gzip: stdin: ", ""):gsub("%s+$", "")) end
  return text
end

local gunzip = has_sys and sys.gunzip or shell_gunzip

local function line_at(text, pos)
  local _, n = text:sub(1, pos - 1):gsub("\n", "")
  return n + 1
end

-- cjson's message, without its "Expected value but found" prefix noise kept as is;
-- returns the message and the 1-based character it points at, if any.
local function json_error(err)
  local msg = tostring(err):gsub("^.-:%d+: ", "")
  local at = tonumber(msg:match("at character (%d+)"))
  return msg, at
end

local function kind(v)
  if v == cjson.null then return "null" end
  return type(v)
end

local function read_all(path)
  if path == "-" then return io.stdin:read("a") or "", "(stdin)" end
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  if text == nil then return nil, path .. ": cannot read (a directory?)" end
  return text, path
end

-- Decode the events of one file. Returns the list, or nil and a message.
function M.read(path)
  local text, name = read_all(path)
  if not text then return nil, name end
  if text:sub(1, 2) == "\31\139" then
    local plain, why = gunzip(text)
    if not plain then return nil, name .. ": " .. why end
    text = plain
  end
  if not text:find("%S") then return nil, name .. ":1: empty file: no event in it" end
  local list = {}
  local function add(rec, line)
    if type(rec) ~= "table" or rec == cjson.null or rawget(rec, 1) ~= nil then
      local what = kind(rec) == "table" and "an array" or kind(rec)
      return nil, string.format("%s:%d: not a JSON object (%s)", name, line, what)
    end
    list[#list + 1] = { record = rec, where = name .. ":" .. line, line = line,
                        raw = normalize.is_cloudtrail(rec) }
    return true
  end

  local ok, v = pcall(cjson.decode, text)
  if ok then
    local first = line_at(text, text:find("%S"))
    if type(v) == "table" and type(v.Records) == "table" and v.eventSource == nil and v.eventName == nil then
      for i = 1, #v.Records do
        local okr, err = add(v.Records[i], first)
        if not okr then return nil, err .. string.format(" (record %d)", i - 1) end
        list[#list].where = string.format("%s:%d: record %d", name, first, i - 1)
      end
      if #list == 0 then return nil, name .. ":" .. first .. ": no records in this S3 object" end
    elseif type(v) == "table" and rawget(v, 1) ~= nil then
      for i = 1, #v do
        local okr, err = add(v[i], first)
        if not okr then return nil, err .. string.format(" (element %d)", i) end
        list[#list].where = string.format("%s:%d: element %d", name, first, i)
      end
    else
      local okr, err = add(v, first)
      if not okr then return nil, err end
    end
    return list
  end

  -- Not one JSON document: one record per line, when the first line is a
  -- record of its own; else a broken document, reported where it breaks.
  local first_line = text:match("^%s*([^\n]*)")
  local multi = select(2, text:gsub("\n%s*%S", "")) > 0 and pcall(cjson.decode, first_line)
  if not multi then
    local msg, at = json_error(v)
    return nil, string.format("%s:%d: malformed JSON (%s)", name, at and line_at(text, at) or 1, msg)
  end
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    if line:find("%S") then
      local okl, rec = pcall(cjson.decode, line)
      if not okl then
        return nil, string.format("%s:%d: malformed JSON (%s)", name, n, (json_error(rec)))
      end
      local okr, err = add(rec, n)
      if not okr then return nil, err end
    end
  end
  return list
end

return M
