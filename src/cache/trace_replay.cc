#include "cache/trace_replay.h"

#include <algorithm>

#include "base/check.h"
#include "cache/prefix_cache.h"
#include "kv/block_pool.h"
#include "kv/block_table.h"

namespace prefixd {

namespace {

int64_t BlocksFor(int64_t tokens, int block_size) { return (tokens + block_size - 1) / block_size; }

// The pool that holds every token of the trace at once (prompts and outputs, each in its own
// blocks), so nothing is ever evicted: the "unbounded" budget.
int64_t UnboundedBlocks(std::span<const TraceRequest> requests, const ReplayOptions& o) {
  int64_t blocks = 0;
  for (const TraceRequest& r : requests) {
    blocks += BlocksFor(r.input_length + (o.with_output ? r.output_length : 0), o.block_size) + 1;
  }
  return std::max<int64_t>(blocks, 1);
}

}  // namespace

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

ReplayResult ReplayTrace(std::span<const TraceRequest> requests, const ReplayOptions& options) {
  PREFIXD_CHECK(options.block_size > 0, "ReplayTrace: block size must be positive");
  ReplayResult result;
  result.pool_blocks = options.pool_blocks > 0 ? options.pool_blocks : UnboundedBlocks(requests, options);
  PREFIXD_CHECK(result.pool_blocks < (int64_t{1} << 31), "ReplayTrace: pool too large");
  BlockPool pool(static_cast<int>(result.pool_blocks));
  PrefixCacheOptions cache_options;
  cache_options.max_cached_blocks = static_cast<int>(result.pool_blocks);
  PrefixCache cache(&pool, options.block_size, cache_options);
  absl::flat_hash_set<int64_t> seen;
  // Generated tokens: ids above every prompt token, never repeated.
  int64_t max_id = 0;
  for (const TraceRequest& r : requests) {
    for (int64_t h : r.hash_ids) max_id = std::max(max_id, h);
  }
  int64_t next_output = (max_id + 1) * kTraceBlockTokens;
  PREFIXD_CHECK(next_output < (int64_t{1} << 31), "ReplayTrace: hash ids too large for token ids");

  for (const TraceRequest& r : requests) {
    std::vector<int32_t> tokens = TracePromptTokens(r);
    const int64_t n = static_cast<int64_t>(tokens.size());
    ++result.requests;
    result.prompt_tokens += n;
    result.ideal_tokens += IdealCachedTokens(r, seen);
    for (int64_t h : r.hash_ids) seen.insert(h);
    result.cached_by_request.push_back(0);
    if (n == 0) continue;
    if (options.with_output) {
      for (int64_t i = 0; i < r.output_length && next_output < (int64_t{1} << 31); ++i) {
        tokens.push_back(static_cast<int32_t>(next_output++));
      }
    }
    const int64_t total = static_cast<int64_t>(tokens.size());
    if (BlocksFor(total, options.block_size) + 1 > result.pool_blocks) {
      ++result.unservable;  // as the server refuses a prompt longer than its pool
      continue;
    }
    // As Engine::Admit: the last prompt token is always computed.
    CacheHit hit = cache.Acquire("", tokens, n - 1);
    result.cached_tokens += hit.num_tokens;
    result.cached_by_request.back() = hit.num_tokens;
    if (hit.num_tokens > 0) ++result.hit_requests;
    BlockTable table;
    table.Adopt(hit.blocks);
    // As Engine::ReserveWrite: evict until the rest fits (copy-on-write of a partly matched
    // block included). The hit's own path is locked, so it stays.
    while (!table.PrepareWrite(pool, options.block_size, hit.num_tokens, total)) {
      const int needed = static_cast<int>(BlocksFor(total - hit.num_tokens, options.block_size)) + 1;
      PREFIXD_CHECK(cache.Evict(needed) > 0, "ReplayTrace: the pool cannot hold one request");
    }
    // The engine indexes the prompt when its prefill completes and the whole sequence when it
    // finishes; one request at a time, the second insert alone leaves the same tree.
    cache.Insert("", tokens, table.blocks());
    cache.Release(hit);
    table.Release(pool);
  }
  result.evicted_blocks = cache.stats().evicted_blocks;
  return result;
}

}  // namespace prefixd
