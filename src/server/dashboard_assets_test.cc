#include "server/dashboard_assets.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace prefixd {
namespace {

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DashboardAssets, EmbedsEveryFileByteForByte) {
  int num_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(PREFIXD_DASHBOARD_DIR)) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".html" && ext != ".css" && ext != ".js") continue;
    ++num_files;
    const std::string name = entry.path().filename().string();
    const DashboardAsset* a = FindDashboardAsset(name);
    ASSERT_NE(a, nullptr) << name << " is not embedded (re-run cmake?)";
    EXPECT_EQ(a->body, ReadFile(entry.path())) << name;
  }
  EXPECT_EQ(num_files, static_cast<int>(DashboardAssets().size()));
  EXPECT_GE(num_files, 3);
}

TEST(DashboardAssets, ContentTypesAndLookups) {
  const DashboardAsset* index = FindDashboardAsset("index.html");
  ASSERT_NE(index, nullptr);
  EXPECT_EQ(index->content_type, "text/html; charset=utf-8");
  EXPECT_EQ(FindDashboardAsset("dashboard.js")->content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(FindDashboardAsset("dashboard.css")->content_type, "text/css; charset=utf-8");
  EXPECT_EQ(FindDashboardAsset("nope.js"), nullptr);
  EXPECT_EQ(FindDashboardAsset(""), nullptr);
  EXPECT_EQ(FindDashboardAsset("../index.html"), nullptr);
}

// The page must work with no network: no URL to another host anywhere in it. The one
// absolute URL allowed is the SVG namespace, which names a standard and is never fetched.
TEST(DashboardAssets, ReferToNothingOutsideTheServer) {
  const std::regex url(R"((https?:|wss?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,})");
  for (const DashboardAsset& a : DashboardAssets()) {
    std::string body(a.body);
    for (const std::string allowed : {"http://www.w3.org/2000/svg"}) {
      for (size_t at; (at = body.find(allowed)) != std::string::npos;) body.erase(at, allowed.size());
    }
    std::smatch m;
    EXPECT_FALSE(std::regex_search(body, m, url)) << a.name << " refers to " << m.str();
  }
}

}  // namespace
}  // namespace prefixd
