// PrefixCache: the facade the scheduler talks to for L1 (the block pool indexed by the radix
// tree). It turns a prompt into adopted blocks (Acquire), indexes what sequences computed
// (Insert), makes room when the pool runs low (Evict), and keeps the counters that the stats
// endpoint and metrics read.
//
//   Acquire(prompt)  ->  blocks for [0, hit) Ref'ed for the caller, and a lock on the tree path
//   Insert(tokens, table)  indexes [0, tokens.size()) and trims the tree to its block budget
//   Release(hit)     ->  unlocks the path (the caller's table drops its own references)
//
// Thread safety: every method except stats() and enabled() must be called on the engine
// thread. stats() reads atomics and never blocks the engine (ARCHITECTURE.md invariant 5).
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/tier_controller.h"
#include "kv/block_key.h"
#include "kv/block_pool.h"
#include "prefix/radix_tree.h"

namespace prefixd {

struct PrefixCacheOptions {
  bool enabled = true;
  // Block keys for the content-addressed lower tiers (ARCHITECTURE.md invariant 3).
  BlockHashKind hash = BlockHashKind::kXxh3;
  std::vector<uint8_t> fingerprint;  // ModelFingerprint::Serialize() of the served model
  // Most pool blocks the tree may keep (the --cache-bytes budget in blocks).
  int max_cached_blocks = 0;
};

// What a request got from the cache.
struct CacheHit {
  int64_t num_tokens = 0;       // prompt tokens served from cache, all tiers
  TierHit tier;                 // of which brought in from below the pool
  std::vector<BlockId> blocks;  // covering [0, num_tokens), each Ref'ed for the caller
  NodeId node;                  // locked; pass the hit to Release
};

// A point-in-time copy of the counters; cheap to take from any thread.
struct PrefixCacheStats {
  bool enabled = true;
  int64_t hits = 0;               // requests that reused at least one cached token
  int64_t misses = 0;             // requests that reused none
  int64_t query_tokens = 0;       // prompt tokens looked up
  int64_t hit_tokens = 0;         // prompt tokens served from cache
  int64_t evicted_blocks = 0;     // blocks the tree dropped to make room or meet its budget
  int64_t nodes = 0;
  int64_t cached_tokens = 0;
  int64_t cached_blocks = 0;
  int64_t locked_requests = 0;    // running requests holding a lock on the tree
  int64_t max_cached_blocks = 0;

  double hit_rate() const {
    return hits + misses == 0 ? 0.0 : static_cast<double>(hits) / (hits + misses);
  }
  double avg_hit_tokens() const {
    return hits == 0 ? 0.0 : static_cast<double>(hit_tokens) / hits;
  }
};

// What is resident for a prompt, without touching anything.
struct ProbeResult {
  int64_t resident_tokens = 0;
  int64_t resident_blocks = 0;  // full blocks among the resident tokens
};

class PrefixCache {
 public:
  // `pool` must outlive the cache. `tiers`, when given, adds the lower tiers: Acquire onboards
  // from them, and blocks the tree evicts are offloaded to host RAM.
  PrefixCache(BlockPool* pool, int block_size, const PrefixCacheOptions& options,
              std::unique_ptr<TierController> tiers = nullptr);

  // Matches at most `max_tokens` leading tokens of `tokens` under `salt`, Refs the matched
  // blocks for the caller and locks the path. Counts a hit or a miss. With the cache disabled
  // (kill switch) it returns an empty hit and counts nothing.
  CacheHit Acquire(std::string_view salt, std::span<const int32_t> tokens, int64_t max_tokens);
  // Unlocks what Acquire locked. The caller drops the block references through its table.
  void Release(CacheHit& hit);

  // Indexes `tokens` whose KV is in `blocks` (a sequence's table), then evicts down to the
  // budget. No-op while disabled.
  void Insert(std::string_view salt, std::span<const int32_t> tokens,
              std::span<const BlockId> blocks);
  // Evicts least-recently-used unlocked entries until `num_blocks` pool blocks became free or
  // nothing evictable is left. Returns the number freed.
  int Evict(int num_blocks);
  // Drops every unlocked entry. Returns the number of blocks freed.
  int Clear();
  // Clears one tier: "pool", "host", "disk", "remote", "partial" or "all". "all" is this
  // server's own tiers; the shared remote tier is cleared only when named.
  Status ClearTier(std::string_view tier);

  // A prompt's prefill completed: the lower tiers persist what its scope says (no-op without
  // tiers or while disabled).
  void OnPrefillComplete(std::string_view salt, std::span<const int32_t> prompt,
                         std::span<const BlockId> blocks, std::span<const int64_t> message_starts,
                         const std::optional<ScopeSpec>& scope);
  // Per-tier residency of `tokens`, changing nothing.
  TierProbe ProbeTiers(std::string_view salt, std::span<const int32_t> tokens) const;
  const TierController* tiers() const { return tiers_.get(); }
  TierController* mutable_tiers() { return tiers_.get(); }

  // Tokens of `tokens` resident in the pool under `salt`; no recency update, no counters.
  ProbeResult Probe(std::string_view salt, std::span<const int32_t> tokens) const;

  // h_0 for `salt`: from the model fingerprint and the salt.
  BlockKey RootKey(std::string_view salt) const;
  // The chain keys of the full blocks of `tokens` under `salt`.
  std::vector<BlockKey> BlockKeys(std::string_view salt, std::span<const int32_t> tokens) const;

  // The kill switch. Disabling stops matching and inserting; what is cached stays until
  // evicted or cleared.
  void SetEnabled(bool enabled) { enabled_.store(enabled, std::memory_order_relaxed); }
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }

  PrefixCacheStats stats() const;
  const RadixTree& tree() const { return tree_; }
  int block_size() const { return block_size_; }

 private:
  void PublishGauges();

  BlockPool* pool_;
  int block_size_;
  PrefixCacheOptions options_;
  RadixTree tree_;
  std::unique_ptr<TierController> tiers_;
  std::atomic<bool> enabled_;

  // Counters written by the engine thread, read by anyone.
  std::atomic<int64_t> hits_{0}, misses_{0}, query_tokens_{0}, hit_tokens_{0};
  std::atomic<int64_t> evicted_blocks_{0}, nodes_{0}, cached_tokens_{0}, cached_blocks_{0};
  std::atomic<int64_t> locked_requests_{0};
};

}  // namespace prefixd
