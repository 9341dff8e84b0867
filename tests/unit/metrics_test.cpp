#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/metrics.hpp"

using nlohmann::json;
using reprise::prometheus_text;

namespace {

// The shape of GET /admin/stats, with the numbers of a small run.
const char* kExample = R"({
  "started_at": "2026-11-22T07:00:00Z",
  "uptime_s": 12.5,
  "requests": 10,
  "hits": 6,
  "misses": 3,
  "partials": 1,
  "bypassed": 2,
  "errors": 1,
  "hit_ratio": 0.6,
  "samples_served": 20,
  "samples_generated": 12,
  "upstream_calls": 4,
  "prompt_tokens_avoided": 100,
  "completion_tokens_avoided": 200,
  "prompt_tokens_spent": 40,
  "completion_tokens_spent": 150,
  "energy_avoided_wh": 0.5,
  "energy_avoided_wh_low": 0.1667,
  "energy_avoided_wh_high": 1.5,
  "co2_avoided_g": 0.2375,
  "co2_avoided_g_low": 0.0792,
  "co2_avoided_g_high": 0.7125,
  "energy_spent_wh": 0.3,
  "co2_spent_g": 0.1425,
  "grid_intensity_g_per_kwh": 475,
  "in_flight_generations": 0,
  "store_bytes": 123456,
  "batches": {"count": 5, "requests": 12, "max_size": 4, "sizes": {"1": 3, "2-4": 2, "5-16": 0, "17-64": 0, "65-256": 0, "257+": 0}},
  "upstream_latency_ms": {"count": 4, "sum": 120.0, "p50": 25.0, "p90": 40.0, "p99": 41.0,
                          "buckets": {"5": 0, "10": 0, "25": 2, "50": 4, "100": 4, "250": 4, "500": 4, "1000": 4, "2500": 4, "5000": 4, "10000": 4, "30000": 4, "60000": 4, "+Inf": 4}},
  "namespaces": {
    "default": {"requests": 4, "hits": 1, "misses": 2, "partials": 1, "bypassed": 0, "errors": 0, "samples_served": 8, "samples_generated": 6, "upstream_calls": 2, "prompt_tokens_avoided": 10, "completion_tokens_avoided": 30, "prompt_tokens_spent": 20, "completion_tokens_spent": 60, "energy_avoided_wh": 0.05, "co2_avoided_g": 0.02375, "energy_spent_wh": 0.1, "co2_spent_g": 0.0475}
  },
  "models": {
    "gpt-4o-mini": {"requests": 10, "hits": 6, "misses": 3, "partials": 1, "bypassed": 2, "errors": 1, "samples_served": 20, "samples_generated": 12, "upstream_calls": 4, "prompt_tokens_avoided": 100, "completion_tokens_avoided": 200, "prompt_tokens_spent": 40, "completion_tokens_spent": 150, "energy_avoided_wh": 0.5, "co2_avoided_g": 0.2375, "energy_spent_wh": 0.3, "co2_spent_g": 0.1425, "energy_class": "frontier", "resolved_by": "default"}
  },
  "labels_dropped": {"namespaces": 0, "models": 0}
})";

json example() { return json::parse(kExample); }

// The example with 250 namespaces ns000..ns249: requests = i+1, hits = i,
// energy_avoided_wh = 0.5, co2_avoided_g = 0.25.
json with_250_namespaces() {
  json stats = example();
  json& ns = stats["namespaces"];
  ns = json::object();
  for (int i = 0; i < 250; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "ns%03d", i);
    ns[name] = {{"requests", i + 1}, {"hits", i}, {"energy_avoided_wh", 0.5},
                {"co2_avoided_g", 0.25}};
  }
  return stats;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The value of the one sample whose "name{labels}" is exactly `series`; "" if none,
// "<duplicate>" if more than one.
std::string value_of(const std::string& text, const std::string& series) {
  std::string found;
  for (const auto& line : lines_of(text)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      if (!found.empty()) return "<duplicate>";
      found = line.substr(series.size() + 1);
    }
  }
  return found;
}

size_t samples_of(const std::string& text, const std::string& metric) {
  size_t n = 0;
  for (const auto& line : lines_of(text))
    if (line.compare(0, metric.size() + 1, metric + "{") == 0 ||
        line.compare(0, metric.size() + 1, metric + " ") == 0)
      ++n;
  return n;
}

