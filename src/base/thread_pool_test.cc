#include "base/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

namespace prefixd {
namespace {

TEST(ThreadPool, CoversEveryIndexOnceForManySizes) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1001}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, DynamicCoversEveryIndexOnceWithValidThreadIndices) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1001}) {
      for (int64_t chunk : {1, 4, 100}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<bool> bad_range{false}, bad_thread{false};
        pool.ParallelForDynamic(n, chunk, [&](int64_t b, int64_t e, int t) {
          if (b >= e || e - b > chunk || e > n) bad_range = true;
          if (t < 0 || t >= threads) bad_thread = true;
          for (int64_t i = b; i < e; ++i) hits[i]++;
        });
        ASSERT_FALSE(bad_range.load()) << "n=" << n << " chunk=" << chunk;
        ASSERT_FALSE(bad_thread.load()) << "threads=" << threads;
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
      }
    }
  }
}

TEST(ThreadPool, ManyJobsBackToBack) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int j = 0; j < 2000; ++j) {
    pool.ParallelFor(10, [&](int64_t b, int64_t e, int) { total += e - b; });
  }
  EXPECT_EQ(total.load(), 20000);
}

// Random loop sizes and chunk sizes back to back, some chunks slow (a thread that runs late):
// every index exactly once, every job finished when its call returns, thread indices valid.
TEST(ThreadPool, RandomJobsBackToBackAgainstACount) {
  std::mt19937 rng(7);
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    for (int j = 0; j < 3000; ++j) {
      const int64_t n = std::uniform_int_distribution<int64_t>(0, 300)(rng);
      const int64_t chunk = std::uniform_int_distribution<int64_t>(1, 40)(rng);
      const bool slow = j % 97 == 0;
      std::vector<int> hits(n, 0);  // plain ints: each index is one thread's
      std::atomic<bool> bad_thread{false};
      auto body = [&](int64_t b, int64_t e, int t) {
        if (t < 0 || t >= threads) bad_thread = true;
        if (slow && t != 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        for (int64_t i = b; i < e; ++i) hits[i]++;
      };
      if (j % 2 == 0) {
        pool.ParallelFor(n, body);
      } else {
        pool.ParallelForDynamic(n, chunk, body);
      }
      ASSERT_FALSE(bad_thread.load());
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << "job " << j << " n=" << n << " i=" << i;
    }
  }
}

}  // namespace
}  // namespace prefixd
