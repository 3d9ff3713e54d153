// ChatTemplate: a model's chat template (the Jinja source in a GGUF's
// `tokenizer.chat_template`), rendered to the prompt text with where each message starts.
//
// Rendering runs the template itself (jinja_template.h) with the variables Hugging Face
// templates expect: messages, tools (when given), add_generation_prompt, bos_token,
// eos_token, and the request's chat_template_kwargs (e.g. enable_thinking). A template that
// does not parse is replaced by ChatML (kind kChatMlFallback, with the reason); a model
// without a template gets the plain format:
//
//   System: ...\nUser: ...\nAssistant: ...\nTool: ...\n   then "Assistant:" as the generation prompt
//
// (content that starts with a space follows the colon without another one, so a reply the
// model generated after "Assistant:" renders as it was generated).
//
// Message boundaries: message i starts at the first byte the template writes while it
// iterates over message i (RenderTrace), which is its header, wherever the template puts
// it; message 0 starts at byte 0 (BOS and any preamble belong to it). A message the template
// prints nothing for (a system message folded into another one) starts where the next one
// does. In tokens (MessageTokenStart), message i starts at the longest common prefix of
// Encode(text[0, offset_i]) and Encode(text): the token that crosses the boundary, if the
// tokenizer merged across it, belongs to the message it starts in.
//
//   text:   [<|im_start|>system\n...<|im_end|>\n][<|im_start|>user\n...<|im_end|>\n][<|im_start|>assistant\n]
//   offset: 0                                    m1                                  generation_offset
//
// Thread safety: immutable after construction; every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tokenizer/jinja_template.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

struct ChatRenderInput {
  jinja::Json messages = jinja::Json::array();  // message objects, as the template reads them
  jinja::Json tools;                            // null: no tools (the variable stays undefined)
  jinja::Json kwargs;                           // null or an object of extra template variables
  bool add_generation_prompt = true;
  // Objects of `messages` or `tools` (tools, tool calls) whose rendered ends to find
  // (RenderedChat::block_ends); null: none.
  jinja::Json blocks;
};

struct RenderedChat {
  std::string text;
  // Byte offset in `text` where message i starts; one per message, ascending, [0] == 0.
  std::vector<size_t> message_offsets;
  // Byte offset where the generation prompt starts (text.size() when there is none).
  size_t generation_offset = 0;
  // The text begins with the BOS token's text, so encoding must not add another BOS.
  bool starts_with_bos = false;
  // The model's template failed on this input and ChatML rendered it instead.
  bool used_fallback = false;
  // Per ChatRenderInput::blocks entry: the byte offset where the template's iteration over
  // that object ended (jinja::RenderTrace::block_end), npos when no loop iteration over it
  // printed anything.
  std::vector<size_t> block_ends;
};

class ChatTemplate {
 public:
  enum class Kind { kJinja, kChatMlFallback, kPlain };

  // The template for a GGUF's `tokenizer.chat_template` ("" when absent), with the BOS and
  // EOS token texts of `vocab`. Never fails: see the banner for what replaces a bad template.
  static ChatTemplate FromSource(std::string_view source, const Vocab& vocab);
  // The built-in ChatML template (what a template that fails at render time falls back to).
  static ChatTemplate ChatMl(const Vocab& vocab);

  Kind kind() const { return kind_; }
  // "jinja", "chatml" or "plain".
  const char* name() const;
  // The Jinja source in use (the built-in one for ChatML and plain).
  const std::string& source() const { return source_; }
  // Why the model's template was replaced by ChatML ("" when it was not).
  const std::string& fallback_reason() const { return fallback_reason_; }

  // InvalidArgument when the template refuses the messages (raise_exception: its message).
  // When the model's template fails otherwise (a construct this subset lacks), the request
  // is rendered with ChatML instead, and a warning is logged the first time.
  StatusOr<RenderedChat> Render(const ChatRenderInput& input) const;

 private:
  ChatTemplate(Kind kind, std::string source, jinja::Template tmpl, const Vocab& vocab);
  StatusOr<RenderedChat> RenderOnce(const ChatRenderInput& input) const;

