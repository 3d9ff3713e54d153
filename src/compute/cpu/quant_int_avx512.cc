// AVX-512 paths of quant_int.h: the activation quantiser (F/BW/VL) and the Q8_0, Q4_0, Q4_1,
// Q5_0, Q5_1 tiles (AVX512-VNNI).
//
// vpdpbusd multiplies unsigned by signed bytes, so weights go in as unsigned u = w + c
// (c = 128 for Q8_0 by flipping the sign bit, c = 8 for Q4_0 and 16 for Q5_0 whose levels
// already are w + c, c = 0 for Q4_1 / Q5_1 whose levels are the weight integers), and a
// block's sum is sum(u * x) - c * sum(x), sum(x) from the activation block.
// Everything is exact in int32, so the block sums equal the AVX2 and portable ones, and the
// float steps are the same (see quant_int_avx2.cc for the accumulator layout).
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "compute/cpu/quant_int_internal.h"
#include "model/quant_blocks.h"

#define PREFIXD_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define PREFIXD_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

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
  static constexpr bool kMin = false;
  PREFIXD_VNNI static inline __m256i Unsigned(const Block& b) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
};

// The nibble types: levels as unsigned bytes, element j in byte j (Q5_0 / Q5_1 with bit j of
// their little-endian qh word as 16). Q4_0 and Q5_0 subtract kOffset * sum(x); Q4_1 and Q5_1
// (kMin) have offset 0 and add the block's min term (quant_int.h).
PREFIXD_VNNI inline __m256i Nibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i lo = _mm_and_si128(q, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F));
  return _mm256_set_m128i(hi, lo);
}

template <typename B, int kOff, bool kHasMin, bool kFive>
struct NibbleWeights {
  using Block = B;
  static constexpr int kOffset = kOff;
  static constexpr bool kMin = kHasMin;
  PREFIXD_VNNI static inline __m256i Unsigned(const Block& b) {
    if constexpr (kFive) {
      uint32_t qh;
      std::memcpy(&qh, b.qh, 4);
      return _mm256_or_si256(Nibbles(b.qs), _mm256_maskz_mov_epi8(qh, _mm256_set1_epi8(0x10)));
    }
    return Nibbles(b.qs);
  }
};
using Q4_0Weights = NibbleWeights<BlockQ4_0, 8, false, false>;
using Q4_1Weights = NibbleWeights<BlockQ4_1, 0, true, false>;
using Q5_0Weights = NibbleWeights<BlockQ5_0, 16, false, true>;
using Q5_1Weights = NibbleWeights<BlockQ5_1, 0, true, true>;

// The term of eight blocks from their raw sums sum(u * x): (dw * dx) * float(raw - sx), sx the
// offset times sum(x), plus (mw * dx) * sf for kMin types, sf = float(sum(x)): quant_int.h's
// float steps in their order.
template <typename W>
PREFIXD_VNNI inline __m256 Term(__m256i raw, __m256 dw, __m256 mw, __m256 dx, __m256i sx, __m256 sf) {
  const __m256 t = _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(_mm256_sub_epi32(raw, sx)));
  if constexpr (W::kMin) return _mm256_add_ps(t, _mm256_mul_ps(_mm256_mul_ps(mw, dx), sf));
  return t;
}

template <typename W>
PREFIXD_VNNI inline __m512 Term512(__m512i raw, __m512 dw, __m512 mw, __m512 dx, __m512i sx,
                                   __m512 sf) {
  const __m512 t = _mm512_mul_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(_mm512_sub_epi32(raw, sx)));
  if constexpr (W::kMin) return _mm512_add_ps(t, _mm512_mul_ps(_mm512_mul_ps(mw, dx), sf));
  return t;
}

PREFIXD_VNNI inline __m256i SumsOf8(const __m256i* v) {
  const __m256i s01 = _mm256_hadd_epi32(v[0], v[1]), s23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i s45 = _mm256_hadd_epi32(v[4], v[5]), s67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i s0123 = _mm256_hadd_epi32(s01, s23), s4567 = _mm256_hadd_epi32(s45, s67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                          _mm256_permute2x128_si256(s0123, s4567, 0x31));
}

