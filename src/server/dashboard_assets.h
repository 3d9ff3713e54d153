// The dashboard's static files (src/server/dashboard/*.html, *.css, *.js), embedded in the
// binary at build time so that `prefixd serve` stays one self-contained file and the page
// fetches nothing from anywhere but the server that sent it.
//
// The build turns each file into a byte array (src/server/dashboard/embed.cmake writes
// dashboard_files.cc into the build folder); there is no other build step, and what is
// served is the file as written.
//
// Thread safety: immutable data; every function may be called from any thread.
#pragma once

#include <span>
#include <string_view>

namespace prefixd {

struct DashboardAsset {
  std::string_view name;          // file name, e.g. "dashboard.js"
  std::string_view content_type;  // from the extension, with charset
  std::string_view body;
};

// Every embedded file, in file-name order.
std::span<const DashboardAsset> DashboardAssets();

// The file called `name` ("index.html" for the page itself), or nullptr.
const DashboardAsset* FindDashboardAsset(std::string_view name);

// The Content-Security-Policy the dashboard is served with: scripts, styles and fetches from
// the same origin only, so the browser itself refuses anything that would leave the server.
inline constexpr std::string_view kDashboardContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace prefixd
