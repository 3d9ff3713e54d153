#include "compute/cuda/cuda_kernels.h"

#include <cuda_fp16.h>

namespace prefixd::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kMatMulWarps = 8;          // rows per block
constexpr int kMatMulTokensPerY = 64;    // tokens per grid row (y)
constexpr int kTokenGroup = 4;           // tokens sharing one pass over a weight row
constexpr int kNormThreads = 256;
constexpr int kAttentionThreads = 128;

__device__ __forceinline__ float LoadWeight(const DeviceWeight& w, int64_t i) {
  return w.type == WeightType::kF16 ? __half2float(static_cast<const __half*>(w.data)[i])
                                    : static_cast<const float*>(w.data)[i];
}

// Sum over the warp by a fixed shuffle tree: the result depends only on the 32 inputs.
__device__ __forceinline__ float WarpSum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

__global__ void EmbedKernel(DeviceWeight table, const int32_t* tokens, float* out) {
  const int64_t t = blockIdx.x;
  const int64_t base = int64_t{tokens[t]} * table.cols;
  for (int64_t i = threadIdx.x; i < table.cols; i += blockDim.x) {
    out[t * table.cols + i] = LoadWeight(table, base + i);
  }
}

__global__ void RmsNormKernel(const float* x, DeviceWeight gain, int64_t cols, float eps,
                              float* out) {
  __shared__ double partial[kNormThreads];
  const float* row = x + blockIdx.x * cols;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < cols; i += kNormThreads) {
    sum += static_cast<double>(row[i] * row[i]);
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int s = kNormThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const float mean = static_cast<float>(partial[0] / static_cast<double>(cols));
  const float scale = 1.0f / sqrtf(mean + eps);
  for (int64_t i = threadIdx.x; i < cols; i += kNormThreads) {
    out[blockIdx.x * cols + i] = __fmul_rn(__fmul_rn(row[i], scale), LoadWeight(gain, i));
  }
}

