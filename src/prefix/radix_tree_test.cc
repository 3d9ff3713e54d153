#include "prefix/radix_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kv/block_table.h"

namespace prefixd {
namespace {

using Tokens = std::vector<int32_t>;
using Blocks = std::vector<BlockId>;

// Block size 4 throughout the unit tests:  positions 0 1 2 3 | 4 5 6 7 | 8 9 10 11
constexpr int kBs = 4;

Blocks Alloc(BlockPool& pool, int n) {
  auto got = pool.Allocate(n);
  EXPECT_TRUE(got.has_value());
  return got.value_or(Blocks{});
}

void UnrefAll(BlockPool& pool, const Blocks& blocks) {
  for (BlockId b : blocks) pool.Unref(b);
}

void CheckAll(const RadixTree& tree, const BlockPool& pool) {
  tree.CheckInvariants();
  pool.CheckInvariants();
}

TEST(RadixTree, EmptyTreeAndUnknownSaltMatchNothing) {
  BlockPool pool(8);
  RadixTree tree(&pool, kBs);
  const Tokens t = {1, 2, 3};
  MatchResult m = tree.Match("", t, /*touch=*/true);
  EXPECT_EQ(m.num_tokens, 0);
  EXPECT_TRUE(m.blocks.empty());
  EXPECT_FALSE(m.node.valid());
  tree.Lock(m.node);  // no-op on a miss
  tree.Unlock(m.node);
  const Blocks b = Alloc(pool, 1);
  tree.Insert("a", t, b);
  EXPECT_EQ(tree.Match("b", t, true).num_tokens, 0);
  EXPECT_EQ(tree.Match("a", Tokens{}, true).num_tokens, 0);
  EXPECT_EQ(tree.Match("a", t, true).num_tokens, 3);
  CheckAll(tree, pool);
}

TEST(RadixTree, MatchEndingInsideAnEdgeDoesNotSplit) {
  BlockPool pool(8);
  RadixTree tree(&pool, kBs);
  const Tokens a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const Blocks ab = Alloc(pool, 3);
  tree.Insert("", a, ab);
  EXPECT_EQ(tree.num_nodes(), 1);
  EXPECT_EQ(tree.cached_blocks(), 3);
  EXPECT_EQ(tree.cached_tokens(), 10);
  const Tokens q = {1, 2, 3, 4, 5, 99};
  MatchResult m = tree.Match("", q, true);
  EXPECT_EQ(m.num_tokens, 5);
  EXPECT_EQ(m.blocks, (Blocks{ab[0], ab[1]}));
  auto info = tree.Inspect(m.node);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->start, 0);
  EXPECT_EQ(info->end, 10);
  EXPECT_EQ(tree.num_nodes(), 1);
  // A query longer than the cached sequence matches all of it.
  Tokens longer = a;
  longer.push_back(11);
  EXPECT_EQ(tree.Match("", longer, true).num_tokens, 10);
  CheckAll(tree, pool);
}

// A diverges from B at position 6, inside block 1:
//   A: 1 2 3 4 | 5 6 7 8 | 9 10       blocks a0 a1 a2
//   B: 1 2 3 4 | 5 6 70 80 | 90       blocks a0 b1 b2  (b1: B's copy of a1 before writing 70)
// After inserting B:  upper [0,6) lists a0 a1;  A's leaf [6,10) lists a1 a2;  B's [6,9) b1 b2.
class SplitMidBlock : public ::testing::Test {
 protected:
  void SetUp() override {
    ab = Alloc(pool, 3);
    tree.Insert("", a, ab);
    a_node = tree.Match("", a, true).node;
    MatchResult m = tree.Match("", b, true);
    ASSERT_EQ(m.num_tokens, 6);
    ASSERT_EQ(m.blocks, (Blocks{ab[0], ab[1]}));
    ASSERT_EQ(m.node, a_node);
    pool.Ref(ab[0]);  // B adopts a0; it writes into block 1, so it gets its own b1
    const Blocks fresh = Alloc(pool, 2);
    bb = {ab[0], fresh[0], fresh[1]};
    tree.Insert("", b, bb);
    CheckAll(tree, pool);
  }

