// RequestScope: a request's own scope policy (`prefix_cache.scope`, `prefix_cache.window`):
// what of its prompt the lower tiers persist, overriding the server's --disk-prefix-cache.
// It is the cache's ScopeSpec (cache/scope_policy.h says what each mode keeps), named here so
// that the layers above the engine see the cache through the engine's types and never include
// the cache's headers (ARCHITECTURE.md, Layers; tests/layering checks it for server/).
//
// Thread safety: value types and pure functions.
#pragma once

#include <string_view>
#include <vector>

#include "base/status.h"
#include "cache/scope_policy.h"
#include "kv/retention_mark.h"

namespace prefixd {

using RequestScope = ScopeSpec;
// A request's retention: token ranges with a priority and a duration (kv/retention_mark.h).
using RequestRetention = std::vector<RetentionRange>;

// Parses "off", "full", "auto", "auto:N" or "N". InvalidArgument naming the accepted forms.
inline StatusOr<RequestScope> ParseRequestScope(std::string_view text) { return ParseScopeSpec(text); }

// The largest window of auto (auto:N): the number of recent prompts the cache remembers.
inline constexpr int kMaxRequestScopeWindow = ScopePolicy::kMaxHistory;

}  // namespace prefixd
