// Portable dequantisers (the reference every vector path must match bit for bit) and the
// per-CPU dispatch. The float operations follow ggml's dequantize_row_* in order, so a
// llama.cpp-quantised file dequantises to the same F32 values here as there.
#include "compute/cpu/quant_dequant.h"

#include <cstring>

#include "base/check.h"
#include "base/cpu_features.h"
#include "base/fp16.h"
#include "compute/cpu/dot.h"
#include "compute/cpu/quant_dequant_avx2.h"
#include "compute/cpu/quant_dequant_avx512.h"
#include "model/quant_blocks.h"

namespace prefixd::cpu {
namespace {

void DequantF32(const uint8_t* row, int64_t n, float* out) {
  std::memcpy(out, row, n * sizeof(float));
}

void DequantF16(const uint8_t* row, int64_t n, float* out) {
  ConvertF16ToF32(reinterpret_cast<const uint16_t*>(row), out, n);
}

void DequantF16Generic(const uint8_t* row, int64_t n, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
  for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(h[i]);
}

void DequantBf16Generic(const uint8_t* row, int64_t n, float* out) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(row);
  for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(h[i]);
}

void DequantQ8_0Generic(const uint8_t* row, int64_t n, float* out) {
  const BlockQ8_0* blocks = reinterpret_cast<const BlockQ8_0*>(row);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const float d = HalfToFloat(blocks[i].d);
    for (int j = 0; j < kQk; ++j) out[j] = static_cast<float>(blocks[i].qs[j]) * d;
  }
}

void DequantQ4_0Generic(const uint8_t* row, int64_t n, float* out) {
  const BlockQ4_0* blocks = reinterpret_cast<const BlockQ4_0*>(row);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const float d = HalfToFloat(blocks[i].d);
    for (int j = 0; j < kQk / 2; ++j) {
      out[j] = static_cast<float>((blocks[i].qs[j] & 0xF) - 8) * d;
      out[j + kQk / 2] = static_cast<float>((blocks[i].qs[j] >> 4) - 8) * d;
    }
  }
}

// ggml's x0*d + m: the product rounded, then the min added (the build never contracts to FMA).
void DequantQ4_1Generic(const uint8_t* row, int64_t n, float* out) {
  const BlockQ4_1* blocks = reinterpret_cast<const BlockQ4_1*>(row);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const float d = HalfToFloat(blocks[i].d), m = HalfToFloat(blocks[i].m);
    for (int j = 0; j < kQk / 2; ++j) {
      out[j] = static_cast<float>(blocks[i].qs[j] & 0xF) * d + m;
      out[j + kQk / 2] = static_cast<float>(blocks[i].qs[j] >> 4) * d + m;
    }
  }
}

void DequantQ5_0Generic(const uint8_t* row, int64_t n, float* out) {
  const BlockQ5_0* blocks = reinterpret_cast<const BlockQ5_0*>(row);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const float d = HalfToFloat(blocks[i].d);
    for (int j = 0; j < kQk; ++j) {
      out[j] = static_cast<float>(Q5Level(blocks[i].qh, blocks[i].qs, j) - 16) * d;
    }
  }
}

void DequantQ5_1Generic(const uint8_t* row, int64_t n, float* out) {
  const BlockQ5_1* blocks = reinterpret_cast<const BlockQ5_1*>(row);
  for (int64_t i = 0; i < n / kQk; ++i, out += kQk) {
    const float d = HalfToFloat(blocks[i].d), m = HalfToFloat(blocks[i].m);
    for (int j = 0; j < kQk; ++j) {
      out[j] = static_cast<float>(Q5Level(blocks[i].qh, blocks[i].qs, j)) * d + m;
    }
  }
}

// Q4_K and Q5_K: `high_bits` is the Q5_K qh array, or null for Q4_K.
void DequantAffineK(uint16_t d16, uint16_t dmin16, const uint8_t* scales, const uint8_t* qs,
                    const uint8_t* high_bits, float* out) {
  const float d = HalfToFloat(d16), dmin = HalfToFloat(dmin16);
  for (int g = 0; g < 4; ++g, qs += 32, out += 64) {
    uint8_t sc, m;
    GetScaleMinK4(2 * g, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    GetScaleMinK4(2 * g + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) {
      int lo = qs[l] & 0xF, hi = qs[l] >> 4;
      if (high_bits != nullptr) {
        lo += ((high_bits[l] >> (2 * g)) & 1) << 4;
        hi += ((high_bits[l] >> (2 * g + 1)) & 1) << 4;
      }
      out[l] = d1 * static_cast<float>(lo) - m1;
      out[l + 32] = d2 * static_cast<float>(hi) - m2;
    }
  }
}

void DequantQ4_KGeneric(const uint8_t* row, int64_t n, float* out) {
  const BlockQ4_K* blocks = reinterpret_cast<const BlockQ4_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    const BlockQ4_K& b = blocks[i];
    DequantAffineK(b.d, b.dmin, b.scales, b.qs, nullptr, out + i * kQkK);
  }
}

