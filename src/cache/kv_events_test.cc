// KV events end to end: a real publisher on loopback TCP, a subscriber (ZMQ SUB + DEALER for
// replay, as a router would run it) that rebuilds a per-tier index from the stream, and a
// prefix cache with host and disk tiers under a mixed workload (pool evictions offloaded to
// host RAM, host and disk LRU evictions, write-through, onboarding, clears). The index must
// equal what the cache's probe reports, prompt by prompt and tier by tier.
#include "cache/kv_event_publisher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "cache/prefix_cache.h"
#include "kv/block_table.h"

namespace prefixd {
namespace {

constexpr int kBs = 4;
constexpr auto kDeadline = std::chrono::seconds(10);

// KV bytes are not what this test is about: every block reads as zeros.
class ZeroBlockIo : public BlockIo {
 public:
  void ReadBlock(BlockId, std::span<uint8_t> out) const override {
    std::memset(out.data(), 0, out.size());
  }
  void WriteBlock(BlockId, std::span<const uint8_t>) override {}
  int64_t block_bytes() const override { return 64; }
};

// What a router keeps: the block hashes resident per medium.
struct Index {
  std::map<KvMedium, std::set<uint64_t>> blocks;
  void Apply(const KvEventBatch& batch) {
    for (const KvEvent& e : batch.events) {
      std::set<uint64_t>& s = blocks[e.medium];
      if (e.type == KvEvent::Type::kStored) s.insert(e.hashes.begin(), e.hashes.end());
      if (e.type == KvEvent::Type::kRemoved) {
        for (uint64_t h : e.hashes) s.erase(h);
      }
      if (e.type == KvEvent::Type::kCleared) s.clear();
    }
  }
  bool Has(KvMedium m, const BlockKey& k) const {
    auto it = blocks.find(m);
    return it != blocks.end() && it->second.count(EventHash(k)) > 0;
  }
};

// A subscriber: SUB on the stream, DEALER on the replay socket. Applies batches in sequence
// order; on a gap it asks the replay socket for everything from the first missing one.
class Subscriber {
 public:
  explicit Subscriber(const KvEventPublisher& pub) {
    sub_.set(zmq::sockopt::subscribe, "");
    sub_.connect(pub.endpoint());
    replay_.connect(pub.replay_endpoint());
    // Let the subscription reach the publisher (a gap would be caught up anyway).
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }

  // Receives until every batch below `end` is applied (or the deadline passes). Batches
  // whose sequence number `drop` says true for are ignored when they arrive live.
  bool CatchUp(int64_t end, const std::function<bool(int64_t)>& drop = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (next_ < end && std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t items[] = {{sub_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::milliseconds(100));
      if (!(items[0].revents & ZMQ_POLLIN)) {
        // Nothing new: the tail of the stream may be what was lost.
        if (next_ < end) Replay();
        continue;
      }
      std::vector<zmq::message_t> msg;
      EXPECT_TRUE(zmq::recv_multipart(sub_, std::back_inserter(msg)));
      EXPECT_EQ(msg.size(), 3u) << "[topic, seq, payload]";
      if (msg.size() != 3) return false;
      const int64_t seq = SeqOfFrame(msg[1].to_string_view());
      if (drop && drop(seq)) continue;
      if (seq < next_) continue;  // already had it from a replay
      if (seq > next_) {
        ++gaps_;
        Replay();
        if (seq < next_) continue;
      }
      if (seq == next_) Apply(seq, msg[2].to_string_view());
    }
    return next_ >= end;
  }

  const Index& index() const { return index_; }
  int gaps() const { return gaps_; }
  int replayed() const { return replayed_; }

 private:
  void Apply(int64_t seq, std::string_view payload) {
    auto batch = DecodeKvEventBatch(payload);
    ASSERT_TRUE(batch.ok()) << batch.status();
    index_.Apply(*batch);
    next_ = seq + 1;
  }
  // Asks for every batch from next_ on and applies them, until the end marker.
  void Replay() {
    replay_.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
    replay_.send(zmq::buffer(SeqFrame(next_)), zmq::send_flags::none);
    while (true) {
      zmq::pollitem_t items[] = {{replay_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, std::chrono::seconds(2));
      ASSERT_TRUE(items[0].revents & ZMQ_POLLIN) << "no answer from the replay socket";
      std::vector<zmq::message_t> msg;
      ASSERT_TRUE(zmq::recv_multipart(replay_, std::back_inserter(msg)));
      ASSERT_EQ(msg.size(), 3u) << "[\"\", seq, payload]";
      const int64_t seq = SeqOfFrame(msg[1].to_string_view());
      if (seq == -1) return;
      ASSERT_EQ(seq, next_) << "the ring lost batches";
      Apply(seq, msg[2].to_string_view());
      ++replayed_;
    }
  }

  zmq::context_t ctx_{1};
  zmq::socket_t sub_{ctx_, zmq::socket_type::sub};
  zmq::socket_t replay_{ctx_, zmq::socket_type::dealer};
  Index index_;
  int64_t next_ = 0;
  int gaps_ = 0;
  int replayed_ = 0;
};

// A cache with host and disk tiers small enough that the workload evicts from every tier.
struct TieredCache {
  explicit TieredCache(KvEventLog* log, const std::string& dir) {
    TierOptions to;
    to.host_bytes = 1200;  // a few records
    to.disk_dir = dir;
    to.disk_bytes = 2400;
    to.partial_max_entries = 0;
    to.scope = *ParseScopeSpec("full");
    auto tiers = TierController::Create(to, {7}, BlockHashKind::kXxh3, kBs, &io, &pool);
    EXPECT_TRUE(tiers.ok()) << tiers.status();
    PrefixCacheOptions o;
    o.fingerprint = {7};
    o.max_cached_blocks = 10;
    o.events = log;
    cache = std::make_unique<PrefixCache>(&pool, kBs, o, std::move(*tiers));
  }

  // One request as the engine runs it: admit (waiting for disk reads), compute the rest,
  // index it and write it through, release; then the step's events.
  void Run(const std::vector<int32_t>& prompt) {
    CacheTicket t(next_id++, "", static_cast<int64_t>(prompt.size()));
    while (cache->Admit(t, prompt) == Admission::kPending) cache->WaitForReads(10);
    BlockTable table;
    table.Adopt(t.hit().blocks);
    ASSERT_TRUE(table.PrepareWrite(pool, kBs, t.hit().num_tokens,
                                   static_cast<int64_t>(prompt.size())));
    cache->OnPromptComputed(t, prompt, table.blocks(), {}, std::nullopt);
    cache->Release(t);
    table.Release(pool);
    cache->FlushEvents();
  }

  ZeroBlockIo io;
  BlockPool pool{256};
  std::unique_ptr<PrefixCache> cache;
  int64_t next_id = 1;
};

std::vector<std::vector<int32_t>> Prompts(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::vector<int32_t>> systems = {
      {1, 2, 3, 4, 5, 6, 7, 8}, {9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7}, {5, 4, 3, 2}};
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> p = systems[rng() % systems.size()];
    const int extra = 3 + static_cast<int>(rng() % 14);
    for (int k = 0; k < extra; ++k) p.push_back(100 + static_cast<int32_t>(rng() % 5));
    out.push_back(std::move(p));
  }
  return out;
}

// For every prompt: the probe's pool, host and disk tokens equal what the index says.
void ExpectIndexMatchesProbe(const Index& index, PrefixCache& cache,
                             const std::vector<std::vector<int32_t>>& prompts) {
  for (const auto& p : prompts) {
    const std::vector<BlockKey> keys = cache.BlockKeys("", p);
    const TierProbe probe = cache.ProbeTiers("", p, cache.ProbeKeys("", p));
    size_t g = 0;
    while (g < keys.size() && index.Has(KvMedium::kPool, keys[g])) ++g;
    EXPECT_EQ(static_cast<size_t>(probe.pool_tokens / kBs), g) << "pool, prompt of " << p.size();
    int64_t host = 0, disk = 0;
    for (size_t i = probe.pool_tokens / kBs; i < keys.size(); ++i) {
      const int64_t n = static_cast<int64_t>(i + 1) * kBs -
                        std::max<int64_t>(static_cast<int64_t>(i) * kBs, probe.pool_tokens);
      if (index.Has(KvMedium::kHost, keys[i])) {
        host += n;
      } else if (index.Has(KvMedium::kDisk, keys[i])) {
        disk += n;
      } else {
        break;
      }
    }
    EXPECT_EQ(probe.host_tokens, host) << "host, prompt of " << p.size();
    EXPECT_EQ(probe.disk_tokens, disk) << "disk, prompt of " << p.size();
  }
}

std::string TempDir(const char* name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   (std::string("prefixd_kv_events.") + name + "." + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir.string();
}

KvEventPublisherOptions LoopbackOptions() {
  KvEventPublisherOptions o;
  o.endpoint = "tcp://127.0.0.1:*";  // any free port; the replay socket too
  o.block_size = kBs;
  return o;
}

TEST(KvEvents, BatchRoundTripsThroughMsgpackInVllmLayout) {
  KvEventBatch b;
  b.seq = 3;
  b.ts = 1.5;
  KvEvent s;
  s.hashes = {1, 2};
  s.parent = 9;
  s.token_ids = {1, 2, 3, 4, 5, 6, 7, 8};
  s.block_size = 4;
  s.medium = KvMedium::kHost;
  b.events.push_back(s);
  KvEvent r;
  r.type = KvEvent::Type::kRemoved;
  r.hashes = {2};
  r.medium = KvMedium::kDisk;
  b.events.push_back(r);
  KvEvent c;
  c.type = KvEvent::Type::kCleared;
  b.events.push_back(c);
  const std::string payload = EncodeKvEventBatch(b, 0);
  // [ts, [["BlockStored", [1, 2], 9, [1..8], 4, nil, "CPU", nil], ...], 0]
  EXPECT_EQ(static_cast<uint8_t>(payload[0]), 0x93) << "a 3-element array";
  EXPECT_NE(payload.find("BlockStored"), std::string::npos);
  auto back = DecodeKvEventBatch(payload);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ts, 1.5);
  ASSERT_EQ(back->events.size(), 3u);
  EXPECT_EQ(back->events[0].hashes, s.hashes);
  EXPECT_EQ(back->events[0].parent, 9u);
  EXPECT_EQ(back->events[0].token_ids, s.token_ids);
  EXPECT_EQ(back->events[0].medium, KvMedium::kHost);
  EXPECT_EQ(back->events[1].type, KvEvent::Type::kRemoved);
  EXPECT_EQ(back->events[1].medium, KvMedium::kDisk);
  EXPECT_EQ(back->events[2].type, KvEvent::Type::kCleared);
  EXPECT_EQ(SeqOfFrame(SeqFrame(258)), 258);
  EXPECT_EQ(SeqFrame(1), std::string("\0\0\0\0\0\0\0\1", 8));
}

// A publisher on loopback, a subscriber on it, and a tiered cache logging to it.
class KvEventStream : public ::testing::Test {
 protected:
  void SetUp() override {
    auto created = KvEventPublisher::Create(LoopbackOptions());
    ASSERT_TRUE(created.ok()) << created.status();
    pub = std::move(*created);
    sub = std::make_unique<Subscriber>(*pub);
    dir = TempDir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    tc = std::make_unique<TieredCache>(pub->log(), dir);
  }
  void TearDown() override {
    tc.reset();  // before the publisher, whose log it writes to
    std::filesystem::remove_all(dir);
  }
  // Waits for the disk writes and closes the last batch; returns the number of batches.
  int64_t Settle() {
    tc->cache->FlushDiskWrites();
    tc->cache->FlushEvents();
    return pub->log()->num_batches();
  }

