// Retention in host RAM (ARCHITECTURE.md invariant 9): retained entries are evicted last and
// handed back (spilled) rather than dropped; marks expire on a test clock, are capped oldest
// first beyond the retained share, and a read refreshes them. A randomized test compares every
// step with a reference model of two lists.
#include <gtest/gtest.h>

#include <algorithm>
#include <list>
#include <map>
#include <random>

#include "base/clock.h"
#include "tier/host_store.h"

namespace prefixd {
namespace {

BlockRecord MakeRecord(uint64_t id, int num_tokens = 4, size_t kv_bytes = 100) {
  BlockRecord r;
  r.key = BlockKey{id * 0x9e3779b97f4a7c15ULL, id};
  r.parent = BlockKey{id, 0};
  for (int i = 0; i < num_tokens; ++i) r.tokens.push_back(static_cast<int32_t>(id + i));
  r.kv.assign(kv_bytes, static_cast<uint8_t>(id));
  return r;
}

constexpr int64_t kRecordBytes = 80 + 16 + 100;  // MakeRecord's default size

RetentionMark Mark(int64_t now, int64_t duration) { return RetentionMark{50, duration, now + duration}; }

TEST(HostStoreRetention, RetainedEntriesGoLastAndSpillInsteadOfDropping) {
  ManualClock clock(0);
  HostStore store(4 * kRecordBytes, &clock, 0.5);
  std::vector<HostStore::Spilled> spilled;
  const RetentionMark keep = Mark(0, 1000);
  store.WriteRetained({MakeRecord(1)}, std::vector<RetentionMark>{keep}, &spilled);  // oldest
  for (uint64_t id = 2; id <= 9; ++id) store.WriteRetained({MakeRecord(id)}, {}, &spilled);
  store.CheckInvariants();
  EXPECT_TRUE(spilled.empty());
  EXPECT_TRUE(store.Contains(MakeRecord(1).key)) << "the retained entry was evicted first";
  EXPECT_EQ(store.Stats().retained_bytes, kRecordBytes);
  // Two retained entries in a budget of two: the older spills, with its mark.
  HostStore small(2 * kRecordBytes, &clock, 1.0);
  for (uint64_t id = 1; id <= 3; ++id) {
    small.WriteRetained({MakeRecord(id)}, std::vector<RetentionMark>{keep}, &spilled);
  }
  ASSERT_EQ(spilled.size(), 1u);
  EXPECT_EQ(spilled[0].record, MakeRecord(1));
  EXPECT_EQ(spilled[0].mark, keep);
  EXPECT_EQ(small.Stats().retention_spilled, 1);
}

// Generated tokens rank lowest here as in the pool: written least recent, so they go before
// older prompt blocks; a read (a prompt sent them back) ranks them as any entry; retained ones
// are kept as retained.
TEST(HostStoreRetention, GeneratedRecordsGoFirstUntilReadBack) {
  ManualClock clock(0);
  HostStore store(3 * kRecordBytes, &clock, 0.5);
  BlockRecord generated = MakeRecord(2);
  generated.generated = true;
  store.Write({MakeRecord(1)});
  store.Write({generated});
  store.Write({MakeRecord(3)});
  EXPECT_EQ(store.KeysByRecency(), (std::vector<BlockKey>{MakeRecord(3).key, MakeRecord(1).key, generated.key}));
  store.Write({MakeRecord(4)});
  EXPECT_FALSE(store.Contains(generated.key)) << "the generated block went before the older prompt block";
  EXPECT_TRUE(store.Contains(MakeRecord(1).key));
  store.Write({generated});
  ASSERT_TRUE(store.Read(std::vector<BlockKey>{generated.key})[0].ok());
  store.Write({MakeRecord(5)});
  EXPECT_TRUE(store.Contains(generated.key)) << "read back, it is an ordinary recent entry";
  EXPECT_FALSE(store.Contains(MakeRecord(1).key));
  BlockRecord kept = MakeRecord(6);
  kept.generated = true;
  store.WriteRetained({kept}, std::vector<RetentionMark>{Mark(0, 1000)}, nullptr);
  for (uint64_t id = 7; id <= 9; ++id) store.Write({MakeRecord(id)});
  EXPECT_TRUE(store.Contains(kept.key)) << "retention outranks generated";
  store.CheckInvariants();
}

TEST(HostStoreRetention, MarksExpireAndReadsRefreshThem) {
  ManualClock clock(0);
  HostStore store(10 * kRecordBytes, &clock, 1.0);
  store.WriteRetained({MakeRecord(1), MakeRecord(2)},
                      std::vector<RetentionMark>{Mark(0, 1000), Mark(0, 1000)}, nullptr);
  clock.Advance(900);
  store.Read(std::vector<BlockKey>{MakeRecord(2).key});  // lasts until 1900 now
  EXPECT_EQ(store.ExpireRetention(999), 0);
  EXPECT_EQ(store.ExpireRetention(1000), 1);
  EXPECT_FALSE(store.MarkOf(MakeRecord(1).key).marked());
  EXPECT_TRUE(store.MarkOf(MakeRecord(2).key).marked());
  EXPECT_EQ(store.ExpireRetention(1900), 1);
  EXPECT_EQ(store.Stats().retention_expired, 2);
  EXPECT_EQ(store.Stats().retained_bytes, 0);
  store.CheckInvariants();
}

TEST(HostStoreRetention, BeyondTheShareTheOldestMarkEndsAndMovesDown) {
  ManualClock clock(0);
  HostStore store(10 * kRecordBytes, &clock, 0.2);  // two records' worth retained
  std::vector<HostStore::Spilled> spilled;
  for (uint64_t id = 1; id <= 3; ++id) {
    store.WriteRetained({MakeRecord(id)}, std::vector<RetentionMark>{Mark(0, 1000)}, &spilled);
  }
  ASSERT_EQ(spilled.size(), 1u) << "the demoted record goes down a tier with its mark";
  EXPECT_EQ(spilled[0].record, MakeRecord(1));
  EXPECT_TRUE(spilled[0].mark.marked());
  EXPECT_TRUE(store.Contains(MakeRecord(1).key)) << "and stays here as an ordinary record";
  EXPECT_FALSE(store.MarkOf(MakeRecord(1).key).marked());
  EXPECT_TRUE(store.MarkOf(MakeRecord(2).key).marked());
  EXPECT_TRUE(store.MarkOf(MakeRecord(3).key).marked());
  EXPECT_EQ(store.Stats().retention_capped, 1);
  store.CheckInvariants();
}

// The model: two lists of keys (front: most recent), marks, sizes, and the same rules.
class ReferenceRetainedLru {
 public:
  ReferenceRetainedLru(int64_t budget, int64_t max_retained) : budget_(budget), max_retained_(max_retained) {}

