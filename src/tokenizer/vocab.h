// The vocabulary a tokenizer is built from, as plain data. The engine fills it from a model
// file's `tokenizer.ggml.*` metadata (the tokenizer layer knows nothing of GGUF).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace prefixd {

// Token types as GGUF numbers them (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct Vocab {
  enum class Kind { kSentencePiece, kBytePairGpt2 };
  Kind kind = Kind::kSentencePiece;
  std::vector<std::string> tokens;     // piece text; SentencePiece uses U+2581 for a space
  std::vector<float> scores;           // SentencePiece merge priority (higher merges first)
  std::vector<TokenType> token_types;  // one per token; kNormal when the file has none
  std::vector<std::string> merges;     // byte-level BPE only: "a b" pairs in rank order
  std::string pre;                     // byte-level BPE pre-tokenizer name
  // Unicode normalization applied to text before the pre-tokenizer (outside added tokens):
  // "" none, "nfc" canonical composition (Qwen's tokenizer.json declares it). GGUF key
  // tokenizer.ggml.normalizer (written by make-model); without it, "nfc" for pre "qwen2".
  std::string normalizer;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t eot_id = -1;  // end of turn, when the model has one
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;  // SentencePiece: prepend a space to the text
};

}  // namespace prefixd