// Structural checks of the exposition: every line a comment or a sample; every family
// with exactly one HELP and one TYPE, both before its samples; every sample inside
// its family's contiguous block; names prefixed reprise_; counters ending in _total;
// no duplicate series. Returns the families' types by name.
std::map<std::string, std::string> check_structure(const std::string& text) {
  REQUIRE(!text.empty());
  REQUIRE(text.back() == '\n');
  std::map<std::string, int> helps, types;
  std::map<std::string, std::string> type_of;
  std::set<std::string> closed;  // families whose block has ended
  std::set<std::string> series;
  std::string current;
  auto enter = [&](const std::string& fam) {
    if (fam != current) {
      CHECK_MESSAGE(closed.count(fam) == 0, "family " << fam << " is not contiguous");
      if (!current.empty()) closed.insert(current);
      current = fam;
    }
  };
  for (const auto& line : lines_of(text)) {
    REQUIRE(!line.empty());
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      auto sp = rest.find(' ');
      REQUIRE(sp != std::string::npos);
      std::string fam = rest.substr(0, sp);
      CHECK_MESSAGE(fam.rfind("reprise_", 0) == 0, fam);
      enter(fam);
      if (line[2] == 'H') {
        CHECK_MESSAGE(++helps[fam] == 1, "HELP twice for " << fam);
        CHECK_MESSAGE(types.count(fam) == 0, "HELP after TYPE for " << fam);
        CHECK(sp + 1 < rest.size());
      } else {
        CHECK_MESSAGE(++types[fam] == 1, "TYPE twice for " << fam);
        std::string type = rest.substr(sp + 1);
        CHECK_MESSAGE((type == "counter" || type == "gauge" || type == "histogram"), type);
        type_of[fam] = type;
        if (type == "counter") CHECK_MESSAGE((fam.size() > 6 && fam.substr(fam.size() - 6) == "_total"), fam);
      }
      continue;
    }
    REQUIRE_MESSAGE(line[0] != '#', line);
    auto end = line.find_first_of("{ ");
    REQUIRE(end != std::string::npos);
    std::string name = line.substr(0, end);
    std::string fam = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s = suffix;
      if (name.size() > s.size() && name.substr(name.size() - s.size()) == s) {
        std::string base = name.substr(0, name.size() - s.size());
        if (type_of.count(base) && type_of[base] == "histogram") fam = base;
      }
    }
    CHECK_MESSAGE(fam == current, "sample " << line << " outside its family block (" << current << ")");
    CHECK_MESSAGE(helps[fam] == 1, "no HELP before " << line);
    CHECK_MESSAGE(types[fam] == 1, "no TYPE before " << line);
    auto sp = line.rfind(' ');
    std::string value = line.substr(sp + 1);
    CHECK_MESSAGE(value != "nan", line);
    bool number_like = value == "NaN" || value == "+Inf" || value == "-Inf" ||
                       value.find_first_not_of("0123456789.e+-") == std::string::npos;
    CHECK_MESSAGE(number_like, line);
    CHECK_MESSAGE(series.insert(line.substr(0, sp)).second, "duplicate series " << line);
  }
  for (const auto& [fam, n] : helps) CHECK_MESSAGE(types[fam] == 1, "no TYPE for " << fam);
  for (const auto& [fam, n] : types) CHECK_MESSAGE(helps[fam] == 1, "no HELP for " << fam);
  return type_of;
}

int run_shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `promtool check metrics < file`; returns its exit code, output in *output.
int promtool_check(const std::string& text, std::string* output) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string dir = tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp";
  std::string in_path = dir + "/reprise-metrics-XXXXXX";
  int fd = mkstemp(in_path.data());
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream out(in_path, std::ios::binary);
    out << text;
  }
  std::string out_path = in_path + ".out";
  int rc = run_shell("promtool check metrics < '" + in_path + "' > '" + out_path + "' 2>&1");
  *output = read_file(out_path);
  std::remove(in_path.c_str());
  std::remove(out_path.c_str());
  return rc;
}

}  // namespace

