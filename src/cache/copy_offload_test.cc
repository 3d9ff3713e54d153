// Offload and write-through copies run on the tier controller's copier thread, not the engine
// thread (TierController, "The engine thread never copies a block down"). What this must keep:
//   - the pool never hands out a block a copy still reads (the bytes a lower tier keeps are
//     the block's as it was handed over, whatever the engine writes into reused blocks);
//   - hits never depend on the copier's timing: a cache whose copier is slow (random sleeps)
//     serves every request exactly as one whose copies are all waited for after every call;
//   - room for the engine is found without deadlock while copies are in flight.
// Both run in the TSan build (scripts/test.sh), where a block reused under a copy would also
// show as a data race on the pool's bytes.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "cache/prefix_cache.h"
#include "cache/tier_controller.h"
#include "kv/block_table.h"

namespace prefixd {
namespace {

constexpr int kBs = 4;
constexpr int64_t kBlockBytes = 64;

// The pool's bytes in one flat buffer, as a backend keeps them: the copier reads one block's
// range while the engine thread writes others. ReadBlock can sleep (a slow copier).
class FlatBlockIo final : public BlockIo {
 public:
  FlatBlockIo(int num_blocks, int max_sleep_us)
      : bytes_(static_cast<size_t>(num_blocks) * kBlockBytes), max_sleep_us_(max_sleep_us) {}
  void ReadBlock(BlockId b, std::span<uint8_t> out) const override {
    if (max_sleep_us_ > 0) {
      thread_local std::mt19937 rng(std::hash<std::thread::id>()(std::this_thread::get_id()));
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_sleep_us_));
    }
    std::memcpy(out.data(), &bytes_[Offset(b)], out.size());
  }
  void WriteBlock(BlockId b, std::span<const uint8_t> in) override {
    std::memcpy(&bytes_[Offset(b)], in.data(), in.size());
  }
  int64_t block_bytes() const override { return kBlockBytes; }
  // The backend's copy-on-write copies (BlockTable::PrepareWrite).
  void Copy(const BlockCopy& c) {
    std::memmove(&bytes_[Offset(c.dst)], &bytes_[Offset(c.src)], kBlockBytes);
  }

 private:
  static size_t Offset(BlockId b) { return static_cast<size_t>(b.value()) * kBlockBytes; }
  std::vector<uint8_t> bytes_;
  const int max_sleep_us_;
};

// What a full block with this key must hold: a stand-in for the KV its tokens give.
std::vector<uint8_t> Pattern(const BlockKey& key) {
  std::vector<uint8_t> out(kBlockBytes);
  for (int64_t j = 0; j < kBlockBytes; ++j) {
    out[j] = static_cast<uint8_t>((j % 2 ? key.hi : key.lo) >> (8 * (j / 2 % 8))) ^ static_cast<uint8_t>(j);
  }
  return out;
}

struct Served {
  int64_t cached = 0;
  int64_t host = 0;
  int64_t disk = 0;
};

// One prefix cache with a host tier (and a disk tier when `disk_dir` is set), and a driver
// that serves requests the way the engine does (CacheReplayer::Run, with real bytes).
class Cache {
 public:
  Cache(int max_sleep_us, bool settle_every_call, const std::string& disk_dir = "")
      : pool_(kPoolBlocks), io_(kPoolBlocks, max_sleep_us), settle_(settle_every_call) {
    PrefixCacheOptions co;
    co.fingerprint = {7, 7, 7};
    co.max_cached_blocks = 24;
    co.clock = &clock_;
    TierOptions to;
    to.host_bytes = 18 * static_cast<int64_t>(SerializedSize(kBs, kBlockBytes));
    to.partial_max_entries = 0;
    to.clock = &clock_;
    to.disk_dir = disk_dir;
    to.scope = *ParseScopeSpec("full");
    auto tiers = TierController::Create(to, co.fingerprint, co.hash, kBs, &io_, &pool_);
    EXPECT_TRUE(tiers.ok()) << tiers.status();
    cache_ = std::make_unique<PrefixCache>(&pool_, kBs, co, std::move(*tiers));
  }

