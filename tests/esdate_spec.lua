-- Specs for scripts/esdate.lua: dates as Elasticsearch reads them on a date field.

local esdate = require "esdate"

-- Milliseconds as ISO text, for readable expectations.
local function iso(ms)
  if ms == nil then return nil end
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. string.format(".%03d", ms % 1000)
end

local NOW = 1718454896789   -- 2024-06-15T12:34:56.789Z, a Saturday

describe("esdate", function()
  describe("bound()", function()
    it("reads strict_date_optional_time, its parts and offsets, and milliseconds", function()
      assert.equal("2024-06-15T10:11:12.000", iso(esdate.bound("2024-06-15T10:11:12Z", false)))
      assert.equal("2024-06-15T10:11:12.000", iso(esdate.bound("2024-06-15T10:11:12", false)))
      assert.equal("2024-06-15T08:11:12.500", iso(esdate.bound("2024-06-15T10:11:12.5+02:00", false)))
      assert.equal("2024-06-15T15:41:12.123", iso(esdate.bound("2024-06-15T10:11:12.123456-0530", false)))
      assert.equal("2024-06-15T00:00:00.000", iso(esdate.bound("1718409600000", false)))
      assert.equal("2024-01-01T00:00:00.000", iso(esdate.bound("2024", false)))   -- a year, not milliseconds
    end)

    it("fills missing components with the period's start read down, as Elasticsearch documents read up", function()
      assert.equal("2024-06-15T00:00:00.000", iso(esdate.bound("2024-06-15", false)))
      assert.equal("2024-06-15T23:59:59.999", iso(esdate.bound("2024-06-15", true)))
      assert.equal("2024-06-15T10:59:59.999", iso(esdate.bound("2024-06-15T10", true)))
      assert.equal("2024-06-01T23:59:59.999", iso(esdate.bound("2024-06", true)))
      assert.equal("2024-01-01T23:59:59.999", iso(esdate.bound("2024", true)))
    end)

    it("does date math from now or an anchor, rounding down or up", function()
      assert.equal("2024-06-15T12:34:56.789", iso(esdate.bound("now", false, NOW)))
      assert.equal("2024-06-14T00:00:00.000", iso(esdate.bound("now-1d/d", false, NOW)))
      assert.equal("2024-06-14T23:59:59.999", iso(esdate.bound("now-1d/d", true, NOW)))
      assert.equal("2024-06-30T23:59:59.999", iso(esdate.bound("now/M", true, NOW)))
      assert.equal("2024-06-10T00:00:00.000", iso(esdate.bound("now/w", false, NOW)))   -- Monday
      assert.equal("2025-06-15T12:34:56.789", iso(esdate.bound("now+1y", false, NOW)))
      assert.equal("2024-06-15T10:34:56.789", iso(esdate.bound("now-2h", false, NOW)))
      assert.equal("2024-06-15T12:33:56.789", iso(esdate.bound("now-m", false, NOW)))
      assert.equal("2024-02-29T00:00:00.000", iso(esdate.bound("2024-01-31||+1M", false)))
      assert.equal("2025-02-28T23:59:59.999", iso(esdate.bound("2024-02-29||+1y/d", true)))
      assert.is_true(esdate.uses_now("now-5m"))
      assert.is_false(esdate.uses_now("2024-01-01"))
    end)

    it("reads nothing else", function()
      for _, s in ipairs({ "hello", "2024-13-01", "2024-02-30", "2024-06-15T24:00", "24-06-15", "2024-06-15Z",
        "now-1q", "now/x", "2024-06-15||+", "" }) do
        assert.is_nil(esdate.bound(s, false, NOW), s)
      end
    end)
  end)

  describe("value()", function()
    it("reads a document's date string or milliseconds", function()
      assert.equal("2024-10-17T20:09:52.000", iso(esdate.value("2024-10-17T20:09:52.000Z")))
      assert.equal("2024-06-15T00:00:00.000", iso(esdate.value(1718409600000)))
      assert.equal("2024-06-15T00:00:00.000", iso(esdate.value(1718409600000.7)))
      assert.is_nil(esdate.value("yesterday"))
      assert.is_nil(esdate.value(true))
    end)
  end)
end)
