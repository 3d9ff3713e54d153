#include "engine/engine_service.h"

#include <chrono>
#include <filesystem>
#include <future>

#include <pthread.h>

#include "base/log.h"
#include "base/thread_cpu_time.h"
#include "cache/kv_events.h"

namespace prefixd {

using MonoClock = std::chrono::steady_clock;

struct EngineService::Live {
  std::function<void(const TokenEvent&)> on_event;
  MonoClock::time_point submitted;
  double ttft_ms = -1;
};

namespace {
double MsSince(MonoClock::time_point t) {
  return std::chrono::duration<double, std::milli>(MonoClock::now() - t).count();
}
}  // namespace

EngineService::EngineService(const Model& model, const Tokenizer& tokenizer,
                             std::unique_ptr<Engine> engine, const ServiceOptions& options)
    : model_(model),
      tokenizer_(tokenizer),
      engine_(std::move(engine)),
      options_(options),
      live_(std::make_unique<std::map<int64_t, Live>>()) {
  const Hparams& hp = model.hparams();
  const EngineOptions& eo = engine_->options();
  info_.model_path = model.path();
  info_.model_id = std::filesystem::path(model.path()).filename().string();
  info_.architecture = hp.arch;
  info_.backend = engine_->backend().name();
  info_.kv_dtype = eo.kv_dtype == KvDtype::kF16 ? "f16" : "f32";
  info_.cache_hash = eo.cache_hash == BlockHashKind::kSha256 ? "sha256" : "xxh3";
  info_.context_length = engine_->context_length();
  info_.vocab_size = hp.vocab_size;
  info_.block_size = eo.block_size;
  info_.block_bytes = engine_->backend().kv_layout().BlockBytes();
  info_.num_kv_blocks = engine_->block_pool().num_blocks();
  if (const StateSnapshots* snapshots = engine_->state_snapshots(); snapshots != nullptr) {
    info_.state_checkpoint_blocks = eo.state_checkpoint_blocks;
    info_.state_snapshot_bytes = snapshots->state_bytes();
  }
  info_.cache_budget_bytes = engine_->cache().stats().max_cached_blocks * engine_->cached_block_bytes();
  info_.prefix_cache = eo.prefix_cache;
  info_.prefix_cache_refusal = engine_->prefix_cache_refusal();
  info_.max_running = eo.max_running;
  info_.max_batch_tokens = eo.max_batch_tokens;
  info_.max_queue = options.max_queue;
  info_.retention_max_share = eo.retention_max_share;
  if (engine_->cache().has_tiers()) {
    const TierOptions& to = eo.tiers;
    const TierControllerStats ts = engine_->cache().tier_stats();
    info_.host_cache_bytes = ts.host_enabled ? to.host_bytes : 0;
    info_.disk_cache_dir = ts.disk_enabled ? to.disk_dir : "";
    info_.disk_cache_bytes = ts.disk_enabled ? to.disk_bytes : 0;
    info_.disk_prefix_cache = engine_->cache().default_scope().ToString();
    info_.partial_max_entries = ts.partial.max_entries;
    if (ts.remote_enabled) {
      info_.remote_cache = to.remote->url.Redacted();
      info_.remote_cache_namespace = to.remote->key_namespace;
    }
  }
  info_.kv_events_endpoint = options.kv_events_endpoint;
  info_.kv_events_replay_endpoint = options.kv_events_replay_endpoint;
  pool_free_blocks_ = engine_->block_pool().num_free();
  engine_->SetRequestLog(options_.request_log);
  thread_ = std::thread([this] { Loop(); });
}

EngineService::~EngineService() { Shutdown(); }

StatusOr<SequenceId> EngineService::Submit(ServiceRequest request) {
  RETURN_IF_ERROR(engine_->Validate(request.request));
  const SequenceId id(next_id_.fetch_add(1));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("the server is shutting down");
    const int64_t queued = static_cast<int64_t>(incoming_.size()) + waiting_.load();
    if (queued >= options_.max_queue) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the request queue is full (", options_.max_queue, " waiting); retry later"));
    }
    incoming_.emplace_back(id, std::move(request));
  }
  requests_total_.fetch_add(1, std::memory_order_relaxed);
  cv_.notify_one();
  return id;
}

void EngineService::Cancel(SequenceId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
  }
  cv_.notify_one();
}

ProbeResult EngineService::Probe(const std::string& salt, std::vector<int32_t> tokens) {
  return RunOnEngineThread<ProbeResult>(
      [this, salt, tokens = std::move(tokens)] { return engine_->cache().Probe(salt, tokens); },
      ProbeResult{});
}

