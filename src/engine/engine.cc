#include "engine/engine.h"

#include <algorithm>

#include "base/check.h"

namespace prefixd {

StatusOr<std::unique_ptr<Engine>> Engine::Create(const Model& model, int32_t eos_id,
                                                 const EngineOptions& options) {
  EngineOptions opts = options;
  const Hparams& hp = model.hparams();
  if (opts.context_length <= 0) opts.context_length = hp.context_length;
  if (opts.max_batch_tokens < 1 || opts.max_chunk_tokens < 1 || opts.max_running < 1) {
    return absl::InvalidArgumentError(
        "max_batch_tokens, max_chunk_tokens and max_running must be at least 1");
  }
  if (opts.block_size < 1) return absl::InvalidArgumentError("block size must be at least 1");
  if (opts.num_kv_blocks <= 0) {
    const int per_seq = (opts.context_length + opts.block_size - 1) / opts.block_size;
    opts.num_kv_blocks = per_seq * opts.max_running;
  }
  CpuBackendOptions backend_options;
  backend_options.num_threads = opts.num_threads;
  backend_options.num_kv_blocks = opts.num_kv_blocks;
  backend_options.block_size = opts.block_size;
  backend_options.kv_dtype = opts.kv_dtype;
  ASSIGN_OR_RETURN(auto backend, CreateCpuBackend(model, backend_options));
  return std::unique_ptr<Engine>(new Engine(model, eos_id, opts, std::move(backend)));
}

Engine::Engine(const Model& model, int32_t eos_id, const EngineOptions& options,
               std::unique_ptr<Backend> backend)
    : model_(model),
      eos_id_(eos_id),
      options_(options),
      backend_(std::move(backend)),
      pool_(options.num_kv_blocks) {}

StatusOr<SequenceId> Engine::Add(GenerateRequest request) {
  const int32_t vocab = model_.hparams().vocab_size;
  if (request.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (int32_t t : request.prompt) {
    if (t < 0 || t >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt token id ", t, " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (static_cast<int64_t>(request.prompt.size()) >= options_.context_length) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", request.prompt.size(), " tokens, which does not fit the context of ",
        options_.context_length, " tokens (one more is needed to generate)"));
  }
  if (request.max_tokens < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  auto seq = std::make_unique<Sequence>();
  seq->id = SequenceId(next_id_++);
  seq->tokens = request.prompt;
  seq->num_prompt = static_cast<int32_t>(request.prompt.size());
  seq->sampler = std::make_unique<Sampler>(request.sampling);
  seq->request = std::move(request);
  const SequenceId id = seq->id;
  if (seq->request.max_tokens == 0) {
    Finish(*seq, FinishReason::kLength);
    finished_[id] = std::move(seq);
    return id;
  }
  waiting_.push_back(std::move(seq));
  return id;
}

void Engine::Cancel(SequenceId id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == id) {
      Finish(**it, FinishReason::kCancelled);
      finished_[id] = std::move(*it);
      waiting_.erase(it);
      return;
    }
  }
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->id == id) {
      Finish(**it, FinishReason::kCancelled);
      finished_[id] = std::move(*it);
      running_.erase(it);
      return;
    }
  }
}

std::unique_ptr<Sequence> Engine::TakeFinished(SequenceId id) {
  auto it = finished_.find(id);
  if (it == finished_.end()) return nullptr;
  auto seq = std::move(it->second);
  finished_.erase(it);
  return seq;
}

void Engine::Admit() {
  while (!waiting_.empty() && static_cast<int>(running_.size()) < options_.max_running) {
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

void Engine::Finish(Sequence& seq, FinishReason reason) {
  seq.finish = reason;
  seq.table.Release(pool_);
}

bool Engine::PreemptNewest(const std::function<bool(const Sequence*)>& keep) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if (keep(it->get())) continue;
    Sequence& victim = **it;
    victim.table.Release(pool_);
    victim.num_computed = 0;  // recomputed from scratch when it runs again
    waiting_.push_front(std::move(*it));
    running_.erase(std::next(it).base());
    return true;
  }
  return false;
}

