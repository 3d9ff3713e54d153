// RedisConnection: one hiredis connection with timeouts, reconnect with backoff and outage
// bookkeeping, for RedisStore. Every call is a pipeline: all commands are sent, then all
// replies read, so a batch costs one round trip.
//
//   up --(I/O error, timeout)--> down, retry after backoff (100 ms, doubling, up to max)
//   down --(backoff not over)--> calls fail at once with Unavailable (no socket touched)
//   down --(connect + AUTH + SELECT ok)--> up, backoff reset, reconnects counted
//
// A reply that is an error (e.g. WRONGTYPE) is a reply, not a failure of the connection.
//
// Thread safety: all methods may be called from any thread; one mutex serializes the use of
// the socket (hiredis contexts are not thread-safe). Health() reads atomics only.
#pragma once

#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "tier/redis_url.h"

namespace prefixd {

struct RedisReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyDeleter>;

// One command: its arguments, binary-safe (views must outlive the Pipeline call).
using RedisCommand = std::vector<std::string_view>;

// Counters shared by a store's connections (one warning per outage, not per connection).
struct RedisHealthCounters {
  std::atomic<bool> up{false};          // the last call on any connection succeeded
  std::atomic<int64_t> outages{0};      // transitions up -> down (and a failed first connect)
  std::atomic<int64_t> errors{0};       // calls that failed (I/O, timeout, refused, down)
  std::atomic<int64_t> timeouts{0};     // of those, timeouts
  std::atomic<int64_t> reconnects{0};   // successful connects after the first
};

struct RedisConnectionOptions {
  RedisUrl url;
  int connect_timeout_ms = 500;
  int io_timeout_ms = 500;  // per socket read or write, not per command
  int max_backoff_ms = 5000;
  std::string label = "remote cache";  // prefix of log lines
};

class RedisConnection {
 public:
  // Does not connect: the first Pipeline does. `health` must outlive the connection.
  RedisConnection(RedisConnectionOptions options, RedisHealthCounters* health);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Sends `commands` and returns one reply per command, in order. Unavailable when Redis
  // cannot be reached, is in backoff, or a read or write timed out (the connection is then
  // dropped, so a late reply is never taken for the next call's).
  StatusOr<std::vector<RedisReplyPtr>> Pipeline(const std::vector<RedisCommand>& commands);

  // Connects now if down and out of backoff; for a start-up log line. Same errors as Pipeline.
  Status Ping();

 private:
  Status EnsureConnectedLocked();
  Status FailLocked(std::string what, bool timeout);
  void DropLocked();

  const RedisConnectionOptions options_;
  RedisHealthCounters* health_;
  std::mutex mu_;
  redisContext* ctx_ = nullptr;  // guarded by mu_; null while down
  std::chrono::steady_clock::time_point retry_at_{};  // guarded by mu_
  int backoff_ms_ = 0;                                // guarded by mu_; 0 after a success
  bool ever_connected_ = false;                       // guarded by mu_
};

}  // namespace prefixd
