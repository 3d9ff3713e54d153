// PrefixCache: the facade the scheduler talks to (ARCHITECTURE.md invariant 7: the engine
// asks, the cache decides). It owns the radix tree and the tier controller and shows neither.
// It admits requests (Admit: longest match, lower-tier reads, the wait for a shared prefill,
// locks), indexes what sequences computed (Insert), makes room when the pool runs low
// (Evict), and keeps the counters that the stats endpoint and metrics read.
//
//   Admit(ticket, tokens)  ->  kPending (ask again next step) or kReady: ticket.hit() holds
//                              the blocks for [0, hit), Ref'ed for the caller, path locked
//   OnPromptComputed(ticket, ...)  indexes the prompt, writes it through to the lower tiers
//   Insert(ticket, tokens, table)  indexes [0, tokens.size()), trims the tree to its budget
//   Release(ticket)        ->  unlocks the path, ends its reads (the caller's table drops
//                              its own block references)
//
// Eviction is a plan (RadixTree::PrepareEviction*) applied in ONE place, ApplyEviction: the
// budget trim after Insert, Evict for room, Clear, and the room Onboard asks for all go
// through it; it offloads the plan's blocks to host RAM in one batch (copied off the engine
// thread: the pool holds them until the copies land, see TierController), counts them and
// publishes the gauges. Block keys are hashed in one place too (BlockKeyer): once per
// request, carried in its ticket, stored on the tree's nodes.
//
// Retention (ARCHITECTURE.md invariant 9): a ticket may carry token ranges to keep
// (RetentionRange: cache_control breakpoints, prompt_cache_retention, prefix_cache.retention).
// They are applied to the tree as marks when the prompt is indexed and again on every hit (a
// hit also refreshes the marks already on its path), capped at --retention-max-share of the
// pool budget (oldest first), and expire on the cache's Clock; evicted marked blocks carry
// their mark to host RAM. Tokens a sequence generated are indexed as `generated`, the first
// to go. Nothing here ever refuses an admission for retention's sake.
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

#include "base/clock.h"
#include "cache/block_keyer.h"
#include "cache/kv_events.h"
#include "cache/tier_controller.h"
#include "kv/block_key.h"
#include "kv/block_pool.h"
#include "kv/retention_mark.h"
#include "kv/state_snapshots.h"
#include "prefix/radix_tree.h"

namespace prefixd {

struct PrefixCacheOptions {
  bool enabled = true;
  // Block keys for the content-addressed lower tiers (ARCHITECTURE.md invariant 3).
  BlockHashKind hash = BlockHashKind::kXxh3;
  std::vector<uint8_t> fingerprint;  // ModelFingerprint::Serialize() of the served model
  // Most pool blocks the tree may keep (the --cache-bytes budget in blocks).
  int max_cached_blocks = 0;
  // Where residency changes go (--kv-events); nullptr: no events. Must outlive the cache.
  // With a log, blocks are keyed (hashed once per request) even without lower tiers.
  KvEventLog* events = nullptr;
  // The clock retention marks run on (nullptr: SteadyClock); must outlive the cache.
  const Clock* clock = nullptr;
  // The share (0..1) of max_cached_blocks that retained tokens may hold (--retention-max-share).
  double retention_max_share = 0.5;
  // Hybrid models (recurrent layers): the pool's state snapshots. A hit is cut back to the
  // longest matched position that has one (StateSnapshots::ResumePoint), the only places a
  // sequence can resume exactly. nullptr for attention-only models. Must outlive the cache.
  StateSnapshots* snapshots = nullptr;
  // Hybrid models: the whole budget (--cache-bytes) that the tree's blocks (block_bytes each)
  // and the snapshots share; 0: snapshots unbounded. max_cached_blocks caps the KV alone (it
  // leaves the checkpoints their share); the snapshots may use whatever the KV does not, since
  // prompt ends and request ends add snapshots of their own. Past the budget, Insert drops
  // the least recently used snapshots (not their blocks: the KV stays, and a resume there
  // moves back to an earlier snapshot).
  int64_t max_cached_bytes = 0;
  int64_t block_bytes = 0;
};

// What a request got from the cache.
struct CacheHit {
  int64_t num_tokens = 0;       // prompt tokens served from cache, all tiers
  TierHit tier;                 // of which brought in from below the pool
  std::vector<BlockId> blocks;  // covering [0, num_tokens), each Ref'ed for the caller
  NodeId node;                  // locked; pass the hit to Release
};

// One request's passage through the cache, held by the engine from its first Admit until
// its Release (the engine never looks inside). It carries what the cache computed once for
// the request: its block keys (extended, never recomputed, as it grows), its slow-tier reads,
// whether it is an in-flight prefill others may wait for, and its hit. Must not move while
// admitted (the cache keeps a pointer to in-flight tickets): keep it in a heap object.
class CacheTicket {
 public:
  CacheTicket() = default;
  // `id` names the request's slow-tier reads (unique among live tickets); `num_prompt` is
  // the number of prompt tokens among the tokens it will be admitted with.
  CacheTicket(int64_t id, std::string salt, int64_t num_prompt,
              std::vector<RetentionRange> retention = {})
      : id_(id), salt_(std::move(salt)), num_prompt_(num_prompt),
        retention_(std::move(retention)) {}

