#include "tier/redis_store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "tier/redis_test_server.h"

namespace prefixd {
namespace {

using MonoClock = std::chrono::steady_clock;

constexpr BlockHashKind kKind = BlockHashKind::kXxh3;
constexpr int kBlockTokens = 4;
constexpr size_t kKvBytes = 256;

std::vector<uint8_t> Fingerprint(const std::string& architecture = "llama") {
  ModelFingerprint fp;
  fp.architecture = architecture;
  fp.block_size = kBlockTokens;
  fp.head_dim = 64;
  return fp.Serialize();
}

// `n` consecutive full blocks of one prompt: record i's parent is record i-1's key.
std::vector<BlockRecord> MakeChain(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<BlockRecord> chain;
  BlockKey parent = RootKey(kKind, Fingerprint(), absl::StrCat("salt", seed));
  for (int i = 0; i < n; ++i) {
    BlockRecord r;
    r.parent = parent;
    for (int t = 0; t < kBlockTokens; ++t) r.tokens.push_back(static_cast<int32_t>(rng() % 32000));
    r.kv.resize(kKvBytes);
    for (uint8_t& b : r.kv) b = static_cast<uint8_t>(rng());
    r.key = ChainKey(kKind, r.parent, r.tokens);
    parent = r.key;
    chain.push_back(std::move(r));
  }
  return chain;
}

std::vector<BlockKey> KeysOf(const std::vector<BlockRecord>& records) {
  std::vector<BlockKey> keys;
  for (const BlockRecord& r : records) keys.push_back(r.key);
  return keys;
}

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!redis_.Start()) GTEST_SKIP() << redis_.skip_reason();
  }

  std::unique_ptr<RedisStore> Open(const std::string& ns = "test", int io_timeout_ms = 300) {
    RedisStoreOptions o;
    o.url = *ParseRedisUrl(redis_.url());
    o.key_namespace = ns;
    o.ttl_seconds = 600;
    o.io_timeout_ms = io_timeout_ms;
    o.connect_timeout_ms = io_timeout_ms;
    o.max_backoff_ms = 200;  // tests wait out the backoff
    o.fingerprint = Fingerprint();
    o.chain_kind = kKind;
    StatusOr<std::unique_ptr<RedisStore>> s = RedisStore::Open(std::move(o));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Reads until a call reaches Redis again (the backoff is over), up to 3 s.
  static bool WaitUntilUp(RedisStore& store, const BlockKey& key) {
    const auto deadline = MonoClock::now() + std::chrono::seconds(3);
    while (MonoClock::now() < deadline) {
      if (store.LookupPrefix(std::span(&key, 1)).ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  RedisTestServer redis_;
};

TEST_F(RedisStoreTest, WriteThenReadLookupAndStats) {
  auto store = Open();
  const std::vector<BlockRecord> chain = MakeChain(5, 1);
  std::vector<BlockRecord> first(chain.begin(), chain.begin() + 3);
  for (const Status& s : store->Write(first)) EXPECT_TRUE(s.ok()) << s;

  const std::vector<BlockKey> keys = KeysOf(chain);
  StatusOr<int> n = store->LookupPrefix(keys);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 3);
  EXPECT_EQ(store->CountPresentPrefix(keys), 3);  // the "known" hint, no I/O
  EXPECT_FALSE(store->Contains(chain[3].key));

  // One MGET for all five: three hits, two misses.
  std::vector<StatusOr<BlockRecord>> r = store->Read(keys);
  ASSERT_EQ(r.size(), 5u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(r[i].ok()) << r[i].status();
    EXPECT_EQ(*r[i], chain[i]);
  }
  EXPECT_TRUE(absl::IsNotFound(r[3].status())) << r[3].status();
  EXPECT_TRUE(absl::IsNotFound(r[4].status()));

  // Same key again: not re-sent, not counted as a new write; the TTL is set.
  for (const Status& s : store->Write({chain[0]})) EXPECT_TRUE(s.ok()) << s;
  const TierStats st = store->Stats();
  EXPECT_EQ(st.writes, 3);
  EXPECT_EQ(st.hits, 3);
  EXPECT_EQ(st.misses, 2);
  EXPECT_EQ(st.quarantined, 0);
  const int ttl = std::stoi(redis_.Command({"TTL", store->KeyFor(chain[0].key)}));
  EXPECT_GT(ttl, 500);
  EXPECT_LE(ttl, 600);
  EXPECT_TRUE(store->Health().up);
}

TEST_F(RedisStoreTest, CorruptedOrReplacedValuesAreNeverServedAndAreDeleted) {
  auto store = Open();
  const std::vector<BlockRecord> chain = MakeChain(4, 2);
  for (const Status& s : store->Write(chain)) ASSERT_TRUE(s.ok()) << s;
  const std::string k0 = store->KeyFor(chain[0].key), k1 = store->KeyFor(chain[1].key),
                    k2 = store->KeyFor(chain[2].key), k3 = store->KeyFor(chain[3].key);
  // k0: one flipped KV byte. k1: block 2's valid value under block 1's key. k2: truncated.
  // k3: not a record at all.
  ASSERT_EQ(redis_.Command({"SETRANGE", k0, "200", "\x7f"}), std::to_string(80 + 16 + 256));
  ASSERT_EQ(redis_.Command({"COPY", k2, k1, "REPLACE"}), "1");
  ASSERT_EQ(redis_.Command({"SET", k2, "PFXDBLK"}), "OK");
  ASSERT_EQ(redis_.Command({"SET", k3, "hello"}), "OK");

  std::vector<StatusOr<BlockRecord>> r = store->Read(KeysOf(chain));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(absl::IsNotFound(r[i].status())) << i << r[i].status();
  EXPECT_EQ(store->Stats().quarantined, 4);
  EXPECT_EQ(store->Stats().hits, 0);
  for (const std::string& k : {k0, k1, k2, k3}) EXPECT_EQ(redis_.Command({"EXISTS", k}), "0") << k;
  EXPECT_TRUE(store->Health().up);  // damaged values are misses, not outages
}

TEST_F(RedisStoreTest, NamespacesAreIsolatedAndClearTouchesOnlyItsOwn) {
  auto a = Open("fleet-a");
  auto b = Open("fleet-b");
  const std::vector<BlockRecord> chain = MakeChain(3, 3);
  for (const Status& s : a->Write(chain)) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(*a->LookupPrefix(KeysOf(chain)), 3);
  EXPECT_EQ(*b->LookupPrefix(KeysOf(chain)), 0);
  for (const auto& r : b->Read(KeysOf(chain))) EXPECT_TRUE(absl::IsNotFound(r.status()));

  for (const Status& s : b->Write({chain[0]})) ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(redis_.Command({"SET", "unrelated:key", "v"}), "OK");
  ASSERT_TRUE(b->Clear().ok());
  EXPECT_EQ(*b->LookupPrefix(KeysOf(chain)), 0);
  EXPECT_EQ(*a->LookupPrefix(KeysOf(chain)), 3);  // the other namespace is untouched
  EXPECT_EQ(redis_.Command({"GET", "unrelated:key"}), "v");

  // A namespace with glob characters clears only itself, not what its pattern would match.
  auto star = Open("fleet-*");
  for (const Status& s : star->Write({chain[1]})) ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(star->Clear().ok());
  EXPECT_EQ(*a->LookupPrefix(KeysOf(chain)), 3);
  EXPECT_EQ(*star->LookupPrefix(std::span(&chain[1].key, 1)), 0);
  EXPECT_EQ(a->Remove(KeysOf(chain)), 3);
  EXPECT_EQ(*a->LookupPrefix(KeysOf(chain)), 0);
}

TEST_F(RedisStoreTest, OutageIsAMissThenHitsResumeAfterRestart) {
  auto store = Open();
  const std::vector<BlockRecord> chain = MakeChain(2, 4);
  for (const Status& s : store->Write(chain)) ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(store->Contains(chain[0].key));

  redis_.Kill();
  const auto t0 = MonoClock::now();
  std::vector<StatusOr<BlockRecord>> r = store->Read(KeysOf(chain));
  EXPECT_LT(MonoClock::now() - t0, std::chrono::seconds(2));
  for (const auto& x : r) EXPECT_FALSE(x.ok());
  EXPECT_FALSE(store->Health().up);
  EXPECT_EQ(store->Health().outages, 1);
  // During the backoff, calls fail at once without touching the socket.
  const auto t1 = MonoClock::now();
  for (const Status& s : store->Write(chain)) EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_LT(MonoClock::now() - t1, std::chrono::milliseconds(100));
  EXPECT_GE(store->Stats().write_failures, 2);
  EXPECT_FALSE(store->Contains(chain[0].key));  // Redis may come back empty: forget hints

  ASSERT_TRUE(redis_.Start()) << redis_.skip_reason();  // same port, empty
  ASSERT_TRUE(WaitUntilUp(*store, chain[0].key));
  EXPECT_TRUE(store->Health().up);
  EXPECT_EQ(store->Health().outages, 1);
  for (const auto& x : store->Read(KeysOf(chain))) EXPECT_TRUE(absl::IsNotFound(x.status()));
  for (const Status& s : store->Write(chain)) ASSERT_TRUE(s.ok()) << s;
  for (const auto& x : store->Read(KeysOf(chain))) EXPECT_TRUE(x.ok()) << x.status();
}

TEST_F(RedisStoreTest, PausedRedisTimesOutInsteadOfHanging) {
  auto store = Open("test", /*io_timeout_ms=*/200);
  const std::vector<BlockRecord> chain = MakeChain(2, 5);
  for (const Status& s : store->Write(chain)) ASSERT_TRUE(s.ok()) << s;

  redis_.Pause();  // SIGSTOP: the socket stays open, nothing answers
  const auto t0 = MonoClock::now();
  std::vector<StatusOr<BlockRecord>> r = store->Read(KeysOf(chain));
  const auto waited = MonoClock::now() - t0;
  for (const auto& x : r) EXPECT_TRUE(absl::IsUnavailable(x.status())) << x.status();
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  EXPECT_LT(waited, std::chrono::milliseconds(1500));
  EXPECT_GE(store->Health().timeouts, 1);
  redis_.Resume();
  ASSERT_TRUE(WaitUntilUp(*store, chain[0].key));
  for (const auto& x : store->Read(KeysOf(chain))) EXPECT_TRUE(x.ok()) << x.status();

  // DEBUG SLEEP from another client: the same timeout, then recovery.
  std::thread sleeper([&] { redis_.Command({"DEBUG", "SLEEP", "0.6"}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t1 = MonoClock::now();
  StatusOr<int> n = store->LookupPrefix(KeysOf(chain));
  EXPECT_LT(MonoClock::now() - t1, std::chrono::milliseconds(1500));
  EXPECT_FALSE(n.ok());
  sleeper.join();
  ASSERT_TRUE(WaitUntilUp(*store, chain[0].key));
}

TEST_F(RedisStoreTest, RejectsTlsAndBadOptionsWithClearErrors) {
  RedisStoreOptions o;
  o.url = *ParseRedisUrl("rediss://127.0.0.1:1");
  o.fingerprint = Fingerprint();
  StatusOr<std::unique_ptr<RedisStore>> s = RedisStore::Open(o);
  EXPECT_TRUE(absl::IsFailedPrecondition(s.status())) << s.status();
  EXPECT_NE(s.status().message().find("TLS"), std::string::npos);
  o.url = *ParseRedisUrl(redis_.url());
  o.key_namespace = "two words";
  EXPECT_TRUE(absl::IsInvalidArgument(RedisStore::Open(o).status()));
  o.key_namespace = "ok";
  o.ttl_seconds = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(RedisStore::Open(o).status()));
  // An unreachable Redis is not a start-up error: the store starts down.
  o.ttl_seconds = 60;
  o.url = *ParseRedisUrl("redis://127.0.0.1:1");
  s = RedisStore::Open(o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE((*s)->Health().up);
}

// Random writes, reads, removes and tampering against a map of what Redis should hold.
TEST_F(RedisStoreTest, RandomizedAgainstReferenceModel) {
  auto store = Open();
  const std::vector<BlockRecord> pool = MakeChain(24, 6);
  std::map<int, bool> model;  // index into pool -> held
  std::mt19937 rng(7);
  int64_t hits = 0, quarantined = 0;
  for (int op = 0; op < 300; ++op) {
    const int i = static_cast<int>(rng() % pool.size());
    const int len = 1 + static_cast<int>(rng() % 4);
    std::vector<BlockRecord> batch;
    std::vector<int> idx;
    for (int j = i; j < std::min<int>(i + len, pool.size()); ++j) {
      batch.push_back(pool[j]);
      idx.push_back(j);
    }
    switch (rng() % 4) {
      case 0:
        for (const Status& s : store->Write(batch)) ASSERT_TRUE(s.ok()) << s;
        for (int j : idx) model[j] = true;
        break;
      case 1: {
        auto r = store->Read(KeysOf(batch));
        for (size_t k = 0; k < idx.size(); ++k) {
          ASSERT_EQ(r[k].ok(), model[idx[k]]) << "op " << op << " block " << idx[k];
          if (r[k].ok()) {
            EXPECT_EQ(*r[k], pool[idx[k]]);
            ++hits;
          }
        }
        break;
      }
      case 2:
        store->Remove(KeysOf(batch));
        for (int j : idx) model[j] = false;
        break;
      case 3:
        if (model[i]) {
          redis_.Command({"SETRANGE", store->KeyFor(pool[i].key), "100", "\x01\x02"});
          auto r = store->Read(std::span(&pool[i].key, 1));
          ASSERT_FALSE(r[0].ok());
          ++quarantined;
          model[i] = false;
        }
        break;
    }
    int expect = 0;
    while (expect < static_cast<int>(pool.size()) && model[expect]) ++expect;
    ASSERT_EQ(*store->LookupPrefix(KeysOf(pool)), expect) << "op " << op;
  }
  EXPECT_EQ(store->Stats().hits, hits);
  EXPECT_EQ(store->Stats().quarantined, quarantined);
}

// A writer thread and a reader thread share the store (as the controller's writer and reader
// threads do): every record read is the one written, and every write lands.
TEST_F(RedisStoreTest, ConcurrentWritesAndReadsAreSafe) {
  auto store = Open();
  const std::vector<BlockRecord> chain = MakeChain(64, 8);
  std::thread writer([&] {
    for (size_t i = 0; i < chain.size(); i += 4) {
      std::vector<BlockRecord> batch(chain.begin() + i, chain.begin() + i + 4);
      for (const Status& s : store->Write(std::move(batch))) EXPECT_TRUE(s.ok()) << s;
    }
  });
  int64_t hits = 0;
  for (int round = 0; round < 20; ++round) {
    auto r = store->Read(KeysOf(chain));
    for (size_t i = 0; i < r.size(); ++i) {
      if (!r[i].ok()) continue;
      EXPECT_EQ(*r[i], chain[i]);
      ++hits;
    }
    (void)store->CountPresentPrefix(KeysOf(chain));
  }
  writer.join();
  EXPECT_EQ(*store->LookupPrefix(KeysOf(chain)), 64);
  EXPECT_EQ(store->Stats().writes, 64);
  EXPECT_EQ(store->Stats().hits, hits);
}

}  // namespace
}  // namespace prefixd
