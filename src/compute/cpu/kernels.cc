#include "compute/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/check.h"
#include "base/fp16.h"
#include "base/cpu_features.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/exp_poly.h"
#include "compute/cpu/gemm.h"
#include "compute/cpu/quant_dequant.h"
#include "compute/cpu/quant_int.h"

namespace prefixd::cpu {

namespace {
// Rows per work item: a tile of weight rows stays in cache while every token uses it.
constexpr int64_t kRowTile = 16;

// Rows [r0, r1) of y for every token, one dot per output (decode of unpacked weights, or
// prefill on a CPU with neither AVX-512 nor AVX2 + FMA + F16C). BF16 and quantised rows are dequantised once into F32 and reduced with the F32 dot
// (or both at once by the fused kernel), so every token sees the same F32 weights as the
// prefill GEMM does, reduced in the same order.
void RowTile(const Weight& w, const float* x, int64_t num_tokens, float* y, int64_t r0,
             int64_t r1, std::vector<float>& scratch) {
  const int64_t rows = w.rows, cols = w.cols;
  if (w.type == TensorType::kF32) {
    const DotF32Fn dot = GetDotF32();
    for (int64_t t = 0; t < num_tokens; ++t) {
      for (int64_t r = r0; r < r1; ++r) {
        y[t * rows + r] = dot(reinterpret_cast<const float*>(w.Row(r)), x + t * cols, cols);
      }
    }
  } else if (w.type == TensorType::kF16) {
    const DotF16Fn dot = GetDotF16();
    const DotF16x4Fn dot4 = GetDotF16x4();
    auto row = [&](int64_t r) { return reinterpret_cast<const uint16_t*>(w.Row(r)); };
    for (int64_t t = 0; t < num_tokens; ++t) {
      const float* xt = x + t * cols;
      int64_t r = r0;
      for (; r + 4 <= r1; r += 4) dot4(row(r), row(r + 1), row(r + 2), row(r + 3), xt, cols, &y[t * rows + r]);
      for (; r < r1; ++r) y[t * rows + r] = dot(row(r), xt, cols);
    }
  } else if (const QuantDotFn fused = GetQuantDot(w.type)) {
    // Same values and order, but the dequantised row never leaves the registers.
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t t = 0; t < num_tokens; ++t) y[t * rows + r] = fused(w.Row(r), x + t * cols, cols);
    }
  } else {
    const DequantRowFn dequant = GetDequantRow(w.type);
    const DotF32Fn dot = GetDotF32();
    scratch.resize(cols);
    for (int64_t r = r0; r < r1; ++r) {
      dequant(w.Row(r), cols, scratch.data());
      for (int64_t t = 0; t < num_tokens; ++t) y[t * rows + r] = dot(scratch.data(), x + t * cols, cols);
    }
  }
}

// Panel p (kGemmPanelRows rows) of y for every token block of the packed path: the panel is
// packed (dequantised from F16, BF16 or a quantised type on the way) into L2 once and every
// token block runs past it (see gemm.h).
void PackedPanel(const Weight& w, const uint16_t* packed, int64_t p, const float* blocks,
                 int64_t num_tokens, float* y, std::vector<float>& panel, std::vector<float>& row) {
  const int64_t rows = w.rows, cols = w.cols;
  const int64_t block_floats = GemmBlockFloats(cols);
  const int64_t num_blocks = (num_tokens + kGemmBlockTokens - 1) / kGemmBlockTokens;
  panel.resize(GemmPanelFloats(cols));
  row.resize(cols);
  const DequantRowFn dequant = w.type == TensorType::kF32 ? nullptr : GetDequantRow(w.type);
  const int64_t r0 = p * kGemmPanelRows;
  const int n = static_cast<int>(std::min<int64_t>(kGemmPanelRows, rows - r0));
  if (packed != nullptr) {
    UnpackF16Panel(packed + p * GemmPanelFloats(cols), cols, panel.data());
  } else if (n < kGemmPanelRows) {
    ZeroPanel(cols, panel.data());
  }
  for (int i = 0; i < n && packed == nullptr; ++i) {
    const float* src = reinterpret_cast<const float*>(w.Row(r0 + i));
    if (dequant != nullptr) {
      dequant(w.Row(r0 + i), cols, row.data());
      src = row.data();
    }
    PackPanelRow(src, cols, i, panel.data());
  }
  for (int64_t b = 0; b < num_blocks; ++b) {
    const int nt = static_cast<int>(std::min<int64_t>(kGemmBlockTokens, num_tokens - b * kGemmBlockTokens));
    GemmPanelBlock(panel.data(), blocks + b * block_floats, cols, n, nt,
                   y + b * kGemmBlockTokens * rows + r0, rows);
  }
}

