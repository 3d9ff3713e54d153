#include "compute/cpu/gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
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

// Values that stress the fold: mixed magnitudes, exact cancellations and signed zeros. Tiny
// products underflow to -0, so a lane can hold -0, which the portable dot keeps through
// -0 + -0 and turns to +0 at -0 + +0 (padding FMAs included): every path must do the same.
float Draw(std::mt19937& rng) {
  std::uniform_int_distribution<int> kind(0, 11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  switch (kind(rng)) {
    case 0: return -0.0f;
    case 1: return 0.0f;
    case 2: return normal(rng) * 1e6f;
    case 3: return normal(rng) * 1e-6f;
    case 4: return normal(rng) * 1e-30f;
    default: return normal(rng);
  }
}

// The kernels of one instruction-set path ("avx2", "avx512"), or a skip where this CPU lacks it.
class GemmPath : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    for (const GemmKernels& k : RunnableGemmPaths()) {
      if (std::strcmp(k.name, GetParam()) == 0) kernels_ = k;
    }
    if (kernels_.name == nullptr) {
      GTEST_SKIP() << "this CPU lacks " << GetParam()
                   << (std::strcmp(GetParam(), "avx512") == 0 ? " (avx512f/bw/vl)" : " (avx2/fma/f16c)")
                   << ": those kernels never run here";
    }
  }
  GemmKernels kernels_{};
};

// One panel x block through the path's kernel, every output against the portable dot, and
// nothing written past the rows.
void CheckPanelBlock(const GemmKernels& k, std::mt19937& rng, int64_t cols, int rows, int nt,
                     float (*draw_w)(std::mt19937&), float (*draw_x)(std::mt19937&),
                     int* negative_zeros) {
  std::vector<float> w(rows * cols), x(nt * cols);
  for (auto& v : w) v = draw_w(rng);
  for (auto& v : x) v = draw_x(rng);
  std::vector<float> panel(GemmPanelFloats(cols)), block(GemmBlockFloats(cols));
  ZeroPanel(cols, panel.data());
  for (int i = 0; i < rows; ++i) PackPanelRow(&w[i * cols], cols, i, panel.data());
  PackTokenBlock(x.data(), cols, nt, block.data());
  const int64_t stride = rows + 3;
  std::vector<float> y(nt * stride, 7.0f);
  k.panel_block(panel.data(), block.data(), cols, rows, nt, y.data(), stride);
  for (int t = 0; t < nt; ++t) {
    for (int i = 0; i < rows; ++i) {
      const float want = DotF32Generic(&w[i * cols], &x[t * cols], cols);
      ASSERT_EQ(Bits(y[t * stride + i]), Bits(want))
          << k.name << " cols=" << cols << " rows=" << rows << " nt=" << nt << " t=" << t << " i=" << i;
      if (Bits(want) == 0x80000000u) ++*negative_zeros;
    }
    for (int i = rows; i < stride; ++i) ASSERT_EQ(y[t * stride + i], 7.0f) << "wrote past the rows";
  }
}

// The packed kernel against the portable dot, one output at a time, for random shapes: rows and
// tokens that fill a panel or block partly, lengths with ragged 32-lane tails.
TEST_P(GemmPath, PackedPanelMatchesPortableDotBitForBit) {
  std::mt19937 rng(11);
  int negative_zeros = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t cols = std::uniform_int_distribution<int>(1, 300)(rng);
    const int rows = std::uniform_int_distribution<int>(1, kGemmPanelRows)(rng);
    const int nt = std::uniform_int_distribution<int>(1, kGemmBlockTokens)(rng);
    CheckPanelBlock(kernels_, rng, cols, rows, nt, &Draw, &Draw, &negative_zeros);
  }
  // Every token count (each its own template) with row counts around the 16-row tiles.
  for (int nt = 1; nt <= kGemmBlockTokens; ++nt) {
    for (int rows : {1, 15, 16, 17, 31, 32}) {
      for (int64_t cols : {1, 31, 32, 33, 96, 257}) {
        CheckPanelBlock(kernels_, rng, cols, rows, nt, &Draw, &Draw, &negative_zeros);
      }
    }
  }
  if (HasFatalFailure()) return;
  // Tiny values whose products underflow to -0 (or, now and then, +0): a lane ends as the sign
  // of its last product, so many outputs are -0, which any reordering or stray +0 would turn
  // into +0. Lengths 64 and 32 fill every lane; 50 pads some with +0.
  auto tiny_w = [](std::mt19937&) { return -1e-30f; };
  auto tiny_x = [](std::mt19937& r) {
    return std::uniform_int_distribution<int>(0, 32)(r) == 0 ? -1e-30f : 1e-30f;
  };
  int tiny_zeros = 0;
  for (int nt = 1; nt <= kGemmBlockTokens; ++nt) {
    for (int64_t cols : {32, 50, 64}) {
      CheckPanelBlock(kernels_, rng, cols, 32, nt, +tiny_w, +tiny_x, &tiny_zeros);
    }
  }
  EXPECT_GT(tiny_zeros, 0) << "the test never produced a -0";
}

