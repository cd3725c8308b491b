-- render.lua: an investigation guide's markdown as text for a terminal.

local render = require "render"
local style = require "style"

local plain = style.new(false)

local function md(text, width) return render.markdown(text, plain, width or 40) end

describe("render", function()
  describe("markdown()", function()
    it("keeps headings as lines of their own, underlined by level", function()
      assert.same({ "Triage", "======", "", "Steps", "-----", "", "Deeper", "", "text" },
        md("## Triage\n\n### Steps\n#### Deeper\ntext"))
    end)

    it("joins a paragraph's lines and wraps it to the width", function()
      assert.same({ "one two three four five six seven eight", "nine ten" },
        md("one two three\nfour five six seven eight\nnine ten"))
    end)

    it("breaks a line that ends in two spaces, as markdown does", function()
      assert.same({ "first line", "second line" }, md("first line  \nsecond line"))
    end)

    it("keeps list items and their nesting, continuation lines hanging under the text", function()
      assert.same({
        "- Identify the actor",
        "  - Review the ARN, the access key and",
        "    the source address of the call.",
        "1. then act",
      }, md("- Identify the actor\n  - Review the ARN, the access key and\n    the source address of the call.\n"
        .. "1. then act"))
    end)

    it("drops inline markup: code spans, bold, links read as text (url)", function()
      assert.same({ "Review user.name and see the guide", "(https://x.example/g) now" },
        md("Review `user.name` and **see** the [guide](https://x.example/g) now"))
    end)

    it("keeps fenced code and tables as written", function()
      assert.same({ "before", "", "    a  =  1", "", "| a | b |", "after" },
        md("before\n```\na  =  1\n```\n| a | b |\nafter"))
    end)

    it("colours code and bold word by word on a terminal, so wrapping never splits a style", function()
      local out = render.markdown("**two words** `x`", style.new(true), 40)
      assert.same({ "\27[1mtwo\27[0m \27[1mwords\27[0m \27[36mx\27[0m" }, out)
    end)

    it("counts characters, not bytes, when it wraps", function()
      local lines = md(string.rep("— ", 30), 20)
      for _, l in ipairs(lines) do assert.is_true(utf8.len(l) <= 20) end
    end)
  end)

  describe("dedent()", function()
    it("removes the indentation every line shares, as a [[...]] string indented in a rule has", function()
      assert.equal("a\n  b\nc", render.dedent("    a\n      b\n    c\n"))
      assert.equal("a\nb", render.dedent("a\nb"))
    end)
  end)
end)