StatusOr<std::vector<StepEvent>> Engine::Step() {
  Admit();
  std::vector<StepEvent> events;
  if (running_.empty()) return events;

  // Plan: decoding sequences first (one token each keeps latency flat), then prompt chunks,
  // under the step's token budget.
  std::vector<Sequence*> order;
  for (auto& s : running_) {
    if (s->tokens.size() - s->num_computed == 1) order.push_back(s.get());
  }
  for (auto& s : running_) {
    if (s->tokens.size() - s->num_computed > 1) order.push_back(s.get());
  }
  int budget = options_.max_batch_tokens;
  std::vector<std::pair<Sequence*, int64_t>> chunks;
  std::vector<BlockCopy> copies;
  for (size_t i = 0; i < order.size() && budget > 0; ++i) {
    Sequence* seq = order[i];
    if (std::find_if(running_.begin(), running_.end(),
                     [&](const auto& r) { return r.get() == seq; }) == running_.end()) {
      continue;  // preempted earlier in this loop
    }
    const int64_t pending = static_cast<int64_t>(seq->tokens.size()) - seq->num_computed;
    const int64_t len = std::min<int64_t>({pending, options_.max_chunk_tokens, budget});
    // Out of blocks: send the newest sequence that is not part of this step back to the queue.
    auto in_step = [&](const Sequence* cand) {
      return cand == seq || std::any_of(chunks.begin(), chunks.end(),
                                        [&](const auto& ch) { return ch.first == cand; });
    };
    std::optional<std::vector<BlockCopy>> c;
    while (!(c = seq->table.PrepareWrite(pool_, options_.block_size, seq->num_computed,
                                         seq->num_computed + len))) {
      if (!PreemptNewest(in_step)) break;
    }
    if (!c) {
      if (chunks.empty() && running_.size() == 1) {
        // Alone and still no room: the pool cannot hold this sequence at all.
        Finish(*seq, FinishReason::kContext);
        events.push_back({seq->id, std::nullopt, seq->finish});
        finished_[seq->id] = std::move(running_.front());
        running_.clear();
      }
      continue;
    }
    copies.insert(copies.end(), c->begin(), c->end());
    chunks.emplace_back(seq, len);
    budget -= static_cast<int>(len);
  }
  if (chunks.empty()) return events;

  backend_->CopyBlocks(copies);
  ForwardBatch batch;
  for (auto& [seq, len] : chunks) {
    ForwardSequence fs;
    fs.tokens = std::span<const int32_t>(seq->tokens).subspan(seq->num_computed, len);
    fs.start_pos = seq->num_computed;
    fs.blocks = seq->table.blocks();
    fs.want_logits =
        seq->request.record_logits || seq->num_computed + len == static_cast<int64_t>(seq->tokens.size());
    fs.all_logits = seq->request.record_logits;
    batch.sequences.push_back(fs);
  }
  ForwardOutput out;
  RETURN_IF_ERROR(backend_->Forward(batch, &out));

  const int32_t vocab = out.vocab_size;
  for (size_t s = 0; s < chunks.size(); ++s) {
    auto [seq, len] = chunks[s];
    const int64_t first_pos = seq->num_computed;
    seq->num_computed += len;
    if (seq->request.record_logits) {
      // Rows for positions already recorded (before a preemption) are not recorded twice.
      const int64_t have = static_cast<int64_t>(seq->logits.size()) / vocab;
      for (int64_t i = 0; i < len; ++i) {
        if (first_pos + i < have) continue;
        auto row = out.Row(out.first_row[s] + static_cast<int32_t>(i));
        seq->logits.insert(seq->logits.end(), row.begin(), row.end());
      }
    }
    if (seq->num_computed < static_cast<int64_t>(seq->tokens.size())) continue;
    const int32_t last_row = out.first_row[s] + (seq->request.record_logits ? len - 1 : 0);
    const int32_t token = seq->sampler->Sample(out.Row(last_row));
    seq->tokens.push_back(token);
    StepEvent ev{seq->id, token, FinishReason::kNone};
    if (!seq->request.ignore_eos && token == eos_id_) {
      ev.finish = FinishReason::kEos;
    } else if (seq->num_generated() >= seq->request.max_tokens) {
      ev.finish = FinishReason::kLength;
    } else if (static_cast<int64_t>(seq->tokens.size()) >= options_.context_length) {
      ev.finish = FinishReason::kContext;
    }
    if (ev.finish != FinishReason::kNone) Finish(*seq, ev.finish);
    events.push_back(ev);
  }
  // Move finished sequences out of the running set.
  for (auto it = running_.begin(); it != running_.end();) {
    if ((*it)->finish != FinishReason::kNone) {
      finished_[(*it)->id] = std::move(*it);
      it = running_.erase(it);
    } else {
      ++it;
    }
  }
  return events;
}

}  // namespace prefixd