TierProbe EngineService::ProbeTiers(const std::string& salt, std::vector<int32_t> tokens,
                                     std::vector<uint64_t>* block_hashes) {
  // Hashed once, here on the caller's thread: the engine thread only walks the tree and the
  // tiers' indexes.
  BlockKeyChain keys = engine_->cache().ProbeKeys(salt, tokens);
  if (block_hashes != nullptr) {
    // Without lower tiers the probe needs no keys; the hashes still do.
    if (keys.keys.empty()) keys.keys = engine_->cache().BlockKeys(salt, tokens);
    for (const BlockKey& k : keys.keys) block_hashes->push_back(EventHash(k));
  }
  TierProbe p = RunOnEngineThread<TierProbe>(
      [this, salt, &tokens, &keys] { return engine_->cache().ProbeTiers(salt, tokens, keys); },
      TierProbe{});
  // The remote part is a round trip to Redis: here, on the caller's thread, not the engine's.
  engine_->cache().ProbeRemote(keys, &p);
  return p;
}

Status EngineService::ClearCacheTier(const std::string& tier) {
  Status st = RunOnEngineThread<Status>(
      [this, tier] {
        if (options_.request_log) options_.request_log->OnClear(tier);
        Status st = engine_->cache().ClearTier(tier);
        PublishGauges();
        return st;
      },
      absl::UnavailableError("the server is shutting down"));
  // SCAN + UNLINK in Redis takes round trips: here, on the caller's thread, not the engine's.
  if (st.ok() && tier == "remote") st = engine_->cache().ClearRemote();
  return st;
}

int EngineService::ClearCache() {
  return RunOnEngineThread<int>(
      [this] {
        if (options_.request_log) options_.request_log->OnClear("pool");
        const int freed = engine_->cache().Clear();
        PublishGauges();
        return freed;
      },
      0);
}

void EngineService::SetCacheEnabled(bool enabled) {
  // On the engine thread, between steps, so that a request log records the switch at its
  // place among the cache's operations (a replay of it turns the cache off at the same point).
  RunOnEngineThread<bool>(
      [this, enabled] {
        if (options_.request_log) options_.request_log->OnCacheEnabled(enabled);
        engine_->cache().SetEnabled(enabled);
        return true;
      },
      false);
}

ServiceStats EngineService::stats() const {
  ServiceStats s;
  s.cache = engine_->cache().stats();
  if (engine_->cache().has_tiers()) s.tiers = engine_->cache().tier_stats();
  s.requests_running = running_.load(std::memory_order_relaxed);
  s.requests_waiting = waiting_.load(std::memory_order_relaxed);
  s.requests_total = requests_total_.load(std::memory_order_relaxed);
  s.prompt_tokens_total = prompt_tokens_total_.load(std::memory_order_relaxed);
  s.generated_tokens_total = generated_tokens_total_.load(std::memory_order_relaxed);
  s.pool_free_blocks = pool_free_blocks_.load(std::memory_order_relaxed);
  s.pool_total_blocks = info_.num_kv_blocks;
  s.steps.steps = steps_.load(std::memory_order_relaxed);
  s.steps.step_seconds = step_seconds_.load(std::memory_order_relaxed);
  s.steps.forward_seconds = forward_seconds_.load(std::memory_order_relaxed);
  s.steps.forward_cpu_seconds = forward_cpu_seconds_.load(std::memory_order_relaxed);
  s.engine_thread_cpu_seconds = thread_cpu_seconds_.load(std::memory_order_relaxed);
  return s;
}

void EngineService::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

namespace {

RequestUsage UsageOf(const Sequence& seq, double ttft_ms, const ServiceInfo& info) {
  RequestUsage u;
  u.prefix_cache_refusal = info.prefix_cache_refusal;
  u.prompt_tokens = seq.num_prompt;
  u.completion_tokens = std::max(0, seq.num_generated());
  u.cached_tokens = std::max<int64_t>(0, seq.cached_tokens);
  const TierHit& t = seq.tier_hit;
  const int64_t below = t.host_tokens + t.disk_tokens + t.remote_tokens + t.partial_tokens;
  u.cached_tokens_by_tier = {{"pool", std::max<int64_t>(0, u.cached_tokens - below)},
                             {"host", t.host_tokens},
                             {"disk", t.disk_tokens},
                             {"remote", t.remote_tokens},
                             {"partial", t.partial_tokens}};
  u.cache_load_ms = t.load_ms;
  // The last prompt token is always computed, so a full hit leaves exactly one.
  u.diverged_at_token = u.cached_tokens < seq.num_prompt - 1 ? u.cached_tokens : -1;
  u.time_to_first_token_ms = std::max(0.0, ttft_ms);
  // A hybrid's hit resumes from exactly one state snapshot, at cached_tokens.
  if (info.state_checkpoint_blocks > 0) {
    u.state_snapshot_bytes = u.cached_tokens > 0 ? info.state_snapshot_bytes : 0;
  }
  return u;
}

}  // namespace

void EngineService::PublishGauges() {
  running_.store(engine_->num_running(), std::memory_order_relaxed);
  waiting_.store(engine_->num_waiting(), std::memory_order_relaxed);
  pool_free_blocks_.store(engine_->block_pool().num_free(), std::memory_order_relaxed);
  const StepTiming& t = engine_->step_timing();
  steps_.store(t.steps, std::memory_order_relaxed);
  step_seconds_.store(t.step_seconds, std::memory_order_relaxed);
  forward_seconds_.store(t.forward_seconds, std::memory_order_relaxed);
  forward_cpu_seconds_.store(t.forward_cpu_seconds, std::memory_order_relaxed);
  thread_cpu_seconds_.store(ThreadCpuSeconds(), std::memory_order_relaxed);
}

