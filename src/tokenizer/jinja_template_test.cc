#include "tokenizer/jinja_template.h"

#include <gtest/gtest.h>

#include "tokenizer/jinja_lexer.h"

namespace prefixd::jinja {
namespace {

std::string Render(std::string_view source, const Json& context = Json::object()) {
  auto t = Template::Parse(source);
  if (!t.ok()) return "PARSE ERROR: " + std::string(t.status().message());
  auto out = t->Render(context);
  if (!out.ok()) return "RENDER ERROR: " + std::string(out.status().message());
  return *out;
}

TEST(JinjaLexer, TokensAndLines) {
  auto t = Tokenize("a{{ x.y + 'q\\n' }}\n{% if 1.5 %}b{% endif %}");
  ASSERT_TRUE(t.ok()) << t.status();
  std::vector<std::string> texts;
  for (const Token& tok : *t) texts.push_back(tok.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"a", "{{", "x", ".", "y", "+", "q\n", "}}", "\n", "{%", "if", "1.5",
                                             "%}", "b", "{%", "endif", "%}", ""}));
  EXPECT_EQ((*t)[10].line, 2);
}

TEST(JinjaTemplate, WhitespaceControlAsHuggingFace) {
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before one.
  EXPECT_EQ(Render("{% if true %}\n  x\n  {% endif %}\ny"), "  x\ny");
  EXPECT_EQ(Render("a  {{- 'b' -}}  c"), "abc");
  EXPECT_EQ(Render("a {#- note -#} b"), "ab");
  EXPECT_EQ(Render("x\n"), "x");  // one trailing newline dropped
}

TEST(JinjaTemplate, Expressions) {
  const Json ctx = {{"m", {{"role", "user"}, {"content", "  hi  "}}}, {"xs", {3, 1, 2}}, {"s", "a</think>b"}};
  EXPECT_EQ(Render("{{ m.role + '!' }}|{{ m['content'] | trim }}|{{ 1 ~ 2 }}", ctx), "user!|hi|12");
  EXPECT_EQ(Render("{{ xs | length - 1 }} {{ xs[-1] }} {{ xs[::-1] }} {{ xs[1:] }}", ctx), "2 2 [2, 1, 3] [1, 2]");
  EXPECT_EQ(Render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 3 }}"), "3 -4 2 3.5 8");
  EXPECT_EQ(Render("{{ s.split('</think>')[-1] }} {{ s.startswith('a') }} {{ 'x' in s }}", ctx), "b True False");
  EXPECT_EQ(Render("{{ 'yes' if m.role == 'user' else 'no' }} {{ not m.missing is defined }}", ctx), "yes True");
  EXPECT_EQ(Render("{{ m.missing }}|{{ none }}|{{ m.missing is none }}|{{ [1, 'a'] }}|{{ {'k': 1} }}", ctx),
            "|None|False|[1, 'a']|{'k': 1}");
  EXPECT_EQ(Render("{{ '\\n\\nx'.lstrip('\\n') }}{{ 'ab'.upper() }}{{ ' a b '.split() | join(',') }}"), "xABa,b");
}

TEST(JinjaTemplate, StringsAreSequencesOfCharacters) {
  // nlohmann counts a string as one value; Python counts its code points.
  EXPECT_EQ(Render("{% if '' %}x{% else %}empty{% endif %}{{ 'héllo' | length }}{{ 'héllo'[1] }}{{ 'héllo'[::-1] }}"),
            "empty5éolléh");
  EXPECT_EQ(Render("{{ 'call12345' | length != 9 }}{{ [] | length }}{{ {'a': 1} | length }}"), "False01");
}

TEST(JinjaTemplate, TojsonKeepsKeyOrderWithPythonSeparators) {
  const Json ctx = Json::parse(R"({"t": {"z": 1, "a": [true, null, "é\n"], "f": 1.5}})");
  EXPECT_EQ(Render("{{ t | tojson }}", ctx), R"({"z": 1, "a": [true, null, "é\n"], "f": 1.5})");
  EXPECT_EQ(Render("{{ t.a | tojson(indent=2) }}", ctx), "[\n  true,\n  null,\n  \"é\\n\"\n]");
}

