// HttpServer: the OpenAI-compatible HTTP API, the cache statistics and metrics, and the admin
// API over one EngineService. cpp-httplib stays behind this class (only http_server.cc
// includes it).
//
//   POST /v1/completions, /v1/chat/completions   generation (SSE with "stream": true)
//   GET  /v1/models, /health, /props, /v1/prefix_cache_stats, /metrics
//   POST /admin/api/cache/{probe,clear,disable,enable}   with Authorization: Bearer ADMIN_KEY
//
// Each connection is served by one thread of a fixed pool; a generation request waits on its
// own event queue, which the engine thread fills through the request's callback. Handlers
// never throw: every failure becomes an OpenAI-style error object (api_error.h). A client that
// goes away mid-request (the socket closes, or a write fails) has its request cancelled.
//
// Thread safety: Stop() may be called from any thread (a signal handler thread); the rest
// from the thread that owns the server.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "engine/engine_service.h"

namespace prefixd {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (Bind returns it)
  std::string admin_key;   // "": the admin API answers 403
  std::string api_key;     // "": /v1/* needs no key; else Authorization: Bearer API_KEY
  size_t max_body_bytes = size_t{8} << 20;  // larger bodies get 413
  int num_threads = 128;   // connections served at once (streams hold one each)
};

class HttpServer {
 public:
  // `service` must outlive the server.
  HttpServer(EngineService* service, HttpServerOptions options);
  ~HttpServer();

  // Binds and listens on host:port. Returns the port (the chosen one for port 0), or
  // Unavailable when the address cannot be bound.
  StatusOr<int> Bind();
  // Accepts and serves connections until Stop(); then waits for in-flight requests to end.
  // Precondition: Bind() succeeded.
  Status Serve();
  // Stops: new generation requests get 503, running ones are cancelled and given up to 5 s
  // to send their final answer (finish_reason "abort"), then the listening socket and the
  // connections close and Serve() returns. Idempotent. The EngineService must still be
  // running during the call.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prefixd
