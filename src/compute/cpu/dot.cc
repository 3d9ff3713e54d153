#include "compute/cpu/dot.h"

#include <immintrin.h>

#include <cmath>

#include "base/cpu_features.h"
#include "base/fp16.h"

namespace prefixd::cpu {

namespace {

constexpr int kLanes = 32;

float FoldLanes(float* lanes) {
  for (int width = kLanes / 2; width >= 1; width /= 2) {
    for (int j = 0; j < width; ++j) lanes[j] = lanes[j] + lanes[j + width];
  }
  return lanes[0];
}

template <typename Load>
float DotGeneric(const Load& load_w, const float* x, int64_t n) {
  float lanes[kLanes] = {};
  const int64_t padded = (n + kLanes - 1) / kLanes * kLanes;
  for (int64_t k = 0; k < padded; k += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const int64_t i = k + j;
      const float wv = i < n ? load_w(i) : 0.0f;
      const float xv = i < n ? x[i] : 0.0f;
      lanes[j] = std::fma(wv, xv, lanes[j]);
    }
  }
  return FoldLanes(lanes);
}

// ---- AVX2 + FMA: four 8-lane accumulators = lanes [0,8) [8,16) [16,24) [24,32).

__attribute__((target("avx2,fma"))) inline float Fold8(__m256 v) {
  // [0,4)+[4,8), then [0,2)+[2,4), then 0+1.
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) inline __m256i TailMask(int64_t remaining) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(remaining)), idx);
}

__attribute__((target("avx2,fma"))) float DotF32Avx2(const float* w, const float* x, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    for (int g = 0; g < 4; ++g) {
      acc[g] = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8 * g), _mm256_loadu_ps(x + k + 8 * g),
                               acc[g]);
    }
  }
  if (k < n) {
    for (int g = 0; g < 4; ++g) {
      const __m256i mask = TailMask(n - k - 8 * g);
      acc[g] = _mm256_fmadd_ps(_mm256_maskload_ps(w + k + 8 * g, mask),
                               _mm256_maskload_ps(x + k + 8 * g, mask), acc[g]);
    }
  }
  const __m256 m = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
  return Fold8(m);
}

__attribute__((target("avx2,fma,f16c"))) float DotF16Avx2(const uint16_t* w, const float* x,
                                                          int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    for (int g = 0; g < 4; ++g) {
      const __m256 wv =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k + 8 * g)));
      acc[g] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + k + 8 * g), acc[g]);
    }
  }
  if (k < n) {
    alignas(32) uint16_t tail_w[kLanes] = {};
    alignas(32) float tail_x[kLanes] = {};
    for (int64_t i = k; i < n; ++i) {
      tail_w[i - k] = w[i];
      tail_x[i - k] = x[i];
    }
    for (int g = 0; g < 4; ++g) {
      const __m256 wv =
          _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(tail_w + 8 * g)));
      acc[g] = _mm256_fmadd_ps(wv, _mm256_load_ps(tail_x + 8 * g), acc[g]);
    }
  }
  // (acc0 + acc2) is lanes [0,8)+[16,24) and (acc1 + acc3) is [8,16)+[24,32): the first fold.
  const __m256 m = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
  return Fold8(m);
}

// ---- AVX-512: two 16-lane accumulators = lanes [0,16) [16,32).

