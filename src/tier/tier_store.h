// TierStore: the interface of a lower cache tier (host RAM, disk, remote): a store of full KV
// blocks (BlockRecord) by block key, batch-first, with a byte budget. A tier knows nothing of
// trees, requests or other tiers; the tier controller in cache/ decides what goes where.
//
//   lookup of a prompt's block keys k0 k1 k2 k3 k4 (the pool already holds k0, k1):
//     CountPresentPrefix({k2, k3, k4}) = 2   -> this tier holds k2 and k3, not k4
//     Read({k2, k3})                         -> the two records (or NotFound for a block lost
//                                               in between: the prefix ends there)
//
// Misses are normal: a key the tier does not hold (or no longer holds, or held in a damaged
// form that the tier discarded) reads as NotFound and is not logged as an error.
//
// Observing is free (ARCHITECTURE.md invariant 5): Contains, CountPresentPrefix and Stats
// change nothing, not even recency; only Read (a use) and Write refresh recency.
//
// Thread safety: every method may be called from any thread; implementations say what they
// serialize. Stats() never waits for a lock that I/O may hold.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "kv/block_key.h"
#include "tier/block_record.h"

namespace prefixd {

// A snapshot of a tier's counters. Counters are monotonic since the store was created;
// entries, bytes and budget_bytes are gauges.
struct TierStats {
  int64_t entries = 0;  // blocks held
  int64_t bytes = 0;    // bytes charged against the budget (serialized record size)
  int64_t budget_bytes = 0;
  int64_t hits = 0;            // keys Read and returned
  int64_t misses = 0;          // keys Read and not returned (NotFound, incl. quarantined)
  int64_t writes = 0;          // records stored by Write
  int64_t evictions = 0;       // records dropped to stay under the budget
  int64_t quarantined = 0;     // records that failed verification and were set aside
  int64_t write_failures = 0;  // records Write could not store because of an error
  // Retention (tiers that rank it; 0 elsewhere). Gauges: entries and bytes that carry a live
  // retention mark. Counters: marks that ended on the clock (expired) or because the tier's
  // retained share was full (capped, oldest first), and retained entries the budget pushed
  // out that were handed down a tier instead of dropped (spilled).
  int64_t retained_entries = 0;
  int64_t retained_bytes = 0;
  int64_t retention_expired = 0;
  int64_t retention_capped = 0;
  int64_t retention_spilled = 0;
};

// The atomics behind TierStats, for implementations. Relaxed: each value is exact, a
// snapshot across fields is not (a Write may land between two loads).
struct TierCounters {
  std::atomic<int64_t> entries{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<int64_t> budget_bytes{0};
  std::atomic<int64_t> hits{0};
  std::atomic<int64_t> misses{0};
  std::atomic<int64_t> writes{0};
  std::atomic<int64_t> evictions{0};
  std::atomic<int64_t> quarantined{0};
  std::atomic<int64_t> write_failures{0};
  std::atomic<int64_t> retained_entries{0};
  std::atomic<int64_t> retained_bytes{0};
  std::atomic<int64_t> retention_expired{0};
  std::atomic<int64_t> retention_capped{0};
  std::atomic<int64_t> retention_spilled{0};

  TierStats Snapshot() const {
    constexpr auto r = std::memory_order_relaxed;
    return TierStats{entries.load(r),          bytes.load(r),            budget_bytes.load(r),
                     hits.load(r),             misses.load(r),           writes.load(r),
                     evictions.load(r),        quarantined.load(r),      write_failures.load(r),
                     retained_entries.load(r), retained_bytes.load(r),   retention_expired.load(r),
                     retention_capped.load(r), retention_spilled.load(r)};
  }
};

// Told what a store's residency became, for KV events (cache/kv_events.h): the records Write
// indexed and the keys it dropped to stay under the budget (LRU), on the thread that wrote,
// and the keys a Read dropped (a disk file that failed verification and was quarantined, or
// vanished), on the thread that read; always outside the store's lock. Not told of Remove or
// Clear (their callers know what they dropped). Must not call back into the store.
class ResidencyObserver {
 public:
  virtual ~ResidencyObserver() = default;
  virtual void OnStored(std::span<const BlockRecord* const> records) = 0;
  virtual void OnEvicted(std::span<const BlockKey> keys) = 0;
};

// What one Write changed, in order: runs of stored records, each followed by the keys evicted
// after them (a key may be stored, evicted and stored again within one batch).
class ResidencyChanges {
 public:
  void Stored(const BlockRecord* record) {
    if (runs_.empty() || !runs_.back().evicted.empty()) runs_.emplace_back();
    runs_.back().stored.push_back(record);
  }
  void Evicted(const BlockKey& key) {
    if (runs_.empty()) runs_.emplace_back();
    runs_.back().evicted.push_back(key);
  }
  void Notify(ResidencyObserver& observer) const {
    for (const Run& run : runs_) {
      if (!run.stored.empty()) observer.OnStored(run.stored);
      if (!run.evicted.empty()) observer.OnEvicted(run.evicted);
    }
  }

 private:
  struct Run {
    std::vector<const BlockRecord*> stored;
    std::vector<BlockKey> evicted;
  };
  std::vector<Run> runs_;
};

class TierStore {
 public:
  virtual ~TierStore() = default;

  // "host", "disk", ...: for logs and stats.
  virtual std::string_view name() const = 0;

  // Number of leading keys, from keys[0], that this tier holds: the first absent key ends the
  // count. No I/O, no recency update.
  virtual int CountPresentPrefix(std::span<const BlockKey> keys) const = 0;

  // Whether the tier holds `key`. No I/O, no recency update.
  virtual bool Contains(const BlockKey& key) const = 0;

  // One result per key, in order: the record, or NotFound (a miss, normal), or another error
  // (the tier could not be read; also a miss for the caller). A record returned is verified
  // (tiers below RAM check format, model, key and checksum). Each hit refreshes its recency.
  virtual std::vector<StatusOr<BlockRecord>> Read(std::span<const BlockKey> keys) = 0;

  // Stores the records (taking them: pass std::move, or a copy), one Status per record, in
  // order. A key already held is kept and refreshed, not rewritten (content addressing: same
  // key, same bytes). Older entries are evicted to stay under the budget; a record larger
  // than the whole budget is refused with ResourceExhausted. Other errors (I/O) are counted
  // in write_failures.
  virtual std::vector<Status> Write(std::vector<BlockRecord> records) = 0;

  // Drops the keys the tier holds; absent keys are ignored. Returns how many were dropped.
  virtual int Remove(std::span<const BlockKey> keys) = 0;

  // Drops everything this tier holds for this model. Errors (I/O) are reported, and what
  // could not be deleted is no longer indexed either.
  virtual Status Clear() = 0;

  // Never blocks on I/O or on the store's lock.
  virtual TierStats Stats() const = 0;

  // Set before the store is shared between threads; must outlive the store. nullptr: none.
  void SetResidencyObserver(ResidencyObserver* observer) { observer_ = observer; }

 protected:
  bool observed() const { return observer_ != nullptr; }
  // What Write stored and evicted, for the observer (no-op without one).
  void NotifyResidency(const ResidencyChanges& changes) const {
    if (observer_ != nullptr) changes.Notify(*observer_);
  }

 private:
  ResidencyObserver* observer_ = nullptr;
};

}  // namespace prefixd
