#include "server/tool_call_parser.h"

#include <gtest/gtest.h>

#include "server/server_test_util.h"

namespace prefixd {
namespace {

using Call = ParsedToolCalls::Call;
constexpr ToolCallSyntax kHermes = ToolCallSyntax::kHermes;
constexpr ToolCallSyntax kLlama = ToolCallSyntax::kLlama3;

struct Case {
  const char* what;
  ToolCallSyntax syntax;
  std::string output;  // what the model wrote
  std::string text;    // the text that stays text
  std::vector<Call> calls;
};

// Model outputs in each family's syntax, as recorded from Qwen2.5 / Hermes and Llama 3.x.
std::vector<Case> Cases() {
  return {
      {"hermes one call", kHermes,
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>",
       "", {{"get_weather", "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}},
      {"hermes text then two calls", kHermes,
       "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
       "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"Europe/Paris\"}}\n</tool_call>",
       "Let me check both.", {{"get_weather", "{\"city\": \"Paris\"}"}, {"get_time", "{\"tz\": \"Europe/Paris\"}"}}},
      {"hermes braces and quotes inside strings", kHermes,
       "<tool_call>\n{\"name\": \"run\", \"arguments\": {\"code\": \"if (a) { b(\\\"}\\\"); }\", \"xs\": [1, {\"y\": [2]}]}}\n</tool_call>",
       "", {{"run", "{\"code\": \"if (a) { b(\\\"}\\\"); }\", \"xs\": [1, {\"y\": [2]}]}"}}},
      {"hermes text after a call", kHermes,
       "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\nDone.", "Done.", {{"f", "{}"}}},
      {"hermes other key order is read whole", kHermes,
       "<tool_call>\n{\"arguments\": {\"a\": 1, \"b\": [true]}, \"name\": \"f\"}\n</tool_call>", "",
       {{"f", "{\"a\":1,\"b\":[true]}"}}},
      {"hermes arguments as a JSON string", kHermes,
       "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}</tool_call>", "", {{"f", "{\"a\": 1}"}}},
      {"hermes not JSON stays text", kHermes, "Use <tool_call>not json</tool_call> here.",
       "Use <tool_call>not json</tool_call> here.", {}},
      {"hermes name not a string stays text", kHermes,
       "<tool_call>{\"name\": 5, \"arguments\": {}}</tool_call>", "<tool_call>{\"name\": 5, \"arguments\": {}}</tool_call>", {}},
      {"hermes no name stays text", kHermes, "a <tool_call>{\"arguments\": {}}</tool_call>",
       "a <tool_call>{\"arguments\": {}}</tool_call>", {}},
      {"hermes unclosed mention stays text", kHermes, "Write <tool_call> tags to call tools.",
       "Write <tool_call> tags to call tools.", {}},
      {"hermes tag prefix at the end stays text", kHermes, "The tag is <tool_c", "The tag is <tool_c", {}},
      {"hermes call cut off by max_tokens", kHermes, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": \"hal",
       "", {{"f", "{\"q\": \"hal"}}},
      {"hermes plain text", kHermes, "Once upon a time {there} was <b>a</b> fox.  ",
       "Once upon a time {there} was <b>a</b> fox.  ", {}},
      {"hermes call without closing tag", kHermes, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}",
       "", {{"f", "{\"x\": 1}"}}},
      {"llama one call", kLlama, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "",
       {{"get_weather", "{\"city\": \"Paris\"}"}}},
      {"llama python tag", kLlama, "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"x\"}}", "",
       {{"search", "{\"q\": \"x\"}"}}},
      {"llama two calls", kLlama,
       "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\": [1, 2]}}", "",
       {{"a", "{}"}, {"b", "{\"x\": [1, 2]}"}}},
      {"llama type first is read whole", kLlama,
       "{\"type\": \"function\", \"name\": \"f\", \"parameters\": {\"a\": \"b\"}}", "", {{"f", "{\"a\":\"b\"}"}}},
      {"llama plain text", kLlama, "  Hello there {friend}.", "  Hello there {friend}.", {}},
      {"llama JSON that is no call stays text", kLlama, "{\"foo\": 1} and more", "{\"foo\": 1} and more", {}},
      {"llama text after a call", kLlama, "{\"name\": \"f\", \"parameters\": {}}\nDone", "Done", {{"f", "{}"}}},
      {"llama builtin call syntax stays text", kLlama, "<|python_tag|>brave_search.call(query=\"x\")",
       "<|python_tag|>brave_search.call(query=\"x\")", {}},
      {"none passes through", ToolCallSyntax::kNone, "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
       "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>", {}},
  };
}

void ExpectParsed(const ParsedToolCalls& got, const Case& c, const std::string& how) {
  EXPECT_EQ(got.text, c.text) << c.what << how;
  ASSERT_EQ(got.calls.size(), c.calls.size()) << c.what << how;
  for (size_t i = 0; i < c.calls.size(); ++i) {
    EXPECT_EQ(got.calls[i].name, c.calls[i].name) << c.what << how << " call " << i;
    EXPECT_EQ(got.calls[i].arguments, c.calls[i].arguments) << c.what << how << " call " << i;
  }
}

TEST(ToolCallParser, RecordedOutputsWhole) {
  for (const Case& c : Cases()) ExpectParsed(ParseToolCalls(c.syntax, c.output), c, " (whole)");
}

TEST(ToolCallParser, RecordedOutputsInPiecesOfEverySize) {
  for (const Case& c : Cases()) {
    for (size_t size = 1; size <= c.output.size(); ++size) {
      ToolCallParser parser(c.syntax);
      std::vector<ToolCallEvent> events;
      for (size_t at = 0; at < c.output.size(); at += size) {
        for (ToolCallEvent& e : parser.Push(std::string_view(c.output).substr(at, size))) events.push_back(e);
      }
      for (ToolCallEvent& e : parser.Finish()) events.push_back(e);
      ExpectParsed(CollectToolCalls(events), c, " (pieces of " + std::to_string(size) + ")");
      EXPECT_EQ(parser.num_calls(), static_cast<int>(c.calls.size())) << c.what;
      // Every call starts, then only its arguments, then ends, in order.
      int open = -1, next = 0;
      for (const ToolCallEvent& e : events) {
        switch (e.kind) {
          case ToolCallEvent::Kind::kText: EXPECT_EQ(open, -1) << c.what; break;
          case ToolCallEvent::Kind::kCallStart:
            EXPECT_EQ(open, -1) << c.what;
            EXPECT_EQ(e.call, next++) << c.what;
            open = e.call;
            break;
          case ToolCallEvent::Kind::kArguments: EXPECT_EQ(e.call, open) << c.what; break;
          case ToolCallEvent::Kind::kCallEnd:
            EXPECT_EQ(e.call, open) << c.what;
            open = -1;
            break;
        }
      }
      EXPECT_EQ(open, -1) << c.what;
    }
  }
}

TEST(ToolCallParser, PlainTextIsNotHeldBack) {
  ToolCallParser parser(kHermes);
  auto events = parser.Push("Hello");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text, "Hello");
  // A possible opening and the space before it wait; the rest goes out.
  events = parser.Push(" world <tool");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text, " world");
  events = parser.Push("box>");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text, " <toolbox>");
}

TEST(ToolCallParser, ArgumentsStreamAsTheyArrive) {
  ToolCallParser parser(kHermes);
  EXPECT_TRUE(parser.Push("<tool_call>\n{\"name\": \"get\", \"argu").empty());
  auto events = parser.Push("ments\": {\"city\": \"Pa");
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kind, ToolCallEvent::Kind::kCallStart);
  EXPECT_EQ(events[0].text, "get");
  EXPECT_EQ(events[1].text, "{");
  EXPECT_EQ(events[2].text, "\"city\": \"Pa");
  events = parser.Push("ris\"}}\n</tool_call>");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].text, "ris\"}");
  EXPECT_EQ(events[1].kind, ToolCallEvent::Kind::kCallEnd);
  EXPECT_TRUE(parser.Finish().empty());
}

TEST(ToolCallParser, SyntaxOfTemplates) {
  EXPECT_EQ(ToolCallSyntaxOf(ReadTestTemplate("qwen2.5-instruct.jinja")), kHermes);
  EXPECT_EQ(ToolCallSyntaxOf(ReadTestTemplate("chatml.jinja")), ToolCallSyntax::kNone);
  EXPECT_EQ(ToolCallSyntaxOf("{{- '<|start_header_id|>' + message['role'] }}{%- if tools is not none %}x{% endif %}"),
            kLlama);
  EXPECT_EQ(ToolCallSyntaxOf("{{- '<|start_header_id|>' + message['role'] }}"), ToolCallSyntax::kNone);
  EXPECT_STREQ(ToolCallSyntaxName(kHermes), "hermes");
}

}  // namespace
}  // namespace prefixd