TEST(JinjaTemplate, LoopsAndScopes) {
  const Json ctx = {{"ms", Json::parse(R"([{"r": "a"}, {"r": "b"}, {"r": "c"}])")}};
  EXPECT_EQ(Render("{% for m in ms %}{{ loop.index0 }}{{ m.r }}{% if not loop.last %},{% endif %}{% endfor %}", ctx),
            "0a,1b,2c");
  EXPECT_EQ(Render("{% for m in ms if m.r != 'b' %}{{ loop.index }}/{{ loop.length }}{% endfor %}", ctx), "1/22/2");
  EXPECT_EQ(Render("{% for k, v in {'x': 1, 'y': 2}.items() %}{{ k }}={{ v }};{% endfor %}"), "x=1;y=2;");
  EXPECT_EQ(Render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  // A set inside a loop stays inside it; a namespace carries state out.
  EXPECT_EQ(Render("{% set x = 1 %}{% for m in ms %}{% set x = 2 %}{% endfor %}{{ x }}", ctx), "1");
  EXPECT_EQ(Render("{% set ns = namespace(n=0) %}{% for m in ms %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", ctx),
            "3");
  EXPECT_EQ(Render("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}"), "012");
  EXPECT_EQ(Render("{{ ms | selectattr('r', 'equalto', 'b') | list | length }}{{ ms | map(attribute='r') | join }}", ctx),
            "1abc");
  EXPECT_EQ(Render("{% macro h(x, y='!') %}<{{ x }}{{ y }}>{% endmacro %}{{ h('a') }}{{ h('b', y='?') }}"), "<a!><b?>");
  EXPECT_EQ(Render("{% set v %}in{{ 1 }}{% endset %}{{ v }}"), "in1");
}

TEST(JinjaTemplate, ParseErrorsNameTheProblemAndLine) {
  EXPECT_EQ(Render("{% if x %}a"), "PARSE ERROR: chat template line 1: a block opened here is never closed: expected {% endif %}");
  EXPECT_EQ(Render("a\n{% for x in y %}b{% if z %}"),
            "PARSE ERROR: chat template line 2: a block opened here is never closed: expected {% endif %}");
  EXPECT_EQ(Render("x\n{{ a | frobnicate }}"), "PARSE ERROR: chat template line 2: unknown filter 'frobnicate'");
  EXPECT_EQ(Render("{{ a is frobnicated }}"), "PARSE ERROR: chat template line 1: unknown test 'frobnicated'");
  EXPECT_EQ(Render("{% include 'x' %}"),
            "PARSE ERROR: chat template line 1: unknown statement 'include' (supported: if, for, set, macro, break, continue)");
  EXPECT_EQ(Render("{{ 'abc }}"), "PARSE ERROR: chat template line 1: a string literal is never closed");
  EXPECT_EQ(Render("{{ a"), "PARSE ERROR: chat template line 1: a tag opened here is never closed (missing '%}' or '}}')");
  EXPECT_EQ(Render("{# x"), "PARSE ERROR: chat template line 1: a comment '{#' is never closed with '#}'");
  EXPECT_EQ(Render("{{ a b }}"), "PARSE ERROR: chat template line 1: expected '}}' but found 'b'");
  EXPECT_EQ(Render("{{ " + std::string(1000, '(') + "1" + std::string(1000, ')') + " }}"),
            "PARSE ERROR: chat template line 1: expressions nest deeper than 200");
  EXPECT_EQ(Render("{{ " + std::string(100000, '-') + "1 }}"), "PARSE ERROR: chat template line 1: expressions nest deeper than 200");
}

TEST(JinjaTemplate, RenderErrors) {
  auto t = Template::Parse("{{ raise_exception('roles must alternate') }}");
  ASSERT_TRUE(t.ok());
  auto r = t->Render(Json::object());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("roles must alternate"), std::string::npos);

  EXPECT_EQ(Render("\n{{ 'a' + 1 }}"), "RENDER ERROR: chat template line 2: cannot apply '+' to \"a\" and 1");
  EXPECT_EQ(Render("{{ 'a'.zfill(3) }}"), "RENDER ERROR: chat template line 1: unknown string method 'zfill'");
  EXPECT_EQ(Render("{{ nope() }}"), "RENDER ERROR: chat template line 1: unknown function 'nope'");
  EXPECT_EQ(Render("{{ 1 // 0 }}"), "RENDER ERROR: chat template line 1: division by zero");
  EXPECT_EQ(Render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"),
            "RENDER ERROR: chat template line 1: macro 'f' recurses deeper than 64");
}

TEST(JinjaTemplate, TraceAttributesOutputToTheIteratedItem) {
  // Message 1 (a system message printed before the loop) prints nothing in its own
  // iteration; message 2 starts with the output of its iteration, wherever that is.
  const Json messages = Json::parse(R"([{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                                        {"role": "user", "content": "a"}])");
  auto t = Template::Parse(
      "PRE{% for m in messages | reverse %}{% endfor %}"
      "{% for m in messages %}{% if m.role != 'system' %}<{{ m.role }}>{% for c in [1, 2] %}{{ m.content }}{% endfor %}"
      "{% endif %}{% endfor %}GEN");
  ASSERT_TRUE(t.ok()) << t.status();
  RenderTrace trace;
  trace.items = &messages;
  auto out = t->Render({{"messages", messages}}, &trace);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "PRE<user>aa<user>aaGEN");
  EXPECT_EQ(trace.first_output, (std::vector<size_t>{3, std::string::npos, 11}));
  EXPECT_EQ(trace.last_output_end, 19u);
}

// Blocks (tools, tool calls): where the last iteration over each that wrote output ended,
// nested inside a traced message or not, without moving any message's start.
TEST(JinjaTemplate, TraceFindsWhereBlockIterationsEnd) {
  const Json tools = Json::parse(R"([{"name": "f"}, {"name": "g"}, {"name": "unused"}])");
  const Json messages = Json::parse(R"([{"role": "user", "calls": [{"id": 1}, {"id": 2}]}])");
  Json blocks = tools;
  blocks.erase(2);
  for (const Json& c : messages[0]["calls"]) blocks.push_back(c);
  blocks.push_back(tools[2]);
  auto t = Template::Parse(
      "{% for t in tools %}{% if t.name != 'unused' %}<{{ t.name }}>{% endif %}{% endfor %}|"
      "{% for m in messages %}[{% for c in m.calls %}c{{ c.id }};{% endfor %}]{% endfor %}"
      "{% for t in tools %}{% endfor %}END");
  ASSERT_TRUE(t.ok()) << t.status();
  RenderTrace trace;
  trace.items = &messages;
  trace.blocks = &blocks;
  auto out = t->Render({{"messages", messages}, {"tools", tools}}, &trace);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "<f><g>|[c1;c2;]END");
  EXPECT_EQ(trace.block_end, (std::vector<size_t>{3, 6, 11, 14, std::string::npos}));
  EXPECT_EQ(trace.first_output, (std::vector<size_t>{7})) << "block tracing attributes no output";
}

}  // namespace
}  // namespace prefixd::jinja
