#include "engine/test_models.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "base/check.h"
#include "model/model_maker.h"

namespace prefixd {

std::string SharedDir() {
  // The environment wins, so test binaries run where the checkout is not beside ../shared.
  if (const char* env = std::getenv("PREFIXD_SHARED_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
#ifdef PREFIXD_SHARED_DIR
  return PREFIXD_SHARED_DIR;
#else
  return "../shared";
#endif
}

std::unique_ptr<Model> LoadSharedModel(const std::string& name) {
  const std::string path = SharedDir() + "/models/" + name;
  if (!std::filesystem::exists(path)) return nullptr;
  auto model = Model::Load(path);
  PREFIXD_CHECK(model.ok(), "a shared model failed to load");
  return std::move(*model);
}

std::unique_ptr<Model> MakeTestModel(TestModelShape shape, TensorType type, uint64_t seed) {
  ModelSpec spec;
  spec.type = type;
  spec.seed = seed;
  if (shape == TestModelShape::kTiny) {
    spec.num_layers = 2;
    spec.embd = 64;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.ff = 128;
    spec.vocab = 320;
    spec.ctx = 512;
  } else if (shape == TestModelShape::kRows256) {
    spec.num_layers = 1;
    spec.embd = 256;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.ff = 256;
    spec.vocab = 320;
    spec.ctx = 512;
  } else {
    spec.num_layers = 4;
    spec.embd = 256;
    spec.num_heads = 8;
    spec.num_kv_heads = 2;
    spec.ff = 688;
    spec.vocab = 512;
    spec.ctx = 1024;
  }
  return MakeTestModel(spec, "m" + std::to_string(static_cast<int>(shape)) + "_" +
                                 std::to_string(static_cast<int>(type)) + "_" +
                                 std::to_string(seed));
}

std::unique_ptr<Model> MakeTestModel(const ModelSpec& spec, const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("prefixd-test-models-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / (name + ".gguf")).string();
  if (!std::filesystem::exists(path)) {
    Status st = WriteRandomModel(spec, path);
    if (!st.ok()) std::fprintf(stderr, "%s\n", std::string(st.message()).c_str());
    PREFIXD_CHECK(st.ok(), "writing a test model failed");
  }
  auto model = Model::Load(path);
  if (!model.ok()) std::fprintf(stderr, "%s\n", std::string(model.status().message()).c_str());
  PREFIXD_CHECK(model.ok(), "a test model failed to load");
  return std::move(*model);
}

ModelSpec SmallArchSpec(const std::string& arch) {
  ModelSpec spec;
  spec.arch = arch == "llama3" ? "llama" : arch;
  spec.num_layers = 2;
  spec.embd = 64;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.ff = 128;
  spec.vocab = 320;
  spec.ctx = 512;
  spec.type = TensorType::kF32;
  spec.seed = 7;
  if (arch == "qwen2") {
    spec.tie_output = true;
    spec.rope_freq_base = 1000000;
  } else if (arch == "qwen3" || arch == "qwen3moe") {
    spec.head_dim = 32;
    spec.rope_freq_base = 1000000;
    if (arch == "qwen3moe") {
      spec.experts = 8;
      spec.experts_used = 2;
      spec.expert_ff = 64;
    }
  } else if (arch == "qwen35") {
    // 4 layers, DeltaNet, DeltaNet, DeltaNet, attention (the default interval of 4); DeltaNet
    // heads from the head settings: 2 Q/K heads and 4 V heads of 32, 4 taps; RoPE over 8 of
    // the 32 dims of each attention head.
    spec.num_layers = 4;
    spec.head_dim = 32;
    spec.rope_freq_base = 10000000;
  } else if (arch == "llama3") {
    spec.rope_freq_base = 500000;
    spec.rope_scaling = "llama3";
    // Short enough that some of the 8 frequencies are blended and some divided within the
    // few hundred positions tests use.
    spec.rope_original_ctx = 256;
  }
  return spec;
}

}  // namespace prefixd
