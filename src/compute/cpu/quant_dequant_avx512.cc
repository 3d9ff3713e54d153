#include "compute/cpu/quant_dequant_avx512.h"

#include <immintrin.h>

#include <cstring>

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

// A block's F16 scale as a float by F16C (exact, so the same value as HalfToFloat, without
// its branches in the innermost loop of decode).
PREFIXD_AVX512 inline float HalfScale(uint16_t h) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
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

// The block types are decoded by chunk generators: ForEachChunk<Type>(row, n, sink) calls
// sink(k, w0, w1) with elements [k, k + 16) in w0 and [k + 16, k + 32) in w1, for every k
// that is a multiple of 32. One generator serves both the dequantiser (a sink that stores) and
// the fused dot (a sink that multiplies into the dot's two accumulators), so the two see the
// same values by construction. Sinks are structs, not lambdas: a lambda's body would not
// inherit the target attribute and could not be inlined here.

PREFIXD_AVX512 inline __m128i LowNibbles(__m128i v) { return _mm_and_si128(v, _mm_set1_epi8(0x0F)); }
PREFIXD_AVX512 inline __m128i HighNibbles(__m128i v) {
  return _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F));
}
// Each byte's bit `shift` (< 8) moved to bit 4. Shifting 16-bit lanes by at most 7 and masking
// each byte with 1 leaves each byte its own bit.
PREFIXD_AVX512 inline __m128i BitTo16(__m128i v, int shift) {
  return _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm_set1_epi8(1)), 4);
}

template <typename Sink>
PREFIXD_AVX512 inline void ForEachChunkQ8_0(const uint8_t* row, int64_t n, Sink& sink) {
  const BlockQ8_0* blocks = reinterpret_cast<const BlockQ8_0*>(row);
  for (int64_t i = 0; i < n / kQk; ++i) {
    // Rows lie end to end and decode reads each once: fetch ~2 KiB ahead, into the next rows.
    _mm_prefetch(reinterpret_cast<const char*>(blocks + i) + 2048, _MM_HINT_T0);
    const __m512 d = _mm512_set1_ps(HalfScale(blocks[i].d));
    const uint8_t* qs = reinterpret_cast<const uint8_t*>(blocks[i].qs);
    const __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(Load16(qs)));
    const __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(Load16(qs + 16)));
    sink(i * kQk, _mm512_mul_ps(q0, d), _mm512_mul_ps(q1, d));
  }
}

template <typename Sink>
PREFIXD_AVX512 inline void ForEachChunkQ4_0(const uint8_t* row, int64_t n, Sink& sink) {
  const BlockQ4_0* blocks = reinterpret_cast<const BlockQ4_0*>(row);
  for (int64_t i = 0; i < n / kQk; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(blocks + i) + 2048, _MM_HINT_T0);
    const __m512 d = _mm512_set1_ps(HalfScale(blocks[i].d));
    const __m128i v = Load16(blocks[i].qs);
    sink(i * kQk, _mm512_mul_ps(U8MinusToFloat(LowNibbles(v), 8), d),
         _mm512_mul_ps(U8MinusToFloat(HighNibbles(v), 8), d));
  }
}

// Q4_1, Q5_0, Q5_1: float(level - kOffset) * d, then + m where the type has a min, as the
// portable dequantisers. The fifth bits of elements [0, 16) are qh's low 16 bits, of
// [16, 32) its high 16, each OR-ed in as 16 under a mask.
template <typename Block, int kOffset, bool kMin, bool kFive, typename Sink>
PREFIXD_AVX512 inline void ForEachChunkSmall(const uint8_t* row, int64_t n, Sink& sink) {
  const Block* blocks = reinterpret_cast<const Block*>(row);
  const __m512i offset = _mm512_set1_epi32(kOffset), sixteen = _mm512_set1_epi32(16);
  for (int64_t i = 0; i < n / kQk; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(blocks + i) + 2048, _MM_HINT_T0);
    const Block& b = blocks[i];
    const __m512 d = _mm512_set1_ps(HalfScale(b.d));
    const __m128i v = Load16(b.qs);
    __m512i q0 = _mm512_cvtepu8_epi32(LowNibbles(v)), q1 = _mm512_cvtepu8_epi32(HighNibbles(v));
    if constexpr (kFive) {
      uint32_t qh;
      std::memcpy(&qh, b.qh, 4);  // little-endian, as the file stores it
      q0 = _mm512_mask_or_epi32(q0, static_cast<__mmask16>(qh & 0xFFFF), q0, sixteen);
      q1 = _mm512_mask_or_epi32(q1, static_cast<__mmask16>(qh >> 16), q1, sixteen);
    }
    __m512 w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q0, offset)), d);
    __m512 w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q1, offset)), d);
    if constexpr (kMin) {
      const __m512 m = _mm512_set1_ps(HalfScale(b.m));
      w0 = _mm512_add_ps(w0, m);
      w1 = _mm512_add_ps(w1, m);
    }
    sink(i * kQk, w0, w1);
  }
}

