#include "tier/redis_connection.h"

#include <cerrno>
#include <sys/time.h>

#include "base/log.h"

namespace prefixd {

namespace {

timeval ToTimeval(int ms) {
  timeval tv;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

// hiredis reports a socket timeout as an I/O error with errno EAGAIN.
bool IsTimeout(const redisContext* c) {
  return c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ETIMEDOUT);
}

}  // namespace

RedisConnection::RedisConnection(RedisConnectionOptions options, RedisHealthCounters* health)
    : options_(std::move(options)), health_(health) {}

RedisConnection::~RedisConnection() {
  std::lock_guard<std::mutex> lock(mu_);
  DropLocked();
}

void RedisConnection::DropLocked() {
  if (ctx_ != nullptr) redisFree(ctx_);
  ctx_ = nullptr;
}

Status RedisConnection::FailLocked(std::string what, bool timeout) {
  DropLocked();
  backoff_ms_ = backoff_ms_ == 0 ? 100 : std::min(backoff_ms_ * 2, options_.max_backoff_ms);
  retry_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms_);
  health_->errors.fetch_add(1, std::memory_order_relaxed);
  if (timeout) health_->timeouts.fetch_add(1, std::memory_order_relaxed);
  if (health_->up.exchange(false)) {
    health_->outages.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn(
        "{}: redis at {} is unreachable ({}); requests go on as cache misses, retrying with "
        "backoff up to {} ms (logged once per outage)",
        options_.label, options_.url.Redacted(), what, options_.max_backoff_ms);
  }
  return absl::UnavailableError(
      absl::StrCat("redis at ", options_.url.Redacted(), " unavailable: ", what));
}

Status RedisConnection::EnsureConnectedLocked() {
  if (ctx_ != nullptr) return absl::OkStatus();
  if (backoff_ms_ > 0 && std::chrono::steady_clock::now() < retry_at_) {
    health_->errors.fetch_add(1, std::memory_order_relaxed);
    return absl::UnavailableError(absl::StrCat("redis at ", options_.url.Redacted(),
                                               " is down; next retry in under ", backoff_ms_,
                                               " ms"));
  }
  ctx_ = redisConnectWithTimeout(options_.url.host.c_str(), options_.url.port,
                                 ToTimeval(options_.connect_timeout_ms));
  if (ctx_ == nullptr) return FailLocked("cannot allocate a hiredis context", false);
  if (ctx_->err != 0) {
    return FailLocked(absl::StrCat("connect: ", ctx_->errstr), IsTimeout(ctx_));
  }
  if (redisSetTimeout(ctx_, ToTimeval(options_.io_timeout_ms)) != REDIS_OK) {
    return FailLocked("cannot set the socket timeout", false);
  }
  redisEnableKeepAlive(ctx_);
  // AUTH and SELECT ride in one round trip; their replies are checked like any other.
  std::vector<std::vector<std::string>> setup;
  if (!options_.url.password.empty()) {
    if (options_.url.user.empty()) setup.push_back({"AUTH", options_.url.password});
    else setup.push_back({"AUTH", options_.url.user, options_.url.password});
  }
  if (options_.url.db != 0) setup.push_back({"SELECT", std::to_string(options_.url.db)});
  for (const auto& cmd : setup) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : cmd) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data());
  }
  for (const auto& cmd : setup) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK) {
      return FailLocked(absl::StrCat(cmd[0], ": ", ctx_->errstr), IsTimeout(ctx_));
    }
    RedisReplyPtr reply(static_cast<redisReply*>(raw));
    if (reply->type == REDIS_REPLY_ERROR) {
      return FailLocked(absl::StrCat(cmd[0], " refused: ", std::string(reply->str, reply->len),
                                     cmd[0] == "AUTH" ? " (check the password in the URL or "
                                                        "PREFIXD_REMOTE_CACHE_PASSWORD)"
                                                      : ""),
                        false);
    }
  }
  if (ever_connected_) health_->reconnects.fetch_add(1, std::memory_order_relaxed);
  ever_connected_ = true;
  backoff_ms_ = 0;
  if (!health_->up.exchange(true)) {
    spdlog::info("{}: redis at {} is reachable; remote lookups and writes resume", options_.label,
                 options_.url.Redacted());
  }
  return absl::OkStatus();
}

StatusOr<std::vector<RedisReplyPtr>> RedisConnection::Pipeline(
    const std::vector<RedisCommand>& commands) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(EnsureConnectedLocked());
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const RedisCommand& cmd : commands) {
    argv.clear();
    lens.clear();
    for (std::string_view a : cmd) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK) {
      return FailLocked("cannot queue a command", false);
    }
  }
  std::vector<RedisReplyPtr> replies;
  replies.reserve(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
      return FailLocked(absl::StrCat(commands[i].empty() ? std::string() : std::string(commands[i][0]), ": ",
                                     ctx_->errstr[0] != '\0' ? ctx_->errstr : "no reply"),
                        IsTimeout(ctx_));
    }
    replies.emplace_back(static_cast<redisReply*>(raw));
  }
  health_->up.store(true, std::memory_order_relaxed);
  return replies;
}

Status RedisConnection::Ping() {
  ASSIGN_OR_RETURN(auto replies, Pipeline({{"PING"}}));
  if (replies[0]->type == REDIS_REPLY_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("PING refused: ", std::string(replies[0]->str, replies[0]->len)));
  }
  return absl::OkStatus();
}

}  // namespace prefixd