// Tokens per prefill work item of the integer path: a row tile's weights stay in L1 while
// each token of the block runs past them, and the block's quantised rows stay in L2.
constexpr int64_t kIntTokenBlock = 32;
// Rows per prefill work item of the integer path: a tile prepares its tokens' activations
// (transposed, with their scales) once per call, so taller items spread that over more rows;
// the rows stream through one at a time, so their number does not bound what stays in L1.
constexpr int64_t kIntPrefillRowTile = 64;

// The integer path (quant_int.h) for products whose weights all have a tile kernel: each
// token's row is quantised once per format (in parallel over tokens), then the threads split
// (row tile x token block) items. A tile's output for a token never depends on the others in
// its tile, so decode and prefill, any chunking and any thread count give the same bits.
void MatMulInt(std::span<const MatMulProduct> products, const float* x, int64_t num_tokens,
               ThreadPool& pool) {
  const int64_t cols = products[0].w->cols;
  // One buffer per format in use; Q8x256 rows exist only where cols is a multiple of 256.
  constexpr QuantActivation kFormats[] = {QuantActivation::kQ8x32, QuantActivation::kQ8x256};
  thread_local std::vector<uint8_t> xq_buffers[2];
  int64_t strides[2] = {0, 0};
  for (const MatMulProduct& p : products) {
    const QuantActivation f = IntDotActivation(p.w->type);
    for (int k = 0; k < 2; ++k) {
      if (f == kFormats[k]) strides[k] = QuantActivationBytes(f, cols);
    }
  }
  for (int k = 0; k < 2; ++k) xq_buffers[k].resize(strides[k] * num_tokens);
  std::vector<uint8_t>* buffers = xq_buffers;  // thread_local: name it for the workers
  auto quantize = [&](int64_t begin, int64_t end, int) {
    for (int64_t t = begin; t < end; ++t) {
      for (int k = 0; k < 2; ++k) {
        if (strides[k] == 0) continue;
        QuantizeActivation(kFormats[k], x + t * cols, cols, buffers[k].data() + t * strides[k]);
      }
    }
  };
  // A few tokens take well under a microsecond here: less than the threads' meeting.
  if (num_tokens * cols <= 16384) {
    quantize(0, num_tokens, 0);
  } else {
    pool.ParallelFor(num_tokens, quantize);
  }
  const int64_t num_token_blocks = (num_tokens + kIntTokenBlock - 1) / kIntTokenBlock;
  const int64_t row_tile = num_tokens == 1 ? kRowTile : kIntPrefillRowTile;
  std::vector<int64_t> first_item(products.size() + 1, 0);
  for (size_t i = 0; i < products.size(); ++i) {
    first_item[i + 1] =
        first_item[i] + (products[i].w->rows + row_tile - 1) / row_tile * num_token_blocks;
  }
  pool.ParallelForDynamic(first_item.back(), /*chunk=*/num_tokens == 1 ? 4 : 1,
                          [&](int64_t begin, int64_t end, int) {
    size_t i = 0;
    for (int64_t item = begin; item < end; ++item) {
      while (item >= first_item[i + 1]) ++i;
      const Weight& w = *products[i].w;
      const int k = IntDotActivation(w.type) == kFormats[0] ? 0 : 1;
      const int64_t local = item - first_item[i];
      const int64_t r0 = local / num_token_blocks * row_tile;
      const int64_t t0 = local % num_token_blocks * kIntTokenBlock;
      const int num_rows = static_cast<int>(std::min(row_tile, w.rows - r0));
      const int nt = static_cast<int>(std::min(kIntTokenBlock, num_tokens - t0));
      GetIntTile(w.type)(w.Row(r0), w.row_bytes, num_rows, buffers[k].data() + t0 * strides[k],
                         strides[k], nt, cols, products[i].y + t0 * w.rows + r0, w.rows);
    }
  });
}

