// Micro-benchmarks of RadixTree::Match and Insert against a tree holding 10K sequences.
//
// The tree: block size 16; 100 shared "system prompts" of 500..2,000 tokens, and 10K sequences,
// each a system prompt plus its own continuation of 200..2,000 tokens (about 12M distinct
// cached tokens, 750K blocks). Three of the sequences are 1K, 32K and 128K tokens long; the
// benchmarks query those, so a Match walks the whole query.
//
//   ./radix_tree_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "kv/block_pool.h"
#include "prefix/radix_tree.h"

namespace prefixd {
namespace {

constexpr int kBlockSize = 16;
constexpr int kNumSequences = 10'000;
constexpr int kNumSystemPrompts = 100;
constexpr int kPoolBlocks = 3'000'000;

using Tokens = std::vector<int32_t>;

struct World {
  BlockPool pool{kPoolBlocks};
  RadixTree tree{&pool, kBlockSize};
  std::mt19937 rng{42};
  // long_sequences[i]: a cached sequence of kLongLengths[i] tokens.
  std::vector<Tokens> long_sequences;

  Tokens RandomTokens(int n) {
    Tokens t(n);
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % 32000);
    return t;
  }

  // Inserts a sequence the way the engine does: adopt the matched blocks, take fresh ones for
  // the rest (the boundary block is a fresh copy), insert, then drop the sequence's references.
  void InsertLikeEngine(const Tokens& tokens) {
    const MatchResult m = tree.Match("", tokens, /*touch=*/true);
    const int64_t num_full_shared = m.num_tokens / kBlockSize;
    std::vector<BlockId> blocks(m.blocks.begin(), m.blocks.begin() + num_full_shared);
    for (BlockId b : blocks) pool.Ref(b);
    const int needed = static_cast<int>((tokens.size() + kBlockSize - 1) / kBlockSize);
    auto fresh = pool.Allocate(needed - static_cast<int>(num_full_shared));
    if (!fresh) std::abort();
    blocks.insert(blocks.end(), fresh->begin(), fresh->end());
    tree.Insert("", tokens, blocks);
    for (BlockId b : blocks) pool.Unref(b);
  }

