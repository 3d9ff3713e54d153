// CacheReplayer: the prefix cache with its lower tiers and no model, driven the way the engine
// drives it, one request at a time. It answers "what would the server have reused for this
// workload at these budgets?" (`prefixd replay`): every request runs through the same calls
// the engine makes (PrefixCache::Admit until ready, the reads ahead from disk, BlockTable
// writes in prefill chunks then one token per decode step, PrefixCache::Evict when the pool is
// short, OnPromptComputed with the request's scope, Insert of what it computed, Release), over
// the real tree, host RAM store, disk store (files in a scratch folder), scope policy and
// partial tails.
//
//   request: tokens  [0 ............ num_prompt) [num_prompt ....... tokens.size())
//                     prompt: Admit, prefill       generated and computed: decode steps
//
// No KV bytes exist: the pool's blocks hold nothing and every block record carries
// kReplayBlockBytes bytes of zeros. The tiers' byte budgets are therefore given in blocks
// (TierBlocks converts a server's byte budget for its block size in bytes), so each tier
// holds exactly as many blocks as the server's would.
//
// Exactness: for requests that ran one at a time on the server (each waited for the previous
// one's answer and its disk writes), a replay reproduces the server's cached tokens request
// by request; Run waits for the disk writes of each request before returning. Requests that
// overlapped on the server are replayed as if they had not.
//
// Thread safety: none; one thread runs a replay (the disk tier's writer and reader threads
// are internal).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "cache/prefix_cache.h"
#include "cache/scope_policy.h"
#include "kv/block_pool.h"
#include "kv/block_table.h"

namespace prefixd {

// Bytes of KV in each replayed block record (the stores charge records by size, so the real
// size is accounted for by converting budgets to blocks: see TierBlocks).
inline constexpr int64_t kReplayBlockBytes = 8;

// How the server ran: its pool, its engine's chunking, its cache and tier budgets.
struct ReplayConfig {
  bool enabled = true;            // false: the server ran with its prefix cache off
  int block_size = 16;
  int64_t num_kv_blocks = 0;      // pool size (the server's /props num_kv_blocks); > 0
  int64_t max_cached_blocks = 0;  // the tree's budget (--cache-bytes over block bytes); > 0
  int max_chunk_tokens = 512;     // prefill tokens per sequence per step
  int max_batch_tokens = 512;     // tokens per step
  int64_t host_blocks = 0;        // host RAM tier capacity in blocks; 0: no host tier
  int64_t disk_blocks = 0;        // disk tier capacity in blocks; 0: no disk tier
  ScopeSpec scope;                // what the disk tier persists (--disk-prefix-cache)
  int64_t min_tokens = 0;         // --kv-cache-min-tokens
  int partial_max_entries = 4;    // --mru-partial-max-entries; 0: no partial tails
  bool partial_supported = true;  // false for models whose KV cannot be sliced per token
};

// Blocks of `block_bytes` KV bytes and `block_size` tokens that a tier of `budget_bytes`
// holds (each block is charged its record's serialized size, as the host and disk stores do).
int64_t TierBlocks(int64_t budget_bytes, int block_size, int64_t block_bytes);

// One request as the engine ran it.
struct ReplayedRequest {
  std::string_view salt;
  // The prompt, then the generated tokens the engine computed (every generated token but the
  // last, whose KV is never computed).
  std::span<const int32_t> tokens;
  int64_t num_prompt = 0;
  // Chat message starts (the scope policy's auto mode), the request's own scope if it had one.
  std::span<const int64_t> message_starts;
  std::optional<ScopeSpec> scope;
};

struct ReplayOutcome {
  int64_t cached_tokens = 0;  // prompt tokens served from cache, as usage reports them
  TierHit tier;               // of which brought in from host, disk, partial tails
  bool unservable = false;    // the pool could not hold it (the server answers "context")
};

class CacheReplayer {
 public:
  // Fails when the config is out of range (with the field) or the scratch folder of the disk
  // tier cannot be created.
  static StatusOr<std::unique_ptr<CacheReplayer>> Create(const ReplayConfig& config);
  ~CacheReplayer();  // stops the tiers, removes the disk tier's scratch folder

  // Runs one request to its end. Precondition: 0 < num_prompt <= tokens.size().
  ReplayOutcome Run(const ReplayedRequest& request);

  PrefixCacheStats cache_stats() const { return cache_->stats(); }
  TierControllerStats tier_stats() const { return cache_->tier_stats(); }

 private:
  class NullBlockIo;
  CacheReplayer(const ReplayConfig& config, std::string scratch_dir);
  Status Init();
  // As Engine::ReserveWrite for one running sequence: room for `len` tokens after `computed`,
  // evicting from the cache while short. False when nothing is left to evict.
  bool ReserveWrite(BlockTable& table, int64_t computed, int64_t len);

  const ReplayConfig config_;
  const std::string scratch_dir_;  // the disk tier's folder (empty without a disk tier)
  std::unique_ptr<NullBlockIo> io_;
  std::unique_ptr<BlockPool> pool_;
  std::unique_ptr<PrefixCache> cache_;
  int64_t next_ticket_ = 0;
};

}  // namespace prefixd
