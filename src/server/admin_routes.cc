#include "server/admin_routes.h"

#include "server/api_error.h"
#include "server/json_body.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/openai_response.h"

namespace prefixd {

namespace {

using json = nlohmann::json;

// The token range each tier serves, in lookup order, empty tiers left out:
//   by_tier {pool: 32, host: 16, disk: 0}  ->  [{pool, 0, 32}, {host, 32, 48}]
// The tiers hold consecutive runs of the prompt (see HandleProbe); clipped to `total`.
json TierRanges(const json& by_tier, int64_t total) {
  json ranges = json::array();
  int64_t at = 0;
  for (const char* tier : {"pool", "host", "disk", "remote", "partial"}) {
    if (!by_tier.contains(tier)) continue;
    const int64_t end = std::min(total, at + by_tier[tier].get<int64_t>());
    if (end > at) ranges.push_back(json{{"tier", tier}, {"start", at}, {"end", end}});
    at = std::max(at, end);
  }
  return ranges;
}

// What of the prompt carries a retention mark, per tier, and each tier's retained bytes and
// expiries (ARCHITECTURE.md invariant 9).
json RetentionProbeJson(const TierProbe& p, const ServiceStats& stats, const ServiceInfo& info) {
  const PrefixCacheStats& c = stats.cache;
  const int64_t pool_bytes = info.block_size > 0 ? c.retained_tokens * info.block_bytes / info.block_size : 0;
  json tiers{{"pool", json{{"prompt_retained_tokens", p.pool_retained_tokens},
                           {"retained_bytes", pool_bytes},
                           {"expired_tokens", c.retention_expired_tokens},
                           {"capped_tokens", c.retention_capped_tokens}}}};
  if (stats.tiers && stats.tiers->host_enabled) {
    const TierStats& h = stats.tiers->host;
    tiers["host"] = json{{"prompt_retained_tokens", p.host_retained_tokens},
                         {"retained_bytes", h.retained_bytes},
                         {"expired", h.retention_expired},
                         {"capped", h.retention_capped},
                         {"spilled", h.retention_spilled}};
  }
  if (stats.tiers && stats.tiers->disk_enabled) {
    const TierStats& d = stats.tiers->disk;
    tiers["disk"] = json{{"prompt_retained_tokens", p.disk_retained_tokens},
                         {"retained_bytes", d.retained_bytes},
                         {"expired", d.retention_expired},
                         {"capped", d.retention_capped}};
  }
  return tiers;
}

}  // namespace

HttpResponse HandleProbe(ServerContext& ctx, const HttpRequest& req) {
  // Prompts longer than the context can still be probed: no token-count limit here.
  auto parsed = ParseProbeRequest(req.body, RequestLimits{0, ctx.info().vocab_size});
  if (!parsed.ok()) return StatusResponse(parsed.status());
  const OpenAiRequest& r = *parsed;
  json j;
  j["model_id"] = ctx.info().model_id;
  if (Status s = ctx.CheckModel(r.model); !s.ok()) {
    j["model_loaded"] = false;
    j["reason"] = absl::StrCat("the model '", r.model, "' is not loaded; this server serves '",
                               ctx.info().model_id, "'");
    return JsonResponse(200, j);
  }
  auto prompt = ctx.BuildPrompt(r, /*touch_replies=*/false);
  if (!prompt.ok()) return StatusResponse(prompt.status());
  const int64_t total = static_cast<int64_t>(prompt->tokens.size());
  // Per tier, in lookup order; the tiers hold consecutive runs of the prompt, so the
  // resident prefix is their sum.
  std::vector<uint64_t> hashes;
  const TierProbe p = ctx.service->ProbeTiers(r.cache_salt, prompt->tokens,
                                              r.probe_block_hashes ? &hashes : nullptr);
  const ServiceStats stats = ctx.service->stats();
  const int64_t resident =
      std::min(total, p.pool_tokens + p.host_tokens + p.disk_tokens + p.remote_tokens + p.partial_tokens);
  const int64_t bs = std::max(1, ctx.info().block_size);
  j["model_loaded"] = true;
  j["cache_enabled"] = CacheDisabledReason(ctx.info(), stats).empty();
  j["total_tokens"] = total;
  j["block_size"] = ctx.info().block_size;
  j["total_blocks"] = (total + bs - 1) / bs;
  j["resident_blocks"] = resident / bs;  // full blocks among the resident tokens
  j["resident_tokens"] = resident;
  j["cold_tokens"] = total - resident;
  json by_tier{{"pool", p.pool_tokens}};
  if (stats.tiers && stats.tiers->host_enabled) by_tier["host"] = p.host_tokens;
  if (stats.tiers && stats.tiers->disk_enabled) by_tier["disk"] = p.disk_tokens;
  if (stats.tiers && stats.tiers->remote_enabled) by_tier["remote"] = p.remote_tokens;
  if (stats.tiers && stats.tiers->partial.max_entries > 0) by_tier["partial"] = p.partial_tokens;
  j["ranges"] = TierRanges(by_tier, total);
  j["by_tier"] = std::move(by_tier);
  j["retention"] = RetentionProbeJson(p, stats, ctx.info());
  if (ctx.info().state_checkpoint_blocks > 0) {
    // A hybrid resumes only at a state snapshot: where the pool's deepest one for this prompt
    // is (the lower tiers' snapshots are found when they are onboarded).
    j["state_snapshot"] = json{{"pool_resume_at", p.pool_resume_tokens}};
  }
  if (prompt->starts) {
    j["num_messages"] = r.messages.size();
    j["diverges_in_message"] = resident < total ? json(prompt->starts->MessageOf(resident)) : json(nullptr);
    j["message_starts"] = prompt->starts->message_starts;
    j["generation_start"] = prompt->starts->generation_start;
  }
  if (r.probe_block_hashes) {
    // 16 hex digits each: JSON numbers past 2^53 lose bits in JavaScript.
    json h = json::array();
    for (uint64_t v : hashes) h.push_back(absl::StrCat(absl::Hex(v, absl::kZeroPad16)));
    j["block_hashes"] = std::move(h);
  }
  if (r.probe_tokens) {
    json pieces = json::array();
    for (int32_t t : prompt->tokens) pieces.push_back(ctx.tokenizer().Piece(t));
    j["tokens"] = std::move(pieces);
  }
  return JsonResponse(200, j);
}

HttpResponse HandleClear(ServerContext& ctx, const HttpRequest& req) {
  std::string tier = "all";
  if (!req.body.empty()) {
    auto body = ParseJsonObject(req.body);
    if (!body.ok()) return StatusResponse(body.status());
    if (auto it = body->find("tier"); it != body->end() && !it->is_null()) {
      if (!it->is_string()) return StatusResponse(InvalidArgumentFor("tier", "'tier' must be a string"));
      tier = it->get<std::string>();
    }
  }
  if (tier != "all" && tier != "pool" && tier != "host" && tier != "disk" && tier != "remote" && tier != "partial") {
    return StatusResponse(InvalidArgumentFor(
        "tier", absl::StrCat("'tier' is '", tier, "'; it must be pool, host, disk, remote, partial or all")));
  }
  int freed = 0;
  if (tier == "pool" || tier == "all") freed = ctx.service->ClearCache();
  if (tier != "pool") {
    if (Status s = ctx.service->ClearCacheTier(tier); !s.ok()) {
      return StatusResponse(s.code() == absl::StatusCode::kInvalidArgument
                                ? InvalidArgumentFor("tier", std::string(s.message()))
                                : s);
    }
  }
  return JsonResponse(200, json{{"cleared", tier}, {"freed_blocks", freed}});
}

HttpResponse HandleKillSwitch(ServerContext& ctx, bool enable) {
  if (enable && !ctx.info().prefix_cache_refusal.empty()) {
    return ErrorResponse(MakeApiError(
        400, absl::StrCat("the prefix cache cannot be enabled for this model: ",
                          ctx.info().prefix_cache_refusal)));
  }
  if (enable && !ctx.info().prefix_cache) {
    return ErrorResponse(MakeApiError(400, "the prefix cache is off by configuration "
                                           "(--prefix-cache off); restart with --prefix-cache on"));
  }
  ctx.service->SetCacheEnabled(enable);
  const ServiceStats s = ctx.service->stats();
  json j{{"enabled", CacheDisabledReason(ctx.info(), s).empty()}};
  if (const std::string reason = CacheDisabledReason(ctx.info(), s); !reason.empty()) j["reason"] = reason;
  return JsonResponse(200, j);
}

}  // namespace prefixd
