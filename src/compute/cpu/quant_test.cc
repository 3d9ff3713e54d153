// Weight types: quantise -> dequantise round trips within each type's bound, the block layouts
// against hand-built blocks, every dequantisation path bit-identical to the portable one, and
// MatMul over quantised weights against a dequantise-then-double reference, invariant to the
// batch and the thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "base/thread_pool.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/kernels.h"
#include "compute/cpu/quant_dequant.h"
#include "model/quant_blocks.h"
#include "model/quantize.h"

namespace prefixd::cpu {
namespace {

constexpr TensorType kTypes[] = {TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ4_0,
                                 TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1,
                                 TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K};

std::string Name(TensorType t) { return TensorTypeName(static_cast<uint32_t>(t)); }

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

std::vector<uint8_t> Quantize(TensorType type, const std::vector<float>& x) {
  std::vector<uint8_t> out(*TensorBytes(type, x.size()));
  QuantizeRow(type, x.data(), static_cast<int64_t>(x.size()), out.data());
  return out;
}

std::vector<float> Dequantize(TensorType type, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> out(n);
  RunnableDequantPaths(type).front().second(q.data(), n, out.data());  // the portable path
  return out;
}

// Data with the shapes that break quantisers: Gaussian blocks at several scales, zeros, one
// outlier, all-positive and all-negative blocks. Each pattern fills a whole 256-element block.
std::vector<float> TrickyData(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    const int pattern = static_cast<int>(i / 256 % 7);
    const float v = normal(rng);
    switch (pattern) {
      case 0: x[i] = v; break;
      case 1: x[i] = 0; break;
      case 2: x[i] = i % 256 == 77 ? 40.0f : v; break;
      case 3: x[i] = std::fabs(v) + 0.5f; break;
      case 4: x[i] = -std::fabs(v) - 2.0f; break;
      case 5: x[i] = v * 1e-3f; break;
      default: x[i] = v * 100.0f; break;
    }
  }
  return x;
}

// One quantisation step of the (super-)block holding element i (quantize.h states the bound).
float Step(TensorType type, const std::vector<float>& x, int64_t i) {
  auto block = [&](int64_t size) { return std::span<const float>(x).subspan(i / size * size, size); };
  auto amax = [](std::span<const float> b) {
    float m = 0;
    for (float v : b) m = std::max(m, std::fabs(v));
    return m;
  };
  switch (type) {
    case TensorType::kQ8_0: return amax(block(32)) / 127;
    case TensorType::kQ4_0: return amax(block(32)) / 8;
    case TensorType::kQ5_0: return amax(block(32)) / 16;
    case TensorType::kQ4_1:
    case TensorType::kQ5_1: {  // the range over the levels, plus the f16 rounding of the min
      float lo = INFINITY, hi = -INFINITY;
      for (float v : block(32)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      return (hi - lo) / (type == TensorType::kQ4_1 ? 15 : 31) + std::fabs(lo) * 0x1p-11f;
    }
    case TensorType::kQ6_K: {
      float m = 0;
      for (int j = 0; j < 16; ++j) m = std::max(m, amax(block(256).subspan(16 * j, 16)));
      return m / 32;
    }
    default: {  // q4_K, q5_K: the widest sub-block range over the levels
      float widest = 0;
      for (int j = 0; j < 8; ++j) {
        float lo = 0, hi = -INFINITY;
        for (float v : block(256).subspan(32 * j, 32)) {
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
        widest = std::max(widest, hi - lo);
      }
      return widest / (type == TensorType::kQ4_K ? 15 : 31);
    }
  }
}

TEST(Quant, RoundTripIsWithinOneStepAndRmsWithinHalfAStep) {
  const int64_t n = 256 * 14;
  const std::vector<float> x = TrickyData(n, 7);
  for (TensorType type : kTypes) {
    const std::vector<float> y = Dequantize(type, Quantize(type, x), n);
    double sq_err = 0, sq_step = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float err = std::fabs(y[i] - x[i]);
      if (type == TensorType::kBF16) {
        ASSERT_LE(err, std::fabs(x[i]) * (1.0f / 256)) << "bf16 element " << i;
        continue;
      }
      // 1.01: the f16 rounding of the block scales.
      const float step = Step(type, x, i);
      ASSERT_LE(err, step * 1.01f) << Name(type) << " element " << i << " x=" << x[i];
      sq_err += double{err} * err;
      sq_step += double{step} * step;
    }
    if (type != TensorType::kBF16) {
      EXPECT_LE(std::sqrt(sq_err / n), 0.5 * std::sqrt(sq_step / n)) << Name(type);
    }
  }
}

// Rows of random bytes (every scale bit pattern, NaN and infinite scales included, every
// quant value) dequantise to the same bits on every path, and cores with AVX2 run one.
TEST(Quant, EveryDequantisationPathMatchesThePortableOneOnRandomBytes) {
  std::mt19937 rng(7);
  for (TensorType type : kTypes) {
    const int64_t n = 256 * 5;
    std::vector<uint8_t> q(n * 4);  // more bytes than any of these types' rows take
    for (uint8_t& b : q) b = static_cast<uint8_t>(rng());
    const auto paths = RunnableDequantPaths(type);
    std::vector<float> ref(n), out(n);
    paths.front().second(q.data(), n, ref.data());
    for (auto [path, fn] : paths) {
      fn(q.data(), n, out.data());
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(Bits(out[i]), Bits(ref[i])) << Name(type) << " " << path << " element " << i;
      }
    }
    if (__builtin_cpu_supports("avx2")) {
      bool has_avx2 = false;
      for (auto [path, fn] : paths) has_avx2 |= std::string(path) == "avx2";
      EXPECT_TRUE(has_avx2) << Name(type) << ": this CPU has AVX2 but no avx2 path ran";
    }
  }
}

// Every vector path must give the portable path's bits, on the awkward data above.
TEST(Quant, EveryDequantisationPathMatchesThePortableOne) {
  const int64_t n = 256 * 14;
  const std::vector<float> x = TrickyData(n, 11);
  for (TensorType type : kTypes) {
    const std::vector<uint8_t> q = Quantize(type, x);
    const std::vector<float> ref = Dequantize(type, q, n);
    for (auto [path, fn] : RunnableDequantPaths(type)) {
      std::vector<float> out(n);
      fn(q.data(), n, out.data());
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(Bits(out[i]), Bits(ref[i])) << Name(type) << " " << path << " element " << i;
      }
    }
    EXPECT_GE(RunnableDequantPaths(type).size(), 1u);
  }
}

