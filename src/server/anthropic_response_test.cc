#include "server/anthropic_response.h"

#include <gtest/gtest.h>

#include "server/openai_response.h"

namespace prefixd {
namespace {

using json = nlohmann::json;

GenerationEnd End(FinishReason finish, int32_t prompt, int64_t cached, bool cache_enabled = true) {
  GenerationEnd e;
  e.finish = finish;
  e.usage.prompt_tokens = prompt;
  e.usage.cached_tokens = cached;
  e.completion_tokens = 5;
  e.usage_json = UsageJson(e.usage, e.completion_tokens, std::nullopt);
  e.cache_enabled = cache_enabled;
  return e;
}

// The SSE events of `stream`, as (name, data) pairs.
std::vector<std::pair<std::string, json>> Events(const std::string& stream) {
  std::vector<std::pair<std::string, json>> out;
  size_t at = 0;
  while (at < stream.size()) {
    const size_t end = stream.find("\n\n", at);
    EXPECT_NE(end, std::string::npos);
    const std::string event = stream.substr(at, end - at);
    const size_t nl = event.find('\n');
    EXPECT_EQ(event.rfind("event: ", 0), 0u) << event;
    EXPECT_EQ(event.compare(nl + 1, 6, "data: "), 0) << event;
    out.emplace_back(event.substr(7, nl - 7), json::parse(event.substr(nl + 7)));
    at = end + 2;
  }
  return out;
}

TEST(AnthropicResponse, UsageAddsUpToThePrompt) {
  struct Case {
    bool enabled;
    int64_t cached, end, end_1h;          // the request
    int64_t input, created, created_1h;  // what usage says
  };
  // A prompt of 40 tokens.
  const Case cases[] = {
      {true, 32, 0, 0, 8, 0, 0},      // no breakpoint: the rest is input
      {false, 32, 36, 0, 8, 0, 0},    // cache off: nothing is written
      {true, 10, 30, 0, 10, 20, 0},   // a 5m breakpoint at 30
      {true, 10, 30, 20, 10, 20, 10}, // a 1h breakpoint at 20, then 5m at 30
      {true, 35, 30, 20, 5, 0, 0},    // read past the last breakpoint: nothing to write
      {true, 0, 40, 40, 0, 40, 40},   // the whole prompt for an hour
  };
  for (const Case& c : cases) {
    const json u = AnthropicUsageJson(End(FinishReason::kEos, 40, c.cached).usage, 5, c.enabled,
                                      CacheWriteBounds{c.end, c.end_1h});
    SCOPED_TRACE(u.dump());
    EXPECT_EQ(u["cache_read_input_tokens"], c.cached);
    EXPECT_EQ(u["cache_creation_input_tokens"], c.created);
    EXPECT_EQ(u["cache_creation"]["ephemeral_1h_input_tokens"], c.created_1h);
    EXPECT_EQ(u["cache_creation"]["ephemeral_5m_input_tokens"], c.created - c.created_1h);
    EXPECT_EQ(u["input_tokens"], c.input);
    EXPECT_EQ(u["input_tokens"].get<int64_t>() + u["cache_creation_input_tokens"].get<int64_t>() +
                  u["cache_read_input_tokens"].get<int64_t>(),
              40);
    EXPECT_EQ(u["output_tokens"], 5);
  }
}

TEST(AnthropicResponse, StopReasons) {
  EXPECT_STREQ(AnthropicStopReason(FinishReason::kEos, false, false), "end_turn");
  EXPECT_STREQ(AnthropicStopReason(FinishReason::kLength, false, false), "max_tokens");
  EXPECT_STREQ(AnthropicStopReason(FinishReason::kContext, false, false), "max_tokens");
  EXPECT_STREQ(AnthropicStopReason(FinishReason::kCancelled, true, false), "stop_sequence");
  EXPECT_STREQ(AnthropicStopReason(FinishReason::kEos, false, true), "tool_use");
  EXPECT_STREQ(AnthropicStopReason(FinishReason::kCancelled, false, false), "abort");
}

TEST(AnthropicResponse, WholeMessage) {
  AnthropicWriter w("msg_1", "m");
  GenerationEnd end = End(FinishReason::kCancelled, 10, 0);
  end.stop_sequence = "\n\n";
  end.cache_write.end = 10;  // a breakpoint on the last message
  HttpResponse r = w.Whole("Once upon", nullptr, end);
  const json m = json::parse(r.body);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(m["id"], "msg_1");
  EXPECT_EQ(m["type"], "message");
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["model"], "m");
  EXPECT_EQ(m["content"], json::parse(R"([{"type":"text","text":"Once upon"}])"));
  EXPECT_EQ(m["stop_reason"], "stop_sequence");
  EXPECT_EQ(m["stop_sequence"], "\n\n");
  EXPECT_EQ(m["usage"]["cache_creation_input_tokens"], 10);
  EXPECT_TRUE(m["usage"].contains("prefix_cache"));
}

TEST(AnthropicResponse, WholeMessageWithToolUse) {
  AnthropicWriter w("msg_1", "m");
  w.EnableToolCalls(ToolCallSyntax::kHermes);
  const json m = json::parse(
      w.Whole("Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
              nullptr, End(FinishReason::kEos, 10, 0))
          .body);
  ASSERT_EQ(m["content"].size(), 2u);
  EXPECT_EQ(m["content"][0], json::parse(R"({"type":"text","text":"Checking."})"));
  EXPECT_EQ(m["content"][1]["type"], "tool_use");
  EXPECT_EQ(m["content"][1]["id"].get<std::string>().rfind("toolu_", 0), 0u);
  EXPECT_EQ(m["content"][1]["name"], "get_weather");
  EXPECT_EQ(m["content"][1]["input"], json::parse(R"({"city":"Paris"})"));
  EXPECT_EQ(m["stop_reason"], "tool_use");
}

TEST(AnthropicResponse, StreamedEventsInOrder) {
  AnthropicWriter w("msg_1", "m");
  w.EnableToolCalls(ToolCallSyntax::kHermes);
  std::string s = w.StreamStart(10);
  EXPECT_EQ(s, "") << "message_start waits for the prompt's cache figures";
  GenerationEnd end = End(FinishReason::kEos, 10, 4);
  end.cache_write.end = 10;
  end.cache_write.end_1h = 7;
  GenerationEnd prefilled = end;
  prefilled.finish = FinishReason::kNone;
  prefilled.completion_tokens = 0;
  s += w.StreamPrefilled(prefilled);
  EXPECT_EQ(w.StreamPrefilled(prefilled), "") << "once";
  for (const char* piece : {"Let me ", "look.", "\n<tool_c", "all>\n{\"name\": \"f\", \"arguments\": {\"q\":",
                            " \"x\"}}\n</tool_call>"}) {
    s += w.StreamText(piece, nullptr);
  }
  s += w.StreamEnd(end);
  std::vector<std::string> names;
  std::string text, partial_json;
  for (const auto& [name, data] : Events(s)) {
    names.push_back(name);
    EXPECT_EQ(data["type"], name);
    if (name == "content_block_delta" && data["delta"]["type"] == "text_delta") text += data["delta"]["text"];
    if (name == "content_block_delta" && data["delta"]["type"] == "input_json_delta") {
      EXPECT_EQ(data["index"], 1);
      partial_json += data["delta"]["partial_json"];
    }
    if (name == "content_block_start" && data["index"] == 1) {
      EXPECT_EQ(data["content_block"]["type"], "tool_use");
      EXPECT_EQ(data["content_block"]["name"], "f");
    }
    if (name == "message_start") {
      // The prompt's figures, as the final usage has them.
      EXPECT_EQ(data["message"]["usage"], json::parse(R"({"input_tokens":0,"output_tokens":0,
        "cache_read_input_tokens":4,"cache_creation_input_tokens":6,
        "cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":3}})"));
    }
    if (name == "message_delta") {
      EXPECT_EQ(data["delta"]["stop_reason"], "tool_use");
      EXPECT_EQ(data["usage"]["output_tokens"], 5);
      EXPECT_EQ(data["usage"]["cache_read_input_tokens"], 4);
      EXPECT_EQ(data["usage"]["cache_creation_input_tokens"], 6);
      EXPECT_EQ(data["usage"]["cache_creation"]["ephemeral_1h_input_tokens"], 3);
    }
  }
  EXPECT_EQ(text, "Let me look.");
  EXPECT_EQ(json::parse(partial_json), json::parse(R"({"q": "x"})"));
  const std::vector<std::string> want = {"message_start", "ping", "content_block_start", "content_block_delta",
                                         "content_block_delta", "content_block_stop", "content_block_start",
                                         "content_block_delta", "content_block_delta", "content_block_delta",
                                         "content_block_stop", "message_delta", "message_stop"};
  EXPECT_EQ(names, want);
}

