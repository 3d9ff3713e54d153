// Retention on disk (ARCHITECTURE.md invariant 9): retained block files are evicted last, a
// mark for a block still being written waits for its Write, marks expire on a test clock and
// are capped oldest first, and they outlive a restart (the RETENTION side file) less the wall
// time the server was down.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <random>

#include "base/clock.h"
#include "base/file_system.h"
#include "tier/disk_store.h"
#include "tier/retention_file.h"

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

  // `clock`: the cache's clock (nullptr: clock_); the wall clock is wall_.
  std::unique_ptr<DiskStore> Open(int64_t budget, double share, const Clock* clock = nullptr) {
    DiskStoreOptions o;
    o.dir = dir_;
    o.budget_bytes = budget;
    o.fingerprint = fingerprint_;
    o.sync_dirs = false;
    o.clock = clock != nullptr ? clock : &clock_;
    o.wall_clock = &wall_;
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
  ManualClock wall_{1'700'000'000'000};  // Unix ms
};

constexpr int64_t kMinute = 60'000;

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

// Generated tokens rank lowest on disk too: written least recent, so they go before older
// prompt blocks, until a read ranks them as any block.
TEST_F(DiskStoreRetention, GeneratedRecordsGoFirstUntilReadBack) {
  auto store = Open(3 * kRecordBytes, 0.5);
  BlockRecord generated = Record(2);
  generated.generated = true;
  ASSERT_TRUE(store->Write({Record(1)})[0].ok());
  ASSERT_TRUE(store->Write({generated})[0].ok());
  ASSERT_TRUE(store->Write({Record(3)})[0].ok());
  EXPECT_EQ(store->KeysByRecency(), (std::vector<BlockKey>{Record(3).key, Record(1).key, generated.key}));
  ASSERT_TRUE(store->Write({Record(4)})[0].ok());
  EXPECT_FALSE(store->Contains(generated.key)) << "the generated block went before the older prompt block";
  EXPECT_TRUE(store->Contains(Record(1).key));
  ASSERT_TRUE(store->Write({generated})[0].ok());
  ASSERT_TRUE(store->Read(std::vector<BlockKey>{generated.key})[0].ok());
  ASSERT_TRUE(store->Write({Record(5)})[0].ok());
  EXPECT_TRUE(store->Contains(generated.key)) << "read back, it is an ordinary recent block";
  EXPECT_FALSE(store->Contains(Record(1).key));
  store->CheckInvariants();
}

// Closed and opened again (a restart: a new process, whose steady clock has another epoch),
// the store gives the marks back to their blocks, less the wall time it was down; a mark that
// ended before the close, or while it was down, does not come back. Retained files still go
// last, and expire when they would have.
TEST_F(DiskStoreRetention, MarksOutliveARestart) {
  const BlockRecord hour = Record(1), five = Record(2), short_left = Record(3);
  {
    auto store = Open(6 * kRecordBytes, 0.5);
    for (const BlockRecord& r : {hour, five, short_left}) ASSERT_TRUE(store->Write({r})[0].ok());
    for (uint64_t s = 4; s <= 6; ++s) ASSERT_TRUE(store->Write({Record(s)})[0].ok());
    store->Retain(std::vector<BlockKey>{hour.key}, Mark(60 * kMinute), false);
    store->Retain(std::vector<BlockKey>{five.key}, Mark(5 * kMinute), false);
    store->Retain(std::vector<BlockKey>{short_left.key}, Mark(25 * kMinute), false);
    clock_.Advance(10 * kMinute);  // five's mark ends before the close
  }
  wall_.Advance(20 * kMinute);  // down for 20 minutes: short_left's 15 left run out
  ManualClock after(123'456'789);
  auto store = Open(6 * kRecordBytes, 0.5, &after);
  EXPECT_EQ(store->scan_report().files_found, 6);
  EXPECT_EQ(store->scan_report().retained, 1);
  EXPECT_EQ(store->scan_report().ignored_files, 0) << "RETENTION is ours";
  const RetentionMark m = store->MarkOf(hour.key);
  EXPECT_EQ(m.priority, 50);
  EXPECT_EQ(m.duration_ms, 60 * kMinute);
  EXPECT_EQ(m.until_ms, after.NowMs() + 30 * kMinute) << "60 - 10 before the close - 20 down";
  EXPECT_FALSE(store->MarkOf(five.key).marked());
  EXPECT_FALSE(store->MarkOf(short_left.key).marked());
  EXPECT_EQ(store->KeysByRecency().front(), hour.key);
  // The oldest file, yet the last to go: six newer writes push out every other one.
  for (uint64_t s = 10; s <= 15; ++s) ASSERT_TRUE(store->Write({Record(s)})[0].ok());
  EXPECT_TRUE(store->Contains(hour.key));
  EXPECT_FALSE(store->Contains(five.key));
  store->CheckInvariants();
  after.Advance(30 * kMinute - 1);
  EXPECT_EQ(store->ExpireRetention(after.NowMs()), 0);
  after.Advance(1);
  EXPECT_EQ(store->ExpireRetention(after.NowMs()), 1);
  ASSERT_TRUE(store->Write({Record(16)})[0].ok());
  EXPECT_FALSE(store->Contains(hour.key)) << "expired: an ordinary, old block again";
}

