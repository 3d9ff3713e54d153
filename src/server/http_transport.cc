#include "server/http_transport.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "base/log.h"
#include "server/request_headers.h"

namespace prefixd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoringCase(k, name)) return v;
  }
  return "";
}

bool HttpRequest::HasHeader(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoringCase(k, name)) return true;
  }
  return false;
}

namespace {

const char* Reason(int status) {
  const auto reason = http::obsolete_reason(static_cast<http::status>(status));
  return reason.empty() ? "Unknown" : reason.data();
}

// The status line and headers. Header values come from the server, never from a client.
std::string HeadText(const HttpResponse& r, bool keep_alive, bool chunked, size_t content_length) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) + "\r\n";
  out += "Server: prefixd\r\n";
  if (!r.content_type.empty()) out += "Content-Type: " + r.content_type + "\r\n";
  for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
  if (chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  } else {
    out += "Content-Length: " + std::to_string(content_length) + "\r\n";
  }
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  return out;
}

std::string Chunk(std::string_view data) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out = size;
  out.append(data);
  out += "\r\n";
  return out;
}

std::string ErrorBody(std::string_view message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return R"({"error":{"message":")" + escaped + R"(","type":"invalid_request_error","param":null,"code":null}})";
}

HttpResponse ErrorResponse(int status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = ErrorBody(message);
  return r;
}

}  // namespace

class Connection;

struct HttpTransport::Impl : std::enable_shared_from_this<HttpTransport::Impl> {
  Impl(HttpTransportOptions o, Check c, Handle h)
      : options(std::move(o)), check(std::move(c)), handle(std::move(h)), acceptor(ioc),
        workers(static_cast<size_t>(std::max(1, options.num_workers))) {}

  HttpTransportOptions options;
  Check check;
  Handle handle;
  asio::io_context ioc;
  tcp::acceptor acceptor;
  asio::thread_pool workers;
  std::atomic<bool> stopping{false};
  std::atomic<int> num_connections{0};
  std::mutex mu;
  std::unordered_set<std::shared_ptr<Connection>> connections;  // guarded by mu

  void Accept();
  void Forget(const std::shared_ptr<Connection>& c) {
    std::lock_guard<std::mutex> lock(mu);
    connections.erase(c);
  }
};

// One client connection. Everything runs on the connection's strand; the Responder's
// methods post onto it.
class Connection : public std::enable_shared_from_this<Connection>, public Responder {
 public:
  Connection(tcp::socket socket, std::shared_ptr<HttpTransport::Impl> server)
      : stream_(std::move(socket)), server_(std::move(server)) {
    server_->num_connections.fetch_add(1);
  }
  ~Connection() override {
    if (!closed_) server_->num_connections.fetch_sub(1);
  }

