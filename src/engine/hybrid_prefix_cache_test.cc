// Exact prefix caching on a hybrid model (qwen35), ARCHITECTURE.md invariants 1 and 8: the
// cache keeps recurrent-state snapshots at checkpoint block boundaries and at each prompt's
// end (before its last token), a request resumes at the deepest one its match reaches, and
// `cached_tokens` says exactly where; the logits of a resumed request equal a cold run's bit
// for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "engine/engine.h"
#include "engine/test_models.h"

namespace prefixd {
namespace {

std::vector<int32_t> Prompt(uint32_t seed, int len) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(len);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % 320);
  return tokens;
}

// A resumed request records logits from its first computed position on: `got` must be the
// last rows of the cold run's `cold`, bit for bit.
bool SameBits(const std::vector<float>& got, const std::vector<float>& cold) {
  return !got.empty() && got.size() <= cold.size() &&
         std::memcmp(got.data(), cold.data() + (cold.size() - got.size()),
                     got.size() * sizeof(float)) == 0;
}

struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  int64_t cached_tokens = -1;
};

GenerateRequest Request(const std::vector<int32_t>& prompt, int max_tokens = 4) {
  GenerateRequest r;
  r.prompt = prompt;
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  r.record_logits = true;
  return r;
}

// Runs `prompts` one after the other (each can reuse what the earlier ones left).
std::vector<Outcome> RunInOrder(Engine& engine, const std::vector<std::vector<int32_t>>& prompts) {
  std::vector<Outcome> runs;
  for (const auto& p : prompts) {
    auto id = engine.Add(Request(p));
    EXPECT_TRUE(id.ok()) << id.status();
    while (engine.HasWork()) EXPECT_TRUE(engine.Step().ok());
    auto seq = engine.TakeFinished(*id);
    EXPECT_NE(seq, nullptr);
    runs.push_back({seq->tokens, seq->logits, seq->cached_tokens});
  }
  return runs;
}

class HybridPrefixCache : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelSpec spec = SmallArchSpec("qwen35");
    spec.type = TensorType::kF16;
    model_ = MakeTestModel(spec, "hybrid-prefix-cache-f16");
    ASSERT_TRUE(model_->hparams().hybrid());
  }

  EngineOptions Options(int checkpoint_blocks) const {
    EngineOptions eo;
    eo.block_size = 16;
    eo.context_length = 512;
    eo.num_threads = 2;
    eo.max_chunk_tokens = 512;
    eo.state_checkpoint_blocks = checkpoint_blocks;
    return eo;
  }

  std::unique_ptr<Engine> MakeEngine(const EngineOptions& eo) const {
    auto engine = Engine::Create(*model_, -1, eo);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return std::move(*engine);
  }

  // `prompt` alone, on an engine with the cache off and one thread: the reference.
  Outcome Cold(const std::vector<int32_t>& prompt) const {
    EngineOptions eo = Options(1);
    eo.prefix_cache = false;
    eo.num_threads = 1;
    return RunInOrder(*MakeEngine(eo), {prompt})[0];
  }

  std::unique_ptr<Model> model_;
};

// Every split point 0..48 of a 49-token prompt: a first request shares exactly `split` tokens
// with it (then diverges), so its prompt's end-state snapshot sits at `split`; the second
// resumes there (cached_tokens == split, block boundary or not) with the cold run's logits.
TEST_F(HybridPrefixCache, EverySplitPointResumesThereWithColdBits) {
  const std::vector<int32_t> prompt = Prompt(31, 49);
  const Outcome cold = Cold(prompt);
  for (int split = 0; split < 49; ++split) {
    std::vector<int32_t> first(prompt.begin(), prompt.begin() + split);
    first.push_back((prompt[split] + 1) % 320);  // diverges right after the split
    auto engine = MakeEngine(Options(1));
    const std::vector<Outcome> runs = RunInOrder(*engine, {first, prompt});
    EXPECT_EQ(runs[1].cached_tokens, split) << "split " << split;
    EXPECT_EQ(runs[1].logits.size(), cold.logits.size() / (49 + 3) * (49 + 3 - split));
    EXPECT_EQ(runs[1].tokens, cold.tokens) << "split " << split;
    EXPECT_TRUE(SameBits(runs[1].logits, cold.logits)) << "logits differ at split " << split;
    EXPECT_EQ(engine->cache().stats().hits, split > 0 ? 1 : 0) << "split " << split;
  }
}

