// The MoE FFN (moe.h): routing, agreement with a naive per-token implementation (dequantised
// weights, double accumulation) in every weight type and on both dot paths, and bit-identical
// outputs for a token whatever the batch around it and the thread count.
#include "compute/cpu/moe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "base/fp16.h"
#include "compute/cpu/exp_poly.h"
#include "compute/cpu/kernels.h"
#include "model/quantize.h"

namespace prefixd::cpu {
namespace {

TEST(RouteToken, TopKInProbabilityOrderTiesToLowerIndexWeightsSumToOne) {
  const float logits[] = {0.0f, 2.0f, 1.0f, 2.0f, -1.0f};
  int32_t e[3];
  float w[3];
  RouteToken(logits, 5, 2, e, w);
  EXPECT_EQ(e[0], 1);
  EXPECT_EQ(e[1], 3);
  EXPECT_EQ(w[0], w[1]);
  EXPECT_NEAR(w[0], 0.5f, 1e-6);
  RouteToken(logits, 5, 3, e, w);
  EXPECT_EQ(e[2], 2);
  EXPECT_GT(w[0], w[2]);
  EXPECT_NEAR(w[0] + w[1] + w[2], 1.0f, 1e-6);
  // One expert: its weight is exactly 1 (p / p).
  RouteToken(logits, 5, 1, e, w);
  EXPECT_EQ(e[0], 1);
  EXPECT_EQ(w[0], 1.0f);
}

// RouteToken against a reference that spells out ggml's order for softmax gating with
// normalised weights (build_moe_ffn: soft_max, argsort top-k, sum_rows, clamp, div): the
// softmax sum in double and a float reciprocal, the k weights summed in double and rounded
// once. Many experts and k = 8 (Qwen3-30B-A3B's routing), where a float running sum would
// round differently; every weight must have the reference's bits.
TEST(RouteToken, WeightsInGgmlOrderBitForBit) {
  constexpr int kNum = 128, kK = 8;
  std::mt19937 rng(29);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  int num_float_sum_differs = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    float logits[kNum];
    for (float& l : logits) l = normal(rng);
    int32_t e[kK];
    float w[kK];
    RouteToken(logits, kNum, kK, e, w);
    const float mx = *std::max_element(logits, logits + kNum);
    float p[kNum];
    double sum = 0;
    for (int i = 0; i < kNum; ++i) sum += p[i] = ExpPoly(logits[i] - mx);
    const float inv = static_cast<float>(1.0 / sum);
    for (float& v : p) v *= inv;
    std::vector<int> order(kNum);
    for (int i = 0; i < kNum; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
    double picked = 0;
    float picked_float = 0;
    for (int j = 0; j < kK; ++j) {
      ASSERT_EQ(e[j], order[j]) << "trial " << trial << " slot " << j;
      picked += p[order[j]];
      picked_float += p[order[j]];
    }
    const float divisor = std::max(static_cast<float>(picked), 6.103515625e-5f);
    for (int j = 0; j < kK; ++j) {
      ASSERT_EQ(w[j], p[order[j]] / divisor) << "trial " << trial << " slot " << j;
    }
    num_float_sum_differs += picked_float != static_cast<float>(picked);
  }
  // The case the order is about must occur, or the test checks nothing that a float sum
  // would not also pass.
  EXPECT_GT(num_float_sum_differs, 0);
}

// A weight tensor of `rows` rows of `cols` in `type`, from N(0, 1/cols)-ish random values,
// with the F32 values it dequantises to.
struct TestMatrix {
  std::vector<uint8_t> bytes;
  std::vector<float> dequantised;
  Weight w;
};

TestMatrix MakeMatrix(TensorType type, int64_t cols, int64_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(cols)));
  std::vector<float> values(cols * rows);
  for (float& v : values) v = normal(rng);
  TestMatrix m;
  m.bytes.resize(*TensorBytes(type, values.size()));
  QuantizeRow(type, values.data(), static_cast<int64_t>(values.size()), m.bytes.data());
  m.w.name = "test";
  m.w.type = type;
  m.w.cols = cols;
  m.w.rows = rows;
  m.w.data = m.bytes.data();
  m.w.row_bytes = static_cast<int64_t>(m.bytes.size()) / rows;
  m.dequantised.resize(values.size());
  for (int64_t r = 0; r < rows; ++r) RowToFloat(m.w, r, &m.dequantised[r * cols]);
  return m;
}

