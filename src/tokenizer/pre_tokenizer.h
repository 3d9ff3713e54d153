// PreTokenizer: the regex split that byte-level BPE applies before merging, selected by a
// GGUF's `tokenizer.ggml.pre` name. Merges never cross the pieces it returns.
//
//   "Hello world's 12345"  --llama-bpe-->  "Hello" | " world" | "'s" | " " | "123" | "45"
//
// A pre-tokenizer is a list of regexes applied in turn: each splits every piece the previous
// one left into its matches and the gaps between them (both kept, in order), which is what
// Hugging Face's Split(behavior: Isolated) and llama.cpp's unicode_regex_split do. The
// patterns are the tokenizers' own (their tokenizer.json or llama.cpp's table), compiled with
// PCRE2 in UTF mode with Unicode properties (\p{L}, \s, ... follow PCRE2's Unicode tables)
// and JIT when available. Bytes that are not valid UTF-8 never match, so they end up in gaps.
//
// Thread safety: immutable after Create; Split may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace prefixd {

class PreTokenizer {
 public:
  // InvalidArgument naming the supported names when `name` is not one of them
  // (SupportedNames()); Internal when PCRE2 rejects a pattern (a bug in the table).
  static StatusOr<std::unique_ptr<PreTokenizer>> Create(std::string_view name);
  ~PreTokenizer();

  // The names Create accepts: "default", "gpt2", "llama-bpe" (also "llama3", "llama-v3"),
  // "qwen2".
  static std::vector<std::string> SupportedNames();

  // Pieces of `text` in order; their concatenation is `text`, none is empty.
  std::vector<std::string_view> Split(std::string_view text) const;

  // Whether a whole piece that is itself a vocabulary token is emitted as that token without
  // running the merges (Hugging Face's BPE `ignore_merges`; llama.cpp sets it for Llama 3).
  bool ignore_merges() const { return ignore_merges_; }

 private:
  struct Regex;
  PreTokenizer() = default;
  void SplitOne(const Regex& regex, std::string_view piece,
                std::vector<std::string_view>& out) const;

  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
};

}  // namespace prefixd
