#include "tokenizer/utf8_sanitizer.h"

#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace prefixd {
namespace {

// The reference: what nlohmann-json's writer sends a client for these bytes (the server's
// JSON writers replace invalid UTF-8 this way), read back as a client reads it.
std::string AsJsonSendsIt(const std::string& bytes) {
  const std::string dumped = nlohmann::json(bytes).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(dumped).get<std::string>();
}

// Bytes a tokenizer's pieces could give, weighted towards the ill-formed: ASCII, continuation
// bytes, every kind of lead (the ones with narrower second bytes included), whole characters.
std::string RandomBytes(std::mt19937& rng, size_t n) {
  static const std::vector<std::string> kPieces = {
      "a", " ", "\n", "\x80", "\xBF", "\x9F", "\xA0", "\x8F", "\x90", "\xC0", "\xC1", "\xC2", "\xDF",
      "\xE0", "\xE1", "\xED", "\xEF", "\xF0", "\xF1", "\xF4", "\xF5", "\xFF", "\xC3\xA9", "\xE2\x82\xAC",
      "\xF0\x9F\x98\x80", "\xE2\x82", "\xF0\x9F"};
  std::string out;
  while (out.size() < n) out += kPieces[rng() % kPieces.size()];
  return out;
}

TEST(Utf8Sanitizer, ValidTextIsKeptAndEachMaximalSubpartIsOneReplacement) {
  EXPECT_EQ(ReplaceInvalidUtf8("a\xC3\xA9\xE2\x82\xAC"), "a\xC3\xA9\xE2\x82\xAC");
  // E2 82 cut short by 'b': one U+FFFD, then 'b'.
  EXPECT_EQ(ReplaceInvalidUtf8("a\xE2\x82" "b"), "a\xEF\xBF\xBD" "b");
  // Two stray continuation bytes: two.
  EXPECT_EQ(ReplaceInvalidUtf8("\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // E0 80 is overlong: E0 alone is the subpart, and 80 another.
  EXPECT_EQ(ReplaceInvalidUtf8("\xE0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // Cut short at the end: one.
  EXPECT_EQ(ReplaceInvalidUtf8("x\xF0\x9F\x98"), "x\xEF\xBF\xBD");
}

TEST(Utf8Sanitizer, OffsetsPlaceEachByteThatHasAPlace) {
  std::vector<int64_t> at;
  // ' ' | E2 82 AC (valid) | E2 82 (replaced) | 'c'
  EXPECT_EQ(ReplaceInvalidUtf8(" \xE2\x82\xAC\xE2\x82" "c", &at), " \xE2\x82\xAC\xEF\xBF\xBD" "c");
  EXPECT_EQ(at, (std::vector<int64_t>{0, 1, 2, 3, 4, -1, 7, 8}));
}

// Thousands of random byte strings: the same text as the JSON writer gives a client, pushed
// whole or in random pieces; offsets agree with splitting the bytes there.
TEST(Utf8Sanitizer, RandomizedAgainstTheJsonWriter) {
  std::mt19937 rng(7);
  for (int run = 0; run < 3000; ++run) {
    const std::string bytes = RandomBytes(rng, rng() % 24);
    std::vector<int64_t> at;
    const std::string whole = ReplaceInvalidUtf8(bytes, &at);
    ASSERT_EQ(whole, AsJsonSendsIt(bytes)) << "run " << run;

    Utf8Sanitizer s;
    std::string pushed;
    for (size_t pos = 0; pos < bytes.size();) {
      const size_t len = std::min<size_t>(bytes.size() - pos, rng() % 4);
      pushed += s.Push(std::string_view(bytes).substr(pos, len));
      ASSERT_LE(s.held(), 3u);
      pos += len;
    }
    pushed += s.Finish();
    ASSERT_EQ(pushed, whole) << "run " << run;

    ASSERT_EQ(at.size(), bytes.size() + 1);
    ASSERT_EQ(at.front(), 0);
    ASSERT_EQ(at.back(), static_cast<int64_t>(whole.size()));
    size_t last_split = 0;
    for (size_t i = 0; i <= bytes.size(); ++i) {
      const std::string head = ReplaceInvalidUtf8(bytes.substr(0, i));
      const bool split = head + ReplaceInvalidUtf8(bytes.substr(i)) == whole;
      if (split) {
        // A place where replacing the two sides apart gives the same text: the offset is the
        // end of the head's text.
        ASSERT_EQ(at[i], static_cast<int64_t>(head.size())) << "run " << run << " byte " << i;
        last_split = i;
      } else if (at[i] >= 0) {
        // Inside a valid character: the bytes since the last split are kept as they are.
        ASSERT_EQ(whole.substr(at[last_split], at[i] - at[last_split]), bytes.substr(last_split, i - last_split))
            << "run " << run << " byte " << i;
      }
    }
  }
}

}  // namespace
}  // namespace prefixd
