#pragma once
// The numbers /admin/stats and /metrics report (DESIGN.md section 3): counters
// globally, per namespace, per model and per API (the cache endpoint's name:
// "chat.completions", "responses", "messages", ...), the batch-size and upstream-latency
// distributions. Thread-safe; cheap enough to record on every response (one short
// lock). Counters survive restarts: the proxy saves persistent() in the store and
// restore()s it at start.
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace reprise::cache {

struct Counters {
  uint64_t requests = 0;
  uint64_t hits = 0;      // every choice served from stored samples
  uint64_t misses = 0;    // every choice generated for this request (or joined in flight)
  uint64_t partials = 0;  // some of each
  uint64_t bypassed = 0;  // X-Reprise-Cache: bypass, or not cacheable
  uint64_t errors = 0;    // answered with an error
  uint64_t samples_served = 0;
  uint64_t samples_generated = 0;
  uint64_t upstream_calls = 0;
  uint64_t prompt_tokens_avoided = 0;
  uint64_t completion_tokens_avoided = 0;
  uint64_t prompt_tokens_spent = 0;
  uint64_t completion_tokens_spent = 0;
  double energy_avoided_j = 0;
  double energy_spent_j = 0;
  double energy_measured_j = 0;  // the part of energy_spent_j that was measured (times PUE), not estimated
  double cost_avoided_usd = 0;  // the tokens avoided at the [[prices]] of their model
  double cost_spent_usd = 0;

  void add(const Counters& other);
  // The counters as /admin/stats shows them (energy in Wh, CO2 in g at `grid`).
  nlohmann::json to_json(double grid_g_per_kwh) const;
  // Exact round trip for persistence (energy kept in joules).
  nlohmann::json to_record() const;
  static Counters from_record(const nlohmann::json& record);
};

class Stats {
 public:
  explicit Stats(double grid_g_per_kwh, size_t max_namespaces = kMaxTracked, size_t max_models = kMaxTracked)
      : grid_(grid_g_per_kwh), max_namespaces_(max_namespaces), max_models_(max_models) {}

  // Adds `delta` to the totals, to namespace `ns` (when not empty), to `model` (when
  // not empty) and to `api` (when not empty: one of the endpoint names, a handful).
  void add(const std::string& ns, const std::string& model, const Counters& delta, std::string_view api = {});
  void record_upstream_latency(double ms);
  // The model's energy class and how it was resolved, shown beside its counters.
  void set_model_energy(const std::string& model, const std::string& energy_class, const std::string& resolved_by);
  // Drops a namespace's counters (DELETE /admin/namespaces/{ns}).
  void forget_namespace(const std::string& ns);

  // The counters, the namespaces and models maps, hit_ratio, the energy band and the
  // latency distribution: everything of /admin/stats that the cache knows.
  nlohmann::json snapshot() const;
  // One namespace's counters, or null when it has none.
  nlohmann::json namespace_snapshot(const std::string& ns) const;
  Counters totals() const;

  nlohmann::json persistent() const;
  // Counts the changes so far: a saver skips a save when nothing changed since.
  uint64_t changes() const;
  void restore(const nlohmann::json& saved);

  // Namespaces (and models) kept apart at most, by default ([cache] stats_max_*);
  // beyond, new ones are counted in the totals and under "_other" ("labels_dropped"
  // says how many were folded). A sweep that gives every request a namespace of its
  // own must not make every request pay for a map of a million entries, nor every save
  // serialise it; and model names are the client's to choose, any number of them.
  static constexpr size_t kMaxTracked = 10'000;
  // Longer names are folded into "_other" too, so that the maps are bounded in bytes
  // (a namespace has at most 128 characters; a model name is any JSON string).
  static constexpr size_t kMaxLabelBytes = 256;
  // Whether `model` has (or may get) counters and an energy class of its own.
  bool tracks_model(const std::string& model) const;

  // Upstream latency buckets (upper bounds in ms); the last is +Inf.
  static constexpr std::array<double, 13> kLatencyBoundsMs = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};

 private:
  const double grid_;
  const size_t max_namespaces_;
  const size_t max_models_;
  mutable std::mutex mu_;
  Counters totals_;
  std::map<std::string, Counters> namespaces_;
  std::map<std::string, Counters> models_;
  std::map<std::string, Counters, std::less<>> apis_;
  std::map<std::string, std::pair<std::string, std::string>> model_energy_;
  uint64_t changes_ = 0;
  uint64_t namespaces_dropped_ = 0;
  uint64_t models_dropped_ = 0;
  std::array<uint64_t, kLatencyBoundsMs.size() + 1> latency_buckets_{};  // not cumulative
  uint64_t latency_count_ = 0;
  double latency_sum_ms_ = 0;
};

}  // namespace reprise::cache
