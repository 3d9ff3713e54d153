#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "base/check.h"
#include "base/log.h"
#include "base/thread_cpu_time.h"

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
  if (opts.block_size < 1 || opts.block_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("block size ", opts.block_size, " is out of range [1, 4096]"));
  }
  if (opts.cache_bytes < 0) return absl::InvalidArgumentError("cache bytes must be >= 0");
  // A hybrid resumes only where a recurrent-state snapshot was taken: with none asked for,
  // resuming would compute from a zero state, so nothing is reused at all.
  std::string refusal;
  if (opts.state_checkpoint_blocks < 0 &&
      opts.state_checkpoint_blocks != EngineOptions::kStateCheckpointAuto) {
    return absl::InvalidArgumentError(absl::StrCat(
        "state checkpoint blocks must be >= 0 (or auto), not ", opts.state_checkpoint_blocks));
  }
  KvLayout layout{hp.num_attention_layers(), hp.kv_dim(), opts.block_size, opts.kv_dtype};
  const int64_t block_bytes = layout.BlockBytes();
  const int64_t state_bytes = hp.recurrent_state_floats() * int64_t{sizeof(float)};
  if (opts.state_checkpoint_blocks == EngineOptions::kStateCheckpointAuto) {
    opts.state_checkpoint_blocks =
        static_cast<int>(std::clamp<int64_t>((state_bytes + block_bytes - 1) / block_bytes, 1,
                                             int64_t{1} << 20));
  }
  if (hp.hybrid() && opts.prefix_cache && opts.state_checkpoint_blocks == 0) {
    refusal = absl::StrCat("the model's architecture '", hp.arch,
                           "' has recurrent (DeltaNet) layers and --state-checkpoint-blocks is 0, "
                           "so no state snapshot exists to resume from; every request computes "
                           "its whole prompt (set it to 1 or more to reuse prefixes)");
    spdlog::warn("prefix cache off: {}", refusal);
    opts.prefix_cache = false;
  }
  // A cached block of a hybrid also carries, on average, 1/k of a state snapshot.
  int64_t cached_block_bytes = block_bytes;
  if (hp.hybrid() && opts.prefix_cache) {
    cached_block_bytes += (state_bytes + opts.state_checkpoint_blocks - 1) /
                          opts.state_checkpoint_blocks;
  }
  const int max_cached_blocks =
      opts.prefix_cache
          ? static_cast<int>(std::min<int64_t>(opts.cache_bytes / cached_block_bytes, 1 << 30))
          : 0;
  if (opts.num_kv_blocks <= 0) {
    const int per_seq = layout.BlocksFor(opts.context_length) + 1;  // +1: a copied boundary block
    opts.num_kv_blocks = per_seq * opts.max_running + max_cached_blocks;
  }
  std::unique_ptr<Backend> backend;
  if (opts.backend == BackendKind::kCuda) {
    CudaBackendOptions backend_options;
    backend_options.device = opts.cuda_device;
    backend_options.num_kv_blocks = opts.num_kv_blocks;
    backend_options.block_size = opts.block_size;
    backend_options.kv_dtype = opts.kv_dtype;
    ASSIGN_OR_RETURN(backend, CreateCudaBackend(model, backend_options));
  } else {
    CpuBackendOptions backend_options;
    backend_options.num_threads = opts.num_threads;
    backend_options.num_kv_blocks = opts.num_kv_blocks;
    backend_options.block_size = opts.block_size;
    backend_options.kv_dtype = opts.kv_dtype;
    backend_options.quant_dot = opts.quant_dot;
    ASSIGN_OR_RETURN(backend, CreateCpuBackend(model, backend_options));
  }
  auto engine = std::unique_ptr<Engine>(new Engine(model, eos_id, opts, std::move(backend)));
  engine->prefix_cache_refusal_ = std::move(refusal);
  engine->cached_block_bytes_ = cached_block_bytes;
  if (const int64_t state = engine->backend_->recurrent_state_floats(); state > 0 && opts.prefix_cache) {
    engine->snapshots_ = std::make_unique<StateSnapshots>(opts.num_kv_blocks, state);
    StateSnapshots* snapshots = engine->snapshots_.get();
    engine->pool_.SetFreeListener([snapshots](BlockId b) { snapshots->Drop(b); });
  }
  RETURN_IF_ERROR(engine->CreateCache(max_cached_blocks));
  return engine;
}

