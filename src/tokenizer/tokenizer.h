// Text <-> token ids for one model's vocabulary.
//
// Thread safety: immutable after Create; Encode/Piece may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tokenizer/vocab.h"

namespace prefixd {

struct EncodeOptions {
  std::optional<bool> add_bos;  // nullopt: the vocabulary's own add_bos
  std::optional<bool> add_eos;  // nullopt: the vocabulary's own add_eos
  bool parse_special = true;    // text like "<s>" becomes the control token
  // The text continues earlier text (a chat prompt encoded in pieces around token ids taken
  // as they are): its first fragment gets no SentencePiece space prefix (add_space_prefix),
  // which only the start of a text gets. Fragments after a special token still get it.
  bool continuation = false;
};

// The checks every vocabulary kind makes: a token type per token, special ids in range (or -1),
// BOS/EOS present when the vocabulary asks to add them. `kind` names it in the empty-vocabulary
// error ("SentencePiece", "byte-level BPE").
Status CheckVocabBasics(const Vocab& vocab, std::string_view kind);

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Builds the tokenizer for `vocab`. InvalidArgument when the vocabulary is unusable (empty,
  // sizes of tokens/scores/types disagree, a special id out of range, an unsupported kind).
  static StatusOr<std::unique_ptr<Tokenizer>> Create(Vocab vocab);

  virtual std::vector<int32_t> Encode(std::string_view text, const EncodeOptions& options) const = 0;

  // The bytes token `id` stands for when it is output as text: byte tokens give their byte,
  // U+2581 becomes a space, control tokens (BOS, EOS) give "". Out-of-range ids give "".
  virtual std::string Piece(int32_t id) const = 0;

  const Vocab& vocab() const { return vocab_; }
  int32_t vocab_size() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos_id() const { return vocab_.bos_id; }
  int32_t eos_id() const { return vocab_.eos_id; }
  // True for tokens that end generation (EOS, end-of-turn).
  bool IsEndOfGeneration(int32_t id) const {
    return id >= 0 && (id == vocab_.eos_id || id == vocab_.eot_id);
  }

 protected:
  explicit Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {}
  Vocab vocab_;
};

// Turns a stream of token ids into text, holding back the bytes of a UTF-8 character that is
// split across tokens until it is complete. Decoding a whole sequence with Push for each id
// then Finish gives the same text as concatenating Piece of each id.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  // The text that became complete with `id` (possibly empty).
  std::string Push(int32_t id);
  // Whatever is still held back (an incomplete character), as raw bytes.
  std::string Finish();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
};

}  // namespace prefixd
