#include "server/http_wire.h"

#include <boost/asio/buffer.hpp>

#include <cstdint>
#include <cstdio>

namespace prefixd {

namespace http = boost::beast::http;

namespace {

const char* Reason(int status) {
  const auto reason = http::obsolete_reason(static_cast<http::status>(status));
  return reason.empty() ? "Unknown" : reason.data();
}

std::string ErrorBody(std::string_view message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    escaped += c;
  }
  return R"({"error":{"message":")" + escaped + R"(","type":"invalid_request_error","param":null,"code":null}})";
}

}  // namespace

std::string HeadText(const HttpResponse& r, bool keep_alive, bool chunked, size_t content_length) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) + "\r\n";
  out += "Server: prefixd\r\n";
  if (!r.content_type.empty()) out += "Content-Type: " + r.content_type + "\r\n";
  for (const auto& [k, v] : r.headers) out += k + ": " + v + "\r\n";
  if (chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  } else {
    out += "Content-Length: " + std::to_string(content_length) + "\r\n";
  }
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  return out;
}

std::string Chunk(std::string_view data) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out = size;
  out.append(data);
  out += "\r\n";
  return out;
}

HttpResponse TransportError(int status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = ErrorBody(message);
  return r;
}

HttpResponse HeadersTooLarge(const HttpTransportOptions& limits) {
  return TransportError(431, "the request headers are larger than " + std::to_string(limits.max_header_bytes) + " bytes");
}

HttpResponse BodyTooLarge(const HttpTransportOptions& limits) {
  return TransportError(413, "the request body is larger than " + std::to_string(limits.max_body_bytes) + " bytes");
}

void SetLimits(RequestParser& parser, const HttpTransportOptions& limits) {
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes);
}

std::optional<HttpResponse> RequestFromHead(const RequestParser& parser, const HttpTransportOptions& limits,
                                            HttpRequest* out) {
  const auto& h = parser.get();
  *out = HttpRequest{};
  out->method = std::string(h.method_string());
  const std::string_view target(h.target().data(), h.target().size());
  out->path = std::string(target.substr(0, target.find('?')));
  size_t count = 0;
  for (const auto& field : h) {
    if (++count > limits.max_header_count) {
      return TransportError(431, "the request has more than " + std::to_string(limits.max_header_count) + " headers");
    }
    out->headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  if (const auto length = parser.content_length(); length && *length > limits.max_body_bytes) {
    return BodyTooLarge(limits);
  }
  return std::nullopt;
}

RequestRead ReadRequest(std::string_view bytes, const HttpTransportOptions& limits) {
  RequestRead out;
  RequestParser parser;
  SetLimits(parser, limits);
  size_t used = 0;
  boost::beast::error_code ec;
  // Feeds the parser what is left of `bytes`. False when it can read no further: an error
  // (in `ec`), or no byte was taken (`ec` cleared): the bytes ended first.
  // A put that takes nothing without an error (Beast's answer to an empty buffer mid-body)
  // also ends it: looping on it would never return (found by http_request_fuzz).
  auto feed = [&] {
    ec = {};
    if (used >= bytes.size()) return false;
    const size_t n = parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) ec = {};
    return !ec && n > 0;
  };
  while (!parser.is_header_done()) {
    if (feed()) continue;
    if (ec == http::error::header_limit) {
      out.refusal = HeadersTooLarge(limits);
    } else if (ec == http::error::body_limit) {  // a Content-Length over the limit
      out.refusal = BodyTooLarge(limits);
    } else if (ec) {
      out.refusal = TransportError(400, "the request is not valid HTTP/1.1: " + ec.message());
    }
    out.kind = ec ? RequestRead::Kind::kRefused : RequestRead::Kind::kIncomplete;
    return out;
  }
  if (std::optional<HttpResponse> refused = RequestFromHead(parser, limits, &out.request)) {
    out.kind = RequestRead::Kind::kRefused;
    out.refusal = *std::move(refused);
    return out;
  }
  parser.eager(true);
  while (!parser.is_done()) {
    if (feed()) continue;
    if (ec == http::error::body_limit) {
      out.kind = RequestRead::Kind::kRefused;
      out.refusal = BodyTooLarge(limits);
    } else {
      // A body whose framing is broken closes the connection unanswered, as it does there.
      out.kind = ec ? RequestRead::Kind::kClosed : RequestRead::Kind::kIncomplete;
    }
    return out;
  }
  out.request.body = std::move(parser.get().body());
  out.kind = RequestRead::Kind::kRequest;
  out.num_bytes = used;
  out.keep_alive = parser.get().keep_alive();
  return out;
}

}  // namespace prefixd