  void Write(const BlockRecord& r, const RetentionMark& mark, std::vector<BlockKey>* spilled) {
    if (size_.contains(r.key)) {
      Place(r.key, RetentionMark::Merge(mark_[r.key], mark), true);
      Cap(spilled);
      return;
    }
    size_[r.key] = static_cast<int64_t>(SerializedSize(r));
    mark_[r.key] = RetentionMark{};
    lru_.push_front(r.key);
    bytes_ += size_[r.key];
    if (mark.marked()) Place(r.key, mark, true);
    while (bytes_ > budget_) {
      const bool retained = lru_.empty();
      std::list<BlockKey>& from = retained ? kept_ : lru_;
      const BlockKey victim = from.back();
      from.pop_back();
      bytes_ -= size_[victim];
      if (retained) {
        kept_bytes_ -= size_[victim];
        spilled->push_back(victim);
      }
      size_.erase(victim);
      mark_.erase(victim);
    }
    Cap(spilled);
  }
  bool Read(const BlockKey& key, int64_t now) {
    if (!size_.contains(key)) return false;
    const RetentionMark m = mark_[key];
    Place(key, m.marked() ? m.RefreshedAt(now) : m, true);
    return true;
  }
  int Expire(int64_t now) {
    int n = 0;
    for (auto it = kept_.begin(); it != kept_.end();) {
      const BlockKey key = *it++;
      if (mark_[key].until_ms > now) continue;
      Place(key, RetentionMark{}, false);
      ++n;
    }
    return n;
  }
  std::vector<BlockKey> Order() const {
    std::vector<BlockKey> out(kept_.begin(), kept_.end());
    out.insert(out.end(), lru_.begin(), lru_.end());
    return out;
  }
  int64_t kept_bytes() const { return kept_bytes_; }

