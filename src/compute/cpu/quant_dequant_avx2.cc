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

// Eight bytes from p as 32-bit lanes.
PREFIXD_AVX2 inline __m256i Bytes8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// The levels of elements [j, j + 8) of a 32-element Q4_1 / Q5_0 / Q5_1 block: nibbles of
// qs[j % 16 ..] (low for j < 16, else high) with bit j + lane of `qh` as the fifth bit (qh = 0
// for Q4_1).
PREFIXD_AVX2 inline __m256i Levels8(const uint8_t* qs, uint32_t qh, int j) {
  const __m256i b = Bytes8(qs + j % 16);
  const __m256i low = j < 16 ? _mm256_and_si256(b, _mm256_set1_epi32(0xF)) : _mm256_srli_epi32(b, 4);
  const __m256i shift = _mm256_add_epi32(_mm256_set1_epi32(j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(qh)), shift),
                                       _mm256_set1_epi32(1));
  return _mm256_or_si256(low, _mm256_slli_epi32(bit, 4));
}

inline uint32_t HighWord(const uint8_t* qh) {
  return static_cast<uint32_t>(qh[0]) | (static_cast<uint32_t>(qh[1]) << 8) |
         (static_cast<uint32_t>(qh[2]) << 16) | (static_cast<uint32_t>(qh[3]) << 24);
}

// Q4_1, Q5_0, Q5_1: float(level - kOffset) * d, then + m where the type has a min (the
// portable product, then sum).
template <typename Block, int kOffset, bool kMin, bool kFive>
PREFIXD_AVX2 void DequantSmallAvx2(const uint8_t* row, int64_t n, float* out) {
  const Block* blocks = reinterpret_cast<const Block*>(row);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const Block& b = blocks[i];
    const __m256 d = _mm256_set1_ps(HalfToFloat(b.d));
    uint32_t qh = 0;
    __m256 m = _mm256_setzero_ps();
    if constexpr (kFive) qh = HighWord(b.qh);
    if constexpr (kMin) m = _mm256_set1_ps(HalfToFloat(b.m));
    for (int j = 0; j < kQk; j += 8) {
      const __m256i q = _mm256_sub_epi32(Levels8(b.qs, qh, j), _mm256_set1_epi32(kOffset));
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
      if constexpr (kMin) v = _mm256_add_ps(v, m);
      _mm256_storeu_ps(out + j, v);
    }
  }
}

// Q4_K and Q5_K (`high_bits` the Q5_K qh array, or null): the portable DequantAffineK, whose
// element is `d1 * float(q) - m1`, a product then a difference (two roundings; the target has
// no FMA, so the compiler cannot fuse them either).
PREFIXD_AVX2 void DequantAffineKAvx2(uint16_t d16, uint16_t dmin16, const uint8_t* scales,
                                     const uint8_t* qs, const uint8_t* high_bits, float* out) {
  const float d = HalfToFloat(d16), dmin = HalfToFloat(dmin16);
  const __m256i nibble = _mm256_set1_epi32(0xF), one = _mm256_set1_epi32(1);
  for (int g = 0; g < 4; ++g, qs += 32, out += 64) {
    uint8_t sc, m;
    GetScaleMinK4(2 * g, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    GetScaleMinK4(2 * g + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    const __m256 d1v = _mm256_set1_ps(d1), m1v = _mm256_set1_ps(m1);
    const __m256 d2v = _mm256_set1_ps(d2), m2v = _mm256_set1_ps(m2);
    for (int l = 0; l < 32; l += 8) {
      const __m256i b = Bytes8(qs + l);
      __m256i lo = _mm256_and_si256(b, nibble), hi = _mm256_srli_epi32(b, 4);
      if (high_bits != nullptr) {
        const __m256i h = Bytes8(high_bits + l);
        lo = _mm256_add_epi32(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * g), one), 4));
        hi = _mm256_add_epi32(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2 * g + 1), one), 4));
      }
      _mm256_storeu_ps(out + l, _mm256_sub_ps(_mm256_mul_ps(d1v, _mm256_cvtepi32_ps(lo)), m1v));
      _mm256_storeu_ps(out + l + 32, _mm256_sub_ps(_mm256_mul_ps(d2v, _mm256_cvtepi32_ps(hi)), m2v));
    }
  }
}

PREFIXD_AVX2 void DequantQ4_KAvx2(const uint8_t* row, int64_t n, float* out) {
  const BlockQ4_K* blocks = reinterpret_cast<const BlockQ4_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    DequantAffineKAvx2(blocks[i].d, blocks[i].dmin, blocks[i].scales, blocks[i].qs, nullptr, out + i * kQkK);
  }
}

PREFIXD_AVX2 void DequantQ5_KAvx2(const uint8_t* row, int64_t n, float* out) {
  const BlockQ5_K* blocks = reinterpret_cast<const BlockQ5_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    DequantAffineKAvx2(blocks[i].d, blocks[i].dmin, blocks[i].scales, blocks[i].qs, blocks[i].qh,
                       out + i * kQkK);
  }
}

// Bits shift+1..shift of each lane's qh byte, moved to bits 5..4 (Q6_K's two high bits).
PREFIXD_AVX2 inline __m256i HighPair(__m256i qh, int shift) {
  return _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(qh, shift), _mm256_set1_epi32(3)), 4);
}

// Q6_K: element = (d * scale) * float(q), with (d * scale) a scalar product per 16 elements,
// as the portable `d * sc[is] * float(q)` evaluates left to right.
PREFIXD_AVX2 void DequantQ6_KAvx2(const uint8_t* row, int64_t n, float* out) {
  const BlockQ6_K* blocks = reinterpret_cast<const BlockQ6_K*>(row);
  const __m256i nibble = _mm256_set1_epi32(0xF), bias = _mm256_set1_epi32(32);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    const BlockQ6_K& b = blocks[i];
    const float d = HalfToFloat(b.d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* y = out + i * kQkK + 128 * h;
      for (int l = 0; l < 32; l += 8) {
        const int is = l / 16;
        const __m256i a = Bytes8(ql + l), c = Bytes8(ql + l + 32), hb = Bytes8(qh + l);
        const __m256i q1 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(a, nibble), HighPair(hb, 0)), bias);
        const __m256i q2 = _mm256_sub_epi32(_mm256_or_si256(_mm256_and_si256(c, nibble), HighPair(hb, 2)), bias);
        const __m256i q3 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(a, 4), HighPair(hb, 4)), bias);
        const __m256i q4 = _mm256_sub_epi32(_mm256_or_si256(_mm256_srli_epi32(c, 4), HighPair(hb, 6)), bias);
        StoreScaled(y + l, q1, _mm256_set1_ps(d * sc[is + 0]));
        StoreScaled(y + l + 32, q2, _mm256_set1_ps(d * sc[is + 2]));
        StoreScaled(y + l + 64, q3, _mm256_set1_ps(d * sc[is + 4]));
        StoreScaled(y + l + 96, q4, _mm256_set1_ps(d * sc[is + 6]));
      }
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
    case TensorType::kQ4_1: return &DequantSmallAvx2<BlockQ4_1, 0, true, false>;
    case TensorType::kQ5_0: return &DequantSmallAvx2<BlockQ5_0, 16, false, true>;
    case TensorType::kQ5_1: return &DequantSmallAvx2<BlockQ5_1, 0, true, true>;
    case TensorType::kQ4_K: return &DequantQ4_KAvx2;
    case TensorType::kQ5_K: return &DequantQ5_KAvx2;
    case TensorType::kQ6_K: return &DequantQ6_KAvx2;
    default: return nullptr;
  }
}

}  // namespace prefixd::cpu
