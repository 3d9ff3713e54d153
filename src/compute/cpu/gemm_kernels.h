// Internal to gemm*.cc: what the instruction-set files share with the packing code, and the
// kernels each gives back. Not part of the compute API.
#pragma once

#include "compute/cpu/gemm.h"

namespace prefixd::cpu::gemm_internal {

inline constexpr int kFoldDepth = 6;  // a binary counter over 32 leaves holds at most 5 partial tiles

// Leaf order of the fold: the canonical tree pairs lanes j and j + 16 first, then j and j + 8,
// ... so with j = reverse of p's five bits, leaves p and p + 1 are siblings, and so on up.
inline constexpr int kBitReversed[kGemmLanes] = {0, 16, 8, 24, 4, 20, 12, 28, 2, 18, 10, 26, 6, 22, 14, 30,
                                                 1, 17, 9, 25, 5, 21, 13, 29, 3, 19, 11, 27, 7, 23, 15, 31};

// Callers check the CPU first (HasBlockedGemm's conditions for each).
GemmKernels Avx512Kernels();  // avx512f, avx512bw, avx512vl, f16c, fma
GemmKernels Avx2Kernels();    // avx2, fma, f16c

}  // namespace prefixd::cpu::gemm_internal
