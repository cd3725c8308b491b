-- cli.lua: the rule authoring commands (DESIGN.md, "Command line").
--
--   trailhound test    [--format text|tap|junit] [RULE|DIR]...
--   trailhound check   [--strict] [RULE|DIR]...
--   trailhound explain [--record N] RULE EVENTS[:LINE]
--   trailhound show    RULE
--   trailhound new     NAME
--   trailhound dev     RULE [EVENTS...]
--   trailhound import  [--out DIR] [--force] FILE|DIR...
--   trailhound export  RULE
--
-- The C host runs cli.main(argv) in a Lua state of its own (argv[1] is the
-- command) and exits with what it returns: 0 success, 1 a test or check failed
-- or the input was bad, 2 bad usage. Nothing escapes main: every error is
-- printed as a message naming its file and line, never as a traceback.
-- A RULE is a file, or a rule of the default rules directory named by its
-- file name, rule_id (or its first 8 characters) or name. The default rules
-- directory is ./rules when it exists, else the one installed with trailhound.

local M = {}

local USAGE = {
  test = "trailhound test [--format text|tap|junit] [RULE|DIR]...\n"
    .. "  run every rule's embedded tests; a failing test shows the fields the rule reads\n"
    .. "  and the clause that decided its verdict. Exit 1 when a test fails.",
  check = "trailhound check [--strict] [--config FILE] [--geoip-asn FILE] [--geoip-city FILE] [RULE|DIR]...\n"
    .. "  compile each rule and validate it against Elastic's rule schema; a field that no\n"
    .. "  source produces is a warning (--strict: warnings fail too). Exit 1 on an error.",
  explain = "trailhound explain [--record N] RULE EVENTS[:LINE]\n"
    .. "  show the fields RULE reads in each event of EVENTS, each clause of its query with its\n"
    .. "  truth value, and the verdict. EVENTS is a file (or - for standard input) of raw\n"
    .. "  CloudTrail or ECS: one JSON object, NDJSON, or a CloudTrail S3 object {\"Records\":[...]};\n"
    .. "  plain or gzip (found by its first bytes). :LINE picks the record on that line (from 1;\n"
    .. "  a name holding a colon is taken whole when such a file exists); --record N the record\n"
    .. "  of index N (from 0, as messages and alerts' trailhound.source.index count) of a\n"
    .. "  CloudTrail S3 object or array.",
  show = "trailhound show RULE\n  print the rule's metadata and its investigation guide.",
  new = "trailhound new NAME\n"
    .. "  write rules/NAME.lua (snake_case; or the path NAME) from a template that passes\n"
    .. "  check and test as written. Never overwrites a file.",
  dev = "trailhound dev RULE [EVENTS...]\n"
    .. "  watch RULE; at every save, check it, run its tests and show which EVENTS match.\n"
    .. "  Ctrl-C stops.",
  import = "trailhound import [--out DIR] [--force] FILE|DIR...\n"
    .. "  turn Elastic detection rules (.toml) and Sigma rules (.yml, .yaml) into rule modules\n"
    .. "  in DIR (default ./rules): every key of the rule word for word (a Sigma rule's under\n"
    .. "  sigma), its investigation guide and query as written, a header naming its source, its\n"
    .. "  license and author, and an empty test list to fill in. A DIR argument: its .toml, .yml\n"
    .. "  and .yaml files. One line per file (imported; imported, not runnable yet, and why; not\n"
    .. "  imported, and why), then the counts. ES|QL and machine learning rules, and Sigma\n"
    .. "  features trailhound does not read, are not imported. An existing module is not\n"
    .. "  replaced unless --force. Exit 1 when a file could not be read, parsed or written.",
  export = "trailhound export RULE\n"
    .. "  write RULE back as an Elastic rule file (TOML) on standard output: [metadata] and\n"
    .. "  [rule] with every key of the module but its tests; import then export gives back the\n"
    .. "  same fields. A rule with a Lua match function, or a Sigma rule, is not exported.",
}
local ORDER = { "test", "check", "explain", "show", "new", "dev", "import", "export" }

local out = io.stdout
local err = io.stderr

-- A user-facing failure: raised with fail(), printed by main, never a traceback.
local Failure = {}
local function fail(code, msg)
  error(setmetatable({ code = code, msg = msg }, Failure), 0)
end

local function usage_text(cmd)
  if USAGE[cmd] then return "usage: " .. USAGE[cmd] .. "\n" end
  local lines = {}
  for i, c in ipairs(ORDER) do
    lines[i] = (i == 1 and "usage: " or "       ") .. USAGE[c]:match("^[^\n]*")
  end
  return table.concat(lines, "\n") .. "\n"
