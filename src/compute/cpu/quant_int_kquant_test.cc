// Integer K-quant tile kernels (quant_int_kquant.h): every path this CPU runs gives the generic
// path's bits over random blocks (every byte random, f16 scales finite but extreme, every 6-bit
// scale and min, every q6 value); the generic path equals a second, independent implementation
// of quant_int.h's canonical steps bit for bit (and perturbed steps are caught by the same
// comparison); and the generic path is within a stated rounding bound of a double-precision
// dot of the dequantised weights and activations.
#include "compute/cpu/quant_int_kquant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "base/fp16.h"
#include "compute/cpu/quant_dequant.h"
#include "model/quant_blocks.h"

namespace prefixd::cpu {
namespace {

enum class Kind { kQ4K, kQ5K, kQ6K };

const char* KindName(Kind k) { return k == Kind::kQ4K ? "q4_K" : k == Kind::kQ5K ? "q5_K" : "q6_K"; }
int BlockBytes(Kind k) {
  return k == Kind::kQ4K ? sizeof(BlockQ4_K) : k == Kind::kQ5K ? sizeof(BlockQ5_K) : sizeof(BlockQ6_K);
}
TensorType Type(Kind k) {
  return k == Kind::kQ4K ? TensorType::kQ4_K : k == Kind::kQ5K ? TensorType::kQ5_K : TensorType::kQ6_K;
}
std::vector<std::pair<const char*, IntTileFn>> Paths(Kind k) {
  return k == Kind::kQ4K ? IntTilePathsQ4K() : k == Kind::kQ5K ? IntTilePathsQ5K() : IntTilePathsQ6K();
}

// A finite f16, often extreme: the largest, the smallest subnormal, a subnormal, zero, or any.
uint16_t RandomHalf(std::mt19937& rng) {
  const uint16_t sign = (rng() & 1) ? 0x8000 : 0;
  switch (rng() % 8) {
    case 0: return sign | 0x7BFF;                    // 65504
    case 1: return sign | 0x0001;                    // 2^-24
    case 2: return sign | (rng() % 0x0400);          // subnormal or zero
    case 3: return sign | 0x0400;                    // smallest normal
    default: {
      uint16_t h;
      do h = static_cast<uint16_t>(rng()); while ((h & 0x7C00) == 0x7C00);  // no inf / nan
      return h;
    }
  }
}

// Random weight rows: every byte random, then the f16 scales replaced by finite ones.
std::vector<uint8_t> RandomRows(Kind kind, int rows, int64_t n, std::mt19937& rng) {
  const int64_t nb = n / kQkK, bb = BlockBytes(kind);
  std::vector<uint8_t> w(rows * nb * bb);
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  for (int64_t i = 0; i < rows * nb; ++i) {
    uint8_t* blk = w.data() + i * bb;
    if (kind == Kind::kQ6K) {
      const uint16_t d = RandomHalf(rng);
      std::memcpy(blk + offsetof(BlockQ6_K, d), &d, 2);
    } else {
      const uint16_t d = RandomHalf(rng), dmin = RandomHalf(rng);
      std::memcpy(blk, &d, 2);
      std::memcpy(blk + 2, &dmin, 2);
    }
  }
  return w;
}

// Random activation rows (each `stride` bytes apart, the padding garbage): half quantised from
// floats of random magnitude (some blocks all zero, some with one outlier), half raw blocks
// with q drawn from the extremes and the middle and consistent bsums.
std::vector<uint8_t> RandomActivations(int tokens, int64_t n, int64_t stride, std::mt19937& rng,
                                       float min_scale = 1e-30f) {
  const int64_t nb = n / kQkK;
  std::vector<uint8_t> xq(tokens * stride);
  for (auto& b : xq) b = static_cast<uint8_t>(rng());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int t = 0; t < tokens; ++t) {
    Q8x256Block* x = reinterpret_cast<Q8x256Block*>(xq.data() + t * stride);
    for (int64_t i = 0; i < nb; ++i) {
      if (rng() % 2 == 0) {
        std::vector<float> f(kQkK);
        const int mode = rng() % 8;
        const float scale = std::max(min_scale, std::pow(10.0f, static_cast<float>(rng() % 13) - 6.0f));
        for (auto& v : f) v = mode == 0 ? 0.0f : normal(rng) * scale;
        if (mode == 1) f[rng() % kQkK] = 1000.0f * scale;
        QuantizeQ8x256Portable(f.data(), kQkK, &x[i]);
      } else {
        x[i].d = std::max(min_scale, std::ldexp(static_cast<float>(rng() % 1000 + 1), static_cast<int>(rng() % 20) - 30));
        for (int e = 0; e < kQkK; ++e) {
          const int mode = rng() % 4;
          x[i].q[e] = static_cast<int8_t>(mode == 0 ? 127 : mode == 1 ? -127 : static_cast<int>(rng() % 255) - 127);
        }
        for (int g = 0; g < 16; ++g) {
          int s = 0;
          for (int e = 16 * g; e < 16 * g + 16; ++e) s += x[i].q[e];
          x[i].bsums[g] = static_cast<int16_t>(s);
        }
      }
    }
  }
  return xq;
}

// One super-block decoded straight from quant_blocks.h's layout comments: per element its
// integer q, its sub-block's scale (and min) index, and the f16 scales as floats.
struct Decoded {
  float d = 0, dmin = 0;
  int sc[16] = {}, m[8] = {};  // Q4_K/Q5_K: 8 scales and mins; Q6_K: 16 scales
  int q[kQkK] = {};            // Q4_K 0..15, Q5_K 0..31, Q6_K -32..31
  int Group(Kind kind, int e) const { return kind == Kind::kQ6K ? e / 16 : e / 32; }
};

Decoded Decode(Kind kind, const uint8_t* blk) {
  Decoded out;
  if (kind == Kind::kQ6K) {
    const BlockQ6_K& b = *reinterpret_cast<const BlockQ6_K*>(blk);
    out.d = HalfToFloat(b.d);
    for (int j = 0; j < 16; ++j) out.sc[j] = b.scales[j];
    for (int h = 0; h < 2; ++h)
      for (int l = 0; l < 32; ++l)
        for (int k = 0; k < 4; ++k) {
          const uint8_t lo_byte = b.ql[64 * h + (k % 2 == 0 ? l : 32 + l)];
          const int lo = k < 2 ? (lo_byte & 0xF) : (lo_byte >> 4);
          const int hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
          out.q[128 * h + l + 32 * k] = (lo | (hi << 4)) - 32;
        }
    return out;
  }
  const BlockQ4_K& b4 = *reinterpret_cast<const BlockQ4_K*>(blk);
  out.d = HalfToFloat(b4.d);
  out.dmin = HalfToFloat(b4.dmin);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    GetScaleMinK4(j, b4.scales, &sc, &m);
    out.sc[j] = sc;
    out.m[j] = m;
  }
  const uint8_t* qs = kind == Kind::kQ4K ? b4.qs : reinterpret_cast<const BlockQ5_K*>(blk)->qs;
  const uint8_t* qh = reinterpret_cast<const BlockQ5_K*>(blk)->qh;
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) {
      int lo = qs[32 * g + l] & 0xF, hi = qs[32 * g + l] >> 4;
      if (kind == Kind::kQ5K) {
        lo |= ((qh[l] >> (2 * g)) & 1) << 4;
        hi |= ((qh[l] >> (2 * g + 1)) & 1) << 4;
      }
      out.q[64 * g + l] = lo;
      out.q[64 * g + 32 + l] = hi;
    }
  return out;
}

