// Writes llama-family (llama, qwen2, qwen3, qwen3moe, qwen35) GGUF models with seeded random weights, for tests,
// benchmarks and `prefixd make-model`. The output is a function of the spec alone: the same
// ModelSpec gives the same bytes on every machine (the generator uses integer arithmetic and
// exactly rounded float operations only; the one libm call, pow for Llama 3 RoPE divisors, is
// correctly rounded in glibc).
//
// Thread safety: WriteRandomModel is reentrant; it shares no state between calls.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "base/status.h"
#include "model/tensor_type.h"

namespace prefixd {

struct ModelSpec {
  // "llama", "qwen2" (adds Q/K/V biases), "qwen3" (adds per-head Q/K RMS norms), "qwen3moe"
  // (qwen3 with a mixture of experts for the FFN) or "qwen35" (the Qwen3.5 hybrid: gated
  // DeltaNet and gated attention layers). Metadata keys take the architecture as prefix
  // (qwen2.embedding_length, ...).
  std::string arch = "llama";
  int num_layers = 2;
  int embd = 64;
  int num_heads = 4;
  int num_kv_heads = 4;  // grouped-query attention when smaller than num_heads
  int ff = 176;          // feed-forward (SwiGLU) width; qwen3moe: written, but no dense FFN
  // qwen3moe only: experts per layer, experts each token uses, and each expert's FFN width.
  int experts = 0;
  int experts_used = 0;
  int expert_ff = 0;
  // Vocabulary size. 0 means "the size of vocab_from's vocabulary" (only with vocab_from).
  int vocab = 512;
  int ctx = 256;                     // llama.context_length
  // Of the matrices (see MatrixType): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K,
  // q5_K or q6_K; norms are always F32.
  TensorType type = TensorType::kF32;
  uint64_t seed = 0;
  // Path of a GGUF whose tokenizer.* metadata is copied (padded with unused "[PAD{id}]"
  // tokens up to `vocab`), or empty for a synthetic SentencePiece vocabulary of `vocab`
  // entries (at least kMinSyntheticVocab).
  std::string vocab_from;
  // Path of a Hugging Face tokenizer.json (byte-level BPE) whose vocabulary, merges and special
  // tokens are written instead (model/hf_tokenizer.h); `vocab` is then ignored: the size
  // follows the tokenizer. Exclusive with vocab_from.
  std::string tokenizer_json;
  std::string tokenizer_config;  // its tokenizer_config.json (optional)
  std::string tokenizer_pre;     // tokenizer.ggml.pre to write; empty: recognised from the regex
  // Written as tokenizer.chat_template (replacing one from vocab_from or tokenizer_config);
  // nullopt: theirs, if any.
  std::optional<std::string> chat_template;
  bool tie_output = false;  // no output.weight: the output projection reuses token_embd
  float rope_freq_base = 10000;
  float rms_eps = 1e-5f;
  // Head size; 0 means embd / num_heads. Any other value is written as
  // {arch}.attention.key_length / value_length (qwen3: 128 with embd 1024 and 16 heads).
  int head_dim = 0;
  // "" for none, or "llama3": Llama 3.1+ RoPE scaling written as a rope_freqs.weight tensor
  // of per-frequency divisors, computed from the four values below the way llama.cpp's
  // HF converter computes it from config.json's rope_scaling.
  std::string rope_scaling;
  float rope_scaling_factor = 8.0f;
  float rope_low_freq_factor = 1.0f;
  float rope_high_freq_factor = 4.0f;
  int rope_original_ctx = 8192;
  // Leading dims of each head that RoPE rotates; 0: the whole head, or for qwen35 a quarter of
  // it (Qwen3.5's partial_rotary_factor), rounded down to even and at least 2.
  int rope_dims = 0;
  // qwen35 only. Every full_attention_interval-th layer is a gated attention layer, the others
  // gated DeltaNet layers with these sizes (0: from the head settings: head size HeadDim(),
  // num_kv_heads K heads, num_heads V heads) and convolution taps.
  int full_attention_interval = 4;
  int delta_head_dim = 0;
  int delta_k_heads = 0;
  int delta_v_heads = 0;
  int delta_conv_kernel = 4;

