#include "server/metrics.h"

#include <random>
#include <thread>

#include <gtest/gtest.h>

namespace prefixd {
namespace {

TEST(Histogram, BucketsAreCumulative) {
  Histogram h({0.1, 1, 10});
  h.Observe(0.05);
  h.Observe(0.1);  // on the bound: in le="0.1"
  h.Observe(5);
  h.Observe(100);
  Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 2, 3, 4}));
  EXPECT_EQ(s.count, 4u);
  EXPECT_DOUBLE_EQ(s.sum, 105.15);
}

TEST(Histogram, JsonCountsPerBucket) {
  Histogram h({0.1, 1});
  for (double v : {0.05, 0.5, 0.6, 7.0}) h.Observe(v);
  const nlohmann::json j = HistogramJson(h);
  EXPECT_EQ(j["bounds"], nlohmann::json({0.1, 1.0}));
  EXPECT_EQ(j["counts"], nlohmann::json({1, 2, 1}));
  EXPECT_EQ(j["count"], 4);
  EXPECT_DOUBLE_EQ(j["sum"].get<double>(), 8.15);
}

TEST(Histogram, ConcurrentObserves) {
  Histogram h({1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) h.Observe(i % 2 ? 0.5 : 2);
    });
  }
  for (auto& t : threads) t.join();
  Histogram::Snapshot s = h.snapshot();
  EXPECT_EQ(s.count, 40000u);
  EXPECT_EQ(s.cumulative[0], 20000u);
  EXPECT_DOUBLE_EQ(s.sum, 20000 * 0.5 + 20000 * 2.0);
}

TEST(HitRateWindow, RatesOverWindows) {
  HitRateWindow w(900);
  // One hit and one miss every second for 20 minutes, then only hits for a minute.
  int64_t hits = 0, misses = 0;
  for (int64_t t = 0; t <= 1260; ++t) {
    hits = t;
    misses = std::min<int64_t>(t, 1200);
    w.Record(t, hits, misses);
  }
  HitRateWindow::Rate one = w.Over(1260, 60, hits, misses);
  EXPECT_EQ(one.hits, 60);
  EXPECT_EQ(one.misses, 0);
  EXPECT_DOUBLE_EQ(one.hit_rate, 1.0);
  EXPECT_EQ(one.covered_s, 60);
  HitRateWindow::Rate five = w.Over(1260, 300, hits, misses);
  EXPECT_EQ(five.hits, 300);
  EXPECT_EQ(five.misses, 240);
  HitRateWindow::Rate fifteen = w.Over(1260, 900, hits, misses);
  EXPECT_EQ(fifteen.covered_s, 900);
  EXPECT_EQ(fifteen.hits, 900);
  EXPECT_EQ(fifteen.misses, 840);
}

TEST(HitRateWindow, ShortUptimeUsesTheOldestSample) {
  HitRateWindow w(900);
  w.Record(100, 5, 5);
  w.Record(110, 8, 6);
  HitRateWindow::Rate r = w.Over(120, 300, 10, 6);
  EXPECT_EQ(r.hits, 5);
  EXPECT_EQ(r.misses, 1);
  EXPECT_EQ(r.covered_s, 20);
  EXPECT_EQ(HitRateWindow().Over(5, 60, 3, 3).hits, 0);
}

TEST(HitRateWindow, SameSecondKeepsTheFirst) {
  HitRateWindow w(60);
  w.Record(10, 1, 0);
  w.Record(10, 2, 0);  // ignored: the baseline stays at 1
  EXPECT_EQ(w.Over(10, 60, 5, 0).hits, 4);
  w.Record(80, 3, 0);
  EXPECT_EQ(w.Over(80, 60, 3, 0).hits, 2);
}

TEST(HitRateWindow, SeriesPerBucket) {
  HitRateWindow w(900);
  w.Record(100, 0, 0);
  w.Record(105, 2, 1);
  w.Record(112, 5, 1);
  // Buckets (95, 105], (105, 115], (115, 125] ending at now = 125 with 7 hits, 3 misses.
  const auto s = w.Series(125, 10, 3, 7, 3);
  ASSERT_EQ(s.size(), 3u);
  ASSERT_TRUE(s[0].has_value());
  EXPECT_EQ(s[0]->hits, 2);  // from the first sample (100) to 105
  EXPECT_EQ(s[0]->misses, 1);
  EXPECT_EQ(s[1]->hits, 3);
  EXPECT_EQ(s[1]->misses, 0);
  EXPECT_EQ(s[2]->hits, 2);
  EXPECT_EQ(s[2]->misses, 2);
  // Buckets ending before the first sample have no data.
  const auto longer = w.Series(125, 10, 5, 7, 3);
  EXPECT_FALSE(longer[0].has_value());
  EXPECT_FALSE(longer[1].has_value());
  EXPECT_EQ(longer[2]->hits, 2);
  for (const auto& b : HitRateWindow().Series(5, 10, 4, 1, 1)) EXPECT_FALSE(b.has_value());
}

