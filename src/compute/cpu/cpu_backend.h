// CpuBackend: the llama-family forward pass (llama, qwen2, qwen3, qwen3moe) on the CPU, over weights
// used in place from the model's memory map and a KV pool in RAM.
//
// Thread safety: all calls from one thread (the engine's); kernels fan out to its ThreadPool.
#pragma once

#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"

#include "base/thread_pool.h"
#include "compute/backend.h"
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
  // "cpu-7-i8": the same with the integer dot products of quant_int.h for the model's
  // quantised matrices (QuantDot::kInt8 and at least one such matrix; otherwise "cpu-7").
  const char* numerics() const override { return int_dot_ ? "cpu-7-i8" : "cpu-7"; }
  const KvLayout& kv_layout() const override { return layout_; }
  int num_kv_blocks() const override { return num_blocks_; }
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
  void ProjectQkv(const LayerWeights& lw, int64_t n);
  void StoreKv(int layer, const ForwardBatch& batch);
  void StoreTokenKv(int layer, const ForwardBatch& batch, int64_t g);
  void Attention(int layer, const ForwardBatch& batch);
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
  std::unique_ptr<cpu::MoeFfn> moe_;  // Hparams::moe() only: the MoE FFN and its scratch
  std::vector<float> moe_out_;
};

}  // namespace prefixd