// F16 panels: unpacked into the GEMM (prefill) and streamed by the GEMV (decode), against the
// portable F16 dot, for partial panels and ragged lengths.
TEST_P(GemmPath, PackedF16PanelMatchesPortableDotBitForBit) {
  std::mt19937 rng(15);
  int negative_zeros = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t cols = trial < 4 ? 32 * (trial + 1) : std::uniform_int_distribution<int>(1, 300)(rng);
    const int rows = std::uniform_int_distribution<int>(1, 2 * kGemmPanelRows)(rng);
    const int nt = std::uniform_int_distribution<int>(1, kGemmBlockTokens)(rng);
    // One trial in four: products that underflow to -0 (halves of -0.01 times denormals), as
    // in the F32 test; the others draw mixed values.
    const bool tiny = trial % 4 == 0;
    std::vector<uint16_t> w16(rows * cols);
    for (auto& v : w16) v = FloatToHalf(tiny ? -0.01f : Draw(rng) / 1000.0f);
    std::vector<float> x(nt * cols);
    for (auto& v : x) {
      v = !tiny ? Draw(rng) : std::uniform_int_distribution<int>(0, 32)(rng) == 0 ? -1e-44f : 1e-44f;
    }
    std::vector<float> block(GemmBlockFloats(cols)), panel(GemmPanelFloats(cols));
    PackTokenBlock(x.data(), cols, nt, block.data());
    std::vector<uint16_t> packed(GemmPanelFloats(cols));
    for (int64_t p = 0; p * kGemmPanelRows < rows; ++p) {
      PackF16Panel(w16.data(), cols, rows, cols, p, packed.data());
      const int n = std::min<int>(kGemmPanelRows, rows - p * kGemmPanelRows);
      auto want = [&](int t, int i) {
        const uint32_t b = Bits(DotF16Generic(&w16[(p * kGemmPanelRows + i) * cols], &x[t * cols], cols));
        negative_zeros += b == 0x80000000u;
        return b;
      };
      std::vector<float> y(n + 1, 7.0f);
      for (int t = 0; t < nt; ++t) {
        kernels_.gemv_f16(packed.data(), &x[t * cols], cols, n, y.data());
        for (int i = 0; i < n; ++i) {
          ASSERT_EQ(Bits(y[i]), want(t, i)) << "gemv cols=" << cols << " rows=" << rows << " t=" << t << " i=" << i;
        }
        ASSERT_EQ(y[n], 7.0f) << "gemv wrote past the rows";
      }
      kernels_.unpack_f16(packed.data(), cols, panel.data());
      std::vector<float> yb(nt * n);
      kernels_.panel_block(panel.data(), block.data(), cols, n, nt, yb.data(), n);
      for (int t = 0; t < nt; ++t) {
        for (int i = 0; i < n; ++i) {
          ASSERT_EQ(Bits(yb[t * n + i]), want(t, i)) << "gemm cols=" << cols << " rows=" << rows << " t=" << t << " i=" << i;
        }
      }
    }
  }
  EXPECT_GT(negative_zeros, 0) << "the test never produced a -0";
}

INSTANTIATE_TEST_SUITE_P(Isa, GemmPath, ::testing::Values("avx2", "avx512"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

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
// unpacked into the GEMM) give the canonical dot's bits, the same as the row-major F16 path
// (each of the activations rounded to F16 first, as MatMul does for F16 weights).
TEST(Gemm, PackedF16MatchesRowMajorF16BitForBit) {
  if (!HasBlockedGemm()) GTEST_SKIP() << "this CPU has neither AVX2+FMA+F16C nor AVX-512: F16 weights are never packed";
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
      std::vector<float> with(tokens * rows), without(tokens * rows), rounded(x.size());
      MatMul(weight, x.data(), tokens, with.data(), pool, packed.data());
      MatMul(weight, x.data(), tokens, without.data(), pool);
      for (size_t i = 0; i < x.size(); ++i) rounded[i] = HalfToFloat(FloatToHalf(x[i]));
      for (int t = 0; t < tokens; ++t) {
        for (int r = 0; r < rows; ++r) {
          const float want = DotF16Generic(&w16[r * cols], &rounded[t * cols], cols);
          ASSERT_EQ(Bits(with[t * rows + r]), Bits(want)) << rows << "x" << cols << " t=" << t << " r=" << r;
          ASSERT_EQ(Bits(without[t * rows + r]), Bits(want)) << rows << "x" << cols << " t=" << t;
        }
      }
    }
  }
}