// Random counters at random times against a list of every sample, never pruned.
TEST(HitRateWindow, SeriesRandomizedAgainstAllSamples) {
  struct Sample {
    int64_t t, hits, misses;
  };
  std::mt19937 rng(11);
  for (int round = 0; round < 20; ++round) {
    const int64_t horizon = 60 + rng() % 900;
    HitRateWindow w(horizon);
    std::vector<Sample> all;
    int64_t t = rng() % 50, hits = 0, misses = 0;
    for (int op = 0; op < 200; ++op) {
      t += rng() % 4;  // several samples in one second: the first one counts
      hits += rng() % 3;
      misses += rng() % 2;
      w.Record(t, hits, misses);
      if (all.empty() || all.back().t < t) all.push_back({t, hits, misses});
      const int64_t bucket = 1 + rng() % 30;
      const int n = static_cast<int>(std::max<int64_t>(1, horizon / bucket));
      const int64_t now = t + rng() % 3;
      const auto got = w.Series(now, bucket, n, hits, misses);
      auto at = [&](int64_t x) -> std::optional<Sample> {
        if (x >= now) return Sample{now, hits, misses};
        std::optional<Sample> found;
        for (const Sample& s : all) {
          if (s.t <= x) found = s;
        }
        return found;
      };
      for (int k = 0; k < n; ++k) {
        const int64_t end = now - static_cast<int64_t>(n - k - 1) * bucket;
        const std::optional<Sample> e = at(end);
        ASSERT_EQ(got[k].has_value(), e.has_value()) << "round " << round << " op " << op << " k " << k;
        if (!e) continue;
        const Sample s = at(end - bucket).value_or(all.front());
        ASSERT_EQ(got[k]->hits, e->hits - s.hits) << "round " << round << " op " << op << " k " << k;
        ASSERT_EQ(got[k]->misses, e->misses - s.misses);
      }
    }
  }
}

