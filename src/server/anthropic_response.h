// The answer to Anthropic's POST /v1/messages: the message object, its usage, and the
// streamed events, written by AnthropicWriter (response_writer.h).
//
//   {"id": "msg_...", "type": "message", "role": "assistant", "model": "...",
//    "content": [{"type": "text", "text": "..."},
//                {"type": "tool_use", "id": "toolu_...", "name": "f", "input": {...}}],
//    "stop_reason": "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "abort",
//    "stop_sequence": null | "the stop string",
//    "usage": {"input_tokens": I, "output_tokens": O, "cache_creation_input_tokens": W,
//              "cache_read_input_tokens": R, "prefix_cache": {... as chat completions ...}}}
//
// Usage, exactly (prompt tokens P = I + W + R), with Anthropic's meaning:
//   R  cache_read_input_tokens      the prompt's leading tokens whose KV came from the prefix
//                                   cache (any tier): usage.prefix_cache.cached_tokens
//   W  cache_creation_input_tokens  the tokens from R up to the last cache_control breakpoint
//                                   B (cache_retention.h), max(0, B - R), which the cache now
//                                   retains for the breakpoint's ttl; split in
//                                   cache_creation {ephemeral_5m_input_tokens,
//                                   ephemeral_1h_input_tokens} at the last 1-hour breakpoint;
//                                   0 without breakpoints, with the cache off (--prefix-cache
//                                   off, the kill switch), or for a request cancelled with no
//                                   token generated
//   I  input_tokens                 P - R - W: the tokens after the last breakpoint (prefixd
//                                   still caches them, unretained, as any prompt)
//   O  output_tokens                generated tokens, up to the one completing a stop sequence
// "abort" (prefixd's own) says the server cancelled the request at shutdown.
//
// Streaming: the headers go out at once; event: message_start follows when the prompt is done
// (StreamPrefilled: the first token came, so what the cache gave is known), with the usage's
// prompt figures exactly as the final usage has them (input_tokens, cache_read_input_tokens,
// cache_creation_input_tokens, cache_creation by ttl; output_tokens 0), then ping; a stream
// that ends before any token sends it from the final usage. Then per content block content_block_start, content_block_delta*
// (text_delta {text}, or input_json_delta {partial_json}: pieces of a tool call's input as
// the model writes it), content_block_stop; then message_delta {stop_reason, stop_sequence}
// with the final usage (all four figures), and message_stop. A failure mid-stream is
// `event: error` with the error object.
//
// A tool_use block's `input` is its arguments parsed as a JSON object, {} when they do not
// parse (a call cut off by max_tokens); streamed, partial_json carries them as written.
//
// Thread safety: none; one writer per request.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "server/response_writer.h"

namespace prefixd {

// The usage object above. `cache_indexed`: the prompt past its cached prefix went into the
// cache (GenerationEnd::cache_enabled, and prefill ran); `write`: where the breakpoints end.
nlohmann::json AnthropicUsageJson(const RequestUsage& usage, int32_t output_tokens, bool cache_indexed,
                                  const CacheWriteBounds& write);

// "end_turn", "max_tokens", "stop_sequence", "tool_use" or "abort".
const char* AnthropicStopReason(FinishReason finish, bool stop_sequence, bool tool_use);

// "event: NAME\ndata: JSON\n\n"
std::string SseEvent(const char* name, const nlohmann::json& data);

class AnthropicWriter : public ResponseWriter {
 public:
  AnthropicWriter(std::string id, std::string model) : id_(std::move(id)), model_(std::move(model)) {}

  std::string StreamStart(int32_t prompt_tokens) override;
  std::string StreamPrefilled(const GenerationEnd& so_far) override;
  std::string StreamText(const std::string& text, nlohmann::json logprobs) override;
  std::string StreamEnd(const GenerationEnd& end) override;
  std::string StreamError(const ApiError& error) override;
  HttpResponse Whole(const std::string& text, nlohmann::json logprobs, const GenerationEnd& end) override;
  ApiDialect dialect() const override { return ApiDialect::kAnthropic; }
  const std::string& id() const override { return id_; }
  const char* route() const override { return "/v1/messages"; }
  const char* kind() const override { return "messages"; }

 private:
  enum class Block { kNone, kText, kToolUse };
  // The message object with `content`, stop fields and usage.
  nlohmann::json Message(nlohmann::json content, const GenerationEnd* end) const;
  nlohmann::json Usage(const GenerationEnd& end) const;
  std::string Blocks(const std::vector<ToolCallEvent>& events);
  std::string CloseBlock();
  // message_start and ping, with `usage`.
  std::string MessageStart(nlohmann::json usage);

  std::string id_;
  std::string model_;
  Block open_ = Block::kNone;  // the content block being streamed
  int num_blocks_ = 0;         // blocks started so far; the open one is num_blocks_ - 1
  bool started_ = false;       // message_start is out
};

}  // namespace prefixd
