// Model: a llama-family model loaded from a GGUF file: its hyper-parameters (from metadata
// only) and views of its weights, used in place from the file's memory map. The forward pass
// that uses them lives in compute/.
//
// One forward pass serves every supported architecture; the architecture only decides the
// optional pieces:
//
//   arch   RoPE style  Q/K/V biases  Q/K RMS norms  typical extras
//   llama  normal      optional      no             rope_freqs.weight (Llama 3.1+ scaling)
//   qwen2  NeoX        required      no             tied output, rope.freq_base 1e6
//   qwen3  NeoX        no            required       head_dim * n_head != n_embd
//   qwen3moe  as qwen3, with a mixture of experts in place of the dense FFN (below)
//
// qwen3moe: each layer's FFN is `expert_count` SwiGLU experts of width
// `expert_feed_forward_length` and a router (ffn_gate_inp: one logit per expert). A token's
// router logits go through a softmax over all experts; the `expert_used_count` largest
// probabilities pick its experts (ties to the lower index), and their weights are those
// probabilities divided by their sum (llama.cpp's qwen3moe always normalises; Qwen3-MoE's
// norm_topk_prob is true, and no GGUF key carries it). Qwen3-MoE has no shared expert.
//
// qwen35 (Qwen3.5 dense hybrid): most layers are gated DeltaNet layers (linear attention with
// a short causal convolution and a recurrent state per sequence; DeltaNetShape below); every
// `full_attention_interval`-th layer (or as `attention.recurrent_layers` says) is a gated
// attention layer: Q/K RMS norms, partial NeoX RoPE over the text sections of the
// interleaved M-RoPE (`rope.dimension_sections`), and a per-element sigmoid gate on the
// attention output that the Q projection yields beside Q (per head: head_dim of Q, then
// head_dim of gate). The FFN's norm is `post_attention_norm`. Layers past
// `block_count - nextn_predict_layers` are multi-token-prediction layers: not loaded.
//
// Thread safety: immutable after Load; safe to read from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "model/gguf_file.h"
#include "model/tensor_type.h"

namespace prefixd {

enum class RopeStyle {
  kNormal,  // rotate adjacent pairs (x[2i], x[2i+1]): llama
  kNeox,    // rotate halves (x[i], x[i + d/2]): GPT-NeoX, Qwen
};

// The sizes of a gated DeltaNet layer (qwen35), as llama.cpp reads them.
struct DeltaNetShape {
  int32_t conv_kernel = 0;  // {arch}.ssm.conv_kernel: taps of the causal convolution
  int32_t head_dim = 0;     // {arch}.ssm.state_size: K and V head size
  int32_t num_k_heads = 0;  // {arch}.ssm.group_count: Q and K heads
  int32_t num_v_heads = 0;  // {arch}.ssm.time_step_rank: V heads (a multiple of num_k_heads;
                            // V head h reads Q/K head h % num_k_heads, as ggml's repeat does)

  int64_t key_dim() const { return int64_t{head_dim} * num_k_heads; }
  int64_t value_dim() const { return int64_t{head_dim} * num_v_heads; }
  // Channels of the convolution: Q, K and V side by side.
  int64_t conv_dim() const { return 2 * key_dim() + value_dim(); }
  // One sequence's state in one layer: the last conv_kernel - 1 inputs of every channel, and
  // a head_dim x head_dim matrix per V head.
  int64_t conv_state_floats() const { return int64_t{conv_kernel - 1} * conv_dim(); }
  int64_t ssm_state_floats() const { return int64_t{num_v_heads} * head_dim * head_dim; }
  int64_t state_floats() const { return conv_state_floats() + ssm_state_floats(); }
};

struct Hparams {
  std::string arch;
  int32_t vocab_size = 0;
  int32_t context_length = 0;  // trained context
  int32_t embd = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t ff = 0;
  int32_t rope_dims = 0;  // leading dims of each head that RoPE rotates
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear scaling, else 1
  RopeStyle rope_style = RopeStyle::kNormal;
  // Llama 3.1+ RoPE scaling: the model has a rope_freqs.weight tensor of rope_dims / 2
  // divisors, one per frequency (ModelWeights::rope_freqs).
  bool rope_freq_factors = false;
  float rms_eps = 1e-5f;
  bool qkv_bias = false;  // blk.N.attn_{q,k,v}.bias are added after the projections
  bool qk_norm = false;
  // Whether a prefix of any token length is a valid KV state (full attention in every layer).
  // Recurrent layers (qwen35) make it false, and the cache then keeps no partial tails.
  bool kv_slices_per_token = true;
  // Mixture of experts (qwen3moe); 0 experts for a dense model.
  int32_t num_experts = 0;       // {arch}.expert_count
  int32_t num_experts_used = 0;  // {arch}.expert_used_count: experts per token
  int32_t expert_ff = 0;         // {arch}.expert_feed_forward_length (default ff / used)
  // Hybrid models (qwen35): recurrent[l] is true for a DeltaNet layer, false for attention;
  // empty for attention-only models.
  std::vector<bool> recurrent;
  DeltaNetShape delta_net;
  // qwen35: the Q projection gives 2 * head_dim per head (Q, then a sigmoid gate on the
  // attention output).
  bool attn_output_gate = false;
  // RoPE pairs (of rope_dims / 2) rotated as at position 0, i.e. not at all: the fourth
  // section of an interleaved M-RoPE, whose position is 0 for text. Empty: none.
  std::vector<bool> rope_pair_static;

