-- esdate.lua: dates as Elasticsearch reads them on a date field, for KQL (kql.lua).
--
--   esdate.bound(text, up, now) -> milliseconds since the epoch (UTC), or nil
--     A query's date: Elasticsearch's default date format ("strict_date_optional_time||
--     epoch_millis") or date math ("now-1d/d", "2024-01-01||+1M"). up: the bound is read
--     rounding up, as for gt and lte; else down, as for gte and lt. now: the current time
--     in milliseconds (only date math reads it).
--   esdate.value(v) -> milliseconds, or nil
--     A document's date: such a string, or a number of milliseconds.
--   esdate.uses_now(text) -> boolean   the bound moves with the clock
--
-- As Elasticsearch documents it ("Missing date components", "Date math"): a date missing
-- components is filled with the start of its period read down, and read up with month 01,
-- day 01, 23:59:59.999 (so `lte: 2024-06-15` takes the whole day); `/d` rounds to the start
-- of the day read down, to its last millisecond read up; a date with math after || is read
-- down. Times without an offset are UTC (Kibana's detection rules pass no time zone).

local M = {}

local floor, tonumber, type = math.floor, tonumber, type

-- Days since 1970-01-01 of a civil date, and back (Howard Hinnant's algorithms).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = (z >= 0 and z or z - 146096) // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function days_in_month(y, m)
  if m == 2 then
    return (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28
  end
  return (m == 4 or m == 6 or m == 9 or m == 11) and 30 or 31
end

local DAY, HOUR, MINUTE = 86400000, 3600000, 60000

-- strict_date_optional_time: yyyy[-MM[-dd[THH[:mm[:ss[.SSS]]][Z|+HH:mm|+HHmm|+HH]]]].
local function iso(s, up)
  local y, r = s:match("^(%d%d%d%d)(.*)$")
  if not y then return nil end
  -- Each component in turn, while they come; the rest must be an offset or nothing.
  local parts = {}
  for _, pat in ipairs({ "^%-(%d%d)(.*)$", "^%-(%d%d)(.*)$", "^T(%d%d)(.*)$", "^:(%d%d)(.*)$", "^:(%d%d)(.*)$",
                         "^[%.,](%d+)(.*)$" }) do
    local a, rest = r:match(pat)
    if not a then break end
    parts[#parts + 1], r = a, rest
  end
  local offset = 0
  if r ~= "" then
    if #parts < 4 then return nil end              -- an offset needs a time
    if r == "Z" then
      offset = 0
    else
      local sign, oh, om = r:match("^([%+%-])(%d%d):?(%d%d)$")
      if not sign then
        sign, oh = r:match("^([%+%-])(%d%d)$")
        om = "00"
      end
      if not sign then return nil end
      offset = (tonumber(oh) * 60 + tonumber(om)) * MINUTE
      if sign == "-" then offset = -offset end
    end
  end
  local mo, d, h, mi, se = tonumber(parts[1]), tonumber(parts[2]), tonumber(parts[3]), tonumber(parts[4]),
    tonumber(parts[5])
  local ms
  if parts[6] then
    ms = tonumber((parts[6] .. "00"):sub(1, 3))
  end
  y = tonumber(y)
  mo, d = mo or 1, d or 1
  if up then
    h, mi, se, ms = h or 23, mi or 59, se or 59, ms or 999
  else
    h, mi, se, ms = h or 0, mi or 0, se or 0, ms or 0
  end
  if mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo) or h > 23 or mi > 59 or se > 59 then return nil end
  return days_from_civil(y, mo, d) * DAY + h * HOUR + mi * MINUTE + se * 1000 + ms - offset
end

-- A date in the default format: ISO first ("2024" is a year), then milliseconds.
local function date(s, up)
  local t = iso(s, up)
  if t then return t end
  if s:find("^%-?%d+%.?%d*$") then return floor(tonumber(s)) end
  return nil
end

-- Calendar arithmetic and rounding on milliseconds.
local function add_months(t, n)
  local days, rest = t // DAY, t % DAY
  local y, m, d = civil_from_days(days)
  local total = y * 12 + (m - 1) + n
  y, m = total // 12, total % 12 + 1
  d = math.min(d, days_in_month(y, m))
  return days_from_civil(y, m, d) * DAY + rest
end

local FIXED = { w = 7 * DAY, d = DAY, h = HOUR, H = HOUR, m = MINUTE, s = 1000 }

-- The start of the unit t is in.
local function round_down(t, unit)
  if unit == "y" or unit == "M" then
    local y, m = civil_from_days(t // DAY)
    return days_from_civil(y, unit == "y" and 1 or m, 1) * DAY
  end
  if unit == "w" then                               -- ISO weeks start on Monday; 1970-01-01 was a Thursday
    local days = t // DAY
    return (days - (days + 3) % 7) * DAY
  end
  local size = FIXED[unit]
  return t // size * size
end

local function next_start(t, unit)
  local start = round_down(t, unit)
  if unit == "y" then return add_months(start, 12) end
  if unit == "M" then return add_months(start, 1) end
  return start + FIXED[unit]
end

-- Date math after its anchor: +1d, -2h, /d ...
local function apply(t, ops, up)
  local p = 1
  while p <= #ops do
    local op = ops:sub(p, p)
    if op == "/" then
      local unit = ops:sub(p + 1, p + 1)
      if not (FIXED[unit] or unit == "y" or unit == "M") then return nil end
      t = up and next_start(t, unit) - 1 or round_down(t, unit)
      p = p + 2
    elseif op == "+" or op == "-" then
      local n, unit, e = ops:match("^(%d*)([yMwdhHms])()", p + 1)
      if not unit then return nil end
      n = n == "" and 1 or tonumber(n)
      if op == "-" then n = -n end
      if unit == "y" then
        t = add_months(t, 12 * n)
      elseif unit == "M" then
        t = add_months(t, n)
      else
        t = t + n * FIXED[unit]
      end
      p = e
    else
      return nil
    end
  end
  return t
end

function M.bound(text, up, now)
  if type(text) ~= "string" then return nil end
  if text:sub(1, 3) == "now" then return apply(now or os.time() * 1000, text:sub(4), up) end
  local anchor, ops = text:match("^(.-)||(.*)$")
  if anchor then
    local t = date(anchor, false)
    return t and apply(t, ops, up)
  end
  return date(text, up)
end

function M.uses_now(text)
  return type(text) == "string" and text:sub(1, 3) == "now"
end

function M.value(v)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    return floor(v)
  end
  if type(v) == "string" then return date(v, false) end
  return nil
end

return M
