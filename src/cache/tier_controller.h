// TierController: moves full KV blocks between the pool (L1) and the lower tiers, and keeps
// the partial tails (ARCHITECTURE.md, "The cache, tier by tier").
//
//   pool eviction  --Offload-->  host RAM (L2)            (an eviction plan's blocks, one batch)
//   prefill done   --write-through, in scope-->  disk (L3), remote (L4)
//                                                (one background writer thread per tier)
//   admission      <--Onboard--  host, then disk, then remote, then the partial-tail store
//
// A lookup walks the blocks after the pool's match through host RAM, disk and remote, in
// order, and stops at the first block no tier holds (a prefix is contiguous). Found blocks are
// copied into fresh pool blocks and inserted into the tree, so the ordinary match then finds
// them.
//
// The slow tiers (disk, remote) are read ahead off the engine thread: KeysToLoad names the
// blocks to fetch (disk: those its index holds; remote: every block after that, since only a
// round trip can tell), Prefetch reads them on the reader thread (remote: one MGET), and
// Onboard takes the records from there. The engine thread never waits on Redis.
//
// The controller never hashes: every call gets the request's BlockKeyChain (computed once by
// the prefix cache) or, for offload, the keys the tree stored on its nodes. It never evicts
// from the tree either: Onboard asks its caller for room (PrefixCache applies the plan).
//
// The engine thread never copies a block down either: offload and write-through hold the
// blocks in the pool (BlockPool::Hold) and queue them, in order, to the copier (a
// BackgroundWriter), whose thread copies the KV out, stores it in host RAM or passes it to the
// slow tiers' writers, and hands the blocks back; ReleaseCopied ends their holds, so the pool
// never reuses a block a copy still reads. What host RAM holds is decided in the same order as
// if the copies were made at once: a lookup that meets a block host RAM holds or will hold
// waits for the copies in flight first (so hits never depend on the copier's timing), and so
// do the host tier's other engine-thread changes (retention marks due, clear).
//
// Thread safety: engine thread only, except stats() and ProbeRemote(). Copies run on the
// copier thread, slow-tier writes on writer threads, reads ahead on the reader thread; the
// stores serialize their own I/O.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "base/clock.h"
#include "base/file_system.h"
#include "base/status.h"
#include "cache/background_writer.h"
#include "cache/kv_events.h"
#include "cache/scope_policy.h"
#include "kv/block_io.h"
#include "kv/block_key.h"
#include "kv/block_pool.h"
#include "kv/state_snapshots.h"
#include "prefix/partial_tail_store.h"
#include "prefix/radix_tree.h"
#include "tier/disk_store.h"
#include "tier/host_store.h"
#include "tier/redis_store.h"
#include "tier/tier_store.h"

