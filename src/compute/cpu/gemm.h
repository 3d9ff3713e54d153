// Matrix products for prefill: many tokens against the same weight rows, at close to the
// FMA units' peak.
//
// Each output element is reduced exactly as the dot products of dot.h reduce it (lane j of
// 32 sums elements j, j + 32, j + 64, ... by FMA; the 32 lanes are folded pairwise), so a
// token's result is the same bits whether it went through this kernel (prefill, several
// tokens) or through a single dot (decode, one token).
//
// The trick that lets a BLIS-style kernel keep that order: lane j of every output is itself a
// small matrix product over k = j + 32 m. Weights are packed lane-major (for each lane j and
// step m, 32 consecutive rows), tokens the same way, and one register tile computes lane j of
// 32 rows x 12 tokens with the rows in vector lanes and each token broadcast, the way BLIS
// does. The 32 lane tiles are then folded in the canonical tree, leaf order bit-reversed so
// that siblings finish one after the other and at most five partial tiles wait in L1.
//
// Kernels exist for AVX-512 (gemm_avx512.cc: a 32 x 12 register tile) and AVX2 + FMA + F16C
// (gemm_avx2.cc: 16 x 6 tiles, four per lane); both give the canonical dot's bits.
#pragma once

#include <cstdint>
#include <vector>

namespace prefixd::cpu {

inline constexpr int kGemmPanelRows = 32;    // weight rows per packed panel
inline constexpr int kGemmBlockTokens = 12;  // tokens per packed block
inline constexpr int kGemmLanes = 32;        // the canonical reduction's lanes

// True when this CPU runs the packed kernels (AVX-512F/BW/VL, or AVX2 + FMA + F16C).
bool HasBlockedGemm();

// Steps m per lane for rows of `cols` elements: ceil(cols / 32).
inline int64_t GemmLaneSteps(int64_t cols) { return (cols + kGemmLanes - 1) / kGemmLanes; }

// Floats in one packed panel / one packed token block of rows `cols` long.
inline int64_t GemmPanelFloats(int64_t cols) {
  return int64_t{kGemmLanes} * GemmLaneSteps(cols) * kGemmPanelRows;
}
inline int64_t GemmBlockFloats(int64_t cols) {
  return int64_t{kGemmLanes} * GemmLaneSteps(cols) * kGemmBlockTokens;
}

// Lanes are stored in the fold's leaf order, so the kernels read a panel front to back: lane j
// at position L(j) = j's five bits reversed (0, 16, 8, 24, ... are leaves 0, 1, 2, 3, ...).
//
// Writes row `i` (< kGemmPanelRows) of a panel: panel[(L(j) * steps + m) * 32 + i] =
// row[j + 32 m], zero past `cols`. Rows never written must be zeroed by ZeroPanel (their outputs are dropped).
void PackPanelRow(const float* row, int64_t cols, int i, float* panel);
void ZeroPanel(int64_t cols, float* panel);

// Packs tokens x[0 .. nt) (nt <= kGemmBlockTokens, each `cols` floats) as
// block[(L(j) * steps + m) * 12 + t] = x[t][j + 32 m], zero past `cols`.
void PackTokenBlock(const float* x, int64_t cols, int nt, float* block);

// y[t * y_stride + i] = dot(row i, token t) for i < num_rows (<= 32), t < nt, from a packed
// panel and block. Precondition: HasBlockedGemm().
void GemmPanelBlock(const float* panel, const float* block, int64_t cols, int num_rows, int nt,
                    float* y, int64_t y_stride);

// F16 weights packed once, at start-up, in the panel layout above but kept in halves: panel p
// holds rows [32 p, 32 p + 32) as packed[(L(j) * steps + m) * 32 + i] = row_i[j + 32 m], zeros
// past the matrix. Decode then reads each panel as one contiguous stream (25-31 GB/s on the two
// cores against 16-18 for four interleaved rows), and prefill unpacks a panel with a plain
// conversion instead of a transposition.
inline int64_t PackedF16Halves(int64_t rows, int64_t cols) {
  return (rows + kGemmPanelRows - 1) / kGemmPanelRows * GemmPanelFloats(cols);
}
// Packs panel `p` of a row-major F16 matrix (`rows` x `cols`, row r at rows_data + r * stride
// halves) into `out` (GemmPanelFloats(cols) halves).
void PackF16Panel(const uint16_t* rows_data, int64_t stride, int64_t rows, int64_t cols, int64_t p,
                  uint16_t* out);
// A packed F16 panel as the floats GemmPanelBlock takes (exact: every half is a float).
void UnpackF16Panel(const uint16_t* packed, int64_t cols, float* panel);
// y[i] = dot(row i, x) for i < num_rows (<= 32) of one packed F16 panel, exactly as dot.h's
// canonical dot (decode). Precondition: HasBlockedGemm().
void GemvPackedF16Panel(const uint16_t* packed, const float* x, int64_t cols, int num_rows,
                        float* y);

// One instruction-set path's versions of GemmPanelBlock, UnpackF16Panel and
// GemvPackedF16Panel (same contracts). The functions above run the fastest path this CPU has.
struct GemmKernels {
  const char* name;
  void (*panel_block)(const float* panel, const float* block, int64_t cols, int num_rows, int nt,
                      float* y, int64_t y_stride);
  void (*unpack_f16)(const uint16_t* packed, int64_t cols, float* panel);
  void (*gemv_f16)(const uint16_t* packed, const float* x, int64_t cols, int num_rows, float* y);
};
// Every path this CPU can run ("avx2", "avx512"), for tests that compare each with the
// portable dot.
std::vector<GemmKernels> RunnableGemmPaths();

}  // namespace prefixd::cpu
