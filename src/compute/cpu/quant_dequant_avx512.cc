#include "compute/cpu/quant_dequant_avx512.h"

#include <immintrin.h>

#include "base/fp16.h"
#include "model/quant_blocks.h"

#define PREFIXD_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

namespace prefixd::cpu {
namespace {

// 16 unsigned bytes -> 16 floats.
PREFIXD_AVX512 inline __m512 U8ToFloat(__m128i v) {
  return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
}

// 16 unsigned bytes, each minus `offset`, -> 16 floats.
PREFIXD_AVX512 inline __m512 U8MinusToFloat(__m128i v, int offset) {
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(v), _mm512_set1_epi32(offset)));
}

PREFIXD_AVX512 inline __m128i Load16(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

PREFIXD_AVX512 void DequantBf16(const uint8_t* row, int64_t n, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i v =
        _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i)));
    _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
  }
  for (; i < n; ++i) out[i] = Bf16ToFloat(h[i]);
}

PREFIXD_AVX512 void DequantQ8_0(const uint8_t* row, int64_t n, float* out) {
  const BlockQ8_0* blocks = reinterpret_cast<const BlockQ8_0*>(row);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const __m512 d = _mm512_set1_ps(HalfToFloat(blocks[i].d));
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(blocks[i].qs);
    for (int h = 0; h < 2; ++h) {
      const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(Load16(qs + 16 * h)));
      _mm512_storeu_ps(out + 16 * h, _mm512_mul_ps(q, d));
    }
  }
}

PREFIXD_AVX512 void DequantQ4_0(const uint8_t* row, int64_t n, float* out) {
  const BlockQ4_0* blocks = reinterpret_cast<const BlockQ4_0*>(row);
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const __m512 d = _mm512_set1_ps(HalfToFloat(blocks[i].d));
    const __m128i v = Load16(blocks[i].qs);
    const __m128i lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
    _mm512_storeu_ps(out, _mm512_mul_ps(U8MinusToFloat(lo, 8), d));
    _mm512_storeu_ps(out + 16, _mm512_mul_ps(U8MinusToFloat(hi, 8), d));
  }
}

// Q4_K / Q5_K super-block; `high_bits` is Q5_K's qh or null. Same operations as the portable
// DequantAffineK: level as float, times (d * sc), minus (dmin * m).
PREFIXD_AVX512 void DequantAffineK(uint16_t d16, uint16_t dmin16, const uint8_t* scales,
                                   const uint8_t* qs, const uint8_t* high_bits, float* out) {
  const float d = HalfToFloat(d16), dmin = HalfToFloat(dmin16);
  const __m128i low4 = _mm_set1_epi8(0x0F), one = _mm_set1_epi8(1);
  for (int g = 0; g < 4; ++g, qs += 32, out += 64) {
    uint8_t sc, m;
    GetScaleMinK4(2 * g, scales, &sc, &m);
    const __m512 d1 = _mm512_set1_ps(d * sc), m1 = _mm512_set1_ps(dmin * m);
    GetScaleMinK4(2 * g + 1, scales, &sc, &m);
    const __m512 d2 = _mm512_set1_ps(d * sc), m2 = _mm512_set1_ps(dmin * m);
    for (int h = 0; h < 2; ++h) {
      const __m128i v = Load16(qs + 16 * h);
      __m128i lo = _mm_and_si128(v, low4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4);
      if (high_bits != nullptr) {
        // Shifting 16-bit lanes by <= 7 and masking each byte with 1 leaves each byte's own bit.
        const __m128i qh = Load16(high_bits + 16 * h);
        const __m128i blo = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), one);
        const __m128i bhi = _mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(2 * g + 1)), one);
        lo = _mm_or_si128(lo, _mm_slli_epi16(blo, 4));
        hi = _mm_or_si128(hi, _mm_slli_epi16(bhi, 4));
      }
      _mm512_storeu_ps(out + 16 * h, _mm512_sub_ps(_mm512_mul_ps(d1, U8ToFloat(lo)), m1));
      _mm512_storeu_ps(out + 32 + 16 * h, _mm512_sub_ps(_mm512_mul_ps(d2, U8ToFloat(hi)), m2));
    }
  }
}

PREFIXD_AVX512 void DequantQ4_K(const uint8_t* row, int64_t n, float* out) {
  const BlockQ4_K* blocks = reinterpret_cast<const BlockQ4_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    DequantAffineK(blocks[i].d, blocks[i].dmin, blocks[i].scales, blocks[i].qs, nullptr,
                   out + i * kQkK);
  }
}

PREFIXD_AVX512 void DequantQ5_K(const uint8_t* row, int64_t n, float* out) {
  const BlockQ5_K* blocks = reinterpret_cast<const BlockQ5_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    DequantAffineK(blocks[i].d, blocks[i].dmin, blocks[i].scales, blocks[i].qs, blocks[i].qh,
                   out + i * kQkK);
  }
}

PREFIXD_AVX512 void DequantQ6_K(const uint8_t* row, int64_t n, float* out) {
  const BlockQ6_K* blocks = reinterpret_cast<const BlockQ6_K*>(row);
  const __m128i low4 = _mm_set1_epi8(0x0F), low2 = _mm_set1_epi8(3);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    const BlockQ6_K& b = blocks[i];
    const float d = HalfToFloat(b.d);
    for (int h = 0; h < 2; ++h) {
      for (int c = 0; c < 2; ++c) {  // l in [16c, 16c + 16): one scale per quarter
        const uint8_t* ql = b.ql + 64 * h + 16 * c;
        const __m128i a = Load16(ql), bq = Load16(ql + 32);
        const __m128i qh = Load16(b.qh + 32 * h + 16 * c);
        auto top = [&](int shift) {
          return _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(shift)), low2), 4);
        };
        const __m128i q[4] = {
            _mm_or_si128(_mm_and_si128(a, low4), top(0)),
            _mm_or_si128(_mm_and_si128(bq, low4), top(2)),
            _mm_or_si128(_mm_and_si128(_mm_srli_epi16(a, 4), low4), top(4)),
            _mm_or_si128(_mm_and_si128(_mm_srli_epi16(bq, 4), low4), top(6)),
        };
        float* y = out + i * kQkK + 128 * h + 16 * c;
        for (int k = 0; k < 4; ++k) {
          const __m512 scale = _mm512_set1_ps(d * b.scales[8 * h + c + 2 * k]);
          _mm512_storeu_ps(y + 32 * k, _mm512_mul_ps(scale, U8MinusToFloat(q[k], 32)));
        }
      }
    }
  }
}

}  // namespace

DequantRowFn Avx512DequantPath(TensorType type) {
  switch (type) {
    case TensorType::kBF16: return &DequantBf16;
    case TensorType::kQ8_0: return &DequantQ8_0;
    case TensorType::kQ4_0: return &DequantQ4_0;
    case TensorType::kQ4_K: return &DequantQ4_K;
    case TensorType::kQ5_K: return &DequantQ5_K;
    case TensorType::kQ6_K: return &DequantQ6_K;
    default: return nullptr;
  }
}

}  // namespace prefixd::cpu
