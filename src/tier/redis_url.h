// RedisUrl: where the remote tier (L4) lives, parsed from --remote-cache.
//
//   redis://[[user]:password@]host[:port][/db]      plain TCP (port 6379, db 0 by default)
//   rediss://...                                    TLS: parsed, but refused by RedisStore
//                                                   unless hiredis was built with SSL
//
// The password may also come from an environment variable (the app reads
// PREFIXD_REMOTE_CACHE_PASSWORD when the URL has none). Percent-escapes (%40 for '@') are
// decoded in the user and password.
//
// Thread safety: plain data and pure functions.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace prefixd {

struct RedisUrl {
  bool tls = false;
  std::string host;
  int port = 6379;
  int db = 0;
  std::string user;      // empty: AUTH with the password alone
  std::string password;  // empty: no AUTH

  // The URL without the password, for logs and /props.
  std::string Redacted() const;
};

// InvalidArgument, naming the part that is wrong and showing the expected form, for anything
// that is not redis:// or rediss:// with a host, a port in 1..65535 and a db in 0..2^31-1.
StatusOr<RedisUrl> ParseRedisUrl(std::string_view url);

}  // namespace prefixd
