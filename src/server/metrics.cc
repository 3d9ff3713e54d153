#include "server/metrics.h"

#include <algorithm>

namespace prefixd {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(total);
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  // The +Inf bucket is the count, by definition; use the bucket sum so the two always agree.
  s.count = total;
  return s;
}

HitRateWindow::HitRateWindow(int64_t horizon_s) : horizon_s_(horizon_s) {}

void HitRateWindow::Record(int64_t now_s, int64_t hits, int64_t misses) {
  std::lock_guard<std::mutex> lock(mu_);
  // One sample per second, the first: a later one in the same second would move the
  // baseline of a window forward past counts that happened in it.
  if (!samples_.empty() && samples_.back().t >= now_s) return;
  samples_.push_back(Sample{now_s, hits, misses});
  // Keep one sample at or before now - horizon as the baseline of the widest window.
  while (samples_.size() >= 2 && samples_[1].t <= now_s - horizon_s_) samples_.pop_front();
}

HitRateWindow::Rate HitRateWindow::Over(int64_t now_s, int64_t window_s, int64_t hits,
                                        int64_t misses) const {
  Rate r;
  r.window_s = window_s;
  std::lock_guard<std::mutex> lock(mu_);
  if (samples_.empty()) return r;
  // The latest sample at or before now - window; else the oldest.
  const Sample* base = &samples_.front();
  for (const Sample& s : samples_) {
    if (s.t <= now_s - window_s) {
      base = &s;
    } else {
      break;
    }
  }
  r.hits = std::max<int64_t>(0, hits - base->hits);
  r.misses = std::max<int64_t>(0, misses - base->misses);
  r.hit_rate = r.hits + r.misses == 0 ? 0.0 : static_cast<double>(r.hits) / (r.hits + r.misses);
  r.covered_s = std::min(window_s, now_s - base->t);
  return r;
}

std::vector<std::optional<HitRateWindow::Counts>> HitRateWindow::Series(int64_t now_s, int64_t bucket_s,
                                                                        int num_buckets, int64_t hits,
                                                                        int64_t misses) const {
  std::vector<std::optional<Counts>> out(std::max(0, num_buckets));
  std::lock_guard<std::mutex> lock(mu_);
  if (samples_.empty()) return out;
  // The counters at time t: the latest sample at or before t, the current ones at now_s;
  // nullptr before the first sample.
  auto at = [&](int64_t t) -> std::optional<Counts> {
    if (t >= now_s) return Counts{hits, misses};
    auto it = std::upper_bound(samples_.begin(), samples_.end(), t,
                               [](int64_t x, const Sample& s) { return x < s.t; });
    if (it == samples_.begin()) return std::nullopt;
    --it;
    return Counts{it->hits, it->misses};
  };
  const Counts first{samples_.front().hits, samples_.front().misses};
  for (int k = 0; k < num_buckets; ++k) {
    const int64_t end = now_s - static_cast<int64_t>(num_buckets - k - 1) * bucket_s;
    const std::optional<Counts> e = at(end);
    if (!e) continue;
    const Counts s = at(end - bucket_s).value_or(first);
    out[k] = Counts{std::max<int64_t>(0, e->hits - s.hits), std::max<int64_t>(0, e->misses - s.misses)};
  }
  return out;
}

ServerMetrics::ServerMetrics()
    : request_duration({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}),
      time_to_first_token({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}),
      inter_token_latency({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}) {}

void ServerMetrics::CountResponse(std::string_view route, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++responses_[{std::string(route), status}];
}

std::vector<std::pair<std::pair<std::string, int>, int64_t>> ServerMetrics::responses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {responses_.begin(), responses_.end()};
}

namespace {

std::string Num(double v) { return absl::StrFormat("%.9g", v); }

// The pool's retained tokens in KV bytes: the tree counts tokens, a block holds block_size.
int64_t RetainedBytes(const ServiceInfo& info, const PrefixCacheStats& c) {
  return info.block_size > 0 ? c.retained_tokens * info.block_bytes / info.block_size : 0;
}

void Metric(std::string& out, const char* name, const char* type, const char* help,
            double value) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ",
                  Num(value), "\n");
}