// How the second implementation forms and sums the per-super-block terms.
enum class Variant {
  kCanonical,     // quant_int.h exactly
  kFused,         // an FMA: Q4_K/Q5_K the second product and the subtraction, Q6_K the product and the sum
  kReassociated,  // d_x * (d * S) instead of (d_x * d) * S
  kReversed,      // super-blocks summed last to first
  kPairwise,      // even and odd super-blocks in two sums, added at the end
};

float SpecDot(Kind kind, const uint8_t* row, const Q8x256Block* x, int64_t n, Variant v) {
  const int64_t nb = n / kQkK, bb = BlockBytes(kind);
  std::vector<float> terms(nb), fused_a, fused_b;
  for (int64_t i = 0; i < nb; ++i) {
    const Decoded dec = Decode(kind, row + i * bb);
    int64_t s1 = 0, s2 = 0;
    if (kind == Kind::kQ6K) {
      for (int e = 0; e < kQkK; ++e) s1 += static_cast<int64_t>(dec.sc[e / 16]) * dec.q[e] * x[i].q[e];
    } else {
      for (int e = 0; e < kQkK; ++e) {
        s1 += static_cast<int64_t>(dec.sc[e / 32]) * dec.q[e] * x[i].q[e];
        s2 += static_cast<int64_t>(dec.m[e / 32]) * x[i].q[e];
      }
    }
    const float f1 = static_cast<float>(s1), f2 = static_cast<float>(s2), dx = x[i].d;
    float t;
    if (kind == Kind::kQ6K) {
      switch (v) {
        // The product fused into the running sum (an FMA); summed below.
        case Variant::kFused: t = 0.0f; fused_a.push_back(dx * dec.d); fused_b.push_back(f1); break;
        case Variant::kReassociated: t = dx * (dec.d * f1); break;
        default: t = (dx * dec.d) * f1;
      }
    } else {
      switch (v) {
        case Variant::kFused: t = std::fmaf(-(dx * dec.dmin), f2, (dx * dec.d) * f1); break;
        case Variant::kReassociated: t = dx * (dec.d * f1) - dx * (dec.dmin * f2); break;
        default: t = (dx * dec.d) * f1 - (dx * dec.dmin) * f2;
      }
    }
    terms[i] = t;
  }
  float acc = 0.0f;
  if (!fused_a.empty()) {
    for (int64_t i = 0; i < nb; ++i) acc = std::fmaf(fused_a[i], fused_b[i], acc);
  } else if (v == Variant::kReversed) {
    for (int64_t i = nb - 1; i >= 0; --i) acc += terms[i];
  } else if (v == Variant::kPairwise) {
    float a0 = 0.0f, a1 = 0.0f;
    for (int64_t i = 0; i < nb; ++i) (i % 2 ? a1 : a0) += terms[i];
    acc = a0 + a1;
  } else {
    for (int64_t i = 0; i < nb; ++i) acc += terms[i];
  }
  return acc;
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

struct Case {
  int rows, tokens;
  int64_t n;
};

// A spread of shapes: every rows 1..20 and tokens 1..13 appear, n from 256 to 4096.
std::vector<Case> Cases() {
  std::vector<Case> cases;
  const int64_t ns[] = {256, 512, 768, 1024, 2048, 4096};
  for (int i = 0; i < 26; ++i) cases.push_back({1 + i % 20, 1 + (i * 7) % 13, ns[i % 6]});
  cases.push_back({20, 13, 4096});
  cases.push_back({1, 1, 256});
  cases.push_back({5, 1, 4096});
  return cases;
}

// Runs `fn` over a case with padded strides (ldy > rows, token rows apart by more than n needs).
std::vector<float> RunTile(IntTileFn fn, const std::vector<uint8_t>& w, int64_t row_bytes,
                           const std::vector<uint8_t>& xq, int64_t stride, const Case& c) {
  const int64_t ldy = c.rows + 3;
  std::vector<float> y(c.tokens * ldy, -7.0f);
  fn(w.data(), row_bytes, c.rows, xq.data(), stride, c.tokens, c.n, y.data(), ldy);
  for (int t = 0; t < c.tokens; ++t)
    for (int r = c.rows; r < ldy; ++r) EXPECT_EQ(y[t * ldy + r], -7.0f) << "wrote past the rows";
  return y;
}

class KQuantIntTest : public ::testing::TestWithParam<Kind> {};

bool HasAvx2() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx2 && f.fma && f.f16c;
}