namespace prefixd {

struct TierOptions {
  int64_t host_bytes = 0;  // 0: no host RAM tier
  std::string disk_dir;    // empty: no disk tier
  int64_t disk_bytes = int64_t{10} << 30;
  int partial_max_entries = 4;  // 0 disables partial tails
  // False for models whose KV cache cannot be sliced per token (sliding-window or recurrent
  // layers): tails are refused, said once in the log, and stats report supported: false.
  bool partial_supported = true;
  ScopeSpec scope;              // what the disk tier persists (--disk-prefix-cache)
  int64_t min_tokens = 0;       // --kv-cache-min-tokens
  // Shared remote tier (--remote-cache); absent: none. Written with the disk tier's scope.
  std::optional<RedisStoreOptions> remote;
  int max_pending_writes = 1024;  // records queued per slow tier; beyond, writes are dropped
  // The disk tier's file system; nullptr: the real one. Tests inject slow or faulty ones
  // (base/fault_file_system.h). Must outlive the controller.
  FileSystem* disk_fs = nullptr;
  // Start-up scan progress of the disk tier (files done, total).
  std::function<void(int64_t, int64_t)> scan_progress;
  // Retention (--retention-max-share): the share of the host budget retained blocks may
  // hold, and the clock their marks run on (nullptr: SteadyClock). Must outlive the controller.
  double retention_max_share = 0.5;
  const Clock* clock = nullptr;
  // Hybrid models: the pool's recurrent-state snapshots (nullptr: none). A full block's
  // snapshot at its end goes down with it (its record's payload: KV bytes, then the state
  // bytes) and comes back up with it; a partial tail carries the state at its end. Must
  // outlive the controller.
  StateSnapshots* snapshots = nullptr;
};

// Prompt tokens one admission brought in from below the pool.
struct TierHit {
  int64_t host_tokens = 0;
  int64_t disk_tokens = 0;
  int64_t remote_tokens = 0;
  int64_t partial_tokens = 0;
  double load_ms = 0;
  // Disk blocks the onboarding took from the disk's reads ahead (the block holding the last
  // prompt token included, though only its tokens before it count in disk_tokens), whether or
  // not the pool then found room for them: what a request log records of the disk's timing.
  int64_t disk_blocks = 0;
};

// What is resident for a prompt in each tier, without touching anything.
struct TierProbe {
  int64_t pool_tokens = 0;
  // Of pool_tokens, where a hybrid model could resume (its deepest state snapshot: see
  // StateSnapshots::ResumePoint); pool_tokens for other models.
  int64_t pool_resume_tokens = 0;
  int64_t host_tokens = 0;
  int64_t disk_tokens = 0;
  int64_t remote_tokens = 0;  // filled by ProbeRemote, off the engine thread
  int64_t partial_tokens = 0;
  // Of pool_tokens, host_tokens and disk_tokens, those that carry a retention mark.
  int64_t pool_retained_tokens = 0;
  int64_t host_retained_tokens = 0;
  int64_t disk_retained_tokens = 0;
};

// The blocks of one request to read ahead from the slow tiers, in prompt order: `disk`, then
// `remote` (candidates: the reader keeps the leading ones Redis returns).
struct SlowReads {
  std::vector<BlockKey> disk;
  std::vector<BlockKey> remote;
  bool empty() const { return disk.empty() && remote.empty(); }
};

struct TierControllerStats {
  bool host_enabled = false;
  bool disk_enabled = false;
  bool remote_enabled = false;
  TierStats host;
  TierStats disk;
  TierStats remote;
  RedisHealth remote_health;
  PartialTailStats partial;
  int64_t offloaded_blocks = 0;     // pool -> host
  int64_t spilled_to_disk_blocks = 0;  // retained blocks host RAM pushed out, queued for disk
  int64_t onboarded_blocks = 0;     // host/disk/remote -> pool
  int64_t disk_writes_queued = 0;
  int64_t disk_writes_dropped = 0;  // queue full
  // Queued or being written right now: 0 once every queued record has reached the disk (or
  // failed), so a client that saw writes_queued grow can wait for this to reach 0 before it
  // kills the server (tests/e2e).
  int64_t disk_writes_pending = 0;
  int64_t remote_writes_queued = 0;
  int64_t remote_writes_dropped = 0;  // queue full (Redis slow or down)
  int64_t remote_writes_pending = 0;  // as disk_writes_pending, for Redis
  // Read ahead for waiting requests, not yet onboarded: from disk, from remote.
  int64_t prefetched_blocks = 0;
  int64_t remote_prefetched_blocks = 0;
};

class TierController {
 public:
  // Opens the tiers `options` asks for. `io` (the backend) and `pool` must outlive it.
  // Fails when the disk folder cannot be opened (with the path and cause) or the remote
  // options are invalid; an unreachable Redis is not a failure (it reads as misses).
  static StatusOr<std::unique_ptr<TierController>> Create(const TierOptions& options,
                                                          std::vector<uint8_t> fingerprint,
                                                          BlockHashKind hash, int block_size,
                                                          BlockIo* io, BlockPool* pool);
  ~TierController();  // finishes queued slow-tier writes

