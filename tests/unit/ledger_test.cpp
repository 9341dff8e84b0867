// The energy model, the stats counters and data/energy.csv, against hand-computed values.
#include <doctest/doctest.h>

#include "temp_dir.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "cache/canonical.hpp"
#include "cache/energy.hpp"
#include "cache/energy_csv.hpp"
#include "cache/generation.hpp"
#include "cache/ledger.hpp"
#include "cache/stats.hpp"

using namespace reprise::cache;

TEST_CASE("energy: the formula of DESIGN.md section 5, by hand") {
  // frontier: a=0.40 b=2.0 c=10; PUE 1.2; 100 prompt, 50 completion, one call:
  // 1.2 * (40 + 100 + 10) = 180 J = 0.05 Wh; at 475 g/kWh: 0.02375 g.
  auto frontier = *energy_class("frontier");
  double j = EnergyModel::joules(frontier, 1.2, 100, 50, 1);
  CHECK(j == doctest::Approx(180.0));
  CHECK(joules_to_wh(j) == doctest::Approx(0.05));
  CHECK(wh_to_co2_g(joules_to_wh(j), 475) == doctest::Approx(0.02375));
  // small: 0.05/0.25/1 at PUE 1.0: 1000 prompt, 200 completion, no call = 50 + 50 = 100 J.
  CHECK(EnergyModel::joules(*energy_class("small"), 1.0, 1000, 200, 0) == doctest::Approx(100.0));
  CHECK(EnergyModel::joules(*energy_class("medium"), 1.0, 10, 10, 1) == doctest::Approx(1 + 5 + 2));
  CHECK(EnergyModel::joules(*energy_class("large"), 2.0, 10, 10, 2) == doctest::Approx(2 * (2 + 10 + 6)));
  CHECK_FALSE(energy_class("huge"));
}

TEST_CASE("energy: a model's class by exact name, glob, size in the name, then the default") {
  EnergyModel model({{"gpt-4o-mini", "medium", std::nullopt},
                     {"gpt-4o*", "large", std::nullopt},
                     {"mine-*", "", EnergyCoefficients{1, 2, 3}}},
                    "frontier");
  auto exact = model.resolve("gpt-4o-mini");
  CHECK(exact.energy_class == "medium");
  CHECK(exact.resolved_by == "exact:gpt-4o-mini");
  auto glob = model.resolve("gpt-4o-2024-08-06");
  CHECK(glob.energy_class == "large");
  CHECK(glob.resolved_by == "glob:gpt-4o*");
  auto custom = model.resolve("mine-7");
  CHECK(custom.energy_class == "custom");
  CHECK(custom.coefficients.b == 2);
  auto small = model.resolve("meta-llama/Llama-3.1-8B-Instruct");
  CHECK(small.energy_class == "small");
  CHECK(small.resolved_by == "size:8b");
  CHECK(model.resolve("llama-3.3-70b").energy_class == "large");
  CHECK(model.resolve("qwen2.5-32b-instruct").energy_class == "medium");
  CHECK(model.resolve("Qwen2.5-0.5B").resolved_by == "size:0.5b");
  CHECK(model.resolve("mixtral-8x7b").energy_class == "large");  // 56B
  auto unknown = model.resolve("claude-something");
  CHECK(unknown.energy_class == "frontier");
  CHECK(unknown.resolved_by == "default");
  CHECK(EnergyModel({}, "small").resolve("x").energy_class == "small");
}

TEST_CASE("energy: sizes written in model names") {
  CHECK(size_in_name("llama-3.1-8b") == 8);
  CHECK(size_in_name("Llama-3.1-405B-Instruct") == 405);
  CHECK(size_in_name("qwen2.5-1.5b") == doctest::Approx(1.5));
  CHECK(size_in_name("mixtral-8x22b") == 176);
  CHECK_FALSE(size_in_name("gpt-4o-mini"));
  CHECK_FALSE(size_in_name("text-embedding-3-small"));
  CHECK_FALSE(size_in_name("b2b-model"));
}

