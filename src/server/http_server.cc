#include "server/http_server.h"

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "base/log.h"
#include "server/admin_routes.h"
#include "server/generation_routes.h"
#include "server/http_transport.h"
#include "server/messages_routes.h"
#include "server/read_only_routes.h"
#include "server/request_headers.h"
#include "server/server_context.h"

namespace prefixd {

namespace {

enum class Auth { kNone, kApiKey, kAdmin };

struct Route {
  std::string method;
  std::string path;  // exact, or a prefix when it ends with '/' and `prefix` is set
  bool prefix = false;
  Auth auth = Auth::kNone;
  bool json_body = false;  // POST routes that read a JSON body
  std::string metric;      // the route as metrics count it
  std::function<void(const HttpRequest&, const std::shared_ptr<Responder>&)> run;
  ApiDialect dialect = ApiDialect::kOpenAi;  // the shape of its errors
};

bool IsLoopbackHost(std::string_view host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host == "[::1]";
}

// "example.com:8080" -> "example.com"; "[::1]:80" -> "[::1]".
std::string_view HostName(std::string_view host_port) {
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    return close == std::string_view::npos ? host_port : host_port.substr(0, close + 1);
  }
  return host_port.substr(0, host_port.find(':'));
}

// "http://example.com:8080" -> "example.com"; "" when it is not a URL's origin.
std::string_view OriginHost(std::string_view origin) {
  const size_t scheme = origin.find("://");
  if (scheme == std::string_view::npos) return "";
  return HostName(origin.substr(scheme + 3));
}

}  // namespace

struct HttpServer::Impl {
  Impl(EngineService* s, HttpServerOptions o) : ctx(s, std::move(o)), generation(&ctx) {}

  ServerContext ctx;
  GenerationRoutes generation;
  std::vector<Route> routes;
  std::unique_ptr<HttpTransport> transport;
  std::mutex sampler_mu;
  std::condition_variable sampler_cv;
  std::thread sampler;
  std::atomic<bool> stopped{false};

  const HttpServerOptions& options() const { return ctx.options; }

  // A Host names this server: when bound to loopback, only loopback names, the bound
  // address and --allowed-hosts (DNS rebinding: a page whose name resolves to 127.0.0.1
  // sends its own name); otherwise any, unless --allowed-hosts lists them.
  bool HostAllowed(std::string_view host) const {
    const std::vector<std::string>& allowed = options().allowed_hosts;
    for (const std::string& a : allowed) {
      if (a == "*" || EqualsIgnoringCase(a, host)) return true;
    }
    if (IsLoopbackHost(options().host)) return IsLoopbackHost(host) || EqualsIgnoringCase(host, options().host);
    return allowed.empty() || EqualsIgnoringCase(host, options().host);
  }

  const Route* Find(const HttpRequest& req) const {
    for (const Route& r : routes) {
      if (r.method != req.method) continue;
      if (r.prefix ? req.path.rfind(r.path, 0) == 0 : req.path == r.path) return &r;
    }
    return nullptr;
  }

  std::optional<HttpResponse> Refuse(HttpResponse r, const std::string& metric) {
    ctx.metrics.CountResponse(metric, r.status);
    return r;
  }

