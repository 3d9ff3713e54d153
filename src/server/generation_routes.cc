#include "server/generation_routes.h"

#include <algorithm>
#include <optional>

#include "server/api_error.h"
#include "server/completion_stream.h"
#include "server/forced_call.h"
#include "server/openai_response.h"
#include "server/request_headers.h"
#include "server/response_writer.h"

namespace prefixd {

namespace {

using json = nlohmann::json;

double SecondsBetween(ServerClock::time_point a, ServerClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

// One generation request, from its submission to its last byte. The engine thread calls
// OnEvent; an I/O thread calls OnClientGone; both take `mu`, which nothing else shares and
// nobody holds while waiting on anything.
struct GenerationJob : std::enable_shared_from_this<GenerationJob> {
  GenerationJob(GenerationRoutes* r, std::shared_ptr<Responder> o, std::unique_ptr<ResponseWriter> w,
                std::vector<std::string> stops, int top_logprobs)
      : routes(r),
        ctx(r->ctx_),
        out(std::move(o)),
        writer(std::move(w)),
        stream(ctx->tokenizer(), std::move(stops), top_logprobs) {
    routes->num_active_.fetch_add(1);
  }

  GenerationRoutes* routes;
  ServerContext* ctx;
  std::shared_ptr<Responder> out;
  std::unique_ptr<ResponseWriter> writer;  // the answer's dialect

  std::mutex mu;
  SequenceId id;
  bool submitted = false;
  ApiKind kind = ApiKind::kChat;
  bool streaming = false;
  bool logprobs = false;
  std::vector<int32_t> prompt;
  std::optional<ChatTokenStarts> chat;  // chat: where each message starts in `prompt`
  // usage.prefix_cache.retention (null: nothing asked), and where the cache_control
  // breakpoints end (Anthropic's usage).
  json retention_usage;
  CacheWriteBounds cache_write;
  ReplyReuse replies;                   // chat: generated replies the prompt took the ids of
  std::string cache_salt;
  std::string prompt_tail;              // chat: the generation prompt (the reply follows it)
  CompletionStream stream;
  ServerClock::time_point received;
  int64_t received_unix_ms = 0;
  std::optional<ServerClock::time_point> first_token_at;
  std::optional<ServerClock::time_point> last_token_at;
  bool cancelled = false;    // Cancel was sent (stop string, client gone, shutdown)
  bool client_gone = false;
  bool done = false;         // the answer is written (queued) and the job forgotten
  bool prefilled = false;    // streaming: the writer was told the prompt is done
  std::vector<LogprobEntry> logprob_entries;  // non-streaming: all of them

  // REQUIRES: mu held. Marks the request cancelled and returns its id for the caller to
  // pass to EngineService::Cancel once it has let go of `mu`: at shutdown the engine calls
  // back with its own lock held, so calling into it under `mu` could deadlock.
  std::optional<SequenceId> Cancel() {
    if (cancelled || !submitted || done) return std::nullopt;
    cancelled = true;
    return id;
  }

  void SendCancel(std::optional<SequenceId> to_cancel) {
    if (to_cancel) ctx->service->Cancel(*to_cancel);
  }

  void CancelFromOutside() {
    std::optional<SequenceId> to_cancel;
    {
      std::lock_guard<std::mutex> lock(mu);
      to_cancel = Cancel();
    }
    SendCancel(to_cancel);
  }

  void OnClientGone() {
    std::optional<SequenceId> to_cancel;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (done || client_gone) return;
      client_gone = true;
      ctx->metrics.client_disconnects.fetch_add(1, std::memory_order_relaxed);
      to_cancel = Cancel();
    }
    SendCancel(to_cancel);
  }

  json UsageFor() const {
    RequestUsage u = stream.usage();
    u.prompt_tokens = static_cast<int32_t>(prompt.size());
    std::optional<int64_t> message;
    if (chat) {
      message = -1;
      // The assistant header after the last message counts as message n.
      if (u.diverged_at_token >= 0) message = chat->MessageOf(u.diverged_at_token);
    }
    json usage = UsageJson(u, stream.num_tokens(), message);
    if (!retention_usage.is_null()) usage["prefix_cache"]["retention"] = retention_usage;
    if (chat && ctx->replies) usage["prefix_cache"]["reply_tokens"] = ReplyReuseJson(replies);
    return usage;
  }

  json LogprobsJson(const std::vector<LogprobEntry>& entries) const {
    if (!logprobs) return nullptr;
    return kind == ApiKind::kChat ? ChatLogprobsJson(entries) : CompletionLogprobsJson(entries);
  }

  GenerationEnd End() const {
    GenerationEnd e;
    e.finish = stream.finish();
    e.stop_sequence = stream.matched_stop();
    e.usage = stream.usage();
    e.usage.prompt_tokens = static_cast<int32_t>(prompt.size());
    e.completion_tokens = stream.num_tokens();
    e.usage_json = UsageFor();
    e.cache_enabled = ctx->service->stats().cache.enabled;
    e.cache_write = cache_write;
    return e;
  }

  // The prompt's part of the usage, as the first token's event carries it.
  GenerationEnd PromptEnd(const RequestUsage& usage) const {
    GenerationEnd e;
    e.usage = usage;
    e.usage.prompt_tokens = static_cast<int32_t>(prompt.size());
    e.cache_enabled = ctx->service->stats().cache.enabled;
    e.cache_write = cache_write;
    return e;
  }

  // The engine thread, one event at a time.
  void OnEvent(const TokenEvent& ev) {
    std::optional<SequenceId> to_cancel;
    {
      std::lock_guard<std::mutex> lock(mu);
      to_cancel = OnEventLocked(ev);
    }
    SendCancel(to_cancel);
  }

  // REQUIRES: mu held. Returns the id to cancel (a stop string matched).
  std::optional<SequenceId> OnEventLocked(const TokenEvent& ev) {
    const ServerClock::time_point now = ServerClock::now();
    std::optional<SequenceId> to_cancel;
    if (done) return to_cancel;
    if (ev.token >= 0 && !stream.stop_matched()) {
      if (!last_token_at) {
        first_token_at = now;
        ctx->metrics.time_to_first_token.Observe(SecondsBetween(received, now));
      } else {
        ctx->metrics.inter_token_latency.Observe(SecondsBetween(*last_token_at, now));
      }
      last_token_at = now;
    }
    if (streaming && !prefilled && ev.token >= 0) {
      // The first token: what the cache gave the prompt is known (some dialects say so first).
      prefilled = true;
      std::string bytes = writer->StreamPrefilled(PromptEnd(ev.usage));
      if (!client_gone && !bytes.empty()) out->Write(std::move(bytes));
    }
    CompletionStream::Delta d = stream.Consume(ev);
    if (d.stop_matched) {
      ctx->metrics.stop_string_matches.fetch_add(1, std::memory_order_relaxed);
      to_cancel = Cancel();
    }
    if (streaming) {
      if (!client_gone && (!d.text.empty() || !d.logprobs.empty())) {
        std::string bytes = writer->StreamText(d.text, LogprobsJson(d.logprobs));
        if (!bytes.empty()) out->Write(std::move(bytes));
      }
    } else {
      for (LogprobEntry& e : d.logprobs) logprob_entries.push_back(std::move(e));
    }
    if (stream.finished()) {
      Finish();
      to_cancel.reset();  // it ended already
    }
    return to_cancel;
  }

  // REQUIRES: mu held; the stream finished.
  void Finish() {
    done = true;
    // Forced calls are whole when the constraint or the model's end token (allowed only between
    // whole calls) ended the generation (kEos) and nothing cut it.
    writer->SetForcedCallComplete(stream.finish() == FinishReason::kEos && !stream.stop_matched());
    Observe();
    if (streaming) {
      if (!client_gone) {
        std::string last = stream.error().ok() ? writer->StreamEnd(End()) : writer->StreamError(ApiErrorFrom(stream.error()));
        RecordReply();
        out->Write(std::move(last));
      }
      out->Finish();
    } else if (client_gone) {
      // Nobody reads it; 499 (nginx's "client closed request") keeps these apart in the metrics.
      out->Send(ErrorResponse(MakeApiError(499, "the client closed the connection"), writer->dialect()));
    } else if (!stream.error().ok()) {
      out->Send(StatusResponse(stream.error(), writer->dialect()));
    } else {
      HttpResponse whole = writer->Whole(stream.text(), LogprobsJson(logprob_entries), End());
      RecordReply();
      out->Send(std::move(whole));
    }
    const int status = client_gone ? 499 : stream.error().ok() ? 200 : HttpStatusFor(stream.error());
    ctx->metrics.CountResponse(writer->route(), status);
    routes->Forget(this);
    routes->num_active_.fetch_sub(1);
  }

  // REQUIRES: mu held; the answer is made (its tool call ids given) and not sent yet, so that a
  // client that sends the reply straight back finds it recorded. A chat reply goes into the
  // record of replies under what the client got: the text outside calls and the calls' ids.
  void RecordReply() {
    if (!chat || !stream.error().ok()) return;
    std::optional<std::string> key = GeneratedReplyKey(writer->tool_call_syntax(), stream.text(), writer->call_ids());
    if (!key) return;  // not what the client got
    ctx->RecordReply(cache_salt, *std::move(key), prompt_tail, stream.text(), stream.generated_tokens());
  }

  // Records the request's duration and adds it to the recent requests.
  void Observe() {
    const ServerClock::time_point now = ServerClock::now();
    ctx->metrics.request_duration.Observe(SecondsBetween(received, now));
    RequestRecord r;
    r.id = writer->id();
    r.kind = writer->kind();
    r.stream = streaming;
    r.received_unix_ms = received_unix_ms;
    if (first_token_at) r.ttft_ms = 1000 * SecondsBetween(received, *first_token_at);
    r.duration_ms = 1000 * SecondsBetween(received, now);
    if (client_gone) {
      r.outcome = "client_gone";
    } else if (!stream.error().ok()) {
      r.outcome = "error";
    } else {
      r.outcome = stream.finished() ? stream.finish_reason() : "abort";
    }
    r.usage = UsageFor();
    ctx->recent.Add(std::move(r));
  }
};

void GenerationRoutes::Forget(GenerationJob* job) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.erase(job);
}

void GenerationRoutes::CancelAll() {
  std::vector<std::shared_ptr<GenerationJob>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (GenerationJob* j : jobs_) {
      if (auto p = j->weak_from_this().lock()) all.push_back(std::move(p));
    }
  }
  for (auto& j : all) j->CancelFromOutside();
}