TEST_CASE("stats: counters add up globally, per namespace and per model, and survive a round trip") {
  Stats stats(475);
  Counters hit;
  hit.requests = hit.hits = 1;
  hit.samples_served = 2;
  hit.prompt_tokens_avoided = 10;
  hit.completion_tokens_avoided = 20;
  hit.energy_avoided_j = 3600;  // 1 Wh
  Counters miss;
  miss.requests = miss.misses = 1;
  miss.samples_served = 2;
  miss.energy_spent_j = 1800;
  stats.add("a", "m1", hit);
  stats.add("b", "m1", miss);
  stats.add("a", "m2", hit);
  stats.record_upstream_latency(30);
  stats.record_upstream_latency(3000);
  auto s = stats.snapshot();
  CHECK(s["requests"] == 3);
  CHECK(s["hits"] == 2);
  CHECK(s["misses"] == 1);
  CHECK(s["hit_ratio"].get<double>() == doctest::Approx(2.0 / 3.0).epsilon(1e-5));
  CHECK(s["energy_avoided_wh"] == 2.0);
  CHECK(s["energy_avoided_wh_low"].get<double>() == doctest::Approx(2.0 / 3));
  CHECK(s["energy_avoided_wh_high"] == 6.0);
  CHECK(s["co2_avoided_g"] == 0.95);
  CHECK(s["energy_spent_wh"] == 0.5);
  CHECK(s["namespaces"]["a"]["requests"] == 2);
  CHECK(s["namespaces"]["b"]["misses"] == 1);
  CHECK(s["models"]["m1"]["requests"] == 2);
  CHECK(s["upstream_latency_ms"]["count"] == 2);
  CHECK(s["upstream_latency_ms"]["buckets"]["50"] == 1);
  CHECK(s["upstream_latency_ms"]["buckets"]["5000"] == 2);
  CHECK(s["upstream_latency_ms"]["buckets"]["+Inf"] == 2);
  CHECK(s["upstream_latency_ms"]["p50"] == 50.0);

  Stats restored(475);
  restored.restore(nlohmann::json::parse(stats.persistent().dump()));
  auto r = restored.snapshot();
  for (auto key : {"requests", "hits", "misses", "samples_served", "prompt_tokens_avoided", "energy_avoided_wh"})
    CHECK(r[key] == s[key]);
  CHECK(r["namespaces"] == s["namespaces"]);
  restored.forget_namespace("a");
  CHECK(restored.namespace_snapshot("a").is_null());
  CHECK(restored.snapshot()["requests"] == 3);  // the totals keep what it did
}

TEST_CASE("stats: counters per API (the cache endpoint's name), kept across a restart") {
  Stats stats(475);
  Counters hit;
  hit.requests = hit.hits = 1;
  Counters miss;
  miss.requests = miss.misses = 1;
  stats.add("a", "m", hit, endpoint_name(Endpoint::messages));
  stats.add("a", "m", miss, endpoint_name(Endpoint::messages));
  stats.add("a", "m", hit, endpoint_name(Endpoint::responses));
  stats.add("a", "m", hit);  // no API: the totals only
  auto s = stats.snapshot();
  CHECK(s["requests"] == 4);
  CHECK(s["apis"].size() == 2);
  CHECK(s["apis"]["messages"]["requests"] == 2);
  CHECK(s["apis"]["messages"]["hits"] == 1);
  CHECK(s["apis"]["responses"]["hits"] == 1);
  Stats restored(475);
  restored.restore(nlohmann::json::parse(stats.persistent().dump()));
  CHECK(restored.snapshot()["apis"] == s["apis"]);
}