Engine::Engine(const Model& model, int32_t eos_id, const EngineOptions& options,
               std::unique_ptr<Backend> backend)
    : model_(model),
      eos_id_(eos_id),
      options_(options),
      backend_(std::move(backend)),
      pool_(options.num_kv_blocks) {}

Status Engine::CreateCache(int max_cached_blocks) {
  const EngineOptions& options = options_;
  const Model& model = model_;
  PrefixCacheOptions co;
  co.enabled = options.prefix_cache;
  co.hash = options.cache_hash;
  const Hparams& hp = model.hparams();
  ModelFingerprint fp;
  fp.architecture = hp.arch;
  fp.weights_digest_hi = model.weights_digest()[1];
  fp.weights_digest_lo = model.weights_digest()[0];
  fp.kv_dtype = options.kv_dtype;
  fp.block_size = options.block_size;
  fp.rope_freq_base = hp.rope_freq_base;
  fp.rope_freq_scale = hp.rope_freq_scale;
  fp.head_dim = hp.head_dim;
  fp.rope_dims = hp.rope_dims;
  fp.rms_eps = hp.rms_eps;
  fp.numerics = backend_->numerics();
  co.fingerprint = fp.Serialize();
  // With the cache on and no budget (cache_bytes smaller than a block) nothing is kept.
  co.max_cached_blocks = std::max(1, max_cached_blocks);
  co.events = options.kv_events;
  co.clock = options.clock;
  co.retention_max_share = options.retention_max_share;
  co.snapshots = snapshots_.get();
  if (snapshots_ != nullptr) {
    co.block_bytes = backend_->kv_layout().BlockBytes();
    co.max_cached_bytes = std::max<int64_t>(
        options.cache_bytes, int64_t{co.max_cached_blocks} * co.block_bytes + snapshots_->state_bytes());
  }
  std::unique_ptr<TierController> tiers;
  TierOptions to = options.tiers;
  to.clock = options.clock;
  to.retention_max_share = options.retention_max_share;
  // A hybrid's tails carry the recurrent state at their end, so they resume exactly too.
  to.partial_supported = hp.kv_slices_per_token || snapshots_ != nullptr;
  to.snapshots = snapshots_.get();
  if (options.prefix_cache &&
      (to.host_bytes > 0 || !to.disk_dir.empty() || to.remote || to.partial_max_entries > 0)) {
    ASSIGN_OR_RETURN(tiers, TierController::Create(to, co.fingerprint, co.hash, options.block_size,
                                                   backend_.get(), &pool_));
  }
  cache_ = std::make_unique<PrefixCache>(&pool_, options.block_size, co, std::move(tiers));
  return absl::OkStatus();
}

Status Engine::Validate(const GenerateRequest& request) const {
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
  if (request.logprobs < 0 || request.logprobs > 20) {
    return absl::InvalidArgumentError("logprobs must be between 0 and 20");
  }
  return absl::OkStatus();
}

StatusOr<SequenceId> Engine::Add(GenerateRequest request, std::optional<SequenceId> id) {
  RETURN_IF_ERROR(Validate(request));
  auto seq = std::make_unique<Sequence>();
  seq->id = id ? *id : SequenceId(next_id_++);
  if (id) next_id_ = std::max(next_id_, id->value() + 1);
  seq->tokens = request.prompt;
  seq->num_prompt = static_cast<int32_t>(request.prompt.size());
  seq->sampler = std::make_unique<Sampler>(request.sampling);
  seq->request = std::move(request);
  seq->ticket = CacheTicket(seq->id.value(), seq->request.cache_salt, seq->num_prompt,
                            seq->request.retention);
  const SequenceId sid = seq->id;
  if (seq->request.max_tokens == 0) {
    seq->cached_tokens = 0;
    seq->finish = FinishReason::kLength;
    finished_[sid] = std::move(seq);
    return sid;
  }
  waiting_.push_back(std::move(seq));
  return sid;
}

