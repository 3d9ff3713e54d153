#include "engine/engine_service.h"

#include "cache/block_keyer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <thread>

#include "engine/test_models.h"
#include "engine/vocab_loader.h"

namespace prefixd {
namespace {

struct Fixture {
  std::unique_ptr<Model> model = MakeTestModel(TestModelShape::kTiny, TensorType::kF32);
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<EngineService> service;

  explicit Fixture(int max_queue = 256, RequestLog* request_log = nullptr) {
    tokenizer = std::move(*Tokenizer::Create(*LoadVocab(model->gguf())));
    EngineOptions eo;
    eo.context_length = 256;
    eo.max_running = 4;
    ServiceOptions so;
    so.max_queue = max_queue;
    so.request_log = request_log;
    service = std::make_unique<EngineService>(*model, *tokenizer,
                                              std::move(*Engine::Create(*model, -1, eo)), so);
  }
};

// Collects a request's events and signals when the final one arrives. The callback shares
// ownership of the state, so the engine thread never touches it after the test has moved on.
struct Collector {
  struct State {
    std::mutex mu;
    std::vector<TokenEvent> events;
    std::promise<void> done;
  };
  std::shared_ptr<State> state = std::make_shared<State>();
  std::future<void> done = state->done.get_future();
  std::mutex& mu = state->mu;
  std::vector<TokenEvent>& events = state->events;

