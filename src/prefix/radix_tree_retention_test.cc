// Retention in the radix tree (ARCHITECTURE.md invariant 9): marked leaves go last, never
// never; marks split the node where their range ends, expire on the clock, are trimmed
// oldest first beyond a cap, and a hit refreshes them. Generated tokens go first.
// A randomized test compares every step with a reference model of segments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>
#include <vector>

#include "prefix/radix_tree.h"

namespace prefixd {
namespace {

using Tokens = std::vector<int32_t>;
using Blocks = std::vector<BlockId>;
constexpr int kBs = 4;

Tokens Seq(int32_t first, int n) {
  Tokens t(n);
  for (int i = 0; i < n; ++i) t[i] = first * 1000 + i;
  return t;
}

// Inserts `tokens` with fresh blocks that only the tree keeps.
void InsertFresh(RadixTree& tree, BlockPool& pool, const Tokens& tokens, int64_t num_prompt = -1) {
  auto blocks = pool.Allocate(static_cast<int>((tokens.size() + kBs - 1) / kBs));
  ASSERT_TRUE(blocks.has_value());
  if (num_prompt > 0 && num_prompt < static_cast<int64_t>(tokens.size())) {
    tree.Insert("", std::span(tokens).first(num_prompt), *blocks);
  }
  tree.Insert("", tokens, *blocks, nullptr, num_prompt);
  for (BlockId b : *blocks) pool.Unref(b);
}

RetentionMark Mark(int64_t duration_ms, int priority = kDefaultRetentionPriority) {
  return RetentionMark{priority, duration_ms, 0};
}

TEST(RadixTreeRetention, RetainedLeafIsEvictedLastEvenWhenLeastRecent) {
  BlockPool pool(64);
  RadixTree tree(&pool, kBs);
  InsertFresh(tree, pool, Seq(1, 8));  // oldest
  EXPECT_EQ(tree.Retain("", Seq(1, 8), 0, 8, Mark(1000), 0), 8);
  InsertFresh(tree, pool, Seq(2, 8));
  InsertFresh(tree, pool, Seq(3, 8));
  const EvictionPlan plan = tree.PrepareEviction(4);
  ASSERT_EQ(plan.nodes.size(), 2u);
  EXPECT_EQ(plan.nodes[0].node.tokens[0], 2000);
  EXPECT_EQ(plan.nodes[1].node.tokens[0], 3000);
  tree.ApplyEviction(plan);
  EXPECT_EQ(tree.Peek("", Seq(1, 8)).num_tokens, 8);
  tree.CheckInvariants();
}

TEST(RadixTreeRetention, RetentionNeverBlocksEviction) {
  BlockPool pool(64);
  RadixTree tree(&pool, kBs);
  InsertFresh(tree, pool, Seq(1, 8));
  InsertFresh(tree, pool, Seq(2, 8));
  tree.Retain("", Seq(1, 8), 0, 8, Mark(1000), 0);
  tree.Retain("", Seq(2, 8), 0, 8, Mark(1000), 0);
  EXPECT_EQ(tree.Evict(4), 4) << "only retained leaves are left, and they still go";
  EXPECT_EQ(tree.num_nodes(), 0);
  EXPECT_EQ(tree.retained_tokens(), 0);
  tree.CheckInvariants();
}

TEST(RadixTreeRetention, RangeEndingInsideAnEdgeSplitsSoNothingPastItIsRetained) {
  BlockPool pool(64);
  RadixTree tree(&pool, kBs);
  InsertFresh(tree, pool, Seq(1, 12));
  EXPECT_EQ(tree.Retain("", Seq(1, 12), 0, 6, Mark(1000), 0), 6);
  EXPECT_EQ(tree.num_nodes(), 2);
  EXPECT_EQ(tree.retained_tokens(), 6);
  EXPECT_EQ(tree.RetainedPrefixTokens("", Seq(1, 12)), 6);
  // The unretained part [6, 12) goes first; the retained [0, 6) stays.
  tree.ApplyEviction(tree.PrepareEviction(1));
  EXPECT_EQ(tree.Peek("", Seq(1, 12)).num_tokens, 6);
  tree.CheckInvariants();
}

TEST(RadixTreeRetention, MarksExpireOnTheClockAndTheLeafIsOrdinaryAgain) {
  BlockPool pool(64);
  RadixTree tree(&pool, kBs);
  InsertFresh(tree, pool, Seq(1, 8));
  tree.Retain("", Seq(1, 8), 0, 8, Mark(5000), /*now_ms=*/100);
  InsertFresh(tree, pool, Seq(2, 8));
  EXPECT_EQ(tree.next_retention_expiry(), 5100);
  EXPECT_EQ(tree.ExpireRetention(5099), 0);
  EXPECT_EQ(tree.retained_tokens(), 8);
  EXPECT_EQ(tree.ExpireRetention(5100), 8);
  EXPECT_EQ(tree.retained_tokens(), 0);
  tree.CheckInvariants();
  // Least recent again: it goes first now.
  const EvictionPlan plan = tree.PrepareEviction(1);
  ASSERT_FALSE(plan.empty());
  EXPECT_EQ(plan.nodes[0].node.tokens[0], 1000);
}

TEST(RadixTreeRetention, AHitRefreshesTheMark) {
  BlockPool pool(64);
  RadixTree tree(&pool, kBs);
  InsertFresh(tree, pool, Seq(1, 8));
  tree.Retain("", Seq(1, 8), 0, 8, Mark(1000), 0);
  const MatchResult m = tree.Match("", Seq(1, 8), true);
  tree.RefreshRetention(m.node, 900);
  EXPECT_EQ(tree.ExpireRetention(1000), 0) << "the hit at 900 made it last until 1900";
  EXPECT_EQ(tree.ExpireRetention(1900), 8);
}

TEST(RadixTreeRetention, CapEndsTheOldestMarksFirst) {
  BlockPool pool(64);
  RadixTree tree(&pool, kBs);
  for (int s = 1; s <= 3; ++s) {
    InsertFresh(tree, pool, Seq(s, 8));
    tree.Retain("", Seq(s, 8), 0, 8, Mark(100000), /*now_ms=*/s * 10);
  }
  EXPECT_EQ(tree.CapRetention(16), 8);
  EXPECT_EQ(tree.RetainedPrefixTokens("", Seq(1, 8)), 0) << "marked first, dropped first";
  EXPECT_EQ(tree.RetainedPrefixTokens("", Seq(2, 8)), 8);
  EXPECT_EQ(tree.RetainedPrefixTokens("", Seq(3, 8)), 8);
  tree.CheckInvariants();
}

TEST(RadixTreeRetention, GeneratedTokensGoFirstUntilAPromptSendsThemBack) {
  BlockPool pool(64);
  RadixTree tree(&pool, kBs);
  InsertFresh(tree, pool, Seq(1, 12), /*num_prompt=*/6);  // [6, 12) generated
  InsertFresh(tree, pool, Seq(2, 8));                     // newer, prompt only
  EvictionPlan plan = tree.PrepareEviction(1);
  ASSERT_FALSE(plan.empty());
  EXPECT_EQ(plan.nodes[0].node.start, 6) << "the generated leaf goes before a newer prompt";
  // A later prompt containing the reply makes it ordinary prompt tokens.
  InsertFresh(tree, pool, Seq(1, 14));
  tree.CheckInvariants();
  plan = tree.PrepareEviction(1);
  ASSERT_FALSE(plan.empty());
  EXPECT_EQ(plan.nodes[0].node.tokens[0], 2000);
}

// ---- randomized, against a reference model ----
//
// Sequences start with distinct tokens, so each is its own chain of nodes: the segments
// between the boundaries Insert and Retain created. The model keeps, per segment, its mark
// and whether it is generated, and predicts the retained token counts, the split points, what
// expires, and the level of every leaf an eviction plan takes.
class RetentionHarness {
 public:
  explicit RetentionHarness(uint32_t seed) : pool_(4096), tree_(&pool_, kBs), rng_(seed) {}

