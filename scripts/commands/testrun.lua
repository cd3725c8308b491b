-- testrun.lua: `trailhound test`, every rule's embedded tests.
--
--   local report = testrun.run(paths, opts)     opts.log: where a rule's print goes
--   testrun.text(report, t, width) -> text      t: a term styler
--   testrun.tap(report) -> text                 TAP version 13
--   testrun.junit(report) -> text               JUnit XML, one testsuite per rule
--   report.ok                                   no test failed, every rule loaded
--
-- report.rules[i] = { file, name, error = diagnostic (the rule did not load), results }
-- results[j] = { name, expect, got, ok, err, line, fields, because }: a failing
-- test carries the normalized fields the rule reads with their values, and the
-- clause that decided its verdict (explain.lua).

local explain = require "explain"
local loader = require "loader"
local normalize = require "normalize"
local ruleset = require "ruleset"
local style = require "style"
local check = require "check"

local M = {}

-- Tests are normalized with a fixed ingest time: a test's verdict must not
-- depend on when it runs.
local CTX = { now = "2024-01-01T00:00:00.000Z" }
local function norm(rec) return normalize.normalize(rec, CTX) end

local function explain_failure(rule, test, file)
  local ok, x = ruleset.guard(function() return explain.run(rule, norm(test.event), test.event) end)
  if not ok or x.err then return nil, nil end
  return x.fields, explain.because(x, file)
end

