#include "engine/request_log.h"

#include <algorithm>
#include <cerrno>
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
    h = Mix(h ^ Mix(static_cast<uint32_t>(tokens[i]) + 0x9e3779b97f4a7c15ULL));
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
  return h;
}

StatusOr<std::unique_ptr<RequestLog>> RequestLog::Open(const std::string& path,
                                                       const RequestLogHeader& h) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot create the request log ", path, ": ",
                                                   std::strerror(errno),
                                                   "; give --request-log a writable path"));
  }
  const std::string line = absl::StrCat(
      "{\"prefixd_request_log\":1,\"prefix_cache\":", h.prefix_cache ? "true" : "false",
      ",\"block_size\":", h.block_size, ",\"block_bytes\":",
      h.block_bytes, ",\"num_kv_blocks\":", h.num_kv_blocks, ",\"max_cached_blocks\":",
      h.max_cached_blocks, ",\"max_chunk_tokens\":", h.max_chunk_tokens, ",\"max_batch_tokens\":",
      h.max_batch_tokens, ",\"host_bytes\":", h.host_bytes, ",\"disk_bytes\":", h.disk_bytes,
      ",\"disk_scope\":\"", h.disk_scope, "\",\"min_tokens\":", h.min_tokens,
      ",\"partial_max_entries\":", h.partial_max_entries, ",\"partial_supported\":",
      h.partial_supported ? "true" : "false", "}\n");
  if (std::fputs(line.c_str(), f) < 0 || std::fflush(f) != 0) {
    const std::string cause = std::strerror(errno);
    std::fclose(f);
    return absl::InternalError(absl::StrCat("cannot write the request log ", path, ": ", cause));
  }
  std::random_device rd;
  const uint64_t secret = (uint64_t{rd()} << 32) ^ rd();
  return std::unique_ptr<RequestLog>(new RequestLog(f, secret));
}

RequestLog::RequestLog(std::FILE* file, uint64_t secret)
    : file_(file), secret_(secret), writer_([this] { WriterLoop(); }) {}

RequestLog::~RequestLog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  writer_.join();
  std::fclose(file_);
}

void RequestLog::Append(const Sequence& seq) {
  if (seq.num_computed <= 0) return;
  // Copied here, hashed and formatted on the writer thread: the engine thread pays a copy.
  Entry e;
  e.id = seq.id.value();
  e.salt = seq.request.cache_salt;
  e.num_prompt = seq.num_prompt;
  e.computed = std::min<int64_t>(seq.num_computed, seq.tokens.size());
  const int64_t logged = std::max<int64_t>(e.computed, seq.num_prompt);
  e.tokens.assign(seq.tokens.begin(), seq.tokens.begin() + logged);
  e.message_starts = seq.request.message_starts;
  if (seq.request.scope) e.scope = seq.request.scope->ToString();
  e.cached_tokens = std::max<int64_t>(seq.cached_tokens, 0);
  e.tier = seq.tier_hit;
  e.finish = FinishReasonName(seq.finish);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(e));
  }
  cv_.notify_one();
}

std::string RequestLog::Format(const Entry& e) const {
  const std::vector<int32_t> hashes = HashTokenChain(secret_, e.tokens);
  std::string line;
  line.reserve(hashes.size() * 11 + 256);
  const std::string salt_hash =
      e.salt.empty() ? "" : absl::StrCat(absl::Hex(Mix(secret_ ^ std::hash<std::string>{}(e.salt))));
  absl::StrAppend(&line, "{\"request\":", e.id, ",\"salt\":\"", salt_hash,
                  "\",\"prompt_tokens\":", e.num_prompt, ",\"computed_tokens\":", e.computed,
                  ",\"tokens\":[");
  for (size_t i = 0; i < hashes.size(); ++i) absl::StrAppend(&line, i ? "," : "", hashes[i]);
  line += "],\"message_starts\":";
  AppendInts(line, e.message_starts);
  if (e.scope) absl::StrAppend(&line, ",\"scope\":\"", *e.scope, "\"");
  absl::StrAppend(&line, ",\"cached_tokens\":", e.cached_tokens, ",\"by_tier\":{\"host\":",
                  e.tier.host_tokens, ",\"disk\":", e.tier.disk_tokens, ",\"remote\":",
                  e.tier.remote_tokens, ",\"partial\":", e.tier.partial_tokens,
                  "},\"finish\":\"", e.finish, "\"}\n");
  return line;
}

void RequestLog::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  drained_cv_.wait(lock, [&] { return queue_.empty() && !writing_; });
}

void RequestLog::WriterLoop() {
  bool failed = false, reported = false;  // said once: a full disk would flood the log
  while (true) {
    std::deque<Entry> entries;
    {
      std::unique_lock<std::mutex> lock(mu_);
      writing_ = false;
      drained_cv_.notify_all();
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      entries.swap(queue_);
      writing_ = true;
    }
    for (const Entry& e : entries) {
      const std::string l = Format(e);
      if (std::fwrite(l.data(), 1, l.size(), file_) != l.size()) failed = true;
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
