// Backend: where a model's weights and the paged KV pool live, and where the forward pass
// runs. The engine talks only to this interface, so a CUDA backend slots in beside the CPU one
// without changing its callers: weights and KV blocks stay in backend memory, and block copies
// and host transfers are backend operations.
//
// Thread safety: all calls come from the engine thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "kv/block_io.h"
#include "kv/block_table.h"
#include "kv/kv_layout.h"
#include "model/llama_model.h"

namespace prefixd {

// One sequence's part of a step: `tokens` at positions [start_pos, start_pos + size), whose
// KV goes into `blocks` (already sized and writable: see BlockTable::PrepareWrite), attending
// to everything before them in the same blocks.
struct ForwardSequence {
  std::span<const int32_t> tokens;
  int64_t start_pos = 0;
  std::span<const BlockId> blocks;
  // Which of this chunk's tokens need logits: the last one (for sampling) or all (for tests).
  bool all_logits = false;
  bool want_logits = true;  // false for a prefill chunk that is not the prompt's last
  // Hybrid models only (Backend::recurrent_state_floats() > 0): the sequence's recurrent
  // state, owned by the caller, holding the state after positions [0, start_pos) (all zeros
  // for start_pos 0). Forward advances it past this chunk's tokens. Empty otherwise.
  std::span<float> recurrent_state;
  // Hybrid models: states to copy out inside the chunk (snapshot points that do not fall at
  // its end), in increasing `after` (1 <= after < tokens.size()): the whole recurrent state
  // after the chunk's first `after` tokens, in recurrent_state's layout, into `dest`
  // (recurrent_state_floats() floats, owned by the caller). Lets a prefill chunk run whole
  // instead of stopping at every snapshot point.
  struct StateCapture {
    int64_t after = 0;
    float* dest = nullptr;
  };
  std::span<const StateCapture> state_captures;
};

struct ForwardBatch {
  std::vector<ForwardSequence> sequences;
};

// Logits of the requested tokens, in batch order: sequence by sequence, token by token.
struct ForwardOutput {
  int32_t vocab_size = 0;
  std::vector<float> logits;  // rows of vocab_size
  // row_of[s] = index of the first logits row of sequence s, or -1 when it asked for none.
  std::vector<int32_t> first_row;
  std::span<const float> Row(int32_t row) const {
    return {logits.data() + int64_t{row} * vocab_size, static_cast<size_t>(vocab_size)};
  }
};

class Backend : public BlockIo {
 public:
  ~Backend() override = default;

  virtual const char* name() const = 0;
  // Names the arithmetic that turns tokens into K/V: the backend's kernels and their version.
  // It is part of ModelFingerprint, so blocks one arithmetic made are never served where
  // another would have computed different bits (a CPU replica reading a GPU's disk or Redis
  // blocks, or a newer build reading an older one's). Bump it whenever a kernel change alters
  // any bit of any K/V.
  virtual const char* numerics() const = 0;
  virtual const KvLayout& kv_layout() const = 0;
  virtual int num_kv_blocks() const = 0;
  // Floats of one sequence's recurrent state (ForwardSequence::recurrent_state): 0 for
  // attention-only models. A sequence starts from zeros and its state is valid only at the
  // position its last Forward reached.
  virtual int64_t recurrent_state_floats() const { return 0; }

  // Runs the model over `batch`, writing the new tokens' K/V into their blocks.
  // InvalidArgument if a token id or position is out of range (nothing is written then).
  virtual Status Forward(const ForwardBatch& batch, ForwardOutput* out) = 0;

  // Copies whole blocks (all layers), src to dst, in order (copy-on-write).
  virtual void CopyBlocks(std::span<const BlockCopy> copies) = 0;
  // Host transfers of one block's bytes (BlockIo, for the lower tiers).
  int64_t block_bytes() const override { return kv_layout().BlockBytes(); }
};

// How the CPU backend multiplies quantised weights (Q8_0, Q4_0; K-quants once their tiles
// exist): kInt8 quantises each token's activations to 8 bits and sums in integers
// (compute/cpu/quant_int.h), kF32 dequantises weights and runs the F32 dot (the reference).
// The two give different logits, so they have different Backend::numerics().
enum class QuantDot { kInt8, kF32 };

struct CpuBackendOptions {
  int num_threads = 0;  // 0: every hardware thread
  int num_kv_blocks = 0;
  int block_size = 16;
  KvDtype kv_dtype = KvDtype::kF16;
  QuantDot quant_dot = QuantDot::kInt8;
};

// The CPU backend over `model` (which must outlive it). InvalidArgument for bad options;
// ResourceExhausted when the KV pool cannot be allocated.
StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const Model& model,
                                                    const CpuBackendOptions& options);

struct CudaBackendOptions {
  int device = 0;  // CUDA device ordinal
  int num_kv_blocks = 0;
  int block_size = 16;
  KvDtype kv_dtype = KvDtype::kF16;
};

// The CUDA backend over `model`: weights copied to the GPU, the KV pool in device memory.
// FailedPrecondition when prefixd was built without CUDA or no usable GPU is present;
// Unimplemented for weight types or architectures it does not run yet; ResourceExhausted
// when device memory is short.
StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const Model& model,
                                                     const CudaBackendOptions& options);

// Whether CreateCudaBackend can work here; `why` says why not.
bool CudaBackendAvailable(std::string* why);

}  // namespace prefixd