// One warp per weight row; grid.y splits the tokens. Lane l accumulates k = l, l+32, ... for
// each token; a group of tokens shares each weight load but not its sums.
__global__ void MatMulKernel(DeviceWeight w, const float* x, int64_t n, float* y) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t r = int64_t{blockIdx.x} * kMatMulWarps + warp;
  if (r >= w.rows) return;
  const int64_t cols = w.cols;
  const int64_t t_begin = int64_t{blockIdx.y} * kMatMulTokensPerY;
  const int64_t t_end = n < t_begin + kMatMulTokensPerY ? n : t_begin + kMatMulTokensPerY;
  const int64_t row = r * cols;
  for (int64_t t0 = t_begin; t0 < t_end; t0 += kTokenGroup) {
    const int g = t_end - t0 < kTokenGroup ? static_cast<int>(t_end - t0) : kTokenGroup;
    float acc[kTokenGroup] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t k = lane; k < cols; k += kWarp) {
      const float wk = LoadWeight(w, row + k);
#pragma unroll
      for (int j = 0; j < kTokenGroup; ++j) {
        if (j < g) acc[j] = __fmaf_rn(wk, x[(t0 + j) * cols + k], acc[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < kTokenGroup; ++j) {
      const float s = WarpSum(acc[j]);
      if (lane == 0 && j < g) y[(t0 + j) * w.rows + r] = s;
    }
  }
}

__global__ void RopeKernel(float* v, int32_t heads, int32_t head_dim, int32_t rope_dims,
                           const int64_t* pos, float theta_scale, float freq_scale, bool neox) {
  const int64_t t = blockIdx.x;
  const int half = rope_dims / 2;
  for (int item = threadIdx.x; item < heads * half; item += blockDim.x) {
    const int h = item / half, i = item % half;
    // theta_i = pos * theta_scale^i by repeated multiplication, as the CPU backend builds it.
    float theta = static_cast<float>(pos[t]);
    for (int j = 0; j < i; ++j) theta = __fmul_rn(theta, theta_scale);
    const float angle = __fmul_rn(theta, freq_scale);
    float s, c;
    sincosf(angle, &s, &c);
    float* head = v + (t * heads + h) * head_dim;
    const int a = neox ? i : 2 * i;
    const int b = neox ? i + half : 2 * i + 1;
    const float x0 = head[a], x1 = head[b];
    head[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    head[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
  }
}

__device__ __forceinline__ int64_t RowOffset(const KvGeometry& g, int v, int slot) {
  return ((int64_t{g.layer} * 2 + v) * g.block_size + slot) * g.kv_dim * g.element_bytes;
}

__global__ void StoreKvKernel(const float* k, const float* v, const int32_t* block_of,
                              const int32_t* slot_of, uint8_t* kv_base, KvGeometry g) {
  const int64_t t = blockIdx.x;
  uint8_t* block = kv_base + int64_t{block_of[t]} * g.block_bytes;
  for (int i = threadIdx.x; i < 2 * g.kv_dim; i += blockDim.x) {
    const int which = i / g.kv_dim, e = i % g.kv_dim;
    const float val = (which == 0 ? k : v)[t * g.kv_dim + e];
    uint8_t* dst = block + RowOffset(g, which, slot_of[t]);
    if (g.element_bytes == 2) {
      reinterpret_cast<__half*>(dst)[e] = __float2half_rn(val);
    } else {
      reinterpret_cast<float*>(dst)[e] = val;
    }
  }
}

__device__ __forceinline__ float LoadKv(const uint8_t* row, int element_bytes, int d) {
  return element_bytes == 2 ? __half2float(reinterpret_cast<const __half*>(row)[d])
                            : reinterpret_cast<const float*>(row)[d];
}

// One block per (token, head). Scores go to scratch; the max and the sum of exponentials are
// reduced by a fixed tree over the block's threads, each thread's part in position order.
__global__ void AttentionKernel(AttentionLaunch a) {
  __shared__ float q[512];
  __shared__ float red[kAttentionThreads];
  const int64_t t = blockIdx.x / a.num_heads;
  const int h = static_cast<int>(blockIdx.x % a.num_heads);
  const int kv_head = h / (a.num_heads / a.num_kv_heads);
  const int hd = a.head_dim;
  const int64_t pos = a.pos[t];
  const KvGeometry& g = a.geom;
  const int32_t* table = a.tables + a.table_offset[t];
  const int64_t head_offset = int64_t{kv_head} * hd * g.element_bytes;
  float* scores = a.scratch + (t * a.num_heads + h) * a.scratch_stride;
  const float* qh = a.q + (t * a.num_heads + h) * hd;
  for (int d = threadIdx.x; d < hd; d += kAttentionThreads) q[d] = qh[d];
  __syncthreads();

  float local_max = -INFINITY;
  for (int64_t p = threadIdx.x; p <= pos; p += kAttentionThreads) {
    const uint8_t* krow = a.kv_base + int64_t{table[p / g.block_size]} * g.block_bytes +
                          RowOffset(g, 0, static_cast<int>(p % g.block_size)) + head_offset;
    float s = 0.f;
    for (int d = 0; d < hd; ++d) s = __fmaf_rn(q[d], LoadKv(krow, g.element_bytes, d), s);
    s = __fmul_rn(s, a.scale);
    scores[p] = s;
    local_max = fmaxf(local_max, s);
  }
  red[threadIdx.x] = local_max;
  __syncthreads();
  for (int s = kAttentionThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  const float max_score = red[0];
  __syncthreads();
  float local_sum = 0.f;
  for (int64_t p = threadIdx.x; p <= pos; p += kAttentionThreads) {
    const float e = expf(__fsub_rn(scores[p], max_score));
    scores[p] = e;
    local_sum = __fadd_rn(local_sum, e);
  }
  red[threadIdx.x] = local_sum;
  __syncthreads();
  for (int s = kAttentionThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] = __fadd_rn(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  const float total = red[0];
  float* out = a.out + (t * a.num_heads + h) * hd;
  for (int d = threadIdx.x; d < hd; d += kAttentionThreads) {
    float acc = 0.f;
    for (int64_t p = 0; p <= pos; ++p) {
      const uint8_t* vrow = a.kv_base + int64_t{table[p / g.block_size]} * g.block_bytes +
                            RowOffset(g, 1, static_cast<int>(p % g.block_size)) + head_offset;
      acc = __fmaf_rn(scores[p], LoadKv(vrow, g.element_bytes, d), acc);
    }
    out[d] = __fdiv_rn(acc, total);
  }
}

__global__ void AddKernel(float* x, const float* h, int64_t count) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < count) x[i] = __fadd_rn(x[i], h[i]);
}

__global__ void SwiGluKernel(float* gate, const float* up, int64_t count) {
  const int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (i < count) {
    const float g = gate[i];
    gate[i] = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), up[i]);
  }
}

__global__ void GatherRowsKernel(const float* src, const int32_t* rows, int64_t cols, float* dst) {
  const int64_t r = blockIdx.x;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    dst[r * cols + i] = src[int64_t{rows[r]} * cols + i];
  }
}