TEST(Metrics, PrometheusTextHasTheCounters) {
  ServiceInfo info;
  info.block_bytes = 1024;
  info.prefix_cache = true;
  ServiceStats stats;
  stats.cache.hits = 3;
  stats.cache.misses = 1;
  stats.cache.cached_blocks = 4;
  stats.pool_free_blocks = 7;
  stats.steps.steps = 12;
  stats.steps.forward_cpu_seconds = 0.5;
  stats.engine_thread_cpu_seconds = 0.75;
  ServerMetrics m;
  m.time_to_first_token.Observe(0.02);
  m.CountResponse("/v1/completions", 200);
  m.CountResponse("/v1/completions", 200);
  m.CountResponse("/v1/completions", 400);
  const std::string text = PrometheusText(info, stats, m);
  EXPECT_NE(text.find("\nprefixd_prefix_cache_hits_total 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nprefixd_prefix_cache_misses_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("\nprefixd_prefix_cache_cached_bytes 4096\n"), std::string::npos);
  EXPECT_NE(text.find("\nprefixd_kv_pool_free_blocks 7\n"), std::string::npos);
  EXPECT_NE(text.find("\nprefixd_engine_steps_total 12\n"), std::string::npos);
  EXPECT_NE(text.find("\nprefixd_engine_thread_cpu_outside_forward_seconds_total 0.25\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE prefixd_prefix_cache_hits_total counter"), std::string::npos);
  EXPECT_NE(text.find("prefixd_http_responses_total{route=\"/v1/completions\",code=\"200\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("prefixd_time_to_first_token_seconds_bucket{le=\"0.025\"} 1"), std::string::npos);
  EXPECT_NE(text.find("prefixd_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1"), std::string::npos);
  EXPECT_NE(text.find("prefixd_time_to_first_token_seconds_count 1"), std::string::npos);
}

TEST(Metrics, StatsJson) {
  ServiceInfo info;
  info.block_bytes = 100;
  info.block_size = 16;
  ServiceStats stats;
  stats.cache.hits = 3;
  stats.cache.misses = 1;
  stats.cache.hit_tokens = 30;
  stats.cache.cached_blocks = 2;
  HitRateWindow w;
  w.Record(0, 0, 0);
  nlohmann::json j = PrefixCacheStatsJson(info, stats, w, 10);
  EXPECT_EQ(j["enabled"], true);
  EXPECT_FALSE(j.contains("reason"));
  // "busy" could never be true (a field that cannot change is noise): it is gone.
  EXPECT_FALSE(j.contains("busy"));
  EXPECT_EQ(j["hits"], 3);
  EXPECT_DOUBLE_EQ(j["hit_rate"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j["avg_hit_tokens"].get<double>(), 10.0);
  EXPECT_EQ(j["cached_bytes"], 200);
  EXPECT_EQ(j["rates"]["1m"]["hits"], 3);
  EXPECT_EQ(j["rates"]["15m"]["window_s"], 900);

  stats.cache.enabled = false;
  nlohmann::json k = PrefixCacheStatsJson(info, stats, w, 10);
  EXPECT_EQ(k["enabled"], false);
  EXPECT_NE(k["reason"].get<std::string>().find("kill switch"), std::string::npos);
  info.prefix_cache = false;
  nlohmann::json l = PrefixCacheStatsJson(info, stats, w, 10);
  EXPECT_NE(l["reason"].get<std::string>().find("--prefix-cache off"), std::string::npos);
}

TEST(Metrics, LowerTiers) {
  ServiceInfo info;
  info.block_bytes = 100;
  ServiceStats stats;
  nlohmann::json none = PrefixCacheStatsJson(info, stats, HitRateWindow(), 0);
  EXPECT_FALSE(none["by_tier"].contains("host"));
  EXPECT_EQ(PrometheusText(info, stats, ServerMetrics()).find("prefixd_tier_"), std::string::npos);

  TierControllerStats t;
  t.host_enabled = true;
  t.host.entries = 5;
  t.host.hits = 2;
  t.onboarded_blocks = 2;
  t.partial.max_entries = 4;
  t.partial.entries = 1;
  stats.tiers = t;
  nlohmann::json j = PrefixCacheStatsJson(info, stats, HitRateWindow(), 0);
  EXPECT_EQ(j["by_tier"]["host"]["blocks"], 5);
  EXPECT_FALSE(j["by_tier"].contains("disk"));
  EXPECT_EQ(j["by_tier"]["partial"]["entries"], 1);
  EXPECT_EQ(j["onboarded_blocks"], 2);
  const std::string text = PrometheusText(info, stats, ServerMetrics());
  EXPECT_NE(text.find("prefixd_tier_blocks{tier=\"host\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("prefixd_tier_hits_total{tier=\"host\"} 2\n"), std::string::npos);
  EXPECT_EQ(text.find("tier=\"disk\""), std::string::npos);
  EXPECT_NE(text.find("\nprefixd_tier_onboarded_blocks_total 2\n"), std::string::npos);
  EXPECT_NE(text.find("\nprefixd_partial_tails 1\n"), std::string::npos);
  EXPECT_EQ(text.find("prefixd_tier_disk_writes_pending"), std::string::npos) << "no disk tier";

  t.disk_enabled = true;
  t.disk.quarantined = 3;
  t.disk_writes_queued = 10;
  t.disk_writes_pending = 4;
  t.prefetched_blocks = 2;
  stats.tiers = t;
  nlohmann::json d = PrefixCacheStatsJson(info, stats, HitRateWindow(), 0);
  EXPECT_EQ(d["by_tier"]["disk"]["quarantined"], 3);
  EXPECT_EQ(d["by_tier"]["disk"]["writes_pending"], 4);
  EXPECT_EQ(d["by_tier"]["disk"]["prefetched_blocks"], 2);
  const std::string disk_text = PrometheusText(info, stats, ServerMetrics());
  EXPECT_NE(disk_text.find("prefixd_tier_quarantined_total{tier=\"disk\"} 3\n"), std::string::npos);
  EXPECT_NE(disk_text.find("\nprefixd_tier_disk_writes_pending 4\n"), std::string::npos);
  EXPECT_NE(disk_text.find("\nprefixd_tier_disk_prefetched_blocks 2\n"), std::string::npos);
  EXPECT_EQ(disk_text.find("prefixd_tier_remote_"), std::string::npos) << "no remote tier";

  t.remote_enabled = true;
  t.remote_writes_queued = 9;
  t.remote_writes_pending = 3;
  t.remote_prefetched_blocks = 5;
  t.remote_health.up = true;
  stats.tiers = t;
  nlohmann::json r = PrefixCacheStatsJson(info, stats, HitRateWindow(), 0);
  EXPECT_EQ(r["by_tier"]["remote"]["writes_pending"], 3);
  EXPECT_EQ(r["by_tier"]["remote"]["prefetched_blocks"], 5);
  EXPECT_EQ(r["by_tier"]["disk"]["prefetched_blocks"], 2) << "each tier its own read-ahead";
  const std::string remote_text = PrometheusText(info, stats, ServerMetrics());
  EXPECT_NE(remote_text.find("\nprefixd_tier_remote_writes_pending 3\n"), std::string::npos);
  EXPECT_NE(remote_text.find("\nprefixd_tier_remote_prefetched_blocks 5\n"), std::string::npos);
  EXPECT_NE(remote_text.find("\nprefixd_tier_disk_prefetched_blocks 2\n"), std::string::npos);
}

}  // namespace
}  // namespace prefixd
