#include "compute/cpu/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "base/cpu_features.h"
#include "base/fp16.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/exp_poly.h"

namespace prefixd::cpu {

namespace {

// exp for the softmax (exp_poly.h): its arguments, score - running max, are never positive.
inline float ExpNonPositive(float x) { return ExpPoly(x); }
__attribute__((target("avx512f,fma"))) inline __m512 ExpNonPositiveAvx512(__m512 x) {
  return ExpPolyAvx512(x);
}
__attribute__((target("avx2,fma"))) inline __m256 ExpNonPositiveAvx2(__m256 x) {
  return ExpPolyAvx2(x);
}

// AVX2 has no mask registers: lane l of a tail mask is all ones when l < remaining.
__attribute__((target("avx2"))) inline __m256i TailMask8(int remaining) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(remaining), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// Eight floats at p, or the first `remaining` of them and zeros. Only tails are masked: masked
// stores are slow on AMD cores (Zen 3: a fifth of the value accumulation's time when used on
// every vector).
__attribute__((target("avx2"))) inline __m256 Load8(const float* p, int remaining) {
  return remaining >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, TailMask8(remaining));
}
__attribute__((target("avx2"))) inline void Store8(float* p, __m256 v, int remaining) {
  if (remaining >= 8) {
    _mm256_storeu_ps(p, v);
  } else {
    _mm256_maskstore_ps(p, TailMask8(remaining), v);
  }
}

// p[i] = exp(s[i] - max) in place for i < n.
void ExpTile(float* s, float max, int n) {
  for (int i = 0; i < n; ++i) s[i] = ExpNonPositive(s[i] - max);
}
__attribute__((target("avx512f,fma"))) void ExpTileAvx512(float* s, float max, int n) {
  const __m512 m = _mm512_set1_ps(max);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 k = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    const __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), m);
    _mm512_mask_storeu_ps(s + i, k, ExpNonPositiveAvx512(x));
  }
}
__attribute__((target("avx2,fma"))) void ExpTileAvx2(float* s, float max, int n) {
  const __m256 m = _mm256_set1_ps(max);
  for (int i = 0; i < n; i += 8) {
    Store8(s + i, ExpNonPositiveAvx2(_mm256_sub_ps(Load8(s + i, n - i), m)), n - i);
  }
}

// The max and the sum of a tile's (up to 32) scores, as one fixed tree on every path: lanes
// [0,16) against [16,32) (missing scores are -inf for the max, 0 for the sum), then halves
// 8, 4, 2, 1. Max(a, b) is `a > b ? a : b`, which is what vmaxps computes, NaN and signed zeros
// included.
inline float Max(float a, float b) { return a > b ? a : b; }

template <bool kSum>
float TileFold(const float* s, int n) {
  float lane[16];
  const float none = kSum ? 0.0f : -std::numeric_limits<float>::infinity();
  for (int l = 0; l < 16; ++l) {
    const float lo = l < n ? s[l] : none, hi = l + 16 < n ? s[l + 16] : none;
    lane[l] = kSum ? lo + hi : Max(lo, hi);
  }
  for (int width = 8; width >= 1; width /= 2) {
    for (int l = 0; l < width; ++l) lane[l] = kSum ? lane[l] + lane[l + width] : Max(lane[l], lane[l + width]);
  }
  return lane[0];
}

template <bool kSum>
__attribute__((target("avx512f"))) float TileFoldAvx512(const float* s, int n) {
  const __m512 none = _mm512_set1_ps(kSum ? 0.0f : -std::numeric_limits<float>::infinity());
  const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(n >= 32 ? 0xffff : n <= 16 ? 0 : (1u << (n - 16)) - 1);
  const __m512 lo = _mm512_mask_loadu_ps(none, m0, s), hi = _mm512_mask_loadu_ps(none, m1, s + 16);
  const __m512 v = kSum ? _mm512_add_ps(lo, hi) : _mm512_max_ps(lo, hi);
  const __m256 v8lo = _mm512_castps512_ps256(v);
  const __m256 v8hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  const __m256 w = kSum ? _mm256_add_ps(v8lo, v8hi) : _mm256_max_ps(v8lo, v8hi);
  const __m128 x4lo = _mm256_castps256_ps128(w), x4hi = _mm256_extractf128_ps(w, 1);
  __m128 x = kSum ? _mm_add_ps(x4lo, x4hi) : _mm_max_ps(x4lo, x4hi);
  x = kSum ? _mm_add_ps(x, _mm_movehl_ps(x, x)) : _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = kSum ? _mm_add_ss(x, _mm_movehdup_ps(x)) : _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

template <bool kSum>
__attribute__((target("avx2"), always_inline)) inline __m256 FoldLoad8(const float* s, int n,
                                                                       int offset) {
  if (n - offset >= 8) return _mm256_loadu_ps(s + offset);
  const __m256 none = _mm256_set1_ps(kSum ? 0.0f : -std::numeric_limits<float>::infinity());
  const __m256i k = TailMask8(n - offset);
  return _mm256_blendv_ps(none, _mm256_maskload_ps(s + offset, k), _mm256_castsi256_ps(k));
}
template <bool kSum>
__attribute__((target("avx2"), always_inline)) inline __m256 FoldOp8(__m256 a, __m256 b) {
  return kSum ? _mm256_add_ps(a, b) : _mm256_max_ps(a, b);
}

// The same tree with each 16-lane step as two 8-lane halves: lanes [0,8) and [8,16) of the
// first step are lo0 op hi0 and lo1 op hi1, and the step of width 8 folds those two.
template <bool kSum>
__attribute__((target("avx2"))) float TileFoldAvx2(const float* s, int n) {
  const __m256 lanes0to7 = FoldOp8<kSum>(FoldLoad8<kSum>(s, n, 0), FoldLoad8<kSum>(s, n, 16));
  const __m256 lanes8to15 = FoldOp8<kSum>(FoldLoad8<kSum>(s, n, 8), FoldLoad8<kSum>(s, n, 24));
  const __m256 w = FoldOp8<kSum>(lanes0to7, lanes8to15);
  const __m128 x4lo = _mm256_castps256_ps128(w), x4hi = _mm256_extractf128_ps(w, 1);
  __m128 x = kSum ? _mm_add_ps(x4lo, x4hi) : _mm_max_ps(x4lo, x4hi);
  x = kSum ? _mm_add_ps(x, _mm_movehl_ps(x, x)) : _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = kSum ? _mm_add_ss(x, _mm_movehdup_ps(x)) : _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

using TileFoldFn = float (*)(const float*, int);

// K and V rows are read where they lie in the pool (row i of a tile at rows[i]), as F16 or F32.
inline float ToFloat(float v) { return v; }
inline float ToFloat(uint16_t h) { return HalfToFloat(h); }

__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) inline __m512 LoadRow(const float* p,
                                                                             __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) inline __m512 LoadRow(const uint16_t* p,
                                                                             __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));  // exact: every half is a float
}

