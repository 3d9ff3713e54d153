// SpmTokenizer: SentencePiece-style tokenization as llama.cpp does it for "llama" vocabularies
// (LLAMA_VOCAB_TYPE_SPM), reproduced token for token.
//
//   text ──split on special-token text──▶ fragments: "raw" | <s> | "raw" ...
//   each raw fragment: prepend " " (add_space_prefix, when first or after a special token),
//   " " → U+2581, split into UTF-8 characters, then repeatedly merge the adjacent pair whose
//   concatenation is a vocabulary token with the highest score (ties: leftmost first); a final
//   symbol that is not a token is emitted as its bytes' "<0xXX>" tokens (byte fallback).
//
// Differences from llama.cpp, all outside valid UTF-8 or out of llama.cpp's own error paths:
// - Input that is not valid UTF-8: a byte that does not start a complete UTF-8 sequence is a
//   one-byte symbol (llama.cpp groups a lead byte with whatever bytes follow it). Valid UTF-8 is
//   split identically.
// - A byte with neither a "<0xXX>" token nor a one-character token becomes unk_id (llama.cpp
//   throws), or is dropped when the vocabulary has no unknown token.
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
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace prefixd {

class SpmTokenizer final : public Tokenizer {
 public:
  // InvalidArgument when `vocab` is unusable: no tokens, scores or token types not one per
  // token, a special id out of range, a duplicate token text, add_bos/add_eos without the id.
  // An empty token text is renamed "[EMPTY_<id>]" (as llama.cpp does) so it never matches.
  static StatusOr<std::unique_ptr<SpmTokenizer>> Create(Vocab vocab);

  // Never fails: every byte sequence has an encoding (byte fallback).
  std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options) const override;
  std::string Piece(int32_t id) const override;

 private:
  explicit SpmTokenizer(Vocab vocab);

  // One piece of the input after splitting on special tokens: either raw text (a range of the
  // input) or a special token id.
  struct Fragment {
    int32_t token = -1;  // >= 0: a special token; -1: raw text [begin, begin + size)
    size_t begin = 0;
    size_t size = 0;
  };
  std::vector<Fragment> SplitOnSpecialTokens(std::string_view text, bool parse_special) const;
  // Appends the tokens of one raw fragment (already space-prefixed and escaped).
  void EncodeFragment(std::string_view text, std::vector<int32_t>& out) const;
  // -1 when `text` is not a token.
  int32_t Find(std::string_view text) const;

  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  // The token for each byte value under byte fallback: "<0xXX>", else the one-byte token,
  // else unk_id (-1 when none).
  std::array<int32_t, 256> byte_to_id_{};
  // Control, user-defined and unknown tokens, longest text first (ties: lower id first): the
  // order in which their text is cut out of the input.
  std::vector<int32_t> special_tokens_;
  // Piece(id) for every id, computed once.
  std::vector<std::string> pieces_;
};

}  // namespace prefixd
