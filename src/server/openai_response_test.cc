#include "server/openai_response.h"

#include <gtest/gtest.h>

namespace prefixd {
namespace {

using json = nlohmann::json;

RequestUsage SampleUsage() {
  RequestUsage u;
  u.prompt_tokens = 40;
  u.completion_tokens = 9;
  u.cached_tokens = 32;
  u.cached_tokens_by_tier = {{"pool", 32}};
  u.cache_load_ms = 0.25;
  u.diverged_at_token = 32;
  return u;
}

TEST(OpenAiResponse, FinishReasons) {
  EXPECT_STREQ(FinishReasonString(FinishReason::kEos, false), "stop");
  EXPECT_STREQ(FinishReasonString(FinishReason::kLength, false), "length");
  EXPECT_STREQ(FinishReasonString(FinishReason::kContext, false), "length");
  EXPECT_STREQ(FinishReasonString(FinishReason::kCancelled, true), "stop");
  EXPECT_STREQ(FinishReasonString(FinishReason::kCancelled, false), "abort");
}

TEST(OpenAiResponse, Usage) {
  json u = UsageJson(SampleUsage(), 7, 3);
  EXPECT_EQ(u["prompt_tokens"], 40);
  EXPECT_EQ(u["completion_tokens"], 7);
  EXPECT_EQ(u["total_tokens"], 47);
  EXPECT_EQ(u["prompt_tokens_details"]["cached_tokens"], 32);
  EXPECT_EQ(u["prefix_cache"]["cached_tokens"], 32);
  EXPECT_EQ(u["prefix_cache"]["by_tier"]["pool"], 32);
  EXPECT_DOUBLE_EQ(u["prefix_cache"]["load_ms"].get<double>(), 0.25);
  EXPECT_EQ(u["prefix_cache"]["diverged_at_token"], 32);
  EXPECT_EQ(u["prefix_cache"]["diverged_in_message"], 3);

  RequestUsage full = SampleUsage();
  full.diverged_at_token = -1;
  full.cached_tokens_by_tier.clear();
  json v = UsageJson(full, 1, std::nullopt);
  EXPECT_TRUE(v["prefix_cache"]["diverged_at_token"].is_null());
  EXPECT_FALSE(v["prefix_cache"].contains("diverged_in_message"));
  EXPECT_EQ(v["prefix_cache"]["by_tier"]["pool"], 32);
  json w = UsageJson(full, 1, 0);
  EXPECT_TRUE(w["prefix_cache"]["diverged_in_message"].is_null());
}

TEST(OpenAiResponse, CompletionResponse) {
  ResponseMeta meta{ApiKind::kCompletion, "cmpl-1", 123, "m"};
  json r = ResponseJson(meta, "Once", "length", nullptr, UsageJson(SampleUsage(), 9, std::nullopt));
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["id"], "cmpl-1");
  EXPECT_EQ(r["created"], 123);
  EXPECT_EQ(r["model"], "m");
  EXPECT_EQ(r["choices"][0]["text"], "Once");
  EXPECT_EQ(r["choices"][0]["index"], 0);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(r["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(r["usage"]["completion_tokens"], 9);
}

TEST(OpenAiResponse, ChatResponseAndChunks) {
  ResponseMeta meta{ApiKind::kChat, "chatcmpl-1", 5, "m"};
  json r = ResponseJson(meta, "Hi", "stop", nullptr, json::object());
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "Hi");

  json first = ChunkJson(meta, "", true, nullptr, nullptr);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  json mid = ChunkJson(meta, "lo", false, nullptr, nullptr);
  EXPECT_FALSE(mid["choices"][0]["delta"].contains("role"));
  EXPECT_EQ(mid["choices"][0]["delta"]["content"], "lo");
  json last = ChunkJson(meta, "", false, "stop", nullptr);
  EXPECT_TRUE(last["choices"][0]["delta"].empty());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  json usage = UsageChunkJson(meta, json{{"prompt_tokens", 1}});
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 1);
}

TEST(OpenAiResponse, SseFraming) {
  EXPECT_EQ(SseData(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_EQ(SseDone(), "data: [DONE]\n\n");
}

TEST(OpenAiResponse, InvalidUtf8IsReplacedNotThrown) {
  ResponseMeta meta{ApiKind::kCompletion, "c", 0, "m"};
  json r = ChunkJson(meta, "bad \xe2\x82", false, nullptr, nullptr);
  std::string s;
  EXPECT_NO_THROW(s = SseData(r));
  EXPECT_NE(s.find("\xef\xbf\xbd"), std::string::npos);
}

TEST(OpenAiResponse, Logprobs) {
  std::vector<LogprobEntry> e = {{"Once", -0.5f, {{"Once", -0.5f}, {"One", -1.5f}}, 0},
                                 {" upon", -0.25f, {{" upon", -0.25f}}, 4}};
  json c = CompletionLogprobsJson(e);
  EXPECT_EQ(c["tokens"], (json{"Once", " upon"}));
  EXPECT_DOUBLE_EQ(c["token_logprobs"][1].get<double>(), -0.25);
  EXPECT_DOUBLE_EQ(c["top_logprobs"][0]["One"].get<double>(), -1.5);
  EXPECT_EQ(c["text_offset"], (json{0, 4}));
  json h = ChatLogprobsJson(e);
  EXPECT_EQ(h["content"][0]["token"], "Once");
  EXPECT_EQ(h["content"][0]["bytes"], (json{79, 110, 99, 101}));
  EXPECT_EQ(h["content"][0]["top_logprobs"][1]["token"], "One");
  EXPECT_TRUE(h["refusal"].is_null());
}

}  // namespace
}  // namespace prefixd
