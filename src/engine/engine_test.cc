#include "engine/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "compute/cpu/quant_int.h"
#include "engine/test_models.h"

namespace prefixd {
namespace {

struct RunConfig {
  int threads = 2;
  int chunk = 4096;
  bool with_neighbours = false;  // two other sequences share every step
  KvDtype kv = KvDtype::kF16;
  int block_size = 16;
  QuantDot quant_dot = QuantDot::kInt8;
};

// Prefills `tokens` under `config` and returns the logits of every token.
std::vector<float> PrefillLogits(const Model& model, const std::vector<int32_t>& tokens,
                                 const RunConfig& config) {
  EngineOptions eo;
  eo.num_threads = config.threads;
  eo.max_chunk_tokens = config.chunk;
  eo.max_batch_tokens = 4096;
  eo.max_running = 3;
  eo.kv_dtype = config.kv;
  eo.block_size = config.block_size;
  eo.quant_dot = config.quant_dot;
  eo.context_length = static_cast<int>(tokens.size()) + 64;
  auto engine = Engine::Create(model, -1, eo);
  EXPECT_TRUE(engine.ok()) << engine.status();
  GenerateRequest req;
  req.prompt = tokens;
  req.max_tokens = 1;
  req.record_logits = true;
  std::vector<SequenceId> others;
  if (config.with_neighbours) {
    for (int k = 0; k < 2; ++k) {
      GenerateRequest other;
      std::mt19937 rng(100 + k);
      for (int i = 0; i < 50 + 40 * k; ++i) {
        other.prompt.push_back(static_cast<int32_t>(rng() % model.hparams().vocab_size));
      }
      other.max_tokens = 400;
      other.ignore_eos = true;
      others.push_back(*(*engine)->Add(other));
    }
  }
  auto id = (*engine)->Add(req);
  EXPECT_TRUE(id.ok());
  std::unique_ptr<Sequence> seq;
  while (!seq) {
    auto st = (*engine)->Step();
    EXPECT_TRUE(st.ok()) << st.status();
    seq = (*engine)->TakeFinished(*id);
  }
  const size_t vocab = model.hparams().vocab_size;
  EXPECT_EQ(seq->logits.size(), (tokens.size() + 0) * vocab);
  return std::vector<float>(seq->logits.begin(), seq->logits.begin() + tokens.size() * vocab);
}

void ExpectBitIdentical(const std::vector<float>& a, const std::vector<float>& b, int vocab,
                        const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    uint32_t x, y;
    std::memcpy(&x, &a[i], 4);
    std::memcpy(&y, &b[i], 4);
    ASSERT_EQ(x, y) << what << ": token " << i / vocab << " logit " << i % vocab << ": " << a[i]
                    << " vs " << b[i];
  }
}

void CheckBatchInvariance(const Model& model, KvDtype kv, QuantDot quant_dot = QuantDot::kInt8) {
  std::mt19937 rng(9);
  std::vector<int32_t> tokens(300);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % model.hparams().vocab_size);
  RunConfig base;
  base.kv = kv;
  base.quant_dot = quant_dot;
  const std::vector<float> reference = PrefillLogits(model, tokens, base);
  const int vocab = model.hparams().vocab_size;
  for (int chunk : {1, 7, 16}) {
    RunConfig c = base;
    c.chunk = chunk;
    ExpectBitIdentical(reference, PrefillLogits(model, tokens, c), vocab,
                       "chunks of " + std::to_string(chunk));
  }
  RunConfig one_thread = base;
  one_thread.threads = 1;
  ExpectBitIdentical(reference, PrefillLogits(model, tokens, one_thread), vocab, "1 thread");
  RunConfig neighbours = base;
  neighbours.with_neighbours = true;
  neighbours.chunk = 37;
  ExpectBitIdentical(reference, PrefillLogits(model, tokens, neighbours), vocab,
                     "batched with two other sequences");
  RunConfig blocks = base;
  blocks.block_size = 5;
  ExpectBitIdentical(reference, PrefillLogits(model, tokens, blocks), vocab, "block size 5");
}

TEST(BatchInvariance, Stories260K) {
  auto model = LoadSharedModel("stories260K.gguf");
  if (!model) GTEST_SKIP() << "../shared/models/stories260K.gguf is absent";
  CheckBatchInvariance(*model, KvDtype::kF16);
}

