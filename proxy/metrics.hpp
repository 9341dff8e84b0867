#pragma once
// GET /metrics: the Prometheus text exposition (format 0.0.4) of the /admin/stats JSON.
// A pure function over that JSON, no I/O. Every field is read defensively: a missing or
// mistyped number counts as 0, a missing or mistyped map as empty; it never throws on
// the input (a JSON type error is impossible by construction, not caught).
//
// Metric families (every one with exactly one # HELP and one # TYPE; all its samples
// contiguous; names follow the Prometheus conventions: prefix reprise_, base units in
// the name, counters end in _total):
//
//   Counters, the whole proxy since start (stats key -> metric):
//     requests                  reprise_requests_total
//     hits / misses / partials  reprise_cache_hits_total / _misses_total / _partials_total
//     bypassed                  reprise_bypassed_total
//     errors                    reprise_errors_total
//     samples_served            reprise_samples_served_total
//     samples_generated         reprise_samples_generated_total
//     upstream_calls            reprise_upstream_calls_total
//     prompt_tokens_avoided     reprise_prompt_tokens_avoided_total
//     completion_tokens_avoided reprise_completion_tokens_avoided_total
//     prompt_tokens_spent       reprise_prompt_tokens_spent_total
//     completion_tokens_spent   reprise_completion_tokens_spent_total
//     energy_avoided_wh[_low|_high]  reprise_energy_avoided_wh_total{band="low"|"central"|"high"}
//     co2_avoided_g[_low|_high]      reprise_co2_avoided_grams_total{band="low"|"central"|"high"}
//     energy_spent_wh           reprise_energy_spent_wh_total
//     co2_spent_g               reprise_co2_spent_grams_total
//     energy_measured_wh        reprise_energy_measured_wh_total (the measured part of the spent)
//   The avoided energy/CO2 is an estimate with an uncertainty band: one family, one
//   series per band (the unsuffixed stats field is band="central"). Never sum over
//   `band`; select one, e.g. reprise_energy_avoided_wh_total{band="central"}.
//
//   Gauges:
//     uptime_s                  reprise_uptime_seconds
//     hit_ratio                 reprise_hit_ratio
//     in_flight_generations     reprise_in_flight_generations
//     store_bytes               reprise_store_size_bytes
//     grid_intensity_g_per_kwh  reprise_grid_intensity_grams_per_kwh
//     batches.max_size          reprise_batch_max_size
//     labels_dropped.{namespaces,models}
//                               reprise_stats_labels_dropped{dimension="namespace"|"model"}
//     (computed here)           reprise_metrics_labels_folded{dimension="namespace"|"model"}:
//                               how many label values this exposition folded into "_other"
//     engine.* (only when the stats have an "engine" object):
//                               reprise_engine_info{device="cpu"|"cuda"} 1,
//                               reprise_engine_kv_blocks_used, reprise_engine_kv_blocks_free,
//                               reprise_engine_draft_acceptance_ratio,
//                               reprise_engine_tokens_per_full_pass,
//                               reprise_engine_energy_measured (1 measured, 0 estimated),
//                               reprise_engine_energy_measured_wh_total
//
//   Histograms:
//     reprise_batch_size        from batches.sizes {"1","2-4","5-16","17-64","65-256","257+"}
//                               as cumulative buckets le="1","4","16","64","256","+Inf";
//                               _sum = batches.requests, _count = batches.count.
//     reprise_upstream_latency_seconds
//                               from upstream_latency_ms.buckets (already cumulative;
//                               bounds converted ms -> s, "25" -> le="0.025");
//                               _sum = upstream_latency_ms.sum / 1000, _count = .count.
//   Both histograms are made well-formed whatever the input: buckets are sorted by bound
//   and made non-decreasing, and the +Inf bucket and _count are the same number (the
//   larger of the given count and the largest bucket).
//
// Per-namespace and per-model series: separate families, so that an aggregate is never
// double-counted by a sum() over a label:
//     reprise_namespace_<name>{namespace="..."}   e.g. reprise_namespace_requests_total
//     reprise_model_<name>{model="..."}           e.g. reprise_model_cache_hits_total
// for every counter above, <name> being the aggregate metric's name without "reprise_"
// (the energy/CO2 avoided families there carry no band label: the stats give only the
// central estimate per namespace and per model). Plus, per model,
//     reprise_model_info{model="...",energy_class="...",resolved_by="..."} 1.
//
// Cardinality: at most `max_label_values` namespaces (and, separately, models) get a
// series of their own: the ones with the most requests, ties broken by name (byte-wise
// ascending). The rest are summed, counter by counter, into one series labelled
// namespace="_other" (model="_other"), which appears only when something was folded.
// A real namespace or model literally named "_other" is always folded into it when
// folding happens (never a duplicate series); when nothing is folded it is shown as is.
// Kept series are listed in name order, "_other" last. reprise_model_info has no
// "_other" series.
//
// Label values are escaped per the format (\\, \", \n) and invalid UTF-8 is replaced by
// U+FFFD. Numbers: JSON integers print as integers, doubles as the shortest string that
// round-trips (std::to_chars), non-finite doubles as NaN / +Inf / -Inf.
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace reprise {

std::string prometheus_text(const nlohmann::json& stats, size_t max_label_values = 100);

}  // namespace reprise
