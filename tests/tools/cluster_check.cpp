// cluster_check: the cluster checker's workload at any size, on demand (DESIGN.md
// section 10). Starts its own Redis Cluster (3 primaries, 3 replicas on loopback), a
// fake upstream and N proxy replicas in cluster mode; clients ask random replicas for
// a few hot keys in a few namespaces with n in 1..4 while a nemesis injects faults;
// then every served sample is read back, and the invariants are checked
// (tests/support/cluster_checker.hpp). Exit status 1 on any violation.
//
//   cluster_check --replicas 3 --seconds 60 --clients 16
//                 [--nemesis kill-primary|kill-replica|pause-primary|none]
//                 [--keys 4] [--namespaces 4] [--latency-ms 20] [--period-ms 5000]
#include <cstdio>
#include <iostream>

#include "tests/support/cluster_stack.hpp"

using namespace reprise::test;

namespace {

int usage() {
  std::cerr << "usage: cluster_check [--replicas N] [--seconds S] [--clients C] [--keys K] [--namespaces M]\n"
               "                     [--nemesis kill-primary|kill-replica|pause-primary|none]\n"
               "                     [--latency-ms L] [--period-ms P]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  int replicas = 3, seconds = 20, latency_ms = 20, period_ms = 5000;
  Workload w{.clients = 8, .keys = 4, .namespaces = 4, .max_n = 4, .tag = "check"};
  std::string nemesis_name = "kill-primary";
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return usage();
    std::string flag = argv[i], value = argv[i + 1];
    try {
      if (flag == "--replicas") replicas = std::stoi(value);
      else if (flag == "--seconds") seconds = std::stoi(value);
      else if (flag == "--clients") w.clients = std::stoi(value);
      else if (flag == "--keys") w.keys = std::stoi(value);
      else if (flag == "--namespaces") w.namespaces = std::stoi(value);
      else if (flag == "--latency-ms") latency_ms = std::stoi(value);
      else if (flag == "--period-ms") period_ms = std::stoi(value);
      else if (flag == "--nemesis") nemesis_name = value;
      else return usage();
    } catch (const std::exception&) {
      return usage();
    }
  }
  auto nemesis = parse_nemesis(nemesis_name);
  if (!nemesis || replicas < 1 || replicas > 16 || seconds < 1 || w.clients < 1 || w.keys < 1 || w.namespaces < 1)
    return usage();

  try {
    auto t0 = Clock::now();
    ClusterStackOptions options;
    options.replicas = replicas;
    options.node_timeout_ms = 1000;  // failovers within the run
    options.timeout_ms = 1500;
    options.lease_ms = 1000;
    options.fake_args = {"--latency-ms", std::to_string(latency_ms)};
    ClusterStack stack(options);
    std::printf("cluster_check: %d replicas, %d clients, %d keys, %d namespaces, nemesis %s, %d s (set-up %lld ms)\n",
                replicas, w.clients, w.keys, w.namespaces, nemesis_name.c_str(), seconds,
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()));
    auto run = run_check(stack, w, *nemesis, std::chrono::seconds(seconds), std::chrono::milliseconds(period_ms));
    for (auto& line : run.nemesis_log) std::printf("fault: %s\n", line.c_str());
    std::printf("service: every replica answered every hot key %lld ms after the faults ended%s\n",
                static_cast<long long>(run.resume_ms), run.resumed ? "" : " (NOT within 20 s)");
    std::printf("%s\n", run.report.summary().c_str());
    std::printf("upstream: %llu calls, %llu samples (distinct samples served %zu)\n",
                static_cast<unsigned long long>(run.upstream_calls), static_cast<unsigned long long>(run.upstream_samples),
                run.report.distinct_samples);
    std::printf("store: takes %llu, generated %llu, waited for %llu, taken over %llu, retries %llu, moved %llu, "
                "failovers seen %llu\n",
                static_cast<unsigned long long>(stack.store_total("takes")),
                static_cast<unsigned long long>(stack.store_total("samples_generated")),
                static_cast<unsigned long long>(stack.store_total("generations_waited_for")),
                static_cast<unsigned long long>(stack.store_total("generations_taken_over")),
                static_cast<unsigned long long>(stack.store_total("retries")),
                static_cast<unsigned long long>(stack.store_total("moved")),
                static_cast<unsigned long long>(stack.store_total("failovers_seen")));
    const bool clean = run.report.violations.empty() && run.report.other == 0 &&
                       run.report.unavailable_without_retry_after == 0 && run.report.ok > 0 &&
                       run.report.read_back == run.report.distinct_samples;
    std::printf("%s\n", clean ? "OK" : "VIOLATIONS");
    return clean ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cluster_check: %s\n", e.what());
    return 3;
  }
}