TEST_CASE("metrics: exact values from the example stats") {
  std::string text = prometheus_text(example());
  check_structure(text);

  CHECK(value_of(text, "reprise_requests_total") == "10");
  CHECK(value_of(text, "reprise_cache_hits_total") == "6");
  CHECK(value_of(text, "reprise_cache_misses_total") == "3");
  CHECK(value_of(text, "reprise_cache_partials_total") == "1");
  CHECK(value_of(text, "reprise_bypassed_total") == "2");
  CHECK(value_of(text, "reprise_errors_total") == "1");
  CHECK(value_of(text, "reprise_samples_served_total") == "20");
  CHECK(value_of(text, "reprise_samples_generated_total") == "12");
  CHECK(value_of(text, "reprise_upstream_calls_total") == "4");
  CHECK(value_of(text, "reprise_prompt_tokens_avoided_total") == "100");
  CHECK(value_of(text, "reprise_completion_tokens_avoided_total") == "200");
  CHECK(value_of(text, "reprise_prompt_tokens_spent_total") == "40");
  CHECK(value_of(text, "reprise_completion_tokens_spent_total") == "150");
  CHECK(value_of(text, "reprise_energy_avoided_wh_total{band=\"low\"}") == "0.1667");
  CHECK(value_of(text, "reprise_energy_avoided_wh_total{band=\"central\"}") == "0.5");
  CHECK(value_of(text, "reprise_energy_avoided_wh_total{band=\"high\"}") == "1.5");
  CHECK(value_of(text, "reprise_co2_avoided_grams_total{band=\"low\"}") == "0.0792");
  CHECK(value_of(text, "reprise_co2_avoided_grams_total{band=\"central\"}") == "0.2375");
  CHECK(value_of(text, "reprise_co2_avoided_grams_total{band=\"high\"}") == "0.7125");
  CHECK(value_of(text, "reprise_energy_spent_wh_total") == "0.3");
  CHECK(value_of(text, "reprise_co2_spent_grams_total") == "0.1425");

  CHECK(value_of(text, "reprise_uptime_seconds") == "12.5");
  CHECK(value_of(text, "reprise_hit_ratio") == "0.6");
  CHECK(value_of(text, "reprise_in_flight_generations") == "0");
  CHECK(value_of(text, "reprise_store_size_bytes") == "123456");
  CHECK(value_of(text, "reprise_grid_intensity_grams_per_kwh") == "475");
  CHECK(value_of(text, "reprise_batch_max_size") == "4");

  // Batch sizes: {"1":3,"2-4":2,...} as cumulative buckets.
  CHECK(value_of(text, "reprise_batch_size_bucket{le=\"1\"}") == "3");
  CHECK(value_of(text, "reprise_batch_size_bucket{le=\"4\"}") == "5");
  CHECK(value_of(text, "reprise_batch_size_bucket{le=\"16\"}") == "5");
  CHECK(value_of(text, "reprise_batch_size_bucket{le=\"64\"}") == "5");
  CHECK(value_of(text, "reprise_batch_size_bucket{le=\"256\"}") == "5");
  CHECK(value_of(text, "reprise_batch_size_bucket{le=\"+Inf\"}") == "5");
  CHECK(value_of(text, "reprise_batch_size_sum") == "12");
  CHECK(value_of(text, "reprise_batch_size_count") == "5");
  CHECK(samples_of(text, "reprise_batch_size_bucket") == 6);

  // Upstream latency: ms bounds as seconds, in numeric (not JSON key) order.
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.005\"}") == "0");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.01\"}") == "0");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.025\"}") == "2");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.05\"}") == "4");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"2.5\"}") == "4");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"60\"}") == "4");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"+Inf\"}") == "4");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_sum") == "0.12");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_count") == "4");
  CHECK(samples_of(text, "reprise_upstream_latency_seconds_bucket") == 14);
  auto l005 = text.find("le=\"0.005\"");
  auto l001 = text.find("le=\"0.01\"");
  auto l060 = text.find("le=\"60\"");
  CHECK(l005 < l001);
  CHECK(l001 < l060);
  CHECK(l060 < text.find("reprise_upstream_latency_seconds_bucket{le=\"+Inf\"}"));

  // Per namespace, per model.
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"default\"}") == "4");
  CHECK(value_of(text, "reprise_namespace_cache_hits_total{namespace=\"default\"}") == "1");
  CHECK(value_of(text, "reprise_namespace_completion_tokens_spent_total{namespace=\"default\"}") == "60");
  CHECK(value_of(text, "reprise_namespace_energy_avoided_wh_total{namespace=\"default\"}") == "0.05");
  CHECK(value_of(text, "reprise_namespace_co2_avoided_grams_total{namespace=\"default\"}") == "0.02375");
  CHECK(value_of(text, "reprise_model_requests_total{model=\"gpt-4o-mini\"}") == "10");
  CHECK(value_of(text, "reprise_model_co2_spent_grams_total{model=\"gpt-4o-mini\"}") == "0.1425");
  CHECK(value_of(text, "reprise_model_info{model=\"gpt-4o-mini\",energy_class=\"frontier\",resolved_by=\"default\"}") == "1");
  CHECK(samples_of(text, "reprise_namespace_requests_total") == 1);
  CHECK(text.find("=\"_other\"") == std::string::npos);
  CHECK(value_of(text, "reprise_metrics_labels_folded{dimension=\"namespace\"}") == "0");
  CHECK(value_of(text, "reprise_stats_labels_dropped{dimension=\"model\"}") == "0");
  CHECK(text.find("reprise_engine_") == std::string::npos);  // no engine object
}

