// prefixd's dequantisers, every path this CPU runs, against ggml's dequantize_row_* on random
// blocks (every bit pattern: NaN, infinite and subnormal f16 scales included): the same float
// bits, element by element, or this exits 1. Built and run by dequant_bits.sh against the
// peer's libggml-base.a, which CI does not have; a diagnostic, not a unit test.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/quant_dequant.h"
#include "model/tensor_type.h"

extern "C" {
// ggml-quants.h's declarations, with the block pointer as void*.
void dequantize_row_q8_0(const void* x, float* y, int64_t k);
void dequantize_row_q4_0(const void* x, float* y, int64_t k);
void dequantize_row_q4_1(const void* x, float* y, int64_t k);
void dequantize_row_q5_0(const void* x, float* y, int64_t k);
void dequantize_row_q5_1(const void* x, float* y, int64_t k);
void dequantize_row_q4_K(const void* x, float* y, int64_t k);
void dequantize_row_q5_K(const void* x, float* y, int64_t k);
void dequantize_row_q6_K(const void* x, float* y, int64_t k);
}

int main() {
  using prefixd::TensorType;
  struct Case {
    TensorType type;
    void (*ggml)(const void*, float*, int64_t);
  };
  const Case cases[] = {
      {TensorType::kQ8_0, dequantize_row_q8_0}, {TensorType::kQ4_0, dequantize_row_q4_0},
      {TensorType::kQ4_1, dequantize_row_q4_1}, {TensorType::kQ5_0, dequantize_row_q5_0},
      {TensorType::kQ5_1, dequantize_row_q5_1}, {TensorType::kQ4_K, dequantize_row_q4_K},
      {TensorType::kQ5_K, dequantize_row_q5_K}, {TensorType::kQ6_K, dequantize_row_q6_K}};
  std::mt19937 rng(1);
  int64_t differ_total = 0;
  for (const Case& c : cases) {
    const auto traits = *prefixd::GetTensorTypeTraits(static_cast<uint32_t>(c.type));
    const int64_t n = 256 * 512;
    std::vector<uint8_t> q(n / traits.block_elements * traits.block_bytes);
    for (uint8_t& b : q) b = static_cast<uint8_t>(rng());
    std::vector<float> want(n), got(n);
    c.ggml(q.data(), want.data(), n);
    for (const auto& [path, fn] : prefixd::cpu::RunnableDequantPaths(c.type)) {
      fn(q.data(), n, got.data());
      int64_t differ = 0;
      for (int64_t i = 0; i < n; ++i) differ += std::memcmp(&got[i], &want[i], 4) != 0;
      std::printf("%-5s %-8s %lld of %lld elements differ from ggml's bits\n",
                  std::string(traits.name).c_str(), path, static_cast<long long>(differ),
                  static_cast<long long>(n));
      differ_total += differ;
    }
  }
  return differ_total == 0 ? 0 : 1;
}