  // Frees at least n pool blocks if it can (by applying an eviction plan); returns how many.
  using MakeRoom = std::function<int(int n)>;
  // Extends `tree` (under `salt`) with the blocks of `tokens` that lower tiers hold after the
  // pool's match, then the partial tail, up to `max_tokens`. `keys` is the chain of `tokens`.
  // Asks `make_room` when the pool is short.
  // `ticket` is the admitted request's (its own reads ahead are taken first; -1: none).
  TierHit Onboard(RadixTree& tree, std::string_view salt, std::span<const int32_t> tokens,
                  const BlockKeyChain& keys, int64_t max_tokens, const MakeRoom& make_room,
                  int64_t ticket = -1);
  // Slow-tier reads run off the engine thread: before admitting a request, the prefix cache
  // asks which of its blocks (after the first `pool_tokens`, which the pool holds) only the
  // slow tiers may hold, has them read on the controller's reader thread, and admits the
  // request once they are in memory (or known absent). Onboard then takes them from there.
  bool reads_ahead() const { return disk_ != nullptr || remote_ != nullptr; }
  SlowReads KeysToLoad(const BlockKeyChain& keys, int64_t pool_tokens) const;
  void Prefetch(int64_t ticket, SlowReads reads);
  // True once the reads of `ticket` are done (then forgets the ticket).
  bool PrefetchDone(int64_t ticket);
  // Drops what the reads of `ticket` brought in that Onboard did not take (call it once the
  // request is admitted, or cancelled while it waited), and skips its reads still queued or
  // running, so read-ahead never outlives its request. No-op for an unknown ticket.
  void EndPrefetch(int64_t ticket);
  // Waits up to `timeout_ms` for any prefetch to finish (so an idle engine does not spin).
  void WaitForPrefetch(int timeout_ms);
  // Replay only: waits until every read ahead asked for so far is done. With each request's
  // copies its own, reads that landed earlier than on the server only add copies the
  // admission's disk limit (LimitDiskOnboard) leaves alone (CacheReplayer::Admit).
  void WaitForAllPrefetches();
  // Replay only (CacheReplayer following a request log): the next reads ahead (KeysToLoad) and
  // Onboards take at most `max_blocks` blocks from the disk (-1: no limit). What the server's
  // disk held when it read ahead depends on when its background writes landed; the log
  // records how many disk blocks each admission got, and the replay, whose disk holds
  // everything written so far, takes exactly as many (and reads none ahead where the
  // server's admission read none).
  void LimitDiskOnboard(int64_t max_blocks) { disk_onboard_limit_ = max_blocks; }

  // Offloads to host RAM, in one batch, the full blocks of the nodes an eviction plan removes
  // (before the plan is applied: their blocks still hold the KV). Uses the keys stored on the
  // nodes; nodes inserted without keys are skipped. A node's retention mark goes with its
  // blocks (a block host RAM already holds takes it too); retained blocks that host RAM
  // pushes out, or demotes past its retained share, are written to disk with their mark
  // (when there is a disk tier) rather than losing it. The copies are made by the copier: the
  // blocks are held until ReleaseCopied sees them done.
  void Offload(std::span<const EvictionPlan::Entry> nodes);
  // Ends the holds of the blocks whose copies are done (engine thread; cheap when none).
  void ReleaseCopied();
  // Waits for every copy queued so far, then ReleaseCopied (engine thread): for room, for a
  // consistent view (the pool's free blocks, host RAM's contents), or when idle.
  void WaitForCopies();
  // Pool blocks held for copies not yet released.
  int64_t holds_in_flight() const { return holds_in_flight_; }
  // Marks the full blocks of `keys` inside token range [begin, end) on disk with `mark`, those
  // written already and those a write-through has queued (they take it when written).
  void RetainOnDisk(const BlockKeyChain& keys, int64_t begin, int64_t end, const RetentionMark& mark);
  // Ends the lower tiers' retention marks whose time is up (host RAM, disk). Returns how many.
  int ExpireRetention(int64_t now_ms);
  // A prompt's prefill completed: writes the blocks inside its scope to disk and remote (in
  // the background) and keeps its partial tails. `blocks` is its block table, `keys` the
  // chain of (at least) the prompt.
  void OnPrefillComplete(std::span<const int32_t> prompt, std::span<const BlockId> blocks,
                         const BlockKeyChain& keys, std::span<const int64_t> message_starts,
                         const std::optional<ScopeSpec>& scope);