  std::unique_ptr<KvEventPublisher> pub;
  std::unique_ptr<Subscriber> sub;
  std::string dir;
  std::unique_ptr<TieredCache> tc;
};

TEST_F(KvEventStream, SubscriberIndexEqualsTheCacheAfterAMixedWorkload) {
  const auto prompts = Prompts(40, 17);
  for (int i = 0; i < 15; ++i) tc->Run(prompts[i]);
  ASSERT_TRUE(tc->cache->ClearTier("host").ok());
  for (int i = 15; i < 30; ++i) tc->Run(prompts[i]);
  ASSERT_TRUE(tc->cache->ClearTier("pool").ok());
  for (int i = 0; i < 40; ++i) tc->Run(prompts[i]);  // hits from host and disk
  const int64_t end = Settle();
  const TierControllerStats ts = tc->cache->tier_stats();
  EXPECT_GT(tc->cache->stats().evicted_blocks, 0);
  EXPECT_GT(ts.host.evictions, 0) << "the workload should overflow host RAM";
  EXPECT_GT(ts.disk.evictions, 0) << "... and the disk";
  EXPECT_GT(ts.onboarded_blocks, 0);

  ASSERT_TRUE(sub->CatchUp(end));
  ExpectIndexMatchesProbe(sub->index(), *tc->cache, prompts);
  auto count = [&](KvMedium m) {
    auto it = sub->index().blocks.find(m);
    return it == sub->index().blocks.end() ? 0 : static_cast<int64_t>(it->second.size());
  };
  EXPECT_EQ(count(KvMedium::kHost), ts.host.entries);
  EXPECT_EQ(count(KvMedium::kDisk), ts.disk.entries);
  EXPECT_EQ(pub->stats().dropped, 0);
}

TEST_F(KvEventStream, SubscriberThatMissesBatchesCatchesUpThroughReplay) {
  const auto prompts = Prompts(24, 5);
  for (const auto& p : prompts) tc->Run(p);
  const int64_t end = Settle();
  ASSERT_GT(end, 10);
  // Lose every third batch, and the last ones, as a slow or flapping subscriber would.
  ASSERT_TRUE(sub->CatchUp(end, [&](int64_t seq) { return seq % 3 == 1 || seq >= end - 2; }));
  EXPECT_GT(sub->gaps(), 0) << "the gaps are seen from the sequence numbers";
  EXPECT_GT(sub->replayed(), 0);
  EXPECT_GT(pub->stats().replay_requests, 0);
  ExpectIndexMatchesProbe(sub->index(), *tc->cache, prompts);
}

// A restart: a new cache over the same disk folder announces, on a fresh stream, every block
// its start-up scan found, so a new subscriber's index equals the probe before any request.
TEST_F(KvEventStream, TheBlocksTheDiskScanFindsAreAnnouncedAsStored) {
  const auto prompts = Prompts(20, 3);
  for (const auto& p : prompts) tc->Run(p);
  Settle();
  const int64_t on_disk = tc->cache->tier_stats().disk.entries;
  ASSERT_GT(on_disk, 0);
  tc.reset();
  auto created = KvEventPublisher::Create(LoopbackOptions());
  ASSERT_TRUE(created.ok()) << created.status();
  std::unique_ptr<KvEventPublisher> pub2 = std::move(*created);
  Subscriber sub2(*pub2);
  tc = std::make_unique<TieredCache>(pub2->log(), dir);
  tc->cache->FlushEvents();
  ASSERT_TRUE(sub2.CatchUp(pub2->log()->num_batches()));
  auto it = sub2.index().blocks.find(KvMedium::kDisk);
  ASSERT_NE(it, sub2.index().blocks.end());
  EXPECT_EQ(static_cast<int64_t>(it->second.size()), on_disk);
  EXPECT_EQ(tc->cache->tier_stats().disk.entries, on_disk);
  ExpectIndexMatchesProbe(sub2.index(), *tc->cache, prompts);
  tc.reset();  // before pub2, whose log it writes to
}

// A disk block that fails verification when read is quarantined: a router must learn that
// the disk no longer holds it (BlockRemoved, DISK), or it would route to a miss.
TEST_F(KvEventStream, QuarantinedDiskBlocksAreAnnouncedAsRemoved) {
  const auto prompts = Prompts(20, 9);
  for (const auto& p : prompts) tc->Run(p);
  ASSERT_TRUE(tc->cache->ClearTier("pool").ok());
  ASSERT_TRUE(tc->cache->ClearTier("host").ok());
  Settle();
  // Damage every block file: each prompt's read-ahead fails at its first disk block.
  int damaged = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().string().find("quarantine") != std::string::npos) continue;
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    const auto mid = static_cast<std::streamoff>(e.file_size() / 2);
    char c = 0;
    f.seekg(mid);
    f.read(&c, 1);
    c ^= 0x5a;
    f.seekp(mid);
    f.write(&c, 1);
    ++damaged;
  }
  ASSERT_GT(damaged, 0);
  // Admit only (the reads ahead run, nothing is computed or written again), then release.
  for (const auto& p : prompts) {
    CacheTicket t(tc->next_id++, "", static_cast<int64_t>(p.size()));
    while (tc->cache->Admit(t, p) == Admission::kPending) tc->cache->WaitForReads(10);
    BlockTable table;
    table.Adopt(t.hit().blocks);
    tc->cache->Release(t);
    table.Release(tc->pool);
  }
  const int64_t end = Settle();
  const TierControllerStats ts = tc->cache->tier_stats();
  ASSERT_GT(ts.disk.quarantined, 0);
  ASSERT_TRUE(sub->CatchUp(end));
  auto it = sub->index().blocks.find(KvMedium::kDisk);
  ASSERT_NE(it, sub->index().blocks.end());
  EXPECT_EQ(static_cast<int64_t>(it->second.size()), ts.disk.entries)
      << ts.disk.quarantined << " quarantined blocks";
  ExpectIndexMatchesProbe(sub->index(), *tc->cache, prompts);
}

TEST(KvEvents, FullQueueDropsTheOldestAndNeverBlocks) {
  KvEventPublisherOptions o = LoopbackOptions();
  o.max_queue = 2;
  o.idle_flush_ms = 1000000;
  auto pub = KvEventPublisher::Create(o);
  ASSERT_TRUE(pub.ok()) << pub.status();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10000; ++i) {
    (*pub)->log()->Cleared(KvMedium::kHost);
    (*pub)->log()->Flush();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_EQ((*pub)->log()->num_batches(), 10000);
  // Whatever the publisher's thread did not take in time was dropped, never waited for.
  const KvEventPublisherStats s = (*pub)->stats();
  EXPECT_LE(s.published + s.dropped, 10000);
}

TEST(KvEvents, EndpointsInUseOrWithoutAReplayPortAreRefused) {
  auto first = KvEventPublisher::Create(LoopbackOptions());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_NE((*first)->endpoint(), (*first)->replay_endpoint());
  KvEventPublisherOptions o;
  o.endpoint = (*first)->endpoint();  // in use
  auto again = KvEventPublisher::Create(o);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("cannot bind"), std::string::npos) << again.status();
  o.endpoint = "ipc:///tmp/prefixd-kv-events-test";
  EXPECT_FALSE(KvEventPublisher::Create(o).ok()) << "no port, no --kv-events-replay";
}

}  // namespace
}  // namespace prefixd
