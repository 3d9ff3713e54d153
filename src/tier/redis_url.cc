#include "tier/redis_url.h"

#include <charconv>

namespace prefixd {

namespace {

constexpr char kForm[] = "expected redis://[[user]:password@]host[:port][/db] or rediss://...";

Status Bad(std::string_view url, std::string_view what) {
  // The URL may hold a password: never echo a URL that has userinfo.
  const bool secret = url.find('@') != std::string_view::npos;
  return absl::InvalidArgumentError(absl::StrCat("--remote-cache: ", std::string(what), " in '",
                                                 secret ? std::string("<redacted>") : std::string(url), "'; ", kForm));
}

bool ParseInt(std::string_view s, int64_t lo, int64_t hi, int* out) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < lo || v > hi) return false;
  *out = static_cast<int>(v);
  return true;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX; false on a broken escape.
bool Unescape(std::string_view s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out->push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return false;
    const int hi = HexDigit(s[i + 1]), lo = HexDigit(s[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

}  // namespace

std::string RedisUrl::Redacted() const {
  std::string auth;
  if (!user.empty() || !password.empty()) auth = absl::StrCat(user, password.empty() ? "" : ":***", "@");
  const bool v6 = host.find(':') != std::string::npos;
  return absl::StrCat(tls ? "rediss://" : "redis://", auth, v6 ? "[" : "", host, v6 ? "]" : "",
                      ":", port, "/", db);
}

StatusOr<RedisUrl> ParseRedisUrl(std::string_view url) {
  RedisUrl u;
  std::string_view rest = url;
  if (rest.starts_with("redis://")) {
    rest.remove_prefix(8);
  } else if (rest.starts_with("rediss://")) {
    u.tls = true;
    rest.remove_prefix(9);
  } else {
    return Bad(url, "unknown scheme");
  }
  // Authority ends at the first '/'; the userinfo at the last '@' before it.
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    const size_t colon = userinfo.find(':');
    std::string_view user = userinfo.substr(0, colon);
    std::string_view pass = colon == std::string_view::npos ? "" : userinfo.substr(colon + 1);
    if (colon == std::string_view::npos) {
      // redis://secret@host: a lone userinfo is the password (as redis-cli reads it).
      pass = user;
      user = "";
    }
    if (!Unescape(user, &u.user) || !Unescape(pass, &u.password)) {
      return Bad(url, "a broken %-escape in the user or password");
    }
  }
  std::string_view port;
  if (authority.starts_with('[')) {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return Bad(url, "an unclosed '[' in the host");
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) return Bad(url, "junk after the IPv6 host");
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return Bad(url, "no host");
  if (!port.empty() && !ParseInt(port, 1, 65535, &u.port)) return Bad(url, "a bad port");
  if (!path.empty() && !ParseInt(path, 0, 2147483647, &u.db)) {
    return Bad(url, "a bad database number (the path must be a number)");
  }
  return u;
}

}  // namespace prefixd