// Cancelled before any token: message_start still comes first, from the final usage.
TEST(AnthropicResponse, AStreamWithoutTokensStillStartsTheMessage) {
  AnthropicWriter w("msg_1", "m");
  std::string s = w.StreamStart(10);
  GenerationEnd end = End(FinishReason::kCancelled, 10, 4);
  end.completion_tokens = 0;
  s += w.StreamEnd(end);
  std::vector<std::string> names;
  for (const auto& [name, data] : Events(s)) {
    names.push_back(name);
    if (name == "message_start") {
      EXPECT_EQ(data["message"]["usage"]["cache_read_input_tokens"], 4);
    }
  }
  EXPECT_EQ(names, (std::vector<std::string>{"message_start", "ping", "message_delta", "message_stop"}));
}

TEST(AnthropicResponse, ErrorShape) {
  AnthropicWriter w("msg_1", "m");
  auto events = Events(w.StreamError(MakeApiError(503, "busy")));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first, "error");
  EXPECT_EQ(events[0].second, json::parse(R"({"type":"error","error":{"type":"overloaded_error","message":"busy"}})"));
  EXPECT_EQ(json::parse(ApiErrorBody(MakeApiError(401, "no key"), ApiDialect::kAnthropic)),
            json::parse(R"({"type":"error","error":{"type":"authentication_error","message":"no key"}})"));
  EXPECT_STREQ(AnthropicErrorTypeFor(400), "invalid_request_error");
  EXPECT_STREQ(AnthropicErrorTypeFor(404), "not_found_error");
  EXPECT_STREQ(AnthropicErrorTypeFor(500), "api_error");
}