// Eight elements of a row from p, the lanes past `remaining` zero.
__attribute__((target("avx2,f16c"))) inline __m256 LoadRow8(const float* p, int remaining) {
  return Load8(p, remaining);
}
__attribute__((target("avx2,f16c"))) inline __m256 LoadRow8(const uint16_t* p, int remaining) {
  if (remaining >= 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  // No 16-bit masked load before AVX-512: the tail goes through a zeroed copy.
  uint16_t tail[8] = {};
  std::memcpy(tail, p, sizeof(uint16_t) * std::max(remaining, 0));
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(tail)));
}

// acc = acc * correction, then acc = fma(p[i], v_i, acc) for each of the tile's n value rows,
// element by element (one rounding per step, the same on every path).
template <typename T>
void Accumulate(float* acc, float correction, const float* p, const T* const* rows, int n, int hd) {
  for (int d = 0; d < hd; ++d) acc[d] = acc[d] * correction;
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < hd; ++d) acc[d] = std::fma(p[i], ToFloat(rows[i][d]), acc[d]);
  }
}

// The same, with the accumulator row in NC registers for the whole tile (NC = ceil(hd / 16)).
template <int NC, typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"))) void AccumulateAvx512(
    float* acc, float correction, const float* p, const T* const* rows, int n, int hd) {
  const int tail = hd - 16 * (NC - 1);
  const __mmask16 last = static_cast<__mmask16>(tail >= 16 ? 0xffff : (1u << tail) - 1);
  auto mask = [&](int c) { return c == NC - 1 ? last : static_cast<__mmask16>(0xffff); };
  __m512 a[NC];
  const __m512 cv = _mm512_set1_ps(correction);
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) a[c] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask(c), acc + 16 * c), cv);
  for (int i = 0; i < n; ++i) {
    const __m512 pv = _mm512_set1_ps(p[i]);
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      a[c] = _mm512_fmadd_ps(pv, LoadRow(rows[i] + 16 * c, mask(c)), a[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) _mm512_mask_storeu_ps(acc + 16 * c, mask(c), a[c]);
}

// The same in 8-lane registers. A row of up to 64 dims is NC <= 8 accumulators (enough
// independent FMA chains, and room left in the 16 ymm registers); longer rows take several
// passes over the tile, each element still seeing the tile's rows in order.
template <int NC, typename T>
__attribute__((target("avx2,f16c,fma"), always_inline)) inline void AccumulateColumnsAvx2(
    float* acc, __m256 cv, const float* p, const T* const* rows, int n, int d0, int remaining) {
  __m256 a[NC];
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) a[c] = _mm256_mul_ps(Load8(acc + d0 + 8 * c, remaining - 8 * c), cv);
  for (int i = 0; i < n; ++i) {
    const __m256 pv = _mm256_set1_ps(p[i]);
#pragma GCC unroll 8
    for (int c = 0; c < NC; ++c) {
      const int left = c == NC - 1 ? remaining - 8 * c : 8;
      a[c] = _mm256_fmadd_ps(pv, LoadRow8(rows[i] + d0 + 8 * c, left), a[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) Store8(acc + d0 + 8 * c, a[c], remaining - 8 * c);
}

template <typename T>
__attribute__((target("avx2,f16c,fma"))) void AccumulateAvx2(float* acc, float correction,
                                                             const float* p, const T* const* rows,
                                                             int n, int hd) {
  const __m256 cv = _mm256_set1_ps(correction);
  for (int d0 = 0; d0 < hd; d0 += 64) {
    const int remaining = hd - d0;
    switch (std::min(8, (remaining + 7) / 8)) {
      case 1: AccumulateColumnsAvx2<1>(acc, cv, p, rows, n, d0, remaining); break;
      case 2: AccumulateColumnsAvx2<2>(acc, cv, p, rows, n, d0, remaining); break;
      case 3: AccumulateColumnsAvx2<3>(acc, cv, p, rows, n, d0, remaining); break;
      case 4: AccumulateColumnsAvx2<4>(acc, cv, p, rows, n, d0, remaining); break;
      case 5: AccumulateColumnsAvx2<5>(acc, cv, p, rows, n, d0, remaining); break;
      case 6: AccumulateColumnsAvx2<6>(acc, cv, p, rows, n, d0, remaining); break;
      case 7: AccumulateColumnsAvx2<7>(acc, cv, p, rows, n, d0, remaining); break;
      default: AccumulateColumnsAvx2<8>(acc, cv, p, rows, n, d0, remaining); break;
    }
  }
}

// Attention scores: s = scale * dot(k, q), summed over head dims in order (one FMA chain per
// score, d = 0, 1, ...). The keys of a tile are transposed into `kt` (kt[d * 32 + i] = key i's
// dim d, zeros past the tile's keys), so 16 scores are one vector chain with the query's dims
// broadcast: no horizontal reduction at all. Written once portably, once for AVX-512.
constexpr int kTileStride = kAttentionTile;  // floats per transposed row

template <typename T>
void TransposeKeys(const T* const* rows, int n, int hd, float* kt) {
  for (int d = 0; d < hd; ++d) {
    for (int i = 0; i < kTileStride; ++i) kt[d * kTileStride + i] = i < n ? ToFloat(rows[i][d]) : 0.0f;
  }
}

// 16 x 16 transpose of r[0..16) in registers (row i, lane j) -> (row j, lane i).
__attribute__((target("avx512f"), always_inline)) inline void Transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // r[4b + k] now holds, in each 128-bit block c, rows 4c'.. of column 4(block)+k: finish with
  // two rounds of 128-bit block shuffles across groups of four registers.
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], _MM_SHUFFLE(2, 0, 2, 0));
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], _MM_SHUFFLE(3, 1, 3, 1));
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], _MM_SHUFFLE(2, 0, 2, 0));
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], _MM_SHUFFLE(3, 1, 3, 1));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], _MM_SHUFFLE(2, 0, 2, 0));
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], _MM_SHUFFLE(3, 1, 3, 1));
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], _MM_SHUFFLE(2, 0, 2, 0));
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// r[d] = dim d0 + d of keys i0 .. i0 + 15 (zeros past n keys or hd dims).
template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"), always_inline)) inline void
LoadTransposed16(const T* const* rows, int n, int i0, int d0, int hd, __m512* r) {
  const __mmask16 m = static_cast<__mmask16>(hd - d0 >= 16 ? 0xffff : (1u << (hd - d0)) - 1);
  for (int i = 0; i < 16; ++i) r[i] = i0 + i < n ? LoadRow(rows[i0 + i] + d0, m) : _mm512_setzero_ps();
  Transpose16(r);
}

