#include "compute/cpu/quant_int.h"
#include "compute/cpu/quant_int_kquant.h"

#include <cmath>

#include "base/check.h"
#include "base/cpu_features.h"
#include "base/fp16.h"
#include "compute/cpu/quant_int_internal.h"
#include "model/quant_blocks.h"

namespace prefixd::cpu {

QuantActivation IntDotActivation(TensorType type) {
  switch (type) {
    case TensorType::kQ8_0:
    case TensorType::kQ4_0:
    case TensorType::kQ4_1:
    case TensorType::kQ5_0:
    case TensorType::kQ5_1:
      return QuantActivation::kQ8x32;
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
      return QuantActivation::kQ8x256;
    default:
      return QuantActivation::kNone;
  }
}

int64_t QuantActivationBytes(QuantActivation format, int64_t n) {
  switch (format) {
    case QuantActivation::kQ8x32:
      return n / 32 * static_cast<int64_t>(sizeof(Q8x32Block));
    case QuantActivation::kQ8x256:
      return n / 256 * static_cast<int64_t>(sizeof(Q8x256Block));
    case QuantActivation::kNone:
      break;
  }
  return 0;
}

namespace {

// One value of a block with scale inverse `inv`: clamped in float first, as the vector paths'
// max_ps(v, -127) / min_ps(v, 127) do (a NaN becomes -127, +inf 127), then rounded half to
// even. For finite values this is round-then-clamp, as quant_int.h says.
inline int8_t QuantizeOne(float x, float inv) {
  float v = x * inv;
  v = v > -127.0f ? v : -127.0f;
  v = v < 127.0f ? v : 127.0f;
  return static_cast<int8_t>(std::lrintf(v));
}

// Scale and inverse of a block of `n` floats. A block whose d underflows to 0 (amax 0, or
// denormal) quantises to zeros.
inline void BlockScale(const float* x, int n, float* d, float* inv) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    amax = a > amax ? a : amax;
  }
  *d = amax / 127.0f;
  *inv = *d != 0.0f ? 1.0f / *d : 0.0f;
}

void QuantizeActivationPortable(QuantActivation format, const float* x, int64_t n, void* out) {
  if (format == QuantActivation::kQ8x32) {
    Q8x32Block* blocks = static_cast<Q8x32Block*>(out);
    for (int64_t b = 0; b < n / 32; ++b) {
      const float* xb = x + b * 32;
      float d, inv;
      BlockScale(xb, 32, &d, &inv);
      int32_t sum = 0;
      for (int i = 0; i < 32; ++i) {
        blocks[b].q[i] = QuantizeOne(xb[i], inv);
        sum += blocks[b].q[i];
      }
      blocks[b].d = d;
      blocks[b].sum = sum;
    }
  } else if (format == QuantActivation::kQ8x256) {
    Q8x256Block* blocks = static_cast<Q8x256Block*>(out);
    for (int64_t b = 0; b < n / 256; ++b) {
      const float* xb = x + b * 256;
      float d, inv;
      BlockScale(xb, 256, &d, &inv);
      for (int g = 0; g < 16; ++g) {
        int sum = 0;
        for (int i = 0; i < 16; ++i) {
          blocks[b].q[16 * g + i] = QuantizeOne(xb[16 * g + i], inv);
          sum += blocks[b].q[16 * g + i];
        }
        blocks[b].bsums[g] = static_cast<int16_t>(sum);
      }
      blocks[b].d = d;
    }
  }
}

// The reference tiles: one (row, token) dot at a time, literally as quant_int.h reads.
// kMin: the block's min term (Q4_1, Q5_1) added to the product term.
template <typename Block, bool kMin = false, typename WeightInt>
void IntTilePortable(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                     int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy,
                     WeightInt weight_int) {
  const int64_t nb = n / 32;
  for (int r = 0; r < num_rows; ++r) {
    const Block* wb = reinterpret_cast<const Block*>(w + r * row_bytes);
    for (int t = 0; t < num_tokens; ++t) {
      const Q8x32Block* xb = reinterpret_cast<const Q8x32Block*>(xq + t * xq_stride);
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0;
        for (int j = 0; j < 32; ++j) isum += weight_int(wb[b], j) * xb[b].q[j];
        const float dd = HalfToFloat(wb[b].d) * xb[b].d;
        float t = dd * static_cast<float>(isum);
        if constexpr (kMin) {
          t = t + (HalfToFloat(wb[b].m) * xb[b].d) * static_cast<float>(xb[b].sum);
        }
        acc[b % 8] += t;
      }
      y[t * ldy + r] = FoldAcc8(acc);
    }
  }
}

void IntTileQ8_0Portable(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                         int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  IntTilePortable<BlockQ8_0>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy,
                             [](const BlockQ8_0& b, int j) { return int32_t{b.qs[j]}; });
}

void IntTileQ4_0Portable(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                         int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  IntTilePortable<BlockQ4_0>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy,
                             [](const BlockQ4_0& b, int j) {
                               const int q = j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
                               return q - 8;
                             });
}