  bool moe() const { return num_experts > 0; }
  bool hybrid() const { return !recurrent.empty(); }
  bool IsRecurrent(int layer) const { return hybrid() && recurrent[layer]; }
  // Layers with K/V in the paged pool (all but the recurrent ones).
  int32_t num_attention_layers() const {
    int32_t n = 0;
    for (int l = 0; l < num_layers; ++l) n += IsRecurrent(l) ? 0 : 1;
    return n;
  }
  // Floats of one sequence's recurrent state over all layers (0 for attention-only models).
  int64_t recurrent_state_floats() const {
    return (num_layers - num_attention_layers()) * delta_net.state_floats();
  }

  int32_t q_dim() const { return num_heads * head_dim; }
  int32_t kv_dim() const { return num_kv_heads * head_dim; }
};

// A 2-D weight matrix as stored: `rows` rows of `cols` elements each (GGUF dims {cols, rows});
// a row is what one output element reduces over. Vectors have rows == 1.
struct Weight {
  std::string name;
  TensorType type = TensorType::kF32;
  int64_t cols = 0;
  int64_t rows = 0;
  const uint8_t* data = nullptr;
  int64_t row_bytes = 0;

  const uint8_t* Row(int64_t r) const { return data + r * row_bytes; }
};

struct LayerWeights {
  // Attention layers. qwen35: wq has 2 * q_dim rows (see attn_output_gate).
  Weight attn_norm, wq, wk, wv, wo;
  Weight bq, bk, bv;      // Hparams::qkv_bias only: F32 vectors of q_dim, kv_dim, kv_dim
  Weight q_norm, k_norm;  // Hparams::qk_norm only: vectors of head_dim
  Weight ffn_norm;  // qwen35: blk.N.post_attention_norm.weight
  Weight ffn_gate, ffn_up, ffn_down;  // dense models only
  // Hparams::moe() only. The router: {embd} -> one logit per expert. The experts' matrices are
  // 3-D tensors (GGUF dims {cols, rows, experts}) held as one matrix of experts * rows rows;
  // ExpertSlice gives one expert's 2-D matrix.
  Weight ffn_gate_inp;
  Weight ffn_gate_exps, ffn_up_exps, ffn_down_exps;
  // qwen35 DeltaNet layers only (DeltaNetShape's sizes; V heads H, embd E):
  Weight ssm_qkv;     // blk.N.attn_qkv.weight: E -> conv_dim (Q, K, V before the convolution)
  Weight ssm_z;       // blk.N.attn_gate.weight: E -> value_dim (the output gate z)
  Weight ssm_beta;    // E -> H (beta = sigmoid of it)
  Weight ssm_alpha;   // E -> H (the decay's input)
  Weight ssm_conv1d;  // {conv_kernel, conv_dim}: one row of taps per channel, F32 or F16
  Weight ssm_dt;      // blk.N.ssm_dt.bias {H}: added to alpha before the softplus
  Weight ssm_a;       // blk.N.ssm_a {H}: -exp(A_log), the decay rate (negative)
  Weight ssm_norm;    // {head_dim}: RMS norm of each V head's output
  Weight ssm_out;     // value_dim -> E
};

// Expert `e`'s matrix within a 3-D expert tensor of `num_experts` experts: a view of the same
// bytes (rows / num_experts rows from row e * rows / num_experts), usable wherever a matrix is.
Weight ExpertSlice(const Weight& w, int64_t num_experts, int64_t e);

struct ModelWeights {
  Weight token_embd;
  Weight output_norm;
  Weight output;  // the token embedding itself when the model ties them
  bool output_tied = false;
  Weight rope_freqs;  // Hparams::rope_freq_factors only: F32 vector of rope_dims / 2
  std::vector<LayerWeights> layers;
};

class Model {
 public:
  // Called with (tensors done, tensors total) while loading; for a progress bar.
  using ProgressFn = std::function<void(size_t, size_t)>;

  // Opens and validates the model at `path`. InvalidArgument, naming the file, for: an
  // architecture not supported (listing the supported ones), missing or inconsistent
  // hyper-parameters, a missing tensor, a tensor whose shape does not fit the
  // hyper-parameters, a weight type not supported (naming type and tensor).
  // `residence`: the weights used in place from the file's map, or copied into RAM on huge
  // pages (faster decode; see base/mapped_file.h).
  static StatusOr<std::unique_ptr<Model>> Load(const std::string& path,
                                               const ProgressFn& progress = nullptr,
                                               Residence residence = Residence::kMapped);
  // Same, over a file already parsed.
  static StatusOr<std::unique_ptr<Model>> FromGguf(std::unique_ptr<GgufFile> file,
                                                   const ProgressFn& progress = nullptr);

  const Hparams& hparams() const { return hparams_; }
  const ModelWeights& weights() const { return weights_; }
  const GgufFile& gguf() const { return *gguf_; }
  const std::string& path() const { return gguf_->name(); }
  // Total number of weight parameters.
  int64_t num_params() const { return num_params_; }
  // XXH3-128 of every tensor's name and bytes, computed once at load: a re-trained or
  // re-quantised file with the same shapes gets a different digest (and so different KV keys).
  std::array<uint64_t, 2> weights_digest() const { return weights_digest_; }

 private:
  Model() = default;
  std::unique_ptr<GgufFile> gguf_;
  Hparams hparams_;
  ModelWeights weights_;
  int64_t num_params_ = 0;
  std::array<uint64_t, 2> weights_digest_ = {0, 0};
};

// The architectures Load accepts, comma-separated, for error messages.
std::string SupportedArchitectures();

}  // namespace prefixd
