#include "compute/cpu/quant_int_kquant.h"

#include <cmath>

#include "base/cpu_features.h"
#include "base/fp16.h"
#include "model/quant_blocks.h"

namespace prefixd::cpu {

namespace {

using kquant_internal::UnpackScalesK4;

// Q4_K and Q5_K: kHighBits adds Q5_K's fifth bit. One super-block's exact S1 and S2.
template <bool kHighBits>
void SumsAffineK(const uint8_t* scales, const uint8_t* qs, const uint8_t* qh,
                 const Q8x256Block& x, int32_t* s1, int32_t* s2) {
  uint64_t sc64, m64;
  UnpackScalesK4(scales, &sc64, &m64);
  int32_t sum1 = 0, sum2 = 0;
  for (int j = 0; j < 8; ++j) {
    const int32_t sc = static_cast<int32_t>((sc64 >> (8 * j)) & 0xFF);
    const int32_t m = static_cast<int32_t>((m64 >> (8 * j)) & 0xFF);
    // Sub-block j = 2g + h: the low (h = 0) or high (h = 1) nibbles of qs[32g .. 32g + 32).
    const int g = j / 2, shift = 4 * (j % 2);
    int32_t p = 0;
    for (int l = 0; l < 32; ++l) {
      int32_t q = (qs[32 * g + l] >> shift) & 0xF;
      if (kHighBits) q |= ((qh[l] >> j) & 1) << 4;
      p += q * x.q[32 * j + l];
    }
    sum1 += sc * p;
    sum2 += m * (x.bsums[2 * j] + x.bsums[2 * j + 1]);
  }
  *s1 = sum1;
  *s2 = sum2;
}

template <bool kHighBits>
void AffineKTileGeneric(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                        int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  const int64_t nb = n / kQkK;
  const int64_t block_bytes = kHighBits ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  for (int t = 0; t < num_tokens; ++t) {
    const Q8x256Block* x = reinterpret_cast<const Q8x256Block*>(xq + t * xq_stride);
    for (int r = 0; r < num_rows; ++r) {
      const uint8_t* row = w + r * row_bytes;
      float acc = 0.0f;
      for (int64_t i = 0; i < nb; ++i) {
        const uint8_t* blk = row + i * block_bytes;
        float d, dmin;
        const uint8_t *scales, *qs, *qh = nullptr;
        if constexpr (kHighBits) {
          const BlockQ5_K* b = reinterpret_cast<const BlockQ5_K*>(blk);
          d = HalfToFloat(b->d);
          dmin = HalfToFloat(b->dmin);
          scales = b->scales;
          qs = b->qs;
          qh = b->qh;
        } else {
          const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(blk);
          d = HalfToFloat(b->d);
          dmin = HalfToFloat(b->dmin);
          scales = b->scales;
          qs = b->qs;
        }
        int32_t s1, s2;
        SumsAffineK<kHighBits>(scales, qs, qh, x[i], &s1, &s2);
        const float t_b = (x[i].d * d) * static_cast<float>(s1) -
                          (x[i].d * dmin) * static_cast<float>(s2);
        acc += t_b;
      }
      y[t * ldy + r] = acc;
    }
  }
}

void Q4KTileGeneric(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                    int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  AffineKTileGeneric<false>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

void Q5KTileGeneric(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                    int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  AffineKTileGeneric<true>(w, row_bytes, num_rows, xq, xq_stride, num_tokens, n, y, ldy);
}

// S = sum over the 16 groups j of sc_j * sum((q - 32) * q_x).
int32_t SumQ6K(const BlockQ6_K& b, const Q8x256Block& x) {
  int32_t s = 0;
  for (int j = 0; j < 16; ++j) {
    int32_t p = 0;
    for (int e = 16 * j; e < 16 * j + 16; ++e) {
      // Element e = 128h + 32k + l (l < 32): see BlockQ6_K.
      const int h = e / 128, k = (e % 128) / 32, l = e % 32;
      const uint8_t lo_byte = b.ql[64 * h + 32 * (k % 2) + l];
      const int lo = k < 2 ? (lo_byte & 0xF) : (lo_byte >> 4);
      const int hi = (b.qh[32 * h + l] >> (2 * k)) & 3;
      p += ((lo | (hi << 4)) - 32) * x.q[e];
    }
    s += b.scales[j] * p;
  }
  return s;
}

void Q6KTileGeneric(const uint8_t* w, int64_t row_bytes, int num_rows, const uint8_t* xq,
                    int64_t xq_stride, int num_tokens, int64_t n, float* y, int64_t ldy) {
  const int64_t nb = n / kQkK;
  for (int t = 0; t < num_tokens; ++t) {
    const Q8x256Block* x = reinterpret_cast<const Q8x256Block*>(xq + t * xq_stride);
    for (int r = 0; r < num_rows; ++r) {
      const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(w + r * row_bytes);
      float acc = 0.0f;
      for (int64_t i = 0; i < nb; ++i) {
        const float t_b = (x[i].d * HalfToFloat(b[i].d)) * static_cast<float>(SumQ6K(b[i], x[i]));
        acc += t_b;
      }
      y[t * ldy + r] = acc;
    }
  }
}

bool HasAvx2() {
  const CpuFeatures& f = GetCpuFeatures();
  return f.avx2 && f.fma && f.f16c;
}

bool HasAvx512() {
  const CpuFeatures& f = GetCpuFeatures();
  return HasAvx2() && f.avx512f && f.avx512bw && f.avx512vl && f.avx512vnni;
}

std::vector<std::pair<const char*, IntTileFn>> Paths(IntTileFn generic, IntTileFn avx2,
                                                     IntTileFn avx512) {
  std::vector<std::pair<const char*, IntTileFn>> paths = {{"generic", generic}};
  if (HasAvx2()) paths.emplace_back("avx2", avx2);
  if (HasAvx512()) paths.emplace_back("avx512vnni", avx512);
  return paths;
}

}  // namespace

std::vector<std::pair<const char*, IntTileFn>> IntTilePathsQ4K() {
  return Paths(&Q4KTileGeneric, &kquant_internal::Q4KTileAvx2,
               &kquant_internal::Q4KTileAvx512);
}

std::vector<std::pair<const char*, IntTileFn>> IntTilePathsQ5K() {
  return Paths(&Q5KTileGeneric, &kquant_internal::Q5KTileAvx2,
               &kquant_internal::Q5KTileAvx512);
}

std::vector<std::pair<const char*, IntTileFn>> IntTilePathsQ6K() {
  return Paths(&Q6KTileGeneric, &kquant_internal::Q6KTileAvx2,
               &kquant_internal::Q6KTileAvx512);
}

void QuantizeQ8x256Portable(const float* x, int64_t n, Q8x256Block* out) {
  for (int64_t i = 0; i < n / kQkK; ++i, x += kQkK) {
    Q8x256Block& b = out[i];
    float amax = 0.0f;
    for (int e = 0; e < kQkK; ++e) amax = std::fmax(amax, std::fabs(x[e]));
    b.d = amax / 127.0f;
    const float id = amax == 0.0f ? 0.0f : 1.0f / b.d;
    for (int e = 0; e < kQkK; ++e) {
      long q = std::lrintf(x[e] * id);
      q = q < -127 ? -127 : (q > 127 ? 127 : q);
      b.q[e] = static_cast<int8_t>(q);
    }
    for (int g = 0; g < 16; ++g) {
      int s = 0;
      for (int e = 16 * g; e < 16 * g + 16; ++e) s += b.q[e];
      b.bsums[g] = static_cast<int16_t>(s);
    }
  }
}

}  // namespace prefixd::cpu
