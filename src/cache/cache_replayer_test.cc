#include "cache/cache_replayer.h"

#include <gtest/gtest.h>

#include <numeric>
#include <random>

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

// Drives one request operation by operation as the engine would alone: admit, prefill
// chunks, then one token per decode step.
ReplayOutcome RunByOperations(CacheReplayer& r, int64_t id, std::span<const int32_t> tokens,
                              int64_t num_prompt, int chunk, int64_t disk_blocks = -1) {
  auto seq = r.NewSequence(id, "", tokens, num_prompt, {}, std::nullopt, {});
  const CacheHit& hit = r.Admit(*seq, num_prompt, disk_blocks);
  ReplayOutcome out{std::min(hit.num_tokens, num_prompt), hit.tier};
  while (seq->computed < static_cast<int64_t>(tokens.size())) {
    const bool prefill = seq->computed < num_prompt;
    const int64_t len = prefill ? std::min<int64_t>(num_prompt - seq->computed, chunk) : 1;
    EXPECT_TRUE(r.Write(*seq, len, {}));
    if (prefill && seq->computed >= num_prompt) r.PromptComputed(*seq);
  }
  r.Finish(*seq);
  return out;
}

// One request at a time, the operations give what Run gives, request by request, over random
// prompts that share random prefixes (a reference: Run, tested above).
TEST(CacheReplayer, OperationsOneAtATimeEqualRun) {
  ReplayConfig c = SmallPool();
  c.host_blocks = 6;
  c.disk_blocks = 30;
  c.scope = ScopeSpec{ScopeSpec::Mode::kFull};
  c.partial_max_entries = 2;
  auto by_run = CacheReplayer::Create(c);
  auto by_ops = CacheReplayer::Create(c);
  ASSERT_TRUE(by_run.ok() && by_ops.ok());
  std::mt19937 rng(7);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 200; ++i) {
    std::vector<int32_t> t;
    if (!prompts.empty() && rng() % 3 != 0) {
      const auto& base = prompts[rng() % prompts.size()];
      t.assign(base.begin(), base.begin() + rng() % base.size());
    }
    const int extra = 1 + static_cast<int>(rng() % 30);
    for (int k = 0; k < extra; ++k) t.push_back(static_cast<int32_t>(rng() % 50));
    prompts.push_back(t);
    const int64_t num_prompt = static_cast<int64_t>(t.size());
    for (int k = 0; k < 3; ++k) t.push_back(static_cast<int32_t>(rng() % 50));  // generated
    ReplayedRequest q;
    q.tokens = t;
    q.num_prompt = num_prompt;
    const ReplayOutcome a = (*by_run)->Run(q);
    const ReplayOutcome b = RunByOperations(**by_ops, i, t, num_prompt, c.max_chunk_tokens);
    ASSERT_EQ(a.cached_tokens, b.cached_tokens) << "request " << i;
    ASSERT_EQ(a.tier.host_tokens, b.tier.host_tokens) << "request " << i;
    ASSERT_EQ(a.tier.disk_tokens, b.tier.disk_tokens) << "request " << i;
    ASSERT_EQ(a.tier.partial_tokens, b.tier.partial_tokens) << "request " << i;
  }
  EXPECT_GT((*by_ops)->cache_stats().evicted_blocks, 0);
}

// An admission takes exactly as many disk blocks as it is told (what the server's disk gave),
// however many the disk holds.
TEST(CacheReplayer, AdmitTakesTheDiskBlocksItIsTold) {
  ReplayConfig c = SmallPool();
  c.disk_blocks = 100;
  c.scope = ScopeSpec{ScopeSpec::Mode::kFull};
  const std::vector<int32_t> a = Tokens(0, 42), b = Tokens(1000, 42);
  auto run = [&](int64_t limit) {
    auto r = CacheReplayer::Create(c);
    EXPECT_TRUE(r.ok());
    RunByOperations(**r, 0, a, 40, 8);
    RunByOperations(**r, 1, b, 40, 8);  // evicts a from the pool; the disk keeps it
    return RunByOperations(**r, 2, a, 40, 8, limit);
  };
  const ReplayOutcome all = run(-1);
  const int64_t on_disk = all.tier.disk_blocks;
  const int64_t from_pool = all.cached_tokens - all.tier.disk_tokens;
  ASSERT_GE(on_disk, 3);
  EXPECT_EQ(all.cached_tokens, 39);
  for (int64_t limit : {int64_t{0}, int64_t{1}, on_disk - 1}) {
    const ReplayOutcome o = run(limit);
    EXPECT_EQ(o.tier.disk_blocks, limit);
    EXPECT_EQ(o.tier.disk_tokens, 4 * limit);
    EXPECT_EQ(o.cached_tokens, from_pool + 4 * limit);
  }
}

// Write preempts the victims it is given only once nothing is left to evict, and says so
// when they were not enough or not needed.
TEST(CacheReplayer, WritePreemptsTheGivenVictimsWhenThePoolIsFull) {
  ReplayConfig c;
  c.block_size = 4;
  c.max_cached_blocks = 4;
  c.num_kv_blocks = 6;
  c.partial_max_entries = 0;
  auto r = CacheReplayer::Create(c);
  ASSERT_TRUE(r.ok());
  const std::vector<int32_t> a = Tokens(0, 20), b = Tokens(100, 20), d = Tokens(200, 20);
  auto sa = (*r)->NewSequence(0, "", a, 16, {}, std::nullopt, {});
  auto sb = (*r)->NewSequence(1, "", b, 16, {}, std::nullopt, {});
  (*r)->Admit(*sa, 16, -1);
  (*r)->Admit(*sb, 16, -1);
  ASSERT_TRUE((*r)->Write(*sa, 16, {}));  // 4 of the 6 blocks
  EXPECT_FALSE((*r)->Write(*sb, 16, {}));  // nothing to evict, no victim: no room
  EXPECT_EQ(sb->computed, 0);
  ReplaySequence* victims[] = {sa.get()};
  EXPECT_TRUE((*r)->Write(*sb, 16, victims));  // sa goes to the tree, then is evicted
  EXPECT_FALSE(sa->running);
  EXPECT_EQ(sa->computed, 0);
  EXPECT_EQ(sb->computed, 16);
  EXPECT_GT((*r)->cache_stats().evicted_blocks, 0);
  // A victim the pool did not need: the write succeeds, and reports the difference.
  auto sd = (*r)->NewSequence(2, "", d, 16, {}, std::nullopt, {});
  (*r)->Admit(*sd, 16, -1);
  ReplaySequence* unneeded[] = {sd.get()};
  EXPECT_FALSE((*r)->Write(*sb, 1, unneeded));
  EXPECT_TRUE(sd->running);
  EXPECT_EQ(sb->computed, 17);
}

}  // namespace
}  // namespace prefixd
