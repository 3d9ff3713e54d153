// CudaBackend: the llama forward pass on one GPU, over weights copied to device memory and a
// KV pool in device memory with the same block layout as the CPU backend's (kv/kv_layout.h),
// so the tiers move its blocks unchanged.
//
// Thread safety: all calls from the engine thread. Each step runs on one stream; Forward
// returns after the logits are on the host.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "compute/backend.h"
#include "compute/cuda/cuda_kernels.h"
#include "compute/forward_batch_check.h"

namespace prefixd {

namespace {

Status CudaError(cudaError_t err, const char* what) {
  return absl::InternalError(absl::StrCat("CUDA ", what, ": ", cudaGetErrorString(err)));
}

#define PREFIXD_CUDA_RETURN(expr, what)                  \
  do {                                                   \
    const cudaError_t prefixd_err_ = (expr);             \
    if (prefixd_err_ != cudaSuccess) return CudaError(prefixd_err_, what); \
  } while (0)

// A device array that grows to the largest step seen and is reused.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr_); }
  Status Reserve(int64_t count) {
    if (count <= capacity_) return absl::OkStatus();
    cudaFree(ptr_);
    ptr_ = nullptr;
    capacity_ = 0;
    const cudaError_t err = cudaMalloc(&ptr_, static_cast<size_t>(count) * sizeof(T));
    if (err != cudaSuccess) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot allocate ", count * sizeof(T), " bytes of GPU memory for activations: ",
          cudaGetErrorString(err), "; lower --max-batch-tokens"));
    }
    capacity_ = count;
    return absl::OkStatus();
  }
  Status Upload(const std::vector<T>& host, cudaStream_t stream) {
    RETURN_IF_ERROR(Reserve(static_cast<int64_t>(host.size())));
    if (host.empty()) return absl::OkStatus();
    PREFIXD_CUDA_RETURN(cudaMemcpyAsync(ptr_, host.data(), host.size() * sizeof(T),
                                        cudaMemcpyHostToDevice, stream),
                        "upload");
    return absl::OkStatus();
  }
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
  int64_t capacity_ = 0;
};

struct DeviceLayer {
  cuda::DeviceWeight attn_norm, wq, wk, wv, wo, ffn_norm, ffn_gate, ffn_up, ffn_down;
};

class CudaBackend : public Backend {
 public:
  CudaBackend(const Model& model, const CudaBackendOptions& options, KvLayout layout)
      : model_(model), hp_(model.hparams()), options_(options), layout_(layout) {}
  ~CudaBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
    for (void* p : allocations_) cudaFree(p);
  }

  Status Init();
  const char* name() const override { return "cuda"; }
  const char* numerics() const override { return "cuda-1"; }
  const KvLayout& kv_layout() const override { return layout_; }
  int num_kv_blocks() const override { return options_.num_kv_blocks; }
  Status Forward(const ForwardBatch& batch, ForwardOutput* out) override;
  void CopyBlocks(std::span<const BlockCopy> copies) override;
  void ReadBlock(BlockId block, std::span<uint8_t> out) const override;
  void WriteBlock(BlockId block, std::span<const uint8_t> in) override;

 private:
  StatusOr<cuda::DeviceWeight> Upload(const Weight& w);
  Status RunLayers(int64_t n, int64_t max_pos);
  Status ComputeLogits(const ForwardBatch& batch, ForwardOutput* out);
  uint8_t* BlockData(BlockId b) const { return kv_ + b.value() * layout_.BlockBytes(); }
  cuda::KvGeometry Geometry(int layer) const {
    return {layout_.block_size, layout_.kv_dim, static_cast<int32_t>(layout_.ElementBytes()),
            layer, layout_.BlockBytes()};
  }

  const Model& model_;
  const Hparams& hp_;
  CudaBackendOptions options_;
  KvLayout layout_;
  cudaStream_t stream_ = nullptr;
  std::vector<void*> allocations_;  // weights and the KV pool, freed at destruction
  uint8_t* kv_ = nullptr;
  cuda::DeviceWeight token_embd_, output_norm_, output_;
  std::vector<DeviceLayer> layers_;
  float theta_scale_ = 1.0f;

  // Per-step inputs and activations (device), reused across steps.
  DeviceArray<int32_t> tokens_, block_of_, slot_of_, table_offset_, tables_, rows_;
  DeviceArray<int64_t> pos_;
  DeviceArray<float> x_, h_, q_, k_, v_, attn_, gate_, up_, scores_, normed_, logits_;
};