  // Before the body is read: everything decidable from the headers.
  std::optional<HttpResponse> Check(const HttpRequest& req) {
    const std::string host = req.Header("Host");
    if (!host.empty() && !HostAllowed(HostName(host))) {
      return Refuse(ErrorResponse(MakeApiError(403, absl::StrCat("the Host '", host, "' is not served here; start the "
                                                                 "server with --allowed-hosts to serve it"))),
                    "other");
    }
    if (req.method == "POST") {
      const std::string origin = req.Header("Origin");
      if (!origin.empty()) {
        const std::string_view from = OriginHost(origin);
        const bool same = !host.empty() && EqualsIgnoringCase(from, HostName(host));
        if (!same && !HostAllowed(from)) {
          return Refuse(ErrorResponse(MakeApiError(403, absl::StrCat("cross-origin POST from '", origin,
                                                                     "' refused; only this server's own pages "
                                                                     "and --allowed-hosts may POST"))),
                        "other");
        }
      }
    }
    const Route* route = Find(req);
    if (route == nullptr) {
      if (req.path.rfind("/admin/", 0) == 0) {
        if (auto refused = ctx.CheckAdmin(req)) return Refuse(*refused, "other");
      }
      return Refuse(ErrorResponse(MakeApiError(404, absl::StrCat("no route for ", req.method, " ", req.path))), "other");
    }
    if (route->auth == Auth::kApiKey) {
      if (auto refused = ctx.CheckApiKey(req, route->dialect)) return Refuse(*refused, route->metric);
    } else if (route->auth == Auth::kAdmin) {
      if (auto refused = ctx.CheckAdmin(req)) return Refuse(*refused, route->metric);
    }
    const std::string length = req.Header("Content-Length");
    const bool has_body = req.HasHeader("Transfer-Encoding") || (!length.empty() && length != "0");
    if (route->json_body && has_body && !IsJsonContentType(req.Header("Content-Type"))) {
      const std::string type = req.Header("Content-Type");
      return Refuse(ErrorResponse(MakeApiError(
                        415, absl::StrCat("the request body must be JSON, sent with 'Content-Type: application/json'; got ",
                                          type.empty() ? std::string("no Content-Type") : absl::StrCat("'", type, "'"))),
                                  route->dialect),
                    route->metric);
    }
    return std::nullopt;
  }

  void Handle(HttpRequest req, std::shared_ptr<Responder> out) {
    const Route* route = Find(req);
    if (route == nullptr) return out->Send(ErrorResponse(MakeApiError(404, "no route")));  // Check ran first
    route->run(req, out);
  }

  // A route answered at once by `fn`.
  template <typename Fn>
  void Sync(std::string method, std::string path, Auth auth, bool json_body, Fn fn, bool prefix = false,
            ApiDialect dialect = ApiDialect::kOpenAi) {
    const std::string metric = path;
    routes.push_back(Route{method, path, prefix, auth, json_body, metric,
                           [this, fn, metric](const HttpRequest& req, const std::shared_ptr<Responder>& out) {
                             HttpResponse r = fn(req);
                             ctx.metrics.CountResponse(metric, r.status);
                             out->Send(std::move(r));
                           },
                           dialect});
  }

  void Routes() {
    routes.push_back(Route{"POST", "/v1/completions", false, Auth::kApiKey, true, "/v1/completions",
                           [this](const HttpRequest& req, const std::shared_ptr<Responder>& out) {
                             generation.Handle(req, out, ApiKind::kCompletion);
                           }});
    routes.push_back(Route{"POST", "/v1/chat/completions", false, Auth::kApiKey, true, "/v1/chat/completions",
                           [this](const HttpRequest& req, const std::shared_ptr<Responder>& out) {
                             generation.Handle(req, out, ApiKind::kChat);
                           }});
    routes.push_back(Route{"POST", "/v1/messages", false, Auth::kApiKey, true, "/v1/messages",
                           [this](const HttpRequest& req, const std::shared_ptr<Responder>& out) {
                             HandleMessages(ctx, generation, req, out);
                           },
                           ApiDialect::kAnthropic});
    Sync("POST", "/v1/messages/count_tokens", Auth::kApiKey, true,
         [this](const HttpRequest& req) { return HandleCountTokens(ctx, req); }, false, ApiDialect::kAnthropic);
    Sync("GET", "/v1/models", Auth::kApiKey, false, [this](const HttpRequest&) { return HandleModels(ctx); });
    Sync("GET", "/health", Auth::kNone, false, [this](const HttpRequest&) { return HandleHealth(ctx); });
    Sync("GET", "/props", Auth::kNone, false, [this](const HttpRequest& req) { return HandleProps(ctx, req); });
    Sync("GET", "/v1/prefix_cache_stats", Auth::kApiKey, false,
         [this](const HttpRequest&) { return HandleCacheStats(ctx); });
    Sync("GET", "/metrics", Auth::kNone, false, [this](const HttpRequest&) { return HandleMetrics(ctx); });
    Sync("GET", "/v1/recent_requests", Auth::kApiKey, false,
         [this](const HttpRequest&) { return HandleRecentRequests(ctx); });
    Sync("POST", "/tokenize", Auth::kApiKey, true, [this](const HttpRequest& req) { return HandleTokenize(ctx, req); });
    Sync("POST", "/detokenize", Auth::kApiKey, true,
         [this](const HttpRequest& req) { return HandleDetokenize(ctx, req); });
    Sync("GET", "/dashboard", Auth::kNone, false, [this](const HttpRequest&) { return HandleDashboard(ctx, "index.html"); });
    // File names only (no '/'): nothing outside the embedded set can be named.
    Sync("GET", "/dashboard/", Auth::kNone, false, [this](const HttpRequest& req) {
      std::string name = req.path.substr(std::string("/dashboard/").size());
      if (name.empty()) name = "index.html";
      for (char c : name) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') {
          return ErrorResponse(MakeApiError(404, absl::StrCat("no dashboard file '", name, "'")));
        }
      }
      return HandleDashboard(ctx, name);
    }, /*prefix=*/true);
    Sync("POST", "/admin/api/cache/probe", Auth::kAdmin, true,
         [this](const HttpRequest& req) { return HandleProbe(ctx, req); });
    Sync("POST", "/admin/api/cache/clear", Auth::kAdmin, true,
         [this](const HttpRequest& req) { return HandleClear(ctx, req); });
    Sync("POST", "/admin/api/cache/disable", Auth::kAdmin, true,
         [this](const HttpRequest&) { return HandleKillSwitch(ctx, false); });
    Sync("POST", "/admin/api/cache/enable", Auth::kAdmin, true,
         [this](const HttpRequest&) { return HandleKillSwitch(ctx, true); });
  }
};

