#include "server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "base/log.h"
#include "server/api_error.h"
#include "server/chat_format.h"
#include "server/completion_stream.h"
#include "server/connection_socket.h"
#include "server/dashboard_assets.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/recent_requests.h"
#include "server/request_headers.h"

namespace prefixd {

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::mt19937_64& Rng() {
  thread_local std::mt19937_64 rng(std::random_device{}() ^
                                   (static_cast<uint64_t>(std::random_device{}()) << 32));
  return rng;
}

std::string RandomId(const char* prefix) {
  static const char kHex[] = "0123456789abcdef";
  std::string id = prefix;
  uint64_t a = Rng()(), b = Rng()();
  for (int i = 0; i < 12; ++i, a >>= 4) id += kHex[a & 15];
  for (int i = 0; i < 12; ++i, b >>= 4) id += kHex[b & 15];
  return id;
}

// Compares without an early exit, so the time taken does not tell how much of a guess was
// right.
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = diff | (x ^ y);
  }
  return diff == 0;
}

std::string BearerToken(const httplib::Request& req) {
  return BearerTokenOf(req.get_header_value("Authorization"));
}

// ---- One generation request, shared by the HTTP thread and the engine's callback.

class EventQueue {
 public:
  struct Timed {
    TokenEvent event;
    Clock::time_point at;
  };
  // Called on the engine thread: never blocks for long.
  void Push(const TokenEvent& ev) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(Timed{ev, Clock::now()});
    }
    cv_.notify_one();
  }
  // Waits up to `timeout` for events, then takes all of them.
  std::deque<Timed> Wait(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
    std::deque<Timed> out;
    out.swap(events_);
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Timed> events_;
};

struct Job {
  Job(const Tokenizer& tokenizer, std::vector<std::string> stops, int top_logprobs,
      std::atomic<int>* num_active)
      : stream(tokenizer, std::move(stops), top_logprobs), num_active(num_active) {
    num_active->fetch_add(1);
  }
  // The last owner is the handler (non-streaming) or the response's content provider
  // (streaming), so this runs once the answer is written or abandoned.
  ~Job() { num_active->fetch_sub(1); }

  std::shared_ptr<EventQueue> queue = std::make_shared<EventQueue>();
  SequenceId id;
  int socket = -1;
  ResponseMeta meta;
  bool logprobs = false;
  bool include_usage = false;
  std::vector<int32_t> prompt;
  std::optional<ChatTokenStarts> chat;  // chat: where each message starts in `prompt`
  CompletionStream stream;
  bool streaming = false;
  Clock::time_point received;
  int64_t received_unix_ms = 0;
  std::optional<Clock::time_point> first_token_at;
  std::optional<Clock::time_point> last_token_at;
  bool cancelled = false;    // Cancel was sent (stop string, client gone, shutdown)
  bool client_gone = false;
  bool sent_first = false;   // streaming: the first chunk went out
  bool observed = false;     // the request duration was recorded, and the request in RecentRequests
  std::vector<LogprobEntry> logprob_entries;  // non-streaming: all of them
  std::atomic<int>* num_active;  // HttpServer's count of requests being answered
};

constexpr auto kPollInterval = std::chrono::milliseconds(50);

}  // namespace

struct HttpServer::Impl {
  Impl(EngineService* s, HttpServerOptions o)
      : service(s),
        options(std::move(o)),
        chat_format(ChatTemplateSource(*s), s->tokenizer().vocab()),
        has_chat_template(!ChatTemplateSource(*s).empty()),
        started_unix(UnixSeconds()),
        started(Clock::now()) {}

  static std::string ChatTemplateSource(const EngineService& s) {
    auto t = s.model().gguf().GetString("tokenizer.chat_template");
    return t.ok() ? *t : std::string();
  }

  EngineService* service;
  HttpServerOptions options;
  ChatFormat chat_format;
  bool has_chat_template;
  int64_t started_unix;
  Clock::time_point started;
  ServerMetrics metrics;
  HitRateWindow hit_window;
  RecentRequests recent;
  httplib::Server server;
  std::atomic<bool> stopping{false};
  std::atomic<int> num_active_jobs{0};  // generation requests being answered
  std::atomic<int> bound_port{0};
  std::mutex sampler_mu;
  std::condition_variable sampler_cv;
  std::thread sampler;