// The fused dequantise-and-dot kernels give the bits of the portable F32 dot over the
// dequantised row, for every length in whole blocks.
TEST(Quant, FusedDotMatchesTheDotOfTheDequantisedRow) {
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int compared = 0;
  for (TensorType type : kTypes) {
    const QuantDotFn fused = GetQuantDot(type);
    if (fused == nullptr) continue;  // no AVX-512 here, or a type without one (bf16)
    ++compared;
    for (int64_t n : {256, 512, 768, 1792}) {
      const std::vector<float> w = TrickyData(n, static_cast<uint32_t>(n));
      std::vector<float> x(n);
      for (float& v : x) v = normal(rng);
      const std::vector<uint8_t> q = Quantize(type, w);
      const std::vector<float> deq = Dequantize(type, q, n);
      ASSERT_EQ(Bits(fused(q.data(), x.data(), n)), Bits(DotF32Generic(deq.data(), x.data(), n)))
          << Name(type) << " n=" << n;
    }
  }
  if (compared == 0) GTEST_SKIP() << "no fused kernels on this CPU (they need AVX-512)";
  EXPECT_EQ(compared, 8);  // q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K
}

// Hand-built blocks decoded by the GGUF formulas, independently of the quantisers, so a layout
// mistake made the same way in quantiser and dequantiser still fails here.
const uint16_t kHalf = FloatToHalf(0.5f), kQuarter = FloatToHalf(0.25f);

TEST(QuantLayout, Q8_0AndQ4_0) {
  {
    BlockQ8_0 b{};
    b.d = kHalf;
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
    float out[32];
    GetDequantRow(TensorType::kQ8_0)(reinterpret_cast<uint8_t*>(&b), 32, out);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 0.5f * (j - 16)) << "q8_0 " << j;
  }
  {
    BlockQ4_0 b{};
    b.d = kHalf;
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    float out[32];
    GetDequantRow(TensorType::kQ4_0)(reinterpret_cast<uint8_t*>(&b), 32, out);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(out[j], 0.5f * (j - 8)) << "q4_0 low " << j;
      EXPECT_EQ(out[j + 16], 0.5f * (7 - j)) << "q4_0 high " << j;
    }
  }
}

