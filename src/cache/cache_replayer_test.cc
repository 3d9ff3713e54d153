#include "cache/cache_replayer.h"

#include <gtest/gtest.h>

#include <numeric>

#include "tier/block_record.h"

namespace prefixd {
namespace {

std::vector<int32_t> Tokens(int32_t first, int n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

ReplayConfig SmallPool() {
  ReplayConfig c;
  c.block_size = 4;
  c.max_cached_blocks = 4;  // one request evicts the other
  c.num_kv_blocks = 4 + 16;
  c.max_chunk_tokens = c.max_batch_tokens = 8;  // prefill in several chunks
  c.partial_max_entries = 0;
  return c;
}

// Replays A, then B (which evicts A from the pool), then A again; returns A's second outcome.
ReplayOutcome ReplayABA(const ReplayConfig& config) {
  auto replayer = CacheReplayer::Create(config);
  EXPECT_TRUE(replayer.ok()) << replayer.status();
  if (!replayer.ok()) return {};
  const std::vector<int32_t> a = Tokens(0, 42), b = Tokens(1000, 42);  // 40 prompt tokens, 2 computed
  ReplayedRequest ra, rb;
  ra.tokens = a;
  rb.tokens = b;
  ra.num_prompt = rb.num_prompt = 40;
  EXPECT_EQ((*replayer)->Run(ra).cached_tokens, 0);
  EXPECT_EQ((*replayer)->Run(rb).cached_tokens, 0);
  const ReplayOutcome again = (*replayer)->Run(ra);
  EXPECT_FALSE(again.unservable);
  EXPECT_GT((*replayer)->cache_stats().evicted_blocks, 0);
  return again;
}

TEST(CacheReplayer, WithoutLowerTiersAnEvictedPromptIsRecomputed) {
  EXPECT_EQ(ReplayABA(SmallPool()).cached_tokens, 0);
}

TEST(CacheReplayer, HostRamServesWhatThePoolEvicted) {
  ReplayConfig c = SmallPool();
  c.host_blocks = 100;
  const ReplayOutcome o = ReplayABA(c);
  EXPECT_EQ(o.cached_tokens, 39);  // all but the last prompt token
  EXPECT_GT(o.tier.host_tokens, 0);
  EXPECT_EQ(o.tier.disk_tokens, 0);
}

TEST(CacheReplayer, TheDiskTierServesWhatItsScopeKept) {
  ReplayConfig c = SmallPool();
  c.disk_blocks = 100;
  c.scope = ScopeSpec{ScopeSpec::Mode::kFull};
  const ReplayOutcome o = ReplayABA(c);
  EXPECT_EQ(o.cached_tokens, 39);
  EXPECT_GT(o.tier.disk_tokens, 0);
  EXPECT_EQ(o.tier.host_tokens, 0);
  c.scope = ScopeSpec{ScopeSpec::Mode::kTokens, 16};  // the first 4 blocks only
  EXPECT_EQ(ReplayABA(c).cached_tokens, 16);
  c.scope = ScopeSpec{ScopeSpec::Mode::kOff};
  EXPECT_EQ(ReplayABA(c).cached_tokens, 0);
}

// A tier holds as many blocks as the server's would: each is charged its record's size.
TEST(CacheReplayer, TierBlocksChargesEachBlockItsRecordSize) {
  const int64_t record = static_cast<int64_t>(SerializedSize(16, 4096));
  EXPECT_GT(record, 4096 + 16 * 4);  // the KV, the token ids, and a header
  EXPECT_EQ(TierBlocks(0, 16, 4096), 0);
  EXPECT_EQ(TierBlocks(record - 1, 16, 4096), 0);
  EXPECT_EQ(TierBlocks(record * 3, 16, 4096), 3);
  EXPECT_EQ(TierBlocks(record * 4 - 1, 16, 4096), 3);
}

// A server whose prefix cache was off (or refused for its model) reused nothing.
TEST(CacheReplayer, ACacheThatIsOffServesNothing) {
  ReplayConfig c = SmallPool();
  c.enabled = false;
  c.host_blocks = 100;
  auto replayer = CacheReplayer::Create(c);
  ASSERT_TRUE(replayer.ok()) << replayer.status();
  const std::vector<int32_t> a = Tokens(0, 42);
  ReplayedRequest r;
  r.tokens = a;
  r.num_prompt = 40;
  EXPECT_EQ((*replayer)->Run(r).cached_tokens, 0);
  EXPECT_EQ((*replayer)->Run(r).cached_tokens, 0);
}

TEST(CacheReplayer, RefusesAConfigOutOfRange) {
  ReplayConfig c = SmallPool();
  c.num_kv_blocks = 0;
  EXPECT_FALSE(CacheReplayer::Create(c).ok());
}

}  // namespace
}  // namespace prefixd
