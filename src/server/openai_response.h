// JSON builders for the OpenAI-compatible answers: whole responses, streaming chunks as
// server-sent events, usage with prefixd's `prefix_cache` extension, and logprobs in both of
// OpenAI's shapes (legacy completions, chat).
//
//   usage = {"prompt_tokens": P, "completion_tokens": C, "total_tokens": P + C,
//            "prompt_tokens_details": {"cached_tokens": N},
//            "prefix_cache": {"cached_tokens": N, "by_tier": {"pool": N, ...}, "load_ms": x,
//                             "diverged_at_token": i,        // null on a full hit
//                             "diverged_in_message": j}}     // chat only, null on a full hit
//
// Strings from the model may hold invalid UTF-8 (a byte token cut off by a stop); Dump()
// replaces it rather than throw.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine_service.h"
#include "server/openai_request.h"
#include "server/response_writer.h"

namespace prefixd {

// Identifies one response and its chunks.
struct ResponseMeta {
  ApiKind kind = ApiKind::kCompletion;
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
};

// One generated token's logprobs, with the text it contributed.
struct LogprobEntry {
  std::string piece;  // the token's text
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;  // alternatives: piece, logprob
  int64_t text_offset = 0;  // byte offset of the piece in the completion text
};

// "stop" (EOS or a stop string), "length" (max_tokens or the context), "abort" (cancelled by
// the server, e.g. at shutdown).
const char* FinishReasonString(FinishReason reason, bool stop_string_matched);

// The usage object. `completion_tokens` overrides usage.completion_tokens (the server counts
// the tokens it used, up to a stop string). `diverged_in_message` is set for chat only.
nlohmann::json UsageJson(const RequestUsage& usage, int32_t completion_tokens,
                         std::optional<int64_t> diverged_in_message);

// Logprobs in the legacy completions shape ({tokens, token_logprobs, top_logprobs,
// text_offset}) or the chat shape ({content: [{token, logprob, bytes, top_logprobs}]}).
nlohmann::json CompletionLogprobsJson(const std::vector<LogprobEntry>& entries);
nlohmann::json ChatLogprobsJson(const std::vector<LogprobEntry>& entries);

// The whole (non-streaming) response. `logprobs` is null when not requested.
nlohmann::json ResponseJson(const ResponseMeta& meta, const std::string& text,
                            const char* finish_reason, nlohmann::json logprobs,
                            nlohmann::json usage);

// One streaming chunk: `text` as the delta (chat: the first chunk also carries the role),
// `finish_reason` null until the last one, `logprobs` null unless requested.
nlohmann::json ChunkJson(const ResponseMeta& meta, const std::string& text, bool first,
                         const char* finish_reason, nlohmann::json logprobs);
// The extra last chunk of stream_options.include_usage: no choices, the usage.
nlohmann::json UsageChunkJson(const ResponseMeta& meta, nlohmann::json usage);

// The answer to /v1/completions or /v1/chat/completions. With tool calls enabled (chat with
// tools, tool_choice auto), parsed calls become the message's `tool_calls` (each
// {id: "call_...", type: "function", function: {name, arguments}}; `content` is the rest of
// the text, null when there is none) and finish_reason "tool_calls"; streamed, each call is a
// delta with its index, id, type and name, then deltas with pieces of its arguments.
class OpenAiWriter : public ResponseWriter {
 public:
  OpenAiWriter(ResponseMeta meta, bool include_usage) : meta_(std::move(meta)), include_usage_(include_usage) {}

  std::string StreamStart(int32_t prompt_tokens) override;
  std::string StreamText(const std::string& text, nlohmann::json logprobs) override;
  std::string StreamEnd(const GenerationEnd& end) override;
  std::string StreamError(const ApiError& error) override;
  HttpResponse Whole(const std::string& text, nlohmann::json logprobs, const GenerationEnd& end) override;
  ApiDialect dialect() const override { return ApiDialect::kOpenAi; }
  const std::string& id() const override { return meta_.id; }
  const char* route() const override;
  const char* kind() const override;

 private:
  std::string EventChunks(const std::vector<ToolCallEvent>& events, nlohmann::json logprobs);
  const char* FinishReason(const GenerationEnd& end) const;

  ResponseMeta meta_;
  bool include_usage_;
  std::vector<std::string> call_ids_;  // streamed calls' ids, by index
};

// One streamed tool-call delta: the call's start (id and name) or a piece of its arguments.
nlohmann::json ToolCallChunkJson(const ResponseMeta& meta, int index, const std::string& id,
                                 const std::string& name, const std::string& arguments);

// Serializes without throwing (invalid UTF-8 replaced by U+FFFD).
std::string Dump(const nlohmann::json& j);
// "data: JSON\n\n"
std::string SseData(const nlohmann::json& j);
// "data: [DONE]\n\n"
std::string SseDone();

}  // namespace prefixd
