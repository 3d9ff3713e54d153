#include "base/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
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

}  // namespace
}  // namespace prefixd
