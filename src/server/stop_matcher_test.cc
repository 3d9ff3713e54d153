#include "server/stop_matcher.h"

#include <random>

#include <gtest/gtest.h>

namespace prefixd {
namespace {

// Feeds `chunks` and returns what was emitted, and whether a stop string matched.
std::pair<std::string, bool> Feed(std::vector<std::string> stops, const std::vector<std::string>& chunks) {
  StopMatcher m(std::move(stops));
  std::string out;
  for (const std::string& c : chunks) {
    StopMatcher::Output o = m.Push(c);
    out += o.text;
    if (o.matched) return {out, true};
  }
  out += m.Finish();
  return {out, false};
}

// The reference: the occurrence that ends first (then starts first), over the whole text.
std::pair<std::string, bool> Naive(const std::vector<std::string>& stops, const std::string& text) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t best = std::string::npos;
    for (const std::string& s : stops) {
      if (s.empty() || s.size() > end) continue;
      if (text.compare(end - s.size(), s.size(), s) == 0) best = std::min(best, end - s.size());
    }
    if (best != std::string::npos) return {text.substr(0, best), true};
  }
  return {text, false};
}

TEST(StopMatcher, NoStopsPassesThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.Push("abc").text, "abc");
  EXPECT_EQ(m.Finish(), "");
}

TEST(StopMatcher, StopInsideOneChunk) {
  auto [text, matched] = Feed({"END"}, {"hello END world"});
  EXPECT_TRUE(matched);
  EXPECT_EQ(text, "hello ");
}

TEST(StopMatcher, StopSplitAcrossTokens) {
  StopMatcher m({"\nUser:"});
  StopMatcher::Output a = m.Push("Hi there\n");
  EXPECT_EQ(a.text, "Hi there");  // "\n" held back
  EXPECT_FALSE(a.matched);
  StopMatcher::Output b = m.Push("Us");
  EXPECT_EQ(b.text, "");
  StopMatcher::Output c = m.Push("er: more");
  EXPECT_TRUE(c.matched);
  EXPECT_EQ(c.text, "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.Push("ignored").text, "");
  EXPECT_EQ(m.Finish(), "");
}

TEST(StopMatcher, HeldTextIsReleasedWhenItStopsMatching) {
  StopMatcher m({"abc"});
  EXPECT_EQ(m.Push("xa").text, "x");
  EXPECT_EQ(m.Push("b").text, "");
  EXPECT_EQ(m.Push("d").text, "abd");
  EXPECT_EQ(m.Push("ab").text, "");
  EXPECT_EQ(m.Finish(), "ab");
}

TEST(StopMatcher, EarliestEndingMatchWins) {
  // "bc" completes before "abcd" does.
  EXPECT_EQ(Feed({"abcd", "bc"}, {"abcd"}).first, "a");
  EXPECT_EQ(Feed({"abcd", "bc"}, {"a", "b", "c", "d"}).first, "a");
  // Same end: the longer (earlier-starting) one.
  EXPECT_EQ(Feed({"cd", "bcd"}, {"abcde"}).first, "a");
}

TEST(StopMatcher, OverlappingPrefixes) {
  EXPECT_EQ(Feed({"aab"}, {"a", "a", "a", "b"}), std::make_pair(std::string("a"), true));
  EXPECT_EQ(Feed({"abab"}, {"ab", "aba", "b"}), std::make_pair(std::string(""), true));
}

TEST(StopMatcher, MultiByteCharactersStayWhole) {
  // "é" = C3 A9; the stop string starts with the same lead byte as the text's "è" (C3 A8).
  StopMatcher m({"\xc3\xa9!"});
  StopMatcher::Output a = m.Push("caf\xc3\xa8");
  EXPECT_EQ(a.text, "caf\xc3\xa8");
  StopMatcher::Output b = m.Push("\xc3\xa9");
  EXPECT_EQ(b.text, "");
  StopMatcher::Output c = m.Push("?");
  EXPECT_EQ(c.text, "\xc3\xa9?");
}

TEST(StopMatcher, EmptyStopStringsAreIgnored) {
  auto [text, matched] = Feed({"", "zz"}, {"abc"});
  EXPECT_FALSE(matched);
  EXPECT_EQ(text, "abc");
}

TEST(StopMatcher, RandomizedAgainstNaiveSearch) {
  std::mt19937 rng(1234);
  const std::string alphabet = "ab\nc";
  auto random_string = [&](int max_len, int min_len) {
    const int n = std::uniform_int_distribution<int>(min_len, max_len)(rng);
    std::string s;
    for (int i = 0; i < n; ++i) s += alphabet[std::uniform_int_distribution<int>(0, alphabet.size() - 1)(rng)];
    return s;
  };
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<std::string> stops;
    const int num_stops = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int i = 0; i < num_stops; ++i) stops.push_back(random_string(4, 1));
    const std::string text = random_string(30, 0);
    std::vector<std::string> chunks;
    for (size_t pos = 0; pos < text.size();) {
      const size_t len = std::uniform_int_distribution<size_t>(0, 5)(rng);
      chunks.push_back(text.substr(pos, len));
      pos += len;
    }
    const auto expected = Naive(stops, text);
    const auto got = Feed(stops, chunks);
    ASSERT_EQ(got, expected) << "iteration " << iter << " text '" << text << "'";
  }
}

}  // namespace
}  // namespace prefixd
