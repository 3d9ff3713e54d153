// HttpServer in process, over a real EngineService on stories260K, with httplib's client: the
// paths the end-to-end tests take, here also under the sanitizer build.
#include "server/http_server.h"

#include <httplib.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/stories_service_for_test.h"

namespace prefixd {
namespace {

using json = nlohmann::json;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto stories = StartStoriesService(/*context_length=*/256);
    ASSERT_TRUE(stories.ok()) << stories.status();
    if (*stories == nullptr) GTEST_SKIP() << "stories260K.gguf is not in ../shared/models";
    stories_ = *std::move(stories);
    service_ = stories_->service.get();
    HttpServerOptions ho;
    ho.port = 0;
    ho.admin_key = "k";
    ho.num_threads = 8;
    ho.max_body_bytes = 1 << 16;
    server_ = std::make_unique<HttpServer>(service_, ho);
    auto port = server_->Bind();
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = *port;
    thread_ = std::thread([this] { EXPECT_TRUE(server_->Serve().ok()); });
  }

  void TearDown() override {
    if (server_) server_->Stop();
    if (thread_.joinable()) thread_.join();
    if (service_) service_->Shutdown();
  }

  httplib::Result Post(const std::string& path, const std::string& body, httplib::Headers headers = {}) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    return c.Post(path.c_str(), headers, body, "application/json");
  }
  httplib::Result Get(const std::string& path) {
    httplib::Client c("127.0.0.1", port_);
    return c.Get(path.c_str());
  }

  std::unique_ptr<StoriesService> stories_;
  EngineService* service_ = nullptr;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(HttpServerTest, HealthModelsPropsMetrics) {
  auto h = Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  auto m = Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], "stories260K.gguf");
  auto p = Get("/props");
  ASSERT_TRUE(p);
  EXPECT_EQ(json::parse(p->body)["model"]["context_length"], 256);
  auto x = Get("/metrics");
  ASSERT_TRUE(x);
  EXPECT_NE(x->body.find("prefixd_prefix_cache_hits_total"), std::string::npos);
  auto n = Get("/nope");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->status, 404);
  EXPECT_TRUE(json::parse(n->body).contains("error"));
}

