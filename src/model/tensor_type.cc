#include "model/tensor_type.h"

#include <string>

namespace prefixd {

std::optional<TensorTypeTraits> GetTensorTypeTraits(uint32_t type) {
  switch (static_cast<TensorType>(type)) {
    case TensorType::kF32: return TensorTypeTraits{"f32", 1, 4};
    case TensorType::kF16: return TensorTypeTraits{"f16", 1, 2};
    case TensorType::kBF16: return TensorTypeTraits{"bf16", 1, 2};
    case TensorType::kF64: return TensorTypeTraits{"f64", 1, 8};
    case TensorType::kI8: return TensorTypeTraits{"i8", 1, 1};
    case TensorType::kI16: return TensorTypeTraits{"i16", 1, 2};
    case TensorType::kI32: return TensorTypeTraits{"i32", 1, 4};
    case TensorType::kI64: return TensorTypeTraits{"i64", 1, 8};
    case TensorType::kQ4_0: return TensorTypeTraits{"q4_0", 32, 18};
    case TensorType::kQ4_1: return TensorTypeTraits{"q4_1", 32, 20};
    case TensorType::kQ5_0: return TensorTypeTraits{"q5_0", 32, 22};
    case TensorType::kQ5_1: return TensorTypeTraits{"q5_1", 32, 24};
    case TensorType::kQ8_0: return TensorTypeTraits{"q8_0", 32, 34};
    case TensorType::kQ8_1: return TensorTypeTraits{"q8_1", 32, 36};
    case TensorType::kQ2_K: return TensorTypeTraits{"q2_K", 256, 84};
    case TensorType::kQ3_K: return TensorTypeTraits{"q3_K", 256, 110};
    case TensorType::kQ4_K: return TensorTypeTraits{"q4_K", 256, 144};
    case TensorType::kQ5_K: return TensorTypeTraits{"q5_K", 256, 176};
    case TensorType::kQ6_K: return TensorTypeTraits{"q6_K", 256, 210};
    case TensorType::kQ8_K: return TensorTypeTraits{"q8_K", 256, 292};
    case TensorType::kIQ2_XXS: return TensorTypeTraits{"iq2_xxs", 256, 66};
    case TensorType::kIQ2_XS: return TensorTypeTraits{"iq2_xs", 256, 74};
    case TensorType::kIQ3_XXS: return TensorTypeTraits{"iq3_xxs", 256, 98};
    case TensorType::kIQ1_S: return TensorTypeTraits{"iq1_s", 256, 50};
    case TensorType::kIQ4_NL: return TensorTypeTraits{"iq4_nl", 32, 18};
    case TensorType::kIQ3_S: return TensorTypeTraits{"iq3_s", 256, 110};
    case TensorType::kIQ2_S: return TensorTypeTraits{"iq2_s", 256, 82};
    case TensorType::kIQ4_XS: return TensorTypeTraits{"iq4_xs", 256, 136};
    case TensorType::kIQ1_M: return TensorTypeTraits{"iq1_m", 256, 56};
    case TensorType::kTQ1_0: return TensorTypeTraits{"tq1_0", 256, 54};
    case TensorType::kTQ2_0: return TensorTypeTraits{"tq2_0", 256, 66};
  }
  return std::nullopt;
}

std::optional<uint64_t> TensorBytes(TensorType type, uint64_t num_elements) {
  auto traits = GetTensorTypeTraits(static_cast<uint32_t>(type));
  if (!traits || num_elements % traits->block_elements != 0) return std::nullopt;
  return num_elements / traits->block_elements * traits->block_bytes;
}

std::string TensorTypeName(uint32_t type) {
  auto traits = GetTensorTypeTraits(type);
  return traits ? std::string(traits->name) : "unknown(" + std::to_string(type) + ")";
}

}  // namespace prefixd