// The F32 reduction of every product (dequantised weights times x as given): one parallel
// loop over the products' row tiles (decode) or panels (prefill).
void MatMulFloat(std::span<const MatMulProduct> products, const float* x, int64_t num_tokens,
                 ThreadPool& pool);

}  // namespace

void RoundToF16(const float* x, int64_t n, float* out, ThreadPool& pool) {
  // Through halves in chunks that stay in L1, by F16C where present (dot.h: the same bits as
  // the portable conversion).
  constexpr int64_t kChunk = 4096;
  auto round = [&](int64_t begin, int64_t end, int) {
    uint16_t halves[kChunk];
    for (int64_t c = begin; c < end; ++c) {
      const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
      ConvertF32ToF16(x + i0, halves, len);
      ConvertF16ToF32(halves, out + i0, len);
    }
  };
  const int64_t num_chunks = (n + kChunk - 1) / kChunk;
  // A decode step's row (or a few) takes about a microsecond: less than the threads' meeting.
  if (num_chunks <= 4) {
    round(0, num_chunks, 0);
  } else {
    pool.ParallelFor(num_chunks, round);
  }
}

bool UsesIntDot(const Weight& w) {
  return GetIntTile(w.type) != nullptr &&
         w.cols % (IntDotActivation(w.type) == QuantActivation::kQ8x256 ? 256 : 32) == 0;
}

void MatMulShared(std::span<const MatMulProduct> products, const float* x, int64_t num_tokens,
                  ThreadPool& pool, bool int_dot) {
  if (products.empty() || num_tokens <= 0) return;
  const int64_t cols = products[0].w->cols;
  for (const MatMulProduct& p : products) {
    PREFIXD_CHECK(p.w->cols == cols, "MatMulShared: products of different input widths");
  }
  if (int_dot) {
    // Products with a tile kernel go the integer way, the rest (if any) the F32 way.
    std::vector<MatMulProduct> ints, floats;
    for (const MatMulProduct& p : products) (UsesIntDot(*p.w) ? ints : floats).push_back(p);
    if (!ints.empty()) {
      MatMulInt(ints, x, num_tokens, pool);
      if (floats.empty()) return;
      MatMulShared(floats, x, num_tokens, pool, /*int_dot=*/false);
      return;
    }
  }
  // F16 weights multiply the activations rounded to F16 (kernels.h says why); the others take
  // x as it is. Products of both kinds (not in any file make-model or llama-quantize writes)
  // run as two loops, one per input.
  size_t num_f16 = 0;
  for (const MatMulProduct& p : products) num_f16 += p.w->type == TensorType::kF16;
  if (num_f16 == 0) {
    MatMulFloat(products, x, num_tokens, pool);
    return;
  }
  thread_local std::vector<float> rounded;
  rounded.resize(num_tokens * cols);
  RoundToF16(x, num_tokens * cols, rounded.data(), pool);
  if (num_f16 == products.size()) {
    MatMulFloat(products, rounded.data(), num_tokens, pool);
    return;
  }
  std::vector<MatMulProduct> halves, others;
  for (const MatMulProduct& p : products) {
    (p.w->type == TensorType::kF16 ? halves : others).push_back(p);
  }
  MatMulFloat(halves, rounded.data(), num_tokens, pool);
  MatMulFloat(others, x, num_tokens, pool);
}