  BlockPool pool{16};
  RadixTree tree{&pool, kBs};
  const Tokens a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const Tokens b = {1, 2, 3, 4, 5, 6, 70, 80, 90};
  Blocks ab, bb;
  NodeId a_node;
};

TEST_F(SplitMidBlock, BothHalvesListTheBoundaryBlock) {
  EXPECT_EQ(tree.num_nodes(), 3);
  EXPECT_EQ(tree.num_leaves(), 2);
  EXPECT_EQ(tree.cached_tokens(), 13);
  EXPECT_EQ(tree.cached_blocks(), 5);  // a0 a1 a2 b1 b2
  // A's NodeId now names the lower part; its path is unchanged.
  auto lower = tree.Inspect(a_node);
  ASSERT_TRUE(lower.has_value());
  EXPECT_EQ(lower->start, 6);
  EXPECT_EQ(lower->end, 10);
  EXPECT_EQ(lower->blocks, (Blocks{ab[1], ab[2]}));
  EXPECT_EQ(tree.PathTokens(a_node), a);
  auto upper = tree.Inspect(lower->parent);
  ASSERT_TRUE(upper.has_value());
  EXPECT_EQ(upper->start, 0);
  EXPECT_EQ(upper->end, 6);
  EXPECT_EQ(upper->blocks, (Blocks{ab[0], ab[1]}));
  EXPECT_EQ(pool.RefCount(ab[1]), 3);  // A's table, upper, lower
}

TEST_F(SplitMidBlock, MatchTakesEachBlockFromTheDeepestNode) {
  EXPECT_EQ(tree.Match("", a, false).blocks, ab);
  EXPECT_EQ(tree.Match("", b, false).blocks, bb);
  const Tokens only_upper = {1, 2, 3, 4, 5, 6, 99};
  MatchResult m = tree.Match("", only_upper, false);
  EXPECT_EQ(m.num_tokens, 6);
  EXPECT_EQ(m.blocks, (Blocks{ab[0], ab[1]}));
  EXPECT_EQ(tree.Inspect(m.node)->end, 6);
  const Tokens into_b = {1, 2, 3, 4, 5, 6, 70};
  m = tree.Match("", into_b, false);
  EXPECT_EQ(m.num_tokens, 7);
  EXPECT_EQ(m.blocks, (Blocks{ab[0], bb[1]}));
}

TEST_F(SplitMidBlock, SharedBoundaryBlockSurvivesTheLeafsEviction) {
  UnrefAll(pool, ab);
  UnrefAll(pool, bb);
  EXPECT_EQ(pool.num_used(), 5);
  tree.Match("", b, true);  // A's leaf becomes the least recently used
  const int free_before = pool.num_free();
  EXPECT_EQ(tree.Evict(1), 1);  // a2 freed; a1 survives (the upper node lists it)
  EXPECT_EQ(pool.num_free(), free_before + 1);
  EXPECT_FALSE(tree.IsValid(a_node));
  EXPECT_EQ(pool.RefCount(ab[1]), 1);
  EXPECT_EQ(pool.RefCount(ab[2]), 0);
  MatchResult m = tree.Match("", a, false);
  EXPECT_EQ(m.num_tokens, 6);
  EXPECT_EQ(m.blocks, (Blocks{ab[0], ab[1]}));
  CheckAll(tree, pool);
  EXPECT_EQ(tree.Clear(), 4);
  EXPECT_EQ(pool.num_free(), pool.num_blocks());
  EXPECT_EQ(tree.num_salts(), 0);
  CheckAll(tree, pool);
}

TEST_F(SplitMidBlock, LockSurvivesTheSplit) {
  // Lock A's node after the split (its id is unchanged), then split it again lower down.
  tree.Lock(a_node);
  const Tokens c = {1, 2, 3, 4, 5, 6, 7, 8, 55};  // diverges at 8: a block boundary
  const Blocks cb = {ab[0], ab[1], Alloc(pool, 1)[0]};
  pool.Ref(ab[0]);
  pool.Ref(ab[1]);
  tree.Insert("", c, cb);
  CheckAll(tree, pool);
  auto lower = tree.Inspect(a_node);
  ASSERT_TRUE(lower.has_value());
  EXPECT_EQ(lower->start, 8);
  EXPECT_EQ(lower->lock_count, 1);
  EXPECT_EQ(tree.PathTokens(a_node), a);
  auto mid = tree.Inspect(lower->parent);
  EXPECT_EQ(mid->start, 6);
  EXPECT_EQ(mid->lock_count, 1);
  EXPECT_EQ(mid->num_direct_locks, 0);
  // Everything unlocked goes; A's whole path stays with its blocks.
  UnrefAll(pool, ab);
  UnrefAll(pool, bb);
  UnrefAll(pool, cb);
  tree.Clear();
  CheckAll(tree, pool);
  MatchResult m = tree.Match("", a, false);
  EXPECT_EQ(m.num_tokens, 10);
  EXPECT_EQ(m.blocks, ab);
  EXPECT_EQ(tree.num_nodes(), 3);
  for (BlockId blk : ab) EXPECT_GE(pool.RefCount(blk), 1);
  tree.Unlock(a_node);
  tree.Clear();
  EXPECT_EQ(tree.num_nodes(), 0);
  EXPECT_EQ(pool.num_free(), pool.num_blocks());
  CheckAll(tree, pool);
}

TEST_F(SplitMidBlock, SiblingSharingTheBoundaryBlockDies) {
  // D diverges from A at 7, inside block 1, but claims A's block a1: it wrote without copying.
  const Tokens d = {1, 2, 3, 4, 5, 6, 7, 66};
  EXPECT_DEATH(tree.Insert("", d, Blocks{ab[0], ab[1]}), "without copy-on-write");
}

TEST(RadixTree, SplitAtABlockBoundarySharesNoBlock) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const Tokens b = {1, 2, 3, 4, 5, 6, 7, 8, 19};
  const Blocks ab = Alloc(pool, 3);
  tree.Insert("", a, ab);
  pool.Ref(ab[0]);
  pool.Ref(ab[1]);
  const Blocks bb = {ab[0], ab[1], Alloc(pool, 1)[0]};
  tree.Insert("", b, bb);
  CheckAll(tree, pool);
  EXPECT_EQ(tree.num_nodes(), 3);
  EXPECT_EQ(tree.cached_blocks(), 4);
  EXPECT_EQ(pool.RefCount(ab[1]), 3);  // A's table, B's table, the upper node only
  EXPECT_EQ(tree.Match("", b, false).blocks, bb);
}

