#include "engine/request_log.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "engine/engine.h"

namespace prefixd {

namespace {

// splitmix64's finalizer: a bijection on 64 bits that mixes every input bit into every output
// bit.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// One step of the chain: the hash after `token`, given the hash `h` before it.
uint64_t ChainStep(uint64_t h, int32_t token) {
  return Mix(h ^ Mix(static_cast<uint32_t>(token) + 0x9e3779b97f4a7c15ULL));
}

// Appends the chain hashes of `tokens` from state `h`; returns the state after them.
uint64_t AppendChain(std::string& out, uint64_t h, std::span<const int32_t> tokens) {
  out += '[';
  for (size_t i = 0; i < tokens.size(); ++i) {
    h = ChainStep(h, tokens[i]);
    absl::StrAppend(&out, i ? "," : "", static_cast<int32_t>(h & 0x7fffffff));
  }
  out += ']';
  return h;
}

void AppendInts(std::string& out, std::span<const int64_t> v) {
  out += '[';
  for (size_t i = 0; i < v.size(); ++i) absl::StrAppend(&out, i ? "," : "", v[i]);
  out += ']';
}

}  // namespace

std::vector<int32_t> HashTokenChain(uint64_t secret, std::span<const int32_t> tokens) {
  std::vector<int32_t> out(tokens.size());
  uint64_t h = Mix(secret);
  for (size_t i = 0; i < tokens.size(); ++i) {
    h = ChainStep(h, tokens[i]);
    out[i] = static_cast<int32_t>(h & 0x7fffffff);
  }
  return out;
}

RequestLogHeader RequestLogHeaderOf(const Engine& engine) {
  const EngineOptions& eo = engine.options();
  const PrefixCache& cache = engine.cache();
  const TierControllerStats ts = cache.tier_stats();
  RequestLogHeader h;
  h.prefix_cache = eo.prefix_cache;
  h.block_size = eo.block_size;
  h.block_bytes = engine.backend().kv_layout().BlockBytes();
  h.num_kv_blocks = engine.block_pool().num_blocks();
  h.max_cached_blocks = cache.stats().max_cached_blocks;
  h.max_chunk_tokens = eo.max_chunk_tokens;
  h.max_batch_tokens = eo.max_batch_tokens;
  h.host_bytes = ts.host_enabled ? eo.tiers.host_bytes : 0;
  h.disk_bytes = ts.disk_enabled ? eo.tiers.disk_bytes : 0;
  h.disk_scope = cache.default_scope().ToString();
  h.min_tokens = eo.tiers.min_tokens;
  h.partial_max_entries = cache.has_tiers() ? static_cast<int>(ts.partial.max_entries) : 0;
  h.partial_supported = !cache.has_tiers() || ts.partial.supported;
  h.retention_max_share = eo.retention_max_share;
  h.disk_start_blocks = ts.disk_enabled ? ts.disk.entries : 0;
  return h;
}

StatusOr<std::unique_ptr<RequestLog>> RequestLog::Open(const std::string& path,
                                                       const RequestLogHeader& h,
                                                       LatchedClock* clock) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create the request log ", path, ": ",
                                                   std::strerror(errno),
                                                   "; give --request-log a writable path"));
  }
  const std::string line = absl::StrCat(
      "{\"prefixd_request_log\":2,\"prefix_cache\":", h.prefix_cache ? "true" : "false",
      ",\"block_size\":", h.block_size, ",\"block_bytes\":",
      h.block_bytes, ",\"num_kv_blocks\":", h.num_kv_blocks, ",\"max_cached_blocks\":",
      h.max_cached_blocks, ",\"max_chunk_tokens\":", h.max_chunk_tokens, ",\"max_batch_tokens\":",
      h.max_batch_tokens, ",\"host_bytes\":", h.host_bytes, ",\"disk_bytes\":", h.disk_bytes,
      ",\"disk_scope\":\"", h.disk_scope, "\",\"min_tokens\":", h.min_tokens,
      ",\"partial_max_entries\":", h.partial_max_entries, ",\"partial_supported\":",
      h.partial_supported ? "true" : "false", ",\"retention_max_share\":", h.retention_max_share,
      ",\"disk_start_blocks\":", h.disk_start_blocks, "}\n");
  if (std::fputs(line.c_str(), f) < 0 || std::fflush(f) != 0) {
    const std::string cause = std::strerror(errno);
    std::fclose(f);
    return absl::InternalError(absl::StrCat("cannot write the request log ", path, ": ", cause));
  }
  std::random_device rd;
  const uint64_t secret = (uint64_t{rd()} << 32) ^ rd();
  return std::unique_ptr<RequestLog>(new RequestLog(f, secret, clock));
}