TEST_F(HttpServerTest, CompletionThenCachedRepeat) {
  const std::string body = R"({"prompt":"Once upon a time, there was a girl","max_tokens":12,"temperature":0})";
  auto a = Post("/v1/completions", body);
  ASSERT_TRUE(a);
  ASSERT_EQ(a->status, 200) << a->body;
  json ja = json::parse(a->body);
  EXPECT_EQ(ja["usage"]["completion_tokens"], 12);
  EXPECT_EQ(ja["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  auto b = Post("/v1/completions", body);
  ASSERT_TRUE(b);
  json jb = json::parse(b->body);
  EXPECT_GT(jb["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0);
  EXPECT_EQ(jb["choices"][0]["text"], ja["choices"][0]["text"]);
}

TEST_F(HttpServerTest, StreamingMatchesWhole) {
  const std::string base = R"("messages":[{"role":"user","content":"Hi"}],"max_tokens":10,"temperature":0)";
  auto whole = Post("/v1/chat/completions", "{" + base + "}");
  ASSERT_TRUE(whole);
  ASSERT_EQ(whole->status, 200) << whole->body;
  const std::string expected = json::parse(whole->body)["choices"][0]["message"]["content"];
  auto s = Post("/v1/chat/completions", "{" + base + R"(,"stream":true,"stream_options":{"include_usage":true}})");
  ASSERT_TRUE(s);
  ASSERT_EQ(s->status, 200);
  std::string text;
  bool done = false, usage = false;
  size_t pos = 0;
  while ((pos = s->body.find("data: ", pos)) != std::string::npos) {
    const size_t end = s->body.find("\n\n", pos);
    const std::string data = s->body.substr(pos + 6, end - pos - 6);
    pos = end;
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    json j = json::parse(data);
    if (j.contains("usage")) usage = true;
    if (!j["choices"].empty() && j["choices"][0]["delta"].contains("content")) {
      text += j["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(usage);
  EXPECT_EQ(text, expected);
}

TEST_F(HttpServerTest, DashboardFilesWithTheirPolicy) {
  for (const char* path : {"/dashboard", "/dashboard/", "/dashboard/index.html"}) {
    auto r = Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
    EXPECT_NE(r->get_header_value("Content-Security-Policy").find("connect-src 'self'"), std::string::npos);
    EXPECT_NE(r->body.find("/dashboard/dashboard.js"), std::string::npos);
  }
  auto js = Get("/dashboard/dashboard.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  for (const char* path : {"/dashboard/nope.js", "/dashboard/..%2fhttp_server.cc", "/dashboard/a/b.js"}) {
    auto r = Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_TRUE(json::parse(r->body).contains("error")) << path;
  }
}

TEST_F(HttpServerTest, RecentRequestsExplainEachRequest) {
  auto empty = Get("/v1/recent_requests");
  ASSERT_TRUE(empty);
  json e = json::parse(empty->body);
  EXPECT_EQ(e["capacity"], 50);
  EXPECT_EQ(e["num_recorded"], 0);
  EXPECT_TRUE(e["requests"].empty());
  EXPECT_EQ(e["time_to_first_token_seconds"]["count"], 0);

  const std::string body = R"({"messages":[{"role":"user","content":"Hi there"}],"max_tokens":3,"temperature":0})";
  for (int i = 0; i < 2; ++i) ASSERT_EQ(Post("/v1/chat/completions", body)->status, 200);
  auto r = Get("/v1/recent_requests");
  ASSERT_TRUE(r);
  json j = json::parse(r->body);
  ASSERT_EQ(j["requests"].size(), 2u);
  const json& newest = j["requests"][0];
  EXPECT_EQ(newest["seq"], 2);
  EXPECT_EQ(newest["kind"], "chat");
  EXPECT_EQ(newest["outcome"], "length");
  EXPECT_GT(newest["ttft_ms"].get<double>(), 0);
  EXPECT_GE(newest["duration_ms"].get<double>(), newest["ttft_ms"].get<double>());
  EXPECT_GT(newest["usage"]["prefix_cache"]["cached_tokens"].get<int>(), 0);
  EXPECT_EQ(j["requests"][1]["usage"]["prefix_cache"]["cached_tokens"], 0);
  EXPECT_EQ(j["requests"][1]["usage"]["prefix_cache"]["diverged_in_message"], 0);
  const json& ttft = j["time_to_first_token_seconds"];
  EXPECT_EQ(ttft["count"], 2);
  EXPECT_EQ(ttft["counts"].size(), ttft["bounds"].size() + 1);
  const json& history = j["hit_history"];
  EXPECT_EQ(history["bucket_s"], 10);
  ASSERT_EQ(history["hits"].size(), 90u);
  int64_t hits = 0, misses = 0;
  for (size_t i = 0; i < 90; ++i) {
    if (!history["hits"][i].is_null()) hits += history["hits"][i].get<int64_t>();
    if (!history["misses"][i].is_null()) misses += history["misses"][i].get<int64_t>();
  }
  EXPECT_EQ(hits, 1);  // the repeat
  EXPECT_EQ(misses, 1);
}

TEST_F(HttpServerTest, ProbeRangesMessageStartsAndTokens) {
  const std::string messages = R"("messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Tell a story"}])";
  ASSERT_EQ(Post("/v1/chat/completions", "{" + messages + R"(,"max_tokens":2,"temperature":0})")->status, 200);
  auto r = Post("/admin/api/cache/probe", "{" + messages + R"(,"tokens":true})", {{"Authorization", "Bearer k"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json p = json::parse(r->body);
  const int64_t total = p["total_tokens"];
  ASSERT_EQ(p["ranges"].size(), 1u) << p.dump();  // only the pool tier here
  EXPECT_EQ(p["ranges"][0], (json{{"tier", "pool"}, {"start", 0}, {"end", p["resident_tokens"]}}));
  ASSERT_EQ(p["message_starts"].size(), 2u);
  EXPECT_EQ(p["message_starts"][0], 0);
  EXPECT_LT(p["message_starts"][0].get<int64_t>(), p["message_starts"][1].get<int64_t>());
  EXPECT_LT(p["message_starts"][1].get<int64_t>(), p["generation_start"].get<int64_t>());
  EXPECT_LT(p["generation_start"].get<int64_t>(), total);
  ASSERT_EQ(p["tokens"].size(), static_cast<size_t>(total));
  std::string text;
  for (const json& piece : p["tokens"]) text += piece.get<std::string>();
  EXPECT_NE(text.find("Tell a story"), std::string::npos) << text;
  // Without "tokens" the texts are left out; a prompt has no message starts.
  auto plain = Post("/admin/api/cache/probe", R"({"prompt":"Once upon"})", {{"Authorization", "Bearer k"}});
  ASSERT_TRUE(plain);
  json q = json::parse(plain->body);
  EXPECT_FALSE(q.contains("tokens"));
  EXPECT_FALSE(q.contains("message_starts"));
  EXPECT_TRUE(q["ranges"].is_array());
}

TEST_F(HttpServerTest, ErrorsAndAdmin) {
  auto bad = Post("/v1/completions", R"({"prompt":"x","max_tokens":-1})");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(json::parse(bad->body)["error"]["param"], "max_tokens");
  auto invalid = Post("/v1/completions", "{\"prompt\":\"\xff\"}");
  ASSERT_TRUE(invalid);
  EXPECT_EQ(invalid->status, 400);
  EXPECT_EQ(json::parse(invalid->body)["error"]["param"], "prompt");
  auto big = Post("/v1/completions", std::string(1 << 17, ' '));
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  auto unauth = Post("/admin/api/cache/clear", "{}", {{"Authorization", "Bearer nope"}});
  ASSERT_TRUE(unauth);
  EXPECT_EQ(unauth->status, 401);
  auto probe = Post("/admin/api/cache/probe", R"({"prompt":"Once upon a time"})", {{"Authorization", "Bearer k"}});
  ASSERT_TRUE(probe);
  ASSERT_EQ(probe->status, 200) << probe->body;
  EXPECT_EQ(json::parse(probe->body)["model_loaded"], true);
  auto off = Post("/admin/api/cache/disable", "{}", {{"Authorization", "Bearer k"}});
  ASSERT_TRUE(off);
  EXPECT_EQ(json::parse(off->body)["enabled"], false);
  auto stats = Get("/v1/prefix_cache_stats");
  ASSERT_TRUE(stats);
  EXPECT_EQ(json::parse(stats->body)["enabled"], false);
  auto health = Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// Issue 16: deep nesting, non-JSON bodies, the Bearer scheme's case.
TEST_F(HttpServerTest, HostileBodiesAreRefusedAndTheServerStaysUp) {
  const std::string deep = std::string(30000, '[') + std::string(30000, ']');
  for (const auto& [path, body] : std::vector<std::pair<std::string, std::string>>{
           {"/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"tools":)" + deep + "}"},
           {"/admin/api/cache/probe", R"({"messages":[{"role":"user","content":"x"}],"tools":)" + deep + "}"},
           {"/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}],"chat_template_kwargs":{"a":)" + deep + "}}"}}) {
    auto r = Post(path, body, {{"Authorization", "Bearer k"}});
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 400) << path;
    EXPECT_NE(json::parse(r->body)["error"]["message"].get<std::string>().find("the limit is 64"), std::string::npos);
  }
  httplib::Client c("127.0.0.1", port_);
  auto text = c.Post("/v1/completions", R"({"prompt":"x","max_tokens":1})", "text/plain");
  ASSERT_TRUE(text);
  EXPECT_EQ(text->status, 415);
  EXPECT_NE(text->body.find("application/json"), std::string::npos);
  auto lower = Post("/admin/api/cache/disable", "", {{"Authorization", "bearer k"}});
  ASSERT_TRUE(lower);
  EXPECT_EQ(lower->status, 200) << lower->body;
  auto upper = Post("/admin/api/cache/enable", "", {{"Authorization", "BEARER k"}});
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper->status, 200) << upper->body;
  auto health = Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST_F(HttpServerTest, ConcurrentClientsSomeHangingUp) {
  // Streams read to the end or dropped after a few chunks, from several threads at once; then
  // the engine holds nothing and, after a clear, neither does the cache.
  const int64_t idle_free = service_->stats().pool_free_blocks;
  std::vector<std::thread> clients;
  std::atomic<int> completed{0}, dropped{0};
  for (int c = 0; c < 6; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 3; ++i) {
        const bool hang_up = (c + i) % 3 == 0;
        httplib::Client client("127.0.0.1", port_);
        client.set_read_timeout(30, 0);
        httplib::Request req;
        req.method = "POST";
        req.path = "/v1/completions";
        req.set_header("Content-Type", "application/json");
        req.body = json{{"prompt", "Once upon a time, there was"},
                        {"max_tokens", hang_up ? 200 : 12},
                        {"ignore_eos", hang_up},
                        {"stream", true},
                        {"seed", c * 10 + i},
                        {"temperature", 0.7}}
                       .dump();
        int chunks = 0;
        std::string body;
        req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
          body.append(data, n);
          return !(hang_up && ++chunks >= 3);
        };
        auto res = client.send(req);
        if (hang_up) {
          dropped.fetch_add(1);
        } else if (res && res->status == 200 && body.find("data: [DONE]") != std::string::npos) {
          completed.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(completed.load(), 18 - dropped.load());
  for (int i = 0; i < 500; ++i) {
    const ServiceStats s = service_->stats();
    if (s.requests_running == 0 && s.requests_waiting == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(service_->stats().requests_running, 0);
  service_->ClearCache();
  EXPECT_EQ(service_->stats().pool_free_blocks, idle_free);
  auto h = Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST_F(HttpServerTest, StopEndsARunningRequest) {
  std::thread client([this] {
    auto r = Post("/v1/completions", R"({"prompt":"Once","max_tokens":240,"ignore_eos":true})");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    const std::string finish = json::parse(r->body)["choices"][0]["finish_reason"];
    EXPECT_TRUE(finish == "abort" || finish == "length") << finish;
  });
  for (int i = 0; i < 500 && service_->stats().requests_running == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  server_->Stop();
  client.join();
}

}  // namespace
}  // namespace prefixd