// acc plus the terms of the k (<= 8) blocks at wb, xb: block j into lane j.
template <typename W>
PREFIXD_VNNI inline __m256 GroupTerm(__m256 acc, const typename W::Block* wb, const Q8x32Block* xb,
                                     int k) {
  __m256i v[8];
  alignas(16) uint16_t dw[8] = {0, 0, 0, 0, 0, 0, 0, 0}, mw[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  alignas(32) float dx[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  alignas(32) int32_t sx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    if (j < k) {
      v[j] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), W::Unsigned(wb[j]),
                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[j].q)));
      dw[j] = wb[j].d;
      dx[j] = xb[j].d;
      sx[j] = xb[j].sum * W::kOffset;
      if constexpr (W::kMin) {
        mw[j] = wb[j].m;
        sf[j] = static_cast<float>(xb[j].sum);
      }
    } else {
      v[j] = _mm256_setzero_si256();  // a missing block adds (0 * 0) * 0 = +0 to its lane
    }
  }
  const auto half = [](const uint16_t* h) PREFIXD_VNNI {
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
  };
  return _mm256_add_ps(acc, Term<W>(SumsOf8(v), half(dw), half(mw), _mm256_load_ps(dx),
                                    _mm256_load_si256(reinterpret_cast<const __m256i*>(sx)),
                                    _mm256_load_ps(sf)));
}

