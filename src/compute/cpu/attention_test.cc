#include "compute/cpu/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <algorithm>
#include <random>
#include <vector>

#include "base/fp16.h"

namespace prefixd::cpu {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Softmax arguments: uniform over the range that matters, the edges, and the values that must
// come out exactly (0 -> 1) or as 0 (-inf, NaN, far below the max).
std::vector<float> Arguments() {
  std::vector<float> xs = {0.0f, -0.0f, -1e-30f, -1e-7f, -0.5f, -0.6931472f, -1.0f, -10.0f,
                           -86.99f, -87.0f, -87.01f, -100.0f, -1e30f,
                           -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::quiet_NaN()};
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> wide(-90.0f, 0.0f), narrow(-1.0f, 0.0f);
  for (int i = 0; i < 20000; ++i) xs.push_back(i % 2 ? wide(rng) : narrow(rng));
  return xs;
}

// Scores: every head size (with ragged 16-lane tails) and tile length (with a partial group of
// 16), values with signed zeros and mixed magnitudes: the vector path's transposed fold must
// give the portable fold's bits, and the value must be close to the exact dot.
TEST(AttentionScores, EveryPathGivesThePortableBitsAndTheDot) {
  std::mt19937 rng(21);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, 7);
  auto draw = [&] {
    switch (kind(rng)) {
      case 0: return -0.0f;
      case 1: return 0.0f;
      case 2: return normal(rng) * 1000.0f;
      default: return normal(rng);
    }
  };
  for (int hd : {1, 8, 15, 16, 17, 32, 48, 64, 80, 100, 128, 160}) {
    for (int n : {1, 5, 16, 17, 31, 32}) {
      std::vector<float> keys(n * hd), q(hd), want(n), got(n);
      for (auto& v : keys) v = draw();
      for (auto& v : q) v = draw();
      const auto paths = RunnableAttentionScorePaths(hd, /*f16=*/false);
      paths[0].second(keys.data(), n, q.data(), hd, 0.125f, want.data());
      for (int i = 0; i < n; ++i) {
        double exact = 0, magnitude = 0;
        for (int d = 0; d < hd; ++d) {
          exact += static_cast<double>(keys[i * hd + d]) * q[d];
          magnitude += std::fabs(static_cast<double>(keys[i * hd + d]) * q[d]);
        }
        ASSERT_NEAR(want[i], 0.125 * exact, 1e-5 * magnitude + 1e-30) << "hd=" << hd << " i=" << i;
      }
      for (auto [name, fn] : paths) {
        std::fill(got.begin(), got.end(), 12345.0f);
        fn(keys.data(), n, q.data(), hd, 0.125f, got.data());
        for (int i = 0; i < n; ++i) {
          ASSERT_EQ(Bits(got[i]), Bits(want[i])) << name << " hd=" << hd << " n=" << n << " i=" << i;
        }
      }
      // F16 keys (the default KV type) read in place: the same bits as their floats.
      std::vector<uint16_t> halves(n * hd);
      std::vector<float> rounded(n * hd);
      for (int i = 0; i < n * hd; ++i) {
        halves[i] = FloatToHalf(keys[i] / 1000.0f);
        rounded[i] = HalfToFloat(halves[i]);
      }
      paths[0].second(rounded.data(), n, q.data(), hd, 0.125f, want.data());
      for (auto [name, fn] : RunnableAttentionScorePaths(hd, /*f16=*/true)) {
        std::fill(got.begin(), got.end(), 12345.0f);
        fn(halves.data(), n, q.data(), hd, 0.125f, got.data());
        for (int i = 0; i < n; ++i) {
          ASSERT_EQ(Bits(got[i]), Bits(want[i])) << name << " f16 hd=" << hd << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

// Value accumulation: every head size, tile length and correction, with signed zeros in the
// values: the vector path's FMAs give the portable path's bits.
TEST(AttentionAccumulate, EveryPathGivesThePortableBits) {
  std::mt19937 rng(31);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> prob(0.0f, 1.0f);
  for (int hd : {1, 8, 15, 16, 17, 64, 100, 128}) {
    for (int n : {1, 7, 16, 32}) {
      for (float correction : {0.0f, 1.0f, 0.37f}) {
        std::vector<float> values(n * hd), p(n), acc0(hd);
        for (int i = 0; i < n * hd; ++i) values[i] = i % 11 == 0 ? -0.0f : normal(rng);
        for (auto& v : p) v = prob(rng);
        for (auto& v : acc0) v = normal(rng);
        const auto paths = RunnableAttentionAccumulatePaths(hd);
        std::vector<float> want = acc0;
        paths[0].second(want.data(), correction, p.data(), values.data(), n, hd);
        for (auto [name, fn] : paths) {
          std::vector<float> got = acc0;
          fn(got.data(), correction, p.data(), values.data(), n, hd);
          for (int d = 0; d < hd; ++d) {
            ASSERT_EQ(Bits(got[d]), Bits(want[d])) << name << " hd=" << hd << " n=" << n << " d=" << d;
          }
        }
      }
    }
  }
}

// Tile max and sum: every length, with NaN, infinities and signed zeros among the scores.
TEST(AttentionTileFolds, EveryPathGivesThePortableBits) {
  std::mt19937 rng(41);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int> kind(0, 19);
  for (int trial = 0; trial < 2000; ++trial) {
    const int n = 1 + trial % kAttentionTile;
    std::vector<float> s(n);
    for (auto& v : s) {
      switch (kind(rng)) {
        case 0: v = -0.0f; break;
        case 1: v = 0.0f; break;
        case 2: v = std::numeric_limits<float>::quiet_NaN(); break;
        case 3: v = -std::numeric_limits<float>::infinity(); break;
        default: v = normal(rng);
      }
    }
    for (const auto& paths : {RunnableTileMaxPaths(), RunnableTileSumPaths()}) {
      const float want = paths[0].second(s.data(), n);
      for (auto [name, fn] : paths) {
        ASSERT_EQ(Bits(fn(s.data(), n)), Bits(want)) << name << " n=" << n << " trial " << trial;
      }
    }
  }
  // The values themselves.
  const float xs[] = {1.0f, -2.0f, 3.5f};
  EXPECT_EQ(RunnableTileMaxPaths().back().second(xs, 3), 3.5f);
  EXPECT_EQ(RunnableTileSumPaths().back().second(xs, 3), 2.5f);
}

TEST(SoftmaxExp, EveryPathGivesThePortableBits) {
  const std::vector<float> xs = Arguments();
  std::vector<float> want = xs;
  RunnableSoftmaxExpPaths()[0].second(want.data(), 0.0f, static_cast<int>(want.size()));
  for (auto [name, fn] : RunnableSoftmaxExpPaths()) {
    // Odd lengths and offsets exercise the vector path's masked tail.
    for (int n : {1, 7, 16, 17, 33, static_cast<int>(xs.size())}) {
      std::vector<float> got(xs.begin(), xs.begin() + n);
      fn(got.data(), 0.0f, n);
      for (int i = 0; i < n; ++i) {
        ASSERT_EQ(Bits(got[i]), Bits(want[i])) << name << " x=" << xs[i] << " n=" << n;
      }
    }
  }
}

TEST(SoftmaxExp, WithinTwoUlpOfLibmAndExactAtZero) {
  const std::vector<float> xs = Arguments();
  std::vector<float> got = xs;
  RunnableSoftmaxExpPaths()[0].second(got.data(), 0.0f, static_cast<int>(got.size()));
  for (size_t i = 0; i < xs.size(); ++i) {
    const float x = xs[i];
    if (!(x >= -87.0f)) {
      EXPECT_EQ(got[i], 0.0f) << "x=" << x;
      continue;
    }
    const double exact = std::exp(static_cast<double>(x));
    const float ulp = std::nextafter(static_cast<float>(exact), 1e30f) - static_cast<float>(exact);
    EXPECT_LE(std::fabs(got[i] - exact), 2.0 * ulp) << "x=" << x;
  }
  float one = 0.0f;
  RunnableSoftmaxExpPaths()[0].second(&one, 0.0f, 1);
  EXPECT_EQ(one, 1.0f);
  // The max subtracted inside: exp(s - max).
  float s[2] = {3.0f, 2.0f};
  RunnableSoftmaxExpPaths().back().second(s, 3.0f, 2);
  EXPECT_EQ(s[0], 1.0f);
  EXPECT_NEAR(s[1], std::exp(-1.0), 1e-7);
}

}  // namespace
}  // namespace prefixd::cpu
