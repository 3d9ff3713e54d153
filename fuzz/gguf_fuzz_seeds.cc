// Writes a few small, valid GGUF files into the directory given as argv[1], to seed the GGUF
// fuzzer's corpus with every value type, nested arrays, several tensor types, a custom
// alignment and a small llama model.
#include <cstdio>
#include <string>
#include <vector>

#include "model/gguf_writer.h"
#include "model/model_maker.h"

namespace {

using prefixd::GgufType;
using prefixd::GgufValue;
using prefixd::GgufWriter;
using prefixd::TensorType;

std::vector<uint8_t> Bytes(size_t n) {
  std::vector<uint8_t> b(n);
  for (size_t k = 0; k < n; ++k) b[k] = static_cast<uint8_t>(k * 37 + 11);
  return b;
}

bool Write(const GgufWriter& w, const std::string& path) {
  const prefixd::Status s = w.Write(path);
  if (!s.ok()) std::fprintf(stderr, "%s\n", s.ToString().c_str());
  return s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  bool ok = true;

  GgufWriter scalars;
  scalars.Set("general.architecture", GgufValue::String("llama"));
  scalars.Set("u8", GgufValue::U8(1));
  scalars.Set("i8", GgufValue::I8(-1));
  scalars.Set("u16", GgufValue::U16(2));
  scalars.Set("i16", GgufValue::I16(-2));
  scalars.Set("u32", GgufValue::U32(3));
  scalars.Set("i32", GgufValue::I32(-3));
  scalars.Set("u64", GgufValue::U64(4));
  scalars.Set("i64", GgufValue::I64(-4));
  scalars.Set("f32", GgufValue::F32(0.5f));
  scalars.Set("f64", GgufValue::F64(0.25));
  scalars.Set("bool", GgufValue::Bool(true));
  scalars.Set("str", GgufValue::String("hello"));
  ok &= Write(scalars, dir + "/scalars.gguf");

  GgufWriter arrays;
  arrays.Set("tokens", GgufValue::StringArray({"<unk>", "a", "bc"}));
  arrays.Set("scores", GgufValue::F32Array({0, -1, -2}));
  arrays.Set("types", GgufValue::I32Array({2, 1, 1}));
  arrays.Set("nested", GgufValue::Array(GgufType::kArray, {GgufValue::I32Array({1, 2}),
                                                           GgufValue::StringArray({"x"})}));
  arrays.Set("bools", GgufValue::Array(GgufType::kBool, {GgufValue::Bool(false)}));
  ok &= Write(arrays, dir + "/arrays.gguf");

  GgufWriter tensors;
  tensors.Set("general.alignment", GgufValue::U32(64));
  ok &= tensors.AddTensor("f32", {4, 2}, TensorType::kF32, Bytes(32)).ok();
  ok &= tensors.AddTensor("f16", {3}, TensorType::kF16, Bytes(6)).ok();
  ok &= tensors.AddTensor("q8_0", {32}, TensorType::kQ8_0, Bytes(34)).ok();
  ok &= tensors.AddTensor("q4_K", {256, 1, 1, 1}, TensorType::kQ4_K, Bytes(144)).ok();
  ok &= Write(tensors, dir + "/tensors.gguf");

  prefixd::ModelSpec spec;
  spec.num_layers = 1;
  spec.embd = 8;
  spec.num_heads = 2;
  spec.num_kv_heads = 1;
  spec.ff = 8;
  spec.vocab = prefixd::kMinSyntheticVocab;
  spec.type = TensorType::kF16;
  const prefixd::Status s = prefixd::WriteRandomModel(spec, dir + "/tiny_llama.gguf");
  if (!s.ok()) std::fprintf(stderr, "%s\n", s.ToString().c_str());
  ok &= s.ok();
  return ok ? 0 : 1;
}
