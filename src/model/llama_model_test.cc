// Model::Load validation: a file that parses as GGUF but does not describe a llama model this
// build can run is refused with a message naming the file and the problem.
#include "model/llama_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <algorithm>
#include <cstring>
#include <functional>
#include <tuple>

#include "model/gguf_writer.h"
#include "model/model_maker.h"

namespace prefixd {
namespace {

class LlamaModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("prefixd-llama-model-test-" + std::to_string(::getpid()) + ".gguf"))
                .string();
    ModelSpec spec;
    spec.num_layers = 2;
    spec.embd = 64;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.ff = 96;
    spec.vocab = 300;
    spec.type = TensorType::kF16;
    ASSERT_TRUE(WriteRandomModel(spec, path_).ok());
    auto file = GgufFile::Open(path_);
    ASSERT_TRUE(file.ok());
    source_ = std::move(*file);
  }
  void TearDown() override { std::filesystem::remove(path_); }

  // Re-serialises the valid model after `mutate` edits its metadata and tensors, then loads it.
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    TensorType type;
    std::vector<uint8_t> data;
  };
  Status LoadMutated(const std::function<void(std::vector<std::pair<std::string, GgufValue>>&,
                                              std::vector<Tensor>&)>& mutate) {
    std::vector<std::pair<std::string, GgufValue>> meta = source_->metadata();
    std::vector<Tensor> tensors;
    for (const auto& t : source_->tensors()) {
      auto bytes = source_->TensorData(t);
      tensors.push_back({t.name, t.dims, t.type, {bytes.begin(), bytes.end()}});
    }
    mutate(meta, tensors);
    GgufWriter w;
    for (auto& [k, v] : meta) w.Set(k, v);
    for (auto& t : tensors) RETURN_IF_ERROR(w.AddTensor(t.name, t.dims, t.type, t.data));
    bytes_ = w.Serialize();
    ASSIGN_OR_RETURN(auto file, GgufFile::Parse(bytes_, "mutated.gguf"));
    return Model::FromGguf(std::move(file)).status();
  }

  static void SetKey(std::vector<std::pair<std::string, GgufValue>>& meta, const std::string& key,
                     GgufValue v) {
    for (auto& [k, old] : meta) {
      if (k == key) {
        old = std::move(v);
        return;
      }
    }
    meta.emplace_back(key, std::move(v));
  }
  static void EraseKey(std::vector<std::pair<std::string, GgufValue>>& meta, const std::string& key) {
    std::erase_if(meta, [&](const auto& kv) { return kv.first == key; });
  }

  std::string path_;
  std::unique_ptr<GgufFile> source_;
  std::vector<uint8_t> bytes_;
};

void ExpectError(const Status& st, const std::string& needle) {
  ASSERT_FALSE(st.ok()) << "expected an error mentioning '" << needle << "'";
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(st.message());
  EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  EXPECT_NE(msg.find("mutated.gguf"), std::string::npos) << "message should name the file: " << msg;
}

TEST_F(LlamaModelTest, ValidModelLoads) {
  auto model = Model::Load(path_);
  ASSERT_TRUE(model.ok()) << model.status();
  const Hparams& hp = (*model)->hparams();
  EXPECT_EQ(hp.embd, 64);
  EXPECT_EQ(hp.num_kv_heads, 2);
  EXPECT_EQ(hp.head_dim, 16);
  EXPECT_EQ(hp.vocab_size, 300);
  EXPECT_EQ((*model)->weights().layers.size(), 2u);
  EXPECT_TRUE(LoadMutated([](auto&, auto&) {}).ok());
}

TEST_F(LlamaModelTest, UnknownArchitectureListsTheSupportedOnes) {
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "general.architecture", GgufValue::String("mamba"));
              }),
              "unsupported architecture 'mamba' in mutated.gguf; supported: llama, qwen2, qwen3, qwen3moe");
}

// Makes the llama fixture claim `arch`: general.architecture and every llama.* key renamed.
void RenameArch(std::vector<std::pair<std::string, GgufValue>>& meta, const std::string& arch) {
  for (auto& [k, v] : meta) {
    if (k.starts_with("llama.")) k = arch + k.substr(5);
  }
  for (auto& [k, v] : meta) {
    if (k == "general.architecture") v = GgufValue::String(arch);
  }
}

TEST_F(LlamaModelTest, Qwen2WithoutBiasesIsRefused) {
  ExpectError(LoadMutated([](auto& meta, auto&) { RenameArch(meta, "qwen2"); }),
              "missing tensor blk.0.attn_q.bias");
}

TEST_F(LlamaModelTest, Qwen3WithoutQkNormsIsRefused) {
  ExpectError(LoadMutated([](auto& meta, auto&) { RenameArch(meta, "qwen3"); }),
              "missing tensor blk.0.attn_q_norm.weight");
}

