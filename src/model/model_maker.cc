#include "model/model_maker.h"

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "base/fp16.h"
#include "model/gguf_file.h"
#include "model/gguf_writer.h"
#include "model/hf_tokenizer.h"
#include "model/quantize.h"

namespace prefixd {
namespace {

// llama.cpp's token types (llama_token_type).
constexpr int32_t kTokenNormal = 1;
constexpr int32_t kTokenUnknown = 2;
constexpr int32_t kTokenControl = 3;
constexpr int32_t kTokenUnused = 5;
constexpr int32_t kTokenByte = 6;

// Padding tokens rank below every real piece, so a tokenizer never prefers them.
constexpr float kPadScore = -1e6f;

// The writer holds every tensor in memory; refuse specs that cannot reasonably fit.
constexpr uint64_t kMaxModelBytes = uint64_t{32} << 30;

// Weight scales. Every matrix (token embeddings and the output included) is N(0, 1/row length):
// each projection then keeps its input's scale, the logits have std ~1 after the final RMS
// norm, and the next token depends on the whole context. For GPT-2-sized models this is
// 0.02-0.04, close to the usual 0.02 initialisation; a fixed 0.02 was rejected because at the
// small sizes tests use (embd 32-64) the layers barely moved the residual stream: logits had
// std ~0.16 and a tied model predicted its own input token in 18 of 20 random contexts
// (measured with a naive reference forward pass; 1 of 20 with this scale). std::sqrt is
// correctly rounded, so the scale is the same everywhere.
float MatrixStd(uint64_t row_length) { return 1.0f / std::sqrt(static_cast<float>(row_length)); }
constexpr float kNormStd = 0.02f;  // norm weights are 1 + N(0, kNormStd)
// Q/K/V biases (qwen2): real Qwen2 K biases reach several units; 0.5 moves every attention
// score visibly, so a forward pass that dropped a bias fails the reference test.
constexpr float kBiasStd = 0.5f;

// SplitMix64: a fast, well-mixed 64-bit generator. Bulk weights use it rather than
// std::normal_distribution over mt19937_64, which is ~20x slower and whose output is
// implementation-defined (libstdc++ and libc++ would write different models).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Approximately standard normal: the sum of four 16-bit uniforms (Irwin-Hall), centred and
  // scaled to unit variance. Integer sums and one exactly rounded multiply, so the result is
  // the same on every platform (Box-Muller would call log/cos, which differ across libms).
  // Bounded by +-3.46; tails do not matter for random test weights.
  float Normal() {
    const uint64_t r = Next();
    const int32_t sum = static_cast<int32_t>((r & 0xffff) + ((r >> 16) & 0xffff) +
                                             ((r >> 32) & 0xffff) + (r >> 48));
    // Each uniform on {0..65535} has variance (65536^2 - 1) / 12; four of them ~65536^2 / 3.
    constexpr float kScale = 1.7320508075688772f / 65536.0f;
    return static_cast<float>(sum - 131070) * kScale;
  }

