-- uuid.lua: deterministic alert ids.
--
-- An alert's id is a name-based UUID (RFC 4122 version 5: SHA-1 of a
-- namespace and a name), so replaying the same events under the same rules
-- gives the same ids and a sink can drop duplicates.

local M = {}

local MASK = 0xffffffff

local function rol(x, n)
  return ((x << n) | (x >> (32 - n))) & MASK
end

-- SHA-1 of a string, as 20 raw bytes.
function M.sha1(msg)
  local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
  local len = #msg
  msg = msg .. "\128" .. string.rep("\0", (55 - len) % 64) .. string.pack(">I8", len * 8)
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      w[i] = string.unpack(">I4", msg, chunk + i * 4)
    end
    for i = 16, 79 do
      w[i] = rol(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1)
    end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then
        f, k = (b & c) | (~b & d), 0x5A827999
      elseif i < 40 then
        f, k = b ~ c ~ d, 0x6ED9EBA1
      elseif i < 60 then
        f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
      else
        f, k = b ~ c ~ d, 0xCA62C1D6
      end
      local temp = (rol(a, 5) + (f & MASK) + e + k + w[i]) & MASK
      e, d, c, b, a = d, c, rol(b, 30), a, temp
    end
    h0 = (h0 + a) & MASK
    h1 = (h1 + b) & MASK
    h2 = (h2 + c) & MASK
    h3 = (h3 + d) & MASK
    h4 = (h4 + e) & MASK
  end
  return string.pack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end

-- In a worker, the C one (host/worker/sha1.c): the same bytes, 20 times faster.
local has_sys, sys = pcall(require, "thsys")
local sha1 = has_sys and sys.sha1 or M.sha1

local parsed = {}  -- namespace -> its 16 bytes: alert ids use one namespace
local function parse(uuid)
  local bytes = parsed[uuid]
  if bytes == nil then
    local hex = uuid:gsub("-", "")
    bytes = hex:gsub("..", function(b) return string.char(tonumber(b, 16)) end)
    parsed[uuid] = bytes
  end
  return bytes
end

-- Version 5 UUID of name in the namespace (a UUID string).
function M.v5(namespace, name)
  local a, b, c, d, e, f = string.unpack(">I4I2I2I2I2I4", sha1(parse(namespace) .. name))
  return string.format("%08x-%04x-%04x-%04x-%04x%08x", a, b,
    (c & 0x0fff) | 0x5000,  -- version 5
    (d & 0x3fff) | 0x8000,  -- RFC 4122 variant
    e, f)
end

return M
