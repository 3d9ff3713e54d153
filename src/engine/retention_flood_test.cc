// The flood test of issue 19 (after SGLang's issue 18941), in one process on the tiny model:
// an agent conversation keeps its prefix retained for an hour; unrelated requests then cycle
// more than the pool's and host RAM's budgets several times; the agent's next turn gets its
// whole retained prefix back (from whichever tier holds it) while a control conversation
// without retention misses. A flood made only of retained requests admits every request
// (retention ranks, never blocks), and once the hour has passed on a test clock the blocks
// are evictable again (ARCHITECTURE.md invariant 9).
#include <gtest/gtest.h>

#include <random>

#include "base/clock.h"
#include "engine/engine.h"
#include "engine/test_models.h"

namespace prefixd {
namespace {

constexpr int kBs = 16;
constexpr int64_t kHourMs = int64_t{3600} * 1000;
constexpr int kPrefixTokens = 96;  // the agent's system prompt and tools: 6 blocks
constexpr int kCacheBlocks = 40;   // the pool's cache budget
constexpr int kHostBlocks = 40;    // host RAM's budget, in blocks

struct Turn {
  int64_t cached = 0;
  TierHit tier;
  int32_t generated = 0;
};

class RetentionFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = MakeTestModel(TestModelShape::kTiny, TensorType::kF32);
    vocab_ = model_->hparams().vocab_size;
    block_bytes_ = KvLayout{model_->hparams().num_layers, model_->hparams().kv_dim(), kBs,
                            KvDtype::kF16}
                       .BlockBytes();
  }

  std::unique_ptr<Engine> Make(double retention_max_share = 0.5) {
    EngineOptions eo;
    eo.retention_max_share = retention_max_share;
    eo.block_size = kBs;
    eo.context_length = 1024;
    eo.max_running = 4;
    eo.cache_bytes = kCacheBlocks * block_bytes_;
    // A host record is a block's KV plus a small header: budget 40 of them.
    eo.tiers.host_bytes = kHostBlocks * (block_bytes_ + 4 * kBs + 256);
    eo.tiers.partial_max_entries = 0;
    eo.clock = &clock_;
    auto e = Engine::Create(*model_, -1, eo);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }

  std::vector<int32_t> Random(int n) {
    std::vector<int32_t> t(n);
    for (int32_t& x : t) x = 3 + static_cast<int32_t>(rng_() % (vocab_ - 3));
    return t;
  }

  Turn Run(Engine& e, const std::vector<int32_t>& prompt, RequestRetention retention = {}) {
    GenerateRequest r;
    r.prompt = prompt;
    r.max_tokens = 4;
    r.ignore_eos = true;
    r.retention = std::move(retention);
    auto id = e.Add(r);
    EXPECT_TRUE(id.ok()) << id.status();
    int steps = 0;
    while (e.HasWork() && steps++ < 10000) EXPECT_TRUE(e.Step().ok());
    EXPECT_FALSE(e.HasWork()) << "a request was never admitted";
    auto seq = e.TakeFinished(*id);
    EXPECT_NE(seq, nullptr);
    if (seq == nullptr) return {};
    return Turn{seq->cached_tokens, seq->tier_hit, seq->num_generated()};
  }

  // A conversation of `turns` turns over `prefix`: each turn appends a user message and the
  // reply; the retained ones keep [0, prefix) for an hour.
  std::vector<int32_t> Converse(Engine& e, const std::vector<int32_t>& prefix, int turns, bool retain) {
    std::vector<int32_t> history = prefix;
    for (int t = 0; t < turns; ++t) {
      const std::vector<int32_t> message = Random(20);
      history.insert(history.end(), message.begin(), message.end());
      Run(e, history, Keep(retain));
    }
    return history;
  }

  RequestRetention Keep(bool retain, int64_t end = kPrefixTokens) {
    if (!retain) return {};
    return {RetentionRange{0, end, kDefaultRetentionPriority, kHourMs}};
  }

  // Unrelated requests of 12 blocks, cycling `times` times through the pool's and host
  // RAM's budgets together.
  void Flood(Engine& e, int times, bool retain = false) {
    const int n = times * (kCacheBlocks + kHostBlocks) / 12 + 1;
    for (int i = 0; i < n; ++i) {
      const std::vector<int32_t> prompt = Random(12 * kBs);
      const Turn t = Run(e, prompt, Keep(retain, 12 * kBs));
      EXPECT_EQ(t.generated, 4) << "flood request " << i << " did not run to the end";
    }
  }

  std::unique_ptr<Model> model_;
  int vocab_ = 0;
  int64_t block_bytes_ = 0;
  ManualClock clock_{1000};
  std::mt19937 rng_{19};
};