end

local function usage_error(cmd, msg)
  fail(2, string.format("trailhound %s: %s\n%s", cmd, msg, usage_text(cmd)))
end

-- Options and positional arguments. spec: option name -> "flag" | "value".
local function parse(cmd, args, spec)
  local opts, pos = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    elseif a == "-h" or a == "--help" then
      opts.help = true
    elseif a:sub(1, 2) == "--" then
      local name, value = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local kind = spec[name]
      if not kind then usage_error(cmd, "unknown option '" .. a .. "'") end
      if kind == "value" then
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then usage_error(cmd, "option --" .. name .. " needs a value") end
        end
        opts[name] = value
      else
        if value ~= nil then usage_error(cmd, "option --" .. name .. " takes no value") end
        opts[name] = true
      end
    elseif a ~= "-" and a:sub(1, 1) == "-" and not a:match("^%-:%d+$") then  -- -:LINE is standard input's line
      usage_error(cmd, "unknown option '" .. a .. "'")
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return opts, pos
end

------------------------------------------------------------------------------
-- Environment: the terminal, the rules directory
------------------------------------------------------------------------------

local sys       -- thsys, loaded by main
local style = require "style"
local ruleset = require "ruleset"

local function styler()
  return style.new(style.want_color(sys.isatty(1)))
end

local function width()
  local w = sys.columns and sys.columns()
  if not w or w < 40 then return 80 end
  return math.min(w, 120)
end

local function default_rules()
  if ruleset.is_dir("rules") then return "rules" end
  return sys.home .. "/rules"
end

local function log(msg) err:write(msg, "\n") end

-- RULE argument to a loaded rule, or a failure naming the file and line.
local function load_rule(cmd, arg)
  local path, msg = ruleset.find(arg, default_rules())
  if not path then fail(1, "trailhound " .. cmd .. ": " .. msg) end
  local rule, d = ruleset.load(path, log)
  if not rule then fail(1, "trailhound " .. cmd .. ": " .. ruleset.where(d) .. ": " .. d.msg) end
  return rule
end

local function rule_files(cmd, pos)
  local paths, errors = ruleset.files(pos, default_rules())
  for _, e in ipairs(errors) do err:write("trailhound ", cmd, ": ", e, "\n") end
  return paths, #errors > 0
end

------------------------------------------------------------------------------
-- Commands
------------------------------------------------------------------------------

local commands = {}

function commands.test(args)
  local opts, pos = parse("test", args, { format = "value" })
  if opts.help then out:write(usage_text("test")) return 0 end
  local format = opts.format or "text"
  local testrun = require "testrun"
  if not ({ text = true, tap = true, junit = true })[format] then
    usage_error("test", "--format must be text, tap or junit, not '" .. format .. "'")
  end
  local paths, bad = rule_files("test", pos)
  local report = testrun.run(paths, { log = log })
  if format == "text" then
    out:write(testrun.text(report, styler(), width()))
  else
    out:write(testrun[format](report))
  end
  return (report.ok and not bad) and 0 or 1
end

function commands.check(args)
  local opts, pos = parse("check", args, { strict = "flag", config = "value", ["geoip-asn"] = "value",
    ["geoip-city"] = "value" })
  if opts.help then out:write(usage_text("check")) return 0 end
  local check = require "check"
  local t = styler()
  -- What the configuration makes the normalizer produce: source.as/geo with MaxMind databases.
  local geoip = { asn = opts["geoip-asn"] ~= nil, city = opts["geoip-city"] ~= nil }
  if opts.config then
    local chunk, why = loadfile(opts.config, "t", {})
    local ok, conf = false, why
    if chunk then ok, conf = pcall(chunk) end
    if not ok or type(conf) ~= "table" then
      usage_error("check", "--config " .. opts.config .. ": " .. tostring(conf))
    end
    if type(conf.geoip) == "table" then
      geoip.asn = geoip.asn or conf.geoip.asn ~= nil
      geoip.city = geoip.city or conf.geoip.city ~= nil
    end
  end
  local paths, bad = rule_files("check", pos)
  local diags, stats = check.files(paths, { log = log, geoip = geoip })
  for _, d in ipairs(diags) do
    local level = d.level == "error" and t.red("error") or t.yellow("warning")
    out:write(ruleset.where(d), ": ", level, ": ", d.msg, "\n")
  end
  local failed = stats.errors > 0 or (opts.strict and stats.warnings > 0)
  local s = string.format("%d rule%s checked: %d error%s, %d warning%s", stats.rules, stats.rules == 1 and "" or "s",
    stats.errors, stats.errors == 1 and "" or "s", stats.warnings, stats.warnings == 1 and "" or "s")
  if #diags > 0 then out:write("\n") end
  out:write((failed and t.red(s) or (stats.warnings > 0 and t.yellow(s) or t.green(s))), "\n")
  return (failed or bad) and 1 or 0