namespace {

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("energy csv: CodeCarbon's columns, quoting, and rotation by size") {
  reprise::test::UnitTempDir dir("ledger_test");
  auto path = dir.path() / "sub" / "energy.csv";
  EnergyRow row;
  row.timestamp = 1795000000.5;
  row.duration_s = 0.25;
  row.event = "hit";
  row.ns = "run,1";
  row.model = "m\"x";
  row.prompt_tokens = 3;
  row.completion_tokens = 4;
  row.avoided_energy_kwh = 5e-5;
  row.avoided_emissions_kg = 2.375e-5;
  row.pue = 1.2;
  row.energy_class = "frontier";
  {
    EnergyCsv csv(path.string(), 600);
    csv.append(row);
    csv.flush();
    std::string text = read_all(path);
    CHECK(text.starts_with("timestamp,project_name,duration,emissions,emissions_rate,energy_consumed,pue,event,"
                           "namespace,model,prompt_tokens,completion_tokens,avoided_energy_kwh,avoided_emissions_kg,"
                           "method,energy_class\n"));
    CHECK(text.find("\n2026-11-18T11:06:40.500Z,reprise,0.25,0,0,0,1.2,hit,\"run,1\",\"m\"\"x\",3,4,5e-05,2.375e-05,estimated,frontier\n") !=
          std::string::npos);
    // The file grows past 600 bytes: it is rotated to .1 and starts again with a header.
    for (int i = 0; i < 6; ++i) csv.append(row);
    csv.flush();
    CHECK(std::filesystem::exists(path.string() + ".1"));
    CHECK(read_all(path).starts_with("timestamp,"));
    CHECK(std::filesystem::file_size(path) <= 600);
    CHECK(csv.dropped() == 0);
  }
}

// ---- measured energy (the engine on a GPU: Sample::energy_j) ---------------------------

namespace {

// A generation of `model` completed with `samples`, as a backend ends it.
std::shared_ptr<Generation> completed(const std::string& model, std::vector<Sample> samples) {
  nlohmann::json body = {{"model", model}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  auto c = canonicalize(Endpoint::chat_completions, body.dump());
  REQUIRE(c.ok());
  auto request = std::make_shared<const CanonicalRequest>(std::move(c.value()));
  auto gen = std::make_shared<Generation>(request, Endpoint::chat_completions, uint32_t(samples.size()), false, nullptr);
  gen->set_origin("ns");
  gen->complete(std::move(samples));
  return gen;
}

Sample made(const std::string& backend, uint32_t prompt, uint32_t completion, double energy_j) {
  Sample s;
  s.choice = {{"message", {{"role", "assistant"}, {"content", "x"}}}};
  s.backend = backend;
  s.prompt_tokens = prompt;
  s.completion_tokens = completion;
  s.energy_j = energy_j;
  return s;
}

// The slots of a response that made every choice of `gen` (choice indices as given).
std::vector<Slot> made_slots(const std::shared_ptr<Generation>& gen, std::vector<uint32_t> choices) {
  std::vector<Slot> slots;
  for (uint32_t c : choices) {
    Slot slot;
    slot.gen = gen;
    slot.choice = c;
    slot.created = true;
    slots.push_back(std::move(slot));
  }
  return slots;
}

// The data rows of energy.csv, split on commas (the tests' names need no quoting),
// keyed by the header's column names.
std::vector<std::map<std::string, std::string>> csv_rows(const std::filesystem::path& path) {
  std::istringstream in(read_all(path));
  std::string line;
  std::vector<std::string> columns;
  std::vector<std::map<std::string, std::string>> rows;
  auto split = [](const std::string& l) {
    std::vector<std::string> out;
    std::string cell;
    std::istringstream cells(l);
    while (std::getline(cells, cell, ',')) out.push_back(cell);
    return out;
  };
  while (std::getline(in, line)) {
    if (columns.empty()) {
      columns = split(line);
      continue;
    }
    auto cells = split(line);
    REQUIRE(cells.size() == columns.size());
    std::map<std::string, std::string> row;
    for (size_t i = 0; i < cells.size(); ++i) row[columns[i]] = cells[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

LedgerOptions measured_options(const std::filesystem::path& csv) {
  LedgerOptions o;
  o.pue_local = 1.5;
  o.pue_remote = 1.2;
  o.csv_path = csv.string();
  o.rules = {{"tiny", "small", std::nullopt}};  // small: a=0.05 b=0.25 c=1
  return o;
}

}  // namespace

TEST_CASE("ledger: an engine call whose samples all carry measured joules spends them, csv method measured") {
  reprise::test::UnitTempDir dir("ledger_measured");
  const auto csv = dir.path() / "energy.csv";
  Ledger ledger(measured_options(csv));
  // Two samples of one job: 2 J + 3 J measured. The estimate would be
  // 1.5 * (0.05*10 + 0.25*10 + 1) = 6 J; measured: 1.5 * 5 = 7.5 J.
  auto gen = completed("tiny", {made("engine", 10, 4, 2.0), made("engine", 10, 6, 3.0)});
  ledger.on_generation_end(*gen, Generation::State::done);
  const Counters totals = ledger.stats().totals();
  CHECK(totals.energy_spent_j == doctest::Approx(7.5));
  CHECK(totals.energy_measured_j == doctest::Approx(7.5));
  CHECK(ledger.stats().snapshot()["energy_measured_wh"].get<double>() == doctest::Approx(7.5 / 3600).epsilon(1e-4));
  ledger.on_served("ns", "tiny", made_slots(gen, {0, 1}), 0.5);
  // A greedy response serving choice 0 twice made one sample: counted once.
  ledger.on_served("ns", "tiny", made_slots(gen, {0, 0}), 0.5);
  ledger.csv()->flush();
  auto rows = csv_rows(csv);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0]["event"] == "engine");
  CHECK(rows[0]["method"] == "measured");
  CHECK(std::stod(rows[0]["energy_consumed"]) == doctest::Approx(7.5 / 3.6e6));
  CHECK(rows[0]["pue"] == "1.5");
  CHECK(rows[1]["method"] == "measured");
  CHECK(std::stod(rows[1]["energy_consumed"]) == doctest::Approx(1.5 * 2.0 / 3.6e6));
}

TEST_CASE("ledger: one unmeasured sample, or an upstream call, keeps the estimate") {
  reprise::test::UnitTempDir dir("ledger_mixed");
  const auto csv = dir.path() / "energy.csv";
  Ledger ledger(measured_options(csv));
  auto mixed = completed("tiny", {made("engine", 10, 4, 2.0), made("engine", 10, 6, -1)});
  ledger.on_generation_end(*mixed, Generation::State::done);
  CHECK(ledger.stats().totals().energy_spent_j == doctest::Approx(1.5 * (0.05 * 10 + 0.25 * 10 + 1)));
  CHECK(ledger.stats().totals().energy_measured_j == 0);
  ledger.on_served("ns", "tiny", made_slots(mixed, {0, 1}), 0.5);
  // An upstream's samples never carry measurements: frontier, PUE 1.2.
  auto remote = completed("gpt-x", {made("openai", 100, 50, -1)});
  ledger.on_generation_end(*remote, Generation::State::done);
  CHECK(ledger.stats().totals().energy_spent_j == doctest::Approx(6.0 + 180.0));
  ledger.on_served("ns", "gpt-x", made_slots(remote, {0}), 0.5);
  // A hit: nothing spent, the row stays estimated.
  std::vector<Slot> hit(1);
  hit[0].sample = std::make_shared<const Sample>(made("engine", 10, 4, 2.0));
  ledger.on_served("ns", "tiny", hit, 0.1);
  ledger.csv()->flush();
  auto rows = csv_rows(csv);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0]["method"] == "estimated");
  CHECK(std::stod(rows[0]["energy_consumed"]) == doctest::Approx(6.0 / 3.6e6));
  CHECK(rows[1]["method"] == "estimated");
  CHECK(rows[1]["event"] == "miss");
  CHECK(std::stod(rows[1]["energy_consumed"]) == doctest::Approx(180.0 / 3.6e6));
  CHECK(rows[2]["event"] == "hit");
  CHECK(rows[2]["method"] == "estimated");
  CHECK(std::stod(rows[2]["energy_consumed"]) == 0);
  CHECK(ledger.stats().totals().energy_measured_j == 0);
}

TEST_CASE("ledger: a bypassed engine call with measured joules is spent as measured") {
  reprise::test::UnitTempDir dir("ledger_bypass");
  const auto csv = dir.path() / "energy.csv";
  Ledger ledger(measured_options(csv));
  Ledger::BypassUsage usage;
  usage.known = true;
  usage.local = true;
  usage.prompt_tokens = 10;
  usage.completion_tokens = 10;
  usage.measured_j = 3.0;  // 1.5 * 3 = 4.5 J; the estimate is 1.5 * (0.05*10 + 0.25*10 + 1) = 6 J
  ledger.on_bypassed("ns", "tiny", usage, 0.2);
  CHECK(ledger.stats().totals().energy_spent_j == doctest::Approx(4.5));
  CHECK(ledger.stats().totals().energy_measured_j == doctest::Approx(4.5));
  usage.measured_j = -1;
  ledger.on_bypassed("ns", "tiny", usage, 0.2);
  CHECK(ledger.stats().totals().energy_spent_j == doctest::Approx(4.5 + 6.0));
  CHECK(ledger.stats().totals().energy_measured_j == doctest::Approx(4.5));
  ledger.csv()->flush();
  auto rows = csv_rows(csv);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0]["method"] == "measured");
  CHECK(rows[1]["method"] == "estimated");
  // Measured joules survive the counters' save and restore.
  Stats restored(475);
  restored.restore(nlohmann::json::parse(ledger.stats().persistent().dump()));
  CHECK(restored.totals().energy_measured_j == doctest::Approx(4.5));
}