bool HasAvx512Vnni() {
  const CpuFeatures& f = GetCpuFeatures();
  return HasAvx2() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
}

// Compares the path named `name` with generic over every case; returns the number of outputs
// compared. The random blocks must exercise every scale, min and weight value of the format.
int CompareWithGeneric(Kind kind, const char* name) {
  const auto paths = Paths(kind);
  IntTileFn fn = nullptr;
  for (const auto& [path_name, path_fn] : paths)
    if (std::string(path_name) == name) fn = path_fn;
  EXPECT_NE(fn, nullptr) << "path " << name << " not listed although this CPU runs it";
  if (fn == nullptr) return 0;
  std::mt19937 rng(15 + static_cast<int>(kind));
  std::set<int> scales_seen, mins_seen, q_seen;
  int compared = 0;
  for (const Case& c : Cases()) {
    const int64_t row_bytes = c.n / kQkK * BlockBytes(kind);
    const std::vector<uint8_t> w = RandomRows(kind, c.rows, c.n, rng);
    const int64_t stride = c.n / kQkK * sizeof(Q8x256Block) + 40;
    const std::vector<uint8_t> xq = RandomActivations(c.tokens, c.n, stride, rng);
    for (int64_t i = 0; i < c.rows * c.n / kQkK; ++i) {
      const Decoded dec = Decode(kind, w.data() + i * BlockBytes(kind));
      for (int j = 0; j < (kind == Kind::kQ6K ? 16 : 8); ++j) scales_seen.insert(dec.sc[j]);
      for (int j = 0; j < 8 && kind != Kind::kQ6K; ++j) mins_seen.insert(dec.m[j]);
      for (int e = 0; e < kQkK; ++e) q_seen.insert(dec.q[e]);
    }
    const std::vector<float> want = RunTile(paths[0].second, w, row_bytes, xq, stride, c);
    const std::vector<float> got = RunTile(fn, w, row_bytes, xq, stride, c);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(Bits(got[i]), Bits(want[i]))
          << KindName(kind) << " path " << name << " rows " << c.rows << " tokens " << c.tokens
          << " n " << c.n << " output " << i << ": " << got[i] << " vs " << want[i];
      if (Bits(got[i]) != Bits(want[i])) return compared;
      ++compared;
    }
  }
  if (kind == Kind::kQ6K) {
    EXPECT_EQ(scales_seen.size(), 256u);
    EXPECT_EQ(q_seen.size(), 64u);
    EXPECT_EQ(*q_seen.begin(), -32);
  } else {
    EXPECT_EQ(scales_seen.size(), 64u);
    EXPECT_EQ(mins_seen.size(), 64u);
    EXPECT_EQ(q_seen.size(), kind == Kind::kQ4K ? 16u : 32u);
  }
  return compared;
}

