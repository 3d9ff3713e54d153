#include "server/server_context.h"

#include <random>

#include "server/cache_breakpoints.h"
#include "server/openai_response.h"
#include "server/request_headers.h"

namespace prefixd {

namespace {

using json = nlohmann::json;

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

std::string ChatTemplateSource(const EngineService& s) {
  auto t = s.model().gguf().GetString("tokenizer.chat_template");
  return t.ok() ? *t : std::string();
}

}  // namespace

ServerContext::ServerContext(EngineService* s, HttpServerOptions o)
    : service(s),
      options(std::move(o)),
      chat_format(ChatTemplateSource(*s), s->tokenizer().vocab()),
      has_chat_template(!ChatTemplateSource(*s).empty()),
      tool_call_syntax(ToolCallSyntaxOf(chat_format.chat_template().source())),
      started_unix(UnixSeconds()),
      started(ServerClock::now()) {
  if (options.reuse_reply_tokens) {
    replies = std::make_unique<ReplyRecord>(
        ReplyRecord::Options{options.reply_record_max_bytes, options.reply_record_max_entries});
  }
}

std::shared_ptr<const TokenTexts> ServerContext::token_texts() {
  std::call_once(token_texts_once, [this] { token_texts_ = std::make_shared<const TokenTexts>(tokenizer()); });
  return token_texts_;
}

int64_t ServerContext::NowS() const {
  return std::chrono::duration_cast<std::chrono::seconds>(ServerClock::now() - started).count();
}

void ServerContext::SampleHitWindow() {
  const ServiceStats s = service->stats();
  hit_window.Record(NowS(), s.cache.hits, s.cache.misses);
}

bool ServerContext::HasApiKey(const HttpRequest& req) const {
  if (options.api_key.empty()) return true;
  const std::string bearer = BearerTokenOf(req.Header("Authorization"));
  return ConstantTimeEquals(bearer.empty() ? req.Header("x-api-key") : bearer, options.api_key);
}

std::optional<HttpResponse> ServerContext::CheckApiKey(const HttpRequest& req, ApiDialect dialect) const {
  if (HasApiKey(req)) return std::nullopt;
  return ErrorResponse(MakeApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY' (or "
                                         "'x-api-key: KEY') with the key the server was started with (--api-key)"),
                       dialect);
}

std::optional<HttpResponse> ServerContext::CheckAdmin(const HttpRequest& req) const {
  if (options.admin_key.empty()) {
    return ErrorResponse(MakeApiError(403,
                                      "the admin API is disabled: start prefixd serve with --admin-key KEY "
                                      "(or the environment variable PREFIXD_ADMIN_KEY) to enable it"));
  }
  if (ConstantTimeEquals(BearerTokenOf(req.Header("Authorization")), options.admin_key)) return std::nullopt;
  return ErrorResponse(MakeApiError(401, "missing or wrong admin key: send 'Authorization: Bearer "
                                         "ADMIN_KEY' with the server's --admin-key"));
}

Status ServerContext::CheckModel(const std::string& model) const {
  if (model.empty() || model == info().model_id || model == info().model_path) return absl::OkStatus();
  const std::string& id = info().model_id;
  const size_t dot = id.rfind('.');
  if (dot != std::string::npos && model == id.substr(0, dot)) return absl::OkStatus();
  return InvalidArgumentFor("model", absl::StrCat("the model '", model, "' is not served here; this server serves '",
                                                  id, "' (GET /v1/models)"));
}

StatusOr<ServerContext::Prompt> ServerContext::BuildPrompt(const OpenAiRequest& r, bool touch_replies) const {
  Prompt p;
  if (r.kind == ApiKind::kChat) {
    auto chat = chat_format.Render(r.messages, r.tools, r.chat_template_kwargs, BreakpointBlocks(chat_format, r));
    if (!chat.ok()) return InvalidArgumentFor("messages", std::string(chat.status().message()));
    p.chat = *std::move(chat);
    if (replies) {
      ChatPromptTokens t = EncodeChatWithReplies(tokenizer(), *p.chat, r.messages, *replies, r.cache_salt, touch_replies);
      p.tokens = std::move(t.tokens);
      p.replies = t.replies;
    } else {
      p.tokens = tokenizer().Encode(p.chat->text, ChatEncodeOptions(*p.chat));
    }
    p.starts = FindChatTokenStarts(tokenizer(), *p.chat, p.tokens);
    p.breakpoint_ends = BreakpointTokenEnds(chat_format, r, *p.chat, tokenizer(), p.tokens);
  } else if (r.prompt_tokens) {
    p.tokens = *r.prompt_tokens;
  } else {
    p.tokens = tokenizer().Encode(*r.prompt_text, PromptEncodeOptions());
  }
  if (p.tokens.empty()) {
    return InvalidArgumentFor(r.kind == ApiKind::kChat ? "messages" : "prompt", "the prompt encodes to no tokens");
  }
  return p;
}

void ServerContext::RecordReply(const std::string& cache_salt, std::string key, std::string_view prompt_tail,
                                const std::string& text, std::span<const int32_t> generated) const {
  if (!replies || text.empty() || key.empty()) return;
  GeneratedReply reply = MakeGeneratedReply(tokenizer(), text, generated, prompt_tail);
  if (!reply.tokens.empty()) replies->Insert(cache_salt, std::move(key), std::move(reply));
}

Status ServerContext::CheckFits(const OpenAiRequest& r, const Prompt& p) const {
  const int64_t ctx = info().context_length;
  if (static_cast<int64_t>(p.tokens.size()) >= ctx) {
    return InvalidArgumentFor(r.kind == ApiKind::kChat ? "messages" : "prompt",
                              absl::StrCat("the prompt has ", p.tokens.size(), " tokens; the context holds ", ctx,
                                           " tokens, and at least one must be left to generate"));
  }
  return absl::OkStatus();
}

HttpResponse JsonResponse(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = Dump(body);
  return r;
}

HttpResponse ErrorResponse(const ApiError& error, ApiDialect dialect) {
  HttpResponse r;
  r.status = error.http_status;
  r.body = ApiErrorBody(error, dialect);
  if (error.http_status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

HttpResponse StatusResponse(const Status& status, ApiDialect dialect) {
  return ErrorResponse(ApiErrorFrom(status), dialect);
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

uint64_t RandomU64() {
  thread_local std::mt19937_64 rng(std::random_device{}() ^
                                   (static_cast<uint64_t>(std::random_device{}()) << 32));
  return rng();
}

std::string RandomId(const char* prefix) {
  static const char kHex[] = "0123456789abcdef";
  std::string id = prefix;
  uint64_t a = RandomU64(), b = RandomU64();
  for (int i = 0; i < 12; ++i, a >>= 4) id += kHex[a & 15];
  for (int i = 0; i < 12; ++i, b >>= 4) id += kHex[b & 15];
  return id;
}

}  // namespace prefixd