  World() {
    std::vector<Tokens> system_prompts;
    for (int i = 0; i < kNumSystemPrompts; ++i) {
      system_prompts.push_back(RandomTokens(500 + static_cast<int>(rng() % 1501)));
    }
    for (int64_t len : {int64_t{1} << 10, int64_t{32} << 10, int64_t{128} << 10}) {
      // Starts like a system prompt (at most half its length), so it shares a prefix too.
      const Tokens& sys = system_prompts[long_sequences.size()];
      Tokens t(sys.begin(), sys.begin() + std::min<int64_t>(len / 2, sys.size()));
      const Tokens rest = RandomTokens(static_cast<int>(len - static_cast<int64_t>(t.size())));
      t.insert(t.end(), rest.begin(), rest.end());
      InsertLikeEngine(t);
      long_sequences.push_back(std::move(t));
    }
    for (int i = 3; i < kNumSequences; ++i) {
      Tokens t = system_prompts[rng() % kNumSystemPrompts];
      const Tokens rest = RandomTokens(200 + static_cast<int>(rng() % 1801));
      t.insert(t.end(), rest.begin(), rest.end());
      InsertLikeEngine(t);
    }
  }
};

World& GetWorld() {
  static World* world = new World();
  return *world;
}

void SetCounters(benchmark::State& state, const World& w) {
  state.counters["tree_nodes"] = w.tree.num_nodes();
  state.counters["tree_tokens"] = static_cast<double>(w.tree.cached_tokens());
  state.SetItemsProcessed(state.iterations() * state.range(1));
}

// state.range(0): which long sequence (0: 1K, 1: 32K, 2: 128K); range(1): its length.
void BM_MatchHit(benchmark::State& state) {
  World& w = GetWorld();
  const Tokens& q = w.long_sequences[state.range(0)];
  for (auto _ : state) {
    MatchResult m = w.tree.Match("", q, /*touch=*/true);
    benchmark::DoNotOptimize(m);
    if (m.num_tokens != static_cast<int64_t>(q.size())) state.SkipWithError("not a full hit");
  }
  SetCounters(state, w);
}

void BM_PeekHit(benchmark::State& state) {
  World& w = GetWorld();
  const Tokens& q = w.long_sequences[state.range(0)];
  for (auto _ : state) {
    MatchResult m = w.tree.Peek("", q);
    benchmark::DoNotOptimize(m);
  }
  SetCounters(state, w);
}

// The query diverges from the cached sequence at its midpoint: half a walk, then a miss.
void BM_MatchDivergesHalfway(benchmark::State& state) {
  World& w = GetWorld();
  Tokens q = w.long_sequences[state.range(0)];
  q[q.size() / 2] = -1;
  for (auto _ : state) {
    MatchResult m = w.tree.Match("", q, /*touch=*/true);
    benchmark::DoNotOptimize(m);
  }
  SetCounters(state, w);
}

// Insert of a sequence already fully present: the walk plus the recency update.
void BM_InsertPresent(benchmark::State& state) {
  World& w = GetWorld();
  const Tokens& q = w.long_sequences[state.range(0)];
  const std::vector<BlockId> blocks = w.tree.Peek("", q).blocks;
  for (auto _ : state) w.tree.Insert("", q, blocks);
  SetCounters(state, w);
}

// Insert of a sequence that follows the long sequence for its first half plus a few tokens
// (a different point each iteration) and then diverges: each iteration walks, splits a long edge
// inside a block, and adds a new leaf of about half the sequence, Ref'ing its blocks. Blocks are
// taken from the pool outside the timed region.
void BM_InsertNewBranch(benchmark::State& state) {
  World& w = GetWorld();
  const Tokens& base = w.long_sequences[state.range(0)];
  const int64_t n = static_cast<int64_t>(base.size());
  const std::vector<BlockId> shared = w.tree.Peek("", base).blocks;
  const int64_t max_iters = state.max_iterations;
  // Prepare every iteration's sequence and blocks up front.
  std::vector<Tokens> seqs;
  std::vector<std::vector<BlockId>> tables;
  for (int64_t i = 0; i < max_iters; ++i) {
    const int64_t p = n / 2 + 1 + (i * 3) % (n / 4);  // divergence, mostly inside a block
    Tokens t = base;
    for (int64_t j = p; j < n; ++j) t[j] = static_cast<int32_t>(100000 + i);
    std::vector<BlockId> table(shared.begin(), shared.begin() + p / kBlockSize);
    for (BlockId b : table) w.pool.Ref(b);
    auto fresh =
        w.pool.Allocate(static_cast<int>((n + kBlockSize - 1) / kBlockSize - p / kBlockSize));
    if (!fresh) {
      state.SkipWithError("pool too small");
      return;
    }
    table.insert(table.end(), fresh->begin(), fresh->end());
    seqs.push_back(std::move(t));
    tables.push_back(std::move(table));
  }
  int64_t i = 0;
  for (auto _ : state) {
    w.tree.Insert("", seqs[i], tables[i]);
    ++i;
  }
  for (auto& table : tables) {
    for (BlockId b : table) w.pool.Unref(b);
  }
  SetCounters(state, w);
}

void Lengths(benchmark::internal::Benchmark* b) {
  b->Args({0, 1 << 10})->Args({1, 32 << 10})->Args({2, 128 << 10});
  b->ArgNames({"seq", "tokens"});
  b->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_MatchHit)->Apply(Lengths);
BENCHMARK(BM_PeekHit)->Apply(Lengths);
BENCHMARK(BM_MatchDivergesHalfway)->Apply(Lengths);
BENCHMARK(BM_InsertPresent)->Apply(Lengths);
BENCHMARK(BM_InsertNewBranch)
    ->Args({0, 1 << 10})
    ->Args({1, 32 << 10})
    ->Args({2, 128 << 10})
    ->ArgNames({"seq", "tokens"})
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(200);

}  // namespace
}  // namespace prefixd
