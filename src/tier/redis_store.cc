#include "tier/redis_store.h"

#include <array>
#include <atomic>

#include "base/log.h"

namespace prefixd {

namespace {

constexpr int kFingerprintHexDigits = 16;
// UNLINK / SCAN batch size: large enough to be few round trips, small enough not to stall
// Redis (UNLINK frees in the background anyway).
constexpr int kScanCount = 1000;

// Once per process per cause, a warning; afterwards debug. Slot kNone: unreadable replies.
std::array<std::atomic<bool>, kNumRecordDefects> g_quarantine_logged{};

std::string EscapeGlob(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

std::string_view ReplyBytes(const redisReply* r) {
  return std::string_view(r->str, r->len);
}
std::string ReplyText(const redisReply* r) { return std::string(r->str, r->len); }

}  // namespace

RedisStore::RedisStore(RedisStoreOptions options)
    : options_(std::move(options)),
      fingerprint_(HashFingerprint(options_.fingerprint)),
      prefix_(absl::StrCat(options_.key_namespace, ":v", kBlockRecordFormatVersion, ":",
                           ToHex(fingerprint_).substr(0, kFingerprintHexDigits), ":")) {
  health_.up.store(true);  // so that a first failed connect is logged as an outage
  RedisConnectionOptions c;
  c.url = options_.url;
  c.connect_timeout_ms = options_.connect_timeout_ms;
  c.io_timeout_ms = options_.io_timeout_ms;
  c.max_backoff_ms = options_.max_backoff_ms;
  read_conn_ = std::make_unique<RedisConnection>(c, &health_);
  write_conn_ = std::make_unique<RedisConnection>(c, &health_);
}

StatusOr<std::unique_ptr<RedisStore>> RedisStore::Open(RedisStoreOptions options) {
  if (options.url.tls) {
    return absl::FailedPreconditionError(
        "--remote-cache: rediss:// (TLS) needs hiredis with SSL support, which this build "
        "lacks (Debian 12's libhiredis 0.14 has none); use redis:// on a trusted network or a "
        "TLS tunnel such as stunnel to the Redis host");
  }
  if (options.url.host.empty()) return absl::InvalidArgumentError("--remote-cache: no host");
  if (options.key_namespace.empty() ||
      options.key_namespace.find_first_of(" \t\r\n") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--remote-cache-namespace '", options.key_namespace,
        "' must be non-empty and without whitespace, e.g. 'prefixd' or 'fleet-a'"));
  }
  if (options.ttl_seconds <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--remote-cache-ttl must be > 0 seconds, got ", options.ttl_seconds));
  }
  if (options.io_timeout_ms <= 0 || options.connect_timeout_ms <= 0) {
    return absl::InvalidArgumentError("--remote-cache-timeout-ms must be > 0");
  }
  if (options.fingerprint.empty()) {
    return absl::InvalidArgumentError("remote cache: empty model fingerprint");
  }
  auto store = std::unique_ptr<RedisStore>(new RedisStore(std::move(options)));
  if (Status s = store->read_conn_->Ping(); s.ok()) {
    spdlog::info("remote cache: redis at {} reachable, keys '{}*', TTL {} s",
                 store->options_.url.Redacted(), store->prefix_, store->options_.ttl_seconds);
  }
  return store;
}

std::string RedisStore::KeyFor(const BlockKey& key) const {
  return absl::StrCat(prefix_, ToHex(key));
}

std::string RedisStore::KeyPattern() const { return absl::StrCat(EscapeGlob(prefix_), "*"); }

RedisHealth RedisStore::Health() const {
  constexpr auto r = std::memory_order_relaxed;
  return RedisHealth{health_.up.load(r), health_.outages.load(r), health_.errors.load(r),
                     health_.timeouts.load(r), health_.reconnects.load(r)};
}

void RedisStore::Remember(const BlockKey& key) {
  MutexLock lock(&known_mu_);
  if (static_cast<int64_t>(known_.size()) >= options_.max_known_keys) known_.clear();
  known_[key] = std::chrono::steady_clock::now();
}

bool RedisStore::Contains(const BlockKey& key) const {
  MutexLock lock(&known_mu_);
  // Redis may have restarted empty during an outage: forget everything after one.
  const int64_t outages = health_.outages.load(std::memory_order_relaxed);
  if (outages != known_epoch_) {
    known_.clear();
    known_epoch_ = outages;
    return false;
  }
  auto it = known_.find(key);
  // Half the TTL: a block re-offered after that is written again, refreshing its TTL.
  return it != known_.end() &&
         std::chrono::steady_clock::now() - it->second <
             std::chrono::seconds(options_.ttl_seconds) / 2;
}

