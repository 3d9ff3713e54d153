#include "server/chat_format.h"

namespace prefixd {

nlohmann::ordered_json MessageJson(const ChatMessage& m) {
  nlohmann::ordered_json j = {{"role", m.role}, {"content", m.content}};
  if (!m.name.empty()) j["name"] = m.name;
  if (!m.tool_calls.is_null()) j["tool_calls"] = m.tool_calls;
  if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
  return j;
}

StatusOr<RenderedChat> ChatFormat::Render(std::span<const ChatMessage> messages,
                                          const nlohmann::ordered_json& tools,
                                          const nlohmann::ordered_json& kwargs,
                                          const nlohmann::ordered_json& blocks) const {
  ChatRenderInput in;
  for (const ChatMessage& m : messages) in.messages.push_back(MessageJson(m));
  in.tools = tools;
  in.kwargs = kwargs;
  in.add_generation_prompt = true;
  in.blocks = blocks;
  return template_.Render(in);
}

}  // namespace prefixd
