// EngineService: runs one Engine on its own thread (the engine loop) for a server. Requests
// come in from any thread with Submit; tokens go out through each request's callback, called
// on the engine thread. The loop admits new requests between steps (continuous batching).
//
//   HTTP threads --Submit/Cancel/Probe--> [queue] --> engine thread: Step, Step, ...
//                <--on_event(token ... finished)--
//
// Thread safety: every public method may be called from any thread. Callbacks run on the
// engine thread and must not block or call back into the service (except Cancel).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "cache/prefix_cache.h"
#include "engine/engine.h"
#include "engine/request_log.h"
#include "tokenizer/tokenizer.h"

namespace prefixd {

// How the prompt's tokens were served, for usage.prefix_cache.
struct RequestUsage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens whose KV came from the cache (any tier)
  // Cached tokens per tier, in lookup order: pool, host, disk, remote, partial.
  std::vector<std::pair<std::string, int64_t>> cached_tokens_by_tier;
  double cache_load_ms = 0;  // time spent bringing cached blocks in from lower tiers
  // First prompt token not served from cache (== cached_tokens), or -1 on a full hit.
  int64_t diverged_at_token = -1;
  double time_to_first_token_ms = 0;  // submitted -> first token sampled
  // Why nothing could be reused for this model (Engine::prefix_cache_refusal), or empty.
  std::string prefix_cache_refusal;
  // Hybrid models with snapshots: the bytes of the recurrent-state snapshot the request
  // resumed from (0 when it resumed from nothing); -1 for other models (not reported).
  int64_t state_snapshot_bytes = -1;
};

struct TokenEvent {
  SequenceId id;
  int32_t token = -1;  // -1 on a final event without a new token (cancelled, failed)
  // With GenerateRequest::logprobs > 0: the chosen token's logprob and the top alternatives.
  std::optional<TokenLogprob> logprob;
  std::vector<TokenLogprob> top_logprobs;
  bool finished = false;
  FinishReason finish = FinishReason::kNone;
  // Complete when finished; on a request's first token, its prompt's figures (prompt and
  // cached tokens, by tier) are set already.
  RequestUsage usage;
  Status error;        // not OK when the request failed inside the engine
};

struct ServiceRequest {
  GenerateRequest request;
  std::function<void(const TokenEvent&)> on_event;
};

struct ServiceOptions {
  int max_queue = 256;  // waiting requests beyond this are refused (ResourceExhausted)
  // The KV event endpoints as bound (for /props); empty: no KV events.
  std::string kv_events_endpoint;
  std::string kv_events_replay_endpoint;
  // --request-log: the engine's cache-facing operations are recorded there (engine thread:
  // Tick at each loop iteration's start, Commit at its end); nullptr: none. Must outlive the
  // service. Its clock, if any, must be the engine's (EngineOptions::clock).
  RequestLog* request_log = nullptr;
};

// Fixed facts about the running model and cache, for /props and /v1/models.
struct ServiceInfo {
  std::string model_id;    // file name without directory
  std::string model_path;
  std::string architecture;
  std::string backend;   // "cpu" or "cuda"
  std::string kv_dtype;  // "f16" or "f32"
  std::string cache_hash;  // block key hash: "xxh3" or "sha256"
  int32_t context_length = 0;
  int32_t vocab_size = 0;
  int32_t block_size = 0;
  int64_t block_bytes = 0;
  int32_t num_kv_blocks = 0;
  int64_t cache_budget_bytes = 0;
  bool prefix_cache = true;
  // Set when the cache was asked for but the model cannot use it (Engine::prefix_cache_refusal;
  // prefix_cache is then false).
  std::string prefix_cache_refusal;
  int32_t max_running = 0;
  int32_t max_batch_tokens = 0;
  int32_t max_queue = 0;
  // Lower tiers: 0 / empty when off.
  int64_t host_cache_bytes = 0;
  std::string disk_cache_dir;
  int64_t disk_cache_bytes = 0;
  std::string disk_prefix_cache;  // the default scope policy, e.g. "auto:30"
  int32_t partial_max_entries = 0;
  std::string remote_cache;            // redis URL without the password; empty: no remote tier
  std::string remote_cache_namespace;
  double retention_max_share = 0.5;  // --retention-max-share
  // Hybrid models with the cache on: the recurrent state is snapshotted every this many
  // blocks (--state-checkpoint-blocks), each snapshot this many bytes; 0 otherwise.
  int32_t state_checkpoint_blocks = 0;
  int64_t state_snapshot_bytes = 0;
  std::string kv_events_endpoint;  // empty: no KV events
  std::string kv_events_replay_endpoint;
};

