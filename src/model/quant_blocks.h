// Byte layouts of ggml's quantised blocks, as GGUF files store them (little-endian). Shared by
// the quantisers here (model/quantize.h, used by make-model) and the dequantisers and kernels
// in compute/cpu/quant_dequant.h, so the two sides cannot disagree on a layout.
//
// A row of `cols` elements is cols / kBlockElements consecutive blocks; every value is
//
//   Q8_0   x = d * q                      q int8,  one f16 scale per 32
//   Q4_0   x = d * (q - 8)                q 0..15, one f16 scale per 32
//   Q4_1   x = d * q + m                  q 0..15, f16 scale and min per 32
//   Q5_0   x = d * (q - 16)               q 0..31, one f16 scale per 32
//   Q5_1   x = d * q + m                  q 0..31, f16 scale and min per 32
//   Q4_K   x = (d * sc) * q - (dmin * m)  q 0..15, 6-bit sc/m per 32, f16 d/dmin per 256
//   Q5_K   x = (d * sc) * q - (dmin * m)  q 0..31, 6-bit sc/m per 32, f16 d/dmin per 256
//   Q6_K   x = (d * sc) * (q - 32)        q 0..63, int8 sc per 16, f16 d per 256
//
// with the float operations in exactly that order (ggml's), so dequantised weights match
// llama.cpp's bit for bit.
#pragma once

#include <cstdint>

namespace prefixd {

inline constexpr int kQk = 32;    // elements per Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 block
inline constexpr int kQkK = 256;  // elements per K-quant super-block

struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[kQk];
};

struct BlockQ4_0 {
  uint16_t d;             // f16 scale
  uint8_t qs[kQk / 2];    // element j in the low nibble of qs[j], element j + 16 in the high
};

struct BlockQ4_1 {
  uint16_t d;           // f16 scale
  uint16_t m;           // f16 min, added after the product
  uint8_t qs[kQk / 2];  // as Q4_0
};

// Q5_0 and Q5_1: as Q4_0 / Q4_1 plus a fifth bit per element, element j's in bit j of qh read
// as a little-endian uint32 (Q5Level).
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQk / 2];
};

struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQk / 2];
};

// Element j's (0..31) level 0..31 in a Q5_0 / Q5_1 block.
inline int Q5Level(const uint8_t* qh, const uint8_t* qs, int j) {
  const int low = j < kQk / 2 ? (qs[j] & 0xF) : (qs[j - kQk / 2] >> 4);
  const uint32_t high = static_cast<uint32_t>(qh[0]) | (static_cast<uint32_t>(qh[1]) << 8) |
                        (static_cast<uint32_t>(qh[2]) << 16) | (static_cast<uint32_t>(qh[3]) << 24);
  return low | static_cast<int>(((high >> j) & 1) << 4);
}

// Q4_K and Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes (see
// GetScaleMinK4). Elements come in four groups of 64: group g's first 32 use sub-block 2g
// (low nibbles of qs[32g .. 32g+32)), its last 32 sub-block 2g+1 (the high nibbles).
struct BlockQ4_K {
  uint16_t d;     // f16 scale of the sub-block scales
  uint16_t dmin;  // f16 scale of the sub-block mins
  uint8_t scales[12];
  uint8_t qs[kQkK / 2];
};

// As Q4_K plus a fifth bit: element 64g + l (l < 32) has its high bit in bit 2g of qh[l],
// element 64g + 32 + l in bit 2g + 1.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQkK / 8];
  uint8_t qs[kQkK / 2];
};

// Two halves of 128. In half h, for l < 32, the four elements 128h + l + 32k (k = 0..3) take
// their low 4 bits from ql[64h + l] (k = 0 low nibble, k = 2 high), ql[64h + 32 + l] (k = 1
// low, k = 3 high), and their high 2 bits from bits 2k..2k+1 of qh[32h + l]. Element e uses
// scales[e / 16].
struct BlockQ6_K {
  uint8_t ql[kQkK / 2];
  uint8_t qh[kQkK / 4];
  int8_t scales[kQkK / 16];
  uint16_t d;  // f16 super-block scale
};

static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22 && sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ4_K) == 144 && sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// Sub-block j's (0..7) 6-bit scale and min in a Q4_K/Q5_K scales array: j < 4 in the low 6
// bits of bytes j and j + 4; j >= 4 in the nibbles of byte j + 4, with their top 2 bits in the
// high bits of bytes j - 4 (scale) and j (min).
inline void GetScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace prefixd