template <typename Sink>
PREFIXD_AVX512 inline void ForEachChunkQ4_1(const uint8_t* row, int64_t n, Sink& sink) {
  ForEachChunkSmall<BlockQ4_1, 0, true, false>(row, n, sink);
}
template <typename Sink>
PREFIXD_AVX512 inline void ForEachChunkQ5_0(const uint8_t* row, int64_t n, Sink& sink) {
  ForEachChunkSmall<BlockQ5_0, 16, false, true>(row, n, sink);
}
template <typename Sink>
PREFIXD_AVX512 inline void ForEachChunkQ5_1(const uint8_t* row, int64_t n, Sink& sink) {
  ForEachChunkSmall<BlockQ5_1, 0, true, true>(row, n, sink);
}

// One Q4_K / Q5_K super-block starting at element `base`; `high_bits` is Q5_K's qh or null.
// Same operations as the portable DequantAffineK: level as float, times (d * sc), minus
// (dmin * m).
template <typename Sink>
PREFIXD_AVX512 inline void AffineKBlock(uint16_t d16, uint16_t dmin16, const uint8_t* scales,
                                        const uint8_t* qs, const uint8_t* high_bits, int64_t base,
                                        Sink& sink) {
  const float d = HalfScale(d16), dmin = HalfScale(dmin16);
  for (int g = 0; g < 4; ++g, qs += 32) {
    uint8_t sc, m;
    GetScaleMinK4(2 * g, scales, &sc, &m);
    const __m512 d1 = _mm512_set1_ps(d * sc), m1 = _mm512_set1_ps(dmin * m);
    GetScaleMinK4(2 * g + 1, scales, &sc, &m);
    const __m512 d2 = _mm512_set1_ps(d * sc), m2 = _mm512_set1_ps(dmin * m);
    const __m128i v0 = Load16(qs), v1 = Load16(qs + 16);
    __m128i lo0 = LowNibbles(v0), lo1 = LowNibbles(v1);
    __m128i hi0 = HighNibbles(v0), hi1 = HighNibbles(v1);
    if (high_bits != nullptr) {
      const __m128i h0 = Load16(high_bits), h1 = Load16(high_bits + 16);
      lo0 = _mm_or_si128(lo0, BitTo16(h0, 2 * g));
      lo1 = _mm_or_si128(lo1, BitTo16(h1, 2 * g));
      hi0 = _mm_or_si128(hi0, BitTo16(h0, 2 * g + 1));
      hi1 = _mm_or_si128(hi1, BitTo16(h1, 2 * g + 1));
    }
    auto affine = [](__m512 dv, __m128i q, __m512 mv) PREFIXD_AVX512 {
      return _mm512_sub_ps(_mm512_mul_ps(dv, U8ToFloat(q)), mv);
    };
    sink(base + 64 * g, affine(d1, lo0, m1), affine(d1, lo1, m1));
    sink(base + 64 * g + 32, affine(d2, hi0, m2), affine(d2, hi1, m2));
  }
}

template <typename Sink>
PREFIXD_AVX512 inline void ForEachChunkQ4_K(const uint8_t* row, int64_t n, Sink& sink) {
  const BlockQ4_K* blocks = reinterpret_cast<const BlockQ4_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    for (int line = 0; line < static_cast<int>(sizeof(blocks[i])); line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(blocks + i) + 2048 + line, _MM_HINT_T0);
    }
    AffineKBlock(blocks[i].d, blocks[i].dmin, blocks[i].scales, blocks[i].qs, nullptr, i * kQkK,
                 sink);
  }
}

template <typename Sink>
PREFIXD_AVX512 inline void ForEachChunkQ5_K(const uint8_t* row, int64_t n, Sink& sink) {
  const BlockQ5_K* blocks = reinterpret_cast<const BlockQ5_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    for (int line = 0; line < static_cast<int>(sizeof(blocks[i])); line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(blocks + i) + 2048 + line, _MM_HINT_T0);
    }
    AffineKBlock(blocks[i].d, blocks[i].dmin, blocks[i].scales, blocks[i].qs, blocks[i].qh,
                 i * kQkK, sink);
  }
}

