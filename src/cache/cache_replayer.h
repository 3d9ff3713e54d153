// CacheReplayer: the prefix cache with its lower tiers and no model, driven the way the engine
// drives it. It answers "what would the server have reused for this workload at these
// budgets?" (`prefixd replay`) through the same calls the engine makes (PrefixCache::Admit
// until ready, the reads ahead from disk, BlockTable writes in prefill chunks then one token
// per decode step, PrefixCache::Evict when the pool is short, OnPromptComputed with the
// request's scope, Insert of what it computed, Release), over the real tree, host RAM store,
// disk store (files in a scratch folder), scope policy, retention and partial tails.
//
//   request: tokens  [0 ............ num_prompt) [num_prompt ....... tokens.size())
//                     prompt: Admit, prefill       generated and computed: decode steps
//
// Two ways to drive it:
//   - Run: one request at a time, whole (a trace; a request log replayed at other budgets than
//     the server's, where the server's interleaving would have been different anyway).
//   - the engine's own operations, one by one, in the order its thread made them (a request
//     log at the server's budgets, engine/request_log.h): NewSequence, StartReads, Admit, Write (with the
//     sequences the engine preempted for room), PromptComputed, Finish, SetEnabled (the kill
//     switch), ClearTier, SetTime (the time the cache saw, for retention).
//
// Exactness of the second way: the tree, the pool, host RAM, the partial tails and retention
// in the pool and host RAM change only on the engine thread, in an order the copies to host
// RAM do not change (TierController), so the same calls with the same times give the same
// hits. The disk is the exception: what it holds when a request reads ahead depends on when
// the server's background writes landed. So the replay's disk keeps every block written (no
// budget: LimitDiskOnboard needs a superset of the server's disk), writes land before each
// admission, and each admission takes exactly as many disk blocks as the server's did
// (Admit's `disk_blocks`). A remote tier is not replayed.
//
// No KV bytes exist: the pool's blocks hold nothing and every block record carries
// kReplayBlockBytes bytes of zeros. The tiers' byte budgets are therefore given in blocks
// (TierBlocks converts a server's byte budget for its block size in bytes), so each tier
// holds exactly as many blocks as the server's would.
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
#include <vector>

#include "base/clock.h"
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
  double retention_max_share = 0.5;  // --retention-max-share
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

// One request driven operation by operation (CacheReplayer::NewSequence). Holds its ticket,
// so it must not move: the replayer hands it out in a unique_ptr.
struct ReplaySequence {
  CacheTicket ticket;
  BlockTable table;
  std::span<const int32_t> tokens;  // every token it will know (prompt, then generated)
  int64_t num_prompt = 0;
  std::span<const int64_t> message_starts;
  std::optional<ScopeSpec> scope;
  int64_t computed = 0;   // tokens whose KV its table holds (the engine's num_computed)
  bool running = false;   // admitted and neither finished nor preempted
};

class CacheReplayer {
 public:
  // Fails when the config is out of range (with the field) or the scratch folder of the disk
  // tier cannot be created.
  static StatusOr<std::unique_ptr<CacheReplayer>> Create(const ReplayConfig& config);
  ~CacheReplayer();  // stops the tiers, removes the disk tier's scratch folder

  // Runs one request to its end. Precondition: 0 < num_prompt <= tokens.size().
  ReplayOutcome Run(const ReplayedRequest& request);

  // ---- the engine's operations, one by one ----
  // A request as Engine::Add makes it. `tokens` and `message_starts` must outlive it.
  std::unique_ptr<ReplaySequence> NewSequence(int64_t id, std::string salt,
                                              std::span<const int32_t> tokens, int64_t num_prompt,
                                              std::span<const int64_t> message_starts,
                                              std::optional<ScopeSpec> scope,
                                              std::vector<RetentionRange> retention);
  // As Engine::Admit when the cache answered kPending for the sequence's first `known` tokens
  // after starting its reads ahead: which blocks the disk is asked for is decided now, from
  // what host RAM and the pool hold now (TierController::KeysToLoad), not at the admission.
  // False when the replay's cache found nothing to read (it admitted the sequence at once:
  // the replay differs from the server; the hit is given back).
  bool StartReads(ReplaySequence& seq, int64_t known);
  // As Engine::Admit when the cache answered kReady for the sequence's first `known` tokens:
  // waits for the reads ahead, takes at most `disk_blocks` blocks from the disk (-1: any),
  // adopts the hit. Precondition: not running, 0 < known <= tokens.size().
  const CacheHit& Admit(ReplaySequence& seq, int64_t known, int64_t disk_blocks);
  // As Engine::ReserveWrite for `len` tokens after seq.computed: evicts while short and, when
  // nothing is left to evict, preempts the next of `victims` (the ones the engine chose).
  // True when the room was found (computed advances by len); false when it was not, or the
  // victims ran out or were not all needed (the replay then differs from the server).
  bool Write(ReplaySequence& seq, int64_t len, std::span<ReplaySequence* const> victims);
  // As Engine::ApplyResults when the prompt's last chunk is computed.
  void PromptComputed(ReplaySequence& seq);
  // As Engine::Finish: indexes what it computed, unlocks, drops its blocks.
  void Finish(ReplaySequence& seq);
  // The kill switch, and the admin API's clear (PrefixCache::ClearTier).
  void SetEnabled(bool enabled) { cache_->SetEnabled(enabled); }
  Status ClearTier(std::string_view tier) { return cache_->ClearTier(tier); }
  // The time the cache sees from now on (retention marks; the log's milliseconds).
  void SetTime(int64_t ms) { clock_.Set(ms); }

  PrefixCacheStats cache_stats() const { return cache_->stats(); }
  TierControllerStats tier_stats() const { return cache_->tier_stats(); }

 private:
  class NullBlockIo;
  CacheReplayer(const ReplayConfig& config, std::string scratch_dir);
  Status Init();
  // As Engine::ReserveWrite for one running sequence: room for `len` tokens after `computed`,
  // evicting from the cache while short. False when nothing is left to evict.
  bool ReserveWrite(BlockTable& table, int64_t computed, int64_t len);
  // As Engine::PreemptNewest for `seq`: indexes what it computed, releases it.
  void Preempt(ReplaySequence& seq);

  const ReplayConfig config_;
  const std::string scratch_dir_;  // the disk tier's folder (empty without a disk tier)
  ManualClock clock_;              // the cache's and the tiers' time (SetTime)
  std::unique_ptr<NullBlockIo> io_;
  std::unique_ptr<BlockPool> pool_;
  std::unique_ptr<PrefixCache> cache_;
  int64_t next_ticket_ = 0;
};

}  // namespace prefixd
