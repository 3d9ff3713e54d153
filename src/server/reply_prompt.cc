#include "server/reply_prompt.h"

#include <algorithm>
#include <cstddef>
#include <memory>

namespace prefixd {

namespace {

constexpr size_t kMaxPromptTail = 256;
// Runs tried with tokens cut off the reply's end (a template that trims trailing space).
constexpr size_t kMaxEndCut = 4;
// Searches of the message per reply: a long reply that the template changed everywhere costs
// a bounded amount of time, not one search per pair of token boundaries.
constexpr int kMaxSearches = 1024;

EncodeOptions ContinuationOptions() {
  EncodeOptions o = PromptEncodeOptions();
  o.add_bos = false;
  o.continuation = true;
  return o;
}

// The first occurrence of `needle` in text [begin, end) that follows `tail` directly, else the
// first occurrence; nullopt when there is none.
std::optional<size_t> Locate(std::string_view text, size_t begin, size_t end, std::string_view needle,
                             std::string_view tail) {
  const std::string_view hay = text.substr(0, end);
  std::optional<size_t> first;
  for (size_t pos = hay.find(needle, begin); pos != std::string_view::npos; pos = hay.find(needle, pos + 1)) {
    if (!first) first = pos;
    if (!tail.empty() && pos >= tail.size() && text.compare(pos - tail.size(), tail.size(), tail) == 0) return pos;
    if (tail.empty()) break;
  }
  return first;
}

// The first segment gets the chat's BOS handling; the others continue it.
void AppendEncoded(const Tokenizer& tokenizer, const RenderedChat& chat, std::string_view text, bool first,
                   std::vector<int32_t>& out) {
  if (!first && text.empty()) return;
  const std::vector<int32_t> ids = tokenizer.Encode(text, first ? ChatEncodeOptions(chat) : ContinuationOptions());
  out.insert(out.end(), ids.begin(), ids.end());
}

struct Splice {
  ReplySpan span;
  std::shared_ptr<const GeneratedReply> reply;
};

}  // namespace

std::string ReplyKey(std::string_view content, std::span<const std::string> call_ids) {
  std::string key(content);
  // NUL cannot occur in an id the server made, so content and ids cannot be confused.
  for (const std::string& id : call_ids) {
    key += '\0';
    key += id;
  }
  return key;
}

std::optional<std::string> GeneratedReplyKey(ToolCallSyntax syntax, std::string_view text,
                                             std::span<const std::string> call_ids) {
  if (syntax == ToolCallSyntax::kNone) return ReplyKey(text, call_ids);
  ParsedToolCalls parsed = ParseToolCalls(syntax, text);
  if (parsed.calls.size() != call_ids.size()) return std::nullopt;
  return ReplyKey(parsed.text, call_ids);
}

std::vector<std::string> CallIdsOf(const nlohmann::ordered_json& tool_calls) {
  std::vector<std::string> ids;
  if (!tool_calls.is_array()) return ids;
  for (const auto& call : tool_calls) {
    if (call.is_object() && call.contains("id") && call["id"].is_string()) ids.push_back(call["id"].get<std::string>());
  }
  return ids;
}

GeneratedReply MakeGeneratedReply(const Tokenizer& tokenizer, std::string text, std::span<const int32_t> generated,
                                  std::string_view prompt_tail) {
  GeneratedReply r;
  r.text = std::move(text);
  r.prompt_tail = std::string(prompt_tail.substr(prompt_tail.size() - std::min(prompt_tail.size(), kMaxPromptTail)));
  size_t pos = 0;
  for (const int32_t id : generated) {
    const std::string piece = tokenizer.Piece(id);
    if (pos + piece.size() > r.text.size() || r.text.compare(pos, piece.size(), piece) != 0) break;
    pos += piece.size();
    r.tokens.push_back(id);
    r.ends.push_back(static_cast<uint32_t>(pos));
  }
  return r;
}

std::optional<ReplySpan> FindReplySpan(std::string_view text, size_t begin, size_t end, const GeneratedReply& reply) {
  const size_t n = reply.tokens.size();
  if (n == 0 || begin >= end || end > text.size()) return std::nullopt;
  const std::string_view reply_text(reply.text);
  std::optional<ReplySpan> best;
  int searches = 0;
  for (size_t tb = 0; tb < n && searches < kMaxSearches; ++tb) {
    // No run from here on can be longer than the best one found.
    if (best && n - tb <= best->token_end - best->token_begin) break;
    const size_t lowest_end = n > kMaxEndCut ? std::max(tb + 1, n - kMaxEndCut) : tb + 1;
    for (size_t te = n; te >= lowest_end && searches < kMaxSearches; --te) {
      if (best && te - tb <= best->token_end - best->token_begin) break;
      const size_t from = reply.start_of(tb);
      const size_t to = reply.ends[te - 1];
      if (to == from) break;  // shorter runs spell no bytes either
      ++searches;
      const std::optional<size_t> at = Locate(text, begin, end, reply_text.substr(from, to - from), reply.prompt_tail);
      if (at) {
        best = ReplySpan{*at, *at + (to - from), tb, te};
        break;
      }
    }
  }
  return best;
}

ChatPromptTokens EncodeChatWithReplies(const Tokenizer& tokenizer, const RenderedChat& chat,
                                       std::span<const ChatMessage> messages, ReplyRecord& record,
                                       std::string_view salt, bool touch) {
  std::vector<Splice> splices;
  const size_t n = std::min(messages.size(), chat.message_offsets.size());
  for (size_t i = 0; i < n; ++i) {
    const ChatMessage& m = messages[i];
    if (m.role != "assistant") continue;
    const std::vector<std::string> ids = CallIdsOf(m.tool_calls);
    if (m.content.empty() && ids.empty()) continue;
    std::shared_ptr<const GeneratedReply> reply = record.Find(salt, ReplyKey(m.content, ids), touch);
    if (!reply) continue;
    // The message's bytes, and never before the end of the last reply taken.
    size_t begin = chat.message_offsets[i];
    if (!splices.empty()) begin = std::max(begin, splices.back().span.text_end);
    const size_t end = i + 1 < n ? chat.message_offsets[i + 1] : chat.generation_offset;
    if (std::optional<ReplySpan> span = FindReplySpan(chat.text, begin, end, *reply)) {
      splices.push_back(Splice{*span, std::move(reply)});
    }
  }

  ChatPromptTokens out;
  const std::string_view text(chat.text);
  size_t cursor = 0;
  bool first = true;
  for (const Splice& s : splices) {
    AppendEncoded(tokenizer, chat, text.substr(cursor, s.span.text_begin - cursor), first, out.tokens);
    first = false;
    const auto ids = s.reply->tokens.begin();
    out.tokens.insert(out.tokens.end(), ids + static_cast<std::ptrdiff_t>(s.span.token_begin),
                      ids + static_cast<std::ptrdiff_t>(s.span.token_end));
    out.replies.num_messages += 1;
    out.replies.num_tokens += static_cast<int64_t>(s.span.token_end - s.span.token_begin);
    cursor = s.span.text_end;
  }
  AppendEncoded(tokenizer, chat, text.substr(cursor), first, out.tokens);
  // One more encoding, only for prompts that took replies and not too long (every turn of a
  // long agent chat would pay it): whether the replies changed the ids.
  if (!splices.empty() && text.size() <= kMaxCheckedTextBytes) {
    out.replies.matches_text_encoding = out.tokens == tokenizer.Encode(text, ChatEncodeOptions(chat));
  }
  return out;
}

nlohmann::json ReplyReuseJson(const ReplyReuse& r) {
  return nlohmann::json{{"messages", r.num_messages},
                        {"tokens", r.num_tokens},
                        {"matches_text_encoding", r.matches_text_encoding.has_value()
                                                      ? nlohmann::json(*r.matches_text_encoding)
                                                      : nlohmann::json(nullptr)}};
}

nlohmann::json ReplyRecordJson(const ReplyRecord* record) {
  if (record == nullptr) return nlohmann::json{{"enabled", false}};
  const ReplyRecord::Stats s = record->stats();
  return nlohmann::json{{"enabled", true},
                        {"max_bytes", record->options().max_bytes},
                        {"max_entries", record->options().max_entries},
                        {"entries", s.num_entries},
                        {"bytes", s.bytes},
                        {"hits", s.hits},
                        {"misses", s.misses},
                        {"evictions", s.evictions}};
}

}  // namespace prefixd
