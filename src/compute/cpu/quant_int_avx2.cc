// AVX2 paths of quant_int.h: the activation quantiser and the Q8_0, Q4_0, Q4_1, Q5_0, Q5_1
// tiles.
//
// A block's integer sum: weights made signed bytes w, then |w| * (x with w's sign) by
// vpmaddubsw (pairs stay within int16: 2 * 128 * 127 < 32768) and vpmaddwd into eight int32
// partials. Eight blocks' partials fold into one vector of their eight sums (vphaddd tree,
// exact), so lane i of the float accumulator takes blocks b = i (mod 8) in order, exactly as
// the canonical acc[b % 8] does.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "compute/cpu/quant_int_internal.h"
#include "model/quant_blocks.h"

#define PREFIXD_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace prefixd::cpu {
namespace {

// --- Activations -------------------------------------------------------------------------

PREFIXD_AVX2 inline __m256 Abs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

PREFIXD_AVX2 inline float HorizontalMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Eight floats times `inv`, clamped in float and rounded to nearest even: eight int32.
PREFIXD_AVX2 inline __m256i Quantize8(const float* x, __m256 inv) {
  __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x), inv);
  v = _mm256_max_ps(v, _mm256_set1_ps(-127.0f));
  v = _mm256_min_ps(v, _mm256_set1_ps(127.0f));
  return _mm256_cvtps_epi32(v);
}

// 32 floats of one scale into 32 int8 (in order) at q; returns their int32 sums by 16s.
PREFIXD_AVX2 inline void Quantize32(const float* x, __m256 inv, int8_t* q, int32_t* sum16) {
  const __m256i a = Quantize8(x, inv), b = Quantize8(x + 8, inv);
  const __m256i c = Quantize8(x + 16, inv), d = Quantize8(x + 24, inv);
  // packs works within 128-bit lanes: [a0 b0 a1 b1] then [ab0 cd0 ab1 cd1]; permute fixes it.
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);
  const __m256i ordered =
      _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), ordered);
  const __m256i s0 = _mm256_add_epi32(a, b), s1 = _mm256_add_epi32(c, d);
  for (int h = 0; h < 2; ++h) {
    const __m256i s = h == 0 ? s0 : s1;
    __m128i m = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 0x4E));
    m = _mm_add_epi32(m, _mm_shuffle_epi32(m, 0xB1));
    sum16[h] = _mm_cvtsi128_si32(m);
  }
}

PREFIXD_AVX2 inline float BlockAmax(const float* x, int n) {
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, Abs(_mm256_loadu_ps(x + i)));
  return HorizontalMax(m);
}

// --- Tiles -------------------------------------------------------------------------------

// Eight int32 partials of the dot of 32 signed weight bytes with 32 activation bytes.
PREFIXD_AVX2 inline __m256i DotSigned(__m256i w, __m256i x) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

struct Q8_0Weights {
  using Block = BlockQ8_0;
  PREFIXD_AVX2 static inline __m256i Signed(const Block& b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
  }
};

// The eight blocks' sums [s0 .. s7] from their partial vectors (exact integer adds).
PREFIXD_AVX2 inline __m256i SumsOf8(const __m256i* v) {
  const __m256i s01 = _mm256_hadd_epi32(v[0], v[1]), s23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i s45 = _mm256_hadd_epi32(v[4], v[5]), s67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i s0123 = _mm256_hadd_epi32(s01, s23), s4567 = _mm256_hadd_epi32(s45, s67);
  // s0123 = [0 1 2 3 | 0 1 2 3] (low and high halves' partials), likewise s4567.
  return _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                          _mm256_permute2x128_si256(s0123, s4567, 0x31));
}

// acc plus the terms of the k (<= 8) blocks at wb, xb: block j into lane j.
template <typename W>
PREFIXD_AVX2 inline __m256 GroupTerm(__m256 acc, const typename W::Block* wb, const Q8x32Block* xb,
                                     int k) {
  __m256i v[8];
  alignas(16) uint16_t dw[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  alignas(32) float dx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    if (j < k) {
      v[j] = DotSigned(W::Signed(wb[j]),
                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[j].q)));
      dw[j] = wb[j].d;
      dx[j] = xb[j].d;
    } else {
      v[j] = _mm256_setzero_si256();  // a missing block adds (0 * 0) * 0 = +0 to its lane
    }
  }
  const __m256 isum = _mm256_cvtepi32_ps(SumsOf8(v));
  const __m256 dd = _mm256_mul_ps(
      _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dw))), _mm256_load_ps(dx));
  return _mm256_add_ps(acc, _mm256_mul_ps(dd, isum));
}

