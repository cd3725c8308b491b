-- dev.lua: `trailhound dev RULE [EVENTS...]`, the authoring loop.
--
-- Watches the rule file and, at every save, checks the rule, runs its tests
-- and shows which of the sample events match. On a terminal the screen is
-- cleared and redrawn; elsewhere (a pipe, a file, a spec) each run follows the
-- last after a separator. A save that breaks the rule shows the error, and
-- the loop keeps watching.
--
-- A change is seen by polling every POLL seconds: the rule file's size, mtime,
-- inode and device, and its text (two saves within one timestamp tick keep the
-- same mtime); the EVENTS files' size, mtime, inode and device. So a save in
-- place, by rename, or by delete-and-create is seen alike. A rule file that
-- disappears is waited for (an editor between delete and create) and reported
-- only when it stays away.
--
--   dev.render(opts) -> text       one run. opts: rule (path), events (paths), t (styler),
--                                  width, run (number), why (text), clock (text)
--   dev.watch(opts)                the loop. opts as render, and sys (thsys: stat, sleep,
--                                  now), write(text), tty, until_runs (stop after n runs)

local check = require "check"
local event = require "event"
local normalize = require "normalize"
local ruleset = require "ruleset"
local samples = require "samples"
local style = require "style"
local testrun = require "testrun"

local M = {}

M.POLL = 0.1          -- seconds between polls
M.MISSING_GRACE = 1.0 -- seconds a rule file may be missing before it is reported
M.MAX_LISTED = 20     -- sample events listed one by one; past that, matches only

local CTX = { now = "2024-01-01T00:00:00.000Z" }