TEST(RadixTree, ChildrenDivergingInsideABlockHaveTheirOwnBlocks) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens p = {1, 2, 3, 4, 5, 6};  // ends inside block 1
  const Blocks pb = Alloc(pool, 2);
  tree.Insert("", p, pb);
  std::vector<Blocks> kids;
  for (int32_t t : {7, 8, 9}) {
    Tokens c = p;
    c.push_back(t);
    c.push_back(t);
    Blocks cb = {pb[0], Alloc(pool, 1)[0]};
    pool.Ref(pb[0]);
    tree.Insert("", c, cb);
    CheckAll(tree, pool);
    EXPECT_EQ(tree.Match("", c, false).blocks, cb);
    kids.push_back(cb);
  }
  EXPECT_EQ(tree.num_nodes(), 4);
  EXPECT_EQ(tree.num_leaves(), 3);
  // The parent keeps its own block for index 1; a match ending at 6 reads it.
  EXPECT_EQ(tree.Match("", p, false).blocks, pb);
}

TEST(RadixTree, PrefixOfItselfListsTheSameBoundaryBlockAsItsParent) {
  // A sequence inserts [0, 6), keeps writing into the same block, then inserts [0, 10).
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens s = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const Blocks sb = Alloc(pool, 3);
  tree.Insert("", std::span(s).subspan(0, 6), std::span(sb).subspan(0, 2));
  tree.Insert("", s, sb);
  CheckAll(tree, pool);
  EXPECT_EQ(tree.num_nodes(), 2);
  EXPECT_EQ(tree.cached_blocks(), 3);
  EXPECT_EQ(pool.RefCount(sb[1]), 3);
  UnrefAll(pool, sb);
  EXPECT_EQ(tree.Evict(1), 1);  // the leaf [6, 10): sb[2] freed, sb[1] kept by the parent
  EXPECT_EQ(pool.RefCount(sb[1]), 1);
  CheckAll(tree, pool);
}

TEST(RadixTree, InsertingWhatIsPresentChangesOnlyRecency) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const Blocks ab = Alloc(pool, 3);
  tree.Insert("", a, ab);
  const NodeId n = tree.Match("", a, false).node;
  const uint64_t tick = tree.Inspect(n)->stats.last_access_tick;
  const Blocks other = Alloc(pool, 3);
  tree.Insert("", a, other);  // same tokens, other blocks: the tree keeps its own
  tree.Insert("", std::span(a).subspan(0, 7), other);  // a prefix ending inside the edge
  CheckAll(tree, pool);
  EXPECT_EQ(tree.num_nodes(), 1);
  EXPECT_EQ(tree.cached_blocks(), 3);
  EXPECT_EQ(tree.Match("", a, false).blocks, ab);
  for (BlockId b : other) EXPECT_EQ(pool.RefCount(b), 1);
  EXPECT_GT(tree.Inspect(n)->stats.last_access_tick, tick);
}

TEST(RadixTree, SaltsNeverMatchEachOther) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens a = {1, 2, 3, 4, 5};
  const Blocks x = Alloc(pool, 2);
  const Blocks y = Alloc(pool, 2);
  tree.Insert("tenant-x", a, x);
  EXPECT_EQ(tree.Match("tenant-y", a, true).num_tokens, 0);
  EXPECT_EQ(tree.Match("", a, true).num_tokens, 0);
  tree.Insert("tenant-y", a, y);
  EXPECT_EQ(tree.Match("tenant-x", a, false).blocks, x);
  EXPECT_EQ(tree.Match("tenant-y", a, false).blocks, y);
  EXPECT_EQ(tree.num_salts(), 2);
  EXPECT_EQ(tree.num_nodes(), 2);
  UnrefAll(pool, x);
  UnrefAll(pool, y);
  tree.Match("tenant-y", a, true);
  EXPECT_EQ(tree.Evict(1), 2);  // tenant-x is older
  EXPECT_EQ(tree.num_salts(), 1);
  EXPECT_EQ(tree.Match("tenant-x", a, false).num_tokens, 0);
  EXPECT_EQ(tree.Match("tenant-y", a, false).num_tokens, 5);
  CheckAll(tree, pool);
}

// Builds three sequences A (oldest), B, C in a fresh tree; the caller's references are dropped.
struct ThreeSequences {
  BlockPool pool{32};
  RadixTree tree{&pool, kBs};
  const Tokens a = {1, 1, 1, 1, 1};
  const Tokens b = {2, 2, 2, 2, 2};
  const Tokens c = {3, 3, 3, 3, 3};
  ThreeSequences() {
    for (const Tokens* t : {&a, &b, &c}) {
      const Blocks blocks = Alloc(pool, 2);
      tree.Insert("", *t, blocks);
      UnrefAll(pool, blocks);
    }
  }
  // Which of A, B, C are still cached.
  std::string Present() const {
    std::string out;
    if (tree.Peek("", a).num_tokens > 0) out += "A";
    if (tree.Peek("", b).num_tokens > 0) out += "B";
    if (tree.Peek("", c).num_tokens > 0) out += "C";
    return out;
  }
};

