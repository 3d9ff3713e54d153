// RequestLog: `prefixd serve --request-log FILE` records what decided the prefix cache's
// behaviour, in the order the engine thread did it, so that `prefixd replay --request-log
// FILE` can run the same cache calls without a model and predict what other budgets would
// reuse, or, at the server's own budgets, reproduce what the server reported request by
// request, however the requests overlapped. It records what the cache saw, never text.
//
// Format, version 2 (one JSON object a line; `seq` is the engine's sequence id):
//
//   {"prefixd_request_log":2, "prefix_cache":true, "block_size":16, "block_bytes":...,
//    "num_kv_blocks":..., "max_cached_blocks":..., "max_chunk_tokens":..., "max_batch_tokens":...,
//    "host_bytes":..., "disk_bytes":..., "disk_scope":"auto:30", "min_tokens":0,
//    "partial_max_entries":4, "partial_supported":true, "retention_max_share":0.5,
//    "disk_start_blocks":0}
//   {"op":"time","ms":1520}             the cache's clock from here on (ms since the log opened)
//   {"op":"request","seq":7,"salt":"","prompt":[h0,...],"message_starts":[0,12],"scope":"full",
//    "retention":[[begin,end,priority,duration_ms],...]}        before its first reads or admission
//   {"op":"reads","seq":7,"known":41}   PrefixCache::Admit said kPending, having started reads ahead
//   {"op":"admit","seq":7,"known":41,"hit":32,"disk_blocks":1}  PrefixCache::Admit said kReady
//   {"op":"write","seq":7,"len":16,"preempted":[3],"ok":false}  Engine::ReserveWrite
//   {"op":"prompt","seq":7}                                     OnPromptComputed
//   {"op":"finish","seq":7,"prompt_tokens":41,"computed":47,"generated":[h41,...],
//    "cached_tokens":32,"by_tier":{"host":16,"disk":0,"remote":0,"partial":0},"finish":"length"}
//   {"op":"enable","on":false}          the kill switch (the admin API), on the engine thread
//   {"op":"clear","tier":"pool"}        the admin API's clear
//
// `prompt` and `generated` are the tokens, each replaced by a keyed chain hash: token i's value
// hashes the secret and tokens 0..i, so two requests have equal values exactly where their
// token prefixes are equal (the only thing the cache compares), and the ids cannot be read
// back without the secret, which is drawn at random when the log opens and never written.
// `salt` is a keyed hash of the cache salt ("" when none). Values are below 2^31.
//
// What is exact (the replay at the server's budgets equals the server, cached_tokens and by
// tier, request by request): everything the engine thread decides, given these operations:
// admission order (when a request was kReady: reads ahead and shared prefills make that a
// matter of timing, so it is recorded, not recomputed), when its reads ahead started (which
// blocks are read is decided then, from what host RAM held: a request that waited for the
// disk while other requests' evictions went to host RAM must ask for the same blocks),
// chunking, evictions (consequences of the writes), preemptions (recorded victims), the kill
// switch and clears at their place among the steps, retention (the engine's clock is latched once per loop iteration, Tick,
// and each new value recorded). What the disk held when a request read ahead depends on when
// background writes landed: its outcome, the disk blocks each admission found (taken, or
// refused for want of room in the pool), is recorded (`disk_blocks`). A read ahead always
// leaves its request pending for at least one step (PrefixCache::Admit), and the copies to
// host RAM land as if made at once (TierController); when a read ahead LANDED is not recorded
// and need not be: each request's reads keep their own copies and an admission takes its own
// first, so the replay, which lets every read started so far land before an admission, holds
// a superset of the server's copies, whose extra ones the `disk_blocks` limit leaves alone.
// app/request_log_replay_test checks it (8 clients, a 52-block pool with preemptions, host
// RAM with and without a disk tier, retention that expires, the kill switch and a host clear,
// five seeds a run). Not exact: a disk tier that held blocks when the server started
// (`disk_start_blocks` > 0), a remote tier, hybrid (recurrent) models, and a log cut short (a
// crash: requests still running have no finish line); the replay counts what differs
// (`diverged_operations`, `first_divergence`) rather than hiding it.
//
// Cost on the engine thread: each operation is a small record appended to a vector the engine
// thread owns (a request copies its prompt once, a finish its generated tokens); Commit hands
// the iteration's records to the log's own thread under one uncontended lock, without waking
// it (it polls every 10 ms), and that thread hashes, formats and writes, so the engine never
// waits for the file nor makes a system call for the log.
//
// Thread safety: Tick, Commit and the On* calls on the engine thread only; Flush from any.
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

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "base/clock.h"
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
  double retention_max_share = 0.5;
  int64_t disk_start_blocks = 0;  // blocks the disk tier held when the log opened
};

