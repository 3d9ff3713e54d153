// GGML tensor element types as GGUF numbers them, with their block geometry.
// Which of them the engine can compute with is decided by the backend, not here.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace prefixd {

enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
};

struct TensorTypeTraits {
  std::string_view name;  // as llama.cpp prints it: "f32", "q4_K", ...
  int64_t block_elements;  // elements per quantisation block (1 for plain types)
  int64_t block_bytes;     // bytes per block
};

// The traits of a known type, or nullopt for a number GGUF does not define.
std::optional<TensorTypeTraits> GetTensorTypeTraits(uint32_t type);

// Bytes that `num_elements` elements of `type` occupy, or nullopt when the count is not a
// whole number of blocks or the type is unknown.
std::optional<uint64_t> TensorBytes(TensorType type, uint64_t num_elements);

// "q4_K", or "unknown(N)".
std::string TensorTypeName(uint32_t type);

}  // namespace prefixd
