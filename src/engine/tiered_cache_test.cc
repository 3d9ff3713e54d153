// The lower tiers end to end inside one process: blocks evicted from the pool come back from
// host RAM, blocks written through to disk survive an engine restart, partial tails splice in,
// and corrupted block files are never served. In every case the output is bit-identical to a
// run without any cache (ARCHITECTURE.md invariants 1, 4, 6).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "cache/block_keyer.h"
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
                               int64_t cache_blocks = 1000, const std::string& redis_url = "",
                               FileSystem* disk_fs = nullptr) {
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
    eo.tiers.disk_fs = disk_fs;
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
  EXPECT_GT(e->cache().tier_stats().offloaded_blocks, 0);
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
  EXPECT_GE(e->cache().tier_stats().partial.hits, 1);
}

TEST_F(TieredCacheTest, DiskBlocksSurviveARestart) {
  {
    auto e = Make(true, 0, true);
    RunOne(*e, prompt_);
    e->cache().FlushDiskWrites();
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
    e->cache().FlushDiskWrites();
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
  EXPECT_GT(e->cache().tier_stats().disk.quarantined, 0);
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
    e->cache().FlushDiskWrites();
    EXPECT_EQ(e->cache().tier_stats().disk.writes, 0);
  }
  auto e = Make(true, 0, true);
  EXPECT_EQ(RunOne(*e, prompt_).tier.disk_tokens, 0);
}

TEST_F(TieredCacheTest, ProbeReportsEachTierWithoutChangingAnything) {
  auto e = Make(true, 64 << 20, false, 4, 20);
  RunOne(*e, prompt_);
  TierProbe p = e->cache().ProbeTiers("", prompt_, e->cache().ProbeKeys("", prompt_));
  EXPECT_EQ(p.pool_tokens, 200);
  EvictFromPool(*e);
  const auto before = e->cache().tier_stats();
  p = e->cache().ProbeTiers("", prompt_, e->cache().ProbeKeys("", prompt_));
  EXPECT_EQ(p.pool_tokens, 0);
  EXPECT_EQ(p.host_tokens, 192);
  EXPECT_EQ(p.partial_tokens, 8);
  const auto after = e->cache().tier_stats();
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
  a->cache().FlushRemoteWrites();
  EXPECT_EQ(a->cache().tier_stats().remote.writes, 12);
  auto b = Make(true, 0, false, /*tails=*/0, 1000, redis.url());
  const RunResult warm = RunOne(*b, prompt_);
  EXPECT_EQ(warm.tier.remote_tokens, 192);
  EXPECT_GE(warm.cached, 192) << "from host RAM";
  ExpectSameAsCold(warm, Cold(prompt_), vocab_);

  // Redis gone: the same request on a third engine is a cold run, not an error.
  redis.Kill();
  auto c = Make(true, 0, false, /*tails=*/0, 1000, redis.url());
  const RunResult down = RunOne(*c, prompt_);
  EXPECT_EQ(down.cached, 0);
  ExpectSameAsCold(down, Cold(prompt_), vocab_);
}

TEST_F(TieredCacheTest, PerTierCountsAddUpToCachedTokensWhenThePromptEndsOnABlockBoundary) {
  prompt_.resize(192);  // 12 full blocks: the last one holds the last token, always computed
  {
    auto e = Make(true, 0, true);
    RunOne(*e, prompt_);
    e->cache().FlushDiskWrites();
  }
  auto e = Make(true, 0, true);
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.cached, 191);
  EXPECT_EQ(again.tier.disk_tokens, 191) << "not 192: usage's per-tier counts must add up";
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
}

TEST_F(TieredCacheTest, ClearingTheDiskDropsItsTailsAndTheProbeSeesNothingAfter) {
  auto e = Make(true, 0, true, /*tails=*/4);
  RunOne(*e, prompt_);
  e->cache().FlushDiskWrites();
  ASSERT_TRUE(e->cache().ClearTier("pool").ok());
  TierProbe p = e->cache().ProbeTiers("", prompt_, e->cache().ProbeKeys("", prompt_));
  ASSERT_EQ(p.disk_tokens, 192);
  ASSERT_EQ(p.partial_tokens, 8) << "the prompt's tail, whose parent block is on disk";
  ASSERT_TRUE(e->cache().ClearTier("disk").ok());
  p = e->cache().ProbeTiers("", prompt_, e->cache().ProbeKeys("", prompt_));
  EXPECT_EQ(p.pool_tokens + p.host_tokens + p.disk_tokens + p.partial_tokens, 0);
  EXPECT_EQ(e->cache().tier_stats().partial.entries, 0);
  EXPECT_EQ(e->cache().tier_stats().disk.entries, 0);
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.cached, 0) << "the probe said nothing was resident";
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
}

