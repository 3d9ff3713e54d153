#include "server/openai_response.h"

namespace prefixd {

using json = nlohmann::json;

const char* FinishReasonString(FinishReason reason, bool stop_string_matched) {
  if (stop_string_matched) return "stop";
  switch (reason) {
    case FinishReason::kEos: return "stop";
    case FinishReason::kLength:
    case FinishReason::kContext: return "length";
    case FinishReason::kCancelled: return "abort";
    case FinishReason::kNone: break;
  }
  return "stop";
}

json UsageJson(const RequestUsage& usage, int32_t completion_tokens,
               std::optional<int64_t> diverged_in_message) {
  json by_tier = json::object();
  for (const auto& [tier, n] : usage.cached_tokens_by_tier) by_tier[tier] = n;
  if (by_tier.empty()) by_tier["pool"] = usage.cached_tokens;
  json pc;
  pc["cached_tokens"] = usage.cached_tokens;
  pc["by_tier"] = std::move(by_tier);
  pc["load_ms"] = usage.cache_load_ms;
  pc["diverged_at_token"] = usage.diverged_at_token >= 0 ? json(usage.diverged_at_token) : json(nullptr);
  if (diverged_in_message.has_value()) {
    pc["diverged_in_message"] = usage.diverged_at_token >= 0 ? json(*diverged_in_message) : json(nullptr);
  }
  json u;
  u["prompt_tokens"] = usage.prompt_tokens;
  u["completion_tokens"] = completion_tokens;
  u["total_tokens"] = static_cast<int64_t>(usage.prompt_tokens) + completion_tokens;
  u["prompt_tokens_details"] = json{{"cached_tokens", usage.cached_tokens}};
  u["prefix_cache"] = std::move(pc);
  return u;
}

json CompletionLogprobsJson(const std::vector<LogprobEntry>& entries) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const LogprobEntry& e : entries) {
    tokens.push_back(e.piece);
    lps.push_back(e.logprob);
    json top = json::object();
    for (const auto& [piece, lp] : e.top) {
      if (!top.contains(piece)) top[piece] = lp;
    }
    tops.push_back(std::move(top));
    offsets.push_back(e.text_offset);
  }
  return json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(lps)},
              {"top_logprobs", std::move(tops)},
              {"text_offset", std::move(offsets)}};
}

namespace {
json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}
}  // namespace

json ChatLogprobsJson(const std::vector<LogprobEntry>& entries) {
  json content = json::array();
  for (const LogprobEntry& e : entries) {
    json top = json::array();
    for (const auto& [piece, lp] : e.top) {
      top.push_back(json{{"token", piece}, {"logprob", lp}, {"bytes", Bytes(piece)}});
    }
    content.push_back(json{{"token", e.piece},
                           {"logprob", e.logprob},
                           {"bytes", Bytes(e.piece)},
                           {"top_logprobs", std::move(top)}});
  }
  return json{{"content", std::move(content)}, {"refusal", nullptr}};
}

json ResponseJson(const ResponseMeta& meta, const std::string& text, const char* finish_reason,
                  json logprobs, json usage) {
  json choice;
  choice["index"] = 0;
  if (meta.kind == ApiKind::kChat) {
    choice["message"] = json{{"role", "assistant"}, {"content", text}, {"refusal", nullptr}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = finish_reason;
  json r;
  r["id"] = meta.id;
  r["object"] = meta.kind == ApiKind::kChat ? "chat.completion" : "text_completion";
  r["created"] = meta.created;
  r["model"] = meta.model;
  r["system_fingerprint"] = "prefixd";
  r["choices"] = json::array({std::move(choice)});
  r["usage"] = std::move(usage);
  return r;
}

json ChunkJson(const ResponseMeta& meta, const std::string& text, bool first,
               const char* finish_reason, json logprobs) {
  json choice;
  choice["index"] = 0;
  if (meta.kind == ApiKind::kChat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && finish_reason == nullptr)) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = finish_reason ? json(finish_reason) : json(nullptr);
  json r;
  r["id"] = meta.id;
  r["object"] = meta.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion";
  r["created"] = meta.created;
  r["model"] = meta.model;
  r["system_fingerprint"] = "prefixd";
  r["choices"] = json::array({std::move(choice)});
  return r;
}

json UsageChunkJson(const ResponseMeta& meta, json usage) {
  json r;
  r["id"] = meta.id;
  r["object"] = meta.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion";
  r["created"] = meta.created;
  r["model"] = meta.model;
  r["system_fingerprint"] = "prefixd";
  r["choices"] = json::array();
  r["usage"] = std::move(usage);
  return r;
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string SseData(const json& j) { return absl::StrCat("data: ", Dump(j), "\n\n"); }

std::string SseDone() { return "data: [DONE]\n\n"; }

}  // namespace prefixd