// One weight row with kT tokens, each into the canonical eight accumulators, folded: each weight
// block is decoded once for all of them (prefill). The ragged last group goes through GroupTerm per
// token, which computes the same lanes the same way.
template <typename W, int kT>
PREFIXD_AVX2 inline void RowDotTokens(const typename W::Block* wb, const Q8x32Block* const* xb,
                                      const float* const* dxs, int64_t nb, bool prefetch,
                                      float* out) {
  __m256 acc[kT];
#pragma GCC unroll 8
  for (int t = 0; t < kT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t full = nb / 8 * 8;
  for (int64_t g = 0; g < full; g += 8) {
    if (prefetch) {
      // Rows lie end to end and decode reads each once: fetch ~2 KiB ahead, into the next rows.
      const char* p = reinterpret_cast<const char*>(wb + g) + 2048;
      for (int l = 0; l < static_cast<int>(8 * sizeof(typename W::Block)); l += 64) {
        _mm_prefetch(p + l, _MM_HINT_T0);
      }
    }
    __m256i pair[kT][4];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j += 2) {
      const __m256i w0 = W::Signed(wb[g + j]), w1 = W::Signed(wb[g + j + 1]);
      const __m256i a0 = _mm256_sign_epi8(w0, w0), a1 = _mm256_sign_epi8(w1, w1);
#pragma GCC unroll 8
      for (int t = 0; t < kT; ++t) {
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[t][g + j].q));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[t][g + j + 1].q));
        const __m256i v0 =
            _mm256_madd_epi16(_mm256_maddubs_epi16(a0, _mm256_sign_epi8(x0, w0)), ones);
        const __m256i v1 =
            _mm256_madd_epi16(_mm256_maddubs_epi16(a1, _mm256_sign_epi8(x1, w1)), ones);
        pair[t][j / 2] = _mm256_hadd_epi32(v0, v1);
      }
    }
    const __m256 dw =
        _mm256_cvtph_ps(_mm_setr_epi16(wb[g].d, wb[g + 1].d, wb[g + 2].d, wb[g + 3].d, wb[g + 4].d,
                                       wb[g + 5].d, wb[g + 6].d, wb[g + 7].d));
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) {
      const __m256i s0123 = _mm256_hadd_epi32(pair[t][0], pair[t][1]);
      const __m256i s4567 = _mm256_hadd_epi32(pair[t][2], pair[t][3]);
      const __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                                            _mm256_permute2x128_si256(s0123, s4567, 0x31));
      const __m256 dx = _mm256_loadu_ps(dxs[t] + g);
      acc[t] =
          _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(sums)));
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < kT; ++t) {
    if (full < nb)
      acc[t] = GroupTerm<W>(acc[t], wb + full, xb[t] + full, static_cast<int>(nb - full));
    alignas(32) float a[8];
    _mm256_store_ps(a, acc[t]);
    out[t] = FoldAcc8(a);
  }
}

template <typename W>
PREFIXD_AVX2 void Tile(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                       int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  const int64_t nb = n / 32;
  constexpr int kT = 2;
  auto token = [&](int t) { return reinterpret_cast<const Q8x32Block*>(xq + t * xq_stride); };
  // The tokens' block scales gathered once for every row of the tile,
  // so the inner loop loads eight at a time instead of picking them out of the blocks.
  thread_local std::vector<float> dx_all;
  dx_all.resize(num_tokens * nb);
  for (int t = 0; t < num_tokens; ++t) {
    for (int64_t b = 0; b < nb; ++b) {
      dx_all[t * nb + b] = token(t)[b].d;
    }
  }
  for (int r = 0; r < num_rows; ++r) {
    const auto* wb = reinterpret_cast<const typename W::Block*>(w + r * row_bytes);
    int t = 0;
    for (; t + kT <= num_tokens; t += kT) {
      const Q8x32Block* xb[kT];
      const float* dxs[kT];
      float out[kT];
#pragma GCC unroll 8
      for (int i = 0; i < kT; ++i) {
        xb[i] = token(t + i);
        dxs[i] = dx_all.data() + (t + i) * nb;
      }
      RowDotTokens<W, kT>(wb, xb, dxs, nb, /*prefetch=*/false, out);
#pragma GCC unroll 8
      for (int i = 0; i < kT; ++i) y[(t + i) * ldy + r] = out[i];
    }
    for (; t < num_tokens; ++t) {
      const Q8x32Block* xb = token(t);
      const float* dxs = dx_all.data() + t * nb;
      RowDotTokens<W, 1>(wb, &xb, &dxs, nb, /*prefetch=*/t == 0, &y[t * ldy + r]);
    }
  }
}