  // Host, disk and partial residency of `tokens` after the `pool_tokens` the pool holds (no
  // I/O; engine thread). `keys` is the chain of `tokens`.
  TierProbe Probe(int64_t pool_tokens, std::span<const int32_t> tokens,
                  const BlockKeyChain& keys) const;
  // Completes `probe` with the remote blocks that follow what it found: one round trip to
  // Redis, so call it off the engine thread (any thread). Remote blocks found end the
  // partial-tail part (partial_tokens = 0): a tail is found only after onboarding.
  void ProbeRemote(const BlockKeyChain& keys, TierProbe* probe) const;
  // Clears "host", "disk", "remote" or "partial" (after the copies in flight). Clearing disk or
  // remote also drops the
  // partial tails. "remote" here drops only the tails (engine thread); ClearRemote does the
  // rest.
  Status Clear(std::string_view tier);
  // Waits for the copies and the queued remote writes, then deletes this model's keys in this
  // namespace
  // (SCAN + UNLINK): round trips, so any thread but the engine's. OK when there is no remote.
  Status ClearRemote();
  // Blocks until the copies and the queued disk (or remote) writes are done (tests, shutdown;
  // any thread).
  void FlushDiskWrites();
  void FlushRemoteWrites();

  const ScopeSpec& default_scope() const { return scope_.default_spec(); }
  bool has_remote() const { return remote_ != nullptr; }
  // Waits for the copies in flight (memory copies, never slow I/O), so that the counters
  // include every offload and write-through asked for before the call. Any thread.
  TierControllerStats stats() const;

  // KV events: the host and disk stores report to `log` what they store (offload, write-
  // through) and what they evict to stay under budget, on the thread that writes; the remote
  // store what it wrote or refreshed. The blocks the disk's start-up scan found are announced
  // here, as stored (reads their files' first bytes). Call once, before the first request;
  // `log` must outlive the controller.
  void SetEventLog(KvEventLog* log);

 private:
  TierController(const TierOptions& options, std::vector<uint8_t> fingerprint, int block_size,
                 BlockIo* io, BlockPool* pool);
  // Fresh pool blocks, asking `make_room` when short. nullopt when there is no room.
  std::optional<std::vector<BlockId>> AllocateForOnboard(int n, const MakeRoom& make_room);
  // The records of the blocks after `first` that host RAM or the read-ahead hold, in order,
  // up to the first that none holds; `source` gets the tier of each.
  std::vector<BlockRecord> RecordsToOnboard(const BlockKeyChain& keys, int64_t first,
                                            int64_t ticket, std::vector<TierStore*>* source);
  // Splices the partial tail that follows position `p` (a block boundary), if one applies.
  int64_t SpliceTail(RadixTree& tree, std::string_view salt, std::span<const int32_t> tokens,
                     const BlockKeyChain& keys, int64_t p, int64_t max_tokens,
                     const MakeRoom& make_room);
  void StashTail(std::span<const int32_t> prompt, std::span<const BlockId> blocks,
                 const BlockKeyChain& keys, int64_t end);
  // A record's payload (or a tail's) into pool block `block`: the KV bytes, then, when the
  // payload carries one, the state snapshot at `end`. False when its size fits neither.
  bool LoadPayload(std::span<const uint8_t> payload, BlockId block, int64_t end);
  bool PayloadFits(size_t bytes) const;
  // Where the copier sends a write (PendingWrite::tiers).
  static constexpr uint8_t kToHost = 1, kToDisk = 2, kToRemote = 4;
  // A write of one full block for the copier: `tokens` are its block_size tokens, ending at
  // position `end`; its KV stays in pool block `block`, held until the copy is done. The
  // state snapshot at `end`, if any, is copied now (engine thread) into record.kv, which the
  // copier completes by putting the KV before it.
  PendingWrite HoldForCopy(const BlockKey& key, const BlockKey& parent,
                           std::span<const int32_t> tokens, BlockId block, int64_t end,
                           uint8_t tiers);
  // The copier's sink (copier thread): copies each write's KV out of the pool and stores it
  // in host RAM (skipping blocks it holds by then) or queues it for disk and remote.
  void Land(std::vector<PendingWrite>& job);
  // Host RAM holds `key` once the copies in flight have landed (engine thread). Waits for
  // them only when the answer could depend on them: `key` is queued or held now.
  bool HostHas(const BlockKey& key) const;
  void ReaderLoop();
  struct Prefetched;
  // Reads the blocks of `ticket`'s `reads` (reader thread, read_mu_ not held): disk, then one
  // MGET for the remote ones, up to the first block that fails.
  std::vector<Prefetched> ReadAhead(int64_t ticket, const SlowReads& reads);
  // The slow tier a record was read ahead from for `key`, or nullptr (no I/O): `ticket`'s
  // own copy when it has one, else another request's.
  TierStore* PrefetchedFrom(const BlockKey& key, int64_t ticket);
  // That record, taken, or nullopt.
  std::optional<BlockRecord> TakePrefetched(const BlockKey& key, int64_t ticket);
  // Publishes the sizes of prefetched_ for stats() (read_mu_ held).
  void CountPrefetched();
  // Retained records host RAM pushed out: down to disk (queued), else dropped.
  void SpillToDisk(std::vector<HostStore::Spilled> spilled);
  // Writes of blocks [0, end) of `prompt` for the slow tiers that do not hold them.
  std::vector<PendingWrite> WritesThrough(std::span<const int32_t> prompt,
                                          std::span<const BlockId> blocks,
                                          const BlockKeyChain& keys, int64_t end);