template <typename Sink>
PREFIXD_AVX512 inline void ForEachChunkQ6_K(const uint8_t* row, int64_t n, Sink& sink) {
  const BlockQ6_K* blocks = reinterpret_cast<const BlockQ6_K*>(row);
  const __m128i low2 = _mm_set1_epi8(3);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    for (int line = 0; line < static_cast<int>(sizeof(blocks[i])); line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(blocks + i) + 2048 + line, _MM_HINT_T0);
    }
    const BlockQ6_K& b = blocks[i];
    const float d = HalfScale(b.d);
    for (int h = 0; h < 2; ++h) {
      __m128i q[2][4];  // [l / 16][quarter k]: the levels of elements 128h + 32k + l
      for (int c = 0; c < 2; ++c) {
        const uint8_t* ql = b.ql + 64 * h + 16 * c;
        const __m128i a = Load16(ql), bq = Load16(ql + 32);
        const __m128i qh = Load16(b.qh + 32 * h + 16 * c);
        auto top = [&](int shift) PREFIXD_AVX512 {
          return _mm_slli_epi16(_mm_and_si128(_mm_srl_epi16(qh, _mm_cvtsi32_si128(shift)), low2), 4);
        };
        q[c][0] = _mm_or_si128(LowNibbles(a), top(0));
        q[c][1] = _mm_or_si128(LowNibbles(bq), top(2));
        q[c][2] = _mm_or_si128(HighNibbles(a), top(4));
        q[c][3] = _mm_or_si128(HighNibbles(bq), top(6));
      }
      for (int k = 0; k < 4; ++k) {
        const __m512 s0 = _mm512_set1_ps(d * b.scales[8 * h + 2 * k]);
        const __m512 s1 = _mm512_set1_ps(d * b.scales[8 * h + 2 * k + 1]);
        sink(i * kQkK + 128 * h + 32 * k, _mm512_mul_ps(s0, U8MinusToFloat(q[0][k], 32)),
             _mm512_mul_ps(s1, U8MinusToFloat(q[1][k], 32)));
      }
    }
  }
}

struct StoreSink {
  float* out;
  PREFIXD_AVX512 inline void operator()(int64_t k, __m512 w0, __m512 w1) {
    _mm512_storeu_ps(out + k, w0);
    _mm512_storeu_ps(out + k + 16, w1);
  }
};

// The two 16-lane accumulators of DotF32Avx512 (dot.cc): lanes [0,16) and [16,32).
struct DotSink {
  const float* x;
  __m512 a0, a1;
  PREFIXD_AVX512 inline void operator()(int64_t k, __m512 w0, __m512 w1) {
    a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + k), a0);
    a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + k + 16), a1);
  }
};

// dot.h's fold: [0,16)+[16,32), [0,8)+[8,16), [0,4)+[4,8), [0,2)+[2,4), 0+1.
PREFIXD_AVX512 inline float Fold16(__m512 a, __m512 b) {
  const __m512 m = _mm512_add_ps(a, b);
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(m),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m), 1)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#define PREFIXD_QUANT_KERNELS(TYPE)                                                  \
  PREFIXD_AVX512 void Dequant##TYPE(const uint8_t* row, int64_t n, float* out) {     \
    StoreSink sink{out};                                                             \
    ForEachChunk##TYPE(row, n, sink);                                                \
  }                                                                                  \
  PREFIXD_AVX512 float Dot##TYPE(const uint8_t* row, const float* x, int64_t n) {    \
    DotSink sink{x, _mm512_setzero_ps(), _mm512_setzero_ps()};                       \
    ForEachChunk##TYPE(row, n, sink);                                                \
    return Fold16(sink.a0, sink.a1);                                                 \
  }
PREFIXD_QUANT_KERNELS(Q8_0)
PREFIXD_QUANT_KERNELS(Q4_0)
PREFIXD_QUANT_KERNELS(Q4_1)
PREFIXD_QUANT_KERNELS(Q5_0)
PREFIXD_QUANT_KERNELS(Q5_1)
PREFIXD_QUANT_KERNELS(Q4_K)
PREFIXD_QUANT_KERNELS(Q5_K)
PREFIXD_QUANT_KERNELS(Q6_K)
#undef PREFIXD_QUANT_KERNELS

}  // namespace

DequantRowFn Avx512DequantPath(TensorType type) {
  switch (type) {
    case TensorType::kBF16: return &DequantBf16;
    case TensorType::kQ8_0: return &DequantQ8_0;
    case TensorType::kQ4_0: return &DequantQ4_0;
    case TensorType::kQ4_1: return &DequantQ4_1;
    case TensorType::kQ5_0: return &DequantQ5_0;
    case TensorType::kQ5_1: return &DequantQ5_1;
    case TensorType::kQ4_K: return &DequantQ4_K;
    case TensorType::kQ5_K: return &DequantQ5_K;
    case TensorType::kQ6_K: return &DequantQ6_K;
    default: return nullptr;
  }
}

QuantDotFn Avx512QuantDot(TensorType type) {
  switch (type) {
    case TensorType::kQ8_0: return &DotQ8_0;
    case TensorType::kQ4_0: return &DotQ4_0;
    case TensorType::kQ4_1: return &DotQ4_1;
    case TensorType::kQ5_0: return &DotQ5_0;
    case TensorType::kQ5_1: return &DotQ5_1;
    case TensorType::kQ4_K: return &DotQ4_K;
    case TensorType::kQ5_K: return &DotQ5_K;
    case TensorType::kQ6_K: return &DotQ6_K;
    default: return nullptr;
  }
}

}  // namespace prefixd::cpu
