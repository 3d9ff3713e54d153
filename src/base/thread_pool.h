// A fixed set of worker threads that run one parallel loop at a time.
//
// ParallelFor splits [0, n) into contiguous ranges, one per thread, and returns when all are
// done. Kernels split over output elements only, never over a reduction, so the thread count
// never changes a result (ARCHITECTURE.md invariant 1).
//
// A forward pass issues hundreds of loops, each a few microseconds long, so workers spin
// briefly for the next job before sleeping on a condition variable; waking a sleeping thread
// for every loop would cost more than the loop.
//
// Thread safety: ParallelFor may be called from one thread at a time (the engine thread).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace prefixd {

class ThreadPool {
 public:
  // num_threads counts the calling thread: 1 means no workers.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Runs fn(begin, end, thread_index) over a partition of [0, n). Blocks until done.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Like ParallelFor, but threads take `chunk` items at a time from a shared counter until
  // none are left: for loops whose items differ in cost (causal attention, where a later
  // token attends to more positions), which equal slices would leave one thread waiting on.
  void ParallelForDynamic(int64_t n, int64_t chunk,
                          const std::function<void(int64_t, int64_t, int)>& fn);

  // The number of hardware threads, at least 1.
  static int HardwareThreads();

 private:
  void WorkerLoop(int index);

  const int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_cv_;
  // The current job. Written by the caller before generation_ is bumped (release) and read
  // by workers after they see the bump (acquire).
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};  // workers still running the current job
  std::atomic<bool> stop_{false};
};

}  // namespace prefixd
