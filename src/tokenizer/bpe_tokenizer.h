// BpeTokenizer: byte-level BPE ("gpt2" vocabularies: GPT-2, Llama 3, Qwen2/3, ...), as Hugging
// Face's tokenizers encode it.
//
//   text ──cut out added tokens (leftmost, longest first)──▶ "raw" | <|im_start|> | "raw" ...
//   each raw fragment ──PreTokenizer (regex split by tokenizer.ggml.pre)──▶ words
//   each word: its bytes, each spelled as its byte-level character (byte_level.h), are the
//   first symbols; then the adjacent pair with the lowest merge rank is merged, leftmost first
//   among equal ranks, until no adjacent pair has a merge. With ignore_merges (Llama 3) a
//   word that is itself a token is emitted directly.
//
// Added tokens are the control (special) and user-defined ones: with parse_special off only
// the user-defined ones are cut out, as Hugging Face's split_special_tokens and llama.cpp do.
// Where two added tokens could match, the leftmost match wins and then the longest (Hugging
// Face's rule; llama.cpp cuts the longest token out first, which differs only for added
// tokens that overlap one another in the text).
//
// Differences from Hugging Face, by design:
// - Normalizer: only NFC (Vocab::normalizer, normalizer.h), applied to each fragment between
//   added tokens, as Hugging Face applies Qwen's; then decode(encode(s)) == NFC(s), and
//   decode(encode(s)) == s without a normalizer.
// - A merge whose two sides or whose result is not a token is ignored (it can never apply to
//   a vocabulary that was trained with it).
//
// Thread safety: immutable after Create; Encode and Piece may be called from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/status.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace prefixd {

class BpeTokenizer final : public Tokenizer {
 public:
  // InvalidArgument when `vocab` is unusable: no tokens, token types not one per token, a
  // special id out of range, add_bos/add_eos without the id, a malformed merge (no space
  // between its two sides), or an unsupported pre-tokenizer name. A token text that occurs
  // twice keeps its first id.
  static StatusOr<std::unique_ptr<BpeTokenizer>> Create(Vocab vocab);

  // Never fails: every byte sequence has an encoding (bytes whose character is not a token
  // become unk_id, or are dropped when the vocabulary has none).
  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options) const override;
  // Normal tokens: their byte-level text decoded to bytes; user-defined tokens: their text;
  // control, unknown and unused tokens: "".
  std::string Piece(int32_t id) const override;

 private:
  explicit BpeTokenizer(Vocab vocab);

  // A merge of two adjacent tokens: its rank (lower merges first) and the token it makes.
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  Status BuildMerges();
  // Appends the tokens of one word (a piece of the pre-tokenizer's split).
  void EncodeWord(std::string_view word, std::vector<int32_t>& out) const;
  // Appends the tokens of a fragment of text that holds no added token.
  void EncodeRaw(std::string_view text, std::vector<int32_t>& out) const;
  // -1 when `text` is not a token.
  int32_t Find(std::string_view text) const;

  std::unique_ptr<PreTokenizer> pre_;
  Normalizer normalizer_ = Normalizer::kNone;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;  // by PairKey(left, right)
  // The token of each byte's one-character spelling; unk_id (or -1) where there is none.
  std::array<int32_t, 256> byte_to_id_{};
  // Added tokens (control, unknown, user-defined) by the first byte of their text, longest
  // first (ties: lower id first): the candidates at each position of the input.
  std::array<std::vector<int32_t>, 256> added_by_first_byte_;
  // Piece(id) for every id, computed once.
  std::vector<std::string> pieces_;
};

}  // namespace prefixd