StatusOr<cuda::DeviceWeight> CudaBackend::Upload(const Weight& w) {
  cuda::DeviceWeight d;
  if (w.type == TensorType::kF32) {
    d.type = cuda::WeightType::kF32;
  } else if (w.type == TensorType::kF16) {
    d.type = cuda::WeightType::kF16;
  } else {
    return absl::UnimplementedError(absl::StrCat(
        "the CUDA backend runs F32 and F16 weights; tensor '", w.name, "' is ",
        TensorTypeName(static_cast<uint32_t>(w.type)), " (use --backend cpu)"));
  }
  d.rows = w.rows;
  d.cols = w.cols;
  const size_t bytes = static_cast<size_t>(w.rows * w.row_bytes);
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err != cudaSuccess) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes,
                                                     " bytes of GPU memory for tensor '", w.name,
                                                     "': ", cudaGetErrorString(err)));
  }
  allocations_.push_back(p);
  PREFIXD_CUDA_RETURN(cudaMemcpy(p, w.data, bytes, cudaMemcpyHostToDevice), "weight upload");
  d.data = p;
  return d;
}

Status CudaBackend::Init() {
  PREFIXD_CUDA_RETURN(cudaSetDevice(options_.device), "set device");
  PREFIXD_CUDA_RETURN(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
  if (hp_.moe()) {
    return absl::UnimplementedError(absl::StrCat(
        "the CUDA backend has no mixture-of-experts FFN (architecture ", hp_.arch,
        "); use --backend cpu"));
  }
  if (hp_.head_dim > 512) {
    return absl::UnimplementedError(
        absl::StrCat("the CUDA backend handles head dimensions up to 512, not ", hp_.head_dim));
  }
  const ModelWeights& w = model_.weights();
  ASSIGN_OR_RETURN(token_embd_, Upload(w.token_embd));
  ASSIGN_OR_RETURN(output_norm_, Upload(w.output_norm));
  if (w.output_tied) {
    output_ = token_embd_;
  } else {
    ASSIGN_OR_RETURN(output_, Upload(w.output));
  }
  for (const LayerWeights& lw : w.layers) {
    DeviceLayer d;
    ASSIGN_OR_RETURN(d.attn_norm, Upload(lw.attn_norm));
    ASSIGN_OR_RETURN(d.wq, Upload(lw.wq));
    ASSIGN_OR_RETURN(d.wk, Upload(lw.wk));
    ASSIGN_OR_RETURN(d.wv, Upload(lw.wv));
    ASSIGN_OR_RETURN(d.wo, Upload(lw.wo));
    ASSIGN_OR_RETURN(d.ffn_norm, Upload(lw.ffn_norm));
    ASSIGN_OR_RETURN(d.ffn_gate, Upload(lw.ffn_gate));
    ASSIGN_OR_RETURN(d.ffn_up, Upload(lw.ffn_up));
    ASSIGN_OR_RETURN(d.ffn_down, Upload(lw.ffn_down));
    layers_.push_back(d);
  }
  const size_t kv_bytes = static_cast<size_t>(layout_.BlockBytes()) * options_.num_kv_blocks;
  void* kv = nullptr;
  const cudaError_t err = cudaMalloc(&kv, kv_bytes);
  if (err != cudaSuccess) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", kv_bytes, " bytes of GPU memory for ", options_.num_kv_blocks,
        " KV blocks: ", cudaGetErrorString(err), "; lower the KV budget"));
  }
  allocations_.push_back(kv);
  kv_ = static_cast<uint8_t*>(kv);
  PREFIXD_CUDA_RETURN(cudaMemset(kv_, 0, kv_bytes), "KV pool clear");
  // The same float expression as the CPU backend's RoPE, so positions agree closely.
  theta_scale_ = std::pow(hp_.rope_freq_base, -2.0f / static_cast<float>(hp_.rope_dims));
  return absl::OkStatus();
}

