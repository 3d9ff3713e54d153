// The bytes of HTTP/1.1 as the transport writes and reads them: a response's status line and
// headers, chunks, the transport's own error answers, and a request's head turned into an
// HttpRequest under the limits.
//
// Internal to prefixd_server: it includes Boost.Beast, which stays private to the library, so
// only the library's .cc files include it (http_connection.cc, http_transport.cc,
// http_wire.cc). What the rest of the server sees of HTTP is http_message.h.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

#include "server/http_message.h"
#include "server/http_transport.h"

namespace prefixd {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// The status line and headers of `r`, ending with the blank line: chunked, or with
// Content-Length `content_length`; "Connection: close" unless `keep_alive`. Header values
// come from the server, never from a client.
std::string HeadText(const HttpResponse& r, bool keep_alive, bool chunked, size_t content_length);

// `data` as one chunk of a chunked body. The last chunk ("0\r\n\r\n") is written as is.
std::string Chunk(std::string_view data);

// An answer the transport gives by itself (a limit, a malformed request, a full server): an
// OpenAI-style error object with `message`, of type invalid_request_error.
HttpResponse TransportError(int status, std::string_view message);

// The refusals for a head over `limits` (431) and a body over them (413).
HttpResponse HeadersTooLarge(const HttpTransportOptions& limits);
HttpResponse BodyTooLarge(const HttpTransportOptions& limits);

// A parser for one request, with the header and body limits of `limits` set.
void SetLimits(RequestParser& parser, const HttpTransportOptions& limits);

// Fills `out` (method, path without the query, headers in order) from `parser`'s head, read in
// full. A refusal instead when the head has more than `limits.max_header_count` headers (431)
// or a Content-Length over `limits.max_body_bytes` (413); `out` is then partly filled.
std::optional<HttpResponse> RequestFromHead(const RequestParser& parser, const HttpTransportOptions& limits,
                                            HttpRequest* out);

}  // namespace prefixd