TEST_F(RetentionFloodTest, RetainedPrefixSurvivesAFloodThatTheControlDoesNot) {
  auto e = Make();
  const std::vector<int32_t> agent_prefix = Random(kPrefixTokens);
  const std::vector<int32_t> control_prefix = Random(kPrefixTokens);
  std::vector<int32_t> agent = Converse(*e, agent_prefix, 10, /*retain=*/true);
  std::vector<int32_t> control = Converse(*e, control_prefix, 10, /*retain=*/false);
  clock_.Advance(60 * 1000);  // the agent pauses for a tool call
  Flood(*e, 3);

  const TierControllerStats ts = e->cache().tier_stats();
  ASSERT_GT(ts.host.evictions, 3 * kHostBlocks) << "the flood did not cycle host RAM";
  const std::vector<int32_t> tool_result = Random(20);
  agent.insert(agent.end(), tool_result.begin(), tool_result.end());
  control.insert(control.end(), tool_result.begin(), tool_result.end());
  const Turn next = Run(*e, agent, Keep(true));
  EXPECT_GE(next.cached, kPrefixTokens) << "the agent lost its retained prefix";
  const Turn missed = Run(*e, control);
  EXPECT_LT(missed.cached, kPrefixTokens) << "the control kept its prefix without retention";
  EXPECT_GT(e->cache().stats().retained_tokens, 0);
}

TEST_F(RetentionFloodTest, RetainedPrefixComesBackFromHostRamAfterThePoolLetItGo) {
  auto e = Make();
  const std::vector<int32_t> agent_prefix = Random(kPrefixTokens);
  std::vector<int32_t> agent = Converse(*e, agent_prefix, 10, /*retain=*/true);
  // Everything leaves the pool, retained blocks too (retention never blocks eviction): they
  // go down to host RAM with their marks.
  e->cache().Evict(1 << 20);
  ASSERT_EQ(e->cache().Probe("", agent).resident_tokens, 0);
  Flood(*e, 3);
  const TierProbe probe = e->cache().ProbeTiers("", agent, e->cache().ProbeKeys("", agent));
  EXPECT_GE(probe.host_retained_tokens, kPrefixTokens - kPrefixTokens % kBs);
  ASSERT_GT(e->cache().tier_stats().host.evictions, 3 * kHostBlocks);
  const Turn next = Run(*e, agent, Keep(true));
  EXPECT_GE(next.cached, kPrefixTokens);
  EXPECT_GE(next.tier.host_tokens, kPrefixTokens) << "the prefix was not in host RAM";
}

TEST_F(RetentionFloodTest, AFloodOfOnlyRetainedRequestsAdmitsEveryRequest) {
  // Retained blocks may fill every tier: nothing but rank decides what goes.
  auto e = Make(/*retention_max_share=*/1.0);
  Flood(*e, 4, /*retain=*/true);  // every request keeps its whole prompt for an hour
  const PrefixCacheStats s = e->cache().stats();
  EXPECT_LE(s.retained_tokens, s.max_retained_tokens);
  EXPECT_EQ(s.retention_requests, 4 * (kCacheBlocks + kHostBlocks) / 12 + 1);
  const TierStats host = e->cache().tier_stats().host;
  EXPECT_GT(host.retained_bytes, 0) << "retained blocks the pool let go kept their mark below";
  EXPECT_GT(host.retention_spilled, 0) << "host RAM never had to let retained blocks go";
}

TEST_F(RetentionFloodTest, BeyondTheRetainedShareTheOldestRetentionEndsFirst) {
  auto e = Make();
  Flood(*e, 2, /*retain=*/true);
  const PrefixCacheStats s = e->cache().stats();
  EXPECT_LE(s.retained_tokens, s.max_retained_tokens);
  EXPECT_EQ(s.max_retained_tokens, kCacheBlocks * kBs / 2);
  EXPECT_GT(s.retention_capped_tokens, 0) << "the oldest retention was never trimmed";
}

TEST_F(RetentionFloodTest, AfterTheTtlTheBlocksAreEvictableAgain) {
  auto e = Make();
  const std::vector<int32_t> agent_prefix = Random(kPrefixTokens);
  std::vector<int32_t> agent = Converse(*e, agent_prefix, 3, /*retain=*/true);
  ASSERT_GT(e->cache().stats().retained_tokens, 0);
  clock_.Advance(kHourMs + 1);
  Flood(*e, 3);  // the flood's first admission ends the marks
  const PrefixCacheStats s = e->cache().stats();
  EXPECT_EQ(s.retained_tokens, 0);
  EXPECT_GE(s.retention_expired_tokens, kPrefixTokens);
  const std::vector<int32_t> more = Random(20);
  agent.insert(agent.end(), more.begin(), more.end());
  EXPECT_LT(Run(*e, agent).cached, kPrefixTokens) << "expired retention still kept the prefix";
}

}  // namespace
}  // namespace prefixd
