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

namespace prefixd::cpu {

namespace {

// exp(x) for the softmax, whose arguments are never positive (score - running max), as one
// fixed sequence of IEEE operations that the portable and AVX-512 paths both perform, so they
// agree bit for bit: n = round(x log2 e), r = x - n ln 2 (Cody-Waite, two parts), a degree-7
// Taylor polynomial by FMA, times 2^n. Below -87 (and for -inf or NaN) the result is 0; the
// true value there is under FLT_MIN and next to the max's 1 it never counts. Error <= 2 ulp.
constexpr float kExpLowest = -87.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kC7 = 1.98412698e-4f, kC6 = 1.38888889e-3f, kC5 = 8.33333333e-3f,
                kC4 = 4.16666667e-2f, kC3 = 1.66666667e-1f, kC2 = 0.5f;

float ExpNonPositive(float x) {
  if (!(x >= kExpLowest)) return 0.0f;
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = std::fma(kC7, r, kC6);
  p = std::fma(p, r, kC5);
  p = std::fma(p, r, kC4);
  p = std::fma(p, r, kC3);
  p = std::fma(p, r, kC2);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

__attribute__((target("avx512f,fma"))) __m512 ExpNonPositiveAvx512(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpLowest), _CMP_GE_OQ);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Hi), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kC7), r, _mm512_set1_ps(kC6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_maskz_mov_ps(live, n)), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mul_ps(live, p, _mm512_castsi512_ps(e));
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

// acc = acc * correction, then acc = acc + p[i] * v_i for each of the tile's n value rows:
// multiply, round, add, round, element by element, never fused.
template <typename T>
void Accumulate(float* acc, float correction, const float* p, const T* const* rows, int n, int hd) {
  for (int d = 0; d < hd; ++d) acc[d] = acc[d] * correction;
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < hd; ++d) acc[d] = acc[d] + p[i] * ToFloat(rows[i][d]);
  }
}

// The same, with the accumulator row in NC registers for the whole tile (NC = ceil(hd / 16)).
template <int NC, typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void AccumulateAvx512(
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
      a[c] = _mm512_add_ps(a[c], _mm512_mul_ps(pv, LoadRow(rows[i] + 16 * c, mask(c))));
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) _mm512_mask_storeu_ps(acc + 16 * c, mask(c), a[c]);
}

// Attention scores: s = scale * dot(k, q) over head_dim, in an order of its own (not dot.h's),
// chosen so that 16 scores reduce together: lane l (of 16) sums elements l, l + 16, ... by FMA
// (zeros past head_dim), then the lanes fold pairwise: [0,8)+[8,16), [0,4)+[4,8), [0,2)+[2,4),
// 0+1. Written once for one score (portable) and once for 16 (AVX-512, the fold transposed).
template <typename T>
void ScoreKeys(const T* const* rows, int n, const float* q, int hd, float scale, float* out) {
  const int chunks = (hd + 15) / 16;
  for (int i = 0; i < n; ++i) {
    const T* k = rows[i];
    float lane[16];
    for (int l = 0; l < 16; ++l) {
      float acc = 0.0f;
      for (int c = 0; c < chunks; ++c) {
        const int d = 16 * c + l;
        acc = std::fma(d < hd ? ToFloat(k[d]) : 0.0f, d < hd ? q[d] : 0.0f, acc);
      }
      lane[l] = acc;
    }
    for (int width = 8; width >= 1; width /= 2) {
      for (int l = 0; l < width; ++l) lane[l] = lane[l] + lane[l + width];
    }
    out[i] = lane[0] * scale;
  }
}

