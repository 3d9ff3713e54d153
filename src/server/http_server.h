// HttpServer: the OpenAI-compatible HTTP API, the cache statistics and metrics, and the admin
// API over one EngineService, on Boost.Beast (http_transport.h).
//
//   POST /v1/completions, /v1/chat/completions   generation (SSE with "stream": true)
//   GET  /v1/models, /health, /props, /v1/prefix_cache_stats, /metrics
//   POST /admin/api/cache/{probe,clear,disable,enable}   with Authorization: Bearer ADMIN_KEY
//
// Layout: this file routes and checks what the headers decide (Host, Origin, authorization,
// content type) before any body is read; generation_routes.h answers generation (and
// streams it), admin_routes.h and read_only_routes.h the rest, server_context.h holds what
// they share. A few I/O threads serve every connection; handlers run on a small worker pool;
// a generation request is driven by the engine's events, not by a waiting thread. Handlers
// never throw: every failure becomes an OpenAI-style error object (api_error.h). A client
// that goes away mid-request has its request cancelled the moment its socket closes.
//
// Thread safety: Stop() may be called from any thread (a signal handler thread); the rest
// from the thread that owns the server.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/engine_service.h"
#include "server/http_message.h"

namespace prefixd {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (Bind returns it)
  std::string admin_key;   // "": the admin API answers 403
  std::string api_key;     // "": /v1/* needs no key; else Authorization: Bearer API_KEY
  size_t max_body_bytes = size_t{8} << 20;  // larger bodies get 413, whatever the transfer coding
  int num_threads = 8;     // workers that parse, render and tokenize requests
  int num_io_threads = 2;  // threads that read and write every connection
  int max_connections = 1024;  // beyond it a new connection gets 503
  size_t max_header_bytes = 16 << 10;  // larger request headers get 431
  int header_timeout_ms = 10000;  // a request's headers must arrive within this
  int idle_timeout_ms = 60000;    // a keep-alive connection with no request is closed after this
  // Host names served besides the bound address (and, bound to loopback, localhost); "*"
  // serves any. Also the origins whose pages may POST.
  std::vector<std::string> allowed_hosts;
  // A chat's assistant message that repeats a reply this server generated is prompted with
  // the generated ids (server/reply_prompt.h); the record of replies keeps at most this many
  // bytes and entries (least recently used go first).
  bool reuse_reply_tokens = true;
  size_t reply_record_max_bytes = size_t{64} << 20;
  size_t reply_record_max_entries = 100000;
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

  // The router without a socket (fuzz/http_request_fuzz.cc): the header checks, then, when
  // they let the request on, its route, answering through `out` as a connection's request
  // is answered. Needs neither Bind() nor Serve().
  void Dispatch(HttpRequest req, std::shared_ptr<Responder> out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prefixd