TEST(RadixTree, MatchWithoutTouchChangesNothingObservable) {
  ThreeSequences probed, control;
  const uint64_t clock = probed.tree.clock();
  const auto before = probed.tree.Inspect(probed.tree.Peek("", probed.a).node)->stats;
  for (int i = 0; i < 3; ++i) probed.tree.Match("", probed.a, /*touch=*/false);
  EXPECT_EQ(probed.tree.clock(), clock);
  const auto after = probed.tree.Inspect(probed.tree.Peek("", probed.a).node)->stats;
  EXPECT_EQ(after.last_access_tick, before.last_access_tick);
  EXPECT_EQ(after.num_hits, before.num_hits);
  // Same eviction order as a tree nobody probed: A first.
  EXPECT_EQ(probed.tree.Evict(1), 2);
  EXPECT_EQ(control.tree.Evict(1), 2);
  EXPECT_EQ(probed.Present(), "BC");
  EXPECT_EQ(control.Present(), "BC");
  probed.tree.CheckInvariants();
}

TEST(RadixTree, MatchWithTouchRefreshesRecency) {
  ThreeSequences s;
  s.tree.Match("", s.a, /*touch=*/true);
  EXPECT_EQ(s.tree.Evict(1), 2);
  EXPECT_EQ(s.Present(), "AC");
  EXPECT_EQ(s.tree.Evict(3), 4);
  EXPECT_EQ(s.Present(), "");
  EXPECT_EQ(s.pool.num_free(), s.pool.num_blocks());
  s.tree.CheckInvariants();
}

TEST(RadixTree, LockedNodesAreNeverEvicted) {
  ThreeSequences s;
  const NodeId a = s.tree.Match("", s.a, true).node;
  s.tree.Lock(a);
  s.tree.Lock(a);
  EXPECT_EQ(s.tree.num_evictable(), 2);
  EXPECT_EQ(s.tree.Evict(100), 4);
  EXPECT_EQ(s.Present(), "A");
  EXPECT_EQ(s.tree.Clear(), 0);
  EXPECT_EQ(s.tree.EvictToBudget(0), 0);
  EXPECT_EQ(s.tree.cached_blocks(), 2);
  s.tree.Unlock(a);
  EXPECT_EQ(s.tree.Evict(100), 0);  // still locked once
  s.tree.Unlock(a);
  EXPECT_EQ(s.tree.Evict(100), 2);
  EXPECT_EQ(s.Present(), "");
  s.tree.CheckInvariants();
}

TEST(RadixTree, LockedParentKeepsItsBlocksWhileItsLeafGoes) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens p = {1, 2, 3, 4, 5, 6, 7, 8};
  const Tokens c = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const Blocks cb = Alloc(pool, 3);
  tree.Insert("", p, std::span(cb).subspan(0, 2));
  tree.Insert("", c, cb);
  UnrefAll(pool, cb);
  tree.Lock(tree.Match("", p, true).node);
  EXPECT_EQ(tree.Evict(10), 1);  // only the leaf [8, 12)
  EXPECT_EQ(tree.Match("", c, false).num_tokens, 8);
  tree.CheckInvariants();
}

TEST(RadixTree, UnlockWithoutLockDies) {
  ThreeSequences s;
  const NodeId a = s.tree.Match("", s.a, true).node;
  EXPECT_DEATH(s.tree.Unlock(a), "without a matching Lock");
}

TEST(RadixTree, StaleNodeIdIsDetected) {
  ThreeSequences s;
  const NodeId a = s.tree.Match("", s.a, false).node;
  EXPECT_TRUE(s.tree.IsValid(a));
  s.tree.Evict(1);
  EXPECT_FALSE(s.tree.IsValid(a));
  EXPECT_FALSE(s.tree.Inspect(a).has_value());
  // The slot is reused by a new node; the old id still does not name it.
  const Blocks blocks = Alloc(s.pool, 2);
  s.tree.Insert("", s.a, blocks);
  EXPECT_FALSE(s.tree.IsValid(a));
  EXPECT_DEATH(s.tree.Lock(a), "stale NodeId");
}

TEST(RadixTree, EvictCountsOnlyBlocksThatBecameFree) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens a = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const Blocks ab = Alloc(pool, 3);
  tree.Insert("", a, ab);
  // A running sequence still holds the blocks: removing the node frees nothing.
  EXPECT_EQ(tree.Evict(3), 0);
  EXPECT_EQ(tree.num_nodes(), 0);
  EXPECT_EQ(pool.num_free(), 13);
  tree.Insert("", a, ab);
  pool.Unref(ab[0]);
  pool.Unref(ab[2]);
  EXPECT_EQ(tree.Evict(1), 2);  // ab[1] is still the sequence's
  EXPECT_EQ(pool.num_free(), 15);
  pool.Unref(ab[1]);
  EXPECT_EQ(pool.num_free(), 16);
  tree.CheckInvariants();
}

TEST(RadixTree, EvictRemovesParentsThatBecomeLeaves) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens a = {1, 2, 3, 4, 5, 6, 7, 8};
  const Tokens b = {1, 2, 3, 4, 9, 9, 9, 9};
  const Blocks ab = Alloc(pool, 2);
  tree.Insert("", a, ab);
  const Blocks bb = {ab[0], Alloc(pool, 1)[0]};
  pool.Ref(ab[0]);
  tree.Insert("", b, bb);
  UnrefAll(pool, ab);
  UnrefAll(pool, bb);
  EXPECT_EQ(tree.num_nodes(), 3);
  EXPECT_EQ(tree.Evict(3), 3);  // both leaves, then their parent
  EXPECT_EQ(tree.num_nodes(), 0);
  EXPECT_EQ(tree.num_salts(), 0);
  tree.CheckInvariants();
}

