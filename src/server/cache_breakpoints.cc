#include "server/cache_breakpoints.h"

#include <algorithm>
#include <optional>
#include <string_view>

namespace prefixd {

namespace {

using ordered_json = nlohmann::ordered_json;

// Inserted into a copy of the chat to find where a block's text lands; a chat that already
// holds it is not searched (its text blocks fall back to their message's end).
constexpr std::string_view kSentinel = "PFXDCACHEBREAKPOINT9F3B7A51";

size_t NumTools(const OpenAiRequest& r) { return r.tools.is_array() ? r.tools.size() : 0; }

// Where message `m` ends in chat.text: where the next message, or the generation prompt, starts.
size_t MessageEnd(const RenderedChat& chat, int64_t m) {
  const size_t next = static_cast<size_t>(m) + 1;
  return next < chat.message_offsets.size() ? chat.message_offsets[next] : chat.generation_offset;
}

// The traced end of BreakpointBlocks entry `i`, or nullopt.
std::optional<size_t> BlockEnd(const RenderedChat& chat, size_t i) {
  if (i >= chat.block_ends.size() || chat.block_ends[i] == std::string::npos) return std::nullopt;
  return chat.block_ends[i];
}

// Where the text of message `m` up to byte `at` of its content lands in chat.text: a render
// with the sentinel there must be the chat's own text with the sentinel inserted, else nullopt.
std::optional<size_t> TextEnd(const ChatFormat& format, const OpenAiRequest& r, const RenderedChat& chat,
                              int64_t m, size_t at) {
  if (m < 0 || static_cast<size_t>(m) >= r.messages.size() || chat.text.find(kSentinel) != std::string::npos) {
    return std::nullopt;
  }
  std::vector<ChatMessage> messages = r.messages;
  std::string& content = messages[static_cast<size_t>(m)].content;
  if (at > content.size()) return std::nullopt;
  content.insert(at, kSentinel);
  StatusOr<RenderedChat> marked = format.Render(messages, r.tools, r.chat_template_kwargs);
  if (!marked.ok()) return std::nullopt;
  const std::string& t = marked->text;
  const size_t p = t.find(kSentinel);
  if (p == std::string::npos || t.size() != chat.text.size() + kSentinel.size()) return std::nullopt;
  if (t.compare(0, p, chat.text, 0, p) != 0 || t.compare(p + kSentinel.size(), std::string::npos, chat.text, p) != 0) {
    return std::nullopt;
  }
  return p;
}

// Where the tools end as printed: the latest traced tool; 0 when the template prints no tool
// (the chat renders the same without them); the first message's end when it prints them
// without a loop over them.
size_t ToolsEnd(const ChatFormat& format, const OpenAiRequest& r, const RenderedChat& chat) {
  const size_t n = NumTools(r);
  if (n == 0) return 0;
  std::optional<size_t> end;
  for (size_t i = 0; i < n; ++i) {
    if (std::optional<size_t> e = BlockEnd(chat, i)) end = std::max(end.value_or(0), *e);
  }
  if (end) return *end;
  StatusOr<RenderedChat> without = format.Render(r.messages, nullptr, r.chat_template_kwargs);
  if (without.ok() && without->text == chat.text) return 0;
  return r.messages.empty() ? chat.generation_offset : MessageEnd(chat, 0);
}

// Index in BreakpointBlocks of call `call` of message `m`.
size_t CallBlock(const OpenAiRequest& r, int64_t m, int64_t call) {
  size_t i = NumTools(r);
  for (int64_t k = 0; k < m && static_cast<size_t>(k) < r.messages.size(); ++k) {
    const ordered_json& calls = r.messages[static_cast<size_t>(k)].tool_calls;
    if (calls.is_array()) i += calls.size();
  }
  return i + static_cast<size_t>(call);
}

}  // namespace

ordered_json BreakpointBlocks(const ChatFormat& format, const OpenAiRequest& r) {
  if (r.retention.breakpoints.empty()) return nullptr;
  ordered_json blocks = ordered_json::array();
  if (r.tools.is_array()) {
    for (const ordered_json& t : r.tools) blocks.push_back(t);
  }
  for (const ChatMessage& m : r.messages) {
    if (!m.tool_calls.is_array()) continue;
    // As the template gets them (arguments as objects where it needs them).
    const ordered_json j = MessageJson(m, format.object_arguments());
    for (const ordered_json& c : j["tool_calls"]) blocks.push_back(c);
  }
  return blocks;
}

std::vector<size_t> BreakpointByteEnds(const ChatFormat& format, const OpenAiRequest& r,
                                       const RenderedChat& chat) {
  std::vector<size_t> out;
  if (r.retention.breakpoints.empty()) return out;
  const size_t tools_end = ToolsEnd(format, r, chat);
  for (const CacheBreakpoint& bp : r.retention.breakpoints) {
    if (bp.where == CacheBreakpoint::Where::kTool) {
      std::optional<size_t> end;
      for (int64_t i = 0; i <= bp.index; ++i) {
        if (std::optional<size_t> e = BlockEnd(chat, static_cast<size_t>(i))) end = std::max(end.value_or(0), *e);
      }
      // A tool printed without a loop iteration of its own: all of them, as printed.
      out.push_back(BlockEnd(chat, static_cast<size_t>(bp.index)) ? *end : tools_end);
      continue;
    }
    size_t end = tools_end;
    if (bp.content_end >= 0) {
      const std::optional<size_t> text = TextEnd(format, r, chat, bp.index, static_cast<size_t>(bp.content_end));
      end = std::max(end, text.value_or(MessageEnd(chat, bp.index)));
    }
    if (bp.tool_call >= 0) {
      end = std::max(end, BlockEnd(chat, CallBlock(r, bp.index, bp.tool_call)).value_or(MessageEnd(chat, bp.index)));
    }
    if (bp.content_end < 0 && bp.tool_call < 0) end = std::max(end, MessageEnd(chat, bp.index));
    out.push_back(std::min(end, chat.text.size()));
  }
  return out;
}

std::vector<int64_t> BreakpointTokenEnds(const ChatFormat& format, const OpenAiRequest& r,
                                         const RenderedChat& chat, const Tokenizer& tokenizer,
                                         std::span<const int32_t> tokens) {
  const std::vector<size_t> bytes = BreakpointByteEnds(format, r, chat);
  if (bytes.empty()) return {};
  return TokensCoveringBytes(tokenizer, chat.text, tokens, bytes);
}

}  // namespace prefixd
