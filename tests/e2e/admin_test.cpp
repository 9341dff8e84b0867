// End to end: the admin listener's stats, namespaces and metrics, and the energy
// ledger, through the real binary.
#include <doctest/doctest.h>

#include <optional>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;

namespace {

json admin_get(uint16_t port, const std::string& path) {
  auto r = request(port, "GET", path);
  REQUIRE(r.status == 200);
  return r.json();
}

Response chat_in(uint16_t port, const std::string& ns, int n) {
  return post_json(port, "/v1/chat/completions", chat_body("Count my savings", n), {{"X-Reprise-Namespace", ns}});
}

double wh(double joules) { return joules / 3600.0; }

}  // namespace

TEST_CASE("admin: a known sequence of misses and hits gives exactly the expected totals, which survive a restart") {
  TempDir dir;
  FakeUpstream fake(dir);
  ProxyConfig config;
  config.tail = "\n[energy]\ncsv_path = \"" + (dir / "energy.csv").string() + "\"\n" +
                "[[prices]]\nmatch = \"gpt-4o-mini*\"\nprompt_per_million = 0.15\ncompletion_per_million = 0.6\n";
  std::optional<ProxyUnderTest> proxy;
  proxy.emplace(dir, config.render(dir, fake.base_url()), std::map<std::string, std::string>{}, "first");

  auto a = chat_in(proxy->port(), "A", 2);  // miss: one call, n = 2
  auto b = chat_in(proxy->port(), "B", 2);  // hit: samples 0-1, no call
  auto c = chat_in(proxy->port(), "C", 3);  // partial: 0-1 stored, 2 made by one call
  REQUIRE(a.header("X-Reprise-Cache") == "miss");
  REQUIRE(b.header("X-Reprise-Cache") == "hit");
  REQUIRE(c.header("X-Reprise-Cache") == "partial");
  const double P = a.json()["usage"]["prompt_tokens"].get<double>();
  const double c01 = a.json()["usage"]["completion_tokens"].get<double>();
  const double c2 = c.json()["usage"]["completion_tokens"].get<double>() - c01;
  REQUIRE(P > 0);
  REQUIRE(c2 > 0);

  // gpt-4o-mini resolves to the default class, frontier: a=0.4 b=2 c=10, PUE 1.2.
  const double avoided_j = 1.2 * (0.4 * P + 2 * c01 + 10)  // B: nothing called
                           + 1.2 * (2 * c01);              // C: two choices not called for
  const double spent_j = 1.2 * (0.4 * P + 2 * c01 + 10) + 1.2 * (0.4 * P + 2 * c2 + 10);

  auto check_totals = [&](const json& s) {
    CHECK(s["requests"] == 3);
    CHECK(s["hits"] == 1);
    CHECK(s["misses"] == 1);
    CHECK(s["partials"] == 1);
    CHECK(s["samples_served"] == 7);
    CHECK(s["samples_generated"] == 3);
    CHECK(s["upstream_calls"] == 2);
    CHECK(s["prompt_tokens_avoided"].get<double>() == P);
    CHECK(s["completion_tokens_avoided"].get<double>() == 2 * c01);
    CHECK(s["prompt_tokens_spent"].get<double>() == 2 * P);
    CHECK(s["completion_tokens_spent"].get<double>() == c01 + c2);
    CHECK(s["energy_avoided_wh"].get<double>() == doctest::Approx(wh(avoided_j)).epsilon(1e-6));
    CHECK(s["energy_spent_wh"].get<double>() == doctest::Approx(wh(spent_j)).epsilon(1e-6));
    CHECK(s["co2_avoided_g"].get<double>() == doctest::Approx(wh(avoided_j) / 1000 * 475).epsilon(1e-5));
    CHECK(s["energy_avoided_wh_high"].get<double>() == doctest::Approx(3 * wh(avoided_j)).epsilon(1e-6));
    // The money-equivalent at the configured prices (USD per million tokens).
    CHECK(s["cost_avoided_usd"].get<double>() == doctest::Approx((0.15 * P + 0.6 * 2 * c01) / 1e6).epsilon(1e-6));
    CHECK(s["cost_spent_usd"].get<double>() == doctest::Approx((0.15 * 2 * P + 0.6 * (c01 + c2)) / 1e6).epsilon(1e-6));
    CHECK(s["namespaces"]["B"]["hits"] == 1);
    CHECK(s["namespaces"]["A"]["upstream_calls"] == 1);
    CHECK(s["namespaces"]["C"]["partials"] == 1);
    CHECK(s["models"]["gpt-4o-mini"]["energy_class"] == "frontier");
    CHECK(s["models"]["gpt-4o-mini"]["resolved_by"] == "default");
  };
  auto stats = admin_get(proxy->admin_port(), "/admin/stats");
  check_totals(stats);
  CHECK(stats["hit_ratio"].get<double>() == doctest::Approx(1.0 / 3).epsilon(1e-5));
  CHECK(stats["in_flight_generations"] == 0);
  CHECK(stats["store_bytes"].get<uint64_t>() > 0);
  CHECK(stats["batches"]["count"] == 3);
  CHECK(stats["upstream_latency_ms"]["count"] == 2);
  CHECK(stats["uptime_s"].get<double>() > 0);

  // A graceful stop saves the counters; the next start reads them back.
  proxy->process().signal(SIGTERM);
  REQUIRE(proxy->process().wait_exit(std::chrono::seconds(10)) == 0);
  // One CSV row per response, in CodeCarbon's columns.
  std::string csv = read_file(dir / "energy.csv");
  CHECK(csv.starts_with("timestamp,project_name,duration,emissions,"));
  CHECK(csv.find(",miss,A,gpt-4o-mini,") != std::string::npos);
  CHECK(csv.find(",hit,B,gpt-4o-mini,") != std::string::npos);
  CHECK(csv.find(",partial,C,gpt-4o-mini,") != std::string::npos);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 4);

  proxy.emplace(dir, config.render(dir, fake.base_url()), std::map<std::string, std::string>{}, "second");
  check_totals(admin_get(proxy->admin_port(), "/admin/stats"));
}

