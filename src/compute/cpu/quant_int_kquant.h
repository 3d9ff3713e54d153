// Integer tile kernels for the K-quant weight types (Q4_K, Q5_K, Q6_K) over Q8x256 activations
// (issue 15). quant_int.h fixes the activation format and the canonical reduction; this file
// lists the paths that implement it: a portable one ("generic"), AVX2 (avx2, fma, f16c) and
// AVX-512 with VNNI (avx512f/bw/vl/vnni; vpdpwssd). Every path gives the
// generic one's bits: the integer super-block sums are exact, and the float steps per super-block
// are the same IEEE operations in the same order (quant_int_kquant_test.cc).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "compute/cpu/quant_int.h"

namespace prefixd::cpu {

// The tile kernels this CPU can run for the type, "generic" first, fastest last. Paths the CPU
// lacks (or that PREFIXD_CPU hides) are left out.
std::vector<std::pair<const char*, IntTileFn>> IntTilePathsQ4K();
std::vector<std::pair<const char*, IntTileFn>> IntTilePathsQ5K();
std::vector<std::pair<const char*, IntTileFn>> IntTilePathsQ6K();

// A portable Q8x256 quantiser exactly as quant_int.h describes it (d = amax / 127,
// q = clamp(lrintf(x * (1 / d)), -127, 127), bsums over 16), for tests and benchmarks while
// QuantizeActivation is elsewhere. `n` is a multiple of 256; `out` holds n / 256 blocks.
void QuantizeQ8x256Portable(const float* x, int64_t n, Q8x256Block* out);

namespace kquant_internal {

// A Q4_K/Q5_K block's eight 6-bit scales and mins as the bytes of two 64-bit words (byte j is
// sub-block j's value): GetScaleMinK4 for all j at once.
inline void UnpackScalesK4(const uint8_t* s, uint64_t* sc, uint64_t* m) {
  uint32_t a, b, c;
  std::memcpy(&a, s, 4);
  std::memcpy(&b, s + 4, 4);
  std::memcpy(&c, s + 8, 4);
  const uint32_t k6 = 0x3f3f3f3fu, k4 = 0x0f0f0f0fu, k2 = 0x30303030u;
  // Bits 6..7 of each byte of a (b) become bits 4..5 of the same byte by >> 2.
  *sc = (a & k6) | (static_cast<uint64_t>((c & k4) | ((a >> 2) & k2)) << 32);
  *m = (b & k6) | (static_cast<uint64_t>(((c >> 4) & k4) | ((b >> 2) & k2)) << 32);
}

// The vector paths, defined in quant_int_kquant_avx2.cc / _avx512.cc. Callers check the CPU.
void Q4KTileAvx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                 int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void Q5KTileAvx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                 int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void Q6KTileAvx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                 int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void Q4KTileAvx512(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                   int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void Q5KTileAvx512(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                   int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void Q6KTileAvx512(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                   int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);

}  // namespace kquant_internal
}  // namespace prefixd::cpu