namespace {

void MatMulFloat(std::span<const MatMulProduct> products, const float* x, int64_t num_tokens,
                 ThreadPool& pool) {
  const int64_t cols = products[0].w->cols;
  const bool gemm = num_tokens >= 2 && HasBlockedGemm();
  // Work items: the products' row tiles (or panels) end to end, so the threads split them all
  // in one loop and meet once.
  auto per_item = [&](const MatMulProduct& p) {
    return gemm || p.packed != nullptr ? int64_t{kGemmPanelRows} : kRowTile;
  };
  std::vector<int64_t> first_item(products.size() + 1, 0);
  for (size_t i = 0; i < products.size(); ++i) {
    const int64_t n = per_item(products[i]);
    first_item[i + 1] = first_item[i] + (products[i].w->rows + n - 1) / n;
  }
  auto locate = [&](int64_t item) {
    size_t i = 0;
    while (item >= first_item[i + 1]) ++i;
    return std::pair<size_t, int64_t>{i, item - first_item[i]};
  };
  if (!gemm) {
    // Decode streams weights from memory, whose speed differs between the two threads from
    // moment to moment: small dynamic chunks let the faster one take more.
    pool.ParallelForDynamic(first_item.back(), /*chunk=*/4, [&](int64_t begin, int64_t end, int) {
      thread_local std::vector<float> scratch;
      for (int64_t item = begin; item < end; ++item) {
        const auto [i, tile] = locate(item);
        const Weight& w = *products[i].w;
        if (products[i].packed != nullptr) {
          // Decode from packed panels: one contiguous stream per panel.
          const int64_t r0 = tile * kGemmPanelRows;
          const int n = static_cast<int>(std::min<int64_t>(kGemmPanelRows, w.rows - r0));
          for (int64_t t = 0; t < num_tokens; ++t) {
            GemvPackedF16Panel(products[i].packed + tile * GemmPanelFloats(w.cols), x + t * cols,
                               cols, n, products[i].y + t * w.rows + r0);
          }
          continue;
        }
        RowTile(w, x, num_tokens, products[i].y, tile * kRowTile,
                std::min(w.rows, (tile + 1) * kRowTile), scratch);
      }
    });
    return;
  }
  // Prefill: tokens are packed lane-major once (in parallel), for every product.
  const int64_t block_floats = GemmBlockFloats(cols);
  const int64_t num_blocks = (num_tokens + kGemmBlockTokens - 1) / kGemmBlockTokens;
  thread_local std::vector<float> packed_tokens;
  packed_tokens.resize(num_blocks * block_floats);
  float* blocks = packed_tokens.data();
  pool.ParallelFor(num_blocks, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; ++b) {
      const int nt = static_cast<int>(std::min<int64_t>(kGemmBlockTokens, num_tokens - b * kGemmBlockTokens));
      PackTokenBlock(x + b * kGemmBlockTokens * cols, cols, nt, blocks + b * block_floats);
    }
  });
  pool.ParallelFor(first_item.back(), [&](int64_t begin, int64_t end, int) {
    thread_local std::vector<float> panel, row;
    for (int64_t item = begin; item < end; ++item) {
      const auto [i, p] = locate(item);
      PackedPanel(*products[i].w, products[i].packed, p, blocks, num_tokens, products[i].y, panel,
                  row);
    }
  });
}

}  // namespace

void MatMul(const Weight& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool,
            const uint16_t* packed, bool int_dot) {
  const MatMulProduct one{&w, y, packed};
  MatMulShared({&one, 1}, x, num_tokens, pool, int_dot);
}

void RowToFloat(const Weight& w, int64_t row, float* out) {
  if (w.type == TensorType::kF32) {
    const float* src = reinterpret_cast<const float*>(w.Row(row));
    for (int64_t i = 0; i < w.cols; ++i) out[i] = src[i];
  } else {
    GetDequantRow(w.type)(w.Row(row), w.cols, out);  // only this row, whatever the type
  }
}

void RmsNorm(const float* x, const Weight& weight, int64_t n, float eps, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  if (weight.type == TensorType::kF32) {
    const float* g = reinterpret_cast<const float*>(weight.data);
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * g[i];
  } else {
    const uint16_t* g = reinterpret_cast<const uint16_t*>(weight.data);
    for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * HalfToFloat(g[i]);
  }
}

void RopeAngles(int rope_dims, int64_t pos, float freq_base, float freq_scale,
                const float* freq_factors, float* cos_out, float* sin_out) {
  // theta_i = pos * base^(-2i/d), built by repeated multiplication in float as ggml does, so
  // that positions agree with llama.cpp to the last bit where possible.
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(rope_dims));
  float theta = static_cast<float>(pos);
  const int half = rope_dims / 2;
  for (int i = 0; i < half; ++i) {
    // Divide, then scale, in ggml's order; dividing by 1 is exact, so a model without
    // factors gets the same bits as before they existed.
    const float angle = (freq_factors ? theta / freq_factors[i] : theta) * freq_scale;
    cos_out[i] = std::cos(angle);
    sin_out[i] = std::sin(angle);
    theta *= theta_scale;
  }
}