TEST_P(KQuantIntTest, PathListMatchesCpu) {
  const auto paths = Paths(GetParam());
  ASSERT_FALSE(paths.empty());
  EXPECT_STREQ(paths[0].first, "generic");
  EXPECT_EQ(paths.size(), 1u + HasAvx2() + HasAvx512Vnni());
}

TEST_P(KQuantIntTest, Avx2GivesGenericBits) {
  if (!HasAvx2()) GTEST_SKIP() << "this CPU (or PREFIXD_CPU) lacks avx2/fma/f16c";
  EXPECT_GT(CompareWithGeneric(GetParam(), "avx2"), 0);
}

TEST_P(KQuantIntTest, Avx512VnniGivesGenericBits) {
  if (!HasAvx512Vnni()) GTEST_SKIP() << "this CPU (or PREFIXD_CPU) lacks avx512f/bw/vl/vnni";
  EXPECT_GT(CompareWithGeneric(GetParam(), "avx512vnni"), 0);
}

// The test's own decoder agrees with the dequantisers (and so with llama.cpp's layouts).
TEST_P(KQuantIntTest, DecoderMatchesDequantiser) {
  const Kind kind = GetParam();
  std::mt19937 rng(7);
  const int64_t n = 4096;
  const std::vector<uint8_t> w = RandomRows(kind, 1, n, rng);
  std::vector<float> deq(n);
  RunnableDequantPaths(Type(kind))[0].second(w.data(), n, deq.data());
  for (int64_t i = 0; i < n / kQkK; ++i) {
    const Decoded dec = Decode(kind, w.data() + i * BlockBytes(kind));
    for (int e = 0; e < kQkK; ++e) {
      const int j = dec.Group(kind, e);
      const float want = kind == Kind::kQ6K
                             ? (dec.d * dec.sc[j]) * static_cast<float>(dec.q[e])
                             : (dec.d * dec.sc[j]) * static_cast<float>(dec.q[e]) - dec.dmin * dec.m[j];
      ASSERT_EQ(Bits(deq[i * kQkK + e]), Bits(want)) << "block " << i << " element " << e;
    }
  }
}

