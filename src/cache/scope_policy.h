// ScopePolicy: decides how much of a prompt is persisted to the lower tiers (disk, remote)
// when its prefill completes: `--disk-prefix-cache off|full|auto[:N]|N`, overridable per
// request (`prefix_cache.scope`, `prefix_cache.window`).
//
//   off      nothing
//   full     every full block of the prompt
//   N        the first N tokens
//   auto:N   the longest prefix the prompt shares with the most similar of the last N prompts,
//            aligned down to a message boundary; with no similar prompt yet, everything
//            before the last message. Agents resend a stable head (system prompt, tools,
//            earlier turns) and a volatile tail; this keeps the head and skips the tail.
//
// The scope ends at a token position; the full blocks before it are persisted, and the
// sub-block rest (auto only) is kept as a partial tail.
//
// Thread safety: none; the engine thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace prefixd {

struct ScopeSpec {
  enum class Mode { kOff, kFull, kTokens, kAuto };
  Mode mode = Mode::kAuto;
  int64_t tokens = 0;  // kTokens: N
  int window = 30;     // kAuto: N

  std::string ToString() const;
};

// Parses "off", "full", "auto", "auto:N" or "N". InvalidArgument naming the accepted forms.
StatusOr<ScopeSpec> ParseScopeSpec(std::string_view text);

struct ScopeDecision {
  int64_t end = 0;         // persisted prefix: [0, end)
  bool keep_tail = false;  // keep [floor(end / bs) * bs, end) as a partial tail
  // For the debug log: prompts compared, the longest shared prefix, and why.
  int candidates = 0;
  int64_t longest_shared = 0;
  const char* reason = "";
};

class ScopePolicy {
 public:
  // `min_tokens`: prompts shorter than this persist nothing (--kv-cache-min-tokens).
  ScopePolicy(ScopeSpec default_spec, int64_t min_tokens);

  const ScopeSpec& default_spec() const { return default_; }

  // Decides the scope of `prompt` under `spec`. `message_starts`: the token index where each
  // chat message starts, ascending (empty for a plain completion prompt, which counts as one
  // message). Does not remember the prompt: call Remember after.
  ScopeDecision Decide(const ScopeSpec& spec, std::span<const int32_t> prompt,
                       std::span<const int64_t> message_starts) const;
  // Adds `prompt` to the history auto mode compares against (the last kMaxHistory prompts).
  void Remember(std::span<const int32_t> prompt);

  static constexpr int kMaxHistory = 256;

 private:
  ScopeSpec default_;
  int64_t min_tokens_;
  std::deque<std::vector<int32_t>> history_;  // most recent first
};

}  // namespace prefixd
