// The Prometheus text exposition of /admin/stats (see metrics.hpp). Every JSON access
// is guarded (type checked before get<>), so a malformed stats document degrades to
// zeros and empty maps; nothing here throws on the input.
#include "proxy/metrics.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace reprise {

namespace {

using nlohmann::json;

// A sample value: an exact integer while every input was one, else a double.
struct Num {
  bool is_int = true;
  int64_t i = 0;
  double d = 0;

  double as_double() const { return is_int ? static_cast<double>(i) : d; }
  static Num of_double(double v) { return Num{false, 0, v}; }
  static Num of_int(int64_t v) { return Num{true, v, 0}; }
};

Num add(const Num& a, const Num& b) {
  if (a.is_int && b.is_int) {
    int64_t r;
    if (!__builtin_add_overflow(a.i, b.i, &r)) return Num::of_int(r);
  }
  return Num::of_double(a.as_double() + b.as_double());
}

// a < b numerically; NaN ranks as 0 so the comparison stays a strict weak ordering.
double rank_value(const Num& n) {
  double v = n.as_double();
  return std::isnan(v) ? 0.0 : v;
}

bool less(const Num& a, const Num& b) {
  if (a.is_int && b.is_int) return a.i < b.i;
  return rank_value(a) < rank_value(b);
}

Num max_num(const Num& a, const Num& b) { return less(a, b) ? b : a; }

const json* field(const json* obj, std::string_view key) {
  if (obj == nullptr || !obj->is_object()) return nullptr;
  auto it = obj->find(key);
  return it == obj->end() ? nullptr : &*it;
}

const json* field(const json& obj, std::string_view key) { return field(&obj, key); }

Num num(const json* j) {
  if (j == nullptr) return {};
  if (j->is_number_unsigned()) {
    auto u = j->get<uint64_t>();
    if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return Num::of_int(static_cast<int64_t>(u));
    return Num::of_double(static_cast<double>(u));
  }
  if (j->is_number_integer()) return Num::of_int(j->get<int64_t>());
  if (j->is_number_float()) return Num::of_double(j->get<double>());
  return {};
}

std::string str(const json* j) {
  if (j == nullptr || !j->is_string()) return {};
  return j->get<std::string>();
}

void append_double(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[64];
    auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, ec == std::errc() ? p : buf);
  }
}

void append_num(std::string& out, const Num& n) {
  if (!n.is_int) return append_double(out, n.d);
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, n.i);
  out.append(buf, ec == std::errc() ? p : buf);
}