end

-- EVENTS[:LINE] to the file and the line (nil: every record). The whole
-- argument is a file name when such a file exists: a:b:3 is line 3 of a:b.
local function events_arg(arg)
  if arg == "-" or ruleset.exists(arg) then return arg end
  local file, line = arg:match("^(.+):(%d+)$")
  if not file then return arg end
  line = math.tointeger(tonumber(line))
  if not line or line < 1 then usage_error("explain", "'" .. arg .. "': lines are counted from 1") end
  return file, line
end

function commands.explain(args)
  local opts, pos = parse("explain", args, { record = "value" })
  if opts.help then out:write(usage_text("explain")) return 0 end
  if #pos ~= 2 then usage_error("explain", "expected a rule and an event file, got " .. #pos .. " argument" ..
    (#pos == 1 and "" or "s")) end
  local record
  if opts.record then
    record = opts.record:match("^%d+$") and math.tointeger(tonumber(opts.record))
    if not record then
      usage_error("explain", "--record takes a record's index, from 0 (as in 'record 17'), not '" .. opts.record .. "'")
    end
  end
  local explain = require "explain"
  local normalize = require "normalize"
  local samples = require "samples"
  local file, line = events_arg(pos[2])
  local rule = load_rule("explain", pos[1])
  local list, msg = samples.read(file, { line = line, record = record })
  if not list then fail(1, "trailhound explain: " .. msg) end
  local t, w = styler(), width()
  local code = 0
  for i, s in ipairs(list) do
    if i > 1 then out:write("\n", string.rep("-", math.min(w, 72)), "\n\n") end
    local ok, doc = pcall(normalize.normalize, s.record, { now = os.date("!%Y-%m-%dT%H:%M:%S.000Z") })
    if not ok then fail(1, "trailhound explain: " .. s.where .. ": the normalizer failed: " .. tostring(doc)) end
    local gok, x = ruleset.guard(explain.run, rule, doc, s.record)
    if not gok then x = { err = tostring(x), fields = {} } end
    local lines = {}
    local function say(l) lines[#lines + 1] = l end
    say(t.dim("rule     ") .. t.bold(rule.name))
    say(t.dim("file     ") .. rule.file)
    say(t.dim("event    ") .. s.where .. (#list > 1 and string.format(" (%d of %d)", i, #list) or "") .. ", "
      .. (s.raw and "raw CloudTrail, normalized to ECS" or "an ECS document"))
    say("")
    say(t.bold("fields the rule reads"))
    if #(x.fields or {}) == 0 then say("  (none)") end
    for _, l in ipairs(explain.field_lines(x.fields or {}, "  ")) do say(l) end
    if x.tree then
      say("")
      say(t.bold("clauses"))
      for _, l in ipairs(explain.tree_lines(x.tree, t, "  ")) do say(l) end
    end
    say("")
    if x.err then
      say(t.bold("verdict  ") .. t.red("error: the rule failed: " .. x.err))
      code = 1
    else
      local word = explain.verdict_word(x.verdict)
      say(t.bold("verdict  ") .. (x.verdict and t.green(word) or t.red(word)))
      say(t.dim("because  ") .. explain.because(x, rule.file))
    end
    out:write(table.concat(lines, "\n"), "\n")
  end
  return code
end

function commands.show(args)
  local opts, pos = parse("show", args, {})
  if opts.help then out:write(usage_text("show")) return 0 end
  if #pos ~= 1 then usage_error("show", "expected one rule, got " .. #pos .. " arguments") end
  local show = require "show"
  local rule = load_rule("show", pos[1])
  out:write(table.concat(show.lines(rule, styler(), width()), "\n"), "\n")
  return 0
end

local function random_bytes(n)
  local f = io.open("/dev/urandom", "rb")
  if not f then fail(1, "trailhound new: cannot read /dev/urandom for a fresh rule_id") end
  local b = f:read(n)
  f:close()
  return b
end

function commands.new(args)
  local opts, pos = parse("new", args, {})
  if opts.help then out:write(usage_text("new")) return 0 end
  if #pos ~= 1 then usage_error("new", "expected one rule name, got " .. #pos .. " arguments") end
  local template = require "template"
  local name = pos[1]
  if template.snake(name:gsub("^.*/", ""):gsub("%.lua$", "")) == "" then
    usage_error("new", "'" .. name .. "' has no letters or digits to make a file name of")
  end
  local path = template.path(name)
  if ruleset.exists(path) or ruleset.is_dir(path) then
    fail(1, "trailhound new: " .. path .. " already exists; not overwritten")
  end
  local dir = path:match("^(.*)/[^/]*$") or "."
  if not ruleset.is_dir(dir) then
    if dir == "rules" then
      os.execute("mkdir -p rules")
    end
    if not ruleset.is_dir(dir) then fail(1, "trailhound new: " .. dir .. ": no such directory") end
  end
  local rule_id = template.uuid4(random_bytes(16))
  local title = template.title(name)
  local text = template.text({
    name = title, rule_id = rule_id, path = path, date = os.date("%Y/%m/%d"),
    author = os.getenv("USER"), ids = { template.uuid4(random_bytes(16)), template.uuid4(random_bytes(16)) },
  })
  local f, e = io.open(path, "wb")
  if not f then fail(1, "trailhound new: " .. tostring(e)) end
  f:write(text)
  f:close()
  local t = styler()
  out:write(t.green(style.OK), " created ", t.bold(path), "\n")
  out:write("  name     ", title, "\n")
  out:write("  rule_id  ", rule_id, "\n\n")
  out:write("Edit its query and tests, and watch them as you save:\n")
  out:write("  trailhound dev ", path, " [EVENTS...]\n")
  return 0
end

function commands.dev(args)
  local opts, pos = parse("dev", args, {})
  if opts.help then out:write(usage_text("dev")) return 0 end
  if #pos < 1 then usage_error("dev", "expected a rule file to watch") end
  local path, msg = ruleset.find(pos[1], default_rules())
  if not path then fail(1, "trailhound dev: " .. msg) end
  local events = {}
  for i = 2, #pos do events[#events + 1] = pos[i] end
  local dev = require "dev"
  local tty = sys.isatty(1)
  dev.watch({
    rule = path, events = events, t = styler(), width = width(), tty = tty, sys = sys,
    write = function(s) out:write(s) out:flush() end,
  })
  return 0
end

function commands.import(args)
  local opts, pos = parse("import", args, { out = "value", force = "flag" })
  if opts.help then out:write(usage_text("import")) return 0 end
  if #pos == 0 then usage_error("import", "expected rule files or folders to import") end
  local import = require "import"
  local results, summary = import.run(pos, { out = opts.out, force = opts.force })
  out:write(table.concat(import.lines(results, summary, styler()), "\n"), "\n")
  return summary.ok and 0 or 1
end

function commands.export(args)
  local opts, pos = parse("export", args, {})
  if opts.help then out:write(usage_text("export")) return 0 end
  if #pos ~= 1 then usage_error("export", "expected one rule, got " .. #pos .. " arguments") end
  local export = require "export"
  local path, msg = export.find(pos[1], default_rules())
  if not path then fail(1, "trailhound export: " .. msg) end
  local mod, lerr = export.load(path)
  if not mod then fail(1, "trailhound export: " .. lerr) end
  local text, why = export.toml(mod)
  if not text then fail(1, "trailhound export: " .. path .. ": " .. why) end
  out:write(text)
  return 0
end

------------------------------------------------------------------------------
-- main
------------------------------------------------------------------------------

function M.main(argv)
  local ok, result = xpcall(function()
    sys = sys or require "thsys"
    local cmd = argv[1]
    local f = commands[cmd]
    if not f then
      fail(2, string.format("trailhound %s: %s\n%s", tostring(cmd), cmd and "unknown command" or "no command",
        usage_text()))
    end
    local args = {}
    for i = 2, #argv do args[#args + 1] = argv[i] end
    return f(args)
  end, function(e)
    if getmetatable(e) == Failure then return e end
    return { internal = tostring(e), trace = debug.traceback("", 2) }
  end)
  if ok then
    out:flush()
    return math.tointeger(result) or 0
  end
  out:flush()
  if getmetatable(result) == Failure then
    err:write(result.msg, result.msg:sub(-1) == "\n" and "" or "\n")
    return result.code
  end
  err:write("trailhound ", tostring(argv[1]), ": internal error: ", result.internal, "\n")
  if os.getenv("TRAILHOUND_DEBUG") then err:write(result.trace, "\n") end
  return 1
end

-- For specs: the commands and the argument parser, and what main writes to
-- and asks the system, without the C host.
M.commands, M.parse = commands, parse
function M.set_sys(s) sys = s end
function M.set_streams(o, e) out, err = o, e end

return M
