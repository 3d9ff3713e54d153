// Reply tokens in chat prompts: a chat whose assistant message repeats, byte for byte, a reply
// this server generated (ReplyRecord, same cache salt) is prompted with the ids the model
// generated for it, not with a new encoding of its text. Encoding a reply's text again often
// gives other ids than the ones generated (the model may pick any spelling of a word; a
// SentencePiece space, a merge across a boundary), and the prefix cache, which holds the
// generated ids, then misses from the reply's first differing token on, every turn.
//
// The template still renders the whole chat; only the reply's own bytes are taken as ids:
//
//   text:    [ ...previous turns, header ][ reply content ][ template tail, next turns ... ]
//   ids:     Encode(text before)           generated ids    Encode(text after, continuation)
//
// Where the template changed the content (Llama 3 trims it, Qwen3 drops the thinking of
// earlier turns), the longest run of the reply's whole tokens that the rendered message still
// contains is taken; the bytes around it are encoded as text. Among several places, the one
// right after the reply's own generation prompt is preferred: there the ids continue the
// previous prompt as the cache holds it.
//
// Thread safety: pure functions, except that EncodeChatWithReplies looks replies up in the
// (thread-safe) record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/openai_request.h"
#include "server/reply_record.h"
#include "server/tool_call_parser.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

// The record's key for a reply as the client got it and sends it back: its text outside tool
// calls (the message content) and, when it made calls, the ids the server gave them (ids are
// random and unique, so they name the reply; the calls' JSON is re-rendered by the template).
std::string ReplyKey(std::string_view content, std::span<const std::string> call_ids);
// The key a generated reply is recorded under (ReplyKey of what the client got): `text` is
// everything generated; with tool calls parsed (`syntax` not kNone), its text outside the
// calls and `call_ids`, the ids the writer gave them. nullopt when the calls parsed now are
// not the ones the client got (their number differs).
std::optional<std::string> GeneratedReplyKey(ToolCallSyntax syntax, std::string_view text,
                                             std::span<const std::string> call_ids);
// The ids of an assistant message's tool_calls (entries without a string id are skipped).
std::vector<std::string> CallIdsOf(const nlohmann::ordered_json& tool_calls);

// The reply a client got (`text`, everything generated, tool calls included, ill-formed UTF-8
// replaced as CompletionStream::text() has it), with the generated ids whose pieces spell it
// from its start once ill-formed UTF-8 in them is replaced: the ids stop before the first one
// that does not (a stop string cut the text inside it, or nothing is left), and never end
// inside a replaced character. `prompt_tail`: the prompt's generation prompt; its last 256
// bytes are kept.
GeneratedReply MakeGeneratedReply(const Tokenizer& tokenizer, std::string text,
                                  std::span<const int32_t> generated, std::string_view prompt_tail);

// Where a run of a reply's tokens lies in a rendered chat: tokens [token_begin, token_end)
// spell text [text_begin, text_end).
struct ReplySpan {
  size_t text_begin = 0;
  size_t text_end = 0;
  size_t token_begin = 0;
  size_t token_end = 0;
};

// The longest run of `reply`'s whole tokens (spelling at least one byte, starting and ending
// between characters: GeneratedReply::ends_between_chars) whose text occurs in
// text [begin, end); at an occurrence right after reply.prompt_tail when there is one, else at
// the first. Runs are tried from the longest (whole reply, then up to 4 tokens cut off its
// end, from every start), under a bound on the searches. nullopt when none occurs.
std::optional<ReplySpan> FindReplySpan(std::string_view text, size_t begin, size_t end, const GeneratedReply& reply);

// What the reply tokens did for one prompt (usage.prefix_cache.reply_tokens).
struct ReplyReuse {
  int num_messages = 0;     // assistant messages prompted with their generated ids
  int64_t num_tokens = 0;   // ids taken from generated replies
  // The prompt's ids equal the encoding of its text: the replies changed nothing but what the
  // cache can serve. Checked (one more encoding) only when num_messages > 0 and the text is
  // at most kMaxCheckedTextBytes; nullopt otherwise.
  std::optional<bool> matches_text_encoding;
};

struct ChatPromptTokens {
  std::vector<int32_t> tokens;
  ReplyReuse replies;
};

// The prompt ids of `chat` (rendered from `messages`): Encode(chat.text) where no assistant
// message repeats a reply `record` holds for `salt` (ReplyKey of its content and tool call
// ids), else the text around each such reply
// encoded as text and the reply's own ids in between (see the banner). `touch`: the replies
// found become the most recently used in the record.
ChatPromptTokens EncodeChatWithReplies(const Tokenizer& tokenizer, const RenderedChat& chat,
                                       std::span<const ChatMessage> messages, ReplyRecord& record,
                                       std::string_view salt, bool touch);

// Prompts longer than this are not encoded a second time to fill matches_text_encoding.
inline constexpr size_t kMaxCheckedTextBytes = size_t{256} << 10;

// {"messages", "tokens", "matches_text_encoding" (null when not checked)}.
nlohmann::json ReplyReuseJson(const ReplyReuse& r);
// /props: {"enabled", and when enabled the budgets and the record's counters}; null: off.
nlohmann::json ReplyRecordJson(const ReplyRecord* record);

}  // namespace prefixd