// The real file system, except that the gated operation on a block file (reading a whole
// one: a block read, as the start-up scan reads headers only; or creating one: a block write)
// waits until the test opens the gate, and records which thread asked. Other files (the disk
// store's RETENTION, read at Open and written at close) pass.
class GatedFileSystem final : public FileSystem {
 public:
  enum class Gate { kBlockReads, kBlockWrites };
  // A gated call waits at most `limit`, so that a broken engine fails the test instead of
  // hanging it.
  explicit GatedFileSystem(Gate gate, std::chrono::milliseconds limit = std::chrono::seconds(30))
      : gate_(gate), limit_(limit) {}

  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  int num_waiting() const {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_;
  }
  // "<key hex>.blk", or its temp file "<key hex>.blk.<n>.tmp".
  static bool IsBlockFile(const std::string& path) { return path.find(".blk") != std::string::npos; }
  bool CalledOn(std::thread::id id) const {
    std::lock_guard<std::mutex> lock(mu_);
    return std::find(callers_.begin(), callers_.end(), id) != callers_.end();
  }

  StatusOr<std::vector<uint8_t>> ReadFile(const std::string& path) override {
    if (gate_ == Gate::kBlockReads && IsBlockFile(path)) Wait();
    return base_->ReadFile(path);
  }
  StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    if (gate_ == Gate::kBlockWrites && IsBlockFile(path)) Wait();
    return base_->NewWritableFile(path);
  }
  StatusOr<std::vector<uint8_t>> ReadFilePrefix(const std::string& path, size_t n) override {
    return base_->ReadFilePrefix(path, n);
  }
  StatusOr<FileInfo> Stat(const std::string& path) override { return base_->Stat(path); }
  Status RenameFile(const std::string& from, const std::string& to) override {
    return base_->RenameFile(from, to);
  }
  Status RemoveFile(const std::string& path) override { return base_->RemoveFile(path); }
  Status CreateDirs(const std::string& path) override { return base_->CreateDirs(path); }
  Status SyncDir(const std::string& path) override { return base_->SyncDir(path); }
  StatusOr<std::vector<DirEntry>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
  StatusOr<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    return base_->LockFile(path);
  }

 private:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    callers_.push_back(std::this_thread::get_id());
    ++waiting_;
    cv_.wait_for(lock, limit_, [&] { return open_; });
    --waiting_;
  }

  const Gate gate_;
  const std::chrono::milliseconds limit_;
  FileSystem* const base_ = FileSystem::Default();
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int waiting_ = 0;
  std::vector<std::thread::id> callers_;
};

