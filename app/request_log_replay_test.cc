// The engine's request log replayed operation by operation equals the engine, request by
// request: a real EngineService (a small random model) serves clients that overlap, over a
// pool small enough to evict and preempt, with host RAM (and a disk tier, in the second test),
// retention that expires during the run, the kill switch and a clear in the middle; the replay
// of its log, with no model, must give every request the cached tokens (and per tier) the
// service reported.
#include "app/request_log_replay.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "engine/engine_service.h"
#include "engine/test_models.h"
#include "engine/vocab_loader.h"
#include "kv/kv_layout.h"
#include "tier/block_record.h"

namespace prefixd {
namespace {

constexpr int kBs = 4;

// What a client saw: prompt tokens, cached tokens, and of them host, disk, partial.
using Figures = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;

Figures FiguresOf(const RequestUsage& u) {
  int64_t host = 0, disk = 0, partial = 0;
  for (const auto& [tier, n] : u.cached_tokens_by_tier) {
    if (tier == "host") host = n;
    if (tier == "disk") disk = n;
    if (tier == "partial") partial = n;
  }
  return {u.prompt_tokens, u.cached_tokens, host, disk, partial};
}

// Submits a request and waits for its final event; returns its usage.
RequestUsage Run(EngineService& service, GenerateRequest request) {
  auto done = std::make_shared<std::promise<RequestUsage>>();
  auto fut = done->get_future();
  auto id = service.Submit({std::move(request), [done](const TokenEvent& ev) {
                              if (ev.finished) done->set_value(ev.usage);
                            }});
  EXPECT_TRUE(id.ok()) << id.status();
  return fut.get();
}

struct Served {
  std::vector<Figures> reported;  // what the clients saw, in no particular order
  std::filesystem::path log;
};

// Serves `clients` clients for `rounds` rounds each, concurrently, toggling the kill switch and
// clearing host RAM once in the middle; then floods the pool and brings every client back.
// With `disk`, a disk tier below host RAM (reads ahead on the tier controller's thread).
Served Serve(const Model& model, const std::filesystem::path& dir, uint64_t seed, int clients,
             int rounds, bool disk) {
  std::unique_ptr<Tokenizer> tokenizer = std::move(*Tokenizer::Create(*LoadVocab(model.gguf())));
  const Hparams& hp = model.hparams();
  const int64_t block_bytes = KvLayout{hp.num_layers, hp.kv_dim(), kBs, KvDtype::kF16}.BlockBytes();
  const int64_t record = static_cast<int64_t>(SerializedSize(kBs, block_bytes));
  LatchedClock clock(SteadyClock::Get());
  EngineOptions eo;
  eo.block_size = kBs;
  eo.context_length = 256;
  eo.max_running = 4;
  eo.max_batch_tokens = 24;
  eo.max_chunk_tokens = 16;
  eo.num_kv_blocks = 52;  // four running requests need more: some are preempted
  eo.cache_bytes = 24 * block_bytes;
  eo.tiers.host_bytes = 20 * record;
  if (disk) {
    eo.tiers.disk_dir = (dir / "disk").string();
    eo.tiers.disk_bytes = 60 * record;  // small enough to evict too
  }
  eo.tiers.scope = *ParseScopeSpec("full");
  eo.clock = &clock;
  auto engine = Engine::Create(model, -1, eo);
  EXPECT_TRUE(engine.ok()) << engine.status();
  Served out;
  out.log = dir / "requests.jsonl";
  auto log = RequestLog::Open(out.log.string(), RequestLogHeaderOf(**engine), &clock);
  EXPECT_TRUE(log.ok()) << log.status();
  ServiceOptions so;
  so.request_log = log->get();
  auto service = std::make_unique<EngineService>(model, *tokenizer, std::move(*engine), so);

  std::mt19937 rng(seed);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t;
    for (int i = 0; i < n; ++i) t.push_back(3 + static_cast<int32_t>(rng() % (hp.vocab_size - 3)));
    return t;
  };
  const std::vector<int32_t> system = random_tokens(30);
  std::vector<std::vector<int32_t>> own(clients), turns(rounds);
  for (auto& o : own) o = random_tokens(8 + static_cast<int>(rng() % 12));
  for (auto& t : turns) t = random_tokens(6 + static_cast<int>(rng() % 8));
  std::mutex mu;
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::vector<int32_t> prompt = system;
      prompt.insert(prompt.end(), own[c].begin(), own[c].end());
      for (int r = 0; r < rounds; ++r) {
        prompt.insert(prompt.end(), turns[r].begin(), turns[r].end());
        GenerateRequest req;
        req.prompt = prompt;
        req.max_tokens = 6 + 3 * ((c + r) % 4);
        req.ignore_eos = true;
        if (c % 3 == 0) req.retention.push_back({0, 30, 90, 60000});  // outlives the run
        if (c % 3 == 1) req.retention.push_back({0, static_cast<int64_t>(prompt.size()), 50, 3});
        if (c % 4 == 3) req.cache_salt = "tenant-b";
        const RequestUsage u = Run(*service, std::move(req));
        {
          std::lock_guard<std::mutex> lock(mu);
          out.reported.push_back(FiguresOf(u));
        }
        ++finished;
      }
    });
  }
  // The admin's switches while requests run.
  while (finished < clients * rounds / 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  service->SetCacheEnabled(false);
  while (finished < clients * rounds / 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  service->SetCacheEnabled(true);
  EXPECT_TRUE(service->ClearCacheTier("host").ok());
  for (auto& t : threads) t.join();
  // Unrelated prompts push the clients' prefixes out of the pool, then every client comes
  // back with its last prompt, all at once: host RAM and the disk serve them.
  auto all_at_once = [&](const std::vector<std::vector<int32_t>>& prompts, bool keep_off_disk) {
    std::vector<std::thread> ts;
    for (const auto& p : prompts) {
      ts.emplace_back([&, p] {
        GenerateRequest req;
        req.prompt = p;
        req.max_tokens = 3;
        req.ignore_eos = true;
        // The flood stays off the disk (a request's own scope), which keeps the clients'.
        if (keep_off_disk) req.scope = ScopeSpec{ScopeSpec::Mode::kOff};
        const RequestUsage u = Run(*service, std::move(req));
        std::lock_guard<std::mutex> lock(mu);
        out.reported.push_back(FiguresOf(u));
      });
    }
    for (auto& t : ts) t.join();
  };
  std::vector<std::vector<int32_t>> flood, back;
  for (int c = 0; c < clients; ++c) {
    flood.push_back(random_tokens(40));
    std::vector<int32_t> last = system;
    last.insert(last.end(), own[c].begin(), own[c].end());
    for (const auto& t : turns) last.insert(last.end(), t.begin(), t.end());
    back.push_back(std::move(last));
  }
  all_at_once(flood, true);
  all_at_once(back, false);
  service.reset();  // the engine thread's last records are committed
  log->reset();     // written and closed
  return out;
}

// What a served run exercised, summed over runs.
struct Coverage {
  int64_t evicted_blocks = 0, lower_tier_hits = 0, pool_hits = 0, preempted = 0;
};

// Serves one run of seed `seed`, replays its log, and expects the replay to equal the service
// request by request.
void ServeAndReplay(const Model& model, const std::filesystem::path& dir, uint64_t seed,
                    bool disk, Coverage* coverage) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  const int clients = 8, rounds = 4;
  const Served served = Serve(model, dir, seed, clients, rounds, disk);
  auto log = ReadRequestLog(served.log.string());
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_EQ(log->version, 2);
  ASSERT_EQ(log->finish_order.size(), static_cast<size_t>(clients * (rounds + 2)));

  // The log's figures are what the clients saw (as multisets: the log is in finish order).
  std::vector<Figures> logged;
  for (size_t i : log->finish_order) {
    const LoggedRequest& r = log->requests[i];
    logged.emplace_back(r.num_prompt, r.cached_tokens, r.host_tokens, r.disk_tokens,
                        r.partial_tokens);
  }
  std::vector<Figures> reported = served.reported;
  std::sort(logged.begin(), logged.end());
  std::sort(reported.begin(), reported.end());
  EXPECT_EQ(logged, reported);

  auto config = ReplayConfigOf(log->header);
  ASSERT_TRUE(config.ok()) << config.status();
  auto replay = ReplayLogOperations(*log, *config);
  ASSERT_TRUE(replay.ok()) << replay.status();
  EXPECT_EQ(replay->divergences, 0) << replay->first_divergence;
  const ReplayResult& r = replay->result;
  ASSERT_EQ(r.by_request.size(), log->finish_order.size());
  for (size_t k = 0; k < r.by_request.size(); ++k) {
    const ReplayOutcome& o = r.by_request[k];
    const LoggedRequest& l = log->requests[log->finish_order[k]];
    EXPECT_EQ(o.cached_tokens, l.cached_tokens) << "request " << l.seq;
    EXPECT_EQ(o.tier.host_tokens, l.host_tokens) << "request " << l.seq;
    EXPECT_EQ(o.tier.disk_tokens, l.disk_tokens) << "request " << l.seq;
    EXPECT_EQ(o.tier.partial_tokens, l.partial_tokens) << "request " << l.seq;
    coverage->lower_tier_hits += l.host_tokens + l.disk_tokens > 0;
    coverage->pool_hits += l.cached_tokens > l.host_tokens + l.disk_tokens + l.partial_tokens;
  }
  coverage->evicted_blocks += r.evicted_blocks;
  int64_t switches = 0, clears = 0;
  for (const LoggedOp& op : log->ops) {
    coverage->preempted += static_cast<int64_t>(op.preempted.size());
    switches += op.kind == LoggedOp::Kind::kEnable;
    clears += op.kind == LoggedOp::Kind::kClear;
  }
  EXPECT_EQ(switches, 2);
  EXPECT_EQ(clears, 1);
}