  Kind kind_;
  std::string source_;
  jinja::Template template_;
  std::string bos_token_, eos_token_;
  std::string fallback_reason_;
  std::shared_ptr<const ChatTemplate> chatml_;      // kJinja: what a failing render falls back to
  std::shared_ptr<std::atomic<bool>> warned_;       // the fallback warning was logged
};

// The options a prompt text is encoded with, for generation and the probe alike: the
// vocabulary's BOS handling (none added when the text already starts with it), no EOS,
// special tokens parsed.
EncodeOptions PromptEncodeOptions();
EncodeOptions ChatEncodeOptions(const RenderedChat& chat);

// Token index where message `i` of `chat` starts in `tokens` (= Encode(chat.text,
// ChatEncodeOptions(chat))); see the banner. i == number of messages gives the start of the
// generation prompt. One encoding of the text before the message.
int64_t MessageTokenStart(const Tokenizer& tokenizer, const RenderedChat& chat,
                          std::span<const int32_t> tokens, size_t i);
// All message starts (one per message), ascending.
std::vector<int64_t> MessageTokenStarts(const Tokenizer& tokenizer, const RenderedChat& chat,
                                        std::span<const int32_t> tokens);

// Where each message and the generation prompt start in the prompt's tokens, found from one
// render and one encoding: the tokens are walked once against the text, each token's piece
// consuming the bytes it stands for, and message i starts at the token that contains its
// first byte (the token that crosses the boundary, if the tokenizer merged across it, belongs
// to the message it starts in: the same rule as MessageTokenStart, which re-encodes the text
// before every message and costs time quadratic in the chat's length).
//
//   text:    [BOS][User: hi\n][Assistant: ...\n][Assistant:]
//   tokens:   0    1 2 3 4     5 6 7 ...          n-2 n-1
//   starts:   0    (BOS is message 0's)  5        generation_start = n-2
struct ChatTokenStarts {
  std::vector<int64_t> message_starts;  // one per message, ascending, [0] == 0
  int64_t generation_start = 0;         // where the generation prompt starts

  // The index of the message whose tokens contain token `token_index`; the number of
  // messages when it falls in the generation prompt. O(log n).
  int64_t MessageOf(int64_t token_index) const;
};

// `tokens` is Encode(chat.text, ChatEncodeOptions(chat)). Linear in the text's length and
// the number of tokens and messages. A tokenizer whose pieces do not spell the text (a
// normalizing vocabulary, unknown tokens) falls back to MessageTokenStart per message while
// that re-encodes at most 32 MiB, and past that to the pieces' lengths as byte counts.
ChatTokenStarts FindChatTokenStarts(const Tokenizer& tokenizer, const RenderedChat& chat,
                                    std::span<const int32_t> tokens);

// Where each token of `tokens` ends in `text`, when the tokens' pieces spell `text` (BOS
// and other control tokens stand for no bytes, unless the text spells them; SentencePiece's
// added space prefix stands for none); nullopt when they do not.
std::optional<std::vector<size_t>> TokenByteEnds(const Tokenizer& tokenizer, std::string_view text,
                                                 std::span<const int32_t> tokens);

// For each byte offset p of `offsets`: how many leading tokens of `tokens` it takes to cover
// text[0, p), the token holding byte p - 1 included (0 for p == 0). `tokens` spell `text`
// (TokenByteEnds); when they do not, each token counts its piece's length in bytes (close:
// only a normalizing vocabulary or unknown tokens get there).
std::vector<int64_t> TokensCoveringBytes(const Tokenizer& tokenizer, std::string_view text,
                                         std::span<const int32_t> tokens,
                                         std::span<const size_t> offsets);

// The index of the message whose tokens contain token `token_index` (binary search over
// MessageTokenStart, O(log n) encodings); the number of messages when it falls in the
// generation prompt.
int64_t MessageIndexOfToken(const Tokenizer& tokenizer, const RenderedChat& chat,
                            std::span<const int32_t> tokens, int64_t token_index);

}  // namespace prefixd