  // What the last kReady Admit gave.
  const CacheHit& hit() const { return hit_; }
  // Whether its slow-tier reads ahead were asked for (once per ticket, by the first Admit no
  // shared prefill held back). A request log records when (engine/request_log.h): which
  // blocks are read is decided then, from what host RAM and the disk held at that moment.
  bool reads_started() const { return reads_started_; }

 private:
  friend class PrefixCache;
  int64_t id_ = -1;
  std::string salt_;
  int64_t num_prompt_ = 0;
  std::vector<RetentionRange> retention_;  // ranges of the prompt to keep
  std::span<const int32_t> tokens_;  // as last admitted (valid while in flight)
  BlockKeyChain keys_;               // of tokens_, when the cache keys blocks (it has tiers)
  bool keys_rooted_ = false;         // keys_.root is set
  bool reads_started_ = false;       // slow-tier reads asked for (once per ticket)
  bool reads_pending_ = false;       // ... and not finished yet
  bool in_flight_ = false;           // admitted, prompt not computed yet: others may wait
  bool prompt_indexed_ = false;      // OnPromptComputed indexed the prompt
  bool retention_counted_ = false;   // counted in retention_requests
  CacheHit hit_;
};

enum class Admission {
  kPending,  // not yet: lower-tier reads or a shared prefill are under way; ask next step
  kReady,    // admitted: the ticket's hit is Ref'ed and locked
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
  // Retention in the pool: tokens on marked nodes now (gauge); tokens whose marks ended on
  // the clock or beyond the retained share (counters); requests that asked for retention.
  int64_t retained_tokens = 0;
  int64_t max_retained_tokens = 0;
  int64_t retention_expired_tokens = 0;
  int64_t retention_capped_tokens = 0;
  int64_t retention_requests = 0;
  // Hybrid models: recurrent-state snapshots beside the pool's blocks (those of the tree and
  // of running sequences) and their bytes; 0 otherwise.
  int64_t state_snapshots = 0;
  int64_t state_snapshot_bytes = 0;

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
  int64_t retained_tokens = 0;  // of the resident tokens, those on marked nodes
};

class PrefixCache {
 public:
  // `pool` must outlive the cache. `tiers`, when given, adds the lower tiers: Acquire onboards
  // from them, and blocks the tree evicts are offloaded to host RAM.
  PrefixCache(BlockPool* pool, int block_size, const PrefixCacheOptions& options,
              std::unique_ptr<TierController> tiers = nullptr);

  // Admits a request whose known tokens are `tokens` (the prompt, plus what it generated
  // before a preemption); at least the last one is always computed (its logits are needed),
  // so the hit is at most tokens.size() - 1. kPending while the request should wait: a
  // running prefill will put more of its prompt in the pool than the pool holds now (so
  // identical prompts share blocks), or its slow-tier blocks are being read ahead (started
  // on the first call; the engine thread never waits on the disk or Redis). kReady: the
  // lookup ran (pool, then host, read-ahead, partial tails; see TierController), the hit is
  // in ticket.hit(), Ref'ed for the caller and locked until Release. `tokens` must stay
  // unchanged until the prompt is computed. Disabled: kReady with an empty hit.
  Admission Admit(CacheTicket& ticket, std::span<const int32_t> tokens);
  // The ticket's prompt (`prompt`, in `blocks`) is computed: it stops being an in-flight
  // prefill; the first time, the prompt is indexed and the lower tiers persist what its scope
  // says (`message_starts`, `scope`: see ScopePolicy).
  void OnPromptComputed(CacheTicket& ticket, std::span<const int32_t> prompt,
                        std::span<const BlockId> blocks, std::span<const int64_t> message_starts,
                        const std::optional<ScopeSpec>& scope);
  // Indexes the ticket's `tokens` (a prefix of what it computed) as Insert below, reusing
  // and extending its keys.
  void Insert(CacheTicket& ticket, std::span<const int32_t> tokens,
              std::span<const BlockId> blocks);
  // Unlocks what Admit locked, ends the ticket's reads (those it did not use are dropped)
  // and its in-flight prefill. The ticket may be admitted again (after a preemption).
  void Release(CacheTicket& ticket);
  // Waits up to `timeout_ms` for any slow-tier read to finish, so that an engine with only
  // pending admissions does not spin. Returns at once without slow tiers.
  void WaitForReads(int timeout_ms);