// 8 x 8 dwords transposed: c[k] dword i = r[i] dword k.
PREFIXD_VNNI inline void Transpose8x8(const __m256i* r, __m256i* c) {
  const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  c[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
  c[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
  c[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
  c[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
  c[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  c[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  c[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  c[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

// A group of eight weight blocks transposed (c[k] = dword k of every block, block i in lane
// i) and their scales (and mins, kMin types) as floats.
template <typename W>
PREFIXD_VNNI inline void TransposeGroup(const typename W::Block* wb, __m256i* c, __m256* dw,
                                        __m256* mw) {
  __m256i r[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) r[i] = W::Unsigned(wb[i]);
  Transpose8x8(r, c);
  *dw = _mm256_cvtph_ps(_mm_setr_epi16(wb[0].d, wb[1].d, wb[2].d, wb[3].d, wb[4].d, wb[5].d,
                                       wb[6].d, wb[7].d));
  *mw = _mm256_setzero_ps();
  if constexpr (W::kMin) {
    *mw = _mm256_cvtph_ps(_mm_setr_epi16(wb[0].m, wb[1].m, wb[2].m, wb[3].m, wb[4].m, wb[5].m,
                                         wb[6].m, wb[7].m));
  }
}

// The end of a row for kT tokens: the ragged last group (GroupTerm) into each token's eight
// accumulators, then the canonical fold.
template <typename W, int kT>
PREFIXD_VNNI inline void FinishTokens(__m256* acc, const typename W::Block* wb,
                                      const Q8x32Block* const* xb, int64_t nb, float* out) {
  const int64_t full = nb / 8 * 8;
#pragma GCC unroll 8
  for (int t = 0; t < kT; ++t) {
    if (full < nb)
      acc[t] = GroupTerm<W>(acc[t], wb + full, xb[t] + full, static_cast<int>(nb - full));
    alignas(32) float a[8];
    _mm256_store_ps(a, acc[t]);
    out[t] = FoldAcc8(a);
  }
}

// One weight row with kT tokens, each into the canonical eight accumulators, folded. A group
// of eight blocks is transposed (dword k of every block in one register, block i in lane i),
// the activations once per tile (xt) and the weights here (decode and small batches, where each
// group is read once or a few times; prefill pretransposes a row once: RowDotTokensPaired), so
// vpdpbusd sums each block in its own int32 lane with no horizontal folding; the ragged last
// group goes through GroupTerm per token, which computes the same lanes the same way.
template <typename W, int kT>
PREFIXD_VNNI inline void RowDotTokens(const typename W::Block* wb, const Q8x32Block* const* xb,
                                      const uint8_t* const* xt, const float* const* dxs,
                                      const int32_t* const* sxs, const float* const* sfs,
                                      int64_t nb, bool prefetch, float* out) {
  __m256 acc[kT];
#pragma GCC unroll 8
  for (int t = 0; t < kT; ++t) acc[t] = _mm256_setzero_ps();
  const int64_t full = nb / 8 * 8;
  for (int64_t g = 0; g < full; g += 8) {
    if (prefetch) {
      // Rows lie end to end and decode reads each once: fetch ~2 KiB ahead, into the next rows.
      const char* p = reinterpret_cast<const char*>(wb + g) + 2048;
      for (int l = 0; l < static_cast<int>(8 * sizeof(typename W::Block)); l += 64) {
        _mm_prefetch(p + l, _MM_HINT_T0);
      }
    }
    __m256i c[8];
    __m256 dw, mw;
    TransposeGroup<W>(wb + g, c, &dw, &mw);
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) {
      // Eight registers per group, 32 bytes each (unaligned loads: a vector of __m256i
      // would lose its alignment as a template argument).
      const uint8_t* xg = xt[t] + g * 32;
      __m256i x[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k)
        x[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 32 * k));
      // Four chains of two, so the accumulations overlap; integer adds, any order.
      __m256i a0 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c[0], x[0]);
      __m256i a1 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c[1], x[1]);
      __m256i a2 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c[2], x[2]);
      __m256i a3 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c[3], x[3]);
      a0 = _mm256_dpbusd_epi32(a0, c[4], x[4]);
      a1 = _mm256_dpbusd_epi32(a1, c[5], x[5]);
      a2 = _mm256_dpbusd_epi32(a2, c[6], x[6]);
      a3 = _mm256_dpbusd_epi32(a3, c[7], x[7]);
      const __m256i raw = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
      const __m256 sf = W::kMin ? _mm256_loadu_ps(sfs[t] + g) : _mm256_setzero_ps();
      acc[t] = _mm256_add_ps(
          acc[t], Term<W>(raw, dw, mw, _mm256_loadu_ps(dxs[t] + g),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sxs[t] + g)), sf));
    }
  }
  FinishTokens<W, kT>(acc, wb, xb, nb, out);
}

// Byte offset of register k of full group g (g a multiple of 8) in the paired layout of a
// pretransposed row or token: groups go in pairs (g, g + 8), register k of both side by side in
// 64 bytes, so one 512-bit vpdpbusd works on sixteen blocks; an odd last group stays alone.
inline int64_t PairedOffset(int64_t g, int k, int64_t full) {
  const int64_t i = g / 8, pairs = full / 16;
  return i < 2 * pairs ? (i / 2) * 512 + k * 64 + (i % 2) * 32 : i * 256 + k * 32;
}

// Prefill's RowDotTokens over pretransposed weights and tokens in the paired layout: two groups
// per 512-bit step. Each lane holds the same block's integer sum as in RowDotTokens, the float
// terms are the same products, and the two halves go into the accumulators one after the other
// (group g, then g + 8), so the bits are RowDotTokens' bits.
template <typename W, int kT>
PREFIXD_VNNI inline void RowDotTokensPaired(const typename W::Block* wb, const uint8_t* wt,
                                            const float* dwt, const float* mwt,
                                            const Q8x32Block* const* xb, const uint8_t* const* xt,
                                            const float* const* dxs, const int32_t* const* sxs,
                                            const float* const* sfs, int64_t nb, float* out) {
  __m256 acc[kT];
#pragma GCC unroll 8
  for (int t = 0; t < kT; ++t) acc[t] = _mm256_setzero_ps();
  const int64_t full = nb / 8 * 8, paired = full / 16 * 16;
  for (int64_t g = 0; g < paired; g += 16) {
    __m512i c[8];
    const uint8_t* wg = wt + g * 32;
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) c[k] = _mm512_loadu_si512(wg + 64 * k);
    const __m512 dw = _mm512_loadu_ps(dwt + g);
    const __m512 mw = W::kMin ? _mm512_loadu_ps(mwt + g) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) {
      const uint8_t* xg = xt[t] + g * 32;
      __m512i a0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c[0], _mm512_loadu_si512(xg));
      __m512i a1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c[1], _mm512_loadu_si512(xg + 64));
      __m512i a2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c[2], _mm512_loadu_si512(xg + 128));
      __m512i a3 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c[3], _mm512_loadu_si512(xg + 192));
      a0 = _mm512_dpbusd_epi32(a0, c[4], _mm512_loadu_si512(xg + 256));
      a1 = _mm512_dpbusd_epi32(a1, c[5], _mm512_loadu_si512(xg + 320));
      a2 = _mm512_dpbusd_epi32(a2, c[6], _mm512_loadu_si512(xg + 384));
      a3 = _mm512_dpbusd_epi32(a3, c[7], _mm512_loadu_si512(xg + 448));
      const __m512i raw = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
      const __m512 sf = W::kMin ? _mm512_loadu_ps(sfs[t] + g) : _mm512_setzero_ps();
      const __m512 term = Term512<W>(raw, dw, mw, _mm512_loadu_ps(dxs[t] + g),
                                     _mm512_loadu_si512(sxs[t] + g), sf);
      acc[t] = _mm256_add_ps(acc[t], _mm512_castps512_ps256(term));
      acc[t] = _mm256_add_ps(acc[t], _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(term), 1)));
    }
  }
  if (paired < full) {  // an odd last full group: 256 bits, as in RowDotTokens
    __m256i c[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
      c[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wt + (paired + k) * 32));
    const __m256 dw = _mm256_loadu_ps(dwt + paired);
    const __m256 mw = W::kMin ? _mm256_loadu_ps(mwt + paired) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) {
      const uint8_t* xg = xt[t] + paired * 32;
      __m256i a[4];
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        a[k] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c[k],
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 32 * k)));
        a[k] = _mm256_dpbusd_epi32(
            a[k], c[k + 4], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 32 * (k + 4))));
      }
      const __m256i raw = _mm256_add_epi32(_mm256_add_epi32(a[0], a[1]), _mm256_add_epi32(a[2], a[3]));
      const __m256 sf = W::kMin ? _mm256_loadu_ps(sfs[t] + paired) : _mm256_setzero_ps();
      acc[t] = _mm256_add_ps(
          acc[t], Term<W>(raw, dw, mw, _mm256_loadu_ps(dxs[t] + paired),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sxs[t] + paired)), sf));
    }
  }
  FinishTokens<W, kT>(acc, wb, xb, nb, out);
}

