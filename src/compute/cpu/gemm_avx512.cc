// The packed kernels of gemm.h for AVX-512: one register tile of lane j is 32 rows (two zmm)
// x up to 12 tokens.
#include <immintrin.h>

#include <array>
#include <cstring>
#include <utility>

#include "compute/cpu/gemm_kernels.h"

namespace prefixd::cpu::gemm_internal {

namespace {

// Lane j of a 32-row x NR-token tile, then folded into the partial tiles waiting on `stack`
// (each 32 x NR floats, token-major: [t][32 rows]). NR is a template argument so that the 2 x NR
// accumulators are named registers after unrolling, never an array in memory.
template <int NR>
__attribute__((target("avx512f,fma"), always_inline)) inline void LaneTile(
    const float* wj, const float* xj, int64_t steps, float* stack, int* levels, int& depth) {
  __m512 a0[NR], a1[NR];
#pragma GCC unroll 12
  for (int t = 0; t < NR; ++t) a0[t] = a1[t] = _mm512_setzero_ps();
  for (int64_t m = 0; m < steps; ++m) {
    const __m512 w0 = _mm512_loadu_ps(wj + m * kGemmPanelRows);
    const __m512 w1 = _mm512_loadu_ps(wj + m * kGemmPanelRows + 16);
    const float* xm = xj + m * kGemmBlockTokens;
#pragma GCC unroll 12
    for (int t = 0; t < NR; ++t) {
      const __m512 b = _mm512_set1_ps(xm[t]);
      a0[t] = _mm512_fmadd_ps(w0, b, a0[t]);
      a1[t] = _mm512_fmadd_ps(w1, b, a1[t]);
    }
  }
  // Merge with every finished sibling subtree: (left subtree) + (this one), as the fold adds.
  int level = 0;
  while (depth > 0 && levels[depth - 1] == level) {
    const float* s = stack + (depth - 1) * kGemmPanelRows * NR;
#pragma GCC unroll 12
    for (int t = 0; t < NR; ++t) {
      a0[t] = _mm512_add_ps(_mm512_loadu_ps(s + t * kGemmPanelRows), a0[t]);
      a1[t] = _mm512_add_ps(_mm512_loadu_ps(s + t * kGemmPanelRows + 16), a1[t]);
    }
    --depth;
    ++level;
  }
  float* s = stack + depth * kGemmPanelRows * NR;
#pragma GCC unroll 12
  for (int t = 0; t < NR; ++t) {
    _mm512_storeu_ps(s + t * kGemmPanelRows, a0[t]);
    _mm512_storeu_ps(s + t * kGemmPanelRows + 16, a1[t]);
  }
  levels[depth++] = level;
}

template <int NR>
__attribute__((target("avx512f,fma"))) void PanelBlock(const float* panel, const float* block,
                                                       int64_t steps, int num_rows, float* y,
                                                       int64_t y_stride) {
  alignas(64) float stack[kFoldDepth * kGemmPanelRows * NR];
  int levels[kFoldDepth];
  int depth = 0;
  for (int p = 0; p < kGemmLanes; ++p) {
    // Lane kBitReversed[p]'s data lies at leaf position p (gemm.h): one forward stream.
    LaneTile<NR>(panel + p * steps * kGemmPanelRows, block + p * steps * kGemmBlockTokens, steps,
                 stack, levels, depth);
  }
  // One tile is left, at level 5: the folded dots, [t][row].
  for (int t = 0; t < NR; ++t) {
    std::memcpy(y + t * y_stride, stack + t * kGemmPanelRows, sizeof(float) * num_rows);
  }
}

using PanelBlockFn = void (*)(const float*, const float*, int64_t, int, float*, int64_t);

template <int... N>
constexpr auto MakePanelBlockTable(std::integer_sequence<int, N...>) {
  return std::array<PanelBlockFn, sizeof...(N)>{&PanelBlock<N + 1>...};
}

void GemmPanelBlockAvx512(const float* panel, const float* block, int64_t cols, int num_rows,
                          int nt, float* y, int64_t y_stride) {
  static constexpr auto kTable =
      MakePanelBlockTable(std::make_integer_sequence<int, kGemmBlockTokens>());
  kTable[nt - 1](panel, block, GemmLaneSteps(cols), num_rows, y, y_stride);
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void UnpackF16PanelAvx512(
    const uint16_t* packed, int64_t cols, float* panel) {
  const int64_t n = GemmPanelFloats(cols);  // a multiple of 32
  for (int64_t i = 0; i < n; i += 16) {
    _mm512_storeu_ps(panel + i, _mm512_cvtph_ps(_mm256_loadu_si256(
                                    reinterpret_cast<const __m256i*>(packed + i))));
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma"))) void GemvPackedF16PanelAvx512(
    const uint16_t* packed, const float* x, int64_t cols, int num_rows, float* y) {
  const int64_t steps = GemmLaneSteps(cols);
  alignas(64) float stack[kFoldDepth * kGemmPanelRows];
  int levels[kFoldDepth];
  int depth = 0;
  for (int p = 0; p < kGemmLanes; ++p) {
    const int j = kBitReversed[p];
    const uint16_t* wj = packed + p * steps * kGemmPanelRows;  // leaf order: one forward stream
    // The last step reads x only where the row has an element; past it both factors are 0,
    // as the canonical dot counts them.
    const int64_t live = j + (steps - 1) * kGemmLanes < cols ? steps : steps - 1;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t m = 0; m < steps; ++m) {
      // One 64-byte line a step: prefetch each (8 KiB ahead), as the AVX2 kernel does; every
      // other step left half the lines to demand misses (decode 0.6x the AVX2 kernel's speed
      // on a Zen 4 EPYC).
      _mm_prefetch(reinterpret_cast<const char*>(wj + m * kGemmPanelRows + 4096), _MM_HINT_T0);
      const __m512 b = _mm512_set1_ps(m < live ? x[j + m * kGemmLanes] : 0.0f);
      const __m256i* w = reinterpret_cast<const __m256i*>(wj + m * kGemmPanelRows);
      a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(w)), b, a0);
      a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256(w + 1)), b, a1);
    }
    int level = 0;
    while (depth > 0 && levels[depth - 1] == level) {
      const float* s = stack + (depth - 1) * kGemmPanelRows;
      a0 = _mm512_add_ps(_mm512_loadu_ps(s), a0);
      a1 = _mm512_add_ps(_mm512_loadu_ps(s + 16), a1);
      --depth;
      ++level;
    }
    _mm512_storeu_ps(stack + depth * kGemmPanelRows, a0);
    _mm512_storeu_ps(stack + depth * kGemmPanelRows + 16, a1);
    levels[depth++] = level;
  }
  std::memcpy(y, stack, sizeof(float) * num_rows);
}

}  // namespace

GemmKernels Avx512Kernels() {
  return {"avx512", &GemmPanelBlockAvx512, &UnpackF16PanelAvx512, &GemvPackedF16PanelAvx512};
}

}  // namespace prefixd::cpu::gemm_internal
