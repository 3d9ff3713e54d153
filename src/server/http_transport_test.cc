// HttpTransport over loopback with raw sockets: the limits, timeouts and framing that a
// hostile or careless client tests (issue 16), with handlers that echo.
#include "server/http_transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <thread>

#include <gtest/gtest.h>

namespace prefixd {
namespace {

using namespace std::chrono_literals;

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads until `done(text)` or the peer closes or `timeout` passes.
std::string ReadUntil(int fd, const std::function<bool(const std::string&)>& done,
                      std::chrono::milliseconds timeout = 5000ms) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(out)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

size_t Count(const std::string& text, std::string_view what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class HttpTransportTest : public ::testing::Test {
 protected:
  void Start(HttpTransportOptions o = {}) {
    o.host = "127.0.0.1";
    o.port = 0;
    transport_ = std::make_unique<HttpTransport>(
        o,
        [](const HttpRequest& req) -> std::optional<HttpResponse> {
          if (req.path == "/refuse") return HttpResponse{401, "application/json", {}, "{}"};
          return std::nullopt;
        },
        [this](HttpRequest req, std::shared_ptr<Responder> out) {
          if (req.path == "/stream") {
            out->OnClientGone([this] {
              std::lock_guard<std::mutex> lock(mu_);
              gone_ = true;
              cv_.notify_all();
            });
            out->StartStream(HttpResponse{200, "text/event-stream", {}, "data: first\n\n"});
            streams_.push_back(out);  // written by the test
            return;
          }
          out->Send(HttpResponse{200, "text/plain", {}, req.method + " " + req.path + " " + std::to_string(req.body.size())});
        });
    auto port = transport_->Bind();
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
    thread_ = std::thread([this] { transport_->Run(); });
  }
  void TearDown() override {
    if (transport_) transport_->Stop();
    if (thread_.joinable()) thread_.join();
    streams_.clear();
    transport_.reset();
  }

  std::unique_ptr<HttpTransport> transport_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool gone_ = false;
  std::vector<std::shared_ptr<Responder>> streams_;
};

bool HasResponses(const std::string& s, size_t n) { return Count(s, "HTTP/1.1 ") >= n && s.find("\r\n\r\n") != std::string::npos; }

TEST_F(HttpTransportTest, PipelinedRequestsAreAllAnsweredInOrder) {
  Start();
  const int fd = Connect(port_);
  ASSERT_GE(fd, 0);
  std::string many;
  for (int i = 0; i < 5; ++i) many += "GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  many += "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
  SendAll(fd, many);
  const std::string out = ReadUntil(fd, [](const std::string& s) { return s.find("POST /p 3") != std::string::npos; });
  close(fd);
  size_t at = 0;
  for (int i = 0; i < 5; ++i) {
    const size_t next = out.find("GET /r" + std::to_string(i) + " 0", at);
    ASSERT_NE(next, std::string::npos) << i << out;
    at = next;
  }
  EXPECT_NE(out.find("POST /p 3", at), std::string::npos);
}

TEST_F(HttpTransportTest, ChunkedBodyOverTheLimitIsRefusedWhileReading) {
  HttpTransportOptions o;
  o.max_body_bytes = 1000;
  Start(o);
  const int fd = Connect(port_);
  SendAll(fd, "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  // 2 KB in chunks of 100: the answer comes before the body ends (it never does).
  for (int i = 0; i < 20; ++i) SendAll(fd, "64\r\n" + std::string(100, 'a') + "\r\n");
  const std::string out = ReadUntil(fd, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  close(fd);
  EXPECT_EQ(out.rfind("HTTP/1.1 413", 0), 0u) << out;
  // Under the limit, chunked is read whole.
  const int ok = Connect(port_);
  SendAll(ok, "POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + std::string(100, 'b') +
                  "\r\n0\r\n\r\n");
  const std::string good = ReadUntil(ok, [](const std::string& s) { return s.find("POST /p 100") != std::string::npos; });
  close(ok);
  EXPECT_NE(good.find("POST /p 100"), std::string::npos) << good;
  // Content-Length over the limit: refused before reading.
  const int big = Connect(port_);
  SendAll(big, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
  EXPECT_EQ(ReadUntil(big, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }).rfind("HTTP/1.1 413", 0), 0u);
  close(big);
}

TEST_F(HttpTransportTest, HeaderLimitsAndDeadline) {
  HttpTransportOptions o;
  o.max_header_bytes = 2048;
  o.max_header_count = 10;
  o.header_timeout = 300ms;
  Start(o);
  const int big = Connect(port_);
  SendAll(big, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n");
  EXPECT_EQ(ReadUntil(big, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }).rfind("HTTP/1.1 431", 0), 0u);
  close(big);
  const int many = Connect(port_);
  std::string h = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 20; ++i) h += "X-" + std::to_string(i) + ": y\r\n";
  SendAll(many, h + "\r\n");
  EXPECT_EQ(ReadUntil(many, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }).rfind("HTTP/1.1 431", 0), 0u);
  close(many);
  // A client that starts a request and trickles: closed at the deadline.
  const int slow = Connect(port_);
  SendAll(slow, "GET / HTTP/1.1\r\n");
  const auto begin = std::chrono::steady_clock::now();
  ReadUntil(slow, [](const std::string&) { return false; }, 3000ms);
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 2000ms);
  close(slow);
}

TEST_F(HttpTransportTest, SlowClientsDoNotStarveOthers) {
  HttpTransportOptions o;
  o.num_io_threads = 1;
  Start(o);
  std::vector<int> slow;
  for (int i = 0; i < 100; ++i) {
    slow.push_back(Connect(port_));
    SendAll(slow.back(), "GET / HTTP/1.1\r\nHo");
  }
  const auto begin = std::chrono::steady_clock::now();
  const int fd = Connect(port_);
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string out = ReadUntil(fd, [](const std::string& s) { return s.find("GET /health 0") != std::string::npos; });
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1000ms);
  EXPECT_NE(out.find("GET /health 0"), std::string::npos);
  close(fd);
  for (int s : slow) close(s);
}

TEST_F(HttpTransportTest, ConnectionsBeyondTheLimitGet503) {
  HttpTransportOptions o;
  o.max_connections = 4;
  Start(o);
  std::vector<int> held;
  for (int i = 0; i < 4; ++i) held.push_back(Connect(port_));
  std::this_thread::sleep_for(100ms);
  const int extra = Connect(port_);
  const std::string out = ReadUntil(extra, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; });
  EXPECT_EQ(out.rfind("HTTP/1.1 503", 0), 0u) << out;
  close(extra);
  for (int s : held) close(s);
}