// What a tile prepares once for all its rows: each token's block scales, offset-scaled sums and
// (kMin types) sums as floats, loaded eight at a time in the inner loop, and its full groups
// transposed (one register per block of the group, `full` registers per token), in the
// paired layout when the rows are pretransposed too.
struct TileTokens {
  std::vector<float> dx, sf;
  std::vector<int32_t> sx;
  std::vector<uint8_t> xt;
};

template <typename W>
PREFIXD_VNNI void PrepareTokens(const uint8_t* xq, int64_t xq_stride, int num_tokens, int64_t nb,
                                bool paired, TileTokens& tt) {
  const int64_t full = nb / 8 * 8;
  tt.dx.resize(num_tokens * nb);
  tt.sx.resize(num_tokens * nb);
  tt.sf.resize(W::kMin ? num_tokens * nb : 0);
  tt.xt.resize(num_tokens * full * 32);
  for (int t = 0; t < num_tokens; ++t) {
    const Q8x32Block* xb = reinterpret_cast<const Q8x32Block*>(xq + t * xq_stride);
    for (int64_t b = 0; b < nb; ++b) {
      tt.dx[t * nb + b] = xb[b].d;
      tt.sx[t * nb + b] = xb[b].sum * W::kOffset;
      if constexpr (W::kMin) tt.sf[t * nb + b] = static_cast<float>(xb[b].sum);
    }
    for (int64_t g = 0; g < full; g += 8) {
      __m256i rows[8], cols[8];
      for (int i = 0; i < 8; ++i)
        rows[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[g + i].q));
      Transpose8x8(rows, cols);
      for (int k = 0; k < 8; ++k) {
        const int64_t off = paired ? PairedOffset(g, k, full) : (g + k) * 32;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&tt.xt[t * full * 32 + off]), cols[k]);
      }
    }
  }
}