// RoundToF16 is the portable float -> half -> float round trip (nearest even; overflow to
// infinity, halves' subnormals, signed zeros, NaN kept a NaN), in place or not, whatever the
// split over threads.
TEST(RoundToF16, EqualsThePortableRoundTrip) {
  std::mt19937 rng(15);
  ThreadPool pool(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x = {0.0f, -0.0f, 65504.0f, 65520.0f, -1e6f, 6.0e-8f, 2.9e-8f, 1e-30f,
                          1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, std::nanf("")};
  while (x.size() < 40000) x.push_back(Draw(rng) * (normal(rng) > 0 ? 1.0f : 1e4f));
  for (size_t n : {size_t{1}, size_t{11}, size_t{4096}, size_t{4097}, x.size()}) {
    std::vector<float> out(n), in_place(x.begin(), x.begin() + n);
    RoundToF16(x.data(), n, out.data(), pool);
    RoundToF16(in_place.data(), n, in_place.data(), pool);
    for (size_t i = 0; i < n; ++i) {
      const float want = HalfToFloat(FloatToHalf(x[i]));
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(out[i]) && std::isnan(in_place[i])) << i;
        continue;
      }
      ASSERT_EQ(Bits(out[i]), Bits(want)) << "n=" << n << " x=" << x[i];
      ASSERT_EQ(Bits(in_place[i]), Bits(want)) << "n=" << n << " x=" << x[i];
    }
  }
}

// ggml's order of operations for F16 weights: the activations are rounded to F16, then
// multiplied exactly. MatMul gives each output the canonical dot of the F16 row and the rounded
// token (a reference computed with the portable dot and conversion), for decode and prefill;
// products of other types that share the input in MatMulShared still take it unrounded.
TEST(Gemm, F16WeightsTakeActivationsRoundedToF16) {
  std::mt19937 rng(16);
  ThreadPool pool(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto [rows, cols] : {std::pair<int, int>{70, 96}, {33, 45}, {40, 300}}) {
    std::vector<uint16_t> w16(rows * cols);
    std::vector<float> w32(rows * cols);
    for (auto& v : w16) v = FloatToHalf(normal(rng) * 0.1f);
    for (auto& v : w32) v = normal(rng) * 0.1f;
    Weight half_w, float_w;
    half_w.type = TensorType::kF16;
    float_w.type = TensorType::kF32;
    for (Weight* w : {&half_w, &float_w}) {
      w->rows = rows;
      w->cols = cols;
    }
    half_w.row_bytes = cols * 2;
    half_w.data = reinterpret_cast<const uint8_t*>(w16.data());
    float_w.row_bytes = cols * 4;
    float_w.data = reinterpret_cast<const uint8_t*>(w32.data());
    for (int tokens : {1, 2, 13, 30}) {
      std::vector<float> x(tokens * cols), rounded(tokens * cols);
      for (auto& v : x) v = normal(rng);
      for (size_t i = 0; i < x.size(); ++i) rounded[i] = HalfToFloat(FloatToHalf(x[i]));
      std::vector<float> alone(tokens * rows), shared_half(tokens * rows),
          shared_float(tokens * rows);
      MatMul(half_w, x.data(), tokens, alone.data(), pool);
      const MatMulProduct both[] = {{&half_w, shared_half.data()}, {&float_w, shared_float.data()}};
      MatMulShared(both, x.data(), tokens, pool);
      int num_changed = 0;  // outputs the rounding moved: the test must see some
      for (int t = 0; t < tokens; ++t) {
        for (int r = 0; r < rows; ++r) {
          const float want = DotF16Generic(&w16[r * cols], &rounded[t * cols], cols);
          const size_t k = t * rows + r;
          ASSERT_EQ(Bits(alone[k]), Bits(want)) << rows << "x" << cols << " t=" << t << " r=" << r;
          ASSERT_EQ(Bits(shared_half[k]), Bits(want)) << rows << "x" << cols << " t=" << t;
          ASSERT_EQ(Bits(shared_float[k]), Bits(DotF32Generic(&w32[r * cols], &x[t * cols], cols)))
              << rows << "x" << cols << " t=" << t << " r=" << r;
          num_changed += Bits(want) != Bits(DotF16Generic(&w16[r * cols], &x[t * cols], cols));
        }
      }
      EXPECT_GT(num_changed, tokens * rows / 2) << rows << "x" << cols;
    }
  }
}

}  // namespace
}  // namespace prefixd::cpu