  int HeadDim() const { return head_dim > 0 ? head_dim : embd / num_heads; }
  int RopeDims() const {
    if (rope_dims > 0) return rope_dims;
    return arch == "qwen35" ? std::max(2, HeadDim() / 4 / 2 * 2) : HeadDim();
  }
  int DeltaHeadDim() const { return delta_head_dim > 0 ? delta_head_dim : HeadDim(); }
  int DeltaKHeads() const { return delta_k_heads > 0 ? delta_k_heads : num_kv_heads; }
  int DeltaVHeads() const { return delta_v_heads > 0 ? delta_v_heads : num_heads; }
};

// The smallest synthetic vocabulary: <unk>, <s>, </s>, 256 byte tokens and a few pieces.
inline constexpr int kMinSyntheticVocab = 259 + 8;

// Checks `spec`: positive sizes (qwen3moe: experts >= 1, 1 <= experts_used <= experts,
// expert_ff >= 1; other architectures: no experts), an even head size (num_heads divides embd unless head_dim is
// given), num_kv_heads divides num_heads, a supported type, architecture and RoPE scaling, a
// large enough synthetic vocabulary, an even rope_dims of at most the head size; qwen35: a
// full_attention_interval in [1, num_layers] (at least one attention layer), DeltaNet K heads
// dividing V heads, at least 2 convolution taps.
// InvalidArgument naming the offending field otherwise.
Status ValidateModelSpec(const ModelSpec& spec);

// The type a matrix with rows of `row_length` elements gets when the spec asks for `wanted`:
// `wanted` when the row is a whole number of its blocks; otherwise, as llama-quantize falls
// back for such rows, a 32-element type (q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0), or f16
// when even that does not divide the row. (A Qwen2.5-0.5B-shaped model, n_embd 896, is mostly fallbacks.)
TensorType MatrixType(TensorType wanted, uint64_t row_length);

// Writes the model described by `spec` to `path` (atomically, via GgufWriter::Write).
// Metadata follows llama.cpp's llama keys; tensors use llama.cpp's names and GGUF dims order
// (dims[0] is the row length):
//
// (`type` below is MatrixType(spec.type, row length).)
//
//   token_embd.weight        {embd, vocab}          type
//   output_norm.weight       {embd}                 F32
//   output.weight            {embd, vocab}          type   (absent when tie_output)
//   blk.i.attn_norm.weight   {embd}                 F32
//   blk.i.attn_q.weight      {embd, heads*hd}       type
//   blk.i.attn_k.weight      {embd, kv_heads*hd}    type
//   blk.i.attn_v.weight      {embd, kv_heads*hd}    type
//   blk.i.attn_output.weight {heads*hd, embd}       type
//   blk.i.ffn_norm.weight    {embd}                 F32
//   blk.i.ffn_gate.weight    {embd, ff}             type
//   blk.i.ffn_up.weight      {embd, ff}             type
//   blk.i.ffn_down.weight    {ff, embd}             type
//   rope_freqs.weight        {hd/2}                 F32    (rope_scaling "llama3" only)
//   blk.i.attn_q.bias        {heads*hd}             F32    (qwen2 only; also k, v)
//   blk.i.attn_q_norm.weight {hd}                   F32    (qwen3, qwen3moe; also k)
//
// qwen3moe writes no blk.i.ffn_{gate,up,down}.weight; instead (experts E, width F):
//   blk.i.ffn_gate_inp.weight  {embd, E}            F32    (the router, as llama.cpp keeps it)
//   blk.i.ffn_gate_exps.weight {embd, F, E}         type
//   blk.i.ffn_up_exps.weight   {embd, F, E}         type
//   blk.i.ffn_down_exps.weight {F, embd, E}         type
// and qwen3moe.expert_count, expert_used_count, expert_feed_forward_length.
//
// qwen35 (hd = HeadDim(), DeltaNet head size D, K heads Hk, V heads Hv, taps T,
// conv_dim C = 2 D Hk + D Hv): a gated attention layer has attn_q {embd, 2*heads*hd} (Q and
// its output gate per head), attn_k, attn_v, attn_q_norm, attn_k_norm, attn_output as qwen3;
// a DeltaNet layer instead has
//   blk.i.attn_qkv.weight   {embd, C}     type     blk.i.ssm_conv1d.weight {T, C}   F32
//   blk.i.attn_gate.weight  {embd, D*Hv}  type     blk.i.ssm_dt.bias       {Hv}     F32
//   blk.i.ssm_beta.weight   {embd, Hv}    type     blk.i.ssm_a             {Hv}     F32
//   blk.i.ssm_alpha.weight  {embd, Hv}    type     blk.i.ssm_norm.weight   {D}      F32
//   blk.i.ssm_out.weight    {D*Hv, embd}  type
// and every layer's FFN norm is blk.i.post_attention_norm.weight; qwen35.ssm.{conv_kernel,
// state_size, group_count, time_step_rank, inner_size}, full_attention_interval and
// rope.dimension_sections (the RoPE pairs split about 11:11:10 like Qwen3.5's, none in the
// fourth section) are written. ssm_a is -N(1, 0.25) (negative: a decay) and ssm_dt.bias
// N(-2, 0.5), so a state decays by ~0.9 per token and remembers a few tokens back.
//
// Weights are approximately normal (sums of uniforms, bounded at 3.46 std): every matrix
// N(0, 1 / row length), so each projection keeps its input's scale and the logits have std ~1;
// norm weights 1 + N(0, 0.02); biases N(0, 0.5), large enough to matter. Each tensor has its
// own seed, drawn from `seed` in file order.
//
// Errors: InvalidArgument for a bad spec (see ValidateModelSpec) or a vocab_from file whose
// vocabulary is larger than `vocab` or lacks tokenizer.ggml.tokens; the reader's error when
// vocab_from cannot be opened; the writer's error on I/O failure.
Status WriteRandomModel(const ModelSpec& spec, const std::string& path);

}  // namespace prefixd