 private:
  void Place(const BlockKey& key, const RetentionMark& mark, bool most_recent) {
    (mark_[key].marked() ? kept_ : lru_).remove(key);
    if (mark_[key].marked()) kept_bytes_ -= size_[key];
    if (mark.marked()) kept_bytes_ += size_[key];
    mark_[key] = mark;
    std::list<BlockKey>& to = mark.marked() ? kept_ : lru_;
    if (most_recent) to.push_front(key);
    else to.push_back(key);
  }
  void Cap(std::vector<BlockKey>* spilled) {
    while (kept_bytes_ > max_retained_ && !kept_.empty()) {
      const BlockKey oldest = kept_.back();  // a copy: Place removes the list's node
      spilled->push_back(oldest);
      Place(oldest, RetentionMark{}, true);
    }
  }

  int64_t budget_, max_retained_;
  std::map<BlockKey, int64_t> size_;
  std::map<BlockKey, RetentionMark> mark_;
  std::list<BlockKey> lru_, kept_;
  int64_t bytes_ = 0, kept_bytes_ = 0;
};

TEST(HostStoreRetention, RandomizedAgainstReferenceModel) {
  std::mt19937_64 rng(19);
  constexpr int64_t kBudget = 4000;
  ManualClock clock(0);
  HostStore store(kBudget, &clock, 0.5);
  ReferenceRetainedLru ref(kBudget, kBudget / 2);
  auto record = [](uint64_t id) { return MakeRecord(id, static_cast<int>(id % 5), 50 + (id * 37) % 400); };
  int num_spilled = 0, num_expired = 0;
  for (int step = 0; step < 20000; ++step) {
    clock.Advance(static_cast<int64_t>(rng() % 20));
    const int64_t now = clock.NowMs();
    const int op = static_cast<int>(rng() % 100);
    const BlockRecord r = record(1 + rng() % 60);
    if (op < 45) {
      const RetentionMark mark = rng() % 3 == 0 ? Mark(now, 1 + static_cast<int64_t>(rng() % 500)) : RetentionMark{};
      std::vector<HostStore::Spilled> got;
      std::vector<BlockKey> want;
      store.WriteRetained({r}, std::vector<RetentionMark>{mark}, &got);
      ref.Write(r, mark, &want);
      ASSERT_EQ(got.size(), want.size()) << "step " << step;
      for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i].record.key, want[i]);
      num_spilled += static_cast<int>(got.size());
    } else if (op < 80) {
      const bool held = ref.Read(r.key, now);
      ASSERT_EQ(store.Read(std::vector<BlockKey>{r.key})[0].ok(), held) << "step " << step;
    } else {
      const int want = ref.Expire(now);
      // The store skips the scan while no mark is due; the model scans every time.
      ASSERT_EQ(store.ExpireRetention(now), want) << "step " << step;
      num_expired += want;
    }
    store.CheckInvariants();
    ASSERT_EQ(store.KeysByRecency(), ref.Order()) << "step " << step;
    ASSERT_EQ(store.Stats().retained_bytes, ref.kept_bytes());
  }
  EXPECT_GT(num_spilled, 50);
  EXPECT_GT(num_expired, 50);
}

}  // namespace
}  // namespace prefixd