template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void TransposeKeysAvx512(
    const T* const* rows, int n, int hd, float* kt) {
  for (int i0 = 0; i0 < kTileStride; i0 += 16) {
    for (int d0 = 0; d0 < hd; d0 += 16) {
      __m512 r[16];
      LoadTransposed16(rows, n, i0, d0, hd, r);
      for (int d = 0; d < 16 && d0 + d < hd; ++d) _mm512_storeu_ps(kt + (d0 + d) * kTileStride + i0, r[d]);
    }
  }
}

// 8 x 8 transpose of r[0..8) in registers (row i, lane j) -> (row j, lane i).
__attribute__((target("avx2"), always_inline)) inline void Transpose8(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  // u[4b + k] holds column k (rows 4b..4b+3) in its low 128 bits, column k + 4 in its high.
  for (int b = 0; b < 8; b += 4) {
    u[b] = _mm256_shuffle_ps(t[b], t[b + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[b + 1] = _mm256_shuffle_ps(t[b], t[b + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[b + 2] = _mm256_shuffle_ps(t[b + 1], t[b + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[b + 3] = _mm256_shuffle_ps(t[b + 1], t[b + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
    r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
  }
}

// r[d] = dim d0 + d of keys i0 .. i0 + 7 (zeros past n keys or hd dims).
template <typename T>
__attribute__((target("avx2,f16c"), always_inline)) inline void LoadTransposed8(
    const T* const* rows, int n, int i0, int d0, int hd, __m256* r) {
  for (int i = 0; i < 8; ++i) r[i] = i0 + i < n ? LoadRow8(rows[i0 + i] + d0, hd - d0) : _mm256_setzero_ps();
  Transpose8(r);
}

template <typename T>
__attribute__((target("avx2,f16c"))) void TransposeKeysAvx2(const T* const* rows, int n, int hd,
                                                           float* kt) {
  for (int i0 = 0; i0 < kTileStride; i0 += 8) {
    for (int d0 = 0; d0 < hd; d0 += 8) {
      __m256 r[8];
      LoadTransposed8(rows, n, i0, d0, hd, r);
      for (int d = 0; d < 8 && d0 + d < hd; ++d) _mm256_storeu_ps(kt + (d0 + d) * kTileStride + i0, r[d]);
    }
  }
}

template <typename T>
using TransposeFn = void (*)(const T* const*, int, int, float*);

// out[h][i] = scale * sum over d of kt[d][i] * q_h[d] for `heads` query vectors.
void ScoreTile(const float* kt, int n, int hd, const float* const* qs, int heads, float scale,
               float* const* outs) {
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < n; ++i) {
      float acc = 0.0f;
      for (int d = 0; d < hd; ++d) acc = std::fma(kt[d * kTileStride + i], qs[h][d], acc);
      outs[h][i] = acc * scale;
    }
  }
}

// NH query vectors x 32 keys: 2 NH independent chains, enough to hide the FMA latency.
template <int NH>
__attribute__((target("avx512f,fma"))) void ScoreHeadsAvx512(const float* kt, int n, int hd,
                                                             const float* const* qs, float scale,
                                                             float* const* outs) {
  __m512 a[NH][2];
#pragma GCC unroll 4
  for (int h = 0; h < NH; ++h) a[h][0] = a[h][1] = _mm512_setzero_ps();
  for (int d = 0; d < hd; ++d) {
    const __m512 k0 = _mm512_loadu_ps(kt + d * kTileStride);
    const __m512 k1 = _mm512_loadu_ps(kt + d * kTileStride + 16);
#pragma GCC unroll 4
    for (int h = 0; h < NH; ++h) {
      const __m512 b = _mm512_set1_ps(qs[h][d]);
      a[h][0] = _mm512_fmadd_ps(k0, b, a[h][0]);
      a[h][1] = _mm512_fmadd_ps(k1, b, a[h][1]);
    }
  }
  const __m512 sv = _mm512_set1_ps(scale);
  const __mmask16 m0 = static_cast<__mmask16>(n >= 16 ? 0xffff : (1u << n) - 1);
  const __mmask16 m1 = static_cast<__mmask16>(n >= 32 ? 0xffff : n <= 16 ? 0 : (1u << (n - 16)) - 1);
#pragma GCC unroll 4
  for (int h = 0; h < NH; ++h) {
    _mm512_mask_storeu_ps(outs[h], m0, _mm512_mul_ps(a[h][0], sv));
    _mm512_mask_storeu_ps(outs[h] + 16, m1, _mm512_mul_ps(a[h][1], sv));
  }
}

__attribute__((target("avx512f,fma"))) void ScoreTileAvx512(const float* kt, int n, int hd,
                                                            const float* const* qs, int heads,
                                                            float scale, float* const* outs) {
  int h = 0;
  for (; h + 4 <= heads; h += 4) ScoreHeadsAvx512<4>(kt, n, hd, qs + h, scale, outs + h);
  switch (heads - h) {
    case 3: ScoreHeadsAvx512<3>(kt, n, hd, qs + h, scale, outs + h); break;
    case 2: ScoreHeadsAvx512<2>(kt, n, hd, qs + h, scale, outs + h); break;
    case 1: ScoreHeadsAvx512<1>(kt, n, hd, qs + h, scale, outs + h); break;
    default: break;
  }
}

// NH query vectors x 32 keys in 4 NH accumulators; NH <= 2 keeps the tile's four key vectors
// of a dim, the accumulators and the broadcast query dim in the 16 ymm registers.
template <int NH>
__attribute__((target("avx2,fma"))) void ScoreHeadsAvx2(const float* kt, int n, int hd,
                                                        const float* const* qs, float scale,
                                                        float* const* outs) {
  __m256 a[NH][4];
#pragma GCC unroll 4
  for (int h = 0; h < NH; ++h) a[h][0] = a[h][1] = a[h][2] = a[h][3] = _mm256_setzero_ps();
  for (int d = 0; d < hd; ++d) {
    __m256 k[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      k[c] = _mm256_loadu_ps(kt + d * kTileStride + 8 * c);
      // Keep the keys in registers: folded into each FMA as memory operands, they would be
      // loaded NH times, and the loads, not the FMAs, would set the pace.
      asm("" : "+x"(k[c]));
    }
#pragma GCC unroll 4
    for (int h = 0; h < NH; ++h) {
      const __m256 b = _mm256_broadcast_ss(qs[h] + d);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) a[h][c] = _mm256_fmadd_ps(k[c], b, a[h][c]);
    }
  }
  const __m256 sv = _mm256_set1_ps(scale);
#pragma GCC unroll 4
  for (int h = 0; h < NH; ++h) {
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      if (8 * c < n) Store8(outs[h] + 8 * c, _mm256_mul_ps(a[h][c], sv), n - 8 * c);
    }
  }
}

__attribute__((target("avx2,fma"))) void ScoreTileAvx2(const float* kt, int n, int hd,
                                                       const float* const* qs, int heads,
                                                       float scale, float* const* outs) {
  int h = 0;
  for (; h + 2 <= heads; h += 2) ScoreHeadsAvx2<2>(kt, n, hd, qs + h, scale, outs + h);
  if (h < heads) ScoreHeadsAvx2<1>(kt, n, hd, qs + h, scale, outs + h);
}

using ScoreTileFn = void (*)(const float*, int, int, const float* const*, int, float, float* const*);

// Scores straight from a tile's K rows, for a block with few query heads (a decode step): each
// 16 x 16 (AVX-512) or 8 x 8 (AVX2) piece of the tile is transposed in registers and its dims
// go into the scores at once, instead of through `kt` in memory. Every score is still one FMA
// chain over d = 0, 1, ... with the same operands, so the bits are those of transpose + score.
template <int NH, typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"))) void ScoreRowsHeadsAvx512(
    const T* const* rows, int n, int hd, const float* const* qs, float scale,
    float* const* outs) {
  const __m512 sv = _mm512_set1_ps(scale);
  for (int i0 = 0; i0 < n; i0 += 16) {
    __m512 a[NH];
#pragma GCC unroll 4
    for (int h = 0; h < NH; ++h) a[h] = _mm512_setzero_ps();
    for (int d0 = 0; d0 < hd; d0 += 16) {
      __m512 r[16];
      LoadTransposed16(rows, n, i0, d0, hd, r);
      const int dims = std::min(16, hd - d0);
      for (int d = 0; d < dims; ++d) {
#pragma GCC unroll 4
        for (int h = 0; h < NH; ++h) a[h] = _mm512_fmadd_ps(r[d], _mm512_set1_ps(qs[h][d0 + d]), a[h]);
      }
    }
    const __mmask16 keep = static_cast<__mmask16>(n - i0 >= 16 ? 0xffff : (1u << (n - i0)) - 1);
#pragma GCC unroll 4
    for (int h = 0; h < NH; ++h) _mm512_mask_storeu_ps(outs[h] + i0, keep, _mm512_mul_ps(a[h], sv));
  }
}

template <int NH, typename T>
__attribute__((target("avx2,f16c,fma"))) void ScoreRowsHeadsAvx2(const T* const* rows, int n,
                                                                 int hd, const float* const* qs,
                                                                 float scale, float* const* outs) {
  const __m256 sv = _mm256_set1_ps(scale);
  for (int i0 = 0; i0 < n; i0 += 8) {
    __m256 a[NH];
#pragma GCC unroll 4
    for (int h = 0; h < NH; ++h) a[h] = _mm256_setzero_ps();
    for (int d0 = 0; d0 < hd; d0 += 8) {
      __m256 r[8];
      LoadTransposed8(rows, n, i0, d0, hd, r);
      const int dims = std::min(8, hd - d0);
      for (int d = 0; d < dims; ++d) {
#pragma GCC unroll 4
        for (int h = 0; h < NH; ++h) a[h] = _mm256_fmadd_ps(r[d], _mm256_set1_ps(qs[h][d0 + d]), a[h]);
      }
    }
#pragma GCC unroll 4
    for (int h = 0; h < NH; ++h) Store8(outs[h] + i0, _mm256_mul_ps(a[h], sv), n - i0);
  }
}

template <typename T>
using ScoreRowsFn = void (*)(const T* const*, int, int, const float* const*, int, float,
                             float* const*);

// The portable path: the tile through `kt`, as for a block (the same bits by definition).
template <typename T>
void ScoreRows(const T* const* rows, int n, int hd, const float* const* qs, int heads, float scale,
               float* const* outs) {
  thread_local std::vector<float> kt;
  kt.resize(int64_t{hd} * kTileStride);
  TransposeKeys(rows, n, hd, kt.data());
  ScoreTile(kt.data(), n, hd, qs, heads, scale, outs);
}

template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"))) void ScoreRowsAvx512(
    const T* const* rows, int n, int hd, const float* const* qs, int heads, float scale,
    float* const* outs) {
  int h = 0;
  for (; h + 3 <= heads; h += 3) ScoreRowsHeadsAvx512<3, T>(rows, n, hd, qs + h, scale, outs + h);
  if (heads - h == 2) ScoreRowsHeadsAvx512<2, T>(rows, n, hd, qs + h, scale, outs + h);
  if (heads - h == 1) ScoreRowsHeadsAvx512<1, T>(rows, n, hd, qs + h, scale, outs + h);
}

template <typename T>
__attribute__((target("avx2,f16c,fma"))) void ScoreRowsAvx2(const T* const* rows, int n, int hd,
                                                           const float* const* qs, int heads,
                                                           float scale, float* const* outs) {
  int h = 0;
  for (; h + 3 <= heads; h += 3) ScoreRowsHeadsAvx2<3, T>(rows, n, hd, qs + h, scale, outs + h);
  if (heads - h == 2) ScoreRowsHeadsAvx2<2, T>(rows, n, hd, qs + h, scale, outs + h);
  if (heads - h == 1) ScoreRowsHeadsAvx2<1, T>(rows, n, hd, qs + h, scale, outs + h);
}

template <typename T>
using AccumulateFn = void (*)(float*, float, const float*, const T* const*, int, int);

// The widest instruction set attention's vector paths can use here, chosen at run time.
enum class Isa { kPortable, kAvx2, kAvx512 };

bool HasAvx512Attention() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx512f && f.avx512bw && f.avx512vl && f.f16c && f.fma;
}
bool HasAvx2Attention() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx2 && f.fma && f.f16c;
}
Isa BestIsa() {
  return HasAvx512Attention() ? Isa::kAvx512 : HasAvx2Attention() ? Isa::kAvx2 : Isa::kPortable;
}

