#include "engine/token_constraint.h"

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
  }
}

MatcherConstraint::MatcherConstraint(std::shared_ptr<const TokenTexts> texts,
                                     std::unique_ptr<ByteMatcher> matcher)
    : texts_(std::move(texts)), matcher_(std::move(matcher)), scratch_(matcher_->Clone()) {}

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
  if (token < 0 || token >= texts_->size()) return false;
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

bool MatcherConstraint::ListAllowed(std::vector<int32_t>* out) {
  RefreshFirstBytes();
  // Listing tests every token with an allowed first byte; past an eighth of the vocabulary
  // the lazy scan in logit order is cheaper (greedy usually stops at the first candidate).
  if (num_first_tokens_ > texts_->size() / 8) return false;
  out->clear();
  for (int b = 0; b < 256; ++b) {
    if (!first_allowed_[b]) continue;
    for (int32_t id : texts_->starting_with(static_cast<uint8_t>(b))) {
      if (Allows(id)) out->push_back(id);
    }
  }
  return true;
}

void MatcherConstraint::Accept(int32_t token) {
  const std::string_view text = texts_->text(token);
  PREFIXD_CHECK(!text.empty(), "constraint: a token without text cannot be accepted");
  for (char c : text) {
    const bool ok = matcher_->Feed(static_cast<uint8_t>(c));
    PREFIXD_CHECK(ok, "constraint: an accepted token's text breaks the grammar (Allows was not asked)");
  }
  first_fresh_ = false;
}

}  // namespace prefixd
