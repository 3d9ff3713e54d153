#include "engine/sampler.h"

#include <algorithm>
#include <cmath>

#include "engine/token_constraint.h"

namespace prefixd {
namespace {

// Most likely first; equal logits, the lower id first (so filters that keep one token agree
// with greedy).
struct MoreLikely {
  template <typename C>
  bool operator()(const C& a, const C& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

// Unconstrained draws tried before the allowed tokens are listed (unfiltered sampling).
constexpr int kMaxDrawAttempts = 4;

}  // namespace

double Sampler::ComputeWeights(double scale) {
  float max_logit = candidates_.front().logit;
  for (const Candidate& c : candidates_) max_logit = std::max(max_logit, c.logit);
  weights_.resize(candidates_.size());
  double total = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    const float logit = candidates_[i].logit;
    if (std::isinf(max_logit)) {
      // All -inf: uniform. Some +inf: uniform over those (inf - inf would be NaN).
      weights_[i] = logit == max_logit ? 1.0 : 0.0;
    } else {
      weights_[i] = std::exp((static_cast<double>(logit) - max_logit) * scale);
    }
    total += weights_[i];
  }
  return total;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

int32_t Sampler::Sample(std::span<const float> logits) {
  if (params_.temperature <= 0) {
    int32_t best = -1;
    for (size_t i = 0; i < logits.size(); ++i) {
      if (std::isnan(logits[i])) continue;
      if (best < 0 || logits[i] > logits[best]) best = static_cast<int32_t>(i);
    }
    return best < 0 ? 0 : best;
  }

  FillCandidates(logits);
  if (candidates_.empty()) return 0;
  return SampleCandidates();
}

void Sampler::FillCandidates(std::span<const float> logits) {
  candidates_.clear();
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!std::isnan(logits[i])) candidates_.push_back({static_cast<int32_t>(i), logits[i]});
  }
}

int32_t Sampler::SampleCandidates() {
  bool sorted = false;

  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < candidates_.size()) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(),
                      MoreLikely{});
    candidates_.resize(params_.top_k);
    sorted = true;
  }

  if (params_.top_p < 1 && candidates_.size() > 1) {
    if (!sorted) std::sort(candidates_.begin(), candidates_.end(), MoreLikely{});
    sorted = true;
    const double total = ComputeWeights(1.0);
    double cumulative = 0;
    size_t keep = candidates_.size();
    for (size_t i = 0; i < candidates_.size(); ++i) {
      cumulative += weights_[i] / total;
      if (cumulative >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    candidates_.resize(keep);
  }

  if (params_.min_p > 0 && candidates_.size() > 1) {
    // p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p).
    float max_logit = candidates_.front().logit;
    for (const Candidate& c : candidates_) max_logit = std::max(max_logit, c.logit);
    const double threshold = static_cast<double>(max_logit) + std::log(params_.min_p);
    const auto end =
        std::remove_if(candidates_.begin(), candidates_.end(),
                       [threshold](const Candidate& c) { return c.logit < threshold; });
    // The top token always passes (min_p <= 1); with min_p > 1 keep it alone.
    if (end == candidates_.begin()) {
      const auto top = std::min_element(candidates_.begin(), candidates_.end(), MoreLikely{});
      candidates_ = {*top};
    } else {
      candidates_.erase(end, candidates_.end());
    }
  }

  if (candidates_.size() == 1) return candidates_.front().id;

  // Softmax of logit / temperature, then one draw over the cumulative weights.
  const double total = ComputeWeights(1.0 / static_cast<double>(params_.temperature));
  // 53 random bits -> [0, 1); written out rather than std::uniform_real_distribution, whose
  // algorithm the standard leaves to the library, so a seed gives the same tokens everywhere.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
  double cumulative = 0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    cumulative += weights_[i];
    if (u < cumulative) return candidates_[i].id;
  }
  return candidates_.back().id;
}

int32_t Sampler::FirstAllowed(std::span<const float> logits, TokenConstraint& constraint) {
  // The argmax alone first: inside a string nearly every token is allowed, so this is the
  // common case and costs one pass over the logits, no sort.
  int32_t best = -1;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (std::isnan(logits[i])) continue;
    if (best < 0 || logits[i] > logits[best]) best = static_cast<int32_t>(i);
  }
  if (best < 0) return -1;
  if (constraint.Allows(best)) return best;
  FillCandidates(logits);
  // Then the next most likely ones; past those, the allowed tokens are rare (the end of a
  // string at its maxLength, where only short tokens fit): listing them all, with shared
  // prefixes fed once, is cheaper than testing the sorted vocabulary one by one.
  const size_t chunk = std::min<size_t>(64, candidates_.size());
  std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<std::ptrdiff_t>(chunk), candidates_.end(),
                    MoreLikely{});
  for (size_t i = 0; i < chunk; ++i) {
    if (constraint.Allows(candidates_[i].id)) return candidates_[i].id;
  }
  constraint.ListAllAllowed(&allowed_);
  return BestOf(logits, allowed_);
}

int32_t Sampler::BestOf(std::span<const float> logits, const std::vector<int32_t>& ids) {
  candidates_.clear();
  for (int32_t id : ids) {
    const float logit = logits[static_cast<size_t>(id)];
    if (!std::isnan(logit)) candidates_.push_back({id, logit});
  }
  if (candidates_.empty()) return ids.empty() ? -1 : *std::min_element(ids.begin(), ids.end());
  return std::min_element(candidates_.begin(), candidates_.end(), MoreLikely{})->id;
}

int32_t Sampler::Sample(std::span<const float> logits, TokenConstraint* constraint) {
  if (constraint == nullptr) return Sample(logits);
  const bool greedy = params_.temperature <= 0;
  bool listed = constraint->ListAllowed(&allowed_);
  if (!listed && greedy) return FirstAllowed(logits, *constraint);
  if (!listed) {
    const bool filtered = params_.top_k > 0 || params_.top_p < 1 || params_.min_p > 0;
    if (!filtered) {
      // Rejection sampling, then the masked draw: still exact (see sampler.h), and inside a
      // string, where most of the probability is allowed, a retry costs far less than
      // listing the allowed tokens.
      for (int attempt = 0; attempt < kMaxDrawAttempts; ++attempt) {
        const int32_t drawn = Sample(logits);
        if (constraint->Allows(drawn)) return drawn;
      }
    }
    constraint->ListAllAllowed(&allowed_);
  }
  if (greedy) return BestOf(logits, allowed_);
  candidates_.clear();
  for (int32_t id : allowed_) {
    const float logit = logits[static_cast<size_t>(id)];
    if (!std::isnan(logit)) candidates_.push_back({id, logit});
  }
  if (candidates_.empty()) return allowed_.empty() ? -1 : *std::min_element(allowed_.begin(), allowed_.end());
  // In id order, as the unconstrained draw sees them, so a seed's draws do not depend on the
  // order the constraint listed them in.
  std::sort(candidates_.begin(), candidates_.end(), [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  return SampleCandidates();
}

}  // namespace prefixd