TEST_CASE("metrics: cardinality cap keeps the top 100 namespaces and sums the rest into _other") {
  std::string text = prometheus_text(with_250_namespaces());
  check_structure(text);
  // Top 100 by requests: ns150..ns249; ns000..ns149 folded.
  CHECK(samples_of(text, "reprise_namespace_requests_total") == 101);
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"ns249\"}") == "250");
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"ns150\"}") == "151");
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"ns149\"}").empty());
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"ns000\"}").empty());
  // _other = sums over i in 0..149.
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"_other\"}") == "11325");
  CHECK(value_of(text, "reprise_namespace_cache_hits_total{namespace=\"_other\"}") == "11175");
  CHECK(value_of(text, "reprise_namespace_energy_avoided_wh_total{namespace=\"_other\"}") == "75");
  CHECK(value_of(text, "reprise_namespace_co2_avoided_grams_total{namespace=\"_other\"}") == "37.5");
  CHECK(value_of(text, "reprise_namespace_errors_total{namespace=\"_other\"}") == "0");
  CHECK(value_of(text, "reprise_metrics_labels_folded{dimension=\"namespace\"}") == "150");
  CHECK(value_of(text, "reprise_metrics_labels_folded{dimension=\"model\"}") == "0");
  // Every per-namespace family lists the same 101 series, _other last.
  for (const char* fam : {"reprise_namespace_cache_misses_total", "reprise_namespace_co2_spent_grams_total"})
    CHECK(samples_of(text, fam) == 101);
  auto other = text.find("reprise_namespace_requests_total{namespace=\"_other\"}");
  CHECK(other > text.find("reprise_namespace_requests_total{namespace=\"ns249\"}"));
  CHECK(other < text.find("# HELP reprise_namespace_cache_hits_total"));
  // The models are capped separately.
  CHECK(samples_of(text, "reprise_model_requests_total") == 1);

  // A smaller cap; the aggregate (sum of kept + _other) is preserved.
  std::string ten = prometheus_text(with_250_namespaces(), 10);
  CHECK(samples_of(ten, "reprise_namespace_requests_total") == 11);
  CHECK(value_of(ten, "reprise_namespace_requests_total{namespace=\"ns240\"}") == "241");
  CHECK(value_of(ten, "reprise_namespace_requests_total{namespace=\"ns239\"}").empty());
  CHECK(value_of(ten, "reprise_namespace_requests_total{namespace=\"_other\"}") ==
        std::to_string(240 * 241 / 2));

  // Cap 0: everything in _other.
  std::string zero = prometheus_text(with_250_namespaces(), 0);
  CHECK(samples_of(zero, "reprise_namespace_requests_total") == 1);
  CHECK(value_of(zero, "reprise_namespace_requests_total{namespace=\"_other\"}") == "31375");
  CHECK(value_of(zero, "reprise_model_requests_total{model=\"_other\"}") == "10");
  CHECK(samples_of(zero, "reprise_model_info") == 0);
  check_structure(zero);
}

