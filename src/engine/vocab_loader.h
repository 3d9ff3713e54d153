// LoadVocab: reads a model file's `tokenizer.ggml.*` metadata into the plain Vocab the
// tokenizer layer builds from (the tokenizer knows nothing of GGUF).
//
//   tokenizer.ggml.model        "llama" -> SentencePiece, "gpt2" -> byte-level BPE
//   tokenizer.ggml.tokens       required; .scores (float32 or int32), .token_type optional
//   tokenizer.ggml.merges       required for "gpt2"; .pre optional
//   tokenizer.ggml.{bos,eos,unknown,padding,eot}_token_id
//   tokenizer.ggml.{add_bos_token,add_eos_token,add_space_prefix}
//
// Defaults follow llama.cpp: SentencePiece bos 1, eos 2, unknown 0, add_bos true,
// add_space_prefix true; gpt2 bos = eos = 11, no space prefix. A token id key whose value
// lies outside the vocabulary (files write "none" as 0xFFFFFFFF) leaves the default, with a
// warning unless it is that sentinel; a default outside the vocabulary is dropped (-1). Without an
// eot key, the end-of-turn token is found by its text
// ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", ...), as llama.cpp does.
//
// Thread safety: a pure function of the file.
#pragma once

#include "base/status.h"
#include "model/gguf_file.h"
#include "tokenizer/vocab.h"

namespace prefixd {

// InvalidArgument naming the file and the key when the vocabulary metadata is missing,
// mistyped or inconsistent (an unsupported tokenizer model, no tokens, scores or token types
// shorter than the token list, add_bos or add_eos without the token's id).
StatusOr<Vocab> LoadVocab(const GgufFile& file);

}  // namespace prefixd
