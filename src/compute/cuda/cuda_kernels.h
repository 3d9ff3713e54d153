// The CUDA kernels of the llama forward pass, as plain launch functions over device pointers.
//
// Exactness (ARCHITECTURE.md invariant 1) on the GPU: every output element is reduced by one
// warp or one thread block in an order fixed by the element alone (lane k-striding, then a
// fixed shuffle tree; attention over positions in a fixed per-thread order, then a fixed
// tree), never by how many tokens or sequences share the launch. So a token's logits are the
// same bits whatever batch, chunk or cache split it came through. They are close to, not
// identical with, the CPU backend's: the two backends reduce in different orders.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace prefixd::cuda {

enum class WeightType : int32_t { kF32 = 0, kF16 = 1 };

// A weight matrix in device memory: `rows` rows of `cols` elements.
struct DeviceWeight {
  WeightType type = WeightType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
};

// Where one layer's K/V rows live inside a KV block (see kv/kv_layout.h).
struct KvGeometry {
  int32_t block_size = 16;
  int32_t kv_dim = 0;
  int32_t element_bytes = 2;  // 2: F16, 4: F32
  int32_t layer = 0;
  int64_t block_bytes = 0;
};

// out[t] = table row tokens[t], as F32.
void LaunchEmbed(const DeviceWeight& table, const int32_t* tokens, int64_t n, float* out,
                 cudaStream_t stream);

// out[t] = x[t] / rms(x[t]) * gain, for n rows of `cols`.
void LaunchRmsNorm(const float* x, const DeviceWeight& gain, int64_t n, int64_t cols, float eps,
                   float* out, cudaStream_t stream);

// y[t * w.rows + r] = dot(w row r, x[t]) for t < n.
void LaunchMatMul(const DeviceWeight& w, const float* x, int64_t n, float* y, cudaStream_t stream);

// Rotates the first rope_dims of each of `heads` heads of n rows (row stride heads*head_dim)
// by position pos[t]; theta_scale = base^(-2/rope_dims) computed by the caller.
void LaunchRope(float* v, int64_t n, int32_t heads, int32_t head_dim, int32_t rope_dims,
                const int64_t* pos, float theta_scale, float freq_scale, bool neox,
                cudaStream_t stream);

// Writes K and V rows of n tokens into their KV block slots for layer geom.layer.
void LaunchStoreKv(const float* k, const float* v, int64_t n, const int32_t* block_of,
                   const int32_t* slot_of, uint8_t* kv_base, const KvGeometry& geom,
                   cudaStream_t stream);

struct AttentionLaunch {
  const float* q = nullptr;      // n rows of num_heads * head_dim
  float* out = nullptr;          // same shape
  const int64_t* pos = nullptr;  // position of each token
  // Token t's sequence's block ids are tables[table_offset[t] ...].
  const int32_t* table_offset = nullptr;
  const int32_t* tables = nullptr;
  const uint8_t* kv_base = nullptr;
  KvGeometry geom;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  float scale = 1.0f;
  float* scratch = nullptr;  // n * num_heads * scratch_stride floats
  int64_t scratch_stride = 0;  // at least max(pos) + 1
};

// Causal attention of every token over positions [0, pos[t]] of its own sequence.
void LaunchAttention(const AttentionLaunch& a, int64_t n, cudaStream_t stream);

// x[i] += h[i].
void LaunchAdd(float* x, const float* h, int64_t count, cudaStream_t stream);

// gate[i] = silu(gate[i]) * up[i].
void LaunchSwiGlu(float* gate, const float* up, int64_t count, cudaStream_t stream);

// dst[i] = src[rows[i]] for `num` rows of `cols`.
void LaunchGatherRows(const float* src, const int32_t* rows, int64_t num, int64_t cols,
                      float* dst, cudaStream_t stream);

}  // namespace prefixd::cuda
