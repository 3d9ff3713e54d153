#include "server/anthropic_request.h"

#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/chat_format.h"
#include "server/server_test_util.h"

namespace prefixd {
namespace {

constexpr RequestLimits kLimits{/*context_length=*/512, /*vocab_size=*/32000};

StatusOr<OpenAiRequest> Create(std::string_view body) {
  return ParseMessagesRequest(body, kLimits, MessagesEndpoint::kCreate);
}

// A body with `extra` fields after valid max_tokens and messages.
std::string Body(const std::string& extra) {
  return R"({"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}])" +
         (extra.empty() ? "" : "," + extra) + "}";
}

TEST(AnthropicRequest, BadBodiesNameTheirField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", ""},
      {"[]", ""},
      {R"({"messages":[{"role":"user","content":"hi"}]})", "max_tokens"},
      {Body(R"("max_tokens":0)"), "max_tokens"},
      {Body(R"("max_tokens":100000)"), "max_tokens"},
      {R"({"max_tokens":4})", "messages"},
      {R"({"max_tokens":4,"messages":[]})", "messages"},
      {R"({"max_tokens":4,"messages":[{"role":"system","content":"x"}]})", "messages[0].role"},
      {R"({"max_tokens":4,"messages":[{"role":"user"}]})", "messages[0].content"},
      {R"({"max_tokens":4,"messages":[{"role":"user","content":5}]})", "messages[0].content"},
      {R"({"max_tokens":4,"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]})",
       "messages[0].content[0].type"},
      {R"({"max_tokens":4,"messages":[{"role":"user","content":[{"text":"x"}]}]})", "messages[0].content[0].type"},
      {R"({"max_tokens":4,"messages":[{"role":"user","content":[{"type":"text"}]}]})", "messages[0].content[0].text"},
      {R"({"max_tokens":4,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"f","input":{}}]}]})",
       "messages[0].content[0].type"},
      {R"({"max_tokens":4,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f"}]}]})",
       "messages[0].content[0].input"},
      {R"({"max_tokens":4,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f","input":[]}]}]})",
       "messages[0].content[0].input"},
      {R"({"max_tokens":4,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]})",
       "messages[0].content[0].tool_use_id"},
      {R"({"max_tokens":4,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"image"}]}]}]})",
       "messages[0].content[0].content[0].type"},
      {Body(R"("system":5)"), "system"},
      {Body(R"("system":[{"type":"text","text":7}])"), "system[0].text"},
      {Body(R"("stop_sequences":"x")"), "stop_sequences"},
      {Body(R"("stop_sequences":[1])"), "stop_sequences[0]"},
      {Body(R"("stop_sequences":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"])"), "stop_sequences"},
      {Body(R"("metadata":"x")"), "metadata"},
      {Body(R"("temperature":"hot")"), "temperature"},
      {Body(R"("top_k":"x")"), "top_k"},
      {Body(R"("stream":1)"), "stream"},
      {Body(R"("tools":{})"), "tools"},
      {Body(R"("tools":[{"name":"f"}])"), "tools[0].input_schema"},
      {Body(R"("tools":[{"input_schema":{}}])"), "tools[0].name"},
      {Body(R"("tools":[{"type":"web_search_20250305","name":"web_search"}])"), "tools[0].type"},
      {Body(R"("tool_choice":"auto")"), "tool_choice"},
      {Body(R"("tool_choice":{"type":"any"})"), "tool_choice"},
      {Body(R"("tool_choice":{"type":"tool","name":"f"})"), "tool_choice"},
      {Body(R"("tools":[{"name":"g","input_schema":{}}],"tool_choice":{"type":"tool","name":"f"})"), "tool_choice.name"},
      {Body(R"("tools":[{"name":"g","input_schema":{}}],"tool_choice":{"type":"tool"})"), "tool_choice.name"},
      {Body(R"("tool_choice":{"type":"sometimes"})"), "tool_choice.type"},
      {Body("\"bad\": \"\xff\""), "bad"},
  };
  for (const auto& [body, param] : cases) {
    auto r = Create(body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << body;
    EXPECT_EQ(ParamOf(r.status()), param) << body << ": " << r.status();
  }
}

TEST(AnthropicRequest, ForcedToolChoiceIsAcceptedWithItsTool) {
  const std::string tools = R"("tools":[{"name":"f","input_schema":{"type":"object"}},{"name":"g","input_schema":{}}],)";
  auto any = Create(Body(tools + R"("tool_choice":{"type":"any"})"));
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_EQ(any->tool_choice, ToolChoice::kRequired);
  EXPECT_EQ(any->tool_schema_field, "input_schema");
  EXPECT_TRUE(any->parallel_tool_calls);  // Anthropic's default: parallel tool use allowed
  auto named = Create(Body(tools + R"("tool_choice":{"type":"tool","name":"g","disable_parallel_tool_use":true})"));
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->tool_choice, ToolChoice::kNamed);
  EXPECT_EQ(named->tool_choice_name, "g");
  EXPECT_FALSE(named->parallel_tool_calls);
  auto bad = Create(Body(tools + R"("tool_choice":{"type":"any","disable_parallel_tool_use":"yes"})"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ParamOf(bad.status()), "tool_choice.disable_parallel_tool_use");
  auto unknown = Create(Body(tools + R"("tool_choice":{"type":"tool","name":"h"})"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'h', which is not among the request's tools (f, g)"), std::string::npos)
      << unknown.status();
}

TEST(AnthropicRequest, NestingLimitAppliesWhileParsing) {
  std::string deep = Body(R"("metadata":)" + std::string(100, '[') + std::string(100, ']'));
  auto r = Create(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nests"), std::string::npos) << r.status();
}

TEST(AnthropicRequest, ToolBytesLimitCoversToolsAndInputs) {
  RequestLimits small = kLimits;
  small.max_tools_bytes = 64;
  const std::string big(100, 'x');
  auto r = ParseMessagesRequest(Body(R"("tools":[{"name":"f","input_schema":{"description":")" + big + "\"}}]"),
                                small, MessagesEndpoint::kCreate);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ParamOf(r.status()), "tools");
}

TEST(AnthropicRequest, FieldsAndDefaults) {
  auto r = Create(Body(R"("temperature":0,"top_p":0.5,"top_k":3,"stream":true,"stop_sequences":["\n\n",""],)"
                       R"("metadata":{"user_id":"u"},"cache_salt":"s")"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->kind, ApiKind::kChat);
  EXPECT_EQ(r->model, "m");
  EXPECT_EQ(r->max_tokens, 16);
  EXPECT_EQ(r->temperature, 0);
  EXPECT_FLOAT_EQ(r->top_p, 0.5f);
  EXPECT_EQ(r->top_k, 3);
  EXPECT_TRUE(r->stream);
  EXPECT_EQ(r->stop, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(r->cache_salt, "s");
  EXPECT_EQ(r->tool_choice, ToolChoice::kAuto);
  auto none = Create(Body(R"("tool_choice":{"type":"none"})"));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->tool_choice, ToolChoice::kNone);
}

TEST(AnthropicRequest, CountTokensNeedsNoMaxTokens) {
  auto r = ParseMessagesRequest(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})", kLimits,
                                MessagesEndpoint::kCountTokens);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->messages.size(), 1u);
}