void HistogramText(std::string& out, const char* name, const char* help,
                   const Histogram& h) {
  const Histogram::Snapshot s = h.snapshot();
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    absl::StrAppend(&out, name, "_bucket{le=\"", Num(h.bounds()[i]), "\"} ", s.cumulative[i], "\n");
  }
  absl::StrAppend(&out, name, "_bucket{le=\"+Inf\"} ", s.cumulative.back(), "\n");
  absl::StrAppend(&out, name, "_sum ", Num(s.sum), "\n", name, "_count ", s.count, "\n");
}

// One labelled sample per enabled tier.
void TierMetric(std::string& out, const char* name, const char* type, const char* help,
                const TierControllerStats& t, int64_t TierStats::*field) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  if (t.host_enabled) absl::StrAppend(&out, name, "{tier=\"host\"} ", t.host.*field, "\n");
  if (t.disk_enabled) absl::StrAppend(&out, name, "{tier=\"disk\"} ", t.disk.*field, "\n");
  if (t.remote_enabled) absl::StrAppend(&out, name, "{tier=\"remote\"} ", t.remote.*field, "\n");
}

// prefixd_tier_<tier>_{writes_pending,prefetched_blocks} of a slow tier (disk, remote).
void SlowTierGauges(std::string& out, const char* tier, int64_t writes_pending,
                    int64_t prefetched) {
  const std::string pending = absl::StrCat("prefixd_tier_", tier, "_writes_pending");
  const std::string ahead = absl::StrCat("prefixd_tier_", tier, "_prefetched_blocks");
  Metric(out, pending.c_str(), "gauge",
         absl::StrCat("Blocks queued for the ", tier,
                      " tier or being written (0: every queued block was written or failed).")
             .c_str(),
         writes_pending);
  Metric(out, ahead.c_str(), "gauge",
         absl::StrCat("Blocks read ahead from the ", tier,
                      " tier for waiting requests, not yet onboarded.")
             .c_str(),
         prefetched);
}

