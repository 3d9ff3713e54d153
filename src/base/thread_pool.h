// A fixed set of worker threads that run one parallel loop at a time.
//
// ParallelFor splits [0, n) into contiguous chunks that the threads claim from a shared
// counter, and returns when every chunk is done. Kernels split over output elements only,
// never over a reduction, so neither the thread count nor which thread ran a chunk changes a
// result (ARCHITECTURE.md invariant 1).
//
// A forward pass issues hundreds of loops, each a few microseconds long, so workers spin
// briefly for the next job before sleeping on a condition variable; waking a sleeping thread
// for every loop would cost more than the loop.
//
// The caller never waits for a worker that has not started: on a machine whose cores are
// shared (another process, a build, a second server), a worker may be off its core for a
// scheduler tick, and a loop that waited for every worker to check in would run at the speed
// of that tick, hundreds of times per token. Here the threads that are running take the
// chunks; a late worker finds none left and goes back to waiting. Only a chunk already claimed
// is waited for.
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

  // Runs fn(begin, end, thread_index) over a partition of [0, n) into a few contiguous
  // chunks per thread (how many calls, and which thread makes each, varies from run to run).
  // thread_index is in [0, num_threads()) and names the thread making the call (0: the
  // caller), e.g. to pick its scratch. Blocks until done.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Like ParallelFor with chunks of `chunk` items: for loops whose items differ in cost
  // (causal attention, where a later token attends to more positions) or are few and large.
  void ParallelForDynamic(int64_t n, int64_t chunk,
                          const std::function<void(int64_t, int64_t, int)>& fn);

  // The number of hardware threads, at least 1.
  static int HardwareThreads();

 private:
  void WorkerLoop(int index);
  // Claims and runs chunks of the current job until none are left.
  void RunChunks(int thread_index);

  const int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_cv_;
  // The current job. Written by the caller only while no worker is active_, before ticket_
  // opens it; read by a worker only while it is active_ and ticket_ is open.
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunk_ = 1;
  int64_t job_num_chunks_ = 0;
  uint32_t job_number_ = 0;  // the caller's only
  // The next chunk to claim in its low 32 bits, the job's number in the high 32; kClosed
  // between jobs. Claims are compare-and-swaps, so a claim made for a job that has ended fails.
  std::atomic<uint64_t> ticket_;
  std::atomic<int64_t> done_{0};         // chunks of the current job finished
  std::atomic<int> active_{0};           // workers between their check-in and check-out
  std::atomic<uint64_t> generation_{0};  // bumped for each job: wakes the workers
  std::atomic<bool> stop_{false};
};

}  // namespace prefixd