bool Engine::Cancel(SequenceId id) {
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if ((*it)->id == id) {
      Finish(**it, FinishReason::kCancelled);
      finished_[id] = std::move(*it);
      waiting_.erase(it);
      return true;
    }
  }
  for (auto it = running_.begin(); it != running_.end(); ++it) {
    if ((*it)->id == id) {
      Finish(**it, FinishReason::kCancelled);
      finished_[id] = std::move(*it);
      running_.erase(it);
      return true;
    }
  }
  return false;
}

std::unique_ptr<Sequence> Engine::TakeFinished(SequenceId id) {
  auto it = finished_.find(id);
  if (it == finished_.end()) return nullptr;
  auto seq = std::move(it->second);
  finished_.erase(it);
  return seq;
}

const Sequence* Engine::Find(SequenceId id) const {
  for (const auto& s : running_) {
    if (s->id == id) return s.get();
  }
  for (const auto& s : waiting_) {
    if (s->id == id) return s.get();
  }
  return nullptr;
}

void Engine::Admit() {
  for (auto it = waiting_.begin();
       it != waiting_.end() && static_cast<int>(running_.size()) < options_.max_running;) {
    Sequence& seq = **it;
    const bool reading = seq.ticket.reads_started();
    if (cache_->Admit(seq.ticket, seq.tokens) == Admission::kPending) {
      if (request_log_ && !reading && seq.ticket.reads_started()) request_log_->OnReadsStarted(seq);
      ++it;
      continue;
    }
    const CacheHit& hit = seq.ticket.hit();
    if (request_log_) request_log_->OnAdmitted(seq, hit.num_tokens, hit.tier.disk_blocks);
    RestoreState(seq, hit);
    seq.table.Adopt(hit.blocks);
    seq.num_computed = hit.num_tokens;
    if (seq.cached_tokens < 0) {
      seq.cached_tokens = std::min<int64_t>(hit.num_tokens, seq.num_prompt);
      seq.tier_hit = hit.tier;
    }
    running_.push_back(std::move(*it));
    it = waiting_.erase(it);
  }
}

void Engine::RestoreState(Sequence& seq, const CacheHit& hit) {
  const int64_t state = backend_->recurrent_state_floats();
  if (state == 0) return;
  if (hit.num_tokens == 0) {
    seq.recurrent_state.assign(state, 0.0f);
    return;
  }
  // The cache cut the hit back to a snapshot (CutToResumePoint), and the hit's blocks are
  // Ref'ed, so the snapshot beside its last block is there.
  PREFIXD_CHECK(snapshots_ != nullptr, "a cache hit on a hybrid model without snapshots");
  const std::span<const float> saved =
      snapshots_->Get(hit.blocks.back(), hit.num_tokens);
  PREFIXD_CHECK(!saved.empty(), "a hybrid's cache hit ends where no state snapshot is");
  seq.recurrent_state.assign(saved.begin(), saved.end());
  snapshots_->Touch(hit.blocks.back(), hit.num_tokens);  // recency for the budget's trim
}

bool Engine::IsSnapshotPoint(const Sequence& seq, int64_t position) const {
  if (position <= 0) return false;
  const int64_t every = int64_t{options_.block_size} * options_.state_checkpoint_blocks;
  // The position before the prompt's last token: a repeat of the prompt resumes there (the
  // last token is always computed, for its logits).
  return position % every == 0 || position == seq.num_prompt - 1;
}

