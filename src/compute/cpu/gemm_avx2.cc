// The packed kernels of gemm.h for AVX2 + FMA + F16C (16 ymm registers, so no 32 x 12 tile).
//
// Lane j of a panel x block is split into register tiles of 16 rows (two ymm) x up to 6
// tokens: 12 accumulators, 2 weight loads and 1 broadcast fill 15 of the 16 registers. The
// 2 x 2 tiles of one lane run back to back over the same (L1-resident) lane data, each over
// every step m in order, so every output element gets the FMAs of lane j in the canonical
// order; each tile then folds into its own part of the shared stack of partial lane tiles, in
// the same tree as the AVX-512 kernel.
#include <immintrin.h>

#include <array>
#include <bit>
#include <cstring>
#include <utility>

#include "compute/cpu/gemm_kernels.h"

namespace prefixd::cpu::gemm_internal {

namespace {

constexpr int kTileRows = 16;  // two ymm

// One register tile: lane data `wj` (already offset to the tile's first row) and `xj` (to its
// first token), T tokens, then the fold. `stack` points at the tile's corner in partial tile 0
// of a stack whose tiles are `tile_floats` apart, [t][32 rows] each. Leaf p of the fold
// finds popcount(p) partial tiles waiting and merges with its trailing-ones count of them
// (a binary counter), each as (left subtree) + (this one), the canonical fold's operand order.
template <int T>
__attribute__((target("avx2,fma"), always_inline)) inline void SubTile(
    const float* wj, const float* xj, int64_t steps, float* stack, int64_t tile_floats, int depth,
    int merges) {
  __m256 a0[T], a1[T];
#pragma GCC unroll 6
  for (int t = 0; t < T; ++t) a0[t] = a1[t] = _mm256_setzero_ps();
  for (int64_t m = 0; m < steps; ++m) {
    const __m256 w0 = _mm256_loadu_ps(wj + m * kGemmPanelRows);
    const __m256 w1 = _mm256_loadu_ps(wj + m * kGemmPanelRows + 8);
    const float* xm = xj + m * kGemmBlockTokens;
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      const __m256 b = _mm256_broadcast_ss(xm + t);
      a0[t] = _mm256_fmadd_ps(w0, b, a0[t]);
      a1[t] = _mm256_fmadd_ps(w1, b, a1[t]);
    }
  }
  for (int k = 1; k <= merges; ++k) {
    const float* s = stack + (depth - k) * tile_floats;
#pragma GCC unroll 6
    for (int t = 0; t < T; ++t) {
      a0[t] = _mm256_add_ps(_mm256_loadu_ps(s + t * kGemmPanelRows), a0[t]);
      a1[t] = _mm256_add_ps(_mm256_loadu_ps(s + t * kGemmPanelRows + 8), a1[t]);
    }
  }
  float* s = stack + (depth - merges) * tile_floats;
#pragma GCC unroll 6
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(s + t * kGemmPanelRows, a0[t]);
    _mm256_storeu_ps(s + t * kGemmPanelRows + 8, a1[t]);
  }
}

