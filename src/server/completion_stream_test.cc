#include "server/completion_stream.h"

#include <gtest/gtest.h>

#include "server/server_test_util.h"

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
