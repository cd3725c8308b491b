-- useragent.lua: user_agent.original -> user_agent.name, version, os.*, device.name, as
-- Elasticsearch's user_agent processor gives them for the agents that call AWS.
--
--   local ua = require "useragent"
--   local r = ua.parse("aws-cli/2.17.60 md/awscrt#0.21.2 ua/2.0 os/macos#23.6.0 ...")
--   -- { name = "aws-cli", version = "2.17.60", device = { name = "Other" } }
--   -- r.os = { name = "Linux", version = "4.9.184", full = "Linux 4.9.184" } when one is found
--
-- Elasticsearch (modules/ingest-user-agent) ships ua-parser's regexes.yaml, the version of
-- ua-parser/uap-core commit e9fd8c68 (2020), and reads it this way: the first pattern of each
-- list (user agents, operating systems, devices) that matches anywhere in the string wins; its
-- first group is the name unless the pattern replaces it, the next four are major, minor,
-- patch and build; a version is those parts joined with "." up to the first missing or empty
-- one (Elasticsearch 8.16.2 and later: no trailing "."); no match: name "Other", no version;
-- no operating system: no user_agent.os; os.full is name and version; no device: "Other".
--
-- The tables below are a subset of that file's patterns, in its order, written as Lua: the
-- ones that decide AWS's own agents (CLI, SDKs, the console and AWS services, Terraform), the
-- desktop and mobile browsers, and the HTTP tools seen in CloudTrail. An agent that another
-- pattern of the full file would catch first (a crawler, a media player, an Android phone's
-- model) can come out differently. tests/fixtures/user-agents/ holds the strings and what
-- Elasticsearch's reading of the full file gives for each (how it was made is in its README);
-- tests/useragent_spec.lua holds this module to it.
--
-- The token lists of the "Spider" device pattern and of the HTTP tools are ua-parser's
-- (uap-core, Apache License 2.0, Copyright 2009 Google Inc.; see NOTICE).
--
-- Results are cached per distinct string (at most MAX_CACHED, then the cache starts over):
-- CloudTrail repeats a handful of agents. A result is shared: callers copy, never change it.

local M = {}

local find, sub, lower, byte, match = string.find, string.sub, string.lower, string.byte, string.match

---------------------------------------------------------------------------------------------
-- Matching helpers
---------------------------------------------------------------------------------------------

local function is_word(c)
  return c and ((c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) or c == 95)
end

-- Up to `max` dot-separated numbers at s[i]: "1.35.50" -> "1", "35", "50", and the count.
-- At least `min` are needed, else nil.
local function numbers(s, i, min, max)
  local parts, n = {}, 0
  while n < max do
    local d = match(s, "^%d+", i)
    if not d then break end
    n = n + 1
    parts[n] = d
    i = i + #d
    if byte(s, i) ~= 46 or not find(s, "^%d", i + 1) then break end  -- "." and a digit
    i = i + 1
  end
  if n < min then return nil end
  return parts[1], parts[2], parts[3], parts[4]
end

-- A name followed by a version: the leftmost place in s where one of rule.names is (at a
-- word boundary when rule.word), followed by one of rule.sep's characters and at least
-- rule.min numbers (rule.min = 0: the separator and the version may be missing).
local function token_version(rule, s)
  local best, bname, b1, b2, b3, b4
  for _, name in ipairs(rule.names) do
    local init = 1
    while true do
      local p = find(s, name, init, true)
      if not p or (best and p >= best) then break end
      local q = p + #name
      if not rule.word or not is_word(byte(s, p - 1)) then
        local c = sub(s, q, q)
        local v1, v2, v3, v4
        if c ~= "" and find(rule.sep, c, 1, true) then
          v1, v2, v3, v4 = numbers(s, q + 1, math.max(rule.min, 1), rule.max)
        end
        if v1 or rule.min == 0 then
          best, bname, b1, b2, b3, b4 = p, name, v1, v2, v3, v4
          break
        end
      end
      init = p + 1
    end
  end
  if best then return rule.family or bname, b1, b2, b3, b4, best end
  return nil
end

---------------------------------------------------------------------------------------------
-- User agents (user_agent_parsers)
---------------------------------------------------------------------------------------------

-- The AWS clients ("AWS S3 Clients"): the CLI, boto, and the SDKs that name themselves
-- aws-sdk-<language>/<version>. Newer SDKs (aws-sdk-go-v2, aws-sdk-js, aws-sdk-php,
-- aws-sdk-rust, aws-sdk-ruby3, aws-sdk-dotnet-coreclr) do not match: "Other", like Elastic.
local AWS_CLIENTS = {
  names = { "Boto3", "Boto", "JetS3t", "aws-cli", "aws-sdk-cpp", "aws-sdk-go", "aws-sdk-java", "aws-sdk-nodejs",
    "aws-sdk-ruby2", "aws-sdk-ruby", "aws-sdk-dotnet-core", "s3fs" },
  word = true, sep = "/", min = 2, max = 3,
}