// Several runs of `seeds` seeds (the interleaving differs from run to run: it is the
// threads' timing), each replayed exactly; together they exercise eviction, lower-tier hits,
// pool hits and preemption (a single run may miss one of them, by timing).
void ServeAndReplaySeeds(bool disk, uint64_t seeds) {
  std::unique_ptr<Model> model = MakeTestModel(TestModelShape::kTiny, TensorType::kF32);
  Coverage coverage;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    const std::filesystem::path dir = std::filesystem::temp_directory_path() /
        ("prefixd-log-replay-" + std::to_string(::getpid()) + "-" + std::to_string(seed));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const bool failed_before = ::testing::Test::HasFailure();
    ServeAndReplay(*model, dir, seed, disk, &coverage);
    // The first failing run's log stays, for `prefixd replay --request-log` and a reader.
    if (::testing::Test::HasFailure() && !failed_before) {
      std::cerr << "request log kept: " << (dir / "requests.jsonl").string() << "\n";
      continue;
    }
    std::filesystem::remove_all(dir);
  }
  EXPECT_GT(coverage.evicted_blocks, 0);
  EXPECT_GT(coverage.lower_tier_hits, 0);
  EXPECT_GT(coverage.pool_hits, 0);
  EXPECT_GT(coverage.preempted, 0);
}

