#include "kv/block_pool.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "kv/block_table.h"

namespace prefixd {
namespace {

TEST(BlockPool, AllocateAllThenRunsOut) {
  BlockPool pool(4);
  auto got = pool.Allocate(4);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(pool.num_free(), 0);
  EXPECT_FALSE(pool.Allocate(1).has_value());
  pool.Unref((*got)[2]);
  EXPECT_EQ(pool.num_free(), 1);
  pool.CheckInvariants();
}

TEST(BlockPool, FailedAllocationTakesNothing) {
  BlockPool pool(3);
  EXPECT_FALSE(pool.Allocate(4).has_value());
  EXPECT_EQ(pool.num_free(), 3);
}

TEST(BlockPool, UnrefOfFreeBlockDies) {
  BlockPool pool(2);
  EXPECT_DEATH(pool.Unref(BlockId(0)), "refcount would go below 0");
}

// Thousands of random operations against a map of expected refcounts.
TEST(BlockPool, RandomOperationsMatchReferenceModel) {
  std::mt19937 rng(1234);
  BlockPool pool(64, 8);
  std::map<int, int> expected;  // used block -> refcount
  for (int step = 0; step < 20000; ++step) {
    const int op = rng() % 3;
    if (op == 0) {
      const int n = rng() % 5;
      auto got = pool.Allocate(n);
      ASSERT_EQ(got.has_value(), n <= 64 - static_cast<int>(expected.size()));
      if (got) {
        for (BlockId id : *got) {
          ASSERT_EQ(expected.count(id.value()), 0u) << "allocated a used block";
          expected[id.value()] = 1;
        }
      }
    } else if (!expected.empty()) {
      auto it = std::next(expected.begin(), rng() % expected.size());
      if (op == 1) {
        pool.Ref(BlockId(it->first));
        ++it->second;
      } else {
        pool.Unref(BlockId(it->first));
        if (--it->second == 0) expected.erase(it);
      }
    }
    pool.CheckInvariants();
    ASSERT_EQ(pool.num_used(), static_cast<int>(expected.size()));
    ASSERT_EQ(pool.WantsEviction(), pool.num_free() < 8);
    for (auto [b, rc] : expected) ASSERT_EQ(pool.RefCount(BlockId(b)), rc);
  }
}

TEST(BlockTable, PrepareWriteAllocatesAndCopiesSharedBlocksOnly) {
  BlockPool pool(10);
  BlockTable a;
  auto copies = a.PrepareWrite(pool, 4, 0, 10);  // 3 blocks
  ASSERT_TRUE(copies && copies->empty());
  ASSERT_EQ(a.num_blocks(), 3);
  // Share a's blocks with b (as the prefix tree would), then b writes into its last block.
  BlockTable b;
  for (BlockId id : a.blocks()) pool.Ref(id);
  b.Adopt(a.blocks());
  copies = b.PrepareWrite(pool, 4, 10, 13);  // touches block 2 (shared) and a new block 3
  ASSERT_TRUE(copies);
  ASSERT_EQ(copies->size(), 1u);
  EXPECT_EQ((*copies)[0].src, a.blocks()[2]);
  EXPECT_NE(b.blocks()[2], a.blocks()[2]);
  EXPECT_EQ(b.blocks()[0], a.blocks()[0]);
  EXPECT_EQ(pool.RefCount(a.blocks()[2]), 1);
  EXPECT_EQ(b.num_blocks(), 4);
  a.Release(pool);
  b.Release(pool);
  EXPECT_EQ(pool.num_free(), 10);
  pool.CheckInvariants();
}

TEST(BlockTable, PrepareWriteFailsWithoutChangingAnything) {
  BlockPool pool(2);
  BlockTable a;
  ASSERT_TRUE(a.PrepareWrite(pool, 4, 0, 8));
  EXPECT_FALSE(a.PrepareWrite(pool, 4, 8, 9).has_value());
  EXPECT_EQ(a.num_blocks(), 2);
  EXPECT_EQ(pool.num_free(), 0);
}

}  // namespace
}  // namespace prefixd
