#include "server/chat_format.h"

namespace prefixd {

namespace {

using ordered_json = nlohmann::ordered_json;

// `calls` with each function.arguments that is a string of a JSON object made that object.
ordered_json ObjectArguments(ordered_json calls) {
  if (!calls.is_array()) return calls;
  for (ordered_json& c : calls) {
    if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) continue;
    ordered_json& args = c["function"]["arguments"];
    if (!args.is_string()) continue;
    ordered_json parsed = ordered_json::parse(args.get_ref<const std::string&>(), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object()) args = std::move(parsed);
  }
  return calls;
}

// Whether `t` prints a string of arguments escaped (a `tojson` of it): a probe call whose
// arguments are the string {"k": "v"} renders as "{\"k\"...".
bool EscapesStringArguments(const ChatTemplate& t) {
  ChatRenderInput in;
  in.messages.push_back(MessageJson(ChatMessage{"user", "x", "", nullptr, ""}));
  ChatMessage call{"assistant", "", "", nullptr, ""};
  call.tool_calls = ordered_json::parse(
      R"([{"id": "call_probe", "type": "function", "function": {"name": "f", "arguments": "{\"k\": \"v\"}"}}])");
  in.messages.push_back(MessageJson(call));
  in.messages.push_back(MessageJson(ChatMessage{"tool", "y", "", nullptr, "call_probe"}));
  StatusOr<RenderedChat> r = t.Render(in);
  return r.ok() && !r->used_fallback && r->text.find(R"(\"k\")") != std::string::npos;
}

}  // namespace

ChatFormat::ChatFormat(std::string_view source, const Vocab& vocab)
    : template_(ChatTemplate::FromSource(source, vocab)), object_arguments_(EscapesStringArguments(template_)) {}

nlohmann::ordered_json MessageJson(const ChatMessage& m, bool object_arguments) {
  nlohmann::ordered_json j = {{"role", m.role}, {"content", m.content}};
  if (!m.name.empty()) j["name"] = m.name;
  if (!m.tool_calls.is_null()) j["tool_calls"] = object_arguments ? ObjectArguments(m.tool_calls) : m.tool_calls;
  if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
  return j;
}

StatusOr<RenderedChat> ChatFormat::Render(std::span<const ChatMessage> messages,
                                          const nlohmann::ordered_json& tools,
                                          const nlohmann::ordered_json& kwargs,
                                          const nlohmann::ordered_json& blocks) const {
  ChatRenderInput in;
  for (const ChatMessage& m : messages) in.messages.push_back(MessageJson(m, object_arguments_));
  in.tools = tools;
  in.kwargs = kwargs;
  in.add_generation_prompt = true;
  in.blocks = blocks;
  return template_.Render(in);
}

}  // namespace prefixd
