// The lower tiers on a hybrid model (qwen35), ARCHITECTURE.md invariants 1, 6 and 8: a full
// block's recurrent-state snapshot goes down with it to host RAM, disk and Redis (inside the
// block's checksummed record) and comes back with it; a partial tail carries the state before
// the prompt's last token. After each, a request resumes where the snapshot is, with logits
// bit-identical to a cold run; a damaged snapshot is a miss, never a wrong output.
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

RunResult RunOne(Engine& engine, const std::vector<int32_t>& prompt, int max_tokens = 4) {
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
  ASSERT_EQ(warm.logits_start, warm.cached) << "logits are recorded from the resume point on";
  const size_t offset = static_cast<size_t>(warm.logits_start) * vocab;
  ASSERT_EQ(warm.logits.size() + offset, cold.logits.size());
  EXPECT_EQ(std::memcmp(warm.logits.data(), cold.logits.data() + offset,
                        warm.logits.size() * sizeof(float)),
            0)
      << "logits differ from the cold run";
}

class HybridTieredCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelSpec spec = SmallArchSpec("qwen35");
    spec.type = TensorType::kF16;
    model_ = MakeTestModel(spec, "hybrid-tiers-f16");
    ASSERT_TRUE(model_->hparams().hybrid());
    vocab_ = model_->hparams().vocab_size;
    dir_ = std::filesystem::temp_directory_path() /
           ("prefixd-hybrid-tiers-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    prompt_ = RandomPrompt(5);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<int32_t> RandomPrompt(uint32_t seed) const {
    std::mt19937 rng(seed);
    std::vector<int32_t> p;
    for (int i = 0; i < 200; ++i) p.push_back(3 + static_cast<int32_t>(rng() % (vocab_ - 3)));
    return p;
  }

  struct Tiers {
    int64_t host_bytes = 0;
    bool disk = false;
    int tails = 0;
    std::string redis_url{};  // {}: designated inits that leave it out stay quiet under -Wextra
  };
  // An engine whose pool keeps about 20 blocks with their snapshots.
  std::unique_ptr<Engine> Make(bool cache, const Tiers& t) {
    EngineOptions eo;
    eo.prefix_cache = cache;
    eo.block_size = kBs;
    eo.context_length = 512;
    eo.max_running = 2;
    eo.num_threads = 2;
    eo.state_checkpoint_blocks = 1;  // a snapshot beside every block, carried down with it
    const Hparams& hp = model_->hparams();
    const int64_t block_bytes =
        KvLayout{hp.num_attention_layers(), hp.kv_dim(), kBs, KvDtype::kF16}.BlockBytes();
    eo.cache_bytes = 20 * (block_bytes + hp.recurrent_state_floats() * int64_t{sizeof(float)});
    eo.tiers.host_bytes = t.host_bytes;
    if (t.disk) eo.tiers.disk_dir = dir_.string();
    eo.tiers.partial_max_entries = t.tails;
    eo.tiers.scope = *ParseScopeSpec("full");
    if (!t.redis_url.empty()) {
      RedisStoreOptions r;
      r.url = *ParseRedisUrl(t.redis_url);
      r.io_timeout_ms = 300;
      eo.tiers.remote = r;
    }
    auto e = Engine::Create(*model_, -1, eo);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }
  RunResult Cold(const std::vector<int32_t>& prompt) { return RunOne(*Make(false, {}), prompt); }
  // Fills the pool's cache with unrelated prompts until `prompt_` is evicted from it.
  void EvictFromPool(Engine& e) {
    for (uint32_t k = 0; k < 3; ++k) RunOne(e, RandomPrompt(90 + k), 1);
    ASSERT_EQ(e.cache().Probe("", prompt_).resident_tokens, 0) << "the pool still holds it";
  }

  std::unique_ptr<Model> model_;
  int vocab_ = 0;
  std::filesystem::path dir_;
  std::vector<int32_t> prompt_;
};

TEST_F(HybridTieredCacheTest, SnapshotsComeBackFromHostRamWithTheirBlocks) {
  auto e = Make(true, {.host_bytes = 64 << 20});
  RunOne(*e, prompt_);
  EvictFromPool(*e);
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.tier.host_tokens, 192) << "12 full blocks, each with its snapshot";
  EXPECT_EQ(again.cached, 192);
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
}

TEST_F(HybridTieredCacheTest, PartialTailResumesARepeatedPromptAtItsEnd) {
  auto e = Make(true, {.host_bytes = 64 << 20, .tails = 4});
  RunOne(*e, prompt_);
  EvictFromPool(*e);
  const RunResult again = RunOne(*e, prompt_);
  // 192 tokens from host RAM, then the tail (tokens 192..199) less the last prompt token,
  // resumed from the state the tail carries.
  EXPECT_EQ(again.tier.host_tokens, 192);
  EXPECT_EQ(again.tier.partial_tokens, 7);
  EXPECT_EQ(again.cached, 199);
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
}

TEST_F(HybridTieredCacheTest, SnapshotsOnDiskSurviveARestart) {
  {
    auto e = Make(true, {.disk = true});
    RunOne(*e, prompt_);
    e->cache().FlushDiskWrites();
  }
  auto e = Make(true, {.disk = true});
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.tier.disk_tokens, 192);
  EXPECT_EQ(again.cached, 192);
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
}

// The snapshot is the last part of a record's payload: a byte flipped there fails the
// record's checksum, so the block (and everything after it) is a miss.
TEST_F(HybridTieredCacheTest, ADamagedSnapshotOnDiskIsAMissNotAWrongOutput) {
  {
    auto e = Make(true, {.disk = true});
    RunOne(*e, prompt_);
    e->cache().FlushDiskWrites();
  }
  const int64_t state_bytes = model_->hparams().recurrent_state_floats() * 4;
  int damaged = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir_)) {
    if (f.path().extension() != ".blk") continue;
    const auto size = static_cast<int64_t>(std::filesystem::file_size(f.path()));
    ASSERT_GT(size, state_bytes) << "a record without its snapshot";
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(size - 8 - state_bytes / 2));  // mid-snapshot
    io.put('\x5a');
    ++damaged;
  }
  ASSERT_EQ(damaged, 12);
  auto e = Make(true, {.disk = true});
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.tier.disk_tokens, 0);
  EXPECT_EQ(again.cached, 0);
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
  EXPECT_GT(e->cache().tier_stats().disk.quarantined, 0);
}

// Two engines share one Redis: B resumes from the snapshots A wrote.
TEST_F(HybridTieredCacheTest, SnapshotsThroughRedisResumeExactly) {
  RedisTestServer redis;
  if (!redis.Start()) GTEST_SKIP() << redis.skip_reason();
  auto a = Make(true, {.redis_url = redis.url()});
  RunOne(*a, prompt_);
  a->cache().FlushRemoteWrites();
  EXPECT_EQ(a->cache().tier_stats().remote.writes, 12);
  auto b = Make(true, {.redis_url = redis.url()});
  const RunResult warm = RunOne(*b, prompt_);
  EXPECT_EQ(warm.tier.remote_tokens, 192);
  EXPECT_EQ(warm.cached, 192);
  ExpectSameAsCold(warm, Cold(prompt_), vocab_);
}

}  // namespace
}  // namespace prefixd