template <typename T>
TransposeFn<T> PickTranspose(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return &TransposeKeysAvx512<T>;
    case Isa::kAvx2: return &TransposeKeysAvx2<T>;
    default: return &TransposeKeys<T>;
  }
}
ScoreTileFn PickScoreTile(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return &ScoreTileAvx512;
    case Isa::kAvx2: return &ScoreTileAvx2;
    default: return &ScoreTile;
  }
}

template <typename T>
AccumulateFn<T> PickAccumulate(Isa isa, int hd) {
  if (isa == Isa::kAvx2) return &AccumulateAvx2<T>;
  if (isa != Isa::kAvx512) return &Accumulate<T>;
  switch ((hd + 15) / 16) {
    case 1: return &AccumulateAvx512<1, T>;
    case 2: return &AccumulateAvx512<2, T>;
    case 3: return &AccumulateAvx512<3, T>;
    case 4: return &AccumulateAvx512<4, T>;
    case 5: return &AccumulateAvx512<5, T>;
    case 6: return &AccumulateAvx512<6, T>;
    case 7: return &AccumulateAvx512<7, T>;
    case 8: return &AccumulateAvx512<8, T>;
    default: return HasAvx2Attention() ? &AccumulateAvx2<T> : &Accumulate<T>;
  }
}

