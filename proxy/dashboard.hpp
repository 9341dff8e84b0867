#pragma once
// The admin dashboard (GET /admin/): one self-contained HTML page, no CDN, that polls
// /admin/stats and draws it. The page is proxy/dashboard.html, compiled into the
// binary by CMake (proxy/dashboard.cpp.in) so the proxy serves it with no files.
#include <string_view>

namespace reprise {

std::string_view dashboard_html();

}  // namespace reprise
