#include "server/json_body.h"

#include <gtest/gtest.h>

#include "server/api_error.h"

namespace prefixd {
namespace {

// `n` arrays, one inside the other.
std::string Nested(size_t n) { return std::string(n, '[') + std::string(n, ']'); }

TEST(JsonBody, NestingLimitIsExact) {
  // The top-level object is level 1: 63 arrays inside it reach 64.
  EXPECT_TRUE(ParseJsonObject("{\"a\":" + Nested(63) + "}").ok());
  auto r = ParseJsonObject("{\"a\":" + Nested(64) + "}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ParamOf(r.status()), "a" + [] {
    std::string p;
    for (int i = 0; i < 63; ++i) p += "[0]";
    return p;
  }());
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseJsonObject("{\"a\":\"" + Nested(1000) + "\\\"[[\"}").ok());
  EXPECT_TRUE(ParseJsonObject("{\"a\":" + Nested(3) + "}", 4).ok());
  EXPECT_FALSE(ParseJsonObject("{\"a\":" + Nested(4) + "}", 4).ok());
}

TEST(JsonBody, PathAtNamesNestedFields) {
  const std::string t = R"({"a": 1, "b": [10, {"c": "xyz"}], "d": {"e": [[1, 2], [3]]}})";
  EXPECT_EQ(JsonPathAt(t, t.find("xyz") + 1), "b[1].c");
  EXPECT_EQ(JsonPathAt(t, t.find("10")), "b[0]");
  EXPECT_EQ(JsonPathAt(t, t.find("3]")), "d.e[1][0]");
  EXPECT_EQ(JsonPathAt(t, t.find("2]")), "d.e[0][1]");
  EXPECT_EQ(JsonPathAt(t, 0), "");
  EXPECT_EQ(JsonPathAt(t, t.find("1,")), "a");
  EXPECT_EQ(JsonPathAt(R"({"k\"q": "v"})", 10), "k\"q");
}

TEST(JsonBody, ObjectsOnlyAndPathJoin) {
  auto a = ParseJsonObject("[1]");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("must be a JSON object, got array"), std::string::npos) << a.status();
  auto o = ParseOrderedJsonObject(R"({"z":1,"a":2})");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->dump(), R"({"z":1,"a":2})");
  EXPECT_EQ(JsonPathJoin("", "a"), "a");
  EXPECT_EQ(JsonPathJoin(JsonPathJoin("m", 2), "c"), "m[2].c");
  EXPECT_EQ(JsonTypeName(nlohmann::json(1.5)), "number");
}

TEST(JsonBody, FieldsNameThemselvesInTheirErrors) {
  const nlohmann::json j = nlohmann::json::parse(R"({"n":16.0,"x":null,"s":"a","f":1.5,"big":1e300})");
  EXPECT_EQ(FindField(j, "x"), nullptr);
  EXPECT_EQ(FindField(j, "absent"), nullptr);
  ASSERT_NE(FindField(j, "n"), nullptr);
  EXPECT_EQ(*ReadInt(*FindField(j, "n"), "n", 0, 20), 16);
  auto range = ReadInt(*FindField(j, "n"), "n", 0, 10);
  ASSERT_FALSE(range.ok());
  EXPECT_EQ(ParamOf(range.status()), "n");
  EXPECT_NE(range.status().message().find("between 0 and 10"), std::string::npos) << range.status();
  auto type = ReadInt(*FindField(j, "f"), "a.f", 0, 10);
  ASSERT_FALSE(type.ok());
  EXPECT_EQ(type.status().message(), "'a.f' must be an integer, got number");
  EXPECT_FALSE(ReadNumber(*FindField(j, "big"), "big", 0, 2).ok());
  EXPECT_EQ(*ReadString(*FindField(j, "s"), "s"), "a");
  EXPECT_FALSE(ReadBool(*FindField(j, "s"), "s").ok());
}

}  // namespace
}  // namespace prefixd
