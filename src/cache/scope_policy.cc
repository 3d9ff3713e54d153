#include "cache/scope_policy.h"

#include <algorithm>
#include <charconv>

namespace prefixd {

std::string ScopeSpec::ToString() const {
  switch (mode) {
    case Mode::kOff: return "off";
    case Mode::kFull: return "full";
    case Mode::kTokens: return std::to_string(tokens);
    case Mode::kAuto: return "auto:" + std::to_string(window);
  }
  return "?";
}

namespace {
bool ParsePositive(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && *out >= 0;
}
}  // namespace

StatusOr<ScopeSpec> ParseScopeSpec(std::string_view text) {
  ScopeSpec spec;
  int64_t n = 0;
  if (text == "off") {
    spec.mode = ScopeSpec::Mode::kOff;
  } else if (text == "full") {
    spec.mode = ScopeSpec::Mode::kFull;
  } else if (text == "auto") {
    spec.mode = ScopeSpec::Mode::kAuto;
  } else if (text.rfind("auto:", 0) == 0 && ParsePositive(text.substr(5), &n) && n >= 1 &&
             n <= ScopePolicy::kMaxHistory) {
    spec.mode = ScopeSpec::Mode::kAuto;
    spec.window = static_cast<int>(n);
  } else if (ParsePositive(text, &n)) {
    spec.mode = ScopeSpec::Mode::kTokens;
    spec.tokens = n;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "prefix cache scope '", std::string(text), "' is not one of off, full, auto, auto:N (1..",
        ScopePolicy::kMaxHistory, ") or a token count N"));
  }
  return spec;
}

ScopePolicy::ScopePolicy(ScopeSpec default_spec, int64_t min_tokens)
    : default_(default_spec), min_tokens_(min_tokens) {}

ScopeDecision ScopePolicy::Decide(const ScopeSpec& spec, std::span<const int32_t> prompt,
                                  std::span<const int64_t> message_starts) const {
  ScopeDecision d;
  const int64_t len = static_cast<int64_t>(prompt.size());
  if (len < min_tokens_) {
    d.reason = "shorter than --kv-cache-min-tokens";
    return d;
  }
  switch (spec.mode) {
    case ScopeSpec::Mode::kOff:
      d.reason = "off";
      return d;
    case ScopeSpec::Mode::kFull:
      d.end = len;
      d.reason = "full";
      return d;
    case ScopeSpec::Mode::kTokens:
      d.end = std::min(len, spec.tokens);
      d.reason = "first N tokens";
      return d;
    case ScopeSpec::Mode::kAuto:
      break;
  }
  const int window = std::min<int>(spec.window, static_cast<int>(history_.size()));
  for (int i = 0; i < window; ++i) {
    const auto& other = history_[i];
    const size_t n = std::min(other.size(), prompt.size());
    size_t lcp = 0;
    while (lcp < n && other[lcp] == prompt[lcp]) ++lcp;
    d.longest_shared = std::max<int64_t>(d.longest_shared, static_cast<int64_t>(lcp));
  }
  d.candidates = window;
  d.keep_tail = true;
  if (d.longest_shared == 0) {
    // Nothing similar yet: keep what precedes the last message (a plain prompt is one
    // message, so nothing).
    d.end = message_starts.empty() ? 0 : message_starts.back();
    d.reason = "no similar prompt: everything before the last message";
    return d;
  }
  // Align down to a message boundary; the prompt's end counts as one.
  if (d.longest_shared >= len || message_starts.empty()) {
    d.end = d.longest_shared;
  } else {
    d.end = 0;
    for (int64_t s : message_starts) {
      if (s <= d.longest_shared) d.end = std::max(d.end, s);
    }
  }
  d.reason = "shared with a recent prompt, aligned to a message boundary";
  return d;
}

void ScopePolicy::Remember(std::span<const int32_t> prompt) {
  history_.emplace_front(prompt.begin(), prompt.end());
  if (static_cast<int>(history_.size()) > kMaxHistory) history_.pop_back();
}

}  // namespace prefixd
