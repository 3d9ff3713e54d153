// The routes that only read: GET /health, /v1/models, /props, /v1/prefix_cache_stats,
// /metrics, /v1/recent_requests, the dashboard's files, and POST /tokenize, /detokenize
// (which read the vocabulary). Authorization is checked before they run (http_server.cc).
//
// Thread safety: any thread; they never wait on the engine (stats() reads atomics).
#pragma once

#include <string>

#include "server/http_message.h"
#include "server/server_context.h"

namespace prefixd {

HttpResponse HandleHealth(ServerContext& ctx);
HttpResponse HandleModels(ServerContext& ctx);
// With --api-key, a request without the key sees no paths, cache folders or remote
// addresses: only what any client may know.
HttpResponse HandleProps(ServerContext& ctx, const HttpRequest& req);
HttpResponse HandleCacheStats(ServerContext& ctx);
HttpResponse HandleRecentRequests(ServerContext& ctx);
HttpResponse HandleDashboard(ServerContext& ctx, const std::string& name);
HttpResponse HandleMetrics(ServerContext& ctx);
HttpResponse HandleTokenize(ServerContext& ctx, const HttpRequest& req);
HttpResponse HandleDetokenize(ServerContext& ctx, const HttpRequest& req);

}  // namespace prefixd