  void Run(int num_ops) {
    for (int op = 0; op < num_ops && !::testing::Test::HasFailure(); ++op) {
      now_ += 1 + Rand(50);
      const int r = Rand(100);
      if (r < 25) {
        Add();
      } else if (r < 50) {
        RetainSome();
      } else if (r < 60) {
        Hit();
      } else if (r < 70) {
        Expire();
      } else if (r < 78) {
        Cap();
      } else {
        EvictSome();
      }
      Verify();
    }
    std::printf("retention: %d marks, %d expired, %d capped, %d leaves evicted\n", num_marks_,
                num_expired_, num_capped_, num_evicted_);
    EXPECT_GT(num_marks_, 100);
    EXPECT_GT(num_expired_, 10);
    EXPECT_GT(num_evicted_, 100);
  }

 private:
  struct Segment {
    int64_t start = 0;
    RetentionMark mark;
    int64_t marked_ms = 0;
    bool generated = false;
  };
  struct RefSeq {
    Tokens tokens;                  // what the tree holds: [0, len)
    std::vector<Segment> segments;  // ascending starts, [0].start == 0
    int64_t End(size_t i) const {
      return i + 1 < segments.size() ? segments[i + 1].start : static_cast<int64_t>(tokens.size());
    }
  };

  int Rand(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }

  static int Level(const Segment& s) {
    if (s.mark.marked()) return 1 + s.mark.priority;
    return s.generated ? 0 : 1;
  }

  void Add() {
    if (seqs_.size() >= 60) return;
    RefSeq s;
    s.tokens = Seq(next_first_++, 2 + Rand(30));
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const int64_t num_prompt = Rand(2) == 0 ? 1 + Rand(static_cast<int>(n - 1)) : n;
    InsertFresh(tree_, pool_, s.tokens, num_prompt);
    s.segments.push_back(Segment{0, {}, 0, false});
    if (num_prompt < n) s.segments.push_back(Segment{num_prompt, {}, 0, true});
    seqs_.push_back(std::move(s));
  }

  void RetainSome() {
    if (seqs_.empty()) return;
    RefSeq& s = seqs_[Rand(static_cast<int>(seqs_.size()))];
    const int64_t n = static_cast<int64_t>(s.tokens.size());
    const int64_t end = 1 + Rand(static_cast<int>(n) + 3);  // may pass the end
    const int64_t begin = Rand(static_cast<int>(std::min(end, n)));
    const RetentionMark mark{1 + Rand(kMaxRetentionPriority), 50 + Rand(2000), 0};
    const int64_t got = tree_.Retain("", s.tokens, begin, end, mark, now_);
    // The model: a boundary at `end`, then every segment overlapping [begin, end) merges.
    const int64_t stop = std::min(end, n);
    auto it = std::find_if(s.segments.begin(), s.segments.end(),
                           [&](const Segment& g) { return g.start >= stop; });
    if (stop < n && (it == s.segments.end() || it->start != stop)) {
      Segment upper_half = *std::prev(it);
      upper_half.start = stop;
      s.segments.insert(it, upper_half);
    }
    int64_t want = 0;
    for (size_t i = 0; i < s.segments.size(); ++i) {
      Segment& g = s.segments[i];
      if (g.start >= stop || s.End(i) <= begin) continue;
      RetentionMark fresh = mark;
      fresh.until_ms = now_ + mark.duration_ms;
      g.mark = RetentionMark::Merge(g.mark, fresh);
      g.marked_ms = now_;
      want += s.End(i) - g.start;
    }
    EXPECT_EQ(got, want);
    ++num_marks_;
  }

  void Hit() {
    if (seqs_.empty()) return;
    RefSeq& s = seqs_[Rand(static_cast<int>(seqs_.size()))];
    const int64_t q = 1 + Rand(static_cast<int>(s.tokens.size()));
    const MatchResult m = tree_.Match("", std::span(s.tokens).first(q), true);
    ASSERT_EQ(m.num_tokens, q);
    tree_.RefreshRetention(m.node, now_);
    for (Segment& g : s.segments) {
      if (g.start >= q || !g.mark.marked()) continue;
      g.mark = g.mark.RefreshedAt(now_);
      g.marked_ms = now_;
    }
  }

