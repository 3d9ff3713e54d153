// RedisStore: the L4 tier, block records in a Redis shared by several prefixd servers
// (--remote-cache), so replicas reuse each other's prefixes (ARCHITECTURE.md, L4).
//
//   key    <namespace>:v<format version>:<first 16 hex of the fingerprint hash>:<32 hex key>
//   value  the BlockRecord bytes, exactly as on disk (block_record.h), with a TTL
//
// Redis' own TTL and maxmemory eviction bound its memory: this store keeps no budget, and its
// entries/bytes stats stay 0 (Redis is shared; what it holds is not ours to count).
//
// Redis is untrusted like a disk: every value read is verified in full (format, model, key,
// checksum, key == ChainKey(parent, tokens)); one that fails is deleted (UNLINK), counted in
// `quarantined`, logged once per cause, and read as a miss.
//
// Redis down, slow or flushed means misses, never errors or stuck callers: each call is one
// pipelined round trip bounded by the I/O timeout, and after a failure the connection stays
// down for a backoff (100 ms doubling to max_backoff_ms) during which calls fail at once.
//
// Batch-first: Read is one MGET, LookupPrefix one pipeline of EXISTS, Write one pipeline of
// EXISTS then one of SET NX EX / EXPIRE (values are sent only for keys Redis lacks).
//
// Contains and CountPresentPrefix do no I/O (TierStore contract): they answer from the keys
// this process wrote or read within the last ttl/2 since the last reconnect ("known"), a hint
// that lets the controller skip re-sending blocks; LookupPrefix asks Redis.
//
// Thread safety: all methods may be called from any thread. Reads and writes use separate
// connections, so a large write does not delay a lookup. Stats() and Health() read atomics.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "base/mutex.h"
#include "tier/redis_connection.h"
#include "tier/redis_url.h"
#include "tier/tier_store.h"

namespace prefixd {

struct RedisStoreOptions {
  RedisUrl url;
  std::string key_namespace = "prefixd";  // --remote-cache-namespace; no spaces, not empty
  int64_t ttl_seconds = 86400;            // --remote-cache-ttl; > 0
  int connect_timeout_ms = 500;
  int io_timeout_ms = 500;  // --remote-cache-timeout-ms
  int max_backoff_ms = 5000;
  std::vector<uint8_t> fingerprint;  // ModelFingerprint::Serialize(); must not be empty
  std::optional<BlockHashKind> chain_kind = BlockHashKind::kXxh3;
  int64_t max_known_keys = 1 << 16;  // bound of the "known" hint set
};

// Connection health, for stats and /metrics.
struct RedisHealth {
  bool up = false;
  int64_t outages = 0;
  int64_t errors = 0;
  int64_t timeouts = 0;
  int64_t reconnects = 0;
};

class RedisStore : public TierStore {
 public:
  // Validates the options (InvalidArgument; rediss:// is refused with FailedPrecondition since
  // Debian's hiredis has no TLS) and tries to connect once. An unreachable Redis is not an
  // error: the store starts down and connects when Redis appears.
  static StatusOr<std::unique_ptr<RedisStore>> Open(RedisStoreOptions options);

  std::string_view name() const override { return "remote"; }
  int CountPresentPrefix(std::span<const BlockKey> keys) const override;
  bool Contains(const BlockKey& key) const override;
  std::vector<StatusOr<BlockRecord>> Read(std::span<const BlockKey> keys) override;
  std::vector<Status> Write(std::vector<BlockRecord> records) override;
  int Remove(std::span<const BlockKey> keys) override;
  // SCAN + UNLINK of this model's keys in this namespace only (never FLUSHDB/FLUSHALL).
  Status Clear() override;
  TierStats Stats() const override { return counters_.Snapshot(); }

  // Number of leading keys Redis holds (one round trip). Unavailable when Redis is down.
  StatusOr<int> LookupPrefix(std::span<const BlockKey> keys);

  RedisHealth Health() const;
  // The Redis key of `key`, e.g. "prefixd:v1:0123456789abcdef:<32 hex>".
  std::string KeyFor(const BlockKey& key) const;
  // Glob matching every key of this model in this namespace (special characters escaped).
  std::string KeyPattern() const;
  const RedisStoreOptions& options() const { return options_; }

 private:
  explicit RedisStore(RedisStoreOptions options);
  void Remember(const BlockKey& key);
  // Deletes a value that failed verification; counts and logs it.
  void Quarantine(const BlockKey& key, const Status& cause);

  const RedisStoreOptions options_;
  const FingerprintHash fingerprint_;
  const std::string prefix_;  // "<namespace>:v<version>:<fp16>:"
  RedisHealthCounters health_;
  std::unique_ptr<RedisConnection> read_conn_;
  std::unique_ptr<RedisConnection> write_conn_;
  TierCounters counters_;

  using Time = std::chrono::steady_clock::time_point;
  mutable Mutex known_mu_;
  // Keys seen in Redis (written or read) and when; cleared on a reconnect (Redis may have
  // restarted empty) and when it grows past max_known_keys.
  mutable absl::flat_hash_map<BlockKey, Time> known_ ABSL_GUARDED_BY(known_mu_);
  mutable int64_t known_epoch_ ABSL_GUARDED_BY(known_mu_) = 0;  // health_.reconnects when last checked
};

}  // namespace prefixd