RequestLog::RequestLog(std::FILE* file, uint64_t secret, LatchedClock* clock)
    : file_(file),
      secret_(secret),
      clock_(clock),
      start_ms_(clock ? clock->Latch() : 0),
      writer_([this] { WriterLoop(); }) {}

RequestLog::~RequestLog() {
  Commit();  // the engine thread has stopped: what it recorded last goes too
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
  std::fclose(file_);
}

// ---- engine thread: copy, never format ----

void RequestLog::Tick() {
  if (clock_ == nullptr) return;
  const int64_t ms = clock_->Latch() - start_ms_;
  if (ms == last_ms_) return;
  last_ms_ = ms;
  pending_.push_back(Op{Kind::kTime, 0, ms});
}

void RequestLog::Commit() {
  if (pending_.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(std::move(pending_));
  // A drained vector keeps its capacity: no allocation per iteration. No notify either: the
  // writer polls (kWriterPollMs), since waking it costs the engine thread a system call per
  // iteration, a third more than everything else the log costs it.
  pending_.clear();
  if (!spare_.empty()) {
    pending_.swap(spare_.back());
    spare_.pop_back();
  }
}

void RequestLog::RecordRequest(const Sequence& seq) {
  const int64_t id = seq.id.value();
  if (!requested_.insert(id).second) return;
  auto p = std::make_unique<Payload>();
  p->text = seq.request.cache_salt;
  p->tokens.assign(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt);
  p->message_starts = seq.request.message_starts;
  if (seq.request.scope) p->scope = seq.request.scope->ToString();
  p->retention = seq.request.retention;
  Op op{Kind::kRequest, id};
  op.payload = std::move(p);
  pending_.push_back(std::move(op));
}

void RequestLog::OnReadsStarted(const Sequence& seq) {
  RecordRequest(seq);
  pending_.push_back(Op{Kind::kReads, seq.id.value(), static_cast<int64_t>(seq.tokens.size())});
}

void RequestLog::OnAdmitted(const Sequence& seq, int64_t hit_tokens, int64_t disk_blocks) {
  RecordRequest(seq);
  pending_.push_back(Op{Kind::kAdmit, seq.id.value(), static_cast<int64_t>(seq.tokens.size()),
                        hit_tokens, disk_blocks});
}

void RequestLog::OnWrite(SequenceId id, int64_t len, std::span<const SequenceId> preempted,
                         bool ok) {
  Op op{Kind::kWrite, id.value(), len, ok ? 1 : 0};
  for (SequenceId v : preempted) op.preempted.push_back(v.value());
  pending_.push_back(std::move(op));
}

void RequestLog::OnPromptComputed(SequenceId id) { pending_.push_back(Op{Kind::kPrompt, id.value()}); }

void RequestLog::OnFinished(const Sequence& seq) {
  requested_.erase(seq.id.value());
  auto p = std::make_unique<Payload>();
  p->num_prompt = seq.num_prompt;
  p->computed = std::min<int64_t>(seq.num_computed, seq.tokens.size());
  p->tokens.assign(seq.tokens.begin() + seq.num_prompt, seq.tokens.end());
  p->cached_tokens = std::max<int64_t>(seq.cached_tokens, 0);
  p->tier = seq.tier_hit;
  p->finish = FinishReasonName(seq.finish);
  Op op{Kind::kFinish, seq.id.value()};
  op.payload = std::move(p);
  pending_.push_back(std::move(op));
}

void RequestLog::OnCacheEnabled(bool enabled) {
  pending_.push_back(Op{Kind::kEnable, 0, enabled ? 1 : 0});
}

void RequestLog::OnClear(std::string_view tier) {
  Op op{Kind::kClear};
  op.payload = std::make_unique<Payload>();
  op.payload->text = std::string(tier);
  pending_.push_back(std::move(op));
}

// ---- the log's thread: hash, format, write ----

void RequestLog::FormatRequest(const Op& op, std::string& line) {
  const Payload& p = *op.payload;
  const std::string salt_hash =
      p.text.empty() ? "" : absl::StrCat(absl::Hex(Mix(secret_ ^ std::hash<std::string>{}(p.text))));
  absl::StrAppend(&line, "{\"op\":\"request\",\"seq\":", op.seq, ",\"salt\":\"", salt_hash,
                  "\",\"prompt\":");
  chains_[op.seq] = AppendChain(line, Mix(secret_), p.tokens);
  line += ",\"message_starts\":";
  AppendInts(line, p.message_starts);
  if (p.scope) absl::StrAppend(&line, ",\"scope\":\"", *p.scope, "\"");
  line += ",\"retention\":[";
  for (size_t i = 0; i < p.retention.size(); ++i) {
    const RetentionRange& r = p.retention[i];
    absl::StrAppend(&line, i ? "," : "", "[", r.begin, ",", r.end, ",", r.priority, ",",
                    r.duration_ms, "]");
  }
  line += "]}\n";
}

void RequestLog::FormatFinish(const Op& op, std::string& line) {
  const Payload& p = *op.payload;
  absl::StrAppend(&line, "{\"op\":\"finish\",\"seq\":", op.seq, ",\"prompt_tokens\":",
                  p.num_prompt, ",\"computed\":", p.computed, ",\"generated\":");
  // The generated tokens continue their prompt's chain (logged with its first admission).
  auto it = chains_.find(op.seq);
  AppendChain(line, it != chains_.end() ? it->second : Mix(secret_), p.tokens);
  if (it != chains_.end()) chains_.erase(it);
  absl::StrAppend(&line, ",\"cached_tokens\":", p.cached_tokens, ",\"by_tier\":{\"host\":",
                  p.tier.host_tokens, ",\"disk\":", p.tier.disk_tokens, ",\"remote\":",
                  p.tier.remote_tokens, ",\"partial\":", p.tier.partial_tokens,
                  "},\"finish\":\"", p.finish, "\"}\n");
}

std::string RequestLog::Format(const Op& op) {
  std::string line;
  switch (op.kind) {
    case Kind::kTime:
      return absl::StrCat("{\"op\":\"time\",\"ms\":", op.a, "}\n");
    case Kind::kRequest:
      line.reserve(op.payload->tokens.size() * 11 + 256);
      FormatRequest(op, line);
      return line;
    case Kind::kReads:
      return absl::StrCat("{\"op\":\"reads\",\"seq\":", op.seq, ",\"known\":", op.a, "}\n");
    case Kind::kAdmit:
      return absl::StrCat("{\"op\":\"admit\",\"seq\":", op.seq, ",\"known\":", op.a,
                          ",\"hit\":", op.b, ",\"disk_blocks\":", op.c, "}\n");
    case Kind::kWrite:
      line = absl::StrCat("{\"op\":\"write\",\"seq\":", op.seq, ",\"len\":", op.a);
      if (!op.preempted.empty()) {
        line += ",\"preempted\":";
        AppendInts(line, op.preempted);
      }
      if (op.b == 0) line += ",\"ok\":false";
      line += "}\n";
      return line;
    case Kind::kPrompt:
      return absl::StrCat("{\"op\":\"prompt\",\"seq\":", op.seq, "}\n");
    case Kind::kFinish:
      line.reserve(op.payload->tokens.size() * 11 + 256);
      FormatFinish(op, line);
      return line;
    case Kind::kEnable:
      return absl::StrCat("{\"op\":\"enable\",\"on\":", op.a ? "true" : "false", "}\n");
    case Kind::kClear:
      return absl::StrCat("{\"op\":\"clear\",\"tier\":\"", op.payload->text, "\"}\n");
  }
  return line;
}

void RequestLog::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  flush_requested_ = true;
  cv_.notify_one();
  drained_cv_.wait(lock, [&] { return queue_.empty() && !writing_; });
}

