// KV events: what became resident or stopped being resident, per tier, for a router in front
// of several replicas (ARCHITECTURE.md, "Surfaces"; the layout of vLLM's KVEventBatch). This
// is the mechanism; the transport (ZMQ + msgpack) is KvEventPublisher
// (kv_event_publisher.h), which owns a log and is the sink its batches go to.
//
//   PrefixCache::ApplyEviction / Insert / onboarding    Stored, Removed   medium "GPU" (pool)
//   PrefixCache::ClearTier                              Cleared           its tier's medium
//   host store (Offload's writes, its LRU eviction)     Stored, Removed   "CPU"
//   disk store (write-through, its LRU eviction)        Stored, Removed   "DISK"
//   disk store's start-up scan (TierController::SetEventLog)  Stored      "DISK"
//   remote store (write-through: written or refreshed)  Stored            "REMOTE"
//   PrefixCache::ClearRemote                            Cleared           "REMOTE"
//   (Redis drops keys itself, by TTL or maxmemory, unseen: no Removed for "REMOTE". Partial
//   tails are not announced: they have no chain key a router could match, only a parent key
//   and a few tokens, and there are at most --mru-partial-max-entries of them.)
//            |  KvEventLog::Stored/Removed/Cleared (any thread; appended under a mutex)
//            v
//   KvEventLog::Flush (the engine thread once per step; the publisher's thread when idle)
//            |  one KvEventBatch: seq (0, 1, 2, ... per log), ts (seconds since the epoch)
//            v
//   KvEventSink::Publish (must not block)
//
// Keys go out as uint64: the high 64 bits of the 128-bit chain key (BlockKey::hi, the first
// 16 hex digits of its file name). A stored event's parent is the key of the block before
// the first one it lists: for a prompt's first block, h_0 (the root of the model and salt).
//
// Thread safety: KvEventLog's methods may be called from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "kv/block_key.h"
#include "tier/tier_store.h"

namespace prefixd {

// Where a block is resident. The strings are vLLM's where it has one ("GPU", "CPU").
enum class KvMedium { kPool, kHost, kDisk, kRemote };
std::string_view MediumName(KvMedium medium);  // "GPU", "CPU", "DISK", "REMOTE"

// The 64-bit form of a key in events (BlockKey::hi).
inline uint64_t EventHash(const BlockKey& key) { return key.hi; }

struct KvEvent {
  enum class Type { kStored, kRemoved, kCleared };
  Type type = Type::kStored;
  KvMedium medium = KvMedium::kPool;
  // kStored, kRemoved: the blocks. kStored: a chain, each block's parent the one before it.
  std::vector<uint64_t> hashes;
  uint64_t parent = 0;             // kStored: the key of the block before hashes[0]
  std::vector<int32_t> token_ids;  // kStored: block_size tokens per hash, in order
  int32_t block_size = 0;          // kStored
};

struct KvEventBatch {
  int64_t seq = 0;  // 0, 1, 2, ...: a gap means batches were lost
  double ts = 0;    // seconds since the Unix epoch when the batch was closed
  std::vector<KvEvent> events;
};

class KvEventSink {
 public:
  virtual ~KvEventSink() = default;
  // Takes one batch; must return at once (never block the engine thread). Batches arrive in
  // sequence order.
  virtual void Publish(KvEventBatch batch) = 0;
};

class KvEventLog {
 public:
  KvEventLog(KvEventSink* sink, int block_size);
  KvEventLog(const KvEventLog&) = delete;
  KvEventLog& operator=(const KvEventLog&) = delete;

  // Blocks [first, first + n) of a chain became resident: `keys` are theirs, `parent` the key
  // before keys[0], `tokens` their n * block_size tokens.
  void Stored(KvMedium medium, std::span<const BlockKey> keys, const BlockKey& parent,
              std::span<const int32_t> tokens);
  void Removed(KvMedium medium, std::span<const BlockKey> keys);
  void Cleared(KvMedium medium);

  // Closes the pending events as one batch (the next sequence number, the time) and hands it
  // to the sink. Nothing pending: nothing.
  void Flush();

  int block_size() const { return block_size_; }
  // Batches flushed so far (the next sequence number).
  int64_t num_batches() const;

 private:
  void Append(KvEvent event);

  KvEventSink* sink_;
  const int block_size_;
  mutable std::mutex mu_;
  std::vector<KvEvent> pending_;  // guarded by mu_
  int64_t next_seq_ = 0;          // guarded by mu_
};

// A tier store's residency changes into a log, under one medium (TierStore::
// SetResidencyObserver). Stored records are grouped into chains (consecutive records whose
// parent is the record before).
class TierEventObserver final : public ResidencyObserver {
 public:
  TierEventObserver(KvEventLog* log, KvMedium medium) : log_(log), medium_(medium) {}
  void OnStored(std::span<const BlockRecord* const> records) override;
  void OnEvicted(std::span<const BlockKey> keys) override { log_->Removed(medium_, keys); }

 private:
  KvEventLog* log_;
  KvMedium medium_;
};

}  // namespace prefixd
