#include "tier/redis_url.h"

#include <gtest/gtest.h>

namespace prefixd {
namespace {

TEST(RedisUrlTest, HostPortDbAndDefaults) {
  StatusOr<RedisUrl> u = ParseRedisUrl("redis://127.0.0.1:6380/3");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->db, 3);
  EXPECT_TRUE(u->password.empty());

  u = ParseRedisUrl("redis://cache.internal");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "cache.internal");
  EXPECT_EQ(u->port, 6379);
  EXPECT_EQ(u->db, 0);
  EXPECT_EQ(u->Redacted(), "redis://cache.internal:6379/0");
}

TEST(RedisUrlTest, PasswordUserAndEscapes) {
  StatusOr<RedisUrl> u = ParseRedisUrl("redis://:p%40ss@h:1/0");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->user, "");
  EXPECT_EQ(u->password, "p@ss");
  EXPECT_EQ(u->Redacted(), "redis://:***@h:1/0");

  u = ParseRedisUrl("redis://alice:s3cret@h");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->user, "alice");
  EXPECT_EQ(u->password, "s3cret");
  EXPECT_EQ(u->Redacted().find("s3cret"), std::string::npos);

  u = ParseRedisUrl("redis://onlysecret@h");  // a lone userinfo is the password
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->password, "onlysecret");
}

TEST(RedisUrlTest, TlsAndIpv6) {
  StatusOr<RedisUrl> u = ParseRedisUrl("rediss://[::1]:7000/2");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 7000);
  EXPECT_EQ(u->db, 2);
  EXPECT_EQ(u->Redacted(), "rediss://[::1]:7000/2");
}

TEST(RedisUrlTest, BadUrlsSayWhatIsWrongWithoutLeakingThePassword) {
  for (const char* bad : {"http://h", "redis://", "redis://h:0", "redis://h:65536", "redis://h:x",
                          "redis://h/db", "redis://h/-1", "redis://[::1", "redis://[::1]x",
                          "redis://:a%4@h", "h:6379"}) {
    StatusOr<RedisUrl> u = ParseRedisUrl(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(u.status())) << bad << " -> " << u.status();
    EXPECT_NE(u.status().message().find("expected redis://"), std::string::npos) << bad;
  }
  StatusOr<RedisUrl> u = ParseRedisUrl("redis://:hunter2@h:99999");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().message().find("hunter2"), std::string::npos) << u.status();
}

}  // namespace
}  // namespace prefixd
