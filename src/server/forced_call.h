// The constraint for a request that forces a tool call (OpenAI's tool_choice "required" or a
// named function, Anthropic's "any" or "tool"): the output must be one call, or with parallel
// calls allowed one to kMaxParallelCalls calls, in the syntax the chat template teaches
// (tool_call_parser.h), each to one of the offered tools (the named one when named), its
// arguments valid for that tool's schema (json_schema_grammar.h). After each whole call the
// model chooses between its end token and another call. The server decides this policy; the
// engine's sampler enforces it (engine/token_constraint.h).
//
// A forced request's output is its call(s) alone, ended by the grammar: its stop strings
// (`stop`, `stop_sequences`) are not applied (ForcedCallSetup::stops), since one that matched
// inside a call ("}", a word of an argument) would cut it into broken JSON. OpenAI's own calls
// never pass through stop matching either.
//
// Thread safety: pure functions.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "engine/token_constraint.h"
#include "server/call_grammar.h"
#include "server/openai_request.h"
#include "server/tool_call_parser.h"

namespace prefixd {

// The most calls one forced answer may hold when parallel calls are allowed: a bound, so the
// language stays finite (call_grammar.h).
inline constexpr int kMaxParallelCalls = 8;

// How many calls a forced request may write: 1 unless `parallel`; 1 without an end token
// (`end_id` < 0: the model could not stop between calls); 1 for Llama 3's JSON calls, whose
// official templates (3.1, 3.2, 3.3) refuse an assistant turn with several calls ("This model
// only supports single tool-calls at once!"), so a second call could not be sent back;
// kMaxParallelCalls for Hermes/Qwen, whose templates write each call as its own
// <tool_call>..</tool_call>, "\n" between them.
int MaxForcedCalls(ToolCallSyntax syntax, bool parallel, int32_t end_id);

// The grammar of 1..max_calls calls in `syntax` to tools of `tools` (OpenAI's shape: [{type:
// function, function: {name, parameters}}]): `forced_name`, or any of them when empty.
// `schema_field` names where each tool's schema was sent, for errors ("function.parameters" or
// Anthropic's "input_schema"). InvalidArgument naming the field for a schema the constraint
// cannot enforce, an unknown name, no tools, or a template without a call syntax (kNone).
StatusOr<std::shared_ptr<const CallGrammar>> BuildCallGrammar(ToolCallSyntax syntax,
                                                              const nlohmann::ordered_json& tools,
                                                              const std::string& forced_name,
                                                              const std::string& schema_field,
                                                              int max_calls = 1);

// The constraint a request owns: the grammar's matcher over the model's token texts, with
// `end_id` (the engine's EOS) allowed between calls.
std::shared_ptr<TokenConstraint> MakeCallConstraint(std::shared_ptr<const TokenTexts> texts,
                                                    std::shared_ptr<const CallGrammar> grammar,
                                                    int32_t end_id = -1);

// What a request's tool_choice does to its generation.
struct ForcedCallSetup {
  std::shared_ptr<TokenConstraint> constraint;  // null: nothing is forced
  std::vector<std::string> stops;               // the stop strings its text is matched against
};

// Whether `choice` forces a call: "required" or a named function (Anthropic's "any", "tool").
bool ForcesCall(ToolChoice choice);

// The setup for `request` on a model whose template writes calls in `syntax` and whose end
// token is `end_id`: a forced request gets its constraint over the token texts `texts` returns
// (called for forced requests only: the server builds them on first use) and no stop strings;
// any other keeps its stop strings. Errors as BuildCallGrammar.
StatusOr<ForcedCallSetup> PrepareForcedCall(const OpenAiRequest& request, ToolCallSyntax syntax,
                                            const std::function<std::shared_ptr<const TokenTexts>()>& texts,
                                            int32_t end_id);

}  // namespace prefixd