TEST(BatchInvariance, RandomGqaModelF16Weights) {
  auto model = MakeTestModel(TestModelShape::kGqa256, TensorType::kF16);
  CheckBatchInvariance(*model, KvDtype::kF16);
}

TEST(BatchInvariance, RandomGqaModelF32WeightsF32Kv) {
  auto model = MakeTestModel(TestModelShape::kGqa256, TensorType::kF32);
  CheckBatchInvariance(*model, KvDtype::kF32);
}

// BF16 and quantised weights: prefill dequantises tiles for the blocked GEMM, decode whole
// rows for the dot; both must give the same bits for every token. Quantised weights run both
// ways: the F32 dot of dequantised weights, and the integer dot over 8-bit activations
// (quant_int.h), whose tiles serve decode and prefill alike.
TEST(BatchInvariance, RandomModelInEveryWeightType) {
  for (TensorType type : {TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ4_0,
                          TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1,
                          TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K}) {
    for (QuantDot quant_dot : {QuantDot::kInt8, QuantDot::kF32}) {
      // Types without an integer tile run the same arithmetic either way: once is enough.
      if (quant_dot == QuantDot::kF32 && cpu::GetIntTile(type) == nullptr) continue;
      SCOPED_TRACE(std::string(TensorTypeName(static_cast<uint32_t>(type))) +
                   (quant_dot == QuantDot::kF32 ? " f32 dot" : " int8 dot"));
      auto model = MakeTestModel(TestModelShape::kRows256, type);
      ASSERT_EQ(model->weights().layers[0].ffn_down.type, type);
      CheckBatchInvariance(*model, KvDtype::kF16, quant_dot);
    }
  }
}

// The two quantised-dot paths are different arithmetic: different numerics ids (so KV blocks
// of one are never served to the other), logits that differ but stay close. A model with no
// integer-path weights keeps the F32 path's id.
TEST(BatchInvariance, Int8DotDiffersFromF32DotByLittle) {
  for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_1,
                          TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ4_K,
                          TensorType::kQ5_K, TensorType::kQ6_K}) {
    SCOPED_TRACE(TensorTypeName(static_cast<uint32_t>(type)));
    auto model = MakeTestModel(TestModelShape::kRows256, type);
    std::mt19937 rng(21);
    std::vector<int32_t> tokens(40);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % model->hparams().vocab_size);
    RunConfig f32, i8;
    f32.quant_dot = QuantDot::kF32;
    i8.quant_dot = QuantDot::kInt8;
    const std::vector<float> a = PrefillLogits(*model, tokens, f32);
    const std::vector<float> b = PrefillLogits(*model, tokens, i8);
    ASSERT_EQ(a.size(), b.size());
    double max_diff = 0, max_abs = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(a[i] - b[i])));
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(a[i])));
    }
    std::printf("%s: largest |logit(int8) - logit(f32)| = %g (largest |logit| %g) over %zu logits\n",
                TensorTypeName(static_cast<uint32_t>(type)).c_str(), max_diff, max_abs, a.size());
    EXPECT_GT(max_diff, 0.0) << "the int8 path did not run";
    EXPECT_LT(max_diff, 0.05 * max_abs + 0.05) << "the int8 path strays too far from the f32 one";
  }
  for (TensorType type : {TensorType::kF16, TensorType::kQ8_0}) {
    auto model = MakeTestModel(TestModelShape::kRows256, type);
    for (QuantDot q : {QuantDot::kF32, QuantDot::kInt8}) {
      CpuBackendOptions o;
      o.num_kv_blocks = 4;
      o.num_threads = 1;
      o.quant_dot = q;
      auto backend = CreateCpuBackend(*model, o);
      ASSERT_TRUE(backend.ok());
      const bool int_path = type == TensorType::kQ8_0 && q == QuantDot::kInt8;
      EXPECT_STREQ((*backend)->numerics(), int_path ? "cpu-8-i8" : "cpu-8");
    }
  }
}

// Every architecture's optional pieces (biases, Q/K norms, frequency factors) are per-token
// steps, so invariant 1 holds for each; F32 KV so that nothing rounds the K/V away.
class ArchBatchInvariance : public ::testing::TestWithParam<const char*> {};

