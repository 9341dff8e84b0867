#pragma once
// The energy and savings ledger (DESIGN.md section 5): turns what the cache did into
// the counters of Stats and the rows of data/energy.csv.
//
//   spent   = every backend call that completed: E = PUE * (a*prompt + b*completion + c),
//             or PUE * the measured joules when every sample it made carries them
//             (Sample::energy_j: the engine on a GPU); CSV method "measured" then
//   avoided = every choice served without a call made for it (a stored sample, or a
//             generation started by another request): its completion tokens; the
//             prompt and the per-call term too when the response made no call at all
//
// Coefficients come from EnergyModel (per-model rules, size in the name, default
// class); PUE is [energy] pue for remote APIs and pue_local for the engine.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cache/cache_request.hpp"
#include "cache/energy.hpp"
#include "cache/energy_csv.hpp"
#include "cache/stats.hpp"

namespace reprise::cache {

// What a model's tokens cost, in USD per million ([[prices]]): the money-equivalent
// of the tokens avoided and spent. First matching glob wins; no match, no cost.
struct Price {
  std::string match;
  double prompt_per_million = 0;
  double completion_per_million = 0;
};

struct LedgerOptions {
  double grid_g_per_kwh = 475;
  double pue_remote = 1.2;
  double pue_local = 1.0;
  std::vector<EnergyRule> rules;
  std::string default_class = "frontier";
  std::vector<Price> prices;
  std::string csv_path;        // empty: no CSV
  uint64_t csv_max_bytes = 64ull << 20;
  // Stats' caps on the namespaces and models with counters of their own; the energy
  // class of at most stats_max_models models is remembered (the rest resolve each time).
  size_t stats_max_namespaces = Stats::kMaxTracked;
  size_t stats_max_models = Stats::kMaxTracked;
};

enum class Outcome { hit, miss, partial, bypass, error };

class Ledger {
 public:
  explicit Ledger(LedgerOptions options);

  // A generation ended (Cacher's on_generation_end): a completed one spent its call.
  void on_generation_end(const Generation& gen, Generation::State state);
  // A response was served from `slots` (every generation among them done).
  // `api` (here and below): the request's cache endpoint name, for the per-API
  // counters; empty for none (a pass-through path).
  void on_served(const std::string& ns, const std::string& model, const std::vector<Slot>& slots,
                 double duration_s, std::string_view api = {});
  // A response that did not come from the cache: bypassed, or an error.
  void on_uncached(const std::string& ns, const std::string& model, Outcome outcome, std::string_view api = {});
  // A bypassed request the upstream answered with a 2xx. Its call was paid for like a
  // miss's (counted as spent, and one CSV row with event "miss"), and nothing was
  // stored. The tokens are those of the answer's usage; when the answer had none (a
  // stream without stream_options.include_usage) only the call is counted, since
  // guessing tokens would put invented numbers in the ledger.
  struct BypassUsage {
    bool known = false;
    uint64_t prompt_tokens = 0;
    uint64_t completion_tokens = 0;
    bool local = false;  // made by the in-process engine: pue_local, CSV event "engine"
    double measured_j = -1;  // the engine's measured joules for it (before PUE); < 0: estimate
  };
  void on_bypassed(const std::string& ns, const std::string& model, const BypassUsage& usage, double duration_s,
                   std::string_view api = {});

  Stats& stats() { return stats_; }
  // Restores saved counters, and the energy class of each model in them.
  void restore(const nlohmann::json& saved);
  EnergyCsv* csv() { return csv_.get(); }
  EnergyResolution resolve(const std::string& model);

  static Outcome outcome_of(const std::vector<Slot>& slots);

 private:
  double pue_for(const Sample& sample) const;
  double cost(const std::string& model, uint64_t prompt_tokens, uint64_t completion_tokens) const;

  LedgerOptions options_;
  EnergyModel model_;
  Stats stats_;
  std::unique_ptr<EnergyCsv> csv_;
  std::mutex resolved_mu_;
  std::map<std::string, EnergyResolution> resolved_;
};

}  // namespace reprise::cache
