-- style.lua: text for a terminal, coloured only when asked.

local style = require "style"

describe("style", function()
  it("colours only when asked", function()
    assert.equal("x", style.new(false).red("x"))
    assert.equal("\27[31mx\27[0m", style.new(true).red("x"))
    assert.equal("✓", style.new(false).mark(true))
    assert.equal("\27[31m✗\27[0m", style.new(true).mark(false))
  end)

  it("measures and pads by characters, escapes not counted", function()
    assert.equal(3, style.len("\27[1mé—x\27[0m"))
    assert.equal("é  ", style.pad("é", 3))
    assert.equal("long", style.pad("long", 2))
  end)

  it("wraps words to a width, a word too long for it on a line of its own", function()
    assert.same({ "a bb", "ccccccc", "d" }, style.wrap("a bb ccccccc d", 4))
  end)

  it("shows a field value as a person reads it", function()
    assert.equal("(absent)", style.value(nil))
    assert.equal('"a\\"b"', style.value('a"b'))
    assert.equal("200", style.value(200.0))
    assert.equal("2.5", style.value(2.5))
    assert.equal('["a", 1]', style.value({ "a", 1 }))
    assert.equal('{"k": true}', style.value({ k = true }))
    assert.equal('"' .. string.rep("x", 8) .. "…", style.value(string.rep("x", 20), 10))
  end)
end)