__attribute__((target("avx512f,avx2,fma"))) inline float Fold16(__m512 a, __m512 b) {
  const __m512 m = _mm512_add_ps(a, b);  // [0,16)+[16,32)
  const __m256 n = _mm256_add_ps(_mm512_castps512_ps256(m), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
  return Fold8(n);
}

__attribute__((target("avx512f,avx2,fma"))) float DotF32Avx512(const float* w,
                                                                        const float* x,
                                                                        int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);
  }
  if (k < n) {
    const int64_t r = n - k;
    const __mmask16 m0 = static_cast<__mmask16>(r >= 16 ? 0xffff : (1u << r) - 1);
    const __mmask16 m1 = static_cast<__mmask16>(r <= 16 ? 0 : (1u << (r - 16)) - 1);
    a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, w + k), _mm512_maskz_loadu_ps(m0, x + k), a0);
    a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, w + k + 16),
                         _mm512_maskz_loadu_ps(m1, x + k + 16), a1);
  }
  return Fold16(a0, a1);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) float DotF16Avx512(
    const uint16_t* w, const float* x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) {
    const __m512 w0 =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k)));
    const __m512 w1 =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k + 16)));
    a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + k), a0);
    a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + k + 16), a1);
  }
  if (k < n) {
    const int64_t r = n - k;
    const __mmask16 m0 = static_cast<__mmask16>(r >= 16 ? 0xffff : (1u << r) - 1);
    const __mmask16 m1 = static_cast<__mmask16>(r <= 16 ? 0 : (1u << (r - 16)) - 1);
    const __m512 w0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m0, w + k));
    const __m512 w1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m1, w + k + 16));
    a0 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m0, x + k), a0);
    a1 = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m1, x + k + 16), a1);
  }
  return Fold16(a0, a1);
}

__attribute__((target("avx2,f16c"))) void ConvertF16ToF32F16c(const uint16_t* in, float* out,
                                                             int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  }
  for (; i < n; ++i) out[i] = HalfToFloat(in[i]);
}

__attribute__((target("avx2,f16c"))) void ConvertF32ToF16F16c(const float* in, uint16_t* out,
                                                             int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) out[i] = FloatToHalf(in[i]);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) inline __m512 half(
    const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) inline __m512 masked(
    __mmask16 m, const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

// Four rows against one vector: the same per-row reduction as DotF16Avx512 (two 16-lane
// accumulators, masked tail, Fold16), with the four rows' loads in flight together. Decode is
// a matrix-vector product bound by memory; independent streams keep more loads outstanding.
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void DotF16x4Avx512(
    const uint16_t* w0, const uint16_t* w1, const uint16_t* w2, const uint16_t* w3,
    const float* x, int64_t n, float* out) {
  __m512 a0l = _mm512_setzero_ps(), a0h = a0l, a1l = a0l, a1h = a0l;
  __m512 a2l = a0l, a2h = a0l, a3l = a0l, a3h = a0l;
  int64_t k = 0;
  // Decode streams every weight once from memory: fetch the next four rows' lines (the rows
  // of a matrix lie end to end, so they start 4 * n halves on) one group ahead, which hides
  // memory latency that the hardware prefetcher leaves exposed at short row lengths.
  const int64_t ahead = 4 * n;
  for (; k + kLanes <= n; k += kLanes) {
    _mm_prefetch(reinterpret_cast<const char*>(w0 + ahead + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w1 + ahead + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w2 + ahead + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w3 + ahead + k), _MM_HINT_T0);
    const __m512 xl = _mm512_loadu_ps(x + k), xh = _mm512_loadu_ps(x + k + 16);
    a0l = _mm512_fmadd_ps(half(w0 + k), xl, a0l);
    a0h = _mm512_fmadd_ps(half(w0 + k + 16), xh, a0h);
    a1l = _mm512_fmadd_ps(half(w1 + k), xl, a1l);
    a1h = _mm512_fmadd_ps(half(w1 + k + 16), xh, a1h);
    a2l = _mm512_fmadd_ps(half(w2 + k), xl, a2l);
    a2h = _mm512_fmadd_ps(half(w2 + k + 16), xh, a2h);
    a3l = _mm512_fmadd_ps(half(w3 + k), xl, a3l);
    a3h = _mm512_fmadd_ps(half(w3 + k + 16), xh, a3h);
  }
  if (k < n) {
    const int64_t r = n - k;
    const __mmask16 m0 = static_cast<__mmask16>(r >= 16 ? 0xffff : (1u << r) - 1);
    const __mmask16 m1 = static_cast<__mmask16>(r <= 16 ? 0 : (1u << (r - 16)) - 1);
    const __m512 xl = _mm512_maskz_loadu_ps(m0, x + k), xh = _mm512_maskz_loadu_ps(m1, x + k + 16);
    a0l = _mm512_fmadd_ps(masked(m0, w0 + k), xl, a0l);
    a0h = _mm512_fmadd_ps(masked(m1, w0 + k + 16), xh, a0h);
    a1l = _mm512_fmadd_ps(masked(m0, w1 + k), xl, a1l);
    a1h = _mm512_fmadd_ps(masked(m1, w1 + k + 16), xh, a1h);
    a2l = _mm512_fmadd_ps(masked(m0, w2 + k), xl, a2l);
    a2h = _mm512_fmadd_ps(masked(m1, w2 + k + 16), xh, a2h);
    a3l = _mm512_fmadd_ps(masked(m0, w3 + k), xl, a3l);
    a3h = _mm512_fmadd_ps(masked(m1, w3 + k + 16), xh, a3h);
  }
  out[0] = Fold16(a0l, a0h);
  out[1] = Fold16(a1l, a1h);
  out[2] = Fold16(a2l, a2h);
  out[3] = Fold16(a3l, a3h);
}

void DotF16x4Portable(const uint16_t* w0, const uint16_t* w1, const uint16_t* w2,
                      const uint16_t* w3, const float* x, int64_t n, float* out) {
  const DotF16Fn dot = GetDotF16();
  out[0] = dot(w0, x, n);
  out[1] = dot(w1, x, n);
  out[2] = dot(w2, x, n);
  out[3] = dot(w3, x, n);
}

}  // namespace

