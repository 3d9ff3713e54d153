#include "tokenizer/chat_template.h"

#include <algorithm>

#include "base/log.h"

namespace prefixd {

namespace {

// ChatML as llama.cpp and most ChatML models render it; content null (a tool-call-only turn)
// prints as empty.
constexpr std::string_view kChatMl =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' ~ message.role ~ '\\n' ~ (message.content or '') ~ '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

// For models without a template (tiny test models): one line per message. Content that
// starts with a space follows the colon directly: the generation prompt ends at the colon and
// a SentencePiece model's reply starts with a space, so the reply sent back renders exactly as
// the prompt and the generated tokens spelled it (its tokens can then be reused).
constexpr std::string_view kPlain =
    "{%- for message in messages %}"
    "{%- set role = 'System' if message.role in ['system', 'developer'] else message.role %}"
    "{%- set content = message.content or '' %}"
    "{{- role[0] | upper ~ role[1:] ~ ':' ~ ('' if content[:1] == ' ' else ' ') ~ content ~ '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'Assistant:' }}{%- endif %}";

std::string TokenText(const Vocab& vocab, int32_t id) {
  if (id < 0 || id >= static_cast<int32_t>(vocab.tokens.size())) return "";
  return vocab.tokens[static_cast<size_t>(id)];
}

jinja::Template MustParse(std::string_view source) {
  auto t = jinja::Template::Parse(source);
  if (!t.ok()) {
    SPDLOG_CRITICAL("built-in chat template does not parse: {}", t.status().ToString());
    std::abort();
  }
  return *std::move(t);
}

}  // namespace

ChatTemplate::ChatTemplate(Kind kind, std::string source, jinja::Template tmpl, const Vocab& vocab)
    : kind_(kind),
      source_(std::move(source)),
      template_(std::move(tmpl)),
      bos_token_(TokenText(vocab, vocab.bos_id)),
      eos_token_(TokenText(vocab, vocab.eos_id)) {}

ChatTemplate ChatTemplate::FromSource(std::string_view source, const Vocab& vocab) {
  if (source.empty()) return ChatTemplate(Kind::kPlain, std::string(kPlain), MustParse(kPlain), vocab);
  auto parsed = jinja::Template::Parse(source);
  if (parsed.ok()) {
    ChatTemplate t(Kind::kJinja, std::string(source), *std::move(parsed), vocab);
    t.chatml_ = std::make_shared<const ChatTemplate>(ChatMl(vocab));
    t.warned_ = std::make_shared<std::atomic<bool>>(false);
    return t;
  }
  SPDLOG_WARN("the model's chat template is not supported ({}); chat requests use ChatML instead",
              std::string(parsed.status().message()));
  ChatTemplate t = ChatMl(vocab);
  t.fallback_reason_ = std::string(parsed.status().message());
  return t;
}

ChatTemplate ChatTemplate::ChatMl(const Vocab& vocab) {
  return ChatTemplate(Kind::kChatMlFallback, std::string(kChatMl), MustParse(kChatMl), vocab);
}

const char* ChatTemplate::name() const {
  switch (kind_) {
    case Kind::kJinja: return "jinja";
    case Kind::kChatMlFallback: return "chatml";
    case Kind::kPlain: return "plain";
  }
  return "plain";
}

StatusOr<RenderedChat> ChatTemplate::Render(const ChatRenderInput& input) const {
  StatusOr<RenderedChat> out = RenderOnce(input);
  if (out.ok() || kind_ != Kind::kJinja || !absl::IsFailedPrecondition(out.status())) return out;
  if (!warned_->exchange(true)) {
    SPDLOG_WARN("the model's chat template failed ({}); such requests use ChatML instead",
                std::string(out.status().message()));
  }
  out = chatml_->RenderOnce(input);
  if (out.ok()) out->used_fallback = true;
  return out;
}

StatusOr<RenderedChat> ChatTemplate::RenderOnce(const ChatRenderInput& input) const {
  jinja::Json context = jinja::Json::object();
  if (input.kwargs.is_object()) context = input.kwargs;
  context["messages"] = input.messages;
  if (!input.tools.is_null()) context["tools"] = input.tools;
  context["add_generation_prompt"] = input.add_generation_prompt;
  context["bos_token"] = bos_token_;
  context["eos_token"] = eos_token_;

  jinja::RenderTrace trace;
  trace.items = &input.messages;
  if (input.blocks.is_array()) trace.blocks = &input.blocks;
  RenderedChat out;
  ASSIGN_OR_RETURN(out.text, template_.Render(context, &trace));

  const size_t n = input.messages.size();
  // The generation prompt follows the last output of a message's iteration. Without any (a
  // template that does not loop over the messages themselves), it is taken as empty.
  const bool traced = std::any_of(trace.first_output.begin(), trace.first_output.end(),
                                  [](size_t o) { return o != std::string::npos; });
  out.generation_offset = out.text.size();
  if (input.add_generation_prompt && (traced || n == 0)) out.generation_offset = trace.last_output_end;
  out.message_offsets.assign(n, 0);
  // Messages printed nothing for start where the next printed one does.
  size_t next = out.generation_offset;
  for (size_t i = n; i-- > 0;) {
    if (trace.first_output[i] != std::string::npos) next = trace.first_output[i];
    out.message_offsets[i] = next;
  }
  if (n > 0) out.message_offsets[0] = 0;
  for (size_t i = 1; i < n; ++i) out.message_offsets[i] = std::max(out.message_offsets[i], out.message_offsets[i - 1]);
  if (n > 0) out.generation_offset = std::max(out.generation_offset, out.message_offsets.back());
  out.starts_with_bos = !bos_token_.empty() && out.text.starts_with(bos_token_);
  out.block_ends = std::move(trace.block_end);
  return out;
}

EncodeOptions PromptEncodeOptions() {
  EncodeOptions o;
  o.add_eos = false;
  o.parse_special = true;
  return o;
}

EncodeOptions ChatEncodeOptions(const RenderedChat& chat) {
  EncodeOptions o = PromptEncodeOptions();
  if (chat.starts_with_bos) o.add_bos = false;
  return o;
}

int64_t MessageTokenStart(const Tokenizer& tokenizer, const RenderedChat& chat,
                          std::span<const int32_t> tokens, size_t i) {
  if (i == 0) return 0;
  const size_t offset = i < chat.message_offsets.size() ? chat.message_offsets[i] : chat.generation_offset;
  const std::vector<int32_t> head =
      tokenizer.Encode(std::string_view(chat.text).substr(0, offset), ChatEncodeOptions(chat));
  const size_t n = std::min(head.size(), tokens.size());
  size_t lcp = 0;
  while (lcp < n && head[lcp] == tokens[lcp]) ++lcp;
  return static_cast<int64_t>(lcp);
}

std::vector<int64_t> MessageTokenStarts(const Tokenizer& tokenizer, const RenderedChat& chat,
                                        std::span<const int32_t> tokens) {
  std::vector<int64_t> starts;
  for (size_t i = 0; i < chat.message_offsets.size(); ++i) {
    starts.push_back(MessageTokenStart(tokenizer, chat, tokens, i));
  }
  return starts;
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

int64_t ChatTokenStarts::MessageOf(int64_t token_index) const {
  // generation_start is at or after every message start.
  if (token_index >= generation_start) return static_cast<int64_t>(message_starts.size());
  // The last message starting at or before the token (message 0 starts at 0).
  const auto it = std::upper_bound(message_starts.begin(), message_starts.end(), token_index);
  return std::max<int64_t>(0, (it - message_starts.begin()) - 1);
}

namespace {

// TokenByteEnds; with `tolerant`, a token whose piece does not match the text still moves on
// by its piece's length (clamped to the text), and the walk never fails.
std::optional<std::vector<size_t>> WalkPieces(const Tokenizer& tokenizer, std::string_view text,
                                              std::span<const int32_t> tokens, bool tolerant) {
  const Vocab& vocab = tokenizer.vocab();
  std::vector<size_t> ends;
  ends.reserve(tokens.size());
  size_t pos = 0;
  for (const int32_t id : tokens) {
    const bool known = id >= 0 && static_cast<size_t>(id) < vocab.tokens.size();
    const TokenType type = known ? vocab.token_types[id] : TokenType::kUndefined;
    // A special token parsed out of the text (<|im_start|>, a BOS the template printed)
    // stands for its own text, whatever its piece says.
    if ((type == TokenType::kControl || type == TokenType::kUserDefined) && !vocab.tokens[id].empty() &&
        text.compare(pos, vocab.tokens[id].size(), vocab.tokens[id]) == 0) {
      pos += vocab.tokens[id].size();
      ends.push_back(pos);
      continue;
    }
    const std::string piece = tokenizer.Piece(id);
    if (text.compare(pos, piece.size(), piece) == 0) {
      pos += piece.size();  // also a control token's empty piece (BOS added by the encoder)
    } else if (!piece.empty() && piece[0] == ' ' &&
               text.compare(pos, piece.size() - 1, std::string_view(piece).substr(1)) == 0) {
      pos += piece.size() - 1;  // SentencePiece's space prefix, which is not in the text
    } else if (tolerant) {
      pos = std::min(text.size(), pos + piece.size());
    } else {
      return std::nullopt;
    }
    ends.push_back(pos);
  }
  if (pos != text.size() && !tolerant) return std::nullopt;
  return ends;
}

}  // namespace

std::optional<std::vector<size_t>> TokenByteEnds(const Tokenizer& tokenizer, std::string_view text,
                                                 std::span<const int32_t> tokens) {
  return WalkPieces(tokenizer, text, tokens, /*tolerant=*/false);
}

std::vector<int64_t> TokensCoveringBytes(const Tokenizer& tokenizer, std::string_view text,
                                         std::span<const int32_t> tokens,
                                         std::span<const size_t> offsets) {
  std::optional<std::vector<size_t>> ends = TokenByteEnds(tokenizer, text, tokens);
  if (!ends) ends = WalkPieces(tokenizer, text, tokens, /*tolerant=*/true);
  std::vector<int64_t> out;
  out.reserve(offsets.size());
  for (const size_t p : offsets) {
    if (p == 0) {
      out.push_back(0);
      continue;
    }
    // The first token ending at or past p holds byte p - 1; it and every one before it.
    const auto it = std::lower_bound(ends->begin(), ends->end(), p);
    out.push_back(it == ends->end() ? static_cast<int64_t>(ends->size())
                                    : static_cast<int64_t>(it - ends->begin()) + 1);
  }
  return out;
}

ChatTokenStarts FindChatTokenStarts(const Tokenizer& tokenizer, const RenderedChat& chat,
                                    std::span<const int32_t> tokens) {
  ChatTokenStarts out;
  const size_t n = chat.message_offsets.size();
  std::optional<std::vector<size_t>> ends = TokenByteEnds(tokenizer, chat.text, tokens);
  if (!ends) {
    // The pieces do not spell the text (a normalizing vocabulary, unknown tokens). Encoding
    // every prefix again is exact but quadratic: done while it stays under a budget of
    // re-encoded bytes, so a client cannot buy minutes of CPU with a long chat; beyond it,
    // the walk goes on past a piece that does not match by its length (close: normalization
    // changes few bytes).
    constexpr size_t kReencodeBudget = size_t{32} << 20;
    size_t cost = 0;
    for (size_t i = 1; i < n; ++i) cost += chat.message_offsets[i];
    if (cost + chat.generation_offset <= kReencodeBudget) {
      out.message_starts = MessageTokenStarts(tokenizer, chat, tokens);
      out.generation_start = MessageTokenStart(tokenizer, chat, tokens, n);
      return out;
    }
    ends = WalkPieces(tokenizer, chat.text, tokens, /*tolerant=*/true);
  }
  // Boundary b starts at the first token that ends past it: the token holding its first byte.
  // The offsets ascend, so one pointer walks the tokens once.
  size_t t = 0;
  auto start_at = [&](size_t offset) {
    while (t < ends->size() && (*ends)[t] <= offset) ++t;
    return static_cast<int64_t>(t);
  };
  out.message_starts.reserve(n);
  for (size_t i = 0; i < n; ++i) out.message_starts.push_back(i == 0 ? 0 : start_at(chat.message_offsets[i]));
  out.generation_start = n == 0 ? 0 : start_at(chat.generation_offset);
  return out;
}

}  // namespace prefixd