// Generic equals the spec implementation above bit for bit, and the same comparison catches
// each perturbed variant (negative control: a wrong order or a fused step does not pass).
TEST_P(KQuantIntTest, GenericIsCanonicalAndPerturbationsAreCaught) {
  const Kind kind = GetParam();
  const IntTileFn generic = Paths(kind)[0].second;
  std::mt19937 rng(99);
  const Variant mutants[] = {Variant::kFused, Variant::kReassociated, Variant::kReversed, Variant::kPairwise};
  int caught[5] = {};
  for (const Case& c : Cases()) {
    const int64_t row_bytes = c.n / kQkK * BlockBytes(kind);
    const std::vector<uint8_t> w = RandomRows(kind, c.rows, c.n, rng);
    const int64_t stride = c.n / kQkK * sizeof(Q8x256Block);
    const std::vector<uint8_t> xq = RandomActivations(c.tokens, c.n, stride, rng);
    const std::vector<float> y = RunTile(generic, w, row_bytes, xq, stride, c);
    for (int t = 0; t < c.tokens; ++t)
      for (int r = 0; r < c.rows; ++r) {
        const uint8_t* row = w.data() + r * row_bytes;
        const Q8x256Block* x = reinterpret_cast<const Q8x256Block*>(xq.data() + t * stride);
        const float got = y[t * (c.rows + 3) + r];
        ASSERT_EQ(Bits(got), Bits(SpecDot(kind, row, x, c.n, Variant::kCanonical)))
            << "rows " << c.rows << " n " << c.n << " r " << r << " t " << t;
        for (Variant v : mutants)
          caught[static_cast<int>(v)] += Bits(got) != Bits(SpecDot(kind, row, x, c.n, v));
      }
  }
  for (Variant v : mutants) EXPECT_GT(caught[static_cast<int>(v)], 0) << "variant " << static_cast<int>(v) << " not caught";
}

// |generic - exact| <= (nb + 5) * 2^-24 * sum_e (|d sc q| + |dmin m|) |x_e|: float(S) and the
// two products round at most once each, the subtraction once, and the sum of nb terms at most
// nb - 1 times, each by at most 2^-24 relative to magnitudes bounded by that sum. The exact
// value is the double dot of the dequantised weights (integers times f16 scales, exact in
// double) and the dequantised activations d_x q.
TEST_P(KQuantIntTest, GenericWithinBoundOfDoubleReference) {
  const Kind kind = GetParam();
  const IntTileFn generic = Paths(kind)[0].second;
  std::mt19937 rng(5);
  double worst = 0;
  for (const Case& c : Cases()) {
    const int64_t nb = c.n / kQkK, row_bytes = nb * BlockBytes(kind);
    const std::vector<uint8_t> w = RandomRows(kind, c.rows, c.n, rng);
    const int64_t stride = nb * sizeof(Q8x256Block);
    // Activation scales >= 1e-3 keep every float product normal, so the relative bound holds.
    const std::vector<uint8_t> xq = RandomActivations(c.tokens, c.n, stride, rng, 1e-3f);
    const std::vector<float> y = RunTile(generic, w, row_bytes, xq, stride, c);
    for (int t = 0; t < c.tokens; ++t)
      for (int r = 0; r < c.rows; ++r) {
        const Q8x256Block* x = reinterpret_cast<const Q8x256Block*>(xq.data() + t * stride);
        double exact = 0, magnitude = 0;
        for (int64_t i = 0; i < nb; ++i) {
          const Decoded dec = Decode(kind, w.data() + r * row_bytes + i * BlockBytes(kind));
          for (int e = 0; e < kQkK; ++e) {
            const int j = dec.Group(kind, e);
            const double a = static_cast<double>(dec.d) * dec.sc[j] * dec.q[e];
            const double b = kind == Kind::kQ6K ? 0.0 : static_cast<double>(dec.dmin) * dec.m[j];
            const double xe = static_cast<double>(x[i].d) * x[i].q[e];
            exact += (a - b) * xe;
            magnitude += (std::fabs(a) + std::fabs(b)) * std::fabs(xe);
          }
        }
        const double err = std::fabs(y[t * (c.rows + 3) + r] - exact);
        const double bound = (nb + 5) * std::ldexp(1.0, -24) * magnitude;
        ASSERT_LE(err, bound) << "rows " << c.rows << " n " << c.n << " r " << r << " t " << t
                              << " got " << y[t * (c.rows + 3) + r] << " exact " << exact;
        if (magnitude > 0) worst = std::max(worst, err / (std::ldexp(1.0, -24) * magnitude));
      }
  }
  std::printf("%s: worst error %.3f x 2^-24 x magnitude\n", KindName(kind), worst);
}

INSTANTIATE_TEST_SUITE_P(KQuants, KQuantIntTest, ::testing::Values(Kind::kQ4K, Kind::kQ5K, Kind::kQ6K),
                         [](const auto& info) { return std::string(KindName(info.param)); });

}  // namespace
}  // namespace prefixd::cpu
