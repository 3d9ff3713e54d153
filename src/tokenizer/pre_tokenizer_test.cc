#include "tokenizer/pre_tokenizer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace prefixd {
namespace {

std::vector<std::string> Split(std::string_view name, std::string_view text) {
  auto pre = PreTokenizer::Create(name);
  EXPECT_TRUE(pre.ok()) << pre.status();
  std::vector<std::string> out;
  if (!pre.ok()) return out;
  for (std::string_view piece : (*pre)->Split(text)) out.emplace_back(piece);
  return out;
}

using Pieces = std::vector<std::string>;

TEST(PreTokenizer, Llama3GroupsDigitsByThree) {
  EXPECT_EQ(Split("llama-bpe", "Hello world's 1234567"),
            (Pieces{"Hello", " world", "'s", " ", "123", "456", "7"}));
  EXPECT_EQ(Split("llama3", "x  \n\n  y"), (Pieces{"x", "  \n\n", " ", " y"}));
}

TEST(PreTokenizer, Qwen2SplitsEveryDigit) {
  EXPECT_EQ(Split("qwen2", "ab 123!?\n"), (Pieces{"ab", " ", "1", "2", "3", "!?\n"}));
  EXPECT_EQ(Split("qwen2", "I'LL go"), (Pieces{"I", "'LL", " go"}));
}

TEST(PreTokenizer, Gpt2KeepsDigitRunsAndLowercaseContractions) {
  EXPECT_EQ(Split("gpt2", "It's 2024, ok"), (Pieces{"It", "'s", " 2024", ",", " ok"}));
  EXPECT_EQ(Split("gpt2", "I'LL"), (Pieces{"I", "'", "LL"}));
}

TEST(PreTokenizer, DefaultAppliesItsRegexesInTurn) {
  // Punctuation runs first, then words; digit runs are then cut into threes.
  EXPECT_EQ(Split("default", "a, b 12345"), (Pieces{"a", ",", " b", " ", "123", "45"}));
  EXPECT_EQ(Split("default", "12345"), (Pieces{"123", "45"}));
}

TEST(PreTokenizer, UnicodeLettersAndNumbersFollowTheirProperties) {
  // CJK letters join a word; Arabic-Indic digits are \p{N}; an emoji is neither.
  EXPECT_EQ(Split("llama-bpe", "你好 \xD9\xA1\xD9\xA2 \xF0\x9F\x98\x80!"),
            (Pieces{"你好", " ", "\xD9\xA1\xD9\xA2", " \xF0\x9F\x98\x80!"}));
}

// \s is Unicode's White_Space, as in Rust's regex (Hugging Face) and llama.cpp: NEL (U+0085)
// is a space; the byte order mark (U+FEFF) and the Mongolian vowel separator (U+180E) are not.
// (JavaScript's \s differs on the first two; PCRE2's own \s takes U+180E.)
TEST(PreTokenizer, WhitespaceIsUnicodeWhiteSpace) {
  EXPECT_EQ(Split("llama-bpe", "a\xC2\x85\xC2\x85 b"), (Pieces{"a", "\xC2\x85\xC2\x85", " b"}));
  EXPECT_EQ(Split("llama-bpe", "a \xEF\xBB\xBF" "b"), (Pieces{"a", " \xEF\xBB\xBF", "b"}));
  EXPECT_EQ(Split("llama-bpe", "a  \xE1\xA0\x8E" "b"), (Pieces{"a", " ", " \xE1\xA0\x8E", "b"}));
}

TEST(PreTokenizer, UnknownNameIsRefusedWithTheSupportedOnes) {
  auto pre = PreTokenizer::Create("falcon");
  ASSERT_FALSE(pre.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(pre.status()));
  EXPECT_NE(pre.status().message().find("qwen2"), std::string_view::npos);
}

// Property: for any bytes (valid UTF-8 or not), the pieces are non-empty and concatenate
// back to the input.
TEST(PreTokenizer, RandomInputIsCoveredExactly) {
  std::mt19937 rng(11);
  const std::vector<std::string> alphabet = {"a", "Z", " ", "\n", "\r", "\t", "7", "'", "s",
                                             "!", "é", "你", "\xF0\x9F\x98\x80", "\xCC\x81",
                                             "\x80", "\xE4", "\xFF", "\xC2\xA0"};
  for (const std::string& name : PreTokenizer::SupportedNames()) {
    auto pre = PreTokenizer::Create(name);
    ASSERT_TRUE(pre.ok()) << pre.status();
    for (int trial = 0; trial < 300; ++trial) {
      std::string text;
      const int len = static_cast<int>(rng() % 24);
      for (int k = 0; k < len; ++k) text += alphabet[rng() % alphabet.size()];
      std::string joined;
      for (std::string_view piece : (*pre)->Split(text)) {
        EXPECT_FALSE(piece.empty()) << name;
        joined.append(piece);
      }
      EXPECT_EQ(joined, text) << name;
    }
  }
}

}  // namespace
}  // namespace prefixd
