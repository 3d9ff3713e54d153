// Engine: runs sequences through the model with continuous batching over a paged KV pool
// whose blocks the prefix cache shares between requests.
//
// Each Step() admits waiting sequences (matching their prompts against the prefix cache and
// adopting the cached blocks), gives every running sequence its next chunk of work (one
// token when decoding, up to a chunk of the prompt when prefilling) under a per-step token
// budget, runs one forward pass over all of them, and samples where a sequence has consumed
// all of its known tokens. A prompt is indexed in the cache as soon as its prefill
// completes; a finished sequence indexes everything it computed.
//
// The engine owns the block pool, the prefix cache and the backend: it is the single owner of
// KV state. Thread safety: none. One thread drives it (the CLI, or EngineService's loop);
// Validate() and the const accessors of immutable state may be called from any thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "cache/prefix_cache.h"
#include "compute/backend.h"
#include "engine/request_log.h"
#include "engine/sequence.h"
#include "kv/block_pool.h"
#include "kv/state_snapshots.h"
#include "model/llama_model.h"

namespace prefixd {

enum class BackendKind { kCpu, kCuda };

struct EngineOptions {
  BackendKind backend = BackendKind::kCpu;
  int cuda_device = 0;
  int num_threads = 0;  // 0: all hardware threads (CPU backend)
  int block_size = 16;
  KvDtype kv_dtype = KvDtype::kF16;
  QuantDot quant_dot = QuantDot::kInt8;  // CPU backend: integer or F32 dots of quantised weights
  // Pool size. 0: enough for max_running sequences of a full context plus the cache budget.
  int num_kv_blocks = 0;
  int context_length = 0;      // 0: the model's trained context
  int max_batch_tokens = 512;  // per step, across sequences
  int max_chunk_tokens = 512;  // per sequence per step (prefill chunk)
  int max_running = 16;        // sequences in a batch at once
  bool prefix_cache = true;
  int64_t cache_bytes = int64_t{256} << 20;  // KV bytes the prefix tree may keep
  BlockHashKind cache_hash = BlockHashKind::kXxh3;
  TierOptions tiers;  // host RAM, disk, partial tails, scope policy
  // KV events (--kv-events): where the cache reports residency changes; nullptr: none. Must
  // outlive the engine. The engine service flushes one batch per engine loop iteration.
  KvEventLog* kv_events = nullptr;
  // Retention (ARCHITECTURE.md invariant 9): the share of each tier's budget that retained
  // blocks may hold (--retention-max-share), and the clock marks expire on (nullptr: the
  // steady clock; tests pass a ManualClock). The clock must outlive the engine.
  double retention_max_share = 0.5;
  const Clock* clock = nullptr;
  // Hybrid models (--state-checkpoint-blocks): the recurrent state is snapshotted every this
  // many blocks (and before each prompt's last token, and where a finished sequence's computed
  // tokens end), the only places a cached prefix can resume. Each snapshot costs
  // Backend::recurrent_state_floats() floats, counted against cache_bytes. 0: no snapshots,
  // and the prefix cache reuses nothing for such a model (prefix_cache_refusal).
  // kStateCheckpointAuto: as many blocks as one snapshot's bytes fill in KV blocks (at least
  // 1), so the snapshots take about as much of the budget as the KV they stand beside: a real
  // hybrid's state is ~100 blocks of its KV, and a snapshot every block would leave the cache
  // room for a few hundred tokens. options() holds the resolved number.
  static constexpr int kStateCheckpointAuto = -1;
  int state_checkpoint_blocks = kStateCheckpointAuto;
};

// What one step did for one sequence.
struct StepEvent {
  SequenceId id;
  std::optional<int32_t> token;  // sampled this step
  FinishReason finish = FinishReason::kNone;
  // With GenerateRequest::logprobs > 0: the chosen token's logprob and the top alternatives.
  // ({}: a brace init that stops at finish leaves them empty without -Wextra's warning.)
  std::optional<TokenLogprob> logprob{};
  std::vector<TokenLogprob> top_logprobs{};
};

// Where the engine thread's steps go: the forward pass (K/V block copies included) and the
// rest (admission and the cache's protocol, scheduling, sampling). CPU seconds are the engine
// thread's own; the forward pass's other threads are not counted.
struct StepTiming {
  int64_t steps = 0;
  double step_seconds = 0;         // wall time inside Step()
  double forward_seconds = 0;      // wall time of the forward passes
  double forward_cpu_seconds = 0;  // the engine thread's CPU time in the forward passes
};

class Engine {
 public:
  // `model` must outlive the engine. `eos_id`: the token that ends generation (-1: none).
  static StatusOr<std::unique_ptr<Engine>> Create(const Model& model, int32_t eos_id,
                                                  const EngineOptions& options);