// writes_pending counts the batch being written, not only the queue: a client waiting for it
// to reach 0 before killing the server (tests/e2e/tiers_restart) finds every block on disk.
TEST_F(TieredCacheTest, PendingDiskWritesIncludeTheBatchBeingWritten) {
  GatedFileSystem disk(GatedFileSystem::Gate::kBlockWrites);
  auto e = Make(true, 0, true, 4, 1000, "", &disk);
  RunOne(*e, prompt_);
  const PrefixCache& cache = e->cache();
  for (int i = 0; i < 3000 && disk.num_waiting() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(disk.num_waiting(), 1) << "the writer is inside its first batch";
  // A second prompt queues 12 more blocks behind the 12 being written.
  RunOne(*e, std::vector<int32_t>(prompt_.rbegin(), prompt_.rend()));
  EXPECT_EQ(cache.tier_stats().disk_writes_queued, 24);
  EXPECT_EQ(cache.tier_stats().disk_writes_pending, 24) << "12 in flight and 12 queued";
  EXPECT_FALSE(disk.CalledOn(std::this_thread::get_id())) << "the engine thread wrote the disk";
  disk.Open();
  e->cache().FlushDiskWrites();
  EXPECT_EQ(cache.tier_stats().disk_writes_pending, 0);
  EXPECT_EQ(cache.tier_stats().disk.writes, 24);
}

// ARCHITECTURE.md, L3: onboarding one request from disk does not stall the decode of the
// others. While the disk holds back every block read, a running request still gets a token in
// every engine step, and the step never waits for the disk.
TEST_F(TieredCacheTest, OnboardingFromASlowDiskDoesNotStallOtherDecodes) {
  {
    auto e = Make(true, 0, true);
    RunOne(*e, prompt_);
    e->cache().FlushDiskWrites();
  }
  std::vector<int32_t> other(prompt_.rbegin(), prompt_.rend());  // nothing of it on disk
  GatedFileSystem disk(GatedFileSystem::Gate::kBlockReads);
  auto e = Make(true, 0, true, 4, 1000, "", &disk);
  GenerateRequest decoding;
  decoding.prompt = other;
  decoding.max_tokens = 40;
  decoding.ignore_eos = true;
  const SequenceId decoder = *e->Add(decoding);
  while (e->Find(decoder)->num_generated() == 0) ASSERT_TRUE(e->Step().ok());

  GenerateRequest onboarding;
  onboarding.prompt = prompt_;
  onboarding.max_tokens = 6;
  onboarding.ignore_eos = true;
  onboarding.record_logits = true;
  const SequenceId loader = *e->Add(onboarding);
  constexpr int kSteps = 20;
  for (int i = 0; i < kSteps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto events = e->Step();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(events.ok());
    // One token per step for the decoder: zero steps without progress in between.
    ASSERT_EQ(events->size(), 1u) << "step " << i;
    EXPECT_EQ((*events)[0].id, decoder);
    EXPECT_TRUE((*events)[0].token.has_value());
    EXPECT_LT(ms, 5000) << "a step waited (the gate holds reads for 30 s)";
    EXPECT_EQ(e->num_waiting(), 1) << "the loader waits for its disk reads, off the engine";
    if (i == 0) {
      // The first step queued the loader's reads. Wait for the reader thread to reach the
      // gate, so the steps after this one provably run while the disk holds it back: without
      // the wait, a loaded machine can run all 20 steps (a few ms in an optimised build)
      // before the reader thread is even scheduled, and the check after the loop failed.
      for (int w = 0; w < 5000 && disk.num_waiting() == 0; ++w) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      ASSERT_EQ(disk.num_waiting(), 1) << "the reader thread blocks on the first block read";
    }
  }
  EXPECT_EQ(disk.num_waiting(), 1) << "the reader thread is stuck on the first block";
  EXPECT_FALSE(disk.CalledOn(std::this_thread::get_id())) << "the engine thread read the disk";

  disk.Open();
  while (e->HasWork()) ASSERT_TRUE(e->Step().ok());
  EXPECT_FALSE(disk.CalledOn(std::this_thread::get_id())) << "the engine thread read the disk";
  auto loaded = e->TakeFinished(loader);
  ASSERT_NE(loaded, nullptr);
  EXPECT_EQ(loaded->tier_hit.disk_tokens, 192);
  ExpectSameAsCold({loaded->tokens, loaded->logits, loaded->logits_start, loaded->cached_tokens,
                    loaded->tier_hit},
                   Cold(prompt_), vocab_);
  EXPECT_EQ(e->TakeFinished(decoder)->tokens, RunOne(*Make(false, 0, false), other, 40).tokens);
}


// A prompt's retention reaches its disk copies while the pool still holds it, so the marks
// outlive a restart (the disk store's RETENTION file): after one, the blocks on disk are
// retained, and served.
TEST_F(TieredCacheTest, RetainedPromptsStayRetainedOnDiskAcrossARestart) {
  {
    auto e = Make(true, 0, true);
    GenerateRequest r;
    r.prompt = prompt_;
    r.max_tokens = 2;
    r.ignore_eos = true;
    r.retention = {RetentionRange{0, 160, kDefaultRetentionPriority, 3'600'000}};
    auto id = e->Add(r);
    ASSERT_TRUE(id.ok()) << id.status();
    while (e->HasWork()) ASSERT_TRUE(e->Step().ok());
    e->cache().FlushDiskWrites();
    EXPECT_EQ(e->cache().tier_stats().disk.entries, 12);
    EXPECT_EQ(e->cache().tier_stats().disk.retained_entries, 160 / kBs) << "the blocks inside the range";
  }
  auto e = Make(true, 0, true);
  EXPECT_EQ(e->cache().tier_stats().disk.entries, 12);
  EXPECT_EQ(e->cache().tier_stats().disk.retained_entries, 160 / kBs);
  EXPECT_EQ(RunOne(*e, prompt_).tier.disk_tokens, 192);
}

// Onboard takes disk blocks only from the read-ahead: asked for a prompt whose blocks were not
// read ahead, it serves none of them rather than read the disk on the engine thread.
TEST_F(TieredCacheTest, OnboardNeverReadsTheDiskItself) {
  {
    auto e = Make(true, 0, true);
    RunOne(*e, prompt_);
    e->cache().FlushDiskWrites();
  }
  // Closed: a read waits 1 s (12 blocks: 12 s) before it goes through.
  GatedFileSystem disk(GatedFileSystem::Gate::kBlockReads, std::chrono::seconds(1));
  auto e = Make(true, 0, true, 4, 1000, "", &disk);
  CacheHit hit = e->cache().Acquire("", prompt_, static_cast<int64_t>(prompt_.size()) - 1);
  EXPECT_EQ(hit.tier.disk_tokens, 0);
  EXPECT_EQ(hit.num_tokens, 0);
  EXPECT_FALSE(disk.CalledOn(std::this_thread::get_id()));
  EXPECT_EQ(e->cache().tier_stats().disk.entries, 12) << "the blocks stay on disk";
  e->cache().Release(hit);
  disk.Open();
}

// Blocks read ahead for a waiting request must not outlive it: past a damaged block the
// reader stops (the prefix ends there), and what a request's reads brought in but Onboard
// did not take (a twin request onboarded it first) is dropped when it is admitted.
TEST_F(TieredCacheTest, ReadAheadLeavesNothingBehind) {
  {
    auto e = Make(true, 0, true);
    RunOne(*e, prompt_);
    e->cache().FlushDiskWrites();
  }
  auto e = Make(true, 0, true);
  GenerateRequest r;
  r.prompt = prompt_;
  r.max_tokens = 2;
  r.ignore_eos = true;
  const SequenceId a = *e->Add(r);
  const SequenceId b = *e->Add(r);  // the same prompt: both read the same 12 blocks ahead
  while (e->HasWork()) ASSERT_TRUE(e->Step().ok());
  EXPECT_EQ(e->TakeFinished(a)->tier_hit.disk_tokens, 192);
  // 192 when admitted in the same step as its twin, 199 (with the twin's tail) after it.
  EXPECT_GE(e->TakeFinished(b)->cached_tokens, 192);
  EXPECT_EQ(e->cache().tier_stats().prefetched_blocks, 0);

  // A request cancelled while its reads run (held back by a gated disk) leaves nothing
  // either. The reader runs jobs in order, so once a later request that reads only the first
  // 6 blocks is done, the cancelled one's reads are over; had they been kept, blocks 6..11
  // would still be there.
  e.reset();
  GatedFileSystem disk(GatedFileSystem::Gate::kBlockReads);
  e = Make(true, 0, true, 4, 1000, "", &disk);
  const SequenceId c = *e->Add(r);
  ASSERT_TRUE(e->Step().ok());  // starts the reads, which wait at the gate
  ASSERT_EQ(e->num_waiting(), 1);
  ASSERT_TRUE(e->Cancel(c));
  disk.Open();
  std::vector<int32_t> half(prompt_.begin(), prompt_.begin() + 100);
  EXPECT_EQ(RunOne(*e, half, 2).tier.disk_tokens, 96);
  EXPECT_EQ(e->cache().tier_stats().prefetched_blocks, 0);
  e.reset();  // before `disk`, declared after it: the disk store writes through it as it closes
}


TEST_F(TieredCacheTest, ReadAheadStopsAtTheFirstDamagedBlock) {
  {
    auto e = Make(true, 0, true);
    RunOne(*e, prompt_);
    e->cache().FlushDiskWrites();
  }
  // Damage the third block of the chain: find it by its parent, the second block's key.
  const auto keys = Make(false, 0, false)->cache().BlockKeys("", prompt_);
  bool damaged = false;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir_)) {
    if (f.path().filename() != ToHex(keys[2]) + ".blk") continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(static_cast<std::streamoff>(std::filesystem::file_size(f.path()) - 20));
    io.put('\x5a');
    damaged = true;
  }
  ASSERT_TRUE(damaged);
  auto e = Make(true, 0, true);
  const RunResult again = RunOne(*e, prompt_);
  EXPECT_EQ(again.tier.disk_tokens, 32);
  ExpectSameAsCold(again, Cold(prompt_), vocab_);
  const TierControllerStats s = e->cache().tier_stats();
  EXPECT_EQ(s.disk.quarantined, 1);
  EXPECT_EQ(s.disk.hits, 2) << "blocks after the damaged one are not read";
  EXPECT_EQ(s.prefetched_blocks, 0);
}

// Keys once: a request's block keys are hashed once, when it is first admitted, and reused by
// the read-ahead, onboarding, the write-through and indexing; what it generates adds only its
// own new blocks. Before, each of those rehashed the prompt, and eviction rehashed whole paths.
TEST_F(TieredCacheTest, KeysAreHashedOncePerRequest) {
  auto e = Make(true, 64 << 20, true, /*tails=*/4, /*cache_blocks=*/20);
  // 200 prompt tokens and 20 generated: 219 computed, 13 full blocks (12 of them the prompt's).
  const int64_t before = BlockKeyer::num_hashed_blocks();
  RunOne(*e, prompt_, 20);
  EXPECT_EQ(BlockKeyer::num_hashed_blocks() - before, 13);
  e->cache().FlushDiskWrites();
  EvictFromPool(*e);  // offloads to host RAM from the keys on the tree's nodes
  const int64_t again = BlockKeyer::num_hashed_blocks();
  const RunResult warm = RunOne(*e, prompt_, 20);
  EXPECT_GE(warm.cached, 192) << "from host RAM";
  EXPECT_EQ(BlockKeyer::num_hashed_blocks() - again, 13);
}

}  // namespace
}  // namespace prefixd
