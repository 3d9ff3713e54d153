#include "compute/cpu/kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/fp16.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/gemm.h"
#include "compute/cpu/quant_dequant.h"

namespace prefixd::cpu {

namespace {
// Rows per work item: a tile of weight rows stays in cache while every token uses it.
constexpr int64_t kRowTile = 16;

// BF16 and quantised weights without the blocked GEMM (decode, or no AVX-512): each row is
// dequantised once into a row of F32 and reduced with the F32 dot (or both at once by the fused
// kernel), so every token sees the same F32 weights as the prefill GEMM does, reduced in the
// same order.
void MatMulDequantRows(const Weight& w, const float* x, int64_t num_tokens, float* y,
                       ThreadPool& pool) {
  const int64_t rows = w.rows, cols = w.cols;
  const DequantRowFn dequant = GetDequantRow(w.type);
  const DotF32Fn dot = GetDotF32();
  const int64_t num_tiles = (rows + kRowTile - 1) / kRowTile;
  if (const QuantDotFn fused = GetQuantDot(w.type)) {
    // Same values and order, but the dequantised row never leaves the registers.
    pool.ParallelFor(num_tiles, [&](int64_t begin, int64_t end, int) {
      for (int64_t r = begin * kRowTile; r < std::min(rows, end * kRowTile); ++r) {
        for (int64_t t = 0; t < num_tokens; ++t) y[t * rows + r] = fused(w.Row(r), x + t * cols, cols);
      }
    });
    return;
  }
  pool.ParallelFor(num_tiles, [&](int64_t begin, int64_t end, int) {
    thread_local std::vector<float> row;
    row.resize(cols);
    for (int64_t r = begin * kRowTile; r < std::min(rows, end * kRowTile); ++r) {
      dequant(w.Row(r), cols, row.data());
      for (int64_t t = 0; t < num_tokens; ++t) y[t * rows + r] = dot(row.data(), x + t * cols, cols);
    }
  });
}

// Prefill: tokens are packed lane-major once (in parallel), then each thread takes whole
// panels of 32 weight rows, packs one (dequantised from F16, BF16 or a quantised type on the
// way) into L2 and runs every token block past it (see gemm.h).
void MatMulPacked(const Weight& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool) {
  const int64_t rows = w.rows, cols = w.cols;
  const int64_t block_floats = GemmBlockFloats(cols);
  const int64_t num_blocks = (num_tokens + kGemmBlockTokens - 1) / kGemmBlockTokens;
  thread_local std::vector<float> packed_tokens;
  packed_tokens.resize(num_blocks * block_floats);
  float* blocks = packed_tokens.data();
  auto block_tokens = [&](int64_t b) {
    return static_cast<int>(std::min<int64_t>(kGemmBlockTokens, num_tokens - b * kGemmBlockTokens));
  };
  pool.ParallelFor(num_blocks, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; ++b) {
      PackTokenBlock(x + b * kGemmBlockTokens * cols, cols, block_tokens(b), blocks + b * block_floats);
    }
  });
  const int64_t num_panels = (rows + kGemmPanelRows - 1) / kGemmPanelRows;
  pool.ParallelFor(num_panels, [&](int64_t begin, int64_t end, int) {
    thread_local std::vector<float> panel, row;
    panel.resize(GemmPanelFloats(cols));
    row.resize(cols);
    const DequantRowFn dequant = w.type == TensorType::kF32 ? nullptr : GetDequantRow(w.type);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t r0 = p * kGemmPanelRows;
      const int n = static_cast<int>(std::min<int64_t>(kGemmPanelRows, rows - r0));
      if (n < kGemmPanelRows) ZeroPanel(cols, panel.data());
      for (int i = 0; i < n; ++i) {
        const float* src = reinterpret_cast<const float*>(w.Row(r0 + i));
        if (dequant != nullptr) {
          dequant(w.Row(r0 + i), cols, row.data());
          src = row.data();
        }
        PackPanelRow(src, cols, i, panel.data());
      }
      for (int64_t b = 0; b < num_blocks; ++b) {
        GemmPanelBlock(panel.data(), blocks + b * block_floats, cols, n, block_tokens(b),
                       y + b * kGemmBlockTokens * rows + r0, rows);
      }
    }
  });
}

}  // namespace

void MatMul(const Weight& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool) {
  const int64_t rows = w.rows, cols = w.cols;
  if (num_tokens >= 2 && HasBlockedGemm()) {
    MatMulPacked(w, x, num_tokens, y, pool);
    return;
  }
  const int64_t num_tiles = (rows + kRowTile - 1) / kRowTile;
  if (w.type == TensorType::kF32) {
    const DotF32Fn dot = GetDotF32();
    pool.ParallelFor(num_tiles, [&](int64_t begin, int64_t end, int) {
      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t r0 = tile * kRowTile, r1 = std::min(rows, r0 + kRowTile);
        for (int64_t t = 0; t < num_tokens; ++t) {
          const float* xt = x + t * cols;
          for (int64_t r = r0; r < r1; ++r) {
            y[t * rows + r] = dot(reinterpret_cast<const float*>(w.Row(r)), xt, cols);
          }
        }
      }
    });
  } else if (w.type != TensorType::kF16) {
    MatMulDequantRows(w, x, num_tokens, y, pool);
  } else {
    const DotF16Fn dot = GetDotF16();
    const DotF16x4Fn dot4 = GetDotF16x4();
    pool.ParallelFor(num_tiles, [&](int64_t begin, int64_t end, int) {
      auto row = [&](int64_t r) { return reinterpret_cast<const uint16_t*>(w.Row(r)); };
      for (int64_t tile = begin; tile < end; ++tile) {
        const int64_t r0 = tile * kRowTile, r1 = std::min(rows, r0 + kRowTile);
        for (int64_t t = 0; t < num_tokens; ++t) {
          const float* xt = x + t * cols;
          int64_t r = r0;
          for (; r + 4 <= r1; r += 4) {
            dot4(row(r), row(r + 1), row(r + 2), row(r + 3), xt, cols, &y[t * rows + r]);
          }
          for (; r < r1; ++r) y[t * rows + r] = dot(row(r), xt, cols);
        }
      }
    });
  }
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

void Rope(float* head, int rope_dims, int64_t pos, float freq_base, float freq_scale,
          RopeStyle style, const float* freq_factors) {
  // theta_i = pos * base^(-2i/d), built by repeated multiplication in float as ggml does, so
  // that positions agree with llama.cpp to the last bit where possible.
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(rope_dims));
  float theta = static_cast<float>(pos);
  const int half = rope_dims / 2;
  for (int i = 0; i < half; ++i) {
    // Divide, then scale, in ggml's order; dividing by 1 is exact, so a model without
    // factors gets the same bits as before they existed.
    const float angle = (freq_factors ? theta / freq_factors[i] : theta) * freq_scale;
    const float c = std::cos(angle), s = std::sin(angle);
    const int a = style == RopeStyle::kNormal ? 2 * i : i;
    const int b = style == RopeStyle::kNormal ? 2 * i + 1 : i + half;
    const float x0 = head[a], x1 = head[b];
    head[a] = x0 * c - x1 * s;
    head[b] = x0 * s + x1 * c;
    theta *= theta_scale;
  }
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

void SwiGlu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = (g / (1.0f + std::exp(-g))) * up[i];
  }
}

}  // namespace prefixd::cpu
