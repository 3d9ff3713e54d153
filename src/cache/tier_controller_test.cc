#include "cache/tier_controller.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "kv/block_table.h"

namespace prefixd {
namespace {

constexpr int kBs = 4;
constexpr int64_t kBlockBytes = 32;

// Block bytes in memory, standing in for a backend.
class FakeBlockIo : public BlockIo {
 public:
  void ReadBlock(BlockId b, std::span<uint8_t> out) const override {
    auto it = bytes_.find(b.value());
    if (it == bytes_.end()) {
      std::memset(out.data(), 0, out.size());
    } else {
      std::memcpy(out.data(), it->second.data(), out.size());
    }
  }
  void WriteBlock(BlockId b, std::span<const uint8_t> in) override {
    bytes_[b.value()].assign(in.begin(), in.end());
  }
  int64_t block_bytes() const override { return kBlockBytes; }
  void Fill(BlockId b, uint8_t v) { bytes_[b.value()].assign(kBlockBytes, v); }

 private:
  std::map<int32_t, std::vector<uint8_t>> bytes_;
};

std::unique_ptr<TierController> MakeController(FakeBlockIo* io, BlockPool* pool, int tails = 4) {
  TierOptions o;
  o.host_bytes = 1 << 20;
  o.partial_max_entries = tails;
  auto tc = TierController::Create(o, {1, 2, 3}, BlockHashKind::kXxh3, kBs, io, pool);
  EXPECT_TRUE(tc.ok()) << tc.status();
  return std::move(*tc);
}

// A prompt of 2 full blocks and a 3-token tail, computed into fresh blocks and handed to the
// controller as a completed prefill.
struct Computed {
  std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  BlockTable table;
};

Computed Prefill(FakeBlockIo& io, BlockPool& pool, TierController& tc) {
  Computed c;
  EXPECT_TRUE(c.table.PrepareWrite(pool, kBs, 0, static_cast<int64_t>(c.prompt.size())));
  for (size_t i = 0; i < c.table.blocks().size(); ++i) io.Fill(c.table.blocks()[i], 10 + i);
  tc.OnPrefillComplete("", c.prompt, c.table.blocks(), {}, std::nullopt);
  return c;
}

TEST(TierController, TailSplicesIntoTheTreeWithItsBytes) {
  BlockPool pool(16);
  FakeBlockIo io;
  auto tc = MakeController(&io, &pool);
  RadixTree tree(&pool, kBs);
  Computed c = Prefill(io, pool, *tc);
  // The pool keeps the two full blocks (as the tree would), the tail lives in the store.
  tree.Insert("", std::span<const int32_t>(c.prompt).first(8), c.table.blocks());
  c.table.Release(pool);
  const TierHit hit = tc->Onboard(tree, "", c.prompt, 10);
  EXPECT_EQ(hit.partial_tokens, 2) << "tail tokens 8, 9 (10 is the last, always computed)";
  const MatchResult m = tree.Peek("", c.prompt);
  EXPECT_EQ(m.num_tokens, 10);
  std::vector<uint8_t> got(kBlockBytes);
  io.ReadBlock(m.blocks[2], got);
  EXPECT_EQ(got, std::vector<uint8_t>(kBlockBytes, 12)) << "the tail block's bytes";
  tree.CheckInvariants();
}

TEST(TierController, FailedSpliceLeavesEverythingUntouched) {
  BlockPool pool(4);
  FakeBlockIo io;
  auto tc = MakeController(&io, &pool);
  RadixTree tree(&pool, kBs);
  Computed c = Prefill(io, pool, *tc);
  tree.Insert("", std::span<const int32_t>(c.prompt).first(8), c.table.blocks());
  // Every pool block is held outside the tree: no room to splice the tail into.
  auto rest = pool.Allocate(pool.num_free());
  ASSERT_TRUE(rest);
  const int free_before = pool.num_free();
  const TierHit hit = tc->Onboard(tree, "", c.prompt, 10);
  EXPECT_EQ(hit.partial_tokens, 0);
  EXPECT_EQ(tree.Peek("", c.prompt).num_tokens, 8) << "the tree is as it was";
  EXPECT_EQ(pool.num_free(), free_before);
  EXPECT_EQ(tc->stats().partial.entries, 1) << "the tail is kept for a later request";
  EXPECT_EQ(tc->stats().partial.hits, 0);
  tree.CheckInvariants();
  pool.CheckInvariants();
  for (BlockId b : *rest) pool.Unref(b);
  c.table.Release(pool);
}

TEST(TierController, MismatchingTailIsEvictedAndNothingSpliced) {
  BlockPool pool(16);
  FakeBlockIo io;
  auto tc = MakeController(&io, &pool);
  RadixTree tree(&pool, kBs);
  Computed c = Prefill(io, pool, *tc);
  tree.Insert("", std::span<const int32_t>(c.prompt).first(8), c.table.blocks());
  c.table.Release(pool);
  std::vector<int32_t> other = c.prompt;
  other[9] = 99;  // diverges inside the tail
  EXPECT_EQ(tc->Onboard(tree, "", other, 10).partial_tokens, 0);
  EXPECT_EQ(tc->stats().partial.entries, 0);
  EXPECT_EQ(tree.Peek("", other).num_tokens, 8);
}

TEST(TierController, EvictedBlocksAreOffloadedAndOnboardedWithTheirBytes) {
  BlockPool pool(16);
  FakeBlockIo io;
  auto tc = MakeController(&io, &pool, /*tails=*/0);
  RadixTree tree(&pool, kBs);
  tree.SetRemovalObserver([&](const RemovedNode& r) { tc->Offload(tree, r); });
  Computed c = Prefill(io, pool, *tc);
  tree.Insert("", c.prompt, c.table.blocks());
  c.table.Release(pool);
  tree.Clear();
  EXPECT_EQ(tc->stats().offloaded_blocks, 2) << "two full blocks; the partial third is not";
  EXPECT_EQ(pool.num_free(), 16);
  const TierHit hit = tc->Onboard(tree, "", c.prompt, 10);
  EXPECT_EQ(hit.host_tokens, 8);
  const MatchResult m = tree.Peek("", c.prompt);
  ASSERT_EQ(m.num_tokens, 8);
  std::vector<uint8_t> got(kBlockBytes);
  for (int i = 0; i < 2; ++i) {
    io.ReadBlock(m.blocks[i], got);
    EXPECT_EQ(got, std::vector<uint8_t>(kBlockBytes, 10 + i)) << "block " << i;
  }
  const TierProbe p = tc->Probe(tree, "", c.prompt);
  EXPECT_EQ(p.pool_tokens, 8);
}

}  // namespace
}  // namespace prefixd
