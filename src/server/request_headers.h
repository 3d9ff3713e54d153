// Reading the request headers the server's checks look at: Authorization and Content-Type.
// Independent of the HTTP library.
//
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace prefixd {

// Compares ASCII letters without regard to case.
bool EqualsIgnoringCase(std::string_view a, std::string_view b);

// The token of an Authorization header's Bearer credentials, or "" when the header is not
// Bearer credentials. The scheme is case-insensitive (RFC 9110 section 11.1): "bearer KEY"
// and "BEARER KEY" read as "Bearer KEY".
std::string BearerTokenOf(std::string_view authorization);

// Whether a Content-Type header value names JSON: application/json or application/...+json,
// parameters (charset) allowed, case-insensitive.
bool IsJsonContentType(std::string_view content_type);

}  // namespace prefixd
