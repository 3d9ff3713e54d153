// RedisTestServer: a throwaway redis-server on 127.0.0.1 and a free port, for tests of the
// remote tier (no persistence, no other clients). Tests skip (with the reason) when
// redis-server is not installed.
//
//   RedisTestServer redis;
//   if (!redis.Start()) GTEST_SKIP() << redis.skip_reason();
//   redis.Kill(); redis.Start();      // an outage: same port, empty data
//   redis.Pause(); redis.Resume();    // SIGSTOP / SIGCONT: a Redis that stops answering
//
// Thread safety: one test thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace prefixd {

class RedisTestServer {
 public:
  RedisTestServer();
  ~RedisTestServer();  // kills the server

  // Starts redis-server (again, on the same port after Kill) and waits until it answers PING
  // (up to 5 s). False, with skip_reason(), when redis-server is missing or does not start.
  bool Start();
  void Kill();    // SIGKILL and reap
  void Pause();   // SIGSTOP
  void Resume();  // SIGCONT

  int port() const { return port_; }
  std::string url() const;  // redis://127.0.0.1:<port>
  const std::string& skip_reason() const { return skip_reason_; }

  // Runs one command on a fresh raw connection; the reply as text ("(nil)", integers in
  // decimal, arrays space-separated). For tests that tamper with values or inspect TTLs.
  std::string Command(const std::vector<std::string>& args) const;

 private:
  int port_ = 0;
  pid_t pid_ = -1;
  std::string skip_reason_;
};

}  // namespace prefixd