void IntTileQ4_1Portable(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                         int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  IntTilePortable<BlockQ4_1, true>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy,
                                   [](const BlockQ4_1& b, int j) {
                                     return j < 16 ? (b.qs[j] & 0x0F) : (b.qs[j - 16] >> 4);
                                   });
}

void IntTileQ5_0Portable(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                         int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  IntTilePortable<BlockQ5_0>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy,
                             [](const BlockQ5_0& b, int j) { return Q5Level(b.qh, b.qs, j) - 16; });
}

void IntTileQ5_1Portable(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                         int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  IntTilePortable<BlockQ5_1, true>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy,
                                   [](const BlockQ5_1& b, int j) { return Q5Level(b.qh, b.qs, j); });
}

bool HasAvx2() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx2 && f.fma && f.f16c;
}
bool HasAvx512() {
  const CpuFeatures& f = GetCpuFeatures();
  return HasAvx2() && f.avx512f && f.avx512bw && f.avx512vl;
}
bool HasVnni() { return HasAvx512() && GetCpuFeatures().avx512vnni; }

}  // namespace

void QuantizeActivation(QuantActivation format, const float* x, int64_t n, void* out) {
  using Fn = void (*)(QuantActivation, const float*, int64_t, void*);
  static const Fn fn = HasAvx512() ? &QuantizeActivationAvx512
                       : HasAvx2() ? &QuantizeActivationAvx2
                                   : &QuantizeActivationPortable;
  fn(format, x, n, out);
}

std::vector<std::pair<const char*, void (*)(QuantActivation, const float*, int64_t, void*)>>
RunnableQuantizeActivationPaths() {
  std::vector<std::pair<const char*, void (*)(QuantActivation, const float*, int64_t, void*)>> out =
      {{"generic", &QuantizeActivationPortable}};
  if (HasAvx2()) out.emplace_back("avx2", &QuantizeActivationAvx2);
  if (HasAvx512()) out.emplace_back("avx512", &QuantizeActivationAvx512);
  return out;
}

std::vector<std::pair<const char*, IntTileFn>> RunnableIntTilePaths(TensorType type) {
  std::vector<std::pair<const char*, IntTileFn>> out;
  if (type == TensorType::kQ8_0) {
    out.emplace_back("generic", &IntTileQ8_0Portable);
    if (HasAvx2()) out.emplace_back("avx2", &IntTileQ8_0Avx2);
    if (HasVnni()) out.emplace_back("avx512vnni", &IntTileQ8_0Vnni);
  } else if (type == TensorType::kQ4_0) {
    out.emplace_back("generic", &IntTileQ4_0Portable);
    if (HasAvx2()) out.emplace_back("avx2", &IntTileQ4_0Avx2);
    if (HasVnni()) out.emplace_back("avx512vnni", &IntTileQ4_0Vnni);
  } else if (type == TensorType::kQ4_1) {
    out.emplace_back("generic", &IntTileQ4_1Portable);
    if (HasAvx2()) out.emplace_back("avx2", &IntTileQ4_1Avx2);
    if (HasVnni()) out.emplace_back("avx512vnni", &IntTileQ4_1Vnni);
  } else if (type == TensorType::kQ5_0) {
    out.emplace_back("generic", &IntTileQ5_0Portable);
    if (HasAvx2()) out.emplace_back("avx2", &IntTileQ5_0Avx2);
    if (HasVnni()) out.emplace_back("avx512vnni", &IntTileQ5_0Vnni);
  } else if (type == TensorType::kQ5_1) {
    out.emplace_back("generic", &IntTileQ5_1Portable);
    if (HasAvx2()) out.emplace_back("avx2", &IntTileQ5_1Avx2);
    if (HasVnni()) out.emplace_back("avx512vnni", &IntTileQ5_1Vnni);
  } else if (type == TensorType::kQ4_K) {
    out = IntTilePathsQ4K();
  } else if (type == TensorType::kQ5_K) {
    out = IntTilePathsQ5K();
  } else if (type == TensorType::kQ6_K) {
    out = IntTilePathsQ6K();
  }
  return out;
}

IntTileFn GetIntTile(TensorType type) {
  // The fastest path of each type, chosen once.
  static const auto fastest = [](TensorType t) { return RunnableIntTilePaths(t).back().second; };
  switch (type) {
    case TensorType::kQ8_0: {
      static const IntTileFn fn = fastest(type);
      return fn;
    }
    case TensorType::kQ4_0: {
      static const IntTileFn fn = fastest(type);
      return fn;
    }
    case TensorType::kQ4_1: {
      static const IntTileFn fn = fastest(type);
      return fn;
    }
    case TensorType::kQ5_0: {
      static const IntTileFn fn = fastest(type);
      return fn;
    }
    case TensorType::kQ5_1: {
      static const IntTileFn fn = fastest(type);
      return fn;
    }
    case TensorType::kQ4_K: {
      static const IntTileFn fn = fastest(type);
      return fn;
    }
    case TensorType::kQ5_K: {
      static const IntTileFn fn = fastest(type);
      return fn;
    }
    case TensorType::kQ6_K: {
      static const IntTileFn fn = fastest(type);
      return fn;
    }
    default:
      return nullptr;
  }
}

}  // namespace prefixd::cpu
