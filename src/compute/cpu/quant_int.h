// Integer dot products of quantised weight rows with 8-bit quantised activations (issue 15):
// the fast path for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights. The dequantise-to-F32 path
// (quant_dequant.h) stays as the reference; this path has its own numerics id, so KV blocks
// computed by one are never served to the other.
//
// Activations. Each token's input row is quantised once per matrix product (MatMulShared
// quantises it once for all the products that share it), in one of two formats:
//
//   Q8x32  (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): blocks of 32.   d = amax / 127, q = round(x * (1 / d)),
//                             sum = sum of the 32 q.
//   Q8x256 (for K-quants):    blocks of 256.  d = amax / 127, q = round(x * (1 / d)),
//                             bsums[g] = sum of q over elements 16g .. 16g + 15.
//
// amax is the largest |x| of the block; a block whose amax is 0 has d = 0 and every q = 0.
// `round` is round-half-to-even in float (lrintf / cvtps2dq under the default rounding mode),
// then clamped to [-127, 127]. Every step is one IEEE float operation, so every path gives the
// same bytes.
//
// Canonical reduction of one output element (ARCHITECTURE.md invariant 1). Integer sums are
// exact, so their order never matters; only the float steps are fixed:
//
//   Q8_0, Q4_0, Q5_0, Q4_1, Q5_1: for weight block b (32 elements), isum_b = exact integer
//     sum of w_int * q (w_int = q for Q8_0, level - 8 for Q4_0, level - 16 for Q5_0, the level
//     0..15 / 0..31 itself for Q4_1 / Q5_1) and t_b = (d_w * d_x) * float(isum_b): two
//     multiplies in that order, d_w the block's f16 scale as float, no FMA. Q4_1 / Q5_1 then
//     add their min term: t_b = t_b + (m_w * d_x) * float(sum), m_w the block's f16 min, sum
//     the activation block's (two more products, then one add). Eight float
//     partial sums, acc[b % 8] += t_b in block order starting from +0.0f, folded as
//     (acc[0..4) + acc[4..8)), then (0,1) + (2,3), then 0 + 1 (lane i + lane i + half).
//   Q4_K, Q5_K (super-block b of 256): S1 = exact sum over the 8 sub-blocks j of
//     sc_j * sum(q * q_x), S2 = exact sum over j of m_j * (bsums[2j] + bsums[2j + 1]);
//     t_b = (d_x * d) * float(S1) - (d_x * dmin) * float(S2), in that order (two products,
//     then one subtraction), d and dmin the f16 values as float.
//   Q6_K (super-block b of 256): S = exact sum over the 16 groups j of
//     sc_j * sum((q - 32) * q_x); t_b = (d_x * d) * float(S).
//   K-quants accumulate acc += t_b in super-block order from +0.0f (one float sum).
//
// So a token's output depends only on its own input row and the weight row: never on the
// batch, the tile, the thread or the instruction set. Prefill (many tokens) and decode (one)
// use the same tile kernels, so cache hits stay exact.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "model/tensor_type.h"

namespace prefixd::cpu {

struct Q8x32Block {
  float d;
  int32_t sum;
  int8_t q[32];
};
static_assert(sizeof(Q8x32Block) == 40);

struct Q8x256Block {
  float d;
  int8_t q[256];
  int16_t bsums[16];
};
static_assert(sizeof(Q8x256Block) == 292);

enum class QuantActivation { kNone, kQ8x32, kQ8x256 };

// The activation format `type`'s integer kernels take, or kNone where there are none.
QuantActivation IntDotActivation(TensorType type);

// Bytes one token's quantised row of `n` elements takes in `format`.
int64_t QuantActivationBytes(QuantActivation format, int64_t n);

// Quantises one row of `n` floats (a multiple of 32, or of 256 for kQ8x256) into `out`
// (QuantActivationBytes(format, n) bytes), exactly as described above, on the fastest path.
void QuantizeActivation(QuantActivation format, const float* x, int64_t n, void* out);

// y[t * ldy + r] = dot(weight row r, token t) for r < num_rows, t < num_tokens, in the
// canonical order above. Weight row r starts at w + r * row_bytes; token t's quantised row at
// xq + t * xq_stride (bytes); every row has n elements. Any num_rows and num_tokens >= 1.
using IntTileFn = void (*)(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                           int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy);

// The fastest tile kernel this CPU runs for `type`, or null where the type has none.
IntTileFn GetIntTile(TensorType type);

// Every path this CPU can run for `type`, named ("generic" first), for tests; paths of other
// CPUs are left out (tests say which they skipped).
std::vector<std::pair<const char*, IntTileFn>> RunnableIntTilePaths(TensorType type);
std::vector<std::pair<const char*, void (*)(QuantActivation, const float*, int64_t, void*)>>
RunnableQuantizeActivationPaths();

}  // namespace prefixd::cpu
