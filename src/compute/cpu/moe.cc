#include "compute/cpu/moe.h"

#include <algorithm>
#include <cstring>

#include "base/check.h"
#include "compute/cpu/exp_poly.h"
#include "compute/cpu/kernels.h"

namespace prefixd::cpu {

void RouteToken(const float* logits, int num_experts, int k, int32_t* experts, float* weights) {
  float max_logit = logits[0];
  for (int e = 1; e < num_experts; ++e) max_logit = std::max(max_logit, logits[e]);
  // Probabilities up to the common factor 1 / sum: the selection only compares them.
  thread_local std::vector<float> p;
  p.resize(num_experts);
  double sum = 0;
  for (int e = 0; e < num_experts; ++e) {
    p[e] = ExpPoly(logits[e] - max_logit);
    sum += p[e];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int e = 0; e < num_experts; ++e) p[e] *= inv;
  // k passes of "largest not yet taken": the first maximum wins, so ties go to the lower index.
  // The k weights' sum in double, rounded once, as ggml's sum_rows takes it (a float running
  // sum rounds k - 1 times: the same for k = 2, not for Qwen3-30B-A3B's 8).
  double picked_sum = 0;
  for (int j = 0; j < k; ++j) {
    int best = -1;
    for (int e = 0; e < num_experts; ++e) {
      if (std::find(experts, experts + j, e) != experts + j) continue;
      if (best < 0 || p[e] > p[best]) best = e;
    }
    experts[j] = best;
    weights[j] = p[best];
    picked_sum += p[best];
  }
  // llama.cpp clamps the sum at the smallest normal F16 before dividing.
  const float divisor = std::max(static_cast<float>(picked_sum), 6.103515625e-5f);
  for (int j = 0; j < k; ++j) weights[j] = weights[j] / divisor;
}

void MoeFfn::Run(const MoeWeights& w, const float* x, int64_t n, float* out, ThreadPool& pool,
                 bool int_dot) {
  const int ne = w.num_experts, k = w.num_used;
  const int64_t embd = w.router->cols;
  const int64_t eff = w.gate_exps->rows / ne;
  PREFIXD_CHECK(w.router->rows == ne && w.down_exps->rows == ne * embd, "MoE shapes");
  if (n <= 0) return;

  // Routing, per token.
  logits_.resize(n * ne);
  MatMul(*w.router, x, n, logits_.data(), pool, nullptr, int_dot);
  chosen_.resize(n * k);
  weights_.resize(n * k);
  for (int64_t t = 0; t < n; ++t) {
    RouteToken(&logits_[t * ne], ne, k, &chosen_[t * k], &weights_[t * k]);
  }

  // (token, slot) pairs grouped by expert, in token order within each expert.
  first_.assign(ne + 1, 0);
  for (int32_t e : chosen_) ++first_[e + 1];
  for (int e = 0; e < ne; ++e) first_[e + 1] += first_[e];
  members_.resize(n * k);
  {
    std::vector<int64_t> next(first_.begin(), first_.end() - 1);
    for (int64_t m = 0; m < n * k; ++m) members_[next[chosen_[m]]++] = m;
  }

  expert_out_.resize(n * k * embd);
  for (int e = 0; e < ne; ++e) {
    const int64_t m = first_[e + 1] - first_[e];
    if (m == 0) continue;  // only the chosen experts run
    const int64_t* rows = &members_[first_[e]];
    xs_.resize(m * embd);
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(&xs_[i * embd], x + rows[i] / k * embd, embd * sizeof(float));
    }
    const Weight gate = ExpertSlice(*w.gate_exps, ne, e);
    const Weight up = ExpertSlice(*w.up_exps, ne, e);
    const Weight down = ExpertSlice(*w.down_exps, ne, e);
    gate_.resize(m * eff);
    up_.resize(m * eff);
    ys_.resize(m * embd);
    const MatMulProduct gate_up[] = {{&gate, gate_.data()}, {&up, up_.data()}};
    MatMulShared(gate_up, xs_.data(), m, pool, int_dot);
    SwiGlu(gate_.data(), up_.data(), m * eff);  // element-wise: any split gives the same bits
    MatMul(down, gate_.data(), m, ys_.data(), pool, nullptr, int_dot);
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(&expert_out_[rows[i] * embd], &ys_[i * embd], embd * sizeof(float));
    }
  }

  // Each token's experts, weighted, summed in its top-k order.
  pool.ParallelFor(n, [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      float* o = out + t * embd;
      const float* y = &expert_out_[t * k * embd];
      const float w0 = weights_[t * k];
      for (int64_t i = 0; i < embd; ++i) o[i] = w0 * y[i];
      for (int j = 1; j < k; ++j) {
        const float wj = weights_[t * k + j];
        const float* yj = y + j * embd;
        for (int64_t i = 0; i < embd; ++i) o[i] = o[i] + wj * yj[i];
      }
    }
  });
}

}  // namespace prefixd::cpu
