// Packing (portable) and the choice of kernels: gemm_avx512.cc where the CPU has
// avx512f/bw/vl, else gemm_avx2.cc where it has avx2/fma/f16c, else none (HasBlockedGemm() is
// false and callers reduce one dot at a time).
#include "compute/cpu/gemm.h"

#include <algorithm>
#include <cstring>

#include "base/cpu_features.h"
#include "compute/cpu/gemm_kernels.h"

namespace prefixd::cpu {

using gemm_internal::kBitReversed;

namespace {

bool HasAvx512Gemm(const CpuFeatures& f) {
  return f.avx512f && f.avx512bw && f.avx512vl && f.f16c && f.fma;
}
bool HasAvx2Gemm(const CpuFeatures& f) { return f.avx2 && f.fma && f.f16c; }

// The fastest kernels this CPU runs (chosen once); null entries where it runs none.
const GemmKernels& Active() {
  static const GemmKernels kernels = [] {
    const CpuFeatures& f = GetCpuFeatures();
    if (HasAvx512Gemm(f)) return gemm_internal::Avx512Kernels();
    if (HasAvx2Gemm(f)) return gemm_internal::Avx2Kernels();
    return GemmKernels{"none", nullptr, nullptr, nullptr};
  }();
  return kernels;
}

}  // namespace

bool HasBlockedGemm() { return Active().panel_block != nullptr; }

std::vector<GemmKernels> RunnableGemmPaths() {
  const CpuFeatures& f = GetCpuFeatures();
  std::vector<GemmKernels> out;
  if (HasAvx2Gemm(f)) out.push_back(gemm_internal::Avx2Kernels());
  if (HasAvx512Gemm(f)) out.push_back(gemm_internal::Avx512Kernels());
  return out;
}

void PackF16Panel(const uint16_t* rows_data, int64_t stride, int64_t rows, int64_t cols, int64_t p,
                  uint16_t* out) {
  const int64_t steps = GemmLaneSteps(cols);
  std::memset(out, 0, sizeof(uint16_t) * GemmPanelFloats(cols));
  const int64_t r0 = p * kGemmPanelRows;
  const int n = static_cast<int>(std::min<int64_t>(kGemmPanelRows, rows - r0));
  for (int i = 0; i < n; ++i) {
    const uint16_t* row = rows_data + (r0 + i) * stride;
    for (int64_t k = 0; k < cols; ++k) {
      out[(kBitReversed[k % kGemmLanes] * steps + k / kGemmLanes) * kGemmPanelRows + i] = row[k];
    }
  }
}

void UnpackF16Panel(const uint16_t* packed, int64_t cols, float* panel) {
  Active().unpack_f16(packed, cols, panel);
}

void GemvPackedF16Panel(const uint16_t* packed, const float* x, int64_t cols, int num_rows,
                        float* y) {
  Active().gemv_f16(packed, x, cols, num_rows, y);
}

void ZeroPanel(int64_t cols, float* panel) {
  std::memset(panel, 0, sizeof(float) * GemmPanelFloats(cols));
}

void PackPanelRow(const float* row, int64_t cols, int i, float* panel) {
  const int64_t steps = GemmLaneSteps(cols);
  for (int j = 0; j < kGemmLanes; ++j) {
    float* out = panel + kBitReversed[j] * steps * kGemmPanelRows + i;
    for (int64_t m = 0; m < steps; ++m) {
      const int64_t k = j + m * kGemmLanes;
      out[m * kGemmPanelRows] = k < cols ? row[k] : 0.0f;
    }
  }
}

void PackTokenBlock(const float* x, int64_t cols, int nt, float* block) {
  const int64_t steps = GemmLaneSteps(cols);
  std::memset(block, 0, sizeof(float) * GemmBlockFloats(cols));
  for (int t = 0; t < nt; ++t) {
    const float* row = x + t * cols;
    for (int64_t k = 0; k < cols; ++k) {
      const int64_t j = k % kGemmLanes, m = k / kGemmLanes;
      block[(kBitReversed[j] * steps + m) * kGemmBlockTokens + t] = row[k];
    }
  }
}

void GemmPanelBlock(const float* panel, const float* block, int64_t cols, int num_rows, int nt,
                    float* y, int64_t y_stride) {
  Active().panel_block(panel, block, cols, num_rows, nt, y, y_stride);
}

}  // namespace prefixd::cpu
