// Exactness of the prefix cache (ARCHITECTURE.md invariant 1): with greedy sampling, tokens and
// logits are bit-identical whether a prefix came from the cache or was computed, at every
// split point, across turns, with concurrent sharers and after eviction.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <set>

#include "engine/engine.h"
#include "engine/test_models.h"

namespace prefixd {
namespace {

struct Output {
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // rows from position logits_start
  int64_t logits_start = 0;
  int64_t cached_tokens = 0;
};

GenerateRequest Greedy(std::vector<int32_t> prompt, int max_tokens = 8) {
  GenerateRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.record_logits = true;
  return r;
}

std::unique_ptr<Engine> MakeEngine(const Model& model, bool cache, int64_t cache_bytes = 64 << 20,
                                   int max_running = 16) {
  EngineOptions eo;
  eo.prefix_cache = cache;
  eo.cache_bytes = cache_bytes;
  eo.max_running = max_running;
  eo.context_length = 2048;
  eo.num_threads = 2;
  auto e = Engine::Create(model, -1, eo);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

// Runs requests concurrently (all queued, then stepped to completion).
std::vector<Output> RunAll(Engine& engine, const std::vector<GenerateRequest>& reqs) {
  std::vector<SequenceId> ids;
  for (const auto& r : reqs) {
    auto id = engine.Add(r);
    EXPECT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  while (engine.HasWork()) {
    auto st = engine.Step();
    EXPECT_TRUE(st.ok()) << st.status();
  }
  std::vector<Output> out;
  for (SequenceId id : ids) {
    auto seq = engine.TakeFinished(id);
    EXPECT_NE(seq, nullptr);
    out.push_back({seq->tokens, seq->logits, seq->logits_start, seq->cached_tokens});
  }
  return out;
}

Output RunOne(Engine& engine, const GenerateRequest& req) { return RunAll(engine, {req})[0]; }

// `cached` must equal `cold` in tokens and, for every position both computed, logits bits.
void ExpectSame(const Output& cached, const Output& cold, int vocab, const std::string& what) {
  ASSERT_EQ(cached.tokens, cold.tokens) << what;
  ASSERT_EQ(cold.logits_start, 0) << what;
  const size_t offset = static_cast<size_t>(cached.logits_start) * vocab;
  ASSERT_EQ(cached.logits.size() + offset, cold.logits.size()) << what;
  ASSERT_EQ(std::memcmp(cached.logits.data(), cold.logits.data() + offset,
                        cached.logits.size() * sizeof(float)),
            0)
      << what << ": logits differ";
}

std::vector<int32_t> RandomTokens(std::mt19937& rng, int n, int lo, int hi) {
  std::vector<int32_t> t(n);
  for (auto& x : t) x = lo + static_cast<int32_t>(rng() % (hi - lo));
  return t;
}

class PrefixCacheExactness : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "stories260K") {
      model_ = LoadSharedModel("stories260K.gguf");
      if (!model_) GTEST_SKIP() << "../shared/models/stories260K.gguf is absent";
    } else if (GetParam() == "random_gqa_f16") {
      model_ = MakeTestModel(TestModelShape::kGqa256, TensorType::kF16);
    } else if (GetParam().starts_with("qwen3moe")) {
      // A mixture of experts: the prompts' tokens route to different experts.
      ModelSpec spec = SmallArchSpec("qwen3moe");
      spec.type = GetParam() == "qwen3moe_q8_0" ? TensorType::kQ8_0 : TensorType::kF32;
      model_ = MakeTestModel(spec, GetParam());
    } else {
      // Quantised weights on the integer dot-product path (EngineOptions' default
      // QuantDot::kInt8): the cache must stay exact there too (issue 15).
      const TensorType type = GetParam() == "rows256_q8_0"   ? TensorType::kQ8_0
                              : GetParam() == "rows256_q4_k" ? TensorType::kQ4_K
                                                             : TensorType::kQ6_K;
      model_ = MakeTestModel(TestModelShape::kRows256, type);
    }
    vocab_ = model_->hparams().vocab_size;
  }
  Output Cold(const GenerateRequest& r) {
    auto engine = MakeEngine(*model_, /*cache=*/false);
    return RunOne(*engine, r);
  }
  std::unique_ptr<Model> model_;
  int vocab_ = 0;
};

TEST_P(PrefixCacheExactness, SamePromptFourTimes) {
  std::mt19937 rng(1);
  auto req = Greedy(RandomTokens(rng, 100, 3, vocab_));
  const Output cold = Cold(req);
  auto engine = MakeEngine(*model_, true);
  for (int i = 0; i < 4; ++i) {
    const Output o = RunOne(*engine, req);
    ExpectSame(o, cold, vocab_, "repeat " + std::to_string(i));
    // The prompt (less its last token, always computed) comes from cache after the first.
    EXPECT_EQ(o.cached_tokens, i == 0 ? 0 : 99);
  }
  EXPECT_GE(engine->cache().stats().hits, 3);
}

TEST_P(PrefixCacheExactness, SharedPrefixThenDifferentSuffixAtEverySplit) {
  std::mt19937 rng(2);
  const int bs = 16;
  // Prefix tokens from [3, vocab/2), suffix tokens from [vocab/2, vocab): a suffix never
  // continues the prefix, so the cache hit is exactly the split offset.
  const auto prefix = RandomTokens(rng, 3 * bs, 3, vocab_ / 2);
  auto engine = MakeEngine(*model_, true);
  for (int split = 0; split <= 3 * bs; ++split) {
    std::vector<int32_t> a(prefix.begin(), prefix.begin() + split);
    std::vector<int32_t> b = a;
    const auto sa = RandomTokens(rng, 5, vocab_ / 2, vocab_);
    auto sb = RandomTokens(rng, 6, vocab_ / 2, vocab_);
    if (sb[0] == sa[0]) sb[0] = sa[0] + 1 < vocab_ ? sa[0] + 1 : vocab_ / 2;
    a.insert(a.end(), sa.begin(), sa.end());
    b.insert(b.end(), sb.begin(), sb.end());
    RunOne(*engine, Greedy(a, 4));
    const Output hit = RunOne(*engine, Greedy(b, 4));
    EXPECT_EQ(hit.cached_tokens, split) << "split " << split;
    ExpectSame(hit, Cold(Greedy(b, 4)), vocab_, "split " + std::to_string(split));
  }
}

TEST_P(PrefixCacheExactness, MultiTurnChatExtendsPromptWithOutput) {
  std::mt19937 rng(3);
  auto engine = MakeEngine(*model_, true);
  std::vector<int32_t> conversation = RandomTokens(rng, 40, 3, vocab_);
  for (int turn = 0; turn < 5; ++turn) {
    const auto req = Greedy(conversation, 12);
    const Output o = RunOne(*engine, req);
    ExpectSame(o, Cold(req), vocab_, "turn " + std::to_string(turn));
    if (turn > 0) {
      EXPECT_GT(o.cached_tokens, 0) << "turn " << turn;
    }
    conversation = o.tokens;  // prompt + reply
    const auto user = RandomTokens(rng, 7 + turn, 3, vocab_);
    conversation.insert(conversation.end(), user.begin(), user.end());
  }
}

TEST_P(PrefixCacheExactness, SixteenConcurrentSequencesSharingAPrefix) {
  std::mt19937 rng(4);
  const auto prefix = RandomTokens(rng, 70, 3, vocab_);
  std::vector<GenerateRequest> reqs;
  for (int i = 0; i < 16; ++i) {
    auto p = prefix;
    const auto s = RandomTokens(rng, 1 + i % 5, 3, vocab_);
    p.insert(p.end(), s.begin(), s.end());
    reqs.push_back(Greedy(p, 10));
  }
  auto engine = MakeEngine(*model_, true);
  const auto outs = RunAll(*engine, reqs);
  int sharers = 0;
  for (int i = 0; i < 16; ++i) {
    ExpectSame(outs[i], Cold(reqs[i]), vocab_, "sequence " + std::to_string(i));
    sharers += outs[i].cached_tokens >= 64 ? 1 : 0;
  }
  EXPECT_GE(sharers, 15) << "all but the first should reuse the shared prefix";
}

TEST_P(PrefixCacheExactness, EvictionForcesRecomputationPartWay) {
  std::mt19937 rng(5);
  const int bs = 16;
  const auto common = RandomTokens(rng, 5 * bs, 3, vocab_);
  auto a = common;
  const auto qa = RandomTokens(rng, 20 * bs, 3, vocab_);
  a.insert(a.end(), qa.begin(), qa.end());
  // A budget that holds about one long prompt: B's insertion evicts A's tail, not the
  // common head (which B's path keeps recent).
  const int64_t block_bytes = KvLayout{model_->hparams().num_layers, model_->hparams().kv_dim(),
                                       bs, KvDtype::kF16}.BlockBytes();
  auto engine = MakeEngine(*model_, true, 30 * block_bytes);
  RunOne(*engine, Greedy(a, 4));
  for (int k = 0; k < 3; ++k) {
    auto b = common;
    const auto qb = RandomTokens(rng, 20 * bs, 3, vocab_);
    b.insert(b.end(), qb.begin(), qb.end());
    RunOne(*engine, Greedy(b, 4));
  }
  EXPECT_GT(engine->cache().stats().evicted_blocks, 0);
  const Output again = RunOne(*engine, Greedy(a, 4));
  EXPECT_GE(again.cached_tokens, 5 * bs) << "the common head should survive";
  EXPECT_LT(again.cached_tokens, static_cast<int64_t>(a.size()) - 1) << "A's tail was evicted";
  ExpectSame(again, Cold(Greedy(a, 4)), vocab_, "after eviction");
  EXPECT_LE(engine->cache().stats().cached_blocks, 30);
}

INSTANTIATE_TEST_SUITE_P(Models, PrefixCacheExactness,
                         ::testing::Values("stories260K", "random_gqa_f16", "rows256_q8_0",
                                           "rows256_q4_k", "rows256_q6_k", "qwen3moe_f32",
                                           "qwen3moe_q8_0"));

// 32 running sequences with a common 1,000-token prefix hold its full blocks once, plus at
// most one copied block each at the boundary, not 32 copies of the prefix.
TEST(PrefixCacheSharing, ThirtyTwoSequencesHoldTheCommonPrefixOnce) {
  auto model = MakeTestModel(TestModelShape::kTiny, TensorType::kF32);
  const int bs = 16, prefix_len = 1000;
  std::mt19937 rng(6);
  const auto prefix = RandomTokens(rng, prefix_len, 3, 320);
  EngineOptions eo;
  eo.max_running = 32;
  eo.context_length = 1100;
  eo.block_size = bs;
  auto engine = std::move(*Engine::Create(*model, -1, eo));
  std::vector<SequenceId> ids;
  for (int i = 0; i < 32; ++i) {
    GenerateRequest r;
    r.prompt = prefix;
    const auto s = RandomTokens(rng, 5, 3, 320);
    r.prompt.insert(r.prompt.end(), s.begin(), s.end());
    r.max_tokens = 50;
    r.ignore_eos = true;
    ids.push_back(*engine->Add(r));
  }
  // Step until all 32 are decoding.
  for (int step = 0; step < 200; ++step) {
    ASSERT_TRUE(engine->Step().ok());
    int decoding = 0;
    for (SequenceId id : ids) {
      const Sequence* s = engine->Find(id);
      decoding += (s != nullptr && !s->prefilling_prompt() && engine->num_waiting() == 0) ? 1 : 0;
    }
    if (decoding == 32) break;
  }
  ASSERT_EQ(engine->num_running(), 32);
  const int full = prefix_len / bs;
  std::set<int32_t> prefix_blocks, boundary_blocks;
  for (SequenceId id : ids) {
    const auto& blocks = engine->Find(id)->table.blocks();
    for (int i = 0; i < full; ++i) prefix_blocks.insert(blocks[i].value());
    boundary_blocks.insert(blocks[full].value());
  }
  EXPECT_EQ(static_cast<int>(prefix_blocks.size()), full);
  EXPECT_LE(static_cast<int>(boundary_blocks.size()), 32);
  while (engine->HasWork()) ASSERT_TRUE(engine->Step().ok());
}

}  // namespace
}  // namespace prefixd
