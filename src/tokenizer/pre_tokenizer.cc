#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace prefixd {
namespace {

// The tokenizers' patterns. The case-insensitive contractions are spelled with explicit
// classes ('[sS]), as llama.cpp and transformers.js rewrite Hugging Face's "(?i:'s|...)":
// under Unicode case folding (?i) would also match "'ſ" (U+017F) and "'K" (U+212A), which
// none of the reference implementations does.
constexpr char kContractions[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

// Llama 3 (tokenizer.json of Meta-Llama-3): digits in groups of up to three.
const std::string kLlama3 = std::string(kContractions) +
                            R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
                            R"(|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2 / Qwen2.5 / Qwen3: as Llama 3 but one digit per piece.
const std::string kQwen2 = std::string(kContractions) +
                           R"(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
                           R"(|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2 (its tokenizer.json's ByteLevel pre-tokenizer).
constexpr char kGpt2[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Spec {
  const char* name;
  std::vector<std::string> patterns;
  bool ignore_merges;
};

const std::vector<Spec>& Specs() {
  static const auto* specs = new std::vector<Spec>{
      // llama.cpp's fallback for gpt2-type vocabularies without a known pre-tokenizer.
      {"default",
       {R"([\p{P}\$\+<=>\^~\|]+)",
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))",
        R"(\p{N}+)", R"([0-9][0-9][0-9])"},
       false},
      {"gpt2", {kGpt2}, false},
      {"llama-bpe", {kLlama3}, true},
      {"llama3", {kLlama3}, true},
      {"llama-v3", {kLlama3}, true},
      {"qwen2", {kQwen2}, false},
  };
  return *specs;
}

// `\s` as Hugging Face (Rust's regex) and llama.cpp mean it: Unicode's White_Space property.
// PCRE2's own `\s` under UCP also takes U+180E (Mongolian vowel separator, no longer a space
// since Unicode 6.3), so both `\s` and `\S` are spelled with the property, which PCRE2's
// Unicode tables provide (10.40+). The patterns above stay as their tokenizers write them.
std::string WithUnicodeWhiteSpace(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[i + 1];
      if (next == 's' || next == 'S') {
        out += next == 's' ? "\\p{White_Space}" : "\\P{White_Space}";
      } else {
        out += pattern.substr(i, 2);
      }
      ++i;
      continue;
    }
    out.push_back(pattern[i]);
  }
  return out;
}

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

PreTokenizer::~PreTokenizer() = default;

std::vector<std::string> PreTokenizer::SupportedNames() {
  std::vector<std::string> names;
  for (const Spec& spec : Specs()) names.push_back(spec.name);
  return names;
}

StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(std::string_view name) {
  const Spec* found = nullptr;
  for (const Spec& spec : Specs()) {
    if (name == spec.name) found = &spec;
  }
  if (found == nullptr) {
    std::string known;
    for (const Spec& spec : Specs()) absl::StrAppend(&known, known.empty() ? "" : ", ", spec.name);
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported BPE pre-tokenizer '", std::string(name),
                     "' (tokenizer.ggml.pre); supported: ", known));
  }
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  pre->ignore_merges_ = found->ignore_merges;
  for (const std::string& source : found->patterns) {
    const std::string pattern = WithUnicodeWhiteSpace(source);
    int error = 0;
    PCRE2_SIZE offset = 0;
    auto regex = std::make_unique<Regex>();
    // MATCH_INVALID_UTF: arbitrary bytes are matched without an error, invalid sequences
    // simply never match (so they fall into the gaps between pieces).
    regex->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset,
                                nullptr);
    if (regex->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return absl::InternalError(absl::StrCat("pre-tokenizer '", found->name, "': pattern ",
                                              pattern, " does not compile at offset ", offset,
                                              ": ", reinterpret_cast<const char*>(message)));
    }
    // JIT is an optimisation: where it is unavailable the interpreter gives the same matches.
    pcre2_jit_compile(regex->code, PCRE2_JIT_COMPLETE);
    pre->regexes_.push_back(std::move(regex));
  }
  return pre;
}

void PreTokenizer::SplitOne(const Regex& regex, std::string_view piece,
                            std::vector<std::string_view>& out) const {
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(regex.code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t gap_begin = 0;
  size_t offset = 0;
  while (offset < piece.size()) {
    const int rc = pcre2_match(regex.code, subject, piece.size(), offset, 0, match, nullptr);
    if (rc < 0) break;  // no further match (or a matcher limit): the rest is one gap
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end == begin) {
      // None of the patterns matches the empty string; should one, step over one character
      // so the loop always advances.
      offset = end + 1;
      while (offset < piece.size() && (static_cast<uint8_t>(piece[offset]) & 0xC0) == 0x80) {
        ++offset;
      }
      continue;
    }
    if (begin > gap_begin) out.push_back(piece.substr(gap_begin, begin - gap_begin));
    out.push_back(piece.substr(begin, end - begin));
    gap_begin = offset = end;
  }
  if (gap_begin < piece.size()) out.push_back(piece.substr(gap_begin));
  pcre2_match_data_free(match);
}

std::vector<std::string_view> PreTokenizer::Split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  std::vector<std::string_view> next;
  for (const auto& regex : regexes_) {
    next.clear();
    for (const std::string_view piece : pieces) SplitOne(*regex, piece, next);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace prefixd
