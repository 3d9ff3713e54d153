#include "engine/token_constraint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace prefixd {
namespace {

// The reference grammar: a finite set of words. The state is the text so far; it stays alive
// while some word starts with it, and is complete when it is a word no other word extends.
class WordsMatcher : public ByteMatcher {
 public:
  explicit WordsMatcher(std::vector<std::string> words) : words_(std::move(words)) {}
  std::unique_ptr<ByteMatcher> Clone() const override { return std::make_unique<WordsMatcher>(*this); }
  void CopyFrom(const ByteMatcher& other) override { *this = static_cast<const WordsMatcher&>(other); }
  bool Feed(uint8_t b) override {
    text_.push_back(static_cast<char>(b));
    return IsPrefix(text_);
  }
  bool IsComplete() const override {
    bool word = false;
    for (const std::string& w : words_) {
      if (w == text_) word = true;
      if (w.size() > text_.size() && w.compare(0, text_.size(), text_) == 0) return false;
    }
    return word;
  }
  bool CanEnd() const override { return std::find(words_.begin(), words_.end(), text_) != words_.end(); }
  bool IsPrefix(const std::string& s) const {
    return std::any_of(words_.begin(), words_.end(),
                       [&s](const std::string& w) { return w.compare(0, s.size(), s) == 0 && w.size() >= s.size(); });
  }
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> words_;
  std::string text_;
};

std::string RandomString(std::mt19937& rng, int min_len, int max_len, int alphabet) {
  std::uniform_int_distribution<int> len(min_len, max_len), letter(0, alphabet - 1);
  std::string s(static_cast<size_t>(len(rng)), 'a');
  for (char& c : s) c = static_cast<char>('a' + letter(rng));
  return s;
}

// A vocabulary: every single letter (so no state is a dead end), random pieces, and an empty
// (control) token.
std::vector<std::string> RandomVocab(std::mt19937& rng, int size, int alphabet) {
  std::vector<std::string> v = {""};
  for (int i = 0; i < alphabet; ++i) v.push_back(std::string(1, static_cast<char>('a' + i)));
  while (static_cast<int>(v.size()) < size) v.push_back(RandomString(rng, 1, 4, alphabet));
  return v;
}

std::vector<float> RandomLogits(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> d(0, 2);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

struct RandomCase {
  std::shared_ptr<const TokenTexts> texts;
  std::vector<std::string> vocab;
  std::vector<std::string> words;
};

RandomCase RandomCaseOf(std::mt19937& rng) {
  RandomCase s;
  const int alphabet = std::uniform_int_distribution<int>(3, 20)(rng);
  s.vocab = RandomVocab(rng, std::uniform_int_distribution<int>(30, 400)(rng), alphabet);
  s.texts = std::make_shared<TokenTexts>(s.vocab);
  const int num_words = std::uniform_int_distribution<int>(1, 12)(rng);
  for (int i = 0; i < num_words; ++i) s.words.push_back(RandomString(rng, 1, 12, alphabet));
  return s;
}

TEST(TokenTexts, GroupsByFirstByteAndSkipsEmptyTexts) {
  TokenTexts t(std::vector<std::string>{"", "ab", "a", "b", "\xc3\xa9"});
  EXPECT_EQ(t.size(), 5);
  EXPECT_EQ(t.starting_with('a'), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(t.starting_with('b'), (std::vector<int32_t>{3}));
  EXPECT_EQ(t.starting_with(0xc3), (std::vector<int32_t>{4}));
  for (int b = 0; b < 256; ++b) {
    for (int32_t id : t.starting_with(static_cast<uint8_t>(b))) EXPECT_NE(id, 0);
  }
}

// Allows, ListAllowed and ListAllAllowed against the reference (text + piece is a prefix of a word), at every
// state of random walks through random grammars.
// With an end token (the control token 0 in odd rounds), it is allowed exactly where the text
// is a word that another word extends, and accepting it completes the output.
TEST(MatcherConstraint, AllowsWhatKeepsAPrefixRandomized) {
  std::mt19937 rng(7);
  int listed = 0, lazy = 0, ended_early = 0;
  for (int round = 0; round < 300; ++round) {
    RandomCase s = RandomCaseOf(rng);
    const bool with_end = round % 2 == 1;
    // A word that is a prefix of another, so that the end token has somewhere to be allowed.
    if (with_end) s.words.push_back(s.words.front() + s.words.back());
    auto reference = std::make_unique<WordsMatcher>(s.words);
    WordsMatcher* ref = reference.get();
    MatcherConstraint c(s.texts, std::make_unique<WordsMatcher>(s.words), with_end ? 0 : -1);
    std::string text;
    bool ended = false;
    for (int step = 0; step < 40 && !c.IsComplete(); ++step) {
      std::vector<int32_t> expected;
      for (int32_t id = 0; id < s.texts->size(); ++id) {
        const bool ok = id == 0 ? with_end && ref->CanEnd() && !ref->IsComplete()
                                : ref->IsPrefix(text + s.vocab[id]);
        ASSERT_EQ(c.Allows(id), ok) << "text '" << text << "' token '" << s.vocab[id] << "'";
        if (ok) expected.push_back(id);
      }
      std::vector<int32_t> got;
      if (c.ListAllowed(&got)) {
        ++listed;
        std::sort(got.begin(), got.end());
        ASSERT_EQ(got, expected);
      } else {
        ++lazy;
      }
      c.ListAllAllowed(&got);
      std::sort(got.begin(), got.end());
      ASSERT_EQ(got, expected);
      ASSERT_FALSE(expected.empty()) << "single letters keep every state alive";
      // The end token, where allowed, half the time; else any allowed token.
      const bool end_now = expected.front() == 0 && std::uniform_int_distribution<int>(0, 1)(rng) == 0;
      const int32_t pick = end_now ? 0 : expected[std::uniform_int_distribution<size_t>(0, expected.size() - 1)(rng)];
      c.Accept(pick);
      ended = pick == 0;
      ended_early += ended;
      text += s.vocab[pick];
      for (char ch : s.vocab[pick]) ref->Feed(static_cast<uint8_t>(ch));
      ASSERT_EQ(c.IsComplete(), ended || ref->IsComplete());
    }
    if (ended) {
      // Nothing is allowed after the end.
      std::vector<int32_t> after;
      c.ListAllAllowed(&after);
      EXPECT_TRUE(after.empty());
      EXPECT_FALSE(c.Allows(0));
    }
  }
  EXPECT_GT(listed, 0);
  EXPECT_GT(lazy, 0);
  EXPECT_GT(ended_early, 0);
}

// Greedy picks the best allowed token (lowest id on ties), whichever path (list or lazy scan)
// finds it; filtered sampling only ever returns allowed tokens, and top-k 1 is greedy.
TEST(ConstrainedSampler, GreedyIsTheMaskedArgmaxAndSamplesAreAllowed) {
  std::mt19937 rng(11);
  for (int round = 0; round < 300; ++round) {
    RandomCase s = RandomCaseOf(rng);
    MatcherConstraint c(s.texts, std::make_unique<WordsMatcher>(s.words));
    WordsMatcher ref(s.words);
    std::string text;
    SamplingParams greedy;
    SamplingParams filtered;
    filtered.temperature = 0.8f;
    filtered.top_k = std::uniform_int_distribution<int>(0, 5)(rng);
    filtered.top_p = 0.9f;
    filtered.seed = static_cast<uint64_t>(round);
    SamplingParams top1 = filtered;
    top1.top_k = 1;
    top1.top_p = 1;
    Sampler g(greedy), f(filtered), t(top1);
    for (int step = 0; step < 30 && !c.IsComplete(); ++step) {
      std::vector<float> logits = RandomLogits(rng, s.vocab.size());
      // Ties, so the lowest-id rule is exercised.
      for (size_t i = 0; i + 1 < logits.size(); i += 7) logits[i + 1] = logits[i];
      int32_t best = -1;
      for (int32_t id = 0; id < s.texts->size(); ++id) {
        if (s.vocab[id].empty() || !ref.IsPrefix(text + s.vocab[id])) continue;
        if (best < 0 || logits[id] > logits[best]) best = id;
      }
      ASSERT_GE(best, 0);
      ASSERT_EQ(g.Sample(logits, &c), best) << "round " << round << " step " << step;
      ASSERT_EQ(t.Sample(logits, &c), best);
      const int32_t drawn = f.Sample(logits, &c);
      ASSERT_TRUE(c.Allows(drawn));
      c.Accept(drawn);
      text += s.vocab[drawn];
      for (char ch : s.vocab[drawn]) ref.Feed(static_cast<uint8_t>(ch));
    }
  }
}

// Unfiltered sampling (draw, keep it if allowed, else draw among the allowed) gives exactly the
// masked softmax: frequencies over many draws match it.
TEST(ConstrainedSampler, UnfilteredDrawsFollowTheMaskedSoftmax) {
  // Tokens 0..7; the grammar allows words starting "a" or "b" only; "c".."h" are refused.
  const std::vector<std::string> vocab = {"a", "b", "c", "d", "e", "f", "g", "h"};
  auto texts = std::make_shared<TokenTexts>(vocab);
  const std::vector<float> logits = {0.5f, -0.3f, 2.0f, 1.5f, 1.0f, 0.2f, -1.0f, 0.7f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 5;
  Sampler sampler(p);
  const int n = 40000;
  int count_a = 0;
  for (int i = 0; i < n; ++i) {
    MatcherConstraint c(texts, std::make_unique<WordsMatcher>(std::vector<std::string>{"a", "b"}));
    const int32_t t = sampler.Sample(logits, &c);
    ASSERT_TRUE(t == 0 || t == 1) << t;
    count_a += t == 0;
  }
  const double expected_a = std::exp(0.5) / (std::exp(0.5) + std::exp(-0.3));
  EXPECT_NEAR(static_cast<double>(count_a) / n, expected_a, 0.01);
}

TEST(ConstrainedSampler, NothingAllowedGivesMinusOne) {
  auto texts = std::make_shared<TokenTexts>(std::vector<std::string>{"", "x", "y"});
  MatcherConstraint c(texts, std::make_unique<WordsMatcher>(std::vector<std::string>{"z"}));
  Sampler greedy(SamplingParams{});
  EXPECT_EQ(greedy.Sample(std::vector<float>{1, 2, 3}, &c), -1);
  SamplingParams p;
  p.temperature = 1;
  Sampler s(p);
  EXPECT_EQ(s.Sample(std::vector<float>{1, 2, 3}, &c), -1);
}

}  // namespace
}  // namespace prefixd
