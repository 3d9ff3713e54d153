// exp(x) as one fixed sequence of IEEE operations, written once for scalars (the portable
// paths) and once per vector width (AVX-512, AVX2), so that all give the same bits:
// n = round(x log2 e), r = x - n ln 2 (Cody-Waite, two parts), a degree-7 Taylor polynomial by
// FMA, times 2^n. Error <= 2 ulp in [-87, 88]; below -87 (and for NaN) the result is 0, above
// 88 it is +inf (the true values there are under FLT_MIN or within 2x of FLT_MAX; the kernels
// that use it, the softmax and SiLU, cannot tell). Used where libm's expf would make the vector
// and portable paths disagree.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace prefixd::cpu {

namespace exp_poly {
inline constexpr float kLowest = -87.0f, kHighest = 88.0f;
inline constexpr float kLog2e = 1.44269504088896341f;
inline constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
inline constexpr float kC7 = 1.98412698e-4f, kC6 = 1.38888889e-3f, kC5 = 8.33333333e-3f,
                       kC4 = 4.16666667e-2f, kC3 = 1.66666667e-1f, kC2 = 0.5f;
}  // namespace exp_poly

inline float ExpPoly(float x) {
  using namespace exp_poly;
  if (!(x >= kLowest)) return 0.0f;
  if (x > kHighest) return std::numeric_limits<float>::infinity();
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = std::fma(kC7, r, kC6);
  p = std::fma(p, r, kC5);
  p = std::fma(p, r, kC4);
  p = std::fma(p, r, kC3);
  p = std::fma(p, r, kC2);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

__attribute__((target("avx512f,fma"))) inline __m512 ExpPolyAvx512(__m512 x) {
  using namespace exp_poly;
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kLowest), _CMP_GE_OQ);
  const __mmask16 big = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kHighest), _CMP_GT_OQ);
  const __mmask16 mid = live & static_cast<__mmask16>(~big);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Hi), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kC7), r, _mm512_set1_ps(kC6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_maskz_mov_ps(mid, n)), _mm512_set1_epi32(127)), 23);
  const __m512 finite = _mm512_maskz_mul_ps(mid, p, _mm512_castsi512_ps(e));
  return _mm512_mask_mov_ps(finite, big, _mm512_set1_ps(std::numeric_limits<float>::infinity()));
}

// The same on 8 lanes, with compare results as all-ones lanes instead of mask registers:
// rounding by vroundps (ties to even, like nearbyint), and the lanes outside [kLowest, kHighest]
// zeroed before the exponent is built, so their garbage never reaches the result.
__attribute__((target("avx2,fma"))) inline __m256 ExpPolyAvx2(__m256 x) {
  using namespace exp_poly;
  const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(kLowest), _CMP_GE_OQ);
  const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(kHighest), _CMP_GT_OQ);
  const __m256 mid = _mm256_andnot_ps(big, live);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Hi), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kLn2Lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kC7), r, _mm256_set1_ps(kC6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_and_ps(mid, n)), _mm256_set1_epi32(127)), 23);
  const __m256 finite = _mm256_and_ps(mid, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
  return _mm256_blendv_ps(finite, _mm256_set1_ps(std::numeric_limits<float>::infinity()), big);
}

}  // namespace prefixd::cpu
