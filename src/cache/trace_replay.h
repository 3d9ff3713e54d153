// TraceReplay: what hit rate a workload would get from the prefix cache at given budgets,
// without a model. Each request of a trace runs through the real cache code the engine runs:
// PrefixCache::Acquire (the token-granular radix tree), a BlockTable that adopts the hit and
// reserves the rest (copy-on-write of a partly matched block included), PrefixCache::Evict
// when the pool is short, and PrefixCache::Insert of the prompt and its generated tokens. No KV
// bytes exist: the pool is bookkeeping only (BlockPool holds none).
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
  int block_size = 16;       // KV block size in tokens, as --block-size
  int64_t pool_blocks = 0;   // pool capacity in blocks; 0: unbounded (every token fits)
  bool with_output = true;   // generated tokens take pool blocks too, as in the server
};

struct ReplayResult {
  int64_t requests = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens the cache served, summed over requests
  int64_t ideal_tokens = 0;   // IdealCachedTokens, summed
  int64_t hit_requests = 0;   // requests with at least one cached token
  int64_t evicted_blocks = 0;
  int64_t unservable = 0;     // requests longer than the whole pool (counted as misses)
  int64_t pool_blocks = 0;    // the capacity used (the unbounded figure when asked for 0)
  std::vector<int64_t> cached_by_request;  // cached prompt tokens of each request, in order

  double cached_fraction() const {
    return prompt_tokens == 0 ? 0.0 : static_cast<double>(cached_tokens) / prompt_tokens;
  }
  double ideal_fraction() const {
    return prompt_tokens == 0 ? 0.0 : static_cast<double>(ideal_tokens) / prompt_tokens;
  }
};

// The prompt's token ids: hash id h's block is h * kTraceBlockTokens + i, i in [0, 512).
std::vector<int32_t> TracePromptTokens(const TraceRequest& request);

// The ideal of a request given the block ids earlier requests carried: its leading ids found
// in `seen`, times kTraceBlockTokens, at most input_length - 1 (the last prompt token is always
// computed).
int64_t IdealCachedTokens(const TraceRequest& request, const absl::flat_hash_set<int64_t>& seen);

// Replays `requests` in order through a fresh cache of `options`.
ReplayResult ReplayTrace(std::span<const TraceRequest> requests, const ReplayOptions& options);

}  // namespace prefixd