TEST_P(ArchBatchInvariance, LogitsIndependentOfBatchChunkThreadsAndBlocks) {
  auto model = MakeTestModel(SmallArchSpec(GetParam()), std::string("arch-") + GetParam());
  CheckBatchInvariance(*model, KvDtype::kF32);
}

INSTANTIATE_TEST_SUITE_P(Architectures, ArchBatchInvariance,
                         ::testing::Values("qwen2", "qwen3", "qwen3moe", "qwen35", "llama3"));

// qwen35's DeltaNet projections in quantised types, on both dot paths: its recurrent state
// and logits never depend on the chunking, the threads or the batch companions.
TEST(BatchInvariance, Qwen35InSeveralWeightTypes) {
  for (TensorType type : {TensorType::kF16, TensorType::kQ8_0, TensorType::kQ4_0}) {
    for (QuantDot quant_dot : {QuantDot::kInt8, QuantDot::kF32}) {
      if (quant_dot == QuantDot::kF32 && cpu::GetIntTile(type) == nullptr) continue;
      const std::string name = TensorTypeName(static_cast<uint32_t>(type));
      SCOPED_TRACE(name + (quant_dot == QuantDot::kF32 ? " f32 dot" : " int8 dot"));
      ModelSpec spec = SmallArchSpec("qwen35");
      spec.type = type;
      auto model = MakeTestModel(spec, "qwen35-" + name);
      ASSERT_EQ(model->weights().layers[0].ssm_qkv.type, type);
      CheckBatchInvariance(*model, KvDtype::kF16, quant_dot);
    }
  }
}

// qwen3moe's experts in other weight types: a token's logits never depend on which experts
// the other tokens of its batch chose (the neighbours route elsewhere), on either dot path.
TEST(BatchInvariance, Qwen3MoeExpertsInSeveralWeightTypes) {
  for (TensorType type : {TensorType::kF16, TensorType::kQ8_0, TensorType::kQ4_0}) {
    for (QuantDot quant_dot : {QuantDot::kInt8, QuantDot::kF32}) {
      if (quant_dot == QuantDot::kF32 && cpu::GetIntTile(type) == nullptr) continue;
      const std::string name = TensorTypeName(static_cast<uint32_t>(type));
      SCOPED_TRACE(name + (quant_dot == QuantDot::kF32 ? " f32 dot" : " int8 dot"));
      ModelSpec spec = SmallArchSpec("qwen3moe");
      spec.type = type;
      auto model = MakeTestModel(spec, "moe-" + name);
      ASSERT_EQ(model->weights().layers[0].ffn_up_exps.type, type);
      CheckBatchInvariance(*model, KvDtype::kF16, quant_dot);
    }
  }
}

const std::vector<int32_t> kGeneratePrompt = {1, 40, 41, 42, 43, 44, 45, 46};

// kGeneratePrompt and 24 greedy tokens after it (empty, with a failure, if the engine fails).
std::vector<int32_t> GenerateGreedy(const Model& model, KvDtype kv) {
  EngineOptions eo;
  eo.context_length = 128;
  eo.kv_dtype = kv;
  auto engine = Engine::Create(model, -1, eo);
  if (!engine.ok()) {
    ADD_FAILURE() << engine.status();
    return {};
  }
  GenerateRequest req;
  req.prompt = kGeneratePrompt;
  req.max_tokens = 24;
  req.ignore_eos = true;
  auto id = (*engine)->Add(req);
  EXPECT_TRUE(id.ok()) << id.status();
  while (id.ok() && (*engine)->HasWork()) {
    if (!(*engine)->Step().ok()) break;
  }
  auto seq = id.ok() ? (*engine)->TakeFinished(*id) : nullptr;
  if (seq == nullptr) {
    ADD_FAILURE() << "the sequence did not finish";
    return {};
  }
  EXPECT_EQ(seq->tokens.size(), req.prompt.size() + 24);
  return seq->tokens;
}