void Engine::PlanCaptures(const Sequence& seq, int64_t len, std::vector<StateCapture>* out) {
  out->clear();
  if (snapshots_ == nullptr) return;
  const int64_t every = int64_t{options_.block_size} * options_.state_checkpoint_blocks;
  const int64_t first = seq.num_computed, end = first + len;
  std::vector<int64_t> points;
  for (int64_t p = (first / every + 1) * every; p < end; p += every) points.push_back(p);
  if (const int64_t p = seq.num_prompt - 1; p > first && p < end) points.push_back(p);
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  for (const int64_t p : points) {
    if (capture_buffers_.size() <= capture_buffers_used_) capture_buffers_.emplace_back();
    std::vector<float>& buffer = capture_buffers_[capture_buffers_used_++];
    buffer.resize(snapshots_->state_floats());
    out->push_back({p, buffer.data()});
  }
}

void Engine::SaveSnapshots(Sequence& seq, std::span<const StateCapture> captured) {
  if (snapshots_ == nullptr) return;
  const std::span<const BlockId> blocks = seq.table.blocks();
  for (const StateCapture& c : captured) {  // the state after [0, c.position), taken mid-chunk
    snapshots_->Put(blocks[(c.position - 1) / options_.block_size], c.position,
                    std::span<const float>(c.state, snapshots_->state_floats()));
  }
  if (IsSnapshotPoint(seq, seq.num_computed)) PutOwnState(seq);
}

void Engine::PutOwnState(const Sequence& seq) {
  snapshots_->Put(seq.table.blocks()[(seq.num_computed - 1) / options_.block_size],
                  seq.num_computed, seq.recurrent_state);
}

void Engine::IndexComputed(Sequence& seq) {
  if (seq.num_computed <= 0) return;
  cache_->Insert(seq.ticket, std::span<const int32_t>(seq.tokens).first(seq.num_computed),
                 seq.table.blocks());
}

void Engine::SaveEndSnapshot(Sequence& seq) {
  if (snapshots_ == nullptr || seq.num_computed <= 0 || seq.recurrent_state.empty()) return;
  if (IsSnapshotPoint(seq, seq.num_computed)) return;  // SaveSnapshots took it already
  PutOwnState(seq);
}

void Engine::Finish(Sequence& seq, FinishReason reason) {
  // Whether the log has its request: admitted, or waiting for the disk (else the cache never
  // saw it).
  const bool logged = seq.cached_tokens >= 0 || seq.ticket.reads_started();
  seq.finish = reason;
  SaveEndSnapshot(seq);
  IndexComputed(seq);
  cache_->Release(seq.ticket);
  seq.table.Release(pool_);
  seq.recurrent_state = {};
  if (seq.cached_tokens < 0) seq.cached_tokens = 0;
  if (request_log_ && logged) request_log_->OnFinished(seq);
}

bool Engine::PreemptNewest(const std::function<bool(const Sequence*)>& protect) {
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if (protect(it->get())) continue;
    Sequence& victim = **it;
    // Keep what it computed in the cache: when it comes back, most of it is a hit.
    SaveEndSnapshot(victim);
    IndexComputed(victim);
    cache_->Release(victim.ticket);
    victim.table.Release(pool_);
    victim.num_computed = 0;
    ++num_preemptions_;
    if (request_log_) preempted_.push_back(victim.id);
    waiting_.push_front(std::move(*it));
    running_.erase(std::next(it).base());
    return true;
  }
  return false;
}

std::optional<std::vector<BlockCopy>> Engine::ReserveWrite(
    Sequence& seq, int64_t len, const std::function<bool(const Sequence*)>& protect) {
  const int block_size = options_.block_size;
  while (true) {
    auto copies = seq.table.PrepareWrite(pool_, block_size, seq.num_computed, seq.num_computed + len);
    if (copies) return copies;
    const int needed = static_cast<int>((len + block_size - 1) / block_size) + 1;
    if (cache_->Evict(needed) > 0) continue;
    if (!PreemptNewest(protect)) return std::nullopt;
  }
}

std::optional<std::vector<BlockCopy>> Engine::ReserveAndLog(
    Sequence& seq, int64_t len, const std::function<bool(const Sequence*)>& protect) {
  if (request_log_ == nullptr) return ReserveWrite(seq, len, protect);
  preempted_.clear();
  auto copies = ReserveWrite(seq, len, protect);
  // Recorded even when it failed: the evictions and preemptions on the way happened.
  request_log_->OnWrite(seq.id, len, preempted_, copies.has_value());
  return copies;
}

