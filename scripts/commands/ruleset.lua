-- ruleset.lua: from command-line arguments to rule files and loaded rules.
--
--   ruleset.files(args, default_dir) -> paths, errors   RULE and DIR arguments; none: default_dir
--   ruleset.find(arg, dir) -> path | nil, message       a file, or a rule of dir by file name,
--                                                       rule_id or name (show, explain, dev)
--   ruleset.load(path, log) -> rule | nil, diagnostic   loader.load_file under an instruction budget;
--                                                       an Elastic (.toml) or Sigma (.yml) file: a
--                                                       diagnostic that says to import it
--   ruleset.diagnostic(path, message) -> { file, line, col, msg }  from a "file:line:col: msg" string
--   ruleset.source(path) -> text | nil
--   ruleset.line_of(src, text) -> line of the first occurrence of text, or nil
--   ruleset.guard(fn, ...) -> pcall(fn, ...) that stops endless loops
--
-- The commands run rules in their own Lua state, so an endless loop or a
-- memory bomb in a rule would hang or sink `test` or `dev`: guard stops any
-- call after BUDGET instructions. In the binary it is the C host's limited call
-- (engine.c, "Limits": the memory budget too, and no pcall in the rule can
-- swallow either); under plain lua5.4 (specs), a debug hook.

local loader = require "loader"

local M = {}

M.BUDGET = 200000000  -- instructions per guarded call; a rule's test runs in a few thousand

function M.source(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local src = f:read("a")
  f:close()
  return src
end

M.line_of = require("srcpos").line_of

-- A message "path:line:col: msg", "path:line: msg" or "path: msg" as a table.
function M.diagnostic(path, message)
  message = tostring(message)
  local rest = message
  if message:sub(1, #path + 1) == path .. ":" then rest = message:sub(#path + 2) end
  local line, col, msg = rest:match("^(%d+):(%d+): (.*)$")
  if not line then line, msg = rest:match("^(%d+): (.*)$") end
  if not line then msg = rest:gsub("^%s+", "") end
  return { file = path, line = tonumber(line), col = tonumber(col), msg = msg }
end

-- "path:line:col" of a diagnostic.
function M.where(d)
  local s = d.file
  if d.line then s = s .. ":" .. d.line end
  if d.line and d.col then s = s .. ":" .. d.col end
  return s
end

-- Where the host's own scripts live: a stopped loop is reported at the first
-- frame outside them (the rule's line), not inside event.lua.
local SCRIPTS = debug.getinfo(1, "S").source:match("^@(.*/)commands/") or "\0"

local function stop()
  local where = ""
  for level = 2, 64 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    local src = info.source
    if src:sub(1, 1) == "@" and src:sub(2, #SCRIPTS + 1) ~= SCRIPTS and info.currentline > 0 then
      where = src:sub(2) .. ":" .. info.currentline .. ": "
      break
    end
  end
  error(string.format("%sstopped after %d instructions (an endless loop?)", where, M.BUDGET), 0)
end

local has_sys, sys = pcall(require, "thsys")
local limited = has_sys and sys.limited
local budget = { instructions = M.BUDGET }

function M.guard(fn, ...)
  if limited then
    budget.instructions = M.BUDGET
    return limited(budget, fn, ...)
  end
  debug.sethook(stop, "", M.BUDGET)
  local r = table.pack(pcall(fn, ...))
  debug.sethook()
  return table.unpack(r, 1, r.n)
end

-- Rule files of another tool, which `trailhound import` turns into modules.
local FOREIGN = { toml = "an Elastic rule", yml = "a Sigma rule", yaml = "a Sigma rule" }
local function foreign(path)
  local ext = path:match("%.(%w+)$")
  return ext and FOREIGN[ext:lower()]
end

function M.load(path, log)
  local what = foreign(path)
  if what then
    return nil, { file = path, msg = "this is " .. what .. ": run trailhound import " .. path }
  end
  local ok, rule, err = M.guard(loader.load_file, path, { log = log })
  if not ok then return nil, M.diagnostic(path, rule) end
  if not rule then return nil, M.diagnostic(path, err) end
  return rule
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The C host gives stat and listdir (thsys); under plain lua5.4 (specs) the
-- shell answers.

local function is_dir(path)
  if has_sys then
    local st = sys.stat(path)
    return st ~= nil and st.dir == true
  end
  local p = io.popen("test -d " .. shell_quote(path) .. " && echo d")
  local out = p and p:read("a") or ""
  if p then p:close() end
  return out:find("d") ~= nil
end
M.is_dir = is_dir

-- The *.lua files of a directory, sorted.
function M.list(dir)
  local paths = {}
  for _, name in ipairs(loader.list(dir) or {}) do
    if name:match("%.lua$") then paths[#paths + 1] = (dir:gsub("/+$", "")) .. "/" .. name end
  end
  return paths
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end
M.exists = exists

function M.files(args, default_dir)
  local paths, errors, seen = {}, {}, {}
  local function add(p)
    if not seen[p] then
      seen[p] = true
      paths[#paths + 1] = p
    end
  end
  if #args == 0 then args = { default_dir } end
  for _, a in ipairs(args) do
    if is_dir(a) then
      local list = M.list(a)
      if #list == 0 then
        local n = {}
        for _, name in ipairs(loader.list(a) or {}) do
          local what = foreign(name)
          if what then n[what] = (n[what] or 0) + 1 end
        end
        local held = {}
        for _, what in ipairs({ "an Elastic rule", "a Sigma rule" }) do
          if n[what] then
            held[#held + 1] = n[what] == 1 and what or (n[what] .. " " .. what:gsub("^an? ", "") .. "s")
          end
        end
        errors[#errors + 1] = a .. ": no rule files (*.lua) in this directory" .. (#held > 0 and
          ("; it holds " .. table.concat(held, " and ") .. ": run trailhound import " .. a) or "")
      end
      for _, p in ipairs(list) do add(p) end
    elseif exists(a) then
      add(a)
    else
      errors[#errors + 1] = a .. ": no such file or directory"
    end
  end
  return paths, errors
end

function M.find(arg, dir)
  if exists(arg) and not is_dir(arg) then return arg end
  if is_dir(arg) then return nil, arg .. ": a directory; name one rule file" end
  for _, p in ipairs({ dir .. "/" .. arg, dir .. "/" .. arg .. ".lua" }) do
    if exists(p) and not is_dir(p) then return p end
  end
  -- By rule_id (or its first 8 characters) or by name, among the rules of dir.
  for _, p in ipairs(M.list(dir)) do
    local rule = M.load(p)
    if rule and (rule.id == arg or rule.name == arg or (#arg >= 8 and tostring(rule.id):sub(1, #arg) == arg)) then
      return p
    end
  end
  return nil, string.format("%s: no such rule file, and no rule in %s has this file name, rule_id or name", arg, dir)
end

return M
