// Connection: one client socket of the HTTP transport (http_transport.h), and the Responder
// its requests are answered through.
//
//   idle --first byte--> header (deadline, size and count limits) --> check --> body (its
//   limit, whatever the transfer coding) --> handler on a worker, answering through this
//   Responder; meanwhile Watch() reads on, so a client that hangs up is seen at once and a
//   pipelined request waits in the buffer --> answer written --> next request (keep-alive),
//   or a lingering close.
//
// Internal to prefixd_server: it includes Boost.Beast and Asio, which stay private to the
// library, so only the library's .cc files include it.
//
// Thread safety: the state machine runs on the connection's strand. The Responder methods and
// Start, Close and Refuse may be called from any thread: they post onto the strand.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

#include "server/http_message.h"
#include "server/http_transport.h"
#include "server/http_wire.h"

namespace prefixd {

class Connection;

// What the connections of one transport share. The transport (http_transport.cc) makes it;
// each connection holds it until it is destroyed.
struct ConnectionShared {
  ConnectionShared(HttpTransportOptions o, HttpTransport::Check c, HttpTransport::Handle h)
      : options(std::move(o)), check(std::move(c)), handle(std::move(h)),
        workers(static_cast<size_t>(std::max(1, options.num_workers))) {}
  virtual ~ConnectionShared() = default;

  // Drops the transport's reference to `c`, which has closed. Any thread.
  virtual void Forget(const std::shared_ptr<Connection>& c) = 0;

  const HttpTransportOptions options;
  const HttpTransport::Check check;    // on the connection's strand, before the body is read
  const HttpTransport::Handle handle;  // on `workers`
  boost::asio::thread_pool workers;
  std::atomic<bool> stopping{false};    // the server stops: no more keep-alive
  std::atomic<int> num_connections{0};  // made and not yet closed, refused ones included
};

class Connection : public std::enable_shared_from_this<Connection>, public Responder {
 public:
  Connection(boost::asio::ip::tcp::socket socket, std::shared_ptr<ConnectionShared> server);
  ~Connection() override;

  // Starts reading requests.
  void Start();
  // Closes (server stop): at once, or after the write in flight (a last SSE chunk).
  void Close();
  // Answers `r` at once (too many connections) and closes.
  void Refuse(HttpResponse r);

  // Responder: any thread.
  void Send(HttpResponse response) override;
  void StartStream(HttpResponse response) override;
  void Write(std::string data) override;
  void Finish() override;
  void OnClientGone(std::function<void()> on_gone) override;

 private:
  const HttpTransportOptions& opt() const { return server_->options; }

  void ReadHeader();
  void ReadHeaderRest();
  void OnHeader(boost::beast::error_code ec);
  void ReadBody();
  void OnBody(boost::beast::error_code ec);
  void Watch();
  void Gone();
  void Next();
  void Linger();
  void LingerRead(size_t drained);
  void Reject(HttpResponse r);
  void Queue(std::string bytes, bool last);
  void WriteNext();
  void Shut();

  boost::beast::tcp_stream stream_;
  std::shared_ptr<ConnectionShared> server_;
  boost::beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  HttpRequest request_;
  std::deque<std::string> outbox_;  // bytes waiting to be written, in order
  std::function<void()> on_gone_;
  bool keep_alive_ = true;
  bool idle_wait_ = false;
  bool in_request_ = false;    // a request's headers were read and it is not answered yet
  bool answered_ = false;      // Send, StartStream or a refusal was queued
  bool last_queued_ = false;   // the answer's last bytes are in the outbox
  bool response_done_ = false; // ... and written
  bool writing_ = false;
  bool watching_ = false;
  bool gone_ = false;          // the client closed, or a read or write failed
  std::chrono::steady_clock::time_point linger_until_;
  bool closing_ = false;       // the server stops: close once the write in flight is done
  bool closed_ = false;
};

}  // namespace prefixd