TEST_CASE("metrics: cardinality ties break by name - a real _other namespace never duplicates") {
  json stats = example();
  stats["namespaces"] = {{"b", {{"requests", 1}}}, {"a", {{"requests", 1}}},
                         {"c", {{"requests", 1}}}, {"z", {{"requests", 2}}}};
  stats["models"] = {{"m2", {{"requests", 5}, {"hits", 1}}}, {"m1", {{"requests", 5}, {"hits", 2}}},
                     {"m3", {{"requests", 7}, {"hits", 4}}}};
  std::string text = prometheus_text(stats, 2);
  check_structure(text);
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"z\"}") == "2");
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"a\"}") == "1");
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"b\"}").empty());
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"_other\"}") == "2");
  CHECK(value_of(text, "reprise_model_cache_hits_total{model=\"m3\"}") == "4");
  CHECK(value_of(text, "reprise_model_cache_hits_total{model=\"m1\"}") == "2");
  CHECK(value_of(text, "reprise_model_cache_hits_total{model=\"_other\"}") == "1");
  // Kept series in name order.
  CHECK(text.find("namespace=\"a\"") < text.find("namespace=\"z\""));

  // A namespace literally named "_other": shown as itself when nothing is folded...
  stats["namespaces"] = {{"_other", {{"requests", 100}}}, {"a", {{"requests", 1}}}};
  text = prometheus_text(stats, 2);
  check_structure(text);
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"_other\"}") == "100");
  CHECK(value_of(text, "reprise_metrics_labels_folded{dimension=\"namespace\"}") == "0");
  // ...and folded with the rest (one series, never two) when the cap bites.
  stats["namespaces"]["b"] = {{"requests", 3}};
  stats["namespaces"]["c"] = {{"requests", 2}};
  text = prometheus_text(stats, 2);
  check_structure(text);
  CHECK(samples_of(text, "reprise_namespace_requests_total") == 3);
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"b\"}") == "3");
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"c\"}") == "2");
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"_other\"}") == "101");
}

TEST_CASE("metrics: label values are escaped") {
  json stats = example();
  stats["namespaces"] = {{"a\"b\\c\nd", {{"requests", 7}}},
                         {"caf\xC3\xA9", {{"requests", 3}}},
                         {"bad", {{"requests", 1}}}};
  // Invalid UTF-8 cannot come from a parsed document, but can from a built one.
  stats["models"] = json::object();
  stats["models"][std::string("x\xFFy")] = {{"requests", 2}, {"energy_class", "sm\"all"}};
  std::string text = prometheus_text(stats);
  check_structure(text);
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"a\\\"b\\\\c\\nd\"}") == "7");
  CHECK(value_of(text, "reprise_namespace_requests_total{namespace=\"caf\xC3\xA9\"}") == "3");
  CHECK(value_of(text, "reprise_model_requests_total{model=\"x\xEF\xBF\xBDy\"}") == "2");
  CHECK(value_of(text, "reprise_model_info{model=\"x\xEF\xBF\xBDy\",energy_class=\"sm\\\"all\",resolved_by=\"\"}") == "1");
  // No raw newline inside a sample line: every line starts with a name or '#'.
  for (const auto& line : lines_of(text)) CHECK((line[0] == '#' || line.rfind("reprise_", 0) == 0));
}

TEST_CASE("metrics: empty namespace and model maps") {
  json stats = example();
  stats["namespaces"] = json::object();
  stats["models"] = json::object();
  std::string text = prometheus_text(stats);
  auto types = check_structure(text);
  CHECK(types.at("reprise_namespace_requests_total") == "counter");  // HELP/TYPE still there
  CHECK(samples_of(text, "reprise_namespace_requests_total") == 0);
  CHECK(samples_of(text, "reprise_model_requests_total") == 0);
  CHECK(samples_of(text, "reprise_model_info") == 0);
  CHECK(text.find("=\"_other\"") == std::string::npos);
  CHECK(value_of(text, "reprise_requests_total") == "10");
}

