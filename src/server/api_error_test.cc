#include "server/api_error.h"

#include <gtest/gtest.h>

namespace prefixd {
namespace {

TEST(ApiError, MapsStatusCodesToHttp) {
  EXPECT_EQ(HttpStatusFor(absl::OkStatus()), 200);
  EXPECT_EQ(HttpStatusFor(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusFor(absl::UnauthenticatedError("x")), 401);
  EXPECT_EQ(HttpStatusFor(absl::PermissionDeniedError("x")), 403);
  EXPECT_EQ(HttpStatusFor(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusFor(absl::ResourceExhaustedError("x")), 429);
  EXPECT_EQ(HttpStatusFor(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusFor(absl::InternalError("x")), 500);
  EXPECT_EQ(HttpStatusFor(absl::DataLossError("x")), 500);
  EXPECT_EQ(HttpStatusFor(absl::FailedPreconditionError("x")), 500);
}

TEST(ApiError, CarriesTheParam) {
  Status s = InvalidArgumentFor("messages[1].content", "bad content");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParamOf(s), "messages[1].content");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("x")), "");
  ApiError e = ApiErrorFrom(s);
  EXPECT_EQ(e.http_status, 400);
  EXPECT_EQ(e.type, "invalid_request_error");
  nlohmann::json j = ApiErrorJson(e);
  EXPECT_EQ(j["error"]["message"], "bad content");
  EXPECT_EQ(j["error"]["param"], "messages[1].content");
  EXPECT_TRUE(j["error"]["code"].is_null());
}

TEST(ApiError, NullParamAndCode) {
  ApiError e = ApiErrorFrom(absl::ResourceExhaustedError("queue full"));
  EXPECT_EQ(e.http_status, 429);
  nlohmann::json j = ApiErrorJson(e);
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_EQ(j["error"]["type"], "rate_limit_error");
}

TEST(ApiError, BodyNeverThrowsOnInvalidUtf8) {
  ApiError e = MakeApiError(400, std::string("bad \xff byte"), "prompt", "x");
  std::string body;
  EXPECT_NO_THROW(body = ApiErrorBody(e));
  EXPECT_NE(body.find("bad"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(body)["error"]["code"], "x");
}

}  // namespace
}  // namespace prefixd