using ExpTileFn = void (*)(float*, float, int);

}  // namespace

namespace {
// Tests hand over contiguous rows (floats or halves, n <= kAttentionTile); the kernels take a
// tile transposed from a pointer per row.
template <typename T, Isa kIsa>
void ScoreContiguous(const void* keys, int n, const float* q, int hd, float scale, float* out) {
  std::vector<const T*> rows(n);
  for (int i = 0; i < n; ++i) rows[i] = static_cast<const T*>(keys) + int64_t{i} * hd;
  std::vector<float> kt(int64_t{hd} * kTileStride);
  PickTranspose<T>(kIsa)(rows.data(), n, hd, kt.data());
  const float* qs[1] = {q};
  float* outs[1] = {out};
  PickScoreTile(kIsa)(kt.data(), n, hd, qs, 1, scale, outs);
}

template <Isa kIsa>
AttentionScoreFn ScorePath(bool f16) {
  return f16 ? &ScoreContiguous<uint16_t, kIsa> : &ScoreContiguous<float, kIsa>;
}
}  // namespace

std::vector<std::pair<const char*, AttentionScoreFn>> RunnableAttentionScorePaths(int head_dim,
                                                                                  bool f16) {
  (void)head_dim;  // every head size has a vector path
  std::vector<std::pair<const char*, AttentionScoreFn>> out = {
      {"generic", ScorePath<Isa::kPortable>(f16)}};
  if (HasAvx2Attention()) out.emplace_back("avx2", ScorePath<Isa::kAvx2>(f16));
  if (HasAvx512Attention()) out.emplace_back("avx512", ScorePath<Isa::kAvx512>(f16));
  return out;
}