void RequestLog::WriterLoop() {
  bool failed = false, reported = false;  // said once: a full disk would flood the log
  while (true) {
    std::deque<std::vector<Op>> batches;
    {
      std::unique_lock<std::mutex> lock(mu_);
      writing_ = false;
      drained_cv_.notify_all();
      // Polled: Commit does not notify (see there); Flush and the destructor do.
      cv_.wait_for(lock, std::chrono::milliseconds(kWriterPollMs),
                   [&] { return stop_ || flush_requested_; });
      flush_requested_ = false;
      if (queue_.empty()) {
        if (stop_) return;  // stopping, nothing left
        continue;
      }
      batches.swap(queue_);
      writing_ = true;
    }
    for (std::vector<Op>& ops : batches) {
      for (const Op& op : ops) {
        const std::string l = Format(op);
        if (std::fwrite(l.data(), 1, l.size(), file_) != l.size()) failed = true;
      }
      ops.clear();
    }
    {
      // Back to the engine thread, capacity kept (a few, enough for a burst).
      std::lock_guard<std::mutex> lock(mu_);
      for (std::vector<Op>& ops : batches) {
        if (spare_.size() < 8) spare_.push_back(std::move(ops));
      }
    }
    // A reader (replay, a test) sees whole lines as soon as a batch is written.
    if (std::fflush(file_) != 0) failed = true;
    if (failed && !reported) {
      spdlog::error("the request log could not be written ({}); its lines are being lost, "
                    "so a replay of it will be incomplete: check the disk",
                    std::strerror(errno));
      reported = true;
    }
  }
}

}  // namespace prefixd
