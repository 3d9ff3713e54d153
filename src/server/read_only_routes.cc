#include "server/read_only_routes.h"

#include "server/api_error.h"
#include "server/json_body.h"
#include "server/dashboard_assets.h"
#include "server/metrics.h"
#include "server/openai_response.h"

namespace prefixd {

namespace {
using json = nlohmann::json;
}  // namespace

HttpResponse HandleHealth(ServerContext& ctx) { return JsonResponse(200, json{{"status", "ok"}}); }

HttpResponse HandleModels(ServerContext& ctx) {
  const ServiceInfo& i = ctx.info();
  json model{{"id", i.model_id},
             {"object", "model"},
             {"created", ctx.started_unix},
             {"owned_by", "prefixd"},
             {"meta",
              {{"path", i.model_path},
               {"architecture", i.architecture},
               {"context_length", i.context_length},
               {"vocab_size", i.vocab_size},
               {"block_size", i.block_size}}}};
  return JsonResponse(200, json{{"object", "list"}, {"data", json::array({model})}});
}

HttpResponse HandleProps(ServerContext& ctx, const HttpRequest& req) {
  const ServiceInfo& i = ctx.info();
  const ServiceStats s = ctx.service->stats();
  const bool full = ctx.HasApiKey(req);
  json j;
  j["model"] = {{"id", i.model_id},
                {"architecture", i.architecture},
                {"context_length", i.context_length},
                {"vocab_size", i.vocab_size}};
  if (full) j["model"]["path"] = i.model_path;
  j["backend"] = i.backend;
  j["chat_template"] = {{"format", ctx.chat_format.name()},
                        {"from_gguf", ctx.has_chat_template},
                        {"template", ctx.chat_format.chat_template().source()}};
  if (!ctx.chat_format.chat_template().fallback_reason().empty()) {
    j["chat_template"]["fallback_reason"] = ctx.chat_format.chat_template().fallback_reason();
  }
  j["kv"] = {{"block_size", i.block_size},
             {"dtype", i.kv_dtype},
             {"block_bytes", i.block_bytes},
             {"num_blocks", i.num_kv_blocks},
             {"free_blocks", s.pool_free_blocks}};
  json tiers = json::array({"pool"});
  if (i.host_cache_bytes > 0) tiers.push_back("host");
  if (!i.disk_cache_dir.empty()) tiers.push_back("disk");
  if (!i.remote_cache.empty()) tiers.push_back("remote");
  if (i.partial_max_entries > 0) tiers.push_back("partial");
  j["prefix_cache"] = {{"configured", i.prefix_cache},
                       {"hash", i.cache_hash},
                       {"enabled", CacheDisabledReason(i, s).empty()},
                       {"budget_bytes", i.cache_budget_bytes},
                       {"max_cached_blocks", s.cache.max_cached_blocks},
                       {"tiers", std::move(tiers)},
                       {"host_cache_bytes", i.host_cache_bytes},
                       {"disk_cache_bytes", i.disk_cache_bytes},
                       {"disk_policy", i.disk_cache_dir.empty() ? std::string("none") : i.disk_prefix_cache},
                       {"partial_max_entries", i.partial_max_entries},
                       {"retention_max_share", i.retention_max_share}};
  // What a router needs to read the KV event stream (README, "KV events").
  j["prefix_cache"]["kv_events"] = {
      {"enabled", !i.kv_events_endpoint.empty()},
      {"endpoint", i.kv_events_endpoint},
      {"replay_endpoint", i.kv_events_replay_endpoint},
      {"block_size", i.block_size},
      {"hash", i.cache_hash},
      {"event_hash", "high 64 bits of the 128-bit chain key"}};
  j["prefix_cache"]["reply_tokens"] = ReplyRecordJson(ctx.replies.get());
  if (full) {
    j["prefix_cache"]["disk_cache_dir"] = i.disk_cache_dir;
    j["prefix_cache"]["remote_cache"] = i.remote_cache;
    j["prefix_cache"]["remote_cache_namespace"] = i.remote_cache_namespace;
  }
  j["scheduler"] = {{"max_running", i.max_running},
                    {"max_batch_tokens", i.max_batch_tokens},
                    {"max_queue", i.max_queue}};
  j["server"] = {{"admin_api", !ctx.options.admin_key.empty()},
                 {"api_key_required", !ctx.options.api_key.empty()},
                 {"max_body_bytes", ctx.options.max_body_bytes},
                 {"http_threads", ctx.options.num_threads},
                 {"max_connections", ctx.options.max_connections}};
  return JsonResponse(200, j);
}

HttpResponse HandleCacheStats(ServerContext& ctx) {
  const ServiceStats s = ctx.service->stats();
  const int64_t now = ctx.NowS();
  ctx.hit_window.Record(now, s.cache.hits, s.cache.misses);
  return JsonResponse(200, PrefixCacheStatsJson(ctx.info(), s, ctx.hit_window, now,
                                                ctx.metrics.prompt_cache_key_requests.load()));
}

// The last requests, newest first, the time-to-first-token histogram and hits and misses
// per 10 s over 15 minutes: what the dashboard shows beside the cache counters.
HttpResponse HandleRecentRequests(ServerContext& ctx) {
  json requests = json::array();
  for (const RequestRecord& r : ctx.recent.Snapshot()) requests.push_back(RequestRecordJson(r));
  const ServiceStats s = ctx.service->stats();
  const int64_t now = ctx.NowS();
  ctx.hit_window.Record(now, s.cache.hits, s.cache.misses);
  return JsonResponse(200, json{{"capacity", ctx.recent.capacity()},
                                {"num_recorded", ctx.recent.num_added()},
                                {"requests", std::move(requests)},
                                {"time_to_first_token_seconds", HistogramJson(ctx.metrics.time_to_first_token)},
                                {"hit_history", HitHistoryJson(ctx.hit_window, now, 10, 90, s.cache.hits, s.cache.misses)}});
}

// The dashboard's files, embedded in the binary. Open like /metrics: the page holds no
// data; what it fetches is authorized on its own.
HttpResponse HandleDashboard(ServerContext& ctx, const std::string& name) {
  const DashboardAsset* a = FindDashboardAsset(name);
  if (a == nullptr) return ErrorResponse(MakeApiError(404, absl::StrCat("no dashboard file '", name, "'")));
  HttpResponse r;
  r.content_type = std::string(a->content_type);
  r.headers = {{"Content-Security-Policy", std::string(kDashboardContentSecurityPolicy)},
               {"X-Content-Type-Options", "nosniff"},
               {"Cache-Control", "no-cache"}};
  r.body = std::string(a->body);
  return r;
}

HttpResponse HandleMetrics(ServerContext& ctx) {
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = PrometheusText(ctx.info(), ctx.service->stats(), ctx.metrics);
  return r;
}

// llama.cpp's POST /tokenize: {"content", "add_special" (BOS, default false)} -> {"tokens"}.
HttpResponse HandleTokenize(ServerContext& ctx, const HttpRequest& req) {
  auto body = ParseJsonObject(req.body);
  if (!body.ok()) return StatusResponse(body.status());
  auto content = body->find("content");
  if (content == body->end() || !content->is_string()) {
    return StatusResponse(InvalidArgumentFor("content", "'content' must be a string"));
  }
  EncodeOptions o = PromptEncodeOptions();
  o.add_bos = false;
  if (auto add = body->find("add_special"); add != body->end() && !add->is_null()) {
    if (!add->is_boolean()) return StatusResponse(InvalidArgumentFor("add_special", "'add_special' must be a boolean"));
    if (add->get<bool>()) o.add_bos.reset();  // the vocabulary's own BOS rule, as prompts
  }
  // llama.cpp's parse_special (default true): false keeps special-token text as plain text.
  if (auto parse = body->find("parse_special"); parse != body->end() && !parse->is_null()) {
    if (!parse->is_boolean()) {
      return StatusResponse(InvalidArgumentFor("parse_special", "'parse_special' must be a boolean"));
    }
    o.parse_special = parse->get<bool>();
  }
  return JsonResponse(200, json{{"tokens", ctx.tokenizer().Encode(content->get<std::string>(), o)}});
}

// llama.cpp's POST /detokenize: {"tokens"} -> {"content"}.
HttpResponse HandleDetokenize(ServerContext& ctx, const HttpRequest& req) {
  auto body = ParseJsonObject(req.body);
  if (!body.ok()) return StatusResponse(body.status());
  auto tokens = body->find("tokens");
  if (tokens == body->end() || !tokens->is_array()) {
    return StatusResponse(InvalidArgumentFor("tokens", "'tokens' must be an array of token ids"));
  }
  std::string text;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const json& t = (*tokens)[i];
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= ctx.info().vocab_size) {
      return StatusResponse(InvalidArgumentFor(absl::StrCat("tokens[", i, "]"),
                                               absl::StrCat("'tokens[", i, "]' is not a token id of this vocabulary")));
    }
    text += ctx.tokenizer().Piece(static_cast<int32_t>(t.get<int64_t>()));
  }
  return JsonResponse(200, json{{"content", text}});
}

}  // namespace prefixd
