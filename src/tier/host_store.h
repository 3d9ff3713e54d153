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
// A record written with `generated` set (tokens a sequence generated that no prompt has sent
// back) is ranked least recent once its write has made room: the first to go next, as in the
// pool; a Read (a prompt sent it back) makes it most recent like any entry.
//
// Retention (ARCHITECTURE.md invariant 9): entries written or marked with a RetentionMark live
// in a second list, kept_, which the budget empties only once lru_ is empty: retained blocks
// go last, and never block a write. Marks end at their until_ms (ExpireRetention: the entry
// joins lru_ as its least recent), or oldest first when retained bytes pass max_share of the
// budget (the entry joins lru_ as its most recent). A retained record that leaves kept_ either
// way but the clock's (pushed out by the budget, or past the share) is handed back to the
// caller with its mark (`spilled`), to keep its retention a tier down instead of losing it. A
// Read refreshes the mark (RetentionMark::RefreshedAt).
//
//   lru_:   [most recent] e7 <-> e3 <-> ... <-> e1 [evicted first]
//   kept_:  [most recent] r2 <-> r5 <-> ... <-> r4 [evicted once lru_ is empty; capped first]
//
// Thread safety: all methods may be called from any thread; one mutex guards the list and the
// index and is held only for O(1) bookkeeping per key: the KV bytes are copied out by Read,
// and freed by eviction, outside it. Stats() reads atomics and never takes the mutex.
#pragma once

#include <climits>
#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/clock.h"
#include "base/mutex.h"
#include "kv/retention_mark.h"
#include "tier/retention_lists.h"
#include "tier/tier_store.h"

namespace prefixd {

class HostStore final : public TierStore {
 public:
  // budget_bytes <= 0 disables the store: every Write is refused (ResourceExhausted).
  // `clock` (nullptr: SteadyClock) times retention; `retention_max_share` (0..1) caps the
  // retained bytes as a share of the budget.
  explicit HostStore(int64_t budget_bytes, const Clock* clock = nullptr,
                     double retention_max_share = 0.5);

  // Write, with a retention mark per record (`marks` empty or one per record; an unmarked
  // mark keeps the record ordinary). A record already held takes the mark (merged). Retained
  // records the budget pushed out or the share demoted are appended to `spilled` (with their
  // marks) in that order, when it is given.
  struct Spilled {
    BlockRecord record;
    RetentionMark mark;
  };
  std::vector<Status> WriteRetained(std::vector<BlockRecord> records,
                                    std::span<const RetentionMark> marks,
                                    std::vector<Spilled>* spilled);
  // Merges `mark` into the entries of `keys` that the store holds; records the share then
  // demotes go to `spilled` (when given). Returns how many entries took the mark.
  int Retain(std::span<const BlockKey> keys, const RetentionMark& mark,
             std::vector<Spilled>* spilled = nullptr);
  // Ends the marks whose until_ms <= now_ms. Returns how many. Cheap while none is due.
  int ExpireRetention(int64_t now_ms);
  // No mark ends before this (INT64_MAX: none held): ExpireRetention(now) changes nothing
  // for an earlier `now`.
  int64_t next_retention_expiry_ms() const;
  // The mark of `key` (unmarked when absent or not retained). No recency update.
  RetentionMark MarkOf(const BlockKey& key) const;

  std::string_view name() const override { return "host"; }
  int CountPresentPrefix(std::span<const BlockKey> keys) const override;
  bool Contains(const BlockKey& key) const override;
  std::vector<StatusOr<BlockRecord>> Read(std::span<const BlockKey> keys) override;
  std::vector<Status> Write(std::vector<BlockRecord> records) override;
  int Remove(std::span<const BlockKey> keys) override;
  Status Clear() override;
  TierStats Stats() const override { return counters_.Snapshot(); }

  // Held keys, the order they would be evicted in reversed: kept_ most recent first, then
  // lru_ most recent first (tests, debugging). O(entries).
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
    RetentionMark mark;  // marked exactly when the entry is in kept_
  };
  using List = std::list<Entry>;

  // Under mu_: moves `it` to the front of the list its mark says, with that mark.
  // The retention lists' shared mechanics over this store's members (retention_lists.h).
  RetentionLists<List> Lists() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return {lru_, kept_, kept_bytes_, next_expiry_ms_};
  }
  void PlaceLocked(List::iterator it, const RetentionMark& mark, bool most_recent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Under mu_: ends the oldest marks while kept_bytes_ > the retained share of the budget;
  // a copy of each (with its mark) goes to `spilled`.
  void CapLocked(std::vector<Entry>& spilled) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Under mu_: evicts while over budget, lru_ first; retained victims go to `spilled`.
  // Returns the number of entries evicted.
  int EvictLocked(std::vector<Entry>& evicted, std::vector<Entry>& spilled,
                  ResidencyChanges& changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t budget_bytes_;
  const Clock* const clock_;
  const int64_t max_retained_bytes_;
  mutable Mutex mu_;
  List lru_ ABSL_GUARDED_BY(mu_);   // unmarked entries; front: most recently used
  List kept_ ABSL_GUARDED_BY(mu_);  // marked entries; front: most recently used or marked
  absl::flat_hash_map<BlockKey, List::iterator> index_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // sum of Entry::bytes over both lists, <= budget
  int64_t kept_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // of which in kept_
  // No mark ends before this (a lower bound: a refresh only pushes marks later).
  int64_t next_expiry_ms_ ABSL_GUARDED_BY(mu_) = INT64_MAX;
  TierCounters counters_;
};

}  // namespace prefixd