TEST_F(LlamaModelTest, HyperParametersAreReadUnderTheArchitecturePrefix) {
  // A llama.* key left behind in a qwen3 file is not read: qwen3.block_count is missing.
  ExpectError(LoadMutated([](auto& meta, auto&) {
                RenameArch(meta, "qwen3");
                for (auto& [k, v] : meta) {
                  if (k == "qwen3.block_count") k = "llama.block_count";
                }
              }),
              "missing metadata key qwen3.block_count");
}

TEST_F(LlamaModelTest, BiasesOnSomeLayersOnlyAreRefused) {
  ExpectError(LoadMutated([](auto&, auto& tensors) {
                for (const char* n : {"attn_q", "attn_k", "attn_v"}) {
                  const uint64_t len = std::string(n) == "attn_q" ? 64 : 32;
                  tensors.push_back({std::string("blk.1.") + n + ".bias", {len}, TensorType::kF32,
                                     std::vector<uint8_t>(len * 4, 0)});
                }
              }),
              "blk.1.attn_q.bias is present but blk.0 has no biases");
}

TEST_F(LlamaModelTest, LinearRopeScalingDividesFrequencies) {
  ASSERT_TRUE(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "llama.rope.scaling.type", GgufValue::String("linear"));
                SetKey(meta, "llama.rope.scaling.factor", GgufValue::F32(4));
              }).ok());
  auto file = GgufFile::Parse(bytes_, "mutated.gguf");
  ASSERT_TRUE(file.ok());
  auto model = Model::FromGguf(std::move(*file));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->hparams().rope_freq_scale, 0.25f);
}

TEST_F(LlamaModelTest, YarnRopeScalingIsRefusedNamingWhatIsSupported) {
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "llama.rope.scaling.type", GgufValue::String("yarn"));
                SetKey(meta, "llama.rope.scaling.factor", GgufValue::F32(4));
              }),
              "llama.rope.scaling.type = 'yarn' is not supported");
}

TEST_F(LlamaModelTest, RopeFrequencyFactorsOfTheWrongLengthOrValueAreRefused) {
  auto with_factors = [](std::vector<float> f) {
    return [f](auto&, auto& tensors) {
      std::vector<uint8_t> bytes(f.size() * 4);
      std::memcpy(bytes.data(), f.data(), bytes.size());
      tensors.push_back({"rope_freqs.weight", {f.size()}, TensorType::kF32, bytes});
    };
  };
  // Head size 16: 8 frequencies.
  EXPECT_TRUE(LoadMutated(with_factors({1, 1, 1, 2, 4, 8, 8, 8})).ok());
  ExpectError(LoadMutated(with_factors({1, 1, 1, 8})), "rope_freqs.weight has shape {4}");
  ExpectError(LoadMutated(with_factors({1, 1, 1, 2, 0, 8, 8, 8})),
              "rope_freqs.weight[4] = 0 is not a positive frequency divisor");
}

TEST_F(LlamaModelTest, MissingHyperParameter) {
  ExpectError(LoadMutated([](auto& meta, auto&) { EraseKey(meta, "llama.block_count"); }),
              "llama.block_count");
}

TEST_F(LlamaModelTest, HyperParameterOfTheWrongType) {
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "llama.embedding_length", GgufValue::String("64"));
              }),
              "llama.embedding_length");
}

TEST_F(LlamaModelTest, HeadsThatDoNotDivide) {
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "llama.attention.head_count_kv", GgufValue::U32(3));
              }),
              "head_count_kv");
}

TEST_F(LlamaModelTest, MissingTensor) {
  ExpectError(LoadMutated([](auto&, auto& tensors) {
                std::erase_if(tensors, [](const auto& t) { return t.name == "blk.1.ffn_up.weight"; });
              }),
              "missing tensor blk.1.ffn_up.weight");
}

TEST_F(LlamaModelTest, TensorShapeThatDoesNotFitTheHyperParameters) {
  ExpectError(LoadMutated([](auto&, auto& tensors) {
                for (auto& t : tensors) {
                  if (t.name == "blk.0.attn_k.weight") {
                    t.dims = {64, 16};  // kv_dim is 32
                    t.data.resize(64 * 16 * 2);
                  }
                }
              }),
              "blk.0.attn_k.weight has shape {64, 16}");
}

TEST_F(LlamaModelTest, UnsupportedWeightTypesAreRefusedNamingTypeAndTensor) {
  // q8_1 and iq4_nl are valid GGUF types (32-element blocks) that no kernel here computes.
  for (auto [type, name, block_bytes] : {std::tuple{TensorType::kQ8_1, "q8_1", 36},
                                         std::tuple{TensorType::kIQ4_NL, "iq4_nl", 18}}) {
    ExpectError(LoadMutated([&](auto&, auto& tensors) {
                  for (auto& t : tensors) {
                    if (t.name == "blk.0.attn_q.weight") {
                      t.type = type;
                      t.data.assign(64 * 64 / 32 * block_bytes, 0);
                    }
                  }
                }),
                std::string("blk.0.attn_q.weight has weight type ") + name);
  }
}

