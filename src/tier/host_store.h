// HostStore: the L2 tier, full KV blocks in host RAM by key, least-recently-used first out
// under a byte budget (--host-cache-bytes). What falls out is dropped (ARCHITECTURE.md: L3
// already holds what the scope policy keeps).
//
//   lru_:   [most recent] e7 <-> e3 <-> e9 <-> ... <-> e1 [least recent: evicted first]
//   index_: key -> position in lru_            every operation O(1) (plus the batch size)
//
// Records are trusted (they never left this process), so Read does not verify them. Each
// entry is charged SerializedSize(record) bytes, the same as on disk.
//
// Thread safety: all methods may be called from any thread; one mutex guards the list and the
// index and is held only for O(1) bookkeeping per key: the KV bytes are copied out by Read,
// and freed by eviction, outside it. Stats() reads atomics and never takes the mutex.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/mutex.h"
#include "tier/tier_store.h"

namespace prefixd {

class HostStore final : public TierStore {
 public:
  // budget_bytes <= 0 disables the store: every Write is refused (ResourceExhausted).
  explicit HostStore(int64_t budget_bytes);

  std::string_view name() const override { return "host"; }
  int CountPresentPrefix(std::span<const BlockKey> keys) const override;
  bool Contains(const BlockKey& key) const override;
  std::vector<StatusOr<BlockRecord>> Read(std::span<const BlockKey> keys) override;
  std::vector<Status> Write(std::vector<BlockRecord> records) override;
  int Remove(std::span<const BlockKey> keys) override;
  Status Clear() override;
  TierStats Stats() const override { return counters_.Snapshot(); }

  // Held keys, most recently used first (tests, debugging). O(entries).
  std::vector<BlockKey> KeysByRecency() const;

  // Stops the process if the list, the index, the byte count, the budget and the counters
  // disagree. O(entries).
  void CheckInvariants() const;

 private:
  struct Entry {
    BlockKey key;
    int64_t bytes = 0;  // SerializedSize(*record)
    // Shared so that Read can copy the bytes after releasing the mutex while an eviction
    // drops the entry; never mutated after Write.
    std::shared_ptr<const BlockRecord> record;
  };
  using List = std::list<Entry>;

  const int64_t budget_bytes_;
  mutable Mutex mu_;
  List lru_ ABSL_GUARDED_BY(mu_);  // front: most recently used
  absl::flat_hash_map<BlockKey, List::iterator> index_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // sum of Entry::bytes over lru_, <= budget_bytes_
  TierCounters counters_;
};

}  // namespace prefixd