 private:
  uint64_t state_;
};

// Random tensor data of `n` elements in `type`: mean + std * N(0, 1), drawn in F32 and then
// stored (rounded to f16/bf16, or quantised) row by row; rows are whole blocks.
std::vector<uint8_t> RandomData(uint64_t n, TensorType type, float mean, float std,
                                uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<float> values(n);
  for (uint64_t k = 0; k < n; ++k) values[k] = mean + std * rng.Normal();
  std::vector<uint8_t> data(*TensorBytes(type, n));
  QuantizeRow(type, values.data(), static_cast<int64_t>(n), data.data());
  return data;
}

// llama.cpp's general.file_type for a model whose matrices are mostly `type`.
uint32_t FileType(TensorType type) {
  switch (type) {
    case TensorType::kF16: return 1;
    case TensorType::kQ4_0: return 2;
    case TensorType::kQ4_1: return 3;
    case TensorType::kQ5_0: return 8;
    case TensorType::kQ5_1: return 9;
    case TensorType::kQ8_0: return 7;
    case TensorType::kQ4_K: return 14;  // Q4_K_S: every matrix q4_K
    case TensorType::kQ5_K: return 16;  // Q5_K_S
    case TensorType::kQ6_K: return 18;
    case TensorType::kBF16: return 32;
    default: return 0;
  }
}

// Common English words, most frequent first; the synthetic vocabulary starts with them so
// that ordinary text tokenizes into word pieces rather than letters.
constexpr const char* kCommonWords[] = {
    "the",   "of",     "and",   "to",    "in",    "is",    "that",  "for",    "it",
    "was",   "on",     "with",  "he",    "as",    "his",   "be",    "at",     "by",
    "you",   "had",    "not",   "are",   "but",   "from",  "or",    "have",   "an",
    "they",  "which",  "one",   "were",  "her",   "all",   "she",   "there",  "would",
    "their", "we",     "him",   "been",  "has",   "when",  "who",   "will",   "more",
    "no",    "if",     "out",   "so",    "said",  "what",  "up",    "its",    "about",
    "into",  "than",   "them",  "can",   "only",  "other", "new",   "some",   "could",
    "time",  "these",  "two",   "may",   "then",  "do",    "first", "any",    "my",
    "now",   "such",   "like",  "our",   "over",  "man",   "me",    "even",   "most",
    "made",  "after",  "also",  "did",   "many",  "before", "must", "through", "back",
    "years", "where",  "much",  "your",  "way",   "well",  "down",  "should", "because",
    "each",  "just",   "those", "people", "how",  "too",   "little", "state", "good",
    "very",  "make",   "world", "still", "own",   "see",   "men",   "work",   "long",
    "get",   "here",   "between", "both", "life", "being", "under", "never",  "day",
    "same",  "another", "know", "while", "last",  "might", "us",    "great",  "old",
    "year",  "off",    "come",  "since", "against", "go",  "came",  "right",  "used",
    "take",  "three",  "once",  "upon",  "happy", "play",  "friend", "mom",   "big",
    "Once",  "The",    "She",   "He",    "They",  "It",    "One",   "Lily",   "Tom",
};

// `n` distinct SentencePiece pieces in descending frequency order: the word-boundary mark,
// letters, common words, capitals, digits, punctuation, then every lowercase string of length
// 2, 3, ... with and without a leading word-boundary mark.
std::vector<std::string> SyntheticPieces(size_t n) {
  const std::string kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's word-boundary mark
  std::vector<std::string> out;
  out.reserve(n);
  absl::flat_hash_set<std::string> seen;
  auto add = [&](std::string s) {
    if (out.size() < n && seen.insert(s).second) out.push_back(std::move(s));
  };
  add(kSpace);
  for (char c = 'a'; c <= 'z'; ++c) add(std::string(1, c));
  for (char c = 'a'; c <= 'z'; ++c) add(kSpace + c);
  for (const char* w : kCommonWords) add(kSpace + w);
  for (char c = 'A'; c <= 'Z'; ++c) {
    add(std::string(1, c));
    add(kSpace + c);
  }
  for (char c = '0'; c <= '9'; ++c) add(std::string(1, c));
  for (char c : std::string(".,!?;:'\"-()")) add(std::string(1, c));
  // Strings of length `len` over a-z, enumerated like an odometer, until `n` are found.
  for (size_t len = 2; out.size() < n; ++len) {
    std::string s(len, 'a');
    while (out.size() < n) {
      add(s);
      add(kSpace + s);
      size_t k = len;
      while (k > 0 && s[k - 1] == 'z') s[--k] = 'a';
      if (k == 0) break;
      ++s[k - 1];
    }
  }
  return out;
}

void SetSyntheticVocab(int vocab, GgufWriter& w) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {kTokenUnknown, kTokenControl, kTokenControl};
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(absl::StrFormat("<0x%02X>", b));
    scores.push_back(0);
    types.push_back(kTokenByte);
  }
  const std::vector<std::string> pieces = SyntheticPieces(static_cast<size_t>(vocab) - tokens.size());
  for (size_t k = 0; k < pieces.size(); ++k) {
    tokens.push_back(pieces[k]);
    scores.push_back(-static_cast<float>(k));  // exact for k < 2^24
    types.push_back(kTokenNormal);
  }
  w.Set("tokenizer.ggml.model", GgufValue::String("llama"));
  w.Set("tokenizer.ggml.tokens", GgufValue::StringArray(std::move(tokens)));
  w.Set("tokenizer.ggml.scores", GgufValue::F32Array(scores));
  w.Set("tokenizer.ggml.token_type", GgufValue::I32Array(types));
  w.Set("tokenizer.ggml.bos_token_id", GgufValue::U32(1));
  w.Set("tokenizer.ggml.eos_token_id", GgufValue::U32(2));
  w.Set("tokenizer.ggml.unknown_token_id", GgufValue::U32(0));
  w.Set("tokenizer.ggml.add_bos_token", GgufValue::Bool(true));
  w.Set("tokenizer.ggml.add_eos_token", GgufValue::Bool(false));
}