  // Matches at most `max_tokens` leading tokens of `tokens` under `salt`, Refs the matched
  // blocks for the caller and locks the path, onboarding from host RAM and the partial
  // tails first (no slow-tier reads: see Admit). Counts a hit or a miss. With the cache
  // disabled (kill switch) it returns an empty hit and counts nothing.
  CacheHit Acquire(std::string_view salt, std::span<const int32_t> tokens, int64_t max_tokens);
  // Unlocks what Acquire locked. The caller drops the block references through its table.
  void Release(CacheHit& hit);

  // Indexes `tokens` whose KV is in `blocks` (a sequence's table), then evicts down to the
  // budget. No-op while disabled.
  void Insert(std::string_view salt, std::span<const int32_t> tokens,
              std::span<const BlockId> blocks);
  // Evicts least-recently-used unlocked entries until `num_blocks` pool blocks became free or
  // nothing evictable is left. Returns the number freed. Blocks being copied to host RAM are
  // free once their copies land: Evict waits for those (the caller needs the room now), a
  // budget trim does not. While blocks nobody uses wait for copies, Evict only waits for
  // them and returns how many that freed (the caller asks again if still short), so the tree
  // never loses more than it would if the copies were made at once.
  int Evict(int num_blocks);
  // Drops every unlocked entry. Returns the number of blocks freed.
  int Clear();
  // Waits for the blocks being copied to lower tiers (offload, write-through) to be copied,
  // and returns the ones nobody uses to the pool. The idle engine calls it, so that what
  // the tiers hold, their counters and events are settled when there is nothing to do.
  void WaitForCopies();
  // Clears one tier: "pool", "host", "disk", "remote", "partial" or "all". "all" is this
  // server's own tiers; the shared remote tier is cleared only when named.
  Status ClearTier(std::string_view tier);

  // The chain of block keys of `tokens` under `salt`, for the probes below: the probe's
  // caller hashes once, on its own thread (any thread), with the cache's BlockKeyer.
  BlockKeyChain ProbeKeys(std::string_view salt, std::span<const int32_t> tokens) const;
  // Per-tier residency of `tokens`, changing nothing (engine thread; no remote). `keys` is
  // ProbeKeys(salt, tokens).
  TierProbe ProbeTiers(std::string_view salt, std::span<const int32_t> tokens,
                       const BlockKeyChain& keys) const;
  // Completes `probe` with the remote tier: a round trip, so any thread but the engine's.
  void ProbeRemote(const BlockKeyChain& keys, TierProbe* probe) const;
  // Ends the marks whose time is up (pool and host RAM), on the cache's clock. Admit calls it;
  // cheap while nothing is due.
  void ExpireRetention();

  // Replay only: the next admissions take at most `max_blocks` blocks from the disk tier (-1:
  // no limit). See TierController::LimitDiskOnboard.
  void LimitDiskOnboard(int64_t max_blocks) {
    if (tiers_) tiers_->LimitDiskOnboard(max_blocks);
  }
  // Replay only: waits for every read ahead asked for so far (TierController::WaitForAllPrefetches).
  void WaitForAllReads() {
    if (tiers_) tiers_->WaitForAllPrefetches();
  }

  // Deletes this model's blocks from the remote tier (round trips: any thread but the
  // engine's). OK without a remote tier.
  Status ClearRemote();
  // Blocks until the queued disk (remote) writes are done (tests, shutdown).
  void FlushDiskWrites();
  void FlushRemoteWrites();

  // The lower tiers, read-only: whether there are any, their counters (any thread) and the
  // server's default persistence scope. Empty stats and scope without tiers.
  bool has_tiers() const { return tiers_ != nullptr; }
  TierControllerStats tier_stats() const;
  ScopeSpec default_scope() const;