namespace {
template <Isa kIsa>
void AccumulateContiguous(float* acc, float correction, const float* p, const float* values, int n,
                          int hd) {
  std::vector<const float*> rows(n);
  for (int i = 0; i < n; ++i) rows[i] = values + int64_t{i} * hd;
  PickAccumulate<float>(kIsa, hd)(acc, correction, p, rows.data(), n, hd);
}
}  // namespace

std::vector<std::pair<const char*, AttentionAccumulateFn>> RunnableAttentionAccumulatePaths(
    int head_dim) {
  std::vector<std::pair<const char*, AttentionAccumulateFn>> out = {
      {"generic", &AccumulateContiguous<Isa::kPortable>}};
  if (HasAvx2Attention()) out.emplace_back("avx2", &AccumulateContiguous<Isa::kAvx2>);
  if (HasAvx512Attention() && head_dim <= 128) {
    out.emplace_back("avx512", &AccumulateContiguous<Isa::kAvx512>);
  }
  return out;
}

std::vector<std::pair<const char*, AttentionTileFoldFn>> RunnableTileMaxPaths() {
  std::vector<std::pair<const char*, AttentionTileFoldFn>> out = {{"generic", &TileFold<false>}};
  if (HasAvx2Attention()) out.emplace_back("avx2", &TileFoldAvx2<false>);
  if (HasAvx512Attention()) out.emplace_back("avx512", &TileFoldAvx512<false>);
  return out;
}
std::vector<std::pair<const char*, AttentionTileFoldFn>> RunnableTileSumPaths() {
  std::vector<std::pair<const char*, AttentionTileFoldFn>> out = {{"generic", &TileFold<true>}};
  if (HasAvx2Attention()) out.emplace_back("avx2", &TileFoldAvx2<true>);
  if (HasAvx512Attention()) out.emplace_back("avx512", &TileFoldAvx512<true>);
  return out;
}

std::vector<std::pair<const char*, SoftmaxExpFn>> RunnableSoftmaxExpPaths() {
  std::vector<std::pair<const char*, SoftmaxExpFn>> out = {{"generic", &ExpTile}};
  if (HasAvx2Attention()) out.emplace_back("avx2", &ExpTileAvx2);
  if (GetCpuFeatures().avx512f) out.emplace_back("avx512", &ExpTileAvx512);
  return out;
}

namespace {

// V rows of a tile as contiguous floats (exact), read from L1 by every query of the block.
template <typename T>
void GatherValues(const T* const* rows, int n, int hd, float* out) {
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < hd; ++d) out[int64_t{i} * hd + d] = ToFloat(rows[i][d]);
  }
}
template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void GatherValuesAvx512(
    const T* const* rows, int n, int hd, float* out) {
  for (int i = 0; i < n; ++i) {
    float* o = out + int64_t{i} * hd;
    for (int d = 0; d < hd; d += 16) {
      const __mmask16 m = static_cast<__mmask16>(hd - d >= 16 ? 0xffff : (1u << (hd - d)) - 1);
      _mm512_mask_storeu_ps(o + d, m, LoadRow(rows[i] + d, m));
    }
  }
}
template <typename T>
__attribute__((target("avx2,f16c"))) void GatherValuesAvx2(const T* const* rows, int n, int hd,
                                                          float* out) {
  for (int i = 0; i < n; ++i) {
    float* o = out + int64_t{i} * hd;
    int d = 0;
    for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(o + d, LoadRow8(rows[i] + d, 8));
    if (d < hd) Store8(o + d, LoadRow8(rows[i] + d, hd - d), hd - d);
  }
}