template <int NR>
__attribute__((target("avx2,fma"))) void PanelBlock(const float* panel, const float* block,
                                                    int64_t steps, int num_rows, float* y,
                                                    int64_t y_stride) {
  // Tokens split evenly between two tiles past 6: with fewer than 4 tokens a tile has too few
  // independent FMA chains to hide their latency, so 7 = 4 + 3 beats 6 + 1.
  constexpr int kT0 = NR <= 6 ? NR : (NR + 1) / 2;
  constexpr int kT1 = NR - kT0;
  constexpr int64_t kTileFloats = int64_t{kGemmPanelRows} * NR;
  alignas(32) float stack[kFoldDepth * kTileFloats];
  // Rows past num_rows are dropped: a panel of 16 rows or fewer skips its upper tiles.
  const int halves = num_rows > kTileRows ? 2 : 1;
  for (int p = 0; p < kGemmLanes; ++p) {
    // Lane kBitReversed[p]'s data lies at leaf position p (gemm.h): one forward stream.
    const float* wj = panel + p * steps * kGemmPanelRows;
    const float* xj = block + p * steps * kGemmBlockTokens;
    const int depth = std::popcount(static_cast<unsigned>(p));
    const int merges = std::countr_one(static_cast<unsigned>(p));
    for (int h = 0; h < halves; ++h) {
      const int r = h * kTileRows;
      SubTile<kT0>(wj + r, xj, steps, stack + r, kTileFloats, depth, merges);
      if constexpr (kT1 > 0) {
        SubTile<kT1>(wj + r, xj + kT0, steps, stack + kT0 * kGemmPanelRows + r, kTileFloats,
                     depth, merges);
      }
    }
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

void GemmPanelBlockAvx2(const float* panel, const float* block, int64_t cols, int num_rows,
                        int nt, float* y, int64_t y_stride) {
  static constexpr auto kTable =
      MakePanelBlockTable(std::make_integer_sequence<int, kGemmBlockTokens>());
  kTable[nt - 1](panel, block, GemmLaneSteps(cols), num_rows, y, y_stride);
}

__attribute__((target("avx2,f16c"))) void UnpackF16PanelAvx2(const uint16_t* packed, int64_t cols,
                                                            float* panel) {
  const int64_t n = GemmPanelFloats(cols);  // a multiple of 32
  for (int64_t i = 0; i < n; i += 8) {
    _mm256_storeu_ps(panel + i, _mm256_cvtph_ps(_mm_loadu_si128(
                                    reinterpret_cast<const __m128i*>(packed + i))));
  }
}

// Decode: lane j of 32 rows in four ymm accumulators, one 64-byte line of halves per step m.
__attribute__((target("avx2,fma,f16c"))) void GemvPackedF16PanelAvx2(
    const uint16_t* packed, const float* x, int64_t cols, int num_rows, float* y) {
  // Prefetch distance in halves (8 KiB), one line per step: on one Zen 3 core streaming 96 MiB
  // of panels, 12.3 GB/s against 10.7 with none and 7.5 with every other step as the AVX-512
  // kernel does (4-16 KiB ahead are within noise of each other).
  constexpr int64_t kAhead = 4096;
  const int64_t steps = GemmLaneSteps(cols);
  alignas(32) float stack[kFoldDepth * kGemmPanelRows];
  for (int p = 0; p < kGemmLanes; ++p) {
    const int j = kBitReversed[p];
    const uint16_t* wj = packed + p * steps * kGemmPanelRows;  // leaf order: one forward stream
    // The last step reads x only where the row has an element; past it both factors are 0,
    // as the canonical dot counts them (fma(0, 0, -0) is +0 there too).
    const int64_t live = j + (steps - 1) * kGemmLanes < cols ? steps : steps - 1;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t m = 0; m < steps; ++m) {
      _mm_prefetch(reinterpret_cast<const char*>(wj + m * kGemmPanelRows + kAhead), _MM_HINT_T0);
      const __m256 b = _mm256_set1_ps(m < live ? x[j + m * kGemmLanes] : 0.0f);
      const __m128i* w = reinterpret_cast<const __m128i*>(wj + m * kGemmPanelRows);
      a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(w)), b, a0);
      a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(w + 1)), b, a1);
      a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(w + 2)), b, a2);
      a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(w + 3)), b, a3);
    }
    const int depth = std::popcount(static_cast<unsigned>(p));
    const int merges = std::countr_one(static_cast<unsigned>(p));
    for (int k = 1; k <= merges; ++k) {
      const float* s = stack + (depth - k) * kGemmPanelRows;
      a0 = _mm256_add_ps(_mm256_loadu_ps(s), a0);
      a1 = _mm256_add_ps(_mm256_loadu_ps(s + 8), a1);
      a2 = _mm256_add_ps(_mm256_loadu_ps(s + 16), a2);
      a3 = _mm256_add_ps(_mm256_loadu_ps(s + 24), a3);
    }
    float* s = stack + (depth - merges) * kGemmPanelRows;
    _mm256_storeu_ps(s, a0);
    _mm256_storeu_ps(s + 8, a1);
    _mm256_storeu_ps(s + 16, a2);
    _mm256_storeu_ps(s + 24, a3);
  }
  std::memcpy(y, stack, sizeof(float) * num_rows);
}

}  // namespace

GemmKernels Avx2Kernels() {
  return {"avx2", &GemmPanelBlockAvx2, &UnpackF16PanelAvx2, &GemvPackedF16PanelAvx2};
}

}  // namespace prefixd::cpu::gemm_internal