  // Serves `prompt` (retained, ranked above the rest, when `keep`) and generates `gen` tokens.
  Served Run(const std::vector<int32_t>& prompt, int gen, bool keep) {
    std::vector<int32_t> tokens = prompt;
    const int64_t n = static_cast<int64_t>(prompt.size());
    std::vector<RetentionRange> retention;
    if (keep) retention.push_back(RetentionRange{0, n, 50, 40});
    CacheTicket ticket(next_ticket_++, "", n, retention);
    while (cache_->Admit(ticket, tokens) == Admission::kPending) cache_->WaitForReads(50);
    Settle();
    const CacheHit& hit = ticket.hit();
    const std::vector<BlockKey> keys = cache_->BlockKeys("", tokens);
    for (int64_t i = 0; (i + 1) * kBs <= hit.num_tokens; ++i) {
      std::vector<uint8_t> got(kBlockBytes);
      io_.ReadBlock(hit.blocks[i], got);
      EXPECT_EQ(got, Pattern(keys[i])) << "cached block " << i << " lost its bytes";
    }
    Served s{hit.num_tokens, hit.tier.host_tokens, hit.tier.disk_tokens};
    BlockTable table;
    table.Adopt(hit.blocks);
    int64_t computed = hit.num_tokens;
    Compute(table, tokens, computed, n);
    cache_->OnPromptComputed(ticket, tokens, table.blocks(), {}, std::nullopt);
    Settle();
    computed = n;
    for (int g = 0; g < gen; ++g) {
      tokens.push_back(static_cast<int32_t>(1000 + (n * 7 + g) % 50));
      Compute(table, tokens, computed, computed + 1);
      computed += 1;
    }
    cache_->Insert(ticket, std::span<const int32_t>(tokens).first(computed), table.blocks());
    Settle();
    cache_->Release(ticket);
    table.Release(pool_);
    clock_.Advance(3);
    return s;
  }

  void Finish() {
    cache_->FlushDiskWrites();
    cache_->WaitForCopies();
  }
  PrefixCache& cache() { return *cache_; }
  BlockPool& pool() { return pool_; }

 private:
  // Tight: a request's blocks plus the tree's budget do not fit, so the engine evicts for
  // room and reuses freed blocks soon after their copies were queued.
  static constexpr int kPoolBlocks = 40;

  void Settle() {
    if (settle_) cache_->WaitForCopies();
  }
  // Computes tokens [from, to) into `table` as a step would: room first (evicting, as the
  // engine does), the copy-on-write copies, then the KV: every block the step completes gets
  // its key's pattern, a block it leaves partial gets junk (it is never copied down).
  void Compute(BlockTable& table, const std::vector<int32_t>& tokens, int64_t from, int64_t to) {
    std::optional<std::vector<BlockCopy>> copies;
    while (!(copies = table.PrepareWrite(pool_, kBs, from, to))) {
      ASSERT_GT(cache_->Evict(static_cast<int>((to - from + kBs - 1) / kBs) + 1), 0)
          << "no room and nothing to evict";
    }
    for (const BlockCopy& c : *copies) io_.Copy(c);
    const std::vector<BlockKey> keys =
        cache_->BlockKeys("", std::span<const int32_t>(tokens).first(to));
    for (int64_t i = from / kBs; i * kBs < to; ++i) {
      const BlockId b = table.blocks()[i];
      if ((i + 1) * kBs <= to) {
        io_.WriteBlock(b, Pattern(keys[i]));
      } else {
        io_.WriteBlock(b, std::vector<uint8_t>(kBlockBytes, 0xEE));
      }
    }
  }

  ManualClock clock_{1000};
  BlockPool pool_;
  FlatBlockIo io_;
  const bool settle_;
  std::unique_ptr<PrefixCache> cache_;
  int64_t next_ticket_ = 1;
};