// Folds 16 lane vectors a[p] (one score each) into one vector of 16 scores, in score order,
// with exactly the portable fold's additions: each step adds the same lane pairs, two, four or
// eight scores per instruction.
__attribute__((target("avx512f"))) inline __m512 FoldSixteen(const __m512* a) {
  __m512 b[8], c[4], d[2];
  for (int k = 0; k < 8; ++k) {  // [0,8)+[8,16): scores 2k, 2k+1 -> halves of b[k]
    b[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int m = 0; m < 4; ++m) {  // [0,4)+[4,8): scores 4m..4m+3 -> the four 128-bit blocks
    c[m] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * m], b[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(b[2 * m], b[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  for (int n = 0; n < 2; ++n) {  // [0,2)+[2,4) within each block
    d[n] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * n], c[2 * n + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(c[2 * n], c[2 * n + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // 0+1: block j of e holds scores j, 4 + j, 8 + j, 12 + j.
  const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, e);
}

template <int NC, typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"))) void ScoreKeysAvx512(
    const T* const* rows, int n, const float* q, int hd, float scale, float* out) {
  const int tail = hd - 16 * (NC - 1);
  const __mmask16 last = static_cast<__mmask16>(tail >= 16 ? 0xffff : (1u << tail) - 1);
  auto mask = [&](int c) { return c == NC - 1 ? last : static_cast<__mmask16>(0xffff); };
  __m512 qv[NC];
#pragma GCC unroll 8
  for (int c = 0; c < NC; ++c) qv[c] = _mm512_maskz_loadu_ps(mask(c), q + 16 * c);
  const __m512 sv = _mm512_set1_ps(scale);
  for (int i0 = 0; i0 < n; i0 += 16) {
    const int m = std::min(16, n - i0);
    __m512 a[16];
#pragma GCC unroll 16
    for (int p = 0; p < 16; ++p) {
      a[p] = _mm512_setzero_ps();
      if (p < m) {
        const T* k = rows[i0 + p];
#pragma GCC unroll 8
        for (int c = 0; c < NC; ++c) a[p] = _mm512_fmadd_ps(LoadRow(k + 16 * c, mask(c)), qv[c], a[p]);
      }
    }
    const __mmask16 live = static_cast<__mmask16>(m >= 16 ? 0xffff : (1u << m) - 1);
    _mm512_mask_storeu_ps(out + i0, live, _mm512_mul_ps(FoldSixteen(a), sv));
  }
}

template <typename T>
using ScoreFn = void (*)(const T* const*, int, const float*, int, float, float*);
template <typename T>
using AccumulateFn = void (*)(float*, float, const float*, const T* const*, int, int);

bool HasAvx512Attention() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx512f && f.avx512bw && f.avx512vl && f.f16c && f.fma;
}

// The AVX-512 kernels come in head sizes up to 128 (NC <= 8); larger heads take the portable
// loops, which give the same bits.
template <typename T>
ScoreFn<T> PickScore(int hd) {
  if (!HasAvx512Attention()) return &ScoreKeys<T>;
  switch ((hd + 15) / 16) {
    case 1: return &ScoreKeysAvx512<1, T>;
    case 2: return &ScoreKeysAvx512<2, T>;
    case 3: return &ScoreKeysAvx512<3, T>;
    case 4: return &ScoreKeysAvx512<4, T>;
    case 5: return &ScoreKeysAvx512<5, T>;
    case 6: return &ScoreKeysAvx512<6, T>;
    case 7: return &ScoreKeysAvx512<7, T>;
    case 8: return &ScoreKeysAvx512<8, T>;
    default: return &ScoreKeys<T>;
  }
}

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
// Tests hand over contiguous rows (floats or halves); the kernels take a pointer per row.
template <typename T, bool kVector>
void ScoreContiguous(const void* keys, int n, const float* q, int hd, float scale, float* out) {
  std::vector<const T*> rows(n);
  for (int i = 0; i < n; ++i) rows[i] = static_cast<const T*>(keys) + int64_t{i} * hd;
  (kVector ? PickScore<T>(hd) : &ScoreKeys<T>)(rows.data(), n, q, hd, scale, out);
}
}  // namespace

std::vector<std::pair<const char*, AttentionScoreFn>> RunnableAttentionScorePaths(int head_dim,
                                                                                  bool f16) {
  std::vector<std::pair<const char*, AttentionScoreFn>> out = {
      {"generic", f16 ? &ScoreContiguous<uint16_t, false> : &ScoreContiguous<float, false>}};
  if (HasAvx512Attention() && head_dim <= 128) {
    out.emplace_back("avx512", f16 ? &ScoreContiguous<uint16_t, true> : &ScoreContiguous<float, true>);
  }
  return out;
}

std::vector<std::pair<const char*, SoftmaxExpFn>> RunnableSoftmaxExpPaths() {
  std::vector<std::pair<const char*, SoftmaxExpFn>> out = {{"generic", &ExpTile}};
  if (GetCpuFeatures().avx512f) out.emplace_back("avx512", &ExpTileAvx512);
  return out;
}

namespace {

// K/V rows of a tile as floats (exact), so that the queries of a block read them from L1
// instead of converting them again for every query head.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void ConvertRowsAvx512(
    const uint16_t* const* rows, int n, int hd, float* out) {
  for (int i = 0; i < n; ++i) {
    const uint16_t* r = rows[i];
    float* o = out + int64_t{i} * hd;
    int d = 0;
    for (; d + 16 <= hd; d += 16) {
      _mm512_storeu_ps(o + d, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + d))));
    }
    if (d < hd) {
      const __mmask16 m = static_cast<__mmask16>((1u << (hd - d)) - 1);
      _mm512_mask_storeu_ps(o + d, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, r + d)));
    }
  }
}
void ConvertRows(const uint16_t* const* rows, int n, int hd, float* out) {
  for (int i = 0; i < n; ++i) {
    for (int d = 0; d < hd; ++d) out[int64_t{i} * hd + d] = HalfToFloat(rows[i][d]);
  }
}

