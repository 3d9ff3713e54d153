// AVX-512 paths of quant_int.h: the activation quantiser (F/BW/VL) and the Q8_0 / Q4_0 tiles
// (AVX512-VNNI).
//
// vpdpbusd multiplies unsigned by signed bytes, so weights go in as unsigned u = w + c
// (c = 128 for Q8_0 by flipping the sign bit, c = 8 for Q4_0 whose nibbles already are
// w + 8), and a block's sum is sum(u * x) - c * sum(x), sum(x) from the activation block.
// Everything is exact in int32, so the block sums equal the AVX2 and portable ones, and the
// float steps are the same (see quant_int_avx2.cc for the accumulator layout).
#include <immintrin.h>

#include "compute/cpu/quant_int_internal.h"
#include "model/quant_blocks.h"

#define PREFIXD_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define PREFIXD_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace prefixd::cpu {
namespace {

// 16 floats times `inv`, clamped in float, rounded to nearest even, stored as 16 int8;
// returns the 16 int32 values.
PREFIXD_AVX512 inline __m512i Quantize16(const float* x, __m512 inv, int8_t* q) {
  __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x), inv);
  v = _mm512_max_ps(v, _mm512_set1_ps(-127.0f));
  v = _mm512_min_ps(v, _mm512_set1_ps(127.0f));
  const __m512i i = _mm512_cvtps_epi32(v);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(i));
  return i;
}

PREFIXD_AVX512 inline float BlockAmax(const float* x, int n) {
  __m512 m = _mm512_setzero_ps();
  for (int i = 0; i < n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  return _mm512_reduce_max_ps(m);
}

struct Q8_0Weights {
  using Block = BlockQ8_0;
  static constexpr int kOffset = 128;
  PREFIXD_VNNI static inline __m256i Unsigned(const Block& b) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};

struct Q4_0Weights {
  using Block = BlockQ4_0;
  static constexpr int kOffset = 8;
  PREFIXD_VNNI static inline __m256i Unsigned(const Block& b) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
    const __m128i lo = _mm_and_si128(q, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F));
    return _mm256_set_m128i(hi, lo);
  }
};

PREFIXD_VNNI inline __m256i SumsOf8(const __m256i* v) {
  const __m256i s01 = _mm256_hadd_epi32(v[0], v[1]), s23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i s45 = _mm256_hadd_epi32(v[4], v[5]), s67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i s0123 = _mm256_hadd_epi32(s01, s23), s4567 = _mm256_hadd_epi32(s45, s67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                          _mm256_permute2x128_si256(s0123, s4567, 0x31));
}

template <typename W>
PREFIXD_VNNI inline float RowDot(const typename W::Block* wb, const Q8x32Block* xb, int64_t nb,
                                 bool prefetch) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t g = 0; g < nb; g += 8) {
    const int k = nb - g < 8 ? static_cast<int>(nb - g) : 8;
    if (prefetch) {
      const char* p = reinterpret_cast<const char*>(wb + g) + 2048;
      for (int l = 0; l < static_cast<int>(8 * sizeof(typename W::Block)); l += 64) {
        _mm_prefetch(p + l, _MM_HINT_T0);
      }
    }
    __m256i v[8];
    alignas(16) uint16_t dw[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    alignas(32) float dx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    alignas(32) int32_t sx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < 8; ++j) {
      if (j < k) {
        v[j] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), W::Unsigned(wb[g + j]),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[g + j].q)));
        dw[j] = wb[g + j].d;
        dx[j] = xb[g + j].d;
        sx[j] = xb[g + j].sum;
      } else {
        v[j] = _mm256_setzero_si256();  // a missing block adds (0 * 0) * 0 = +0 to its lane
      }
    }
    const __m256i sums = _mm256_sub_epi32(
        SumsOf8(v), _mm256_mullo_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(sx)),
                                       _mm256_set1_epi32(W::kOffset)));
    const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dw))),
                                    _mm256_load_ps(dx));
    acc = _mm256_add_ps(acc, _mm256_mul_ps(dd, _mm256_cvtepi32_ps(sums)));
  }
  alignas(32) float a[8];
  _mm256_store_ps(a, acc);
  return FoldAcc8(a);
}

template <typename W>
PREFIXD_VNNI void Tile(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                       int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  const int64_t nb = n / 32;
  for (int r = 0; r < num_rows; ++r) {
    const auto* wb = reinterpret_cast<const typename W::Block*>(w + r * row_bytes);
    for (int t = 0; t < num_tokens; ++t) {
      y[t * ldy + r] = RowDot<W>(wb, reinterpret_cast<const Q8x32Block*>(xq + t * xq_stride), nb,
                                 /*prefetch=*/t == 0);
    }
  }
}

}  // namespace

PREFIXD_AVX512 void QuantizeActivationAvx512(QuantActivation format, const float* x, int64_t n,
                                             void* out) {
  const int size = format == QuantActivation::kQ8x32 ? 32 : 256;
  for (int64_t b = 0; b < n / size; ++b) {
    const float* xb = x + b * size;
    const float d = BlockAmax(xb, size) / 127.0f;
    const __m512 inv = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    if (format == QuantActivation::kQ8x32) {
      Q8x32Block& blk = static_cast<Q8x32Block*>(out)[b];
      const __m512i a = Quantize16(xb, inv, blk.q);
      const __m512i c = Quantize16(xb + 16, inv, blk.q + 16);
      blk.d = d;
      blk.sum = _mm512_reduce_add_epi32(_mm512_add_epi32(a, c));
    } else {
      Q8x256Block& blk = static_cast<Q8x256Block*>(out)[b];
      for (int g = 0; g < 16; ++g) {
        blk.bsums[g] = static_cast<int16_t>(_mm512_reduce_add_epi32(Quantize16(xb + 16 * g, inv, blk.q + 16 * g)));
      }
      blk.d = d;
    }
  }
}

void IntTileQ8_0Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  Tile<Q8_0Weights>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

void IntTileQ4_0Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  Tile<Q4_0Weights>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

}  // namespace prefixd::cpu
