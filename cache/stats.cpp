#include "cache/stats.hpp"

#include <algorithm>
#include <cmath>

#include "cache/energy.hpp"

namespace reprise::cache {

using nlohmann::json;

namespace {

// The fields, once: name and member, for the counters kept as integers.
struct Field {
  const char* name;
  uint64_t Counters::*member;
};
constexpr Field kFields[] = {
    {"requests", &Counters::requests},
    {"hits", &Counters::hits},
    {"misses", &Counters::misses},
    {"partials", &Counters::partials},
    {"bypassed", &Counters::bypassed},
    {"errors", &Counters::errors},
    {"samples_served", &Counters::samples_served},
    {"samples_generated", &Counters::samples_generated},
    {"upstream_calls", &Counters::upstream_calls},
    {"prompt_tokens_avoided", &Counters::prompt_tokens_avoided},
    {"completion_tokens_avoided", &Counters::completion_tokens_avoided},
    {"prompt_tokens_spent", &Counters::prompt_tokens_spent},
    {"completion_tokens_spent", &Counters::completion_tokens_spent},
};

double round_to(double value, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

}  // namespace

void Counters::add(const Counters& o) {
  for (auto& f : kFields) this->*f.member += o.*f.member;
  energy_avoided_j += o.energy_avoided_j;
  energy_spent_j += o.energy_spent_j;
  energy_measured_j += o.energy_measured_j;
  cost_avoided_usd += o.cost_avoided_usd;
  cost_spent_usd += o.cost_spent_usd;
}

json Counters::to_json(double grid) const {
  json out = json::object();
  for (auto& f : kFields) out[f.name] = this->*f.member;
  const double avoided_wh = joules_to_wh(energy_avoided_j);
  const double spent_wh = joules_to_wh(energy_spent_j);
  // Rounded to a microwatt-hour / microgram: enough for any display, and stable text.
  out["energy_avoided_wh"] = round_to(avoided_wh, 6);
  out["co2_avoided_g"] = round_to(wh_to_co2_g(avoided_wh, grid), 6);
  out["energy_spent_wh"] = round_to(spent_wh, 6);
  out["co2_spent_g"] = round_to(wh_to_co2_g(spent_wh, grid), 6);
  out["energy_measured_wh"] = round_to(joules_to_wh(energy_measured_j), 6);  // part of energy_spent_wh
  out["cost_avoided_usd"] = round_to(cost_avoided_usd, 9);  // a token costs ~1e-7 USD
  out["cost_spent_usd"] = round_to(cost_spent_usd, 9);
  return out;
}

json Counters::to_record() const {
  json out = json::object();
  for (auto& f : kFields) out[f.name] = this->*f.member;
  out["energy_avoided_j"] = energy_avoided_j;
  out["energy_spent_j"] = energy_spent_j;
  out["energy_measured_j"] = energy_measured_j;
  out["cost_avoided_usd"] = cost_avoided_usd;
  out["cost_spent_usd"] = cost_spent_usd;
  return out;
}

Counters Counters::from_record(const json& record) {
  Counters c;
  if (!record.is_object()) return c;
  for (auto& f : kFields)
    if (auto it = record.find(f.name); it != record.end() && it->is_number_unsigned()) c.*f.member = it->get<uint64_t>();
  if (auto it = record.find("energy_avoided_j"); it != record.end() && it->is_number()) c.energy_avoided_j = it->get<double>();
  if (auto it = record.find("energy_spent_j"); it != record.end() && it->is_number()) c.energy_spent_j = it->get<double>();
  if (auto it = record.find("energy_measured_j"); it != record.end() && it->is_number()) c.energy_measured_j = it->get<double>();
  if (auto it = record.find("cost_avoided_usd"); it != record.end() && it->is_number()) c.cost_avoided_usd = it->get<double>();
  if (auto it = record.find("cost_spent_usd"); it != record.end() && it->is_number()) c.cost_spent_usd = it->get<double>();
  return c;
}

namespace {

// The entry for `name`, or "_other" once `cap` entries exist or for a name longer
// than kMaxLabelBytes (counting each name folded there in `dropped`).
Counters& tracked(std::map<std::string, Counters>& map, const std::string& name, size_t cap, uint64_t& dropped) {
  if (name.size() <= Stats::kMaxLabelBytes) {
    auto it = map.find(name);
    if (it != map.end()) return it->second;
    if (map.size() < cap) return map[name];
  }
  ++dropped;
  return map["_other"];
}

}  // namespace

void Stats::add(const std::string& ns, const std::string& model, const Counters& delta, std::string_view api) {
  std::lock_guard lock(mu_);
  ++changes_;
  totals_.add(delta);
  if (!api.empty()) {
    auto it = apis_.find(api);
    if (it == apis_.end()) it = apis_.emplace(std::string(api), Counters{}).first;
    it->second.add(delta);
  }
  if (!ns.empty()) tracked(namespaces_, ns, max_namespaces_, namespaces_dropped_).add(delta);
  if (!model.empty()) tracked(models_, model, max_models_, models_dropped_).add(delta);
}

void Stats::record_upstream_latency(double ms) {
  std::lock_guard lock(mu_);
  size_t bucket = 0;
  while (bucket < kLatencyBoundsMs.size() && ms > kLatencyBoundsMs[bucket]) ++bucket;
  ++latency_buckets_[bucket];
  ++latency_count_;
  latency_sum_ms_ += ms;
}

void Stats::set_model_energy(const std::string& model, const std::string& energy_class,
                             const std::string& resolved_by) {
  std::lock_guard lock(mu_);
  // At most one entry per model that has counters of its own (or will have).
  if (model.size() > kMaxLabelBytes || (model_energy_.size() >= max_models_ && !model_energy_.count(model))) return;
  model_energy_[model] = {energy_class, resolved_by};
}

bool Stats::tracks_model(const std::string& model) const {
  if (model.size() > kMaxLabelBytes) return false;
  std::lock_guard lock(mu_);
  return models_.count(model) || models_.size() < max_models_;
}

void Stats::forget_namespace(const std::string& ns) {
  std::lock_guard lock(mu_);
  ++changes_;
  namespaces_.erase(ns);
}

uint64_t Stats::changes() const {
  std::lock_guard lock(mu_);
  return changes_;
}

Counters Stats::totals() const {
  std::lock_guard lock(mu_);
  return totals_;
}

json Stats::namespace_snapshot(const std::string& ns) const {
  std::lock_guard lock(mu_);
  auto it = namespaces_.find(ns);
  return it == namespaces_.end() ? json() : it->second.to_json(grid_);
}

json Stats::snapshot() const {
  // Copied under the lock, serialised outside it (see persistent()).
  std::unique_lock lock(mu_);
  const Counters totals_ = this->totals_;
  const auto namespaces_ = this->namespaces_;
  const auto models_ = this->models_;
  const auto apis_ = this->apis_;
  const auto model_energy_ = this->model_energy_;
  const auto latency_buckets_ = this->latency_buckets_;
  const uint64_t latency_count_ = this->latency_count_;
  const double latency_sum_ms_ = this->latency_sum_ms_;
  const uint64_t namespaces_dropped_ = this->namespaces_dropped_;
  const uint64_t models_dropped_ = this->models_dropped_;
  lock.unlock();
  json out = totals_.to_json(grid_);
  const uint64_t served = totals_.hits + totals_.misses + totals_.partials;
  out["hit_ratio"] = served ? round_to(double(totals_.hits) / double(served), 6) : 0.0;
  // The model's estimates are coarse: a band of a third to three times the estimate.
  const double avoided_wh = joules_to_wh(totals_.energy_avoided_j);
  out["energy_avoided_wh_low"] = round_to(avoided_wh / 3, 6);
  out["energy_avoided_wh_high"] = round_to(avoided_wh * 3, 6);
  out["co2_avoided_g_low"] = round_to(wh_to_co2_g(avoided_wh / 3, grid_), 6);
  out["co2_avoided_g_high"] = round_to(wh_to_co2_g(avoided_wh * 3, grid_), 6);
  out["grid_intensity_g_per_kwh"] = grid_;
  json& namespaces = out["namespaces"] = json::object();
  for (auto& [ns, c] : namespaces_) namespaces[ns] = c.to_json(grid_);
  json& apis = out["apis"] = json::object();
  for (auto& [api, c] : apis_) apis[api] = c.to_json(grid_);
  json& models = out["models"] = json::object();
  for (auto& [model, c] : models_) {
    json m = c.to_json(grid_);
    if (auto it = model_energy_.find(model); it != model_energy_.end()) {
      m["energy_class"] = it->second.first;
      m["resolved_by"] = it->second.second;
    }
    models[model] = std::move(m);
  }
  // Latency: cumulative buckets as Prometheus wants them, and percentiles read off
  // them (the upper bound of the bucket holding the rank: coarse, and said so).
  json latency = {{"count", latency_count_}, {"sum", round_to(latency_sum_ms_, 3)}};
  json buckets = json::object();
  uint64_t cumulative = 0;
  for (size_t i = 0; i < latency_buckets_.size(); ++i) {
    cumulative += latency_buckets_[i];
    std::string bound = i < kLatencyBoundsMs.size() ? std::to_string(int64_t(kLatencyBoundsMs[i])) : "+Inf";
    buckets[bound] = cumulative;
  }
  latency["buckets"] = buckets;
  for (auto [name, q] : {std::pair{"p50", 0.5}, std::pair{"p90", 0.9}, std::pair{"p99", 0.99}}) {
    if (latency_count_ == 0) { latency[name] = 0.0; continue; }
    uint64_t rank = uint64_t(std::ceil(q * double(latency_count_)));
    uint64_t seen = 0;
    size_t i = 0;
    for (; i < latency_buckets_.size(); ++i) {
      seen += latency_buckets_[i];
      if (seen >= rank) break;
    }
    latency[name] = i < kLatencyBoundsMs.size() ? kLatencyBoundsMs[i] : kLatencyBoundsMs.back();
  }
  out["upstream_latency_ms"] = latency;
  out["labels_dropped"] = {{"namespaces", namespaces_dropped_}, {"models", models_dropped_}};
  return out;
}

json Stats::persistent() const {
  // Copy under the lock (plain structs: fast), build the JSON outside it, so that
  // requests recording their counters never wait on a save.
  Counters totals;
  std::map<std::string, Counters> namespaces_copy, models_copy;
  std::map<std::string, Counters, std::less<>> apis_copy;
  {
    std::lock_guard lock(mu_);
    totals = totals_;
    namespaces_copy = namespaces_;
    models_copy = models_;
    apis_copy = apis_;
  }
  json out = {{"version", 1}, {"totals", totals.to_record()}};
  json& namespaces = out["namespaces"] = json::object();
  for (auto& [ns, c] : namespaces_copy) namespaces[ns] = c.to_record();
  json& models = out["models"] = json::object();
  for (auto& [model, c] : models_copy) models[model] = c.to_record();
  json& apis = out["apis"] = json::object();
  for (auto& [api, c] : apis_copy) apis[api] = c.to_record();
  return out;
}

void Stats::restore(const json& saved) {
  if (!saved.is_object() || saved.value("version", 0) != 1) return;
  std::lock_guard lock(mu_);
  totals_ = Counters::from_record(saved.value("totals", json()));
  namespaces_.clear();
  models_.clear();
  apis_.clear();
  // Only the names this build has: a handful, never a client's choosing.
  if (auto it = saved.find("apis"); it != saved.end() && it->is_object())
    for (auto& [api, record] : it->items())
      if (api.size() <= 64) apis_[api].add(Counters::from_record(record));
  // Saved under larger caps, perhaps: folded like new names would be.
  uint64_t ignored = 0;
  if (auto it = saved.find("namespaces"); it != saved.end() && it->is_object())
    for (auto& [ns, record] : it->items())
      tracked(namespaces_, ns, max_namespaces_, ignored).add(Counters::from_record(record));
  if (auto it = saved.find("models"); it != saved.end() && it->is_object())
    for (auto& [model, record] : it->items())
      tracked(models_, model, max_models_, ignored).add(Counters::from_record(record));
}

}  // namespace reprise::cache