// Sessions that come back with longer prompts (agent turns), and one-off prompts, so that the
// pool's budget, its room and host RAM's budget all evict, and host RAM serves hits.
std::vector<std::pair<std::vector<int32_t>, bool>> Workload(uint32_t seed, int n) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> sessions(5);
  for (size_t s = 0; s < sessions.size(); ++s) {
    for (int i = 0; i < 6 + static_cast<int>(rng() % 9); ++i) {
      sessions[s].push_back(static_cast<int32_t>(s * 100 + rng() % 90));
    }
  }
  std::vector<std::pair<std::vector<int32_t>, bool>> out;
  for (int r = 0; r < n; ++r) {
    if (rng() % 5 == 0) {
      std::vector<int32_t> one(5 + rng() % 20);
      for (auto& t : one) t = static_cast<int32_t>(600 + rng() % 300);
      out.push_back({one, false});
      continue;
    }
    auto& s = sessions[rng() % sessions.size()];
    const int grow = 1 + static_cast<int>(rng() % 9);
    for (int i = 0; i < grow; ++i) s.push_back(static_cast<int32_t>(rng() % 500));
    if (s.size() > 70) s.resize(12);  // a new conversation on the same system prompt
    out.push_back({s, rng() % 7 == 0});
  }
  return out;
}

// The randomized check against a reference: the reference waits for every copy after every
// call (as if the engine thread made them itself); the other never does, and its copier is
// slow. Every request must get the same hit, split the same way between the pool and host RAM,
// and the tiers must end the same.
TEST(CopiesOffTheEngineThread, HitsDoNotDependOnTheCopiersTiming) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    Cache reference(/*max_sleep_us=*/0, /*settle_every_call=*/true);
    Cache slow(/*max_sleep_us=*/300, /*settle_every_call=*/false);
    int64_t host_hits = 0;
    const auto work = Workload(seed, 160);
    for (size_t r = 0; r < work.size(); ++r) {
      const auto& [prompt, keep] = work[r];
      const Served a = reference.Run(prompt, 3, keep);
      const Served b = slow.Run(prompt, 3, keep);
      ASSERT_EQ(a.cached, b.cached) << "seed " << seed << " request " << r;
      ASSERT_EQ(a.host, b.host) << "seed " << seed << " request " << r;
      host_hits += a.host;
    }
    reference.Finish();
    slow.Finish();
    const TierControllerStats ra = reference.cache().tier_stats();
    const TierControllerStats sb = slow.cache().tier_stats();
    EXPECT_EQ(ra.offloaded_blocks, sb.offloaded_blocks);
    EXPECT_EQ(ra.host.entries, sb.host.entries);
    EXPECT_EQ(ra.host.evictions, sb.host.evictions);
    EXPECT_EQ(ra.host.retained_entries, sb.host.retained_entries);
    EXPECT_EQ(reference.cache().stats().evicted_blocks, slow.cache().stats().evicted_blocks);
    // The workload must exercise what it claims to.
    EXPECT_GT(ra.offloaded_blocks, 50) << "seed " << seed;
    EXPECT_GT(ra.host.evictions, 0) << "seed " << seed;
    EXPECT_GT(host_hits, 0) << "seed " << seed;
    // Nothing stays held once the copies are done.
    EXPECT_EQ(slow.pool().num_held(), 0);
    slow.pool().CheckInvariants();
  }
}

// Disk write-through and host offload together, a slow copier against an engine thread that
// reuses freed blocks soon: every block a lower tier gives back must
// hold its key's bytes (checked on every hit in Run), and the pool must end whole.
TEST(CopiesOffTheEngineThread, PoolNeverReusesABlockACopyReads) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("prefixd-copy-offload-" + std::to_string(getpid())))
          .string();
  std::filesystem::remove_all(dir);
  {
    Cache c(/*max_sleep_us=*/200, /*settle_every_call=*/false, dir);
    int64_t from_lower = 0;
    for (const auto& [prompt, keep] : Workload(11, 300)) {
      const Served s = c.Run(prompt, 2, keep);
      from_lower += s.host + s.disk;
    }
    EXPECT_GT(from_lower, 0) << "the workload should hit host RAM or disk";
    ASSERT_EQ(c.cache().Clear() >= 0, true);
    c.Finish();
    EXPECT_GT(c.cache().tier_stats().disk.writes, 0);
    EXPECT_EQ(c.pool().num_held(), 0);
    EXPECT_EQ(c.pool().num_free(), c.pool().num_blocks()) << "every block back in the pool";
    c.pool().CheckInvariants();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace prefixd