TEST_CASE("metrics: missing and mistyped fields count as 0, never throw") {
  for (const json& stats : {json::object(), json(nullptr), json::array({1, 2}), json("stats"),
                            json(42)}) {
    std::string text;
    CHECK_NOTHROW(text = prometheus_text(stats));
    check_structure(text);
    CHECK(value_of(text, "reprise_requests_total") == "0");
    CHECK(value_of(text, "reprise_energy_avoided_wh_total{band=\"high\"}") == "0");
    CHECK(value_of(text, "reprise_batch_size_bucket{le=\"+Inf\"}") == "0");
    CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"+Inf\"}") == "0");
    CHECK(value_of(text, "reprise_upstream_latency_seconds_sum") == "0");
    CHECK(samples_of(text, "reprise_namespace_requests_total") == 0);
  }

  json bad = example();
  bad["requests"] = "10";
  bad["hits"] = true;
  bad["misses"] = json::array({3});
  bad.erase("errors");
  bad["uptime_s"] = nullptr;
  bad["hit_ratio"] = std::numeric_limits<double>::quiet_NaN();
  bad["store_bytes"] = std::numeric_limits<uint64_t>::max();
  bad["bypassed"] = -2;
  bad["batches"] = 5;
  bad["upstream_latency_ms"] = {{"count", "4"}, {"sum", "x"}, {"buckets", {{"abc", 3}, {"25", "2"}, {"50", 1.5}}}};
  bad["namespaces"] = json::array({1, 2});
  bad["models"] = {{"m", 5}, {"n", {{"requests", "many"}, {"hits", 2.5}, {"energy_class", 3}}}};
  bad["labels_dropped"] = "none";
  bad["engine"] = {{"device", 1}, {"kv_blocks_used", 12}};
  std::string text;
  CHECK_NOTHROW(text = prometheus_text(bad));
  check_structure(text);
  CHECK(value_of(text, "reprise_requests_total") == "0");
  CHECK(value_of(text, "reprise_cache_hits_total") == "0");
  CHECK(value_of(text, "reprise_cache_misses_total") == "0");
  CHECK(value_of(text, "reprise_errors_total") == "0");
  CHECK(value_of(text, "reprise_uptime_seconds") == "0");
  CHECK(value_of(text, "reprise_hit_ratio") == "NaN");
  CHECK(std::stod(value_of(text, "reprise_store_size_bytes")) == 18446744073709551616.0);  // 2^64 as a double
  CHECK(value_of(text, "reprise_bypassed_total") == "-2");
  CHECK(value_of(text, "reprise_batch_size_count") == "0");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.025\"}") == "0");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.05\"}") == "1.5");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_count") == "1.5");
  CHECK(samples_of(text, "reprise_namespace_requests_total") == 0);
  CHECK(value_of(text, "reprise_model_requests_total{model=\"m\"}") == "0");
  CHECK(value_of(text, "reprise_model_requests_total{model=\"n\"}") == "0");
  CHECK(value_of(text, "reprise_model_cache_hits_total{model=\"n\"}") == "2.5");
  CHECK(value_of(text, "reprise_model_info{model=\"n\",energy_class=\"\",resolved_by=\"\"}") == "1");
  CHECK(value_of(text, "reprise_engine_info{device=\"\"}") == "1");
  CHECK(value_of(text, "reprise_engine_kv_blocks_used") == "12");
  CHECK(value_of(text, "reprise_engine_kv_blocks_free") == "0");
}