  const Tokenizer& tokenizer() const { return service->tokenizer(); }
  const ServiceInfo& info() const { return service->info(); }
  RequestLimits limits() const { return RequestLimits{info().context_length, info().vocab_size}; }
  int64_t NowS() const {
    return std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started).count();
  }
  void SampleHitWindow() {
    const ServiceStats s = service->stats();
    hit_window.Record(NowS(), s.cache.hits, s.cache.misses);
  }

  // ---- Responses

  void SendJson(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(Dump(body), "application/json");
  }
  void SendError(httplib::Response& res, const ApiError& error) {
    res.status = error.http_status;
    res.set_content(ApiErrorBody(error), "application/json");
    if (error.http_status == 401) res.set_header("WWW-Authenticate", "Bearer");
  }
  void SendStatus(httplib::Response& res, const Status& status) { SendError(res, ApiErrorFrom(status)); }

  // Registers `handler` for `method` and `pattern`: counts the response, and turns anything
  // thrown into a 500 error object.
  template <typename Fn>
  void Route(const char* method, const std::string& pattern, Fn handler) {
    auto wrapped = [this, pattern, handler](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const std::exception& e) {
        spdlog::error("{} {}: {}", req.method, req.path, e.what());
        SendError(res, MakeApiError(500, absl::StrCat("internal error: ", e.what())));
      } catch (...) {
        SendError(res, MakeApiError(500, "internal error"));
      }
      metrics.CountResponse(pattern, res.status);
    };
    if (std::string_view(method) == "GET") {
      server.Get(pattern, wrapped);
    } else {
      server.Post(pattern, wrapped);
    }
  }

  // ---- Authorization

  bool CheckApiKey(const httplib::Request& req, httplib::Response& res) {
    if (options.api_key.empty()) return true;
    if (ConstantTimeEquals(BearerToken(req), options.api_key)) return true;
    SendError(res, MakeApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY' "
                                     "with the key the server was started with (--api-key)"));
    return false;
  }

  bool CheckAdmin(const httplib::Request& req, httplib::Response& res) {
    if (options.admin_key.empty()) {
      SendError(res, MakeApiError(403,
                                  "the admin API is disabled: start prefixd serve with --admin-key KEY "
                                  "(or the environment variable PREFIXD_ADMIN_KEY) to enable it"));
      return false;
    }
    if (ConstantTimeEquals(BearerToken(req), options.admin_key)) return true;
    SendError(res, MakeApiError(401, "missing or wrong admin key: send 'Authorization: Bearer "
                                     "ADMIN_KEY' with the server's --admin-key"));
    return false;
  }

  // JSON POST routes take a body only as JSON: a form or text/plain body (what a web page
  // may send cross-site without a preflight) gets 415. An empty body passes (the admin
  // switches take none).
  bool CheckJsonBody(const httplib::Request& req, httplib::Response& res) {
    if (req.body.empty()) return true;
    const std::string type = req.get_header_value("Content-Type");
    if (IsJsonContentType(type)) return true;
    SendError(res, MakeApiError(415, absl::StrCat("the request body must be JSON, sent with 'Content-Type: "
                                                  "application/json'; got ",
                                                  type.empty() ? std::string("no Content-Type")
                                                               : absl::StrCat("'", type, "'"))));
    return false;
  }

  // ---- Prompts

  // "" and the loaded model's file name, stem or path are accepted.
  Status CheckModel(const std::string& model) const {
    if (model.empty() || model == info().model_id || model == info().model_path) return absl::OkStatus();
    const std::string& id = info().model_id;
    const size_t dot = id.rfind('.');
    if (dot != std::string::npos && model == id.substr(0, dot)) return absl::OkStatus();
    return InvalidArgumentFor("model", absl::StrCat("the model '", model, "' is not served here; this server serves '",
                                                    id, "' (GET /v1/models)"));
  }

  struct Prompt {
    std::vector<int32_t> tokens;
    std::optional<RenderedChat> chat;
    std::optional<ChatTokenStarts> starts;  // chat: found from this one render and encoding
  };

  // The prompt tokens exactly as generation and the probe both use them: chat messages
  // rendered with the model's format, text encoded with the vocabulary's BOS handling,
  // token ids as given.
  StatusOr<Prompt> BuildPrompt(const OpenAiRequest& r) const {
    Prompt p;
    if (r.kind == ApiKind::kChat) {
      auto chat = chat_format.Render(r.messages, r.tools, r.chat_template_kwargs);
      if (!chat.ok()) return InvalidArgumentFor("messages", std::string(chat.status().message()));
      p.chat = *std::move(chat);
      p.tokens = tokenizer().Encode(p.chat->text, ChatEncodeOptions(*p.chat));
      p.starts = FindChatTokenStarts(tokenizer(), *p.chat, p.tokens);
    } else if (r.prompt_tokens) {
      p.tokens = *r.prompt_tokens;
    } else {
      p.tokens = tokenizer().Encode(*r.prompt_text, PromptEncodeOptions());
    }
    if (p.tokens.empty()) {
      return InvalidArgumentFor(r.kind == ApiKind::kChat ? "messages" : "prompt",
                                "the prompt encodes to no tokens");
    }
    return p;
  }

  Status CheckFits(const OpenAiRequest& r, const Prompt& p) const {
    const int64_t ctx = info().context_length;
    if (static_cast<int64_t>(p.tokens.size()) >= ctx) {
      return InvalidArgumentFor(
          r.kind == ApiKind::kChat ? "messages" : "prompt",
          absl::StrCat("the prompt has ", p.tokens.size(), " tokens; the context holds ", ctx,
                       " tokens, and at least one must be left to generate"));
    }
    return absl::OkStatus();
  }

  // ---- Generation

  json UsageFor(const Job& job) const {
    RequestUsage u = job.stream.usage();
    u.prompt_tokens = static_cast<int32_t>(job.prompt.size());
    std::optional<int64_t> message;
    if (job.chat) {
      message = -1;
      // The assistant header after the last message counts as message n.
      if (u.diverged_at_token >= 0) message = job.chat->MessageOf(u.diverged_at_token);
    }
    return UsageJson(u, job.stream.num_tokens(), message);
  }

  json LogprobsJson(const Job& job, const std::vector<LogprobEntry>& entries) const {
    if (!job.logprobs) return nullptr;
    return job.meta.kind == ApiKind::kChat ? ChatLogprobsJson(entries) : CompletionLogprobsJson(entries);
  }

  void CancelJob(Job& job) {
    if (job.cancelled) return;
    job.cancelled = true;
    service->Cancel(job.id);
  }

  void ClientGone(Job& job) {
    if (job.client_gone || job.stream.finished()) return;
    job.client_gone = true;
    metrics.client_disconnects.fetch_add(1, std::memory_order_relaxed);
    CancelJob(job);
  }

  // Waits up to `wait` for events and runs them through the job's stream. Cancels the request
  // when a stop string matched, the client left, or the server is stopping.
  std::vector<CompletionStream::Delta> Pump(Job& job, std::chrono::milliseconds wait) {
    std::vector<CompletionStream::Delta> deltas;
    for (EventQueue::Timed& t : job.queue->Wait(wait)) {
      if (t.event.token >= 0 && !job.stream.stop_matched()) {
        if (!job.last_token_at) {
          job.first_token_at = t.at;
          metrics.time_to_first_token.Observe(SecondsBetween(job.received, t.at));
        } else {
          metrics.inter_token_latency.Observe(SecondsBetween(*job.last_token_at, t.at));
        }
        job.last_token_at = t.at;
      }
      CompletionStream::Delta d = job.stream.Consume(t.event);
      if (d.stop_matched) {
        metrics.stop_string_matches.fetch_add(1, std::memory_order_relaxed);
        CancelJob(job);
      }
      deltas.push_back(std::move(d));
    }
    if (!job.stream.finished()) {
      if (PeerClosed(job.socket)) ClientGone(job);
      if (stopping.load()) CancelJob(job);
    }
    return deltas;
  }

  // Records the request's duration and adds it to the recent requests; once per request.
  void ObserveDuration(Job& job) {
    if (job.observed) return;
    job.observed = true;
    const Clock::time_point now = Clock::now();
    metrics.request_duration.Observe(SecondsBetween(job.received, now));
    RequestRecord r;
    r.id = job.meta.id;
    r.kind = job.meta.kind == ApiKind::kChat ? "chat" : "completion";
    r.stream = job.streaming;
    r.received_unix_ms = job.received_unix_ms;
    if (job.first_token_at) r.ttft_ms = 1000 * SecondsBetween(job.received, *job.first_token_at);
    r.duration_ms = 1000 * SecondsBetween(job.received, now);
    if (job.client_gone) {
      r.outcome = "client_gone";
    } else if (!job.stream.error().ok()) {
      r.outcome = "error";
    } else {
      r.outcome = job.stream.finished() ? job.stream.finish_reason() : "abort";
    }
    r.usage = UsageFor(job);
    recent.Add(std::move(r));
  }

  void HandleGenerate(const httplib::Request& req, httplib::Response& res, ApiKind kind) {
    const Clock::time_point received = Clock::now();
    if (!CheckApiKey(req, res)) return;
    if (!CheckJsonBody(req, res)) return;
    if (stopping.load()) return SendStatus(res, absl::UnavailableError("the server is shutting down"));
    auto parsed = kind == ApiKind::kChat ? ParseChatRequest(req.body, limits())
                                         : ParseCompletionRequest(req.body, limits());
    if (!parsed.ok()) return SendStatus(res, parsed.status());
    OpenAiRequest& r = *parsed;
    if (Status s = CheckModel(r.model); !s.ok()) return SendStatus(res, s);
    auto prompt = BuildPrompt(r);
    if (!prompt.ok()) return SendStatus(res, prompt.status());
    if (Status s = CheckFits(r, *prompt); !s.ok()) return SendStatus(res, s);

    GenerateRequest gr;
    gr.prompt = prompt->tokens;
    gr.cache_salt = r.cache_salt;
    // The engine returns logprobs with at least one alternative; OpenAI's logprobs = 0 (the
    // chosen token only) drops it here.
    gr.logprobs = r.logprobs ? std::max(1, r.top_logprobs) : 0;
    gr.sampling.temperature = r.temperature;
    gr.sampling.top_k = r.top_k;
    gr.sampling.top_p = r.top_p;
    gr.sampling.min_p = r.min_p;
    gr.sampling.seed = r.seed ? *r.seed : Rng()();
    const int32_t room = info().context_length - static_cast<int32_t>(prompt->tokens.size());
    gr.max_tokens = r.max_tokens ? *r.max_tokens : (kind == ApiKind::kCompletion ? std::min(16, room) : room);
    gr.ignore_eos = r.ignore_eos;
    gr.scope = r.prefix_cache.scope;
    // The scope policy aligns what the lower tiers keep to message boundaries.
    if (prompt->starts) gr.message_starts = prompt->starts->message_starts;

    auto job = std::make_shared<Job>(tokenizer(), r.stop, r.logprobs ? r.top_logprobs : -1,
                                     &num_active_jobs);
    job->received = received;
    job->received_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    job->streaming = r.stream;
    job->meta = ResponseMeta{kind, RandomId(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-"),
                             UnixSeconds(), r.model.empty() ? info().model_id : r.model};
    job->logprobs = r.logprobs;
    job->include_usage = r.include_usage;
    job->prompt = std::move(prompt->tokens);
    job->chat = std::move(prompt->starts);
    job->socket = FindConnectionSocket(req.remote_addr, req.remote_port, req.local_port);

    ServiceRequest sr;
    sr.request = std::move(gr);
    sr.on_event = [queue = job->queue](const TokenEvent& ev) { queue->Push(ev); };
    auto id = service->Submit(std::move(sr));
    if (!id.ok()) return SendStatus(res, id.status());
    job->id = *id;

    if (r.stream) return StartStream(res, job);

    while (!job->stream.finished()) {
      for (CompletionStream::Delta& d : Pump(*job, kPollInterval)) {
        for (LogprobEntry& e : d.logprobs) job->logprob_entries.push_back(std::move(e));
      }
    }
    ObserveDuration(*job);
    if (!job->stream.error().ok()) return SendStatus(res, job->stream.error());
    if (job->client_gone) {
      // Nobody reads this; httplib still wants a response. 499 (nginx's "client closed
      // request") keeps these apart from real client errors in the metrics.
      return SendError(res, MakeApiError(499, "the client closed the connection"));
    }
    SendJson(res, 200,
             ResponseJson(job->meta, job->stream.text(), job->stream.finish_reason(),
                          LogprobsJson(*job, job->logprob_entries), UsageFor(*job)));
  }

  void StartStream(httplib::Response& res, const std::shared_ptr<Job>& job) {
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, job](size_t /*offset*/, httplib::DataSink& sink) -> bool {
          std::string out;
          if (!job->sent_first) {
            job->sent_first = true;
            if (job->meta.kind == ApiKind::kChat) out += SseData(ChunkJson(job->meta, "", true, nullptr, nullptr));
          }
          for (CompletionStream::Delta& d : Pump(*job, kPollInterval)) {
            if (d.text.empty() && d.logprobs.empty()) continue;
            out += SseData(ChunkJson(job->meta, d.text, false, nullptr, LogprobsJson(*job, d.logprobs)));
          }
          const bool finished = job->stream.finished();
          if (finished && !job->client_gone) {
            if (!job->stream.error().ok()) {
              out += SseData(ApiErrorJson(ApiErrorFrom(job->stream.error())));
            } else {
              out += SseData(ChunkJson(job->meta, "", false, job->stream.finish_reason(), nullptr));
              if (job->include_usage) out += SseData(UsageChunkJson(job->meta, UsageFor(*job)));
            }
            out += SseDone();
          }
          if (job->client_gone) return false;
          if (!out.empty() && !sink.write(out.data(), out.size())) {
            ClientGone(*job);
            return false;
          }
          if (finished) {
            ObserveDuration(*job);
            sink.done();
          }
          return true;
        },
        [this, job](bool /*success*/) {
          // The response is gone: make sure the engine lets go of the request too.
          if (!job->stream.finished()) ClientGone(*job);
          ObserveDuration(*job);
        });
  }

  // ---- Read-only endpoints

  void HandleModels(const httplib::Request& req, httplib::Response& res) {
    if (!CheckApiKey(req, res)) return;
    json model{{"id", info().model_id},
               {"object", "model"},
               {"created", started_unix},
               {"owned_by", "prefixd"},
               {"meta",
                {{"path", info().model_path},
                 {"architecture", info().architecture},
                 {"context_length", info().context_length},
                 {"vocab_size", info().vocab_size},
                 {"block_size", info().block_size}}}};
    SendJson(res, 200, json{{"object", "list"}, {"data", json::array({model})}});
  }

  void HandleProps(httplib::Response& res) {
    const ServiceInfo& i = info();
    const ServiceStats s = service->stats();
    json j;
    j["model"] = {{"id", i.model_id},
                  {"path", i.model_path},
                  {"architecture", i.architecture},
                  {"context_length", i.context_length},
                  {"vocab_size", i.vocab_size}};
    j["backend"] = i.backend;
    j["chat_template"] = {{"format", chat_format.name()},
                          {"from_gguf", has_chat_template},
                          {"template", chat_format.chat_template().source()}};
    if (!chat_format.chat_template().fallback_reason().empty()) {
      j["chat_template"]["fallback_reason"] = chat_format.chat_template().fallback_reason();
    }
    j["kv"] = {{"block_size", i.block_size},
               {"dtype", i.kv_dtype},
               {"block_bytes", i.block_bytes},
               {"num_blocks", i.num_kv_blocks},
               {"free_blocks", s.pool_free_blocks}};
    json tiers = json::array({"pool"});
    if (i.host_cache_bytes > 0) tiers.push_back("host");
    if (!i.disk_cache_dir.empty()) tiers.push_back("disk");
    if (!i.remote_cache.empty()) tiers.push_back("remote");
    if (i.partial_max_entries > 0) tiers.push_back("partial");
    j["prefix_cache"] = {{"configured", i.prefix_cache},
                         {"hash", i.cache_hash},
                         {"enabled", CacheDisabledReason(i, s).empty()},
                         {"budget_bytes", i.cache_budget_bytes},
                         {"max_cached_blocks", s.cache.max_cached_blocks},
                         {"tiers", std::move(tiers)},
                         {"host_cache_bytes", i.host_cache_bytes},
                         {"disk_cache_dir", i.disk_cache_dir},
                         {"disk_cache_bytes", i.disk_cache_bytes},
                         {"disk_policy", i.disk_cache_dir.empty() ? std::string("none") : i.disk_prefix_cache},
                         {"remote_cache", i.remote_cache},
                         {"remote_cache_namespace", i.remote_cache_namespace},
                         {"partial_max_entries", i.partial_max_entries}};
    j["scheduler"] = {{"max_running", i.max_running},
                      {"max_batch_tokens", i.max_batch_tokens},
                      {"max_queue", i.max_queue}};
    j["server"] = {{"admin_api", !options.admin_key.empty()},
                   {"api_key_required", !options.api_key.empty()},
                   {"max_body_bytes", options.max_body_bytes},
                   {"http_threads", options.num_threads}};
    SendJson(res, 200, j);
  }

  void HandleCacheStats(const httplib::Request& req, httplib::Response& res) {
    if (!CheckApiKey(req, res)) return;
    const ServiceStats s = service->stats();
    const int64_t now = NowS();
    hit_window.Record(now, s.cache.hits, s.cache.misses);
    SendJson(res, 200, PrefixCacheStatsJson(info(), s, hit_window, now));
  }

  // The last requests, newest first, the time-to-first-token histogram and hits and misses
  // per 10 s over 15 minutes: what the dashboard shows beside the cache counters.
  void HandleRecentRequests(const httplib::Request& req, httplib::Response& res) {
    if (!CheckApiKey(req, res)) return;
    json requests = json::array();
    for (const RequestRecord& r : recent.Snapshot()) requests.push_back(RequestRecordJson(r));
    const ServiceStats s = service->stats();
    const int64_t now = NowS();
    hit_window.Record(now, s.cache.hits, s.cache.misses);
    SendJson(res, 200, json{{"capacity", recent.capacity()},
                            {"num_recorded", recent.num_added()},
                            {"requests", std::move(requests)},
                            {"time_to_first_token_seconds", HistogramJson(metrics.time_to_first_token)},
                            {"hit_history", HitHistoryJson(hit_window, now, 10, 90, s.cache.hits, s.cache.misses)}});
  }

  // The dashboard's files, embedded in the binary. Open like /metrics: the page holds no
  // data; what it fetches is authorized on its own.
  void HandleDashboard(const std::string& name, httplib::Response& res) {
    const DashboardAsset* a = FindDashboardAsset(name);
    if (a == nullptr) return SendError(res, MakeApiError(404, absl::StrCat("no dashboard file '", name, "'")));
    res.status = 200;
    res.set_header("Content-Security-Policy", std::string(kDashboardContentSecurityPolicy));
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Cache-Control", "no-cache");
    res.set_content(std::string(a->body), std::string(a->content_type));
  }

  void HandleMetrics(httplib::Response& res) {
    res.status = 200;
    res.set_content(PrometheusText(info(), service->stats(), metrics),
                    "text/plain; version=0.0.4; charset=utf-8");
  }

  // ---- Admin

  void HandleProbe(const httplib::Request& req, httplib::Response& res) {
    if (!CheckAdmin(req, res)) return;
    if (!CheckJsonBody(req, res)) return;
    // Prompts longer than the context can still be probed: no token-count limit here.
    auto parsed = ParseProbeRequest(req.body, RequestLimits{0, info().vocab_size});
    if (!parsed.ok()) return SendStatus(res, parsed.status());
    const OpenAiRequest& r = *parsed;
    json j;
    j["model_id"] = info().model_id;
    if (Status s = CheckModel(r.model); !s.ok()) {
      j["model_loaded"] = false;
      j["reason"] = absl::StrCat("the model '", r.model, "' is not loaded; this server serves '",
                                 info().model_id, "'");
      return SendJson(res, 200, j);
    }
    auto prompt = BuildPrompt(r);
    if (!prompt.ok()) return SendStatus(res, prompt.status());
    const int64_t total = static_cast<int64_t>(prompt->tokens.size());
    // Per tier, in lookup order; the tiers hold consecutive runs of the prompt, so the
    // resident prefix is their sum.
    const TierProbe p = service->ProbeTiers(r.cache_salt, prompt->tokens);
    const ServiceStats stats = service->stats();
    const int64_t resident = std::min(
        total, p.pool_tokens + p.host_tokens + p.disk_tokens + p.remote_tokens + p.partial_tokens);
    const int64_t bs = std::max(1, info().block_size);
    j["model_loaded"] = true;
    j["cache_enabled"] = CacheDisabledReason(info(), stats).empty();
    j["total_tokens"] = total;
    j["block_size"] = info().block_size;
    j["total_blocks"] = (total + bs - 1) / bs;
    j["resident_blocks"] = resident / bs;  // full blocks among the resident tokens
    j["resident_tokens"] = resident;
    j["cold_tokens"] = total - resident;
    json by_tier{{"pool", p.pool_tokens}};
    if (stats.tiers && stats.tiers->host_enabled) by_tier["host"] = p.host_tokens;
    if (stats.tiers && stats.tiers->disk_enabled) by_tier["disk"] = p.disk_tokens;
    if (stats.tiers && stats.tiers->remote_enabled) by_tier["remote"] = p.remote_tokens;
    if (stats.tiers && stats.tiers->partial.max_entries > 0) by_tier["partial"] = p.partial_tokens;
    j["ranges"] = TierRanges(by_tier, total);
    j["by_tier"] = std::move(by_tier);
    if (prompt->starts) {
      j["num_messages"] = r.messages.size();
      j["diverges_in_message"] = resident < total ? json(prompt->starts->MessageOf(resident)) : json(nullptr);
      j["message_starts"] = prompt->starts->message_starts;
      j["generation_start"] = prompt->starts->generation_start;
    }
    if (r.probe_tokens) {
      json pieces = json::array();
      for (int32_t t : prompt->tokens) pieces.push_back(tokenizer().Piece(t));
      j["tokens"] = std::move(pieces);
    }
    SendJson(res, 200, j);
  }

  // The token range each tier serves, in lookup order, empty tiers left out:
  //   by_tier {pool: 32, host: 16, disk: 0}  ->  [{pool, 0, 32}, {host, 32, 48}]
  // The tiers hold consecutive runs of the prompt (see HandleProbe); clipped to `total`.
  static json TierRanges(const json& by_tier, int64_t total) {
    json ranges = json::array();
    int64_t at = 0;
    for (const char* tier : {"pool", "host", "disk", "remote", "partial"}) {
      if (!by_tier.contains(tier)) continue;
      const int64_t end = std::min(total, at + by_tier[tier].get<int64_t>());
      if (end > at) ranges.push_back(json{{"tier", tier}, {"start", at}, {"end", end}});
      at = std::max(at, end);
    }
    return ranges;
  }

  void HandleClear(const httplib::Request& req, httplib::Response& res) {
    if (!CheckAdmin(req, res)) return;
    if (!CheckJsonBody(req, res)) return;
    std::string tier = "all";
    if (!req.body.empty()) {
      auto body = ParseJsonObject(req.body);
      if (!body.ok()) return SendStatus(res, body.status());
      if (auto it = body->find("tier"); it != body->end() && !it->is_null()) {
        if (!it->is_string()) return SendStatus(res, InvalidArgumentFor("tier", "'tier' must be a string"));
        tier = it->get<std::string>();
      }
    }
    if (tier != "all" && tier != "pool" && tier != "host" && tier != "disk" && tier != "remote" &&
        tier != "partial") {
      return SendStatus(res, InvalidArgumentFor("tier", absl::StrCat("'tier' is '", tier,
                                                                      "'; it must be pool, host, disk, remote, partial or all")));
    }
    int freed = 0;
    if (tier == "pool" || tier == "all") freed = service->ClearCache();
    if (tier != "pool") {
      if (Status s = service->ClearCacheTier(tier); !s.ok()) {
        return SendStatus(res, s.code() == absl::StatusCode::kInvalidArgument
                                   ? InvalidArgumentFor("tier", std::string(s.message()))
                                   : s);
      }
    }
    SendJson(res, 200, json{{"cleared", tier}, {"freed_blocks", freed}});
  }

  void HandleKillSwitch(const httplib::Request& req, httplib::Response& res, bool enable) {
    if (!CheckAdmin(req, res)) return;
    if (!CheckJsonBody(req, res)) return;
    if (enable && !info().prefix_cache) {
      return SendError(res, MakeApiError(400, "the prefix cache is off by configuration "
                                              "(--prefix-cache off); restart with --prefix-cache on"));
    }
    service->SetCacheEnabled(enable);
    const ServiceStats s = service->stats();
    json j{{"enabled", CacheDisabledReason(info(), s).empty()}};
    if (const std::string reason = CacheDisabledReason(info(), s); !reason.empty()) j["reason"] = reason;
    SendJson(res, 200, j);
  }

  // llama.cpp's POST /tokenize: {"content", "add_special" (BOS, default false)} -> {"tokens"}.
  void HandleTokenize(const httplib::Request& req, httplib::Response& res) {
    if (!CheckApiKey(req, res)) return;
    if (!CheckJsonBody(req, res)) return;
    auto body = ParseJsonObject(req.body);
    if (!body.ok()) return SendStatus(res, body.status());
    auto content = body->find("content");
    if (content == body->end() || !content->is_string()) {
      return SendStatus(res, InvalidArgumentFor("content", "'content' must be a string"));
    }
    EncodeOptions o = PromptEncodeOptions();
    o.add_bos = false;
    if (auto add = body->find("add_special"); add != body->end() && !add->is_null()) {
      if (!add->is_boolean()) return SendStatus(res, InvalidArgumentFor("add_special", "'add_special' must be a boolean"));
      if (add->get<bool>()) o.add_bos.reset();  // the vocabulary's own BOS rule, as prompts
    }
    // llama.cpp's parse_special (default true): false keeps special-token text as plain text.
    if (auto parse = body->find("parse_special"); parse != body->end() && !parse->is_null()) {
      if (!parse->is_boolean()) {
        return SendStatus(res, InvalidArgumentFor("parse_special", "'parse_special' must be a boolean"));
      }
      o.parse_special = parse->get<bool>();
    }
    SendJson(res, 200, json{{"tokens", tokenizer().Encode(content->get<std::string>(), o)}});
  }

  // llama.cpp's POST /detokenize: {"tokens"} -> {"content"}.
  void HandleDetokenize(const httplib::Request& req, httplib::Response& res) {
    if (!CheckApiKey(req, res)) return;
    if (!CheckJsonBody(req, res)) return;
    auto body = ParseJsonObject(req.body);
    if (!body.ok()) return SendStatus(res, body.status());
    auto tokens = body->find("tokens");
    if (tokens == body->end() || !tokens->is_array()) {
      return SendStatus(res, InvalidArgumentFor("tokens", "'tokens' must be an array of token ids"));
    }
    std::string text;
    for (size_t i = 0; i < tokens->size(); ++i) {
      const json& t = (*tokens)[i];
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= info().vocab_size) {
        return SendStatus(res, InvalidArgumentFor(absl::StrCat("tokens[", i, "]"),
                                                  absl::StrCat("'tokens[", i, "]' is not a token id of this vocabulary")));
      }
      text += tokenizer().Piece(static_cast<int32_t>(t.get<int64_t>()));
    }
    SendJson(res, 200, json{{"content", text}});
  }

  void Routes() {
    Route("POST", "/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      HandleGenerate(req, res, ApiKind::kCompletion);
    });
    Route("POST", "/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      HandleGenerate(req, res, ApiKind::kChat);
    });
    Route("GET", "/v1/models", [this](const httplib::Request& req, httplib::Response& res) { HandleModels(req, res); });
    Route("GET", "/health", [this](const httplib::Request&, httplib::Response& res) {
      SendJson(res, 200, json{{"status", "ok"}});
    });
    Route("GET", "/props", [this](const httplib::Request&, httplib::Response& res) { HandleProps(res); });
    Route("GET", "/v1/prefix_cache_stats",
          [this](const httplib::Request& req, httplib::Response& res) { HandleCacheStats(req, res); });
    Route("POST", "/tokenize", [this](const httplib::Request& req, httplib::Response& res) { HandleTokenize(req, res); });
    Route("POST", "/detokenize",
          [this](const httplib::Request& req, httplib::Response& res) { HandleDetokenize(req, res); });
    Route("GET", "/metrics", [this](const httplib::Request&, httplib::Response& res) { HandleMetrics(res); });
    Route("GET", "/v1/recent_requests",
          [this](const httplib::Request& req, httplib::Response& res) { HandleRecentRequests(req, res); });
    Route("GET", "/dashboard", [this](const httplib::Request&, httplib::Response& res) {
      HandleDashboard("index.html", res);
    });
    Route("GET", "/dashboard/", [this](const httplib::Request&, httplib::Response& res) {
      HandleDashboard("index.html", res);
    });
    // File names only (no '/'): nothing outside the embedded set can be named.
    Route("GET", R"(/dashboard/([A-Za-z0-9_.-]+))", [this](const httplib::Request& req, httplib::Response& res) {
      HandleDashboard(req.matches[1].str(), res);
    });
    Route("POST", "/admin/api/cache/probe",
          [this](const httplib::Request& req, httplib::Response& res) { HandleProbe(req, res); });
    Route("POST", "/admin/api/cache/clear",
          [this](const httplib::Request& req, httplib::Response& res) { HandleClear(req, res); });
    Route("POST", "/admin/api/cache/disable",
          [this](const httplib::Request& req, httplib::Response& res) { HandleKillSwitch(req, res, false); });
    Route("POST", "/admin/api/cache/enable",
          [this](const httplib::Request& req, httplib::Response& res) { HandleKillSwitch(req, res, true); });
    // Any other admin path: the same 403/401 as the real ones, then 404.
    for (const char* method : {"GET", "POST"}) {
      Route(method, "/admin/.*", [this](const httplib::Request& req, httplib::Response& res) {
        if (!CheckAdmin(req, res)) return;
        SendError(res, MakeApiError(404, absl::StrCat("no admin route ", req.method, " ", req.path)));
      });
    }

    // A POST with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 6.3),
    // but httplib would read until the client closes (curl -X POST waits 5 s, then 400).
    // The admin switches take no body: they are answered here, before httplib reads;
    // other POST routes need a body and get 411 at once.
    server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (req.method != "POST" || req.has_header("Content-Length") || req.has_header("Transfer-Encoding")) {
        return httplib::Server::HandlerResponse::Unhandled;
      }
      if (req.path == "/admin/api/cache/disable" || req.path == "/admin/api/cache/enable") {
        HandleKillSwitch(req, res, req.path == "/admin/api/cache/enable");
      } else if (req.path == "/admin/api/cache/clear") {
        HandleClear(req, res);
      } else {
        SendError(res, MakeApiError(411, "this POST has no Content-Length; send the JSON body with one"));
      }
      metrics.CountResponse(res.status == 411 ? std::string("other") : req.path, res.status);
      return httplib::Server::HandlerResponse::Handled;
    });

    // Errors httplib produces itself (404 for unknown routes, 413 for big bodies, 400 for
    // unparsable requests) get an error object too; bodies our handlers wrote stay.
    server.set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
      std::string message;
      const std::string type = req.get_header_value("Content-Type");
      if (req.method == "POST" && !type.empty() && !IsJsonContentType(type) &&
          (res.status == 400 || res.status == 413) &&
          std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10) <= options.max_body_bytes) {
        // httplib's own reading of form bodies (an 8 KiB limit, multipart parsing) failed:
        // the body is not too big or malformed, it is not JSON.
        res.status = 415;
      }
      switch (res.status) {
        case 404: message = absl::StrCat("no route for ", req.method, " ", req.path); break;
        case 413:
          message = absl::StrCat("the request body is larger than ", options.max_body_bytes, " bytes");
          break;
        case 415:
          message = absl::StrCat("the request body must be JSON, sent with 'Content-Type: application/json'; got '",
                                 type, "'");
          break;
        default: message = absl::StrCat("HTTP ", res.status); break;
      }
      SendError(res, MakeApiError(res.status, message));
      metrics.CountResponse("other", res.status);
      return httplib::Server::HandlerResponse::Handled;
    }));
    server.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      SendError(res, MakeApiError(500, "internal error"));
    });
  }
};

