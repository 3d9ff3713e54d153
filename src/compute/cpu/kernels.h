// CPU kernels of the llama forward pass. Each output element has one fixed reduction order
// (see dot.h), and parallel loops split over output elements only, so results never depend
// on the batch, the chunking or the thread count.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "base/thread_pool.h"
#include "model/llama_model.h"

namespace prefixd::cpu {

// y[t * w.rows + r] = dot(row r of w, x + t * w.cols) for t < num_tokens, r < w.rows.
// `packed`: the weight's F16 rows packed by PackF16Panel (gemm.h), or null.
// `int_dot`: weights with an integer tile kernel (UsesIntDot) take x quantised to 8 bits and
// the integer dot of quant_int.h; otherwise (and for every other weight) the F32 reduction of
// the dequantised weights. Either way a token's outputs never depend on the batch.
// F16 weights take x rounded to F16 (round to nearest even, each element on its own, as
// RoundToF16): y = dot(row, float(half(x))). ggml does the same (F16's vec_dot_type is F16),
// so a product whose inputs are F16 gives llama.cpp's value up to the summation order; with
// F32 activations, the gap was up to 2^-11 of each element, enough to flip a MoE router's top-k at
// near-ties (issue 18). The products of two halves are exact in F32, so the reduction is the
// same canonical F32 one.
void MatMul(const Weight& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool,
            const uint16_t* packed = nullptr, bool int_dot = false);

// True where MatMul(..., int_dot = true) takes the integer path for `w`.
bool UsesIntDot(const Weight& w);

// out[i] = float(half(x[i])) for i < n (round to nearest even, as ggml's and F16C's F32 -> F16
// conversion): what MatMul multiplies F16 weights by. `out` may be x. Element-wise, so any
// split over pool's threads gives the same bits.
void RoundToF16(const float* x, int64_t n, float* out, ThreadPool& pool);

// Several products of the same input (Q, K and V; gate and up), each exactly as MatMul gives
// it, in one parallel loop: the threads split the union of their rows and meet once, and
// prefill packs the tokens once. Every weight must have x's width.
struct MatMulProduct {
  const Weight* w;
  float* y;
  const uint16_t* packed = nullptr;  // as MatMul's
};
void MatMulShared(std::span<const MatMulProduct> products, const float* x, int64_t num_tokens,
                  ThreadPool& pool, bool int_dot = false);

// out = x / sqrt(mean(x^2) + eps) * weight, over n elements. The sum of squares is taken in
// double, in order, as ggml does.
void RmsNorm(const float* x, const Weight& weight, int64_t n, float eps, float* out);

// Rotates the first `rope_dims` dims of one head vector in place for position `pos`. The
// angle of pair i is freq_scale * pos * freq_base^(-2i / rope_dims) / freq_factors[i];
// `freq_factors` (rope_dims / 2 divisors, Llama 3.1+ scaling) may be null, meaning all 1.
void Rope(float* head, int rope_dims, int64_t pos, float freq_base, float freq_scale,
          RopeStyle style, const float* freq_factors = nullptr);
// The same in two steps, so that a token's angles (the same for every head and layer) are
// computed once: the rope_dims / 2 cosines and sines of position `pos`, then their rotation of
// one head. Rope == RopeAngles + ApplyRope, bit for bit.
void RopeAngles(int rope_dims, int64_t pos, float freq_base, float freq_scale,
                const float* freq_factors, float* cos_out, float* sin_out);
void ApplyRope(float* head, int rope_dims, RopeStyle style, const float* cos_in,
               const float* sin_in);

// y[t * bias.cols + r] += bias[r] for t < num_tokens (the Q/K/V biases of qwen2).
void AddBias(const Weight& bias, int64_t num_tokens, float* y);

// Row `row` of a matrix of any supported weight type as floats (embedding lookup).
void RowToFloat(const Weight& w, int64_t row, float* out);

// SiLU(gate) * up, element-wise, into gate: gate / (1 + exp(-gate)) * up with exp_poly.h's
// exp, so the vector and portable paths agree bit for bit.
void SwiGlu(float* gate, const float* up, int64_t n);
using SwiGluFn = void (*)(float* gate, const float* up, int64_t n);
// Every path this CPU can run, named, for tests.
std::vector<std::pair<const char*, SwiGluFn>> RunnableSwiGluPaths();

// x[i] = x[i] * s, x[i] = x[i] + y[i] * s and x[i] = x[i] + a[i] * b[i] (each product rounded
// before the sum: no fused multiply-add), and x[i] = SiLU(x[i]) as SwiGlu computes it;
// vectorised where the CPU allows, the same bits on every path (DeltaNet's state update and
// convolution).
void ScaleRow(float* x, float s, int64_t n);
void AddScaledRow(float* x, const float* y, float s, int64_t n);
void AddProductRow(float* x, const float* a, const float* b, int64_t n);
void Silu(float* x, int64_t n);
using ScaleRowFn = void (*)(float* x, float s, int64_t n);
using AddScaledRowFn = void (*)(float* x, const float* y, float s, int64_t n);
using AddProductRowFn = void (*)(float* x, const float* a, const float* b, int64_t n);
using SiluFn = void (*)(float* x, int64_t n);
struct RowPaths {
  const char* name;
  ScaleRowFn scale;
  AddScaledRowFn add_scaled;
  AddProductRowFn add_product;
  SiluFn silu;
};
// Every path this CPU can run, named, for tests.
std::vector<RowPaths> RunnableRowPaths();

}  // namespace prefixd::cpu
