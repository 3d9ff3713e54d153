#include "engine/token_constraint.h"

#include <algorithm>

#include "base/check.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

TokenTexts::TokenTexts(const Tokenizer& tokenizer) {
  texts_.reserve(static_cast<size_t>(tokenizer.vocab_size()));
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) texts_.push_back(tokenizer.Piece(id));
  Index();
}

TokenTexts::TokenTexts(std::vector<std::string> texts) : texts_(std::move(texts)) { Index(); }

void TokenTexts::Index() {
  for (size_t id = 0; id < texts_.size(); ++id) {
    if (texts_[id].empty()) continue;  // control tokens: never allowed
    by_first_byte_[static_cast<uint8_t>(texts_[id][0])].push_back(static_cast<int32_t>(id));
    sorted_.push_back(static_cast<int32_t>(id));
  }
  // std::string compares bytes as unsigned char, so each first byte's texts are one run.
  std::stable_sort(sorted_.begin(), sorted_.end(), [this](int32_t a, int32_t b) { return texts_[a] < texts_[b]; });
  size_t at = 0;
  for (int b = 0; b < 256; ++b) {
    const size_t begin = at;
    while (at < sorted_.size() && static_cast<uint8_t>(texts_[sorted_[at]][0]) == b) ++at;
    first_byte_range_[b] = {begin, at};
  }
}

MatcherConstraint::MatcherConstraint(std::shared_ptr<const TokenTexts> texts,
                                     std::unique_ptr<ByteMatcher> matcher, int32_t end_id)
    : texts_(std::move(texts)), matcher_(std::move(matcher)), end_id_(end_id), scratch_(matcher_->Clone()) {}

void MatcherConstraint::RefreshFirstBytes() {
  if (first_fresh_) return;
  num_first_tokens_ = 0;
  for (int b = 0; b < 256; ++b) {
    const auto& ids = texts_->starting_with(static_cast<uint8_t>(b));
    if (ids.empty()) {
      first_allowed_[b] = false;
      continue;
    }
    scratch_->CopyFrom(*matcher_);
    first_allowed_[b] = scratch_->Feed(static_cast<uint8_t>(b));
    if (first_allowed_[b]) num_first_tokens_ += static_cast<int64_t>(ids.size());
  }
  first_fresh_ = true;
}

bool MatcherConstraint::Allows(int32_t token) {
  if (token < 0 || token >= texts_->size() || ended_) return false;
  if (token == end_id_) return EndAllowed();
  const std::string_view text = texts_->text(token);
  if (text.empty()) return false;
  RefreshFirstBytes();
  // Most candidates fail on their first byte; the table answers those without a copy.
  if (!first_allowed_[static_cast<uint8_t>(text[0])]) return false;
  if (text.size() == 1) return true;
  scratch_->CopyFrom(*matcher_);
  for (char c : text) {
    if (!scratch_->Feed(static_cast<uint8_t>(c))) return false;
  }
  return true;
}

ByteMatcher& MatcherConstraint::Level(size_t depth) {
  while (levels_.size() <= depth) levels_.push_back(matcher_->Clone());
  return *levels_[depth];
}

bool MatcherConstraint::Walk(size_t lo, size_t hi, size_t depth, size_t budget, std::vector<int32_t>* out) {
  const std::vector<int32_t>& sorted = texts_->sorted();
  // A text that is the prefix itself sorts first.
  while (lo < hi && texts_->text(sorted[lo]).size() == depth) out->push_back(sorted[lo++]);
  if (out->size() > budget) return false;
  while (lo < hi) {
    const uint8_t c = static_cast<uint8_t>(texts_->text(sorted[lo])[depth]);
    const size_t end = static_cast<size_t>(
        std::partition_point(sorted.begin() + static_cast<std::ptrdiff_t>(lo), sorted.begin() + static_cast<std::ptrdiff_t>(hi),
                             [&](int32_t id) { return static_cast<uint8_t>(texts_->text(id)[depth]) <= c; }) -
        sorted.begin());
    ByteMatcher& next = Level(depth + 1);
    next.CopyFrom(Level(depth));
    if (next.Feed(c) && !Walk(lo, end, depth + 1, budget, out)) return false;
    lo = end;
  }
  return true;
}

bool MatcherConstraint::ListAllowed(std::vector<int32_t>* out) {
  RefreshFirstBytes();
  int num_first_bytes = 0;
  for (bool allowed : first_allowed_) num_first_bytes += allowed;
  // Many first bytes (inside a string): the listing would cost more than the lazy scan, in
  // which greedy usually stops at the first candidate.
  if (num_first_bytes > 8 && num_first_tokens_ > texts_->size() / 8) return false;
  return WalkAll(static_cast<size_t>(texts_->size() / 8), out);
}

void MatcherConstraint::ListAllAllowed(std::vector<int32_t>* out) {
  RefreshFirstBytes();
  WalkAll(texts_->sorted().size(), out);
}

bool MatcherConstraint::WalkAll(size_t budget, std::vector<int32_t>* out) {
  out->clear();
  if (ended_) return true;
  // The end token has no text, so no walk finds it.
  if (EndAllowed()) out->push_back(end_id_);
  for (int b = 0; b < 256; ++b) {
    if (!first_allowed_[b]) continue;
    const auto [lo, hi] = texts_->first_byte_range(static_cast<uint8_t>(b));
    ByteMatcher& first = Level(1);
    first.CopyFrom(*matcher_);
    first.Feed(static_cast<uint8_t>(b));
    if (!Walk(lo, hi, 1, budget, out)) return false;
  }
  return true;
}

void MatcherConstraint::Accept(int32_t token) {
  if (token == end_id_) {
    PREFIXD_CHECK(EndAllowed(), "constraint: the end token was accepted where the output cannot end (Allows was not asked)");
    ended_ = true;
    return;
  }
  const std::string_view text = texts_->text(token);
  PREFIXD_CHECK(!text.empty(), "constraint: a token without text cannot be accepted");
  for (char c : text) {
    const bool ok = matcher_->Feed(static_cast<uint8_t>(c));
    PREFIXD_CHECK(ok, "constraint: an accepted token's text breaks the grammar (Allows was not asked)");
  }
  first_fresh_ = false;
}

}  // namespace prefixd