// Random models of each architecture, as make-model writes them, load and generate; the
// architectures' outputs differ from one another for the same prompt and weights seed.
TEST(Engine, EachArchitectureGenerates) {
  std::vector<std::vector<int32_t>> outputs;
  for (const char* arch : {"llama", "qwen2", "qwen3", "qwen3moe", "qwen35", "llama3"}) {
    auto model = MakeTestModel(SmallArchSpec(arch), std::string("arch-") + arch);
    const std::vector<int32_t> tokens = GenerateGreedy(*model, KvDtype::kF16);
    ASSERT_EQ(tokens.size(), kGeneratePrompt.size() + 24) << arch;
    for (int32_t t : tokens) EXPECT_TRUE(t >= 0 && t < 320) << arch;
    outputs.push_back(tokens);
  }
  // llama and llama3 share every weight but RoPE's divisors; the others share nothing.
  for (size_t a = 0; a < outputs.size(); ++a) {
    for (size_t b = a + 1; b < outputs.size(); ++b) EXPECT_NE(outputs[a], outputs[b]) << a << b;
  }
}

// qwen3moe in F32, F16 and Q8_0 generates greedily, and what it generated one token at a time
// is what a prefill of the same tokens predicts (decode and prefill route identically).
TEST(Engine, Qwen3MoeGeneratesGreedilyInF32F16Q8_0) {
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kQ8_0}) {
    const std::string name = TensorTypeName(static_cast<uint32_t>(type));
    ModelSpec spec = SmallArchSpec("qwen3moe");
    spec.type = type;
    auto model = MakeTestModel(spec, "moe-" + name);
    EXPECT_EQ(model->hparams().num_experts, 8);
    EXPECT_EQ(model->hparams().num_experts_used, 2);
    EXPECT_EQ(model->hparams().expert_ff, 64);
    const std::vector<int32_t> generated = GenerateGreedy(*model, KvDtype::kF32);
    ASSERT_EQ(generated.size(), kGeneratePrompt.size() + 24) << name;
    std::vector<int32_t> all = generated;
    all.pop_back();
    RunConfig c;
    c.kv = KvDtype::kF32;
    const std::vector<float> logits = PrefillLogits(*model, all, c);
    const int vocab = model->hparams().vocab_size;
    for (size_t i = kGeneratePrompt.size() - 1; i < all.size(); ++i) {
      const float* row = &logits[i * vocab];
      const int32_t argmax = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
      EXPECT_EQ(argmax, generated[i + 1]) << name << " position " << i;
    }
  }
}

TEST(Engine, RejectsEmptyAndOutOfVocabularyAndOverlongPrompts) {
  auto model = MakeTestModel(TestModelShape::kTiny, TensorType::kF32);
  EngineOptions eo;
  eo.context_length = 32;
  auto engine = Engine::Create(*model, -1, eo);
  ASSERT_TRUE(engine.ok());
  GenerateRequest req;
  EXPECT_EQ((*engine)->Add(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.prompt = {1, 99999};
  EXPECT_EQ((*engine)->Add(req).status().code(), absl::StatusCode::kInvalidArgument);
  req.prompt.assign(32, 1);
  auto st = (*engine)->Add(req);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.status().message()).find("context"), std::string::npos);
}

TEST(Engine, GenerationStopsAtContextAndReleasesEveryBlock) {
  auto model = MakeTestModel(TestModelShape::kTiny, TensorType::kF32);
  EngineOptions eo;
  eo.context_length = 40;
  eo.block_size = 4;
  auto engine = Engine::Create(*model, -1, eo);
  ASSERT_TRUE(engine.ok());
  const int free_before = (*engine)->block_pool().num_free();
  GenerateRequest req;
  req.prompt = {1, 5, 6, 7};
  req.max_tokens = 1000;
  auto id = (*engine)->Add(req);
  ASSERT_TRUE(id.ok());
  while ((*engine)->HasWork()) ASSERT_TRUE((*engine)->Step().ok());
  auto seq = (*engine)->TakeFinished(*id);
  ASSERT_NE(seq, nullptr);
  EXPECT_EQ(seq->finish, FinishReason::kContext);
  EXPECT_EQ(seq->tokens.size(), 40u);
  // The prefix cache keeps what was computed; once cleared, every block is free again.
  EXPECT_GT((*engine)->cache().stats().cached_blocks, 0);
  (*engine)->cache().Clear();
  EXPECT_EQ((*engine)->block_pool().num_free(), free_before);
}

