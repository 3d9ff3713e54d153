#include "base/fp16.h"

#include <gtest/gtest.h>
#include <immintrin.h>

#include <cmath>
#include <random>

#include "base/cpu_features.h"

namespace prefixd {
namespace {

TEST(Fp16, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(FloatToHalf(f), h) << "half bits " << h;
  }
}

__attribute__((target("f16c"))) uint16_t HardwareFloatToHalf(float f) {
  return static_cast<uint16_t>(
      _mm_extract_epi16(_mm_cvtps_ph(_mm_set1_ps(f), _MM_FROUND_TO_NEAREST_INT), 0));
}

TEST(Fp16, MatchesF16cOnRandomFloats) {
  if (!GetCpuFeatures().f16c) GTEST_SKIP() << "this CPU has no F16C instructions to compare with";
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f), HardwareFloatToHalf(f)) << "float bits " << b;
  }
}

__attribute__((target("f16c"))) uint32_t HardwareHalfToFloatBits(uint16_t h) {
  const float f = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Kernels convert F16 (weights, KV, quantised blocks' scales) with vcvtph2ps while portable
// code uses HalfToFloat: every half, NaNs included, must give the same float bits.
TEST(Fp16, HalfToFloatMatchesF16cOnEveryHalf) {
  if (!GetCpuFeatures().f16c) GTEST_SKIP() << "this CPU has no F16C instructions to compare with";
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    uint32_t b;
    std::memcpy(&b, &f, 4);
    ASSERT_EQ(b, HardwareHalfToFloatBits(static_cast<uint16_t>(h))) << "half bits " << h;
  }
}

}  // namespace
}  // namespace prefixd