TEST_CASE("admin: bypassed calls are spent like misses: tokens from the answer's usage, energy, cost, a CSV row") {
  TempDir dir;
  FakeUpstream fake(dir);
  ProxyConfig config;
  config.tail = "\n[energy]\ncsv_path = \"" + (dir / "energy.csv").string() + "\"\n" +
                "[[prices]]\nmatch = \"gpt-4o-mini*\"\nprompt_per_million = 0.15\ncompletion_per_million = 0.6\n";
  ProxyUnderTest proxy(dir, config.render(dir, fake.base_url()));
  const std::vector<std::pair<std::string, std::string>> bypass{{"X-Reprise-Namespace", "off"}, {"X-Reprise-Cache", "bypass"}};

  auto plain = post_json(proxy.port(), "/v1/chat/completions", chat_body("Pay for this", 3), bypass);
  REQUIRE(plain.status == 200);
  REQUIRE(plain.header("X-Reprise-Cache") == "bypass");
  auto streamed_body = chat_body("Pay for this stream", 2, true);
  streamed_body["stream_options"] = {{"include_usage", true}};
  auto streamed = post_json(proxy.port(), "/v1/chat/completions", streamed_body, bypass);
  REQUIRE(streamed.status == 200);
  // Without include_usage the answer never says its tokens: the call counts, no tokens.
  auto silent = post_json(proxy.port(), "/v1/chat/completions", chat_body("Say nothing of cost", 1, true), bypass);
  REQUIRE(silent.status == 200);
  // A failed bypass is an error, not spending (the upstream refuses this one).
  fake.control({{"fail_next", 1}, {"fail_status", 400}});
  auto failed = post_json(proxy.port(), "/v1/chat/completions", chat_body("Refused"), bypass);
  REQUIRE(failed.status == 400);

  const double P1 = plain.json()["usage"]["prompt_tokens"].get<double>();
  const double C1 = plain.json()["usage"]["completion_tokens"].get<double>();
  auto usage_at = streamed.body.rfind("\"usage\":{");
  REQUIRE(usage_at != std::string::npos);
  json usage = json::parse(streamed.body.substr(usage_at + 8, streamed.body.find('}', usage_at) - usage_at - 7));
  const double P2 = usage["prompt_tokens"].get<double>();
  const double C2 = usage["completion_tokens"].get<double>();
  REQUIRE(C1 > 0);
  REQUIRE(C2 > 0);

  auto s = admin_get(proxy.admin_port(), "/admin/stats");
  auto& off = s["namespaces"]["off"];
  CHECK(off["requests"] == 4);
  CHECK(off["bypassed"] == 3);
  CHECK(off["errors"] == 1);
  CHECK(off["upstream_calls"] == 3);
  CHECK(off["prompt_tokens_spent"].get<double>() == P1 + P2);
  CHECK(off["completion_tokens_spent"].get<double>() == C1 + C2);
  // frontier class (a=0.4 b=2 c=10), PUE 1.2; the silent stream adds nothing known.
  const double spent_j = 1.2 * (0.4 * P1 + 2 * C1 + 10) + 1.2 * (0.4 * P2 + 2 * C2 + 10);
  CHECK(off["energy_spent_wh"].get<double>() == doctest::Approx(wh(spent_j)).epsilon(1e-6));
  CHECK(off["cost_spent_usd"].get<double>() == doctest::Approx((0.15 * (P1 + P2) + 0.6 * (C1 + C2)) / 1e6).epsilon(1e-6));
  CHECK(off["energy_avoided_wh"].get<double>() == 0);
  CHECK(s["samples_generated"] == 0);  // nothing was stored

  proxy.process().signal(SIGTERM);
  REQUIRE(proxy.process().wait_exit(std::chrono::seconds(10)) == 0);
  std::string csv = read_file(dir / "energy.csv");
  size_t rows = 0;
  for (size_t at = 0; (at = csv.find(",miss,off,gpt-4o-mini,", at)) != std::string::npos; ++at) ++rows;
  CHECK(rows == 3);
}