constexpr int kExperts = 8, kUsed = 2;
constexpr int64_t kEmbd = 256, kExpertFf = 256;

struct TestLayer {
  TestMatrix router, gate, up, down;
  MoeWeights weights() const { return {&router.w, &gate.w, &up.w, &down.w, kExperts, kUsed}; }
};

TestLayer MakeLayer(TensorType type) {
  // The router stays F32, as llama.cpp's files (and make-model's) keep it.
  return {MakeMatrix(TensorType::kF32, kEmbd, kExperts, 1),
          MakeMatrix(type, kEmbd, kExpertFf * kExperts, 2),
          MakeMatrix(type, kEmbd, kExpertFf * kExperts, 3),
          MakeMatrix(type, kExpertFf, kEmbd * kExperts, 4)};
}

std::vector<float> RandomRows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n * kEmbd);
  for (float& v : x) v = normal(rng);
  return x;
}

// The naive MoE of one token: softmax in double, top-k, normalised weights, each selected
// expert's SwiGLU FFN in double over the dequantised weights.
// The layer in double precision, except that the inputs of F16 matrices are rounded to F16
// first, as MatMul (and ggml) multiply them (kernels.h).
std::vector<double> NaiveMoe(const TestLayer& l, const float* x, std::vector<int>* chosen) {
  std::vector<double> logits(kExperts, 0.0), p(kExperts);
  for (int e = 0; e < kExperts; ++e) {
    for (int64_t c = 0; c < kEmbd; ++c) logits[e] += double(l.router.dequantised[e * kEmbd + c]) * x[c];
  }
  const double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (int e = 0; e < kExperts; ++e) sum += p[e] = std::exp(logits[e] - mx);
  for (double& v : p) v /= sum;
  chosen->clear();
  double picked = 0;
  for (int j = 0; j < kUsed; ++j) {
    int best = -1;
    for (int e = 0; e < kExperts; ++e) {
      if (std::find(chosen->begin(), chosen->end(), e) != chosen->end()) continue;
      if (best < 0 || p[e] > p[best]) best = e;
    }
    chosen->push_back(best);
    picked += p[best];
  }
  const auto input = [](const TestMatrix& m, double v) {
    return m.w.type == TensorType::kF16 ? double(HalfToFloat(FloatToHalf(float(v)))) : v;
  };
  std::vector<double> out(kEmbd, 0.0);
  for (int e : *chosen) {
    std::vector<double> act(kExpertFf);
    for (int64_t r = 0; r < kExpertFf; ++r) {
      const int64_t row = e * kExpertFf + r;
      double g = 0, u = 0;
      for (int64_t c = 0; c < kEmbd; ++c) {
        g += double(l.gate.dequantised[row * kEmbd + c]) * input(l.gate, x[c]);
        u += double(l.up.dequantised[row * kEmbd + c]) * input(l.up, x[c]);
      }
      act[r] = g / (1 + std::exp(-g)) * u;
    }
    for (int64_t r = 0; r < kEmbd; ++r) {
      const int64_t row = e * kEmbd + r;
      double y = 0;
      for (int64_t c = 0; c < kExpertFf; ++c) {
        y += double(l.down.dequantised[row * kExpertFf + c]) * input(l.down, act[c]);
      }
      out[r] += p[e] / picked * y;
    }
  }
  return out;
}

struct Case {
  TensorType type;
  bool int_dot;
};

class MoeTypes : public ::testing::TestWithParam<Case> {};

