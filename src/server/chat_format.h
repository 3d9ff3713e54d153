// ChatFormat: renders chat `messages` to the prompt text the model was trained on, and says
// where each message starts, in bytes of the text and in tokens of its encoding.
//
// The GGUF's `tokenizer.chat_template` (a Jinja source) is not executed: it is recognised by
// a marker and rendered by a built-in renderer that follows llama.cpp's for that family.
//
//   kind      recognised by            one message                                 generation prompt
//   kChatMl   "<|im_start|>"           <|im_start|>ROLE\nCONTENT<|im_end|>\n       <|im_start|>assistant\n
//   kLlama3   "<|start_header_id|>"    <|start_header_id|>ROLE<|end_header_id|>\n\n
//                                      CONTENT(trimmed)<|eot_id|>                  <|start_header_id|>assistant<|end_header_id|>\n\n
//   kLlama2   "[INST]"                 [INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ASSISTANT</s>...
//   kPlain    anything else / none     "System: C\n", "User: C\n", "Assistant: C\n", "Tool: C\n"
//                                                                                  "Assistant:"
//
// BOS is not part of the text: the tokenizer adds it when the vocabulary says so (Llama 2 and
// 3 do), exactly as for a completion prompt. `tools` and `chat_template_kwargs` do not change
// what the built-in renderers produce.
//
// Message boundaries in tokens: message i starts at the length of the longest common prefix
// of Encode(text[0, offset_i]) and Encode(text) (the encoding of the text before the message,
// clipped where the tokenizer merged across the boundary). Message 0 starts at token 0.
//
//   text:   [System: Be brief.\n][User: Hi\n][Assistant:]
//   bytes:  0                    18          27
//   tokens: 0 (BOS ...)          m1          m2            (m = LCP as above)
//
// Thread safety: immutable after construction; every method may be called from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

enum class ChatTemplateKind { kPlain, kChatMl, kLlama2, kLlama3 };
const char* ChatTemplateName(ChatTemplateKind kind);

struct RenderedChat {
  std::string text;
  // Byte offset in `text` where message i's rendering starts; one per message, ascending.
  std::vector<size_t> message_offsets;
  // Byte offset where the generation prompt (the assistant header) starts.
  size_t generation_offset = 0;
};

class ChatFormat {
 public:
  // The format for a GGUF's `tokenizer.chat_template` source ("" when the file has none).
  static ChatFormat FromTemplate(std::string_view template_source);
  explicit ChatFormat(ChatTemplateKind kind) : kind_(kind) {}

  ChatTemplateKind kind() const { return kind_; }
  const char* name() const { return ChatTemplateName(kind_); }

  // Renders `messages` followed by the generation prompt for the assistant's reply.
  RenderedChat Render(std::span<const ChatMessage> messages) const;

 private:
  ChatTemplateKind kind_;
};

// The tokens a prompt text is encoded with, for generation and the probe alike: the
// vocabulary's BOS handling, no EOS, special tokens parsed.
EncodeOptions PromptEncodeOptions();

// Token index where message `i` of `chat` starts in `tokens` (= Encode(chat.text)); see the
// banner. i == number of messages gives the start of the generation prompt.
int64_t MessageTokenStart(const Tokenizer& tokenizer, const RenderedChat& chat,
                          std::span<const int32_t> tokens, size_t i);

// The index of the message whose tokens contain token `token_index` (binary search over
// MessageTokenStart, O(log n) encodings); the number of messages when it falls in the
// generation prompt.
int64_t MessageIndexOfToken(const Tokenizer& tokenizer, const RenderedChat& chat,
                            std::span<const int32_t> tokens, int64_t token_index);

}  // namespace prefixd
