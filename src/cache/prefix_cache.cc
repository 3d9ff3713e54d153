#include "cache/prefix_cache.h"

#include <algorithm>

namespace prefixd {

PrefixCache::PrefixCache(BlockPool* pool, int block_size, const PrefixCacheOptions& options,
                         std::unique_ptr<TierController> tiers)
    : pool_(pool),
      block_size_(block_size),
      options_(options),
      keyer_(options.hash, options.fingerprint, block_size),
      tree_(pool, block_size),
      tiers_(std::move(tiers)),
      enabled_(options.enabled),
      clock_(options.clock != nullptr ? options.clock : SteadyClock::Get()),
      max_retained_tokens_(static_cast<int64_t>(
          static_cast<double>(options.max_cached_blocks) * block_size *
          std::clamp(options.retention_max_share, 0.0, 1.0))) {
  if (tiers_ && options_.events) tiers_->SetEventLog(options_.events);
}

// ---- admission ----

Admission PrefixCache::Admit(CacheTicket& ticket, std::span<const int32_t> tokens) {
  if (tiers_) tiers_->ReleaseCopied();
  ticket.tokens_ = tokens;
  // At least the last known token is always computed: its logits are needed to sample.
  const int64_t max_tokens = static_cast<int64_t>(tokens.size()) - 1;
  const BlockKeyChain* keys = nullptr;
  if (enabled()) {
    keys = KeysOf(ticket, tokens);
    if (WaitsForSharedPrefill(ticket) || WaitsForReads(ticket)) return Admission::kPending;
    ExpireRetention();
  }
  ticket.hit_ = AcquireKeyed(ticket.salt_, tokens, max_tokens, keys, ticket.id_);
  EndReads(ticket);
  if (ticket.hit_.node.valid()) {
    // A hit refreshes the marks on its path, and renews what this request asks to keep.
    tree_.RefreshRetention(ticket.hit_.node, clock_->NowMs());
    ApplyRetention(ticket, tokens.first(ticket.hit_.num_tokens));
  }
  if (!ticket.retention_.empty() && !ticket.retention_counted_) {
    ticket.retention_counted_ = true;
    retention_requests_.fetch_add(1, std::memory_order_relaxed);
  }
  if (ticket.hit_.num_tokens < ticket.num_prompt_ && !ticket.in_flight_) {
    ticket.in_flight_ = true;
    in_flight_.push_back(&ticket);
  }
  return Admission::kReady;
}

const BlockKeyChain* PrefixCache::KeysOf(CacheTicket& ticket, std::span<const int32_t> tokens) {
  if (!keyed()) return nullptr;
  if (!ticket.keys_rooted_) {
    ticket.keys_.root = keyer_.Root(ticket.salt_);
    ticket.keys_rooted_ = true;
  }
  keyer_.Extend(ticket.keys_, tokens);  // hashes only the blocks the chain does not hold yet
  return &ticket.keys_;
}

bool PrefixCache::WaitsForSharedPrefill(const CacheTicket& ticket) const {
  const std::span<const int32_t> a = ticket.tokens_;
  int64_t longest = 0;
  for (const CacheTicket* r : in_flight_) {
    if (r == &ticket || r->salt_ != ticket.salt_) continue;
    const std::span<const int32_t> b = r->tokens_;
    const size_t n = std::min<size_t>(a.size(), static_cast<size_t>(r->num_prompt_));
    size_t lcp = 0;
    while (lcp < n && a[lcp] == b[lcp]) ++lcp;
    longest = std::max<int64_t>(longest, static_cast<int64_t>(lcp));
  }
  // The tree is peeked only when a prefill in flight shares at least a block.
  if (longest < block_size_) return false;
  return longest >= tree_.Peek(ticket.salt_, a).num_tokens + block_size_;
}

bool PrefixCache::WaitsForReads(CacheTicket& ticket) {
  if (tiers_ == nullptr || !tiers_->reads_ahead()) return false;
  if (!ticket.reads_started_) {
    ticket.reads_started_ = true;
    const auto query = ticket.tokens_.first(std::max<size_t>(ticket.tokens_.size(), 1) - 1);
    SlowReads reads = tiers_->KeysToLoad(ticket.keys_, tree_.Peek(ticket.salt_, query).num_tokens);
    if (reads.empty()) return false;
    tiers_->Prefetch(ticket.id_, std::move(reads));
    ticket.reads_pending_ = true;
    // Pending now even should the reader be done already: the admission is always a later
    // Admit than the one that started the reads, whatever the reader's speed, so a request
    // log's replay (cache/cache_replayer.h) starts the reads and admits at the same steps.
    return true;
  }
  if (ticket.reads_pending_ && tiers_->PrefetchDone(ticket.id_)) ticket.reads_pending_ = false;
  return ticket.reads_pending_;
}

void PrefixCache::EndReads(CacheTicket& ticket) {
  if (!ticket.reads_started_ || tiers_ == nullptr) return;
  tiers_->EndPrefetch(ticket.id_);
  ticket.reads_pending_ = false;
}

void PrefixCache::WaitForReads(int timeout_ms) {
  if (tiers_ != nullptr && tiers_->reads_ahead()) tiers_->WaitForPrefetch(timeout_ms);
}

void PrefixCache::LeaveInFlight(CacheTicket& ticket) {
  if (!ticket.in_flight_) return;
  ticket.in_flight_ = false;
  std::erase(in_flight_, &ticket);
}

void PrefixCache::OnPromptComputed(CacheTicket& ticket, std::span<const int32_t> prompt,
                                   std::span<const BlockId> blocks,
                                   std::span<const int64_t> message_starts,
                                   const std::optional<ScopeSpec>& scope) {
  LeaveInFlight(ticket);
  if (ticket.prompt_indexed_) return;
  // Indexed now, not at the end, so that requests with the same prefix that arrive while this
  // one decodes share its blocks.
  ticket.prompt_indexed_ = true;
  Insert(ticket, prompt, blocks);
  if (!tiers_ || !enabled()) return;
  tiers_->OnPrefillComplete(prompt, blocks, ticket.keys_, message_starts, scope);
}

void PrefixCache::Insert(CacheTicket& ticket, std::span<const int32_t> tokens,
                         std::span<const BlockId> blocks) {
  if (!enabled() || tokens.empty()) return;
  InsertKeyed(ticket.salt_, tokens, blocks, KeysOf(ticket, tokens), &ticket);
}

void PrefixCache::ApplyRetention(const CacheTicket& ticket, std::span<const int32_t> tokens) {
  if (ticket.retention_.empty()) return;
  const int64_t now = clock_->NowMs();
  for (const RetentionRange& r : ticket.retention_) {
    const RetentionMark mark{r.priority, r.duration_ms, now + r.duration_ms};
    tree_.Retain(ticket.salt_, tokens, r.begin, r.end, mark, now);
    // The disk's copies (written through, or queued) take the mark too, so that it outlives
    // a restart even for blocks the pool still holds then.
    if (tiers_) tiers_->RetainOnDisk(ticket.keys_, r.begin, std::min<int64_t>(r.end, tokens.size()), mark);
  }
  std::vector<EvictionPlan::Entry> demoted;
  retention_capped_.fetch_add(tree_.CapRetention(max_retained_tokens_, tiers_ ? &demoted : nullptr),
                              std::memory_order_relaxed);
  // Past the pool's share, the oldest retention moves down a tier rather than ending.
  if (tiers_ && !demoted.empty()) tiers_->Offload(demoted);
  PublishGauges();
}

void PrefixCache::ExpireRetention() {
  const int64_t now = clock_->NowMs();
  if (now >= tree_.next_retention_expiry()) {
    retention_expired_.fetch_add(tree_.ExpireRetention(now), std::memory_order_relaxed);
    PublishGauges();
  }
  if (tiers_) tiers_->ExpireRetention(now);
}

void PrefixCache::Release(CacheTicket& ticket) {
  EndReads(ticket);
  LeaveInFlight(ticket);
  Release(ticket.hit_);
}

// ---- match, insert, evict ----

CacheHit PrefixCache::Acquire(std::string_view salt, std::span<const int32_t> tokens,
                              int64_t max_tokens) {
  if (!enabled() || !keyed()) return AcquireKeyed(salt, tokens, max_tokens, nullptr);
  const BlockKeyChain keys = keyer_.Chain(salt, tokens);
  return AcquireKeyed(salt, tokens, max_tokens, &keys);
}

CacheHit PrefixCache::AcquireKeyed(std::string_view salt, std::span<const int32_t> tokens,
                                   int64_t max_tokens, const BlockKeyChain* keys, int64_t ticket) {
  CacheHit hit;
  if (!enabled()) return hit;
  const auto query = tokens.first(std::min<size_t>(tokens.size(), std::max<int64_t>(0, max_tokens)));
  query_tokens_.fetch_add(static_cast<int64_t>(tokens.size()), std::memory_order_relaxed);
  if (tiers_ && keys != nullptr) {
    const int64_t before = options_.events ? tree_.Peek(salt, tokens).num_tokens : 0;
    hit.tier = tiers_->Onboard(tree_, salt, tokens, *keys, static_cast<int64_t>(query.size()),
                               [this](int n) { return Evict(n); }, ticket);
    if (options_.events) EmitPoolStored(tokens, *keys, before, tree_.Peek(salt, tokens).num_tokens);
    PublishGauges();  // onboarding inserted into the tree
  }
  MatchResult m = tree_.Match(salt, query, /*touch=*/true);
  CutToResumePoint(m, hit.tier);
  if (m.num_tokens == 0) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return hit;
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  hit_tokens_.fetch_add(m.num_tokens, std::memory_order_relaxed);
  for (BlockId b : m.blocks) pool_->Ref(b);
  tree_.Lock(m.node);
  locked_requests_.fetch_add(1, std::memory_order_relaxed);
  hit.num_tokens = m.num_tokens;
  hit.blocks = std::move(m.blocks);
  hit.node = m.node;
  return hit;
}

void PrefixCache::CutToResumePoint(MatchResult& m, TierHit& tier) const {
  if (options_.snapshots == nullptr || m.num_tokens == 0) return;
  const int64_t resume = options_.snapshots->ResumePoint(m.blocks, m.num_tokens, block_size_);
  int64_t cut = m.num_tokens - resume;
  // Lower tiers added the match's last tokens, the partial tail last of all.
  for (int64_t* t : {&tier.partial_tokens, &tier.remote_tokens, &tier.disk_tokens,
                     &tier.host_tokens}) {
    const int64_t d = std::min(cut, *t);
    *t -= d;
    cut -= d;
  }
  m.num_tokens = resume;
  m.blocks.resize((resume + block_size_ - 1) / block_size_);
}

void PrefixCache::Release(CacheHit& hit) {
  if (hit.node.valid()) {
    tree_.Unlock(hit.node);
    locked_requests_.fetch_sub(1, std::memory_order_relaxed);
  }
  hit.node = NodeId();
}

void PrefixCache::Insert(std::string_view salt, std::span<const int32_t> tokens,
                         std::span<const BlockId> blocks) {
  if (!enabled() || tokens.empty()) return;
  if (!keyed()) return InsertKeyed(salt, tokens, blocks, nullptr);
  const BlockKeyChain keys = keyer_.Chain(salt, tokens);
  InsertKeyed(salt, tokens, blocks, &keys);
}

void PrefixCache::InsertKeyed(std::string_view salt, std::span<const int32_t> tokens,
                              std::span<const BlockId> blocks, const BlockKeyChain* keys,
                              const CacheTicket* ticket) {
  const int64_t before = options_.events ? tree_.Peek(salt, tokens).num_tokens : 0;
  tree_.Insert(salt, tokens, blocks, keys, ticket ? ticket->num_prompt_ : -1);
  if (ticket) ApplyRetention(*ticket, tokens);
  if (options_.events) EmitPoolStored(tokens, *keys, before, static_cast<int64_t>(tokens.size()));
  if (options_.max_cached_blocks > 0 && tree_.cached_blocks() > options_.max_cached_blocks) {
    ApplyEviction(tree_.PrepareEvictionToBudget(options_.max_cached_blocks));
  }
  TrimSnapshots();
  PublishGauges();
}

int PrefixCache::Evict(int num_blocks) {
  if (tiers_ && pool_->num_held() > 0) {
    // Blocks nobody uses wait for their copies (memory copies only: a short wait that cannot
    // deadlock). Had the engine thread copied them, they would be free already, and the
    // caller might not be short at all: give them back and let it ask again, so that the tree
    // loses no more than it would have.
    const int before = pool_->num_free();
    tiers_->WaitForCopies();
    return pool_->num_free() - before;
  }
  const int freed = ApplyEviction(tree_.PrepareEviction(num_blocks));
  // The caller needs the room now: the plan's blocks become free when their copies land.
  if (tiers_ && pool_->num_held() > 0) tiers_->WaitForCopies();
  return freed;
}

void PrefixCache::TrimSnapshots() {
  StateSnapshots* snapshots = options_.snapshots;
  if (snapshots == nullptr || options_.max_cached_bytes <= 0) return;
  // Snapshot by snapshot, not entry by entry: evicting the tree's least recently used leaves
  // would take the deepest snapshots first (an agent's newest turn ends in a leaf, its older
  // turns' ends are inner nodes), while the least recently used snapshot is usually one a
  // later turn has already gone past. Runs on the engine thread between Match and the next
  // Admit, never between a hit's cut to its resume point and the restore of its state.
  while (tree_.cached_blocks() * options_.block_bytes + snapshots->bytes() >
         options_.max_cached_bytes) {
    if (!snapshots->DropLeastRecentlyUsed()) break;
  }
}

int PrefixCache::Clear() {
  const int freed = ApplyEviction(tree_.PrepareClear());
  WaitForCopies();  // so that what it freed is free when it returns
  return freed;
}

void PrefixCache::WaitForCopies() {
  if (tiers_) tiers_->WaitForCopies();
}

int PrefixCache::ApplyEviction(const EvictionPlan& plan) {
  if (!plan.empty()) {
    // The blocks still hold their KV until the tree drops them: copy them down first.
    if (tiers_) tiers_->Offload(plan.nodes);
    if (options_.events) {
      for (const EvictionPlan::Entry& e : plan.nodes) {
        options_.events->Removed(KvMedium::kPool, e.node.keys);
      }
    }
    tree_.ApplyEviction(plan);
    evicted_blocks_.fetch_add(plan.num_uncached_blocks, std::memory_order_relaxed);
  }
  PublishGauges();
  return plan.num_freed_blocks;
}

// ---- tiers ----

Status PrefixCache::ClearTier(std::string_view tier) {
  if (tier == "pool" || tier == "all") Clear();
  if (tier == "pool") return absl::OkStatus();
  if (!tiers_) {
    if (tier == "all") return absl::OkStatus();
    if (tier == "host" || tier == "disk" || tier == "remote" || tier == "partial") {
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrCat("unknown cache tier '", std::string(tier),
                                                   "'; use pool, host, disk, remote, partial or all"));
  }
  if (tier == "all") {
    RETURN_IF_ERROR(ClearTier("host"));
    RETURN_IF_ERROR(ClearTier("disk"));
    return tiers_->Clear("partial");
  }
  RETURN_IF_ERROR(tiers_->Clear(tier));
  // The pool's clear was announced block by block (ApplyEviction): locked entries stay.
  if (options_.events && tier == "host") options_.events->Cleared(KvMedium::kHost);
  if (options_.events && tier == "disk") options_.events->Cleared(KvMedium::kDisk);
  return absl::OkStatus();
}

BlockKeyChain PrefixCache::ProbeKeys(std::string_view salt, std::span<const int32_t> tokens) const {
  if (!tiers_) return BlockKeyChain{};  // the pool's probe needs no keys
  return keyer_.Chain(salt, tokens);
}

TierProbe PrefixCache::ProbeTiers(std::string_view salt, std::span<const int32_t> tokens,
                                  const BlockKeyChain& keys) const {
  const MatchResult m = tree_.Peek(salt, tokens);
  const int64_t pool_tokens = m.num_tokens;
  TierProbe p;
  if (tiers_) p = tiers_->Probe(pool_tokens, tokens, keys);
  p.pool_tokens = pool_tokens;
  p.pool_resume_tokens = options_.snapshots
                             ? options_.snapshots->ResumePoint(m.blocks, m.num_tokens, block_size_)
                             : pool_tokens;
  p.pool_retained_tokens = tree_.RetainedPrefixTokens(salt, tokens);
  return p;
}

void PrefixCache::ProbeRemote(const BlockKeyChain& keys, TierProbe* probe) const {
  if (tiers_) tiers_->ProbeRemote(keys, probe);
}

Status PrefixCache::ClearRemote() {
  if (!tiers_) return absl::OkStatus();
  Status st = tiers_->ClearRemote();
  // Announced even when the clear failed part way: a router must not keep routing to blocks
  // that may be gone (a miss costs a recompute; a stale route costs the same and more).
  if (options_.events && tiers_->has_remote()) options_.events->Cleared(KvMedium::kRemote);
  return st;
}

void PrefixCache::FlushDiskWrites() {
  if (tiers_) tiers_->FlushDiskWrites();
}

void PrefixCache::FlushRemoteWrites() {
  if (tiers_) tiers_->FlushRemoteWrites();
}

TierControllerStats PrefixCache::tier_stats() const {
  return tiers_ ? tiers_->stats() : TierControllerStats{};
}

ScopeSpec PrefixCache::default_scope() const {
  return tiers_ ? tiers_->default_scope() : ScopeSpec{};
}

// ---- keys, probe, stats ----

std::vector<BlockKey> PrefixCache::BlockKeys(std::string_view salt,
                                             std::span<const int32_t> tokens) const {
  return keyer_.Chain(salt, tokens).keys;
}

ProbeResult PrefixCache::Probe(std::string_view salt, std::span<const int32_t> tokens) const {
  const MatchResult m = tree_.Peek(salt, tokens);
  return ProbeResult{m.num_tokens, m.num_tokens / block_size_,
                     tree_.RetainedPrefixTokens(salt, tokens)};
}

void PrefixCache::EmitPoolStored(std::span<const int32_t> tokens, const BlockKeyChain& keys,
                                 int64_t before, int64_t after) {
  const int64_t first = before / block_size_;
  const int64_t end = std::min<int64_t>(after / block_size_, keys.size());
  if (options_.events == nullptr || first >= end) return;
  options_.events->Stored(KvMedium::kPool,
                          std::span<const BlockKey>(keys.keys).subspan(first, end - first),
                          keys.Parent(first),
                          tokens.subspan(first * block_size_, (end - first) * block_size_));
}

void PrefixCache::FlushEvents() {
  if (tiers_) tiers_->ReleaseCopied();  // once per engine loop: a safe point
  if (options_.events) options_.events->Flush();
}

void PrefixCache::PublishGauges() {
  nodes_.store(tree_.num_nodes(), std::memory_order_relaxed);
  cached_tokens_.store(tree_.cached_tokens(), std::memory_order_relaxed);
  cached_blocks_.store(tree_.cached_blocks(), std::memory_order_relaxed);
  retained_tokens_.store(tree_.retained_tokens(), std::memory_order_relaxed);
}

PrefixCacheStats PrefixCache::stats() const {
  PrefixCacheStats s;
  s.enabled = enabled();
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.query_tokens = query_tokens_.load(std::memory_order_relaxed);
  s.hit_tokens = hit_tokens_.load(std::memory_order_relaxed);
  s.evicted_blocks = evicted_blocks_.load(std::memory_order_relaxed);
  s.nodes = nodes_.load(std::memory_order_relaxed);
  s.cached_tokens = cached_tokens_.load(std::memory_order_relaxed);
  s.cached_blocks = cached_blocks_.load(std::memory_order_relaxed);
  s.locked_requests = locked_requests_.load(std::memory_order_relaxed);
  s.max_cached_blocks = options_.max_cached_blocks;
  s.retained_tokens = retained_tokens_.load(std::memory_order_relaxed);
  s.max_retained_tokens = max_retained_tokens_;
  s.retention_expired_tokens = retention_expired_.load(std::memory_order_relaxed);
  s.retention_capped_tokens = retention_capped_.load(std::memory_order_relaxed);
  s.retention_requests = retention_requests_.load(std::memory_order_relaxed);
  if (options_.snapshots != nullptr) {
    s.state_snapshots = options_.snapshots->count();
    s.state_snapshot_bytes = options_.snapshots->bytes();
  }
  return s;
}

}  // namespace prefixd