TEST_CASE("ledger: model names beyond the cap, or too long, fold into _other; the energy classes stay bounded") {
  LedgerOptions options;
  options.stats_max_models = 5;
  options.stats_max_namespaces = 3;
  Ledger ledger(options);
  Ledger::BypassUsage usage;
  usage.known = true;
  usage.prompt_tokens = 10;
  usage.completion_tokens = 5;
  for (int i = 0; i < 50; ++i)
    ledger.on_bypassed("ns-" + std::to_string(i), "model-" + std::to_string(i), usage, 0.1);
  ledger.on_bypassed("ns-0", std::string(1000, 'x'), usage, 0.1);
  const nlohmann::json snap = ledger.stats().snapshot();
  CHECK(snap["models"].size() == 6);  // 5 and _other
  CHECK(snap["models"]["_other"]["requests"] == 46);
  CHECK(snap["namespaces"].size() == 4);
  CHECK(snap["labels_dropped"]["models"] == 46);
  CHECK(snap["requests"] == 51);
  // The energy class is shown for the kept models, and every request still resolved one.
  CHECK(snap["models"]["model-0"]["energy_class"] == "frontier");
  CHECK(snap["energy_spent_wh"].get<double>() > 0);
  // Restoring saved counters from a larger cap folds them the same way.
  Ledger restored(options);
  nlohmann::json saved = ledger.stats().persistent();
  for (int i = 0; i < 20; ++i) saved["models"]["more-" + std::to_string(i)] = saved["models"]["model-0"];
  restored.restore(saved);
  CHECK(restored.stats().snapshot()["models"].size() <= 6);
}
