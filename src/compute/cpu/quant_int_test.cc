// Integer dot products (quant_int.h): every path of the activation quantiser and of each tile
// kernel bit-identical to the portable one on random data; the quantiser against the format's
// definition; the tiles against a double-precision reference and invariant to the tile shape;
// and a negative control showing that a bit comparison catches a changed reduction order.
#include "compute/cpu/quant_int.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "model/quant_blocks.h"

namespace prefixd::cpu {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

constexpr TensorType kTileTypes[] = {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_1,
                                     TensorType::kQ5_0, TensorType::kQ5_1};

size_t BlockBytes(TensorType type) {
  return static_cast<size_t>(GetTensorTypeTraits(static_cast<uint32_t>(type))->block_bytes);
}
bool HasMin(TensorType type) { return type == TensorType::kQ4_1 || type == TensorType::kQ5_1; }

// Activations with the shapes that break quantisers, block by block (32 elements): Gaussian
// at scales from 1e-30 to 1e30, all zeros, one outlier, exact half-steps (ties), denormals.
std::vector<float> TrickyActivations(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pattern_dist(0, 6), exp_dist(-30, 30);
  std::vector<float> x(n);
  for (int64_t b = 0; b < n / 32; ++b) {
    const int pattern = pattern_dist(rng);
    const float scale = std::pow(10.0f, static_cast<float>(exp_dist(rng)));
    for (int i = 0; i < 32; ++i) {
      float& v = x[b * 32 + i];
      switch (pattern) {
        case 0:
          v = normal(rng) * scale;
          break;
        case 1:
          v = 0.0f;
          break;
        case 2:
          v = i == 5 ? 1000.0f : normal(rng);
          break;
        case 3:
          v = i == 0 ? 127.0f : static_cast<float>(static_cast<int>(normal(rng) * 20)) + 0.5f;
          break;
        case 4:
          v = normal(rng) * 1e-39f;
          break;  // denormal inputs: d underflows or is tiny
        case 5:
          v = -std::fabs(normal(rng));
          break;
        default:
          v = normal(rng);
          break;
      }
    }
  }
  return x;
}

// A row of `nb` blocks of `type` with random integers (Q8_0: -128 included) and f16 scales
// (and mins) from 2^-24 (denormal) to 2^10, some blocks all-zero, some with scale 0.
std::vector<uint8_t> RandomWeightRow(TensorType type, int64_t nb, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255), exp_dist(-24, 10), kind(0, 9);
  const size_t block_bytes = BlockBytes(type);
  std::vector<uint8_t> row(nb * block_bytes);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* p = row.data() + b * block_bytes;
    const int k = kind(rng);
    const float d = k == 0 ? 0.0f : std::ldexp(1.0f + byte(rng) / 256.0f, exp_dist(rng));
    const uint16_t h = FloatToHalf(k == 1 ? -d : d);
    std::memcpy(p, &h, 2);
    for (size_t i = 2; i < block_bytes; ++i) p[i] = k == 2 ? 0 : static_cast<uint8_t>(byte(rng));
    if (type == TensorType::kQ8_0 && k == 3) std::memset(p + 2, 0x80, 32);  // all -128
    if (HasMin(type)) {
      const float m = k == 4 ? 0.0f : std::ldexp(1.0f + byte(rng) / 256.0f, exp_dist(rng));
      const uint16_t hm = FloatToHalf(byte(rng) % 2 ? -m : m);
      std::memcpy(p + 2, &hm, 2);
    }
  }
  return row;
}

// The weight integer of element j (quant_int.h): the level minus Q4_0's 8 or Q5_0's 16.
int WeightInt(TensorType type, const uint8_t* block, int j) {
  switch (type) {
    case TensorType::kQ8_0: return static_cast<int8_t>(block[2 + j]);
    case TensorType::kQ5_0: return Q5Level(block + 2, block + 6, j) - 16;
    case TensorType::kQ5_1: return Q5Level(block + 4, block + 8, j);
    default: break;
  }
  const uint8_t q = block[(HasMin(type) ? 4 : 2) + (j % 16)];
  return (j < 16 ? q & 0x0F : q >> 4) - (HasMin(type) ? 0 : 8);
}

float WeightScale(const uint8_t* block) {
  uint16_t h;
  std::memcpy(&h, block, 2);
  return HalfToFloat(h);
}

// The block's min (0 for types without one).
float WeightMin(TensorType type, const uint8_t* block) {
  if (!HasMin(type)) return 0.0f;
  uint16_t h;
  std::memcpy(&h, block + 2, 2);
  return HalfToFloat(h);
}