void TierMetrics(std::string& out, const TierControllerStats& t) {
  TierMetric(out, "prefixd_tier_blocks", "gauge", "Blocks a lower cache tier holds.", t, &TierStats::entries);
  TierMetric(out, "prefixd_tier_bytes", "gauge", "Bytes a lower cache tier holds.", t, &TierStats::bytes);
  TierMetric(out, "prefixd_tier_budget_bytes", "gauge", "Byte budget of a lower cache tier.", t,
             &TierStats::budget_bytes);
  TierMetric(out, "prefixd_tier_hits_total", "counter", "Blocks read from a lower cache tier.", t,
             &TierStats::hits);
  TierMetric(out, "prefixd_tier_misses_total", "counter", "Block reads a lower cache tier could not serve.",
             t, &TierStats::misses);
  TierMetric(out, "prefixd_tier_writes_total", "counter", "Blocks written to a lower cache tier.", t,
             &TierStats::writes);
  TierMetric(out, "prefixd_tier_evictions_total", "counter", "Blocks a lower cache tier dropped for its budget.",
             t, &TierStats::evictions);
  TierMetric(out, "prefixd_tier_quarantined_total", "counter",
             "Blocks that failed verification and were set aside.", t, &TierStats::quarantined);
  TierMetric(out, "prefixd_tier_retained_blocks", "gauge",
             "Blocks of a lower tier that carry a live retention mark.", t, &TierStats::retained_entries);
  TierMetric(out, "prefixd_tier_retained_bytes", "gauge",
             "Bytes of a lower tier that carry a live retention mark.", t, &TierStats::retained_bytes);
  TierMetric(out, "prefixd_tier_retention_expired_total", "counter",
             "Retention marks of a lower tier that ended because their time was up.", t,
             &TierStats::retention_expired);
  TierMetric(out, "prefixd_tier_retention_capped_total", "counter",
             "Retention marks of a lower tier ended beyond its retained share, oldest first.", t,
             &TierStats::retention_capped);
  TierMetric(out, "prefixd_tier_retention_spilled_total", "counter",
             "Retained blocks a lower tier's budget pushed out, handed down a tier.", t,
             &TierStats::retention_spilled);
  Metric(out, "prefixd_tier_offloaded_blocks_total", "counter", "Blocks moved from the pool to host RAM.",
         t.offloaded_blocks);
  Metric(out, "prefixd_tier_onboarded_blocks_total", "counter",
         "Blocks brought into the pool from host RAM, disk or remote.", t.onboarded_blocks);
  Metric(out, "prefixd_tier_disk_writes_dropped_total", "counter",
         "Disk writes dropped because the write queue was full.", t.disk_writes_dropped);
  if (t.disk_enabled) SlowTierGauges(out, "disk", t.disk_writes_pending, t.prefetched_blocks);
  if (t.remote_enabled) {
    const RedisHealth& h = t.remote_health;
    Metric(out, "prefixd_tier_remote_writes_dropped_total", "counter",
           "Remote writes dropped because the write queue was full (Redis slow or down).",
           t.remote_writes_dropped);
    Metric(out, "prefixd_tier_remote_up", "gauge", "1 while the last call to Redis succeeded.",
           h.up ? 1 : 0);
    Metric(out, "prefixd_tier_remote_outages_total", "counter", "Times Redis became unreachable.",
           h.outages);
    Metric(out, "prefixd_tier_remote_errors_total", "counter",
           "Calls to Redis that failed (refused, timed out, or skipped while down).", h.errors);
    Metric(out, "prefixd_tier_remote_timeouts_total", "counter", "Calls to Redis that timed out.",
           h.timeouts);
    SlowTierGauges(out, "remote", t.remote_writes_pending, t.remote_prefetched_blocks);
  }
  Metric(out, "prefixd_partial_tails", "gauge", "Partial tails held.", t.partial.entries);
  Metric(out, "prefixd_partial_tail_hits_total", "counter", "Partial tails spliced into a prompt.",
         t.partial.hits);
  Metric(out, "prefixd_partial_tail_tokens_saved_total", "counter",
         "Prompt tokens served from partial tails.", t.partial.tokens_saved);
}

}  // namespace

