// What the server measures itself (latency histograms, HTTP request counts, windowed cache
// hit rates) and how /metrics and /v1/prefix_cache_stats present it together with the
// engine's ServiceStats.
//
// Thread safety: Histogram and ServerMetrics are updated from HTTP threads with atomics and a
// mutex of their own; nothing here takes a lock the engine holds, and reading the engine's
// counters (ServiceStats) never blocks it (ARCHITECTURE.md invariant 5).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine_service.h"

namespace prefixd {

// A Prometheus histogram with fixed bucket upper bounds (seconds), lock-free.
class Histogram {
 public:
  // `bounds`: ascending upper bounds; +Inf is implied.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  // Counts read one by one: a concurrent Observe may show in some and not others.
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Per-second samples of the cache's cumulative hit and miss counters, for the rates over the
// last 1, 5 and 15 minutes. Fed by a timer (HttpServer samples once a second) and on read.
class HitRateWindow {
 public:
  explicit HitRateWindow(int64_t horizon_s = 15 * 60);

  // Records the counters at time `now_s` (seconds, any monotonic origin). Of several samples
  // in the same second the first is kept.
  void Record(int64_t now_s, int64_t hits, int64_t misses);

  struct Rate {
    int64_t window_s = 0;
    int64_t hits = 0;    // hits in the window
    int64_t misses = 0;  // misses in the window
    double hit_rate = 0;
    int64_t covered_s = 0;  // how much of the window has samples (less right after start)
  };
  // The change of the counters between the sample at or before now_s - window_s (or the
  // oldest one, when the window reaches back before the first) and (hits, misses) now.
  Rate Over(int64_t now_s, int64_t window_s, int64_t hits, int64_t misses) const;

  // Hits and misses per bucket of `bucket_s` seconds, the last `num_buckets` buckets up to
  // now_s, oldest first; (hits, misses) are the counters now. Bucket k covers
  //
  //   (now_s - (num_buckets - k) * bucket_s,  now_s - (num_buckets - k - 1) * bucket_s]
  //
  // and counts the change of the counters between the samples at or before its two ends.
  // A bucket that ends before the first sample has no data (nullopt); one that starts before
  // it counts from the first sample. Precondition: num_buckets * bucket_s <= the horizon.
  struct Counts {
    int64_t hits = 0;
    int64_t misses = 0;
  };
  std::vector<std::optional<Counts>> Series(int64_t now_s, int64_t bucket_s, int num_buckets,
                                            int64_t hits, int64_t misses) const;

 private:
  struct Sample {
    int64_t t;
    int64_t hits;
    int64_t misses;
  };
  const int64_t horizon_s_;
  mutable std::mutex mu_;
  std::deque<Sample> samples_;  // ascending t, spanning at most horizon_s_ + 1 seconds
};

// The server's own counters and histograms.
class ServerMetrics {
 public:
  ServerMetrics();

  Histogram request_duration;  // seconds, whole generation requests
  Histogram time_to_first_token;  // seconds, request received -> first token
  Histogram inter_token_latency;  // seconds between consecutive tokens of one request

  std::atomic<int64_t> client_disconnects{0};  // requests cancelled because the client left
  std::atomic<int64_t> stop_string_matches{0};
  // Generation requests that named a prompt_cache_key (OpenAI's cache group; accepted, and
  // counted here and echoed in usage: one server has no replicas to route a group to).
  std::atomic<int64_t> prompt_cache_key_requests{0};

  // Counts an answered HTTP request by route and status code.
  void CountResponse(std::string_view route, int status);
  std::vector<std::pair<std::pair<std::string, int>, int64_t>> responses() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> responses_;
};

// The Prometheus text exposition (version 0.0.4) of everything above.
std::string PrometheusText(const ServiceInfo& info, const ServiceStats& stats,
                           const ServerMetrics& metrics);

// Why the cache does not serve requests, or "" when it does.
std::string CacheDisabledReason(const ServiceInfo& info, const ServiceStats& stats);

// {"bounds": [upper bounds], "counts": [per bucket, not cumulative; the last is +Inf],
//  "count": N, "sum": S}: a histogram for a chart (the dashboard's time to first token).
nlohmann::json HistogramJson(const Histogram& h);

// {"bucket_s": B, "hits": [...], "misses": [...]}: HitRateWindow::Series, null where a bucket
// has no data.
nlohmann::json HitHistoryJson(const HitRateWindow& window, int64_t now_s, int64_t bucket_s,
                              int num_buckets, int64_t hits, int64_t misses);

// The /v1/prefix_cache_stats object (see src/server/README.md). `prompt_cache_key_requests`
// is ServerMetrics' count, shown under "retention".
nlohmann::json PrefixCacheStatsJson(const ServiceInfo& info, const ServiceStats& stats,
                                    const HitRateWindow& window, int64_t now_s,
                                    int64_t prompt_cache_key_requests = 0);

}  // namespace prefixd
