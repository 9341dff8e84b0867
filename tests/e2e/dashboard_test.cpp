// The admin dashboard (GET /admin/) in a real browser: headless Chromium loads the
// page from the real binary, lets its first polls of /admin/stats and
// /admin/namespaces complete, and dumps the rendered DOM. The numbers it shows (in
// elements with data-stat / data-ns-stat and the raw value in data-value) must equal
// what /admin/stats says. A screenshot is kept as a test artifact:
// <build dir>/test-artifacts/dashboard.png.
//
// Chromium is required (Debian package `chromium`, see scripts/install-deps.sh): the
// test fails, it does not skip, when no browser is found. REPRISE_CHROMIUM may name
// the browser binary.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <regex>
#include <sstream>
#include <thread>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kAdminToken = "dash-s3cret-token";

std::string find_chromium() {
  if (const char* env = std::getenv("REPRISE_CHROMIUM"); env && *env) {
    if (::access(env, X_OK) != 0) FAIL("REPRISE_CHROMIUM=" << std::string(env) << " is not an executable file");
    return env;
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  dirs += ":/usr/bin:/usr/lib/chromium";
  for (const char* name : {"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}) {
    std::stringstream in(dirs);
    for (std::string dir; std::getline(in, dir, ':');) {
      if (dir.empty()) continue;
      fs::path candidate = fs::path(dir) / name;
      if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate)) return candidate.string();
    }
  }
  return "";
}

std::string require_chromium() {
  std::string bin = find_chromium();
  if (bin.empty())
    FAIL("headless Chromium is needed for the dashboard test and none was found on PATH (install the Debian "
         "package `chromium`: scripts/install-deps.sh does; or set REPRISE_CHROMIUM to a Chromium binary)");
  return bin;
}

