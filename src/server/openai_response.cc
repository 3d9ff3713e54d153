#include "server/openai_response.h"

#include "server/server_context.h"

namespace prefixd {

using json = nlohmann::json;

namespace {

// A response's or chunk's fields around its `choices`.
json Envelope(const ResponseMeta& meta, const char* object, json choices) {
  json r;
  r["id"] = meta.id;
  r["object"] = object;
  r["created"] = meta.created;
  r["model"] = meta.model;
  r["system_fingerprint"] = "prefixd";
  r["choices"] = std::move(choices);
  return r;
}

json ChunkEnvelope(const ResponseMeta& meta, json choices) {
  return Envelope(meta, meta.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion", std::move(choices));
}

}  // namespace

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
  if (!usage.prefix_cache_refusal.empty()) pc["disabled_reason"] = usage.prefix_cache_refusal;
  if (usage.state_snapshot_bytes >= 0) {
    // Hybrid models: the recurrent state came from one snapshot at cached_tokens (or none).
    pc["state_snapshot"] = json{{"resumed_at", usage.cached_tokens > 0 ? json(usage.cached_tokens) : json(nullptr)},
                                {"bytes", usage.state_snapshot_bytes}};
  }
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
  json r = Envelope(meta, meta.kind == ApiKind::kChat ? "chat.completion" : "text_completion",
                    json::array({std::move(choice)}));
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
  return ChunkEnvelope(meta, json::array({std::move(choice)}));
}

json UsageChunkJson(const ResponseMeta& meta, json usage) {
  json r = ChunkEnvelope(meta, json::array());
  r["usage"] = std::move(usage);
  return r;
}


json ToolCallChunkJson(const ResponseMeta& meta, int index, const std::string& id, const std::string& name,
                       const std::string& arguments) {
  json call;
  call["index"] = index;
  json function = json::object();
  if (!id.empty()) {
    call["id"] = id;
    call["type"] = "function";
    function["name"] = name;
  }
  function["arguments"] = arguments;
  call["function"] = std::move(function);
  json choice;
  choice["index"] = 0;
  choice["delta"] = json{{"tool_calls", json::array({std::move(call)})}};
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = nullptr;
  return ChunkEnvelope(meta, json::array({std::move(choice)}));
}

std::string OpenAiWriter::StreamStart(int32_t /*prompt_tokens*/) {
  if (meta_.kind != ApiKind::kChat) return "";
  return SseData(ChunkJson(meta_, "", true, nullptr, nullptr));
}

std::string OpenAiWriter::EventChunks(const std::vector<ToolCallEvent>& events, json logprobs) {
  std::string out;
  for (const ToolCallEvent& e : events) {
    switch (e.kind) {
      case ToolCallEvent::Kind::kText:
        out += SseData(ChunkJson(meta_, e.text, false, nullptr, std::move(logprobs)));
        logprobs = nullptr;
        break;
      case ToolCallEvent::Kind::kCallStart:
        call_ids_.push_back(NoteCallId(RandomId("call_")));
        out += SseData(ToolCallChunkJson(meta_, e.call, call_ids_.back(), e.text, ""));
        break;
      case ToolCallEvent::Kind::kArguments:
        out += SseData(ToolCallChunkJson(meta_, e.call, "", "", e.text));
        break;
      case ToolCallEvent::Kind::kCallEnd: break;
    }
  }
  // Logprobs of text still held back (a possible call) go out now, with an empty delta.
  if (!logprobs.is_null()) out += SseData(ChunkJson(meta_, "", false, nullptr, std::move(logprobs)));
  return out;
}

std::string OpenAiWriter::StreamText(const std::string& text, json logprobs) {
  return EventChunks(Events(text, false), std::move(logprobs));
}

const char* OpenAiWriter::FinishReason(const GenerationEnd& end) const {
  if (num_calls() > 0) return "tool_calls";
  return FinishReasonString(end.finish, !end.stop_sequence.empty());
}

std::string OpenAiWriter::StreamEnd(const GenerationEnd& end) {
  std::string out = EventChunks(Events("", true), nullptr);
  out += SseData(ChunkJson(meta_, "", false, FinishReason(end), nullptr));
  if (include_usage_) out += SseData(UsageChunkJson(meta_, end.usage_json));
  out += SseDone();
  return out;
}

std::string OpenAiWriter::StreamError(const ApiError& error) {
  return SseData(ApiErrorJson(error)) + SseDone();
}

HttpResponse OpenAiWriter::Whole(const std::string& text, json logprobs, const GenerationEnd& end) {
  const ParsedToolCalls parsed = Parse(text);
  const char* finish = parsed.calls.empty() ? FinishReason(end) : "tool_calls";
  json r = ResponseJson(meta_, parsed.text, finish, std::move(logprobs), end.usage_json);
  if (!parsed.calls.empty()) {
    json calls = json::array();
    for (const ParsedToolCalls::Call& c : parsed.calls) {
      calls.push_back(json{{"id", NoteCallId(RandomId("call_"))},
                           {"type", "function"},
                           {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
    }
    json& message = r["choices"][0]["message"];
    if (parsed.text.empty()) message["content"] = nullptr;
    message["tool_calls"] = std::move(calls);
  }
  return JsonResponse(200, r);
}

const char* OpenAiWriter::route() const {
  return meta_.kind == ApiKind::kChat ? "/v1/chat/completions" : "/v1/completions";
}

const char* OpenAiWriter::kind() const { return meta_.kind == ApiKind::kChat ? "chat" : "completion"; }

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string SseData(const json& j) { return absl::StrCat("data: ", Dump(j), "\n\n"); }

std::string SseDone() { return "data: [DONE]\n\n"; }

}  // namespace prefixd