// An element of an array of `elem_type` holding `v`, in the payload field that type uses
// (numeric types only).
GgufValue Element(GgufType elem_type, double v) {
  GgufValue e;
  e.type = elem_type;
  switch (elem_type) {
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      e.f = v;
      break;
    case GgufType::kUint8:
    case GgufType::kUint16:
    case GgufType::kUint32:
    case GgufType::kUint64:
    case GgufType::kBool:
      e.u = static_cast<uint64_t>(v < 0 ? 0 : v);
      break;
    default:
      e.i = static_cast<int64_t>(v);
      break;
  }
  return e;
}

// Copies every tokenizer.* key of `path` into `w`, padded to `*vocab` tokens (or, when
// `*vocab` is 0, sets it to the source's size).
Status CopyVocab(const std::string& path, int* vocab, GgufWriter& w) {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> src, GgufFile::Open(path));
  ASSIGN_OR_RETURN(const std::vector<std::string> src_tokens,
                   src->GetStringArray("tokenizer.ggml.tokens"));
  const size_t n = src_tokens.size();
  if (*vocab == 0) *vocab = static_cast<int>(n);
  if (static_cast<size_t>(*vocab) < n) {
    return absl::InvalidArgumentError(absl::StrCat("vocab ", *vocab, " is smaller than the ", n,
                                                   " tokens of '", path, "'"));
  }
  for (const auto& [key, value] : src->metadata()) {
    if (!key.starts_with("tokenizer.")) continue;
    GgufValue v = value;
    const bool per_token = key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.scores" ||
                           key == "tokenizer.ggml.token_type";
    if (per_token && static_cast<size_t>(*vocab) > n) {
      if (v.type != GgufType::kArray || v.array.size() != n) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": '", key, "' is not an array of one entry per token (", n, " tokens)"));
      }
      v.array.reserve(*vocab);
      for (size_t id = n; id < static_cast<size_t>(*vocab); ++id) {
        if (key == "tokenizer.ggml.tokens") {
          v.array.push_back(GgufValue::String(absl::StrCat("[PAD", id, "]")));
        } else if (key == "tokenizer.ggml.scores") {
          v.array.push_back(Element(v.elem_type, kPadScore));
        } else {
          v.array.push_back(Element(v.elem_type, kTokenUnused));
        }
      }
    }
    w.Set(key, std::move(v));
  }
  return absl::OkStatus();
}

Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("invalid model spec: ", what));
}

Status ValidateRopeScaling(const ModelSpec& s) {
  if (s.rope_scaling.empty()) return absl::OkStatus();
  if (s.rope_scaling != "llama3") {
    return Invalid(absl::StrCat("rope_scaling '", s.rope_scaling, "'; supported: llama3"));
  }
  if (!(s.rope_scaling_factor >= 1)) return Invalid("rope scaling factor must be at least 1");
  if (!(s.rope_low_freq_factor > 0) || !(s.rope_high_freq_factor > s.rope_low_freq_factor)) {
    return Invalid("rope low/high frequency factors need 0 < low < high");
  }
  if (s.rope_original_ctx < 1) return Invalid("rope original context length must be positive");
  return absl::OkStatus();
}