Status CudaBackend::RunLayers(int64_t n, int64_t max_pos) {
  const int64_t embd = hp_.embd, q_dim = hp_.q_dim(), kv_dim = hp_.kv_dim(), ff = hp_.ff;
  RETURN_IF_ERROR(x_.Reserve(n * embd));
  RETURN_IF_ERROR(h_.Reserve(n * embd));
  RETURN_IF_ERROR(q_.Reserve(n * q_dim));
  RETURN_IF_ERROR(k_.Reserve(n * kv_dim));
  RETURN_IF_ERROR(v_.Reserve(n * kv_dim));
  RETURN_IF_ERROR(attn_.Reserve(n * q_dim));
  RETURN_IF_ERROR(gate_.Reserve(n * ff));
  RETURN_IF_ERROR(up_.Reserve(n * ff));
  RETURN_IF_ERROR(scores_.Reserve(n * hp_.num_heads * (max_pos + 1)));
  cudaStream_t s = stream_;
  const bool neox = hp_.rope_style == RopeStyle::kNeox;

  cuda::LaunchEmbed(token_embd_, tokens_.get(), n, x_.get(), s);
  for (int layer = 0; layer < hp_.num_layers; ++layer) {
    const DeviceLayer& lw = layers_[layer];
    cuda::LaunchRmsNorm(x_.get(), lw.attn_norm, n, embd, hp_.rms_eps, h_.get(), s);
    cuda::LaunchMatMul(lw.wq, h_.get(), n, q_.get(), s);
    cuda::LaunchMatMul(lw.wk, h_.get(), n, k_.get(), s);
    cuda::LaunchMatMul(lw.wv, h_.get(), n, v_.get(), s);
    cuda::LaunchRope(q_.get(), n, hp_.num_heads, hp_.head_dim, hp_.rope_dims, pos_.get(),
                     theta_scale_, hp_.rope_freq_scale, neox, s);
    cuda::LaunchRope(k_.get(), n, hp_.num_kv_heads, hp_.head_dim, hp_.rope_dims, pos_.get(),
                     theta_scale_, hp_.rope_freq_scale, neox, s);
    cuda::LaunchStoreKv(k_.get(), v_.get(), n, block_of_.get(), slot_of_.get(), kv_,
                        Geometry(layer), s);
    cuda::AttentionLaunch a;
    a.q = q_.get();
    a.out = attn_.get();
    a.pos = pos_.get();
    a.table_offset = table_offset_.get();
    a.tables = tables_.get();
    a.kv_base = kv_;
    a.geom = Geometry(layer);
    a.num_heads = hp_.num_heads;
    a.num_kv_heads = hp_.num_kv_heads;
    a.head_dim = hp_.head_dim;
    a.scale = 1.0f / std::sqrt(static_cast<float>(hp_.head_dim));
    a.scratch = scores_.get();
    a.scratch_stride = max_pos + 1;
    cuda::LaunchAttention(a, n, s);
    cuda::LaunchMatMul(lw.wo, attn_.get(), n, h_.get(), s);
    cuda::LaunchAdd(x_.get(), h_.get(), n * embd, s);
    cuda::LaunchRmsNorm(x_.get(), lw.ffn_norm, n, embd, hp_.rms_eps, h_.get(), s);
    cuda::LaunchMatMul(lw.ffn_gate, h_.get(), n, gate_.get(), s);
    cuda::LaunchMatMul(lw.ffn_up, h_.get(), n, up_.get(), s);
    cuda::LaunchSwiGlu(gate_.get(), up_.get(), n * ff, s);
    cuda::LaunchMatMul(lw.ffn_down, gate_.get(), n, h_.get(), s);
    cuda::LaunchAdd(x_.get(), h_.get(), n * embd, s);
  }
  PREFIXD_CUDA_RETURN(cudaGetLastError(), "kernel launch");
  return absl::OkStatus();
}

