// BackgroundWriter: a bounded queue of block writes and one thread that carries them out, so
// the engine thread never waits on a write nor copies KV bytes. Two uses:
//   - a slow tier's writer (disk, remote): complete records, written to the store in batches;
//   - the tier controller's copier: jobs whose records still have their KV in the pool (a
//     held block, BlockPool::Hold), handed whole and in order to a sink that copies the KV out
//     and stores it (host RAM) or passes it on (to the slow tiers' writers).
// When the queue is full, new writes are dropped and counted, never blocking the caller.
// Pool blocks a job named are handed back through TakeReleased once the sink is done with
// them (or at once when dropped): the caller, on the engine thread, ends their holds.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "kv/block_pool.h"
#include "kv/retention_mark.h"
#include "tier/tier_store.h"

namespace prefixd {

// One block to write. With `source` valid, record.kv lacks the KV (it holds only what a sink
// puts after it): the KV is in that pool block, which the caller holds until TakeReleased
// returns it.
struct PendingWrite {
  BlockRecord record;
  BlockId source;
  RetentionMark mark;  // the retention the record carries (host RAM)
  uint8_t tiers = 0;   // where the sink sends it (its own bits; opaque here)
};

class BackgroundWriter {
 public:
  // Gets each job whole, in queue order, on the writer thread; may change the writes.
  using Sink = std::function<void(std::vector<PendingWrite>& job)>;

  // A slow tier's writer: complete records, written to `store` (which must outlive the
  // writer) in batches. `max_pending`: writes queued at most.
  BackgroundWriter(TierStore* store, int max_pending);
  BackgroundWriter(Sink sink, int max_pending);
  ~BackgroundWriter();  // finishes the queued writes

  // Queues complete records (as one job), dropping (and counting) those beyond max_pending.
  void Enqueue(std::vector<BlockRecord> records);
  // Queues one job; writes beyond max_pending are dropped, their sources released at once.
  void Enqueue(std::vector<PendingWrite> job);
  // Appends the pool blocks whose jobs are done (or dropped) since the last call.
  void TakeReleased(std::vector<BlockId>* out);
  // Blocks until the queue is empty and no job is in flight.
  void Flush();
  // The queue is empty and no job is in flight (a snapshot).
  bool idle() const;

  int64_t queued() const { return queued_.load(std::memory_order_relaxed); }
  int64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  // Queued or being written right now: 0 once every queued record has reached the store (or
  // failed).
  int64_t pending() const { return pending_.load(std::memory_order_relaxed); }

 private:
  void Loop();

  Sink sink_;
  const int max_pending_;
  std::atomic<int64_t> queued_{0}, dropped_{0}, pending_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<std::vector<PendingWrite>> queue_;  // guarded by mu_
  int64_t queued_writes_ = 0;                    // guarded by mu_; writes in queue_
  int64_t in_flight_ = 0;                        // guarded by mu_; writes of the job in the sink
  bool busy_ = false;                            // guarded by mu_; a job is in the sink
  std::vector<BlockId> released_;                // guarded by mu_
  bool stop_ = false;                            // guarded by mu_
  std::thread thread_;
};

}  // namespace prefixd
