#include "cache/prefix_cache.h"

#include <gtest/gtest.h>

#include "kv/block_table.h"

namespace prefixd {
namespace {

constexpr int kBs = 4;

// Writes `tokens` into a fresh table (as a sequence would) and indexes it.
BlockTable Computed(BlockPool& pool, PrefixCache& cache, const std::vector<int32_t>& tokens,
                    const std::string& salt = "") {
  BlockTable t;
  EXPECT_TRUE(t.PrepareWrite(pool, kBs, 0, static_cast<int64_t>(tokens.size())));
  cache.Insert(salt, tokens, t.blocks());
  return t;
}

TEST(PrefixCache, AcquireCountsHitsAndMissesAndRefsBlocks) {
  BlockPool pool(32);
  PrefixCache cache(&pool, kBs, {});
  BlockTable a = Computed(pool, cache, {1, 2, 3, 4, 5, 6});
  a.Release(pool);
  CacheHit hit = cache.Acquire("", std::vector<int32_t>{1, 2, 3, 4, 5, 9}, 5);
  EXPECT_EQ(hit.num_tokens, 5);
  ASSERT_EQ(hit.blocks.size(), 2u);
  EXPECT_EQ(pool.RefCount(hit.blocks[0]), 2);  // the tree's and ours
  CacheHit miss = cache.Acquire("", std::vector<int32_t>{7, 7}, 1);
  EXPECT_EQ(miss.num_tokens, 0);
  const auto s = cache.stats();
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.misses, 1);
  EXPECT_EQ(s.hit_tokens, 5);
  EXPECT_EQ(s.query_tokens, 8);
  EXPECT_EQ(s.locked_requests, 1);
  cache.Release(hit);
  for (BlockId b : hit.blocks) pool.Unref(b);
  EXPECT_EQ(cache.stats().locked_requests, 0);
}

TEST(PrefixCache, KillSwitchStopsMatchingAndInserting) {
  BlockPool pool(32);
  PrefixCache cache(&pool, kBs, {});
  cache.SetEnabled(false);
  BlockTable a = Computed(pool, cache, {1, 2, 3, 4, 5});
  EXPECT_EQ(cache.stats().cached_tokens, 0);
  EXPECT_EQ(cache.Acquire("", std::vector<int32_t>{1, 2, 3}, 3).num_tokens, 0);
  EXPECT_EQ(cache.stats().misses, 0) << "a disabled cache counts nothing";
  cache.SetEnabled(true);
  cache.Insert("", std::vector<int32_t>{1, 2, 3, 4, 5}, a.blocks());
  EXPECT_EQ(cache.Probe("", std::vector<int32_t>{1, 2, 3, 4, 5}).resident_tokens, 5);
  a.Release(pool);
}

TEST(PrefixCache, BudgetEvictsLeastRecentlyUsed) {
  BlockPool pool(64);
  PrefixCacheOptions o;
  o.max_cached_blocks = 4;
  PrefixCache cache(&pool, kBs, o);
  BlockTable a = Computed(pool, cache, {1, 1, 1, 1, 1, 1, 1, 1});  // 2 blocks
  a.Release(pool);
  BlockTable b = Computed(pool, cache, {2, 2, 2, 2, 2, 2, 2, 2});  // 2 blocks
  b.Release(pool);
  BlockTable c = Computed(pool, cache, {3, 3, 3, 3, 3, 3, 3, 3});  // over budget: a goes
  c.Release(pool);
  EXPECT_LE(cache.stats().cached_blocks, 4);
  EXPECT_EQ(cache.Probe("", std::vector<int32_t>{1, 1, 1, 1}).resident_tokens, 0);
  EXPECT_EQ(cache.Probe("", std::vector<int32_t>{3, 3, 3, 3}).resident_tokens, 4);
  EXPECT_EQ(cache.stats().evicted_blocks, 2);
  cache.Clear();
  EXPECT_EQ(pool.num_free(), 64);
}

TEST(PrefixCache, BlockKeysDependOnSaltAndChain) {
  BlockPool pool(8);
  PrefixCacheOptions o;
  o.fingerprint = {1, 2, 3};
  PrefixCache cache(&pool, kBs, o);
  const std::vector<int32_t> t = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const auto k1 = cache.BlockKeys("a", t);
  ASSERT_EQ(k1.size(), 2u);  // full blocks only
  EXPECT_NE(k1, cache.BlockKeys("b", t));
  EXPECT_EQ(cache.BlockKeys("a", std::vector<int32_t>(t.begin(), t.begin() + 4))[0], k1[0]);
  PrefixCacheOptions o2 = o;
  o2.fingerprint = {1, 2, 4};
  PrefixCache other(&pool, kBs, o2);
  EXPECT_NE(other.BlockKeys("a", t)[0], k1[0]) << "another model never shares a key";
}

}  // namespace
}  // namespace prefixd