// 8 x 8 dwords transposed: c[k] dword i = r[i] dword k.
PREFIXD_AVX2 inline void Transpose8x8(const __m256i* r, __m256i* c) {
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

// The nibble types' levels as unsigned bytes, element j in byte j: Q4_0 / Q4_1 their nibbles,
// Q5_0 / Q5_1 with the fifth bit. kOffset is what the weight integer subtracts from a level
// (Q4_0 8, Q5_0 16); kMin types (Q4_1, Q5_1) instead add the block's min term.
PREFIXD_AVX2 inline __m256i Nibbles(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i lo = _mm_and_si128(q, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F));
  return _mm256_set_m128i(hi, lo);
}

// 0x10 in byte j where bit j of the little-endian word at qh is set: byte j takes qh byte j / 8
// (vpshufb within each lane), then all bits but j % 8 are set and the byte compared to 0xFF.
PREFIXD_AVX2 inline __m256i FifthBits(const uint8_t* qh) {
  int32_t word;
  std::memcpy(&word, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(word),
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i set = _mm256_cmpeq_epi8(
      _mm256_or_si256(spread, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE)), _mm256_set1_epi64x(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

template <typename B, int kOff, bool kHasMin, bool kFive>
struct NibbleWeights {
  using Block = B;
  static constexpr int kOffset = kOff;
  static constexpr bool kMin = kHasMin;
  // Eight vpmaddubsw of 4-bit levels add up in int16 (8 * 2 * 15 * 127 < 32768); 5-bit ones
  // only four (4 * 2 * 31 * 127 < 32768).
  static constexpr bool kFiveBits = kFive;
  PREFIXD_AVX2 static inline __m256i Levels(const Block& b) {
    if constexpr (kFive) return _mm256_or_si256(Nibbles(b.qs), FifthBits(b.qh));
    return Nibbles(b.qs);
  }
};
using Q4_0Levels = NibbleWeights<BlockQ4_0, 8, false, false>;
using Q4_1Levels = NibbleWeights<BlockQ4_1, 0, true, false>;
using Q5_0Levels = NibbleWeights<BlockQ5_0, 16, false, true>;
using Q5_1Levels = NibbleWeights<BlockQ5_1, 0, true, true>;

// The eight blocks' f16 mins (kMin types) as floats.
template <typename W>
PREFIXD_AVX2 inline __m256 Mins8(const typename W::Block* wb) {
  return _mm256_cvtph_ps(_mm_setr_epi16(wb[0].m, wb[1].m, wb[2].m, wb[3].m, wb[4].m, wb[5].m,
                                        wb[6].m, wb[7].m));
}

// acc plus the terms of eight blocks given their raw sums sum(level * q): (dw * dx) * float of
// raw minus offset * sum(q) (sx holds that product), or for kMin types that term plus
// (mw * dx) * float(sum(q)) (sf). The portable IntTilePortable's float steps, eight lanes.
template <typename W>
PREFIXD_AVX2 inline __m256 AddTerms(__m256 acc, __m256i raw, __m256 dw, __m256 mw, __m256 dx,
                                    const int32_t* sx, const float* sf) {
  if constexpr (W::kMin) {
    const __m256 t = _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(raw));
    const __m256 u = _mm256_mul_ps(_mm256_mul_ps(mw, dx), _mm256_loadu_ps(sf));
    return _mm256_add_ps(acc, _mm256_add_ps(t, u));
  }
  const __m256i sums = _mm256_sub_epi32(raw, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sx)));
  return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(sums)));
}

