#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <queue>
#include <utility>

#include "tokenizer/byte_level.h"

namespace prefixd {
namespace {

bool IsAddedType(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUserDefined ||
         type == TokenType::kUnknown;
}


// A symbol of a word being merged: a token covering a run of the word's bytes, linked to its
// neighbours. A symbol merged into its left neighbour is dead (id -1).
struct Symbol {
  int32_t id;
  int prev;
  int next;
};

// A candidate merge of the symbols at `left` and `right` as they were when it was queued.
struct Candidate {
  int32_t rank;
  int left;
  int right;
  int32_t left_id;
  int32_t right_id;
  int32_t result;
};

// Orders the queue: the lowest rank on top; equal ranks, the leftmost pair first.
struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(Vocab vocab) {
  RETURN_IF_ERROR(CheckVocabBasics(vocab, "byte-level BPE"));
  ASSIGN_OR_RETURN(std::unique_ptr<PreTokenizer> pre, PreTokenizer::Create(vocab.pre));
  ASSIGN_OR_RETURN(const Normalizer normalizer, ParseNormalizer(vocab.normalizer));
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer(std::move(vocab)));
  t->pre_ = std::move(pre);
  t->normalizer_ = normalizer;
  const Vocab& v = t->vocab_;
  const size_t n = v.tokens.size();
  t->token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) t->token_to_id_.emplace(v.tokens[i], static_cast<int32_t>(i));
  RETURN_IF_ERROR(t->BuildMerges());

  for (int b = 0; b < 256; ++b) {
    const int32_t id = t->Find(ByteToUnicode(static_cast<uint8_t>(b)));
    t->byte_to_id_[b] = id >= 0 ? id : v.unk_id;
  }
  for (size_t i = 0; i < n; ++i) {
    if (IsAddedType(v.token_types[i]) && !v.tokens[i].empty()) {
      t->added_by_first_byte_[static_cast<uint8_t>(v.tokens[i][0])].push_back(
          static_cast<int32_t>(i));
    }
  }
  for (auto& candidates : t->added_by_first_byte_) {
    std::stable_sort(candidates.begin(), candidates.end(), [&v](int32_t a, int32_t b) {
      return v.tokens[a].size() > v.tokens[b].size();
    });
  }

  t->pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    switch (v.token_types[i]) {
      case TokenType::kNormal:
      case TokenType::kUndefined:
      case TokenType::kByte:
        t->pieces_[i] = ByteLevelDecode(v.tokens[i]);
        break;
      case TokenType::kUserDefined:
        t->pieces_[i] = v.tokens[i];
        break;
      default:  // control, unknown, unused: no text
        break;
    }
  }
  return t;
}

BpeTokenizer::BpeTokenizer(Vocab vocab) : Tokenizer(std::move(vocab)) {}

Status BpeTokenizer::BuildMerges() {
  const std::vector<std::string>& merges = vocab_.merges;
  merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    // The separator is the first space after the first character: byte-level token texts
    // hold no spaces, but llama.cpp searches from 1 so that a side could start with one.
    const size_t space = merge.find(' ', 1);
    if (space == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "merge ", rank, " ('", merge, "') is not two tokens separated by a space"));
    }
    const std::string_view text(merge);
    const int32_t left = Find(text.substr(0, space));
    const int32_t right = Find(text.substr(space + 1));
    joined.assign(merge, 0, space);
    joined.append(merge, space + 1);
    const int32_t result = Find(joined);
    if (left < 0 || right < 0 || result < 0) continue;
    // A pair listed twice keeps its first (best) rank.
    merges_.emplace(PairKey(left, right), Merge{static_cast<int32_t>(rank), result});
  }
  return absl::OkStatus();
}

int32_t BpeTokenizer::Find(std::string_view text) const {
  // Debian's Abseil has its own string_view type, distinct from std::string_view.
  const auto it = token_to_id_.find(absl::string_view(text.data(), text.size()));
  return it == token_to_id_.end() ? -1 : it->second;
}

std::string BpeTokenizer::Piece(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) return "";
  return pieces_[id];
}

std::vector<int32_t> BpeTokenizer::Encode(std::string_view text,
                                          const EncodeOptions& options) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (options.add_bos.value_or(vocab_.add_bos) && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);

  size_t raw_begin = 0;
  size_t i = 0;
  while (i < text.size()) {
    int32_t match = -1;
    for (const int32_t id : added_by_first_byte_[static_cast<uint8_t>(text[i])]) {
      if (!options.parse_special && vocab_.token_types[id] != TokenType::kUserDefined) continue;
      if (text.compare(i, vocab_.tokens[id].size(), vocab_.tokens[id]) == 0) {
        match = id;
        break;  // candidates are longest first
      }
    }
    if (match < 0) {
      ++i;
      continue;
    }
    EncodeRaw(text.substr(raw_begin, i - raw_begin), out);
    out.push_back(match);
    i += vocab_.tokens[match].size();
    raw_begin = i;
  }
  EncodeRaw(text.substr(raw_begin), out);

  if (options.add_eos.value_or(vocab_.add_eos) && vocab_.eos_id >= 0) out.push_back(vocab_.eos_id);
  return out;
}

void BpeTokenizer::EncodeRaw(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  if (normalizer_ == Normalizer::kNfc) {
    const std::string normalized = NormalizeNfc(text);
    for (const std::string_view word : pre_->Split(normalized)) EncodeWord(word, out);
    return;
  }
  for (const std::string_view word : pre_->Split(text)) EncodeWord(word, out);
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>& out) const {
  if (pre_->ignore_merges()) {
    const int32_t id = Find(ByteLevelEncode(word));
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (size_t k = 0; k < word.size(); ++k) {
    const int index = static_cast<int>(k);
    symbols.push_back({byte_to_id_[static_cast<uint8_t>(word[k])], index - 1,
                       k + 1 == word.size() ? -1 : index + 1});
  }
  std::priority_queue<Candidate, std::vector<Candidate>, CandidateAfter> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const int32_t a = symbols[left].id;
    const int32_t b = symbols[right].id;
    if (a < 0 || b < 0) return;
    const auto it = merges_.find(PairKey(a, b));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, a, b, it->second.result});
  };
  for (int k = 1; k < static_cast<int>(symbols.size()); ++k) try_add(k - 1, k);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    // Stale: a side was merged away, or merged with something else, since it was queued.
    if (left.next != c.right || left.id != c.left_id || right.id != c.right_id) continue;
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = -1;
    right.next = -1;
    try_add(left.prev, c.left);
    try_add(c.left, left.next);
  }
  for (int k = 0; k >= 0 && !symbols.empty(); k = symbols[k].next) {
    if (symbols[k].id >= 0) out.push_back(symbols[k].id);
  }
}

}  // namespace prefixd
