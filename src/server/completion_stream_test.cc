#include "server/completion_stream.h"

#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "server/anthropic_response.h"
#include "server/openai_response.h"
#include "server/server_test_util.h"
#include "tokenizer/utf8_sanitizer.h"

namespace prefixd {
namespace {

class CompletionStreamTest : public StoriesTokenizerTest {
 protected:
  // The generated tokens of `text` (no BOS), as the engine would emit them.
  std::vector<int32_t> Tokens(const std::string& text) {
    EncodeOptions o;
    o.add_bos = false;
    o.add_eos = false;
    return tokenizer_->Encode(text, o);
  }

  static TokenEvent Token(int32_t t, bool with_logprob = false) {
    TokenEvent e;
    e.token = t;
    if (with_logprob) {
      e.logprob = TokenLogprob{t, -0.5f};
      e.top_logprobs = {TokenLogprob{t, -0.5f}, TokenLogprob{t + 1, -2.0f}};
    }
    return e;
  }
  static TokenEvent Final(FinishReason r, int32_t t = -1) {
    TokenEvent e;
    e.token = t;
    e.finished = true;
    e.finish = r;
    e.usage.cached_tokens = 3;
    return e;
  }

  // Feeds every token, one event each, then a final event; returns the concatenated deltas.
  std::string FeedAll(CompletionStream& s, const std::vector<int32_t>& tokens, FinishReason r,
                      bool cancel_on_stop = true) {
    std::string out;
    for (int32_t t : tokens) {
      CompletionStream::Delta d = s.Consume(Token(t, true));
      out += d.text;
      if (d.stop_matched && cancel_on_stop) break;
    }
    out += s.Consume(Final(s.stop_matched() ? FinishReason::kCancelled : r)).text;
    return out;
  }
};

TEST_F(CompletionStreamTest, DecodesEveryToken) {
  const std::string text = " Once upon a time, there was a little cat.";
  const auto tokens = Tokens(text);
  CompletionStream s(*tokenizer_, {}, -1);
  std::string out = FeedAll(s, tokens, FinishReason::kLength);
  std::string expected;
  for (int32_t t : tokens) expected += tokenizer_->Piece(t);
  EXPECT_EQ(out, expected);
  EXPECT_EQ(s.text(), expected);
  EXPECT_TRUE(s.finished());
  EXPECT_STREQ(s.finish_reason(), "length");
  EXPECT_EQ(s.num_tokens(), static_cast<int32_t>(tokens.size()));
  EXPECT_EQ(s.usage().cached_tokens, 3);
}

TEST_F(CompletionStreamTest, EndOfGenerationTokenGivesNoText) {
  const auto tokens = Tokens(" Hello");
  CompletionStream s(*tokenizer_, {}, -1);
  std::string out;
  for (int32_t t : tokens) out += s.Consume(Token(t)).text;
  out += s.Consume(Final(FinishReason::kEos, tokenizer_->eos_id())).text;
  std::string expected;
  for (int32_t t : tokens) expected += tokenizer_->Piece(t);
  EXPECT_EQ(out, expected);
  EXPECT_STREQ(s.finish_reason(), "stop");
  EXPECT_EQ(s.num_tokens(), static_cast<int32_t>(tokens.size()) + 1);
  EXPECT_EQ(s.num_text_tokens(), static_cast<int32_t>(tokens.size()));
}

TEST_F(CompletionStreamTest, StopStringCutsTheText) {
  const std::string text = " Once upon a time, there was a little cat.";
  const auto tokens = Tokens(text);
  std::string full;
  for (int32_t t : tokens) full += tokenizer_->Piece(t);
  CompletionStream s(*tokenizer_, {"there"}, -1);
  std::string out = FeedAll(s, tokens, FinishReason::kLength);
  EXPECT_EQ(out, full.substr(0, full.find("there")));
  EXPECT_TRUE(s.stop_matched());
  EXPECT_STREQ(s.finish_reason(), "stop");
  EXPECT_LT(s.num_tokens(), static_cast<int32_t>(tokens.size()));
}

TEST_F(CompletionStreamTest, EventsAfterTheStopAreIgnored) {
  const auto tokens = Tokens(" a b c d e");
  CompletionStream s(*tokenizer_, {"c"}, -1);
  std::string out = FeedAll(s, tokens, FinishReason::kLength, /*cancel_on_stop=*/false);
  std::string full;
  for (int32_t t : tokens) full += tokenizer_->Piece(t);
  EXPECT_EQ(out, full.substr(0, full.find('c')));
}

TEST_F(CompletionStreamTest, LogprobsFollowTheirText) {
  const auto tokens = Tokens(" Once upon a time");
  CompletionStream s(*tokenizer_, {"time"}, 1);
  std::vector<LogprobEntry> entries;
  for (int32_t t : tokens) {
    CompletionStream::Delta d = s.Consume(Token(t, true));
    for (auto& e : d.logprobs) entries.push_back(e);
    if (d.stop_matched) break;
  }
  for (auto& e : s.Consume(Final(FinishReason::kCancelled)).logprobs) entries.push_back(e);
  // Every entry's text starts inside the returned text.
  ASSERT_FALSE(entries.empty());
  for (const LogprobEntry& e : entries) {
    EXPECT_LT(e.text_offset, static_cast<int64_t>(s.text().size()));
    EXPECT_EQ(e.top.size(), 1u);
    EXPECT_FLOAT_EQ(e.logprob, -0.5f);
  }
  EXPECT_EQ(entries.front().text_offset, 0);
}

TEST_F(CompletionStreamTest, ChunkingDoesNotChangeTheText) {
  // Same tokens, all in one batch of events vs. one at a time: same text.
  const auto tokens = Tokens(" The dog ran to the park and played with a ball.");
  CompletionStream a(*tokenizer_, {"park and"}, -1);
  CompletionStream b(*tokenizer_, {"park and"}, -1);
  std::string out_a = FeedAll(a, tokens, FinishReason::kLength);
  std::string out_b;
  for (int32_t t : tokens) out_b += b.Consume(Token(t)).text;
  out_b += b.Consume(Final(FinishReason::kCancelled)).text;
  EXPECT_EQ(out_a, out_b);
  EXPECT_EQ(a.num_tokens(), b.num_tokens());
}

// What a client reads out of the answer's JSON: the streamed deltas (SSE `data:` lines) or the
// whole message, in either dialect.
std::string TextReadFromStream(const std::string& sse, bool anthropic) {
  std::string text;
  std::istringstream lines(sse);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("data: {")) continue;
    const nlohmann::json j = nlohmann::json::parse(line.substr(6));
    if (anthropic) {
      if (j["type"] == "content_block_delta" && j["delta"]["type"] == "text_delta") text += j["delta"]["text"].get<std::string>();
    } else if (!j["choices"].empty() && j["choices"][0]["delta"].contains("content") && j["choices"][0]["delta"]["content"].is_string()) {
      text += j["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  return text;
}

std::string TextReadFromWhole(const std::string& body, bool anthropic) {
  const nlohmann::json j = nlohmann::json::parse(body);
  if (!anthropic) return j["choices"][0]["message"]["content"].is_string() ? j["choices"][0]["message"]["content"].get<std::string>() : "";
  std::string text;
  for (const auto& block : j["content"]) {
    if (block["type"] == "text") text += block["text"].get<std::string>();
  }
  return text;
}

// Random replies with ill-formed UTF-8 (byte tokens cut short, stray continuation bytes,
// characters split over byte tokens): the client reads the same text streamed as whole, in
// both dialects, and it is text() (the reply record's key), the bytes with each ill-formed
// subpart replaced by U+FFFD; every delta is valid UTF-8 on its own.
TEST_F(CompletionStreamTest, StreamedAndWholeAnswersGiveTheClientText) {
  std::vector<int32_t> pool = Tokens(" the cat");
  for (const uint8_t b : {0x80, 0x82, 0xAC, 0xA9, 0xBF, 0x9F, 0xC3, 0xE2, 0xE0, 0xED, 0xF0, 0xFF}) {
    pool.push_back(ByteToken(*tokenizer_, b));
    ASSERT_GE(pool.back(), 0);
  }
  std::mt19937 rng(23);
  for (int run = 0; run < 300; ++run) {
    std::vector<int32_t> tokens(1 + rng() % 16);
    std::string bytes;
    for (int32_t& t : tokens) {
      t = pool[rng() % pool.size()];
      bytes += tokenizer_->Piece(t);
    }
    for (const bool anthropic : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "run " << run << (anthropic ? " Anthropic" : " OpenAI"));
      std::unique_ptr<ResponseWriter> streamed, whole;
      if (anthropic) {
        streamed = std::make_unique<AnthropicWriter>("msg_1", "m");
        whole = std::make_unique<AnthropicWriter>("msg_1", "m");
      } else {
        streamed = std::make_unique<OpenAiWriter>(ResponseMeta{ApiKind::kChat, "chatcmpl-1", 0, "m"}, false);
        whole = std::make_unique<OpenAiWriter>(ResponseMeta{ApiKind::kChat, "chatcmpl-1", 0, "m"}, false);
      }
      CompletionStream s(*tokenizer_, {}, -1);
      std::string sse = streamed->StreamStart(3);
      for (const int32_t t : tokens) {
        const CompletionStream::Delta d = s.Consume(Token(t));
        ASSERT_EQ(ReplaceInvalidUtf8(d.text), d.text);
        sse += streamed->StreamText(d.text, nullptr);
      }
      const CompletionStream::Delta d = s.Consume(Final(FinishReason::kLength));
      ASSERT_EQ(ReplaceInvalidUtf8(d.text), d.text);
      sse += streamed->StreamText(d.text, nullptr);
      GenerationEnd end;
      end.finish = FinishReason::kLength;
      sse += streamed->StreamEnd(end);
      ASSERT_EQ(s.text(), ReplaceInvalidUtf8(bytes));
      EXPECT_EQ(TextReadFromStream(sse, anthropic), s.text());
      EXPECT_EQ(TextReadFromWhole(whole->Whole(s.text(), nullptr, end).body, anthropic), s.text());
    }
  }
}

TEST_F(CompletionStreamTest, ErrorIsKept) {
  CompletionStream s(*tokenizer_, {}, -1);
  TokenEvent e = Final(FinishReason::kNone);
  e.error = absl::InternalError("backend failed");
  CompletionStream::Delta d = s.Consume(e);
  EXPECT_TRUE(d.finished);
  EXPECT_FALSE(s.error().ok());
}

}  // namespace
}  // namespace prefixd
