#include "server/cache_retention.h"

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "server/api_error.h"
#include "server/json_body.h"

namespace prefixd {

namespace {

using json = nlohmann::json;

StatusOr<TokenRetention> ReadOneRange(const json& e, const std::string& f) {
  if (!e.is_object()) return WrongType(f, "an object", e);
  TokenRetention r;
  if (const json* v = FindField(e, "token_start")) {
    ASSIGN_OR_RETURN(r.token_start, ReadInt(*v, JsonPathJoin(f, "token_start"), 0, INT32_MAX));
  }
  if (const json* v = FindField(e, "token_end"); v != nullptr && !v->is_null()) {
    ASSIGN_OR_RETURN(int64_t end, ReadInt(*v, JsonPathJoin(f, "token_end"), 1, INT32_MAX));
    if (end <= r.token_start) {
      return InvalidArgumentFor(JsonPathJoin(f, "token_end"),
                                absl::StrCat("'", JsonPathJoin(f, "token_end"), "' (", end,
                                             ") must be greater than token_start (", r.token_start, ")"));
    }
    r.token_end = end;
  }
  if (const json* v = FindField(e, "priority")) {
    ASSIGN_OR_RETURN(int64_t p, ReadInt(*v, JsonPathJoin(f, "priority"), 1, kMaxRetentionPriority));
    r.priority = static_cast<int>(p);
  }
  const json* d = FindField(e, "duration_s");
  if (d == nullptr) return Missing(JsonPathJoin(f, "duration_s"));
  ASSIGN_OR_RETURN(double seconds, ReadNumber(*d, JsonPathJoin(f, "duration_s"), 0.001,
                                              static_cast<double>(kMaxRetentionDurationS)));
  r.duration_ms = static_cast<int64_t>(seconds * 1000);
  return r;
}

}  // namespace

Status ReadTokenRetention(const json& v, RetentionRequest& out) {
  const std::string field = "prefix_cache.retention";
  if (!v.is_array()) return WrongType(field, "an array of token ranges", v);
  if (v.size() > kMaxRetentionRanges) {
    return InvalidArgumentFor(field, absl::StrCat("'", field, "' has ", v.size(),
                                                  " ranges; at most ", kMaxRetentionRanges,
                                                  " are allowed"));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    ASSIGN_OR_RETURN(TokenRetention r, ReadOneRange(v[i], JsonPathJoin(field, i)));
    out.token_ranges.push_back(r);
  }
  return absl::OkStatus();
}

Status ReadOpenAiRetention(const json& body, RetentionRequest& out) {
  if (const json* v = FindField(body, "prompt_cache_retention"); v != nullptr && !v->is_null()) {
    ASSIGN_OR_RETURN(std::string r, ReadString(*v, "prompt_cache_retention"));
    if (r != "in_memory" && r != "24h") {
      return InvalidArgumentFor("prompt_cache_retention",
                                absl::StrCat("'prompt_cache_retention' is '", r,
                                             "'; it must be in_memory or 24h"));
    }
    out.prompt_cache_retention = r;
  }
  if (const json* v = FindField(body, "prompt_cache_key"); v != nullptr && !v->is_null()) {
    ASSIGN_OR_RETURN(std::string key, ReadString(*v, "prompt_cache_key"));
    out.prompt_cache_key = std::move(key);
  }
  return absl::OkStatus();
}

Status ReadCacheControl(const json& block, const std::string& field, const CacheBreakpoint& where,
                        RetentionRequest& out) {
  if (!block.is_object()) return absl::OkStatus();
  const json* cc = FindField(block, "cache_control");
  if (cc == nullptr || cc->is_null()) return absl::OkStatus();
  const std::string f = JsonPathJoin(field, "cache_control");
  if (!cc->is_object()) return WrongType(f, "an object", *cc);
  const json* type = FindField(*cc, "type");
  if (type == nullptr) return Missing(JsonPathJoin(f, "type"));
  ASSIGN_OR_RETURN(std::string t, ReadString(*type, JsonPathJoin(f, "type")));
  if (t != "ephemeral") {
    return InvalidArgumentFor(JsonPathJoin(f, "type"), absl::StrCat("'", JsonPathJoin(f, "type"), "' is '", t,
                                                            "'; only ephemeral is supported"));
  }
  CacheBreakpoint bp = where;
  bp.duration_ms = kCacheControlTtl5mMs;
  if (const json* ttl = FindField(*cc, "ttl"); ttl != nullptr && !ttl->is_null()) {
    ASSIGN_OR_RETURN(std::string s, ReadString(*ttl, JsonPathJoin(f, "ttl")));
    if (s == "1h") {
      bp.duration_ms = kCacheControlTtl1hMs;
    } else if (s != "5m") {
      return InvalidArgumentFor(JsonPathJoin(f, "ttl"), absl::StrCat("'", JsonPathJoin(f, "ttl"), "' is '", s,
                                                             "'; it must be 5m or 1h"));
    }
  }
  if (out.breakpoints.size() >= kMaxCacheBreakpoints) {
    return InvalidArgumentFor(f, absl::StrCat("a maximum of ", kMaxCacheBreakpoints,
                                              " blocks with cache_control may be provided; '", f,
                                              "' is one more"));
  }
  out.breakpoints.push_back(bp);
  return absl::OkStatus();
}

ResolvedRetention ResolveRetention(const RetentionRequest& request, int64_t num_prompt,
                                   std::span<const int64_t> breakpoint_ends) {
  ResolvedRetention out;
  auto add = [&](int64_t begin, int64_t end, int priority, int64_t duration_ms) {
    end = std::min(end, num_prompt);
    if (begin >= end) return;
    out.ranges.push_back(RetentionRange{begin, end, priority, duration_ms});
    out.retained_tokens = std::max(out.retained_tokens, end);
    out.max_duration_ms = std::max(out.max_duration_ms, duration_ms);
  };
  for (const TokenRetention& r : request.token_ranges) {
    add(r.token_start, r.token_end.value_or(num_prompt), r.priority, r.duration_ms);
  }
  if (request.prompt_cache_retention == "24h") {
    add(0, num_prompt, kDefaultRetentionPriority, kPromptCacheRetention24hMs);
  }
  const size_t n = std::min(request.breakpoints.size(), breakpoint_ends.size());
  for (size_t i = 0; i < n; ++i) {
    const CacheBreakpoint& bp = request.breakpoints[i];
    const int64_t end = std::clamp<int64_t>(breakpoint_ends[i], 0, num_prompt);
    add(0, end, kDefaultRetentionPriority, bp.duration_ms);
    out.cache_write_end = std::max(out.cache_write_end, end);
    if (bp.duration_ms >= kCacheControlTtl1hMs) out.cache_write_end_1h = std::max(out.cache_write_end_1h, end);
  }
  return out;
}

json RetentionUsageJson(const RetentionRequest& request, const ResolvedRetention& resolved) {
  if (request.empty() && !request.prompt_cache_key && request.prompt_cache_retention.empty()) {
    return nullptr;
  }
  json j{{"retained_tokens", resolved.retained_tokens},
         {"duration_s", static_cast<double>(resolved.max_duration_ms) / 1000.0}};
  if (request.prompt_cache_key) j["prompt_cache_key"] = *request.prompt_cache_key;
  if (!request.prompt_cache_retention.empty()) {
    j["prompt_cache_retention"] = request.prompt_cache_retention;
  }
  return j;
}

}  // namespace prefixd
