// HttpTransport: HTTP/1.1 on Boost.Beast over Boost.Asio, with every resource bounded.
//
//   acceptor (backlog) --> Connection per socket, on a strand of a few I/O threads:
//     read headers (size and count limits, a deadline) --> `check` (Host, Origin, auth,
//     content type: answered before any body is read) --> read the body (its limit applies
//     whatever the transfer coding, chunked included, while reading) --> `handle` on a
//     worker thread, which answers through a Responder, whole or streamed; meanwhile the
//     connection keeps reading, so a client that hangs up is seen at once (Responder::
//     OnClientGone), and pipelined requests wait in the buffer to be answered in order.
//   Keep-alive with an idle timeout; beyond max_connections a new socket gets a 503 and is
//   closed. No thread per connection; nothing polls.
//
// Thread safety: Stop() may be called from any thread; Bind and Run from one thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"
#include "server/http_message.h"

namespace prefixd {

struct HttpTransportOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  int num_io_threads = 2;
  int num_workers = 4;  // threads that run the handlers (parse, render, tokenize)
  int listen_backlog = 1024;
  int max_connections = 1024;
  size_t max_header_bytes = 16 << 10;
  size_t max_header_count = 100;
  size_t max_body_bytes = size_t{8} << 20;
  std::chrono::milliseconds header_timeout{10000};  // from the first byte of a request to its last header
  std::chrono::milliseconds body_timeout{30000};
  std::chrono::milliseconds idle_timeout{60000};    // keep-alive: between requests
  std::chrono::milliseconds write_timeout{60000};   // a write the client does not take
};

class Connection;  // http_transport.cc

class HttpTransport {
 public:
  // Runs after the headers, before the body is read: a response refuses the request (the
  // connection then closes, its body unread); nullopt goes on. `req.body` is empty.
  using Check = std::function<std::optional<HttpResponse>(const HttpRequest& req)>;
  // Runs on a worker thread with the whole request; answers through the responder, now or
  // later, from any thread.
  using Handle = std::function<void(HttpRequest req, std::shared_ptr<Responder> responder)>;

  HttpTransport(HttpTransportOptions options, Check check, Handle handle);
  ~HttpTransport();

  // Unavailable when the address cannot be bound. Returns the port.
  StatusOr<int> Bind();
  // Serves until Stop(). Precondition: Bind() succeeded.
  void Run();
  // Stops accepting, closes every connection, and makes Run() return. Idempotent.
  void Stop();
  int num_connections() const;

 private:
  friend class Connection;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace prefixd