TEST_P(MoeTypes, MatchesANaivePerTokenImplementation) {
  const auto [type, int_dot] = GetParam();
  const TestLayer layer = MakeLayer(type);
  const int64_t n = 24;
  const std::vector<float> x = RandomRows(n, 7);
  std::vector<float> out(n * kEmbd);
  ThreadPool pool(2);
  MoeFfn moe;
  moe.Run(layer.weights(), x.data(), n, out.data(), pool, int_dot);
  std::set<std::vector<int32_t>> expert_sets;
  double worst = 0;
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int> chosen;
    const std::vector<double> ref = NaiveMoe(layer, &x[t * kEmbd], &chosen);
    std::vector<int32_t> got(moe.chosen().begin() + t * kUsed, moe.chosen().begin() + (t + 1) * kUsed);
    ASSERT_EQ(got, std::vector<int32_t>(chosen.begin(), chosen.end())) << "token " << t;
    expert_sets.insert(got);
    // Per token: ||out - ref|| / ||ref||.
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < kEmbd; ++i) {
      diff += (out[t * kEmbd + i] - ref[i]) * (out[t * kEmbd + i] - ref[i]);
      scale += ref[i] * ref[i];
    }
    worst = std::max(worst, std::sqrt(diff / scale));
  }
  // F32 arithmetic over the same weights: float rounding only (F16 matrices: the reference
  // rounds the double SwiGLU output to F16 where MoeFfn rounds the float one, so the two can
  // land on either side of a half's rounding boundary: 4.8e-6 here). The integer path also rounds
  // the activations (the input, and the experts' SwiGLU outputs) to 8 bits: one scale per 32
  // elements for q8_0 and the nibble types (~1.4% here), per 256 for the K-quants (~2.3%).
  const bool int_path = int_dot && UsesIntDot(layer.gate.w);
  EXPECT_LT(worst, int_path ? 3e-2 : 1e-5);
  EXPECT_GE(expert_sets.size(), 4u) << "the tokens should spread over the experts";
  std::printf("%s%s: max relative error %.3g, %zu expert pairs\n",
              TensorTypeName(static_cast<uint32_t>(type)).c_str(), int_path ? " int8" : "", worst,
              expert_sets.size());
}

// Each token's output has the same bits alone, in the whole batch (where other tokens pick
// other experts), in any sub-batch, on 1 or 2 threads.
TEST_P(MoeTypes, TokenOutputIndependentOfBatchAndThreads) {
  const auto [type, int_dot] = GetParam();
  const TestLayer layer = MakeLayer(type);
  const int64_t n = 37;
  const std::vector<float> x = RandomRows(n, 11);
  ThreadPool two(2), one(1);
  MoeFfn moe;
  std::vector<float> all(n * kEmbd);
  moe.Run(layer.weights(), x.data(), n, all.data(), two, int_dot);
  const std::set<int32_t> used(moe.chosen().begin(), moe.chosen().end());
  EXPECT_GE(used.size(), 6u);
  for (ThreadPool* pool : {&one, &two}) {
    for (int64_t chunk : {int64_t{1}, int64_t{5}, int64_t{16}}) {
      std::vector<float> out(n * kEmbd);
      for (int64_t t0 = 0; t0 < n; t0 += chunk) {
        const int64_t m = std::min(chunk, n - t0);
        moe.Run(layer.weights(), &x[t0 * kEmbd], m, &out[t0 * kEmbd], *pool, int_dot);
      }
      ASSERT_EQ(0, std::memcmp(all.data(), out.data(), all.size() * sizeof(float)))
          << "chunks of " << chunk << " on " << pool->num_threads() << " threads";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, MoeTypes,
    ::testing::Values(Case{TensorType::kF32, false}, Case{TensorType::kF16, false},
                      Case{TensorType::kBF16, false}, Case{TensorType::kQ8_0, false},
                      Case{TensorType::kQ8_0, true}, Case{TensorType::kQ4_0, true},
                      Case{TensorType::kQ5_0, true}, Case{TensorType::kQ5_1, true},
                      Case{TensorType::kQ4_1, false},
                      Case{TensorType::kQ4_K, false}, Case{TensorType::kQ4_K, true},
                      Case{TensorType::kQ6_K, true}),
    [](const ::testing::TestParamInfo<Case>& info) {
      return TensorTypeName(static_cast<uint32_t>(info.param.type)) +
             (info.param.int_dot ? "_int8" : "_f32dot");
    });

}  // namespace
}  // namespace prefixd::cpu
