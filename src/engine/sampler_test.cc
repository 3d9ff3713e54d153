#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace prefixd {
namespace {

std::vector<float> RandomLogits(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, 3);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

int32_t Argmax(const std::vector<float>& v) {
  int32_t best = 0;
  for (int32_t i = 1; i < static_cast<int32_t>(v.size()); ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
  Sampler s(SamplingParams{});
  EXPECT_EQ(s.Sample(std::vector<float>{0.1f, 2.0f, -1.0f, 2.0f}), 1);
  EXPECT_EQ(s.Sample(std::vector<float>{5.0f}), 0);
  EXPECT_EQ(s.Sample(std::vector<float>{-3.0f, -3.0f}), 0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(s.Sample(std::vector<float>{nan, -1.0f, nan}), 1);
  SamplingParams negative;
  negative.temperature = -1;
  Sampler s2(negative);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const auto logits = RandomLogits(1000, seed);
    EXPECT_EQ(s2.Sample(logits), Argmax(logits));
  }
}

TEST(Sampler, SameSeedSameSequence) {
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_k = 50;
  p.top_p = 0.95f;
  p.min_p = 0.01f;
  p.seed = 42;
  Sampler a(p), b(p);
  p.seed = 43;
  Sampler c(p);
  int differ = 0;
  for (uint32_t step = 0; step < 200; ++step) {
    const auto logits = RandomLogits(500, step);
    const int32_t x = a.Sample(logits);
    EXPECT_EQ(x, b.Sample(logits)) << "step " << step;
    differ += x != c.Sample(logits);
  }
  EXPECT_GT(differ, 0) << "another seed should give another sequence";
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 1;
  Sampler s(p);
  for (uint32_t seed = 0; seed < 50; ++seed) {
    const auto logits = RandomLogits(300, seed);
    EXPECT_EQ(s.Sample(logits), Argmax(logits));
  }
  EXPECT_EQ(s.Sample(std::vector<float>{1.0f, 3.0f, 3.0f}), 1);  // ties: lowest id
}

TEST(Sampler, TinyTopPIsGreedy) {
  SamplingParams p;
  p.temperature = 2.0f;
  p.top_p = 1e-6f;
  Sampler s(p);
  for (uint32_t seed = 0; seed < 50; ++seed) {
    const auto logits = RandomLogits(300, seed);
    EXPECT_EQ(s.Sample(logits), Argmax(logits));
  }
}

TEST(Sampler, TopKKeepsOnlyTheKMostLikely) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  p.seed = 3;
  Sampler s(p);
  const std::vector<float> logits = {1.0f, 1.1f, 0.9f, 1.05f};  // top two: ids 1 and 3
  for (int i = 0; i < 500; ++i) {
    const int32_t id = s.Sample(logits);
    EXPECT_TRUE(id == 1 || id == 3) << id;
  }
}

TEST(Sampler, MinPFiltersUnlikelyTokens) {
  // Probabilities 0.5, 0.3, 0.15, 0.05: min_p 0.2 keeps those >= 0.1 (ids 0, 1, 2).
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                     std::log(0.05f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.min_p = 0.2f;
  p.seed = 9;
  Sampler s(p);
  std::vector<int> counts(4);
  for (int i = 0; i < 4000; ++i) counts[s.Sample(logits)]++;
  EXPECT_EQ(counts[3], 0);
  EXPECT_GT(counts[2], 0);
  // min_p near 1 keeps only the top token.
  p.min_p = 0.99f;
  Sampler top(p);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(top.Sample(logits), 0);
}

TEST(Sampler, TopPKeepsTheSmallestSetReachingP) {
  // 0.5 + 0.3 = 0.8 >= 0.7: ids 0 and 1 only.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                     std::log(0.05f)};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.7f;
  p.seed = 11;
  Sampler s(p);
  std::vector<int> counts(4);
  for (int i = 0; i < 4000; ++i) counts[s.Sample(logits)]++;
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(counts[2] + counts[3], 0);
}

// Chi-square statistic of observed counts against expected probabilities.
double ChiSquare(const std::vector<int>& counts, const std::vector<double>& probs, int n) {
  double chi = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double expected = probs[i] * n;
    chi += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi;
}

TEST(Sampler, DrawsFollowTheTemperedSoftmax) {
  const std::vector<double> base = {0.4, 0.3, 0.2, 0.1};
  std::vector<float> logits;
  for (double b : base) logits.push_back(static_cast<float>(std::log(b)));
  for (const float temperature : {1.0f, 0.5f, 2.0f}) {
    std::vector<double> probs;
    double total = 0;
    for (double b : base) total += std::pow(b, 1.0 / temperature);
    for (double b : base) probs.push_back(std::pow(b, 1.0 / temperature) / total);
    SamplingParams p;
    p.temperature = temperature;
    p.seed = 1000 + static_cast<uint64_t>(temperature * 10);
    Sampler s(p);
    constexpr int kDraws = 40000;
    std::vector<int> counts(base.size());
    for (int i = 0; i < kDraws; ++i) counts[s.Sample(logits)]++;
    // 3 degrees of freedom: P(chi^2 > 25) is about 1.6e-5.
    EXPECT_LT(ChiSquare(counts, probs, kDraws), 25.0) << "temperature " << temperature;
  }
}

TEST(Sampler, InfiniteLogitsDoNotPoisonTheDraw) {
  const float inf = std::numeric_limits<float>::infinity();
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(std::vector<float>{0.0f, inf, -inf}), 1);
  for (int i = 0; i < 50; ++i) {
    const int32_t id = s.Sample(std::vector<float>{-inf, -inf});
    EXPECT_TRUE(id == 0 || id == 1);
  }
}

}  // namespace
}  // namespace prefixd