// acc plus the terms of the k (< 8) blocks at wb (the ragged last group), token arrays at the
// same blocks: block j into lane j, the missing ones adding +0.
template <typename W>
PREFIXD_AVX2 inline __m256 RaggedTerm(__m256 acc, const typename W::Block* wb, const Q8x32Block* xb,
                                      const float* dxs, const int32_t* sxs, const float* sfs,
                                      int k) {
  __m256i v[8];
  alignas(16) uint16_t dw[8] = {0, 0, 0, 0, 0, 0, 0, 0}, mw[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  alignas(32) float dx[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  alignas(32) int32_t sx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    if (j < k) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[j].q));
      v[j] = _mm256_madd_epi16(_mm256_maddubs_epi16(W::Levels(wb[j]), x), _mm256_set1_epi16(1));
      dw[j] = wb[j].d;
      if constexpr (W::kMin) {
        mw[j] = wb[j].m;
        sf[j] = sfs[j];
      }
      dx[j] = dxs[j];
      sx[j] = sxs[j];
    } else {
      v[j] = _mm256_setzero_si256();
    }
  }
  const __m256 dwv = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(dw)));
  const __m256 mwv = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(mw)));
  return AddTerms<W>(acc, SumsOf8(v), dwv, mwv, _mm256_load_ps(dx), sx, sf);
}

// The nibble types without the sign trick: levels are unsigned, so vpmaddubsw takes them as
// they are and a block's sum is sum(level * x) - offset * sum(x) (or the min term). A group
// of eight blocks is transposed (dword k of every block in one register, block i in lane i;
// the activations once per tile), so the vpmaddubsw add up in int16 lanes and vpmaddwd gives
// all eight block sums: no horizontal folds. The ragged last group goes through RaggedTerm,
// which gives the same sums.
template <typename W, int kT>
PREFIXD_AVX2 inline void RowDotTokensNibbles(const typename W::Block* wb, const Q8x32Block* const* xb,
                                             const uint8_t* const* xt, const float* const* dxs,
                                             const int32_t* const* sxs, const float* const* sfs,
                                             int64_t nb, bool prefetch, float* out) {
  __m256 acc[kT];
#pragma GCC unroll 8
  for (int t = 0; t < kT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t full = nb / 8 * 8;
  for (int64_t g = 0; g < full; g += 8) {
    if (prefetch) {
      const char* p = reinterpret_cast<const char*>(wb + g) + 2048;
      for (int l = 0; l < static_cast<int>(8 * sizeof(typename W::Block)); l += 64) {
        _mm_prefetch(p + l, _MM_HINT_T0);
      }
    }
    __m256i r[8], c[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) r[i] = W::Levels(wb[g + i]);
    Transpose8x8(r, c);
    const __m256 dw =
        _mm256_cvtph_ps(_mm_setr_epi16(wb[g].d, wb[g + 1].d, wb[g + 2].d, wb[g + 3].d, wb[g + 4].d,
                                       wb[g + 5].d, wb[g + 6].d, wb[g + 7].d));
    __m256 mw = _mm256_setzero_ps();
    if constexpr (W::kMin) mw = Mins8<W>(wb + g);
#pragma GCC unroll 8
    for (int t = 0; t < kT; ++t) {
      const uint8_t* xg = xt[t] + g * 32;
#define chunk(k) _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 32 * (k)))
      __m256i p0 = _mm256_maddubs_epi16(c[0], chunk(0));
      __m256i p1 = _mm256_maddubs_epi16(c[1], chunk(1));
      p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(c[2], chunk(2)));
      p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(c[3], chunk(3)));
      p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(c[4], chunk(4)));
      p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(c[5], chunk(5)));
      p0 = _mm256_add_epi16(p0, _mm256_maddubs_epi16(c[6], chunk(6)));
      p1 = _mm256_add_epi16(p1, _mm256_maddubs_epi16(c[7], chunk(7)));
#undef chunk
      __m256i raw;
      if constexpr (W::kFiveBits) {
        raw = _mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones));
      } else {
        raw = _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones);
      }
      acc[t] = AddTerms<W>(acc[t], raw, dw, mw, _mm256_loadu_ps(dxs[t] + g), sxs[t] + g,
                           W::kMin ? sfs[t] + g : nullptr);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < kT; ++t) {
    if (full < nb) {
      acc[t] = RaggedTerm<W>(acc[t], wb + full, xb[t] + full, dxs[t] + full, sxs[t] + full,
                             W::kMin ? sfs[t] + full : nullptr, static_cast<int>(nb - full));
    }
    alignas(32) float a[8];
    _mm256_store_ps(a, acc[t]);
    out[t] = FoldAcc8(a);
  }
}