  void Start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
  }

  // Closes (server stop): at once, or after the write in flight (a last SSE chunk).
  void Close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      self->keep_alive_ = false;
      if (self->writing_) {
        self->closing_ = true;
      } else {
        self->Shut();
      }
    });
  }

  // Refuses at once (too many connections) and closes.
  void Refuse(HttpResponse r) {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this(), r = std::move(r)]() mutable {
      self->keep_alive_ = false;
      self->in_request_ = true;
      self->Queue(HeadText(r, false, false, r.body.size()) + r.body, /*last=*/true);
    });
  }

  // ---- Responder: any thread.
  void Send(HttpResponse response) override {
    asio::post(stream_.get_executor(), [self = shared_from_this(), r = std::move(response)] {
      if (self->answered_) return;
      self->answered_ = true;
      self->Queue(HeadText(r, self->keep_alive_, false, r.body.size()) + r.body, /*last=*/true);
    });
  }
  void StartStream(HttpResponse response) override {
    asio::post(stream_.get_executor(), [self = shared_from_this(), r = std::move(response)] {
      if (self->answered_) return;
      self->answered_ = true;
      std::string out = HeadText(r, self->keep_alive_, true, 0);
      if (!r.body.empty()) out += Chunk(r.body);
      self->Queue(std::move(out), /*last=*/false);
    });
  }
  void Write(std::string data) override {
    if (data.empty()) return;
    asio::post(stream_.get_executor(), [self = shared_from_this(), d = std::move(data)] {
      self->Queue(Chunk(d), /*last=*/false);
    });
  }
  void Finish() override {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->Queue("0\r\n\r\n", /*last=*/true); });
  }
  void OnClientGone(std::function<void()> on_gone) override {
    asio::post(stream_.get_executor(), [self = shared_from_this(), f = std::move(on_gone)]() mutable {
      if (self->gone_) {
        f();
      } else {
        self->on_gone_ = std::move(f);
      }
    });
  }

 private:
  const HttpTransportOptions& opt() const { return server_->options; }

  void ReadHeader() {
    if (closed_) return;
    in_request_ = false;
    answered_ = false;
    response_done_ = false;
    on_gone_ = nullptr;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(opt().max_header_bytes));
    parser_->body_limit(opt().max_body_bytes);
    // Idle between requests, then the header deadline once bytes of the next one are here
    // (a pipelined request is in the buffer already).
    stream_.expires_after(buffer_.size() > 0 ? opt().header_timeout : opt().idle_timeout);
    idle_wait_ = buffer_.size() == 0;
    if (idle_wait_) {
      // Wait for the first byte under the idle timeout, then give the headers their deadline.
      stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
        if (ec) return self->Shut();
        self->buffer_.commit(n);
        self->stream_.expires_after(self->opt().header_timeout);
        self->ReadHeaderRest();
      });
      return;
    }
    ReadHeaderRest();
  }

  void ReadHeaderRest() {
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      return Reject(431, "the request headers are larger than " + std::to_string(opt().max_header_bytes) + " bytes");
    }
    if (ec == http::error::body_limit) {  // a Content-Length over the limit
      return Reject(413, "the request body is larger than " + std::to_string(opt().max_body_bytes) + " bytes");
    }
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
      return Shut();
    }
    if (ec) return Reject(400, "the request is not valid HTTP/1.1: " + ec.message());
    in_request_ = true;
    const auto& h = parser_->get();
    request_ = HttpRequest{};
    request_.method = std::string(h.method_string());
    std::string_view target(h.target().data(), h.target().size());
    request_.path = std::string(target.substr(0, target.find('?')));
    size_t count = 0;
    for (const auto& field : h) {
      if (++count > opt().max_header_count) {
        return Reject(431, "the request has more than " + std::to_string(opt().max_header_count) + " headers");
      }
      request_.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    keep_alive_ = h.keep_alive() && !server_->stopping.load();
    if (const auto length = parser_->content_length(); length && *length > opt().max_body_bytes) {
      return Reject(413, "the request body is larger than " + std::to_string(opt().max_body_bytes) + " bytes");
    }
    if (std::optional<HttpResponse> refused = server_->check(request_)) {
      keep_alive_ = keep_alive_ && parser_->is_done();  // a body left unread ends the connection
      answered_ = true;
      return Queue(HeadText(*refused, keep_alive_, false, refused->body.size()) + refused->body, true);
    }
    if (parser_->is_done()) return OnBody({});
    stream_.expires_after(opt().body_timeout);
    if (EqualsIgnoringCase(request_.Header("Expect"), "100-continue")) {
      // curl waits a second for this before it sends a larger body. Nothing else is being
      // written now: the request's answer comes after its body.
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return asio::async_write(stream_, asio::buffer(kContinue), [self = shared_from_this()](beast::error_code ec, size_t) {
        if (ec) return self->Shut();
        self->ReadBody();
      });
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  void OnBody(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return Reject(413, "the request body is larger than " + std::to_string(opt().max_body_bytes) + " bytes");
    }
    if (ec == beast::error::timeout) return Reject(408, "the request body did not arrive in time");
    if (ec) return Shut();
    request_.body = std::move(parser_->get().body());
    // No deadline while the handler and the engine work: only writes have one.
    stream_.expires_never();
    Watch();
    asio::post(server_->workers, [self = shared_from_this(), req = std::move(request_)]() mutable {
      try {
        self->server_->handle(std::move(req), self);
      } catch (const std::exception& e) {
        spdlog::error("HTTP handler: {}", e.what());
        self->Send(ErrorResponse(500, "internal error"));
      }
    });
  }

  // Reads while the request is answered: a client that closes is seen at once, and bytes
  // of a pipelined request are kept for after this answer (up to the header limit).
  void Watch() {
    if (watching_ || closed_ || gone_) return;
    if (buffer_.size() >= opt().max_header_bytes + opt().max_body_bytes) return;
    watching_ = true;
    stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->watching_ = false;
      if (!ec) {
        self->buffer_.commit(n);
        if (self->response_done_) return self->Next();
        return self->Watch();
      }
      if (ec == asio::error::operation_aborted && self->response_done_ && !self->closed_) return self->Next();
      self->Gone();
    });
  }

  void Gone() {
    if (gone_) return;
    gone_ = true;
    if (on_gone_) {
      auto f = std::move(on_gone_);
      on_gone_ = nullptr;
      f();
    }
    if (!writing_) Shut();
  }

  // The answer is written: the next request, or the end.
  void Next() {
    if (gone_ || closing_) return Shut();
    if (watching_) {
      // The watch read is pending: stop it; its handler comes back here.
      beast::error_code ignored;
      stream_.socket().cancel(ignored);
      return;
    }
    if (!keep_alive_) return Linger();
    ReadHeader();
  }

  // Closes after the last answer without losing it: closing a socket with unread input
  // sends a reset, which can destroy the answer before the client reads it (a 413 sent
  // while the client is still sending; most clients read nothing until they have sent it
  // all). Stops sending, then reads and drops what the client still sends (nothing is
  // kept), for up to 5 s in all, 1 s without a byte, or 64 MiB, then closes (nginx's
  // lingering close).
  void Linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    linger_until_ = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    LingerRead(0);
  }
  void LingerRead(size_t drained) {
    const auto now = std::chrono::steady_clock::now();
    if (closed_ || drained > (size_t{64} << 20) || now >= linger_until_) return Shut();
    stream_.expires_after(std::min<std::chrono::steady_clock::duration>(std::chrono::seconds(1), linger_until_ - now));
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(65536), [self = shared_from_this(), drained](beast::error_code ec, size_t n) {
      if (ec) return self->Shut();
      self->LingerRead(drained + n);
    });
  }

  void Reject(int status, const std::string& message) {
    keep_alive_ = false;
    answered_ = true;
    HttpResponse r = ErrorResponse(status, message);
    Queue(HeadText(r, false, false, r.body.size()) + r.body, /*last=*/true);
  }

  void Queue(std::string bytes, bool last) {
    if (closed_) return;
    if (gone_ && !writing_) return Shut();
    outbox_.push_back(std::move(bytes));
    if (last) last_queued_ = true;
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (outbox_.empty()) {
      writing_ = false;
      stream_.expires_never();
      if (gone_ || closing_) return Shut();
      if (last_queued_) {
        last_queued_ = false;
        response_done_ = true;
        Next();
      }
      return;
    }
    writing_ = true;
    stream_.expires_after(opt().write_timeout);
    // Coalesce what is queued into one write.
    std::string bytes = std::move(outbox_.front());
    outbox_.pop_front();
    while (!outbox_.empty() && bytes.size() < 65536) {
      bytes += outbox_.front();
      outbox_.pop_front();
    }
    auto data = std::make_shared<std::string>(std::move(bytes));
    asio::async_write(stream_, asio::buffer(*data), [self = shared_from_this(), data](beast::error_code ec, size_t) {
      if (ec) {
        self->writing_ = false;
        self->outbox_.clear();
        self->Gone();
        return self->Shut();
      }
      self->WriteNext();
    });
  }

  void Shut() {
    if (closed_) return;
    closed_ = true;
    if (!gone_ && in_request_ && !response_done_) {
      gone_ = true;
      if (on_gone_) {
        auto f = std::move(on_gone_);
        on_gone_ = nullptr;
        f();
      }
    }
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    server_->num_connections.fetch_sub(1);
    server_->Forget(shared_from_this());
  }

  beast::tcp_stream stream_;
  std::shared_ptr<HttpTransport::Impl> server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
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