TEST_F(HttpTransportTest, RefusedBeforeTheBodyAndPostWithoutLength) {
  Start();
  const int fd = Connect(port_);
  // The check refuses from the headers: the 5 MB body is never sent, never read.
  SendAll(fd, "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n");
  const std::string out = ReadUntil(fd, [](const std::string& s) { return s.find("{}") != std::string::npos; });
  EXPECT_EQ(out.rfind("HTTP/1.1 401", 0), 0u) << out;
  EXPECT_NE(out.find("Connection: close"), std::string::npos);
  close(fd);
  // curl -X POST: no Content-Length, no body; answered at once.
  const int post = Connect(port_);
  const auto begin = std::chrono::steady_clock::now();
  SendAll(post, "POST /admin HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string p = ReadUntil(post, [](const std::string& s) { return s.find("POST /admin 0") != std::string::npos; });
  EXPECT_NE(p.find("POST /admin 0"), std::string::npos) << p;
  EXPECT_LT(std::chrono::steady_clock::now() - begin, 1000ms);
  close(post);
}

TEST_F(HttpTransportTest, ExpectContinueGetsA100BeforeTheBody) {
  Start();
  const int fd = Connect(port_);
  SendAll(fd, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  const std::string cont = ReadUntil(fd, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }, 1000ms);
  EXPECT_EQ(cont.rfind("HTTP/1.1 100 Continue", 0), 0u) << cont;
  SendAll(fd, "abcd");
  const std::string out = ReadUntil(fd, [](const std::string& s) { return s.find("POST /p 4") != std::string::npos; });
  EXPECT_NE(out.find("POST /p 4"), std::string::npos) << out;
  close(fd);
}

TEST_F(HttpTransportTest, AClientHangingUpIsSeenAtOnce) {
  Start();
  const int fd = Connect(port_);
  SendAll(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  const std::string out = ReadUntil(fd, [](const std::string& s) { return s.find("data: first") != std::string::npos; });
  ASSERT_NE(out.find("Transfer-Encoding: chunked"), std::string::npos) << out;
  close(fd);
  std::unique_lock<std::mutex> lock(mu_);
  EXPECT_TRUE(cv_.wait_for(lock, 2s, [this] { return gone_; }));
}

}  // namespace
}  // namespace prefixd
