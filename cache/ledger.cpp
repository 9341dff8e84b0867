#include "cache/ledger.hpp"

#include <algorithm>
#include <chrono>
#include <set>

#include "cache/glob.hpp"

namespace reprise::cache {
namespace {

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The measured joules of these samples (before PUE), or -1 unless every one has them.
double measured_joules(const std::vector<Sample>& samples) {
  double sum = 0;
  for (auto& s : samples) {
    if (s.energy_j < 0) return -1;
    sum += s.energy_j;
  }
  return samples.empty() ? -1 : sum;
}

// The same for the samples a response made (its created slots), each counted once
// (a greedy pick serves one sample in several slots); -1 when it made none.
double measured_joules(const std::vector<Slot>& slots) {
  std::set<std::pair<const Generation*, uint32_t>> seen;
  double sum = 0;
  size_t made = 0;
  for (auto& slot : slots) {
    if (!slot.created || (slot.gen && !seen.insert({slot.gen.get(), slot.choice}).second)) continue;
    const double j = slot.served().energy_j;
    if (j < 0) return -1;
    sum += j;
    ++made;
  }
  return made ? sum : -1;
}

}  // namespace

Ledger::Ledger(LedgerOptions options)
    : options_(std::move(options)),
      model_(options_.rules, options_.default_class),
      stats_(options_.grid_g_per_kwh, options_.stats_max_namespaces, options_.stats_max_models) {
  if (!options_.csv_path.empty()) csv_ = std::make_unique<EnergyCsv>(options_.csv_path, options_.csv_max_bytes);
}

EnergyResolution Ledger::resolve(const std::string& model) {
  std::lock_guard lock(resolved_mu_);
  auto it = resolved_.find(model);
  if (it != resolved_.end()) return it->second;
  // Remembered only for the models Stats keeps apart: model names are the client's
  // to choose, and the others are resolved again each time (a few glob matches).
  if (resolved_.size() >= options_.stats_max_models || !stats_.tracks_model(model)) return model_.resolve(model);
  it = resolved_.emplace(model, model_.resolve(model)).first;
  stats_.set_model_energy(model, it->second.energy_class, it->second.resolved_by);
  return it->second;
}

void Ledger::restore(const nlohmann::json& saved) {
  stats_.restore(saved);
  if (auto models = saved.find("models"); saved.is_object() && models != saved.end() && models->is_object())
    for (auto& [model, record] : models->items()) resolve(model);
}

double Ledger::cost(const std::string& model, uint64_t prompt_tokens, uint64_t completion_tokens) const {
  for (auto& price : options_.prices)
    if (glob_match(price.match, model))
      return (double(prompt_tokens) * price.prompt_per_million + double(completion_tokens) * price.completion_per_million) / 1e6;
  return 0;
}

double Ledger::pue_for(const Sample& sample) const {
  return sample.backend == "engine" ? options_.pue_local : options_.pue_remote;
}

Outcome Ledger::outcome_of(const std::vector<Slot>& slots) {
  size_t made = 0;
  for (auto& slot : slots) made += slot.created;
  if (made == 0 && std::all_of(slots.begin(), slots.end(), [](const Slot& s) { return s.sample != nullptr; }))
    return Outcome::hit;
  return made == slots.size() || std::none_of(slots.begin(), slots.end(), [](const Slot& s) { return s.sample != nullptr; })
             ? Outcome::miss
             : Outcome::partial;
}

void Ledger::on_generation_end(const Generation& gen, Generation::State state) {
  const std::string& model = gen.request().model;
  Counters delta;
  delta.upstream_calls = 1;
  if (state == Generation::State::done && !gen.samples().empty()) {
    const auto& samples = gen.samples();
    uint64_t prompt = 0, completion = 0;
    for (auto& s : samples) {
      prompt = std::max<uint64_t>(prompt, s.prompt_tokens);
      completion += s.completion_tokens;
    }
    delta.samples_generated = samples.size();
    delta.prompt_tokens_spent = prompt;
    delta.completion_tokens_spent = completion;
    const double measured = measured_joules(samples);
    if (measured >= 0) {
      delta.energy_spent_j = pue_for(samples.front()) * measured;
      delta.energy_measured_j = delta.energy_spent_j;
    } else {
      delta.energy_spent_j = EnergyModel::joules(resolve(model).coefficients, pue_for(samples.front()), prompt, completion, 1);
    }
    delta.cost_spent_usd = cost(model, prompt, completion);
  }
  stats_.add(gen.origin(), model, delta, endpoint_name(gen.endpoint()));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - gen.started_at()).count();
  stats_.record_upstream_latency(ms);
}

