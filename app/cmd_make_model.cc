// `prefixd make-model`: writes a llama, qwen2, qwen3, qwen3moe or qwen35 GGUF with seeded random weights
// in any shape, with a synthetic vocabulary, another model's, or a Hugging Face tokenizer.json's.
// Tests and benchmarks make their models with it.
#include <algorithm>
#include <cstdio>

#include <CLI/CLI.hpp>

#include "app/commands.h"
#include "app/common.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "model/gguf_file.h"
#include "model/model_maker.h"

namespace prefixd {

namespace {

struct MakeFlags {
  ModelSpec spec;
  std::string chat_template_file;
  std::string out;
  std::string type = "f32";
};

constexpr TensorType kMakeTypes[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                                     TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_1,
                                     TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ4_K,
                                     TensorType::kQ5_K, TensorType::kQ6_K};

// How many tensors of each type `path` holds, e.g. "q4_K x 2, q4_0 x 14, f32 x 5".
std::string TypeCounts(const std::string& path) {
  auto file = GgufFile::Open(path);
  if (!file.ok()) return std::string(file.status().message());
  std::vector<std::pair<std::string, int>> counts;
  for (const auto& t : (*file)->tensors()) {
    const std::string name = TensorTypeName(static_cast<uint32_t>(t.type));
    auto it = std::find_if(counts.begin(), counts.end(), [&](auto& c) { return c.first == name; });
    if (it == counts.end()) {
      counts.emplace_back(name, 1);
    } else {
      ++it->second;
    }
  }
  std::string s;
  for (const auto& [name, n] : counts) absl::StrAppend(&s, s.empty() ? "" : ", ", name, " x ", n);
  return s;
}

int RunMake(MakeFlags f) {
  bool known = false;
  std::string names;
  for (TensorType t : kMakeTypes) {
    const std::string name = TensorTypeName(static_cast<uint32_t>(t));
    absl::StrAppend(&names, names.empty() ? "" : "|", absl::AsciiStrToLower(name));
    if (absl::EqualsIgnoreCase(name, f.type)) {
      f.spec.type = t;
      known = true;
    }
  }
  if (!known) {
    return Fail(absl::InvalidArgumentError("--type must be one of " + names + " (got '" + f.type + "')"));
  }
  if (!f.chat_template_file.empty()) {
    auto text = ReadTextFile(f.chat_template_file);
    if (!text.ok()) return Fail(text.status());
    f.spec.chat_template = *std::move(text);
  }
  Status st = WriteRandomModel(f.spec, f.out);
  if (!st.ok()) return Fail(st);
  std::fprintf(stderr, "wrote %s (tensors: %s)\n", f.out.c_str(), TypeCounts(f.out).c_str());
  return 0;
}

}  // namespace

void AddMakeModelCommand(CLI::App& app, std::function<int()>* run) {
  auto f = std::make_shared<MakeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "make-model", "Write a llama, qwen2, qwen3, qwen3moe or qwen35 GGUF with seeded random weights");
  cmd->add_option("--out", f->out, "Output GGUF path")->required();
  cmd->add_option("--arch", f->spec.arch,
                  "Architecture: llama, qwen2 (Q/K/V biases), qwen3 (Q/K norms), qwen3moe "
                  "(qwen3 with a mixture of experts: --experts, --experts-used, --expert-ff) or "
                  "qwen35 (gated DeltaNet and gated attention layers: --full-attention-interval, "
                  "--delta-*)")
      ->capture_default_str();
  cmd->add_option("--layers", f->spec.num_layers, "Layers")->capture_default_str();
  cmd->add_option("--embd", f->spec.embd, "Embedding width")->capture_default_str();
  cmd->add_option("--heads", f->spec.num_heads, "Attention heads")->capture_default_str();
  cmd->add_option("--kv-heads", f->spec.num_kv_heads, "KV heads")->capture_default_str();
  cmd->add_option("--ff", f->spec.ff, "Feed-forward width")->capture_default_str();
  cmd->add_option("--experts", f->spec.experts, "qwen3moe: experts per layer")
      ->capture_default_str();
  cmd->add_option("--experts-used", f->spec.experts_used, "qwen3moe: experts each token uses")
      ->capture_default_str();
  cmd->add_option("--expert-ff", f->spec.expert_ff, "qwen3moe: each expert's feed-forward width")
      ->capture_default_str();
  cmd->add_option("--full-attention-interval", f->spec.full_attention_interval,
                  "qwen35: every Nth layer is full attention, the others gated DeltaNet")
      ->capture_default_str();
  cmd->add_option("--delta-head-dim", f->spec.delta_head_dim,
                  "qwen35: DeltaNet head size (0: the attention head size)")
      ->capture_default_str();
  cmd->add_option("--delta-k-heads", f->spec.delta_k_heads,
                  "qwen35: DeltaNet Q/K heads (0: --kv-heads)")
      ->capture_default_str();
  cmd->add_option("--delta-v-heads", f->spec.delta_v_heads,
                  "qwen35: DeltaNet V heads, a multiple of the K heads (0: --heads)")
      ->capture_default_str();
  cmd->add_option("--delta-conv-kernel", f->spec.delta_conv_kernel,
                  "qwen35: taps of the DeltaNet causal convolution")
      ->capture_default_str();
  cmd->add_option("--rope-dims", f->spec.rope_dims,
                  "Leading dims of each head that RoPE rotates (0: all; qwen35: a quarter)")
      ->capture_default_str();
  CLI::Option* vocab_opt =
      cmd->add_option("--vocab", f->spec.vocab,
                      "Vocabulary size (with --vocab-from: default and 0 mean the file's size)")
          ->capture_default_str();
  cmd->add_option("--ctx", f->spec.ctx, "Context length")->capture_default_str();
  cmd->add_option("--type", f->type, "Weight type of the matrices: f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|q6_k (rows that "
                  "a K-quant block does not divide fall back to q5_0, q5_1 or q8_0, as llama-quantize's do)")->capture_default_str();
  cmd->add_option("--seed", f->spec.seed, "Weight seed")->capture_default_str();
  cmd->add_option("--vocab-from", f->spec.vocab_from, "Take the vocabulary of this GGUF");
  cmd->add_option("--tokenizer-json", f->spec.tokenizer_json,
                  "Take vocabulary, merges and special tokens from this Hugging Face tokenizer.json "
                  "(byte-level BPE; the vocabulary size then follows it)");
  cmd->add_option("--tokenizer-config", f->spec.tokenizer_config,
                  "Its tokenizer_config.json: bos/eos/pad tokens, add_bos_token, chat_template");
  cmd->add_option("--tokenizer-pre", f->spec.tokenizer_pre,
                  "tokenizer.ggml.pre to write (default: recognised from the pre-tokenizer regex)");
  cmd->add_option("--chat-template", f->chat_template_file,
                  "Write this file's text as tokenizer.chat_template (a Jinja chat template)");
  cmd->add_flag("--tie-output", f->spec.tie_output, "Tie the output matrix to the embedding");
  cmd->add_option("--rope-base,--rope-freq-base", f->spec.rope_freq_base, "RoPE frequency base")
      ->capture_default_str();
  cmd->add_option("--head-dim", f->spec.head_dim,
                  "Head size, written as attention.key_length (0: embd / heads)")
      ->capture_default_str();
  cmd->add_option("--rms-eps", f->spec.rms_eps, "RMS norm epsilon")->capture_default_str();
  cmd->add_option("--rope-scaling", f->spec.rope_scaling,
                  "RoPE scaling: llama3 (Llama 3.1 frequency divisors, rope_freqs.weight)");
  cmd->add_option("--rope-scaling-factor", f->spec.rope_scaling_factor, "llama3 scaling factor")
      ->capture_default_str();
  cmd->add_option("--rope-low-freq-factor", f->spec.rope_low_freq_factor,
                  "llama3 low_freq_factor")->capture_default_str();
  cmd->add_option("--rope-high-freq-factor", f->spec.rope_high_freq_factor,
                  "llama3 high_freq_factor")->capture_default_str();
  cmd->add_option("--rope-original-ctx", f->spec.rope_original_ctx,
                  "llama3 original_max_position_embeddings")->capture_default_str();
  cmd->callback([f, run, vocab_opt] {
    // --vocab-from without --vocab takes the source's vocabulary size (ModelSpec::vocab == 0),
    // not the synthetic default.
    if (!f->spec.vocab_from.empty() && vocab_opt->count() == 0) f->spec.vocab = 0;
    *run = [f] { return RunMake(*f); };
  });
}

}  // namespace prefixd
