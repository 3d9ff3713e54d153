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
// Layout: this file's .cc holds the acceptor and Bind/Run/Stop; http_connection.h the
// per-socket state machine and its Responder; http_wire.h the bytes (response heads, chunks,
// the transport's error answers, request heads read under the limits). Those two headers
// include Beast and are internal to the library.
//
// Thread safety: Stop() may be called from any thread; Bind and Run from one thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

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
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// What came of the bytes a client sent, read as a connection reads its next request.
struct RequestRead {
  enum class Kind {
    kRequest,     // a whole request within the limits, for the router
    kRefused,     // the transport answers `refusal` itself (400, 413, 431) and closes
    kClosed,      // the connection closes unanswered (a chunked body's framing is broken)
    kIncomplete,  // the bytes end before the request does: a connection waits for more
  };
  Kind kind = Kind::kIncomplete;
  HttpRequest request;      // kRequest
  HttpResponse refusal;     // kRefused
  size_t num_bytes = 0;     // kRequest: the bytes it took; a pipelined request starts there
  bool keep_alive = false;  // kRequest: whether the connection reads another request after it
};

// Reads the first request of `bytes` under `limits` (header bytes and count, body bytes,
// whatever the transfer coding) with the parser and the checks a connection uses, without a
// socket: for tests, and for the fuzz target that feeds raw bytes to HttpServer::Dispatch.
// The header check and the deadlines are not applied.
RequestRead ReadRequest(std::string_view bytes, const HttpTransportOptions& limits);

}  // namespace prefixd