  // Tokens of `tokens` resident in the pool under `salt`; no recency update, no counters.
  ProbeResult Probe(std::string_view salt, std::span<const int32_t> tokens) const;

  // The chain keys of the full blocks of `tokens` under `salt` (BlockKeyer::Chain).
  std::vector<BlockKey> BlockKeys(std::string_view salt, std::span<const int32_t> tokens) const;

  // The kill switch. Disabling stops matching and inserting; what is cached stays until
  // evicted or cleared.
  void SetEnabled(bool enabled) { enabled_.store(enabled, std::memory_order_relaxed); }
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }

  PrefixCacheStats stats() const;
  int block_size() const { return block_size_; }

  // KV events (kv_events.h): closes what changed since the last call as one batch. The engine
  // calls it once per step; without a log it does nothing.
  void FlushEvents();

 private:
  // Keys are needed only by the lower tiers and KV events: without them nothing is hashed.
  bool keyed() const { return tiers_ != nullptr || options_.events != nullptr; }
  // KV events: the full blocks of `tokens` past the first `before` tokens, up to `after`
  // tokens, became resident in the pool (no-op without a log).
  void EmitPoolStored(std::span<const int32_t> tokens, const BlockKeyChain& keys, int64_t before,
                      int64_t after);
  // Acquire with the chain of `tokens` (keyed() only; else nullptr), for the request whose
  // reads ahead are `ticket`'s (-1: none).
  CacheHit AcquireKeyed(std::string_view salt, std::span<const int32_t> tokens,
                        int64_t max_tokens, const BlockKeyChain* keys, int64_t ticket = -1);
  // With `ticket`: its generated tokens are indexed as such and its retention applied before
  // the budget trim (so what it asks to keep is never the first to go).
  void InsertKeyed(std::string_view salt, std::span<const int32_t> tokens,
                   std::span<const BlockId> blocks, const BlockKeyChain* keys,
                   const CacheTicket* ticket = nullptr);
  // Marks the ticket's retention ranges on what the tree holds of `tokens`, then trims the
  // retained share to its cap: the oldest marks end in the pool, and their blocks are copied
  // to host RAM still retained (TierController::Offload).
  void ApplyRetention(const CacheTicket& ticket, std::span<const int32_t> tokens);
  // The one place every eviction is applied: offloads the plan's blocks to host RAM in one
  // batch, removes its nodes, counts the blocks the tree dropped, publishes the gauges and
  // the KV events.
  // Returns the blocks that became free in the pool.
  int ApplyEviction(const EvictionPlan& plan);
  // Hybrids: drops least recently used snapshots while blocks and snapshots exceed
  // max_cached_bytes.
  void TrimSnapshots();
  // The ticket's chain extended to `tokens` (nullptr when !keyed()).
  const BlockKeyChain* KeysOf(CacheTicket& ticket, std::span<const int32_t> tokens);
  // True when a running prefill with the ticket's salt shares at least a block more of its
  // tokens than the pool holds now.
  bool WaitsForSharedPrefill(const CacheTicket& ticket) const;
  // True while the ticket's slow-tier blocks are being read (starting the reads first).
  bool WaitsForReads(CacheTicket& ticket);
  void EndReads(CacheTicket& ticket);
  void LeaveInFlight(CacheTicket& ticket);
  // Hybrid models: cuts `m` back to where a state snapshot lets a sequence resume, and the
  // per-tier counts of `tier` with it (their tokens are the match's last ones).
  void CutToResumePoint(MatchResult& m, TierHit& tier) const;
  void PublishGauges();

  BlockPool* pool_;
  int block_size_;
  PrefixCacheOptions options_;
  BlockKeyer keyer_;
  RadixTree tree_;
  std::unique_ptr<TierController> tiers_;
  std::atomic<bool> enabled_;
  // Admitted tickets whose prompt is not computed yet (few: at most the running requests).
  std::vector<const CacheTicket*> in_flight_;

  // Counters written by the engine thread, read by anyone.
  std::atomic<int64_t> hits_{0}, misses_{0}, query_tokens_{0}, hit_tokens_{0};
  std::atomic<int64_t> evicted_blocks_{0}, nodes_{0}, cached_tokens_{0}, cached_blocks_{0};
  std::atomic<int64_t> locked_requests_{0};
  std::atomic<int64_t> retained_tokens_{0}, retention_expired_{0}, retention_capped_{0};
  std::atomic<int64_t> retention_requests_{0};
  const Clock* clock_;
  const int64_t max_retained_tokens_;
};

}  // namespace prefixd