// The online softmax over tiles of kAttentionTile positions for a block of queries: tokens of
// one sequence at increasing positions, one KV head, every query head of its group. Each tile's
// K/V rows are gathered (and converted from F16) once for the whole block; each query then runs
// exactly the operations it would run alone (the same tiles, kernels and order), so its result
// does not depend on the block it was computed in.
template <typename T>
void AttendBlock(const AttentionArgs* args, int count, AttentionScratch* scratch) {
  const AttentionArgs& a0 = args[0];
  static const bool avx512 = GetCpuFeatures().avx512f;
  const ExpTileFn exp_tile = avx512 ? &ExpTileAvx512 : &ExpTile;
  const KvLayout& layout = *a0.layout;
  const int hd = a0.head_dim, group = a0.group;
  const int heads = count * group;  // query vectors in the block
  // F16 rows are converted to floats once per tile when several query vectors share them.
  const bool convert = std::is_same_v<T, uint16_t> && heads > 1;
  const AccumulateFn<T> accumulate_in_place = PickAccumulate<T>(hd);
  const ScoreFn<T> score_in_place = PickScore<T>(hd);
  const AccumulateFn<float> accumulate_floats = PickAccumulate<float>(hd);
  const ScoreFn<float> score_floats = PickScore<float>(hd);
  const int64_t head_offset = int64_t{a0.kv_head} * hd * layout.ElementBytes();
  const int64_t block_bytes = layout.BlockBytes();
  scratch->acc.assign(int64_t{heads} * hd, 0.0f);
  scratch->scores.resize(kAttentionTile);
  scratch->running_max.assign(heads, -std::numeric_limits<float>::infinity());
  scratch->sum.assign(heads, 0.0f);
  if (convert) {
    scratch->keys.resize(int64_t{kAttentionTile} * hd);
    scratch->values.resize(int64_t{kAttentionTile} * hd);
  }
  float* scores = scratch->scores.data();
  const T* krows[kAttentionTile];
  const T* vrows[kAttentionTile];
  const float* kfloats[kAttentionTile];
  const float* vfloats[kAttentionTile];
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
    if constexpr (std::is_same_v<T, uint16_t>) {
      if (convert) {
        const auto convert_rows = HasAvx512Attention() ? &ConvertRowsAvx512 : &ConvertRows;
        convert_rows(krows, n_tile, hd, scratch->keys.data());
        convert_rows(vrows, n_tile, hd, scratch->values.data());
        for (int i = 0; i < n_tile; ++i) {
          kfloats[i] = scratch->keys.data() + int64_t{i} * hd;
          vfloats[i] = scratch->values.data() + int64_t{i} * hd;
        }
      }
    }
    for (int q = 0; q < count; ++q) {
      const AttentionArgs& a = args[q];
      if (a.pos < j0) continue;  // this query's positions ended in an earlier tile
      const int n = static_cast<int>(std::min<int64_t>(kAttentionTile, a.pos + 1 - j0));
      for (int g = 0; g < group; ++g) {
        const int h = q * group + g;
        const float* qv = a.q + int64_t{g} * hd;
        float* acc = scratch->acc.data() + int64_t{h} * hd;
        if (convert) {
          score_floats(kfloats, n, qv, hd, a.scale, scores);
        } else {
          score_in_place(krows, n, qv, hd, a.scale, scores);
        }
        float tile_max = scores[0];
        for (int i = 1; i < n; ++i) tile_max = std::max(tile_max, scores[i]);
        const float new_max = std::max(scratch->running_max[h], tile_max);
        float correction = 0.0f;  // the first tile: nothing accumulated yet
        if (j0 > 0) {
          correction = scratch->running_max[h] - new_max;
          exp_tile(&correction, 0.0f, 1);
        }
        exp_tile(scores, new_max, n);
        float sum = scratch->sum[h] * correction;
        for (int i = 0; i < n; ++i) sum = sum + scores[i];
        scratch->sum[h] = sum;
        if (convert) {
          accumulate_floats(acc, correction, scores, vfloats, n, hd);
        } else {
          accumulate_in_place(acc, correction, scores, vrows, n, hd);
        }
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
