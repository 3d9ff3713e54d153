#include "tier/redis_test_server.h"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"

namespace prefixd {

namespace {

// A port the kernel just handed out and released; redis-server binds it right after.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

std::string ReplyText(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_NIL: return "(nil)";
    case REDIS_REPLY_INTEGER: return std::to_string(r->integer);
    case REDIS_REPLY_ARRAY: {
      std::string out;
      for (size_t i = 0; i < r->elements; ++i) {
        absl::StrAppend(&out, i ? " " : "", ReplyText(r->element[i]));
      }
      return out;
    }
    default: return std::string(r->str, r->len);
  }
}

}  // namespace

RedisTestServer::RedisTestServer() : port_(FreePort()) {}

RedisTestServer::~RedisTestServer() { Kill(); }

std::string RedisTestServer::url() const { return absl::StrCat("redis://127.0.0.1:", port_); }

bool RedisTestServer::Start() {
  if (system("command -v redis-server >/dev/null 2>&1") != 0) {
    skip_reason_ = "redis-server is not installed (Debian: apt-get install redis-server)";
    return false;
  }
  const std::string port = std::to_string(port_);
  pid_ = fork();
  if (pid_ == 0) {
    execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
           "--save", "", "--appendonly", "no", "--enable-debug-command", "yes", "--loglevel",
           "warning", "--logfile", "/dev/null", static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Command({"PING"}) == "PONG") return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      skip_reason_ = absl::StrCat("redis-server exited at start on port ", port_);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  skip_reason_ = absl::StrCat("redis-server did not answer PING within 5 s on port ", port_);
  Kill();
  return false;
}

void RedisTestServer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void RedisTestServer::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RedisTestServer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

std::string RedisTestServer::Command(const std::vector<std::string>& args) const {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
  if (c == nullptr || c->err != 0) {
    if (c != nullptr) redisFree(c);
    return "(connect failed)";
  }
  redisSetTimeout(c, tv);
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
  std::string out = r == nullptr ? "(io error)" : ReplyText(r);
  if (r != nullptr) freeReplyObject(r);
  redisFree(c);
  return out;
}

}  // namespace prefixd
