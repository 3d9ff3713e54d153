// Anthropic's Messages API request (POST /v1/messages, /v1/messages/count_tokens), parsed,
// validated and converted into the same OpenAiRequest a chat completion becomes, so that one
// conversation sent in either dialect renders to the same prompt (and shares its cached
// prefix). Nothing here knows HTTP, the engine or the tokenizer.
//
// Conversion (Anthropic -> the chat template's messages, as chat completions passes them):
//   system: "S" | [{type: "text", text}]     -> {role: system, content: the texts joined}
//   {role: user, content: "U"}               -> {role: user, content: "U"}
//   user blocks [tool_result{tool_use_id, content}, ..., text]
//                                            -> {role: tool, tool_call_id, content} per result,
//                                               and the text blocks (joined) as a user message,
//                                               in block order
//   assistant blocks [text, tool_use{id, name, input}, ...]
//                                            -> {role: assistant, content: the texts joined,
//                                                tool_calls: [{id, type: "function",
//                                                  function: {name, arguments: input as JSON}}]}
//   tools [{name, description?, input_schema}]
//                                            -> [{type: "function", function: {name,
//                                                 description?, parameters: input_schema}}]
// `arguments` is `input` serialized compactly with its keys in the client's order, which is
// what JSON.stringify gives an OpenAI client. tool_choice {type: auto|none|any|tool, name,
// disable_parallel_tool_use} maps to ToolChoice (any: kRequired; tool: kNamed, its name among
// the tools, else a 400 naming tool_choice.name) and parallel_tool_calls (not
// disable_parallel_tool_use); the tools' schemas are named input_schema in errors
// (tool_schema_field).
//
// Other fields: max_tokens (required on create, 1 .. context), stop_sequences (at most 16
// strings), temperature, top_p, top_k, stream, metadata (an object, not used), and the
// fields every endpoint shares (ReadCommonFields: cache_salt, prefix_cache, seed, ...).
// cache_control on system, content and tool_result blocks and on tools becomes a breakpoint
// (cache_retention.h: the prompt up to the end of that block, as rendered, is retained for its
// ttl, and usage counts cache_creation up to the last one; cache_breakpoints.h finds the end). Content blocks other than text,
// tool_use and tool_result (images, documents, thinking) and server tools are refused
// naming their path. Limits as chat completions (RequestLimits): nesting depth while parsing,
// the number of messages, and tools plus tool calls serialized together.
//
// Thread safety: pure functions.
#pragma once

#include <string_view>

#include "base/status.h"
#include "server/openai_request.h"

namespace prefixd {

enum class MessagesEndpoint { kCreate, kCountTokens };

// The request as a chat request (kind kChat). kCountTokens does not require max_tokens.
StatusOr<OpenAiRequest> ParseMessagesRequest(std::string_view body, const RequestLimits& limits,
                                             MessagesEndpoint endpoint);

inline constexpr size_t kMaxStopSequences = 16;

}  // namespace prefixd
