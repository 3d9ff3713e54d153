// AVX-512 dequantisers: bit-identical to the portable ones in quant_dequant.cc (each element
// goes through the same float operations in the same order, 16 lanes at a time).
// Internal to compute/cpu; callers use GetDequantRow.
#pragma once

#include "compute/cpu/quant_dequant.h"

namespace prefixd::cpu {

// The AVX-512 path for `type`, or null where there is none (f32, f16 have their own).
// Precondition for calling the result: the CPU has AVX-512 F, BW and VL.
DequantRowFn Avx512DequantPath(TensorType type);

}  // namespace prefixd::cpu