TEST_F(LlamaModelTest, QuantisedNormWeightsAreRefused) {
  ExpectError(LoadMutated([](auto&, auto& tensors) {
                for (auto& t : tensors) {
                  if (t.name == "blk.1.ffn_norm.weight") {
                    t.type = TensorType::kQ8_0;
                    t.data.assign(64 / 32 * 34, 0);
                  }
                }
              }),
              "blk.1.ffn_norm.weight has weight type q8_0");
}

TEST_F(LlamaModelTest, Bf16AndQuantisedMatricesLoad) {
  for (auto [type, block, block_bytes] :
       {std::tuple{TensorType::kBF16, 1, 2}, std::tuple{TensorType::kQ8_0, 32, 34},
        std::tuple{TensorType::kQ4_0, 32, 18}, std::tuple{TensorType::kQ4_1, 32, 20},
        std::tuple{TensorType::kQ5_0, 32, 22}, std::tuple{TensorType::kQ5_1, 32, 24}}) {
    Status st = LoadMutated([&](auto&, auto& tensors) {
      for (auto& t : tensors) {
        if (t.dims.size() == 2) {
          t.type = type;
          t.data.assign(t.dims[0] * t.dims[1] / block * block_bytes, 0);
        }
      }
    });
    EXPECT_TRUE(st.ok()) << TensorTypeName(static_cast<uint32_t>(type)) << ": " << st;
  }
}

// A K-quant needs rows of whole 256-element super-blocks. The writer refuses to write such a
// tensor, so the file is patched: blk.0.ffn_up.weight's type field (after its name, n_dims
// and two dims) goes from f16 to q4_K over rows of 64.
TEST_F(LlamaModelTest, RowsThatAreNotWholeBlocksAreRefused) {
  ASSERT_TRUE(LoadMutated([](auto&, auto&) {}).ok());
  std::vector<uint8_t> bytes = bytes_;
  const std::string name = "blk.0.ffn_up.weight";
  auto at = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
  ASSERT_NE(at, bytes.end());
  const size_t type_at = (at - bytes.begin()) + name.size() + 4 + 2 * 8;
  uint32_t type;
  std::memcpy(&type, &bytes[type_at], 4);
  ASSERT_EQ(type, static_cast<uint32_t>(TensorType::kF16));
  type = static_cast<uint32_t>(TensorType::kQ4_K);
  std::memcpy(&bytes[type_at], &type, 4);
  auto file = GgufFile::Parse(bytes, "patched.gguf");
  Status st = file.ok() ? Model::FromGguf(std::move(*file)).status() : file.status();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(std::string(st.message()).find("'blk.0.ffn_up.weight' of type q4_K has row length 64, "
                                           "not a multiple of the block size 256"),
            std::string::npos)
      << st.message();
}

TEST_F(LlamaModelTest, TiedOutputUsesTheEmbedding) {
  Status st = LoadMutated([](auto&, auto& tensors) {
    std::erase_if(tensors, [](const auto& t) { return t.name == "output.weight"; });
  });
  EXPECT_TRUE(st.ok()) << st;
}

TEST_F(LlamaModelTest, SharedModelsLoad) {
  const std::string dir = PREFIXD_SHARED_DIR;
  if (!std::filesystem::exists(dir + "/models/stories260K.gguf")) {
    GTEST_SKIP() << "../shared/models is absent";
  }
  auto stories = Model::Load(dir + "/models/stories260K.gguf");
  ASSERT_TRUE(stories.ok()) << stories.status();
  EXPECT_EQ((*stories)->hparams().num_layers, 5);
  EXPECT_EQ((*stories)->hparams().num_kv_heads, 4);
  EXPECT_EQ((*stories)->hparams().rope_freq_base, 10000.0f);
  auto tiny = Model::Load(dir + "/models/llama-2-tiny-random.gguf");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ((*tiny)->hparams().vocab_size, 32000);
}

// The same checks over a qwen35 (hybrid) file: 4 layers, DeltaNet x 3 then attention.
class Qwen35ModelTest : public LlamaModelTest {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("prefixd-qwen35-model-test-" + std::to_string(::getpid()) + ".gguf"))
                .string();
    ModelSpec spec;
    spec.arch = "qwen35";
    spec.num_layers = 4;
    spec.embd = 64;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.head_dim = 32;
    spec.ff = 96;
    spec.vocab = 300;
    spec.type = TensorType::kF16;
    ASSERT_TRUE(WriteRandomModel(spec, path_).ok());
    auto file = GgufFile::Open(path_);
    ASSERT_TRUE(file.ok());
    source_ = std::move(*file);
  }
};