TEST(OpenAiWriter, ToolCallsInTheMessage) {
  OpenAiWriter w(ResponseMeta{ApiKind::kChat, "chatcmpl-1", 0, "m"}, false);
  w.EnableToolCalls(ToolCallSyntax::kLlama3);
  const json r = json::parse(
      w.Whole("{\"name\": \"f\", \"parameters\": {\"a\": 1}}", nullptr, End(FinishReason::kEos, 10, 0)).body);
  const json& choice = r["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_TRUE(choice["message"]["content"].is_null());
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
  EXPECT_EQ(choice["message"]["tool_calls"][0]["type"], "function");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "f");
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\": 1}");
}

TEST(OpenAiWriter, StreamedToolCallDeltas) {
  OpenAiWriter w(ResponseMeta{ApiKind::kChat, "chatcmpl-1", 0, "m"}, false);
  w.EnableToolCalls(ToolCallSyntax::kHermes);
  std::string s = w.StreamStart(10);
  s += w.StreamText("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\"", nullptr);
  s += w.StreamText(": 1}}</tool_call>", nullptr);
  s += w.StreamEnd(End(FinishReason::kEos, 10, 0));
  std::string arguments, id, finish;
  for (size_t at = 0; (at = s.find("data: ", at)) != std::string::npos; at += 6) {
    const std::string data = s.substr(at + 6, s.find("\n\n", at) - at - 6);
    if (data == "[DONE]") continue;
    const json c = json::parse(data)["choices"][0];
    if (c["finish_reason"].is_string()) finish = c["finish_reason"];
    if (!c["delta"].contains("tool_calls")) continue;
    const json& call = c["delta"]["tool_calls"][0];
    EXPECT_EQ(call["index"], 0);
    if (call.contains("id")) {
      id = call["id"];
      EXPECT_EQ(call["function"]["name"], "f");
    }
    arguments += call["function"]["arguments"].get<std::string>();
  }
  EXPECT_EQ(id.rfind("call_", 0), 0u);
  EXPECT_EQ(arguments, "{\"a\": 1}");
  EXPECT_EQ(finish, "tool_calls");
}

}  // namespace
}  // namespace prefixd
