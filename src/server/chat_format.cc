#include "server/chat_format.h"

#include <algorithm>

namespace prefixd {

namespace {

std::string Trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  const size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

std::string PlainRole(const std::string& role) {
  if (role == "system") return "System";
  if (role == "user") return "User";
  if (role == "assistant") return "Assistant";
  if (role == "tool") return "Tool";
  std::string r = role;
  if (!r.empty() && r[0] >= 'a' && r[0] <= 'z') r[0] = static_cast<char>(r[0] - 'a' + 'A');
  return r;
}

void RenderChatMl(std::span<const ChatMessage> messages, RenderedChat& out) {
  for (const ChatMessage& m : messages) {
    out.message_offsets.push_back(out.text.size());
    absl::StrAppend(&out.text, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
  }
  out.generation_offset = out.text.size();
  out.text += "<|im_start|>assistant\n";
}

void RenderLlama3(std::span<const ChatMessage> messages, RenderedChat& out) {
  for (const ChatMessage& m : messages) {
    out.message_offsets.push_back(out.text.size());
    absl::StrAppend(&out.text, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n",
                    Trim(m.content), "<|eot_id|>");
  }
  out.generation_offset = out.text.size();
  out.text += "<|start_header_id|>assistant<|end_header_id|>\n\n";
}

// llama.cpp's llama2 renderer (system inside <<SYS>>, no BOS inside the history).
void RenderLlama2(std::span<const ChatMessage> messages, RenderedChat& out) {
  bool inside_turn = false;
  for (const ChatMessage& m : messages) {
    out.message_offsets.push_back(out.text.size());
    if (!inside_turn) {
      inside_turn = true;
      out.text += "[INST] ";
    }
    if (m.role == "system") {
      absl::StrAppend(&out.text, "<<SYS>>\n", m.content, "\n<</SYS>>\n\n");
    } else if (m.role == "assistant") {
      absl::StrAppend(&out.text, m.content, "</s>");
      inside_turn = false;
    } else {  // user, tool
      absl::StrAppend(&out.text, m.content, " [/INST]");
    }
  }
  // The model answers right after "[/INST]"; there is no separate assistant header.
  out.generation_offset = out.text.size();
}

void RenderPlain(std::span<const ChatMessage> messages, RenderedChat& out) {
  for (const ChatMessage& m : messages) {
    out.message_offsets.push_back(out.text.size());
    absl::StrAppend(&out.text, PlainRole(m.role), ": ", m.content, "\n");
  }
  out.generation_offset = out.text.size();
  out.text += "Assistant:";
}

}  // namespace

const char* ChatTemplateName(ChatTemplateKind kind) {
  switch (kind) {
    case ChatTemplateKind::kChatMl: return "chatml";
    case ChatTemplateKind::kLlama2: return "llama2";
    case ChatTemplateKind::kLlama3: return "llama3";
    case ChatTemplateKind::kPlain: return "plain";
  }
  return "plain";
}

ChatFormat ChatFormat::FromTemplate(std::string_view source) {
  if (source.find("<|im_start|>") != std::string_view::npos) return ChatFormat(ChatTemplateKind::kChatMl);
  if (source.find("<|start_header_id|>") != std::string_view::npos) {
    return ChatFormat(ChatTemplateKind::kLlama3);
  }
  if (source.find("[INST]") != std::string_view::npos) return ChatFormat(ChatTemplateKind::kLlama2);
  return ChatFormat(ChatTemplateKind::kPlain);
}

RenderedChat ChatFormat::Render(std::span<const ChatMessage> messages) const {
  RenderedChat out;
  switch (kind_) {
    case ChatTemplateKind::kChatMl: RenderChatMl(messages, out); break;
    case ChatTemplateKind::kLlama3: RenderLlama3(messages, out); break;
    case ChatTemplateKind::kLlama2: RenderLlama2(messages, out); break;
    case ChatTemplateKind::kPlain: RenderPlain(messages, out); break;
  }
  return out;
}

EncodeOptions PromptEncodeOptions() {
  EncodeOptions o;
  o.add_eos = false;
  o.parse_special = true;
  return o;
}

int64_t MessageTokenStart(const Tokenizer& tokenizer, const RenderedChat& chat,
                          std::span<const int32_t> tokens, size_t i) {
  if (i == 0) return 0;
  const size_t offset =
      i < chat.message_offsets.size() ? chat.message_offsets[i] : chat.generation_offset;
  const std::vector<int32_t> head =
      tokenizer.Encode(std::string_view(chat.text).substr(0, offset), PromptEncodeOptions());
  const size_t n = std::min(head.size(), tokens.size());
  size_t lcp = 0;
  while (lcp < n && head[lcp] == tokens[lcp]) ++lcp;
  return static_cast<int64_t>(lcp);
}

int64_t MessageIndexOfToken(const Tokenizer& tokenizer, const RenderedChat& chat,
                            std::span<const int32_t> tokens, int64_t token_index) {
  // The last i in [0, n] whose start is <= token_index (start 0 is always <= it).
  int64_t lo = 0;
  int64_t hi = static_cast<int64_t>(chat.message_offsets.size());
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (MessageTokenStart(tokenizer, chat, tokens, static_cast<size_t>(mid)) <= token_index) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

}  // namespace prefixd