void DequantQ5_KGeneric(const uint8_t* row, int64_t n, float* out) {
  const BlockQ5_K* blocks = reinterpret_cast<const BlockQ5_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    const BlockQ5_K& b = blocks[i];
    DequantAffineK(b.d, b.dmin, b.scales, b.qs, b.qh, out + i * kQkK);
  }
}

void DequantQ6_KGeneric(const uint8_t* row, int64_t n, float* out) {
  const BlockQ6_K* blocks = reinterpret_cast<const BlockQ6_K*>(row);
  for (int64_t i = 0; i < n / kQkK; ++i) {
    const BlockQ6_K& b = blocks[i];
    const float d = HalfToFloat(b.d);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = b.ql + 64 * h;
      const uint8_t* qh = b.qh + 32 * h;
      const int8_t* sc = b.scales + 8 * h;
      float* y = out + i * kQkK + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

DequantRowFn GenericPath(TensorType type) {
  switch (type) {
    case TensorType::kF32: return &DequantF32;
    case TensorType::kF16: return &DequantF16Generic;
    case TensorType::kBF16: return &DequantBf16Generic;
    case TensorType::kQ8_0: return &DequantQ8_0Generic;
    case TensorType::kQ4_0: return &DequantQ4_0Generic;
    case TensorType::kQ4_1: return &DequantQ4_1Generic;
    case TensorType::kQ5_0: return &DequantQ5_0Generic;
    case TensorType::kQ5_1: return &DequantQ5_1Generic;
    case TensorType::kQ4_K: return &DequantQ4_KGeneric;
    case TensorType::kQ5_K: return &DequantQ5_KGeneric;
    case TensorType::kQ6_K: return &DequantQ6_KGeneric;
    default: return nullptr;
  }
}

bool HasAvx512Dequant() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx512f && f.avx512bw && f.avx512vl && f.avx2;
}

bool HasAvx2Dequant() { return GetCpuFeatures().avx2; }

}  // namespace

bool CanDequantize(TensorType type) { return GenericPath(type) != nullptr; }

DequantRowFn GetDequantRow(TensorType type) {
  PREFIXD_CHECK(CanDequantize(type), "GetDequantRow: a weight type the CPU backend cannot read");
  if (type == TensorType::kF16) return &DequantF16;  // F16C when present, same bits
  if (HasAvx512Dequant()) {
    if (DequantRowFn fn = Avx512DequantPath(type)) return fn;
  }
  if (HasAvx2Dequant()) {
    if (DequantRowFn fn = Avx2DequantPath(type)) return fn;
  }
  return GenericPath(type);
}

QuantDotFn GetQuantDot(TensorType type) {
  // The fused kernels reduce as DotF32Avx512 does, so they stand in for GetDotF32 only where
  // that is the path it runs (all paths agree anyway; this keeps the dispatch obvious).
  const CpuFeatures& f = GetCpuFeatures();
  if (!HasAvx512Dequant() || !f.fma) return nullptr;
  return Avx512QuantDot(type);
}

std::vector<std::pair<const char*, DequantRowFn>> RunnableDequantPaths(TensorType type) {
  std::vector<std::pair<const char*, DequantRowFn>> out;
  if (!CanDequantize(type)) return out;
  out.emplace_back("generic", GenericPath(type));
  if (type == TensorType::kF16) out.emplace_back("f16c", &DequantF16);
  if (HasAvx2Dequant()) {
    if (DequantRowFn fn = Avx2DequantPath(type)) out.emplace_back("avx2", fn);
  }
  if (HasAvx512Dequant()) {
    if (DequantRowFn fn = Avx512DequantPath(type)) out.emplace_back("avx512", fn);
  }
  return out;
}

}  // namespace prefixd::cpu
