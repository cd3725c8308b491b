-- support/mmdb.lua: a small MaxMind DB reader in Lua, for the specs that run under plain
-- lua5.4 (no thsys): it gives normalize.lua's ctx.geoip what a worker's thsys.geoip gives,
-- from the same files (tests/fixtures/geoip/*.mmdb). IPv4 addresses only, and the data
-- types those files use; the worker reads them with libmaxminddb.
--
--   local geoip = mmdb.geoip("tests/fixtures/geoip/test-asn.mmdb", "tests/fixtures/geoip/test-city.mmdb")
--   geoip.asn("89.160.20.156") -> { autonomous_system_number = 29518, ... } or nil

local M = {}

local MARKER = "\xab\xcd\xefMaxMind.com"

local function uint(s, i, n)
  local v = 0
  for k = 0, n - 1 do v = v * 256 + s:byte(i + k) end
  return v
end

-- Decode the value at data offset i (1-based into s); returns it and the next offset.
local function decode(s, base, i)
  local ctrl = s:byte(i)
  i = i + 1
  local t = ctrl >> 5
  if t == 0 then
    t = 7 + s:byte(i)
    i = i + 1
  end
  if t == 1 then  -- pointer
    local ss = (ctrl >> 3) & 3
    local vv = ctrl & 7
    local p
    if ss == 0 then p = vv * 256 + s:byte(i); i = i + 1
    elseif ss == 1 then p = ((vv * 256 + s:byte(i)) * 256 + s:byte(i + 1)) + 2048; i = i + 2
    elseif ss == 2 then p = uint(s, i, 3) + vv * 16777216 + 526336; i = i + 3
    else p = uint(s, i, 4); i = i + 4 end
    return (decode(s, base, base + p)), i
  end
  local size = ctrl & 31
  if size == 29 then size = 29 + s:byte(i); i = i + 1
  elseif size == 30 then size = 285 + uint(s, i, 2); i = i + 2
  elseif size == 31 then size = 65821 + uint(s, i, 3); i = i + 3 end
  if t == 2 or t == 4 then return s:sub(i, i + size - 1), i + size end
  if t == 3 then return (string.unpack(">d", s, i)), i + 8 end
  if t == 15 then return (string.unpack(">f", s, i)), i + 4 end
  if t == 5 or t == 6 or t == 9 or t == 8 then return uint(s, i, size), i + size end
  if t == 14 then return size ~= 0, i end
  if t == 7 then
    local m = {}
    for _ = 1, size do
      local k, v
      k, i = decode(s, base, i)
      v, i = decode(s, base, i)
      m[k] = v
    end
    return m, i
  end
  if t == 11 then
    local a = {}
    for n = 1, size do a[n], i = decode(s, base, i) end
    return a, i
  end
  error("mmdb: data type " .. t .. " not supported here")
end

-- A lookup function for one database file.
function M.open(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  local at = assert(s:find(MARKER, 1, true), path .. ": no metadata")
  while true do  -- the last marker
    local again = s:find(MARKER, at + 1, true)
    if not again then break end
    at = again
  end
  local meta = decode(s, at + #MARKER, at + #MARKER)
  local nodes, size = meta.node_count, meta.record_size
  assert(size == 24, "mmdb: only 24-bit records here")
  local data = nodes * 6 + 16 + 1  -- 1-based start of the data section
  return function(ip)
    local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return nil end
    local bits = {}
    for _ = 1, 96 do bits[#bits + 1] = 0 end
    for _, octet in ipairs({ tonumber(a), tonumber(b), tonumber(c), tonumber(d) }) do
      for k = 7, 0, -1 do bits[#bits + 1] = (octet >> k) & 1 end
    end
    local node = 0
    for _, bit in ipairs(bits) do
      local rec = uint(s, node * 6 + 1 + bit * 3, 3)
      if rec == nodes then return nil end
      if rec > nodes then return (decode(s, data, data + rec - nodes - 16)) end
      node = rec
    end
    return nil
  end
end

-- { asn = lookup, city = lookup } for the files given (either may be nil).
function M.geoip(asn_path, city_path)
  return { asn = asn_path and M.open(asn_path) or nil, city = city_path and M.open(city_path) or nil }
end

return M
