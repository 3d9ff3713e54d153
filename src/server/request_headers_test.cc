#include "server/request_headers.h"

#include <gtest/gtest.h>

namespace prefixd {
namespace {

TEST(BearerTokenOf, SchemeInAnyCase) {
  EXPECT_EQ(BearerTokenOf("Bearer k1"), "k1");
  EXPECT_EQ(BearerTokenOf("bearer k1"), "k1");
  EXPECT_EQ(BearerTokenOf("BEARER k1"), "k1");
  EXPECT_EQ(BearerTokenOf("Bearer   k1 "), "k1");
  EXPECT_EQ(BearerTokenOf("Basic k1"), "");
  EXPECT_EQ(BearerTokenOf("Bearer"), "");
  EXPECT_EQ(BearerTokenOf("Bearerk1"), "");
  EXPECT_EQ(BearerTokenOf(""), "");
}

TEST(IsJsonContentType, JsonOnly) {
  EXPECT_TRUE(IsJsonContentType("application/json"));
  EXPECT_TRUE(IsJsonContentType("Application/JSON; charset=utf-8"));
  EXPECT_TRUE(IsJsonContentType(" application/json ;charset=UTF-8"));
  EXPECT_TRUE(IsJsonContentType("application/merge-patch+json"));
  EXPECT_FALSE(IsJsonContentType(""));
  EXPECT_FALSE(IsJsonContentType("text/plain"));
  EXPECT_FALSE(IsJsonContentType("text/plain; charset=application/json"));
  EXPECT_FALSE(IsJsonContentType("application/x-www-form-urlencoded"));
  EXPECT_FALSE(IsJsonContentType("multipart/form-data; boundary=x"));
  EXPECT_FALSE(IsJsonContentType("application/+json"));
  EXPECT_FALSE(IsJsonContentType("text/json+json"));
}

}  // namespace
}  // namespace prefixd
