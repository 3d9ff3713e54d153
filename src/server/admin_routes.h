// The admin routes, behind --admin-key (checked before they run, http_server.cc):
// POST /admin/api/cache/probe (read-only), /clear, /disable, /enable.
//
// Thread safety: any thread.
#pragma once

#include "server/http_message.h"
#include "server/server_context.h"

namespace prefixd {

HttpResponse HandleProbe(ServerContext& ctx, const HttpRequest& req);
HttpResponse HandleClear(ServerContext& ctx, const HttpRequest& req);
HttpResponse HandleKillSwitch(ServerContext& ctx, bool enable);

}  // namespace prefixd