std::string PrometheusText(const ServiceInfo& info, const ServiceStats& stats,
                           const ServerMetrics& metrics) {
  const PrefixCacheStats& c = stats.cache;
  std::string out;
  Metric(out, "prefixd_prefix_cache_enabled", "gauge",
         "1 when the prefix cache serves requests (configured on and not killed).",
         info.prefix_cache && c.enabled ? 1 : 0);
  Metric(out, "prefixd_prefix_cache_hits_total", "counter",
         "Requests that reused at least one cached prompt token.", c.hits);
  Metric(out, "prefixd_prefix_cache_misses_total", "counter",
         "Requests that reused no cached prompt token.", c.misses);
  Metric(out, "prefixd_prefix_cache_query_tokens_total", "counter",
         "Prompt tokens looked up in the prefix cache.", c.query_tokens);
  Metric(out, "prefixd_prefix_cache_hit_tokens_total", "counter",
         "Prompt tokens served from the prefix cache.", c.hit_tokens);
  Metric(out, "prefixd_prefix_cache_evicted_blocks_total", "counter",
         "Blocks the prefix cache dropped to make room or meet its budget.", c.evicted_blocks);
  Metric(out, "prefixd_prefix_cache_nodes", "gauge", "Nodes of the prefix tree.", c.nodes);
  Metric(out, "prefixd_prefix_cache_cached_tokens", "gauge", "Tokens indexed by the prefix tree.",
         c.cached_tokens);
  Metric(out, "prefixd_prefix_cache_cached_blocks", "gauge", "KV blocks held by the prefix tree.",
         c.cached_blocks);
  Metric(out, "prefixd_prefix_cache_cached_bytes", "gauge", "KV bytes held by the prefix tree.",
         static_cast<double>(c.cached_blocks) * static_cast<double>(info.block_bytes));
  Metric(out, "prefixd_prefix_cache_max_cached_blocks", "gauge",
         "Most KV blocks the prefix tree may hold (the cache budget).", c.max_cached_blocks);
  Metric(out, "prefixd_prefix_cache_retained_tokens", "gauge",
         "Tokens of the prefix tree that carry a live retention mark.", c.retained_tokens);
  Metric(out, "prefixd_prefix_cache_retained_bytes", "gauge",
         "KV bytes of the prefix tree that carry a live retention mark (tokens x bytes per token).",
         RetainedBytes(info, c));
  Metric(out, "prefixd_prefix_cache_retention_expired_tokens_total", "counter",
         "Tokens of the prefix tree whose retention mark ended because its time was up.",
         c.retention_expired_tokens);
  Metric(out, "prefixd_prefix_cache_retention_capped_tokens_total", "counter",
         "Tokens of the prefix tree whose retention mark ended beyond --retention-max-share.",
         c.retention_capped_tokens);
  Metric(out, "prefixd_prefix_cache_state_snapshots", "gauge",
         "Recurrent-state snapshots of a hybrid model beside the pool's blocks (tree and running "
         "requests); 0 for other models.",
         c.state_snapshots);
  Metric(out, "prefixd_prefix_cache_state_snapshot_bytes", "gauge",
         "Bytes of those recurrent-state snapshots.", c.state_snapshot_bytes);
  Metric(out, "prefixd_retention_requests_total", "counter",
         "Requests that asked to retain part of their prompt (cache_control, "
         "prompt_cache_retention, prefix_cache.retention).",
         c.retention_requests);
  Metric(out, "prefixd_prompt_cache_key_requests_total", "counter",
         "Generation requests that named a prompt_cache_key.",
         metrics.prompt_cache_key_requests.load(std::memory_order_relaxed));
  Metric(out, "prefixd_requests_running", "gauge", "Requests in the running batch.",
         stats.requests_running);
  Metric(out, "prefixd_requests_waiting", "gauge", "Requests waiting for admission.",
         stats.requests_waiting);
  Metric(out, "prefixd_requests_total", "counter", "Requests the engine accepted.",
         stats.requests_total);
  Metric(out, "prefixd_prompt_tokens_total", "counter", "Prompt tokens of accepted requests.",
         stats.prompt_tokens_total);
  Metric(out, "prefixd_generated_tokens_total", "counter", "Tokens generated.",
         stats.generated_tokens_total);
  Metric(out, "prefixd_engine_steps_total", "counter", "Engine steps run.", stats.steps.steps);
  Metric(out, "prefixd_engine_step_seconds_total", "counter",
         "Wall time of the engine's steps.", stats.steps.step_seconds);
  Metric(out, "prefixd_engine_forward_seconds_total", "counter",
         "Wall time of the steps' forward passes.", stats.steps.forward_seconds);
  Metric(out, "prefixd_engine_thread_cpu_seconds_total", "counter",
         "CPU time of the engine thread (its share of forward passes included).",
         stats.engine_thread_cpu_seconds);
  Metric(out, "prefixd_engine_thread_cpu_outside_forward_seconds_total", "counter",
         "CPU time of the engine thread outside forward passes: admission and the cache's "
         "protocol, scheduling, sampling, KV events, handing tokens to the requests.",
         stats.engine_thread_cpu_seconds - stats.steps.forward_cpu_seconds);
  Metric(out, "prefixd_kv_pool_free_blocks", "gauge", "Free blocks in the KV pool.",
         stats.pool_free_blocks);
  Metric(out, "prefixd_kv_pool_blocks", "gauge", "Blocks in the KV pool.", stats.pool_total_blocks);
  Metric(out, "prefixd_client_disconnects_total", "counter",
         "Requests cancelled because the client went away.",
         metrics.client_disconnects.load(std::memory_order_relaxed));
  Metric(out, "prefixd_stop_string_matches_total", "counter",
         "Requests ended by one of their stop strings.",
         metrics.stop_string_matches.load(std::memory_order_relaxed));

  if (stats.tiers) TierMetrics(out, *stats.tiers);
  absl::StrAppend(&out,
                  "# HELP prefixd_http_responses_total HTTP responses by route and status code.\n"
                  "# TYPE prefixd_http_responses_total counter\n");
  for (const auto& [key, n] : metrics.responses()) {
    absl::StrAppend(&out, "prefixd_http_responses_total{route=\"", key.first, "\",code=\"",
                    key.second, "\"} ", n, "\n");
  }
  HistogramText(out, "prefixd_request_duration_seconds",
                "Time from receiving a generation request to its last byte.", metrics.request_duration);
  HistogramText(out, "prefixd_time_to_first_token_seconds",
                "Time from receiving a generation request to its first generated token.",
                metrics.time_to_first_token);
  HistogramText(out, "prefixd_inter_token_latency_seconds",
                "Time between consecutive generated tokens of one request.",
                metrics.inter_token_latency);
  return out;
}

