// ChatFormat: the server's side of chat rendering. It turns a parsed request's messages,
// tools and chat_template_kwargs into what the model's chat template reads, and renders them
// with the model's ChatTemplate (tokenizer/chat_template.h: the template itself, ChatML when
// it is not supported, the plain format when the model has none), which also says where
// each message starts.
//
// Each message reaches the template as {"role", "content", "name"?, "tool_calls"?,
// "tool_call_id"?}: content is the text parts joined ("" for an assistant turn with only tool
// calls), "developer" already reads "system" (openai_request.h).
//
// Thread safety: immutable after construction; every method may be called from any thread.
#pragma once

#include <span>
#include <string_view>

#include <nlohmann/json.hpp>

#include "server/openai_request.h"
#include "tokenizer/chat_template.h"

namespace prefixd {

//
// Tool calls' arguments: OpenAI's clients send them as a string of JSON (and the Anthropic
// conversion writes `input` so), but many templates (Qwen2.5, Hermes, Llama 3.1, Mistral) print
// them with `tojson`, which would write that string escaped, not the JSON object the model was
// trained on and generated. Such a template (found once, by rendering a probe call whose
// arguments are a string) gets arguments that parse as a JSON object as that object (key order
// kept); a template that prints a string as it is (Qwen3) gets them as sent.
class ChatFormat {
 public:
  // `source`: the GGUF's tokenizer.chat_template ("" when the file has none).
  ChatFormat(std::string_view source, const Vocab& vocab);

  const ChatTemplate& chat_template() const { return template_; }
  const char* name() const { return template_.name(); }
  // The template escapes string arguments: they are passed as objects (above).
  bool object_arguments() const { return object_arguments_; }

  // Renders the request's chat followed by the generation prompt. InvalidArgument (for the
  // `messages` field) when the template refuses them (raise_exception: its message).
  // `blocks`: objects of the tools or messages whose rendered ends to find
  // (RenderedChat::block_ends; cache_breakpoints.h), or null.
  StatusOr<RenderedChat> Render(std::span<const ChatMessage> messages,
                                const nlohmann::ordered_json& tools,
                                const nlohmann::ordered_json& kwargs,
                                const nlohmann::ordered_json& blocks = nullptr) const;

 private:
  ChatTemplate template_;
  bool object_arguments_ = false;
};

// The object a chat template reads for `m`; with `object_arguments`, tool call arguments that
// are a string of a JSON object are that object.
nlohmann::ordered_json MessageJson(const ChatMessage& m, bool object_arguments = false);

}  // namespace prefixd
