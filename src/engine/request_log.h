// RequestLog: `prefixd serve --request-log FILE`, one JSON line per finished request that
// `prefixd replay --request-log FILE` replays through the cache without a model, to predict
// what other budgets would reuse. It records what the cache saw, never text:
//
//   line 1:  {"prefixd_request_log":1, "prefix_cache":true, "block_size":16, "block_bytes":..., "num_kv_blocks":...,
//             "max_cached_blocks":..., "max_chunk_tokens":..., "max_batch_tokens":...,
//             "host_bytes":..., "disk_bytes":..., "disk_scope":"auto:30", "min_tokens":0,
//             "partial_max_entries":4, "partial_supported":true}
//   then:    {"request":7, "salt":"", "prompt_tokens":41, "computed_tokens":48,
//             "tokens":[h0, h1, ...], "message_starts":[0, 12], "scope":"full",
//             "cached_tokens":32, "by_tier":{"host":16,"disk":0,"partial":0}, "finish":"length"}
//
// `tokens` are the prompt and the generated tokens the engine computed, each replaced by a
// keyed chain hash: token i's value hashes the secret and tokens 0..i, so two requests have
// equal values exactly where their token prefixes are equal (the only thing the cache
// compares), and the ids cannot be read back without the secret, which is drawn at random
// when the log opens and never written. `salt` is a keyed hash of the cache salt ("" when
// none). Values are below 2^31.
//
// Append copies what a line needs (the engine thread pays one copy of the tokens); the log's
// own thread hashes, formats and writes, so the engine never waits for the file.
//
// Thread safety: Append may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"
#include "engine/sequence.h"

namespace prefixd {

// What a replay needs to rebuild the server's cache (the header line).
struct RequestLogHeader {
  bool prefix_cache = true;  // false: off (--prefix-cache off, or refused for the model)
  int block_size = 16;
  int64_t block_bytes = 0;
  int64_t num_kv_blocks = 0;
  int64_t max_cached_blocks = 0;
  int max_chunk_tokens = 0;
  int max_batch_tokens = 0;
  int64_t host_bytes = 0;  // 0: no host tier
  int64_t disk_bytes = 0;  // 0: no disk tier
  std::string disk_scope;
  int64_t min_tokens = 0;
  int partial_max_entries = 0;
  bool partial_supported = true;
};

// The header of `engine` as configured (engine/engine.h).
class Engine;
RequestLogHeader RequestLogHeaderOf(const Engine& engine);

// The keyed chain hashes of `tokens` (see the banner). Exposed for tests.
std::vector<int32_t> HashTokenChain(uint64_t secret, std::span<const int32_t> tokens);

class RequestLog {
 public:
  // Creates (truncates) `path` and writes the header. Fails with the path and the cause.
  static StatusOr<std::unique_ptr<RequestLog>> Open(const std::string& path,
                                                    const RequestLogHeader& header);
  ~RequestLog();  // writes what is queued, closes the file

  // Logs a finished request: its tokens, what the cache served it (seq.cached_tokens and
  // seq.tier_hit) and why it finished. Requests that computed nothing (max_tokens 0,
  // cancelled while waiting) are not logged: the cache never saw them.
  void Append(const Sequence& seq);
  // Blocks until every appended line is in the file (tests).
  void Flush();

 private:
  // One finished request, as Append copied it.
  struct Entry {
    int64_t id = 0;
    std::string salt;
    std::vector<int32_t> tokens;  // the prompt, then the computed generated tokens
    int64_t num_prompt = 0;
    int64_t computed = 0;
    std::vector<int64_t> message_starts;
    std::optional<std::string> scope;
    int64_t cached_tokens = 0;
    TierHit tier;
    const char* finish = "";
  };

  RequestLog(std::FILE* file, uint64_t secret);
  void WriterLoop();
  // The entry's JSON line (the banner's format), newline included.
  std::string Format(const Entry& e) const;

  std::FILE* file_;
  const uint64_t secret_;  // never written
  std::mutex mu_;
  std::condition_variable cv_, drained_cv_;
  std::deque<Entry> queue_;        // finished requests, oldest first
  bool writing_ = false;           // the writer holds lines taken from queue_
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace prefixd
