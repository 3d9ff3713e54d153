#include "tier/host_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <list>
#include <map>
#include <random>
#include <thread>

namespace prefixd {
namespace {

// A record whose serialized size is 80 + 4 * num_tokens + kv_bytes.
BlockRecord MakeRecord(uint64_t id, int num_tokens = 4, size_t kv_bytes = 100) {
  BlockRecord r;
  r.key = BlockKey{id * 0x9e3779b97f4a7c15ULL, id};
  r.parent = BlockKey{id, 0};
  for (int i = 0; i < num_tokens; ++i) r.tokens.push_back(static_cast<int32_t>(id + i));
  r.kv.assign(kv_bytes, static_cast<uint8_t>(id));
  return r;
}

std::vector<BlockRecord> One(BlockRecord r) {
  std::vector<BlockRecord> v;
  v.push_back(std::move(r));
  return v;
}

constexpr int64_t kRecordBytes = 80 + 16 + 100;  // MakeRecord's default size

TEST(HostStoreTest, WriteThenReadAndCount) {
  HostStore store(10 * kRecordBytes);
  const BlockRecord a = MakeRecord(1), b = MakeRecord(2), c = MakeRecord(3);
  const std::vector<Status> w = store.Write({a, b});
  ASSERT_EQ(w.size(), 2u);
  EXPECT_TRUE(w[0].ok() && w[1].ok());
  store.CheckInvariants();

  const std::vector<BlockKey> keys = {a.key, b.key, c.key, a.key};
  EXPECT_EQ(store.CountPresentPrefix(keys), 2);
  EXPECT_EQ(store.CountPresentPrefix(std::span(keys).subspan(2)), 0);
  EXPECT_TRUE(store.Contains(a.key));
  EXPECT_FALSE(store.Contains(c.key));

  std::vector<StatusOr<BlockRecord>> r = store.Read(keys);
  ASSERT_EQ(r.size(), 4u);
  ASSERT_TRUE(r[0].ok());
  EXPECT_EQ(*r[0], a);
  EXPECT_EQ(*r[1], b);
  EXPECT_TRUE(absl::IsNotFound(r[2].status())) << r[2].status();
  EXPECT_EQ(*r[3], a);

  const TierStats s = store.Stats();
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.bytes, 2 * kRecordBytes);
  EXPECT_EQ(s.budget_bytes, 10 * kRecordBytes);
  EXPECT_EQ(s.hits, 3);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.writes, 2);
  EXPECT_EQ(s.evictions, 0);
}

TEST(HostStoreTest, EvictsLeastRecentlyUsedUnderTheBudget) {
  HostStore store(3 * kRecordBytes);
  for (uint64_t id = 1; id <= 3; ++id) ASSERT_TRUE(store.Write(One(MakeRecord(id)))[0].ok());
  // Read refreshes 1; Contains and CountPresentPrefix (observers) do not refresh 2.
  const BlockKey k1 = MakeRecord(1).key, k2 = MakeRecord(2).key;
  ASSERT_TRUE(store.Read({&k1, 1})[0].ok());
  EXPECT_TRUE(store.Contains(k2));
  EXPECT_EQ(store.CountPresentPrefix({&k2, 1}), 1);
  EXPECT_EQ(store.KeysByRecency(), (std::vector<BlockKey>{k1, MakeRecord(3).key, k2}));

  ASSERT_TRUE(store.Write(One(MakeRecord(4)))[0].ok());
  store.CheckInvariants();
  EXPECT_FALSE(store.Contains(k2)) << "the least recently used goes first";
  EXPECT_TRUE(store.Contains(k1));
  EXPECT_EQ(store.Stats().evictions, 1);
  EXPECT_EQ(store.Stats().bytes, 3 * kRecordBytes);
}

