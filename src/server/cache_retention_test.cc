#include "server/cache_retention.h"

#include <gtest/gtest.h>

#include "server/anthropic_request.h"
#include "server/api_error.h"
#include "server/openai_request.h"

namespace prefixd {
namespace {

constexpr RequestLimits kLimits{/*context_length=*/512, /*vocab_size=*/32000};

std::string Chat(const std::string& extra) {
  return R"({"messages":[{"role":"user","content":"hi"}],)" + extra + "}";
}

TEST(CacheRetention, OpenAiFieldsAndTokenRangesAreRead) {
  auto r = ParseChatRequest(
      Chat(R"("prompt_cache_retention":"24h","prompt_cache_key":"agent-7",)"
           R"("prefix_cache":{"retention":[{"token_start":4,"token_end":40,"priority":90,"duration_s":60},)"
           R"({"duration_s":0.5}]})"),
      kLimits);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->retention.prompt_cache_retention, "24h");
  EXPECT_EQ(r->retention.prompt_cache_key, "agent-7");
  ASSERT_EQ(r->retention.token_ranges.size(), 2u);
  EXPECT_EQ(r->retention.token_ranges[0].token_start, 4);
  EXPECT_EQ(r->retention.token_ranges[0].token_end, 40);
  EXPECT_EQ(r->retention.token_ranges[0].priority, 90);
  EXPECT_EQ(r->retention.token_ranges[0].duration_ms, 60000);
  EXPECT_FALSE(r->retention.token_ranges[1].token_end.has_value());
  EXPECT_EQ(r->retention.token_ranges[1].duration_ms, 500);

  const ResolvedRetention res = ResolveRetention(r->retention, 100, {});
  ASSERT_EQ(res.ranges.size(), 3u);
  EXPECT_EQ(res.ranges[0], (RetentionRange{4, 40, 90, 60000}));
  EXPECT_EQ(res.ranges[1], (RetentionRange{0, 100, 50, 500}));
  EXPECT_EQ(res.ranges[2], (RetentionRange{0, 100, 50, kPromptCacheRetention24hMs}));
  EXPECT_EQ(res.retained_tokens, 100);
  EXPECT_EQ(res.cache_write_end, 0) << "no breakpoints in an OpenAI request";
  const nlohmann::json usage = RetentionUsageJson(r->retention, res);
  EXPECT_EQ(usage["prompt_cache_key"], "agent-7");
  EXPECT_EQ(usage["retained_tokens"], 100);
  EXPECT_EQ(usage["duration_s"], 86400.0);
}

TEST(CacheRetention, InMemoryAndAKeyAloneRetainNothing) {
  auto r = ParseChatRequest(Chat(R"("prompt_cache_retention":"in_memory","prompt_cache_key":"k")"), kLimits);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->retention.empty());
  const ResolvedRetention res = ResolveRetention(r->retention, 50, {});
  EXPECT_TRUE(res.ranges.empty());
  EXPECT_EQ(RetentionUsageJson(r->retention, res)["retained_tokens"], 0);
}

TEST(CacheRetention, BadFieldsNameThemselves) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {Chat(R"("prompt_cache_retention":"forever")"), "prompt_cache_retention"},
      {Chat(R"("prompt_cache_key":5)"), "prompt_cache_key"},
      {Chat(R"("prefix_cache":{"retention":{}})"), "prefix_cache.retention"},
      {Chat(R"("prefix_cache":{"retention":[{}]})"), "prefix_cache.retention[0].duration_s"},
      {Chat(R"("prefix_cache":{"retention":[{"duration_s":0}]})"), "prefix_cache.retention[0].duration_s"},
      {Chat(R"("prefix_cache":{"retention":[{"duration_s":1,"priority":0}]})"), "prefix_cache.retention[0].priority"},
      {Chat(R"("prefix_cache":{"retention":[{"duration_s":1,"token_start":5,"token_end":5}]})"),
       "prefix_cache.retention[0].token_end"},
  };
  for (const auto& [body, param] : cases) {
    auto r = ParseChatRequest(body, kLimits);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(ParamOf(r.status()), param) << body << ": " << r.status();
  }
}