// The header of `engine` as configured (engine/engine.h).
class Engine;
RequestLogHeader RequestLogHeaderOf(const Engine& engine);

// The keyed chain hashes of `tokens` (see the banner). Exposed for tests.
std::vector<int32_t> HashTokenChain(uint64_t secret, std::span<const int32_t> tokens);

class RequestLog {
 public:
  // Creates (truncates) `path` and writes the header. `clock`, when given, is the engine's
  // clock (EngineOptions::clock), latched by Tick; nullptr: no times are recorded (a server
  // whose requests carry no retention). Fails with the path and the cause.
  static StatusOr<std::unique_ptr<RequestLog>> Open(const std::string& path,
                                                    const RequestLogHeader& header,
                                                    LatchedClock* clock = nullptr);
  ~RequestLog();  // writes what is committed, closes the file

  // Engine thread, once per engine loop iteration, before anything touches the cache: latches
  // the clock and records its time if it moved.
  void Tick();
  // Engine thread, at the end of each iteration: hands the iteration's records to the writer.
  void Commit();

  // The engine's cache-facing operations (engine thread; see the banner's format).
  // PrefixCache::Admit said kPending and started the sequence's reads ahead (once per request).
  void OnReadsStarted(const Sequence& seq);
  // PrefixCache::Admit said kReady. `hit` is the ticket's hit.
  void OnAdmitted(const Sequence& seq, int64_t hit_tokens, int64_t disk_blocks);
  void OnWrite(SequenceId id, int64_t len, std::span<const SequenceId> preempted, bool ok);
  void OnPromptComputed(SequenceId id);
  // The sequence ended (finished, cancelled, failed) after its reads or its first admission.
  void OnFinished(const Sequence& seq);
  void OnCacheEnabled(bool enabled);
  void OnClear(std::string_view tier);

  // Blocks until every committed record is in the file (tests, shutdown).
  void Flush();

 private:
  enum class Kind : uint8_t {
    kTime, kRequest, kReads, kAdmit, kWrite, kPrompt, kFinish, kEnable, kClear
  };
  // A request's copied payload (request and finish records).
  struct Payload {
    std::string text;                  // request: the salt; clear: the tier
    std::vector<int32_t> tokens;       // request: the prompt; finish: the generated tokens
    std::vector<int64_t> message_starts;
    std::optional<std::string> scope;
    std::vector<RetentionRange> retention;
    int64_t num_prompt = 0, computed = 0, cached_tokens = 0;
    TierHit tier;
    const char* finish = "";
  };
  // One operation, as the engine thread copied it.
  struct Op {
    explicit Op(Kind k = Kind::kTime, int64_t s = 0, int64_t a0 = 0, int64_t b0 = 0, int64_t c0 = 0)
        : kind(k), seq(s), a(a0), b(b0), c(c0) {}
    Kind kind;
    int64_t seq;
    int64_t a, b, c;  // time: ms; reads: known; admit: known, hit, disk blocks; write: len, ok
    std::vector<int64_t> preempted;  // write
    std::unique_ptr<Payload> payload;
  };

  RequestLog(std::FILE* file, uint64_t secret, LatchedClock* clock);
  void WriterLoop();
  // The op's JSON line (the banner's format), newline included. Writer thread.
  std::string Format(const Op& op);
  void FormatRequest(const Op& op, std::string& line);
  void FormatFinish(const Op& op, std::string& line);
  // The sequence's request record, the first time one of its operations is recorded.
  void RecordRequest(const Sequence& seq);

  std::FILE* file_;
  const uint64_t secret_;  // never written
  LatchedClock* clock_;    // nullptr: no times
  int64_t start_ms_ = 0;   // the clock when the log opened
  int64_t last_ms_ = -1;   // engine thread: the last time recorded
  std::vector<Op> pending_;  // engine thread: this iteration's records
  absl::flat_hash_set<int64_t> requested_;  // engine thread: sequences whose request is recorded
  // Writer thread: each logged request's chain hash after its prompt (the generated tokens
  // continue it), until its finish.
  absl::flat_hash_map<int64_t, uint64_t> chains_;
  std::mutex mu_;
  std::condition_variable cv_, drained_cv_;
  std::deque<std::vector<Op>> queue_;  // committed iterations, oldest first
  std::vector<std::vector<Op>> spare_;  // written ones, empty, their capacity kept for Commit
  bool writing_ = false;               // the writer holds records taken from queue_
  bool flush_requested_ = false;       // Flush is waiting: write now
  static constexpr int kWriterPollMs = 10;  // how often the writer looks for committed records
  bool stop_ = false;
  std::thread writer_;
};

}  // namespace prefixd
