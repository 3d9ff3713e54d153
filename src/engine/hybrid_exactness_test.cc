// Exactness on a hybrid model (qwen35: DeltaNet layers with a recurrent state, and gated
// attention layers), ARCHITECTURE.md invariants 1 and 8: a prompt cut at any point (prefill
// chunks, a continuation from a saved state) gives the same logits and the same recurrent
// state, bit for bit, as one cold pass; so do other batch companions and thread counts. And
// with state snapshots turned off (--state-checkpoint-blocks 0) the engine reuses nothing for
// such a model, and says why, rather than resume from a state it does not have. Resuming from
// snapshots: hybrid_prefix_cache_test.cc.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "compute/backend.h"
#include "engine/engine.h"
#include "engine/test_models.h"

namespace prefixd {
namespace {

constexpr int kPromptLen = 49;

std::vector<int32_t> Prompt(uint32_t seed, int len = kPromptLen) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(len);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % 320);
  return tokens;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A qwen35 model with F16 weights (packed GEMM panels) and its CPU backend with F16 K/V.
class HybridExactness : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelSpec spec = SmallArchSpec("qwen35");
    spec.type = TensorType::kF16;
    model_ = MakeTestModel(spec, "hybrid-exactness-f16");
  }

  std::unique_ptr<Backend> MakeBackend(int threads) {
    CpuBackendOptions o;
    o.num_threads = threads;
    o.num_kv_blocks = 8;
    o.block_size = 16;
    auto b = CreateCpuBackend(*model_, o);
    EXPECT_TRUE(b.ok()) << b.status();
    return std::move(*b);
  }

  // Runs `tokens` from position 0 and a zero state in chunks that end at each of `cuts` (then
  // at the end), collecting every position's logits; the final state goes to `*state`.
  std::vector<float> RunChunks(Backend& backend, const std::vector<int32_t>& tokens,
                               const std::vector<int>& cuts, std::vector<float>* state) {
    state->assign(backend.recurrent_state_floats(), 0.0f);
    const std::vector<BlockId> blocks = {BlockId(0), BlockId(1), BlockId(2), BlockId(3)};
    std::vector<float> logits;
    int start = 0;
    std::vector<int> ends = cuts;
    ends.push_back(static_cast<int>(tokens.size()));
    for (int end : ends) {
      if (end <= start) continue;
      ForwardSequence fs;
      fs.tokens = std::span<const int32_t>(tokens).subspan(start, end - start);
      fs.start_pos = start;
      fs.blocks = blocks;
      fs.all_logits = true;
      fs.recurrent_state = *state;
      ForwardBatch batch;
      batch.sequences.push_back(fs);
      ForwardOutput out;
      EXPECT_TRUE(backend.Forward(batch, &out).ok());
      logits.insert(logits.end(), out.logits.begin(), out.logits.end());
      start = end;
    }
    return logits;
  }

  std::unique_ptr<Model> model_;
};

TEST_F(HybridExactness, ModelHasStateAndFewerKvLayers) {
  const Hparams& hp = model_->hparams();
  ASSERT_TRUE(hp.hybrid());
  EXPECT_EQ(hp.num_attention_layers(), 1);
  auto backend = MakeBackend(1);
  EXPECT_EQ(backend->recurrent_state_floats(), 3 * hp.delta_net.state_floats());
  EXPECT_EQ(backend->kv_layout().num_layers, 1);
}

// Every split point 0..48 of a 49-token prompt, the first part in chunks of 5 and the rest in
// chunks of 16 from the split: the logits of all 49 positions and the final state equal the
// cold single pass bit for bit.
TEST_F(HybridExactness, PromptSplitAtEveryPointGivesColdBits) {
  auto backend = MakeBackend(2);
  const std::vector<int32_t> tokens = Prompt(11);
  std::vector<float> cold_state;
  const std::vector<float> cold = RunChunks(*backend, tokens, {}, &cold_state);
  ASSERT_EQ(cold.size(), static_cast<size_t>(kPromptLen) * model_->hparams().vocab_size);
  bool state_moved = false;
  for (float v : cold_state) state_moved = state_moved || v != 0.0f;
  ASSERT_TRUE(state_moved) << "the recurrent state never changed: the test would prove nothing";
  for (int split = 0; split < kPromptLen; ++split) {
    std::vector<int> cuts;
    for (int c = 5; c < split; c += 5) cuts.push_back(c);
    cuts.push_back(split);
    for (int c = split + 16; c < kPromptLen; c += 16) cuts.push_back(c);
    std::vector<float> state;
    const std::vector<float> got = RunChunks(*backend, tokens, cuts, &state);
    EXPECT_TRUE(SameBits(got, cold)) << "logits differ with the prompt split at " << split;
    EXPECT_TRUE(SameBits(state, cold_state)) << "state differs with the prompt split at " << split;
  }
}

