#include "prefix/partial_tail_store.h"

#include <gtest/gtest.h>

#include <random>

namespace prefixd {
namespace {

BlockKey Key(uint64_t v) { return BlockKey{v, v * 31 + 7}; }

PartialTail Tail(uint64_t parent, std::vector<int32_t> tokens) {
  return PartialTail{Key(parent), std::move(tokens), std::vector<uint8_t>(8, static_cast<uint8_t>(parent))};
}

TEST(PartialTailStore, HitWhenNextTokensStartWithTheTail) {
  PartialTailStore store(4);
  store.Stash(Tail(1, {5, 6, 7}));
  auto hit = store.Take(Key(1), std::vector<int32_t>{5, 6, 7, 8, 9});
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->tokens, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(store.stats().hits, 1);
  EXPECT_EQ(store.stats().tokens_saved, 3);
  EXPECT_EQ(store.size(), 1) << "a hit keeps the entry";
}

TEST(PartialTailStore, MismatchEvictsOnlyThatEntry) {
  PartialTailStore store(4);
  store.Stash(Tail(1, {5, 6, 7}));
  store.Stash(Tail(2, {5, 6, 7}));
  EXPECT_FALSE(store.Take(Key(1), std::vector<int32_t>{5, 6, 9}).has_value());
  EXPECT_EQ(store.size(), 1);
  EXPECT_TRUE(store.Take(Key(2), std::vector<int32_t>{5, 6, 7}).has_value());
  // A next-token run shorter than the tail does not apply either.
  EXPECT_FALSE(store.Take(Key(2), std::vector<int32_t>{5, 6}).has_value());
  EXPECT_EQ(store.size(), 0);
  EXPECT_EQ(store.stats().evictions, 2);
}

TEST(PartialTailStore, LruOrderWithCapacity) {
  PartialTailStore store(2);
  store.Stash(Tail(1, {1}));
  store.Stash(Tail(2, {2}));
  ASSERT_TRUE(store.Take(Key(1), std::vector<int32_t>{1}));  // 1 is now most recent
  store.Stash(Tail(3, {3}));                                    // evicts 2
  EXPECT_TRUE(store.Peek(Key(1), std::vector<int32_t>{1}));
  EXPECT_FALSE(store.Peek(Key(2), std::vector<int32_t>{2}));
  EXPECT_TRUE(store.Peek(Key(3), std::vector<int32_t>{3}));
  store.CheckInvariants();
}

TEST(PartialTailStore, DisabledAtZero) {
  PartialTailStore store(0);
  store.Stash(Tail(1, {1}));
  EXPECT_EQ(store.size(), 0);
  EXPECT_FALSE(store.Take(Key(1), std::vector<int32_t>{1}).has_value());
  EXPECT_EQ(store.stats().stashes, 0);
}

TEST(PartialTailStore, PeekChangesNothing) {
  PartialTailStore store(2);
  store.Stash(Tail(1, {1}));
  store.Stash(Tail(2, {2}));
  EXPECT_FALSE(store.Peek(Key(1), std::vector<int32_t>{9}));  // would evict with Take
  EXPECT_TRUE(store.Peek(Key(1), std::vector<int32_t>{1}));
  store.Stash(Tail(3, {3}));  // 1 is still the least recent: Peek did not refresh it
  EXPECT_FALSE(store.Peek(Key(1), std::vector<int32_t>{1}));
  EXPECT_EQ(store.stats().hits, 0);
}

// Thousands of random operations against a naive reference: a vector of entries, most recent
// first.
TEST(PartialTailStore, RandomOperationsMatchReferenceModel) {
  std::mt19937 rng(11);
  const int cap = 5;
  PartialTailStore store(cap);
  std::vector<PartialTail> ref;
  auto find = [&](uint64_t p) {
    return std::find_if(ref.begin(), ref.end(), [&](const PartialTail& t) { return t.parent == Key(p); });
  };
  for (int step = 0; step < 20000; ++step) {
    const uint64_t parent = rng() % 9;
    std::vector<int32_t> tokens(1 + rng() % 3);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % 3);
    switch (rng() % 4) {
      case 0: {
        store.Stash(Tail(parent, tokens));
        if (auto it = find(parent); it != ref.end()) ref.erase(it);
        ref.insert(ref.begin(), Tail(parent, tokens));
        if (static_cast<int>(ref.size()) > cap) ref.pop_back();
        break;
      }
      case 1:
      case 2: {
        auto got = store.Take(Key(parent), tokens);
        auto it = find(parent);
        const bool applies = it != ref.end() && tokens.size() >= it->tokens.size() &&
                             std::equal(it->tokens.begin(), it->tokens.end(), tokens.begin());
        ASSERT_EQ(got.has_value(), applies);
        if (it != ref.end()) {
          PartialTail t = *it;
          ref.erase(it);
          if (applies) {
            ASSERT_EQ(got->tokens, t.tokens);
            ref.insert(ref.begin(), t);
          }
        }
        break;
      }
      default: {
        const BlockKey k = Key(parent);
        store.DropParents(std::span<const BlockKey>(&k, 1));
        if (auto it = find(parent); it != ref.end()) ref.erase(it);
      }
    }
    store.CheckInvariants();
    ASSERT_EQ(store.size(), static_cast<int>(ref.size()));
  }
}

}  // namespace
}  // namespace prefixd