void EngineService::Loop() {
  pthread_setname_np(pthread_self(), "prefixd-engine");  // visible in top -H, perf, gdb
  while (true) {
    std::deque<std::pair<SequenceId, ServiceRequest>> incoming;
    std::vector<SequenceId> cancels;
    std::deque<std::function<void()>> tasks;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopping_ || !incoming_.empty() || !cancels_.empty() || !tasks_.empty() ||
               engine_->HasWork();
      });
      incoming.swap(incoming_);
      cancels.swap(cancels_);
      tasks.swap(tasks_);
      stopping = stopping_;
    }
    // One time for the whole iteration, recorded once (engine/request_log.h).
    if (options_.request_log) options_.request_log->Tick();
    for (auto& task : tasks) task();

    for (auto& [id, req] : incoming) {
      Live live{std::move(req.on_event), MonoClock::now()};
      auto added = engine_->Add(std::move(req.request), id);
      if (!added.ok()) {
        TokenEvent ev;
        ev.id = id;
        ev.finished = true;
        ev.error = added.status();
        live.on_event(ev);
        continue;
      }
      prompt_tokens_total_.fetch_add(static_cast<int64_t>(engine_->Find(id) ? engine_->Find(id)->num_prompt : 0),
                                     std::memory_order_relaxed);
      (*live_)[id.value()] = std::move(live);
      // max_tokens == 0 finishes at once, without a step.
      if (auto seq = engine_->TakeFinished(id)) {
        TokenEvent ev;
        ev.id = id;
        ev.finished = true;
        ev.finish = seq->finish;
        ev.usage = UsageOf(*seq, 0, info_);
        (*live_)[id.value()].on_event(ev);
        live_->erase(id.value());
      }
    }

    if (stopping) {
      for (auto& [raw, live] : *live_) cancels.push_back(SequenceId(raw));
    }
    for (SequenceId id : cancels) {
      auto it = live_->find(id.value());
      if (it == live_->end()) continue;  // finished already, or unknown
      engine_->Cancel(id);
      auto seq = engine_->TakeFinished(id);
      TokenEvent ev;
      ev.id = id;
      ev.finished = true;
      ev.finish = FinishReason::kCancelled;
      if (seq) {
        ev.usage = UsageOf(*seq, it->second.ttft_ms, info_);
      }
      it->second.on_event(ev);
      live_->erase(it);
    }

    if (!stopping && engine_->HasWork()) {
      auto events = engine_->Step();
      if (!events.ok()) {
        spdlog::error("engine step failed: {}; failing every running request",
                      std::string(events.status().message()));
        for (auto& [raw, live] : *live_) {
          engine_->Cancel(SequenceId(raw));
          engine_->TakeFinished(SequenceId(raw));
          TokenEvent ev;
          ev.id = SequenceId(raw);
          ev.finished = true;
          ev.error = events.status();
          live.on_event(ev);
        }
        live_->clear();
      } else {
        for (StepEvent& se : *events) {
          auto it = live_->find(se.id.value());
          if (it == live_->end()) continue;
          Live& live = it->second;
          TokenEvent ev;
          ev.id = se.id;
          if (se.token) {
            ev.token = *se.token;
            generated_tokens_total_.fetch_add(1, std::memory_order_relaxed);
            if (live.ttft_ms < 0) {
              live.ttft_ms = MsSince(live.submitted);
              // The prompt's figures are final once it produced a token.
              if (const Sequence* seq = engine_->Find(se.id)) {
                ev.usage = UsageOf(*seq, live.ttft_ms, info_);
              }
            }
          }
          ev.logprob = se.logprob;
          ev.top_logprobs = std::move(se.top_logprobs);
          if (se.finish != FinishReason::kNone) {
            ev.finished = true;
            ev.finish = se.finish;
            if (auto seq = engine_->TakeFinished(se.id)) {
              ev.usage = UsageOf(*seq, live.ttft_ms, info_);
            }
          }
          live.on_event(ev);
          if (ev.finished) live_->erase(it);
        }
      }
    }
    // Idle: nothing is lost by waiting for the copies to lower tiers, and what the tiers hold,
    // their counters and their KV events are then settled for whoever looks next.
    if (!engine_->HasWork()) engine_->cache().WaitForCopies();
    PublishGauges();
    engine_->cache().FlushEvents();  // this iteration's KV events: one batch
    if (options_.request_log) options_.request_log->Commit();
    if (stopping && live_->empty()) {
      // Run what was queued while stopping (probes wait on it), then leave.
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& task : tasks_) task();
      tasks_.clear();
      for (auto& [id, req] : incoming_) {
        TokenEvent ev;
        ev.id = id;
        ev.finished = true;
        ev.error = absl::UnavailableError("the server is shutting down");
        req.on_event(ev);
      }
      incoming_.clear();
      return;
    }
  }
}

}  // namespace prefixd