  const std::vector<uint8_t> fingerprint_;
  const int block_size_;
  BlockIo* io_;
  BlockPool* pool_;
  // Declared before the stores and writers, so they outlive every write.
  std::unique_ptr<TierEventObserver> host_events_, disk_events_, remote_events_;
  std::unique_ptr<HostStore> host_;
  std::unique_ptr<DiskStore> disk_;
  std::unique_ptr<RedisStore> remote_;
  PartialTailStore tails_;
  StateSnapshots* snapshots_;
  const bool partial_supported_;
  ScopePolicy scope_;
  const int max_pending_writes_;
  int64_t disk_onboard_limit_ = -1;  // LimitDiskOnboard; -1: none

  std::atomic<int64_t> offloaded_{0}, onboarded_{0}, spilled_to_disk_{0};

  // Write-through queues of the slow tiers (null when the tier is off).
  std::unique_ptr<BackgroundWriter> disk_writer_;
  std::unique_ptr<BackgroundWriter> remote_writer_;
  // Copies blocks out of the pool (Land); declared after the writers it feeds, so it is
  // destroyed (finishing its jobs) before them.
  std::unique_ptr<BackgroundWriter> copier_;
  // Engine thread: blocks held for the copier, not yet released.
  int64_t holds_in_flight_ = 0;
  // Engine thread: keys queued for host RAM since the copier was last seen idle, and the
  // earliest retention end among them (INT64_MAX: none marked).
  mutable absl::flat_hash_set<BlockKey> offloading_;
  mutable int64_t offloading_expiry_ms_ = INT64_MAX;

  // Read-ahead of slow-tier blocks, filled by reader_.
  struct Prefetched {
    TierStore* from = nullptr;  // disk_ or remote_
    BlockRecord record;
    int64_t ticket = 0;  // the request whose reads brought it in
  };
  std::mutex read_mu_;
  std::condition_variable read_cv_;
  std::condition_variable read_done_cv_;
  std::deque<std::pair<int64_t, SlowReads>> read_queue_;
  std::vector<int64_t> read_done_;
  // Each request's reads keep their own copies (two requests reading one block hold two), and
  // an admission takes its own first: what one takes never depends on when another's reads
  // landed, which a request log does not record (engine/request_log.h).
  absl::flat_hash_map<BlockKey, std::vector<Prefetched>> prefetched_;
  int64_t num_prefetched_entries_ = 0;       // copies in prefetched_
  int64_t reading_ticket_ = -1;              // the job the reader is on (-1: none)
  absl::flat_hash_set<int64_t> ended_;       // tickets ended while the reader was on them
  int64_t remote_prefetched_ = 0;            // entries of prefetched_ from remote_
  // Entries of prefetched_ from disk_ and from remote_, for stats().
  std::atomic<int64_t> num_prefetched_{0}, num_remote_prefetched_{0};
  bool read_stop_ = false;
  std::thread reader_;
};

}  // namespace prefixd