template <typename T>
using GatherFn = void (*)(const T* const*, int, int, float*);

// Query heads in a block from which a tile's V rows are gathered as floats first.
constexpr int kGatherValuesMinHeads = 4;

// The tile kernels of one instruction set.
template <typename T>
struct TileKernels {
  ExpTileFn exp_tile;
  TransposeFn<T> transpose;
  GatherFn<T> gather;
  ScoreTileFn score;
  TileFoldFn tile_max, tile_sum;
  AccumulateFn<float> accumulate;         // over gathered float rows
  AccumulateFn<T> accumulate_in_place;  // over the pool's rows, converted as they are read
  ScoreRowsFn<T> score_rows;            // scores from the pool's rows, no `kt`
};

template <typename T>
TileKernels<T> PickTileKernels(Isa isa, int hd) {
  TileKernels<T> k = {&ExpTile, PickTranspose<T>(isa), &GatherValues<T>, PickScoreTile(isa),
                      &TileFold<false>, &TileFold<true>, PickAccumulate<float>(isa, hd),
                      PickAccumulate<T>(isa, hd), &ScoreRows<T>};
  if (isa == Isa::kAvx512) {
    k.score_rows = &ScoreRowsAvx512<T>;
    k.exp_tile = &ExpTileAvx512;
    k.gather = &GatherValuesAvx512<T>;
    k.tile_max = &TileFoldAvx512<false>;
    k.tile_sum = &TileFoldAvx512<true>;
  } else if (isa == Isa::kAvx2) {
    k.score_rows = &ScoreRowsAvx2<T>;
    k.exp_tile = &ExpTileAvx2;
    k.gather = &GatherValuesAvx2<T>;
    k.tile_max = &TileFoldAvx2<false>;
    k.tile_sum = &TileFoldAvx2<true>;
  }
  return k;
}