HttpServer::HttpServer(EngineService* service, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  Impl& m = *impl_;
  const int threads = std::max(1, m.options.num_threads);
  m.server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  m.server.set_payload_max_length(m.options.max_body_bytes);
  m.server.set_tcp_nodelay(true);
  // SO_REUSEADDR (restart while old connections linger) but not cpp-httplib's default
  // SO_REUSEPORT, with which a second server on a port in use starts silently and the two
  // split the requests between them.
  m.server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof(yes));
  });
  m.Routes();
}

HttpServer::~HttpServer() {
  Stop();
  if (impl_->sampler.joinable()) impl_->sampler.join();
}

StatusOr<int> HttpServer::Bind() {
  Impl& m = *impl_;
  int port = m.options.port;
  if (port == 0) {
    port = m.server.bind_to_any_port(m.options.host);
    if (port < 0) port = 0;
  } else if (!m.server.bind_to_port(m.options.host, port)) {
    port = 0;
  }
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", m.options.host, ":", m.options.port,
                                               " (in use, or not an address of this machine)"));
  }
  m.bound_port.store(port);
  return port;
}

Status HttpServer::Serve() {
  Impl& m = *impl_;
  m.sampler = std::thread([&m] {
    std::unique_lock<std::mutex> lock(m.sampler_mu);
    while (!m.stopping.load()) {
      m.SampleHitWindow();
      m.sampler_cv.wait_for(lock, std::chrono::seconds(1));
    }
  });
  const bool ok = m.server.listen_after_bind();
  Stop();
  if (m.sampler.joinable()) m.sampler.join();
  if (!ok && !m.stopping.load()) return absl::InternalError("the HTTP server stopped with an error");
  return absl::OkStatus();
}

void HttpServer::Stop() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lock(m.sampler_mu);
    m.stopping.store(true);
  }
  m.sampler_cv.notify_all();
  // Requests still running are cancelled now (Pump sees `stopping`); give them a moment to
  // send their last chunk before the connections close.
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(5);
  while (m.num_active_jobs.load() > 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  m.server.stop();
  if (m.bound_port.load() > 0) ShutdownConnections(m.bound_port.load());
}

}  // namespace prefixd
