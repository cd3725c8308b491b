-- regex.lua: regular expressions for Sigma's `re` modifier, matched without backtracking.
--
--   local re, err = regex.compile(pattern, { i = true, m = false, s = false })
--   re.find(text) -> boolean   does the pattern match somewhere in text (a search, as
--                              Python's re.search and PCRE's pcre2_match do; ^ and $ anchor)
--   re.literal                 the longest run of characters every match holds (for the
--                              prefilter), or nil
--   err                        "at offset N: what is wrong" (N counts characters from 0)
--
-- The flavour is PCRE's, as the Sigma specification names it (sigma-appendix-modifiers.md,
-- "Regular Expression"): the metacharacters it lists, and what SigmaHQ's rules also use.
--   .  ^  $  *  +  ?  {n}  {n,}  {n,m}  {,m}   lazy forms (*? +? ?? {n,m}?) match the same
--   [a-z]  [^a-z]  |  ( )  (?: )  (?<name> ) (?P<name> )   groups capture nothing here
--   \d \w \s \D \W \S (ASCII, as PCRE without UCP)  \b \B  \A \z \Z
--   \n \r \t \f \v \e \a  \xhh \x{h...}  \ before any other punctuation: the character itself
--   (?i) (?m) (?s) (?-i) ...: for the rest of the group; (?i:...) for the group only
--   flags: i (case-insensitive: ASCII letters), m (^ and $ at line ends), s (. matches \n)
-- Anything else is an error at compile time naming it, never a different meaning:
-- backreferences and octal escapes, lookaround, atomic groups and possessive quantifiers,
-- \p{...}, \Q...\E, POSIX classes, (?x), recursion, conditionals.
--
-- Matching: a text without the literal every match holds (re.literal) is no match, found by
-- string.find; else Thompson's construction simulated over the text's code points (Pike's VM,
-- without captures): at most (text length + 1) x (program size) steps, whatever the pattern
-- ((a+)+b, (a|a)*c included). A program has at most MAX_PROGRAM instructions ({n,m} copies
-- its operand), so a rule cannot make one huge. No C code and no system call is involved:
-- the workers run it under seccomp as any other rule code.
-- Text that is not valid UTF-8 is matched byte by byte.

local M = {}

M.MAX_PROGRAM = 20000
M.MAX_REPEAT = 1000

local byte, char, concat = string.byte, string.char, table.concat

-- Code points of s (its bytes when s is not valid UTF-8).
local function codepoints(s)
  local t, n = {}, 0
  if not s:find("[\128-\255]") then
    for i = 1, #s do t[i] = byte(s, i) end
    return t
  end
  local ok = pcall(function()
    for _, c in utf8.codes(s) do
      n = n + 1
      t[n] = c
    end
  end)
  if ok then return t end
  t = {}
  for i = 1, #s do t[i] = byte(s, i) end
  return t
end
M.codepoints = codepoints

local function lower(c)
  if c >= 65 and c <= 90 then return c + 32 end
  return c
end

local function upper(c)
  if c >= 97 and c <= 122 then return c - 32 end
  return c
end

local function is_word(c)
  return c ~= nil and ((c >= 48 and c <= 57) or (c >= 65 and c <= 90) or (c >= 97 and c <= 122) or c == 95)
end

local function is_digit(c) return c >= 48 and c <= 57 end

local function is_space(c) return c == 32 or (c >= 9 and c <= 13) end

local SETS = {
  d = is_digit, w = is_word, s = is_space,
  D = function(c) return not is_digit(c) end,
  W = function(c) return not is_word(c) end,
  S = function(c) return not is_space(c) end,
}

local ESCAPES = { n = 10, r = 13, t = 9, f = 12, v = 11, e = 27, a = 7 }