void HttpTransport::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (self->stopping.load()) return;
    if (!ec) {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto c = std::make_shared<Connection>(std::move(socket), self);
      const bool over = self->num_connections.load() > self->options.max_connections;
      {
        std::lock_guard<std::mutex> lock(self->mu);
        self->connections.insert(c);
      }
      if (over) {
        c->Refuse(ErrorResponse(503, "the server has " + std::to_string(self->options.max_connections) +
                                         " connections open, its limit; retry later"));
      } else {
        c->Start();
      }
    } else if (ec == asio::error::operation_aborted) {
      return;
    }
    self->Accept();
  });
}

HttpTransport::HttpTransport(HttpTransportOptions options, Check check, Handle handle)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(check), std::move(handle))) {}

HttpTransport::~HttpTransport() {
  Stop();
  impl_->workers.join();
}

StatusOr<int> HttpTransport::Bind() {
  Impl& m = *impl_;
  beast::error_code ec;
  const auto address = asio::ip::make_address(m.options.host == "localhost" ? "127.0.0.1" : m.options.host, ec);
  auto unavailable = [&](const std::string& what) {
    return absl::UnavailableError("cannot listen on " + m.options.host + ":" + std::to_string(m.options.port) +
                                  " (" + what + ")");
  };
  if (ec) return unavailable("not an IP address: " + ec.message());
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(m.options.port));
  m.acceptor.open(endpoint.protocol(), ec);
  if (ec) return unavailable(ec.message());
  // SO_REUSEADDR (restart while old connections linger), not SO_REUSEPORT: a second server
  // on a port in use must fail, not split the requests.
  m.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  m.acceptor.bind(endpoint, ec);
  if (ec) return unavailable(ec.message());
  m.acceptor.listen(m.options.listen_backlog, ec);
  if (ec) return unavailable(ec.message());
  return static_cast<int>(m.acceptor.local_endpoint().port());
}