function M.run(paths, opts)
  opts = opts or {}
  local report = { rules = {}, tests = 0, passed = 0, failed = 0, broken = 0, ok = true }
  for _, path in ipairs(paths) do
    local entry = { file = path, results = {} }
    report.rules[#report.rules + 1] = entry
    local rule, d = ruleset.load(path, opts.log)
    if not rule then
      entry.error = d
      report.broken = report.broken + 1
      report.ok = false
    else
      entry.name = rule.name
      local src = ruleset.source(path)
      local tests = rule.meta.tests
      if tests ~= nil and type(tests) ~= "table" then tests = { tests } end
      for i, test in ipairs(tests or {}) do
        -- One test at a time, each guarded: a test that loops forever or
        -- is not even a table is reported, and the others still run.
        local r
        if type(test) ~= "table" then
          r = { name = "test " .. i, ok = false, err = "must be a table { name, expect, event }" }
        else
          local ok, results = ruleset.guard(loader.run_tests, rule, norm, { test })
          r = ok and results[1] or { expect = test.expect, ok = false, err = tostring(results) }
          if r.err == "test has no boolean 'expect'" then
            r.err = "no expect = true or false (the verdict the rule must give)"
          elseif r.err == "test has no event table" then
            r.err = "no event table"
          elseif r.err == "test has no events list" then
            r.err = "events must be a list of events"
          elseif r.err == "test has no whole number 'expect'" then
            r.err = "a test of several events needs expect = the number of alerts they make"
          elseif r.err then
            r.err = "the rule failed: " .. r.err
          end
          r.name = type(test.name) == "string" and test.name or ("test " .. i)
          if not r.ok and not r.err and test.event then r.fields, r.because = explain_failure(rule, test, path) end
        end
        r.line = check.test_line(src, test)
        report.tests = report.tests + 1
        if r.ok then report.passed = report.passed + 1 else report.failed = report.failed + 1 end
        entry.results[#entry.results + 1] = r
      end
    end
  end
  if report.failed > 0 then report.ok = false end
  return report
end

local function plural(n, word) return n .. " " .. word .. (n == 1 and "" or "s") end

local function verdict(v)
  if v == nil then return "an error" end
  if math.type(v) == "integer" then return plural(v, "alert") end
  return explain.verdict_word(v)
end

-- What went wrong with a result, one line.
local function problem(r)
  if r.err then return r.err end
  return string.format("expected %s, got %s", verdict(r.expect), verdict(r.got))
end

function M.summary(report)
  local parts = {}
  if report.failed == 0 then
    parts[1] = plural(report.tests, "test") .. " passed"
  else
    parts[1] = string.format("%s: %d passed, %d failed", plural(report.tests, "test"), report.passed, report.failed)
  end
  local n = #report.rules
  parts[#parts + 1] = string.format(" (%s", plural(n, "rule"))
  if report.broken > 0 then parts[#parts + 1] = string.format(", %d not loaded", report.broken) end
  parts[#parts + 1] = ")"
  return table.concat(parts)
end

-- The lines of one rule's results: a mark and name a test, and under a
-- failing one what went wrong, the fields the rule reads and the deciding clause.
function M.rule_lines(e, t, indent)
  indent = indent or "  "
  local out = {}
  local function say(s) out[#out + 1] = indent .. s end
  if e.error then
    say(t.mark(false) .. " " .. ruleset.where(e.error) .. ": " .. e.error.msg)
  elseif #e.results == 0 then
    say(t.yellow("-") .. " no tests")
  end
  for _, r in ipairs(e.results) do
    say(t.mark(r.ok) .. " " .. r.name)
    if not r.ok then
      say("    " .. e.file .. ":" .. r.line .. ": " .. t.red(problem(r)))
      if r.fields then
        say("    fields the rule reads:")
        for _, l in ipairs(explain.field_lines(r.fields, "      ")) do say(l) end
      end
      if r.because then say("    decided by: " .. r.because) end
    end
  end
  return out
end

function M.text(report, t)
  local out = {}
  for _, e in ipairs(report.rules) do
    out[#out + 1] = t.bold(e.file) .. (e.name and ("  " .. t.dim(e.name)) or "")
    for _, l in ipairs(M.rule_lines(e, t)) do out[#out + 1] = l end
  end
  out[#out + 1] = ""
  local s = M.summary(report)
  out[#out + 1] = report.ok and t.green(s) or t.red(s)
  return table.concat(out, "\n") .. "\n"
end

-- A YAML double-quoted scalar.
local function yq(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
end

function M.tap(report)
  local lines, n = {}, 0
  local function say(s) lines[#lines + 1] = s end
  for _, e in ipairs(report.rules) do
    if e.error then
      n = n + 1
      say(string.format("not ok %d - %s: does not load", n, e.file))
      say("  ---")
      say("  message: " .. yq(e.error.msg))
      say("  at: " .. yq(ruleset.where(e.error)))
      say("  ...")
    elseif #e.results == 0 then
      n = n + 1
      say(string.format("ok %d - %s # SKIP no tests", n, e.file))
    end
    for _, r in ipairs(e.results) do
      n = n + 1
      local name = (e.file .. ": " .. r.name):gsub("#", "\\#")
      if r.ok then
        say(string.format("ok %d - %s", n, name))
      else
        say(string.format("not ok %d - %s", n, name))
        say("  ---")
        say("  message: " .. yq(problem(r)))
        say("  at: " .. yq(e.file .. ":" .. r.line))
        if r.err == nil then
          say("  expected: " .. yq(verdict(r.expect)))
          say("  got: " .. yq(verdict(r.got)))
        end
        if r.fields then
          say("  fields:")
          for _, f in ipairs(r.fields) do say("    " .. yq(f.name) .. ": " .. yq(style.value(f.value))) end
        end
        if r.because then say("  decided_by: " .. yq(r.because)) end
        say("  ...")
      end
    end
  end
  table.insert(lines, 1, "TAP version 13")
  table.insert(lines, 2, "1.." .. n)
  say("# " .. M.summary(report))
  return table.concat(lines, "\n") .. "\n"
end

local function xml(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&apos;" }):gsub("[%z\1-\8\11\12\14-\31]", ""))
end

function M.junit(report)
  local out = { '<?xml version="1.0" encoding="UTF-8"?>' }
  local function say(s) out[#out + 1] = s end
  local errors = report.broken
  for _, e in ipairs(report.rules) do
    for _, r in ipairs(e.results) do if r.err then errors = errors + 1 end end
  end
  say(string.format('<testsuites name="trailhound test" tests="%d" failures="%d" errors="%d">',
    report.tests + report.broken, report.failed - (errors - report.broken), errors))
  for _, e in ipairs(report.rules) do
    local f, er = 0, e.error and 1 or 0
    for _, r in ipairs(e.results) do
      if r.err then er = er + 1 elseif not r.ok then f = f + 1 end
    end
    say(string.format('  <testsuite name="%s" file="%s" tests="%d" failures="%d" errors="%d">',
      xml(e.name or e.file), xml(e.file), #e.results + (e.error and 1 or 0), f, er))
    if e.error then
      say(string.format('    <testcase classname="%s" name="load" file="%s" line="%d">',
        xml(e.file), xml(e.file), e.error.line or 1))
      say(string.format('      <error message="%s" type="load">%s</error>', xml(e.error.msg),
        xml(ruleset.where(e.error) .. ": " .. e.error.msg)))
      say("    </testcase>")
    end
    for _, r in ipairs(e.results) do
      local head = string.format('    <testcase classname="%s" name="%s" file="%s" line="%d"',
        xml(e.file), xml(r.name), xml(e.file), r.line)
      if r.ok then
        say(head .. "/>")
      else
        say(head .. ">")
        local detail = { e.file .. ":" .. r.line .. ": " .. problem(r) }
        if r.fields then
          detail[#detail + 1] = "fields the rule reads:"
          for _, l in ipairs(explain.field_lines(r.fields, "  ")) do detail[#detail + 1] = l end
        end
        if r.because then detail[#detail + 1] = "decided by: " .. r.because end
        local tag = r.err and "error" or "failure"
        say(string.format('      <%s message="%s" type="%s">%s</%s>', tag, xml(problem(r)),
          r.err and "error" or "verdict", xml(table.concat(detail, "\n")), tag))
        say("    </testcase>")
      end
    end
    say("  </testsuite>")
  end
  say("</testsuites>")
  return table.concat(out, "\n") .. "\n"
end

return M