TEST(RadixTree, EvictToBudget) {
  BlockPool pool(64);
  RadixTree tree(&pool, kBs);
  for (int32_t i = 0; i < 8; ++i) {
    const Tokens t(8, i);
    const Blocks b = Alloc(pool, 2);
    tree.Insert("", t, b);
    UnrefAll(pool, b);
  }
  EXPECT_EQ(tree.cached_blocks(), 16);
  EXPECT_EQ(tree.EvictToBudget(11), 6);
  EXPECT_EQ(tree.cached_blocks(), 10);
  EXPECT_EQ(tree.Match("", Tokens(8, 2), false).num_tokens, 0);  // oldest three went
  EXPECT_EQ(tree.Match("", Tokens(8, 3), false).num_tokens, 8);
  EXPECT_EQ(tree.EvictToBudget(100), 0);
  tree.CheckInvariants();
}

// Largest first, to show the policy is a separate ranking.
class LongestFirst : public EvictionPolicy {
 public:
  double Priority(const NodeStats& s) const override { return -static_cast<double>(s.num_tokens); }
};

TEST(RadixTree, PolicyRanksLeaves) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs, std::make_unique<LongestFirst>());
  const Tokens short_seq = {1, 2};
  const Tokens long_seq = {3, 3, 3, 3, 3, 3, 3, 3, 3};
  const Blocks s = Alloc(pool, 1);
  const Blocks l = Alloc(pool, 3);
  tree.Insert("", long_seq, l);
  tree.Insert("", short_seq, s);
  tree.Match("", long_seq, true);
  UnrefAll(pool, s);
  UnrefAll(pool, l);
  EXPECT_EQ(tree.Evict(1), 3);
  EXPECT_EQ(tree.Match("", short_seq, false).num_tokens, 2);
  tree.CheckInvariants();
}

// Eviction is a plan, then its application. The plan changes nothing, names what goes in the
// order Evict would remove it, and carries the keys Insert stored on each node (split mid-block
// included), so a caller can rebuild every full block's record without rehashing a path.
TEST(RadixTree, EvictionPlanCarriesTheKeysInsertStored) {
  BlockPool pool(16);
  RadixTree tree(&pool, kBs);
  const Tokens a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // diverge at 6, inside block 1
  const Tokens b = {1, 2, 3, 4, 5, 6, 70, 80, 90};
  const BlockKey root = RootKey(BlockHashKind::kXxh3, std::vector<uint8_t>{7}, "");
  auto chain = [&](const Tokens& t) {
    return BlockKeyChain{root, ComputeBlockKeys(BlockHashKind::kXxh3, root, t, kBs)};
  };
  const BlockKeyChain ka = chain(a), kb = chain(b);
  const Blocks ab = Alloc(pool, 3);
  tree.Insert("", a, ab, &ka);
  pool.Ref(ab[0]);
  const Blocks fresh = Alloc(pool, 2);
  const Blocks bb = {ab[0], fresh[0], fresh[1]};
  tree.Insert("", b, bb, &kb);
  UnrefAll(pool, ab);
  UnrefAll(pool, bb);
  CheckAll(tree, pool);

  const EvictionPlan plan = tree.PrepareClear();
  EXPECT_EQ(tree.num_nodes(), 3) << "preparing changes nothing";
  ASSERT_EQ(plan.nodes.size(), 3u) << "both leaves, then their parent";
  std::map<std::vector<int32_t>, BlockKey> seen;  // a full block's path tokens -> its key
  for (const EvictionPlan::Entry& e : plan.nodes) {
    const RemovedNode& n = e.node;
    Tokens path = e.lead;  // the part of the node's first block above it, then its edge
    path.insert(path.end(), n.tokens.begin(), n.tokens.end());
    BlockKey parent = n.parent_key;
    for (size_t k = 0; k < n.keys.size(); ++k) {
      const auto block = std::span<const int32_t>(path).subspan(k * kBs, kBs);
      EXPECT_EQ(n.keys[k], ChainKey(BlockHashKind::kXxh3, parent, block));
      parent = n.keys[k];
      seen[Tokens(block.begin(), block.end())] = n.keys[k];
    }
  }
  // Each full block is named once, by the node it ends in: block 0 by the shared upper node,
  // block 1 by each leaf.
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ((seen[Tokens{5, 6, 7, 8}]), ka.keys[1]);
  EXPECT_EQ((seen[Tokens{5, 6, 70, 80}]), kb.keys[1]);
  EXPECT_EQ(tree.ApplyEviction(plan), plan.num_freed_blocks);
  EXPECT_EQ(plan.num_freed_blocks, 5);
  EXPECT_EQ(tree.num_nodes(), 0);
  EXPECT_EQ(pool.num_free(), 16);
  CheckAll(tree, pool);
}

TEST(RadixTree, RemovalObserverSeesEachRemovedNode) {
  ThreeSequences s;
  std::vector<Tokens> removed;
  s.tree.SetRemovalObserver([&](const RemovedNode& r) {
    EXPECT_EQ(r.salt, "");
    EXPECT_EQ(r.blocks.size(), 2u);
    removed.push_back(s.tree.PathTokens(r.node));
  });
  s.tree.Clear();
  EXPECT_EQ(removed, (std::vector<Tokens>{s.a, s.b, s.c}));
}