// system (message 0), user text (1), assistant (2), then a user turn with a tool result (3)
// and text (4): each breakpoint says where its block sits (cache_breakpoints.h finds it in the
// rendered prompt), and the resolved ranges end where those ends say.
TEST(CacheRetention, AnthropicBreakpointsSayWhereTheirBlocksSit) {
  const std::string body = R"({"max_tokens":8,
    "system":[{"type":"text","text":"S","cache_control":{"type":"ephemeral","ttl":"1h"}}],
    "tools":[{"name":"f","input_schema":{},"cache_control":{"type":"ephemeral"}}],
    "messages":[
      {"role":"user","content":[{"type":"text","text":"a"}]},
      {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"},
                                {"type":"text","text":"bc","cache_control":{"type":"ephemeral","ttl":"5m"}}]}]})";
  auto r = ParseMessagesRequest(body, kLimits, MessagesEndpoint::kCreate);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->messages.size(), 5u);
  ASSERT_EQ(r->retention.breakpoints.size(), 3u);
  const CacheBreakpoint& system = r->retention.breakpoints[0];
  EXPECT_EQ(system.where, CacheBreakpoint::Where::kMessage);
  EXPECT_EQ(system.index, 0);
  EXPECT_EQ(system.content_end, 1);
  EXPECT_EQ(system.tool_call, -1);
  EXPECT_EQ(system.duration_ms, kCacheControlTtl1hMs);
  const CacheBreakpoint& text = r->retention.breakpoints[1];
  EXPECT_EQ(text.index, 4);
  EXPECT_EQ(text.content_end, 2);
  EXPECT_EQ(text.duration_ms, kCacheControlTtl5mMs);
  const CacheBreakpoint& tool = r->retention.breakpoints[2];
  EXPECT_EQ(tool.where, CacheBreakpoint::Where::kTool);
  EXPECT_EQ(tool.index, 0);

  const std::vector<int64_t> ends = {10, 50, 4};
  const ResolvedRetention res = ResolveRetention(r->retention, 53, ends);
  EXPECT_EQ(res.cache_write_end, 50);
  EXPECT_EQ(res.cache_write_end_1h, 10);
  ASSERT_EQ(res.ranges.size(), 3u);
  EXPECT_EQ(res.ranges[0], (RetentionRange{0, 10, 50, kCacheControlTtl1hMs}));
  EXPECT_EQ(res.ranges[1], (RetentionRange{0, 50, 50, kCacheControlTtl5mMs}));
  EXPECT_EQ(res.ranges[2], (RetentionRange{0, 4, 50, kCacheControlTtl5mMs}));
  // An end past the prompt (a render that disagrees) is cut to it.
  const std::vector<int64_t> past = {10, 80, 4};
  EXPECT_EQ(ResolveRetention(r->retention, 53, past).cache_write_end, 53);
}

TEST(CacheRetention, AnthropicCacheControlIsChecked) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"max_tokens":8,"system":[{"type":"text","text":"S","cache_control":{"type":"persistent"}}],
           "messages":[{"role":"user","content":"hi"}]})", "system[0].cache_control.type"},
      {R"({"max_tokens":8,"messages":[{"role":"user","content":[{"type":"text","text":"a",
           "cache_control":{"type":"ephemeral","ttl":"2h"}}]}]})", "messages[0].content[0].cache_control.ttl"},
      {R"({"max_tokens":8,"messages":[{"role":"user","content":[
           {"type":"text","text":"a","cache_control":{"type":"ephemeral"}},
           {"type":"text","text":"b","cache_control":{"type":"ephemeral"}},
           {"type":"text","text":"c","cache_control":{"type":"ephemeral"}},
           {"type":"text","text":"d","cache_control":{"type":"ephemeral"}},
           {"type":"text","text":"e","cache_control":{"type":"ephemeral"}}]}]})",
       "messages[0].content[4].cache_control"},
  };
  for (const auto& [body, param] : cases) {
    auto r = ParseMessagesRequest(body, kLimits, MessagesEndpoint::kCreate);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(ParamOf(r.status()), param) << r.status();
  }
}

}  // namespace
}  // namespace prefixd
