#include "server/forced_call.h"

#include "absl/strings/str_cat.h"
#include "server/api_error.h"
#include "server/json_body.h"
#include "server/json_schema_grammar.h"

namespace prefixd {

namespace {

using ojson = nlohmann::ordered_json;

// The fixed text around a call, as the templates show it to the model.
struct CallFrame {
  std::string open;       // before the name
  std::string arguments;  // the key between the name and the arguments
  std::string close;      // after the arguments
};

CallFrame FrameOf(ToolCallSyntax syntax) {
  if (syntax == ToolCallSyntax::kLlama3) return {"{\"name\": ", ", \"parameters\": ", "}"};
  return {"<tool_call>\n{\"name\": ", ", \"arguments\": ", "}\n</tool_call>"};
}

// What the template writes between two calls of one assistant turn ("" where it writes no
// second call).
std::string CallSeparator(ToolCallSyntax syntax) { return syntax == ToolCallSyntax::kHermes ? "\n" : ""; }

}  // namespace

int MaxForcedCalls(ToolCallSyntax syntax, bool parallel, int32_t end_id) {
  if (!parallel || end_id < 0 || CallSeparator(syntax).empty()) return 1;
  return kMaxParallelCalls;
}

StatusOr<std::shared_ptr<const CallGrammar>> BuildCallGrammar(ToolCallSyntax syntax, const ojson& tools,
                                                              const std::string& forced_name,
                                                              const std::string& schema_field, int max_calls) {
  if (syntax == ToolCallSyntax::kNone) {
    return InvalidArgumentFor("tool_choice",
                              "'tool_choice' forces a tool call, but the model's chat template has no "
                              "tool-call syntax (Hermes/Qwen <tool_call> or Llama 3 JSON calls), so the "
                              "call could not be written or parsed; serve a template with one "
                              "(--chat-template-file) or send tool_choice auto or none");
  }
  if (!tools.is_array() || tools.empty()) {
    return InvalidArgumentFor("tool_choice", "'tool_choice' forces a tool call, but the request offers no tools; "
                                             "send 'tools' or leave tool_choice out");
  }
  auto grammar = std::make_shared<CallGrammar>();
  const CallFrame frame = FrameOf(syntax);
  std::vector<std::pair<std::string, int32_t>> calls;
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& function = tools[i].contains("function") ? tools[i]["function"] : tools[i];
    if (!function.is_object() || !function.contains("name") || !function["name"].is_string()) continue;
    const std::string name = function["name"].get<std::string>();
    if (!forced_name.empty() && name != forced_name) continue;
    const std::string path = absl::StrCat(JsonPathJoin("tools", i), ".", schema_field);
    const auto schema = function.find("parameters");
    ASSIGN_OR_RETURN(int32_t arguments,
                     AddJsonSchema(schema == function.end() || schema->is_null() ? ojson::object() : *schema, path,
                                   /*object_only=*/true, *grammar));
    calls.push_back({absl::StrCat(ojson(name).dump(), frame.arguments), arguments});
  }
  if (calls.empty()) {
    return InvalidArgumentFor("tool_choice", absl::StrCat("'tool_choice' names the tool '", forced_name,
                                                          "', which is not among the request's tools"));
  }
  const int32_t open = grammar->AddLiteral(frame.open);
  const int32_t which = grammar->AddChoice(std::move(calls));
  const int32_t close = grammar->AddLiteral(frame.close);
  const int32_t call = grammar->AddSequence({open, which, close});
  const std::string separator = CallSeparator(syntax);
  grammar->root = separator.empty() ? call : grammar->AddRepeat(call, separator, max_calls);
  return std::shared_ptr<const CallGrammar>(std::move(grammar));
}

std::shared_ptr<TokenConstraint> MakeCallConstraint(std::shared_ptr<const TokenTexts> texts,
                                                    std::shared_ptr<const CallGrammar> grammar, int32_t end_id) {
  return std::make_shared<MatcherConstraint>(std::move(texts), std::make_unique<CallMatcher>(std::move(grammar)),
                                             end_id);
}

bool ForcesCall(ToolChoice choice) { return choice == ToolChoice::kRequired || choice == ToolChoice::kNamed; }

StatusOr<ForcedCallSetup> PrepareForcedCall(const OpenAiRequest& request, ToolCallSyntax syntax,
                                            const std::function<std::shared_ptr<const TokenTexts>()>& texts,
                                            int32_t end_id) {
  ForcedCallSetup setup;
  if (!ForcesCall(request.tool_choice)) {
    setup.stops = request.stop;
    return setup;
  }
  ASSIGN_OR_RETURN(auto grammar,
                   BuildCallGrammar(syntax, request.tools,
                                    request.tool_choice == ToolChoice::kNamed ? request.tool_choice_name : "",
                                    request.tool_schema_field,
                                    MaxForcedCalls(syntax, request.parallel_tool_calls, end_id)));
  setup.constraint = MakeCallConstraint(texts(), std::move(grammar), end_id);
  return setup;
}

}  // namespace prefixd
