// Quantisers from F32 into the weight types make-model writes: bf16, q8_0, q4_0, q4_1, q5_0,
// q5_1, q4_K, q5_K, q6_K (layouts in quant_blocks.h). They are simple round-to-nearest
// quantisers, not llama.cpp's error-minimising searches: good enough for random-weight test and benchmark
// models, and deterministic (exactly rounded float operations only, no libm), so the same
// input gives the same bytes on every machine.
//
// Bounds (pinned by compute/cpu/quant_test.cc): every element dequantises to within one
// quantisation step of its (super-)block, where a step is absmax/127 (q8_0), absmax/8 (q4_0),
// absmax/16 (q5_0), the block's range / 15 (q4_1) or / 31 (q5_1) plus the f16 rounding of
// its min, the widest sub-block's range / 15 (q4_K) or / 31 (q5_K), the largest sub-block absmax / 32
// (q6_K); bf16 keeps 8 significant bits.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>

#include "model/tensor_type.h"

namespace prefixd {

// True for the types QuantizeRow writes (f32 and f16 included).
bool CanQuantizeTo(TensorType type);

// Writes `n` elements of `x` as `type` into `out`, which holds TensorBytes(type, n) bytes.
// Preconditions: CanQuantizeTo(type), n a multiple of the type's block size.
void QuantizeRow(TensorType type, const float* x, int64_t n, uint8_t* out);

}  // namespace prefixd