template <typename W>
PREFIXD_AVX2 void TileNibbles(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                              int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  const int64_t nb = n / 32, full = nb / 8 * 8;
  constexpr int kT = 2;
  auto token = [&](int t) { return reinterpret_cast<const Q8x32Block*>(xq + t * xq_stride); };
  // Once for every row of the tile: scales, offset * sums, sums as floats (kMin), and the
  // full groups transposed.
  thread_local std::vector<float> dx_all, sf_all;
  thread_local std::vector<int32_t> sx_all;
  thread_local std::vector<uint8_t> xt_all;
  dx_all.resize(num_tokens * nb);
  sx_all.resize(num_tokens * nb);
  sf_all.resize(W::kMin ? num_tokens * nb : 0);
  xt_all.resize(num_tokens * full * 32);
  for (int t = 0; t < num_tokens; ++t) {
    const Q8x32Block* xb = token(t);
    for (int64_t b = 0; b < nb; ++b) {
      dx_all[t * nb + b] = xb[b].d;
      sx_all[t * nb + b] = xb[b].sum * W::kOffset;
      if constexpr (W::kMin) sf_all[t * nb + b] = static_cast<float>(xb[b].sum);
    }
    for (int64_t g = 0; g < full; g += 8) {
      __m256i rows[8], cols[8];
      for (int i = 0; i < 8; ++i)
        rows[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[g + i].q));
      Transpose8x8(rows, cols);
      for (int k = 0; k < 8; ++k) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&xt_all[(t * full + g + k) * 32]), cols[k]);
      }
    }
  }
  auto pointers = [&](int t, const Q8x32Block** xb, const uint8_t** xt, const float** dxs,
                      const int32_t** sxs, const float** sfs) {
    *xb = token(t);
    *xt = xt_all.data() + t * full * 32;
    *dxs = dx_all.data() + t * nb;
    *sxs = sx_all.data() + t * nb;
    *sfs = W::kMin ? sf_all.data() + t * nb : nullptr;
  };
  for (int r = 0; r < num_rows; ++r) {
    const auto* wb = reinterpret_cast<const typename W::Block*>(w + r * row_bytes);
    int t = 0;
    for (; t + kT <= num_tokens; t += kT) {
      const Q8x32Block* xb[kT];
      const uint8_t* xt[kT];
      const float* dxs[kT];
      const int32_t* sxs[kT];
      const float* sfs[kT];
      float out[kT];
      for (int i = 0; i < kT; ++i) pointers(t + i, &xb[i], &xt[i], &dxs[i], &sxs[i], &sfs[i]);
      RowDotTokensNibbles<W, kT>(wb, xb, xt, dxs, sxs, sfs, nb, /*prefetch=*/false, out);
#pragma GCC unroll 8
      for (int i = 0; i < kT; ++i) y[(t + i) * ldy + r] = out[i];
    }
    for (; t < num_tokens; ++t) {
      const Q8x32Block* xb;
      const uint8_t* xt;
      const float *dxs, *sfs;
      const int32_t* sxs;
      pointers(t, &xb, &xt, &dxs, &sxs, &sfs);
      RowDotTokensNibbles<W, 1>(wb, &xb, &xt, &dxs, &sxs, &sfs, nb, /*prefetch=*/t == 0,
                                &y[t * ldy + r]);
    }
  }
}

}  // namespace

PREFIXD_AVX2 void QuantizeActivationAvx2(QuantActivation format, const float* x, int64_t n,
                                         void* out) {
  const int size = format == QuantActivation::kQ8x32 ? 32 : 256;
  for (int64_t b = 0; b < n / size; ++b) {
    const float* xb = x + b * size;
    const float d = BlockAmax(xb, size) / 127.0f;
    const __m256 inv = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    if (format == QuantActivation::kQ8x32) {
      Q8x32Block& blk = static_cast<Q8x32Block*>(out)[b];
      int32_t sums[2];
      Quantize32(xb, inv, blk.q, sums);
      blk.d = d;
      blk.sum = sums[0] + sums[1];
    } else {
      Q8x256Block& blk = static_cast<Q8x256Block*>(out)[b];
      for (int c = 0; c < 8; ++c) {
        int32_t sums[2];
        Quantize32(xb + 32 * c, inv, blk.q + 32 * c, sums);
        blk.bsums[2 * c] = static_cast<int16_t>(sums[0]);
        blk.bsums[2 * c + 1] = static_cast<int16_t>(sums[1]);
      }
      blk.d = d;
    }
  }
}

void IntTileQ8_0Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  Tile<Q8_0Weights>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

void IntTileQ4_0Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  TileNibbles<Q4_0Levels>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

void IntTileQ4_1Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  TileNibbles<Q4_1Levels>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

void IntTileQ5_0Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  TileNibbles<Q5_0Levels>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

void IntTileQ5_1Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  TileNibbles<Q5_1Levels>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

}  // namespace prefixd::cpu
