// What a request asks the prefix cache to keep (ARCHITECTURE.md invariant 9), in each
// dialect, read from the body and then resolved to token ranges of the built prompt
// (RequestRetention, which the engine hands the cache). Nothing here knows HTTP or the engine
// loop.
//
//   Anthropic  cache_control: {type: "ephemeral", ttl?: "5m" | "1h"} on a system block, a
//              message's content block, a tool_result or a tool: keeps the prompt up to the
//              END of that block as the template rendered it (cache_breakpoints.h finds it),
//              and of everything Anthropic's order (tools, system, messages) puts before it.
//              At most 4 breakpoints, as Anthropic's API.
//   OpenAI     prompt_cache_retention: "in_memory" (the default: ordinary caching) | "24h"
//              (the whole prompt, 24 hours); prompt_cache_key: a string naming the request's
//              cache group, accepted, counted and echoed (one server has nothing to route).
//   prefixd    prefix_cache.retention: [{token_start?: 0, token_end?: end of prompt,
//              priority?: 50 (1..100), duration_s: (0, 30 days]}], at most 64 ranges, as
//              TensorRT-LLM's token-range retention: the tokens [token_start, token_end).
//
//   prompt:  [ system ........ | user: text1 text2 ...... | assistant ... | user ... | gen. prompt ]
//   marks:   [== 1h breakpoint on system ===]
//            [==== 5m breakpoint on text1 ==]
//   usage:   cache_read = R (served from cache) ; cache_creation = B - R where B is the last
//            breakpoint's position (split 1h / 5m at the last 1h breakpoint); input = the rest
//
// Thread safety: value types and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "engine/request_scope.h"

namespace prefixd {

inline constexpr int64_t kCacheControlTtl5mMs = int64_t{5} * 60 * 1000;
inline constexpr int64_t kCacheControlTtl1hMs = int64_t{60} * 60 * 1000;
inline constexpr int64_t kPromptCacheRetention24hMs = int64_t{24} * 60 * 60 * 1000;
inline constexpr int64_t kMaxRetentionDurationS = int64_t{30} * 24 * 3600;
inline constexpr size_t kMaxCacheBreakpoints = 4;
inline constexpr size_t kMaxRetentionRanges = 64;

// A cache_control breakpoint: where its block sits in the chat the template renders
// (OpenAiRequest::messages and tools), kept for `duration_ms`.
//   a tool                  kTool, index = the tool
//   a block of a message    kMessage, index = the chat message (blocks of one Anthropic turn are
//                           joined into one), content_end = the byte of the message's content
//                           where the block's text (or the text before it) ends, -1 when none
//                           does; tool_call = the message's tool call the block is or follows,
//                           -1 when none
// The block ends at the later of those two ends as rendered (assistant text after a tool_use
// block renders before the call in most templates; the call is kept too).
struct CacheBreakpoint {
  enum class Where { kTool, kMessage };
  Where where = Where::kMessage;
  int64_t index = 0;
  int64_t content_end = -1;
  int64_t tool_call = -1;
  int64_t duration_ms = kCacheControlTtl5mMs;
};

// prefix_cache.retention's entries, in tokens of the prompt.
struct TokenRetention {
  int64_t token_start = 0;
  std::optional<int64_t> token_end;  // nullopt: the end of the prompt
  int priority = 50;
  int64_t duration_ms = 0;
};

struct RetentionRequest {
  std::vector<TokenRetention> token_ranges;
  std::vector<CacheBreakpoint> breakpoints;
  std::string prompt_cache_retention;  // "" (absent), "in_memory" or "24h"
  std::optional<std::string> prompt_cache_key;

  bool empty() const {
    return token_ranges.empty() && breakpoints.empty() && prompt_cache_retention != "24h";
  }
};

// The request's retention in prompt positions.
struct ResolvedRetention {
  RequestRetention ranges;
  int64_t retained_tokens = 0;     // the furthest range end
  int64_t max_duration_ms = 0;     // the longest duration asked for
  int64_t cache_write_end = 0;     // the last breakpoint's position (0: none)
  int64_t cache_write_end_1h = 0;  // the last 1-hour breakpoint's position (0: none)
};

// prefix_cache.retention (`v`, the field's value), into out.token_ranges. InvalidArgument
// naming the entry's field.
Status ReadTokenRetention(const nlohmann::json& v, RetentionRequest& out);
// prompt_cache_retention and prompt_cache_key of `body`.
Status ReadOpenAiRetention(const nlohmann::json& body, RetentionRequest& out);
// The cache_control of Anthropic block `block` (at JSON path `field`), which sits at `where`
// (duration_ms ignored): appends a breakpoint, or nothing without cache_control.
// InvalidArgument for a type other than ephemeral, a ttl other than 5m/1h, or a fifth
// breakpoint.
Status ReadCacheControl(const nlohmann::json& block, const std::string& field, const CacheBreakpoint& where,
                        RetentionRequest& out);

// The ranges of a prompt of `num_prompt` tokens; `breakpoint_ends[i]` is where
// request.breakpoints[i] ends in the prompt's tokens (cache_breakpoints.h; empty for a raw
// prompt, where breakpoints cannot occur).
ResolvedRetention ResolveRetention(const RetentionRequest& request, int64_t num_prompt,
                                   std::span<const int64_t> breakpoint_ends);

// usage.prefix_cache.retention: {retained_tokens, duration_s, prompt_cache_key?,
// prompt_cache_retention?}; null when the request asked for nothing.
nlohmann::json RetentionUsageJson(const RetentionRequest& request, const ResolvedRetention& resolved);

}  // namespace prefixd
