#include "model/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/check.h"
#include "base/fp16.h"
#include "model/quant_blocks.h"

namespace prefixd {
namespace {

// Nearest integer to v, clamped to [lo, hi]; std::round is exact, so this is portable.
int RoundClamp(float v, int lo, int hi) {
  const float r = std::round(v);
  if (!(r >= static_cast<float>(lo))) return lo;  // also catches NaN
  if (r > static_cast<float>(hi)) return hi;
  return static_cast<int>(r);
}

// The f16 value `v` is stored as, and what the dequantiser will read back.
float ThroughHalf(float v, uint16_t* stored) {
  *stored = FloatToHalf(v);
  return HalfToFloat(*stored);
}

void QuantizeQ8_0(const float* x, BlockQ8_0* b) {
  float amax = 0;
  for (int j = 0; j < kQk; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = ThroughHalf(amax / 127.0f, &b->d);
  for (int j = 0; j < kQk; ++j) {
    b->qs[j] = static_cast<int8_t>(d > 0 ? RoundClamp(x[j] / d, -127, 127) : 0);
  }
}

// 32 levels 0..31 into Q5_0 / Q5_1's nibbles and high-bit word (quant_blocks.h).
void PackQ5(const uint8_t* q, uint8_t* qh, uint8_t* qs) {
  uint32_t high = 0;
  for (int j = 0; j < kQk; ++j) high |= static_cast<uint32_t>(q[j] >> 4) << j;
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(high >> (8 * k));
  for (int j = 0; j < kQk / 2; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kQk / 2] & 0xF) << 4));
  }
}

// The element of largest magnitude maps to -8 exactly; the other side reaches at most +7.
void QuantizeQ4_0(const float* x, BlockQ4_0* b) {
  float amax = 0, max = 0;
  for (int j = 0; j < kQk; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = ThroughHalf(max / -8.0f, &b->d);
  auto q = [&](int j) { return d != 0 ? RoundClamp(x[j] / d, -8, 7) + 8 : 8; };
  for (int j = 0; j < kQk / 2; ++j) {
    b->qs[j] = static_cast<uint8_t>(q(j) | (q(j + kQk / 2) << 4));
  }
}

// Q5_0: Q4_0 with 32 levels, the element of largest magnitude at -16.
void QuantizeQ5_0(const float* x, BlockQ5_0* b) {
  float amax = 0, max = 0;
  for (int j = 0; j < kQk; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = ThroughHalf(max / -16.0f, &b->d);
  uint8_t q[kQk];
  for (int j = 0; j < kQk; ++j) {
    q[j] = static_cast<uint8_t>(d != 0 ? RoundClamp(x[j] / d, -16, 15) + 16 : 16);
  }
  PackQ5(q, b->qh, b->qs);
}

// Q4_1 / Q5_1: the affine map x = d * q + m onto [0, levels], m the block's minimum. Writes d
// and m (as f16) and the levels into `q`.
void QuantizeAffine32(const float* x, int levels, uint16_t* d_out, uint16_t* m_out, uint8_t* q) {
  float lo = x[0], hi = x[0];
  for (int j = 1; j < kQk; ++j) {
    lo = std::min(lo, x[j]);
    hi = std::max(hi, x[j]);
  }
  const float d = ThroughHalf((hi - lo) / static_cast<float>(levels), d_out);
  const float m = ThroughHalf(lo, m_out);
  for (int j = 0; j < kQk; ++j) {
    q[j] = static_cast<uint8_t>(d > 0 ? RoundClamp((x[j] - m) / d, 0, levels) : 0);
  }
}

void QuantizeQ4_1(const float* x, BlockQ4_1* b) {
  uint8_t q[kQk];
  QuantizeAffine32(x, 15, &b->d, &b->m, q);
  for (int j = 0; j < kQk / 2; ++j) b->qs[j] = static_cast<uint8_t>(q[j] | (q[j + kQk / 2] << 4));
}

void QuantizeQ5_1(const float* x, BlockQ5_1* b) {
  uint8_t q[kQk];
  QuantizeAffine32(x, 31, &b->d, &b->m, q);
  PackQ5(q, b->qh, b->qs);
}

// Q4_K / Q5_K: per 32-element sub-block an affine map x = D_j * q - M_j onto [0, levels].
// Sub-block scales and mins are rounded up to the 6-bit grid so each sub-block's range stays
// covered. Writes d, dmin and scales, and the integer levels of all 256 elements into `q`.
void QuantizeAffineK(const float* x, int levels, uint16_t* d_out, uint16_t* dmin_out,
                     uint8_t* scales, uint8_t* q) {
  float step[8], low[8], max_step = 0, max_low = 0;
  for (int j = 0; j < 8; ++j) {
    float lo = 0, hi = x[32 * j];
    for (int l = 0; l < 32; ++l) {
      lo = std::min(lo, x[32 * j + l]);
      hi = std::max(hi, x[32 * j + l]);
    }
    step[j] = (hi - lo) / static_cast<float>(levels);
    low[j] = -lo;
    max_step = std::max(max_step, step[j]);
    max_low = std::max(max_low, low[j]);
  }
  const float d = ThroughHalf(max_step / 63.0f, d_out);
  const float dmin = ThroughHalf(max_low / 63.0f, dmin_out);
  uint8_t sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = static_cast<uint8_t>(d > 0 ? std::min(63.0f, std::ceil(step[j] / d)) : 0);
    mn[j] = static_cast<uint8_t>(dmin > 0 ? std::min(63.0f, std::ceil(low[j] / dmin)) : 0);
    const float dj = d * static_cast<float>(sc[j]);
    const float mj = dmin * static_cast<float>(mn[j]);
    for (int l = 0; l < 32; ++l) {
      q[32 * j + l] =
          static_cast<uint8_t>(dj > 0 ? RoundClamp((x[32 * j + l] + mj) / dj, 0, levels) : 0);
    }
  }
  for (int j = 0; j < 4; ++j) {
    scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

void QuantizeQ4_K(const float* x, BlockQ4_K* b) {
  uint8_t q[kQkK];
  QuantizeAffineK(x, 15, &b->d, &b->dmin, b->scales, q);
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) {
      b->qs[32 * g + l] = static_cast<uint8_t>(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
    }
  }
}

void QuantizeQ5_K(const float* x, BlockQ5_K* b) {
  uint8_t q[kQkK];
  QuantizeAffineK(x, 31, &b->d, &b->dmin, b->scales, q);
  std::memset(b->qh, 0, sizeof(b->qh));
  for (int g = 0; g < 4; ++g) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t lo = q[64 * g + l], hi = q[64 * g + 32 + l];
      b->qs[32 * g + l] = static_cast<uint8_t>((lo & 0xF) | ((hi & 0xF) << 4));
      b->qh[l] |= static_cast<uint8_t>(((lo >> 4) << (2 * g)) | ((hi >> 4) << (2 * g + 1)));
    }
  }
}

