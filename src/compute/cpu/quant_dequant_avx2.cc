#include "compute/cpu/quant_dequant_avx2.h"

#include <immintrin.h>

#include "base/fp16.h"
#include "model/quant_blocks.h"

namespace prefixd::cpu {

namespace {

#define PREFIXD_AVX2 __attribute__((target("avx2")))

// Bf16ToFloat: the 16 bits become the float's high half.
PREFIXD_AVX2 void DequantBf16Avx2(const uint8_t* row, int64_t n, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i)));
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) out[i] = Bf16ToFloat(h[i]);
}

// float(q) * d for eight signed 32-bit integers: the portable `static_cast<float>(q) * d`.
PREFIXD_AVX2 inline void StoreScaled(float* out, __m256i q, __m256 d) {
  _mm256_storeu_ps(out, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
}

PREFIXD_AVX2 void DequantQ8_0Avx2(const uint8_t* row, int64_t n, float* out) {
  const BlockQ8_0* blocks = reinterpret_cast<const BlockQ8_0*>(row);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    // The scale through the scalar conversion, exactly as the portable path takes it.
    const __m256 d = _mm256_set1_ps(HalfToFloat(blocks[i].d));
    const int8_t* qs = blocks[i].qs;
    for (int j = 0; j < kQk; j += 8) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + j));
      StoreScaled(out + j, _mm256_cvtepi8_epi32(q8), d);
    }
  }
}

// Element j in the low nibble of qs[j], element j + 16 in the high; each minus 8.
PREFIXD_AVX2 void DequantQ4_0Avx2(const uint8_t* row, int64_t n, float* out) {
  const BlockQ4_0* blocks = reinterpret_cast<const BlockQ4_0*>(row);
  const __m256i eight = _mm256_set1_epi32(8), nibble = _mm256_set1_epi32(0xF);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const __m256 d = _mm256_set1_ps(HalfToFloat(blocks[i].d));
    const uint8_t* qs = blocks[i].qs;
    for (int j = 0; j < kQk / 2; j += 8) {
      const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + j)));
      StoreScaled(out + j, _mm256_sub_epi32(_mm256_and_si256(b, nibble), eight), d);
      StoreScaled(out + j + kQk / 2, _mm256_sub_epi32(_mm256_srli_epi32(b, 4), eight), d);
    }
  }
}

#undef PREFIXD_AVX2

}  // namespace

DequantRowFn Avx2DequantPath(TensorType type) {
  switch (type) {
    case TensorType::kBF16: return &DequantBf16Avx2;
    case TensorType::kQ8_0: return &DequantQ8_0Avx2;
    case TensorType::kQ4_0: return &DequantQ4_0Avx2;
    default: return nullptr;
  }
}

}  // namespace prefixd::cpu
