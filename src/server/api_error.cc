#include "server/api_error.h"

#include "absl/strings/cord.h"

namespace prefixd {

namespace {
constexpr std::string_view kParamPayload = "type.prefixd/param";
}  // namespace

int HttpStatusFor(const Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

Status InvalidArgumentFor(std::string_view param, std::string_view message) {
  // Debian's absl has its own string_view type; go through std::string.
  Status s = absl::InvalidArgumentError(std::string(message));
  if (!param.empty()) s.SetPayload(std::string(kParamPayload), absl::Cord(std::string(param)));
  return s;
}

std::string ParamOf(const Status& status) {
  auto payload = status.GetPayload(std::string(kParamPayload));
  return payload ? std::string(*payload) : std::string();
}

const char* ErrorTypeFor(int http_status) {
  switch (http_status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "unavailable_error";
    default: return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

const char* AnthropicErrorTypeFor(int http_status) {
  switch (http_status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default: return http_status >= 500 ? "api_error" : "invalid_request_error";
  }
}

ApiError ApiErrorFrom(const Status& status) {
  ApiError e;
  e.http_status = HttpStatusFor(status);
  e.message = std::string(status.message());
  if (e.message.empty()) e.message = absl::StatusCodeToString(status.code());
  e.type = ErrorTypeFor(e.http_status);
  e.param = ParamOf(status);
  return e;
}

ApiError MakeApiError(int http_status, std::string message, std::string param, std::string code) {
  ApiError e;
  e.http_status = http_status;
  e.message = std::move(message);
  e.type = ErrorTypeFor(http_status);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

nlohmann::json ApiErrorJson(const ApiError& error, ApiDialect dialect) {
  if (dialect == ApiDialect::kAnthropic) {
    return nlohmann::json{{"type", "error"},
                          {"error", {{"type", AnthropicErrorTypeFor(error.http_status)}, {"message", error.message}}}};
  }
  nlohmann::json inner;
  inner["message"] = error.message;
  inner["type"] = error.type;
  inner["param"] = error.param.empty() ? nlohmann::json(nullptr) : nlohmann::json(error.param);
  inner["code"] = error.code.empty() ? nlohmann::json(nullptr) : nlohmann::json(error.code);
  return nlohmann::json{{"error", std::move(inner)}};
}

std::string ApiErrorBody(const ApiError& error, ApiDialect dialect) {
  return ApiErrorJson(error, dialect).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace prefixd
