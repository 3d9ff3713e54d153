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

template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void TransposeKeysAvx512(
    const T* const* rows, int n, int hd, float* kt) {
  for (int i0 = 0; i0 < kTileStride; i0 += 16) {
    for (int d0 = 0; d0 < hd; d0 += 16) {
      const __mmask16 m = static_cast<__mmask16>(hd - d0 >= 16 ? 0xffff : (1u << (hd - d0)) - 1);
      __m512 r[16];
      for (int i = 0; i < 16; ++i) {
        r[i] = i0 + i < n ? LoadRow(rows[i0 + i] + d0, m) : _mm512_setzero_ps();
      }
      Transpose16(r);
      for (int d = 0; d < 16 && d0 + d < hd; ++d) _mm512_storeu_ps(kt + (d0 + d) * kTileStride + i0, r[d]);
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

using ScoreTileFn = void (*)(const float*, int, int, const float* const*, int, float, float* const*);

template <typename T>
using AccumulateFn = void (*)(float*, float, const float*, const T* const*, int, int);

bool HasAvx512Attention() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx512f && f.avx512bw && f.avx512vl && f.f16c && f.fma;
}

template <typename T>
TransposeFn<T> PickTranspose() {
  return HasAvx512Attention() ? &TransposeKeysAvx512<T> : &TransposeKeys<T>;
}
ScoreTileFn PickScoreTile() { return HasAvx512Attention() ? &ScoreTileAvx512 : &ScoreTile; }

template <typename T>
AccumulateFn<T> PickAccumulate(int hd) {
  if (!HasAvx512Attention()) return &Accumulate<T>;
  switch ((hd + 15) / 16) {
    case 1: return &AccumulateAvx512<1, T>;
    case 2: return &AccumulateAvx512<2, T>;
    case 3: return &AccumulateAvx512<3, T>;
    case 4: return &AccumulateAvx512<4, T>;
    case 5: return &AccumulateAvx512<5, T>;
    case 6: return &AccumulateAvx512<6, T>;
    case 7: return &AccumulateAvx512<7, T>;
    case 8: return &AccumulateAvx512<8, T>;
    default: return &Accumulate<T>;
  }
}

using ExpTileFn = void (*)(float*, float, int);

}  // namespace

namespace {
// Tests hand over contiguous rows (floats or halves, n <= kAttentionTile); the kernels take a
// tile transposed from a pointer per row.
template <typename T, bool kVector>
void ScoreContiguous(const void* keys, int n, const float* q, int hd, float scale, float* out) {
  std::vector<const T*> rows(n);
  for (int i = 0; i < n; ++i) rows[i] = static_cast<const T*>(keys) + int64_t{i} * hd;
  std::vector<float> kt(int64_t{hd} * kTileStride);
  (kVector ? PickTranspose<T>() : &TransposeKeys<T>)(rows.data(), n, hd, kt.data());
  const float* qs[1] = {q};
  float* outs[1] = {out};
  (kVector ? PickScoreTile() : &ScoreTile)(kt.data(), n, hd, qs, 1, scale, outs);
}
}  // namespace

std::vector<std::pair<const char*, AttentionScoreFn>> RunnableAttentionScorePaths(int head_dim,
                                                                                  bool f16) {
  (void)head_dim;  // every head size has a vector path
  std::vector<std::pair<const char*, AttentionScoreFn>> out = {
      {"generic", f16 ? &ScoreContiguous<uint16_t, false> : &ScoreContiguous<float, false>}};
  if (HasAvx512Attention()) {
    out.emplace_back("avx512", f16 ? &ScoreContiguous<uint16_t, true> : &ScoreContiguous<float, true>);
  }
  return out;
}

namespace {
template <bool kVector>
void AccumulateContiguous(float* acc, float correction, const float* p, const float* values, int n,
                          int hd) {
  std::vector<const float*> rows(n);
  for (int i = 0; i < n; ++i) rows[i] = values + int64_t{i} * hd;
  (kVector ? PickAccumulate<float>(hd) : &Accumulate<float>)(acc, correction, p, rows.data(), n, hd);
}
}  // namespace

std::vector<std::pair<const char*, AttentionAccumulateFn>> RunnableAttentionAccumulatePaths(
    int head_dim) {
  std::vector<std::pair<const char*, AttentionAccumulateFn>> out = {
      {"generic", &AccumulateContiguous<false>}};
  if (HasAvx512Attention() && head_dim <= 128) out.emplace_back("avx512", &AccumulateContiguous<true>);
  return out;
}

std::vector<std::pair<const char*, AttentionTileFoldFn>> RunnableTileMaxPaths() {
  std::vector<std::pair<const char*, AttentionTileFoldFn>> out = {{"generic", &TileFold<false>}};
  if (HasAvx512Attention()) out.emplace_back("avx512", &TileFoldAvx512<false>);
  return out;
}
std::vector<std::pair<const char*, AttentionTileFoldFn>> RunnableTileSumPaths() {
  std::vector<std::pair<const char*, AttentionTileFoldFn>> out = {{"generic", &TileFold<true>}};
  if (HasAvx512Attention()) out.emplace_back("avx512", &TileFoldAvx512<true>);
  return out;
}

std::vector<std::pair<const char*, SoftmaxExpFn>> RunnableSoftmaxExpPaths() {
  std::vector<std::pair<const char*, SoftmaxExpFn>> out = {{"generic", &ExpTile}};
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

// The online softmax over tiles of kAttentionTile positions for a block of queries: tokens of
// one sequence at increasing positions, one KV head, every query head of its group. Each tile's
// K rows are gathered and transposed, its V rows gathered, once for the whole block; each query
// then runs exactly the operations it would run alone (the same tiles, kernels and order), so
// its result does not depend on the block it was computed in.
template <typename T>
void AttendBlock(const AttentionArgs* args, int count, AttentionScratch* scratch) {
  const AttentionArgs& a0 = args[0];
  const bool avx512 = HasAvx512Attention();
  const ExpTileFn exp_tile = avx512 ? &ExpTileAvx512 : &ExpTile;
  const TransposeFn<T> transpose = PickTranspose<T>();
  const auto gather = avx512 ? &GatherValuesAvx512<T> : &GatherValues<T>;
  const ScoreTileFn score = PickScoreTile();
  const TileFoldFn tile_max_fn = avx512 ? &TileFoldAvx512<false> : &TileFold<false>;
  const TileFoldFn tile_sum_fn = avx512 ? &TileFoldAvx512<true> : &TileFold<true>;
  const AccumulateFn<float> accumulate = PickAccumulate<float>(a0.head_dim);
  const KvLayout& layout = *a0.layout;
  const int hd = a0.head_dim, group = a0.group;
  const int heads = count * group;  // query vectors in the block, query-major
  const int64_t head_offset = int64_t{a0.kv_head} * hd * layout.ElementBytes();
  const int64_t block_bytes = layout.BlockBytes();
  scratch->acc.assign(int64_t{heads} * hd, 0.0f);
  scratch->scores.resize(int64_t{heads} * kAttentionTile);
  scratch->running_max.assign(heads, -std::numeric_limits<float>::infinity());
  scratch->sum.assign(heads, 0.0f);
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
    transpose(krows, n_tile, hd, scratch->keys.data());
    gather(vrows, n_tile, hd, scratch->values.data());
    // Queries whose positions end before this tile are done; the rest are a suffix of the
    // block (positions increase), each scoring its own first n keys of the tile.
    int q0 = 0;
    while (args[q0].pos < j0) ++q0;
    for (int q = q0; q < count; ++q) {
      const int n = static_cast<int>(std::min<int64_t>(kAttentionTile, args[q].pos + 1 - j0));
      score(scratch->keys.data(), n, hd, scratch->q_ptrs.data() + q * group, group, args[q].scale,
            scratch->score_ptrs.data() + q * group);
      for (int g = 0; g < group; ++g) {
        const int h = q * group + g;
        float* scores = scratch->score_ptrs[h];
        const float tile_max = tile_max_fn(scores, n);
        const float new_max = Max(scratch->running_max[h], tile_max);
        float correction = 0.0f;  // the first tile: nothing accumulated yet
        if (j0 > 0) {
          correction = scratch->running_max[h] - new_max;
          exp_tile(&correction, 0.0f, 1);
        }
        exp_tile(scores, new_max, n);
        scratch->sum[h] = scratch->sum[h] * correction + tile_sum_fn(scores, n);
        accumulate(scratch->acc.data() + int64_t{h} * hd, correction, scores, vfloats, n, hd);
        scratch->running_max[h] = new_max;
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

void AttendQueries(const AttentionArgs* args, int count, AttentionScratch* scratch) {
  if (count <= 0) return;
  if (args[0].layout->dtype == KvDtype::kF16) {
    AttendBlock<uint16_t>(args, count, scratch);
  } else {
    AttendBlock<float>(args, count, scratch);
  }
}

}  // namespace prefixd::cpu