// Llama 3.1+ frequency divisors, as llama.cpp's HF converter computes them: wavelengths
// shorter than original_ctx / high_freq_factor keep their frequency, longer than
// original_ctx / low_freq_factor are divided by `factor`, and those between blend smoothly.
// Computed in double; the only libm calls are pow (for the base frequencies), which glibc
// rounds correctly, so the bytes are the same on every machine this project builds on.
std::vector<float> Llama3RopeFactors(const ModelSpec& s) {
  const int dim = s.HeadDim();
  const double low_wavelen = s.rope_original_ctx / static_cast<double>(s.rope_low_freq_factor);
  const double high_wavelen = s.rope_original_ctx / static_cast<double>(s.rope_high_freq_factor);
  std::vector<float> factors;
  for (int i = 0; i < dim; i += 2) {
    const double freq = 1.0 / std::pow(static_cast<double>(s.rope_freq_base),
                                       static_cast<double>(i) / dim);
    const double wavelen = 2 * M_PI / freq;
    double f;
    if (wavelen < high_wavelen) {
      f = 1;
    } else if (wavelen > low_wavelen) {
      f = s.rope_scaling_factor;
    } else {
      const double smooth = (s.rope_original_ctx / wavelen - s.rope_low_freq_factor) /
                            (s.rope_high_freq_factor - s.rope_low_freq_factor);
      f = 1 / ((1 - smooth) / s.rope_scaling_factor + smooth);
    }
    factors.push_back(static_cast<float>(f));
  }
  return factors;
}

// qwen35's own fields (nothing to check for other architectures).
Status ValidateHybrid(const ModelSpec& s) {
  if (s.arch != "qwen35") return absl::OkStatus();
  if (s.full_attention_interval < 1 || s.full_attention_interval > s.num_layers) {
    return Invalid(absl::StrCat("full_attention_interval ", s.full_attention_interval,
                                " is not in [1, num_layers ", s.num_layers,
                                "]: the model needs at least one attention layer"));
  }
  if (s.delta_head_dim < 0 || s.delta_k_heads < 0 || s.delta_v_heads < 0) {
    return Invalid("DeltaNet head size and head counts must be positive (or 0: the default)");
  }
  if (s.DeltaVHeads() % s.DeltaKHeads() != 0) {
    return Invalid(absl::StrCat("DeltaNet K heads ", s.DeltaKHeads(), " do not divide V heads ",
                                s.DeltaVHeads()));
  }
  if (s.delta_conv_kernel < 2) {
    return Invalid(absl::StrCat("delta_conv_kernel ", s.delta_conv_kernel, " < 2"));
  }
  return absl::OkStatus();
}

}  // namespace

