#include "cache/prefix_cache.h"

#include <algorithm>

namespace prefixd {

PrefixCache::PrefixCache(BlockPool* pool, int block_size, const PrefixCacheOptions& options,
                         std::unique_ptr<TierController> tiers)
    : pool_(pool),
      block_size_(block_size),
      options_(options),
      tree_(pool, block_size),
      tiers_(std::move(tiers)),
      enabled_(options.enabled) {
  if (tiers_) {
    tree_.SetRemovalObserver(
        [this](const RemovedNode& removed) { tiers_->Offload(tree_, removed); });
  }
}

CacheHit PrefixCache::Acquire(std::string_view salt, std::span<const int32_t> tokens,
                              int64_t max_tokens) {
  CacheHit hit;
  if (!enabled()) return hit;
  const auto query = tokens.first(std::min<size_t>(tokens.size(), std::max<int64_t>(0, max_tokens)));
  query_tokens_.fetch_add(static_cast<int64_t>(tokens.size()), std::memory_order_relaxed);
  if (tiers_) hit.tier = tiers_->Onboard(tree_, salt, tokens, static_cast<int64_t>(query.size()));
  MatchResult m = tree_.Match(salt, query, /*touch=*/true);
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
  tree_.Insert(salt, tokens, blocks);
  if (options_.max_cached_blocks > 0 && tree_.cached_blocks() > options_.max_cached_blocks) {
    const int before = tree_.cached_blocks();
    tree_.EvictToBudget(options_.max_cached_blocks);
    evicted_blocks_.fetch_add(before - tree_.cached_blocks(), std::memory_order_relaxed);
  }
  PublishGauges();
}

int PrefixCache::Evict(int num_blocks) {
  const int before = tree_.cached_blocks();
  const int freed = tree_.Evict(num_blocks);
  evicted_blocks_.fetch_add(before - tree_.cached_blocks(), std::memory_order_relaxed);
  PublishGauges();
  return freed;
}

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
    RETURN_IF_ERROR(tiers_->Clear("host"));
    RETURN_IF_ERROR(tiers_->Clear("disk"));
    return tiers_->Clear("partial");
  }
  return tiers_->Clear(tier);
}

void PrefixCache::OnPrefillComplete(std::string_view salt, std::span<const int32_t> prompt,
                                    std::span<const BlockId> blocks,
                                    std::span<const int64_t> message_starts,
                                    const std::optional<ScopeSpec>& scope) {
  if (!tiers_ || !enabled()) return;
  tiers_->OnPrefillComplete(salt, prompt, blocks, message_starts, scope);
}

TierProbe PrefixCache::ProbeTiers(std::string_view salt, std::span<const int32_t> tokens) const {
  if (tiers_) return tiers_->Probe(tree_, salt, tokens);
  TierProbe p;
  p.pool_tokens = tree_.Peek(salt, tokens).num_tokens;
  return p;
}

int PrefixCache::Clear() {
  const int before = tree_.cached_blocks();
  const int freed = tree_.Clear();
  evicted_blocks_.fetch_add(before - tree_.cached_blocks(), std::memory_order_relaxed);
  PublishGauges();
  return freed;
}

BlockKey PrefixCache::RootKey(std::string_view salt) const {
  return prefixd::RootKey(options_.hash, options_.fingerprint, salt);
}

std::vector<BlockKey> PrefixCache::BlockKeys(std::string_view salt,
                                             std::span<const int32_t> tokens) const {
  return ComputeBlockKeys(options_.hash, RootKey(salt), tokens, block_size_);
}

ProbeResult PrefixCache::Probe(std::string_view salt, std::span<const int32_t> tokens) const {
  const MatchResult m = tree_.Peek(salt, tokens);
  return ProbeResult{m.num_tokens, m.num_tokens / block_size_};
}

void PrefixCache::PublishGauges() {
  nodes_.store(tree_.num_nodes(), std::memory_order_relaxed);
  cached_tokens_.store(tree_.cached_tokens(), std::memory_order_relaxed);
  cached_blocks_.store(tree_.cached_blocks(), std::memory_order_relaxed);
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
  return s;
}

}  // namespace prefixd
