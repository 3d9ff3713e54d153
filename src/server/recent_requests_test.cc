#include "server/recent_requests.h"

#include <atomic>
#include <random>
#include <thread>

#include <gtest/gtest.h>

namespace prefixd {
namespace {

RequestRecord Named(const std::string& id) {
  RequestRecord r;
  r.id = id;
  r.kind = "completion";
  r.outcome = "stop";
  r.usage = nlohmann::json{{"prompt_tokens", 3}};
  return r;
}

TEST(RecentRequests, EmptyThenNewestFirst) {
  RecentRequests ring(3);
  EXPECT_TRUE(ring.Snapshot().empty());
  EXPECT_EQ(ring.num_added(), 0);
  for (const char* id : {"a", "b", "c", "d"}) ring.Add(Named(id));
  const std::vector<RequestRecord> s = ring.Snapshot();
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].id, "d");
  EXPECT_EQ(s[0].seq, 4);
  EXPECT_EQ(s[2].id, "b");
  EXPECT_EQ(s[2].seq, 2);
  EXPECT_EQ(ring.num_added(), 4);
}

// Thousands of random adds and reads against a plain vector of everything added.
TEST(RecentRequests, RandomizedAgainstAListOfEverything) {
  std::mt19937 rng(7);
  for (int capacity : {1, 2, 5, 50}) {
    RecentRequests ring(capacity);
    std::vector<std::string> all;
    for (int op = 0; op < 3000; ++op) {
      if (rng() % 3 != 0) {
        all.push_back("r" + std::to_string(op));
        ring.Add(Named(all.back()));
        continue;
      }
      const std::vector<RequestRecord> s = ring.Snapshot();
      const size_t expect = std::min<size_t>(all.size(), capacity);
      ASSERT_EQ(s.size(), expect);
      for (size_t i = 0; i < s.size(); ++i) {
        ASSERT_EQ(s[i].id, all[all.size() - 1 - i]) << "capacity " << capacity << " op " << op;
        ASSERT_EQ(s[i].seq, static_cast<int64_t>(all.size() - i));
      }
      ASSERT_EQ(ring.num_added(), static_cast<int64_t>(all.size()));
    }
  }
}

// Writers and a reader at once: every snapshot is a run of consecutive seqs, newest first.
TEST(RecentRequests, ConcurrentAddsKeepSnapshotsConsistent) {
  RecentRequests ring(8);
  std::atomic<bool> done{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t) {
    writers.emplace_back([&ring, t] {
      for (int i = 0; i < 2000; ++i) ring.Add(Named("t" + std::to_string(t)));
    });
  }
  std::thread reader([&] {
    while (!done.load()) {
      const std::vector<RequestRecord> s = ring.Snapshot();
      ASSERT_LE(s.size(), 8u);
      for (size_t i = 1; i < s.size(); ++i) ASSERT_EQ(s[i].seq + 1, s[i - 1].seq);
    }
  });
  for (auto& w : writers) w.join();
  done.store(true);
  reader.join();
  EXPECT_EQ(ring.num_added(), 6000);
  EXPECT_EQ(ring.Snapshot().front().seq, 6000);
}

TEST(RecentRequests, JsonHasTheExplanationAndNullTtft) {
  RequestRecord r = Named("cmpl-1");
  r.usage["prefix_cache"] = {{"cached_tokens", 16}, {"diverged_at_token", 16}};
  RecentRequests ring(2);
  ring.Add(r);
  const nlohmann::json j = RequestRecordJson(ring.Snapshot()[0]);
  EXPECT_EQ(j["seq"], 1);
  EXPECT_EQ(j["id"], "cmpl-1");
  EXPECT_TRUE(j["ttft_ms"].is_null());
  EXPECT_EQ(j["usage"]["prefix_cache"]["cached_tokens"], 16);
  r.ttft_ms = 12.5;
  EXPECT_EQ(RequestRecordJson(r)["ttft_ms"], 12.5);
}

}  // namespace
}  // namespace prefixd