TEST(RadixTree, DestructorDropsItsReferences) {
  BlockPool pool(8);
  {
    RadixTree tree(&pool, kBs);
    const Blocks b = Alloc(pool, 2);
    tree.Insert("", Tokens{1, 2, 3, 4, 5}, b);
    tree.Lock(tree.Match("", Tokens{1}, true).node);
    UnrefAll(pool, b);
    EXPECT_EQ(pool.num_free(), 6);
  }
  EXPECT_EQ(pool.num_free(), 8);
}

// ---------------------------------------------------------------------------------------------
// Randomized test against a reference model.
//
// Fake KV store: every slot of every block holds a hash of the tokens [0, pos] of the sequence
// that wrote position pos (the real KV of a position depends on the whole prefix). Sequences
// copy blocks on write exactly as the engine does (BlockTable::PrepareWrite), so any block the
// tree hands out for a matched position must hold exactly the query's prefix hash there.
//
// Reference model: per salt, the set of maximal cached token sequences (no entry a prefix of
// another), i.e. the paths of the tree's leaves. Insert adds a sequence; the removal observer
// truncates the removed leaf's sequence to the leaf's start. The expected match length is the
// longest common prefix of the query with any entry.
class RandomizedHarness {
 public:
  RandomizedHarness(int block_size, int num_blocks, uint32_t seed)
      : bs_(block_size),
        pool_(num_blocks),
        tree_(&pool_, block_size),
        rng_(seed),
        kv_(num_blocks, std::vector<uint64_t>(block_size, 0)) {
    tree_.SetRemovalObserver([this](const RemovedNode& r) { OnRemoved(r); });
  }

  void Run(int num_ops) {
    for (int op = 0; op < num_ops; ++op) {
      // Phases of 2,000 operations: the tree grows under pool pressure alone, then shrinks under
      // explicit evictions and budgets as well.
      const bool shrinking = (op / 2000) % 2 == 1;
      const int r = Rand(100);
      if (r < 25) {
        StartSequence();
      } else if (r < 43) {
        ExtendSequence();
      } else if (r < 50) {
        InsertPrefixOfSequence();
      } else if (r < 63) {
        FinishSequence();
      } else if (r < 80) {
        Probe();
      } else if (r < 84) {
        ToggleLock();
      } else if (r < 92) {
        if (shrinking || r == 84) EvictSome();
      } else if (r < 99) {
        if (shrinking || r == 92) EvictToRandomBudget();
      } else if (Rand(20) == 0) {
        ClearTree();
      }
      Verify();
      if (::testing::Test::HasFailure()) return;
    }
    while (!running_.empty()) FinishAt(0);
    tree_.Clear();
    Verify();
    ASSERT_EQ(tree_.num_nodes(), 0);
    ASSERT_EQ(pool_.num_free(), pool_.num_blocks()) << "blocks leaked";
    std::printf("bs=%d: %d matches with hits, %d blocks evicted, %d splits seen, max %d nodes\n",
                bs_, num_hits_, num_evictions_, num_splits_, max_nodes_);
    EXPECT_GT(num_hits_, 100);
    EXPECT_GT(num_evictions_, 100);
  }

 private:
  struct Seq {
    std::string salt;
    Tokens tokens;
    BlockTable table;
    NodeId lock;             // invalid when not locked
    int64_t locked_len = 0;  // matched length when it locked
  };

  int Rand(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }

  static uint64_t Mix(uint64_t h, int32_t token) {
    h ^= static_cast<uint64_t>(static_cast<uint32_t>(token)) + 0x9e3779b97f4a7c15ULL + (h << 6) +
         (h >> 2);
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
  }
  static std::vector<uint64_t> PrefixHashes(const Tokens& t) {
    std::vector<uint64_t> out(t.size());
    uint64_t h = 1;
    for (size_t i = 0; i < t.size(); ++i) out[i] = h = Mix(h, t[i]);
    return out;
  }

  std::string RandomSalt() {
    static const char* kSalts[] = {"", "", "", "tenant-a", "tenant-b"};
    return kSalts[Rand(5)];
  }
  Tokens RandomTokens(int n) {
    Tokens t(n);
    for (int32_t& x : t) x = Rand(4);  // a small alphabet: many shared prefixes and splits
    return t;
  }

  // A query that often shares a prefix with something cached or running.
  Tokens RandomQuery(const std::string& salt) {
    Tokens base;
    const int pick = Rand(3);
    auto it = reference_.find(salt);
    if (pick == 0 && it != reference_.end() && !it->second.empty()) {
      base = it->second[Rand(static_cast<int>(it->second.size()))];
    } else if (pick == 1 && !running_.empty()) {
      base = running_[Rand(static_cast<int>(running_.size()))].tokens;
    }
    Tokens q(base.begin(),
             base.begin() + (base.empty() ? 0 : Rand(static_cast<int>(base.size()) + 1)));
    const Tokens tail = RandomTokens(1 + Rand(3 * bs_ + 6));
    q.insert(q.end(), tail.begin(), tail.end());
    return q;
  }