HttpServer::HttpServer(EngineService* service, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  Impl& m = *impl_;
  m.Routes();
  HttpTransportOptions t;
  t.host = m.options().host;
  t.port = m.options().port;
  t.num_io_threads = std::max(1, m.options().num_io_threads);
  t.num_workers = std::max(1, m.options().num_threads);
  t.max_connections = m.options().max_connections;
  t.max_body_bytes = m.options().max_body_bytes;
  t.max_header_bytes = m.options().max_header_bytes;
  t.header_timeout = std::chrono::milliseconds(m.options().header_timeout_ms);
  t.idle_timeout = std::chrono::milliseconds(m.options().idle_timeout_ms);
  m.transport = std::make_unique<HttpTransport>(
      t, [&m](const HttpRequest& req) { return m.Check(req); },
      [&m](HttpRequest req, std::shared_ptr<Responder> out) { m.Handle(std::move(req), std::move(out)); });
}

HttpServer::~HttpServer() {
  Stop();
  if (impl_->sampler.joinable()) impl_->sampler.join();
  impl_->transport.reset();  // joins the workers before the routes they use go
}

void HttpServer::Dispatch(HttpRequest req, std::shared_ptr<Responder> out) {
  if (std::optional<HttpResponse> refused = impl_->Check(req)) return out->Send(*std::move(refused));
  impl_->Handle(std::move(req), std::move(out));
}

StatusOr<int> HttpServer::Bind() { return impl_->transport->Bind(); }

Status HttpServer::Serve() {
  Impl& m = *impl_;
  m.sampler = std::thread([&m] {
    std::unique_lock<std::mutex> lock(m.sampler_mu);
    while (!m.ctx.stopping.load()) {
      m.ctx.SampleHitWindow();
      m.sampler_cv.wait_for(lock, std::chrono::seconds(1));
    }
  });
  m.transport->Run();
  Stop();
  if (m.sampler.joinable()) m.sampler.join();
  return absl::OkStatus();
}

void HttpServer::Stop() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.sampler_mu);
    m.ctx.stopping.store(true);
  }
  m.sampler_cv.notify_all();
  if (m.stopped.exchange(true)) return;
  // Running requests are cancelled now; give them a moment to send their last chunk
  // (finish_reason "abort") before the connections close.
  m.generation.CancelAll();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (m.generation.num_active() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  m.transport->Stop();
}

}  // namespace prefixd
