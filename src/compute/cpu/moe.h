// The mixture-of-experts FFN of qwen3moe on the CPU: a router picks each token's experts,
// only those experts run, and their outputs are summed with the router's weights.
//
// Batch invariance (ARCHITECTURE.md invariant 1): tokens are grouped by expert so that each
// expert's matrices stream once per step, but every product is a MatMul over the expert's 2-D
// slice, whose output for a token depends on that token's row alone; routing is per token; and
// a token's experts are summed in its own top-k order. So a token's output has the same bits
// whatever else is in the batch, the chunking and the thread count.
//
// Thread safety: one MoeFfn per thread of calls (it holds scratch); kernels fan out to `pool`.
#pragma once

#include <cstdint>
#include <vector>

#include "base/thread_pool.h"
#include "model/llama_model.h"

namespace prefixd::cpu {

// One token's routing from its router logits: the `k` experts of largest softmax probability
// (ties to the lower index), in descending order of probability, into `experts`, and their
// probabilities divided by the sum of the k (taken in double and rounded once, then clamped
// below at 2^-14, as llama.cpp does) into `weights`. The softmax uses exp_poly.h's exp and a
// sum in double, in expert order, then multiplies by the float reciprocal (ggml's soft_max).
void RouteToken(const float* logits, int num_experts, int k, int32_t* experts, float* weights);

// The MoE weights of one layer (LayerWeights' ffn_gate_inp and the three expert tensors).
struct MoeWeights {
  const Weight* router;  // {embd} -> num_experts logits
  const Weight* gate_exps;
  const Weight* up_exps;
  const Weight* down_exps;
  int num_experts = 0;
  int num_used = 0;

  static MoeWeights Of(const LayerWeights& lw, const Hparams& hp) {
    return {&lw.ffn_gate_inp, &lw.ffn_gate_exps, &lw.ffn_up_exps, &lw.ffn_down_exps,
            hp.num_experts, hp.num_experts_used};
  }
};

class MoeFfn {
 public:
  // out[t * embd + i], for the n tokens of x (rows of embd = router->cols floats):
  //   sum over j < k, in the token's top-k order, of weight_j * down_e(SiLU(gate_e x) * up_e x)
  // with e its j-th expert; the sum starts from weight_0 * y_0 and adds each next term.
  // `int_dot` as MatMul's. `out` must not overlap x.
  void Run(const MoeWeights& w, const float* x, int64_t n, float* out, ThreadPool& pool,
           bool int_dot);

  // The experts each token of the last Run chose, k per token in top-k order (for tests).
  const std::vector<int32_t>& chosen() const { return chosen_; }

 private:
  std::vector<float> logits_, weights_;
  std::vector<int32_t> chosen_;
  std::vector<int64_t> first_, members_;  // tokens' (token * k + slot) grouped by expert
  std::vector<float> xs_, gate_, up_, ys_;
  std::vector<float> expert_out_;  // n * k rows of embd: expert j's output for token t
};

}  // namespace prefixd::cpu
