// CpuBackend: the llama-family forward pass (llama, qwen2, qwen3, qwen3moe, and the qwen35
// hybrid) on the CPU, over weights used in place from the model's memory map and a KV pool in
// RAM. A hybrid's DeltaNet layers keep no K/V: the pool holds its attention layers only, and
// each sequence brings its recurrent state (ForwardSequence::recurrent_state).
//
// Thread safety: all calls from one thread (the engine's); kernels fan out to its ThreadPool.
#pragma once

#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"

#include "base/thread_pool.h"
#include "compute/backend.h"
#include "compute/cpu/delta_net.h"
#include "compute/cpu/moe.h"

namespace prefixd {

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using KvBuffer = std::unique_ptr<uint8_t, FreeDeleter>;

class CpuBackend : public Backend {
 public:
  CpuBackend(const Model& model, const CpuBackendOptions& options, KvLayout layout,
             KvBuffer kv, int num_blocks);

  const char* name() const override { return "cpu"; }
  // 2: attention's exp became one polynomial shared by every path (was libm's expf).
  // 3: attention scores in their own order (16 lanes, folded 16 scores at a time).
  // 4: attention scores summed over head dims in order (keys transposed per tile).
  // 5: attention's value accumulation fused (fma(p, v, acc)).
  // 6: a tile's softmax sum in a fixed tree (was sequential).
  // 7: SwiGLU's exp from exp_poly.h (was libm's expf).
  // 8: F16 matrices multiply activations rounded to F16, as ggml does (kernels.h MatMul).
  // "cpu-8-i8": the same with the integer dot products of quant_int.h for the model's
  // quantised matrices (QuantDot::kInt8 and at least one such matrix; otherwise "cpu-8").
  const char* numerics() const override { return int_dot_ ? "cpu-8-i8" : "cpu-8"; }
  const KvLayout& kv_layout() const override { return layout_; }
  int num_kv_blocks() const override { return num_blocks_; }
  int64_t recurrent_state_floats() const override { return hp_.recurrent_state_floats(); }
  Status Forward(const ForwardBatch& batch, ForwardOutput* out) override;
  void CopyBlocks(std::span<const BlockCopy> copies) override;
  void ReadBlock(BlockId block, std::span<uint8_t> out) const override;
  void WriteBlock(BlockId block, std::span<const uint8_t> in) override;

 private:
  // One token of the batch: where it sits and where its K/V go.
  struct TokenSlot {
    int32_t token;
    int64_t pos;
    int32_t seq;
  };
  Status Validate(const ForwardBatch& batch) const;
  uint8_t* BlockData(BlockId b) const { return kv_.get() + b.value() * layout_.BlockBytes(); }
  // RoPE angles of every token of the step (rope_cos_, rope_sin_).
  void ComputeRopeAngles(int64_t n);
  void ProjectQkv(const LayerWeights& lw, int64_t n);
  // qwen35: the Q projection's rows per head are [Q | gate]; split them into q_ and attn_gate_.
  void SplitQueryGate(int64_t n);
  // `kv_layer`: the layer's index among those with K/V in the pool.
  void StoreKv(int kv_layer, const ForwardBatch& batch);
  void StoreTokenKv(int kv_layer, const ForwardBatch& batch, int64_t g);
  void Attention(int kv_layer, const ForwardBatch& batch);
  // The token mixer of `layer` over the normed activations h_, its output into h_:
  // attention (with its output gate where the model has one) or a DeltaNet layer.
  void AttentionMix(int layer, const LayerWeights& lw, const ForwardBatch& batch, int64_t n);
  void DeltaNetMix(int layer, const LayerWeights& lw, const ForwardBatch& batch, int64_t n);
  // The FFN (dense SwiGLU or MoE) over h_, its output into h_.
  void Ffn(const LayerWeights& lw, int64_t n);
  // Logits of the rows each sequence asked for, from the final activations x_.
  void ComputeLogits(const ForwardBatch& batch, ForwardOutput* out);
  // The matrices of `lw` that the forward pass multiplies by: attention's, then the dense FFN's
  // or the router (and, with `experts`, the three expert tensors).
  std::vector<const Weight*> LayerMatrices(const LayerWeights& lw, bool experts) const;
  // Packs every F16 matrix product's weight for the panel kernels (gemm.h): once, at start-up.
  void PackF16Weights();
  // The packed copy of `w`, or null (not F16, or no packed kernels: neither AVX-512 nor AVX2).
  const uint16_t* Packed(const Weight& w) const {
    auto it = packed_.find(&w);
    return it == packed_.end() ? nullptr : it->second;
  }

  const Model& model_;
  const Hparams& hp_;
  // QuantDot::kInt8 asked for and some matrix product of the model takes the integer path.
  bool int_dot_ = false;
  KvLayout layout_;
  ThreadPool pool_;
  KvBuffer kv_;  // num_blocks_ blocks of layout_.BlockBytes()
  int num_blocks_;
  std::vector<float> rope_factors_;  // Llama 3 RoPE frequency divisors; empty when none
  KvBuffer packed_buffer_;           // the packed F16 matrices, on huge pages where possible
  absl::flat_hash_map<const Weight*, const uint16_t*> packed_;

  // Scratch, sized per step: activations of every token of the batch.
  std::vector<TokenSlot> slots_;
  struct QueryBlock {
    int64_t first;  // index into slots_
    int count;
  };
  std::vector<QueryBlock> query_blocks_;  // attention's work items (Attention)
  std::vector<float> rope_cos_, rope_sin_;  // per token, rope_dims / 2 each (Forward)
  std::vector<float> x_, h_, q_, k_, v_, attn_, gate_, up_;
  std::vector<float> qg_, attn_gate_;  // Hparams::attn_output_gate: Q projection, gate
  std::unique_ptr<cpu::MoeFfn> moe_;  // Hparams::moe() only: the MoE FFN and its scratch
  std::vector<float> moe_out_;
  // Hybrid models only: per layer, its index among the attention layers (the KV layout's
  // layers) or among the recurrent ones (its slot in a sequence's recurrent state).
  std::vector<int> kv_layer_, recurrent_index_;
  std::unique_ptr<cpu::DeltaNet> delta_net_;  // Hparams::hybrid() only
  std::vector<cpu::DeltaNetRun> delta_runs_;
  std::vector<cpu::DeltaNetRun::Capture> delta_captures_;
};

}  // namespace prefixd
