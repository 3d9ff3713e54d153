// ServerContext: what every route of the HTTP server shares: the EngineService, the options,
// the chat format, metrics and recent requests, authorization, and building a prompt the
// way generation and the probe both do. The routes (generation_routes.h, admin_routes.h,
// read_only_routes.h) take it by pointer; HttpServer owns it.
//
// Thread safety: the members are immutable after construction or thread-safe themselves
// (metrics and counters are atomics; RecentRequests and HitRateWindow lock); every method
// may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/engine_service.h"
#include "engine/token_constraint.h"
#include "server/api_error.h"
#include "server/chat_format.h"
#include "server/http_message.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/recent_requests.h"
#include "server/reply_prompt.h"
#include "server/reply_record.h"
#include "server/tool_call_parser.h"

namespace prefixd {

using ServerClock = std::chrono::steady_clock;

struct ServerContext {
  ServerContext(EngineService* s, HttpServerOptions o);

  EngineService* service;
  HttpServerOptions options;
  ChatFormat chat_format;
  bool has_chat_template;
  ToolCallSyntax tool_call_syntax;  // how the chat template's model writes tool calls
  // Every token's text, once per model, for forced tool calls' constraints (forced_call.h);
  // built on first use (a model served without one never pays for it).
  std::shared_ptr<const TokenTexts> token_texts();
  int64_t started_unix;
  ServerClock::time_point started;
  ServerMetrics metrics;
  HitRateWindow hit_window;
  RecentRequests recent;
  // The replies generated for chats, by salt and text; null with --reuse-reply-tokens off.
  std::unique_ptr<ReplyRecord> replies;
  std::atomic<bool> stopping{false};
  std::once_flag token_texts_once;
  std::shared_ptr<const TokenTexts> token_texts_;  // set once, under token_texts_once

  const Tokenizer& tokenizer() const { return service->tokenizer(); }
  const ServiceInfo& info() const { return service->info(); }
  RequestLimits limits() const { return RequestLimits{info().context_length, info().vocab_size}; }
  int64_t NowS() const;
  void SampleHitWindow();

  // nullopt when the request may go on; else the 401 (or 403: admin API disabled) to send.
  // The API key comes as 'Authorization: Bearer KEY' or (Anthropic's clients) 'x-api-key: KEY'.
  std::optional<HttpResponse> CheckApiKey(const HttpRequest& req,
                                          ApiDialect dialect = ApiDialect::kOpenAi) const;
  std::optional<HttpResponse> CheckAdmin(const HttpRequest& req) const;
  bool HasApiKey(const HttpRequest& req) const;

  // "" and the loaded model's file name, stem or path are accepted.
  Status CheckModel(const std::string& model) const;

  struct Prompt {
    std::vector<int32_t> tokens;
    std::optional<RenderedChat> chat;
    std::optional<ChatTokenStarts> starts;  // chat: from this one render and encoding
    ReplyReuse replies;  // chat: the generated replies whose ids the prompt took
    // chat: where each cache_control breakpoint's block ends, in tokens (cache_breakpoints.h)
    std::vector<int64_t> breakpoint_ends;
  };
  // The prompt tokens exactly as generation and the probe both use them: chat messages
  // rendered with the model's format, text encoded with the vocabulary's BOS handling (with
  // the generated ids of replies sent back, unless --reuse-reply-tokens off), token ids as
  // given. `touch_replies`: the replies used count as recently used (false for the probe
  // and count_tokens, which only observe).
  StatusOr<Prompt> BuildPrompt(const OpenAiRequest& r, bool touch_replies = true) const;
  // Records a chat reply, with the ids generated for it, for later prompts that send it back:
  // `key` is what the client got (ReplyKey), `text` everything generated, `prompt_tail` its
  // prompt's generation prompt. No-op when the feature is off.
  void RecordReply(const std::string& cache_salt, std::string key, std::string_view prompt_tail,
                   const std::string& text, std::span<const int32_t> generated) const;
  Status CheckFits(const OpenAiRequest& r, const Prompt& p) const;
};

HttpResponse JsonResponse(int status, const nlohmann::json& body);
HttpResponse ErrorResponse(const ApiError& error, ApiDialect dialect = ApiDialect::kOpenAi);
HttpResponse StatusResponse(const Status& status, ApiDialect dialect = ApiDialect::kOpenAi);

int64_t UnixSeconds();
uint64_t RandomU64();
// prefix + 24 random hex digits.
std::string RandomId(const char* prefix);

}  // namespace prefixd