  int64_t ExpectedMatch(const std::string& salt, const Tokens& q) const {
    auto it = reference_.find(salt);
    if (it == reference_.end()) return 0;
    int64_t best = 0;
    for (const Tokens& s : it->second) {
      const size_t n = std::min(s.size(), q.size());
      size_t k = 0;
      while (k < n && s[k] == q[k]) ++k;
      best = std::max<int64_t>(best, static_cast<int64_t>(k));
    }
    return best;
  }

  // Checks a match against the reference and the fake KV store.
  void CheckMatch(const std::string& salt, const Tokens& q, const MatchResult& m) {
    ASSERT_EQ(m.num_tokens, ExpectedMatch(salt, q));
    ASSERT_EQ(static_cast<int64_t>(m.blocks.size()), (m.num_tokens + bs_ - 1) / bs_);
    ASSERT_EQ(m.node.valid(), m.num_tokens > 0);
    const std::vector<uint64_t> want = PrefixHashes(q);
    for (int64_t j = 0; j < m.num_tokens; ++j) {
      const BlockId b = m.blocks[j / bs_];
      ASSERT_GE(pool_.RefCount(b), 1) << "a matched block is free";
      ASSERT_EQ(kv_[b.value()][j % bs_], want[j]) << "block " << b.value() << " holds the wrong KV "
                                                  << "for position " << j;
    }
    if (m.num_tokens > 0) {
      auto info = tree_.Inspect(m.node);
      ASSERT_TRUE(info.has_value());
      ASSERT_GT(m.num_tokens, info->start);
      ASSERT_LE(m.num_tokens, info->end);
    }
    if (m.num_tokens > 0) ++num_hits_;
  }

  // Writes positions [begin, size) of the sequence's tokens, copying shared blocks first.
  // Evicts when the pool runs out. Returns false when there is still no room.
  bool Write(Seq& s, int64_t begin) {
    const int64_t end = static_cast<int64_t>(s.tokens.size());
    auto copies = s.table.PrepareWrite(pool_, bs_, begin, end);
    if (!copies) {
      const int need = static_cast<int>((end - begin) / bs_ + 2);
      num_evictions_ += tree_.Evict(need);
      Verify();
      copies = s.table.PrepareWrite(pool_, bs_, begin, end);
      if (!copies) return false;
    }
    for (const BlockCopy& c : *copies) kv_[c.dst.value()] = kv_[c.src.value()];
    const std::vector<uint64_t> h = PrefixHashes(s.tokens);
    for (int64_t j = begin; j < end; ++j) {
      const BlockId b = s.table.blocks()[j / bs_];
      if (pool_.RefCount(b) != 1) {
        ADD_FAILURE() << "writing into a shared block " << b.value();
        return false;
      }
      kv_[b.value()][j % bs_] = h[j];
    }
    return true;
  }

  void InsertSeq(const Seq& s, int64_t len) {
    const int nodes_before = tree_.num_nodes();
    const int leaves_before = tree_.num_leaves();
    tree_.Insert(s.salt, std::span(s.tokens).subspan(0, len), s.table.blocks());
    // A split adds two nodes but one leaf.
    if (tree_.num_nodes() - nodes_before == 2 && tree_.num_leaves() - leaves_before == 1) {
      ++num_splits_;
    }
    Tokens t(s.tokens.begin(), s.tokens.begin() + len);
    auto& entries = reference_[s.salt];
    for (const Tokens& e : entries) {
      if (e.size() >= t.size() && std::equal(t.begin(), t.end(), e.begin())) return;  // present
    }
    std::erase_if(entries, [&](const Tokens& e) {
      return e.size() < t.size() && std::equal(e.begin(), e.end(), t.begin());
    });
    entries.push_back(std::move(t));
  }

  void OnRemoved(const RemovedNode& r) {
    const Tokens path = tree_.PathTokens(r.node);
    auto& entries = reference_[std::string(r.salt)];
    auto it = std::find(entries.begin(), entries.end(), path);
    ASSERT_NE(it, entries.end()) << "the tree removed a leaf the reference does not have";
    it->resize(r.start);
    Tokens cut = std::move(*it);
    entries.erase(it);
    if (cut.empty()) return;
    for (const Tokens& e : entries) {
      if (e.size() >= cut.size() && std::equal(cut.begin(), cut.end(), e.begin())) return;
    }
    entries.push_back(std::move(cut));
  }

  void StartSequence() {
    if (running_.size() >= 12) return;
    Seq s;
    s.salt = RandomSalt();
    s.tokens = RandomQuery(s.salt);
    const bool touch = Rand(4) != 0;
    const MatchResult m = tree_.Match(s.salt, s.tokens, touch);
    CheckMatch(s.salt, s.tokens, m);
    for (BlockId b : m.blocks) pool_.Ref(b);
    s.table.Adopt(m.blocks);
    if (Rand(10) < 7) {
      tree_.Lock(m.node);
      s.lock = m.node;
      s.locked_len = m.num_tokens;
    }
    if (!Write(s, m.num_tokens)) {
      Release(s);
      return;
    }
    if (Rand(10) < 8) InsertSeq(s, static_cast<int64_t>(s.tokens.size()));
    running_.push_back(std::move(s));
  }