  // InvalidArgument when the prompt is empty, holds an id outside the vocabulary, or does not
  // leave room in the context for one generated token. Thread-safe.
  Status Validate(const GenerateRequest& request) const;
  // Queues a request (after Validate). `id`, when given, must be unused; else one is chosen.
  StatusOr<SequenceId> Add(GenerateRequest request, std::optional<SequenceId> id = std::nullopt);
  // Cancels a queued or running sequence: what it computed is indexed in the cache and its
  // blocks are released at once. Returns false for an unknown or finished id.
  bool Cancel(SequenceId id);

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  // Runs one step. Errors are internal failures of the backend.
  StatusOr<std::vector<StepEvent>> Step();

  // A finished sequence's final state (removed from the engine), or nullptr if unknown or
  // not finished.
  std::unique_ptr<Sequence> TakeFinished(SequenceId id);
  // A running or waiting sequence (nullptr otherwise); valid until the next Step/Cancel.
  const Sequence* Find(SequenceId id) const;

  const StepTiming& step_timing() const { return timing_; }

  // --request-log: every cache-facing operation from now on is recorded there, in order
  // (engine/request_log.h); nullptr: none. Must outlive the engine or be reset first. The
  // caller Ticks and Commits the log around its steps (EngineService does).
  void SetRequestLog(RequestLog* log) { request_log_ = log; }

  PrefixCache& cache() { return *cache_; }
  const PrefixCache& cache() const { return *cache_; }
  const BlockPool& block_pool() const { return pool_; }
  const Backend& backend() const { return *backend_; }
  // Hybrid models with the cache on: the recurrent-state snapshots beside the pool's blocks;
  // nullptr otherwise.
  const StateSnapshots* state_snapshots() const { return snapshots_.get(); }
  const EngineOptions& options() const { return options_; }
  const Model& model() const { return model_; }
  int32_t context_length() const { return options_.context_length; }
  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }
  // Why the prefix cache reuses nothing for this model even though it was asked for (a hybrid
  // model run with --state-checkpoint-blocks 0 has no snapshots to resume its recurrent state
  // from), or empty. Every request is then a miss: prefix_cache is forced off in options().
  const std::string& prefix_cache_refusal() const { return prefix_cache_refusal_; }
  // What one cached block costs against cache_bytes: its KV and, on a hybrid with the cache
  // on, its share (1/state_checkpoint_blocks, rounded up) of a state snapshot.
  int64_t cached_block_bytes() const { return cached_block_bytes_; }

