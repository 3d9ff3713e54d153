// The per-token kernels the architectures switch on: RoPE with Llama 3 frequency divisors and
// the Q/K/V bias add.
#include "compute/cpu/kernels.h"

#include <gtest/gtest.h>

#include <limits>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace prefixd::cpu {
namespace {

std::vector<float> RandomHead(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// A model without rope_freqs.weight must keep the exact bits it had before divisors existed.
TEST(Rope, UnitFrequencyFactorsChangeNoBit) {
  const std::vector<float> ones(32, 1.0f);
  for (RopeStyle style : {RopeStyle::kNormal, RopeStyle::kNeox}) {
    for (int64_t pos : {0, 1, 17, 1000, 100000}) {
      std::vector<float> a = RandomHead(64, 3), b = a;
      Rope(a.data(), 64, pos, 500000.0f, 1.0f, style, nullptr);
      Rope(b.data(), 64, pos, 500000.0f, 1.0f, style, ones.data());
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << pos;
    }
  }
}

// Divisors act per frequency pair: dividing every one by 4 is linear scaling by 1/4, and a
// divisor touches only its own pair (NeoX pairs i and i + d/2).
TEST(Rope, FrequencyFactorsDivideTheirOwnPairsAngle) {
  const std::vector<float> fours(8, 4.0f);
  std::vector<float> a = RandomHead(16, 5), b = a;
  Rope(a.data(), 16, 321, 10000.0f, 1.0f, RopeStyle::kNeox, fours.data());
  Rope(b.data(), 16, 321, 10000.0f, 0.25f, RopeStyle::kNeox, nullptr);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(a[i], b[i], 1e-5) << i;

  std::vector<float> one_changed(8, 1.0f);
  one_changed[3] = 8.0f;
  std::vector<float> c = RandomHead(16, 6), d = c;
  Rope(c.data(), 16, 99, 10000.0f, 1.0f, RopeStyle::kNeox, one_changed.data());
  Rope(d.data(), 16, 99, 10000.0f, 1.0f, RopeStyle::kNeox, nullptr);
  for (int i = 0; i < 16; ++i) {
    if (i == 3 || i == 11) {
      EXPECT_NE(c[i], d[i]) << i;
    } else {
      EXPECT_EQ(c[i], d[i]) << i;
    }
  }
}

TEST(AddBias, AddsTheSameVectorToEveryToken) {
  const std::vector<float> bias = {0.5f, -1.0f, 2.0f};
  Weight w;
  w.type = TensorType::kF32;
  w.cols = 3;
  w.rows = 1;
  w.data = reinterpret_cast<const uint8_t*>(bias.data());
  std::vector<float> y = {1, 1, 1, 10, 20, 30};
  AddBias(w, 2, y.data());
  EXPECT_EQ(y, (std::vector<float>{1.5f, 0.0f, 3.0f, 10.5f, 19.0f, 32.0f}));
}

// DeltaNet's row kernels: every path gives the portable loop's bits (products rounded before
// the sums, never fused; SiLU as SwiGlu's), at ragged lengths, with special values.
TEST(RowUpdates, EveryPathGivesThePortableBits) {
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x0(300), y(301);
  for (float& v : x0) v = normal(rng);
  for (float& v : y) v = normal(rng);
  x0[3] = std::numeric_limits<float>::infinity();
  y[5] = -0.0f;
  x0[7] = 1e-38f;  // a product that goes subnormal
  const auto bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{15}, int64_t{16}, int64_t{17},
                    int64_t{128}, int64_t{300}}) {
    for (float s : {0.9731f, -1.25e-3f, 3.0e5f}) {
      const RowPaths ref = RunnableRowPaths()[0];
      std::vector<float> want_scaled(x0.begin(), x0.begin() + n), want_added = want_scaled;
      ref.scale(want_scaled.data(), s, n);
      ref.add_scaled(want_added.data(), y.data(), s, n);
      for (int64_t i = 0; i < n; ++i) {  // the portable loop is the plain expression
        ASSERT_EQ(bits(want_scaled[i]), bits(x0[i] * s));
        const float p = y[i] * s;
        ASSERT_EQ(bits(want_added[i]), bits(x0[i] + p));
      }
      std::vector<float> want_product(x0.begin(), x0.begin() + n), want_silu = want_product;
      ref.add_product(want_product.data(), y.data(), y.data() + 1, n);
      ref.silu(want_silu.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const float p = y[i] * y[i + 1];
        ASSERT_EQ(bits(want_product[i]), bits(x0[i] + p));
        if (std::isfinite(x0[i])) {
          EXPECT_NEAR(want_silu[i], x0[i] / (1.0 + std::exp(-double{x0[i]})), 1e-6 * std::fabs(x0[i]) + 1e-30);
        }
      }
      for (const RowPaths& path : RunnableRowPaths()) {
        std::vector<float> scaled(x0.begin(), x0.begin() + n), added = scaled, product = scaled,
                                                               silu = scaled;
        path.scale(scaled.data(), s, n);
        path.add_scaled(added.data(), y.data(), s, n);
        path.add_product(product.data(), y.data(), y.data() + 1, n);
        path.silu(silu.data(), n);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(bits(scaled[i]), bits(want_scaled[i])) << path.name << " n=" << n << " i=" << i;
          ASSERT_EQ(bits(added[i]), bits(want_added[i])) << path.name << " n=" << n << " i=" << i;
          ASSERT_EQ(bits(product[i]), bits(want_product[i])) << path.name << " n=" << n << " i=" << i;
          ASSERT_EQ(bits(silu[i]), bits(want_silu[i])) << path.name << " n=" << n << " i=" << i;
        }
      }
    }
  }
}

// SwiGLU: the vector path gives the portable bits (ragged lengths, extreme and special gates),
// and both are close to SiLU computed in double.
TEST(SwiGlu, EveryPathGivesThePortableBitsAndTheFunction) {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> gate, up;
  for (float g : {0.0f, -0.0f, 1e-30f, -1e-30f, 87.5f, -87.5f, 88.5f, -88.5f, 100.0f, -100.0f,
                  1e30f, -1e30f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity()}) {
    gate.push_back(g);
    up.push_back(1.5f);
  }
  for (int i = 0; i < 5000; ++i) {
    gate.push_back(normal(rng));
    up.push_back(normal(rng));
  }
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{9}, int64_t{15}, int64_t{17},
                    static_cast<int64_t>(gate.size())}) {
    std::vector<float> want(gate.begin(), gate.begin() + n);
    RunnableSwiGluPaths()[0].second(want.data(), up.data(), n);
    for (auto [name, fn] : RunnableSwiGluPaths()) {
      std::vector<float> got(gate.begin(), gate.begin() + n);
      fn(got.data(), up.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        uint32_t a, b;
        std::memcpy(&a, &got[i], 4);
        std::memcpy(&b, &want[i], 4);
        ASSERT_EQ(a, b) << name << " gate " << gate[i] << " n=" << n;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const double g = gate[i];
      if (!std::isfinite(g)) continue;
      const double exact = g / (1.0 + std::exp(-g)) * up[i];
      EXPECT_NEAR(want[i], exact, 1e-6 * std::fabs(exact) + 1e-30) << "gate " << g;
    }
  }
}

}  // namespace
}  // namespace prefixd::cpu