TEST(AnthropicRequest, ConvertsBlocksToChatMessages) {
  auto r = Create(R"({"max_tokens":8,
    "system":[{"type":"text","text":"Be "},{"type":"text","text":"brief.","cache_control":{"type":"ephemeral"}}],
    "messages":[
      {"role":"user","content":[{"type":"text","text":"Weather "},{"type":"text","text":"in Paris?"}]},
      {"role":"assistant","content":[{"type":"text","text":"Checking."},
        {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"zeta":1,"alpha":{"b":2,"a":1}}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"sunny"}]},
        {"type":"tool_result","tool_use_id":"toolu_2","content":"warm","is_error":false},
        {"type":"text","text":"Thanks"}]}]})");
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> got;
  for (const ChatMessage& m : r->messages) got.push_back(MessageJson(m).dump());
  const std::vector<std::string> want = {
      R"({"role":"system","content":"Be brief."})",
      R"({"role":"user","content":"Weather in Paris?"})",
      R"({"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"zeta\":1,\"alpha\":{\"b\":2,\"a\":1}}"}}]})",
      R"({"role":"tool","content":"sunny","tool_call_id":"toolu_1"})",
      R"({"role":"tool","content":"warm","tool_call_id":"toolu_2"})",
      R"({"role":"user","content":"Thanks"})",
  };
  EXPECT_EQ(got, want);
}

TEST(AnthropicRequest, ToolsBecomeFunctionsWithTheirKeyOrder) {
  auto r = Create(Body(R"("tools":[{"name":"f","description":"d","input_schema":{"type":"object","properties":{"z":{},"a":{}}},"cache_control":{"type":"ephemeral"}}])"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tools.dump(),
            R"([{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"z":{},"a":{}}}}}])");
}

// The same conversation in both dialects gives the same prompt text and token ids, so the two
// share cached prefixes.
class DialectsTest : public StoriesTokenizerTest {
 protected:
  std::vector<int32_t> Tokens(const ChatFormat& format, const OpenAiRequest& r, std::string* text) {
    auto chat = format.Render(r.messages, r.tools, r.chat_template_kwargs);
    EXPECT_TRUE(chat.ok()) << chat.status();
    if (!chat.ok()) return {};
    *text = chat->text;
    return tokenizer_->Encode(chat->text, ChatEncodeOptions(*chat));
  }
};

TEST_F(DialectsTest, OpenAiAndAnthropicConversationsGiveTheSameTokens) {
  const std::string openai = R"({"messages":[
      {"role":"system","content":"You answer briefly."},
      {"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"unit\":\"c\"}"}}]},
      {"role":"tool","tool_call_id":"toolu_1","content":"sunny, 21 C"},
      {"role":"user","content":"And tomorrow?"}],
    "tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather",
      "parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string"}},"required":["city"]}}}]})";
  const std::string anthropic = R"({"max_tokens":32,"system":"You answer briefly.","messages":[
      {"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris","unit":"c"}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny, 21 C"},
                                {"type":"text","text":"And tomorrow?"}]}],
    "tools":[{"name":"get_weather","description":"Current weather",
      "input_schema":{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string"}},"required":["city"]}}]})";
  auto o = ParseChatRequest(openai, kLimits);
  auto a = Create(anthropic);
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_TRUE(a.ok()) << a.status();
  for (const char* name : {"qwen2.5-instruct.jinja", "chatml.jinja", ""}) {
    const ChatFormat format(*name ? ReadTestTemplate(name) : std::string(), tokenizer_->vocab());
    std::string text_o, text_a;
    const std::vector<int32_t> ids_o = Tokens(format, *o, &text_o);
    const std::vector<int32_t> ids_a = Tokens(format, *a, &text_a);
    EXPECT_EQ(text_a, text_o) << name;
    EXPECT_FALSE(ids_o.empty()) << name;
    EXPECT_EQ(ids_a, ids_o) << name;
    if (std::string(name) == "qwen2.5-instruct.jinja") {
      EXPECT_NE(text_o.find("<tool_call>"), std::string::npos);
      EXPECT_NE(text_o.find("get_weather"), std::string::npos);
      EXPECT_NE(text_o.find("sunny, 21 C"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace prefixd
