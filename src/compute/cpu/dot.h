// Dot products of a weight row with an F32 activation vector, in one canonical reduction
// order shared by every instruction-set path:
//
//   32 partial sums, lane j accumulating elements k = j, j+32, j+64, ... by fused
//   multiply-add (elements past n count as zeros), then folded pairwise:
//   lanes [0,16)+[16,32), [0,8)+[8,16), [0,4)+[4,8), [0,2)+[2,4), 0+1.
//
// So a dot's value depends only on its two inputs: never on the batch it rides in, the tile
// or thread that computes it, or whether the AVX-512, AVX2 or portable path ran
// (ARCHITECTURE.md invariant 1).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace prefixd::cpu {

using DotF32Fn = float (*)(const float* w, const float* x, int64_t n);
using DotF16Fn = float (*)(const uint16_t* w, const float* x, int64_t n);

// The fastest path this CPU runs (chosen once, from base/cpu_features.h).
DotF32Fn GetDotF32();
DotF16Fn GetDotF16();

// out[i] = dot(w_i, x, n) for four rows, each exactly as GetDotF16() computes it.
using DotF16x4Fn = void (*)(const uint16_t* w0, const uint16_t* w1, const uint16_t* w2,
                            const uint16_t* w3, const float* x, int64_t n, float* out);
DotF16x4Fn GetDotF16x4();

// The portable paths, for tests that compare them with the vector ones.
float DotF32Generic(const float* w, const float* x, int64_t n);
float DotF16Generic(const uint16_t* w, const float* x, int64_t n);

// out[i] = half-to-float(in[i]) for i < n (exact: every half is a float).
void ConvertF16ToF32(const uint16_t* in, float* out, int64_t n);
// out[i] = FloatToHalf(in[i]) for i < n (round to nearest even), by F16C where present: the
// same bits either way.
void ConvertF32ToF16(const float* in, uint16_t* out, int64_t n);

// Every path this CPU can run, named, for tests that compare them all with the portable one.
std::vector<std::pair<const char*, DotF32Fn>> RunnableDotF32Paths();
std::vector<std::pair<const char*, DotF16Fn>> RunnableDotF16Paths();

}  // namespace prefixd::cpu
