#include "compute/cpu/gemm.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "base/fp16.h"
#include "base/thread_pool.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/kernels.h"

namespace prefixd::cpu {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Values that stress the fold: mixed magnitudes, exact cancellations and signed zeros (a lane
// that sums to -0 must stay -0 exactly as the portable dot leaves it).
float Draw(std::mt19937& rng) {
  std::uniform_int_distribution<int> kind(0, 9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  switch (kind(rng)) {
    case 0: return -0.0f;
    case 1: return 0.0f;
    case 2: return normal(rng) * 1e6f;
    case 3: return normal(rng) * 1e-6f;
    default: return normal(rng);
  }
}

// The packed kernel against the portable dot, one output at a time, for random shapes: rows and
// tokens that fill a panel or block partly, lengths with ragged 32-lane tails.
TEST(Gemm, PackedPanelMatchesPortableDotBitForBit) {
  if (!HasBlockedGemm()) GTEST_SKIP() << "this CPU has no AVX-512F: the packed kernel never runs";
  std::mt19937 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t cols = std::uniform_int_distribution<int>(1, 300)(rng);
    const int rows = std::uniform_int_distribution<int>(1, kGemmPanelRows)(rng);
    const int nt = std::uniform_int_distribution<int>(1, kGemmBlockTokens)(rng);
    std::vector<float> w(rows * cols), x(nt * cols);
    for (auto& v : w) v = Draw(rng);
    for (auto& v : x) v = Draw(rng);
    std::vector<float> panel(GemmPanelFloats(cols)), block(GemmBlockFloats(cols));
    ZeroPanel(cols, panel.data());
    for (int i = 0; i < rows; ++i) PackPanelRow(&w[i * cols], cols, i, panel.data());
    PackTokenBlock(x.data(), cols, nt, block.data());
    const int64_t stride = rows + 3;
    std::vector<float> y(nt * stride, 7.0f);
    GemmPanelBlock(panel.data(), block.data(), cols, rows, nt, y.data(), stride);
    for (int t = 0; t < nt; ++t) {
      for (int i = 0; i < rows; ++i) {
        ASSERT_EQ(Bits(y[t * stride + i]), Bits(DotF32Generic(&w[i * cols], &x[t * cols], cols)))
            << "cols=" << cols << " rows=" << rows << " nt=" << nt << " t=" << t << " i=" << i;
      }
      for (int i = rows; i < stride; ++i) ASSERT_EQ(y[t * stride + i], 7.0f) << "wrote past the rows";
    }
  }
}

// MatMul over many tokens (the packed path) gives every token the bits of MatMul over that
// token alone (the decode path), for row counts that leave partial panels and blocks.
TEST(Gemm, MatMulOfManyTokensEqualsOneTokenAtATime) {
  std::mt19937 rng(12);
  ThreadPool pool(2);
  for (auto [rows, cols, tokens] : {std::tuple<int, int, int>{70, 96, 29}, {33, 768, 13},
                                    {5, 45, 2}, {128, 200, 40}}) {
    std::vector<float> w(rows * cols), x(tokens * cols);
    for (auto& v : w) v = Draw(rng);
    for (auto& v : x) v = Draw(rng);
    Weight weight;
    weight.type = TensorType::kF32;
    weight.rows = rows;
    weight.cols = cols;
    weight.row_bytes = cols * 4;
    weight.data = reinterpret_cast<const uint8_t*>(w.data());
    std::vector<float> all(tokens * rows), one(rows);
    MatMul(weight, x.data(), tokens, all.data(), pool);
    for (int t = 0; t < tokens; ++t) {
      MatMul(weight, &x[t * cols], 1, one.data(), pool);
      for (int r = 0; r < rows; ++r) {
        ASSERT_EQ(Bits(all[t * rows + r]), Bits(one[r])) << "rows=" << rows << " cols=" << cols << " t=" << t;
      }
    }
  }
}

// Products sharing an input in one loop (Q/K/V, gate/up) give each product's own bits, for one
// token (row tiles) and many (packed panels), with row counts that split tiles unevenly.
TEST(Gemm, SharedInputProductsEqualSeparateProducts) {
  std::mt19937 rng(13);
  ThreadPool pool(2);
  const int cols = 80;
  const int rows[] = {48, 17, 33};
  std::vector<std::vector<float>> w(3);
  std::vector<Weight> weights(3);
  for (int i = 0; i < 3; ++i) {
    w[i].resize(rows[i] * cols);
    for (auto& v : w[i]) v = Draw(rng);
    weights[i].type = TensorType::kF32;
    weights[i].rows = rows[i];
    weights[i].cols = cols;
    weights[i].row_bytes = cols * 4;
    weights[i].data = reinterpret_cast<const uint8_t*>(w[i].data());
  }
  for (int tokens : {1, 2, 25}) {
    std::vector<float> x(tokens * cols);
    for (auto& v : x) v = Draw(rng);
    std::vector<std::vector<float>> shared(3), alone(3);
    std::vector<MatMulProduct> products;
    for (int i = 0; i < 3; ++i) {
      shared[i].assign(tokens * rows[i], 0.0f);
      alone[i].assign(tokens * rows[i], 0.0f);
      products.push_back({&weights[i], shared[i].data()});
      MatMul(weights[i], x.data(), tokens, alone[i].data(), pool);
    }
    MatMulShared(products, x.data(), tokens, pool);
    for (int i = 0; i < 3; ++i) {
      for (size_t k = 0; k < alone[i].size(); ++k) {
        ASSERT_EQ(Bits(shared[i][k]), Bits(alone[i][k])) << "product " << i << " tokens " << tokens;
      }
    }
  }
}

// F16 matrices packed at start-up: decode (one token, GemvPackedF16Panel) and prefill (panels
// unpacked into the GEMM) give the canonical dot's bits, the same as the row-major F16 path.
TEST(Gemm, PackedF16MatchesRowMajorF16BitForBit) {
  if (!HasBlockedGemm()) GTEST_SKIP() << "this CPU has no AVX-512: F16 weights are never packed";
  std::mt19937 rng(14);
  ThreadPool pool(2);
  for (auto [rows, cols] : {std::pair<int, int>{70, 96}, {33, 45}, {64, 768}, {5, 300}}) {
    std::vector<uint16_t> w16(rows * cols);
    for (auto& v : w16) v = FloatToHalf(Draw(rng) / 1000.0f);
    Weight weight;
    weight.type = TensorType::kF16;
    weight.rows = rows;
    weight.cols = cols;
    weight.row_bytes = cols * 2;
    weight.data = reinterpret_cast<const uint8_t*>(w16.data());
    std::vector<uint16_t> packed(PackedF16Halves(rows, cols));
    for (int64_t p = 0; p * kGemmPanelRows < rows; ++p) {
      PackF16Panel(w16.data(), cols, rows, cols, p, packed.data() + p * GemmPanelFloats(cols));
    }
    for (int tokens : {1, 3, 30}) {
      std::vector<float> x(tokens * cols);
      for (auto& v : x) v = Draw(rng);
      std::vector<float> with(tokens * rows), without(tokens * rows);
      MatMul(weight, x.data(), tokens, with.data(), pool, packed.data());
      MatMul(weight, x.data(), tokens, without.data(), pool);
      for (int t = 0; t < tokens; ++t) {
        for (int r = 0; r < rows; ++r) {
          const float want = DotF16Generic(&w16[r * cols], &x[t * cols], cols);
          ASSERT_EQ(Bits(with[t * rows + r]), Bits(want)) << rows << "x" << cols << " t=" << t << " r=" << r;
          ASSERT_EQ(Bits(without[t * rows + r]), Bits(want)) << rows << "x" << cols << " t=" << t;
        }
      }
    }
  }
}

}  // namespace
}  // namespace prefixd::cpu
