// Retention on disk (ARCHITECTURE.md invariant 9): retained block files are evicted last, a
// mark for a block still being written waits for its Write, marks expire on a test clock and
// are capped oldest first.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <random>

#include "base/clock.h"
#include "tier/disk_store.h"

namespace prefixd {
namespace {

constexpr BlockHashKind kKind = BlockHashKind::kXxh3;
constexpr int kBlockTokens = 4;
constexpr size_t kKvBytes = 256;
constexpr int64_t kRecordBytes = 80 + 4 * kBlockTokens + kKvBytes;

class DiskStoreRetention : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/prefixd_disk_retention_XXXXXX";
    dir_ = ::mkdtemp(tmpl.data());
    ModelFingerprint fp;
    fp.architecture = "llama";
    fp.block_size = kBlockTokens;
    fingerprint_ = fp.Serialize();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<DiskStore> Open(int64_t budget, double share) {
    DiskStoreOptions o;
    o.dir = dir_;
    o.budget_bytes = budget;
    o.fingerprint = fingerprint_;
    o.sync_dirs = false;
    o.clock = &clock_;
    o.retention_max_share = share;
    auto store = DiskStore::Open(std::move(o));
    EXPECT_TRUE(store.ok()) << store.status();
    return std::move(*store);
  }

  BlockRecord Record(uint64_t seed) {
    std::mt19937_64 rng(seed);
    BlockRecord r;
    r.parent = RootKey(kKind, fingerprint_, absl::StrCat("salt", seed));
    for (int t = 0; t < kBlockTokens; ++t) r.tokens.push_back(static_cast<int32_t>(rng() % 32000));
    r.kv.assign(kKvBytes, static_cast<uint8_t>(seed));
    r.key = ChainKey(kKind, r.parent, r.tokens);
    return r;
  }

  RetentionMark Mark(int64_t duration) {
    return RetentionMark{50, duration, clock_.NowMs() + duration};
  }

  std::string dir_;
  std::vector<uint8_t> fingerprint_;
  ManualClock clock_{0};
};

TEST_F(DiskStoreRetention, RetainedFilesAreEvictedLastAndMarksWaitForTheirWrite) {
  auto store = Open(4 * kRecordBytes, 0.5);
  const BlockRecord kept = Record(1);
  // The mark arrives before the block is written (a spill queued for the writer).
  EXPECT_EQ(store->Retain(std::vector<BlockKey>{kept.key}, Mark(1000), /*remember_absent=*/true), 0);
  ASSERT_TRUE(store->Write({kept})[0].ok());
  EXPECT_TRUE(store->MarkOf(kept.key).marked());
  for (uint64_t s = 2; s <= 9; ++s) ASSERT_TRUE(store->Write({Record(s)})[0].ok());
  store->CheckInvariants();
  EXPECT_TRUE(store->Contains(kept.key)) << "the retained block file went first";
  EXPECT_EQ(store->Stats().retained_bytes, kRecordBytes);
  // Once its time is up nothing keeps it: the next writes push it out.
  clock_.Advance(1000);
  EXPECT_EQ(store->ExpireRetention(clock_.NowMs()), 1);
  for (uint64_t s = 10; s <= 13; ++s) ASSERT_TRUE(store->Write({Record(s)})[0].ok());
  EXPECT_FALSE(store->Contains(kept.key));
  EXPECT_EQ(store->Stats().retention_expired, 1);
  store->CheckInvariants();
}

TEST_F(DiskStoreRetention, ReadsRefreshAndTheShareIsCapped) {
  auto store = Open(10 * kRecordBytes, 0.2);  // two records' worth retained
  std::vector<BlockKey> keys;
  for (uint64_t s = 1; s <= 3; ++s) {
    const BlockRecord r = Record(s);
    ASSERT_TRUE(store->Write({r})[0].ok());
    keys.push_back(r.key);
    store->Retain(std::vector<BlockKey>{r.key}, Mark(1000), false);
  }
  EXPECT_FALSE(store->MarkOf(keys[0]).marked()) << "the oldest mark ends beyond the share";
  EXPECT_EQ(store->Stats().retention_capped, 1);
  clock_.Advance(900);
  ASSERT_TRUE(store->Read(std::vector<BlockKey>{keys[2]})[0].ok());  // until 1900 now
  EXPECT_EQ(store->ExpireRetention(1000), 1);
  EXPECT_TRUE(store->MarkOf(keys[2]).marked());
  EXPECT_EQ(store->ExpireRetention(1900), 1);
  store->CheckInvariants();
}

}  // namespace
}  // namespace prefixd
