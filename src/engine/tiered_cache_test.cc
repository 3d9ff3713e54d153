// The lower tiers end to end inside one process: blocks evicted from the pool come back from
// host RAM, blocks written through to disk survive an engine restart, partial tails splice in,
// and corrupted block files are never served. In every case the output is bit-identical to a
// run without any cache (ARCHITECTURE.md invariants 1, 4, 6).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "engine/engine.h"
#include "engine/test_models.h"
#include "tier/redis_test_server.h"

namespace prefixd {
namespace {

constexpr int kBs = 16;

struct RunResult {
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  int64_t logits_start = 0;
  int64_t cached = 0;
  TierHit tier;
};

RunResult RunOne(Engine& engine, const std::vector<int32_t>& prompt, int max_tokens = 6) {
  GenerateRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.record_logits = true;
  auto id = engine.Add(r);
  EXPECT_TRUE(id.ok()) << id.status();
  while (engine.HasWork()) EXPECT_TRUE(engine.Step().ok());
  auto seq = engine.TakeFinished(*id);
  return {seq->tokens, seq->logits, seq->logits_start, seq->cached_tokens, seq->tier_hit};
}

void ExpectSameAsCold(const RunResult& warm, const RunResult& cold, int vocab) {
  ASSERT_EQ(warm.tokens, cold.tokens);
  const size_t offset = static_cast<size_t>(warm.logits_start) * vocab;
  ASSERT_EQ(warm.logits.size() + offset, cold.logits.size());
  EXPECT_EQ(std::memcmp(warm.logits.data(), cold.logits.data() + offset,
                        warm.logits.size() * sizeof(float)),
            0);
}

class TieredCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = MakeTestModel(TestModelShape::kTiny, TensorType::kF32);
    vocab_ = model_->hparams().vocab_size;
    dir_ = std::filesystem::temp_directory_path() /
           ("prefixd-tiers-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::mt19937 rng(5);
    for (int i = 0; i < 200; ++i) prompt_.push_back(3 + static_cast<int32_t>(rng() % (vocab_ - 3)));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Engine> Make(bool cache, int64_t host_bytes, bool disk, int tails = 4,
                               int64_t cache_blocks = 1000, const std::string& redis_url = "") {
    EngineOptions eo;
    eo.prefix_cache = cache;
    eo.block_size = kBs;
    eo.context_length = 512;
    eo.max_running = 2;
    const int64_t block_bytes =
        KvLayout{model_->hparams().num_layers, model_->hparams().kv_dim(), kBs, KvDtype::kF16}
            .BlockBytes();
    eo.cache_bytes = cache_blocks * block_bytes;
    eo.tiers.host_bytes = host_bytes;
    if (disk) eo.tiers.disk_dir = dir_.string();
    eo.tiers.partial_max_entries = tails;
    eo.tiers.scope = *ParseScopeSpec("full");
    if (!redis_url.empty()) {
      RedisStoreOptions r;
      r.url = *ParseRedisUrl(redis_url);
      r.io_timeout_ms = 300;
      eo.tiers.remote = r;
    }
    auto e = Engine::Create(*model_, -1, eo);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }
  RunResult Cold(const std::vector<int32_t>& prompt) {
    auto e = Make(false, 0, false);
    return RunOne(*e, prompt);
  }
  // Fills the pool's cache with unrelated prompts until `prompt_` is evicted from it.
  void EvictFromPool(Engine& e) {
    std::mt19937 rng(9);
    for (int k = 0; k < 3; ++k) {  // fewer than the 4 partial tails kept
      std::vector<int32_t> other;
      for (int i = 0; i < 200; ++i) other.push_back(3 + static_cast<int32_t>(rng() % (vocab_ - 3)));
      RunOne(e, other, 1);
    }
    ASSERT_EQ(e.cache().Probe("", prompt_).resident_tokens, 0) << "the pool still holds it";
  }

  std::unique_ptr<Model> model_;
  int vocab_ = 0;
  std::filesystem::path dir_;
  std::vector<int32_t> prompt_;
};

TEST_F(TieredCacheTest, BlocksEvictedFromThePoolComeBackFromHostRam) {
  auto e = Make(true, 64 << 20, false, /*tails=*/0, /*cache_blocks=*/20);
  RunOne(*e, prompt_);
  EvictFromPool(*e);
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.tier.host_tokens, 192) << "12 full blocks of the 199 matchable tokens";
  EXPECT_EQ(again.cached, 192);
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
  EXPECT_GT(e->cache().tiers()->stats().offloaded_blocks, 0);
}

TEST_F(TieredCacheTest, PartialTailSplicesAfterThePoolEvictedThePrompt) {
  auto e = Make(true, 64 << 20, false, /*tails=*/4, /*cache_blocks=*/20);
  RunOne(*e, prompt_);
  EvictFromPool(*e);
  const RunResult again = RunOne(*e, prompt_);
  // 192 tokens from host RAM, then the tail (tokens 192..199) less the last prompt token.
  EXPECT_EQ(again.tier.host_tokens, 192);
  EXPECT_EQ(again.tier.partial_tokens, 7);
  EXPECT_EQ(again.cached, 199);
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
  EXPECT_GE(e->cache().tiers()->stats().partial.hits, 1);
}

TEST_F(TieredCacheTest, DiskBlocksSurviveARestart) {
  {
    auto e = Make(true, 0, true);
    RunOne(*e, prompt_);
    e->cache().mutable_tiers()->FlushDiskWrites();
  }
  auto e = Make(true, 0, true);
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.tier.disk_tokens, 192);
  EXPECT_EQ(again.cached, 192);
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
}