  void ExtendSequence() {
    if (running_.empty()) return;
    const int i = Rand(static_cast<int>(running_.size()));
    Seq& s = running_[i];
    const int64_t begin = static_cast<int64_t>(s.tokens.size());
    const Tokens more = RandomTokens(1 + Rand(2 * bs_));
    s.tokens.insert(s.tokens.end(), more.begin(), more.end());
    if (!Write(s, begin)) {
      FinishAt(i);
      return;
    }
    if (Rand(2) == 0) InsertSeq(s, static_cast<int64_t>(s.tokens.size()));
  }

  void InsertPrefixOfSequence() {
    if (running_.empty()) return;
    const Seq& s = running_[Rand(static_cast<int>(running_.size()))];
    InsertSeq(s, 1 + Rand(static_cast<int>(s.tokens.size())));
  }

  void FinishSequence() {
    if (running_.empty()) return;
    const int i = Rand(static_cast<int>(running_.size()));
    if (Rand(2) == 0) InsertSeq(running_[i], static_cast<int64_t>(running_[i].tokens.size()));
    FinishAt(i);
  }

  void FinishAt(int i) {
    Release(running_[i]);
    running_.erase(running_.begin() + i);
  }

  void Release(Seq& s) {
    if (s.lock.valid()) tree_.Unlock(s.lock);
    s.lock = NodeId();
    s.table.Release(pool_);
  }

  void ToggleLock() {
    if (running_.empty()) return;
    Seq& s = running_[Rand(static_cast<int>(running_.size()))];
    if (s.lock.valid()) {
      tree_.Unlock(s.lock);
      s.lock = NodeId();
      return;
    }
    const MatchResult m = tree_.Match(s.salt, s.tokens, false);
    CheckMatch(s.salt, s.tokens, m);
    tree_.Lock(m.node);
    s.lock = m.node;
    s.locked_len = m.num_tokens;
  }

  void Probe() {
    const std::string salt = RandomSalt();
    const Tokens q = RandomQuery(salt);
    const uint64_t clock = tree_.clock();
    const int nodes = tree_.num_nodes();
    const MatchResult m = tree_.Match(salt, q, /*touch=*/false);
    CheckMatch(salt, q, m);
    ASSERT_EQ(tree_.clock(), clock);
    ASSERT_EQ(tree_.num_nodes(), nodes);
  }

  void EvictSome() {
    const int free_before = pool_.num_free();
    const int want = 1 + Rand(8);
    const int freed = tree_.Evict(want);
    ASSERT_EQ(pool_.num_free() - free_before, freed);
    ASSERT_TRUE(freed >= want || tree_.num_evictable() == 0);
    num_evictions_ += freed;
  }

  void EvictToRandomBudget() {
    const int free_before = pool_.num_free();
    // Mostly trims (down to three quarters), sometimes a drastic cut.
    const int cached = tree_.cached_blocks();
    const int budget = Rand(8) == 0 ? Rand(cached + 1) : cached - Rand(cached / 4 + 1);
    const int freed = tree_.EvictToBudget(budget);
    ASSERT_EQ(pool_.num_free() - free_before, freed);
    ASSERT_TRUE(tree_.cached_blocks() <= budget || tree_.num_evictable() == 0)
        << "budget exceeded with unlocked leaves left";
    num_evictions_ += freed;
  }

  void ClearTree() {
    const int free_before = pool_.num_free();
    const int freed = tree_.Clear();
    ASSERT_EQ(pool_.num_free() - free_before, freed);
    ASSERT_EQ(tree_.num_evictable(), 0);
  }

  void Verify() {
    tree_.CheckInvariants();
    pool_.CheckInvariants();
    max_nodes_ = std::max(max_nodes_, tree_.num_nodes());
    int num_entries = 0;
    for (const auto& [salt, entries] : reference_) num_entries += static_cast<int>(entries.size());
    ASSERT_EQ(num_entries, tree_.num_leaves()) << "reference and tree disagree on the leaves";
    // Locked prefixes stay whole, with the right blocks.
    for (const Seq& s : running_) {
      if (!s.lock.valid()) continue;
      ASSERT_TRUE(tree_.IsValid(s.lock)) << "a locked node was removed";
      const Tokens prefix(s.tokens.begin(), s.tokens.begin() + s.locked_len);
      const MatchResult m = tree_.Peek(s.salt, prefix);
      ASSERT_EQ(m.num_tokens, s.locked_len) << "part of a locked path was evicted";
      CheckMatch(s.salt, prefix, m);
    }
  }

  const int bs_;
  BlockPool pool_;
  RadixTree tree_;
  std::mt19937 rng_;
  std::vector<std::vector<uint64_t>> kv_;  // fake KV store: [block][slot] -> prefix hash
  std::map<std::string, std::vector<Tokens>> reference_;
  std::vector<Seq> running_;
  int num_hits_ = 0;
  int num_evictions_ = 0;
  int num_splits_ = 0;
  int max_nodes_ = 0;
};

TEST(RadixTreeRandomized, MatchesReferenceModelBlockSize1) {
  RandomizedHarness(1, 1500, 1).Run(15000);
}
TEST(RadixTreeRandomized, MatchesReferenceModelBlockSize4) {
  RandomizedHarness(4, 500, 2).Run(15000);
}
TEST(RadixTreeRandomized, MatchesReferenceModelBlockSize16) {
  RandomizedHarness(16, 160, 3).Run(15000);
}

}  // namespace
}  // namespace prefixd