TEST_F(Qwen35ModelTest, LoadsItsLayerPatternAndDeltaNetSizes) {
  auto model = Model::Load(path_);
  ASSERT_TRUE(model.ok()) << model.status();
  const Hparams& hp = (*model)->hparams();
  EXPECT_EQ(hp.recurrent, (std::vector<bool>{true, true, true, false}));
  EXPECT_EQ(hp.num_attention_layers(), 1);
  EXPECT_EQ(hp.delta_net.conv_kernel, 4);
  EXPECT_EQ(hp.delta_net.head_dim, 32);
  EXPECT_EQ(hp.delta_net.num_k_heads, 2);
  EXPECT_EQ(hp.delta_net.num_v_heads, 4);
  EXPECT_EQ(hp.delta_net.conv_dim(), 2 * 64 + 128);
  EXPECT_EQ(hp.recurrent_state_floats(), 3 * (3 * 256 + 4 * 32 * 32));
  EXPECT_EQ(hp.rope_dims, 8);
  EXPECT_TRUE(hp.rope_pair_static.empty()) << "[2, 1, 1, 0] leaves no pair to the 4th section";
  EXPECT_TRUE(hp.attn_output_gate);
  EXPECT_TRUE(hp.qk_norm);
  EXPECT_FALSE(hp.kv_slices_per_token);
  const ModelWeights& w = (*model)->weights();
  EXPECT_EQ(w.layers[3].wq.rows, 2 * hp.q_dim());
  EXPECT_EQ(w.layers[0].ssm_conv1d.cols, 4);
  EXPECT_EQ(w.layers[0].ssm_conv1d.rows, 256);
  EXPECT_EQ(w.layers[0].wq.data, nullptr);
  EXPECT_EQ(w.layers[2].ffn_norm.name, "blk.2.post_attention_norm.weight");
}

TEST_F(Qwen35ModelTest, RecurrentLayersListOverridesTheInterval) {
  Status st = LoadMutated([](auto& meta, auto&) {
    std::vector<GgufValue> flags;
    for (bool b : {true, false, true, true}) flags.push_back(GgufValue::Bool(b));
    SetKey(meta, "qwen35.attention.recurrent_layers", GgufValue::Array(GgufType::kBool, flags));
  });
  // Layer 1 is now attention and has no attn_q: the pattern was read from the list.
  ExpectError(st, "missing tensor blk.1.attn_q.weight");
}

TEST_F(Qwen35ModelTest, MultiTokenPredictionLayersAreSkipped) {
  Status st = LoadMutated([](auto& meta, auto&) {
    SetKey(meta, "qwen35.block_count", GgufValue::U32(5));
    SetKey(meta, "qwen35.nextn_predict_layers", GgufValue::U32(1));
  });
  EXPECT_TRUE(st.ok()) << st;
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "qwen35.nextn_predict_layers", GgufValue::U32(4));
              }),
              "nextn_predict_layers 4 leaves none of the 4 blocks");
}

TEST_F(Qwen35ModelTest, MissingOrInconsistentHyperParametersAreRefused) {
  ExpectError(LoadMutated([](auto& meta, auto&) { EraseKey(meta, "qwen35.ssm.state_size"); }),
              "missing metadata key qwen35.ssm.state_size");
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "qwen35.ssm.inner_size", GgufValue::U32(100));
              }),
              "ssm.inner_size 100 != ssm.state_size 32 * ssm.time_step_rank 4");
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "qwen35.ssm.group_count", GgufValue::U32(3));
              }),
              "is not a multiple of ssm.group_count");
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "qwen35.full_attention_interval", GgufValue::U32(5));
              }),
              "no layer is a full-attention layer");
  ExpectError(LoadMutated([](auto& meta, auto&) {
                EraseKey(meta, "qwen35.rope.dimension_sections");
              }),
              "missing metadata key qwen35.rope.dimension_sections");
}

TEST_F(Qwen35ModelTest, MissingOrMisshapenDeltaNetTensorsAreRefused) {
  ExpectError(LoadMutated([](auto&, auto& tensors) {
                std::erase_if(tensors, [](const auto& t) { return t.name == "blk.1.ssm_a"; });
              }),
              "missing tensor blk.1.ssm_a");
  ExpectError(LoadMutated([](auto& meta, auto&) {
                SetKey(meta, "qwen35.ssm.conv_kernel", GgufValue::U32(3));
              }),
              "tensor blk.0.ssm_conv1d.weight has shape {4, 256} but the hyper-parameters need "
              "{3, 256}");
}

}  // namespace
}  // namespace prefixd