-- A short line on what an event is: action, outcome, who.
local function summary(doc)
  local function g(name)
    local v = event.get(doc, name)
    if type(v) == "table" then return nil end
    return v ~= nil and tostring(v) or nil
  end
  local parts = { g("event.action") or "(no event.action)" }
  local code = g("aws.cloudtrail.error_code")
  if code then
    parts[#parts + 1] = "failed (" .. code .. ")"
  elseif g("event.outcome") then
    parts[#parts + 1] = g("event.outcome")
  end
  local who = g("aws.cloudtrail.user_identity.arn") or g("user.name")
  if who then parts[#parts + 1] = "by " .. who end
  return table.concat(parts, " ")
end

local function sample_lines(rule, paths, t, say)
  local total, hits = 0, 0
  local rows = {}
  for _, path in ipairs(paths) do
    local list, err = samples.read(path)
    if not list then
      say("  " .. t.red("!") .. " " .. err)
    else
      for _, s in ipairs(list) do
        total = total + 1
        local ok, doc = pcall(normalize.normalize, s.record, CTX)
        local row = { where = s.where }
        if not ok then
          row.err = "normalizer failed: " .. tostring(doc)
        else
          row.text = summary(doc)
          local mok, hit = ruleset.guard(rule.match, event.getter(doc, s.record), event.view(doc))
          if mok then
            row.hit = hit == true
            if row.hit then hits = hits + 1 end
          else
            row.err = "the rule failed: " .. tostring(hit)
          end
        end
        rows[#rows + 1] = row
      end
    end
  end
  -- All of a small sample; of a large one, the matches and errors.
  local all = #rows <= M.MAX_LISTED
  local shown = {}
  for _, r in ipairs(rows) do
    if (all or r.hit or r.err) and #shown < M.MAX_LISTED then shown[#shown + 1] = r end
  end
  local w = 0
  for _, r in ipairs(shown) do w = math.max(w, style.len(r.where)) end
  for _, r in ipairs(shown) do
    local mark = r.err and t.yellow("!") or t.mark(r.hit)
    say("  " .. mark .. " " .. style.pad(r.where, w) .. "  " .. (r.err and t.red(r.err) or r.text))
  end
  if #rows > #shown then say(string.format("  ... %d events that do not match, not listed", #rows - #shown)) end
  return total, hits
end

function M.render(opts)
  local t = opts.t or style.new(false)
  local out = {}
  local function say(s) out[#out + 1] = s end
  local head = string.format("trailhound dev: %s, run %d%s%s", opts.rule, opts.run or 1,
    opts.clock and (" at " .. opts.clock) or "", opts.why and (" (" .. opts.why .. ")") or "")
  say(t.bold(head))
  say("")

  -- check
  local diags, stats = check.files({ opts.rule })
  if #diags == 0 then
    say(t.mark(true) .. " check: no problems")
  else
    say((stats.errors > 0 and t.mark(false) or t.yellow("!")) .. string.format(" check: %d error%s, %d warning%s",
      stats.errors, stats.errors == 1 and "" or "s", stats.warnings, stats.warnings == 1 and "" or "s"))
    for _, d in ipairs(diags) do
      local level = d.level == "error" and t.red("error") or t.yellow("warning")
      say("  " .. ruleset.where(d) .. ": " .. level .. ": " .. d.msg)
    end
  end

  local rule = ruleset.load(opts.rule)
  if not rule then
    say("")
    say(t.dim("fix the rule and save: watching " .. opts.rule))
    return table.concat(out, "\n") .. "\n"
  end

  -- tests
  local report = testrun.run({ opts.rule })
  say((report.ok and t.mark(true) or t.mark(false)) .. " tests: " .. testrun.summary(report))
  local e = report.rules[1]
  if e and not report.ok then
    for _, l in ipairs(testrun.rule_lines(e, t, "  ")) do say(l) end
  end

  -- samples
  if opts.events and #opts.events > 0 then
    local lines = {}
    local total, hits = sample_lines(rule, opts.events, t, function(s) lines[#lines + 1] = s end)
    say(string.format("%s samples: %d of %d event%s match", hits > 0 and t.green("*") or t.dim("*"), hits, total,
      total == 1 and "" or "s"))
    for _, l in ipairs(lines) do say(l) end
  end
  return table.concat(out, "\n") .. "\n"
end

-- What a file looks like now: stat fields (and the text, for the rule).
local function signature(sys, path, with_text)
  local st = sys.stat(path)
  if not st then return nil end
  local sig = table.concat({ st.size, st.mtime, st.ino, st.dev }, ":")
  if with_text then sig = sig .. "\0" .. (ruleset.source(path) or "") end
  return sig
end

function M.watch(opts)
  local sys = opts.sys
  local write = opts.write
  local t = opts.t or style.new(false)
  local run = 0
  local seen = {}          -- path -> last signature
  local missing_since
  local reported_missing = false

  -- One run's text: on a terminal over a cleared screen, elsewhere after
  -- a separator from the run before.
  local function draw(text)
    if opts.tty then
      write("\27[H\27[2J\27[3J" .. text)
    else
      write((run > 1 and ("\n" .. string.rep("-", 72) .. "\n") or "") .. text)
    end
  end

  local function changes()
    local why = {}
    local rule_sig = signature(sys, opts.rule, true)
    if rule_sig == nil then
      return nil
    end
    if seen[opts.rule] ~= rule_sig then why[#why + 1] = opts.rule end
    seen[opts.rule] = rule_sig
    for _, p in ipairs(opts.events or {}) do
      local s = signature(sys, p, false) or "missing"
      if seen[p] ~= s then why[#why + 1] = p end
      seen[p] = s
    end
    return why
  end

  while true do
    local why = changes()
    if why == nil then
      missing_since = missing_since or sys.now()
      if not reported_missing and sys.now() - missing_since >= M.MISSING_GRACE then
        reported_missing = true
        seen[opts.rule] = nil
        run = run + 1
        local msg = string.format("%s: the rule file is gone; waiting for it to come back", opts.rule)
        draw(t.bold(string.format("trailhound dev: %s, run %d", opts.rule, run)) .. "\n\n" .. t.yellow(msg) .. "\n")
      end
    elseif #why > 0 then
      missing_since, reported_missing = nil, false
      -- Let a save finish: wait until the files stop changing.
      sys.sleep(M.POLL / 2)
      local again = changes()
      while again and #again > 0 do
        sys.sleep(M.POLL / 2)
        again = changes()
      end
      if again == nil then
        seen[opts.rule] = nil   -- gone again mid-save: draw when it is back
        goto continue
      end
      run = run + 1
      local reason = run == 1 and "started" or (table.concat(why, ", ") .. " changed")
      local text = M.render({ rule = opts.rule, events = opts.events, t = t, run = run, why = reason,
                              clock = os.date("%H:%M:%S"), width = opts.width })
      draw(text)
    else
      missing_since = nil
    end
    if opts.until_runs and run >= opts.until_runs then return run end
    ::continue::
    sys.sleep(M.POLL)
  end
end

return M
