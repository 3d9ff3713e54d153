// ApiError: the error object every failing HTTP answer carries, and the one mapping from a
// Status to an HTTP status code. OpenAI's shape everywhere, Anthropic's on /v1/messages:
//
//   {"error": {"message": "...", "type": "invalid_request_error", "param": "max_tokens",
//              "code": null}}
//   {"type": "error", "error": {"type": "invalid_request_error", "message": "..."}}
//
// A Status made by InvalidArgumentFor(param, ...) carries the offending field as a payload, so
// request validation can name it without a second error type crossing the code.
//
// Thread safety: pure functions and value types.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace prefixd {

struct ApiError {
  int http_status = 500;
  std::string message;
  std::string type;   // "invalid_request_error", "authentication_error", ...
  std::string param;  // the offending request field; empty: null
  std::string code;   // a machine-readable code; empty: null
};

// The HTTP status for `status`: InvalidArgument 400, Unauthenticated 401, PermissionDenied 403,
// NotFound 404, ResourceExhausted 429, Unavailable 503, anything else 500. OK gives 200.
int HttpStatusFor(const Status& status);

// InvalidArgument with `param` (a JSON path such as "messages[2].content") attached.
Status InvalidArgumentFor(std::string_view param, std::string_view message);
// The param attached by InvalidArgumentFor, or "".
std::string ParamOf(const Status& status);

// The error for a non-OK status: its HTTP status, message, param, and the OpenAI type that
// goes with the HTTP status.
ApiError ApiErrorFrom(const Status& status);
// An error with an explicit HTTP status (413, 404 for unknown routes, ...).
ApiError MakeApiError(int http_status, std::string message, std::string param = "",
                      std::string code = "");

// Which API's error shape an answer takes.
enum class ApiDialect { kOpenAi, kAnthropic };

nlohmann::json ApiErrorJson(const ApiError& error, ApiDialect dialect = ApiDialect::kOpenAi);
// ApiErrorJson serialized; never throws (invalid UTF-8 in the message is replaced).
std::string ApiErrorBody(const ApiError& error, ApiDialect dialect = ApiDialect::kOpenAi);

// The OpenAI error type for an HTTP status ("invalid_request_error" for 400, ...).
const char* ErrorTypeFor(int http_status);
// Anthropic's: invalid_request_error (4xx), authentication_error (401), permission_error
// (403), not_found_error (404), request_too_large (413), rate_limit_error (429),
// overloaded_error (503), api_error (other 5xx).
const char* AnthropicErrorTypeFor(int http_status);

}  // namespace prefixd