// Retained blocks take their marks before the start-up scan trims the folder to a smaller
// budget, so they are what stays.
TEST_F(DiskStoreRetention, TheStartUpEvictionKeepsRetainedFiles) {
  const BlockRecord oldest = Record(1);
  {
    auto store = Open(8 * kRecordBytes, 0.5);
    ASSERT_TRUE(store->Write({oldest})[0].ok());
    for (uint64_t s = 2; s <= 8; ++s) ASSERT_TRUE(store->Write({Record(s)})[0].ok());
    store->Retain(std::vector<BlockKey>{oldest.key}, Mark(60 * kMinute), false);
  }
  auto store = Open(2 * kRecordBytes, 0.5);
  EXPECT_EQ(store->scan_report().evicted, 6);
  EXPECT_TRUE(store->Contains(oldest.key));
  EXPECT_TRUE(store->MarkOf(oldest.key).marked());
  store->CheckInvariants();
}

// A damaged, foreign or truncated RETENTION is refused whole: the store opens, every block
// ordinary. No marks: no file (a clear removes it too).
TEST_F(DiskStoreRetention, ABadRetentionFileIsRefusedNeverMisread) {
  const BlockRecord r = Record(1);
  std::string path;
  {
    auto store = Open(4 * kRecordBytes, 0.5);
    ASSERT_TRUE(store->Write({r})[0].ok());
    store->Retain(std::vector<BlockKey>{r.key}, Mark(60 * kMinute), false);
    path = store->model_dir() + "/" + kRetentionFileName;
  }
  FileSystem* fs = FileSystem::Default();
  auto good = fs->ReadFile(path);
  ASSERT_TRUE(good.ok()) << good.status();
  std::vector<std::vector<uint8_t>> bad(3, *good);
  bad[0][30] ^= 1;          // a flipped bit in the mark
  bad[1][8] = 9;            // another format version
  bad[2].resize(bad[2].size() - 3);
  for (const std::vector<uint8_t>& bytes : bad) {
    ASSERT_TRUE(WriteFileAtomically(*fs, path, path + ".t", bytes, false).ok());
    auto store = Open(4 * kRecordBytes, 0.5);
    EXPECT_TRUE(store->Contains(r.key));
    EXPECT_FALSE(store->MarkOf(r.key).marked());
    EXPECT_EQ(store->scan_report().retained, 0);
  }
  // The last store closed with no marks: the file is gone.
  EXPECT_TRUE(absl::IsNotFound(fs->Stat(path).status()));
  ASSERT_TRUE(WriteFileAtomically(*fs, path, path + ".t", *good, false).ok());
  {
    auto store = Open(4 * kRecordBytes, 0.5);
    EXPECT_TRUE(store->MarkOf(r.key).marked());
    ASSERT_TRUE(store->Clear().ok());
    EXPECT_TRUE(absl::IsNotFound(fs->Stat(path).status()));
  }
}

TEST(RetentionFile, RoundTripsAndSaysWhatIsWrong) {
  const std::vector<KeyMark> marks = {{BlockKey{1, 2}, RetentionMark{50, 1000, 1500}},
                                      {BlockKey{3, 4}, RetentionMark{90, 5000, 900}},  // ended
                                      {BlockKey{5, 6}, RetentionMark{7, 3000, 4000}}};
  const std::vector<uint8_t> bytes = SerializeRetentionFile(marks, /*now_ms=*/1000, /*wall_ms=*/50'000);
  auto back = ParseRetentionFile(bytes, /*now_ms=*/7, /*wall_ms=*/50'100);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[0].key, (BlockKey{1, 2}));
  EXPECT_EQ((*back)[0].mark, (RetentionMark{50, 1000, 7 + 500 - 100}));
  EXPECT_EQ((*back)[1].mark, (RetentionMark{7, 3000, 7 + 3000 - 100}));
  auto clock_set_back = ParseRetentionFile(bytes, 0, 10);
  ASSERT_TRUE(clock_set_back.ok());
  EXPECT_EQ((*clock_set_back)[0].mark.until_ms, 500) << "a wall clock set back takes nothing off";
  auto all_ran_out = ParseRetentionFile(bytes, 0, 50'000 + 3000);
  ASSERT_TRUE(all_ran_out.ok());
  EXPECT_TRUE(all_ran_out->empty());
  std::vector<uint8_t> other = bytes;
  other[0] = 'X';
  EXPECT_NE(ParseRetentionFile(other, 0, 0).status().message().find("bad magic"), std::string::npos);
  EXPECT_NE(ParseRetentionFile(std::span(bytes).first(20), 0, 0).status().message().find("20 bytes"),
            std::string::npos);
}

}  // namespace
}  // namespace prefixd