// Q4_1, Q5_0, Q5_1 by ggml's dequantize_row_* expressions (the fifth bit of element j < 16 is
// (qh >> j) << 4 & 0x10, of element j + 16 (qh >> (j + 12)) & 0x10).
TEST(QuantLayout, Q4_1AndQ5_0AndQ5_1) {
  const uint32_t qh = 0xA5C3F00Fu;
  uint8_t qs[16];
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  auto level = [&](int j, bool five) {  // element j's level, ggml's way
    const int nib = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
    if (!five) return nib;
    const int k = j % 16;
    return nib | static_cast<int>(j < 16 ? ((qh >> k) << 4) & 0x10 : (qh >> (k + 12)) & 0x10);
  };
  {
    BlockQ4_1 b{};
    b.d = kHalf;
    b.m = FloatToHalf(-3.0f);
    std::memcpy(b.qs, qs, 16);
    float out[32];
    GetDequantRow(TensorType::kQ4_1)(reinterpret_cast<uint8_t*>(&b), 32, out);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], level(j, false) * 0.5f - 3.0f) << "q4_1 " << j;
  }
  {
    BlockQ5_0 b{};
    b.d = kQuarter;
    std::memcpy(b.qh, &qh, 4);
    std::memcpy(b.qs, qs, 16);
    float out[32];
    GetDequantRow(TensorType::kQ5_0)(reinterpret_cast<uint8_t*>(&b), 32, out);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], (level(j, true) - 16) * 0.25f) << "q5_0 " << j;
  }
  {
    BlockQ5_1 b{};
    b.d = kHalf;
    b.m = FloatToHalf(1.5f);
    std::memcpy(b.qh, &qh, 4);
    std::memcpy(b.qs, qs, 16);
    float out[32];
    GetDequantRow(TensorType::kQ5_1)(reinterpret_cast<uint8_t*>(&b), 32, out);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], level(j, true) * 0.5f + 1.5f) << "q5_1 " << j;
  }
}

TEST(QuantLayout, Q4_KAndQ5_K) {
  // Q4_K / Q5_K: sub-block j gets scale j + 1 + 40 * (j >= 4) and min 2 * j + 3 * (j >= 4) * 10,
  // so the 6-bit values with high bits set exercise the packed byte layout.
  uint8_t sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>(j + 1 + (j >= 4 ? 40 : 0));
    mn[j] = static_cast<uint8_t>(2 * j + (j >= 4 ? 30 : 0));
  }
  uint8_t scales[12];
  for (int j = 0; j < 4; ++j) {
    scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
  for (bool five : {false, true}) {
    BlockQ5_K b{};
    b.d = kHalf;
    b.dmin = kQuarter;
    std::memcpy(b.scales, scales, 12);
    for (int i = 0; i < 128; ++i) b.qs[i] = static_cast<uint8_t>((i * 7) & 0xFF);
    for (int i = 0; i < 32; ++i) b.qh[i] = static_cast<uint8_t>(i * 37 + 5);
    std::vector<uint8_t> bytes;
    if (five) {
      bytes.assign(reinterpret_cast<uint8_t*>(&b), reinterpret_cast<uint8_t*>(&b) + sizeof b);
    } else {
      BlockQ4_K b4{};
      b4.d = b.d;
      b4.dmin = b.dmin;
      std::memcpy(b4.scales, scales, 12);
      std::memcpy(b4.qs, b.qs, 128);
      bytes.assign(reinterpret_cast<uint8_t*>(&b4), reinterpret_cast<uint8_t*>(&b4) + sizeof b4);
    }
    float out[256];
    GetDequantRow(five ? TensorType::kQ5_K : TensorType::kQ4_K)(bytes.data(), 256, out);
    for (int e = 0; e < 256; ++e) {
      const int g = e / 64, l = e % 32, upper = (e % 64) / 32, j = e / 32;
      int q = upper ? b.qs[32 * g + l] >> 4 : b.qs[32 * g + l] & 0xF;
      if (five) q += ((b.qh[l] >> (2 * g + upper)) & 1) * 16;
      const float want = (0.5f * sc[j]) * q - 0.25f * mn[j];
      ASSERT_EQ(out[e], want) << (five ? "q5_K" : "q4_K") << " element " << e;
    }
  }
}

TEST(QuantLayout, Q6_K) {
  {
    BlockQ6_K b{};
    b.d = kQuarter;
    for (int i = 0; i < 128; ++i) b.ql[i] = static_cast<uint8_t>(i * 11 + 3);
    for (int i = 0; i < 64; ++i) b.qh[i] = static_cast<uint8_t>(i * 29 + 1);
    for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<int8_t>(i * 9 - 70);
    float out[256];
    GetDequantRow(TensorType::kQ6_K)(reinterpret_cast<uint8_t*>(&b), 256, out);
    for (int e = 0; e < 256; ++e) {
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const uint8_t qlb = b.ql[64 * h + 32 * (k % 2) + l];
      const int low = k < 2 ? qlb & 0xF : qlb >> 4;
      const int high = (b.qh[32 * h + l] >> (2 * k)) & 3;
      const float want = (0.25f * b.scales[e / 16]) * static_cast<float>((low | (high << 4)) - 32);
      ASSERT_EQ(out[e], want) << "q6_K element " << e;
    }
  }
}

struct Matrix {
  std::vector<float> original;
  std::vector<uint8_t> bytes;
  Weight w;
};