void Ledger::on_served(const std::string& ns, const std::string& model, const std::vector<Slot>& slots,
                       double duration_s, std::string_view api) {
  if (slots.empty()) return;
  const EnergyResolution energy = resolve(model);
  const Outcome outcome = outcome_of(slots);
  // Avoided: the choices no call was made for. Spent (this response's share, for the
  // CSV row; Stats counts spending per call in on_generation_end): those it caused.
  uint64_t prompt = 0, completion_avoided = 0, completion_made = 0, completion = 0;
  std::set<const Generation*> made_calls;
  double pue = 1;
  for (auto& slot : slots) {
    const Sample& s = slot.served();
    prompt = std::max<uint64_t>(prompt, s.prompt_tokens);
    completion += s.completion_tokens;
    pue = pue_for(s);
    if (slot.created) {
      completion_made += s.completion_tokens;
      made_calls.insert(slot.gen.get());
    } else {
      completion_avoided += s.completion_tokens;
    }
  }
  const bool no_call = made_calls.empty();
  Counters delta;
  delta.requests = 1;
  delta.hits = outcome == Outcome::hit;
  delta.misses = outcome == Outcome::miss;
  delta.partials = outcome == Outcome::partial;
  delta.samples_served = slots.size();
  delta.prompt_tokens_avoided = no_call ? prompt : 0;
  delta.completion_tokens_avoided = completion_avoided;
  delta.energy_avoided_j =
      EnergyModel::joules(energy.coefficients, pue, delta.prompt_tokens_avoided, completion_avoided, no_call ? 1 : 0);
  delta.cost_avoided_usd = cost(model, delta.prompt_tokens_avoided, completion_avoided);
  stats_.add(ns, model, delta, api);

  if (!csv_) return;
  // This response's share of what its calls spent: the measured joules of the samples
  // it made when every one has them, else the estimate.
  const double measured = no_call ? -1 : measured_joules(slots);
  const double spent_j = no_call          ? 0
                         : measured >= 0 ? pue * measured
                                         : EnergyModel::joules(energy.coefficients, pue, prompt, completion_made,
                                                               made_calls.size());
  EnergyRow row;
  row.timestamp = now_unix();
  row.duration_s = duration_s;
  row.event = outcome == Outcome::hit ? "hit" : outcome == Outcome::miss ? "miss" : "partial";
  if (outcome != Outcome::hit && slots.front().served().backend == "engine") row.event = "engine";
  row.ns = ns;
  row.model = model;
  row.prompt_tokens = prompt;
  row.completion_tokens = completion;
  row.energy_kwh = spent_j / 3.6e6;
  row.emissions_kg = row.energy_kwh * options_.grid_g_per_kwh / 1000.0;
  row.avoided_energy_kwh = delta.energy_avoided_j / 3.6e6;
  row.avoided_emissions_kg = row.avoided_energy_kwh * options_.grid_g_per_kwh / 1000.0;
  row.pue = pue;
  row.method = measured >= 0 ? "measured" : "estimated";
  row.energy_class = energy.energy_class;
  csv_->append(std::move(row));
}

void Ledger::on_uncached(const std::string& ns, const std::string& model, Outcome outcome, std::string_view api) {
  Counters delta;
  delta.requests = 1;
  delta.bypassed = outcome == Outcome::bypass;
  delta.errors = outcome == Outcome::error;
  stats_.add(ns, model, delta, api);
}

void Ledger::on_bypassed(const std::string& ns, const std::string& model, const BypassUsage& usage,
                         double duration_s, std::string_view api) {
  const EnergyResolution energy = resolve(model);
  const double pue = usage.local ? options_.pue_local : options_.pue_remote;
  Counters delta;
  delta.requests = 1;
  delta.bypassed = 1;
  delta.upstream_calls = 1;
  const bool measured = usage.local && usage.measured_j >= 0;
  if (usage.known) {
    delta.prompt_tokens_spent = usage.prompt_tokens;
    delta.completion_tokens_spent = usage.completion_tokens;
    delta.energy_spent_j =
        measured ? pue * usage.measured_j
                 : EnergyModel::joules(energy.coefficients, pue, usage.prompt_tokens, usage.completion_tokens, 1);
    if (measured) delta.energy_measured_j = delta.energy_spent_j;
    delta.cost_spent_usd = cost(model, usage.prompt_tokens, usage.completion_tokens);
  }
  stats_.add(ns, model, delta, api);
  if (!csv_) return;
  EnergyRow row;
  row.timestamp = now_unix();
  row.duration_s = duration_s;
  row.event = usage.local ? "engine" : "miss";
  row.ns = ns;
  row.model = model;
  row.prompt_tokens = usage.prompt_tokens;
  row.completion_tokens = usage.completion_tokens;
  row.energy_kwh = delta.energy_spent_j / 3.6e6;
  row.emissions_kg = row.energy_kwh * options_.grid_g_per_kwh / 1000.0;
  row.pue = pue;
  row.method = measured && usage.known ? "measured" : "estimated";
  row.energy_class = energy.energy_class;
  csv_->append(std::move(row));
}

}  // namespace reprise::cache
