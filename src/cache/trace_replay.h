// TraceReplay: what hit rate a workload would get from the prefix cache at given budgets,
// without a model. Each request of a trace runs through the real cache code the engine runs,
// lower tiers included (CacheReplayer: admission, prefill chunks and decode steps in block
// tables, eviction, write-through, partial tails). No KV bytes exist.
//
// Traces in the Mooncake format: each request is `input_length` prompt tokens made of blocks
// named by `hash_ids` (kTraceBlockTokens tokens each, the last one possibly shorter), then
// `output_length` generated tokens. A block id always stands for the same token ids, and no
// two ids share a token, so the tree matches exactly the blocks two requests share; generated
// tokens are unique to their request.
//
//   requests  --Replay-->  cached prompt tokens (what the server would report), the ideal
//                          (leading blocks an earlier request carried), evictions
//
// Thread safety: none; a replay is one thread's.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "base/status.h"
#include "cache/cache_replayer.h"

namespace prefixd {

// Tokens per hash id in Mooncake traces.
inline constexpr int64_t kTraceBlockTokens = 512;

struct TraceRequest {
  double timestamp = 0;  // ms; requests are replayed in trace order
  int64_t input_length = 0;
  int64_t output_length = 0;
  std::vector<int64_t> hash_ids;  // ceil(input_length / kTraceBlockTokens) ids
};

struct ReplayOptions {
  // The cache, its tiers and the engine's chunking (cache_replayer.h). Two fields have
  // defaults here: cache.max_cached_blocks 0 is unbounded (the tree holds every token of the
  // trace, so nothing is evicted); cache.num_kv_blocks 0 is the budget plus room for the
  // longest request (a server running one request at a time).
  ReplayConfig cache;
  bool with_output = true;  // generated tokens take pool blocks too, as in the server
};

// Sums over the requests of a replay.
struct ReplayResult {
  int64_t requests = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens the cache served, summed over requests
  int64_t ideal_tokens = 0;   // IdealCachedTokens, summed (traces only)
  int64_t hit_requests = 0;   // requests with at least one cached token
  // Of cached_tokens, those brought in from each lower tier (the rest came from the pool),
  // and the requests that got at least one token from it.
  int64_t host_tokens = 0, disk_tokens = 0, partial_tokens = 0;
  int64_t host_hit_requests = 0, disk_hit_requests = 0, partial_hit_requests = 0;
  int64_t evicted_blocks = 0;  // pool blocks the tree dropped
  int64_t offloaded_blocks = 0;  // pool -> host RAM
  int64_t unservable = 0;      // requests the pool could not hold (counted as misses)
  int64_t pool_blocks = 0;     // the tree's budget used (the unbounded figure when asked for 0)
  int64_t num_kv_blocks = 0;   // the pool's size
  std::vector<ReplayOutcome> by_request;  // each request's outcome, in order

  // Adds one request of `prompt_tokens` tokens.
  void Add(const ReplayOutcome& outcome, int64_t prompt_tokens);
  int64_t pool_tokens() const { return cached_tokens - host_tokens - disk_tokens - partial_tokens; }
  double fraction(int64_t tokens) const {
    return prompt_tokens == 0 ? 0.0 : static_cast<double>(tokens) / prompt_tokens;
  }
  double cached_fraction() const { return fraction(cached_tokens); }
  double ideal_fraction() const { return fraction(ideal_tokens); }
};

// The prompt's token ids: hash id h's block is h * kTraceBlockTokens + i, i in [0, 512).
std::vector<int32_t> TracePromptTokens(const TraceRequest& request);

// The ideal of a request given the block ids earlier requests carried: its leading ids found
// in `seen`, times kTraceBlockTokens, at most input_length - 1 (the last prompt token is always
// computed).
int64_t IdealCachedTokens(const TraceRequest& request, const absl::flat_hash_set<int64_t>& seen);

// Replays `requests` in order through a fresh cache of `options` (CacheReplayer). Fails when
// the options are out of range or the disk tier's scratch folder cannot be made.
StatusOr<ReplayResult> ReplayTrace(std::span<const TraceRequest> requests,
                                   const ReplayOptions& options);

}  // namespace prefixd
