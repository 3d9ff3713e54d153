#include "server/http_transport.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>

#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "server/http_connection.h"
#include "server/http_wire.h"

namespace prefixd {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

// The acceptor and the set of open connections, over what the connections share.
struct HttpTransport::Impl : ConnectionShared, std::enable_shared_from_this<HttpTransport::Impl> {
  Impl(HttpTransportOptions o, Check c, Handle h) : ConnectionShared(std::move(o), std::move(c), std::move(h)) {}

  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  // Run() has started. A transport that never runs (tests that only Dispatch) stops without
  // posting to its io_context: a handler queued there would hold this Impl, which owns the
  // queue, and the two would never be freed.
  std::atomic<bool> ran{false};
  std::mutex mu;
  std::unordered_set<std::shared_ptr<Connection>> connections;  // guarded by mu

  void Accept();
  void Forget(const std::shared_ptr<Connection>& c) override {
    std::lock_guard<std::mutex> lock(mu);
    connections.erase(c);
  }
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
        c->Refuse(TransportError(503, "the server has " + std::to_string(self->options.max_connections) +
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
  // Set before reading `stopping`, as Stop sets `stopping` before reading `ran`: a Stop racing
  // with the start either sees that Run started and posts, or is seen here.
  m.ran.store(true);
  if (m.stopping.load()) return;
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
  if (!m.ran.load()) {
    beast::error_code ignored;
    m.acceptor.close(ignored);
    return;
  }
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
