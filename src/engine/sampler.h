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
// With a TokenConstraint (token_constraint.h) the same choice is made among the tokens the
// constraint allows, as if every other logit were -inf:
// - greedy: the best allowed token: among those the constraint lists when that is cheap
//   (few are allowed); else the argmax if allowed, else the first allowed of the next 64 most
//   likely, else the best of all the allowed ones (the constraint lists them, at a cost);
// - no filter (top-k, top-p, min-p off): up to 4 draws over the whole vocabulary, the first
//   allowed one kept, else one draw among the allowed tokens. Exact: with A = P(allowed), an
//   allowed token t comes out with p(t) (1 + (1-A) + ... + (1-A)^3) + (1-A)^4 p(t) / A
//   = p(t) / A;
// - with filters: the filters and the draw run over the allowed tokens only (all listed).
//
// Thread safety: none; one sampler per sequence, used by the engine thread.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace prefixd {

class TokenConstraint;

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
  // The chosen token among those `constraint` allows, or -1 when it allows none (the caller
  // ends the sequence). `constraint` null: Sample(logits).
  int32_t Sample(std::span<const float> logits, TokenConstraint* constraint);

  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
  };

  // Fills candidates_ with every non-NaN logit.
  void FillCandidates(std::span<const float> logits);
  // Top-k, top-p, min-p, temperature and the draw over candidates_ (not empty).
  int32_t SampleCandidates();
  // Greedy among the allowed tokens: the argmax, then the next most likely ones, then the
  // best of all the allowed ones (listed by the constraint).
  int32_t FirstAllowed(std::span<const float> logits, TokenConstraint& constraint);
  // The most likely of `ids` (lowest id on ties); -1 when empty.
  int32_t BestOf(std::span<const float> logits, const std::vector<int32_t>& ids);

  // Fills weights_ with exp((logit - max logit) * scale) per candidate; returns their sum.
  double ComputeWeights(double scale);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;  // scratch, reused between calls
  std::vector<double> weights_;        // scratch
  std::vector<int32_t> allowed_;       // scratch: the constraint's list
};

}  // namespace prefixd
