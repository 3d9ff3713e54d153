#include "engine/vocab_loader.h"

#include <optional>
#include <string>
#include <string_view>

#include "base/log.h"

namespace prefixd {
namespace {

// Keys are plain char arrays: Debian's Abseil has its own string_view, so absl::StrCat does
// not take std::string_view.
constexpr char kModelKey[] = "tokenizer.ggml.model";
constexpr char kTokensKey[] = "tokenizer.ggml.tokens";
constexpr char kScoresKey[] = "tokenizer.ggml.scores";
constexpr char kTokenTypeKey[] = "tokenizer.ggml.token_type";
constexpr char kMergesKey[] = "tokenizer.ggml.merges";
constexpr char kPreKey[] = "tokenizer.ggml.pre";
constexpr char kNormalizerKey[] = "tokenizer.ggml.normalizer";
constexpr char kAddBosKey[] = "tokenizer.ggml.add_bos_token";
constexpr char kAddEosKey[] = "tokenizer.ggml.add_eos_token";
constexpr char kAddSpacePrefixKey[] = "tokenizer.ggml.add_space_prefix";

// Texts llama.cpp takes for the end-of-turn token when the file names none.
constexpr std::string_view kEotTexts[] = {
    "<|eot_id|>",      "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>",      "_<EOT>",  "[EOT]",         "<end_of_utterance>"};

// Pre-tokenizers for which llama.cpp adds BOS by default on a gpt2 vocabulary.
constexpr std::string_view kBpeAddBosPre[] = {"llama3",       "llama-v3", "llama-bpe", "falcon3",
                                              "falcon-h1",    "pixtral",  "midm-2.0",  "lfm2",
                                              "jina-v5-nano", "tekken",   "chameleon"};

// The value at `key`, nullopt when the key is absent, the reader's error (which names the
// file, the key and the types) when it has the wrong type.
template <typename T>
StatusOr<std::optional<T>> Optional(StatusOr<T> value) {
  if (value.ok()) return std::optional<T>(std::move(*value));
  if (absl::IsNotFound(value.status())) return std::optional<T>();
  return value.status();
}

TokenType ToTokenType(int64_t v) {
  if (v >= 0 && v <= static_cast<int64_t>(TokenType::kByte)) return static_cast<TokenType>(v);
  return TokenType::kUndefined;
}

// Reads one special token id: the file's value, or the default when the key is absent or its
// value lies outside the vocabulary (as llama.cpp does: files write "none" as 0xFFFFFFFF or
// -1). A default that lies outside the vocabulary is dropped to -1.
Status ReadTokenId(const GgufFile& file, const char* key, size_t num_tokens, int32_t& id) {
  if (id >= static_cast<int64_t>(num_tokens)) id = -1;
  ASSIGN_OR_RETURN(std::optional<int64_t> value, Optional(file.GetInt(key)));
  if (!value) return absl::OkStatus();
  if (*value < 0 || *value >= static_cast<int64_t>(num_tokens)) {
    if (*value != -1 && *value != UINT32_MAX) {
      SPDLOG_WARN("{}: metadata key '{}' is {}, outside the vocabulary of {} tokens; using {}",
                  file.name(), key, *value, num_tokens, id);
    }
    return absl::OkStatus();
  }
  id = static_cast<int32_t>(*value);
  return absl::OkStatus();
}

Status ReadBool(const GgufFile& file, const char* key, bool& out) {
  ASSIGN_OR_RETURN(std::optional<bool> value, Optional(file.GetBool(key)));
  if (value) out = *value;
  return absl::OkStatus();
}

// Scores are float32 in most files; llama.cpp also accepts int32.
StatusOr<std::optional<std::vector<float>>> ReadScores(const GgufFile& file) {
  const GgufValue* v = file.Find(kScoresKey);
  if (v == nullptr) return std::optional<std::vector<float>>();
  if (v->type == GgufType::kArray && v->elem_type != GgufType::kFloat32 &&
      v->elem_type != GgufType::kFloat64) {
    ASSIGN_OR_RETURN(std::vector<int64_t> ints, file.GetIntArray(kScoresKey));
    return std::optional<std::vector<float>>(std::vector<float>(ints.begin(), ints.end()));
  }
  ASSIGN_OR_RETURN(std::vector<float> floats, file.GetFloatArray(kScoresKey));
  return std::optional<std::vector<float>>(std::move(floats));
}

}  // namespace

StatusOr<Vocab> LoadVocab(const GgufFile& file) {
  Vocab vocab;
  StatusOr<std::string> model = file.GetString(kModelKey);
  if (absl::IsNotFound(model.status())) {
    return absl::InvalidArgumentError(absl::StrCat(file.name(), ": metadata key '", kModelKey,
                                                   "' not found: the file has no vocabulary"));
  }
  if (!model.ok()) return model.status();
  if (*model == "llama") {
    vocab.kind = Vocab::Kind::kSentencePiece;
    vocab.bos_id = 1;
    vocab.eos_id = 2;
    vocab.unk_id = 0;
    vocab.add_bos = true;
    vocab.add_eos = false;
    vocab.add_space_prefix = true;
  } else if (*model == "gpt2") {
    vocab.kind = Vocab::Kind::kBytePairGpt2;
    vocab.bos_id = 11;
    vocab.eos_id = 11;
    vocab.add_bos = false;
    vocab.add_eos = false;
    vocab.add_space_prefix = false;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(file.name(), ": metadata key '", kModelKey, "' is '", *model,
                     "', an unsupported tokenizer model (supported: 'llama' for SentencePiece, "
                     "'gpt2' for byte-level BPE)"));
  }

  ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> tokens,
                   Optional(file.GetStringArray(kTokensKey)));
  if (!tokens || tokens->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file.name(), ": metadata key '", kTokensKey,
                                                   tokens ? "' is empty" : "' not found"));
  }
  vocab.tokens = std::move(*tokens);
  const size_t n = vocab.tokens.size();

  ASSIGN_OR_RETURN(std::optional<std::vector<float>> scores, ReadScores(file));
  if (scores) {
    if (scores->size() < n) {
      return absl::InvalidArgumentError(absl::StrCat(file.name(), ": metadata key '", kScoresKey,
                                                     "' has ", scores->size(), " values for ", n,
                                                     " tokens"));
    }
    scores->resize(n);
    vocab.scores = std::move(*scores);
  } else {
    vocab.scores.assign(n, 0.0f);
  }

  ASSIGN_OR_RETURN(std::optional<std::vector<int64_t>> types,
                   Optional(file.GetIntArray(kTokenTypeKey)));
  if (types) {
    if (types->size() < n) {
      return absl::InvalidArgumentError(absl::StrCat(file.name(), ": metadata key '", kTokenTypeKey,
                                                     "' has ", types->size(), " values for ", n,
                                                     " tokens"));
    }
    vocab.token_types.reserve(n);
    for (size_t i = 0; i < n; ++i) vocab.token_types.push_back(ToTokenType((*types)[i]));
  } else {
    vocab.token_types.assign(n, TokenType::kNormal);
  }

  if (vocab.kind == Vocab::Kind::kBytePairGpt2) {
    ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> merges,
                     Optional(file.GetStringArray(kMergesKey)));
    if (!merges) {
      return absl::InvalidArgumentError(absl::StrCat(file.name(), ": metadata key '", kMergesKey,
                                                     "' not found (a gpt2 vocabulary needs it)"));
    }
    vocab.merges = std::move(*merges);
    ASSIGN_OR_RETURN(std::optional<std::string> pre, Optional(file.GetString(kPreKey)));
    vocab.pre = pre.value_or("default");
    // Our key (make-model writes it from tokenizer.json's normalizer); llama.cpp's converter
    // writes none, so Qwen's vocabularies (pre "qwen2") get the NFC their tokenizer.json
    // declares, as Hugging Face applies it.
    ASSIGN_OR_RETURN(std::optional<std::string> normalizer,
                     Optional(file.GetString(kNormalizerKey)));
    vocab.normalizer = normalizer.value_or(vocab.pre == "qwen2" ? "nfc" : "");
    for (std::string_view p : kBpeAddBosPre) {
      if (vocab.pre == p) vocab.add_bos = true;
    }
  }

  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.bos_token_id", n, vocab.bos_id));
  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.eos_token_id", n, vocab.eos_id));
  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.unknown_token_id", n, vocab.unk_id));
  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.padding_token_id", n, vocab.pad_id));
  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.eot_token_id", n, vocab.eot_id));
  if (vocab.eot_id < 0) {
    for (size_t i = 0; i < n && vocab.eot_id < 0; ++i) {
      for (std::string_view text : kEotTexts) {
        if (vocab.tokens[i] == text) vocab.eot_id = static_cast<int32_t>(i);
      }
    }
  }

  RETURN_IF_ERROR(ReadBool(file, kAddBosKey, vocab.add_bos));
  RETURN_IF_ERROR(ReadBool(file, kAddEosKey, vocab.add_eos));
  RETURN_IF_ERROR(ReadBool(file, kAddSpacePrefixKey, vocab.add_space_prefix));
  if (vocab.add_bos && vocab.bos_id < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.name(), ": '", kAddBosKey, "' is true but 'tokenizer.ggml.bos_token_id' is not set"));
  }
  if (vocab.add_eos && vocab.eos_id < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.name(), ": '", kAddEosKey, "' is true but 'tokenizer.ggml.eos_token_id' is not set"));
  }
  return vocab;
}

}  // namespace prefixd