-- Each rule: names/sep/min/max for token_version, or a function(s) -> name, v1, v2, v3, v4.
M.AGENTS = {
  -- HTTP client libraries (before the AWS clients: "Go-http-client" inside an SDK's string)
  { names = { "Google-HTTP-Java-Client", "Apache-HttpClient", "Go-http-client", "scalaj-http", "http%20client",
      "Python-urllib", "HttpMonitor", "TLSProber", "WinHTTP", "JNLP", "okhttp", "aihttp", "reqwest", "axios",
      "unirest-java", "unirest-python", "unirest-ruby", "unirest-nodejs", "unirest-php", "unirest-net" },
    sep = " /", min = 0, max = 3 },
  function(s)  -- the AWS clients (AWS_CLIENTS above)
    local name, v1, v2, v3, _, at = token_version(AWS_CLIENTS, s)
    -- aws-sdk-dotnet-NN/ (aws-sdk-dotnet-45/3.5.0.0), wherever it comes first
    local p = 1
    while true do
      local a, e, n = find(s, "aws%-sdk%-dotnet%-(%d+)/", p)
      if not a or (at and a > at) then break end
      if #n <= 2 and not is_word(byte(s, a - 1)) then
        local w1, w2, w3 = numbers(s, e + 1, 2, 3)
        if w1 then return "aws-sdk-dotnet-" .. n, w1, w2, w3 end
      end
      p = a + 1
    end
    return name, v1, v2, v3
  end,
  -- Browsers, most specific first (as in the file)
  function(s)  -- Firefox on a phone or tablet
    if find(s, "Mobile;", 1, true) or find(s, "Tablet;", 1, true) then
      local v1, v2 = match(s, "[MT][oa][bl][il][le]t?;.*Firefox/(%d+)%.(%d+)")
      if v1 then return "Firefox Mobile", v1, v2 end
    end
  end,
  { names = { "FxiOS" }, family = "Firefox iOS", sep = "/", min = 2, max = 2 },
  function(s)  -- Opera: Chrome ... OPR/x.y.z
    local c = find(s, "Chrome", 1, true)
    if c then
      local v1, v2, v3 = match(s, "OPR/(%d+)%.(%d+)%.(%d+)", c)
      if v1 then return find(s, "Mobile Safari", 1, true) and "Opera Mobile" or "Opera", v1, v2, v3 end
    end
  end,
  { names = { "EdgiOS", "EdgA" }, family = "Edge Mobile", sep = "/", min = 4, max = 4 },
  { names = { "SamsungBrowser" }, family = "Samsung Internet", sep = "/", min = 2, max = 2 },
  function(s)  -- Chrome WebView on Android
    local v1, v2, v3, v4 = match(s, "Version/.+Chrome/(%d+)%.(%d+)%.(%d+)%.(%d+)")
    if not v1 then v1, v2, v3, v4 = match(s, "; wv%).+Chrome/(%d+)%.(%d+)%.(%d+)%.(%d+)") end
    if v1 then return "Chrome Mobile WebView", v1, v2, v3, v4 end
  end,
  { names = { "CrMo" }, family = "Chrome Mobile", sep = "/", min = 4, max = 4 },
  { names = { "CriOS" }, family = "Chrome Mobile iOS", sep = "/", min = 4, max = 4 },
  function(s)  -- Chrome Mobile: Chrome/a.b.c.d Mobile, or Mobile ... Chrome/a.b.c.d
    local v1, v2, v3, v4, e = match(s, "Chrome/(%d+)%.(%d+)%.(%d+)%.(%d+) Mobile()")
    if v1 and (e > #s or find(sub(s, e, e), "[ /]")) then return "Chrome Mobile", v1, v2, v3, v4 end
    v1, v2, v3, v4 = match(s, " Mobile .*Chrome/(%d+)%.(%d+)%.(%d+)%.(%d+)")
    if v1 then return "Chrome Mobile", v1, v2, v3, v4 end
  end,
  { names = { "YaBrowser" }, family = "Yandex Browser", sep = "/", min = 3, max = 3 },
  { names = { "Vivaldi" }, sep = "/", min = 3, max = 3 },
  { names = { "Edge", "Edg" }, family = "Edge", sep = "/", min = 1, max = 4 },
  { names = { "HeadlessChrome" }, sep = "/", min = 0, max = 3 },
  { names = { "Chromium", "Chrome" }, sep = "/", min = 2, max = 4 },
  function(s)  -- Safari on an iPhone, iPad or iPod
    local dev = match(s, "(iP[ha][od]n?e?)")
    if dev and (dev == "iPhone" or dev == "iPad" or dev == "iPod") then
      local v1, v2, rest = match(s, "Version/(%d+)%.(%d+)(.*)[ +]Safari")
      if v1 then
        return "Mobile Safari", v1, v2, match(rest, "^%.(%d+)")
      end
      if find(s, " Safari", 1, true) then return "Mobile Safari" end
      return "Mobile Safari UI/WKWebView"
    end
  end,
  function(s)  -- Safari: Version/x.y ... Safari/
    local v1, v2, rest = match(s, "Version/(%d+)%.(%d+)(.-)Safari/")
    if v1 then return "Safari", v1, v2, match(rest, "^%.(%d+)") end
    if find(s, "Safari/%d") then return "Safari" end
  end,
  function(s)  -- IE 8 to 11 by their Trident version
    local t = match(s, "Trident/([45678])%.0")
    if t then return "IE", ({ ["4"] = "8", ["5"] = "9", ["6"] = "10", ["7"] = "11", ["8"] = "11" })[t], "0" end
  end,
  { names = { "Firefox" }, sep = "/", min = 2, max = 3 },
  function(s)  -- IE before Trident
    local v1, v2 = match(s, "MS?IE (%d+)%.(%d+)")
    if not v1 then v1, v2 = match(s, "SIE (%d+)%.(%d+)") end
    if v1 then return "IE", v1, v2 end
  end,
  { names = { "python-requests" }, family = "Python Requests", sep = "/", min = 2, max = 2 },
  -- command-line and library HTTP agents
  { names = { "Windows-Update-Agent", "WindowsPowerShell", "Microsoft-CryptoAPI", "SophosUpdateManager",
      "SophosAgent", "Debian APT-HTTP", "Ubuntu APT-HTTP", "libcurl-agent", "libwww-perl", "urlgrabber", "curl",
      "PycURL", "Wget", "wget2", "aria2", "Axel", "OpenBSD ftp", "lftp", "jupdate", "insomnia", "fetch libfetch",
      "akka-http", "got" },
    word = true, sep = " /", min = 0, max = 3 },
  function(s)  -- Java/17.0.7: the file's groups make the version "0.7"
    local v1, v2, rest = match(s, "Java[/ ]?%d+%.(%d+)%.(%d+)[_-]*([%w]*)")
    if v1 then return "Java", v1, v2, rest end
  end,
  function(s)
    local v1, v2, v3 = match(s, "^Cyberduck/(%d+)%.(%d+)%.(%d+)")
    if v1 then return "Cyberduck", v1, v2, v3 end
    v1, v2 = match(s, "^rclone/v(%d+)%.(%d+)")
    if v1 then return "rclone", v1, v2 end
  end,
}

---------------------------------------------------------------------------------------------
-- Operating systems (os_parsers)
---------------------------------------------------------------------------------------------

-- Windows NT versions by their marketing name (the file's "Windows NT x.y" patterns).
local WINDOWS_NT = {
  { "Windows NT 5.2", "XP" }, { "Windows NT 5.1", "XP" }, { "NT 6.1", "7" }, { "NT 6.0", "Vista" },
  { "Windows NT 6.2; ARM;", "RT" }, { "NT 6.2", "8" }, { "Windows NT 6.3; ARM;", "RT 8", "1" }, { "NT 6.3", "8", "1" },
  { "NT 6.4", "10" }, { "Windows NT 10.0", "10" }, { "Windows NT 5.0", "2000" },
}

M.SYSTEMS = {
  function(s)  -- Android 14, Android 4.4.2
    local v1, rest = match(s, "Android[ %-/](%d+)(.*)")
    if v1 then
      local v2, after = match(rest, "^%.(%d+)(.*)")
      local v3 = match(after or rest, "^[.%-]([%l%d]+)")
      return "Android", v1, v2, v3
    end
  end,
  function(s)
    if find(s, "Windows ?Mobile") then return "Windows Mobile" end
    if find(s, "Windows 10", 1, true) then return "Windows", "10" end
    for _, w in ipairs(WINDOWS_NT) do
      local text = w[1]
      if sub(text, 1, 3) == "NT " then
        if find(s, "Windows " .. text, 1, true) or find(s, "Win32" .. text:gsub(" ", "/"), 1, true) then
          return "Windows", w[2], w[3]
        end
      elseif find(s, text, 1, true) then
        return "Windows", w[2], w[3]
      end
    end
  end,
  function(s)  -- Mac OS X 10_15_7, Intel Mac OS X 10.15
    local p = 1
    while true do
      local a, e = find(s, "OS[ +]X[%s+/]", p)
      if not a then break end
      local before = sub(s, math.max(1, a - 4), a - 1)
      if find(before, "Mac[ +]?$") or find(before, "; $") then
        local v1, v2, rest = match(s, "^(%d+)[_.](%d+)(.*)", e + 1)
        if v1 then return "Mac OS X", v1, v2, match(rest, "^[_.](%d+)") end
        if sub(s, e + 1, e + 6) == "Mach-O" then return "Mac OS X" end
      end
      p = a + 1
    end
    if find(s, "Mac_PowerPC", 1, true) then return "Mac OS" end
    if find(s, "PPC Mac OS X", 1, true) or find(s, "Intel Mac OS X", 1, true) then return "Mac OS X" end
  end,
  function(s)  -- iOS: CPU iPhone OS 17_2, CPU OS 16_1
    local v1, v2, rest = match(s, "CPU[ +]i?P?h?o?n?e?[ +]?OS[ +]+(%d+)[_.](%d+)(.*)")
    if not v1 then v1, v2, rest = match(s, "iPhone[ +]OS[ +]+(%d+)[_.](%d+)(.*)") end
    if v1 then return "iOS", v1, v2, match(rest, "^[_.](%d+)") end
    if find(s, "iPhone", 1, true) or find(s, "iPad", 1, true) or find(s, "iPod", 1, true) then return "iOS" end
  end,
  function(s)
    local v1, v2, rest = match(s, "CrOS [%l%d_]+ (%d+)%.(%d+)(.*)")
    if v1 then return "Chrome OS", v1, v2, match(rest, "^%.(%d+)") end
    if find(s, "[Dd]ebian") then return "Debian" end
  end,
  function(s)  -- distributions with a version
    for _, name in ipairs({ "Fedora", "Red Hat", "PCLinuxOS", "Puppy", "Ubuntu", "Kindle", "Bada", "Sailfish",
      "Lubuntu", "BackTrack", "Slackware" }) do
      local v1, v2, v3, v4 = match(s, name .. "[/ ](%d+)%.(%d+)%.?(%d*)%.?(%d*)")
      if v1 then return name, v1, v2, v3, v4 end
    end
  end,
  function(s)  -- just the name
    for _, name in ipairs({ "Windows", "Android", "WeTab", "Maemo", "Web0S", "Ubuntu", "Kubuntu", "Arch Linux",
      "CentOS", "Slackware", "Gentoo", "openSUSE", "SUSE", "Red Hat", "Fedora", "PCLinuxOS", "Mageia" }) do
      if find(s, name, 1, true) then return name end
    end
  end,
  function(s)  -- Linux/4.9.184-..., Linux
    local a, e = find(s, "Linux", 1, true)
    if a then
      local v1, v2, rest = match(s, "^[ /](%d+)%.(%d+)(.*)", e + 1)
      if v1 then return "Linux", v1, v2, match(rest, "^%.(%d+)") end
      return "Linux"
    end
    if find(s, "SunOS", 1, true) then return "Solaris" end
    if find(s, "(linux-gnu)", 1, true) then return "Linux" end
    if find(s, "linux", 1, true) then return "Linux" end  -- os/linux#6.8.0 (SDKs' own format)
  end,
}

---------------------------------------------------------------------------------------------
-- Devices (device_parsers)
---------------------------------------------------------------------------------------------

-- The "Spider" pattern, searched without regard to case: these words anywhere ("bot" catches
-- botocore, hence aws-cli 1.x and boto3 are "Spider"), and these at the start.
M.SPIDER_WORDS = {
  "bot", "bubing", "zao", "borg", "dbot", "oegp", "silk", "xenu", "zeal", "ccbot", "crawl", "htdig", "lycos",
  "slurp", "teoma", "voila", "yahoo", "sogou", "cibra", "nutch", "daumoa", "daum", "genieo", "ichiro", "larbin",
  "pompos", "scrapy", "snappy", "speedy", "spider", "msnbot", "msrbot", "vortex", "crawler", "favicon", "indexer",
  "riddler", "scooter", "scraper", "scrubby", "whatweb", "winhttp", "bingbot", "bingpreview", "openbot", "gigabot",
  "furlbot", "polybot", "seekbot", "archiver", "icarus6j", "mogimogi", "netvibes", "blitzbot", "altavista",
  "charlotte", "findlinks", "retreiver", "tlsprober", "wordpress", "seznambot", "prooxibot", "wsr-agent",
  "squrl java", "etaospider", "paperlibot", "sputnikbot", "a6-indexer", "netresearch", "searchsight",
  "baiduspider", "yisouspider", "icc-crawler", "http%20client", "python-urllib", "dataparksearch",
  "converacrawler", "screaming frog", "appengine-google", "yahoocachesystem", "fast-webcrawler",
  "sogou pic spider", "semanticdiscovery", "innovazion crawler", "facebookexternalhit",
  "google-http-java-client", "blogbridge", "iltrovatore-setaccio", "internetarchive", "gomezagent",
  "webthumbnail", "heritrix", "newsgator", "pagepeeker", "reaper", "zooshot", "holmes", "nl-crawler", "pingdom",
  "statuscake", "whatsapp", "masscan", "google web preview", "qwantify", "yeti", "ogscrper",
}
M.SPIDER_STARTS = { "ning", "java/", "jnlp/", "vortex", "voyager" }

M.DEVICES = {
  function(s)  -- Apple's own
    local dev, model = match(s, "(iP[ha][od]n?e?)(%d+,%d+)")
    if dev == "iPhone" or dev == "iPad" or dev == "iPod" then return dev, model end
    if find(s, "iPad;", 1, true) or find(s, "iPad Simulator;", 1, true) then return "iPad" end
    if find(s, "iPod;", 1, true) or find(s, "iPod touch;", 1, true) or find(s, "iPod Simulator;", 1, true) then
      return "iPod"
    end
    if find(s, "iPhone", 1, true) then return "iPhone" end
  end,
  function(s)  -- Google's phones, then any Android as the file's generic catch-alls
    local model = match(s, "; *(Pixel.-) Build") or match(s, "; *(Pixel.-)%) AppleWebKit")
    if model then return model end
    local l = lower(s)
    if find(l, "android 3%.%d") or find(l, "tablet; .+firefox/") or find(l, "android.*tab")
      or find(l, "android.*pad") then
      return "Generic Tablet"
    end
    if find(s, "Android", 1, true) or find(s, "iPhone OS", 1, true) or find(s, "Windows Phone", 1, true) then
      return "Generic Smartphone"
    end
  end,
  function(s)
    local l = lower(s)
    for _, w in ipairs(M.SPIDER_WORDS) do
      if find(l, w, 1, true) then return "Spider" end
    end
    for _, w in ipairs(M.SPIDER_STARTS) do
      if sub(l, 1, #w) == w then return "Spider" end
    end
    if find(l, "google.*/%+/web/snippet") then return "Spider" end
  end,
  function(s)
    if find(s, "Mac OS", 1, true) then return "Mac" end
  end,
}

---------------------------------------------------------------------------------------------
-- Parsing
---------------------------------------------------------------------------------------------

local function first(rules, s)
  for _, rule in ipairs(rules) do
    local name, v1, v2, v3, v4
    if type(rule) == "function" then
      name, v1, v2, v3, v4 = rule(s)
    else
      name, v1, v2, v3, v4 = token_version(rule, s)
    end
    if name then return name, v1, v2, v3, v4 end
  end
  return nil
end

-- Parts joined with "." up to the first missing or empty one.
local function version(v1, v2, v3, v4)
  if v1 == nil or v1 == "" then return nil end
  local v = v1
  for _, p in ipairs({ v2 or "", v3 or "", v4 or "" }) do
    if p == "" then break end
    v = v .. "." .. p
  end
  return v
end

local function parse_uncached(s)
  local r = {}
  local name, v1, v2, v3, v4 = first(M.AGENTS, s)
  r.name = name or "Other"
  r.version = version(v1, v2, v3, v4)
  local os_name
  os_name, v1, v2, v3, v4 = first(M.SYSTEMS, s)
  if os_name then
    local v = version(v1, v2, v3, v4)
    r.os = { name = os_name, version = v, full = v and (os_name .. " " .. v) or nil }
  end
  r.device = { name = first(M.DEVICES, s) or "Other" }
  return r
end

M.MAX_CACHED = 1024
local cache, cached = {}, 0

-- The fields for one user agent string (shared, cached: do not change it); nil for a non-string.
function M.parse(s)
  if type(s) ~= "string" then return nil end
  local r = cache[s]
  if r then return r end
  r = parse_uncached(s)
  if cached >= M.MAX_CACHED then cache, cached = {}, 0 end
  cache[s] = r
  cached = cached + 1
  return r
end

-- How many strings the cache holds (for the specs).
function M.cached() return cached end

return M
