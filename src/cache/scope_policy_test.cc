#include "cache/scope_policy.h"

#include <gtest/gtest.h>

#include <random>

namespace prefixd {
namespace {

std::vector<int32_t> Range(int from, int to) {
  std::vector<int32_t> v;
  for (int i = from; i < to; ++i) v.push_back(i);
  return v;
}

ScopeSpec Spec(const std::string& s) { return *ParseScopeSpec(s); }

TEST(ScopePolicy, Parse) {
  EXPECT_EQ(Spec("off").mode, ScopeSpec::Mode::kOff);
  EXPECT_EQ(Spec("full").mode, ScopeSpec::Mode::kFull);
  EXPECT_EQ(Spec("auto").window, 30);
  EXPECT_EQ(Spec("auto:8").window, 8);
  EXPECT_EQ(Spec("1024").tokens, 1024);
  EXPECT_EQ(Spec("auto:2").ToString(), "auto:2");
  for (const char* bad : {"", "auto:", "auto:0", "auto:x", "-5", "fully", "12k", "auto:100000"}) {
    EXPECT_FALSE(ParseScopeSpec(bad).ok()) << bad;
  }
}

TEST(ScopePolicy, FixedModes) {
  ScopePolicy p(Spec("auto"), 0);
  const auto prompt = Range(0, 100);
  EXPECT_EQ(p.Decide(Spec("off"), prompt, {}).end, 0);
  EXPECT_EQ(p.Decide(Spec("full"), prompt, {}).end, 100);
  EXPECT_EQ(p.Decide(Spec("40"), prompt, {}).end, 40);
  EXPECT_EQ(p.Decide(Spec("4000"), prompt, {}).end, 100);
}

TEST(ScopePolicy, MinTokensSkipsShortPrompts) {
  ScopePolicy p(Spec("full"), 64);
  EXPECT_EQ(p.Decide(Spec("full"), Range(0, 63), {}).end, 0);
  EXPECT_EQ(p.Decide(Spec("full"), Range(0, 64), {}).end, 64);
}

TEST(ScopePolicy, AutoWithoutHistoryKeepsEverythingBeforeTheLastMessage) {
  ScopePolicy p(Spec("auto"), 0);
  const std::vector<int64_t> starts = {0, 30, 70};
  const auto d = p.Decide(Spec("auto"), Range(0, 100), starts);
  EXPECT_EQ(d.end, 70);
  EXPECT_EQ(p.Decide(Spec("auto"), Range(0, 100), {}).end, 0) << "a plain prompt is one message";
}

TEST(ScopePolicy, AutoAlignsTheSharedPrefixDownToAMessageBoundary) {
  ScopePolicy p(Spec("auto"), 0);
  auto a = Range(0, 100);
  p.Remember(a);
  auto b = Range(0, 100);
  b[85] = -1;  // shares 85 tokens with a
  const std::vector<int64_t> starts = {0, 30, 70, 90};
  const auto d = p.Decide(Spec("auto"), b, starts);
  EXPECT_EQ(d.longest_shared, 85);
  EXPECT_EQ(d.end, 70);
  EXPECT_TRUE(d.keep_tail);
  EXPECT_EQ(d.candidates, 1);
}

TEST(ScopePolicy, WindowLimitsTheCandidates) {
  ScopePolicy p(Spec("auto"), 0);
  p.Remember(Range(0, 100));  // similar, but 3 prompts ago
  p.Remember(Range(500, 600));
  p.Remember(Range(600, 700));
  const auto prompt = Range(0, 100);
  EXPECT_EQ(p.Decide(Spec("auto:2"), prompt, {}).longest_shared, 0);
  EXPECT_EQ(p.Decide(Spec("auto:3"), prompt, {}).longest_shared, 100);
  EXPECT_EQ(p.Decide(Spec("auto:3"), prompt, {}).end, 100);
}

// An agent trace: a stable system prompt and tool text, then a volatile line (a timestamp) and
// a new question each turn. auto keeps the stable part and nothing after it.
TEST(ScopePolicy, AutoOnAnAgentTraceKeepsTheStablePart) {
  std::mt19937 rng(3);
  auto random_run = [&](int n) {
    std::vector<int32_t> v(n);
    for (auto& t : v) t = static_cast<int32_t>(1000 + rng() % 30000);
    return v;
  };
  const auto system = random_run(600);
  const auto tools = random_run(400);
  ScopePolicy p(Spec("auto:8"), 0);
  for (int turn = 0; turn < 10; ++turn) {
    std::vector<int32_t> prompt = system;
    std::vector<int64_t> starts = {0};
    starts.push_back(static_cast<int64_t>(prompt.size()));
    prompt.insert(prompt.end(), tools.begin(), tools.end());
    starts.push_back(static_cast<int64_t>(prompt.size()));
    const auto volatile_line = random_run(12);
    prompt.insert(prompt.end(), volatile_line.begin(), volatile_line.end());
    const auto question = random_run(40);
    prompt.insert(prompt.end(), question.begin(), question.end());
    const auto d = p.Decide(p.default_spec(), prompt, starts);
    EXPECT_EQ(d.end, 1000) << "turn " << turn << ": the system prompt and tools, not the tail";
    p.Remember(prompt);
  }
}

}  // namespace
}  // namespace prefixd
