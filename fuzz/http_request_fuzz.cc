// libFuzzer target for the HTTP layer: the input is one or more raw HTTP/1.1 requests
// (pipelined, as a connection's bytes). Each is read by the transport's own reader under its
// limits (ReadRequest, http_transport.h: header bytes, header count, body bytes, Beast's
// parser), and a request the transport would hand on goes through the server's router and routes
// (HttpServer::Dispatch: Host/Origin/auth/content-type checks, then the handler) over a real
// EngineService on stories260K, loaded once. No sockets.
//
// A finding: a crash, a sanitizer report, an uncaught exception, a route that answers twice
// or not at all (within kAnswerTimeout), or a status outside 100..599.
//
//   PREFIXD_FUZZ_MODEL=path/to/model.gguf  another model (default ../shared/models/stories260K.gguf)
//   PREFIXD_FUZZ_VERBOSE=1                 prints each request's method, path and status
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "engine/engine_service.h"
#include "engine/vocab_loader.h"
#include "server/http_message.h"
#include "server/http_server.h"
#include "server/http_transport.h"

namespace {

using prefixd::HttpRequest;
using prefixd::HttpResponse;

constexpr auto kAnswerTimeout = std::chrono::seconds(20);
constexpr int kMaxRequestsPerInput = 8;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "http_request_fuzz: invariant broken: %s\n", what);
    std::abort();
  }
}

bool g_verbose = false;

// Records one request's answer and checks the Responder contract: exactly one of Send or
// StartStream, once; Write and Finish only inside a stream; nothing after the end.
class FuzzResponder : public prefixd::Responder {
 public:
  void Send(HttpResponse r) override {
    std::lock_guard<std::mutex> lock(mu_);
    Check(!started_ && !done_, "Send after the request was answered");
    CheckResponse(r);
    done_ = true;
    cv_.notify_all();
  }
  void StartStream(HttpResponse r) override {
    std::lock_guard<std::mutex> lock(mu_);
    Check(!started_ && !done_, "StartStream after the request was answered");
    CheckResponse(r);
    started_ = true;
  }
  void Write(std::string data) override {
    std::lock_guard<std::mutex> lock(mu_);
    Check(started_ && !done_, "Write outside a stream");
    bytes_ += data.size();
  }
  void Finish() override {
    std::lock_guard<std::mutex> lock(mu_);
    Check(started_ && !done_, "Finish outside a stream, or twice");
    done_ = true;
    cv_.notify_all();
  }
  void OnClientGone(std::function<void()> on_gone) override {
    std::lock_guard<std::mutex> lock(mu_);
    on_gone_ = std::move(on_gone);  // the client never goes
  }

  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, kAnswerTimeout, [this] { return done_; });
  }

 private:
  void CheckResponse(const HttpResponse& r) {
    if (g_verbose) std::fprintf(stderr, "  -> %d %s\n", r.status, r.body.substr(0, 160).c_str());
    Check(r.status >= 100 && r.status <= 599, "a status outside 100..599");
    // Read every byte, so ASan sees a dangling or short buffer.
    for (char c : r.body) bytes_ += static_cast<unsigned char>(c) & 1;
    for (const auto& [k, v] : r.headers) bytes_ += k.size() + v.size();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool done_ = false;
  size_t bytes_ = 0;
  std::function<void()> on_gone_;
};

struct Server {
  std::unique_ptr<prefixd::Model> model;
  std::unique_ptr<prefixd::Tokenizer> tokenizer;
  std::unique_ptr<prefixd::EngineService> service;
  std::unique_ptr<prefixd::HttpServer> server;
  prefixd::HttpServerOptions options;
  prefixd::HttpTransportOptions limits;  // as HttpServer gives them to its transport
};

Server* g_server = nullptr;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "http_request_fuzz: %s\n", what.c_str());
  std::exit(1);
}

// Reads the next request off `rest` the way a connection does (ReadRequest: the transport's
// parser, limits and head checks) and routes it. Returns the bytes it used (0: nothing more
// can be read: a refusal, a broken or cut-short request), and whether the connection would
// go on. (The router's header checks run here together with the handler rather than before
// the body: they read no body.)
size_t OneRequest(std::string_view rest, bool* keep_alive) {
  Server& s = *g_server;
  prefixd::RequestRead read = prefixd::ReadRequest(rest, s.limits);
  if (read.kind == prefixd::RequestRead::Kind::kRefused) Check(read.refusal.status >= 400, "a refusal that is not an error");
  if (read.kind != prefixd::RequestRead::Kind::kRequest) return 0;
  HttpRequest req = std::move(read.request);
  *keep_alive = read.keep_alive;
  if (g_verbose) std::fprintf(stderr, "%s %s (%zu body bytes)\n", req.method.c_str(), req.path.c_str(), req.body.size());
  auto responder = std::make_shared<FuzzResponder>();
  s.server->Dispatch(std::move(req), responder);
  Check(responder->Wait(), "a request got no answer in time");
  return read.num_bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("PREFIXD_FUZZ_MODEL");
  const std::string path = env != nullptr ? env : std::string(PREFIXD_SHARED_DIR) + "/models/stories260K.gguf";
  g_verbose = std::getenv("PREFIXD_FUZZ_VERBOSE") != nullptr;
  auto* s = new Server;
  auto model = prefixd::Model::Load(path);
  if (!model.ok()) Fail("cannot load " + path + ": " + std::string(model.status().message()));
  s->model = *std::move(model);
  auto vocab = prefixd::LoadVocab(s->model->gguf());
  if (!vocab.ok()) Fail("no vocabulary in " + path);
  auto tok = prefixd::Tokenizer::Create(*std::move(vocab));
  if (!tok.ok()) Fail("no tokenizer for " + path);
  s->tokenizer = *std::move(tok);
  prefixd::EngineOptions eo;
  eo.num_threads = 1;
  eo.context_length = 128;  // bounds prompt + max_tokens: generation stays short
  eo.max_running = 4;
  eo.cache_bytes = int64_t{4} << 20;
  auto engine = prefixd::Engine::Create(*s->model, s->tokenizer->eos_id(), eo);
  if (!engine.ok()) Fail("cannot create the engine: " + std::string(engine.status().message()));
  s->service = std::make_unique<prefixd::EngineService>(*s->model, *s->tokenizer, *std::move(engine),
                                                        prefixd::ServiceOptions{});
  // The server's defaults (the transport's limits come from them), an admin key so the admin
  // routes are reachable, no API key.
  s->options.port = 0;
  s->options.admin_key = "k";
  s->options.num_threads = 2;
  s->options.num_io_threads = 1;
  s->limits.max_header_bytes = s->options.max_header_bytes;
  s->limits.max_body_bytes = s->options.max_body_bytes;
  s->server = std::make_unique<prefixd::HttpServer>(s->service.get(), s->options);
  g_server = s;  // kept for the process's life
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int i = 0; i < kMaxRequestsPerInput && !rest.empty(); ++i) {
    bool keep_alive = false;
    const size_t used = OneRequest(rest, &keep_alive);
    if (used == 0 || !keep_alive) break;
    rest.remove_prefix(used);
  }
  return 0;
}
