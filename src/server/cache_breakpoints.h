// Where each cache_control breakpoint of a chat request ends in its prompt (cache_retention.h
// says what a breakpoint keeps): the end of the marked block as the chat template rendered it,
// in tokens. Templates put blocks where they like (Qwen prints the tools after the system
// text, Llama 3 inside the first user message), so the template itself is asked:
//
//   a tool, a tool call   the render traces where the template's loop iteration over that
//                         object ended (jinja::RenderTrace::blocks), in the same render that
//                         builds the prompt
//   text in a message     the chat is rendered once more with a sentinel inserted into the
//                         message's content where the block's text ends; the sentinel's offset
//                         is the block's end when the text minus the sentinel equals the real
//                         render byte for byte (a template that trims, splits or escapes the
//                         content around it fails that check)
//
//   rendered:  <|im_start|>system\nS1 S2<|im_end|>\n ... {"name": "f", ...}\n</tools> ...
//   block end:                       ^ S1's end                        ^ tool f's end
//
// A breakpoint keeps what Anthropic's order (tools, system, messages) puts at or before its
// block, so every breakpoint but a tool's also reaches the end of the tools as rendered. What
// cannot be located falls back to the end of the message holding the block (the end of the
// first message for tools a template prints without a loop over them); tools the template does
// not print at all add nothing. Bytes become tokens by TokensCoveringBytes: a token that
// crosses the block's end is inside it.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "server/chat_format.h"
#include "server/openai_request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

// The objects whose rendered ends the breakpoints of `r` may need, for
// ChatRenderInput::blocks: the tools, then each message's tool calls in order. Null when `r`
// has no breakpoints (nothing is traced).
nlohmann::ordered_json BreakpointBlocks(const ChatFormat& format, const OpenAiRequest& r);

// Per r.retention.breakpoints entry: the number of leading prompt tokens up to the end of its
// block. `chat` was rendered with BreakpointBlocks(r) traced; `tokens` are the prompt's (they
// spell chat.text).
std::vector<int64_t> BreakpointTokenEnds(const ChatFormat& format, const OpenAiRequest& r,
                                         const RenderedChat& chat, const Tokenizer& tokenizer,
                                         std::span<const int32_t> tokens);

// The byte offsets in chat.text of the same ends (BreakpointTokenEnds before the tokens).
std::vector<size_t> BreakpointByteEnds(const ChatFormat& format, const OpenAiRequest& r,
                                       const RenderedChat& chat);

}  // namespace prefixd
