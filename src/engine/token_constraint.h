// TokenConstraint: which tokens one request may generate next (constrained decoding). The
// sampler asks it; the engine tells it each token taken and ends the sequence when it says
// the output is complete. The mechanism lives here; what to allow (a forced tool call in the
// chat template's syntax, its arguments following a JSON schema) is decided by the server,
// which builds a ByteMatcher and wraps it in a MatcherConstraint.
//
//   sampler: ListAllowed? ──yes──▶ pick among those
//                 │ no (too many to list cheaply)
//                 ▼
//            Allows(id) for candidates in logit order (lazily: greedy stops at the first)
//   engine:  Accept(id) ──▶ IsComplete()? ──▶ the sequence ends (FinishReason::kEos)
//
// Tokens are pieces of text (TokenTexts: Tokenizer::Piece of every id, computed once per
// model); a token is allowed when the output stays a valid prefix of the constraint's
// language after its bytes. Tokens without text (control tokens) are never allowed, except
// the end token (the engine's EOS) where the text so far is a whole word of the language that
// could also go on (several tool calls: after each, the model chooses to end or write another).
//
// Ownership: one constraint per request, owned by its GenerateRequest (shared_ptr so the request
// stays copyable; it is never shared between requests). Thread safety: none; used by the
// engine thread only, after the server built it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace prefixd {

class Tokenizer;

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Whether `token` may come next.
  virtual bool Allows(int32_t token) = 0;
  // Fills `out` with every token that may come next (any order) and returns true when that
  // is cheap (a small set, found without testing the whole vocabulary); false otherwise
  // (`out` unspecified): then the sampler tests candidates with Allows in logit order.
  virtual bool ListAllowed(std::vector<int32_t>* out) = 0;
  // Fills `out` with every token that may come next (any order), whatever it costs.
  virtual void ListAllAllowed(std::vector<int32_t>* out) = 0;
  // Takes `token` as the next one. REQUIRES: Allows(token).
  virtual void Accept(int32_t token) = 0;
  // Nothing more may follow what was accepted: the output is whole.
  virtual bool IsComplete() const = 0;
};

// The text of every token of one model's vocabulary, and the ids grouped by their first
// byte. Immutable once built; shared by every constraint on that model.
class TokenTexts {
 public:
  explicit TokenTexts(const Tokenizer& tokenizer);
  // For tests: the texts given directly (index = token id).
  explicit TokenTexts(std::vector<std::string> texts);

  int32_t size() const { return static_cast<int32_t>(texts_.size()); }
  std::string_view text(int32_t id) const { return texts_[static_cast<size_t>(id)]; }
  // The ids whose text starts with byte `b`.
  const std::vector<int32_t>& starting_with(uint8_t b) const { return by_first_byte_[b]; }
  // The ids with text, sorted by it (bytewise), so texts sharing a prefix are contiguous: a
  // trie without nodes. first_byte_range(b) is where the texts starting with `b` lie in it.
  const std::vector<int32_t>& sorted() const { return sorted_; }
  std::pair<size_t, size_t> first_byte_range(uint8_t b) const { return first_byte_range_[b]; }

 private:
  void Index();

  std::vector<std::string> texts_;
  std::array<std::vector<int32_t>, 256> by_first_byte_;
  std::vector<int32_t> sorted_;
  std::array<std::pair<size_t, size_t>, 256> first_byte_range_{};
};

// A byte-level recogniser of a language of finite texts: the server's grammar. Feeding keeps
// the text read so far a valid prefix or reports that it no longer is.
class ByteMatcher {
 public:
  virtual ~ByteMatcher() = default;
  virtual std::unique_ptr<ByteMatcher> Clone() const = 0;
  // Makes this matcher's state a copy of `other`'s. REQUIRES: `other` is of the same class
  // and grammar (the constraint copies into a scratch matcher to test a token).
  virtual void CopyFrom(const ByteMatcher& other) = 0;
  // Reads byte `b`: false when the text is no longer a prefix of the language (the state is
  // then unspecified: copy a good one back before using it again).
  virtual bool Feed(uint8_t b) = 0;
  // The text read is whole and nothing may follow it.
  virtual bool IsComplete() const = 0;
  // The text read is whole: the output may end here, or (unless IsComplete) go on.
  virtual bool CanEnd() const { return IsComplete(); }
};

// A TokenConstraint over a ByteMatcher: a token is allowed when the matcher takes all its
// bytes. Listing walks the sorted texts as a trie (a shared prefix is fed once, a dead one
// prunes every token under it) when few first bytes are allowed (inside fixed text:
// "<tool_call>", a property name, the space of ": " that most SentencePiece tokens start
// with), and gives up past an eighth of the vocabulary; otherwise (inside a string, where
// nearly everything is allowed) the sampler goes lazily in logit order.
//
// `end_id` (the engine's EOS; -1: none) is allowed where the matcher CanEnd() but is not yet
// complete; once accepted, the output is complete (the engine ends the sequence with kEos,
// ignore_eos or not).
class MatcherConstraint : public TokenConstraint {
 public:
  MatcherConstraint(std::shared_ptr<const TokenTexts> texts, std::unique_ptr<ByteMatcher> matcher,
                    int32_t end_id = -1);

  bool Allows(int32_t token) override;
  bool ListAllowed(std::vector<int32_t>* out) override;
  void ListAllAllowed(std::vector<int32_t>* out) override;
  void Accept(int32_t token) override;
  bool IsComplete() const override { return ended_ || matcher_->IsComplete(); }

 private:
  // The end token may come next: the text is whole and may still go on.
  bool EndAllowed() const { return end_id_ >= 0 && !ended_ && !matcher_->IsComplete() && matcher_->CanEnd(); }

  // Lists by walking the texts under each allowed first byte; false once past `budget`.
  bool WalkAll(size_t budget, std::vector<int32_t>* out);
  // Recomputes first_allowed_ for the current state, once per accepted token.
  void RefreshFirstBytes();
  // Adds to `out` the allowed ids among sorted()[lo, hi), whose texts share their first
  // `depth` bytes, which levels_[depth] has read. False (and stops) once `out` holds more
  // than `budget`.
  bool Walk(size_t lo, size_t hi, size_t depth, size_t budget, std::vector<int32_t>* out);
  // The scratch matcher for `depth` (cloned on first use).
  ByteMatcher& Level(size_t depth);

  std::shared_ptr<const TokenTexts> texts_;
  std::unique_ptr<ByteMatcher> matcher_;  // the state after every accepted token
  const int32_t end_id_;                  // the end token, -1: none
  bool ended_ = false;                    // the end token was accepted
  std::unique_ptr<ByteMatcher> scratch_;  // a copy, fed a candidate's bytes
  std::vector<std::unique_ptr<ByteMatcher>> levels_;  // Walk: the state after each prefix length
  // Which bytes the matcher takes next; valid while first_fresh_.
  std::array<bool, 256> first_allowed_{};
  int64_t num_first_tokens_ = 0;  // tokens starting with an allowed byte
  bool first_fresh_ = false;
};

}  // namespace prefixd
