// `prefixd serve`: loads a model and serves the OpenAI-compatible HTTP API (src/server) over
// one engine and its prefix cache until SIGINT or SIGTERM.
//
// Start-up prints one line on stdout once the socket listens (scripts and tests wait for it):
//   prefixd listening on http://127.0.0.1:8080 (model stories260K.gguf, block size 16, cache on 256 MiB)
// On SIGINT/SIGTERM the server stops accepting, running and queued requests are cancelled
// (each client gets its final answer), and the process exits 0.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <optional>
#include <thread>

#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "app/common.h"
#include "app/engine_flags.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/kv_event_publisher.h"
#include "engine/engine_service.h"
#include "server/http_server.h"

namespace prefixd {

namespace {

struct ServeFlags {
  std::string model;
  HttpServerOptions http;
  int max_queue = 256;
  EngineFlags engine;
  std::string kv_events;         // PUB endpoint; empty: no KV events
  std::string kv_events_replay;  // ROUTER endpoint; empty: the port after --kv-events'
  std::string reuse_reply_tokens = "on";
  std::string request_log;       // --request-log FILE; empty: none
};

int RunServe(ServeFlags f) {
  f.http.reuse_reply_tokens = f.reuse_reply_tokens == "on";
  // Signals go to one thread that waits for them, never to a worker in the middle of a step:
  // block them here, before any thread starts, so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A client that disconnects makes a write fail with EPIPE instead of killing the process.
  signal(SIGPIPE, SIG_IGN);

  auto residence = ChooseWeightResidence(f.engine.weights, f.model);
  if (!residence.ok()) return Fail(residence.status());
  auto loaded = LoadModelAndTokenizer(f.model, *residence);
  if (!loaded.ok()) return Fail(loaded.status());
  auto eo = ToEngineOptions(f.engine);
  if (!eo.ok()) return Fail(eo.status());
  // Declared before the engine so that it outlives the engine service (the cache logs to it).
  std::unique_ptr<KvEventPublisher> kv_events;
  ServiceOptions so;
  if (!f.kv_events.empty()) {
    KvEventPublisherOptions po;
    po.endpoint = f.kv_events;
    po.replay_endpoint = f.kv_events_replay;
    po.block_size = eo->block_size;
    auto pub = KvEventPublisher::Create(po);
    if (!pub.ok()) return Fail(pub.status());
    kv_events = std::move(*pub);
    eo->kv_events = kv_events->log();
    so.kv_events_endpoint = kv_events->endpoint();
    so.kv_events_replay_endpoint = kv_events->replay_endpoint();
    spdlog::info("KV events on {} (replay {})", so.kv_events_endpoint, so.kv_events_replay_endpoint);
  }
  // With a request log, the cache's clock moves once per engine loop iteration, and the log
  // records each time (engine/request_log.h): a replay then sees the times the cache saw.
  std::optional<LatchedClock> latched;
  if (!f.request_log.empty()) {
    latched.emplace(eo->clock != nullptr ? eo->clock : SteadyClock::Get());
    eo->clock = &*latched;
  }
  auto engine = Engine::Create(*loaded->model, loaded->tokenizer->eos_id(), *eo);
  if (!engine.ok()) return Fail(engine.status());
  so.max_queue = f.max_queue;
  // Declared before the service, which appends to it until it stops.
  std::unique_ptr<RequestLog> request_log;
  if (!f.request_log.empty()) {
    auto log = RequestLog::Open(f.request_log, RequestLogHeaderOf(**engine), &*latched);
    if (!log.ok()) return Fail(log.status());
    request_log = std::move(*log);
    so.request_log = request_log.get();
  }
  EngineService service(*loaded->model, *loaded->tokenizer, *std::move(engine), so);
  HttpServer server(&service, f.http);
  auto port = server.Bind();
  if (!port.ok()) return Fail(port.status());

  const ServiceInfo& info = service.info();
  const std::string cache =
      info.prefix_cache ? absl::StrCat("cache on ", info.cache_budget_bytes >> 20, " MiB") : "cache off";
  std::printf("prefixd listening on http://%s:%d (model %s, block size %d, %s)\n", f.http.host.c_str(), *port,
              info.model_id.c_str(), info.block_size, cache.c_str());
  std::fflush(stdout);

  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    spdlog::info("signal {}: stopping", sig);
    server.Stop();
    spdlog::debug("HTTP server stopped");
    service.Shutdown();
    spdlog::debug("engine stopped");
  });
  const Status served = server.Serve();
  spdlog::debug("HTTP server returned");
  // Serve returns on Stop (the waiter ran) or on an error; wake the waiter in the latter case.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  service.Shutdown();
  if (!served.ok()) return Fail(served);
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve the OpenAI-compatible HTTP API");
  cmd->add_option("-m,--model", f->model, "GGUF model file")->envname("PREFIXD_MODEL")->required();
  cmd->add_option("--host", f->http.host, "Address to listen on")
      ->envname("PREFIXD_HOST")->capture_default_str();
  cmd->add_option("--port", f->http.port, "Port to listen on (0: any free port, printed at start)")
      ->envname("PREFIXD_PORT")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--max-queue", f->max_queue, "Requests waiting beyond this are refused with 429")
      ->envname("PREFIXD_MAX_QUEUE")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--admin-key", f->http.admin_key,
                  "Enables the admin API (/admin/api/...) for 'Authorization: Bearer KEY'")
      ->envname("PREFIXD_ADMIN_KEY");
  cmd->add_option("--api-key", f->http.api_key, "When set, /v1/* needs 'Authorization: Bearer KEY'")
      ->envname("PREFIXD_API_KEY");
  cmd->add_option("--http-threads", f->http.num_threads,
                  "Worker threads that parse, render and tokenize requests (connections are served "
                  "by --http-io-threads; a stream holds no thread)")
      ->envname("PREFIXD_HTTP_THREADS")->check(CLI::Range(1, 4096))->capture_default_str();
  cmd->add_option("--http-io-threads", f->http.num_io_threads, "Threads that read and write every connection")
      ->envname("PREFIXD_HTTP_IO_THREADS")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--max-connections", f->http.max_connections,
                  "Open connections served at once; beyond it a new one gets 503")
      ->envname("PREFIXD_MAX_CONNECTIONS")->check(CLI::Range(1, 1000000))->capture_default_str();
  cmd->add_option("--allowed-hosts", f->http.allowed_hosts,
                  "Host names served besides the bound address (bound to loopback: localhost and "
                  "127.0.0.1); pages on them may POST. '*' serves any")
      ->envname("PREFIXD_ALLOWED_HOSTS")->delimiter(',');
  cmd->add_option("--max-body-bytes", f->http.max_body_bytes, "Larger request bodies get 413")
      ->envname("PREFIXD_MAX_BODY_BYTES")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--kv-events", f->kv_events,
                  "Publish KV cache events (vLLM's KVEventBatch over ZMQ PUB, msgpack) on this "
                  "endpoint, e.g. tcp://127.0.0.1:5557; off when unset")
      ->envname("PREFIXD_KV_EVENTS");
  cmd->add_option("--kv-events-replay", f->kv_events_replay,
                  "The replay (ZMQ ROUTER) endpoint for --kv-events; default: its port + 1")
      ->envname("PREFIXD_KV_EVENTS_REPLAY");
  cmd->add_option("--reuse-reply-tokens", f->reuse_reply_tokens,
                  "A chat's assistant message that repeats, byte for byte, a reply this server "
                  "generated (same cache_salt) is prompted with the generated token ids, so the "
                  "reply's tokens hit the prefix cache; off: its text is tokenized again")
      ->envname("PREFIXD_REUSE_REPLY_TOKENS")->check(CLI::IsMember({"on", "off"}))->capture_default_str();
  cmd->add_option("--reply-record-max-bytes", f->http.reply_record_max_bytes,
                  "Memory for the record of generated replies (text and ids); least recently used go first")
      ->envname("PREFIXD_REPLY_RECORD_MAX_BYTES")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--reply-record-max-entries", f->http.reply_record_max_entries,
                  "Generated replies recorded at most")
      ->envname("PREFIXD_REPLY_RECORD_MAX_ENTRIES")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--request-log", f->request_log,
                  "Append one JSON line per finished request (token hashes and lengths, never "
                  "text) for `prefixd replay --request-log`")
      ->envname("PREFIXD_REQUEST_LOG");
  AddEngineFlags(cmd, &f->engine);
  cmd->callback([f, run] { *run = [f] { return RunServe(*f); }; });
}

}  // namespace prefixd