TEST_F(TieredCacheTest, CorruptedBlockFilesAreQuarantinedAndRecomputed) {
  {
    auto e = Make(true, 0, true);
    RunOne(*e, prompt_);
    e->cache().mutable_tiers()->FlushDiskWrites();
  }
  // Flip one byte in the middle of every block file.
  int corrupted = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir_)) {
    if (f.path().extension() != ".blk") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(std::filesystem::file_size(f.path()) / 2));
    io.put('\x5a');
    ++corrupted;
  }
  ASSERT_GT(corrupted, 0);
  auto e = Make(true, 0, true);
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.tier.disk_tokens, 0) << "a damaged block must never be served";
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
  EXPECT_GT(e->cache().tiers()->stats().disk.quarantined, 0);
}

TEST_F(TieredCacheTest, ScopeOffWritesNothingToDisk) {
  {
    auto e = Make(true, 0, true);
    // Per-request override of the server's "full".
    GenerateRequest r;
    r.prompt = prompt_;
    r.max_tokens = 1;
    r.scope = *ParseScopeSpec("off");
    ASSERT_TRUE(e->Add(r).ok());
    while (e->HasWork()) ASSERT_TRUE(e->Step().ok());
    e->cache().mutable_tiers()->FlushDiskWrites();
    EXPECT_EQ(e->cache().tiers()->stats().disk.writes, 0);
  }
  auto e = Make(true, 0, true);
  EXPECT_EQ(RunOne(*e, prompt_).tier.disk_tokens, 0);
}

TEST_F(TieredCacheTest, ProbeReportsEachTierWithoutChangingAnything) {
  auto e = Make(true, 64 << 20, false, 4, 20);
  RunOne(*e, prompt_);
  TierProbe p = e->cache().ProbeTiers("", prompt_);
  EXPECT_EQ(p.pool_tokens, 200);
  EvictFromPool(*e);
  const auto before = e->cache().tiers()->stats();
  p = e->cache().ProbeTiers("", prompt_);
  EXPECT_EQ(p.pool_tokens, 0);
  EXPECT_EQ(p.host_tokens, 192);
  EXPECT_EQ(p.partial_tokens, 8);
  const auto after = e->cache().tiers()->stats();
  EXPECT_EQ(before.host.hits, after.host.hits);
  EXPECT_EQ(before.partial.hits, after.partial.hits);
  EXPECT_EQ(before.onboarded_blocks, after.onboarded_blocks);
}

// Two engines share one Redis, as two replicas would: what A computed, B onboards from the
// remote tier, and B's logits are bit-identical to a run without any cache.
TEST_F(TieredCacheTest, RemoteBlocksFromAnotherEngineAreBitIdentical) {
  RedisTestServer redis;
  if (!redis.Start()) GTEST_SKIP() << redis.skip_reason();
  auto a = Make(true, 0, false, /*tails=*/0, 1000, redis.url());
  RunOne(*a, prompt_);
  a->cache().mutable_tiers()->FlushRemoteWrites();
  EXPECT_EQ(a->cache().tiers()->stats().remote.writes, 12);
  auto b = Make(true, 0, false, /*tails=*/0, 1000, redis.url());
  const RunResult warm = RunOne(*b, prompt_);
  EXPECT_EQ(warm.tier.remote_tokens, 192);
  EXPECT_EQ(warm.cached, 192);
  ExpectSameAsCold(warm, Cold(prompt_), vocab_);

  // Redis gone: the same request on a third engine is a cold run, not an error.
  redis.Kill();
  auto c = Make(true, 0, false, /*tails=*/0, 1000, redis.url());
  const RunResult down = RunOne(*c, prompt_);
  EXPECT_EQ(down.cached, 0);
  ExpectSameAsCold(down, Cold(prompt_), vocab_);
}

}  // namespace
}  // namespace prefixd
