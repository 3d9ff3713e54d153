// AVX-512 dequantisers and fused dequantise-and-dot kernels: bit-identical to the portable ones in quant_dequant.cc (each element
// goes through the same float operations in the same order, 16 lanes at a time).
// Internal to compute/cpu; callers use GetDequantRow.
#pragma once

#include "compute/cpu/quant_dequant.h"

namespace prefixd::cpu {

// The AVX-512 path for `type`, or null where there is none (f32, f16 have their own).
// Precondition for calling the result: the CPU has AVX-512 F, BW and VL.
DequantRowFn Avx512DequantPath(TensorType type);

// dot(dequantised row, x) over `n` elements (a multiple of 32), reduced exactly as dot.h's
// DotF32Avx512 reduces the dequantised row, without writing the row out; null for types
// without one (f32, f16, bf16). Same precondition.
QuantDotFn Avx512QuantDot(TensorType type);

}  // namespace prefixd::cpu