unsigned Blocks(int64_t count, int threads) {
  return static_cast<unsigned>((count + threads - 1) / threads);
}

}  // namespace

void LaunchEmbed(const DeviceWeight& table, const int32_t* tokens, int64_t n, float* out,
                 cudaStream_t stream) {
  if (n > 0) EmbedKernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(table, tokens, out);
}

void LaunchRmsNorm(const float* x, const DeviceWeight& gain, int64_t n, int64_t cols, float eps,
                   float* out, cudaStream_t stream) {
  if (n > 0) {
    RmsNormKernel<<<static_cast<unsigned>(n), kNormThreads, 0, stream>>>(x, gain, cols, eps, out);
  }
}

void LaunchMatMul(const DeviceWeight& w, const float* x, int64_t n, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  const dim3 grid(Blocks(w.rows, kMatMulWarps), Blocks(n, kMatMulTokensPerY));
  MatMulKernel<<<grid, kMatMulWarps * kWarp, 0, stream>>>(w, x, n, y);
}

void LaunchRope(float* v, int64_t n, int32_t heads, int32_t head_dim, int32_t rope_dims,
                const int64_t* pos, float theta_scale, float freq_scale, bool neox,
                cudaStream_t stream) {
  if (n > 0) {
    RopeKernel<<<static_cast<unsigned>(n), 128, 0, stream>>>(v, heads, head_dim, rope_dims, pos,
                                                            theta_scale, freq_scale, neox);
  }
}

void LaunchStoreKv(const float* k, const float* v, int64_t n, const int32_t* block_of,
                   const int32_t* slot_of, uint8_t* kv_base, const KvGeometry& geom,
                   cudaStream_t stream) {
  if (n > 0) {
    StoreKvKernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(k, v, block_of, slot_of, kv_base,
                                                                geom);
  }
}

void LaunchAttention(const AttentionLaunch& a, int64_t n, cudaStream_t stream) {
  if (n > 0) {
    AttentionKernel<<<static_cast<unsigned>(n * a.num_heads), kAttentionThreads, 0, stream>>>(a);
  }
}

void LaunchAdd(float* x, const float* h, int64_t count, cudaStream_t stream) {
  if (count > 0) AddKernel<<<Blocks(count, 256), 256, 0, stream>>>(x, h, count);
}

void LaunchSwiGlu(float* gate, const float* up, int64_t count, cudaStream_t stream) {
  if (count > 0) SwiGluKernel<<<Blocks(count, 256), 256, 0, stream>>>(gate, up, count);
}

void LaunchGatherRows(const float* src, const int32_t* rows, int64_t num, int64_t cols,
                      float* dst, cudaStream_t stream) {
  if (num > 0) GatherRowsKernel<<<static_cast<unsigned>(num), 256, 0, stream>>>(src, rows, cols, dst);
}

}  // namespace prefixd::cuda