// The online softmax over tiles of kAttentionTile positions for a block of queries: tokens of
// one sequence at increasing positions, one KV head, every query head of its group. Each tile's
// K rows are gathered and transposed, its V rows gathered, once for the whole block; each query
// then runs exactly the operations it would run alone (the same tiles, kernels and order), so
// its result does not depend on the block it was computed in.
template <typename T>
void AttendBlock(Isa isa, const AttentionArgs* args, int count, AttentionScratch* scratch) {
  const AttentionArgs& a0 = args[0];
  const TileKernels<T> kernels = PickTileKernels<T>(isa, a0.head_dim);
  const ExpTileFn exp_tile = kernels.exp_tile;
  const TransposeFn<T> transpose = kernels.transpose;
  const GatherFn<T> gather = kernels.gather;
  const ScoreTileFn score = kernels.score;
  const TileFoldFn tile_max_fn = kernels.tile_max;
  const TileFoldFn tile_sum_fn = kernels.tile_sum;
  const KvLayout& layout = *a0.layout;
  const int hd = a0.head_dim, group = a0.group;
  const int heads = count * group;  // query vectors in the block, query-major
  // A tile's V rows are converted to floats once when enough query heads read them; a decode
  // step's one or two heads read them in place (halves converted on load, the same floats, so
  // the same bits): gathering would cost more than it saves.
  const bool gather_values = heads >= kGatherValuesMinHeads;
  // Likewise a single query's few heads score straight from the K rows (score_rows).
  const bool keys_in_place = count == 1 && !gather_values;
  const int64_t head_offset = int64_t{a0.kv_head} * hd * layout.ElementBytes();
  const int64_t block_bytes = layout.BlockBytes();
  scratch->acc.assign(int64_t{heads} * hd, 0.0f);
  scratch->scores.resize(int64_t{heads} * kAttentionTile);
  scratch->running_max.assign(heads, -std::numeric_limits<float>::infinity());
  scratch->sum.assign(heads, 0.0f);
  scratch->new_max.resize(heads);
  scratch->correction.resize(heads);
  scratch->keys.resize(int64_t{hd} * kTileStride);
  scratch->values.resize(int64_t{kAttentionTile} * hd);
  scratch->q_ptrs.resize(heads);
  scratch->score_ptrs.resize(heads);
  for (int h = 0; h < heads; ++h) {
    scratch->q_ptrs[h] = args[h / group].q + int64_t{h % group} * hd;
    scratch->score_ptrs[h] = scratch->scores.data() + int64_t{h} * kAttentionTile;
  }
  const T* krows[kAttentionTile];
  const T* vrows[kAttentionTile];
  const float* vfloats[kAttentionTile];
  for (int i = 0; i < kAttentionTile; ++i) vfloats[i] = scratch->values.data() + int64_t{i} * hd;
  // Position j lies in block j / block_size at slot j % block_size: walked, not divided.
  const int64_t k_offset = layout.RowOffset(a0.layer, 0, 0) + head_offset;
  const int64_t v_offset = layout.RowOffset(a0.layer, 1, 0) + head_offset;
  const int64_t row_bytes = layout.RowBytes();
  int64_t block_index = 0;
  int slot = 0;
  const int64_t last_pos = args[count - 1].pos;
  for (int64_t j0 = 0; j0 <= last_pos; j0 += kAttentionTile) {
    const int n_tile = static_cast<int>(std::min<int64_t>(kAttentionTile, last_pos + 1 - j0));
    for (int i = 0; i < n_tile; ++i) {
      const uint8_t* row = a0.kv_base + a0.blocks[block_index].value() * block_bytes + slot * row_bytes;
      krows[i] = reinterpret_cast<const T*>(row + k_offset);
      vrows[i] = reinterpret_cast<const T*>(row + v_offset);
      if (++slot == layout.block_size) {
        slot = 0;
        ++block_index;
      }
    }
    if (!keys_in_place) transpose(krows, n_tile, hd, scratch->keys.data());
    if (gather_values) gather(vrows, n_tile, hd, scratch->values.data());
    // Queries whose positions end before this tile are done; the rest are a suffix of the
    // block (positions increase), each scoring its own first n keys of the tile.
    int q0 = 0;
    while (args[q0].pos < j0) ++q0;
    auto keys_seen = [&](int q) {
      return static_cast<int>(std::min<int64_t>(kAttentionTile, args[q].pos + 1 - j0));
    };
    // Queries that see the whole tile (a suffix again) are scored in one call per run of equal
    // scales: every score is still its own chain, so the grouping changes no bit, and the
    // vector kernels get more heads to interleave.
    if (keys_in_place) {  // one query, which sees the whole tile up to its position
      kernels.score_rows(krows, n_tile, hd, scratch->q_ptrs.data(), heads, a0.scale,
                         scratch->score_ptrs.data());
    }
    for (int q = keys_in_place ? count : q0; q < count;) {
      const int n = keys_seen(q);
      int end = q + 1;
      while (n == kAttentionTile && end < count && args[end].scale == args[q].scale) ++end;
      score(scratch->keys.data(), n, hd, scratch->q_ptrs.data() + q * group, (end - q) * group,
            args[q].scale, scratch->score_ptrs.data() + q * group);
      q = end;
    }
    // Each head's correction exp(old max - new max), for all heads in one exp call.
    const int h0 = q0 * group;
    for (int q = q0; q < count; ++q) {
      for (int h = q * group; h < (q + 1) * group; ++h) {
        const float tile_max = tile_max_fn(scratch->score_ptrs[h], keys_seen(q));
        scratch->new_max[h] = Max(scratch->running_max[h], tile_max);
        // The first tile: nothing accumulated yet.
        scratch->correction[h] = j0 > 0 ? scratch->running_max[h] - scratch->new_max[h] : 0.0f;
      }
    }
    if (j0 > 0) exp_tile(scratch->correction.data() + h0, 0.0f, heads - h0);
    for (int q = q0; q < count; ++q) {
      const int n = keys_seen(q);
      for (int h = q * group; h < (q + 1) * group; ++h) {
        const float correction = scratch->correction[h];
        float* scores = scratch->score_ptrs[h];
        exp_tile(scores, scratch->new_max[h], n);
        scratch->sum[h] = scratch->sum[h] * correction + tile_sum_fn(scores, n);
        float* acc = scratch->acc.data() + int64_t{h} * hd;
        if (gather_values) {
          kernels.accumulate(acc, correction, scores, vfloats, n, hd);
        } else {
          kernels.accumulate_in_place(acc, correction, scores, vrows, n, hd);
        }
        scratch->running_max[h] = scratch->new_max[h];
      }
    }
  }
  for (int q = 0; q < count; ++q) {
    for (int g = 0; g < group; ++g) {
      const int h = q * group + g;
      const float inv = 1.0f / scratch->sum[h];
      const float* acc = scratch->acc.data() + int64_t{h} * hd;
      float* out = args[q].out + int64_t{g} * hd;
      for (int d = 0; d < hd; ++d) out[d] = acc[d] * inv;
    }
  }
}

}  // namespace

void Attend(const AttentionArgs& a, AttentionScratch* scratch) { AttendQueries(&a, 1, scratch); }

namespace {
void AttendQueriesWith(Isa isa, const AttentionArgs* args, int count, AttentionScratch* scratch) {
  if (count <= 0) return;
  if (args[0].layout->dtype == KvDtype::kF16) {
    AttendBlock<uint16_t>(isa, args, count, scratch);
  } else {
    AttendBlock<float>(isa, args, count, scratch);
  }
}

template <Isa kIsa>
void AttendQueriesOn(const AttentionArgs* args, int count, AttentionScratch* scratch) {
  AttendQueriesWith(kIsa, args, count, scratch);
}
}  // namespace

void AttendQueries(const AttentionArgs* args, int count, AttentionScratch* scratch) {
  static const Isa isa = BestIsa();
  AttendQueriesWith(isa, args, count, scratch);
}

std::vector<std::pair<const char*, AttendQueriesFn>> RunnableAttendPaths() {
  std::vector<std::pair<const char*, AttendQueriesFn>> out = {
      {"generic", &AttendQueriesOn<Isa::kPortable>}};
  if (HasAvx2Attention()) out.emplace_back("avx2", &AttendQueriesOn<Isa::kAvx2>);
  if (HasAvx512Attention()) out.emplace_back("avx512", &AttendQueriesOn<Isa::kAvx512>);
  return out;
}

}  // namespace prefixd::cpu
