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

// Scores: every head size (with ragged 16- and 8-lane tails) and tile length (with a partial group of
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
  for (int hd : {1, 7, 8, 9, 15, 16, 17, 24, 32, 48, 64, 72, 80, 100, 128, 160}) {
    for (int n : {1, 5, 8, 9, 16, 17, 24, 31, 32}) {
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

// Value accumulation: every head size (past 64, the AVX2 path's passes of 8 registers; past
// 128, beyond the AVX-512 path's registers), tile length and correction, with signed zeros in
// the values: the vector paths' FMAs give the portable path's bits.
TEST(AttentionAccumulate, EveryPathGivesThePortableBits) {
  std::mt19937 rng(31);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> prob(0.0f, 1.0f);
  for (int hd : {1, 7, 8, 9, 15, 16, 17, 24, 64, 65, 72, 100, 128, 136, 200, 256}) {
    for (int n : {1, 7, 8, 16, 32}) {
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

// Whole attention through the pool, as the backend calls it: K/V rows read in place from
// scattered blocks (F16 and F32), head sizes with 8- and 16-lane tails, grouped query heads,
// ragged last tiles and a block of queries: every path gives the portable path's bits, and a
// query in a block gets what it gets alone.
TEST(AttendQueries, EveryPathGivesThePortableBits) {
  std::mt19937 rng(51);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int kLayers = 2, kKvHeads = 2, kBlockSize = 5;
  const std::vector<int64_t> positions = {0, 7, 31, 32, 45, 63, 64, 69, 70, 71};
  const int count = static_cast<int>(positions.size());
  const int num_blocks = static_cast<int>(positions.back() / kBlockSize) + 1;
  for (KvDtype dtype : {KvDtype::kF16, KvDtype::kF32}) {
    for (int hd : {4, 12, 20, 64, 100}) {
      for (int group : {1, 2, 3, 4}) {
        KvLayout layout;
        layout.num_layers = kLayers;
        layout.kv_dim = kKvHeads * hd;
        layout.block_size = kBlockSize;
        layout.dtype = dtype;
        // Blocks in reverse order in the pool, so the table is not the identity.
        std::vector<BlockId> table;
        for (int b = 0; b < num_blocks; ++b) table.push_back(BlockId(num_blocks - 1 - b));
        std::vector<uint8_t> pool(num_blocks * layout.BlockBytes());
        const int64_t elements = static_cast<int64_t>(pool.size()) / layout.ElementBytes();
        for (int64_t e = 0; e < elements; ++e) {
          const float v = e % 13 == 0 ? -0.0f : normal(rng);
          if (dtype == KvDtype::kF16) {
            reinterpret_cast<uint16_t*>(pool.data())[e] = FloatToHalf(v);
          } else {
            reinterpret_cast<float*>(pool.data())[e] = v;
          }
        }
        // Queries of mixed magnitude, so some tiles' scores underflow exp entirely.
        std::vector<float> q(count * group * hd);
        for (int64_t i = 0; i < static_cast<int64_t>(q.size()); ++i) {
          q[i] = normal(rng) * (i % 5 == 0 ? 30.0f : 1.0f);
        }
        const auto paths = RunnableAttendPaths();
        std::vector<std::vector<float>> outs(paths.size(),
                                             std::vector<float>(count * group * hd));
        std::vector<float> solo(group * hd);
        for (size_t k = 0; k < paths.size(); ++k) {
          std::vector<AttentionArgs> args(count);
          for (int t = 0; t < count; ++t) {
            AttentionArgs& a = args[t];
            a.layout = &layout;
            a.kv_base = pool.data();
            a.blocks = table;
            a.layer = 1;
            a.kv_head = 1;
            a.head_dim = hd;
            a.group = group;
            a.pos = positions[t];
            a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
            a.q = q.data() + int64_t{t} * group * hd;
            a.out = outs[k].data() + int64_t{t} * group * hd;
          }
          AttentionScratch scratch;
          paths[k].second(args.data(), count, &scratch);
          // Alone, the last query gets the same bits.
          AttentionArgs last = args.back();
          last.out = solo.data();
          paths[k].second(&last, 1, &scratch);
          for (int i = 0; i < group * hd; ++i) {
            ASSERT_EQ(Bits(solo[i]), Bits(args.back().out[i])) << paths[k].first << " solo i=" << i;
          }
        }
        for (size_t k = 1; k < paths.size(); ++k) {
          for (size_t i = 0; i < outs[0].size(); ++i) {
            ASSERT_TRUE(std::isfinite(outs[0][i]));
            ASSERT_EQ(Bits(outs[k][i]), Bits(outs[0][i]))
                << paths[k].first << (dtype == KvDtype::kF16 ? " f16" : " f32") << " hd=" << hd
                << " group=" << group << " i=" << i;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace prefixd::cpu