// Checkpoints every 4 blocks of 16: a match that ends before the cached prompt's end resumes
// at the largest multiple of 64 at or below it, and the outputs are still the cold ones.
TEST_F(HybridPrefixCache, CheckpointsEveryFourBlocksResumeAtMultiplesOf64) {
  const std::vector<int32_t> cached = Prompt(41, 220);
  for (int match : {10, 63, 64, 65, 127, 128, 150, 200}) {
    std::vector<int32_t> prompt(cached.begin(), cached.begin() + match);
    for (int32_t t : Prompt(100 + match, 12)) prompt.push_back(t);
    prompt[match] = (cached[match] + 1) % 320;  // the match ends exactly at `match`
    auto engine = MakeEngine(Options(4));
    const std::vector<Outcome> runs = RunInOrder(*engine, {cached, prompt});
    EXPECT_EQ(runs[1].cached_tokens, match / 64 * 64) << "match " << match;
    const Outcome cold = Cold(prompt);
    EXPECT_EQ(runs[1].tokens, cold.tokens) << "match " << match;
    EXPECT_TRUE(SameBits(runs[1].logits, cold.logits)) << "logits differ, match " << match;
    // Snapshots every 4 blocks and one at the prompt's end: 220 tokens + 3 decoded.
    EXPECT_GE(engine->state_snapshots()->count(), 3);
  }
}

// The same prompt again resumes at its end (before the last token, which is always computed).
TEST_F(HybridPrefixCache, RepeatedPromptResumesAtItsEnd) {
  const std::vector<int32_t> prompt = Prompt(51, 45);
  auto engine = MakeEngine(Options(1));
  const std::vector<Outcome> runs = RunInOrder(*engine, {prompt, prompt});
  EXPECT_EQ(runs[0].cached_tokens, 0);
  EXPECT_EQ(runs[1].cached_tokens, 44);
  const Outcome cold = Cold(prompt);
  EXPECT_TRUE(SameBits(runs[0].logits, cold.logits));
  EXPECT_TRUE(SameBits(runs[1].logits, cold.logits));
}

// 16 requests sharing a 70-token prefix, added together: they wait for the first one's
// prefill, then share its blocks and snapshots; each gets the cold run's tokens and logits.
TEST_F(HybridPrefixCache, SixteenConcurrentSharersGetColdBits) {
  const std::vector<int32_t> prefix = Prompt(61, 70);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 16; ++i) {
    prompts.push_back(prefix);
    for (int32_t t : Prompt(200 + i, 5)) prompts.back().push_back(t);
  }
  EngineOptions eo = Options(1);
  eo.max_chunk_tokens = 24;
  auto engine = MakeEngine(eo);
  std::vector<SequenceId> ids;
  for (const auto& p : prompts) ids.push_back(*engine->Add(Request(p)));
  while (engine->HasWork()) ASSERT_TRUE(engine->Step().ok());
  int sharers = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto seq = engine->TakeFinished(ids[i]);
    ASSERT_NE(seq, nullptr);
    const Outcome cold = Cold(prompts[i]);
    EXPECT_EQ(seq->tokens, cold.tokens) << i;
    EXPECT_TRUE(SameBits(seq->logits, cold.logits)) << "logits differ for sharer " << i;
    if (seq->cached_tokens == 64) ++sharers;  // the deepest checkpoint inside the prefix
  }
  EXPECT_EQ(sharers, 15) << "all but the first should resume from the shared prefix";
}

// Snapshots do not cut prefill into blocks: the backend copies the states of the points inside
// a chunk out during the forward pass, so a 100-token prompt takes as many steps with the cache
// on (snapshots at 16, 32, 48, 64, 80, 96 and 99) as with it off, and a second engine resumes
// from each of those mid-chunk snapshots with the cold run's bits.
TEST_F(HybridPrefixCache, SnapshotsAreTakenInsideChunksWithoutCuttingThem) {
  const std::vector<int32_t> prompt = Prompt(81, 100);
  const auto steps = [&](bool cache) {
    EngineOptions eo = Options(1);
    eo.prefix_cache = cache;
    auto engine = MakeEngine(eo);
    auto id = engine->Add(Request(prompt, 2));
    EXPECT_TRUE(id.ok());
    int n = 0;
    for (; engine->HasWork(); ++n) EXPECT_TRUE(engine->Step().ok());
    if (cache) {
      EXPECT_GE(engine->state_snapshots()->count(), 7);
    }
    return n;
  };
  EXPECT_EQ(steps(true), steps(false));
  for (int split : {16, 48, 96, 99}) {
    std::vector<int32_t> other(prompt.begin(), prompt.begin() + split);
    for (int32_t t : Prompt(300 + split, 8)) other.push_back(t);
    other[split] = (prompt[split] + 1) % 320;
    auto engine = MakeEngine(Options(1));
    const std::vector<Outcome> runs = RunInOrder(*engine, {prompt, other});
    EXPECT_EQ(runs[1].cached_tokens, split) << split;
    EXPECT_TRUE(SameBits(runs[1].logits, Cold(other).logits)) << "logits differ, split " << split;
  }
}