// Runs headless Chromium on `url` with extra arguments; returns its stdout. The
// virtual time budget lets the page's first polls (every 2 s) complete: virtual time
// stands still while fetches are pending, and runs fast otherwise.
std::string run_chromium(const std::string& bin, const TempDir& dir, const std::string& name,
                         const std::string& url, std::vector<std::string> extra, int budget_ms = 3000) {
  std::vector<std::string> argv{bin,
                                "--headless=new",
                                "--no-sandbox",  // root in a container
                                "--disable-gpu",
                                "--disable-dev-shm-usage",
                                "--no-first-run",
                                "--no-default-browser-check",
                                "--disable-extensions",
                                "--disable-background-networking",
                                "--disable-component-update",
                                "--disable-sync",
                                "--hide-scrollbars",
                                "--mute-audio",
                                "--user-data-dir=" + (dir / (name + "-profile")).string(),
                                "--virtual-time-budget=" + std::to_string(budget_ms)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  Process chromium(argv, dir.path(), name, {{"HOME", dir.path().string()}});
  int rc = chromium.wait_exit(std::chrono::seconds(30));
  std::string err = chromium.err();
  if (err.size() > 3000) err = "..." + err.substr(err.size() - 3000);
  INFO("chromium stderr: " << err);
  REQUIRE_MESSAGE(rc == 0, "chromium (" << bin << ") exited with " << rc << " (-1: still running after 30 s)");
  return chromium.out();
}

std::string unescape(std::string s) {
  static const std::vector<std::pair<std::string, std::string>> entities{
      {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&nbsp;", " "}, {"&amp;", "&"}};
  for (auto& [from, to] : entities)
    for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
  return s;
}

// The DOM without comments, scripts and styles: what is left are elements and text.
std::string strip(std::string dom) {
  for (auto [open, close] : {std::pair{"<!--", "-->"}, std::pair{"<script", "</script>"}, std::pair{"<style", "</style>"}}) {
    for (size_t at; (at = dom.find(open)) != std::string::npos;) {
      size_t end = dom.find(close, at);
      dom.erase(at, end == std::string::npos ? std::string::npos : end + std::strlen(close) - at);
    }
  }
  return dom;
}

struct Element {
  std::map<std::string, std::string> attrs;  // unescaped
  std::string text;                          // the text up to the first child tag
  size_t begin = 0, end = 0;                 // the start tag's span in the DOM
  bool has(const std::string& name) const { return attrs.count(name) > 0; }
  std::string operator[](const std::string& name) const {
    auto it = attrs.find(name);
    return it == attrs.end() ? std::string() : it->second;
  }
};

// Every element whose start tag has the attribute `attr`, in document order.
std::vector<Element> elements_with(const std::string& dom, const std::string& attr) {
  static const std::regex attr_re(R"re(([A-Za-z_:][-A-Za-z0-9_:.]*)(?:="([^"]*)")?)re");
  std::vector<Element> out;
  const std::string needle = " " + attr;
  for (size_t pos = 0; (pos = dom.find(needle, pos)) != std::string::npos; ++pos) {
    char after = dom[pos + needle.size()];
    if (after != '=' && after != ' ' && after != '>') continue;
    size_t start = dom.rfind('<', pos), stop = dom.find('>', pos);
    if (start == std::string::npos || stop == std::string::npos) continue;
    Element e;
    e.begin = start;
    e.end = stop + 1;
    std::string tag = dom.substr(start + 1, stop - start - 1);
    tag = tag.substr(std::min(tag.find(' '), tag.size()));  // drop the tag name
    for (std::sregex_iterator it(tag.begin(), tag.end(), attr_re), last; it != last; ++it)
      e.attrs[(*it)[1].str()] = unescape((*it)[2].str());
    size_t text_end = dom.find('<', stop);
    e.text = unescape(dom.substr(stop + 1, text_end - stop - 1));
    out.push_back(std::move(e));
  }
  return out;
}

std::map<std::string, Element> by_attr(const std::vector<Element>& elements, const std::string& attr) {
  std::map<std::string, Element> out;
  for (auto& e : elements) out.emplace(e[attr], e);
  return out;
}

std::string without_commas(std::string s) {
  std::erase(s, ',');
  return s;
}

// /admin/stats once the counters have settled (the ledger may record a response
// just after it was sent): two reads in a row agree, apart from the clock.
json settled_stats(uint16_t admin_port, int expected_requests) {
  json last;
  for (int i = 0; i < 200; ++i) {
    auto r = request(admin_port, "GET", "/admin/stats");
    REQUIRE(r.status == 200);
    json now = r.json();
    now.erase("uptime_s");
    now.erase("store_bytes");  // the store's files change on their own
    if (now["requests"] == expected_requests && now == last) return r.json();
    last = std::move(now);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("/admin/stats did not settle at " << expected_requests << " requests: " << last.dump());
  return {};
}

fs::path artifact_dir() {
  fs::path dir = fs::path(REPRISE_BINARY_DIR) / "test-artifacts";
  fs::create_directories(dir);
  return dir;
}

Response chat_in(uint16_t port, const std::string& ns, int n, const std::string& cache_mode = "") {
  std::vector<std::pair<std::string, std::string>> headers{{"X-Reprise-Namespace", ns}};
  if (!cache_mode.empty()) headers.emplace_back("X-Reprise-Cache", cache_mode);
  return post_json(port, "/v1/chat/completions", chat_body("Describe the dashboard", n), headers);
}

}  // namespace

TEST_CASE("dashboard: a real browser shows the numbers of /admin/stats and the namespaces") {
  const std::string chromium = require_chromium();
  TempDir dir;
  FakeUpstream fake(dir);
  ProxyConfig config;
  ProxyUnderTest proxy(dir, config.render(dir, fake.base_url()),
                       {{"REPRISE_TEST_KEY", "sk-test-configured-key-0123456789"}, {"REPRISE_ADMIN_TOKEN", ""}});

  // The page itself: served without a token, self-contained.
  auto page = request(proxy.admin_port(), "GET", "/admin/");
  REQUIRE(page.status == 200);
  CHECK(page.header("Content-Type").starts_with("text/html"));
  for (const char* external : {"src=\"http", "href=\"http", "src=\"//", "href=\"//", "url(http", "@import", "<script src"})
    CHECK_MESSAGE(page.body.find(external) == std::string::npos, "the page refers to something outside it: " << external);

  // Traffic: a miss (alpha), a hit of the same samples in another namespace (beta),
  // a partial (gamma asks for three, two exist), a bypass (alpha).
  auto miss = chat_in(proxy.port(), "alpha", 2);
  REQUIRE(miss.status == 200);
  CHECK(miss.header("X-Reprise-Cache") == "miss");
  auto hit = chat_in(proxy.port(), "beta", 2);
  REQUIRE(hit.status == 200);
  CHECK(hit.header("X-Reprise-Cache") == "hit");
  auto partial = chat_in(proxy.port(), "gamma", 3);
  REQUIRE(partial.status == 200);
  CHECK(partial.header("X-Reprise-Cache") == "partial");
  auto bypass = chat_in(proxy.port(), "alpha", 1, "bypass");
  REQUIRE(bypass.status == 200);
  CHECK(bypass.header("X-Reprise-Cache") == "bypass");

  const json stats = settled_stats(proxy.admin_port(), 4);
  REQUIRE(stats["hits"].get<int>() >= 1);
  REQUIRE(stats["prompt_tokens_avoided"].get<int>() > 0);

  const std::string url = "http://127.0.0.1:" + std::to_string(proxy.admin_port()) + "/admin/";
  {  // The rendered page (the DOM is shown when a check fails).
    const std::string dom = strip(run_chromium(chromium, dir, "chromium-dom", url, {"--dump-dom"}));
    INFO("rendered DOM: " << dom.substr(0, 4000));
    REQUIRE(dom.find("data-state=\"ok\"") != std::string::npos);  // <body>: the last poll succeeded

    // The top-level numbers, as raw values and as the text shown.
    auto shown = by_attr(elements_with(dom, "data-stat"), "data-stat");
    for (const char* field : {"requests", "hits", "misses", "partials", "bypassed", "errors", "samples_served",
                              "samples_generated", "upstream_calls", "prompt_tokens_avoided",
                              "completion_tokens_avoided", "prompt_tokens_spent", "completion_tokens_spent",
                              "in_flight_generations"}) {
      CAPTURE(field);
      REQUIRE(shown.count(field));
      const std::string expected = std::to_string(stats[field].get<int64_t>());
      CHECK(shown[field]["data-value"] == expected);
      CHECK(without_commas(shown[field].text) == expected);
    }
    for (const char* field : {"energy_avoided_wh", "energy_avoided_wh_low", "energy_avoided_wh_high", "co2_avoided_g",
                              "co2_avoided_g_low", "co2_avoided_g_high", "energy_spent_wh", "co2_spent_g", "hit_ratio"}) {
      CAPTURE(field);
      REQUIRE(shown.count(field));
      REQUIRE(shown[field].has("data-value"));
      CHECK(std::stod(shown[field]["data-value"]) == doctest::Approx(stats[field].get<double>()).epsilon(1e-12));
      CHECK(!shown[field].text.empty());
      CHECK(shown[field].text != "–");
    }
    CHECK(std::stod(shown["energy_avoided_wh"]["data-value"]) > 0);
    for (const char* field : {"upstream_latency_ms.p50", "upstream_latency_ms.p90", "upstream_latency_ms.p99"}) {
      CAPTURE(field);
      REQUIRE(shown.count(field));
      std::string key = std::string(field).substr(std::strlen("upstream_latency_ms."));
      CHECK(std::stod(shown[field]["data-value"]) == doctest::Approx(stats["upstream_latency_ms"][key].get<double>()));
    }
    REQUIRE(shown.count("store_bytes"));
    // The store's files keep changing on their own (RocksDB's LOG, the counters saved
    // every 5 s), so the page's figure, fetched a moment later, is only close.
    const double shown_bytes = std::stod(shown["store_bytes"]["data-value"]);
    CHECK(shown_bytes > 0);
    CHECK(shown_bytes == doctest::Approx(stats["store_bytes"].get<double>()).epsilon(0.5));
    REQUIRE(shown.count("uptime_s"));
    CHECK(shown["uptime_s"].text != "–");
    // The total tokens avoided, and the "last updated" time.
    auto ids = by_attr(elements_with(dom, "id"), "id");
    REQUIRE(ids.count("tokens-avoided-total"));
    CHECK(ids["tokens-avoided-total"]["data-value"] ==
          std::to_string(stats["prompt_tokens_avoided"].get<int64_t>() + stats["completion_tokens_avoided"].get<int64_t>()));
    REQUIRE(ids.count("last-updated"));
    CHECK(ids["last-updated"].has("data-time"));
    CHECK(ids["last-updated"].text != "never");
    REQUIRE(ids.count("error-banner"));
    CHECK(ids["error-banner"].has("hidden"));
    REQUIRE(ids.count("chart-requests"));

    // The namespace table: every namespace of /admin/stats, with its counters.
    std::map<std::string, std::map<std::string, Element>> rows;
    auto row_tags = elements_with(dom, "data-namespace");
    for (size_t i = 0; i < row_tags.size(); ++i) {
      size_t row_end = dom.find("</tr>", row_tags[i].end);
      rows[row_tags[i]["data-namespace"]] =
          by_attr(elements_with(dom.substr(row_tags[i].end, row_end - row_tags[i].end), "data-ns-stat"), "data-ns-stat");
    }
    REQUIRE(stats["namespaces"].size() >= 3);
    for (const char* ns : {"alpha", "beta", "gamma"}) CHECK(stats["namespaces"].contains(ns));
    CHECK(rows.size() == stats["namespaces"].size());
    for (auto& [ns, counters] : stats["namespaces"].items()) {
      CAPTURE(ns);
      REQUIRE(rows.count(ns));
      auto& row = rows[ns];
      CHECK(row["requests"]["data-value"] == std::to_string(counters["requests"].get<int64_t>()));
      CHECK(without_commas(row["requests"].text) == std::to_string(counters["requests"].get<int64_t>()));
      CHECK(row["hits"]["data-value"] == std::to_string(counters["hits"].get<int64_t>()));
      CHECK(row["tokens_avoided"]["data-value"] ==
            std::to_string(counters["prompt_tokens_avoided"].get<int64_t>() +
                           counters["completion_tokens_avoided"].get<int64_t>()));
      CHECK(std::stod(row["energy_avoided_wh"]["data-value"]) ==
            doctest::Approx(counters["energy_avoided_wh"].get<double>()).epsilon(1e-12));
    }
    CHECK(rows["alpha"]["requests"]["data-value"] == "2");
    CHECK(rows["beta"]["requests"]["data-value"] == "1");
    CHECK(rows["beta"]["hits"]["data-value"] == "1");
    CHECK(rows["gamma"]["requests"]["data-value"] == "1");
    // From /admin/namespaces: the samples each namespace has consumed.
    auto listed = request(proxy.admin_port(), "GET", "/admin/namespaces").json();
    for (auto& entry : listed["namespaces"]) {
      const std::string ns = entry["name"].get<std::string>();
      CAPTURE(ns);
      REQUIRE(rows.count(ns));
      if (entry.contains("samples_consumed"))
        CHECK(rows[ns]["samples_consumed"]["data-value"] == std::to_string(entry["samples_consumed"].get<int64_t>()));
      if (entry.contains("keys")) CHECK(rows[ns]["keys"]["data-value"] == std::to_string(entry["keys"].get<int64_t>()));
    }
  }

  // The artifact: what a user sees, with some traffic while the page polls so that
  // its charts have something to show (cosmetic: nothing below depends on it).
  const fs::path shot = artifact_dir() / "dashboard.png";
  fs::remove(shot);
  {
    std::jthread traffic([&](std::stop_token stop) {  // stopped and joined at the end of this block
      for (int i = 0; !stop.stop_requested(); ++i) {
        try {
          chat_in(proxy.port(), "replay-" + std::to_string(i % 3), 1);
        } catch (...) {
          return;
        }
      }
    });
    run_chromium(chromium, dir, "chromium-shot", url, {"--window-size=1280,1000", "--screenshot=" + shot.string()},
                 8000);
  }
  REQUIRE_MESSAGE(fs::exists(shot), "no screenshot at " << shot);
  CHECK(fs::file_size(shot) > 10000);
  CHECK(read_file(shot).substr(1, 3) == "PNG");
  MESSAGE("dashboard screenshot: " << shot.string());
}

TEST_CASE("dashboard: with an admin token the page loads without it and asks for it") {
  const std::string chromium = require_chromium();
  TempDir dir;
  FakeUpstream fake(dir);
  ProxyConfig config;
  std::string toml = config.render(dir, fake.base_url());
  const std::string admin = "[admin]\nlisten = \"127.0.0.1:0\"\n";
  REQUIRE(toml.find(admin) != std::string::npos);
  toml.insert(toml.find(admin) + admin.size(), "token = \"" + kAdminToken + "\"\n");
  ProxyUnderTest proxy(dir, toml, {{"REPRISE_ADMIN_TOKEN", ""}});

  auto page = request(proxy.admin_port(), "GET", "/admin/");
  REQUIRE(page.status == 200);
  CHECK(page.body.find("token-form") != std::string::npos);
  CHECK(request(proxy.admin_port(), "GET", "/admin/stats").status == 401);
  CHECK(request(proxy.admin_port(), "GET", "/admin/namespaces").status == 401);
  CHECK(request(proxy.admin_port(), "GET", "/admin/stats", "", {{"Authorization", "Bearer " + kAdminToken}}).status == 200);

  // In the browser: the first poll gets 401 and the page shows the token form.
  const std::string url = "http://127.0.0.1:" + std::to_string(proxy.admin_port()) + "/admin/";
  const std::string dom = strip(run_chromium(chromium, dir, "chromium-auth", url, {"--dump-dom"}));
  INFO("rendered DOM: " << dom.substr(0, 4000));
  CHECK(dom.find("data-state=\"auth\"") != std::string::npos);
  auto ids = by_attr(elements_with(dom, "id"), "id");
  REQUIRE(ids.count("auth-panel"));
  CHECK_FALSE(ids["auth-panel"].has("hidden"));
  REQUIRE(ids.count("token-form"));
  REQUIRE(ids.count("error-banner"));
  CHECK(ids["error-banner"].has("hidden"));
  auto shown = by_attr(elements_with(dom, "data-stat"), "data-stat");
  REQUIRE(shown.count("requests"));
  CHECK_FALSE(shown["requests"].has("data-value"));  // no numbers without the token
}
