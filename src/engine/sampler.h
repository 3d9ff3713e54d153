// Sampler: picks the next token from one sequence's logits.
//
// Greedy (temperature <= 0): the argmax, the lowest id on ties, no randomness used.
// Otherwise the filters run in llama.cpp's default order, each keeping at least one token:
//
//   logits ─▶ top-k ─▶ top-p ─▶ min-p ─▶ ÷ temperature ─▶ softmax ─▶ draw
//
// top-p and min-p look at the softmax of the logits before temperature, as llama.cpp's chain
// does. The draw uses the sampler's own std::mt19937_64 seeded from `seed`, so the same
// parameters and the same logits give the same tokens.
//
// Thread safety: none; one sampler per sequence, used by the engine thread.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace prefixd {

struct SamplingParams {
  float temperature = 0;  // 0 or below: greedy
  int top_k = 0;          // keep the k most likely tokens; 0 (or below): off
  float top_p = 1;        // keep the most likely tokens whose probabilities sum to >= p; 1: off
  float min_p = 0;        // keep tokens with probability >= min_p * the top one's; 0: off
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // The chosen token id. Precondition: logits is not empty. NaN logits are never chosen
  // unless every logit is NaN (then id 0).
  int32_t Sample(std::span<const float> logits);

  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };

  // Fills weights_ with exp((logit - max logit) * scale) per candidate; returns their sum.
  double ComputeWeights(double scale);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;  // scratch, reused between calls
  std::vector<double> weights_;        // scratch
};

}  // namespace prefixd