void ApplyRope(float* head, int rope_dims, RopeStyle style, const float* cos_in,
               const float* sin_in) {
  const int half = rope_dims / 2;
  for (int i = 0; i < half; ++i) {
    const float c = cos_in[i], s = sin_in[i];
    const int a = style == RopeStyle::kNormal ? 2 * i : i;
    const int b = style == RopeStyle::kNormal ? 2 * i + 1 : i + half;
    const float x0 = head[a], x1 = head[b];
    head[a] = x0 * c - x1 * s;
    head[b] = x0 * s + x1 * c;
  }
}

void Rope(float* head, int rope_dims, int64_t pos, float freq_base, float freq_scale,
          RopeStyle style, const float* freq_factors) {
  std::vector<float> cos_v(rope_dims / 2), sin_v(rope_dims / 2);
  RopeAngles(rope_dims, pos, freq_base, freq_scale, freq_factors, cos_v.data(), sin_v.data());
  ApplyRope(head, rope_dims, style, cos_v.data(), sin_v.data());
}

void AddBias(const Weight& bias, int64_t num_tokens, float* y) {
  const int64_t n = bias.cols;
  if (bias.type == TensorType::kF32) {
    const float* b = reinterpret_cast<const float*>(bias.data);
    for (int64_t t = 0; t < num_tokens; ++t) {
      for (int64_t r = 0; r < n; ++r) y[t * n + r] += b[r];
    }
  } else {
    const uint16_t* b = reinterpret_cast<const uint16_t*>(bias.data);
    for (int64_t t = 0; t < num_tokens; ++t) {
      for (int64_t r = 0; r < n; ++r) y[t * n + r] += HalfToFloat(b[r]);
    }
  }
}

namespace {
// SiLU(gate) * up (kGated) or SiLU(gate) alone, in place: the same expression per lane on every
// path, so the same bits (SiLU alone skips the product rather than multiplying by 1).
template <bool kGated>
void SiluPortable(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float silu = g / (1.0f + ExpPoly(-g));
    gate[i] = kGated ? silu * up[i] : silu;
  }
}

template <bool kGated>
__attribute__((target("avx512f,fma"))) void SiluAvx512(float* gate, const float* up, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 e = ExpPolyAvx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    __m512 silu = _mm512_div_ps(g, _mm512_add_ps(one, e));
    if constexpr (kGated) silu = _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(m, up + i));
    _mm512_mask_storeu_ps(gate + i, m, silu);
  }
}

// The same per lane in 8-lane registers (the tail through masked loads and stores).
template <bool kGated>
__attribute__((target("avx2,fma"))) void SiluAvx2(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t i = 0; i < n; i += 8) {
    const int left = static_cast<int>(std::min<int64_t>(n - i, 8));
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lanes);
    const __m256 g = _mm256_maskload_ps(gate + i, m);
    const __m256 e = ExpPolyAvx2(_mm256_sub_ps(_mm256_setzero_ps(), g));
    __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
    if constexpr (kGated) silu = _mm256_mul_ps(silu, _mm256_maskload_ps(up + i, m));
    _mm256_maskstore_ps(gate + i, m, silu);
  }
}

void SwiGluPortable(float* gate, const float* up, int64_t n) { SiluPortable<true>(gate, up, n); }
void SwiGluAvx512(float* gate, const float* up, int64_t n) { SiluAvx512<true>(gate, up, n); }
void SwiGluAvx2(float* gate, const float* up, int64_t n) { SiluAvx2<true>(gate, up, n); }
void SiluOnlyPortable(float* x, int64_t n) { SiluPortable<false>(x, nullptr, n); }
void SiluOnlyAvx512(float* x, int64_t n) { SiluAvx512<false>(x, nullptr, n); }
void SiluOnlyAvx2(float* x, int64_t n) { SiluAvx2<false>(x, nullptr, n); }

// x * s and x + y * s per element, each product and sum rounded on its own (no fused
// multiply-add), so every width gives the scalar loop's bits.
void ScaleRowPortable(float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * s;
}
void AddScaledRowPortable(float* x, const float* y, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] + y[i] * s;
}

void AddProductRowPortable(float* x, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] + a[i] * b[i];
}

