#include "cache/trace_replay.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace prefixd {
namespace {

// A random trace in the Mooncake style: each request continues a random earlier request's
// leading ids (a shared prefix), then new ids; the last block may be partial.
std::vector<TraceRequest> RandomTrace(std::mt19937& rng, int num_requests, bool full_blocks) {
  std::vector<TraceRequest> trace;
  int64_t next_id = 0;
  for (int i = 0; i < num_requests; ++i) {
    TraceRequest r;
    if (!trace.empty() && rng() % 4 != 0) {
      const TraceRequest& base = trace[rng() % trace.size()];
      const size_t keep = rng() % (base.hash_ids.size() + 1);
      r.hash_ids.assign(base.hash_ids.begin(), base.hash_ids.begin() + keep);
    }
    const int fresh = static_cast<int>(rng() % 3) + (r.hash_ids.empty() ? 1 : 0);
    for (int k = 0; k < fresh; ++k) r.hash_ids.push_back(next_id++);
    const int64_t blocks = static_cast<int64_t>(r.hash_ids.size());
    r.input_length = full_blocks ? blocks * kTraceBlockTokens
                                 : (blocks - 1) * kTraceBlockTokens + 1 + rng() % kTraceBlockTokens;
    r.output_length = rng() % 40;
    trace.push_back(r);
  }
  return trace;
}

ReplayResult Replay(std::span<const TraceRequest> trace, const ReplayOptions& options) {
  StatusOr<ReplayResult> r = ReplayTrace(trace, options);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : ReplayResult{};
}

int64_t CommonPrefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return ia - a.begin();
}

TEST(TraceReplay, PromptTokensFollowTheBlockIds) {
  TraceRequest r;
  r.hash_ids = {3, 7};
  r.input_length = kTraceBlockTokens + 2;
  const std::vector<int32_t> t = TracePromptTokens(r);
  ASSERT_EQ(t.size(), static_cast<size_t>(kTraceBlockTokens + 2));
  EXPECT_EQ(t[0], 3 * kTraceBlockTokens);
  EXPECT_EQ(t[kTraceBlockTokens - 1], 4 * kTraceBlockTokens - 1);
  EXPECT_EQ(t[kTraceBlockTokens], 7 * kTraceBlockTokens);
  EXPECT_EQ(t.back(), 7 * kTraceBlockTokens + 1);
}

// Unbounded, nothing is evicted, so each request's hit is its longest common prefix with any
// earlier prompt (generated tokens are unique), at most its length minus one: a brute-force
// reference, request by request, for several block sizes (partial blocks included).
TEST(TraceReplay, UnboundedHitsAreTheLongestCommonPrefixWithAnEarlierPrompt) {
  std::mt19937 rng(5);
  for (int block_size : {1, 4, 16, 64}) {
    const std::vector<TraceRequest> trace = RandomTrace(rng, 60, /*full_blocks=*/false);
    ReplayOptions o;
    o.cache.block_size = block_size;
    const ReplayResult got = Replay(trace, o);
    ASSERT_EQ(got.by_request.size(), trace.size());
    EXPECT_EQ(got.evicted_blocks, 0);
    std::vector<std::vector<int32_t>> earlier;
    int64_t want_total = 0;
    for (size_t i = 0; i < trace.size(); ++i) {
      const std::vector<int32_t> tokens = TracePromptTokens(trace[i]);
      int64_t want = 0;
      for (const auto& e : earlier) want = std::max(want, CommonPrefix(tokens, e));
      want = std::min<int64_t>(want, static_cast<int64_t>(tokens.size()) - 1);
      ASSERT_EQ(got.by_request[i].cached_tokens, want) << "block size " << block_size << " request " << i;
      want_total += want;
      earlier.push_back(tokens);
    }
    EXPECT_EQ(got.cached_tokens, want_total);
  }
}

// With whole 512-token blocks and ids that name their prefix (as in Mooncake traces), the
// unbounded replay reaches the ideal exactly.
TEST(TraceReplay, UnboundedReplayOfWholeBlocksReachesTheIdeal) {
  std::mt19937 rng(9);
  const std::vector<TraceRequest> trace = RandomTrace(rng, 80, /*full_blocks=*/true);
  const ReplayResult r = Replay(trace, ReplayOptions{});
  EXPECT_GT(r.ideal_tokens, 0);
  EXPECT_EQ(r.cached_tokens, r.ideal_tokens);
  EXPECT_DOUBLE_EQ(r.cached_fraction(), r.ideal_fraction());
}

// A budget smaller than the trace evicts and never serves more than the unbounded replay.
TEST(TraceReplay, ABoundedPoolEvictsAndNeverBeatsTheUnboundedOne) {
  std::mt19937 rng(11);
  const std::vector<TraceRequest> trace = RandomTrace(rng, 80, /*full_blocks=*/false);
  const ReplayResult unbounded = Replay(trace, ReplayOptions{});
  ReplayOptions small;
  small.cache.max_cached_blocks = 200;  // a few requests' worth at 16 tokens per block
  const ReplayResult bounded = Replay(trace, small);
  EXPECT_GT(bounded.evicted_blocks, 0);
  EXPECT_LT(bounded.cached_tokens, unbounded.cached_tokens);
  for (size_t i = 0; i < trace.size(); ++i) {
    EXPECT_LE(bounded.by_request[i].cached_tokens, unbounded.by_request[i].cached_tokens) << i;
  }
  EXPECT_EQ(bounded.unservable, 0);
}

// Host RAM behind a small pool: what the pool evicts comes back from host RAM, and the
// per-tier counts add up to the cached tokens.
TEST(TraceReplay, HostRamServesWhatThePoolEvicted) {
  std::mt19937 rng(13);
  const std::vector<TraceRequest> trace = RandomTrace(rng, 80, /*full_blocks=*/false);
  ReplayOptions pool_only;
  pool_only.cache.max_cached_blocks = 200;
  ReplayOptions with_host = pool_only;
  with_host.cache.host_blocks = 100000;
  const ReplayResult a = Replay(trace, pool_only);
  const ReplayResult b = Replay(trace, with_host);
  EXPECT_EQ(a.host_tokens, 0);
  EXPECT_GT(b.host_tokens, 0);
  EXPECT_GT(b.offloaded_blocks, 0);
  EXPECT_GT(b.cached_tokens, a.cached_tokens);
  int64_t sum = 0;
  for (const ReplayOutcome& o : b.by_request) {
    EXPECT_LE(o.tier.host_tokens + o.tier.disk_tokens + o.tier.partial_tokens, o.cached_tokens);
    sum += o.cached_tokens;
  }
  EXPECT_EQ(sum, b.cached_tokens);
}

TEST(TraceReplay, IdealCountsLeadingSeenIdsUpToTheLastToken) {
  absl::flat_hash_set<int64_t> seen = {1, 2, 5};
  TraceRequest r;
  r.hash_ids = {1, 2, 3, 5};
  r.input_length = 4 * kTraceBlockTokens;
  EXPECT_EQ(IdealCachedTokens(r, seen), 2 * kTraceBlockTokens);  // 5 is not leading
  r.hash_ids = {1, 2};
  r.input_length = kTraceBlockTokens + 10;
  EXPECT_EQ(IdealCachedTokens(r, seen), kTraceBlockTokens + 9);
}

}  // namespace
}  // namespace prefixd
