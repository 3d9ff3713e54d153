// RecentRequests: the last N generation requests the server answered, each with its
// usage.prefix_cache explanation and timings, for the dashboard's "recent requests" table
// (GET /v1/recent_requests).
//
//   Add(r1) Add(r2) ... Add(rK)           K > capacity: the oldest fall off
//   Snapshot() = [rK, rK-1, ..., rK-N+1]  newest first, seq = 1, 2, 3, ... in order of Add
//
// Memory is bounded by `capacity` records; a record holds the request's usage object (a few
// hundred bytes), never its prompt or output text.
//
// Thread safety: every method may be called from any thread. Add and Snapshot take one
// mutex of this class only, held for a copy of at most `capacity` records; nothing here waits
// on the engine (ARCHITECTURE.md invariant 5).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace prefixd {

struct RequestRecord {
  int64_t seq = 0;  // set by Add: 1 for the first request recorded, then +1 each
  std::string id;    // the response id ("chatcmpl-...", "cmpl-...")
  std::string kind;  // "chat" or "completion"
  bool stream = false;
  int64_t received_unix_ms = 0;
  std::optional<double> ttft_ms;  // received -> first token; nullopt when none came
  double duration_ms = 0;         // received -> answered (or abandoned)
  // "stop", "length", "abort" (the finish_reason), "error", or "client_gone".
  std::string outcome;
  nlohmann::json usage;  // the OpenAI usage object with its prefix_cache explanation
};

class RecentRequests {
 public:
  static constexpr int kDefaultCapacity = 50;
  // Precondition: capacity >= 1.
  explicit RecentRequests(int capacity = kDefaultCapacity);

  int capacity() const { return capacity_; }
  // Records `r` (its seq is assigned here), dropping the oldest record when full.
  void Add(RequestRecord r);
  // The held records, newest first.
  std::vector<RequestRecord> Snapshot() const;
  // How many records were ever added (the seq of the newest).
  int64_t num_added() const;

 private:
  const int capacity_;
  mutable std::mutex mu_;
  std::deque<RequestRecord> records_;  // oldest first; size() <= capacity_
  int64_t num_added_ = 0;              // == records_.back().seq when not empty
};

// {"seq": ..., "id": ..., "kind": ..., "stream": ..., "received_unix_ms": ..., "ttft_ms": x|null,
//  "duration_ms": ..., "outcome": ..., "usage": {...}}
nlohmann::json RequestRecordJson(const RequestRecord& r);

}  // namespace prefixd