 private:
  // Step() without its timing.
  StatusOr<std::vector<StepEvent>> RunStep();
  Engine(const Model& model, int32_t eos_id, const EngineOptions& options,
         std::unique_ptr<Backend> backend);
  // Builds the prefix cache (and its lower tiers) over the pool.
  Status CreateCache(int max_cached_blocks);
  // One sequence's share of a step: tokens [num_computed, num_computed + len).
  struct Chunk {
    Sequence* seq;
    int64_t len;
  };
  // Asks the cache to admit each waiting sequence, in order, while there is room to run.
  void Admit();
  // Chooses this step's chunks under the token budget and reserves their blocks; copies to
  // perform first go to `copies`; a sequence the pool cannot hold at all ends in `events`.
  std::vector<Chunk> PlanStep(std::vector<BlockCopy>* copies, std::vector<StepEvent>* events);
  // Advances each chunk's sequence, indexes completed prompts, samples and finishes.
  void ApplyResults(const std::vector<Chunk>& chunks, const ForwardOutput& out,
                    std::vector<StepEvent>* events);
  // Makes room in the pool for `seq` to write tokens [num_computed, num_computed + len):
  // evicts cached entries, then preempts newer sequences not in `protect`.
  std::optional<std::vector<BlockCopy>> ReserveWrite(Sequence& seq, int64_t len,
                                                     const std::function<bool(const Sequence*)>& protect);
  // ReserveWrite, recorded in the request log with the sequences it preempted.
  std::optional<std::vector<BlockCopy>> ReserveAndLog(Sequence& seq, int64_t len,
                                                      const std::function<bool(const Sequence*)>& protect);
  // Hybrid models: a snapshot point is a checkpoint block boundary or the position before a
  // prompt's last token. The points strictly inside a chunk of `len` tokens from
  // seq.num_computed are captured by the backend during the forward pass (into
  // capture_buffers_), the one at its end is the sequence's own state afterwards.
  struct StateCapture {
    int64_t position = 0;  // the state after [0, position)
    float* state = nullptr;
  };
  bool IsSnapshotPoint(const Sequence& seq, int64_t position) const;
  void PlanCaptures(const Sequence& seq, int64_t len, std::vector<StateCapture>* out);
  // After a chunk: saves the captured states and, at a snapshot point, the sequence's own,
  // each beside the block of the token before its position.
  void SaveSnapshots(Sequence& seq, std::span<const StateCapture> captured);
  // The sequence's own recurrent state where its computed tokens end, beside the block of
  // the last of them. REQUIRES: snapshots on, seq.num_computed > 0.
  void PutOwnState(const Sequence& seq);
  // A hybrid leaving the engine (finished or preempted): its state where its computed tokens
  // end, so a next turn that sends back the reply (or the preempted sequence itself) resumes
  // there instead of at the prompt's end.
  void SaveEndSnapshot(Sequence& seq);
  // Admission of a hybrid: the recurrent state at the hit's end (zeros at 0, else its snapshot).
  void RestoreState(Sequence& seq, const CacheHit& hit);
  // Indexes what `seq` computed ([0, num_computed)) in the prefix cache.
  void IndexComputed(Sequence& seq);
  // Ends `seq`: indexes it, unlocks its cache path and releases its blocks.
  void Finish(Sequence& seq, FinishReason reason);
  // Sends the newest running sequence for which protect() is false back to the head of the
  // queue, releasing its blocks (it is recomputed, mostly from cache, later).
  bool PreemptNewest(const std::function<bool(const Sequence*)>& protect);
  // With a request log: the sequences preempted by the ReserveWrite under way.
  std::vector<SequenceId> preempted_;
  void RecordLogits(Sequence& seq, int64_t first_pos, const ForwardOutput& out, int32_t row,
                    int64_t len);

  const Model& model_;
  const int32_t eos_id_;
  EngineOptions options_;
  std::unique_ptr<Backend> backend_;
  BlockPool pool_;
  std::unique_ptr<StateSnapshots> snapshots_;  // before cache_: the cache reads it
  // Per step, per chunk: the states captured mid-chunk (buffers reused across steps).
  std::vector<std::vector<StateCapture>> captures_;
  std::vector<std::vector<ForwardSequence::StateCapture>> forward_captures_;
  std::vector<std::vector<float>> capture_buffers_;
  size_t capture_buffers_used_ = 0;
  std::unique_ptr<PrefixCache> cache_;
  int64_t next_id_ = 0;
  int64_t num_preemptions_ = 0;
  std::string prefix_cache_refusal_;
  int64_t cached_block_bytes_ = 0;  // see cached_block_bytes(); set once by Create
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // in admission order
  std::map<SequenceId, std::unique_ptr<Sequence>> finished_;
  StepTiming timing_;
  RequestLog* request_log_ = nullptr;
};

}  // namespace prefixd
