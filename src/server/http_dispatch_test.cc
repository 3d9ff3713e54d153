// HttpServer::Dispatch without a socket: raw request bytes read as a connection reads them
// (ReadRequest, under the transport's limits), then routed over a real EngineService on
// stories260K, as fuzz/http_request_fuzz.cc does. Each answer's status is checked, and that
// every request is answered once.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/http_server.h"
#include "server/http_transport.h"
#include "server/stories_service_for_test.h"

namespace prefixd {
namespace {

using json = nlohmann::json;

// One request's answer, whole or streamed; fails the test if the route answers twice.
class RecordingResponder : public Responder {
 public:
  void Send(HttpResponse r) override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_FALSE(started_ || done_) << "answered twice";
    response_ = std::move(r);
    done_ = true;
    cv_.notify_all();
  }
  void StartStream(HttpResponse r) override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_FALSE(started_ || done_) << "answered twice";
    response_ = std::move(r);
    started_ = true;
  }
  void Write(std::string data) override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_TRUE(started_ && !done_) << "Write outside a stream";
    response_.body += data;
  }
  void Finish() override {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_TRUE(started_ && !done_) << "Finish outside a stream, or twice";
    done_ = true;
    cv_.notify_all();
  }
  void OnClientGone(std::function<void()>) override {}  // the client stays

  // The answer, once complete; status 0 when none came within 30 s.
  HttpResponse Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::seconds(30), [this] { return done_; })) return response_;
    HttpResponse none;
    none.status = 0;
    return none;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool done_ = false;
  HttpResponse response_;
};

class HttpDispatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stories = StartStoriesService(/*context_length=*/128);
    ASSERT_TRUE(stories.ok()) << stories.status();
    if (*stories == nullptr) GTEST_SKIP() << "stories260K.gguf is not in ../shared/models";
    stories_ = *std::move(stories);
    options_.port = 0;
    options_.max_header_bytes = 1024;
    options_.max_body_bytes = 4096;
    server_ = std::make_unique<HttpServer>(stories_->service.get(), options_);  // not bound
    limits_.max_header_bytes = options_.max_header_bytes;
    limits_.max_body_bytes = options_.max_body_bytes;
  }
  void TearDown() override {
    server_.reset();
    if (stories_) stories_->service->Shutdown();
  }

  // The answers to the requests in `bytes`, in order, as a connection gives them: each read
  // request is dispatched; a refusal by the transport is the last answer; so is a request
  // after which the connection closes.
  std::vector<HttpResponse> Exchange(std::string_view bytes) {
    std::vector<HttpResponse> answers;
    while (!bytes.empty()) {
      RequestRead read = ReadRequest(bytes, limits_);
      if (read.kind == RequestRead::Kind::kRefused) answers.push_back(read.refusal);
      if (read.kind != RequestRead::Kind::kRequest) break;
      auto out = std::make_shared<RecordingResponder>();
      server_->Dispatch(std::move(read.request), out);
      answers.push_back(out->Wait());
      if (!read.keep_alive) break;
      bytes.remove_prefix(read.num_bytes);
    }
    return answers;
  }
  int StatusOf(std::string_view bytes) {
    std::vector<HttpResponse> answers = Exchange(bytes);
    EXPECT_EQ(answers.size(), 1u) << bytes;
    return answers.empty() ? 0 : answers[0].status;
  }

  std::unique_ptr<StoriesService> stories_;
  HttpServerOptions options_;
  HttpTransportOptions limits_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpDispatchTest, HealthAndUnknownRoutes) {
  std::vector<HttpResponse> a = Exchange("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].status, 200);
  EXPECT_EQ(json::parse(a[0].body)["status"], "ok");
  EXPECT_EQ(StatusOf("GET /health?x=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"), 200);
  EXPECT_EQ(StatusOf("GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 404);
  EXPECT_EQ(StatusOf("DELETE /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), 404);
  EXPECT_EQ(StatusOf("GET /health HTTP/1.1\r\nHost: evil.example\r\n\r\n"), 403);
}

TEST_F(HttpDispatchTest, MalformedRequestLinesAreRefusedByTheReader) {
  for (const char* bytes : {"GARBAGE\r\n\r\n", "GET  /health HTTP/1.1\r\n\r\n", "GET /health HTTP/9\r\n\r\n",
                            "GET /health HTTP/1.1\r\nno colon here\r\n\r\n", "\x01\x02\x03 / HTTP/1.1\r\n\r\n"}) {
    std::vector<HttpResponse> a = Exchange(bytes);
    ASSERT_EQ(a.size(), 1u) << bytes;
    EXPECT_EQ(a[0].status, 400) << bytes;
    EXPECT_NE(a[0].body.find("not valid HTTP/1.1"), std::string::npos) << a[0].body;
  }
  // Cut short: no answer, a connection would wait for the rest.
  EXPECT_EQ(ReadRequest("GET /health HTTP/1.1\r\nHost: x", limits_).kind, RequestRead::Kind::kIncomplete);
  EXPECT_EQ(ReadRequest("", limits_).kind, RequestRead::Kind::kIncomplete);
  // A body shorter than its Content-Length: incomplete, and the reader returns (it once looped
  // forever here; found by http_request_fuzz).
  EXPECT_EQ(ReadRequest("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\n\r\n{\"prompt\":1}",
                        limits_).kind,
            RequestRead::Kind::kIncomplete);
  const std::string whole = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
  EXPECT_EQ(ReadRequest(whole, limits_).kind, RequestRead::Kind::kRequest);
}

TEST_F(HttpDispatchTest, OversizedHeadersAndBodiesAreRefusedBeforeTheRoute) {
  const std::string big(2000, 'a');
  EXPECT_EQ(StatusOf("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + big + "\r\n\r\n"), 431);
  std::string many = "GET /health HTTP/1.1\r\n";
  for (int i = 0; i < 101; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  EXPECT_EQ(StatusOf(many + "\r\n"), 431);
  EXPECT_EQ(StatusOf("POST /v1/completions HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"), 413);
  // Chunked: the limit applies while the body is read.
  const std::string chunk = "1000\r\n" + std::string(4096, 'x') + "\r\n";
  EXPECT_EQ(StatusOf("POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk + "0\r\n\r\n"),
            413);
  // Two different lengths: the framing is ambiguous.
  EXPECT_EQ(StatusOf("POST /v1/completions HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"), 400);
}

TEST_F(HttpDispatchTest, PostWithAJsonBody) {
  const std::string body = R"({"prompt":"Once upon a time","max_tokens":4,"temperature":0})";
  const std::string head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                           std::to_string(body.size()) + "\r\n";
  std::vector<HttpResponse> a = Exchange(head + "Content-Type: application/json\r\n\r\n" + body);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(a[0].status, 200) << a[0].body;
  EXPECT_EQ(json::parse(a[0].body)["usage"]["completion_tokens"], 4);
  EXPECT_EQ(StatusOf(head + "Content-Type: text/plain\r\n\r\n" + body), 415);
  const std::string bad = R"({"prompt":"x","max_tokens":-1})";
  EXPECT_EQ(StatusOf("POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: " +
                     std::to_string(bad.size()) + "\r\n\r\n" + bad),
            400);
  // Streamed, chunked request body: the stream's events all arrive, then [DONE].
  const std::string stream = R"({"prompt":"Once","max_tokens":3,"stream":true})";
  char size[16];
  std::snprintf(size, sizeof(size), "%zx", stream.size());
  std::vector<HttpResponse> s = Exchange("POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
                                         "Transfer-Encoding: chunked\r\n\r\n" +
                                         std::string(size) + "\r\n" + stream + "\r\n0\r\n\r\n");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].status, 200);
  EXPECT_NE(s[0].body.find("data: [DONE]"), std::string::npos) << s[0].body;
}

TEST_F(HttpDispatchTest, PipelinedRequestsAreReadOneAfterAnother) {
  const std::string get = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  const std::string post = "POST /tokenize HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
                           R"({"content":"Hi"})";
  std::vector<HttpResponse> a =
      Exchange(get + post + "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n" + get);  // the last is after the close
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].status, 200);
  EXPECT_EQ(a[1].status, 200) << a[1].body;
  EXPECT_TRUE(json::parse(a[1].body)["tokens"].is_array());
  EXPECT_EQ(a[2].status, 404);
}

}  // namespace
}  // namespace prefixd