Matrix MakeMatrix(TensorType type, int64_t rows, int64_t cols, uint32_t seed) {
  Matrix m;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(cols)));
  m.original.resize(rows * cols);
  for (float& v : m.original) v = normal(rng);
  m.bytes = Quantize(type, m.original);
  m.w.name = "test";
  m.w.type = type;
  m.w.rows = rows;
  m.w.cols = cols;
  m.w.data = m.bytes.data();
  m.w.row_bytes = static_cast<int64_t>(*TensorBytes(type, cols));
  return m;
}

// Relative RMS error of the product against the unquantised weights' product, per type. On this
// data the measured errors are bf16 0.0016, q8_0 0.0053, q6_K 0.017, q5_K 0.038, q4_K 0.080,
// q4_0 0.087, q4_1 0.074, q5_0 0.041, q5_1 0.033: each bound is 1.6-3x the measured error
// (the test prints them).
double ProductTolerance(TensorType type) {
  switch (type) {
    case TensorType::kBF16: return 0.005;
    case TensorType::kQ8_0: return 0.01;
    case TensorType::kQ6_K: return 0.03;
    case TensorType::kQ5_K: return 0.06;
    case TensorType::kQ5_0: return 0.08;
    case TensorType::kQ5_1: return 0.06;
    default: return 0.15;  // q4_0, q4_K
  }
}

TEST(Quant, MatVecAndMatMulMatchTheDequantisedDoubleReference) {
  ThreadPool pool(2);
  for (TensorType type : kTypes) {
    for (int64_t cols : {256, 768}) {
      const int64_t rows = 37;
      const Matrix m = MakeMatrix(type, rows, cols, 3);
      const std::vector<float> deq = Dequantize(type, m.bytes, rows * cols);
      for (int64_t tokens : {1, 5}) {
        std::vector<float> x(tokens * cols);
        std::mt19937 rng(static_cast<uint32_t>(tokens));
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (float& v : x) v = normal(rng);
        std::vector<float> y(tokens * rows);
        MatMul(m.w, x.data(), tokens, y.data(), pool);
        double sq_err = 0, sq_ref = 0;
        for (int64_t t = 0; t < tokens; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            double ref = 0, magnitude = 0, exact = 0;
            for (int64_t k = 0; k < cols; ++k) {
              ref += double{deq[r * cols + k]} * x[t * cols + k];
              magnitude += std::fabs(double{deq[r * cols + k]} * x[t * cols + k]);
              exact += double{m.original[r * cols + k]} * x[t * cols + k];
            }
            const float got = y[t * rows + r];
            ASSERT_NEAR(got, ref, 1e-6 * magnitude + 1e-7)
                << Name(type) << " cols " << cols << " tokens " << tokens << " row " << r;
            sq_err += (got - exact) * (got - exact);
            sq_ref += exact * exact;
          }
        }
        EXPECT_LE(std::sqrt(sq_err / sq_ref), ProductTolerance(type))
            << Name(type) << " cols " << cols << " tokens " << tokens;
        if (cols == 768 && tokens == 5) {
          std::printf("%s: relative RMS error %.3g\n", Name(type).c_str(), std::sqrt(sq_err / sq_ref));
        }
      }
    }
  }
}

// A token's outputs are the same bits whether it rides alone (decode: dequantised rows and the
// dot) or in a batch (prefill: dequantised tiles and the blocked GEMM), on one thread or two.
TEST(Quant, MatMulIsInvariantToBatchAndThreads) {
  ThreadPool one(1), two(2);
  for (TensorType type : kTypes) {
    const int64_t rows = 45, cols = 512, tokens = 19;
    const Matrix m = MakeMatrix(type, rows, cols, 5);
    std::vector<float> x(tokens * cols);
    std::mt19937 rng(8);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x) v = normal(rng);
    std::vector<float> batched(tokens * rows), batched_one(tokens * rows);
    MatMul(m.w, x.data(), tokens, batched.data(), two);
    MatMul(m.w, x.data(), tokens, batched_one.data(), one);
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<float> alone(rows);
      MatMul(m.w, &x[t * cols], 1, alone.data(), t % 2 ? one : two);
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_EQ(Bits(alone[r]), Bits(batched[t * rows + r])) << Name(type) << " t" << t << " r" << r;
        ASSERT_EQ(Bits(batched_one[t * rows + r]), Bits(batched[t * rows + r])) << Name(type);
      }
    }
  }
}

TEST(Quant, EmbeddingRowIsTheDequantisedRow) {
  for (TensorType type : kTypes) {
    const Matrix m = MakeMatrix(type, 6, 256, 9);
    const std::vector<float> deq = Dequantize(type, m.bytes, 6 * 256);
    std::vector<float> row(256);
    RowToFloat(m.w, 4, row.data());
    for (int k = 0; k < 256; ++k) ASSERT_EQ(Bits(row[k]), Bits(deq[4 * 256 + k])) << Name(type);
  }
}

}  // namespace
}  // namespace prefixd::cpu
