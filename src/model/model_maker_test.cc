#include "model/model_maker.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "base/fp16.h"
#include "gtest/gtest.h"
#include "model/gguf_file.h"
#include "model/llama_model.h"

namespace prefixd {
namespace {

std::vector<char> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

std::string SharedModel(const std::string& file) {
  return std::string(PREFIXD_SHARED_DIR) + "/models/" + file;
}

class ModelMakerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("model_maker_test." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  static ModelSpec SmallSpec() {
    ModelSpec spec;
    spec.num_layers = 2;
    spec.embd = 32;
    spec.num_heads = 4;
    spec.num_kv_heads = 2;
    spec.ff = 48;
    spec.vocab = 300;
    spec.ctx = 128;
    spec.type = TensorType::kF16;
    spec.seed = 42;
    return spec;
  }

  std::filesystem::path dir_;
};

TEST_F(ModelMakerTest, WritesShapesAndMetadata) {
  const ModelSpec spec = SmallSpec();
  ASSERT_TRUE(WriteRandomModel(spec, Path("m.gguf")).ok());
  auto file = GgufFile::Open(Path("m.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;

  EXPECT_EQ(f.metadata().front().first, "general.architecture");
  EXPECT_EQ(f.GetString("general.architecture").value(), "llama");
  EXPECT_FALSE(f.GetString("general.name").value().empty());
  EXPECT_EQ(f.GetUint("general.file_type").value(), 1u);
  EXPECT_EQ(f.GetUint("llama.context_length").value(), 128u);
  EXPECT_EQ(f.GetUint("llama.embedding_length").value(), 32u);
  EXPECT_EQ(f.GetUint("llama.block_count").value(), 2u);
  EXPECT_EQ(f.GetUint("llama.feed_forward_length").value(), 48u);
  EXPECT_EQ(f.GetUint("llama.attention.head_count").value(), 4u);
  EXPECT_EQ(f.GetUint("llama.attention.head_count_kv").value(), 2u);
  EXPECT_FLOAT_EQ(f.GetFloat("llama.attention.layer_norm_rms_epsilon").value(), 1e-5f);
  EXPECT_EQ(f.GetUint("llama.rope.dimension_count").value(), 8u);
  EXPECT_FLOAT_EQ(f.GetFloat("llama.rope.freq_base").value(), 10000.0f);
  EXPECT_EQ(f.GetUint("llama.vocab_size").value(), 300u);

  // Synthetic SentencePiece vocabulary.
  EXPECT_EQ(f.GetString("tokenizer.ggml.model").value(), "llama");
  const auto tokens = f.GetStringArray("tokenizer.ggml.tokens").value();
  const auto scores = f.GetFloatArray("tokenizer.ggml.scores").value();
  const auto types = f.GetIntArray("tokenizer.ggml.token_type").value();
  ASSERT_EQ(tokens.size(), 300u);
  ASSERT_EQ(scores.size(), 300u);
  ASSERT_EQ(types.size(), 300u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[2], "</s>");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(tokens[3 + 0x41], "<0x41>");
  EXPECT_EQ(tokens[258], "<0xFF>");
  EXPECT_EQ(tokens[259], "\xe2\x96\x81");
  EXPECT_EQ(types[0], 2);
  EXPECT_EQ(types[1], 3);
  EXPECT_EQ(types[100], 6);
  EXPECT_EQ(types[259], 1);
  for (size_t k = 260; k < tokens.size(); ++k) EXPECT_LT(scores[k], scores[k - 1]) << k;
  std::set<std::string> unique(tokens.begin(), tokens.end());
  EXPECT_EQ(unique.size(), tokens.size());
  EXPECT_EQ(f.GetUint("tokenizer.ggml.bos_token_id").value(), 1u);
  EXPECT_EQ(f.GetUint("tokenizer.ggml.eos_token_id").value(), 2u);
  EXPECT_EQ(f.GetUint("tokenizer.ggml.unknown_token_id").value(), 0u);
  EXPECT_TRUE(f.GetBool("tokenizer.ggml.add_bos_token").value());

  struct Expect {
    std::string name;
    std::vector<uint64_t> dims;
    TensorType type;
  };
  const TensorType h = TensorType::kF16, s = TensorType::kF32;
  std::vector<Expect> expected = {{"token_embd.weight", {32, 300}, h},
                                  {"output_norm.weight", {32}, s},
                                  {"output.weight", {32, 300}, h}};
  for (int i = 0; i < 2; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    expected.push_back({b + "attn_norm.weight", {32}, s});
    expected.push_back({b + "attn_q.weight", {32, 32}, h});
    expected.push_back({b + "attn_k.weight", {32, 16}, h});
    expected.push_back({b + "attn_v.weight", {32, 16}, h});
    expected.push_back({b + "attn_output.weight", {32, 32}, h});
    expected.push_back({b + "ffn_norm.weight", {32}, s});
    expected.push_back({b + "ffn_gate.weight", {32, 48}, h});
    expected.push_back({b + "ffn_up.weight", {32, 48}, h});
    expected.push_back({b + "ffn_down.weight", {48, 32}, h});
  }
  ASSERT_EQ(f.tensors().size(), expected.size());
  for (const Expect& e : expected) {
    const GgufTensorInfo* t = f.FindTensor(e.name);
    ASSERT_NE(t, nullptr) << e.name;
    EXPECT_EQ(t->dims, e.dims) << e.name;
    EXPECT_EQ(t->type, e.type) << e.name;
  }

  // Norm weights near 1; matrices small, centred and not constant.
  const auto norm = f.TensorData(*f.FindTensor("blk.1.ffn_norm.weight"));
  for (size_t k = 0; k < 32; ++k) {
    float x;
    std::memcpy(&x, norm.data() + 4 * k, 4);
    EXPECT_NEAR(x, 1.0f, 0.2f);
  }
  const GgufTensorInfo* q = f.FindTensor("blk.0.attn_q.weight");
  const auto qd = f.TensorData(*q);
  double sum = 0, sum_sq = 0;
  for (size_t k = 0; k < q->num_elements; ++k) {
    uint16_t bits;
    std::memcpy(&bits, qd.data() + 2 * k, 2);
    const double x = HalfToFloat(bits);
    sum += x;
    sum_sq += x * x;
  }
  const double mean = sum / q->num_elements;
  const double stddev = std::sqrt(sum_sq / q->num_elements - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(stddev, 1 / std::sqrt(32.0), 0.02);
}

// The loader the engine uses accepts what the maker writes, with the spec's hyper-parameters.
TEST_F(ModelMakerTest, ModelLoadAcceptsWrittenModels) {
  for (bool tie : {false, true}) {
    ModelSpec spec = SmallSpec();
    spec.tie_output = tie;
    ASSERT_TRUE(WriteRandomModel(spec, Path("load.gguf")).ok());
    auto model = Model::Load(Path("load.gguf"));
    ASSERT_TRUE(model.ok()) << model.status();
    const Hparams& h = (*model)->hparams();
    EXPECT_EQ(h.arch, "llama");
    EXPECT_EQ(h.vocab_size, 300);
    EXPECT_EQ(h.embd, 32);
    EXPECT_EQ(h.num_layers, 2);
    EXPECT_EQ(h.num_heads, 4);
    EXPECT_EQ(h.num_kv_heads, 2);
    EXPECT_EQ(h.head_dim, 8);
    EXPECT_EQ(h.ff, 48);
    EXPECT_EQ((*model)->weights().output_tied, tie);
  }
}

// qwen2 adds Q/K/V biases under qwen2.* keys; the loader reads them back.
TEST_F(ModelMakerTest, Qwen2HasBiasesAndItsOwnKeyPrefix) {
  ModelSpec spec = SmallSpec();
  spec.arch = "qwen2";
  spec.rope_freq_base = 1000000;
  ASSERT_TRUE(WriteRandomModel(spec, Path("q2.gguf")).ok());
  auto file = GgufFile::Open(Path("q2.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->GetUint("qwen2.embedding_length").value(), 32u);
  EXPECT_FLOAT_EQ((*file)->GetFloat("qwen2.rope.freq_base").value(), 1e6f);
  EXPECT_EQ((*file)->Find("llama.embedding_length"), nullptr);
  const GgufTensorInfo* bq = (*file)->FindTensor("blk.1.attn_q.bias");
  const GgufTensorInfo* bk = (*file)->FindTensor("blk.1.attn_k.bias");
  ASSERT_NE(bq, nullptr);
  ASSERT_NE(bk, nullptr);
  EXPECT_EQ(bq->dims, std::vector<uint64_t>{32});
  EXPECT_EQ(bk->dims, std::vector<uint64_t>{16});
  EXPECT_EQ((*file)->FindTensor("blk.0.attn_q_norm.weight"), nullptr);
  auto model = Model::Load(Path("q2.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const Hparams& h = (*model)->hparams();
  EXPECT_TRUE(h.qkv_bias);
  EXPECT_FALSE(h.qk_norm);
  EXPECT_EQ(h.rope_style, RopeStyle::kNeox);
  EXPECT_EQ(h.rope_freq_base, 1e6f);
}

// qwen3: per-head Q/K norms and a head size that is not embd / heads.
TEST_F(ModelMakerTest, Qwen3HasQkNormsAndAnIndependentHeadSize) {
  ModelSpec spec = SmallSpec();
  spec.arch = "qwen3";
  spec.head_dim = 16;  // 4 heads * 16 = 64 != embd 32
  ASSERT_TRUE(WriteRandomModel(spec, Path("q3.gguf")).ok());
  auto file = GgufFile::Open(Path("q3.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->GetUint("qwen3.attention.key_length").value(), 16u);
  EXPECT_EQ((*file)->GetUint("qwen3.attention.value_length").value(), 16u);
  EXPECT_EQ((*file)->FindTensor("blk.0.attn_q.weight")->dims, (std::vector<uint64_t>{32, 64}));
  EXPECT_EQ((*file)->FindTensor("blk.0.attn_output.weight")->dims, (std::vector<uint64_t>{64, 32}));
  EXPECT_EQ((*file)->FindTensor("blk.1.attn_k_norm.weight")->dims, std::vector<uint64_t>{16});
  EXPECT_EQ((*file)->FindTensor("blk.0.attn_q.bias"), nullptr);
  auto model = Model::Load(Path("q3.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const Hparams& h = (*model)->hparams();
  EXPECT_EQ(h.head_dim, 16);
  EXPECT_EQ(h.q_dim(), 64);
  EXPECT_EQ(h.kv_dim(), 32);
  EXPECT_TRUE(h.qk_norm);
  EXPECT_FALSE(h.qkv_bias);
}

// qwen3moe: qwen3's attention, a router and 3-D expert tensors instead of the dense FFN, and
// the expert keys; Model loads it with experts as 2-D slices of one matrix each.
TEST_F(ModelMakerTest, Qwen3MoeHasARouterAndThreeDimensionalExperts) {
  ModelSpec spec = SmallSpec();
  spec.arch = "qwen3moe";
  spec.head_dim = 16;
  spec.experts = 4;
  spec.experts_used = 2;
  spec.expert_ff = 64;
  spec.type = TensorType::kQ8_0;
  ASSERT_TRUE(WriteRandomModel(spec, Path("moe.gguf")).ok());
  auto file = GgufFile::Open(Path("moe.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->GetUint("qwen3moe.expert_count").value(), 4u);
  EXPECT_EQ((*file)->GetUint("qwen3moe.expert_used_count").value(), 2u);
  EXPECT_EQ((*file)->GetUint("qwen3moe.expert_feed_forward_length").value(), 64u);
  EXPECT_EQ((*file)->FindTensor("blk.0.ffn_gate.weight"), nullptr);
  const GgufTensorInfo* router = (*file)->FindTensor("blk.1.ffn_gate_inp.weight");
  ASSERT_NE(router, nullptr);
  EXPECT_EQ(router->dims, (std::vector<uint64_t>{32, 4}));
  EXPECT_EQ(router->type, TensorType::kF32);
  const GgufTensorInfo* up = (*file)->FindTensor("blk.0.ffn_up_exps.weight");
  EXPECT_EQ(up->dims, (std::vector<uint64_t>{32, 64, 4}));
  EXPECT_EQ(up->type, TensorType::kQ8_0);
  EXPECT_EQ((*file)->FindTensor("blk.0.ffn_down_exps.weight")->dims,
            (std::vector<uint64_t>{64, 32, 4}));
  EXPECT_NE((*file)->FindTensor("blk.0.attn_k_norm.weight"), nullptr);
  auto model = Model::Load(Path("moe.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  const Hparams& h = (*model)->hparams();
  EXPECT_TRUE(h.moe());
  EXPECT_TRUE(h.qk_norm);
  EXPECT_EQ(h.num_experts, 4);
  EXPECT_EQ(h.num_experts_used, 2);
  EXPECT_EQ(h.expert_ff, 64);
  const Weight& down = (*model)->weights().layers[0].ffn_down_exps;
  EXPECT_EQ(down.rows, 4 * 32);
  EXPECT_EQ(down.cols, 64);
  const Weight slice = ExpertSlice(down, 4, 3);
  EXPECT_EQ(slice.rows, 32);
  EXPECT_EQ(slice.data, down.data + 3 * 32 * down.row_bytes);

  spec.experts_used = 5;
  EXPECT_FALSE(ValidateModelSpec(spec).ok());
  spec.experts_used = 2;
  spec.arch = "qwen3";
  EXPECT_FALSE(ValidateModelSpec(spec).ok()) << "experts are for qwen3moe only";
}

TEST_F(ModelMakerTest, Qwen35HasDeltaNetAndGatedAttentionLayers) {
  ModelSpec spec = SmallSpec();
  spec.arch = "qwen35";
  spec.num_layers = 4;
  spec.full_attention_interval = 2;
  spec.head_dim = 16;
  ASSERT_TRUE(WriteRandomModel(spec, Path("q35.gguf")).ok());
  auto file = GgufFile::Open(Path("q35.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.GetUint("qwen35.full_attention_interval").value(), 2u);
  EXPECT_EQ(f.GetUint("qwen35.ssm.state_size").value(), 16u);     // the head size
  EXPECT_EQ(f.GetUint("qwen35.ssm.group_count").value(), 2u);     // the KV heads
  EXPECT_EQ(f.GetUint("qwen35.ssm.time_step_rank").value(), 4u);  // the heads
  EXPECT_EQ(f.GetUint("qwen35.ssm.inner_size").value(), 64u);
  EXPECT_EQ(f.GetUint("qwen35.rope.dimension_count").value(), 4u);  // a quarter of 16
  EXPECT_EQ(f.GetIntArray("qwen35.rope.dimension_sections").value(),
            (std::vector<int64_t>{1, 1, 0, 0}));
  // Layers 0 and 2 are DeltaNet, 1 and 3 attention.
  EXPECT_EQ(f.FindTensor("blk.0.attn_qkv.weight")->dims, (std::vector<uint64_t>{32, 128}));
  EXPECT_EQ(f.FindTensor("blk.2.ssm_conv1d.weight")->dims, (std::vector<uint64_t>{4, 128}));
  EXPECT_EQ(f.FindTensor("blk.2.ssm_conv1d.weight")->type, TensorType::kF32);
  EXPECT_EQ(f.FindTensor("blk.0.ssm_out.weight")->dims, (std::vector<uint64_t>{64, 32}));
  EXPECT_EQ(f.FindTensor("blk.0.attn_q.weight"), nullptr);
  EXPECT_EQ(f.FindTensor("blk.1.attn_q.weight")->dims, (std::vector<uint64_t>{32, 128}));
  EXPECT_EQ(f.FindTensor("blk.1.attn_qkv.weight"), nullptr);
  EXPECT_NE(f.FindTensor("blk.3.post_attention_norm.weight"), nullptr);
  EXPECT_EQ(f.FindTensor("blk.3.ffn_norm.weight"), nullptr);
  auto a = f.FindTensor("blk.0.ssm_a");
  ASSERT_NE(a, nullptr);
  const float* av = reinterpret_cast<const float*>(f.TensorData(*a).data());
  for (int h = 0; h < 4; ++h) EXPECT_LT(av[h], 0.0f) << "ssm_a is a decay rate: negative";
  auto model = Model::Load(Path("q35.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->hparams().recurrent, (std::vector<bool>{true, false, true, false}));

  spec.full_attention_interval = 5;
  EXPECT_FALSE(ValidateModelSpec(spec).ok()) << "no attention layer";
  spec.full_attention_interval = 4;
  spec.delta_k_heads = 3;
  EXPECT_FALSE(ValidateModelSpec(spec).ok()) << "K heads must divide V heads";
  spec.delta_k_heads = 0;
  spec.delta_conv_kernel = 1;
  EXPECT_FALSE(ValidateModelSpec(spec).ok());
  spec.delta_conv_kernel = 4;
  spec.rope_dims = 3;
  EXPECT_FALSE(ValidateModelSpec(spec).ok()) << "odd rope dims";
}

// Llama 3.1 scaling: short wavelengths keep their frequency (divisor 1), wavelengths past
// original_ctx / low_freq_factor are divided by the factor, those between blend.
TEST_F(ModelMakerTest, Llama3RopeScalingWritesFrequencyDivisors) {
  ModelSpec spec = SmallSpec();  // head size 8: wavelengths 2pi * 10000^(i/8), i = 0, 2, 4, 6
  spec.rope_scaling = "llama3";
  spec.rope_original_ctx = 64;  // high wavelength 16, low wavelength 64
  ASSERT_TRUE(WriteRandomModel(spec, Path("l3.gguf")).ok());
  auto file = GgufFile::Open(Path("l3.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufTensorInfo* info = (*file)->FindTensor("rope_freqs.weight");
  ASSERT_NE(info, nullptr);
  ASSERT_EQ(info->dims, std::vector<uint64_t>{4});
  ASSERT_EQ(info->type, TensorType::kF32);
  float f[4];
  std::memcpy(f, (*file)->TensorData(*info).data(), sizeof(f));
  EXPECT_EQ(f[0], 1.0f);  // wavelength 6.3
  EXPECT_GT(f[1], 1.0f);  // wavelength 62.8: between, blended
  EXPECT_LT(f[1], 8.0f);
  EXPECT_EQ(f[2], 8.0f);  // wavelength 628
  EXPECT_EQ(f[3], 8.0f);
  auto model = Model::Load(Path("l3.gguf"));
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE((*model)->hparams().rope_freq_factors);
  // Scaling is computed, not drawn: every other tensor keeps the bytes of the unscaled model.
  ASSERT_TRUE(WriteRandomModel(SmallSpec(), Path("plain.gguf")).ok());
  auto plain = GgufFile::Open(Path("plain.gguf"));
  ASSERT_TRUE(plain.ok());
  for (const auto& t : (*plain)->tensors()) {
    const GgufTensorInfo* other = (*file)->FindTensor(t.name);
    ASSERT_NE(other, nullptr) << t.name;
    auto a = (*plain)->TensorData(t), b = (*file)->TensorData(*other);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << t.name;
  }
}

TEST_F(ModelMakerTest, SameSeedSameBytesDifferentSeedDifferentBytes) {
  ModelSpec spec = SmallSpec();
  ASSERT_TRUE(WriteRandomModel(spec, Path("a.gguf")).ok());
  ASSERT_TRUE(WriteRandomModel(spec, Path("b.gguf")).ok());
  spec.seed = 43;
  ASSERT_TRUE(WriteRandomModel(spec, Path("c.gguf")).ok());
  const auto a = ReadAll(Path("a.gguf")), b = ReadAll(Path("b.gguf")), c = ReadAll(Path("c.gguf"));
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), c.size());
  EXPECT_NE(a, c);
}

TEST_F(ModelMakerTest, TiedOutputAndF32) {
  ModelSpec spec = SmallSpec();
  spec.tie_output = true;
  spec.type = TensorType::kF32;
  ASSERT_TRUE(WriteRandomModel(spec, Path("t.gguf")).ok());
  auto file = GgufFile::Open(Path("t.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->FindTensor("output.weight"), nullptr);
  EXPECT_EQ((*file)->FindTensor("token_embd.weight")->type, TensorType::kF32);
  EXPECT_EQ((*file)->GetUint("general.file_type").value(), 0u);
}

// Matrices take the asked type where its block divides their rows, a 32-element fallback
// otherwise (f16 when even 32 does not divide); norms stay F32. embd 256 and ff 96: rows of
// 256 fit every type, ffn_down's rows of 96 only 32-element blocks.
TEST_F(ModelMakerTest, QuantisedTypesAndTheirFallbacks) {
  ModelSpec spec = SmallSpec();
  spec.embd = 256;
  spec.num_heads = 4;
  spec.ff = 96;
  for (auto [type, fallback] : {std::pair{TensorType::kQ4_K, TensorType::kQ5_0},
                                std::pair{TensorType::kQ5_K, TensorType::kQ5_1},
                                std::pair{TensorType::kQ6_K, TensorType::kQ8_0},
                                std::pair{TensorType::kQ8_0, TensorType::kQ8_0},
                                std::pair{TensorType::kQ4_1, TensorType::kQ4_1},
                                std::pair{TensorType::kQ5_0, TensorType::kQ5_0},
                                std::pair{TensorType::kQ5_1, TensorType::kQ5_1},
                                std::pair{TensorType::kBF16, TensorType::kBF16}}) {
    spec.type = type;
    ASSERT_TRUE(WriteRandomModel(spec, Path("q.gguf")).ok());
    auto file = GgufFile::Open(Path("q.gguf"));
    ASSERT_TRUE(file.ok()) << file.status();
    const std::string name = TensorTypeName(static_cast<uint32_t>(type));
    EXPECT_EQ((*file)->FindTensor("blk.0.attn_q.weight")->type, type) << name;
    EXPECT_EQ((*file)->FindTensor("token_embd.weight")->type, type) << name;
    EXPECT_EQ((*file)->FindTensor("blk.1.ffn_down.weight")->type, fallback) << name;
    EXPECT_EQ((*file)->FindTensor("blk.1.ffn_norm.weight")->type, TensorType::kF32) << name;
    EXPECT_TRUE(Model::Load(Path("q.gguf")).ok()) << name;
  }
  EXPECT_EQ(MatrixType(TensorType::kQ4_K, 48), TensorType::kF16);
  EXPECT_EQ(MatrixType(TensorType::kQ8_0, 48), TensorType::kF16);
}

TEST_F(ModelMakerTest, VocabFromPadsToLargerVocab) {
  const std::string src = SharedModel("stories260K.gguf");
  if (!std::filesystem::exists(src)) GTEST_SKIP() << src << " not present";
  auto source = GgufFile::Open(src);
  ASSERT_TRUE(source.ok()) << source.status();
  const auto src_tokens = (*source)->GetStringArray("tokenizer.ggml.tokens").value();
  ASSERT_EQ(src_tokens.size(), 512u);

  ModelSpec spec = SmallSpec();
  spec.vocab_from = src;
  spec.vocab = 600;
  ASSERT_TRUE(WriteRandomModel(spec, Path("v.gguf")).ok());
  auto file = GgufFile::Open(Path("v.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  const GgufFile& f = **file;
  EXPECT_EQ(f.GetUint("llama.vocab_size").value(), 600u);
  EXPECT_EQ(f.FindTensor("token_embd.weight")->dims, (std::vector<uint64_t>{32, 600}));
  const auto tokens = f.GetStringArray("tokenizer.ggml.tokens").value();
  ASSERT_EQ(tokens.size(), 600u);
  for (size_t k = 0; k < 512; ++k) EXPECT_EQ(tokens[k], src_tokens[k]);
  EXPECT_EQ(tokens[512], "[PAD512]");
  EXPECT_EQ(tokens[599], "[PAD599]");
  const auto types = f.GetIntArray("tokenizer.ggml.token_type").value();
  ASSERT_EQ(types.size(), 600u);
  EXPECT_EQ(types[599], 5);
  EXPECT_EQ(f.GetFloatArray("tokenizer.ggml.scores").value().size(), 600u);
  // Every tokenizer.* key of the source was copied, with its type.
  for (const auto& [key, value] : (*source)->metadata()) {
    if (!key.starts_with("tokenizer.")) continue;
    const GgufValue* copy = f.Find(key);
    ASSERT_NE(copy, nullptr) << key;
    EXPECT_EQ(copy->type, value.type) << key;
    if (value.type != GgufType::kArray) {
      EXPECT_EQ(*copy, value) << key;
    }
  }
}

TEST_F(ModelMakerTest, VocabFromWithZeroVocabUsesSourceSize) {
  const std::string src = SharedModel("stories260K.gguf");
  if (!std::filesystem::exists(src)) GTEST_SKIP() << src << " not present";
  ModelSpec spec = SmallSpec();
  spec.vocab_from = src;
  spec.vocab = 0;
  ASSERT_TRUE(WriteRandomModel(spec, Path("v0.gguf")).ok());
  auto file = GgufFile::Open(Path("v0.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->GetUint("llama.vocab_size").value(), 512u);
  EXPECT_EQ((*file)->FindTensor("output.weight")->dims, (std::vector<uint64_t>{32, 512}));

  spec.vocab = 100;
  const Status small = WriteRandomModel(spec, Path("v1.gguf"));
  EXPECT_EQ(small.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(small.message().find("smaller than"), absl::string_view::npos) << small;
}

TEST_F(ModelMakerTest, VocabFromMissingFile) {
  ModelSpec spec = SmallSpec();
  spec.vocab_from = Path("absent.gguf");
  EXPECT_EQ(WriteRandomModel(spec, Path("x.gguf")).code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelMakerTest, RejectsBadSpecs) {
  auto expect_bad = [&](ModelSpec spec, const std::string& needle) {
    const Status s = WriteRandomModel(spec, Path("bad.gguf"));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_NE(s.message().find(needle), absl::string_view::npos) << s;
    EXPECT_FALSE(std::filesystem::exists(Path("bad.gguf")));
  };
  ModelSpec s = SmallSpec();
  s.num_heads = 3;
  expect_bad(s, "does not divide embd");
  s = SmallSpec();
  s.num_kv_heads = 3;
  expect_bad(s, "does not divide num_heads");
  s = SmallSpec();
  s.embd = 36;
  s.num_heads = 4;  // head size 9
  expect_bad(s, "is odd");
  s = SmallSpec();
  s.num_layers = 0;
  expect_bad(s, "num_layers");
  s = SmallSpec();
  s.ff = -1;
  expect_bad(s, "ff");
  s = SmallSpec();
  s.vocab = 100;
  expect_bad(s, "smallest synthetic vocabulary");
  s = SmallSpec();
  s.type = TensorType::kQ2_K;
  expect_bad(s, "only f32, f16, bf16");
  s = SmallSpec();
  s.arch = "gpt2";
  expect_bad(s, "supported: llama, qwen2, qwen3");
  s = SmallSpec();
  s.head_dim = 7;
  expect_bad(s, "is odd");
  s = SmallSpec();
  s.rope_scaling = "yarn";
  expect_bad(s, "supported: llama3");
  s = SmallSpec();
  s.rope_scaling = "llama3";
  s.rope_high_freq_factor = 0.5f;
  expect_bad(s, "low < high");
  s = SmallSpec();
  s.embd = 1 << 20;
  s.num_heads = 1 << 10;
  s.num_kv_heads = 1 << 10;
  expect_bad(s, "parameters");
}

TEST_F(ModelMakerTest, LargerSyntheticVocabIsUnique) {
  ModelSpec spec = SmallSpec();
  spec.vocab = 32000;
  spec.embd = 8;
  spec.num_heads = 2;
  spec.num_kv_heads = 2;
  spec.ff = 8;
  ASSERT_TRUE(WriteRandomModel(spec, Path("big_vocab.gguf")).ok());
  auto file = GgufFile::Open(Path("big_vocab.gguf"));
  ASSERT_TRUE(file.ok()) << file.status();
  const auto tokens = (*file)->GetStringArray("tokenizer.ggml.tokens").value();
  ASSERT_EQ(tokens.size(), 32000u);
  std::set<std::string> unique(tokens.begin(), tokens.end());
  EXPECT_EQ(unique.size(), tokens.size());
  EXPECT_NE(unique.count("\xe2\x96\x81the"), 0u);
}

}  // namespace
}  // namespace prefixd
