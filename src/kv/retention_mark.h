// RetentionMark: what a client asked the cache to keep (ARCHITECTURE.md invariant 9), as it is
// stored on a tree node (prefix/) or a lower tier's entry (tier/): a priority and a duration,
// and the time the mark ends. Retention ranks eviction (EvictionPolicy::Level, the stores'
// retained lists) and never blocks it. Here, below both, because both carry it.
//
//   Anthropic cache_control {ttl: "5m" | "1h"}  ->  priority 50, 300 000 or 3 600 000 ms
//   OpenAI prompt_cache_retention "24h"         ->  priority 50, 86 400 000 ms
//   prefix_cache.retention [{priority, duration_s, ...}]  (TensorRT-LLM's token ranges)
//
// A hit refreshes a mark: it lasts duration_ms from the hit again. Times are milliseconds of
// the cache's Clock (base/clock.h), never wall time.
//
// Thread safety: a value type.
#pragma once

#include <algorithm>
#include <cstdint>

namespace prefixd {

inline constexpr int kMaxRetentionPriority = 100;
// What cache_control and prompt_cache_retention ask for; prefix_cache.retention may say.
inline constexpr int kDefaultRetentionPriority = 50;

struct RetentionMark {
  int priority = 0;         // 1..100; 0: no mark
  int64_t duration_ms = 0;  // how long the mark lasts after it was set or last hit
  int64_t until_ms = 0;     // when it ends (the cache's clock)

  bool marked() const { return priority > 0; }
  bool live(int64_t now_ms) const { return priority > 0 && until_ms > now_ms; }

  // The mark that keeps what both keep: the higher priority, the longer duration and end.
  static RetentionMark Merge(const RetentionMark& a, const RetentionMark& b) {
    if (!a.marked()) return b;
    if (!b.marked()) return a;
    return RetentionMark{std::max(a.priority, b.priority), std::max(a.duration_ms, b.duration_ms),
                         std::max(a.until_ms, b.until_ms)};
  }
  // The mark refreshed by a use at `now_ms`.
  RetentionMark RefreshedAt(int64_t now_ms) const {
    RetentionMark m = *this;
    m.until_ms = std::max(until_ms, now_ms + duration_ms);
    return m;
  }
  bool operator==(const RetentionMark&) const = default;
};

}  // namespace prefixd

namespace prefixd {

// A range of a prompt's tokens to keep, positions [begin, end), with the mark to keep it by
// (until_ms is set when the mark is applied: now + duration_ms).
struct RetentionRange {
  int64_t begin = 0;
  int64_t end = 0;
  int priority = kDefaultRetentionPriority;
  int64_t duration_ms = 0;
  bool operator==(const RetentionRange&) const = default;
};

}  // namespace prefixd
