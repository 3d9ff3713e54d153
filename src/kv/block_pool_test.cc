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

TEST(BlockPool, HeldBlockWaitsForItsLastHold) {
  BlockPool pool(2);
  auto got = pool.Allocate(2);
  ASSERT_TRUE(got.has_value());
  const BlockId b = (*got)[0];
  pool.Hold(b);
  pool.Hold(b);  // copied for two tiers
  pool.Unref(b);
  EXPECT_EQ(pool.num_free(), 0) << "a block whose copy still reads it must not be handed out";
  EXPECT_EQ(pool.num_held(), 1);
  EXPECT_FALSE(pool.Allocate(1).has_value());
  pool.Unhold(b);
  EXPECT_EQ(pool.num_free(), 0);
  pool.Unhold(b);
  EXPECT_EQ(pool.num_free(), 1);
  EXPECT_EQ(pool.num_held(), 0);
  pool.CheckInvariants();
}

TEST(BlockPool, HoldOfAFreeBlockDies) {
  BlockPool pool(2);
  EXPECT_DEATH(pool.Hold(BlockId(0)), "Hold of a block nobody uses");
  EXPECT_DEATH(pool.Unhold(BlockId(0)), "Unhold of a block that is not held");
}

// The pending-copy bookkeeping: random references, holds (a copy starts on a used block),
// unholds (a copy lands) and allocations against a model of (refcount, holds) per block. The
// pool must never hand out a block that is referenced or held, and must free a block exactly
// when both counts reach 0.
TEST(BlockPool, RandomHoldsMatchReferenceModel) {
  std::mt19937 rng(4321);
  constexpr int kBlocks = 48;
  BlockPool pool(kBlocks);
  std::map<int, std::pair<int, int>> model;  // block -> (refcount, holds); absent: free
  auto pick = [&](auto pred) -> int {
    std::vector<int> c;
    for (auto& [b, rh] : model) if (pred(rh)) c.push_back(b);
    return c.empty() ? -1 : c[rng() % c.size()];
  };
  for (int step = 0; step < 30000; ++step) {
    const int op = rng() % 5;
    if (op == 0) {
      const int n = rng() % 4;
      auto got = pool.Allocate(n);
      ASSERT_EQ(got.has_value(), n <= kBlocks - static_cast<int>(model.size()));
      if (got) {
        for (BlockId id : *got) {
          ASSERT_EQ(model.count(id.value()), 0u) << "handed out a used or held block";
          model[id.value()] = {1, 0};
        }
      }
    } else if (op == 1) {
      const int b = pick([](auto rh) { return rh.first >= 1; });
      if (b < 0) continue;
      pool.Ref(BlockId(b));
      ++model[b].first;
    } else if (op == 2) {
      const int b = pick([](auto rh) { return rh.first >= 1; });
      if (b < 0) continue;
      pool.Unref(BlockId(b));
      if (--model[b].first == 0 && model[b].second == 0) model.erase(b);
    } else if (op == 3) {
      const int b = pick([](auto rh) { return rh.first >= 1; });
      if (b < 0) continue;
      pool.Hold(BlockId(b));
      ++model[b].second;
    } else {
      const int b = pick([](auto rh) { return rh.second >= 1; });
      if (b < 0) continue;
      pool.Unhold(BlockId(b));
      if (--model[b].second == 0 && model[b].first == 0) model.erase(b);
    }
    pool.CheckInvariants();
    int held = 0;
    for (auto& [b, rh] : model) {
      ASSERT_EQ(pool.RefCount(BlockId(b)), rh.first);
      ASSERT_EQ(pool.HoldCount(BlockId(b)), rh.second);
      if (rh.first == 0) ++held;
    }
    ASSERT_EQ(pool.num_held(), held);
    ASSERT_EQ(pool.num_free(), kBlocks - static_cast<int>(model.size()));
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