void GenerationRoutes::Handle(const HttpRequest& req, const std::shared_ptr<Responder>& out, ApiKind kind) {
  const ServerClock::time_point received = ServerClock::now();
  auto parsed = kind == ApiKind::kChat ? ParseChatRequest(req.body, ctx_->limits())
                                       : ParseCompletionRequest(req.body, ctx_->limits());
  ResponseMeta meta{kind, RandomId(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-"), UnixSeconds(),
                    parsed.ok() && !parsed->model.empty() ? parsed->model : ctx_->info().model_id};
  const bool include_usage = parsed.ok() && parsed->include_usage;
  Start(received, parsed, std::make_unique<OpenAiWriter>(std::move(meta), include_usage), out);
}

void GenerationRoutes::Start(ServerClock::time_point received, StatusOr<OpenAiRequest>& parsed,
                             std::unique_ptr<ResponseWriter> writer, const std::shared_ptr<Responder>& out) {
  const ApiDialect dialect = writer->dialect();
  auto fail = [&](const Status& s) {
    HttpResponse r = StatusResponse(s, dialect);
    ctx_->metrics.CountResponse(writer->route(), r.status);
    out->Send(std::move(r));
  };
  if (ctx_->stopping.load()) return fail(absl::UnavailableError("the server is shutting down"));
  if (!parsed.ok()) return fail(parsed.status());
  OpenAiRequest& r = *parsed;
  const ApiKind kind = r.kind;
  if (Status s = ctx_->CheckModel(r.model); !s.ok()) return fail(s);
  auto prompt = ctx_->BuildPrompt(r);
  if (!prompt.ok()) return fail(prompt.status());
  if (Status s = ctx_->CheckFits(r, *prompt); !s.ok()) return fail(s);

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
  gr.sampling.seed = r.seed ? *r.seed : RandomU64();
  const int32_t room = ctx_->info().context_length - static_cast<int32_t>(prompt->tokens.size());
  gr.max_tokens = r.max_tokens ? *r.max_tokens : (kind == ApiKind::kCompletion ? std::min(16, room) : room);
  gr.ignore_eos = r.ignore_eos;
  gr.scope = r.prefix_cache.scope;
  // The scope policy aligns what the lower tiers keep to message boundaries.
  if (prompt->starts) gr.message_starts = prompt->starts->message_starts;
  const ResolvedRetention retention =
      ResolveRetention(r.retention, static_cast<int64_t>(prompt->tokens.size()), prompt->breakpoint_ends);
  gr.retention = retention.ranges;
  if (r.retention.prompt_cache_key) ctx_->metrics.prompt_cache_key_requests.fetch_add(1);

  // Calls are parsed out where the request offered tools and did not say none; a forced call
  // constrains generation to calls, without stop strings (forced_call.h), and its text is held
  // until it is whole.
  auto forced = PrepareForcedCall(r, ctx_->tool_call_syntax, [this] { return ctx_->token_texts(); },
                                  ctx_->tokenizer().eos_id());
  if (!forced.ok()) return fail(forced.status());
  gr.constraint = forced->constraint;
  const bool parse_calls = r.tool_choice != ToolChoice::kNone && r.tools.is_array() && !r.tools.empty();
  writer->EnableToolCalls(parse_calls ? ctx_->tool_call_syntax : ToolCallSyntax::kNone);
  if (gr.constraint) writer->HoldForForcedCall();
  const std::string route = writer->route();
  auto job = std::make_shared<GenerationJob>(this, out, std::move(writer), std::move(forced->stops),
                                             r.logprobs ? r.top_logprobs : -1);
  std::optional<SequenceId> to_cancel;
  std::unique_lock<std::mutex> lock(job->mu);  // the engine's first event waits for the set-up
  job->received = received;
  job->received_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  job->streaming = r.stream;
  job->kind = kind;
  job->logprobs = r.logprobs;
  const int32_t num_prompt = static_cast<int32_t>(prompt->tokens.size());
  job->prompt = std::move(prompt->tokens);
  job->chat = std::move(prompt->starts);
  job->retention_usage = RetentionUsageJson(r.retention, retention);
  job->cache_write = CacheWriteBounds{retention.cache_write_end, retention.cache_write_end_1h};
  job->replies = prompt->replies;
  job->cache_salt = r.cache_salt;
  if (prompt->chat) job->prompt_tail = prompt->chat->text.substr(std::min(prompt->chat->generation_offset, prompt->chat->text.size()));

  ServiceRequest sr;
  sr.request = std::move(gr);
  sr.on_event = [job](const TokenEvent& ev) { job->OnEvent(ev); };
  auto id = ctx_->service->Submit(std::move(sr));
  if (!id.ok()) {
    job->done = true;
    num_active_.fetch_sub(1);
    HttpResponse refused = StatusResponse(id.status(), dialect);
    ctx_->metrics.CountResponse(route, refused.status);
    return out->Send(std::move(refused));
  }
  job->id = *id;
  job->submitted = true;
  {
    std::lock_guard<std::mutex> jobs_lock(mu_);
    jobs_.insert(job.get());
  }
  if (ctx_->stopping.load()) to_cancel = job->Cancel();
  if (r.stream) {
    HttpResponse head;
    head.content_type = "text/event-stream";
    head.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};
    head.body = job->writer->StreamStart(num_prompt);
    out->StartStream(std::move(head));
  }
  out->OnClientGone([weak = std::weak_ptr<GenerationJob>(job)] {
    if (auto j = weak.lock()) j->OnClientGone();
  });
  lock.unlock();
  job->SendCancel(to_cancel);
}

}  // namespace prefixd