// Engine-wide counters beside the cache's, readable without blocking.
struct ServiceStats {
  PrefixCacheStats cache;
  std::optional<TierControllerStats> tiers;  // absent when the cache has no lower tiers
  int64_t requests_running = 0;
  int64_t requests_waiting = 0;
  int64_t requests_total = 0;
  int64_t prompt_tokens_total = 0;
  int64_t generated_tokens_total = 0;
  int64_t pool_free_blocks = 0;
  int64_t pool_total_blocks = 0;
  // The engine thread's time (StepTiming, and its whole CPU time: steps, the cache's protocol,
  // KV events, streaming tokens to the requests' callbacks).
  StepTiming steps;
  double engine_thread_cpu_seconds = 0;
};

class EngineService {
 public:
  // Starts the engine thread. `model` and `tokenizer` must outlive the service.
  EngineService(const Model& model, const Tokenizer& tokenizer, std::unique_ptr<Engine> engine,
                const ServiceOptions& options);
  ~EngineService();  // Shutdown()

  // Queues a request. InvalidArgument for a request the engine rejects (empty prompt, prompt
  // longer than the context...); ResourceExhausted when the queue is full; Unavailable after
  // Shutdown. On success the callback will see exactly one event with finished == true.
  StatusOr<SequenceId> Submit(ServiceRequest request);
  // Cancels a request (a client went away, or a stop string matched). Its final event comes
  // with FinishReason::kCancelled unless it finished first. Unknown ids are ignored.
  void Cancel(SequenceId id);

  // Counts of what is resident for `tokens` under `salt`, computed on the engine thread
  // between steps (the caller waits; the engine does not), changing nothing.
  ProbeResult Probe(const std::string& salt, std::vector<int32_t> tokens);
  // Per-tier residency (pool, host, disk, partial tail), computed the same way, changing
  // nothing.
  // `block_hashes`, when given, gets each full block's hash as KV events name it (the high 64
  // bits of its chain key), so a router's view can be checked against this replica's.
  TierProbe ProbeTiers(const std::string& salt, std::vector<int32_t> tokens,
                       std::vector<uint64_t>* block_hashes = nullptr);
  // Drops every cached entry not in use. Returns the number of blocks freed.
  int ClearCache();
  // Clears one tier: "pool", "host", "disk", "partial" or "all". InvalidArgument for another
  // name.
  Status ClearCacheTier(const std::string& tier);
  // The kill switch, applied on the engine thread between steps (the caller waits).
  void SetCacheEnabled(bool enabled);

  ServiceStats stats() const;
  const ServiceInfo& info() const { return info_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  const Model& model() const { return model_; }

  // Stops accepting, cancels queued and running requests (each gets its final event), and
  // joins the engine thread. Idempotent.
  void Shutdown();

 private:
  void Loop();
  // Runs `fn` on the engine thread between steps and returns its result; `if_stopped` when
  // the service is shutting down. The caller waits; the engine does not.
  template <typename T>
  T RunOnEngineThread(std::function<T()> fn, T if_stopped);
  // Copies the engine's gauges into the atomics stats() reads (engine thread).
  void PublishGauges();

  const Model& model_;
  const Tokenizer& tokenizer_;
  std::unique_ptr<Engine> engine_;
  ServiceOptions options_;
  ServiceInfo info_;
  // Engine-thread tasks queued by other threads (probe, clear), run between steps.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<SequenceId, ServiceRequest>> incoming_;
  std::vector<SequenceId> cancels_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::thread thread_;
  std::atomic<int64_t> next_id_{0};
  std::atomic<int64_t> requests_total_{0};
  // Published by the engine thread after each step, for stats().
  std::atomic<int64_t> running_{0}, waiting_{0}, prompt_tokens_total_{0};
  std::atomic<int64_t> generated_tokens_total_{0}, pool_free_blocks_{0};
  std::atomic<int64_t> steps_{0};
  std::atomic<double> step_seconds_{0}, forward_seconds_{0}, forward_cpu_seconds_{0};
  std::atomic<double> thread_cpu_seconds_{0};
  // Engine-thread state: the callback and timing of each live request.
  struct Live;
  std::unique_ptr<std::map<int64_t, Live>> live_;
};

template <typename T>
T EngineService::RunOnEngineThread(std::function<T()> fn, T if_stopped) {
  auto promise = std::make_shared<std::promise<T>>();
  auto future = promise->get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return if_stopped;
    tasks_.push_back([promise, fn = std::move(fn)] { promise->set_value(fn()); });
  }
  cv_.notify_one();
  return future.get();
}

}  // namespace prefixd
