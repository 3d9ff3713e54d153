// Engine: runs sequences through the model with continuous batching. Each Step() gives every
// running sequence its next chunk of work (one token when decoding, up to a chunk of the
// prompt when prefilling) under a per-step token budget, runs one forward pass over all of
// them, and samples where a sequence has consumed all of its known tokens.
//
// The engine owns the block pool and the backend; it is the single owner of KV state.
// Thread safety: none. One thread drives it (the CLI, or the server's engine loop).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "base/status.h"
#include "compute/backend.h"
#include "engine/sequence.h"
#include "kv/block_pool.h"
#include "model/llama_model.h"

namespace prefixd {

struct EngineOptions {
  int num_threads = 0;  // 0: all hardware threads
  int block_size = 16;
  KvDtype kv_dtype = KvDtype::kF16;
  int num_kv_blocks = 0;       // 0: enough for max_running sequences of a full context
  int context_length = 0;      // 0: the model's trained context
  int max_batch_tokens = 512;  // per step, across sequences
  int max_chunk_tokens = 512;  // per sequence per step (prefill chunk)
  int max_running = 16;        // sequences in a batch at once
};

// What one step did for one sequence.
struct StepEvent {
  SequenceId id;
  std::optional<int32_t> token;  // sampled this step
  FinishReason finish = FinishReason::kNone;
};

class Engine {
 public:
  // `model` must outlive the engine. `eos_id`: the token that ends generation (-1: none).
  static StatusOr<std::unique_ptr<Engine>> Create(const Model& model, int32_t eos_id,
                                                  const EngineOptions& options);

  // Queues a request. InvalidArgument when the prompt is empty, holds an id outside the
  // vocabulary, or with max_tokens does not fit the context.
  StatusOr<SequenceId> Add(GenerateRequest request);
  // Cancels a queued or running sequence; its blocks are released at once.
  void Cancel(SequenceId id);

  bool HasWork() const { return !waiting_.empty() || !running_.empty(); }
  // Runs one step. Errors are internal failures of the backend.
  StatusOr<std::vector<StepEvent>> Step();

  // A finished sequence's final state (removed from the engine), or nullptr if unknown or
  // not finished.
  std::unique_ptr<Sequence> TakeFinished(SequenceId id);

  const BlockPool& block_pool() const { return pool_; }
  const Backend& backend() const { return *backend_; }
  const EngineOptions& options() const { return options_; }
  int32_t context_length() const { return options_.context_length; }

 private:
  Engine(const Model& model, int32_t eos_id, const EngineOptions& options,
         std::unique_ptr<Backend> backend);
  void Admit();
  void Finish(Sequence& seq, FinishReason reason);
  // Releases the blocks of the newest running sequence for which keep() is false and puts it
  // back at the head of the queue (it is recomputed later). False when there is none.
  bool PreemptNewest(const std::function<bool(const Sequence*)>& keep);

  const Model& model_;
  const int32_t eos_id_;
  EngineOptions options_;
  std::unique_ptr<Backend> backend_;
  BlockPool pool_;
  int64_t next_id_ = 0;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // in admission order
  std::map<SequenceId, std::unique_ptr<Sequence>> finished_;
};

}  // namespace prefixd
