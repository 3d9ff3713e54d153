#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <queue>
#include <utility>

namespace prefixd {
namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

bool IsContinuationByte(uint8_t c) { return (c & 0xC0) == 0x80; }

// Length of the UTF-8 character starting at text[i], or 1 when the bytes there do not form a
// complete character (a stray continuation byte, a bad lead byte, a truncated sequence).
size_t CharLength(std::string_view text, size_t i) {
  const auto c = static_cast<uint8_t>(text[i]);
  size_t len = 1;
  if (c >= 0xC0 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
  } else if (c >= 0xF0 && c <= 0xF7) {
    len = 4;
  }
  if (len == 1 || i + len > text.size()) return 1;
  for (size_t k = 1; k < len; ++k) {
    if (!IsContinuationByte(static_cast<uint8_t>(text[i + k]))) return 1;
  }
  return len;
}

std::string EscapeSpaces(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 2);
  for (char c : text) {
    if (c == ' ') {
      out.append(kEscapedSpace);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string UnescapeSpaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (text.substr(i, kEscapedSpace.size()) == kEscapedSpace) {
      out.push_back(' ');
      i += kEscapedSpace.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte a "<0xXX>" token stands for, or -1 when `text` has another form.
int ParseByteToken(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  const int hi = HexDigit(text[3]);
  const int lo = HexDigit(text[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

bool IsSpecialType(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUserDefined ||
         type == TokenType::kUnknown;
}

// A symbol of the merge: a run of the fragment's bytes, linked to its neighbours. A symbol
// merged into its left neighbour keeps size 0.
struct Symbol {
  int prev;
  int next;
  size_t begin;
  size_t size;
};

// A candidate merge of two adjacent symbols whose concatenation is a token.
struct Bigram {
  float score;
  int left;
  int right;
  size_t size;  // bytes of the concatenation when it was queued; stale when it differs now
};

// Orders the queue: the highest score on top; equal scores, the leftmost pair first.
struct BigramLess {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

StatusOr<std::unique_ptr<SpmTokenizer>> SpmTokenizer::Create(Vocab vocab) {
  const size_t n = vocab.tokens.size();
  if (n > 0 && vocab.scores.size() != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("vocabulary has ", n, " tokens but ", vocab.scores.size(), " scores"));
  }
  RETURN_IF_ERROR(CheckVocabBasics(vocab, "SentencePiece"));
  for (size_t i = 0; i < n; ++i) {
    if (vocab.tokens[i].empty()) vocab.tokens[i] = absl::StrCat("[EMPTY_", i, "]");
  }

  std::unique_ptr<SpmTokenizer> tokenizer(new SpmTokenizer(std::move(vocab)));
  const Vocab& v = tokenizer->vocab_;
  tokenizer->token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto [it, inserted] =
        tokenizer->token_to_id_.emplace(v.tokens[i], static_cast<int32_t>(i));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          "duplicate token in vocabulary: '", v.tokens[i], "' has ids ", it->second, " and ", i));
    }
  }
  for (int b = 0; b < 256; ++b) {
    const std::string hex = absl::StrFormat("<0x%02X>", b);
    int32_t id = tokenizer->Find(hex);
    if (id < 0) id = tokenizer->Find(std::string(1, static_cast<char>(b)));
    tokenizer->byte_to_id_[b] = id >= 0 ? id : v.unk_id;
  }
  for (size_t i = 0; i < n; ++i) {
    if (IsSpecialType(v.token_types[i]))
      tokenizer->special_tokens_.push_back(static_cast<int32_t>(i));
  }
  // llama.cpp sorts by length alone (unstable); ties broken by id here so the order is fixed.
  std::stable_sort(tokenizer->special_tokens_.begin(), tokenizer->special_tokens_.end(),
                   [&v](int32_t a, int32_t b) { return v.tokens[a].size() > v.tokens[b].size(); });

  tokenizer->pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = v.tokens[i];
    switch (v.token_types[i]) {
      case TokenType::kNormal:
        tokenizer->pieces_[i] = UnescapeSpaces(text);
        break;
      case TokenType::kUserDefined:
        tokenizer->pieces_[i] = text;
        break;
      case TokenType::kByte: {
        const int byte = ParseByteToken(text);
        if (byte >= 0) tokenizer->pieces_[i] = std::string(1, static_cast<char>(byte));
        break;
      }
      default:  // control, unknown, unused, undefined: no text
        break;
    }
  }
  return tokenizer;
}

SpmTokenizer::SpmTokenizer(Vocab vocab) : Tokenizer(std::move(vocab)) {}

int32_t SpmTokenizer::Find(std::string_view text) const {
  // Debian's Abseil has its own string_view type, distinct from std::string_view.
  const auto it = token_to_id_.find(absl::string_view(text.data(), text.size()));
  return it == token_to_id_.end() ? -1 : it->second;
}

std::string SpmTokenizer::Piece(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) return "";
  return pieces_[id];
}

std::vector<SpmTokenizer::Fragment> SpmTokenizer::SplitOnSpecialTokens(std::string_view text,
                                                                       bool parse_special) const {
  std::vector<Fragment> fragments;
  if (text.empty()) return fragments;
  fragments.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  // Each special token, longest first, is cut out of every raw fragment left by the ones
  // before it, leftmost occurrence first (llama.cpp's tokenizer_st_partition).
  for (const int32_t id : special_tokens_) {
    const TokenType type = vocab_.token_types[id];
    // User-defined tokens are cut out even when special parsing is off.
    if (!parse_special && type != TokenType::kUserDefined) continue;
    const std::string& special = vocab_.tokens[id];
    next.clear();
    bool changed = false;
    for (const Fragment& fragment : fragments) {
      if (fragment.token >= 0) {
        next.push_back(fragment);
        continue;
      }
      const std::string_view raw = text.substr(fragment.begin, fragment.size);
      size_t pos = 0;
      while (true) {
        const size_t match = raw.find(special, pos);
        if (match == std::string_view::npos) break;
        changed = true;
        if (match > pos) next.push_back({-1, fragment.begin + pos, match - pos});
        next.push_back({id, 0, 0});
        pos = match + special.size();
      }
      if (pos < raw.size()) next.push_back({-1, fragment.begin + pos, raw.size() - pos});
    }
    if (changed) fragments.swap(next);
  }
  return fragments;
}

std::vector<int32_t> SpmTokenizer::Encode(std::string_view text,
                                          const EncodeOptions& options) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  const bool add_bos = options.add_bos.value_or(vocab_.add_bos) && vocab_.bos_id >= 0;
  const bool add_eos = options.add_eos.value_or(vocab_.add_eos) && vocab_.eos_id >= 0;
  if (add_bos) out.push_back(vocab_.bos_id);

