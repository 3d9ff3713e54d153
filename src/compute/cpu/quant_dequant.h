// Dequantisation of weight rows to F32, for every weight type the CPU backend computes with:
// f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K (layouts in model/quant_blocks.h).
//
// Dequantisation is exact per element (each value is a fixed sequence of float operations on
// its block's integers and f16 scales, the same on every path), so kernels that dequantise a
// small tile and feed it to the canonical F32 reduction of dot.h keep ARCHITECTURE.md
// invariant 1: decode and prefill see the same F32 weights and reduce them in the same order.
// The AVX-512 paths produce the same bits as the portable ones (quant_test.cc).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "model/tensor_type.h"

namespace prefixd::cpu {

// out[i] = element i of a row of `n` elements of the function's type, stored at `row`.
// Precondition: n is a multiple of the type's block size.
using DequantRowFn = void (*)(const uint8_t* row, int64_t n, float* out);

// dot(row dequantised, x) over n elements, in dot.h's canonical order, without writing the
// row out: the same bits as GetDotF32() over the output of GetDequantRow.
using QuantDotFn = float (*)(const uint8_t* row, const float* x, int64_t n);

// The fused dot for `type` on this CPU, or null where there is none (then dequantise a row and
// use GetDotF32). Only where GetDotF32 runs the AVX-512 path.
QuantDotFn GetQuantDot(TensorType type);

// True for the types GetDequantRow serves.
bool CanDequantize(TensorType type);

// The fastest path this CPU runs for `type`. Precondition: CanDequantize(type).
DequantRowFn GetDequantRow(TensorType type);

// Every path this CPU can run for `type`, named ("generic" first), for tests.
std::vector<std::pair<const char*, DequantRowFn>> RunnableDequantPaths(TensorType type);

}  // namespace prefixd::cpu