// Q6_K: per 16-element sub-block a symmetric scale whose largest-magnitude element maps to
// -32 exactly; the scales themselves are int8 multiples of one f16 d.
void QuantizeQ6_K(const float* x, BlockQ6_K* b) {
  float sub_scale[16], max_abs_scale = 0;
  for (int j = 0; j < 16; ++j) {
    float amax = 0, max = 0;
    for (int l = 0; l < 16; ++l) {
      if (std::fabs(x[16 * j + l]) > amax) {
        amax = std::fabs(x[16 * j + l]);
        max = x[16 * j + l];
      }
    }
    sub_scale[j] = max / -32.0f;
    max_abs_scale = std::max(max_abs_scale, std::fabs(sub_scale[j]));
  }
  const float d = ThroughHalf(max_abs_scale / 127.0f, &b->d);
  uint8_t q[kQkK];
  for (int j = 0; j < 16; ++j) {
    b->scales[j] = static_cast<int8_t>(d > 0 ? RoundClamp(sub_scale[j] / d, -128, 127) : 0);
    const float dj = d * static_cast<float>(b->scales[j]);
    for (int l = 0; l < 16; ++l) {
      q[16 * j + l] =
          static_cast<uint8_t>((dj != 0 ? RoundClamp(x[16 * j + l] / dj, -32, 31) : 0) + 32);
    }
  }
  for (int h = 0; h < 2; ++h) {
    const uint8_t* e = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      b->ql[64 * h + l] = static_cast<uint8_t>((e[l] & 0xF) | ((e[l + 64] & 0xF) << 4));
      b->ql[64 * h + 32 + l] = static_cast<uint8_t>((e[l + 32] & 0xF) | ((e[l + 96] & 0xF) << 4));
      b->qh[32 * h + l] = static_cast<uint8_t>((e[l] >> 4) | ((e[l + 32] >> 4) << 2) |
                                               ((e[l + 64] >> 4) << 4) | ((e[l + 96] >> 4) << 6));
    }
  }
}

template <typename Block, int kElements>
void QuantizeBlocks(void (*fn)(const float*, Block*), const float* x, int64_t n, uint8_t* out) {
  for (int64_t i = 0; i < n / kElements; ++i) {
    Block b;
    fn(x + i * kElements, &b);
    std::memcpy(out + i * sizeof(Block), &b, sizeof(Block));  // out may be unaligned
  }
}

}  // namespace

bool CanQuantizeTo(TensorType type) {
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16:
    case TensorType::kQ8_0:
    case TensorType::kQ4_0:
    case TensorType::kQ4_1:
    case TensorType::kQ5_0:
    case TensorType::kQ5_1:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
      return true;
    default:
      return false;
  }
}

void QuantizeRow(TensorType type, const float* x, int64_t n, uint8_t* out) {
  PREFIXD_CHECK(CanQuantizeTo(type), "QuantizeRow: a type CanQuantizeTo refuses");
  PREFIXD_CHECK(TensorBytes(type, n).has_value(), "QuantizeRow: n is not a whole number of blocks");
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, x, n * sizeof(float));
      return;
    case TensorType::kF16:
    case TensorType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = type == TensorType::kF16 ? FloatToHalf(x[i]) : FloatToBf16(x[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case TensorType::kQ8_0: return QuantizeBlocks<BlockQ8_0, kQk>(&QuantizeQ8_0, x, n, out);
    case TensorType::kQ4_0: return QuantizeBlocks<BlockQ4_0, kQk>(&QuantizeQ4_0, x, n, out);
    case TensorType::kQ4_1: return QuantizeBlocks<BlockQ4_1, kQk>(&QuantizeQ4_1, x, n, out);
    case TensorType::kQ5_0: return QuantizeBlocks<BlockQ5_0, kQk>(&QuantizeQ5_0, x, n, out);
    case TensorType::kQ5_1: return QuantizeBlocks<BlockQ5_1, kQk>(&QuantizeQ5_1, x, n, out);
    case TensorType::kQ4_K: return QuantizeBlocks<BlockQ4_K, kQkK>(&QuantizeQ4_K, x, n, out);
    case TensorType::kQ5_K: return QuantizeBlocks<BlockQ5_K, kQkK>(&QuantizeQ5_K, x, n, out);
    case TensorType::kQ6_K: return QuantizeBlocks<BlockQ6_K, kQkK>(&QuantizeQ6_K, x, n, out);
    default:
      return;
  }
}

}  // namespace prefixd