Status CudaBackend::ComputeLogits(const ForwardBatch& batch, ForwardOutput* out) {
  out->vocab_size = hp_.vocab_size;
  out->first_row.assign(batch.sequences.size(), -1);
  std::vector<int32_t> rows;
  int32_t g = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const ForwardSequence& seq = batch.sequences[s];
    const int32_t len = static_cast<int32_t>(seq.tokens.size());
    if (seq.want_logits && len > 0) {
      out->first_row[s] = static_cast<int32_t>(rows.size());
      for (int32_t i = seq.all_logits ? 0 : len - 1; i < len; ++i) rows.push_back(g + i);
    }
    g += len;
  }
  const int64_t num_rows = static_cast<int64_t>(rows.size());
  out->logits.resize(num_rows * hp_.vocab_size);
  if (num_rows == 0) return absl::OkStatus();
  RETURN_IF_ERROR(rows_.Upload(rows, stream_));
  RETURN_IF_ERROR(normed_.Reserve(num_rows * hp_.embd));
  RETURN_IF_ERROR(h_.Reserve(num_rows * hp_.embd));
  RETURN_IF_ERROR(logits_.Reserve(num_rows * hp_.vocab_size));
  cuda::LaunchGatherRows(x_.get(), rows_.get(), num_rows, hp_.embd, h_.get(), stream_);
  cuda::LaunchRmsNorm(h_.get(), output_norm_, num_rows, hp_.embd, hp_.rms_eps, normed_.get(),
                      stream_);
  cuda::LaunchMatMul(output_, normed_.get(), num_rows, logits_.get(), stream_);
  PREFIXD_CUDA_RETURN(cudaGetLastError(), "kernel launch");
  PREFIXD_CUDA_RETURN(cudaMemcpyAsync(out->logits.data(), logits_.get(),
                                      out->logits.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                      stream_),
                      "logits download");
  PREFIXD_CUDA_RETURN(cudaStreamSynchronize(stream_), "step");
  return absl::OkStatus();
}

Status CudaBackend::Forward(const ForwardBatch& batch, ForwardOutput* out) {
  RETURN_IF_ERROR(CheckForwardBatch(batch, hp_.vocab_size, layout_.block_size,
                                    options_.num_kv_blocks));
  std::vector<int32_t> tokens, block_of, slot_of, table_offset, tables;
  std::vector<int64_t> pos;
  int64_t max_pos = 0;
  for (const ForwardSequence& seq : batch.sequences) {
    const int32_t offset = static_cast<int32_t>(tables.size());
    for (BlockId b : seq.blocks) tables.push_back(b.value());
    for (size_t i = 0; i < seq.tokens.size(); ++i) {
      const int64_t p = seq.start_pos + static_cast<int64_t>(i);
      tokens.push_back(seq.tokens[i]);
      pos.push_back(p);
      block_of.push_back(seq.blocks[p / layout_.block_size].value());
      slot_of.push_back(static_cast<int32_t>(p % layout_.block_size));
      table_offset.push_back(offset);
      max_pos = std::max(max_pos, p);
    }
  }
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) {
    out->vocab_size = hp_.vocab_size;
    out->first_row.assign(batch.sequences.size(), -1);
    out->logits.clear();
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(tokens_.Upload(tokens, stream_));
  RETURN_IF_ERROR(pos_.Upload(pos, stream_));
  RETURN_IF_ERROR(block_of_.Upload(block_of, stream_));
  RETURN_IF_ERROR(slot_of_.Upload(slot_of, stream_));
  RETURN_IF_ERROR(table_offset_.Upload(table_offset, stream_));
  RETURN_IF_ERROR(tables_.Upload(tables, stream_));
  RETURN_IF_ERROR(RunLayers(n, max_pos));
  return ComputeLogits(batch, out);
}