int RedisStore::CountPresentPrefix(std::span<const BlockKey> keys) const {
  int n = 0;
  while (n < static_cast<int>(keys.size()) && Contains(keys[n])) ++n;
  return n;
}

StatusOr<int> RedisStore::LookupPrefix(std::span<const BlockKey> keys) {
  if (keys.empty()) return 0;
  std::vector<std::string> names;
  names.reserve(keys.size());
  for (const BlockKey& k : keys) names.push_back(KeyFor(k));
  std::vector<RedisCommand> cmds;
  for (const std::string& n : names) cmds.push_back({"EXISTS", n});
  ASSIGN_OR_RETURN(auto replies, read_conn_->Pipeline(cmds));
  int n = 0;
  while (n < static_cast<int>(replies.size()) && replies[n]->type == REDIS_REPLY_INTEGER &&
         replies[n]->integer == 1) {
    ++n;
  }
  return n;
}

std::vector<StatusOr<BlockRecord>> RedisStore::Read(std::span<const BlockKey> keys) {
  std::vector<StatusOr<BlockRecord>> out;
  if (keys.empty()) return out;
  std::vector<std::string> names;
  names.reserve(keys.size());
  for (const BlockKey& k : keys) names.push_back(KeyFor(k));
  RedisCommand mget = {"MGET"};
  for (const std::string& n : names) mget.push_back(n);
  StatusOr<std::vector<RedisReplyPtr>> replies = read_conn_->Pipeline({mget});
  const redisReply* array = replies.ok() ? (*replies)[0].get() : nullptr;
  if (array == nullptr || array->type != REDIS_REPLY_ARRAY || array->elements != keys.size()) {
    const Status s = !replies.ok() ? replies.status()
                                   : absl::UnavailableError("redis: unexpected reply to MGET");
    counters_.misses.fetch_add(static_cast<int64_t>(keys.size()), std::memory_order_relaxed);
    out.assign(keys.size(), s);
    return out;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const redisReply* v = array->element[i];
    if (v->type != REDIS_REPLY_STRING) {
      counters_.misses.fetch_add(1, std::memory_order_relaxed);
      out.push_back(absl::NotFoundError(absl::StrCat("block ", ToHex(keys[i]), " not in redis")));
      continue;
    }
    const std::string_view bytes = ReplyBytes(v);
    StatusOr<BlockRecord> record = Deserialize(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
        fingerprint_, keys[i], options_.chain_kind);
    if (record.ok()) {
      counters_.hits.fetch_add(1, std::memory_order_relaxed);
      Remember(keys[i]);
      out.push_back(std::move(record));
      continue;
    }
    counters_.misses.fetch_add(1, std::memory_order_relaxed);
    Quarantine(keys[i], record.status());
    out.push_back(absl::NotFoundError(absl::StrCat("redis value of block ", ToHex(keys[i]),
                                                   " failed verification (",
                                                   record.status().message(), "); deleted")));
  }
  return out;
}

void RedisStore::Quarantine(const BlockKey& key, const Status& cause) {
  const std::string name = KeyFor(key);
  // Under our own key, even a "foreign" value (another model or version) is wrong: the key
  // names the version and the model, so someone wrote garbage there. Delete it.
  StatusOr<std::vector<RedisReplyPtr>> r = write_conn_->Pipeline({{"UNLINK", name}});
  counters_.quarantined.fetch_add(1, std::memory_order_relaxed);
  const RecordDefect defect = RecordDefectOf(cause);
  const std::string where = r.ok() ? "deleted" : absl::StrCat("not deleted (", r.status().message(), ")");
  if (!g_quarantine_logged[static_cast<int>(defect)].exchange(true)) {
    spdlog::warn(
        "remote cache: redis value {} failed verification ({}) and was {}; treated as a miss, "
        "never served. Further '{}' failures are logged at debug level.",
        name, std::string(cause.message()), where, RecordDefectName(defect));
  } else {
    spdlog::debug("remote cache: redis value {} failed verification ({}) and was {}", name,
                  std::string(cause.message()), where);
  }
}