template <typename W>
PREFIXD_VNNI void Tile(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                       int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  const int64_t nb = n / 32, full = nb / 8 * 8;
  constexpr int kT = 4;
  // With more than one group of tokens, a row's groups are transposed once into L1 (wt, dwt,
  // mwt) and every token group reads them there, rows and tokens in the paired layout.
  const bool pretranspose = num_tokens > kT && full > 0;
  thread_local TileTokens tt;
  PrepareTokens<W>(xq, xq_stride, num_tokens, nb, pretranspose, tt);
  thread_local std::vector<uint8_t> wt;  // `full` registers, 32 bytes each
  thread_local std::vector<float> dwt, mwt;
  if (pretranspose) {
    wt.resize(full * 32);
    dwt.resize(full);
    mwt.resize(full);
  }
  // Token t's pointers into the prepared arrays.
  struct Token {
    const Q8x32Block* xb;
    const uint8_t* xt;
    const float *dx, *sf;
    const int32_t* sx;
  };
  auto token = [&](int t) {
    return Token{reinterpret_cast<const Q8x32Block*>(xq + t * xq_stride),
                 tt.xt.data() + t * full * 32, tt.dx.data() + t * nb,
                 W::kMin ? tt.sf.data() + t * nb : nullptr, tt.sx.data() + t * nb};
  };
  for (int r = 0; r < num_rows; ++r) {
    const auto* wb = reinterpret_cast<const typename W::Block*>(w + r * row_bytes);
    if (pretranspose) {
      for (int64_t g = 0; g < full; g += 8) {
        __m256i c[8];
        __m256 dw, mw;
        TransposeGroup<W>(wb + g, c, &dw, &mw);
        for (int k = 0; k < 8; ++k) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(wt.data() + PairedOffset(g, k, full)), c[k]);
        }
        _mm256_storeu_ps(dwt.data() + g, dw);
        _mm256_storeu_ps(mwt.data() + g, mw);
      }
    }
    // kT tokens at a time, then one at a time (decode: one token, prefetching the next rows).
    auto run = [&]<int kN>(int t0, float* out) PREFIXD_VNNI {
      const Q8x32Block* xb[kN];
      const uint8_t* xt[kN];
      const float *dxs[kN], *sfs[kN];
      const int32_t* sxs[kN];
#pragma GCC unroll 8
      for (int i = 0; i < kN; ++i) {
        const Token tok = token(t0 + i);
        xb[i] = tok.xb, xt[i] = tok.xt, dxs[i] = tok.dx, sfs[i] = tok.sf, sxs[i] = tok.sx;
      }
      if (pretranspose) {
        RowDotTokensPaired<W, kN>(wb, wt.data(), dwt.data(), mwt.data(), xb, xt, dxs, sxs, sfs,
                                  nb, out);
      } else {
        RowDotTokens<W, kN>(wb, xb, xt, dxs, sxs, sfs, nb, /*prefetch=*/kN == 1 && t0 == 0, out);
      }
    };
    int t = 0;
    for (; t + kT <= num_tokens; t += kT) {
      float out[kT];
      run.template operator()<kT>(t, out);
#pragma GCC unroll 8
      for (int i = 0; i < kT; ++i) y[(t + i) * ldy + r] = out[i];
    }
    for (; t < num_tokens; ++t) run.template operator()<1>(t, &y[t * ldy + r]);
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
        blk.bsums[g] = static_cast<int16_t>(
            _mm512_reduce_add_epi32(Quantize16(xb + 16 * g, inv, blk.q + 16 * g)));
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

void IntTileQ4_1Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  Tile<Q4_1Weights>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

void IntTileQ5_0Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  Tile<Q5_0Weights>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

void IntTileQ5_1Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  Tile<Q5_1Weights>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

}  // namespace prefixd::cpu
