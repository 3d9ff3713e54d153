// Clock: the time the prefix cache's retention runs on (ARCHITECTURE.md invariant 9: marks
// expire when their time is up). Injectable, so that tests move time forward by hand instead
// of sleeping (STYLE.md, Tests: a fake clock).
//
//   SteadyClock   the process's monotonic clock, in milliseconds (the server's)
//   WallClock     Unix time in milliseconds (time across restarts: the disk's retention file)
//   ManualClock   starts at 0 (or a given time) and moves only when told (tests, replay)
//   LatchedClock  another clock's time as of its last Latch() (the server with a request log:
//                 every read in one engine loop iteration sees the same time, which the log
//                 records once, so a replay can give the cache exactly the times it saw)
//
// Thread safety: NowMs() may be called from any thread; ManualClock::Advance/Set too (the
// time is an atomic), but a test normally moves it between engine steps.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace prefixd {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since an arbitrary epoch; never goes backwards.
  virtual int64_t NowMs() const = 0;
};

class SteadyClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // One process-wide instance: stateless, so sharing it is free.
  static const Clock* Get() {
    static const SteadyClock clock;
    return &clock;
  }
};

// Unix time in milliseconds (the system clock: it may be set back or forward). Only for time
// that passes while no process runs, e.g. a retention mark kept across a restart.
class WallClock final : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static const Clock* Get() {
    static const WallClock clock;
    return &clock;
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 0) : now_ms_(start_ms) {}
  int64_t NowMs() const override { return now_ms_.load(std::memory_order_relaxed); }
  // Moves time forward by `ms` (>= 0).
  void Advance(int64_t ms) { now_ms_.fetch_add(ms < 0 ? 0 : ms, std::memory_order_relaxed); }
  // Sets the time (the replay: the time the server's log recorded). Never earlier than now.
  void Set(int64_t ms) {
    int64_t now = now_ms_.load(std::memory_order_relaxed);
    while (ms > now && !now_ms_.compare_exchange_weak(now, ms, std::memory_order_relaxed)) {
    }
  }

 private:
  std::atomic<int64_t> now_ms_;
};

// Reads `source` only in Latch(); NowMs() returns the time latched last. `source` must outlive
// it. Latch() is called by one thread (the engine's), NowMs() by any.
class LatchedClock final : public Clock {
 public:
  explicit LatchedClock(const Clock* source) : source_(source), now_ms_(source->NowMs()) {}
  int64_t NowMs() const override { return now_ms_.load(std::memory_order_relaxed); }
  // Reads the source and returns the new time.
  int64_t Latch() {
    const int64_t now = std::max(source_->NowMs(), now_ms_.load(std::memory_order_relaxed));
    now_ms_.store(now, std::memory_order_relaxed);
    return now;
  }

 private:
  const Clock* source_;
  std::atomic<int64_t> now_ms_;
};

}  // namespace prefixd