// One token at a time (decode-like), with one thread, against the cold pass with two.
TEST_F(HybridExactness, TokenByTokenWithOneThreadGivesColdBits) {
  auto two = MakeBackend(2);
  auto one = MakeBackend(1);
  const std::vector<int32_t> tokens = Prompt(12, 33);
  std::vector<float> cold_state, state;
  const std::vector<float> cold = RunChunks(*two, tokens, {}, &cold_state);
  std::vector<int> every;
  for (int c = 1; c < 33; ++c) every.push_back(c);
  EXPECT_TRUE(SameBits(RunChunks(*one, tokens, every, &state), cold));
  EXPECT_TRUE(SameBits(state, cold_state));
}

struct EngineRun {
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  int64_t cached_tokens = -1;
};

std::vector<EngineRun> RunEngine(const Model& model, const EngineOptions& eo,
                           const std::vector<std::vector<int32_t>>& prompts, std::string* refusal) {
  auto engine = Engine::Create(model, -1, eo);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (refusal) *refusal = (*engine)->prefix_cache_refusal();
  std::vector<EngineRun> runs;
  for (const auto& p : prompts) {  // one after the other, so a cache could serve the later ones
    GenerateRequest r;
    r.prompt = p;
    r.max_tokens = 6;
    r.ignore_eos = true;
    r.record_logits = true;
    auto id = (*engine)->Add(r);
    EXPECT_TRUE(id.ok()) << id.status();
    while ((*engine)->HasWork()) EXPECT_TRUE((*engine)->Step().ok());
    auto seq = (*engine)->TakeFinished(*id);
    EXPECT_NE(seq, nullptr);
    runs.push_back({seq->tokens, seq->logits, seq->cached_tokens});
  }
  EXPECT_EQ((*engine)->cache().stats().hits, 0);
  return runs;
}

// The engine with its prefix cache asked for but no state snapshots: the same prompt twice,
// then a prompt that extends it. Nothing is reused, the refusal is stated, and the outputs
// equal those of an engine with the cache off.
TEST_F(HybridExactness, EngineReusesNothingAndSaysWhy) {
  const std::vector<int32_t> a = Prompt(13, 40);
  std::vector<int32_t> longer = a;
  for (int32_t t : Prompt(14, 9)) longer.push_back(t);
  EngineOptions eo;
  eo.context_length = 256;
  eo.max_chunk_tokens = 7;
  eo.num_threads = 2;
  eo.state_checkpoint_blocks = 0;
  std::string refusal;
  const auto with_cache = RunEngine(*model_, eo, {a, a, longer}, &refusal);
  EXPECT_NE(refusal.find("recurrent"), std::string::npos) << refusal;
  eo.prefix_cache = false;
  eo.max_chunk_tokens = 512;
  eo.num_threads = 1;
  std::string none;
  const auto cold = RunEngine(*model_, eo, {a, a, longer}, &none);
  EXPECT_TRUE(none.empty()) << "the cache was off anyway: nothing to refuse";
  for (size_t i = 0; i < cold.size(); ++i) {
    EXPECT_EQ(with_cache[i].cached_tokens, 0) << i;
    EXPECT_EQ(with_cache[i].tokens, cold[i].tokens) << i;
    EXPECT_TRUE(SameBits(with_cache[i].logits, cold[i].logits)) << i;
  }
}

// Sequences batched together (chunks of 8 over 3 prompts at once) against each alone.
TEST_F(HybridExactness, BatchCompanionsDoNotChangeBits) {
  const std::vector<std::vector<int32_t>> prompts = {Prompt(21, 30), Prompt(22, 17),
                                                     Prompt(23, 41)};
  EngineOptions eo;
  eo.context_length = 256;
  eo.prefix_cache = false;
  eo.max_chunk_tokens = 8;
  eo.num_threads = 2;
  auto engine = Engine::Create(*model_, -1, eo);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<SequenceId> ids;
  for (const auto& p : prompts) {
    GenerateRequest r;
    r.prompt = p;
    r.max_tokens = 6;
    r.ignore_eos = true;
    r.record_logits = true;
    ids.push_back(*(*engine)->Add(r));
  }
  while ((*engine)->HasWork()) ASSERT_TRUE((*engine)->Step().ok());
  eo.max_chunk_tokens = 512;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto seq = (*engine)->TakeFinished(ids[i]);
    ASSERT_NE(seq, nullptr);
    const EngineRun alone = RunEngine(*model_, eo, {prompts[i]}, nullptr)[0];
    EXPECT_EQ(seq->tokens, alone.tokens) << i;
    EXPECT_TRUE(SameBits(seq->logits, alone.logits)) << i;
  }
}

}  // namespace
}  // namespace prefixd