DotF16x4Fn GetDotF16x4() {
  static const DotF16x4Fn fn = [] {
    const CpuFeatures& f = GetCpuFeatures();
    if (f.avx512f && f.avx512bw && f.avx512vl && f.avx2 && f.fma) return &DotF16x4Avx512;
    return &DotF16x4Portable;
  }();
  return fn;
}

void ConvertF16ToF32(const uint16_t* in, float* out, int64_t n) {
  static const bool f16c = GetCpuFeatures().f16c;
  if (f16c) {
    ConvertF16ToF32F16c(in, out, n);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(in[i]);
  }
}

void ConvertF32ToF16(const float* in, uint16_t* out, int64_t n) {
  static const bool f16c = GetCpuFeatures().f16c;
  if (f16c) {
    ConvertF32ToF16F16c(in, out, n);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = FloatToHalf(in[i]);
  }
}

float DotF32Generic(const float* w, const float* x, int64_t n) {
  return DotGeneric([w](int64_t i) { return w[i]; }, x, n);
}

float DotF16Generic(const uint16_t* w, const float* x, int64_t n) {
  return DotGeneric([w](int64_t i) { return HalfToFloat(w[i]); }, x, n);
}

std::vector<std::pair<const char*, DotF32Fn>> RunnableDotF32Paths() {
  const CpuFeatures& f = GetCpuFeatures();
  std::vector<std::pair<const char*, DotF32Fn>> out = {{"generic", &DotF32Generic}};
  if (f.avx2 && f.fma) out.emplace_back("avx2", &DotF32Avx2);
  if (f.avx512f && f.avx2 && f.fma) out.emplace_back("avx512", &DotF32Avx512);
  return out;
}

std::vector<std::pair<const char*, DotF16Fn>> RunnableDotF16Paths() {
  const CpuFeatures& f = GetCpuFeatures();
  std::vector<std::pair<const char*, DotF16Fn>> out = {{"generic", &DotF16Generic}};
  if (f.avx2 && f.fma && f.f16c) out.emplace_back("avx2", &DotF16Avx2);
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx2 && f.fma) out.emplace_back("avx512", &DotF16Avx512);
  return out;
}

DotF32Fn GetDotF32() {
  static const DotF32Fn fn = [] {
    const CpuFeatures& f = GetCpuFeatures();
    if (f.avx512f && f.avx2 && f.fma) return &DotF32Avx512;
    if (f.avx2 && f.fma) return &DotF32Avx2;
    return &DotF32Generic;
  }();
  return fn;
}

DotF16Fn GetDotF16() {
  static const DotF16Fn fn = [] {
    const CpuFeatures& f = GetCpuFeatures();
    if (f.avx512f && f.avx512bw && f.avx512vl && f.avx2 && f.fma) return &DotF16Avx512;
    if (f.avx2 && f.fma && f.f16c) return &DotF16Avx2;
    return &DotF16Generic;
  }();
  return fn;
}

}  // namespace prefixd::cpu