nlohmann::json HistogramJson(const Histogram& h) {
  const Histogram::Snapshot s = h.snapshot();
  nlohmann::json counts = nlohmann::json::array();
  uint64_t below = 0;
  for (uint64_t c : s.cumulative) {
    counts.push_back(c - below);
    below = c;
  }
  return nlohmann::json{{"bounds", h.bounds()}, {"counts", std::move(counts)}, {"count", s.count}, {"sum", s.sum}};
}

nlohmann::json HitHistoryJson(const HitRateWindow& window, int64_t now_s, int64_t bucket_s,
                              int num_buckets, int64_t hits, int64_t misses) {
  nlohmann::json h = nlohmann::json::array(), m = nlohmann::json::array();
  for (const auto& c : window.Series(now_s, bucket_s, num_buckets, hits, misses)) {
    h.push_back(c ? nlohmann::json(c->hits) : nlohmann::json(nullptr));
    m.push_back(c ? nlohmann::json(c->misses) : nlohmann::json(nullptr));
  }
  return nlohmann::json{{"bucket_s", bucket_s}, {"hits", std::move(h)}, {"misses", std::move(m)}};
}

std::string CacheDisabledReason(const ServiceInfo& info, const ServiceStats& stats) {
  if (!info.prefix_cache_refusal.empty()) return info.prefix_cache_refusal;
  if (!info.prefix_cache) return "the prefix cache is off (--prefix-cache off)";
  if (!stats.cache.enabled) {
    return "the prefix cache was disabled by the kill switch (POST /admin/api/cache/enable "
           "turns it back on)";
  }
  return "";
}