__attribute__((target("avx512f"))) void AddProductRowAvx512(float* x, const float* a,
                                                           const float* b, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(x + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), p));
  }
}
__attribute__((target("avx2"))) void AddProductRowAvx2(float* x, const float* a, const float* b,
                                                      int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), p));
  }
  AddProductRowPortable(x + i, a + i, b + i, n - i);
}

__attribute__((target("avx512f"))) void ScaleRowAvx512(float* x, float s, int64_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
  }
}
__attribute__((target("avx512f"))) void AddScaledRowAvx512(float* x, const float* y, float s,
                                                          int64_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), vs);
    _mm512_mask_storeu_ps(x + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + i), p));
  }
}

__attribute__((target("avx2"))) void ScaleRowAvx2(float* x, float s, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
  ScaleRowPortable(x + i, s, n - i);
}
__attribute__((target("avx2"))) void AddScaledRowAvx2(float* x, const float* y, float s, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(y + i), vs);
    _mm256_storeu_ps(x + i, _mm256_add_ps(_mm256_loadu_ps(x + i), p));
  }
  AddScaledRowPortable(x + i, y + i, s, n - i);
}

bool HasAvx512SwiGlu() { return GetCpuFeatures().avx512f && GetCpuFeatures().fma; }
bool HasAvx2SwiGlu() { return GetCpuFeatures().avx2 && GetCpuFeatures().fma; }
}  // namespace

void SwiGlu(float* gate, const float* up, int64_t n) {
  static const SwiGluFn fn = HasAvx512SwiGlu() ? &SwiGluAvx512
                             : HasAvx2SwiGlu() ? &SwiGluAvx2
                                               : &SwiGluPortable;
  fn(gate, up, n);
}

std::vector<std::pair<const char*, SwiGluFn>> RunnableSwiGluPaths() {
  std::vector<std::pair<const char*, SwiGluFn>> out = {{"generic", &SwiGluPortable}};
  if (HasAvx2SwiGlu()) out.emplace_back("avx2", &SwiGluAvx2);
  if (HasAvx512SwiGlu()) out.emplace_back("avx512", &SwiGluAvx512);
  return out;
}

void ScaleRow(float* x, float s, int64_t n) {
  static const ScaleRowFn fn = GetCpuFeatures().avx512f ? &ScaleRowAvx512
                               : GetCpuFeatures().avx2  ? &ScaleRowAvx2
                                                        : &ScaleRowPortable;
  fn(x, s, n);
}

void AddScaledRow(float* x, const float* y, float s, int64_t n) {
  static const AddScaledRowFn fn = GetCpuFeatures().avx512f ? &AddScaledRowAvx512
                                   : GetCpuFeatures().avx2  ? &AddScaledRowAvx2
                                                            : &AddScaledRowPortable;
  fn(x, y, s, n);
}

void AddProductRow(float* x, const float* a, const float* b, int64_t n) {
  static const AddProductRowFn fn = GetCpuFeatures().avx512f ? &AddProductRowAvx512
                                    : GetCpuFeatures().avx2  ? &AddProductRowAvx2
                                                             : &AddProductRowPortable;
  fn(x, a, b, n);
}

void Silu(float* x, int64_t n) {
  static const SiluFn fn = HasAvx512SwiGlu() ? &SiluOnlyAvx512
                           : HasAvx2SwiGlu() ? &SiluOnlyAvx2
                                             : &SiluOnlyPortable;
  fn(x, n);
}

std::vector<RowPaths> RunnableRowPaths() {
  std::vector<RowPaths> out = {{"generic", &ScaleRowPortable, &AddScaledRowPortable,
                                &AddProductRowPortable, &SiluOnlyPortable}};
  if (GetCpuFeatures().avx2) {
    out.push_back({"avx2", &ScaleRowAvx2, &AddScaledRowAvx2, &AddProductRowAvx2,
                   HasAvx2SwiGlu() ? &SiluOnlyAvx2 : &SiluOnlyPortable});
  }
  if (GetCpuFeatures().avx512f) {
    out.push_back({"avx512", &ScaleRowAvx512, &AddScaledRowAvx512, &AddProductRowAvx512,
                   HasAvx512SwiGlu() ? &SiluOnlyAvx512 : &SiluOnlyPortable});
  }
  return out;
}

}  // namespace prefixd::cpu