// Pool and host RAM: every change to what is cached happens on the engine thread or lands as
// if it had (the copies to host RAM), so the replay is exact however the requests overlap.
TEST(RequestLogReplay, OverlappingRequestsReplayExactly) { ServeAndReplaySeeds(false, 5); }

// With a disk tier below, whose reads ahead land on the tier controller's thread at times the
// log does not record: each request's reads keep their own copies and its admission takes its
// own first (TierController), and the replay lets every read started so far land before an
// admission, so what one admission takes never depends on when another's reads landed.
TEST(RequestLogReplay, OverlappingRequestsWithADiskTierReplayExactly) { ServeAndReplaySeeds(true, 5); }

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

constexpr const char* kHeaderFields =
    R"("prefix_cache":true,"block_size":4,"block_bytes":64,"num_kv_blocks":40,)"
    R"("max_cached_blocks":8,"max_chunk_tokens":8,"max_batch_tokens":8,"host_bytes":0,)"
    R"("disk_bytes":0,"disk_scope":"auto:30","min_tokens":0,"partial_max_entries":0,)"
    R"("partial_supported":true)";

// Version 1 logs (one line per finished request) still read, and replay one at a time.
TEST(RequestLogReplay, Version1LogsStillRead) {
  const std::string path = WriteFile("v1.jsonl", absl::StrCat(
      "{\"prefixd_request_log\":1,", kHeaderFields, "}\n",
      R"({"request":0,"salt":"","prompt_tokens":9,"computed_tokens":10,"tokens":[1,2,3,4,5,6,7,8,9,10,11],)",
      R"("message_starts":[],"cached_tokens":0,"by_tier":{"host":0,"disk":0,"partial":0},"finish":"length"})", "\n",
      R"({"request":1,"salt":"","prompt_tokens":9,"computed_tokens":10,"tokens":[1,2,3,4,5,6,7,8,9,10,11],)",
      R"("message_starts":[],"cached_tokens":8,"by_tier":{"host":0,"disk":0,"partial":0},"finish":"length"})", "\n"));
  auto log = ReadRequestLog(path);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(log->version, 1);
  EXPECT_TRUE(log->ops.empty());
  ASSERT_EQ(log->finish_order.size(), 2u);
  EXPECT_EQ(log->requests[log->finish_order[1]].cached_tokens, 8);
}

// A newer version is refused with what to do, not misread.
TEST(RequestLogReplay, NewerVersionsAreRefused) {
  const std::string path =
      WriteFile("v3.jsonl", absl::StrCat("{\"prefixd_request_log\":3,", kHeaderFields, "}\n"));
  auto log = ReadRequestLog(path);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find("version 3"), std::string::npos) << log.status();
  EXPECT_NE(log.status().message().find("replay it with the prefixd that wrote it"), std::string::npos);
}

// An operation on a sequence that has no request line is a broken log, named by its line.
TEST(RequestLogReplay, OperationsOfAnUnknownSequenceAreRefused) {
  const std::string path = WriteFile("orphan.jsonl", absl::StrCat(
      "{\"prefixd_request_log\":2,", kHeaderFields, "}\n",
      R"({"op":"admit","seq":4,"known":9,"hit":0,"disk_blocks":0})", "\n"));
  auto log = ReadRequestLog(path);
  ASSERT_FALSE(log.ok());
  EXPECT_NE(log.status().message().find(":2: sequence 4 has no request line"), std::string::npos)
      << log.status();
}

}  // namespace
}  // namespace prefixd
