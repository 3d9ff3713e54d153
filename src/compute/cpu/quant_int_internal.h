// The per-instruction-set paths behind quant_int.h's dispatch (quant_int.cc). Each gives the
// portable path's bits (quant_int_test.cc). Only call a path on a CPU that has its features.
#pragma once

#include <cstdint>

#include "compute/cpu/quant_int.h"

namespace prefixd::cpu {

// AVX2 + FMA + F16C (quant_int_avx2.cc).
void QuantizeActivationAvx2(QuantActivation format, const float* x, int64_t n, void* out);
void IntTileQ8_0Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void IntTileQ4_0Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void IntTileQ4_1Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void IntTileQ5_0Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void IntTileQ5_1Avx2(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);

// AVX-512 F/BW/VL (quant_int_avx512.cc); the tiles also need AVX512-VNNI.
void QuantizeActivationAvx512(QuantActivation format, const float* x, int64_t n, void* out);
void IntTileQ8_0Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void IntTileQ4_0Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void IntTileQ4_1Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void IntTileQ5_0Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);
void IntTileQ5_1Vnni(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);

// The canonical fold of quant_int.h's eight partial sums:
// (acc[0..4) + acc[4..8)), then (0,1) + (2,3), then 0 + 1.
inline float FoldAcc8(const float* acc) {
  float a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = acc[i] + acc[i + 4];
  for (int i = 0; i < 2; ++i) b[i] = a[i] + a[i + 2];
  return b[0] + b[1];
}

}  // namespace prefixd::cpu