nlohmann::json PrefixCacheStatsJson(const ServiceInfo& info, const ServiceStats& stats,
                                    const HitRateWindow& window, int64_t now_s,
                                    int64_t prompt_cache_key_requests) {
  using json = nlohmann::json;
  const PrefixCacheStats& c = stats.cache;
  json j;
  const std::string reason = CacheDisabledReason(info, stats);
  j["enabled"] = reason.empty();
  if (!reason.empty()) j["reason"] = reason;
  // No "busy" field: every counter is an atomic the engine publishes, so a snapshot is always
  // complete, and the disk tier's index is scanned before the server listens (issue 14).
  j["hits"] = c.hits;
  j["misses"] = c.misses;
  j["hit_rate"] = c.hit_rate();
  j["nodes"] = c.nodes;
  j["cached_tokens"] = c.cached_tokens;
  j["cached_blocks"] = c.cached_blocks;
  j["cached_bytes"] = c.cached_blocks * info.block_bytes;
  j["max_cached_blocks"] = c.max_cached_blocks;
  j["evictions"] = c.evicted_blocks;
  j["total_query_tokens"] = c.query_tokens;
  j["hit_tokens"] = c.hit_tokens;
  j["avg_hit_tokens"] = c.avg_hit_tokens();
  j["locked_requests"] = c.locked_requests;
  j["block_size"] = info.block_size;
  j["block_bytes"] = info.block_bytes;
  j["pool_free_blocks"] = stats.pool_free_blocks;
  j["pool_total_blocks"] = stats.pool_total_blocks;
  j["requests_running"] = stats.requests_running;
  j["requests_waiting"] = stats.requests_waiting;
  if (info.state_checkpoint_blocks > 0) {
    j["state_snapshots"] = json{{"count", c.state_snapshots},
                                {"bytes", c.state_snapshot_bytes},
                                {"bytes_each", info.state_snapshot_bytes},
                                {"checkpoint_blocks", info.state_checkpoint_blocks}};
  }
  json by_tier{{"pool", json{{"cached_tokens", c.cached_tokens},
                             {"cached_blocks", c.cached_blocks},
                             {"cached_bytes", c.cached_blocks * info.block_bytes},
                             {"retained_tokens", c.retained_tokens},
                             {"retained_bytes", RetainedBytes(info, c)},
                             {"max_retained_tokens", c.max_retained_tokens},
                             {"retention_expired_tokens", c.retention_expired_tokens},
                             {"retention_capped_tokens", c.retention_capped_tokens}}}};
  j["retention"] = json{{"max_share", info.retention_max_share},
                        {"requests", c.retention_requests},
                        {"prompt_cache_key_requests", prompt_cache_key_requests}};
  if (stats.tiers) {
    const TierControllerStats& t = *stats.tiers;
    auto store = [](const TierStats& s) {
      return json{{"blocks", s.entries},         {"bytes", s.bytes},
                  {"budget_bytes", s.budget_bytes}, {"hits", s.hits},
                  {"misses", s.misses},          {"writes", s.writes},
                  {"evictions", s.evictions},    {"quarantined", s.quarantined},
                  {"write_failures", s.write_failures},
                  {"retained_blocks", s.retained_entries},
                  {"retained_bytes", s.retained_bytes},
                  {"retention_expired", s.retention_expired},
                  {"retention_capped", s.retention_capped},
                  {"retention_spilled", s.retention_spilled}};
    };
    if (t.host_enabled) by_tier["host"] = store(t.host);
    if (t.disk_enabled) {
      by_tier["disk"] = store(t.disk);
      by_tier["disk"]["writes_queued"] = t.disk_writes_queued;
      by_tier["disk"]["writes_pending"] = t.disk_writes_pending;
      by_tier["disk"]["writes_dropped"] = t.disk_writes_dropped;
      by_tier["disk"]["prefetched_blocks"] = t.prefetched_blocks;
    }
    if (t.remote_enabled) {
      json& r = by_tier["remote"] = store(t.remote);
      r["writes_queued"] = t.remote_writes_queued;
      r["writes_pending"] = t.remote_writes_pending;
      r["writes_dropped"] = t.remote_writes_dropped;
      r["prefetched_blocks"] = t.remote_prefetched_blocks;
      r["state"] = t.remote_health.up ? "up" : "down";
      r["outages"] = t.remote_health.outages;
      r["errors"] = t.remote_health.errors;
      r["timeouts"] = t.remote_health.timeouts;
      r["reconnects"] = t.remote_health.reconnects;
      r["address"] = info.remote_cache;
      r["namespace"] = info.remote_cache_namespace;
    }
    const PartialTailStats& p = t.partial;
    by_tier["partial"] = json{{"entries", p.entries},
                              {"max_entries", p.max_entries}, {"stashes", p.stashes},
                              {"hits", p.hits},             {"evictions", p.evictions},
                              {"tokens_saved", p.tokens_saved},
                              {"supported", p.supported}};
    j["offloaded_blocks"] = t.offloaded_blocks;
    j["spilled_to_disk_blocks"] = t.spilled_to_disk_blocks;
    j["onboarded_blocks"] = t.onboarded_blocks;
  }
  j["by_tier"] = std::move(by_tier);
  json rates = json::object();
  for (const auto& [name, w] : {std::pair<const char*, int64_t>{"1m", 60}, {"5m", 300}, {"15m", 900}}) {
    const HitRateWindow::Rate r = window.Over(now_s, w, c.hits, c.misses);
    rates[name] = json{{"window_s", r.window_s},
                       {"covered_s", r.covered_s},
                       {"hits", r.hits},
                       {"misses", r.misses},
                       {"hit_rate", r.hit_rate}};
  }
  j["rates"] = std::move(rates);
  return j;
}

}  // namespace prefixd