TEST(HostStoreTest, RewriteOfAHeldKeyRefreshesIt) {
  HostStore store(2 * kRecordBytes);
  ASSERT_TRUE(store.Write({MakeRecord(1), MakeRecord(2)})[1].ok());
  ASSERT_TRUE(store.Write(One(MakeRecord(1)))[0].ok());
  EXPECT_EQ(store.Stats().writes, 2) << "a held key is not stored twice";
  ASSERT_TRUE(store.Write(One(MakeRecord(3)))[0].ok());
  EXPECT_TRUE(store.Contains(MakeRecord(1).key));
  EXPECT_FALSE(store.Contains(MakeRecord(2).key));
  store.CheckInvariants();
}

TEST(HostStoreTest, RecordLargerThanTheBudgetIsRefused) {
  HostStore store(kRecordBytes);
  const std::vector<Status> w = store.Write({MakeRecord(1, 4, 101), MakeRecord(2)});
  EXPECT_TRUE(absl::IsResourceExhausted(w[0])) << w[0];
  EXPECT_TRUE(w[1].ok());
  EXPECT_EQ(store.Stats().entries, 1);
  EXPECT_EQ(store.Stats().write_failures, 0) << "no room is not a failure";

  HostStore disabled(0);
  EXPECT_TRUE(absl::IsResourceExhausted(disabled.Write(One(MakeRecord(1)))[0]));
  EXPECT_EQ(disabled.Stats().entries, 0);
  disabled.CheckInvariants();
}

TEST(HostStoreTest, RemoveAndClear) {
  HostStore store(10 * kRecordBytes);
  store.Write({MakeRecord(1), MakeRecord(2), MakeRecord(3)});
  const std::vector<BlockKey> gone = {MakeRecord(2).key, MakeRecord(9).key};
  EXPECT_EQ(store.Remove(gone), 1);
  store.CheckInvariants();
  EXPECT_EQ(store.Stats().entries, 2);
  EXPECT_FALSE(store.Contains(MakeRecord(2).key));
  EXPECT_TRUE(store.Clear().ok());
  store.CheckInvariants();
  EXPECT_EQ(store.Stats().entries, 0);
  EXPECT_EQ(store.Stats().bytes, 0);
  EXPECT_TRUE(store.KeysByRecency().empty());
}

// The naive model: a map of records and a list of keys in access order (front: most recent).
class ReferenceLru {
 public:
  explicit ReferenceLru(int64_t budget) : budget_(budget) {}

  void Touch(const BlockKey& key) {
    order_.remove(key);
    order_.push_front(key);
  }
  bool Write(const BlockRecord& r) {
    const int64_t size = static_cast<int64_t>(SerializedSize(r));
    if (size > budget_) return false;
    if (records_.contains(r.key)) {
      Touch(r.key);
      return true;
    }
    records_[r.key] = r;
    order_.push_front(r.key);
    bytes_ += size;
    while (bytes_ > budget_) {
      const BlockKey victim = order_.back();
      order_.pop_back();
      bytes_ -= static_cast<int64_t>(SerializedSize(records_[victim]));
      records_.erase(victim);
      ++evictions_;
    }
    return true;
  }
  const BlockRecord* Read(const BlockKey& key) {
    auto it = records_.find(key);
    if (it == records_.end()) return nullptr;
    Touch(key);
    return &it->second;
  }
  int Count(std::span<const BlockKey> keys) const {
    int n = 0;
    while (n < static_cast<int>(keys.size()) && records_.contains(keys[n])) ++n;
    return n;
  }
  int Remove(std::span<const BlockKey> keys) {
    int n = 0;
    for (const BlockKey& k : keys) {
      auto it = records_.find(k);
      if (it == records_.end()) continue;
      bytes_ -= static_cast<int64_t>(SerializedSize(it->second));
      records_.erase(it);
      order_.remove(k);
      ++n;
    }
    return n;
  }
  void Clear() {
    records_.clear();
    order_.clear();
    bytes_ = 0;
  }
  std::vector<BlockKey> Order() const { return {order_.begin(), order_.end()}; }
  int64_t bytes() const { return bytes_; }
  int64_t evictions() const { return evictions_; }

 private:
  int64_t budget_;
  std::map<BlockKey, BlockRecord> records_;
  std::list<BlockKey> order_;
  int64_t bytes_ = 0;
  int64_t evictions_ = 0;
};

