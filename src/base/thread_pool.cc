#include "base/thread_pool.h"

#include <immintrin.h>

#include <algorithm>

#include "base/check.h"

namespace prefixd {

namespace {
// Spin iterations before a worker sleeps: long enough to bridge the gap between two loops of
// one forward pass, short enough not to burn a core while the server is idle.
constexpr int kSpinIterations = 2000;
// ParallelFor's chunks per thread: enough for the threads that are running to take over the
// share of one that is not, few enough that claiming them costs nothing.
constexpr int64_t kChunksPerThread = 4;
constexpr uint64_t kClosed = ~uint64_t{0};

// A short pause, then yield: when the machine has fewer free cores than threads, the thread
// we wait for may need this core.
void Pause(int spin) {
  if (spin < 64) {
    _mm_pause();
  } else {
    std::this_thread::yield();
  }
}
}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)), ticket_(kClosed) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

int ThreadPool::HardwareThreads() {
  return std::max(1u, std::thread::hardware_concurrency());
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  const int64_t chunks = std::min<int64_t>(n, int64_t{num_threads_} * kChunksPerThread);
  ParallelForDynamic(n, (n + chunks - 1) / chunks, fn);
}

void ThreadPool::ParallelForDynamic(int64_t n, int64_t chunk,
                                    const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  const int64_t num_chunks = (n + chunk - 1) / chunk;
  if (num_threads_ == 1 || num_chunks == 1) {
    for (int64_t b = 0; b < n; b += chunk) fn(b, std::min(n, b + chunk), 0);
    return;
  }
  PREFIXD_CHECK(num_chunks < (int64_t{1} << 32), "ThreadPool: too many chunks in one loop");
  // A worker that checked in for the last job may still be reading its description: wait
  // for it to check out before writing this one (a window of a few instructions).
  for (int spin = 0; active_.load() != 0; ++spin) Pause(spin);
  job_ = &fn;
  job_n_ = n;
  job_chunk_ = chunk;
  job_num_chunks_ = num_chunks;
  done_.store(0, std::memory_order_relaxed);
  job_number_ = (job_number_ + 1) & 0x7fffffff;
  ticket_.store(uint64_t{job_number_} << 32);  // opens the job: claims may start
  {
    // Under the mutex so that a worker about to sleep cannot miss the bump.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_cv_.notify_all();
  RunChunks(0);
  // Only chunks already claimed are waited for; nobody waits for a worker to show up.
  for (int spin = 0; done_.load(std::memory_order_acquire) != num_chunks; ++spin) Pause(spin);
  ticket_.store(kClosed);
}

void ThreadPool::RunChunks(int thread_index) {
  uint64_t t = ticket_.load();
  while (t != kClosed) {
    // The description is stable here: the caller rewrites it only once no worker is active_,
    // and a ticket read after checking in belongs to the job it describes. A claim made from
    // a stale ticket fails its compare-and-swap.
    const int64_t i = static_cast<int64_t>(t & 0xffffffffu);
    if (i >= job_num_chunks_) return;
    if (!ticket_.compare_exchange_weak(t, t + 1)) continue;  // t is reloaded
    const int64_t b = i * job_chunk_;
    (*job_)(b, std::min(job_n_, b + job_chunk_), thread_index);
    done_.fetch_add(1, std::memory_order_release);
    t = ticket_.load();
  }
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      Pause(spin);
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_cv_.wait(lock, [&] {
        return generation_.load(std::memory_order_acquire) != seen;
      });
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    active_.fetch_add(1);  // check in: the job's description stays put until check-out
    RunChunks(index);
    active_.fetch_sub(1);
  }
}

}  // namespace prefixd
