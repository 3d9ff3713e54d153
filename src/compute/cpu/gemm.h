// Register-blocked matrix products for prefill: many tokens against the same weight rows.
//
// Each output element is reduced exactly as the dot products of dot.h reduce it (32 lanes,
// the same fold), so a token's result is the same bits whether it went through this kernel
// (prefill, several tokens) or through a single dot (decode, one token).
#pragma once

#include <cstdint>

namespace prefixd::cpu {

// True when this CPU runs the blocked kernel (AVX-512F).
bool HasBlockedGemm();

// y[t * y_stride + r] = dot(w + r * cols, x + t * cols) for r < num_rows, t < num_tokens,
// with F32 weight rows. Precondition: HasBlockedGemm().
void GemmF32Blocked(const float* w, int64_t num_rows, int64_t cols, const float* x,
                    int64_t num_tokens, float* y, int64_t y_stride);

}  // namespace prefixd::cpu
