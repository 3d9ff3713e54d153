// OpenAiRequest: a /v1/completions or /v1/chat/completions body, parsed and validated into
// plain fields. Nothing here knows HTTP or the tokenizer, and of the engine only its
// RequestScope (engine/request_scope.h); the server turns the result into a GenerateRequest.
//
// Every rejection is InvalidArgument made with InvalidArgumentFor (api_error.h), naming the
// offending field as a JSON path ("messages[1].content[0].text", "stop[2]", "max_tokens"), so
// the client gets a 400 whose `param` points at it. Unknown fields are ignored (clients of
// llama.cpp and vLLM send `cache_prompt`, `n_predict`, ...).
//
// Accepted forms and limits:
//   prompt      "text" | ["text"] | [1, 2, 3] | [[1, 2, 3]]; one prompt per request: a list
//               of several prompts is refused (send one request per prompt); never empty
//   messages    [{role: system|developer|user|assistant|tool, content: "text" |
//               [{type: "text", text: "..."}] | null (assistant only), name?, tool_calls?,
//               tool_call_id?}], at least one
//   max_tokens  max_completion_tokens wins over max_tokens, which wins over llama.cpp's
//               n_predict (-1: no limit); 0 .. context length
//   temperature [0, 2]; top_p [0, 1]; top_k >= -1 (0 or -1: off); min_p [0, 1]; seed int
//   stop        "s" | ["s", ...] (at most 4; empty strings are dropped)
//   n, best_of  1 only; echo false only; suffix empty only
//   logprobs    completions: integer 0..5 (the chosen token plus that many alternatives);
//               chat: bool, with top_logprobs 0..20
//   stream, stream_options.include_usage, cache_salt, prefix_cache {scope: off|full|auto|
//               auto:N|N, window: 1..256, retention: token ranges (cache_retention.h)},
//               prompt_cache_retention (in_memory | 24h), prompt_cache_key,
//   chat_template_kwargs (object), tools (array), tool_choice (auto | none | required |
//               {type: function, function: {name}}: a forced call needs tools, and a named one
//               must be among them), parallel_tool_calls (bool, default true: a forced
//               request may write several calls), model, ignore_eos
//   limits      JSON nesting 64 levels; messages 16384; tools + tool_calls +
//               chat_template_kwargs 1 MiB serialized (RequestLimits)
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "engine/request_scope.h"
#include "server/cache_retention.h"
#include "server/json_body.h"

namespace prefixd {

enum class ApiKind { kCompletion, kChat };

// Whether tool calls are parsed out of the generated text (tool_call_parser.h), and whether
// one is forced: kRequired (OpenAI's "required", Anthropic's "any": a call to any offered
// tool) and kNamed (OpenAI's named function, Anthropic's "tool": a call to that one) constrain
// generation to a call (forced_call.h).
enum class ToolChoice { kAuto, kNone, kRequired, kNamed };

struct ChatMessage {
  std::string role;  // system, user, assistant or tool ("developer" is read as system)
  std::string content;  // the text parts joined; "" for an assistant turn with only tool calls
  std::string name;
  nlohmann::ordered_json tool_calls;  // passed to the chat template as given (key order kept); null when absent
  std::string tool_call_id;
};

// The per-request override of the scope policy (ARCHITECTURE.md, L3): what of this prompt the
// lower tiers persist. `scope` is "off", "full", "auto", "auto:N" or "N"; `window` (1..256) is
// the N of auto (given alone, it means auto:window).
struct PrefixCacheRequest {
  std::optional<RequestScope> scope;  // nullopt: the server's --disk-prefix-cache
  std::optional<int> window;
};

struct OpenAiRequest {
  ApiKind kind = ApiKind::kCompletion;
  std::string model;  // "" when not given

  // kCompletion: exactly one of the two is set.
  std::optional<std::string> prompt_text;
  std::optional<std::vector<int32_t>> prompt_tokens;
  // kChat: at least one message.
  std::vector<ChatMessage> messages;
  // Passed to the chat template in the request's key order (tojson prints them): null when absent.
  nlohmann::ordered_json tools;
  nlohmann::ordered_json chat_template_kwargs;
  ToolChoice tool_choice = ToolChoice::kAuto;
  std::string tool_choice_name;  // kNamed: the tool
  // A forced request may write several calls (OpenAI's parallel_tool_calls, default true; not
  // Anthropic's tool_choice.disable_parallel_tool_use, default false): forced_call.h.
  bool parallel_tool_calls = true;
  // Where each tool's JSON schema sits in a tool of the request, for errors: OpenAI's
  // "function.parameters", Anthropic's "input_schema".
  std::string tool_schema_field = "function.parameters";

  // nullopt: the default (completions 16 as OpenAI's; chat: the rest of the context).
  std::optional<int32_t> max_tokens;
  float temperature = 1;  // OpenAI's default
  float top_p = 1;
  int32_t top_k = 0;
  float min_p = 0;
  std::optional<uint64_t> seed;  // nullopt: a random seed per request
  std::vector<std::string> stop;
  bool ignore_eos = false;

  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage

  bool logprobs = false;     // return the chosen tokens' logprobs
  int32_t top_logprobs = 0;  // and this many alternatives per token

  std::string cache_salt;
  PrefixCacheRequest prefix_cache;
  // What to keep (prefix_cache.retention, prompt_cache_retention, prompt_cache_key, and
  // Anthropic's cache_control): cache_retention.h.
  RetentionRequest retention;

  bool probe_tokens = false;  // probe only: also return each prompt token's text
  bool probe_block_hashes = false;  // probe only: also return the KV events' hash of each block
};

// What validation needs to know about the served model, and the per-field limits, all checked
// before anything is rendered or tokenised.
struct RequestLimits {
  int32_t context_length = 0;  // max_tokens and token-id prompts must fit it
  int32_t vocab_size = 0;      // token ids must be below it
  int max_json_depth = kMaxJsonDepth;
  size_t max_messages = 16384;  // `messages` entries
  // `tools`, every message's `tool_calls` and `chat_template_kwargs` together, serialized.
  size_t max_tools_bytes = size_t{1} << 20;
};

StatusOr<OpenAiRequest> ParseCompletionRequest(std::string_view body, const RequestLimits& limits);
StatusOr<OpenAiRequest> ParseChatRequest(std::string_view body, const RequestLimits& limits);
// The admin probe body: `messages` (read as chat) or `prompt` (read as a completion), plus
// optional `tools`, `cache_salt`, `model`, `tokens` (boolean: return the token texts); the
// sampling fields are ignored.
StatusOr<OpenAiRequest> ParseProbeRequest(std::string_view body, const RequestLimits& limits);

// The fields completions, chat and Anthropic's messages share, read from `body` into `out`:
// model, max_tokens (and its aliases), temperature, top_p, top_k, min_p, seed, stop, n,
// ignore_eos, stream, stream_options, cache_salt, prefix_cache.
Status ReadCommonFields(const nlohmann::json& body, const RequestLimits& limits, OpenAiRequest& out);

// Adds `part`'s serialized size to `bytes`; InvalidArgument naming `field` once the tools,
// tool calls and template kwargs of one request together pass limits.max_tools_bytes.
Status AddToolsBytes(const nlohmann::ordered_json& part, const std::string& field,
                     const RequestLimits& limits, size_t& bytes);

// A forced tool_choice against the request's tools (OpenAI's shape, read already): a forced
// call needs tools, and kNamed a tool of that name (`name_field`, the JSON path of the name, is
// named in the 400 otherwise).
Status CheckForcedTool(const OpenAiRequest& request, const std::string& name_field);

}  // namespace prefixd