------------------------------------------------------------------------------
-- Parsing: pattern -> tree
------------------------------------------------------------------------------
-- Nodes: { t = "char", c, fold } { t = "any", dotall } { t = "class", class, fold }
--        { t = "cat", list } { t = "alt", list } { t = "rep", node, min, max (nil: no bound) }
--        { t = "assert", kind }   kind: bol, bol_m, eol, eol_m, start, stop, stop_nl, word, nonword

local function parse(pat, flags)
  local p = codepoints(pat)
  local pos = 1  -- index in p of the next character
  local n = #p

  local function fail(msg, at)
    error({ msg = string.format("at offset %d: %s", (at or pos) - 1, msg) }, 0)
  end

  -- A number at pos (digits), or nil; pos moves past it.
  local function number()
    local start = pos
    while p[pos] and is_digit(p[pos]) do pos = pos + 1 end
    if pos == start then return nil end
    local digits = {}
    for i = start, pos - 1 do digits[#digits + 1] = char(p[i]) end
    return tonumber(concat(digits))
  end

  -- {n}, {n,}, {n,m}, {,m} at pos ('{'): min, max (false: no bound), or nil when the
  -- brace is no quantifier (then it is a plain '{', as in PCRE and Python).
  local function braces()
    local save = pos
    pos = pos + 1
    local lo = number()
    local hi
    if p[pos] == 44 then  -- ,
      pos = pos + 1
      hi = number()
      if lo == nil and hi == nil then pos = save return nil end
      hi = hi or false
    else
      hi = lo
    end
    if p[pos] ~= 125 or (lo == nil and hi == nil) then pos = save return nil end  -- }
    pos = pos + 1
    return lo or 0, hi
  end

  local function hex_escape()
    -- pos is after 'x'
    local digits = {}
    if p[pos] == 123 then  -- \x{...}
      pos = pos + 1
      while p[pos] and p[pos] ~= 125 do
        digits[#digits + 1] = char(p[pos])
        pos = pos + 1
      end
      if p[pos] ~= 125 then fail("\\x{ without its }") end
      pos = pos + 1
    else
      for _ = 1, 2 do
        if p[pos] and char(p[pos]):find("^%x$") then
          digits[#digits + 1] = char(p[pos])
          pos = pos + 1
        end
      end
    end
    local s = concat(digits)
    if s == "" or not s:find("^%x+$") or #s > 6 then fail("\\x needs hexadecimal digits") end
    local v = tonumber(s, 16)
    if v > 0x10FFFF then fail("\\x{" .. s .. "} is beyond Unicode") end
    return v
  end

  -- An escape at pos (after the backslash). in_class: inside [...].
  -- Returns kind, value: "char", code point | "set", letter | "assert", kind.
  local function escape(in_class)
    local c = p[pos]
    if c == nil then fail("a pattern cannot end with a lone backslash", pos - 1) end
    local ch = c < 128 and char(c) or ""
    pos = pos + 1
    if SETS[ch] then return "set", ch end
    if ESCAPES[ch] then return "char", ESCAPES[ch] end
    if ch == "x" then return "char", hex_escape() end
    if in_class and ch == "b" then return "char", 8 end
    if not in_class then
      if ch == "b" then return "assert", "word" end
      if ch == "B" then return "assert", "nonword" end
      if ch == "A" then return "assert", "start" end
      if ch == "z" then return "assert", "stop" end
      if ch == "Z" then return "assert", "stop_nl" end
    end
    if ch:find("^%d$") then
      fail("backreferences and octal escapes (\\" .. ch .. ") are not supported", pos - 2)
    end
    if ch:find("^%a$") then fail("the escape \\" .. ch .. " is not supported", pos - 2) end
    return "char", c  -- \. \* \\ \/ ...: the character itself
  end

  local function class(fl)
    -- pos is after '['
    local start = pos - 1
    local cls = { neg = false, ranges = {}, sets = {} }
    if p[pos] == 94 then cls.neg = true pos = pos + 1 end  -- ^
    local first = true
    while true do
      local c = p[pos]
      if c == nil then fail("a character class without its ]", start) end
      if c == 93 and not first then pos = pos + 1 break end  -- ]
      first = false
      local kind, v
      if c == 91 and p[pos + 1] == 58 then  -- [:
        fail("POSIX classes ([:alpha:]) are not supported; write the characters out")
      end
      if c == 92 then  -- backslash
        pos = pos + 1
        kind, v = escape(true)
      else
        kind, v = "char", c
        pos = pos + 1
      end
      if kind == "set" then
        cls.sets[#cls.sets + 1] = SETS[v]
      elseif p[pos] == 45 and p[pos + 1] ~= nil and p[pos + 1] ~= 93 then  -- a range a-z
        pos = pos + 1
        local hk, hv
        if p[pos] == 92 then
          pos = pos + 1
          hk, hv = escape(true)
        else
          hk, hv = "char", p[pos]
          pos = pos + 1
        end
        if hk ~= "char" then fail("a range cannot end with a class escape", pos - 2) end
        if hv < v then fail("a range out of order in a character class", pos - 1) end
        cls.ranges[#cls.ranges + 1] = v
        cls.ranges[#cls.ranges + 1] = hv
      else
        cls.ranges[#cls.ranges + 1] = v
        cls.ranges[#cls.ranges + 1] = v
      end
    end
    return { t = "class", class = cls, fold = fl.i }
  end

  local alternation

  -- (?flags) or (?flags: at pos (after "(?"): the new flags, and whether a group follows.
  local function flag_group(fl)
    local nf = { i = fl.i, m = fl.m, s = fl.s }
    local on = true
    while true do
      local c = p[pos]
      if c == nil then fail("a group without its )") end
      local ch = c < 128 and char(c) or ""
      if ch == ")" then pos = pos + 1 return nf, false end
      if ch == ":" then pos = pos + 1 return nf, true end
      if ch == "-" then
        on = false
      elseif ch == "i" or ch == "m" or ch == "s" then
        nf[ch] = on
      else
        fail("the inline flag '" .. ch .. "' is not supported (only i, m and s)")
      end
      pos = pos + 1
    end
  end

  -- One atom at pos, or nil at the end of a sequence. fl: the flags in force (may change).
  local function atom(fl)
    local c = p[pos]
    if c == nil or c == 124 or c == 41 then return nil end  -- end, |, )
    local at = pos
    pos = pos + 1
    if c == 40 then  -- (
      local inner_flags = fl
      if p[pos] == 63 then  -- (?
        pos = pos + 1
        local k = p[pos]
        local kc = k and k < 128 and char(k) or ""
        if kc == ":" then
          pos = pos + 1
        elseif kc == "P" and p[pos + 1] == 60 then  -- (?P<name>
          pos = pos + 2
          while p[pos] and p[pos] ~= 62 do pos = pos + 1 end
          if p[pos] ~= 62 then fail("a group name without its >") end
          pos = pos + 1
        elseif kc == "<" and p[pos + 1] ~= 61 and p[pos + 1] ~= 33 then  -- (?<name>, not (?<= (?<!
          pos = pos + 1
          while p[pos] and p[pos] ~= 62 do pos = pos + 1 end
          if p[pos] ~= 62 then fail("a group name without its >") end
          pos = pos + 1
        elseif kc == "=" or kc == "!" or kc == "<" then
          fail("lookaround assertions are not supported", at)
        elseif kc == ">" then
          fail("atomic groups are not supported", at)
        elseif kc == "-" or (kc:find("^%a$") and kc ~= "R") then
          local nf, grouped = flag_group(fl)
          if not grouped then  -- (?i): for the rest of the enclosing group
            fl.i, fl.m, fl.s = nf.i, nf.m, nf.s
            return { t = "cat", list = {}, flags_only = true }
          end
          inner_flags = nf
        else
          fail("the group (?" .. kc .. " is not supported", at)
        end
      end
      local node = alternation({ i = inner_flags.i, m = inner_flags.m, s = inner_flags.s })
      if p[pos] ~= 41 then fail("a group without its )", at) end
      pos = pos + 1
      return { t = "cat", list = { node } }  -- a group: (\b)* may repeat what \b* may not
    elseif c == 91 then  -- [
      return class(fl)
    elseif c == 46 then  -- .
      return { t = "any", dotall = fl.s }
    elseif c == 94 then  -- ^
      return { t = "assert", kind = fl.m and "bol_m" or "bol" }
    elseif c == 36 then  -- $
      return { t = "assert", kind = fl.m and "eol_m" or "eol" }
    elseif c == 92 then  -- backslash
      local kind, v = escape(false)
      if kind == "set" then return { t = "class", class = { neg = false, ranges = {}, sets = { SETS[v] } } } end
      if kind == "assert" then return { t = "assert", kind = v } end
      return { t = "char", c = fl.i and lower(v) or v, fold = fl.i }
    elseif c == 42 or c == 43 or c == 63 then  -- * + ?
      fail("nothing to repeat before '" .. char(c) .. "'", at)
    elseif c == 123 then  -- {
      pos = at
      local lo = braces()
      if lo then fail("nothing to repeat before '{'", at) end
      pos = at + 1
    end
    return { t = "char", c = fl.i and lower(c) or c, fold = fl.i }
  end

  -- A quantifier at pos applied to node, if there is one.
  local function quantified(node)
    local c = p[pos]
    local lo, hi
    local at = pos
    if c == 42 then lo, hi = 0, false pos = pos + 1
    elseif c == 43 then lo, hi = 1, false pos = pos + 1
    elseif c == 63 then lo, hi = 0, 1 pos = pos + 1
    elseif c == 123 then
      lo, hi = braces()
      if not lo then return node end
    else
      return node
    end
    if node.t == "assert" or node.flags_only then fail("nothing to repeat", at) end
    if hi and hi < lo then fail("a repetition {n,m} with m below n", at) end
    if lo > M.MAX_REPEAT or (hi and hi > M.MAX_REPEAT) then
      fail("a repetition count above " .. M.MAX_REPEAT, at)
    end
    if p[pos] == 63 then  -- lazy: the same matches, when all that is asked is whether one exists
      pos = pos + 1
    elseif p[pos] == 43 then
      fail("possessive quantifiers are not supported", pos)
    end
    local nc = p[pos]
    if nc == 42 or nc == 43 or nc == 63 or (nc == 123 and (function()
      local save = pos
      local l = braces()
      pos = save
      return l ~= nil
    end)()) then
      fail("multiple repeat", pos)
    end
    return { t = "rep", node = node, min = lo, max = hi or nil }
  end

  local function sequence(fl)
    local list = {}
    while true do
      local a = atom(fl)
      if a == nil then break end
      list[#list + 1] = quantified(a)
    end
    if #list == 1 then return list[1] end
    return { t = "cat", list = list }
  end

  alternation = function(fl)
    local alts = { sequence(fl) }
    while p[pos] == 124 do  -- |
      pos = pos + 1
      alts[#alts + 1] = sequence(fl)
    end
    if #alts == 1 then return alts[1] end
    return { t = "alt", list = alts }
  end

  local tree = alternation({ i = flags.i, m = flags.m, s = flags.s })
  if pos <= n then
    if p[pos] == 41 then fail("an unmatched )") end
    fail("unexpected character")
  end
  return tree
end

------------------------------------------------------------------------------
-- Compiling: tree -> program
------------------------------------------------------------------------------

local CHAR, ANY, CLASS, SPLIT, JMP, ASSERT, MATCH = 1, 2, 3, 4, 5, 6, 7

local function compile_tree(tree)
  local op, a, b = {}, {}, {}
  local pc = 0
  local function emit(o, x, y)
    pc = pc + 1
    if pc > M.MAX_PROGRAM then
      error({ msg = "the pattern is too large once its repetitions are written out (more than " ..
        M.MAX_PROGRAM .. " steps)" }, 0)
    end
    op[pc], a[pc], b[pc] = o, x, y
    return pc
  end
  local gen
  gen = function(node)
    local t = node.t
    if t == "char" then
      emit(CHAR, node.c, node.fold)
    elseif t == "any" then
      emit(ANY, node.dotall)
    elseif t == "class" then
      emit(CLASS, node.class, node.fold)
    elseif t == "assert" then
      emit(ASSERT, node.kind)
    elseif t == "cat" then
      for _, child in ipairs(node.list) do gen(child) end
    elseif t == "alt" then
      local jumps = {}
      for i, child in ipairs(node.list) do
        if i < #node.list then
          local split = emit(SPLIT, pc + 2, nil)
          gen(child)
          jumps[#jumps + 1] = emit(JMP, nil)
          b[split] = pc + 1
        else
          gen(child)
        end
      end
      for _, j in ipairs(jumps) do a[j] = pc + 1 end
    elseif t == "rep" then
      for _ = 1, node.min do gen(node.node) end
      if node.max == nil then
        local split = emit(SPLIT, pc + 2, nil)
        gen(node.node)
        emit(JMP, split)
        b[split] = pc + 1
      else
        local splits = {}
        for _ = node.min + 1, node.max do
          splits[#splits + 1] = emit(SPLIT, pc + 2, nil)
          gen(node.node)
        end
        for _, s in ipairs(splits) do b[s] = pc + 1 end
      end
    end
  end
  gen(tree)
  emit(MATCH)
  return op, a, b
end

-- The longest run of characters every match holds, from the top-level sequence: a
-- character is part of it, as is the first of a repeated one (a+: a); anything else ends a
-- run. Folded characters are given in lower case (the prefilter ignores ASCII case).
local function flatten(node, out)
  if node.t == "cat" then
    for _, child in ipairs(node.list) do flatten(child, out) end
  else
    out[#out + 1] = node
  end
  return out
end

local function literal_of(tree)
  local list = flatten(tree, {})
  local best, run = "", {}
  local function close()
    local s = concat(run)
    if #s > #best then best = s end
    run = {}
  end
  for _, node in ipairs(list) do
    if node.t == "char" then
      run[#run + 1] = utf8.char(node.c)
    elseif node.t == "rep" and node.min >= 1 and node.node.t == "char" then
      run[#run + 1] = utf8.char(node.node.c)
      close()
    else
      close()
    end
  end
  close()
  if best == "" then return nil end
  return best
end

------------------------------------------------------------------------------
-- Matching
------------------------------------------------------------------------------

local function in_class(cls, c)
  local r = cls.ranges
  for k = 1, #r, 2 do
    if c >= r[k] and c <= r[k + 1] then return true end
  end
  for k = 1, #cls.sets do
    if cls.sets[k](c) then return true end
  end
  return false
end

local function class_has(cls, c, fold)
  local hit = in_class(cls, c)
  if not hit and fold then
    local l, u = lower(c), upper(c)
    hit = (l ~= c and in_class(cls, l)) or (u ~= c and in_class(cls, u))
  end
  if cls.neg then return not hit end
  return hit
end

local function assertion(kind, cps, i, n)
  -- i: characters consumed so far (between cps[i] and cps[i + 1])
  if kind == "bol" or kind == "start" then return i == 0 end
  if kind == "bol_m" then return i == 0 or cps[i] == 10 end
  if kind == "eol" or kind == "stop_nl" then return i == n or (i == n - 1 and cps[n] == 10) end
  if kind == "eol_m" then return i == n or cps[i + 1] == 10 end
  if kind == "stop" then return i == n end
  local w = is_word(cps[i]) ~= is_word(cps[i + 1])
  if kind == "word" then return w end
  return not w  -- nonword
end

local function matcher(op, a, b)
  local size = #op
  local anchored = op[1] == ASSERT and (a[1] == "bol" or a[1] == "start")
  local mark = {}
  for k = 1, size do mark[k] = -1 end
  local gen = 0
  local stack = {}

  -- Adds pc's closure at position i to list (of count entries); true when it reaches MATCH.
  local function add(list, count, pc, cps, i, n)
    local sp = 1
    stack[1] = pc
    while sp > 0 do
      local x = stack[sp]
      sp = sp - 1
      if mark[x] ~= gen then
        mark[x] = gen
        local o = op[x]
        if o == JMP then
          sp = sp + 1
          stack[sp] = a[x]
        elseif o == SPLIT then
          sp = sp + 1
          stack[sp] = b[x]
          sp = sp + 1
          stack[sp] = a[x]
        elseif o == ASSERT then
          if assertion(a[x], cps, i, n) then
            sp = sp + 1
            stack[sp] = x + 1
          end
        elseif o == MATCH then
          return count, true
        else
          count = count + 1
          list[count] = x
        end
      end
    end
    return count, false
  end

  return function(text)
    if type(text) ~= "string" then return false end
    local cps = codepoints(text)
    local n = #cps
    local clist, nlist = {}, {}
    gen = gen + 1
    local cn, hit = add(clist, 0, 1, cps, 0, n)
    if hit then return true end
    for i = 1, n do
      local c = cps[i]
      gen = gen + 1
      local nn = 0
      for k = 1, cn do
        local x = clist[k]
        local o = op[x]
        local ok
        if o == CHAR then
          local want = a[x]
          ok = c == want or (b[x] and lower(c) == want)
        elseif o == ANY then
          ok = c ~= 10 or a[x]
        else  -- CLASS
          ok = class_has(a[x], c, b[x])
        end
        if ok then
          nn, hit = add(nlist, nn, x + 1, cps, i, n)
          if hit then return true end
        end
      end
      if not anchored then
        nn, hit = add(nlist, nn, 1, cps, i, n)
        if hit then return true end
      elseif nn == 0 then
        return false
      end
      clist, nlist, cn = nlist, clist, nn
    end
    return false
  end
end

-- Compile pattern with flags { i, m, s } (any may be nil). Returns { find, literal }, or nil
-- and a message.
function M.compile(pattern, flags)
  if type(pattern) ~= "string" then return nil, "a regular expression must be a string" end
  flags = flags or {}
  local ok, tree = pcall(parse, pattern, { i = flags.i and true or false, m = flags.m and true or false,
    s = flags.s and true or false })
  if not ok then
    if type(tree) == "table" then return nil, tree.msg end
    error(tree, 0)
  end
  local cok, op, a, b = pcall(compile_tree, tree)
  if not cok then
    if type(op) == "table" then return nil, op.msg end
    error(op, 0)
  end
  local vm, literal = matcher(op, a, b), literal_of(tree)
  local find = vm
  -- Every match holds the literal: a text without it is no match, found at the speed of
  -- string.find. ASCII literals only (a text that is not UTF-8 is matched byte by byte);
  -- compared in lower case when the pattern ignores case anywhere.
  if literal and not literal:find("[\128-\255]") then
    local folds = false
    for k = 1, #op do
      if (op[k] == CHAR or op[k] == CLASS) and b[k] then folds = true break end
    end
    if folds then
      local lit = literal:lower()
      find = function(text)
        if type(text) ~= "string" or not text:lower():find(lit, 1, true) then return false end
        return vm(text)
      end
    else
      find = function(text)
        if type(text) ~= "string" or not text:find(literal, 1, true) then return false end
        return vm(text)
      end
    end
  end
  return { find = find, literal = literal, size = #op }
end

return M
