// StateSnapshots: a snapshot is found only at its exact position, is replaced by a later Put,
// and goes with its block when the pool frees it (the free listener), so a reused block never
// serves another sequence's state.
#include "kv/state_snapshots.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace prefixd {
namespace {

TEST(StateSnapshots, FoundOnlyAtItsPosition) {
  StateSnapshots s(4, 3);
  const std::vector<float> a = {1, 2, 3};
  s.Put(BlockId(1), 16, a);
  EXPECT_EQ(s.PositionAtMost(BlockId(1), 100), 16);
  EXPECT_EQ(s.PositionAtMost(BlockId(1), 15), -1);
  EXPECT_EQ(s.PositionAtMost(BlockId(0), 100), -1);
  ASSERT_EQ(s.Get(BlockId(1), 16).size(), 3u);
  EXPECT_EQ(s.Get(BlockId(1), 16)[2], 3.0f);
  EXPECT_TRUE(s.Get(BlockId(1), 15).empty());
  EXPECT_TRUE(s.Get(BlockId(0), 16).empty());
  EXPECT_EQ(s.count(), 1);
  EXPECT_EQ(s.bytes(), 3 * 4);
}

TEST(StateSnapshots, ABlockKeepsOnePerPositionAndDropFreesAll) {
  StateSnapshots s(2, 2);
  s.Put(BlockId(0), 7, std::vector<float>{1, 1});
  s.Put(BlockId(0), 16, std::vector<float>{2, 2});
  s.Put(BlockId(0), 16, std::vector<float>{3, 3});  // replaces
  EXPECT_EQ(s.count(), 2);
  EXPECT_EQ(s.Get(BlockId(0), 7)[0], 1.0f);
  EXPECT_EQ(s.Get(BlockId(0), 16)[0], 3.0f);
  EXPECT_EQ(s.PositionAtMost(BlockId(0), 15), 7);
  EXPECT_EQ(s.PositionAtMost(BlockId(0), 16), 16);
  s.Drop(BlockId(0));
  s.Drop(BlockId(0));  // dropping nothing is fine
  EXPECT_EQ(s.count(), 0);
  EXPECT_EQ(s.PositionAtMost(BlockId(0), 100), -1);
}

// The deepest snapshot at or below the match's end: a block boundary or a prompt's end.
TEST(StateSnapshots, ResumePointIsTheDeepestSnapshotInTheMatch) {
  constexpr int kBs = 4;
  StateSnapshots s(8, 1);
  const std::vector<BlockId> blocks = {BlockId(0), BlockId(1), BlockId(2), BlockId(3)};
  EXPECT_EQ(s.ResumePoint(blocks, 15, kBs), 0);
  s.Put(BlockId(0), 4, std::vector<float>{1});
  s.Put(BlockId(2), 12, std::vector<float>{1});
  s.Put(BlockId(3), 14, std::vector<float>{1});  // a prompt's end inside block 3
  EXPECT_EQ(s.ResumePoint(blocks, 0, kBs), 0);
  EXPECT_EQ(s.ResumePoint(blocks, 3, kBs), 0);
  EXPECT_EQ(s.ResumePoint(blocks, 4, kBs), 4);
  EXPECT_EQ(s.ResumePoint(blocks, 11, kBs), 4);  // block 1 has none
  EXPECT_EQ(s.ResumePoint(blocks, 12, kBs), 12);
  EXPECT_EQ(s.ResumePoint(blocks, 13, kBs), 12);  // before the snapshot in block 3: unusable
  EXPECT_EQ(s.ResumePoint(blocks, 14, kBs), 14);
  EXPECT_EQ(s.ResumePoint(blocks, 16, kBs), 14);
  s.Put(BlockId(3), 16, std::vector<float>{1});  // block 3's end, beside its prompt end
  EXPECT_EQ(s.ResumePoint(blocks, 15, kBs), 14);
  EXPECT_EQ(s.ResumePoint(blocks, 16, kBs), 16);
  // A snapshot outside its block's positions (not how the engine puts them) is never used.
  s.Put(BlockId(1), 3, std::vector<float>{1});
  EXPECT_EQ(s.ResumePoint(blocks, 11, kBs), 4);
}

TEST(StateSnapshots, BytesRoundTripAndAWrongSizeIsRefused) {
  StateSnapshots s(2, 3);
  const std::vector<float> state = {1.5f, -2.0f, 3.25f};
  s.Put(BlockId(0), 16, state);
  std::vector<uint8_t> bytes = {9};  // what came before (a block's KV) stays
  EXPECT_FALSE(s.AppendBytes(BlockId(0), 15, &bytes));
  ASSERT_TRUE(s.AppendBytes(BlockId(0), 16, &bytes));
  ASSERT_EQ(bytes.size(), 1u + 12u);
  EXPECT_FALSE(s.PutBytes(BlockId(1), 16, std::span<const uint8_t>(bytes)));  // 13 bytes
  ASSERT_TRUE(s.PutBytes(BlockId(1), 16, std::span<const uint8_t>(bytes).subspan(1)));
  const std::span<const float> got = s.Get(BlockId(1), 16);
  EXPECT_EQ(std::vector<float>(got.begin(), got.end()), state);
}

TEST(StateSnapshots, GoesWithItsBlockWhenThePoolFreesIt) {
  BlockPool pool(2);
  StateSnapshots s(2, 1);
  pool.SetFreeListener([&](BlockId b) { s.Drop(b); });
  auto blocks = pool.Allocate(1);
  ASSERT_TRUE(blocks);
  const BlockId b = (*blocks)[0];
  s.Put(b, 16, std::vector<float>{5});
  pool.Ref(b);
  pool.Unref(b);  // still referenced once: the snapshot stays
  EXPECT_EQ(s.PositionAtMost(b, 16), 16);
  pool.Unref(b);  // freed: the snapshot goes
  EXPECT_EQ(s.PositionAtMost(b, 16), -1);
  EXPECT_EQ(s.count(), 0);
  pool.CheckInvariants();
}

}  // namespace
}  // namespace prefixd