  void Expire() {
    int64_t want = 0;
    for (RefSeq& s : seqs_) {
      for (size_t i = 0; i < s.segments.size(); ++i) {
        Segment& g = s.segments[i];
        if (!g.mark.marked() || g.mark.until_ms > now_) continue;
        want += s.End(i) - g.start;
        g.mark = RetentionMark{};
        ++num_expired_;
      }
    }
    EXPECT_EQ(tree_.ExpireRetention(now_), want);
  }

  // Which marks a cap ends among equal ages is the tree's choice: the model checks that none
  // it ended was younger than one it kept, then reads the marks back.
  void Cap() {
    const int64_t max_tokens = Rand(static_cast<int>(tree_.retained_tokens()) + 1);
    tree_.CapRetention(max_tokens);
    EXPECT_LE(tree_.retained_tokens(), max_tokens);
    int64_t youngest_ended = INT64_MIN, oldest_kept = INT64_MAX;
    for (RefSeq& s : seqs_) {
      for (size_t i = 0; i < s.segments.size(); ++i) {
        Segment& g = s.segments[i];
        if (!g.mark.marked()) continue;
        const MatchResult m = tree_.Peek("", std::span(s.tokens).first(s.End(i)));
        const std::optional<NodeInfo> info = tree_.Inspect(m.node);
        ASSERT_TRUE(info.has_value());
        ASSERT_EQ(info->start, g.start) << "the model's segments differ from the tree's nodes";
        if (info->retention.marked()) {
          EXPECT_EQ(info->retention, g.mark);
          oldest_kept = std::min(oldest_kept, g.marked_ms);
        } else {
          youngest_ended = std::max(youngest_ended, g.marked_ms);
          g.mark = RetentionMark{};
          ++num_capped_;
        }
      }
    }
    EXPECT_LE(youngest_ended, oldest_kept) << "a younger mark was ended before an older one";
  }

  void EvictSome() {
    const EvictionPlan plan = tree_.PrepareEviction(1 + Rand(12));
    for (const EvictionPlan::Entry& e : plan.nodes) {
      int lowest = INT32_MAX;
      for (const RefSeq& s : seqs_) lowest = std::min(lowest, Level(s.segments.back()));
      auto owner = std::find_if(seqs_.begin(), seqs_.end(), [&](const RefSeq& s) {
        return s.tokens[0] / 1000 == e.node.tokens[0] / 1000;
      });
      ASSERT_NE(owner, seqs_.end());
      ASSERT_EQ(owner->segments.back().start, e.node.start) << "a plan took a non-leaf";
      EXPECT_EQ(Level(owner->segments.back()), lowest) << "a leaf went before a lower-ranked one";
      EXPECT_EQ(e.node.retention, owner->segments.back().mark);
      owner->tokens.resize(e.node.start);
      owner->segments.pop_back();
      if (owner->segments.empty()) seqs_.erase(owner);
      ++num_evicted_;
    }
    tree_.ApplyEviction(plan);
  }

  void Verify() {
    tree_.CheckInvariants();
    int64_t retained = 0;
    int num_segments = 0;
    for (const RefSeq& s : seqs_) {
      int64_t mine = 0;
      for (size_t i = 0; i < s.segments.size(); ++i) {
        if (s.segments[i].mark.marked()) mine += s.End(i) - s.segments[i].start;
      }
      ASSERT_EQ(tree_.RetainedPrefixTokens("", s.tokens), mine);
      ASSERT_EQ(tree_.Peek("", s.tokens).num_tokens, static_cast<int64_t>(s.tokens.size()));
      retained += mine;
      num_segments += static_cast<int>(s.segments.size());
    }
    ASSERT_EQ(tree_.retained_tokens(), retained);
    ASSERT_EQ(tree_.num_nodes(), num_segments);
  }

  BlockPool pool_;
  RadixTree tree_;
  std::mt19937 rng_;
  std::vector<RefSeq> seqs_;
  int32_t next_first_ = 1;
  int64_t now_ = 0;
  int num_marks_ = 0, num_expired_ = 0, num_capped_ = 0, num_evicted_ = 0;
};

TEST(RadixTreeRetentionRandomized, MatchesReferenceModel) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    RetentionHarness h(seed);
    h.Run(5000);
  }
}

}  // namespace
}  // namespace prefixd
