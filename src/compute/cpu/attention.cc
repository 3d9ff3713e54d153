#include "compute/cpu/attention.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "base/cpu_features.h"
#include "compute/cpu/dot.h"

namespace prefixd::cpu {

namespace {

// acc[d] = acc[d] * c, element-wise.
void ScaleRow(float* acc, float c, int n) {
  for (int d = 0; d < n; ++d) acc[d] = acc[d] * c;
}
// acc[d] = acc[d] + p * v[d], element-wise: multiply, round, add, round.
void AddScaledRow(float* acc, float p, const float* v, int n) {
  for (int d = 0; d < n; ++d) acc[d] = acc[d] + p * v[d];
}

__attribute__((target("avx512f"))) void ScaleRowAvx512(float* acc, float c, int n) {
  const __m512 cv = _mm512_set1_ps(c);
  int d = 0;
  for (; d + 16 <= n; d += 16) _mm512_storeu_ps(acc + d, _mm512_mul_ps(_mm512_loadu_ps(acc + d), cv));
  for (; d < n; ++d) acc[d] = acc[d] * c;
}

__attribute__((target("avx512f"))) void AddScaledRowAvx512(float* acc, float p, const float* v,
                                                           int n) {
  const __m512 pv = _mm512_set1_ps(p);
  int d = 0;
  for (; d + 16 <= n; d += 16) {
    const __m512 prod = _mm512_mul_ps(pv, _mm512_loadu_ps(v + d));
    _mm512_storeu_ps(acc + d, _mm512_add_ps(_mm512_loadu_ps(acc + d), prod));
  }
  for (; d < n; ++d) acc[d] = acc[d] + p * v[d];
}

using ScaleFn = void (*)(float*, float, int);
using AddScaledFn = void (*)(float*, float, const float*, int);

}  // namespace

void Attend(const AttentionArgs& a, AttentionScratch* scratch) {
  static const bool avx512 = GetCpuFeatures().avx512f;
  const ScaleFn scale_row = avx512 ? &ScaleRowAvx512 : &ScaleRow;
  const AddScaledFn add_row = avx512 ? &AddScaledRowAvx512 : &AddScaledRow;
  const DotF16Fn dot16 = GetDotF16();
  const DotF32Fn dot32 = GetDotF32();
  const KvLayout& layout = *a.layout;
  const int hd = a.head_dim, group = a.group;
  const bool f16 = layout.dtype == KvDtype::kF16;
  const int64_t head_offset = int64_t{a.kv_head} * hd * layout.ElementBytes();
  const int64_t block_bytes = layout.BlockBytes();
  scratch->values.resize(int64_t{kAttentionTile} * hd);
  scratch->acc.assign(int64_t{group} * hd, 0.0f);

  scratch->scores.resize(int64_t{group} * kAttentionTile);
  scratch->running_max.assign(group, -std::numeric_limits<float>::infinity());
  scratch->sum.assign(group, 0.0f);
  float* running_max = scratch->running_max.data();
  float* sum = scratch->sum.data();
  auto scores = [&](int g) { return scratch->scores.data() + int64_t{g} * kAttentionTile; };
  const float* vrows[kAttentionTile];
  for (int64_t j0 = 0; j0 <= a.pos; j0 += kAttentionTile) {
    const int n = static_cast<int>(std::min<int64_t>(kAttentionTile, a.pos + 1 - j0));
    for (int i = 0; i < n; ++i) {
      const int64_t j = j0 + i;
      const uint8_t* block =
          a.kv_base + a.blocks[j / layout.block_size].value() * block_bytes;
      const int slot = static_cast<int>(j % layout.block_size);
      const uint8_t* krow = block + layout.RowOffset(a.layer, 0, slot) + head_offset;
      const uint8_t* vrow = block + layout.RowOffset(a.layer, 1, slot) + head_offset;
      for (int g = 0; g < group; ++g) {
        const float* q = a.q + int64_t{g} * hd;
        scores(g)[i] = (f16 ? dot16(reinterpret_cast<const uint16_t*>(krow), q, hd)
                            : dot32(reinterpret_cast<const float*>(krow), q, hd)) *
                       a.scale;
      }
      if (f16) {
        float* dst = scratch->values.data() + int64_t{i} * hd;
        ConvertF16ToF32(reinterpret_cast<const uint16_t*>(vrow), dst, hd);
        vrows[i] = dst;
      } else {
        vrows[i] = reinterpret_cast<const float*>(vrow);
      }
    }
    for (int g = 0; g < group; ++g) {
      float tile_max = scores(g)[0];
      for (int i = 1; i < n; ++i) tile_max = std::max(tile_max, scores(g)[i]);
      const float new_max = std::max(running_max[g], tile_max);
      const float correction = std::exp(running_max[g] - new_max);  // 0 on the first tile
      float* acc = scratch->acc.data() + int64_t{g} * hd;
      sum[g] = sum[g] * correction;
      scale_row(acc, correction, hd);
      for (int i = 0; i < n; ++i) {
        const float p = std::exp(scores(g)[i] - new_max);
        sum[g] = sum[g] + p;
        add_row(acc, p, vrows[i], hd);
      }
      running_max[g] = new_max;
    }
  }
  for (int g = 0; g < group; ++g) {
    const float inv = 1.0f / sum[g];
    const float* acc = scratch->acc.data() + int64_t{g} * hd;
    float* out = a.out + int64_t{g} * hd;
    for (int d = 0; d < hd; ++d) out[d] = acc[d] * inv;
  }
}

}  // namespace prefixd::cpu
