#include "compute/cpu/gemm.h"

#include <immintrin.h>

#include "base/cpu_features.h"
#include "compute/cpu/dot.h"

namespace prefixd::cpu {

namespace {

constexpr int kRows = 4;    // weight rows per micro-tile
constexpr int kTokens = 2;  // tokens per micro-tile

__attribute__((target("avx512f,avx2,fma"))) inline float Fold(__m512 a, __m512 b) {
  // Same fold as dot.cc: [0,16)+[16,32), then [0,8)+[8,16), [0,4)+[4,8), [0,2)+[2,4), 0+1.
  const __m512 m = _mm512_add_ps(a, b);
  const __m256 n = _mm256_add_ps(_mm512_castps512_ps256(m),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(n), _mm256_extractf128_ps(n, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One k-step of the tile for weight row R: both halves of 32 lanes, both tokens.
#define PREFIXD_TILE_ROW(R, LOAD_W)                         \
  {                                                         \
    const __m512 w0 = LOAD_W(m0, w + R * cols + k);         \
    const __m512 w1 = LOAD_W(m1, w + R * cols + k + 16);    \
    a##R##0l = _mm512_fmadd_ps(w0, x0l, a##R##0l);          \
    a##R##0h = _mm512_fmadd_ps(w1, x0h, a##R##0h);          \
    a##R##1l = _mm512_fmadd_ps(w0, x1l, a##R##1l);          \
    a##R##1h = _mm512_fmadd_ps(w1, x1h, a##R##1h);          \
  }
#define PREFIXD_FULL_LOAD(mask, p) _mm512_loadu_ps(p)
#define PREFIXD_MASK_LOAD(mask, p) _mm512_maskz_loadu_ps(mask, p)

// A kRows x kTokens tile: two 16-lane accumulators per output (lanes [0,16) and [16,32)),
// exactly as DotF32Avx512 keeps them. Written out by hand so that all 16 accumulators stay in
// registers (arrays of vectors in loops end up in memory).
__attribute__((target("avx512f,avx2,fma"))) void MicroTile(const float* w, int64_t cols,
                                                           const float* x, float* y,
                                                           int64_t y_stride) {
  static_assert(kRows == 4 && kTokens == 2, "MicroTile is written out for 4 rows x 2 tokens");
  __m512 a00l = _mm512_setzero_ps(), a00h = a00l, a01l = a00l, a01h = a00l;
  __m512 a10l = a00l, a10h = a00l, a11l = a00l, a11h = a00l;
  __m512 a20l = a00l, a20h = a00l, a21l = a00l, a21h = a00l;
  __m512 a30l = a00l, a30h = a00l, a31l = a00l, a31h = a00l;
  const float* x0 = x;
  const float* x1 = x + cols;
  int64_t k = 0;
  const __mmask16 full = 0xffff;
  for (; k + 32 <= cols; k += 32) {
    const __mmask16 m0 = full, m1 = full;
    (void)m0;
    (void)m1;
    const __m512 x0l = _mm512_loadu_ps(x0 + k), x0h = _mm512_loadu_ps(x0 + k + 16);
    const __m512 x1l = _mm512_loadu_ps(x1 + k), x1h = _mm512_loadu_ps(x1 + k + 16);
    PREFIXD_TILE_ROW(0, PREFIXD_FULL_LOAD)
    PREFIXD_TILE_ROW(1, PREFIXD_FULL_LOAD)
    PREFIXD_TILE_ROW(2, PREFIXD_FULL_LOAD)
    PREFIXD_TILE_ROW(3, PREFIXD_FULL_LOAD)
  }
  if (k < cols) {
    const int64_t rem = cols - k;
    const __mmask16 m0 = static_cast<__mmask16>(rem >= 16 ? 0xffff : (1u << rem) - 1);
    const __mmask16 m1 = static_cast<__mmask16>(rem <= 16 ? 0 : (1u << (rem - 16)) - 1);
    const __m512 x0l = _mm512_maskz_loadu_ps(m0, x0 + k);
    const __m512 x0h = _mm512_maskz_loadu_ps(m1, x0 + k + 16);
    const __m512 x1l = _mm512_maskz_loadu_ps(m0, x1 + k);
    const __m512 x1h = _mm512_maskz_loadu_ps(m1, x1 + k + 16);
    PREFIXD_TILE_ROW(0, PREFIXD_MASK_LOAD)
    PREFIXD_TILE_ROW(1, PREFIXD_MASK_LOAD)
    PREFIXD_TILE_ROW(2, PREFIXD_MASK_LOAD)
    PREFIXD_TILE_ROW(3, PREFIXD_MASK_LOAD)
  }
  y[0] = Fold(a00l, a00h);
  y[1] = Fold(a10l, a10h);
  y[2] = Fold(a20l, a20h);
  y[3] = Fold(a30l, a30h);
  y[y_stride + 0] = Fold(a01l, a01h);
  y[y_stride + 1] = Fold(a11l, a11h);
  y[y_stride + 2] = Fold(a21l, a21h);
  y[y_stride + 3] = Fold(a31l, a31h);
}
#undef PREFIXD_TILE_ROW
#undef PREFIXD_FULL_LOAD
#undef PREFIXD_MASK_LOAD

}  // namespace

bool HasBlockedGemm() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx512f && f.avx2 && f.fma;
}

void GemmF32Blocked(const float* w, int64_t num_rows, int64_t cols, const float* x,
                    int64_t num_tokens, float* y, int64_t y_stride) {
  const DotF32Fn dot = GetDotF32();
  int64_t t = 0;
  for (; t + kTokens <= num_tokens; t += kTokens) {
    int64_t r = 0;
    for (; r + kRows <= num_rows; r += kRows) {
      MicroTile(w + r * cols, cols, x + t * cols, y + t * y_stride + r, y_stride);
    }
    for (; r < num_rows; ++r) {
      for (int64_t u = t; u < t + kTokens; ++u) y[u * y_stride + r] = dot(w + r * cols, x + u * cols, cols);
    }
  }
  for (; t < num_tokens; ++t) {
    for (int64_t r = 0; r < num_rows; ++r) y[t * y_stride + r] = dot(w + r * cols, x + t * cols, cols);
  }
}

}  // namespace prefixd::cpu