// Length of the valid UTF-8 sequence at s[i], or 0 if there is none.
size_t utf8_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
  unsigned char c = b(i);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    if (c == 0xE0 && b(i + 1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(i + 1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    if (c == 0xF0 && b(i + 1) < 0x90) return 0;   // overlong
    if (c == 0xF4 && b(i + 1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// A label value, quoted: \\, \" and \n escaped, invalid UTF-8 replaced by U+FFFD.
void append_label_value(std::string& out, std::string_view v) {
  out += '"';
  for (size_t i = 0; i < v.size();) {
    char c = v[i];
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      size_t n = utf8_len(v, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";
        ++i;
        continue;
      }
      out.append(v.substr(i, n));
      i += n;
      continue;
    }
    ++i;
  }
  out += '"';
}

using Labels = std::vector<std::pair<std::string_view, std::string_view>>;

void family(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  for (char c : help) {  // HELP escapes only \\ and \n
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, std::string_view name, const Labels& labels, const Num& v) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    bool first = true;
    for (const auto& [k, val] : labels) {
      if (!first) out += ',';
      first = false;
      out += k;
      out += '=';
      append_label_value(out, val);
    }
    out += '}';
  }
  out += ' ';
  append_num(out, v);
  out += '\n';
}

void sample(std::string& out, std::string_view name, const Num& v) { sample(out, name, {}, v); }

// The counters kept per namespace and per model, and in aggregate (stats key, metric
// name without the "reprise_" prefix, help). The avoided energy/CO2 are banded in
// aggregate only; their band fields are handled separately.
struct Counter {
  std::string_view key;
  std::string_view name;
  std::string_view help;
};

constexpr std::array<Counter, 20> kCounters{{
    {"requests", "requests_total", "Requests counted by the proxy's stats."},
    {"hits", "cache_hits_total", "Requests answered entirely from the cache."},
    {"misses", "cache_misses_total", "Requests with no usable cached sample, sent upstream."},
    {"partials", "cache_partials_total", "Requests answered partly from the cache and partly upstream."},
    {"bypassed", "bypassed_total", "Requests that bypassed the cache."},
    {"errors", "errors_total", "Requests answered with an error."},
    {"samples_served", "samples_served_total", "Samples (choices) served to clients."},
    {"samples_generated", "samples_generated_total", "Samples (choices) generated upstream or by the engine."},
    {"upstream_calls", "upstream_calls_total", "Calls made to an upstream or the engine."},
    {"prompt_tokens_avoided", "prompt_tokens_avoided_total", "Prompt tokens not processed upstream thanks to the cache."},
    {"completion_tokens_avoided", "completion_tokens_avoided_total", "Completion tokens not generated upstream thanks to the cache."},
    {"prompt_tokens_spent", "prompt_tokens_spent_total", "Prompt tokens processed upstream or by the engine."},
    {"completion_tokens_spent", "completion_tokens_spent_total", "Completion tokens generated upstream or by the engine."},
    {"energy_avoided_wh", "energy_avoided_wh_total", "Estimated energy avoided by cache hits, in watt-hours."},
    {"co2_avoided_g", "co2_avoided_grams_total", "Estimated CO2e emissions avoided by cache hits, in grams."},
    {"energy_spent_wh", "energy_spent_wh_total", "Energy spent generating (measured or estimated), in watt-hours."},
    {"co2_spent_g", "co2_spent_grams_total", "CO2e emitted generating (measured or estimated), in grams."},
    {"energy_measured_wh", "energy_measured_wh_total", "The part of the energy spent that was measured (the engine on a GPU, NVML), in watt-hours."},
    {"cost_avoided_usd", "cost_avoided_usd_total", "Tokens avoided, at the configured [[prices]], in US dollars."},
    {"cost_spent_usd", "cost_spent_usd_total", "Tokens spent, at the configured [[prices]], in US dollars."},
}};

constexpr size_t kRequests = 0;

struct Entry {
  std::string name;
  std::array<Num, kCounters.size()> v{};
  const json* src = nullptr;  // the stats object of a kept entry (for model info)
};

struct Dimension {
  std::vector<Entry> kept;  // in name order
  std::optional<Entry> other;
  size_t folded = 0;
};

Dimension select(const json* map, size_t max_values) {
  Dimension d;
  if (map == nullptr || !map->is_object()) return d;
  std::vector<Entry> all;
  all.reserve(map->size());
  for (auto it = map->begin(); it != map->end(); ++it) {
    Entry e;
    e.name = it.key();
    e.src = &it.value();
    for (size_t k = 0; k < kCounters.size(); ++k) e.v[k] = num(field(e.src, kCounters[k].key));
    all.push_back(std::move(e));
  }
  if (all.size() <= max_values) {
    d.kept = std::move(all);
  } else {
    // A literal "_other" never ranks: it goes to the folded series.
    auto ranked_end = std::partition(all.begin(), all.end(),
                                     [](const Entry& e) { return e.name != "_other"; });
    auto by_rank = [](const Entry& a, const Entry& b) {
      if (less(b.v[kRequests], a.v[kRequests])) return true;
      if (less(a.v[kRequests], b.v[kRequests])) return false;
      return a.name < b.name;
    };
    size_t keep = std::min<size_t>(max_values, static_cast<size_t>(ranked_end - all.begin()));
    std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(keep), ranked_end, by_rank);
    Entry other;
    other.name = "_other";
    for (size_t i = keep; i < all.size(); ++i) {
      for (size_t k = 0; k < kCounters.size(); ++k) other.v[k] = add(other.v[k], all[i].v[k]);
      ++d.folded;
    }
    all.resize(keep);
    d.kept = std::move(all);
    d.other = std::move(other);
  }
  std::sort(d.kept.begin(), d.kept.end(),
            [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return d;
}

void dimension_families(std::string& out, const Dimension& d, std::string_view prefix,
                        std::string_view label, std::string_view per) {
  std::string name;
  std::string help;
  for (size_t k = 0; k < kCounters.size(); ++k) {
    name = "reprise_";
    name += prefix;
    name += '_';
    name += kCounters[k].name;
    help = kCounters[k].help;
    help.pop_back();  // the full stop
    help += ", per ";
    help += per;
    help += '.';
    family(out, name, "counter", help);
    for (const auto& e : d.kept) sample(out, name, {{label, e.name}}, e.v[k]);
    if (d.other) sample(out, name, {{label, d.other->name}}, d.other->v[k]);
  }
}

// A cumulative histogram from (bound, cumulative count) pairs: sorted, made
// non-decreasing, +Inf bucket == _count == max(count, the largest bucket).
void histogram(std::string& out, std::string_view name, std::string_view help,
               std::vector<std::pair<double, Num>> buckets, Num inf, const Num& sum,
               const Num& count) {
  std::sort(buckets.begin(), buckets.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  family(out, name, "histogram", help);
  std::string bucket = std::string(name) + "_bucket";
  Num running;
  std::string le;
  for (size_t i = 0; i < buckets.size(); ++i) {
    running = max_num(running, buckets[i].second);
    if (i + 1 < buckets.size() && buckets[i + 1].first == buckets[i].first) continue;
    le.clear();
    append_double(le, buckets[i].first);
    sample(out, bucket, {{"le", le}}, running);
  }
  Num total = max_num(max_num(running, inf), count);
  sample(out, bucket, {{"le", "+Inf"}}, total);
  sample(out, std::string(name) + "_sum", sum);
  sample(out, std::string(name) + "_count", total);
}

void gauge(std::string& out, std::string_view name, std::string_view help, const Num& v) {
  family(out, name, "gauge", help);
  sample(out, name, v);
}

}  // namespace

std::string prometheus_text(const nlohmann::json& stats, size_t max_label_values) {
  std::string out;
  Dimension namespaces = select(field(stats, "namespaces"), max_label_values);
  Dimension models = select(field(stats, "models"), max_label_values);
  Dimension apis = select(field(stats, "apis"), max_label_values);
  out.reserve(4096 + 48 * kCounters.size() * 2 *
                         (namespaces.kept.size() + models.kept.size() + 2));

  // Aggregate counters.
  std::string name;
  for (const auto& c : kCounters) {
    name = "reprise_";
    name += c.name;
    family(out, name, "counter", c.help);
    if (c.key == "energy_avoided_wh" || c.key == "co2_avoided_g") {
      std::string low = std::string(c.key) + "_low";
      std::string high = std::string(c.key) + "_high";
      sample(out, name, {{"band", "low"}}, num(field(stats, low)));
      sample(out, name, {{"band", "central"}}, num(field(stats, c.key)));
      sample(out, name, {{"band", "high"}}, num(field(stats, high)));
    } else {
      sample(out, name, num(field(stats, c.key)));
    }
  }

  // Gauges.
  gauge(out, "reprise_uptime_seconds", "Seconds since the proxy started.",
        num(field(stats, "uptime_s")));
  gauge(out, "reprise_hit_ratio", "Cache hit ratio, as reported by /admin/stats (hits over requests).",
        num(field(stats, "hit_ratio")));
  gauge(out, "reprise_in_flight_generations", "Generations (upstream or engine) under way now.",
        num(field(stats, "in_flight_generations")));
  gauge(out, "reprise_store_size_bytes", "Size of the cache store on disk, in bytes.",
        num(field(stats, "store_bytes")));
  family(out, "reprise_store_errors_total", "counter",
         "Writes the cache store failed or refused (a full disk, say): samples served but not stored.");
  sample(out, "reprise_store_errors_total", num(field(stats, "store_errors")));
  family(out, "reprise_store_recoveries_total", "counter",
         "Times the cache store was reopened after a failed write, and cached again.");
  sample(out, "reprise_store_recoveries_total", num(field(stats, "store_recoveries")));
  // The shared cache on Redis Cluster ([cache] store = "redis-cluster"): its client's
  // traffic and the failures it rode through.
  if (const json* store = field(stats, "store"); store && store->is_object() && store->value("kind", "") == "redis-cluster") {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 12> kClusterCounters{{
        {"round_trips", "Writes of a batch of pipelined commands to a Redis Cluster node."},
        {"commands", "Commands sent to the Redis Cluster (any outcome)."},
        {"retries", "Commands sent again after MOVED, ASK, TRYAGAIN or a lost connection."},
        {"moved", "MOVED redirections (a slot moved, or a failover)."},
        {"ask", "ASK redirections (a slot being migrated)."},
        {"failovers_seen", "Slot-map refreshes that found a shard's primary changed."},
        {"wait_failures", "Writes WAIT did not confirm on the shard's replicas (not served: 503)."},
        {"timeouts", "Commands that ran past [cache.redis] timeout_ms."},
        {"takes", "Cursor takes (one per request) sent to the cluster."},
        {"samples_read_from_cluster", "Samples this replica read from the cluster (not yet in its local copy)."},
        {"generations_taken_over", "Generations made here because their owner's lease ran out (a replica died)."},
        {"fills_refused", "Generations whose samples the cluster could not confirm stored (their clients got 503)."},
    }};
    for (const auto& [key, help] : kClusterCounters) {
      name = "reprise_cluster_";
      name += key;
      name += "_total";
      family(out, name, "counter", help);
      sample(out, name, num(field(store, key)));
    }
  }
  family(out, "reprise_energy_csv_write_errors_total", "counter", "Rows of the energy CSV lost to failed writes.");
  sample(out, "reprise_energy_csv_write_errors_total", num(field(stats, "energy_csv_write_errors")));
  gauge(out, "reprise_grid_intensity_grams_per_kwh",
        "Grid carbon intensity used for the CO2 estimates, in gCO2e per kWh.",
        num(field(stats, "grid_intensity_g_per_kwh")));

  // Batches.
  const json* batches = field(stats, "batches");
  gauge(out, "reprise_batch_max_size", "Largest batch of requests seen so far.",
        num(field(batches, "max_size")));
  {
    const json* sizes = field(batches, "sizes");
    static constexpr std::array<std::pair<std::string_view, double>, 5> kSizeBuckets{{
        {"1", 1}, {"2-4", 4}, {"5-16", 16}, {"17-64", 64}, {"65-256", 256}}};
    std::vector<std::pair<double, Num>> buckets;
    Num cumulative;
    for (const auto& [key, le] : kSizeBuckets) {
      cumulative = add(cumulative, num(field(sizes, key)));
      buckets.emplace_back(le, cumulative);
    }
    cumulative = add(cumulative, num(field(sizes, "257+")));
    histogram(out, "reprise_batch_size",
              "Requests per batch sent to a generator (identical requests coalesced).",
              std::move(buckets), cumulative, num(field(batches, "requests")),
              num(field(batches, "count")));
  }

  // Upstream latency (milliseconds in the stats, seconds here).
  {
    const json* lat = field(stats, "upstream_latency_ms");
    const json* bmap = field(lat, "buckets");
    std::vector<std::pair<double, Num>> buckets;
    Num inf;
    if (bmap != nullptr && bmap->is_object()) {
      for (auto it = bmap->begin(); it != bmap->end(); ++it) {
        const std::string& key = it.key();
        Num v = num(&it.value());
        if (key == "+Inf" || key == "inf" || key == "Inf") {
          inf = max_num(inf, v);
          continue;
        }
        double ms = 0;
        auto [p, ec] = std::from_chars(key.data(), key.data() + key.size(), ms);
        if (ec != std::errc() || p != key.data() + key.size() || !std::isfinite(ms)) continue;
        buckets.emplace_back(ms / 1000.0, v);
      }
    }
    Num sum_ms = num(field(lat, "sum"));
    histogram(out, "reprise_upstream_latency_seconds",
              "Latency of upstream calls, in seconds.", std::move(buckets), inf,
              Num::of_double(sum_ms.as_double() / 1000.0), num(field(lat, "count")));
  }

  // Labels dropped by the stats producer, and folded here.
  const json* dropped = field(stats, "labels_dropped");
  family(out, "reprise_stats_labels_dropped", "gauge",
         "Label values the stats producer stopped tracking individually.");
  sample(out, "reprise_stats_labels_dropped", {{"dimension", "namespace"}},
         num(field(dropped, "namespaces")));
  sample(out, "reprise_stats_labels_dropped", {{"dimension", "model"}},
         num(field(dropped, "models")));
  family(out, "reprise_metrics_labels_folded", "gauge",
         "Label values folded into the \"_other\" series by this exposition's cardinality cap.");
  sample(out, "reprise_metrics_labels_folded", {{"dimension", "namespace"}},
         Num::of_int(static_cast<int64_t>(namespaces.folded)));
  sample(out, "reprise_metrics_labels_folded", {{"dimension", "model"}},
         Num::of_int(static_cast<int64_t>(models.folded)));

  // Engine (only when one is loaded).
  if (const json* engine = field(stats, "engine"); engine != nullptr && engine->is_object()) {
    std::string device = str(field(engine, "device"));
    family(out, "reprise_engine_info", "gauge", "The local engine; always 1.");
    sample(out, "reprise_engine_info", {{"device", device}}, Num::of_int(1));
    gauge(out, "reprise_engine_kv_blocks_used", "KV cache blocks in use.",
          num(field(engine, "kv_blocks_used")));
    gauge(out, "reprise_engine_kv_blocks_free", "KV cache blocks free.",
          num(field(engine, "kv_blocks_free")));
    gauge(out, "reprise_engine_draft_acceptance_ratio",
          "Fraction of drafted tokens accepted by the full pass.",
          num(field(engine, "draft_acceptance_rate")));
    gauge(out, "reprise_engine_tokens_per_full_pass", "Tokens produced per full forward pass.",
          num(field(engine, "tokens_per_full_pass")));
    gauge(out, "reprise_engine_running_sequences", "Samples decoding in the engine's batch now.",
          num(field(engine, "running_sequences")));
    gauge(out, "reprise_engine_kv_bytes_in_use", "Bytes of the KV cache's used blocks.",
          num(field(engine, "kv_bytes_in_use")));
    family(out, "reprise_engine_jobs_cancelled_total", "counter",
           "Engine jobs cancelled because every client waiting on them disconnected.");
    sample(out, "reprise_engine_jobs_cancelled_total", num(field(engine, "jobs_cancelled")));
    family(out, "reprise_engine_preemptions_total", "counter",
           "Engine jobs evicted from the batch for KV room (recomputed later).");
    sample(out, "reprise_engine_preemptions_total", num(field(engine, "preemptions")));
    gauge(out, "reprise_engine_energy_measured",
          "1 when the engine's energy is measured (NVML on its GPU), 0 when estimated from tokens.",
          Num::of_int(str(field(engine, "energy_method")) == "measured" ? 1 : 0));
    family(out, "reprise_engine_energy_measured_wh_total", "counter",
           "Energy the engine's GPU used while it stepped since start (NVML), in watt-hours.");
    sample(out, "reprise_engine_energy_measured_wh_total", num(field(engine, "energy_measured_wh")));
  }

  // Per namespace, per model.
  dimension_families(out, namespaces, "namespace", "namespace", "namespace");
  dimension_families(out, models, "model", "model", "model");
  dimension_families(out, apis, "api", "api", "API");
  family(out, "reprise_model_info", "gauge",
         "Per model: its energy class and the [[models]] rule that resolved it; always 1.");
  for (const auto& e : models.kept) {
    std::string energy_class = str(field(e.src, "energy_class"));
    std::string resolved_by = str(field(e.src, "resolved_by"));
    sample(out, "reprise_model_info",
           {{"model", e.name}, {"energy_class", energy_class}, {"resolved_by", resolved_by}},
           Num::of_int(1));
  }
  return out;
}

}  // namespace reprise
