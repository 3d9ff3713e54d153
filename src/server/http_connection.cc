#include "server/http_connection.h"

#include "base/log.h"
#include "server/request_headers.h"

namespace prefixd {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

Connection::Connection(tcp::socket socket, std::shared_ptr<ConnectionShared> server)
    : stream_(std::move(socket)), server_(std::move(server)) {
  server_->num_connections.fetch_add(1);
}

Connection::~Connection() {
  if (!closed_) server_->num_connections.fetch_sub(1);
}

void Connection::Start() {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
}

void Connection::Close() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] {
    self->keep_alive_ = false;
    if (self->writing_) {
      self->closing_ = true;
    } else {
      self->Shut();
    }
  });
}

void Connection::Refuse(HttpResponse r) {
  asio::dispatch(stream_.get_executor(), [self = shared_from_this(), r = std::move(r)]() mutable {
    self->keep_alive_ = false;
    self->in_request_ = true;
    self->Queue(HeadText(r, false, false, r.body.size()) + r.body, /*last=*/true);
  });
}

void Connection::Send(HttpResponse response) {
  asio::post(stream_.get_executor(), [self = shared_from_this(), r = std::move(response)] {
    if (self->answered_) return;
    self->answered_ = true;
    self->Queue(HeadText(r, self->keep_alive_, false, r.body.size()) + r.body, /*last=*/true);
  });
}

void Connection::StartStream(HttpResponse response) {
  asio::post(stream_.get_executor(), [self = shared_from_this(), r = std::move(response)] {
    if (self->answered_) return;
    self->answered_ = true;
    std::string out = HeadText(r, self->keep_alive_, true, 0);
    if (!r.body.empty()) out += Chunk(r.body);
    self->Queue(std::move(out), /*last=*/false);
  });
}

void Connection::Write(std::string data) {
  if (data.empty()) return;
  asio::post(stream_.get_executor(), [self = shared_from_this(), d = std::move(data)] {
    self->Queue(Chunk(d), /*last=*/false);
  });
}

void Connection::Finish() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] { self->Queue("0\r\n\r\n", /*last=*/true); });
}

void Connection::OnClientGone(std::function<void()> on_gone) {
  asio::post(stream_.get_executor(), [self = shared_from_this(), f = std::move(on_gone)]() mutable {
    if (self->gone_) {
      f();
    } else {
      self->on_gone_ = std::move(f);
    }
  });
}

void Connection::ReadHeader() {
  if (closed_) return;
  in_request_ = false;
  answered_ = false;
  response_done_ = false;
  on_gone_ = nullptr;
  parser_.emplace();
  SetLimits(*parser_, opt());
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

void Connection::ReadHeaderRest() {
  http::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
}

void Connection::OnHeader(beast::error_code ec) {
  if (ec == http::error::header_limit) return Reject(HeadersTooLarge(opt()));
  if (ec == http::error::body_limit) return Reject(BodyTooLarge(opt()));  // a Content-Length over the limit
  if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::eof ||
      ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
    return Shut();
  }
  if (ec) return Reject(TransportError(400, "the request is not valid HTTP/1.1: " + ec.message()));
  in_request_ = true;
  if (std::optional<HttpResponse> refused = RequestFromHead(*parser_, opt(), &request_)) {
    return Reject(*std::move(refused));
  }
  keep_alive_ = parser_->get().keep_alive() && !server_->stopping.load();
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

void Connection::ReadBody() {
  http::async_read(stream_, buffer_, *parser_,
                   [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
}

void Connection::OnBody(beast::error_code ec) {
  if (ec == http::error::body_limit) return Reject(BodyTooLarge(opt()));
  if (ec == beast::error::timeout) return Reject(TransportError(408, "the request body did not arrive in time"));
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
      self->Send(TransportError(500, "internal error"));
    }
  });
}

// Reads while the request is answered: a client that closes is seen at once, and bytes
// of a pipelined request are kept for after this answer (up to the header limit).
void Connection::Watch() {
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

void Connection::Gone() {
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
void Connection::Next() {
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
void Connection::Linger() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  linger_until_ = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  LingerRead(0);
}
void Connection::LingerRead(size_t drained) {
  const auto now = std::chrono::steady_clock::now();
  if (closed_ || drained > (size_t{64} << 20) || now >= linger_until_) return Shut();
  stream_.expires_after(std::min<std::chrono::steady_clock::duration>(std::chrono::seconds(1), linger_until_ - now));
  buffer_.consume(buffer_.size());
  stream_.async_read_some(buffer_.prepare(65536), [self = shared_from_this(), drained](beast::error_code ec, size_t n) {
    if (ec) return self->Shut();
    self->LingerRead(drained + n);
  });
}

void Connection::Reject(HttpResponse r) {
  keep_alive_ = false;
  answered_ = true;
  Queue(HeadText(r, false, false, r.body.size()) + r.body, /*last=*/true);
}

void Connection::Queue(std::string bytes, bool last) {
  if (closed_) return;
  if (gone_ && !writing_) return Shut();
  outbox_.push_back(std::move(bytes));
  if (last) last_queued_ = true;
  if (!writing_) WriteNext();
}

void Connection::WriteNext() {
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

void Connection::Shut() {
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

}  // namespace prefixd