Status ValidateModelSpec(const ModelSpec& s) {
  if (s.arch != "llama" && s.arch != "qwen2" && s.arch != "qwen3" && s.arch != "qwen3moe" &&
      s.arch != "qwen35") {
    return Invalid(
        absl::StrCat("arch '", s.arch, "'; supported: llama, qwen2, qwen3, qwen3moe, qwen35"));
  }
  if (s.arch == "qwen3moe") {
    if (s.experts < 1) return Invalid(absl::StrCat("experts ", s.experts, " < 1"));
    if (s.experts_used < 1 || s.experts_used > s.experts) {
      return Invalid(absl::StrCat("experts_used ", s.experts_used, " is not in [1, experts ",
                                  s.experts, "]"));
    }
    if (s.expert_ff < 1) return Invalid(absl::StrCat("expert_ff ", s.expert_ff, " < 1"));
  } else if (s.experts != 0 || s.experts_used != 0 || s.expert_ff != 0) {
    return Invalid(absl::StrCat("experts, experts_used and expert_ff are for qwen3moe, not ",
                                s.arch));
  }
  if (s.num_layers < 1) return Invalid(absl::StrCat("num_layers ", s.num_layers, " < 1"));
  if (s.embd < 1) return Invalid(absl::StrCat("embd ", s.embd, " < 1"));
  if (s.num_heads < 1) return Invalid(absl::StrCat("num_heads ", s.num_heads, " < 1"));
  if (s.num_kv_heads < 1) return Invalid(absl::StrCat("num_kv_heads ", s.num_kv_heads, " < 1"));
  if (s.ff < 1) return Invalid(absl::StrCat("ff ", s.ff, " < 1"));
  if (s.ctx < 1) return Invalid(absl::StrCat("ctx ", s.ctx, " < 1"));
  if (s.head_dim < 0) return Invalid(absl::StrCat("head_dim ", s.head_dim, " < 0"));
  if (s.head_dim == 0 && s.embd % s.num_heads != 0) {
    return Invalid(absl::StrCat("num_heads ", s.num_heads, " does not divide embd ", s.embd,
                                "; give head_dim"));
  }
  if (s.HeadDim() % 2 != 0) {
    return Invalid(absl::StrCat("head size ", s.HeadDim(), " is odd; ",
                                "RoPE rotates pairs of dimensions"));
  }
  RETURN_IF_ERROR(ValidateRopeScaling(s));
  if (s.rope_dims < 0 || s.RopeDims() % 2 != 0 || s.RopeDims() > s.HeadDim()) {
    return Invalid(absl::StrCat("rope_dims ", s.RopeDims(), " must be even and at most the head "
                                "size ", s.HeadDim()));
  }
  RETURN_IF_ERROR(ValidateHybrid(s));
  if (s.num_heads % s.num_kv_heads != 0) {
    return Invalid(absl::StrCat("num_kv_heads ", s.num_kv_heads, " does not divide num_heads ",
                                s.num_heads));
  }
  if (!CanQuantizeTo(s.type)) {
    return Invalid(absl::StrCat("type ", TensorTypeName(static_cast<uint32_t>(s.type)),
                                " (only f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K)"));
  }
  if (!(s.rope_freq_base > 0)) return Invalid("rope_freq_base must be positive");
  if (!(s.rms_eps > 0)) return Invalid("rms_eps must be positive");
  if (s.vocab < 0) return Invalid(absl::StrCat("vocab ", s.vocab, " < 0"));
  if (!s.vocab_from.empty() && !s.tokenizer_json.empty()) {
    return Invalid("vocab_from and tokenizer_json both name a vocabulary; give one");
  }
  if (s.vocab_from.empty() && s.tokenizer_json.empty() && s.vocab < kMinSyntheticVocab) {
    return Invalid(absl::StrCat("vocab ", s.vocab, " is below ", kMinSyntheticVocab,
                                ", the smallest synthetic vocabulary (3 specials, 256 bytes, ",
                                "8 pieces)"));
  }
  // Parameter count with a vocabulary of max(vocab, 1M) as an upper bound for vocab == 0.
  const uint64_t embd = s.embd, ff = s.ff, layers = s.num_layers;
  const uint64_t vocab = s.vocab == 0 || !s.tokenizer_json.empty() ? 1000000 : s.vocab;
  const uint64_t hd = s.HeadDim(), q = hd * s.num_heads, kv = hd * s.num_kv_heads;
  const uint64_t ffn = s.arch == "qwen3moe"
                            ? uint64_t(s.experts) * (embd + 3 * embd * uint64_t(s.expert_ff))
                            : 3 * embd * ff;
  // A DeltaNet layer's matrices, counted on every layer (an upper bound for qwen35).
  const uint64_t dv = uint64_t(s.DeltaHeadDim()) * s.DeltaVHeads();
  const uint64_t delta = s.arch != "qwen35" ? 0
                         : embd * (2 * uint64_t(s.DeltaHeadDim()) * s.DeltaKHeads() + 3 * dv);
  const uint64_t params =
      vocab * embd * 2 + embd + layers * (2 * embd + embd * q * 3 + embd * kv * 2 + ffn + delta);
  if (params * 4 > kMaxModelBytes) {
    return Invalid(absl::StrCat("~", params, " parameters do not fit the in-memory writer (",
                                kMaxModelBytes >> 30, " GiB)"));
  }
  return absl::OkStatus();
}

TensorType MatrixType(TensorType wanted, uint64_t row_length) {
  const auto fits = [&](TensorType t) {
    return row_length % GetTensorTypeTraits(static_cast<uint32_t>(t))->block_elements == 0;
  };
  if (fits(wanted)) return wanted;
  // llama-quantize's tensor_type_fallback for the types make-model writes.
  const TensorType fallback = wanted == TensorType::kQ4_K   ? TensorType::kQ5_0
                              : wanted == TensorType::kQ5_K ? TensorType::kQ5_1
                                                            : TensorType::kQ8_0;
  return fits(fallback) ? fallback : TensorType::kF16;
}

