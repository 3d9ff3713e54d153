// HttpRequest, HttpResponse and Responder: what the routes see of HTTP. The transport
// (http_transport.h, Boost.Beast) fills an HttpRequest once the body is read and hands the
// route a Responder to answer through, once or as a stream; no route sees the library.
//
// Thread safety: HttpRequest and HttpResponse are values. Responder's methods may be called
// from any thread; they never block (writes are queued on the connection).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace prefixd {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query
  HttpHeaders headers;
  std::string body;

  // The first header named `name` (case-insensitive), or "".
  std::string Header(std::string_view name) const;
  bool HasHeader(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  HttpHeaders headers;
  std::string body;
};

// One request's answer. Exactly one of Send or StartStream is called, once.
class Responder {
 public:
  virtual ~Responder() = default;
  // The whole answer.
  virtual void Send(HttpResponse response) = 0;
  // A streamed answer (chunked): the status and headers now, then Write per piece, as
  // produced, and Finish once. `response.body` is written as the first piece.
  virtual void StartStream(HttpResponse response) = 0;
  virtual void Write(std::string data) = 0;
  virtual void Finish() = 0;
  // `on_gone` runs once, on an I/O thread, if the client closes its connection (or it fails)
  // before the answer is written; at once if it already has. Replaces an earlier one.
  virtual void OnClientGone(std::function<void()> on_gone) = 0;
};

}  // namespace prefixd
