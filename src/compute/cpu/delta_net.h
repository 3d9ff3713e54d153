// The gated DeltaNet layer of qwen35 on the CPU: linear attention with a short causal
// convolution and a recurrent state per sequence (llama.cpp's qwen35.cpp and
// delta-net-base.cpp compute the same function). For each token, in order:
//
//   [q k v] = SiLU(causal_conv(W_qkv x))      conv_kernel taps per channel, over the last
//                                             conv_kernel - 1 inputs (the conv state) and x
//   q, k   <- q / |q|, k / |k| per K head     (|.| = sqrt(sum of squares + eps))
//   beta    = sigmoid(W_beta x)               one per V head
//   decay   = exp(softplus(W_alpha x + dt) * a)   a = -exp(A_log) < 0, so decay in (0, 1)
//   per V head h (Q/K head h % num_k_heads), state S (head_dim x head_dim):
//     S      <- decay * S
//     d_j     = beta * (v_j - sum_i S_ij k_i)
//     S_ij   <- S_ij + k_i d_j
//     o_j     = sum_i S_ij q_i / sqrt(head_dim)
//   y = W_out (RmsNorm(o_h) * ssm_norm * SiLU(z_h) per V head), z = W_z x
//
// Exactness (ARCHITECTURE.md invariants 1 and 8): the recurrence runs token by token, so the
// state after position p is a function of the state after p - 1 and token p alone: a prompt
// cut anywhere (prefill chunks, a resumed snapshot) gives the same state and outputs bit for
// bit as a cold run. This is the chunked form with chunks of one token, the only chunk size
// aligned to every absolute position; the WY/chunked-parallel form with 64-token chunks was
// rejected because a cut inside a chunk changes its bits (its triangular solve sums in a
// different order), which the prefix cache cannot allow. Projections are MatMul (per token);
// the sums over head dims use GetDotF32's canonical order; the conv sums its taps in order;
// exp in sigmoid and SiLU is exp_poly.h's. Nothing depends on the batch, the chunking, the
// thread count or the instruction set.
//
// Thread safety: one DeltaNet per thread of calls (it holds scratch); kernels fan out to `pool`.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/thread_pool.h"
#include "model/llama_model.h"

namespace prefixd::cpu {

// A weight and its packed F16 copy for the panel kernels (gemm.h), or null.
struct PackedWeight {
  const Weight* w = nullptr;
  const uint16_t* packed = nullptr;
};

// One DeltaNet layer's weights (LayerWeights' ssm_*).
struct DeltaNetWeights {
  PackedWeight qkv, z, beta, alpha, out;
  const Weight* conv = nullptr;  // {conv_kernel, conv_dim}
  const Weight* dt = nullptr;    // {num_v_heads}
  const Weight* a = nullptr;     // {num_v_heads}
  const Weight* norm = nullptr;  // {head_dim}
};

// One sequence's tokens in a step and its state in the layer being run.
struct DeltaNetRun {
  int64_t first = 0;  // index of its first token among the step's tokens
  int64_t count = 0;  // its tokens, consecutive positions in order
  // conv_dim x (conv_kernel - 1): channel c's last inputs, oldest first.
  float* conv_state = nullptr;
  // num_v_heads matrices of head_dim x head_dim; in head h, row j (a value dim) holds S_ij
  // over key dims i (llama.cpp's layout, so a row is contiguous for the dot products).
  float* ssm_state = nullptr;
  // States to copy out after the run's first `after` tokens (increasing; after < count), in
  // conv_state's and ssm_state's layouts.
  struct Capture {
    int64_t after = 0;
    float* conv_state = nullptr;
    float* ssm_state = nullptr;
  };
  std::span<const Capture> captures;
};

class DeltaNet {
 public:
  DeltaNet(const DeltaNetShape& shape, float rms_eps) : shape_(shape), eps_(rms_eps) {}

  // out (n rows of embd) = the layer applied to x (n rows of embd, already normed), advancing
  // each run's state past its tokens. Runs cover disjoint token ranges and states. `int_dot`
  // as MatMul's. `out` must not overlap x.
  void Run(const DeltaNetWeights& w, const float* x, int64_t n, std::span<const DeltaNetRun> runs,
           float* out, ThreadPool& pool, bool int_dot);

 private:
  // mixed_ -> conv_ (SiLU of the causal convolution), advancing the conv states.
  void Convolve(const Weight& taps, std::span<const DeltaNetRun> runs, ThreadPool& pool);
  // Per token: L2 norms of Q and K heads in conv_, beta_ to sigmoid, alpha_ to the decay.
  void PrepareHeads(const DeltaNetWeights& w, int64_t n, ThreadPool& pool);
  // The delta rule over each run's tokens, per V head, into o_.
  void Recur(std::span<const DeltaNetRun> runs, ThreadPool& pool);
  // o_ -> RmsNorm(o) * norm * SiLU(z), per V head, into z_.
  void GateOutput(const Weight& norm, int64_t n, ThreadPool& pool);

  DeltaNetShape shape_;
  float eps_;
  // Scratch, per step: n rows each.
  std::vector<float> mixed_, conv_, z_, beta_, alpha_, o_;
};

}  // namespace prefixd::cpu