TEST_CASE("metrics: histograms stay well-formed when the stats disagree") {
  json stats = example();
  // Not cumulative, +Inf below the largest bucket, count above everything.
  stats["upstream_latency_ms"] = {{"count", 9}, {"sum", 2500},
                                  {"buckets", {{"100", 5}, {"10", 3}, {"50", 2}, {"+Inf", 4}}}};
  stats["batches"] = {{"count", 2}, {"requests", 40}, {"sizes", {{"1", 1}, {"257+", 3}}}};
  std::string text = prometheus_text(stats);
  check_structure(text);
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.01\"}") == "3");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.05\"}") == "3");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"0.1\"}") == "5");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_bucket{le=\"+Inf\"}") == "9");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_count") == "9");
  CHECK(value_of(text, "reprise_upstream_latency_seconds_sum") == "2.5");
  CHECK(value_of(text, "reprise_batch_size_bucket{le=\"256\"}") == "1");
  CHECK(value_of(text, "reprise_batch_size_bucket{le=\"+Inf\"}") == "4");
  CHECK(value_of(text, "reprise_batch_size_count") == "4");

  // With an engine loaded.
  stats["engine"] = {{"device", "cuda"}, {"kv_blocks_used", 10}, {"kv_blocks_free", 90},
                     {"draft_acceptance_rate", 0.75}, {"tokens_per_full_pass", 2.5},
                     {"running_sequences", 7}, {"kv_bytes_in_use", 4096}, {"jobs_cancelled", 3},
                     {"preemptions", 2}};
  text = prometheus_text(stats);
  auto engine_types = check_structure(text);
  CHECK(engine_types.at("reprise_engine_jobs_cancelled_total") == "counter");
  CHECK(engine_types.at("reprise_engine_running_sequences") == "gauge");
  CHECK(value_of(text, "reprise_engine_running_sequences") == "7");
  CHECK(value_of(text, "reprise_engine_kv_bytes_in_use") == "4096");
  CHECK(value_of(text, "reprise_engine_jobs_cancelled_total") == "3");
  CHECK(value_of(text, "reprise_engine_preemptions_total") == "2");
  CHECK(value_of(text, "reprise_engine_info{device=\"cuda\"}") == "1");
  CHECK(value_of(text, "reprise_engine_kv_blocks_free") == "90");
  CHECK(value_of(text, "reprise_engine_draft_acceptance_ratio") == "0.75");
  CHECK(value_of(text, "reprise_engine_tokens_per_full_pass") == "2.5");
}

TEST_CASE("metrics: every family has HELP and TYPE exactly once, samples contiguous") {
  json engine = example();
  engine["engine"] = {{"device", "cpu"}, {"kv_blocks_used", 1}, {"kv_blocks_free", 2},
                      {"draft_acceptance_rate", 0.5}, {"tokens_per_full_pass", 1.5}};
  for (const json& stats : {example(), with_250_namespaces(), engine}) {
    std::string text = prometheus_text(stats);
    auto types = check_structure(text);
    CHECK(types.at("reprise_requests_total") == "counter");
    CHECK(types.at("reprise_energy_avoided_wh_total") == "counter");
    CHECK(types.at("reprise_uptime_seconds") == "gauge");
    CHECK(types.at("reprise_batch_size") == "histogram");
    CHECK(types.at("reprise_upstream_latency_seconds") == "histogram");
    CHECK(types.at("reprise_namespace_requests_total") == "counter");
    CHECK(types.at("reprise_model_energy_spent_wh_total") == "counter");
    CHECK(types.at("reprise_model_info") == "gauge");
  }
}

TEST_CASE("metrics: promtool check metrics accepts the output") {
  if (run_shell("command -v promtool >/dev/null 2>&1") != 0) {
    FAIL("promtool is not on PATH: install the Debian package `prometheus` "
         "(scripts/install-deps.sh does) to validate the /metrics exposition");
  }
  // The harness itself: a lint problem (a counter without _total, no HELP) is caught.
  {
    std::string output;
    CHECK(promtool_check("# TYPE reprise_bad counter\nreprise_bad 1\n", &output) != 0);
    CHECK(output.find("reprise_bad") != std::string::npos);
  }
  json escaped = example();
  escaped["namespaces"]["we\"ird\\ns\nx"] = {{"requests", 1}};
  escaped["engine"] = {{"device", "cuda"}, {"kv_blocks_used", 1}, {"kv_blocks_free", 2},
                       {"draft_acceptance_rate", 0.5}, {"tokens_per_full_pass", 1.5}};
  std::vector<std::pair<std::string, std::string>> cases = {
      {"example", prometheus_text(example())},
      {"250 namespaces", prometheus_text(with_250_namespaces())},
      {"escaping and engine", prometheus_text(escaped)},
      {"empty", prometheus_text(json::object())},
  };
  for (const auto& [name, text] : cases) {
    CAPTURE(name);
    std::string output;
    int rc = promtool_check(text, &output);
    CHECK_MESSAGE(rc == 0, "promtool check metrics exited " << rc << ":\n" << output);
    CHECK_MESSAGE(output.empty(), "promtool check metrics printed:\n" << output);
  }
}