std::vector<Status> RedisStore::Write(std::vector<BlockRecord> records) {
  std::vector<Status> out(records.size());
  if (records.empty()) return out;
  std::vector<std::string> names;
  for (const BlockRecord& r : records) names.push_back(KeyFor(r.key));
  // Round trip 1: which keys Redis lacks, so that values are sent only for those.
  std::vector<RedisCommand> exists;
  for (const std::string& n : names) exists.push_back({"EXISTS", n});
  StatusOr<std::vector<RedisReplyPtr>> have = write_conn_->Pipeline(exists);
  if (!have.ok()) {
    counters_.write_failures.fetch_add(static_cast<int64_t>(records.size()),
                                       std::memory_order_relaxed);
    out.assign(records.size(), have.status());
    return out;
  }
  // Round trip 2: SET NX EX for the missing (NX: a racing replica's identical value stays),
  // EXPIRE for the present (a block in use again lives another TTL).
  const std::string ttl = std::to_string(options_.ttl_seconds);
  std::vector<std::vector<uint8_t>> values(records.size());
  std::vector<RedisCommand> cmds;
  std::vector<bool> is_set(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    is_set[i] = !((*have)[i]->type == REDIS_REPLY_INTEGER && (*have)[i]->integer == 1);
    if (is_set[i]) {
      values[i] = Serialize(records[i], fingerprint_);
      cmds.push_back({"SET", names[i],
                      std::string_view(reinterpret_cast<const char*>(values[i].data()),
                                       values[i].size()),
                      "EX", ttl, "NX"});
    } else {
      cmds.push_back({"EXPIRE", names[i], ttl});
    }
  }
  StatusOr<std::vector<RedisReplyPtr>> done = write_conn_->Pipeline(cmds);
  ResidencyChanges changes;  // written or refreshed: held in Redis now (for the observer)
  for (size_t i = 0; i < records.size(); ++i) {
    const redisReply* r = done.ok() ? (*done)[i].get() : nullptr;
    if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
      counters_.write_failures.fetch_add(1, std::memory_order_relaxed);
      out[i] = done.ok() ? absl::UnavailableError(absl::StrCat("redis refused a write of ",
                                                               names[i], ": ", ReplyText(r)))
                         : done.status();
      continue;
    }
    if (is_set[i] && r->type == REDIS_REPLY_STATUS) {
      counters_.writes.fetch_add(1, std::memory_order_relaxed);
    }
    Remember(records[i].key);
    // Held now, whoever wrote it (a SET NX that lost to a racing replica's identical value
    // replies nil), except a key that expired between EXISTS and EXPIRE (EXPIRE replies 0).
    if (observed() && !(r->type == REDIS_REPLY_INTEGER && r->integer == 0)) {
      changes.Stored(&records[i]);
    }
  }
  NotifyResidency(changes);
  return out;
}

int RedisStore::Remove(std::span<const BlockKey> keys) {
  if (keys.empty()) return 0;
  std::vector<std::string> names;
  for (const BlockKey& k : keys) names.push_back(KeyFor(k));
  RedisCommand unlink = {"UNLINK"};
  for (const std::string& n : names) unlink.push_back(n);
  {
    MutexLock lock(&known_mu_);
    for (const BlockKey& k : keys) known_.erase(k);
  }
  StatusOr<std::vector<RedisReplyPtr>> r = write_conn_->Pipeline({unlink});
  if (!r.ok() || (*r)[0]->type != REDIS_REPLY_INTEGER) return 0;
  return static_cast<int>((*r)[0]->integer);
}

Status RedisStore::Clear() {
  {
    MutexLock lock(&known_mu_);
    known_.clear();
  }
  const std::string pattern = KeyPattern();
  const std::string count = std::to_string(kScanCount);
  std::string cursor = "0";
  int64_t removed = 0;
  do {
    ASSIGN_OR_RETURN(auto scan, write_conn_->Pipeline(
                                    {{"SCAN", cursor, "MATCH", pattern, "COUNT", count}}));
    const redisReply* r = scan[0].get();
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
      return absl::InternalError(
          absl::StrCat("remote cache clear: unexpected SCAN reply (",
                       r->type == REDIS_REPLY_ERROR ? ReplyText(r) : "not a cursor and keys",
                       "); is this a Redis-compatible server?"));
    }
    cursor = std::string(ReplyBytes(r->element[0]));
    const redisReply* found = r->element[1];
    if (found->elements > 0) {
      RedisCommand unlink = {"UNLINK"};
      for (size_t i = 0; i < found->elements; ++i) unlink.push_back(ReplyBytes(found->element[i]));
      ASSIGN_OR_RETURN(auto u, write_conn_->Pipeline({unlink}));
      if (u[0]->type == REDIS_REPLY_INTEGER) removed += u[0]->integer;
    }
  } while (cursor != "0");
  spdlog::info("remote cache: cleared {} keys matching '{}'", removed, pattern);
  return absl::OkStatus();
}

}  // namespace prefixd