struct Problem {
  TensorType type;
  int64_t n;
  int num_rows, num_tokens;
  int64_t row_bytes, xq_stride;
  std::vector<uint8_t> w, xq;
};

Problem RandomProblem(TensorType type, std::mt19937& rng) {
  std::uniform_int_distribution<int> nb_dist(1, 40), rows_dist(1, 20), tokens_dist(1, 13);
  Problem p;
  p.type = type;
  p.n = 32 * nb_dist(rng);  // ragged against the groups of 8 blocks
  p.num_rows = rows_dist(rng);
  p.num_tokens = tokens_dist(rng);
  for (int r = 0; r < p.num_rows; ++r) {
    const std::vector<uint8_t> row = RandomWeightRow(type, p.n / 32, rng);
    p.row_bytes = static_cast<int64_t>(row.size());
    p.w.insert(p.w.end(), row.begin(), row.end());
  }
  p.xq_stride = QuantActivationBytes(QuantActivation::kQ8x32, p.n) + 8;  // a gap between tokens
  p.xq.assign(p.xq_stride * p.num_tokens, 0xEE);
  for (int t = 0; t < p.num_tokens; ++t) {
    const std::vector<float> x = TrickyActivations(p.n, rng);
    QuantizeActivation(QuantActivation::kQ8x32, x.data(), p.n, p.xq.data() + t * p.xq_stride);
  }
  return p;
}

std::vector<float> RunTile(IntTileFn fn, const Problem& p) {
  const int64_t ldy = p.num_rows + 3;
  std::vector<float> y(ldy * p.num_tokens, -7.0f);
  fn(p.w.data(), p.row_bytes, p.num_rows, p.xq.data(), p.xq_stride, p.num_tokens, p.n, y.data(),
     ldy);
  for (int t = 0; t < p.num_tokens; ++t) {
    for (int64_t r = p.num_rows; r < ldy; ++r)
      EXPECT_EQ(y[t * ldy + r], -7.0f) << "wrote past num_rows";
  }
  std::vector<float> out;
  for (int t = 0; t < p.num_tokens; ++t) {
    for (int r = 0; r < p.num_rows; ++r) out.push_back(y[t * ldy + r]);
  }
  return out;  // token-major, num_rows per token
}

TEST(QuantInt, EveryQuantizeActivationPathMatchesThePortableOne) {
  std::mt19937 rng(11);
  const auto paths = RunnableQuantizeActivationPaths();
  ASSERT_STREQ(paths.front().first, "generic");
  if (paths.size() == 1) std::printf("%s\n", "only the portable path runs here; none compared");
  for (const QuantActivation format : {QuantActivation::kQ8x32, QuantActivation::kQ8x256}) {
    for (int iter = 0; iter < 200; ++iter) {
      const int64_t n = 256 * (1 + iter % 5);
      const std::vector<float> x = TrickyActivations(n, rng);
      const int64_t bytes = QuantActivationBytes(format, n);
      std::vector<uint8_t> want(bytes, 0xAB);
      paths.front().second(format, x.data(), n, want.data());
      for (size_t i = 1; i < paths.size(); ++i) {
        std::vector<uint8_t> got(bytes, 0xAB);
        paths[i].second(format, x.data(), n, got.data());
        // Compare field by field (struct padding is not part of the format; there is none).
        ASSERT_EQ(std::memcmp(want.data(), got.data(), bytes), 0)
            << paths[i].first << " format " << static_cast<int>(format) << " iter " << iter;
      }
    }
  }
}