namespace prefixd {
namespace {

// Random Put / Touch / Drop / DropLeastRecentlyUsed against a list of (block, position, last
// use): the snapshot dropped for the budget is always the one least recently put or touched,
// and count() and Get agree with the list after every step.
TEST(StateSnapshots, DropsTheLeastRecentlyUsedLikeAReferenceList) {
  struct Ref {
    int block;
    int64_t position;
    uint64_t used;
    float value;
  };
  std::mt19937 rng(17);
  constexpr int kBlocks = 6;
  StateSnapshots s(kBlocks, 3);
  std::vector<Ref> ref;
  uint64_t tick = 0;
  const auto find = [&](int b, int64_t p) {
    return std::find_if(ref.begin(), ref.end(), [&](const Ref& r) { return r.block == b && r.position == p; });
  };
  for (int step = 0; step < 4000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    const int b = static_cast<int>(rng() % kBlocks);
    const int64_t p = 1 + static_cast<int64_t>(rng() % 4);
    if (op < 4) {
      const float v = static_cast<float>(step);
      s.Put(BlockId(b), p, std::vector<float>(3, v));
      if (auto it = find(b, p); it != ref.end()) {
        it->used = ++tick;
        it->value = v;
      } else {
        ref.push_back({b, p, ++tick, v});
      }
    } else if (op < 6) {
      s.Touch(BlockId(b), p);
      if (auto it = find(b, p); it != ref.end()) it->used = ++tick;
    } else if (op < 7) {
      s.Drop(BlockId(b));
      std::erase_if(ref, [&](const Ref& r) { return r.block == b; });
    } else {
      const bool dropped = s.DropLeastRecentlyUsed();
      ASSERT_EQ(dropped, !ref.empty()) << "step " << step;
      if (dropped) {
        ref.erase(std::min_element(ref.begin(), ref.end(),
                                   [](const Ref& x, const Ref& y) { return x.used < y.used; }));
      }
    }
    ASSERT_EQ(s.count(), static_cast<int64_t>(ref.size())) << "step " << step;
    for (int bb = 0; bb < kBlocks; ++bb) {
      for (int64_t pp = 1; pp <= 4; ++pp) {
        const auto it = find(bb, pp);
        const std::span<const float> got = s.Get(BlockId(bb), pp);
        ASSERT_EQ(got.empty(), it == ref.end()) << "step " << step << " block " << bb << " @" << pp;
        if (!got.empty()) {
          ASSERT_EQ(got[0], it->value);
        }
      }
    }
  }
}

}  // namespace
}  // namespace prefixd