// A pool too small for every sequence at once: sequences are preempted and recomputed, and
// each still produces exactly what it produces alone.
TEST(Engine, PreemptionUnderBlockPressureKeepsResultsExact) {
  auto model = MakeTestModel(TestModelShape::kTiny, TensorType::kF32);
  std::vector<std::vector<int32_t>> alone;
  std::vector<GenerateRequest> reqs;
  for (int k = 0; k < 4; ++k) {
    GenerateRequest r;
    for (int i = 0; i < 20 + 3 * k; ++i) r.prompt.push_back((i * 7 + k * 13) % 300 + 3);
    r.max_tokens = 30;
    r.ignore_eos = true;
    reqs.push_back(r);
  }
  for (const auto& r : reqs) {
    EngineOptions eo;
    eo.block_size = 4;
    eo.context_length = 64;
    auto engine = Engine::Create(*model, -1, eo);
    auto id = (*engine)->Add(r);
    while ((*engine)->HasWork()) ASSERT_TRUE((*engine)->Step().ok());
    alone.push_back((*engine)->TakeFinished(*id)->tokens);
  }
  EngineOptions eo;
  eo.block_size = 4;
  eo.context_length = 64;
  eo.num_kv_blocks = 30;  // 4 sequences need up to 15 blocks each
  eo.max_running = 4;
  auto engine = Engine::Create(*model, -1, eo);
  std::vector<SequenceId> ids;
  for (const auto& r : reqs) ids.push_back(*(*engine)->Add(r));
  while ((*engine)->HasWork()) ASSERT_TRUE((*engine)->Step().ok());
  for (size_t k = 0; k < ids.size(); ++k) {
    auto seq = (*engine)->TakeFinished(ids[k]);
    ASSERT_NE(seq, nullptr);
    EXPECT_EQ(seq->tokens, alone[k]) << "sequence " << k;
  }
  EXPECT_GT((*engine)->num_preemptions(), 0) << "the pool was meant to be too small";
  (*engine)->cache().Clear();
  EXPECT_EQ((*engine)->block_pool().num_free(), 30);
}

// The same on the hybrid: a preempted sequence restarts from position 0 with a zero recurrent
// state (the cache holds no state to resume from), and still produces what it does alone.
TEST(Engine, HybridPreemptionRestartsFromAZeroState) {
  auto model = MakeTestModel(SmallArchSpec("qwen35"), "arch-qwen35");
  std::vector<GenerateRequest> reqs;
  for (int k = 0; k < 4; ++k) {
    GenerateRequest r;
    for (int i = 0; i < 20 + 3 * k; ++i) r.prompt.push_back((i * 7 + k * 13) % 300 + 3);
    r.max_tokens = 30;
    r.ignore_eos = true;
    r.record_logits = true;
    reqs.push_back(r);
  }
  EngineOptions eo;
  eo.block_size = 4;
  eo.context_length = 64;
  std::vector<std::unique_ptr<Sequence>> alone;
  for (const auto& r : reqs) {
    auto engine = Engine::Create(*model, -1, eo);
    auto id = (*engine)->Add(r);
    while ((*engine)->HasWork()) ASSERT_TRUE((*engine)->Step().ok());
    alone.push_back((*engine)->TakeFinished(*id));
  }
  eo.num_kv_blocks = 30;
  eo.max_running = 4;
  auto engine = Engine::Create(*model, -1, eo);
  std::vector<SequenceId> ids;
  for (const auto& r : reqs) ids.push_back(*(*engine)->Add(r));
  while ((*engine)->HasWork()) ASSERT_TRUE((*engine)->Step().ok());
  for (size_t k = 0; k < ids.size(); ++k) {
    auto seq = (*engine)->TakeFinished(ids[k]);
    ASSERT_NE(seq, nullptr);
    EXPECT_EQ(seq->tokens, alone[k]->tokens) << "sequence " << k;
    EXPECT_EQ(seq->logits, alone[k]->logits) << "sequence " << k;
    EXPECT_EQ(seq->cached_tokens, 0);
  }
  EXPECT_GT((*engine)->num_preemptions(), 0) << "the pool was meant to be too small";
}

}  // namespace
}  // namespace prefixd
