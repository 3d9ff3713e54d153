#include "compute/cpu/dot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
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

// The vector paths must give the same bits as the portable path for every length, including
// the ragged tails: that is what makes results independent of the machine's ISA path.
TEST(Dot, VectorPathsMatchPortablePathBitForBit) {
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int n = 0; n <= 300; ++n) {
    std::vector<float> w(n), x(n);
    std::vector<uint16_t> w16(n);
    for (int i = 0; i < n; ++i) {
      w[i] = dist(rng);
      x[i] = dist(rng);
      w16[i] = FloatToHalf(w[i]);
    }
    for (auto [name, dot] : RunnableDotF32Paths()) {
      ASSERT_EQ(Bits(dot(w.data(), x.data(), n)), Bits(DotF32Generic(w.data(), x.data(), n)))
          << name << " f32, n=" << n;
    }
    for (auto [name, dot] : RunnableDotF16Paths()) {
      ASSERT_EQ(Bits(dot(w16.data(), x.data(), n)), Bits(DotF16Generic(w16.data(), x.data(), n)))
          << name << " f16, n=" << n;
    }
  }
}

TEST(Dot, FourRowsAtOnceMatchSingleRows) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (int n : {1, 15, 16, 17, 31, 32, 33, 64, 100, 768, 2051}) {
    std::vector<uint16_t> w(4 * n);
    std::vector<float> x(n);
    for (auto& v : w) v = FloatToHalf(dist(rng));
    for (auto& v : x) v = dist(rng);
    float out[4];
    GetDotF16x4()(&w[0], &w[n], &w[2 * n], &w[3 * n], x.data(), n, out);
    for (int r = 0; r < 4; ++r) {
      ASSERT_EQ(Bits(out[r]), Bits(GetDotF16()(&w[r * n], x.data(), n))) << "n=" << n << " row " << r;
    }
  }
}

// KV is stored through this conversion: the F16C path must give FloatToHalf's bits for every
// kind of float (normal, subnormal in half, overflow, infinities, NaN payloads), with lengths
// that leave a scalar tail.
TEST(Convert, FloatToHalfPathsAgreeBitForBit) {
  std::mt19937 rng(8);
  std::vector<float> in;
  for (uint32_t bits : {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00001u,
                        0x7f800001u, 0xffc12345u, 0x477ff000u, 0x477fefffu, 0x38800000u,
                        0x387fffffu, 0x33000000u, 0x33000001u, 0x32ffffffu, 0x3f800000u}) {
    float f;
    std::memcpy(&f, &bits, 4);
    in.push_back(f);
  }
  for (int i = 0; i < 200000; ++i) {
    const uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    in.push_back(f);
    in.push_back(std::ldexp(static_cast<float>(bits % 4096) - 2048.0f, static_cast<int>(bits >> 28) - 30));
  }
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{8}, int64_t{13}, static_cast<int64_t>(in.size())}) {
    std::vector<uint16_t> out(n);
    ConvertF32ToF16(in.data(), out.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(out[i], FloatToHalf(in[i])) << "bits " << std::hex << Bits(in[i]);
    }
  }
}

TEST(Dot, CloseToDoublePrecisionSum) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int n = 4099;
  std::vector<float> w(n), x(n);
  double exact = 0;
  for (int i = 0; i < n; ++i) {
    w[i] = dist(rng);
    x[i] = dist(rng);
    exact += static_cast<double>(w[i]) * x[i];
  }
  EXPECT_NEAR(GetDotF32()(w.data(), x.data(), n), exact, 1e-3);
}

}  // namespace
}  // namespace prefixd::cpu
