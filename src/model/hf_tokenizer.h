// Converts a Hugging Face tokenizer (`tokenizer.json`, optionally `tokenizer_config.json`) of
// the byte-level BPE kind into GGUF `tokenizer.*` metadata, as llama.cpp's converter writes it,
// so that tests and benchmarks can build models with real vocabularies (Llama 3, Qwen, GPT-2)
// and random weights (`prefixd make-model --tokenizer-json`).
//
//   tokenizer.json  model.vocab + added_tokens -> tokenizer.ggml.tokens, .token_type
//                   (vocabulary: normal; added: control when "special", else user-defined;
//                   ids nobody uses: unused "[PAD<id>]"), model.merges -> .merges,
//                   the pre_tokenizer's Split regex -> .pre (by recognising the pattern)
//   config          bos/eos/pad tokens -> .bos/.eos/.padding_token_id, add_bos_token and
//                   add_eos_token (when absent: whether the post-processor adds them),
//                   chat_template -> tokenizer.chat_template (carried as a string)
//
// Thread safety: reentrant; no shared state.
#pragma once

#include <string>

#include "base/status.h"
#include "model/gguf_writer.h"

namespace prefixd {

struct HfTokenizerSource {
  std::string tokenizer_json;    // path, required
  std::string tokenizer_config;  // path, or empty
  std::string pre;               // tokenizer.ggml.pre to write; empty: recognise it
};

// Sets the tokenizer.* keys of `source` in `w` and returns the number of tokens. Errors:
// NotFound for an unreadable file; InvalidArgument naming the file and the field for JSON
// that does not parse or is not a byte-level BPE tokenizer, for a token id that is negative
// or used twice, and for a pre-tokenizer regex this table does not know (pass `pre`, i.e.
// --tokenizer-pre, to name it).
StatusOr<int> SetHfTokenizerVocab(const HfTokenizerSource& source, GgufWriter& w);

// The tokenizer.ggml.pre name for a Hugging Face Split regex, or "" when unknown.
std::string PreNameForHfRegex(const std::string& regex);

}  // namespace prefixd
