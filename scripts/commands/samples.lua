-- samples.lua: events from a file, for `explain` and `dev`.
--
-- A file holds one JSON object (a raw CloudTrail record or an ECS document), a
-- CloudTrail S3 object {"Records": [...]}, a JSON array of records, or one
-- record per line (NDJSON); plain or gzip, found by its first bytes (1f 8b),
-- whatever its name. Each event comes back with where it was found, so every
-- message names the file and line. A record of a document is named by its
-- index from 0, "record 17", as the host's messages and alerts
-- (trailhound.source.index) name it.
--
--   local list, err = samples.read(path, opts)   path "-" reads standard input
--   opts.line    (1-based) only the record on this line of NDJSON, or the events
--                of the document that starts on it
--   opts.record  (0-based) only this record of the CloudTrail S3 object or array
--   list[i] = { record = decoded table, where = "file:line", raw = bool, line = n, index = n|nil }
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

local function plural(n, word)
  return string.format("%d %s%s", n, word, n == 1 and "" or "s")
end

-- Lines in text: a last line without its newline counts.
local function count_lines(text)
  local _, n = text:gsub("\n", "")
  if #text > 0 and text:sub(-1) ~= "\n" then n = n + 1 end
  return n
end

-- Line n of text (1-based), without its newline and CR; nil past the end.
local function line_text(text, n)
  local pos = 1
  for _ = 2, n do
    local nl = text:find("\n", pos, true)
    if not nl then return nil end
    pos = nl + 1
  end
  if pos > #text then return nil end
  local nl = text:find("\n", pos, true)
  return (text:sub(pos, (nl or #text + 1) - 1):gsub("\r$", ""))
end

-- The records of a decoded value: a CloudTrail S3 object's, an array's, or
-- nil for a value that is one event itself.
local function records_of(v)
  if type(v) ~= "table" then return nil end
  if type(v.Records) == "table" and v.eventSource == nil and v.eventName == nil then
    return v.Records, "CloudTrail S3 object"
  end
  if rawget(v, 1) ~= nil then return v, "array" end
  return nil
end

-- Decode the events of one file. Returns the list, or nil and a message.
function M.read(path, opts)
  opts = opts or {}
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

  -- The events of the value v found at line: the records of a document (or
  -- the one opts.record picks), or v itself.
  local function add_value(v, line)
    local items, what = records_of(v)
    if not items then
      if opts.record then
        return nil, string.format("%s:%d: one event, not a CloudTrail S3 object or an array; --record picks a "
          .. "record of one", name, line)
      end
      return add(v, line)
    end
    if #items == 0 and what == "CloudTrail S3 object" then
      return nil, name .. ":" .. line .. ": no records in this S3 object"
    end
    local first, last = 1, #items
    if opts.record then
      if opts.record >= #items then
        return nil, string.format("%s:%d: no record %d: this %s holds %s (0 to %d)", name, line, opts.record, what,
          plural(#items, "record"), #items - 1)
      end
      first, last = opts.record + 1, opts.record + 1
    end
    for i = first, last do
      local okr, err = add(items[i], line)
      if not okr then return nil, err .. string.format(" (record %d)", i - 1) end
      list[#list].where = string.format("%s:%d: record %d", name, line, i - 1)
      list[#list].index = i - 1
    end
    return true
  end

  local ok, v = pcall(cjson.decode, text)
  local first = line_at(text, text:find("%S"))
  local hint = ""  -- how to pick one record of the document, for a LINE that is not its first
  local items, what = records_of(ok and v or nil)
  if items and #items > 0 then
    hint = string.format("; its %s on line %d holds %s: pick one with --record N (0 to %d)", what, first,
      plural(#items, "record"), #items - 1)
  end
  if ok then
    local last = line_at(text, text:find("%S%s*$"))
    local want = opts.line
    if want and want ~= first and want >= first and want <= last then
      return nil, string.format("%s:%d: inside the JSON document of lines %d to %d: it is %s:%d%s", name, want,
        first, last, name, first, hint)
    end
    if not want or want == first then
      local okv, err = add_value(v, first)
      if not okv then return nil, err end
      return list
    end
    -- else a line around the document: blank, or past the end
  end

  -- One line, as NDJSON: whatever the others hold.
  if opts.line then
    local n = opts.line
    local line = line_text(text, n)
    if not line then
      return nil, string.format("%s:%d: past the end: %s has %s%s", name, n, name, plural(count_lines(text), "line"),
        hint)
    end
    if not line:find("%S") then return nil, string.format("%s:%d: a blank line, no event on it", name, n) end
    local okl, rec = pcall(cjson.decode, line)
    if not okl then return nil, string.format("%s:%d: malformed JSON (%s)", name, n, (json_error(rec))) end
    local okv, err = add_value(rec, n)
    if not okv then return nil, err end
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
  if opts.record then
    return nil, string.format("%s holds one event per line (NDJSON): pick one with %s:LINE; --record picks a "
      .. "record of a CloudTrail S3 object or an array", name, name)
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