TEST(HostStoreTest, RandomizedAgainstReferenceModel) {
  std::mt19937_64 rng(42);
  constexpr int64_t kBudget = 4000;
  HostStore store(kBudget);
  ReferenceLru ref(kBudget);
  constexpr uint64_t kUniverse = 60;  // keys 1..60, sizes vary per key
  auto record = [](uint64_t id) {
    return MakeRecord(id, static_cast<int>(id % 5), 50 + (id * 37) % 400);
  };
  auto random_keys = [&](int n) {
    std::vector<BlockKey> keys;
    for (int i = 0; i < n; ++i) keys.push_back(record(1 + rng() % kUniverse).key);
    return keys;
  };
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 100);
    if (op < 40) {
      std::vector<BlockRecord> batch;
      const int n = 1 + static_cast<int>(rng() % 4);
      for (int i = 0; i < n; ++i) batch.push_back(record(1 + rng() % kUniverse));
      std::vector<bool> want;
      for (const BlockRecord& r : batch) want.push_back(ref.Write(r));
      const std::vector<Status> got = store.Write(batch);
      for (int i = 0; i < n; ++i) ASSERT_EQ(got[i].ok(), want[i]) << "step " << step;
    } else if (op < 75) {
      const std::vector<BlockKey> keys = random_keys(1 + static_cast<int>(rng() % 4));
      const std::vector<StatusOr<BlockRecord>> got = store.Read(keys);
      for (size_t i = 0; i < keys.size(); ++i) {
        const BlockRecord* want = ref.Read(keys[i]);
        ASSERT_EQ(got[i].ok(), want != nullptr) << "step " << step;
        if (want != nullptr) {
          ASSERT_EQ(*got[i], *want);
        }
      }
    } else if (op < 90) {
      const std::vector<BlockKey> keys = random_keys(1 + static_cast<int>(rng() % 6));
      ASSERT_EQ(store.CountPresentPrefix(keys), ref.Count(keys)) << "step " << step;
      ASSERT_EQ(store.Contains(keys[0]), ref.Count({keys.data(), 1}) == 1);
    } else if (op < 99) {
      const std::vector<BlockKey> keys = random_keys(1 + static_cast<int>(rng() % 3));
      ASSERT_EQ(store.Remove(keys), ref.Remove(keys)) << "step " << step;
    } else {
      ASSERT_TRUE(store.Clear().ok());
      ref.Clear();
    }
    store.CheckInvariants();
    ASSERT_EQ(store.KeysByRecency(), ref.Order()) << "step " << step;
    ASSERT_EQ(store.Stats().bytes, ref.bytes());
    ASSERT_EQ(store.Stats().evictions, ref.evictions());
  }
}

// Readers, observers and a writer at once: every record read is the one written for its key.
TEST(HostStoreTest, ConcurrentReadersAndWriter) {
  HostStore store(20 * kRecordBytes);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> served{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      while (!stop.load()) {
        std::vector<BlockKey> keys;
        for (int i = 0; i < 4; ++i) keys.push_back(MakeRecord(1 + rng() % 50).key);
        store.CountPresentPrefix(keys);
        (void)store.Stats();
        for (const StatusOr<BlockRecord>& r : store.Read(keys)) {
          if (!r.ok()) continue;
          ASSERT_EQ(*r, MakeRecord(r->key.lo));
          served.fetch_add(1);
        }
      }
    });
  }
  std::mt19937_64 rng(99);
  for (int i = 0; i < 5000; ++i) {
    store.Write(One(MakeRecord(1 + rng() % 50)));
    if (i % 500 == 0) store.Remove(std::vector<BlockKey>{MakeRecord(1 + rng() % 50).key});
  }
  while (served.load() < 100) std::this_thread::yield();  // the readers did overlap something
  stop.store(true);
  for (std::thread& t : readers) t.join();
  store.CheckInvariants();
  EXPECT_GT(served.load(), 0);
}

}  // namespace
}  // namespace prefixd