// The format's definition, checked against the fastest path's bytes.
TEST(QuantInt, QuantizeActivationFollowsTheFormat) {
  std::mt19937 rng(12);
  const int64_t n = 256 * 7;
  const std::vector<float> x = TrickyActivations(n, rng);
  std::vector<Q8x32Block> a(n / 32);
  std::vector<Q8x256Block> b(n / 256);
  ASSERT_EQ(QuantActivationBytes(QuantActivation::kQ8x32, n),
            static_cast<int64_t>(a.size() * sizeof(Q8x32Block)));
  ASSERT_EQ(QuantActivationBytes(QuantActivation::kQ8x256, n),
            static_cast<int64_t>(b.size() * sizeof(Q8x256Block)));
  QuantizeActivation(QuantActivation::kQ8x32, x.data(), n, a.data());
  QuantizeActivation(QuantActivation::kQ8x256, x.data(), n, b.data());
  auto check = [&](const float* xb, int size, float d, const int8_t* q) {
    float amax = 0;
    for (int i = 0; i < size; ++i) amax = std::max(amax, std::fabs(xb[i]));
    EXPECT_EQ(Bits(d), Bits(amax / 127.0f));
    for (int i = 0; i < size; ++i) {
      EXPECT_GE(q[i], -127);
      if (d == 0.0f) {
        EXPECT_EQ(q[i], 0);
      } else if (std::isfinite(1.0f / d)) {
        // Nearest, ties to even: within half a step of x / d (in the float product's terms).
        const float v = xb[i] * (1.0f / d);
        EXPECT_EQ(q[i], static_cast<int>(std::nearbyint(std::clamp(v, -127.0f, 127.0f)))) << v;
      }
    }
  };
  for (int64_t k = 0; k < n / 32; ++k) {
    check(x.data() + 32 * k, 32, a[k].d, a[k].q);
    int sum = 0;
    for (int i = 0; i < 32; ++i) sum += a[k].q[i];
    EXPECT_EQ(a[k].sum, sum);
  }
  for (int64_t k = 0; k < n / 256; ++k) {
    check(x.data() + 256 * k, 256, b[k].d, b[k].q);
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += b[k].q[16 * g + i];
      EXPECT_EQ(b[k].bsums[g], sum);
    }
  }
}

TEST(QuantInt, EveryTilePathMatchesThePortableOne) {
  std::mt19937 rng(13);
  for (const TensorType type : kTileTypes) {
    const auto paths = RunnableIntTilePaths(type);
    ASSERT_FALSE(paths.empty());
    ASSERT_STREQ(paths.front().first, "generic");
    ASSERT_EQ(GetIntTile(type), paths.back().second);
    if (paths.size() == 1) std::printf("%s\n", "only the portable tile runs here; none compared");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c")) {
      EXPECT_GE(paths.size(), 2u) << TensorTypeName(static_cast<uint32_t>(type))
                                  << ": this CPU has AVX2 but no avx2 tile ran";
    }
    std::printf("%s: %zu tile paths compared with the portable one\n",
                TensorTypeName(static_cast<uint32_t>(type)).c_str(), paths.size() - 1);
    for (int iter = 0; iter < 300; ++iter) {
      const Problem p = RandomProblem(type, rng);
      const std::vector<float> want = RunTile(paths.front().second, p);
      for (size_t i = 1; i < paths.size(); ++i) {
        const std::vector<float> got = RunTile(paths[i].second, p);
        for (size_t k = 0; k < want.size(); ++k) {
          ASSERT_EQ(Bits(got[k]), Bits(want[k]))
              << paths[i].first << " iter " << iter << " n " << p.n << " rows " << p.num_rows
              << " tokens " << p.num_tokens << " output " << k;
        }
      }
    }
  }
}

// y within (nb + 8) * 2^-23 * sum |t_b| (plus subnormal terms) of the double-precision sum of
// dequantised weights times dequantised activations: each t_b is two float products (2 roundings;
// with a min term two more and a sum, measured against both terms' magnitudes), the eight
// accumulators take nb / 8 adds each and the fold three.
TEST(QuantInt, TilesAreCloseToTheDoubleReference) {
  std::mt19937 rng(14);
  for (const TensorType type : kTileTypes) {
    for (int iter = 0; iter < 100; ++iter) {
      const Problem p = RandomProblem(type, rng);
      const std::vector<float> y = RunTile(GetIntTile(type), p);
      const int64_t nb = p.n / 32;
      for (int t = 0; t < p.num_tokens; ++t) {
        const Q8x32Block* xb = reinterpret_cast<const Q8x32Block*>(p.xq.data() + t * p.xq_stride);
        for (int r = 0; r < p.num_rows; ++r) {
          const int64_t block_bytes = p.row_bytes / nb;
          double ref = 0, mag = 0, isum_mag = 0;
          for (int64_t b = 0; b < nb; ++b) {
            const uint8_t* wb = p.w.data() + r * p.row_bytes + b * block_bytes;
            // Dequantised weight times dequantised activation, summed in double.
            double s = 0, min_part = 0;
            int isum = 0;
            for (int j = 0; j < 32; ++j) {
              const double xj = static_cast<double>(xb[b].d) * xb[b].q[j];
              s += static_cast<double>(WeightScale(wb)) * WeightInt(type, wb, j) * xj;
              min_part += static_cast<double>(WeightMin(type, wb)) * xj;
              isum += WeightInt(type, wb, j) * xb[b].q[j];
            }
            ref += s + min_part;
            mag += std::fabs(s) + std::fabs(min_part);
            isum_mag += std::abs(isum) + std::abs(xb[b].sum) + 2;
          }
          // Where d_w * d_x is subnormal it has an absolute error up to 2^-150, which the
          // integer sum then multiplies: that, not the relative bound, dominates there.
          const double tol =
              (nb + 8) * std::ldexp(1.0, -23) * mag + std::ldexp(1.0, -148) * isum_mag;
          ASSERT_NEAR(y[t * p.num_rows + r], ref, tol)
              << "iter " << iter << " r " << r << " t " << t;
        }
      }
    }
  }
}

