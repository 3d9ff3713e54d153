// The constraint for a request that forces a tool call (OpenAI's tool_choice "required" or a
// named function, Anthropic's "any" or "tool"): the output must be one call, in the syntax the
// chat template teaches (tool_call_parser.h), to one of the offered tools (the named one when
// named), its arguments valid for that tool's schema (json_schema_grammar.h). The server
// decides this policy; the engine's sampler enforces it (engine/token_constraint.h).
//
// Thread safety: pure functions.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "engine/token_constraint.h"
#include "server/call_grammar.h"
#include "server/tool_call_parser.h"

namespace prefixd {

// The grammar of one call in `syntax` to a tool of `tools` (OpenAI's shape: [{type: function,
// function: {name, parameters}}]): `forced_name`, or any of them when empty. `schema_field`
// names where each tool's schema was sent, for errors ("function.parameters" or Anthropic's
// "input_schema"). InvalidArgument naming the field for a schema the constraint cannot enforce,
// an unknown name, no tools, or a template without a call syntax (kNone).
StatusOr<std::shared_ptr<const CallGrammar>> BuildCallGrammar(ToolCallSyntax syntax,
                                                              const nlohmann::ordered_json& tools,
                                                              const std::string& forced_name,
                                                              const std::string& schema_field);

// The constraint a request owns: the grammar's matcher over the model's token texts.
std::shared_ptr<TokenConstraint> MakeCallConstraint(std::shared_ptr<const TokenTexts> texts,
                                                    std::shared_ptr<const CallGrammar> grammar);

}  // namespace prefixd