  // The first raw fragment (unless the text continues earlier text) and every one after a
  // special token get the space prefix, whether or not BOS was added.
  bool prev_special = !options.continuation;
  std::string buffer;
  for (const Fragment& fragment : SplitOnSpecialTokens(text, options.parse_special)) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
      prev_special = true;
      continue;
    }
    buffer.clear();
    if (vocab_.add_space_prefix && prev_special) buffer.push_back(' ');
    buffer.append(text.substr(fragment.begin, fragment.size));
    EncodeFragment(EscapeSpaces(buffer), out);
    prev_special = false;
  }
  if (add_eos) out.push_back(vocab_.eos_id);
  return out;
}

void SpmTokenizer::EncodeFragment(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t offset = 0; offset < text.size();) {
    const size_t len = CharLength(text, offset);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offset + len == text.size() ? -1 : index + 1, offset, len});
    offset += len;
  }

  std::vector<Bigram> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue(BigramLess{},
                                                                     std::move(storage));
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const size_t size = symbols[left].size + symbols[right].size;
    const int32_t id = Find(text.substr(symbols[left].begin, size));
    if (id < 0) return;
    queue.push({vocab_.scores[id], left, right, size});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    // Stale: one side was merged away or grew since this pair was queued.
    if (left.size == 0 || right.size == 0 || left.size + right.size != bigram.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add(left.prev, bigram.left);
    try_add(bigram.left, left.next);
  }

  // Every merged symbol is a token by construction; only single characters can be missing
  // from the vocabulary, and those fall back to their bytes. (llama.cpp's re-segmentation of
  // non-token symbols through its merge history never finds a split for a single character.)
  for (int i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& symbol = symbols[i];
    const std::string_view piece = text.substr(symbol.begin, symbol.size);
    const int32_t id = Find(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (const char c : piece) {
      const int32_t byte_id = byte_to_id_[static_cast<uint8_t>(c)];
      if (byte_id >= 0) out.push_back(byte_id);
    }
  }
}

}  // namespace prefixd