// A token's outputs are the same whether its tile has other rows and tokens or not.
TEST(QuantInt, AnOutputDoesNotDependOnTheTileShape) {
  std::mt19937 rng(15);
  for (const TensorType type : kTileTypes) {
    for (const auto& [name, fn] : RunnableIntTilePaths(type)) {
      for (int iter = 0; iter < 40; ++iter) {
        const Problem p = RandomProblem(type, rng);
        const std::vector<float> all = RunTile(fn, p);
        for (int t = 0; t < p.num_tokens; ++t) {
          for (int r = 0; r < p.num_rows; ++r) {
            float alone;
            fn(p.w.data() + r * p.row_bytes, p.row_bytes, 1, p.xq.data() + t * p.xq_stride,
               p.xq_stride, 1, p.n, &alone, 1);
            ASSERT_EQ(Bits(alone), Bits(all[t * p.num_rows + r])) << name << " iter " << iter;
          }
        }
      }
    }
  }
}

// Negative control: the same t_b summed in one sequential chain (a plausible "optimisation")
// differs from the canonical eight-accumulator order somewhere, so the bit comparisons above
// would catch a path that reduced in another order.
TEST(QuantInt, BitComparisonCatchesAWrongReductionOrder) {
  std::mt19937 rng(16);
  int differ = 0, total = 0;
  for (int iter = 0; iter < 50; ++iter) {
    Problem p = RandomProblem(TensorType::kQ8_0, rng);
    if (p.n < 32 * 9) continue;  // with fewer than 9 blocks only the fold's order differs
    const std::vector<float> want =
        RunTile(RunnableIntTilePaths(TensorType::kQ8_0).front().second, p);
    const int64_t nb = p.n / 32;
    for (int t = 0; t < p.num_tokens; ++t) {
      const Q8x32Block* xb = reinterpret_cast<const Q8x32Block*>(p.xq.data() + t * p.xq_stride);
      for (int r = 0; r < p.num_rows; ++r) {
        float acc = 0;
        for (int64_t b = 0; b < nb; ++b) {
          const uint8_t* wb = p.w.data() + r * p.row_bytes + b * sizeof(BlockQ8_0);
          int isum = 0;
          for (int j = 0; j < 32; ++j) isum += WeightInt(TensorType::kQ8_0, wb, j) * xb[b].q[j];
          acc += (WeightScale(wb) * xb[b].d) * static_cast<float>(isum);
        }
        differ += Bits(acc) != Bits(want[t * p.num_rows + r]);
        ++total;
      }
    }
  }
  ASSERT_GT(total, 100);
  EXPECT_GT(differ, total / 10) << "the sequential order agreed with the canonical one too often";
}

TEST(QuantInt, ActivationFormatPerType) {
  EXPECT_EQ(IntDotActivation(TensorType::kQ8_0), QuantActivation::kQ8x32);
  EXPECT_EQ(IntDotActivation(TensorType::kQ4_0), QuantActivation::kQ8x32);
  EXPECT_EQ(IntDotActivation(TensorType::kQ4_1), QuantActivation::kQ8x32);
  EXPECT_EQ(IntDotActivation(TensorType::kQ5_0), QuantActivation::kQ8x32);
  EXPECT_EQ(IntDotActivation(TensorType::kQ5_1), QuantActivation::kQ8x32);
  EXPECT_EQ(IntDotActivation(TensorType::kQ4_K), QuantActivation::kQ8x256);
  EXPECT_EQ(IntDotActivation(TensorType::kQ5_K), QuantActivation::kQ8x256);
  EXPECT_EQ(IntDotActivation(TensorType::kQ6_K), QuantActivation::kQ8x256);
  EXPECT_EQ(IntDotActivation(TensorType::kF16), QuantActivation::kNone);
  EXPECT_EQ(GetIntTile(TensorType::kF16), nullptr);
}

}  // namespace
}  // namespace prefixd::cpu