void Engine::RecordLogits(Sequence& seq, int64_t first_pos, const ForwardOutput& out,
                          int32_t row, int64_t len) {
  const int64_t vocab = out.vocab_size;
  if (seq.logits_start < 0) seq.logits_start = first_pos;
  // Rows already recorded (before a preemption) are not recorded twice.
  const int64_t have_end = seq.logits_start + static_cast<int64_t>(seq.logits.size()) / vocab;
  for (int64_t i = 0; i < len; ++i) {
    if (first_pos + i < have_end) continue;
    auto r = out.Row(row + static_cast<int32_t>(i));
    seq.logits.insert(seq.logits.end(), r.begin(), r.end());
  }
}

namespace {

// log-softmax of the chosen token and the top `n` alternatives, in double for the sum.
void ComputeLogprobs(std::span<const float> logits, int32_t chosen, int n, StepEvent* ev) {
  float max = -INFINITY;
  for (float v : logits) max = std::max(max, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
  const double log_z = max + std::log(sum);
  ev->logprob = TokenLogprob{chosen, static_cast<float>(logits[chosen] - log_z)};
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  const size_t k = std::min<size_t>(n, ids.size());
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  for (size_t i = 0; i < k; ++i) {
    ev->top_logprobs.push_back({ids[i], static_cast<float>(logits[ids[i]] - log_z)});
  }
}

}  // namespace

std::vector<Engine::Chunk> Engine::PlanStep(std::vector<BlockCopy>* copies,
                                            std::vector<StepEvent>* events) {
  // Decoding sequences first (one token each keeps latency flat), then prompt chunks, under
  // the step's token budget.
  std::vector<Sequence*> order;
  for (auto& s : running_) {
    if (s->tokens.size() - s->num_computed == 1) order.push_back(s.get());
  }
  for (auto& s : running_) {
    if (s->tokens.size() - s->num_computed > 1) order.push_back(s.get());
  }
  int budget = options_.max_batch_tokens;
  std::vector<Chunk> chunks;
  auto is_running = [&](const Sequence* s) {
    return std::any_of(running_.begin(), running_.end(),
                       [&](const auto& r) { return r.get() == s; });
  };
  for (Sequence* seq : order) {
    if (budget <= 0) break;
    if (!is_running(seq)) continue;  // preempted earlier in this loop
    const int64_t pending = static_cast<int64_t>(seq->tokens.size()) - seq->num_computed;
    const int64_t len = std::min<int64_t>({pending, options_.max_chunk_tokens, budget});
    auto protect = [&](const Sequence* cand) {
      return cand == seq || std::any_of(chunks.begin(), chunks.end(),
                                        [&](const Chunk& ch) { return ch.seq == cand; });
    };
    auto c = ReserveAndLog(*seq, len, protect);
    if (!c) {
      if (chunks.empty() && running_.size() == 1) {
        // Alone, with the cache emptied, and still no room: the pool cannot hold it at all.
        Finish(*seq, FinishReason::kContext);
        events->push_back({seq->id, std::nullopt, seq->finish});
        finished_[seq->id] = std::move(running_.front());
        running_.clear();
      }
      continue;
    }
    copies->insert(copies->end(), c->begin(), c->end());
    chunks.push_back({seq, len});
    budget -= static_cast<int>(len);
  }
  return chunks;
}

void Engine::ApplyResults(const std::vector<Chunk>& chunks, const ForwardOutput& out,
                          std::vector<StepEvent>* events) {
  for (size_t s = 0; s < chunks.size(); ++s) {
    auto [seq, len] = chunks[s];
    const int64_t first_pos = seq->num_computed;
    seq->num_computed += len;
    SaveSnapshots(*seq, captures_[s]);  // before the prompt is indexed and written through below
    if (seq->request.record_logits) RecordLogits(*seq, first_pos, out, out.first_row[s], len);
    if (first_pos < seq->num_prompt && seq->num_computed >= seq->num_prompt) {
      if (request_log_) request_log_->OnPromptComputed(seq->id);
      cache_->OnPromptComputed(seq->ticket,
                               std::span<const int32_t>(seq->tokens).first(seq->num_prompt),
                               seq->table.blocks(), seq->request.message_starts,
                               seq->request.scope);
    }
    if (seq->num_computed < static_cast<int64_t>(seq->tokens.size())) continue;
    const int32_t last_row = out.first_row[s] + (seq->request.record_logits ? len - 1 : 0);
    const auto logits = out.Row(last_row);
    TokenConstraint* constraint = seq->request.constraint.get();
    const int32_t token = seq->sampler->Sample(logits, constraint);
    if (token < 0) {
      // The constraint allows nothing here (the vocabulary has no token for any byte it
      // needs): the output ends as it is, cut short.
      Finish(*seq, FinishReason::kLength);
      events->push_back({seq->id, std::nullopt, FinishReason::kLength});
      continue;
    }
    if (constraint) constraint->Accept(token);
    seq->tokens.push_back(token);
    StepEvent ev{seq->id, token, FinishReason::kNone};
    if (seq->request.logprobs > 0) ComputeLogprobs(logits, token, seq->request.logprobs, &ev);
    if (!seq->request.ignore_eos && token == eos_id_) {
      ev.finish = FinishReason::kEos;
    } else if (constraint && constraint->IsComplete()) {
      ev.finish = FinishReason::kEos;  // the constrained output is whole: nothing may follow
    } else if (seq->num_generated() >= seq->request.max_tokens) {
      ev.finish = FinishReason::kLength;
    } else if (static_cast<int64_t>(seq->tokens.size()) >= options_.context_length) {
      ev.finish = FinishReason::kContext;
    }
    if (ev.finish != FinishReason::kNone) Finish(*seq, ev.finish);
    events->push_back(std::move(ev));
  }
}

StatusOr<std::vector<StepEvent>> Engine::Step() {
  const auto start = std::chrono::steady_clock::now();
  auto events = RunStep();
  ++timing_.steps;
  timing_.step_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return events;
}

StatusOr<std::vector<StepEvent>> Engine::RunStep() {
  Admit();
  std::vector<StepEvent> events;
  if (running_.empty()) {
    // Only requests waiting for lower-tier reads: wait for one briefly rather than spin.
    if (!waiting_.empty()) cache_->WaitForReads(2);
    return events;
  }
  std::vector<BlockCopy> copies;
  const std::vector<Chunk> chunks = PlanStep(&copies, &events);
  if (chunks.empty()) return events;

  const auto forward_start = std::chrono::steady_clock::now();
  const double forward_cpu_start = ThreadCpuSeconds();
  backend_->CopyBlocks(copies);
  ForwardBatch batch;
  captures_.resize(chunks.size());
  forward_captures_.resize(chunks.size());
  capture_buffers_used_ = 0;
  for (size_t s = 0; s < chunks.size(); ++s) {
    const auto& [seq, len] = chunks[s];
    PlanCaptures(*seq, len, &captures_[s]);
    forward_captures_[s].clear();
    for (const StateCapture& c : captures_[s]) {
      forward_captures_[s].push_back({c.position - seq->num_computed, c.state});
    }
    ForwardSequence fs;
    fs.tokens = std::span<const int32_t>(seq->tokens).subspan(seq->num_computed, len);
    fs.start_pos = seq->num_computed;
    fs.blocks = seq->table.blocks();
    fs.want_logits = seq->request.record_logits ||
                     seq->num_computed + len == static_cast<int64_t>(seq->tokens.size());
    fs.all_logits = seq->request.record_logits;
    fs.recurrent_state = seq->recurrent_state;
    fs.state_captures = forward_captures_[s];
    batch.sequences.push_back(fs);
  }
  ForwardOutput out;
  RETURN_IF_ERROR(backend_->Forward(batch, &out));
  timing_.forward_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - forward_start).count();
  timing_.forward_cpu_seconds += ThreadCpuSeconds() - forward_cpu_start;
  ApplyResults(chunks, out, &events);

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