void CudaBackend::CopyBlocks(std::span<const BlockCopy> copies) {
  for (const BlockCopy& c : copies) {
    const cudaError_t err = cudaMemcpyAsync(BlockData(c.dst), BlockData(c.src),
                                            layout_.BlockBytes(), cudaMemcpyDeviceToDevice,
                                            stream_);
    PREFIXD_CHECK(err == cudaSuccess, "CUDA block copy failed");
  }
}

void CudaBackend::ReadBlock(BlockId block, std::span<uint8_t> out) const {
  PREFIXD_CHECK(static_cast<int64_t>(out.size()) == layout_.BlockBytes(), "ReadBlock size");
  // Called from the tier controller's copier thread too, whose current device is its own.
  cudaError_t err = cudaSetDevice(options_.device);
  // On the step's stream, so it sees every write of the steps before it.
  if (err == cudaSuccess) {
    err = cudaMemcpyAsync(out.data(), BlockData(block), out.size(), cudaMemcpyDeviceToHost,
                          stream_);
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
  PREFIXD_CHECK(err == cudaSuccess, "CUDA block read failed");
}

void CudaBackend::WriteBlock(BlockId block, std::span<const uint8_t> in) {
  PREFIXD_CHECK(static_cast<int64_t>(in.size()) == layout_.BlockBytes(), "WriteBlock size");
  cudaError_t err = cudaMemcpyAsync(BlockData(block), in.data(), in.size(),
                                    cudaMemcpyHostToDevice, stream_);
  // `in` may be freed when this returns.
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream_);
  PREFIXD_CHECK(err == cudaSuccess, "CUDA block write failed");
}

}  // namespace

bool CudaBackendAvailable(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    if (why) {
      *why = err != cudaSuccess
                 ? absl::StrCat("no usable CUDA device: ", cudaGetErrorString(err))
                 : std::string("no CUDA device found");
    }
    return false;
  }
  return true;
}

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const Model& model,
                                                     const CudaBackendOptions& options) {
  std::string why;
  if (!CudaBackendAvailable(&why)) {
    return absl::FailedPreconditionError(absl::StrCat(why, "; use --backend cpu"));
  }
  if (options.block_size < 1 || options.block_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("block size ", options.block_size, " is out of range [1, 4096]"));
  }
  if (options.num_kv_blocks < 1) {
    return absl::InvalidArgumentError("the KV pool needs at least one block");
  }
  const Hparams& hp = model.hparams();
  if (hp.arch != "llama") {
    return absl::UnimplementedError(absl::StrCat(
        "the CUDA backend runs the llama architecture; this model is '", hp.arch,
        "' (use --backend cpu)"));
  }
  // Its kernels have no Q/K/V bias add and no RoPE frequency divisors yet: running such a
  // llama model would be silently wrong, so it is refused.
  if (hp.qkv_bias || hp.qk_norm || hp.rope_freq_factors) {
    return absl::UnimplementedError(absl::StrCat(
        "the CUDA backend does not yet run llama models with ",
        hp.qkv_bias ? "Q/K/V biases" : hp.qk_norm ? "Q/K norms" : "Llama 3 RoPE scaling",
        " (use --backend cpu)"));
  }
  KvLayout layout;
  layout.num_layers = hp.num_layers;
  layout.kv_dim = hp.kv_dim();
  layout.block_size = options.block_size;
  layout.dtype = options.kv_dtype;
  auto backend = std::make_unique<CudaBackend>(model, options, layout);
  RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace prefixd
