#include "cache/tier_controller.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "cache/block_keyer.h"
#include "kv/block_table.h"
#include "tier/redis_test_server.h"

namespace prefixd {
namespace {

constexpr int kBs = 4;
constexpr int64_t kBlockBytes = 32;

// Block bytes in memory, standing in for a backend.
class FakeBlockIo : public BlockIo {
 public:
  void ReadBlock(BlockId b, std::span<uint8_t> out) const override {
    auto it = bytes_.find(b.value());
    if (it == bytes_.end()) {
      std::memset(out.data(), 0, out.size());
    } else {
      std::memcpy(out.data(), it->second.data(), out.size());
    }
  }
  void WriteBlock(BlockId b, std::span<const uint8_t> in) override {
    bytes_[b.value()].assign(in.begin(), in.end());
  }
  int64_t block_bytes() const override { return kBlockBytes; }
  void Fill(BlockId b, uint8_t v) { bytes_[b.value()].assign(kBlockBytes, v); }

 private:
  std::map<int32_t, std::vector<uint8_t>> bytes_;
};

// The chain the prefix cache would hand the controller (salt "").
BlockKeyChain Keys(std::span<const int32_t> tokens) {
  return BlockKeyer(BlockHashKind::kXxh3, {1, 2, 3}, kBs).Chain("", tokens);
}

// Onboard as the prefix cache calls it: with the prompt's keys, evicting from `tree` for room.
TierHit Onboard(TierController& tc, RadixTree& tree, std::span<const int32_t> prompt,
                int64_t max_tokens) {
  return tc.Onboard(tree, "", prompt, Keys(prompt), max_tokens,
                    [&](int n) { return tree.Evict(n); });
}

// Residency below the pool, after what `tree` holds.
TierProbe Probe(const TierController& tc, const RadixTree& tree, std::span<const int32_t> prompt) {
  return tc.Probe(tree.Peek("", prompt).num_tokens, prompt, Keys(prompt));
}

std::unique_ptr<TierController> MakeController(FakeBlockIo* io, BlockPool* pool, int tails = 4) {
  TierOptions o;
  o.host_bytes = 1 << 20;
  o.partial_max_entries = tails;
  auto tc = TierController::Create(o, {1, 2, 3}, BlockHashKind::kXxh3, kBs, io, pool);
  EXPECT_TRUE(tc.ok()) << tc.status();
  return std::move(*tc);
}

// A prompt of 2 full blocks and a 3-token tail, computed into fresh blocks and handed to the
// controller as a completed prefill.
struct Computed {
  std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  BlockTable table;
};

Computed Prefill(FakeBlockIo& io, BlockPool& pool, TierController& tc) {
  Computed c;
  EXPECT_TRUE(c.table.PrepareWrite(pool, kBs, 0, static_cast<int64_t>(c.prompt.size())));
  for (size_t i = 0; i < c.table.blocks().size(); ++i) io.Fill(c.table.blocks()[i], 10 + i);
  tc.OnPrefillComplete(c.prompt, c.table.blocks(), Keys(c.prompt), {}, std::nullopt);
  return c;
}

TEST(TierController, TailSplicesIntoTheTreeWithItsBytes) {
  BlockPool pool(16);
  FakeBlockIo io;
  auto tc = MakeController(&io, &pool);
  RadixTree tree(&pool, kBs);
  Computed c = Prefill(io, pool, *tc);
  // The pool keeps the two full blocks (as the tree would), the tail lives in the store.
  tree.Insert("", std::span<const int32_t>(c.prompt).first(8), c.table.blocks());
  c.table.Release(pool);
  const TierHit hit = Onboard(*tc, tree, c.prompt, 10);
  EXPECT_EQ(hit.partial_tokens, 2) << "tail tokens 8, 9 (10 is the last, always computed)";
  const MatchResult m = tree.Peek("", c.prompt);
  EXPECT_EQ(m.num_tokens, 10);
  std::vector<uint8_t> got(kBlockBytes);
  io.ReadBlock(m.blocks[2], got);
  EXPECT_EQ(got, std::vector<uint8_t>(kBlockBytes, 12)) << "the tail block's bytes";
  tree.CheckInvariants();
}

TEST(TierController, FailedSpliceLeavesEverythingUntouched) {
  BlockPool pool(4);
  FakeBlockIo io;
  auto tc = MakeController(&io, &pool);
  RadixTree tree(&pool, kBs);
  Computed c = Prefill(io, pool, *tc);
  tree.Insert("", std::span<const int32_t>(c.prompt).first(8), c.table.blocks());
  // Every pool block is held outside the tree: no room to splice the tail into.
  auto rest = pool.Allocate(pool.num_free());
  ASSERT_TRUE(rest);
  const int free_before = pool.num_free();
  const TierHit hit = Onboard(*tc, tree, c.prompt, 10);
  EXPECT_EQ(hit.partial_tokens, 0);
  EXPECT_EQ(tree.Peek("", c.prompt).num_tokens, 8) << "the tree is as it was";
  EXPECT_EQ(pool.num_free(), free_before);
  EXPECT_EQ(tc->stats().partial.entries, 1) << "the tail is kept for a later request";
  EXPECT_EQ(tc->stats().partial.hits, 0);
  tree.CheckInvariants();
  pool.CheckInvariants();
  for (BlockId b : *rest) pool.Unref(b);
  c.table.Release(pool);
}

// A model whose cache cannot be sliced per token keeps no tails and says so in its stats.
TEST(TierController, UnsupportedModelRefusesTails) {
  BlockPool pool(16);
  FakeBlockIo io;
  TierOptions o;
  o.host_bytes = 1 << 20;
  o.partial_max_entries = 4;
  o.partial_supported = false;
  auto tc = TierController::Create(o, {1, 2, 3}, BlockHashKind::kXxh3, kBs, &io, &pool);
  ASSERT_TRUE(tc.ok()) << tc.status();
  RadixTree tree(&pool, kBs);
  Computed c = Prefill(io, pool, **tc);
  tree.Insert("", std::span<const int32_t>(c.prompt).first(8), c.table.blocks());
  c.table.Release(pool);
  EXPECT_EQ(Onboard(**tc, tree, c.prompt, 10).partial_tokens, 0);
  const PartialTailStats p = (*tc)->stats().partial;
  EXPECT_FALSE(p.supported);
  EXPECT_EQ(p.max_entries, 0);
  EXPECT_EQ(p.entries, 0);
  EXPECT_EQ(p.stashes, 0);
  EXPECT_TRUE(MakeController(&io, &pool)->stats().partial.supported);
}

TEST(TierController, MismatchingTailIsEvictedAndNothingSpliced) {
  BlockPool pool(16);
  FakeBlockIo io;
  auto tc = MakeController(&io, &pool);
  RadixTree tree(&pool, kBs);
  Computed c = Prefill(io, pool, *tc);
  tree.Insert("", std::span<const int32_t>(c.prompt).first(8), c.table.blocks());
  c.table.Release(pool);
  std::vector<int32_t> other = c.prompt;
  other[9] = 99;  // diverges inside the tail
  EXPECT_EQ(Onboard(*tc, tree, other, 10).partial_tokens, 0);
  EXPECT_EQ(tc->stats().partial.entries, 0);
  EXPECT_EQ(tree.Peek("", other).num_tokens, 8);
}

TEST(TierController, EvictedBlocksAreOffloadedAndOnboardedWithTheirBytes) {
  BlockPool pool(16);
  FakeBlockIo io;
  auto tc = MakeController(&io, &pool, /*tails=*/0);
  RadixTree tree(&pool, kBs);
  Computed c = Prefill(io, pool, *tc);
  const BlockKeyChain keys = Keys(c.prompt);
  tree.Insert("", c.prompt, c.table.blocks(), &keys);
  c.table.Release(pool);
  // As PrefixCache applies an eviction: the plan's blocks go down in one batch, then the tree
  // drops them.
  const EvictionPlan plan = tree.PrepareClear();
  tc->Offload(plan.nodes);
  tree.ApplyEviction(plan);
  EXPECT_EQ(tc->stats().offloaded_blocks, 2) << "two full blocks; the partial third is not";
  // The copier read the two blocks off the engine thread: the pool held them until then, and
  // gives them back once the controller sees the copies done.
  EXPECT_EQ(pool.num_free(), 14);
  EXPECT_EQ(pool.num_held(), 2);
  tc->WaitForCopies();
  EXPECT_EQ(pool.num_free(), 16);
  const TierHit hit = Onboard(*tc, tree, c.prompt, 10);
  EXPECT_EQ(hit.host_tokens, 8);
  const MatchResult m = tree.Peek("", c.prompt);
  ASSERT_EQ(m.num_tokens, 8);
  std::vector<uint8_t> got(kBlockBytes);
  for (int i = 0; i < 2; ++i) {
    io.ReadBlock(m.blocks[i], got);
    EXPECT_EQ(got, std::vector<uint8_t>(kBlockBytes, 10 + i)) << "block " << i;
  }
  const TierProbe p = Probe(*tc, tree, c.prompt);
  EXPECT_EQ(p.pool_tokens, 8);
}

// ---- The remote tier (L4), against a real redis-server on loopback.

std::unique_ptr<TierController> MakeRemoteController(FakeBlockIo* io, BlockPool* pool,
                                                     const RedisTestServer& redis,
                                                     const std::string& ns = "tc",
                                                     int io_timeout_ms = 300) {
  TierOptions o;
  o.partial_max_entries = 0;
  o.scope = *ParseScopeSpec("full");
  RedisStoreOptions r;
  r.url = *ParseRedisUrl(redis.url());
  r.key_namespace = ns;
  r.io_timeout_ms = io_timeout_ms;
  r.connect_timeout_ms = 300;
  o.remote = r;
  auto tc = TierController::Create(o, {1, 2, 3}, BlockHashKind::kXxh3, kBs, io, pool);
  EXPECT_TRUE(tc.ok()) << tc.status();
  return std::move(*tc);
}

// Reads ahead as the engine does before admission, then onboards and ends the read-ahead.
TierHit LoadAndOnboard(TierController& tc, RadixTree& tree, std::span<const int32_t> prompt,
                       int64_t ticket) {
  const int64_t max_tokens = static_cast<int64_t>(prompt.size()) - 1;
  SlowReads reads = tc.KeysToLoad(Keys(prompt), tree.Peek("", prompt.first(max_tokens)).num_tokens);
  if (!reads.empty()) {
    tc.Prefetch(ticket, std::move(reads));
    while (!tc.PrefetchDone(ticket)) tc.WaitForPrefetch(10);
  }
  const TierHit hit = Onboard(tc, tree, prompt, max_tokens);
  tc.EndPrefetch(ticket);
  return hit;
}

// Two replicas sharing one Redis: A has computed the prompt and written it there, B has not
// seen it.
struct TwoReplicas {
  explicit TwoReplicas(const RedisTestServer& redis)
      : a(MakeRemoteController(&io_a, &pool_a, redis)),
        b(MakeRemoteController(&io_b, &pool_b, redis)),
        c(Prefill(io_a, pool_a, *a)) {
    a->FlushRemoteWrites();
    EXPECT_EQ(a->stats().remote.writes, 2);
    c.table.Release(pool_a);
  }
  BlockPool pool_a{16}, pool_b{16};
  FakeBlockIo io_a, io_b;
  std::unique_ptr<TierController> a, b;
  Computed c;
};

TEST(TierController, ReplicasShareBlocksThroughRemote) {
  RedisTestServer redis;
  if (!redis.Start()) GTEST_SKIP() << redis.skip_reason();
  TwoReplicas r(redis);
  auto& [pool_a, pool_b, io_a, io_b, a, b, c] = r;

  RadixTree tree(&pool_b, kBs);
  TierProbe p = Probe(*b, tree, c.prompt);
  b->ProbeRemote(Keys(c.prompt), &p);
  EXPECT_EQ(p.remote_tokens, 8);
  const TierHit hit = LoadAndOnboard(*b, tree, c.prompt, 1);
  EXPECT_EQ(hit.remote_tokens, 8);
  const MatchResult m = tree.Peek("", c.prompt);
  ASSERT_EQ(m.num_tokens, 8);
  std::vector<uint8_t> got(kBlockBytes);
  for (int i = 0; i < 2; ++i) {
    io_b.ReadBlock(m.blocks[i], got);
    EXPECT_EQ(got, std::vector<uint8_t>(kBlockBytes, 10 + i)) << "block " << i;
  }
  EXPECT_EQ(b->stats().remote.hits, 2);
  EXPECT_EQ(b->stats().remote_prefetched_blocks, 0);
  tree.CheckInvariants();

  // Another namespace sees nothing; clearing it leaves ours alone.
  auto other = MakeRemoteController(&io_b, &pool_b, redis, "other");
  RadixTree tree2(&pool_b, kBs);
  EXPECT_EQ(LoadAndOnboard(*other, tree2, c.prompt, 2).remote_tokens, 0);
  ASSERT_TRUE(other->Clear("remote").ok());
  ASSERT_TRUE(other->ClearRemote().ok());
  TierProbe q = Probe(*a, tree2, c.prompt);
  a->ProbeRemote(Keys(c.prompt), &q);
  EXPECT_EQ(q.remote_tokens, 8);
  ASSERT_TRUE(a->ClearRemote().ok());
  q = Probe(*a, tree2, c.prompt);
  a->ProbeRemote(Keys(c.prompt), &q);
  EXPECT_EQ(q.remote_tokens, 0);
}

TEST(TierController, RedisDownMeansMissesNotErrors) {
  RedisTestServer redis;
  if (!redis.Start()) GTEST_SKIP() << redis.skip_reason();
  BlockPool pool(16);
  FakeBlockIo io;
  auto tc = MakeRemoteController(&io, &pool, redis);
  Computed c = Prefill(io, pool, *tc);
  tc->FlushRemoteWrites();
  c.table.Release(pool);
  redis.Kill();
  RadixTree tree(&pool, kBs);
  const TierHit hit = LoadAndOnboard(*tc, tree, c.prompt, 1);
  EXPECT_EQ(hit.remote_tokens, 0);
  EXPECT_EQ(tree.Peek("", c.prompt).num_tokens, 0);
  const TierControllerStats s = tc->stats();
  EXPECT_FALSE(s.remote_health.up);
  EXPECT_EQ(s.remote_health.outages, 1);
  // Writes while down fail in the background, counted; nothing blocks.
  Computed d = Prefill(io, pool, *tc);
  tc->FlushRemoteWrites();
  EXPECT_GE(tc->stats().remote.write_failures, 2);
  d.table.Release(pool);
  pool.CheckInvariants();
}

// Blocks read ahead from Redis for a request belong to it: counted while they wait, dropped
// when it ends without Onboard taking them (admitted with the pool already holding them, or
// cancelled), never left in memory.
TEST(TierController, RemoteReadAheadIsDroppedWhenItsRequestEnds) {
  RedisTestServer redis;
  if (!redis.Start()) GTEST_SKIP() << redis.skip_reason();
  TwoReplicas r(redis);
  TierController& b = *r.b;
  const Computed& c = r.c;
  RadixTree tree(&r.pool_b, kBs);
  const int64_t max_tokens = static_cast<int64_t>(c.prompt.size()) - 1;
  SlowReads reads = b.KeysToLoad(Keys(c.prompt), 0);
  EXPECT_TRUE(reads.disk.empty());
  ASSERT_EQ(reads.remote.size(), 2u);
  b.Prefetch(7, std::move(reads));
  while (!b.PrefetchDone(7)) b.WaitForPrefetch(10);
  EXPECT_EQ(b.stats().remote_prefetched_blocks, 2);
  EXPECT_EQ(b.stats().prefetched_blocks, 0) << "nothing came from disk";
  b.EndPrefetch(7);
  EXPECT_EQ(b.stats().remote_prefetched_blocks, 0);
  // Onboard does not ask Redis itself: with the read-ahead gone, nothing is onboarded.
  const TierHit hit = Onboard(b, tree, c.prompt, max_tokens);
  EXPECT_EQ(hit.remote_tokens, 0);
  EXPECT_EQ(tree.Peek("", c.prompt).num_tokens, 0);
  EXPECT_EQ(b.stats().remote.hits, 2) << "only the read-ahead's MGET reached Redis";
}

// remote_writes_pending counts the batch being written, not only the queue (as for disk):
// while a paused Redis holds the first batch, a second prompt's blocks queue behind it.
TEST(TierController, PendingRemoteWritesIncludeTheBatchBeingWritten) {
  RedisTestServer redis;
  if (!redis.Start()) GTEST_SKIP() << redis.skip_reason();
  BlockPool pool(16);
  FakeBlockIo io;
  auto tc = MakeRemoteController(&io, &pool, redis, "tc", /*io_timeout_ms=*/3000);
  redis.Pause();
  Computed c = Prefill(io, pool, *tc);
  // The writer takes the 2 blocks as one batch and waits for Redis (up to 3 s).
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Computed d;
  d.prompt = {21, 22, 23, 24, 25, 26, 27, 28, 29};
  ASSERT_TRUE(d.table.PrepareWrite(pool, kBs, 0, static_cast<int64_t>(d.prompt.size())));
  tc->OnPrefillComplete(d.prompt, d.table.blocks(), Keys(d.prompt), {}, std::nullopt);
  EXPECT_EQ(tc->stats().remote_writes_queued, 4);
  EXPECT_EQ(tc->stats().remote_writes_pending, 4) << "2 in flight and 2 queued";
  redis.Resume();
  tc->FlushRemoteWrites();
  EXPECT_EQ(tc->stats().remote_writes_pending, 0);
  c.table.Release(pool);
  d.table.Release(pool);
}

}  // namespace
}  // namespace prefixd
