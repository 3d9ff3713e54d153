#include "server/request_headers.h"

#include <cctype>

namespace prefixd {

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// The token of an Authorization header's Bearer credentials, or "". The scheme is
// case-insensitive (RFC 9110 11.1): "bearer KEY" and "BEARER KEY" work as "Bearer KEY".
std::string BearerTokenOf(std::string_view authorization) {
  const size_t sp = authorization.find(' ');
  if (sp == std::string_view::npos || !EqualsIgnoringCase(authorization.substr(0, sp), "Bearer")) return "";
  std::string_view token = authorization.substr(sp + 1);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  return std::string(token);
}

// Whether a Content-Type names JSON: application/json or any application/...+json, with
// parameters (charset) allowed, case-insensitive.
bool IsJsonContentType(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  if (EqualsIgnoringCase(media, "application/json")) return true;
  constexpr std::string_view kApp = "application/", kSuffix = "+json";
  return media.size() > kApp.size() + kSuffix.size() && EqualsIgnoringCase(media.substr(0, kApp.size()), kApp) &&
         EqualsIgnoringCase(media.substr(media.size() - kSuffix.size()), kSuffix);
}

}  // namespace prefixd
