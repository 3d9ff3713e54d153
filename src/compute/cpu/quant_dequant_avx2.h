// AVX2 dequantisers: bit-identical to the portable ones in quant_dequant.cc (each element goes
// through the same float operations in the same order, 8 lanes at a time). They serve decode
// on cores without AVX-512, where a row is dequantised into scratch and reduced by the AVX2 F32
// dot; without them that scratch row was filled one scalar element at a time, slower than
// reading the weights from memory.
// Internal to compute/cpu; callers use GetDequantRow.
#pragma once

#include "compute/cpu/quant_dequant.h"

namespace prefixd::cpu {

// The AVX2 path for `type` (bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K,
// q5_K, q6_K), or null where there is none.
// Precondition for calling the result: the CPU has AVX2.
DequantRowFn Avx2DequantPath(TensorType type);

}  // namespace prefixd::cpu