  std::function<void(const TokenEvent&)> Callback() {
    return [s = state](const TokenEvent& ev) {
      bool finished;
      {
        std::lock_guard<std::mutex> lock(s->mu);
        s->events.push_back(ev);
        finished = ev.finished;
      }
      if (finished) s->done.set_value();
    };
  }
};

GenerateRequest Req(std::vector<int32_t> prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.ignore_eos = true;
  return r;
}

TEST(EngineService, RepeatedPromptReportsExactCachedTokens) {
  Fixture f;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(3 + i);
  std::vector<int32_t> first_tokens;
  for (int round = 0; round < 2; ++round) {
    Collector c;
    ASSERT_TRUE(f.service->Submit({Req(prompt, 5), c.Callback()}).ok());
    c.done.wait();
    const TokenEvent& last = c.events.back();
    ASSERT_TRUE(last.finished);
    EXPECT_EQ(last.finish, FinishReason::kLength);
    EXPECT_EQ(last.usage.prompt_tokens, 40);
    EXPECT_EQ(last.usage.completion_tokens, 5);
    EXPECT_EQ(last.usage.cached_tokens, round == 0 ? 0 : 39);
    std::vector<int32_t> tokens;
    for (const auto& ev : c.events) {
      if (ev.token >= 0) tokens.push_back(ev.token);
    }
    EXPECT_EQ(tokens.size(), 5u);
    if (round == 0) first_tokens = tokens;
    else EXPECT_EQ(tokens, first_tokens);
  }
  const ServiceStats s = f.service->stats();
  EXPECT_EQ(s.cache.hits, 1);
  EXPECT_EQ(s.cache.misses, 1);
  EXPECT_EQ(s.requests_total, 2);
}

TEST(EngineService, StatsCountStepsAndTheEngineThreadsTime) {
  Fixture f;
  std::vector<int32_t> prompt;
  for (int i = 0; i < 30; ++i) prompt.push_back(5 + i);
  Collector c;
  ASSERT_TRUE(f.service->Submit({Req(prompt, 6), c.Callback()}).ok());
  c.done.wait();
  // One prefill step gives the first token, five decode steps the rest; the gauges are
  // published right after the step that finished the request.
  ServiceStats s = f.service->stats();
  for (int i = 0; i < 500 && s.steps.steps < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    s = f.service->stats();
  }
  EXPECT_EQ(s.steps.steps, 6);
  EXPECT_GT(s.steps.forward_seconds, 0.0);
  EXPECT_LE(s.steps.forward_seconds, s.steps.step_seconds);
  EXPECT_GT(s.steps.forward_cpu_seconds, 0.0);
  EXPECT_GE(s.engine_thread_cpu_seconds, s.steps.forward_cpu_seconds);
}

TEST(EngineService, ProbeIsReadOnlyAndSeesResidentTokens) {
  Fixture f;
  std::vector<int32_t> prompt(50, 7);
  EXPECT_EQ(f.service->Probe("", prompt).resident_tokens, 0);
  Collector c;
  ASSERT_TRUE(f.service->Submit({Req(prompt, 2), c.Callback()}).ok());
  c.done.wait();
  const auto before = f.service->stats().cache;
  EXPECT_EQ(f.service->Probe("", prompt).resident_tokens, 50);
  EXPECT_EQ(f.service->Probe("other-tenant", prompt).resident_tokens, 0);
  const auto after = f.service->stats().cache;
  EXPECT_EQ(before.hits, after.hits);
  EXPECT_EQ(before.misses, after.misses);
  EXPECT_EQ(before.query_tokens, after.query_tokens);
}

TEST(EngineService, CancelAndShutdownEndEveryRequestOnce) {
  Fixture f;
  std::vector<std::unique_ptr<Collector>> collectors;
  std::vector<SequenceId> ids;
  for (int i = 0; i < 8; ++i) {
    collectors.push_back(std::make_unique<Collector>());
    auto id = f.service->Submit({Req({5, 6, 7, static_cast<int32_t>(8 + i)}, 200),
                                 collectors.back()->Callback()});
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  f.service->Cancel(ids[0]);
  f.service->Cancel(ids[5]);
  f.service->Shutdown();
  for (auto& c : collectors) {
    std::lock_guard<std::mutex> lock(c->mu);
    int finals = 0;
    for (const auto& ev : c->events) finals += ev.finished ? 1 : 0;
    EXPECT_EQ(finals, 1);
  }
  EXPECT_FALSE(f.service->Submit({Req({1, 2}, 1), [](const TokenEvent&) {}}).ok());
}

TEST(EngineService, RejectsBadRequestsAndAFullQueue) {
  Fixture f(/*max_queue=*/0);
  auto st = f.service->Submit({Req({}, 1), [](const TokenEvent&) {}});
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  st = f.service->Submit({Req({1, 2, 3}, 1), [](const TokenEvent&) {}});
  EXPECT_EQ(st.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(EngineService, ManyThreadsSubmitConcurrently) {
  Fixture f;
  std::vector<std::thread> threads;
  std::atomic<int> finished{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        Collector c;
        auto id = f.service->Submit({Req({3, 4, static_cast<int32_t>(10 + t), 9}, 3), c.Callback()});
        ASSERT_TRUE(id.ok());
        c.done.wait();
        finished++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(finished.load(), 20);
  EXPECT_EQ(f.service->ClearCache() >= 0, true);
  EXPECT_EQ(f.service->stats().pool_free_blocks, f.service->stats().pool_total_blocks);
}

}  // namespace
}  // namespace prefixd

namespace prefixd {
namespace {

TEST(EngineService, ProbeTiersAndClearOneTier) {
  Fixture f;
  std::vector<int32_t> prompt(40, 9);
  Collector c;
  ASSERT_TRUE(f.service->Submit({Req(prompt, 2), c.Callback()}).ok());
  c.done.wait();
  // The probe hashes the prompt once, with the cache's keyer: 2 full blocks of 16.
  const int64_t hashed = BlockKeyer::num_hashed_blocks();
  TierProbe p = f.service->ProbeTiers("", prompt);
  EXPECT_EQ(BlockKeyer::num_hashed_blocks() - hashed, 2);
  EXPECT_EQ(p.pool_tokens, 40);
  EXPECT_TRUE(f.service->ClearCacheTier("pool").ok());
  p = f.service->ProbeTiers("", prompt);
  EXPECT_EQ(p.pool_tokens, 0);
  // The 8-token tail is kept, but it applies only after its parent block, which no tier holds
  // any more (this service has no host or disk tier).
  EXPECT_EQ(p.partial_tokens, 0);
  EXPECT_EQ(f.service->stats().tiers->partial.entries, 1);
  EXPECT_TRUE(f.service->ClearCacheTier("partial").ok());
  EXPECT_EQ(f.service->stats().tiers->partial.entries, 0);
  EXPECT_EQ(f.service->ClearCacheTier("attic").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(f.service->stats().tiers.has_value());
  EXPECT_EQ(f.service->stats().tiers->partial.stashes, 1);
}

}  // namespace
}  // namespace prefixd

namespace prefixd {
namespace {

// Equal token prefixes give equal hashes, and nothing after the first difference is equal.
TEST(RequestLog, TokenHashesFollowPrefixesOnly) {
  const std::vector<int32_t> a = {5, 6, 7, 8}, b = {5, 6, 9, 8};
  const std::vector<int32_t> ha = HashTokenChain(42, a), hb = HashTokenChain(42, b);
  EXPECT_EQ(ha[0], hb[0]);
  EXPECT_EQ(ha[1], hb[1]);
  EXPECT_NE(ha[2], hb[2]);
  EXPECT_NE(ha[3], hb[3]);  // same token, different prefix
  EXPECT_NE(HashTokenChain(43, a)[0], ha[0]);  // another secret
  for (int32_t h : ha) EXPECT_GE(h, 0);
}

// A service with --request-log writes the header, then the engine's cache-facing operations:
// each request before its first admission (hashed prompt), its admission, writes, completed
// prompt and finish (computed and cached tokens). A request that never reached the cache
// (max_tokens 0) has no line.
TEST(RequestLog, ServiceLogsTheEnginesOperations) {
  const std::string path = ::testing::TempDir() + "/request_log_test.jsonl";
  RequestLogHeader header;
  header.block_size = 16;
  auto log = RequestLog::Open(path, header);
  ASSERT_TRUE(log.ok()) << log.status();
  {
    Fixture f(256, log->get());
    std::vector<int32_t> prompt(40, 9);
    for (int i = 0; i < 2; ++i) {
      Collector c;
      ASSERT_TRUE(f.service->Submit({Req(prompt, 3), c.Callback()}).ok());
      c.done.wait();
    }
    Collector none;  // max_tokens 0: the cache never sees it, so it is not logged
    ASSERT_TRUE(f.service->Submit({Req(prompt, 0), none.Callback()}).ok());
    none.done.wait();
  }
  (*log)->Flush();
  std::ifstream in(path);
  std::vector<std::string> lines, requests, finishes, prompts;
  for (std::string l; std::getline(in, l);) {
    lines.push_back(l);
    if (l.find("\"op\":\"request\"") != std::string::npos) requests.push_back(l);
    if (l.find("\"op\":\"finish\"") != std::string::npos) finishes.push_back(l);
    if (l.find("\"op\":\"prompt\"") != std::string::npos) prompts.push_back(l);
  }
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines[0].find("\"prefixd_request_log\":2"), std::string::npos);
  ASSERT_EQ(requests.size(), 2u);
  ASSERT_EQ(finishes.size(), 2u);
  EXPECT_EQ(prompts.size(), 2u);
  EXPECT_NE(finishes[0].find("\"prompt_tokens\":40,\"computed\":42"), std::string::npos) << finishes[0];
  EXPECT_NE(finishes[0].find("\"cached_tokens\":0"), std::string::npos) << finishes[0];
  EXPECT_NE(finishes[1].find("\"cached_tokens\":39"), std::string::npos) << finishes[1];
  // The same prompt hashes the same (the sequence ids differ, the hashes do not).
  auto prompt_of = [](const std::string& l) {
    const size_t b = l.find("\"prompt\":[") + 10, e = l.find(']', b);
    return l.substr(b, e - b);
  };
  EXPECT_EQ(prompt_of(requests[0]), prompt_of(requests[1]));
  const std::string p0 = prompt_of(requests[0]);
  EXPECT_EQ(std::count(p0.begin(), p0.end(), ','), 39) << requests[0];  // 40 hashes
}

}  // namespace
}  // namespace prefixd