void HttpTransport::Run() {
  Impl& m = *impl_;
  m.Accept();
  std::vector<std::thread> threads;
  for (int i = 1; i < std::max(1, m.options.num_io_threads); ++i) threads.emplace_back([&m] { m.ioc.run(); });
  m.ioc.run();
  for (std::thread& t : threads) t.join();
  // Handlers still queued hold connections, and they hold this Impl: run what is ready,
  // then drop the rest.
  m.ioc.restart();
  m.ioc.poll();
  std::lock_guard<std::mutex> lock(m.mu);
  m.connections.clear();
}

void HttpTransport::Stop() {
  Impl& m = *impl_;
  if (m.stopping.exchange(true)) return;
  asio::post(m.ioc, [impl = impl_] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    std::vector<std::shared_ptr<Connection>> all;
    {
      std::lock_guard<std::mutex> lock(impl->mu);
      all.assign(impl->connections.begin(), impl->connections.end());
    }
    for (auto& c : all) c->Close();
    // End Run() once the connections are closed, or after 2 s.
    auto timer = std::make_shared<asio::steady_timer>(impl->ioc);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    auto wait = std::make_shared<std::function<void()>>();
    *wait = [impl, timer, deadline, wait] {
      if (impl->num_connections.load() == 0 || std::chrono::steady_clock::now() >= deadline) {
        impl->ioc.stop();
        // Ends the cycle of shared pointers, from outside the function it destroys (Run
        // polls what is left after the stop).
        asio::post(impl->ioc, [wait] { *wait = nullptr; });
        return;
      }
      timer->expires_after(std::chrono::milliseconds(10));
      timer->async_wait([wait](beast::error_code) { if (*wait) (*wait)(); });
    };
    (*wait)();
  });
}

int HttpTransport::num_connections() const { return impl_->num_connections.load(); }

}  // namespace prefixd
