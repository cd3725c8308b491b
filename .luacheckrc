-- luacheck configuration (Debian's lua-check).
std = "lua54"
max_line_length = 120
codes = true

files["tests/"] = { std = "+busted" }
-- Rules are data modules evaluated in the sandbox; long prose lines are carried over verbatim.
files["rules/"] = { max_line_length = false }
files["examples/rules/"] = { max_line_length = false }