namespace {

// qwen35's own keys: head size always (llama.cpp's default n_embd / n_head rarely holds),
// M-RoPE sections, DeltaNet sizes, the layer pattern.
void SetHybridHparams(const ModelSpec& spec, GgufWriter& w) {
  const std::string a = spec.arch + ".";
  w.Set(a + "attention.key_length", GgufValue::U32(spec.HeadDim()));
  w.Set(a + "attention.value_length", GgufValue::U32(spec.HeadDim()));
  // Qwen3.5's [11, 11, 10, 0] for 32 pairs, in proportion for others.
  const int half = spec.RopeDims() / 2;
  w.Set(a + "rope.dimension_sections",
        GgufValue::I32Array({(half + 2) / 3, (half + 1) / 3, half / 3, 0}));
  w.Set(a + "ssm.conv_kernel", GgufValue::U32(spec.delta_conv_kernel));
  w.Set(a + "ssm.state_size", GgufValue::U32(spec.DeltaHeadDim()));
  w.Set(a + "ssm.group_count", GgufValue::U32(spec.DeltaKHeads()));
  w.Set(a + "ssm.time_step_rank", GgufValue::U32(spec.DeltaVHeads()));
  w.Set(a + "ssm.inner_size", GgufValue::U32(spec.DeltaHeadDim() * spec.DeltaVHeads()));
  w.Set(a + "full_attention_interval", GgufValue::U32(spec.full_attention_interval));
}

// Hyper-parameters under `{arch}.`, as llama.cpp's converter writes them. vocab_size is set
// to 0 here and filled in once a vocab_from source has decided it.
void SetHparams(const ModelSpec& spec, GgufWriter& w) {
  const std::string a = spec.arch + ".";
  const uint32_t head_dim = static_cast<uint32_t>(spec.HeadDim());
  w.Set("general.architecture", GgufValue::String(spec.arch));
  w.Set("general.name", GgufValue::String(absl::StrCat(
                            "prefixd-random-", spec.arch, "-L", spec.num_layers, "-E", spec.embd,
                            "-seed", spec.seed)));
  w.Set("general.file_type", GgufValue::U32(FileType(spec.type)));
  w.Set(a + "context_length", GgufValue::U32(spec.ctx));
  w.Set(a + "embedding_length", GgufValue::U32(spec.embd));
  w.Set(a + "block_count", GgufValue::U32(spec.num_layers));
  w.Set(a + "feed_forward_length", GgufValue::U32(spec.ff));
  w.Set(a + "attention.head_count", GgufValue::U32(spec.num_heads));
  w.Set(a + "attention.head_count_kv", GgufValue::U32(spec.num_kv_heads));
  w.Set(a + "attention.layer_norm_rms_epsilon", GgufValue::F32(spec.rms_eps));
  if (spec.head_dim > 0) {
    w.Set(a + "attention.key_length", GgufValue::U32(head_dim));
    w.Set(a + "attention.value_length", GgufValue::U32(head_dim));
  }
  w.Set(a + "rope.dimension_count", GgufValue::U32(spec.RopeDims()));
  w.Set(a + "rope.freq_base", GgufValue::F32(spec.rope_freq_base));
  if (spec.arch == "qwen35") SetHybridHparams(spec, w);
  if (spec.arch == "qwen3moe") {
    w.Set(a + "expert_count", GgufValue::U32(spec.experts));
    w.Set(a + "expert_used_count", GgufValue::U32(spec.experts_used));
    w.Set(a + "expert_feed_forward_length", GgufValue::U32(spec.expert_ff));
  }
  w.Set(a + "vocab_size", GgufValue::U32(0));
}

using AddTensorFn = std::function<Status(const std::string& name, std::vector<uint64_t> dims,
                                          TensorType type, float mean, float std)>;

// One qwen35 layer (see model_maker.h): a DeltaNet layer unless it is a
// full_attention_interval-th one, then post_attention_norm and the dense FFN.
Status AddHybridLayer(const ModelSpec& spec, int i, const AddTensorFn& add) {
  const std::string blk = absl::StrCat("blk.", i, ".");
  const uint64_t embd = spec.embd, ff = spec.ff, hd = spec.HeadDim();
  const uint64_t q_dim = hd * spec.num_heads, kv_dim = hd * spec.num_kv_heads;
  const uint64_t d = spec.DeltaHeadDim(), hv = spec.DeltaVHeads();
  const uint64_t conv_dim = 2 * d * spec.DeltaKHeads() + d * hv, taps = spec.delta_conv_kernel;
  const TensorType t = spec.type, f32 = TensorType::kF32;
  RETURN_IF_ERROR(add(blk + "attn_norm.weight", {embd}, f32, 1, kNormStd));
  if ((i + 1) % spec.full_attention_interval != 0) {
    RETURN_IF_ERROR(add(blk + "attn_qkv.weight", {embd, conv_dim}, t, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "attn_gate.weight", {embd, d * hv}, t, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "ssm_conv1d.weight", {taps, conv_dim}, f32, 0, MatrixStd(taps)));
    RETURN_IF_ERROR(add(blk + "ssm_dt.bias", {hv}, f32, -2.0f, 0.5f));
    RETURN_IF_ERROR(add(blk + "ssm_a", {hv}, f32, -1.0f, 0.25f));
    RETURN_IF_ERROR(add(blk + "ssm_beta.weight", {embd, hv}, t, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "ssm_alpha.weight", {embd, hv}, t, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "ssm_norm.weight", {d}, f32, 1, kNormStd));
    RETURN_IF_ERROR(add(blk + "ssm_out.weight", {d * hv, embd}, t, 0, MatrixStd(d * hv)));
  } else {
    RETURN_IF_ERROR(add(blk + "attn_q.weight", {embd, 2 * q_dim}, t, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "attn_k.weight", {embd, kv_dim}, t, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "attn_v.weight", {embd, kv_dim}, t, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "attn_q_norm.weight", {hd}, f32, 1, kNormStd));
    RETURN_IF_ERROR(add(blk + "attn_k_norm.weight", {hd}, f32, 1, kNormStd));
    RETURN_IF_ERROR(add(blk + "attn_output.weight", {q_dim, embd}, t, 0, MatrixStd(q_dim)));
  }
  RETURN_IF_ERROR(add(blk + "post_attention_norm.weight", {embd}, f32, 1, kNormStd));
  RETURN_IF_ERROR(add(blk + "ffn_gate.weight", {embd, ff}, t, 0, MatrixStd(embd)));
  RETURN_IF_ERROR(add(blk + "ffn_up.weight", {embd, ff}, t, 0, MatrixStd(embd)));
  return add(blk + "ffn_down.weight", {ff, embd}, t, 0, MatrixStd(ff));
}

}  // namespace

