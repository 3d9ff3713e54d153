#include "cache/trace_replay.h"

#include <algorithm>

#include "base/check.h"

namespace prefixd {

namespace {

int64_t BlocksFor(int64_t tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

// Tokens a request computes: its prompt, then every generated token but the last.
int64_t ComputedTokens(const TraceRequest& r, bool with_output) {
  return r.input_length + (with_output ? std::max<int64_t>(r.output_length - 1, 0) : 0);
}

}  // namespace

void ReplayResult::Add(const ReplayOutcome& o, int64_t prompt) {
  ++requests;
  prompt_tokens += prompt;
  cached_tokens += o.cached_tokens;
  hit_requests += o.cached_tokens > 0;
  host_tokens += o.tier.host_tokens;
  disk_tokens += o.tier.disk_tokens;
  partial_tokens += o.tier.partial_tokens;
  host_hit_requests += o.tier.host_tokens > 0;
  disk_hit_requests += o.tier.disk_tokens > 0;
  partial_hit_requests += o.tier.partial_tokens > 0;
  unservable += o.unservable;
  by_request.push_back(o);
}

std::vector<int32_t> TracePromptTokens(const TraceRequest& request) {
  std::vector<int32_t> tokens;
  tokens.reserve(request.input_length);
  for (size_t b = 0; b < request.hash_ids.size(); ++b) {
    for (int64_t i = 0; i < kTraceBlockTokens; ++i) {
      if (static_cast<int64_t>(tokens.size()) == request.input_length) return tokens;
      tokens.push_back(static_cast<int32_t>(request.hash_ids[b] * kTraceBlockTokens + i));
    }
  }
  return tokens;
}

int64_t IdealCachedTokens(const TraceRequest& request, const absl::flat_hash_set<int64_t>& seen) {
  int64_t leading = 0;
  while (leading < static_cast<int64_t>(request.hash_ids.size()) &&
         seen.contains(request.hash_ids[leading])) {
    ++leading;
  }
  return std::max<int64_t>(0, std::min(leading * kTraceBlockTokens, request.input_length - 1));
}

StatusOr<ReplayResult> ReplayTrace(std::span<const TraceRequest> requests,
                                   const ReplayOptions& options) {
  ReplayConfig config = options.cache;
  const int bs = config.block_size;
  if (bs < 1) return absl::InvalidArgumentError("replay: the block size must be positive");
  int64_t all_blocks = 0, longest = 0;
  for (const TraceRequest& r : requests) {
    const int64_t blocks = BlocksFor(ComputedTokens(r, options.with_output), bs) + 1;
    all_blocks += blocks;
    longest = std::max(longest, blocks);
  }
  // Unbounded: every token of the trace fits, each request in its own blocks.
  if (config.max_cached_blocks <= 0) config.max_cached_blocks = std::max<int64_t>(all_blocks, 1);
  if (config.num_kv_blocks <= 0) config.num_kv_blocks = config.max_cached_blocks + longest;
  // Generated tokens: ids above every prompt token, never repeated.
  int64_t max_id = 0;
  for (const TraceRequest& r : requests) {
    for (int64_t h : r.hash_ids) max_id = std::max(max_id, h);
  }
  int64_t next_output = (max_id + 1) * kTraceBlockTokens;
  if (next_output >= (int64_t{1} << 31)) {
    return absl::InvalidArgumentError("replay: hash ids too large for token ids (2^31 / 512)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<CacheReplayer> replayer, CacheReplayer::Create(config));
  ReplayResult result;
  result.pool_blocks = config.max_cached_blocks;
  result.num_kv_blocks = config.num_kv_blocks;
  absl::flat_hash_set<int64_t> seen;
  for (const TraceRequest& r : requests) {
    std::vector<int32_t> tokens = TracePromptTokens(r);
    const int64_t n = static_cast<int64_t>(tokens.size());
    result.ideal_tokens += IdealCachedTokens(r, seen);
    for (int64_t h : r.hash_ids) seen.insert(h);
    if (n == 0) {
      result.Add(ReplayOutcome{}, 0);
      continue;
    }
    const int64_t computed = ComputedTokens(r, options.with_output);
    while (static_cast<int64_t>(tokens.size()) < computed && next_output < (int64_t{1} << 31)) {
      tokens.push_back(static_cast<int32_t>(next_output++));
    }
    ReplayedRequest q;
    q.tokens = tokens;
    q.num_prompt = n;
    result.Add(replayer->Run(q), n);
  }
  result.evicted_blocks = replayer->cache_stats().evicted_blocks;
  result.offloaded_blocks = replayer->tier_stats().offloaded_blocks;
  return result;
}

}  // namespace prefixd
