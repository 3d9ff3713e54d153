// BackgroundWriter: a bounded queue of block records and one thread that writes them into a
// slow tier (disk, remote), so the engine thread never waits on a write. When the queue is
// full, new records are dropped and counted, never blocking the caller.
//
// Thread safety: Enqueue, Flush and the counters may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "tier/tier_store.h"

namespace prefixd {

class BackgroundWriter {
 public:
  // `store` must outlive the writer. `max_pending`: records queued at most.
  BackgroundWriter(TierStore* store, int max_pending);
  ~BackgroundWriter();  // finishes the queued writes

  // Queues the records, dropping (and counting) those beyond max_pending.
  void Enqueue(std::vector<BlockRecord> records);
  // Blocks until the queue is empty and no write is in flight.
  void Flush();

  int64_t queued() const { return queued_.load(std::memory_order_relaxed); }
  int64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  // Queued or being written right now: 0 once every queued record has reached the store (or
  // failed).
  int64_t pending() const { return pending_.load(std::memory_order_relaxed); }

 private:
  void Loop();

  TierStore* store_;
  const int max_pending_;
  std::atomic<int64_t> queued_{0}, dropped_{0}, pending_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<BlockRecord> queue_;  // guarded by mu_
  bool writing_ = false;           // guarded by mu_; a batch is being written
  int64_t in_flight_ = 0;          // guarded by mu_; records of the batch being written
  bool stop_ = false;              // guarded by mu_
  std::thread thread_;
};

}  // namespace prefixd