TEST_CASE("admin: namespaces are listed, summarised, reset and deleted") {
  Stack s;
  chat_in(s.proxy.port(), "exp-1", 3);
  chat_in(s.proxy.port(), "exp-2", 1);
  auto list = admin_get(s.proxy.admin_port(), "/admin/namespaces")["namespaces"];
  REQUIRE(list.size() == 2);
  CHECK(list[0]["name"] == "exp-1");
  CHECK(list[0]["keys"] == 1);
  CHECK(list[0]["samples_consumed"] == 3);
  CHECK(list[0]["stats"]["requests"] == 1);
  auto one = admin_get(s.proxy.admin_port(), "/admin/namespaces/exp-2");
  CHECK(one["samples_consumed"] == 1);
  CHECK(one["stats"]["hits"] == 1);

  auto gone = request(s.proxy.admin_port(), "DELETE", "/admin/namespaces/exp-1");
  REQUIRE(gone.status == 200);
  CHECK(gone.json()["deleted"] == true);
  auto after = admin_get(s.proxy.admin_port(), "/admin/namespaces/exp-1");
  CHECK(after["keys"] == 0);
  CHECK(after["stats"].empty());
  // Its samples stay: a new request in it replays from 0, a hit.
  auto again = chat_in(s.proxy.port(), "exp-1", 3);
  CHECK(again.header("X-Reprise-Samples") == "0-2");
  CHECK(again.header("X-Reprise-Cache") == "hit");
  CHECK(request(s.proxy.admin_port(), "PUT", "/admin/namespaces/exp-1").status == 405);
  CHECK(request(s.proxy.admin_port(), "GET", "/admin/namespaces/bad%2Fname").status == 400);
}

TEST_CASE("admin: /metrics is Prometheus text, and the token guards everything but /healthz and the page") {
  ProxyConfig config;
  Stack s(config);
  chat_in(s.proxy.port(), "m", 1);
  auto metrics = request(s.proxy.admin_port(), "GET", "/metrics");
  REQUIRE(metrics.status == 200);
  CHECK(metrics.header("Content-Type").starts_with("text/plain; version=0.0.4"));
  CHECK(metrics.body.find("# TYPE reprise_requests_total counter") != std::string::npos);
  CHECK(metrics.body.find("reprise_requests_total 1") != std::string::npos);

  TempDir dir;
  FakeUpstream fake(dir);
  ProxyConfig guarded;
  guarded.tail = "";
  std::string toml = guarded.render(dir, fake.base_url());
  toml.replace(toml.find("[admin]\n"), 8, "[admin]\ntoken = \"admin-secret-1\"\n");
  ProxyUnderTest proxy(dir, toml);
  CHECK(request(proxy.admin_port(), "GET", "/admin/stats").status == 401);
  CHECK(request(proxy.admin_port(), "GET", "/metrics").status == 401);
  CHECK(request(proxy.admin_port(), "GET", "/healthz").status == 200);
  CHECK(request(proxy.admin_port(), "GET", "/admin/").status == 200);
  CHECK(request(proxy.admin_port(), "GET", "/admin/stats", {}, {{"Authorization", "Bearer admin-secret-1"}}).status == 200);
}

TEST_CASE("admin: reprise stats and reprise namespaces print the summary in the terminal") {
  Stack s;
  chat_in(s.proxy.port(), "cli-a", 2);
  chat_in(s.proxy.port(), "cli-b", 2);
  const std::string admin = "127.0.0.1:" + std::to_string(s.proxy.admin_port());
  Process stats({REPRISE_BIN, "stats", "--admin", admin}, s.dir.path(), "cli-stats");
  REQUIRE(stats.wait_exit(std::chrono::seconds(10)) == 0);
  std::string out = stats.out();
  CHECK(out.find("requests 2: 1 hits (50.0% of cached answers), 1 misses") != std::string::npos);
  CHECK(out.find("cli-b") != std::string::npos);
  CHECK(out.find("energy avoided ") != std::string::npos);
  Process list({REPRISE_BIN, "namespaces", "--admin", admin, "--json"}, s.dir.path(), "cli-ns");
  REQUIRE(list.wait_exit(std::chrono::seconds(10)) == 0);
  auto parsed = json::parse(list.out());
  CHECK(parsed["namespaces"].size() == 2);
  Process refused({REPRISE_BIN, "stats", "--admin", "127.0.0.1:1"}, s.dir.path(), "cli-refused");
  CHECK(refused.wait_exit(std::chrono::seconds(10)) == 1);
  CHECK(refused.err().find("cannot read /admin/stats") != std::string::npos);
}