// A chat or agent turn sends the model's reply back: the finished request left a snapshot where
// its computed tokens end (its prompt and all generated tokens but the last, which was sampled,
// never computed), so the next prompt resumes there, past the prompt's end, with cold bits.
TEST_F(HybridPrefixCache, ReplySentBackResumesAfterIt) {
  const std::vector<int32_t> first = Prompt(91, 45);
  auto engine = MakeEngine(Options(4));  // no checkpoint inside: only ends are snapshotted
  const Outcome turn1 = RunInOrder(*engine, {first})[0];
  ASSERT_EQ(turn1.tokens.size(), 45u + 4u);
  std::vector<int32_t> next = turn1.tokens;  // prompt + reply
  for (int32_t t : Prompt(92, 10)) next.push_back(t);
  const Outcome turn2 = RunInOrder(*engine, {next})[0];
  EXPECT_EQ(turn2.cached_tokens, 45 + 3) << "resumed at the prompt's end (44), not the reply's";
  const Outcome cold = Cold(next);
  EXPECT_EQ(turn2.tokens, cold.tokens);
  EXPECT_TRUE(SameBits(turn2.logits, cold.logits)) << "logits differ after the reply";
}

// The next turn carries another reply than the one generated (an edited or re-rendered one):
// it matches up to the prompt's end, which decoding into the prompt's last block did not lose
// (that write copied the shared block, and the copy took the block's snapshots with it).
TEST_F(HybridPrefixCache, AnotherReplyResumesAtThePromptsEnd) {
  const std::vector<int32_t> first = Prompt(94, 45);
  auto engine = MakeEngine(Options(4));
  RunInOrder(*engine, {first});
  std::vector<int32_t> next = first;
  for (int32_t t : Prompt(95, 12)) next.push_back(t);
  const Outcome turn2 = RunInOrder(*engine, {next})[0];
  EXPECT_EQ(turn2.cached_tokens, 44);
  EXPECT_TRUE(SameBits(turn2.logits, Cold(next).logits)) << "logits differ after the prompt";
}

// Snapshots count against --cache-bytes: besides the checkpoints' share, every request leaves
// one at its prompt's end and one where it stopped. Many short requests would pile those up
// past the budget; the cache drops the least recently used snapshots instead, and the newest
// prompt still resumes at its end.
TEST_F(HybridPrefixCache, SnapshotsStayWithinTheBudget) {
  EngineOptions eo = Options(4);
  auto probe = MakeEngine(eo);
  const int64_t state = probe->state_snapshots()->state_bytes();
  const int64_t block = probe->backend().kv_layout().BlockBytes();
  eo.cache_bytes = 40 * block + 3 * state;
  auto engine = MakeEngine(eo);
  std::vector<int32_t> last;
  for (uint32_t i = 0; i < 12; ++i) {
    last = Prompt(500 + i, 45);
    RunInOrder(*engine, {last});
    const int64_t kv = engine->cache().stats().cached_blocks * block;
    EXPECT_LE(kv + engine->state_snapshots()->bytes(), eo.cache_bytes) << "after request " << i;
  }
  EXPECT_LT(engine->state_snapshots()->count(), 24) << "12 requests leave 24 ends: some must go";
  const Outcome again = RunInOrder(*engine, {last})[0];
  EXPECT_EQ(again.cached_tokens, 44);
  EXPECT_TRUE(SameBits(again.logits, Cold(last).logits));
}

// The default, auto: a checkpoint every ceil(snapshot bytes / KV block bytes) blocks, so the
// snapshots cost about what the KV beside them does.
TEST_F(HybridPrefixCache, AutoCheckpointsSpanAsManyBlocksAsASnapshotsBytes) {
  EngineOptions eo = Options(EngineOptions::kStateCheckpointAuto);
  EXPECT_EQ(EngineOptions{}.state_checkpoint_blocks, EngineOptions::kStateCheckpointAuto);
  auto engine = MakeEngine(eo);
  ASSERT_NE(engine->state_snapshots(), nullptr);
  const int64_t state = engine->state_snapshots()->state_bytes();
  const int64_t block = engine->backend().kv_layout().BlockBytes();
  const int64_t k = engine->options().state_checkpoint_blocks;
  EXPECT_EQ(k, std::max<int64_t>(1, (state + block - 1) / block)) << state << " / " << block;
  // Resuming still works at the resolved interval: a repeated prompt resumes at its end.
  const std::vector<int32_t> prompt = Prompt(93, 40);
  const std::vector<Outcome> runs = RunInOrder(*engine, {prompt, prompt});
  EXPECT_EQ(runs[1].cached_tokens, 39);
  EXPECT_TRUE(SameBits(runs[1].logits, Cold(prompt).logits));
}

// --state-checkpoint-blocks 0: no snapshots, so nothing is reused, and the engine says why.
TEST_F(HybridPrefixCache, NoCheckpointsMeansNoReuseAndAReason) {
  const std::vector<int32_t> prompt = Prompt(71, 40);
  auto engine = MakeEngine(Options(0));
  EXPECT_NE(engine->prefix_cache_refusal().find("--state-checkpoint-blocks"), std::string::npos)
      << engine->prefix_cache_refusal();
  EXPECT_EQ(engine->state_snapshots(), nullptr);
  const std::vector<Outcome> runs = RunInOrder(*engine, {prompt, prompt});
  EXPECT_EQ(runs[1].cached_tokens, 0);
  EXPECT_TRUE(SameBits(runs[1].logits, Cold(prompt).logits));
}

}  // namespace
}  // namespace prefixd