Status WriteRandomModel(const ModelSpec& spec, const std::string& path) {
  RETURN_IF_ERROR(ValidateModelSpec(spec));
  GgufWriter w;
  int vocab = spec.vocab;
  const uint32_t head_dim = static_cast<uint32_t>(spec.HeadDim());

  SetHparams(spec, w);
  if (!spec.tokenizer_json.empty()) {
    ASSIGN_OR_RETURN(vocab, SetHfTokenizerVocab({spec.tokenizer_json, spec.tokenizer_config,
                                                 spec.tokenizer_pre},
                                                w));
  } else if (spec.vocab_from.empty()) {
    SetSyntheticVocab(vocab, w);
  } else {
    RETURN_IF_ERROR(CopyVocab(spec.vocab_from, &vocab, w));
  }
  // Set after the vocabulary, so that it replaces a template vocab_from or tokenizer_config carried.
  if (spec.chat_template) w.Set("tokenizer.chat_template", GgufValue::String(*spec.chat_template));
  w.Set(spec.arch + ".vocab_size", GgufValue::U32(vocab));

  // One seed per tensor, drawn in a fixed order from the spec's seed, so each tensor's values
  // do not depend on the sizes of the tensors before it.
  std::mt19937_64 seeder(spec.seed);
  const uint64_t embd = spec.embd, ff = spec.ff, v = vocab;
  const uint64_t q_dim = head_dim * spec.num_heads, kv_dim = head_dim * spec.num_kv_heads;
  auto add = [&](const std::string& name, std::vector<uint64_t> dims, TensorType type, float mean,
                 float std) -> Status {
    const uint64_t tensor_seed = seeder();
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    if (dims.size() >= 2 && type == spec.type) type = MatrixType(spec.type, dims[0]);
    return w.AddTensor(name, std::move(dims), type, RandomData(n, type, mean, std, tensor_seed));
  };
  RETURN_IF_ERROR(add("token_embd.weight", {embd, v}, spec.type, 0, MatrixStd(embd)));
  RETURN_IF_ERROR(add("output_norm.weight", {embd}, TensorType::kF32, 1, kNormStd));
  if (!spec.tie_output) {
    RETURN_IF_ERROR(add("output.weight", {embd, v}, spec.type, 0, MatrixStd(embd)));
  }
  if (spec.rope_scaling == "llama3") {
    // Computed, not random: it draws no seed, so the other tensors keep their values.
    const std::vector<float> f = Llama3RopeFactors(spec);
    std::vector<uint8_t> bytes(f.size() * sizeof(float));
    std::memcpy(bytes.data(), f.data(), bytes.size());
    RETURN_IF_ERROR(w.AddTensor("rope_freqs.weight", {f.size()}, TensorType::kF32, bytes));
  }
  for (int i = 0; i < spec.num_layers; ++i) {
    const std::string blk = absl::StrCat("blk.", i, ".");
    if (spec.arch == "qwen35") {
      RETURN_IF_ERROR(AddHybridLayer(spec, i, add));
      continue;
    }
    RETURN_IF_ERROR(add(blk + "attn_norm.weight", {embd}, TensorType::kF32, 1, kNormStd));
    RETURN_IF_ERROR(add(blk + "attn_q.weight", {embd, q_dim}, spec.type, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "attn_k.weight", {embd, kv_dim}, spec.type, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "attn_v.weight", {embd, kv_dim}, spec.type, 0, MatrixStd(embd)));
    if (spec.arch == "qwen2") {
      RETURN_IF_ERROR(add(blk + "attn_q.bias", {q_dim}, TensorType::kF32, 0, kBiasStd));
      RETURN_IF_ERROR(add(blk + "attn_k.bias", {kv_dim}, TensorType::kF32, 0, kBiasStd));
      RETURN_IF_ERROR(add(blk + "attn_v.bias", {kv_dim}, TensorType::kF32, 0, kBiasStd));
    }
    if (spec.arch == "qwen3" || spec.arch == "qwen3moe") {
      RETURN_IF_ERROR(add(blk + "attn_q_norm.weight", {head_dim}, TensorType::kF32, 1, kNormStd));
      RETURN_IF_ERROR(add(blk + "attn_k_norm.weight", {head_dim}, TensorType::kF32, 1, kNormStd));
    }
    RETURN_IF_ERROR(add(blk + "attn_output.weight", {q_dim, embd}, spec.type, 0, MatrixStd(q_dim)));
    RETURN_IF_ERROR(add(blk + "ffn_norm.weight", {embd}, TensorType::kF32, 1, kNormStd));
    if (spec.arch == "qwen3moe") {
      const uint64_t ne = spec.experts, eff = spec.expert_ff;
      RETURN_IF_ERROR(
          add(blk + "ffn_gate_inp.weight", {embd, ne}, TensorType::kF32, 0, MatrixStd(embd)));
      RETURN_IF_ERROR(
          add(blk + "ffn_gate_exps.weight", {embd, eff, ne}, spec.type, 0, MatrixStd(embd)));
      RETURN_IF_ERROR(
          add(blk + "ffn_up_exps.weight", {embd, eff, ne}, spec.type, 0, MatrixStd(embd)));
      RETURN_IF_ERROR(
          add(blk + "ffn_down_exps.weight", {eff, embd, ne}, spec.type, 0, MatrixStd(eff)));
      continue;
    }
    RETURN_IF_ERROR(add(blk + "ffn_gate.weight", {embd, ff}, spec.type, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "ffn_up.weight", {embd, ff}, spec.type, 0, MatrixStd(embd)));
    RETURN_IF_ERROR(add(blk + "ffn_down.weight", {ff, embd}, spec.type, 0, MatrixStd(ff)));
  }
  return w.Write(path);
}

}  // namespace prefixd
