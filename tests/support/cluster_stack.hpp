#pragma once
// Test support: many replicas of the real proxy sharing one real Redis Cluster (DESIGN.md
// section 10): a RedisCluster (redis_cluster.hpp), one fake upstream, and N `reprise`
// processes with [cache] store = "redis-cluster", each with a local cache directory of
// its own. A replica can be killed with SIGKILL and started again, on its old local
// store or an empty one (a new port each time: port_of() is safe to call from client
// threads meanwhile). Also the workload of the cluster checker: clients over the
// replicas with a small set of hot keys and namespaces, and a nemesis beside them.
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "cluster_checker.hpp"
#include "redis_cluster.hpp"

namespace reprise::test {

struct ClusterStackOptions {
  int replicas = 3;
  int node_timeout_ms = 2000;    // the cluster's cluster-node-timeout
  int timeout_ms = 2000;         // [cache.redis] timeout_ms
  int lease_ms = 1000;           // [cache.redis] lease_ms
  std::vector<std::string> fake_args;
  std::string cache_lines;       // more [cache] lines
};

class ClusterStack {
 public:
  explicit ClusterStack(ClusterStackOptions options = {})
      : options_(std::move(options)),
        cluster(dir / "redis", RedisCluster::Options{3, 1, "", options_.node_timeout_ms}),
        fake(dir, options_.fake_args) {
    replicas_.resize(static_cast<size_t>(options_.replicas));
    starts_.resize(replicas_.size(), 0);
    for (size_t i = 0; i < replicas_.size(); ++i) start(i, false);
  }
  ~ClusterStack() {
    std::lock_guard lock(mu_);
    replicas_.clear();  // the proxies before the cluster (members die in reverse order)
  }

  TempDir dir;

 private:
  ClusterStackOptions options_;

 public:
  RedisCluster cluster;
  FakeUpstream fake;

  size_t size() const { return replicas_.size(); }
  const ClusterStackOptions& options() const { return options_; }

  // The replica's port, or nullopt while it is down.
  std::optional<uint16_t> port_of(size_t i) const {
    std::lock_guard lock(mu_);
    if (!replicas_.at(i)) return std::nullopt;
    return replicas_[i]->port();
  }
  uint16_t port(size_t i) const {
    auto p = port_of(i);
    if (!p) throw std::runtime_error("replica " + std::to_string(i) + " is down");
    return *p;
  }
  uint16_t admin_port(size_t i) const {
    std::lock_guard lock(mu_);
    return replicas_.at(i)->admin_port();
  }
  std::vector<uint16_t> ports() const {
    std::vector<uint16_t> out;
    for (size_t i = 0; i < size(); ++i)
      if (auto p = port_of(i)) out.push_back(*p);
    return out;
  }
  // The "store" object of the replica's /admin/stats.
  nlohmann::json store_stats(size_t i) const {
    return request(admin_port(i), "GET", "/admin/stats").json()["store"];
  }
  // A store counter summed over the live replicas.
  uint64_t store_total(const std::string& counter) const {
    uint64_t sum = 0;
    for (size_t i = 0; i < size(); ++i)
      if (port_of(i)) sum += store_stats(i).value(counter, uint64_t{0});
    return sum;
  }
  std::string log(size_t i) const {
    std::lock_guard lock(mu_);
    return replicas_.at(i) ? replicas_[i]->log() : std::string();
  }

  // SIGKILL: no goodbye to the cluster, tickets and leases left as they were.
  void kill(size_t i) {
    std::unique_ptr<ProxyUnderTest> dying;
    {
      std::lock_guard lock(mu_);
      dying = std::move(replicas_.at(i));
    }
    dying.reset();  // Process's destructor: SIGKILL and reap
  }
  // Starts replica i (killing it first if it runs): on its old local store, or on a
  // new empty directory.
  void start(size_t i, bool empty_local_store) {
    kill(i);
    if (empty_local_store || starts_[i] == 0) local_[i] = "local-" + std::to_string(i) + "-" + std::to_string(starts_[i]);
    const std::string name = "replica-" + std::to_string(i) + "-" + std::to_string(starts_[i]++);
    auto proxy = std::make_unique<ProxyUnderTest>(dir, config(local_[i]), env(), name);
    std::lock_guard lock(mu_);
    replicas_[i] = std::move(proxy);
  }

  std::string config(const std::string& local_dir) const {
    ProxyConfig c;
    c.cache = local_dir;
    std::string nodes;
    for (auto& seed : cluster.seeds()) nodes += (nodes.empty() ? "\"" : ", \"") + seed + "\"";
    c.cache_lines = "store = \"redis-cluster\"\n" + options_.cache_lines;
    c.tail = "\n[cache.redis]\nnodes = [" + nodes + "]\ntimeout_ms = " + std::to_string(options_.timeout_ms) +
             "\nlease_ms = " + std::to_string(options_.lease_ms) + "\n";
    return c.render(dir, fake.base_url());
  }

  // The cluster nodes holding a cache key's hash ("rp:{...}"): the primaries that
  // answer KEYS with at least one. A test targets the shard of its hot keys this way.
  std::vector<size_t> primaries_with_keys() const {
    std::vector<std::pair<size_t, size_t>> counted;  // keys, node
    for (size_t node : cluster.primaries()) {
      auto keys = cluster.call(node, {"KEYS", "rp:{*"});
      if (!keys || keys->empty()) continue;
      counted.emplace_back(static_cast<size_t>(std::count(keys->begin(), keys->end(), '\n')), node);
    }
    std::sort(counted.rbegin(), counted.rend());
    std::vector<size_t> out;
    for (auto& [count, node] : counted) out.push_back(node);
    return out;
  }

 private:
  static std::map<std::string, std::string> env() {
    return {{"REPRISE_TEST_KEY", "sk-test-configured-key-0123456789"}};
  }
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<ProxyUnderTest>> replicas_;
  std::vector<int> starts_;
  std::map<size_t, std::string> local_;
};

// The checker's workload: `clients` threads, each asking random replicas for one of
// `keys` hot keys in one of `namespaces` namespaces with n in 1..max_n, until `stop`.
struct Workload {
  int clients = 6;
  int keys = 3;
  int namespaces = 3;
  int max_n = 4;
  std::string tag = "w";  // in every key and namespace name: runs never share keys
  std::chrono::milliseconds request_timeout{15'000};
};

inline void run_clients(ClusterStack& stack, History& history, const Workload& w, std::atomic<bool>& stop) {
  std::vector<std::thread> threads;
  for (int c = 0; c < w.clients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 random(static_cast<unsigned>(c * 7919 + 17));
      for (int round = 0; round < 1'000'000 && !stop.load(); ++round) {
        const size_t replica = random() % stack.size();
        const std::string key = w.tag + "-k" + std::to_string(random() % static_cast<unsigned>(w.keys));
        const std::string ns = w.tag + "-ns" + std::to_string(random() % static_cast<unsigned>(w.namespaces));
        const int n = 1 + static_cast<int>(random() % static_cast<unsigned>(w.max_n));
        auto port = stack.port_of(replica);
        if (!port) {  // down (the nemesis): another try elsewhere soon
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        history.add(ask_replica(*port, static_cast<int>(replica), ns, key, n, w.request_timeout));
      }
    });
  }
  for (auto& t : threads) t.join();
}

// Faults beside the workload, one at a time every `period`, until `stop`; the cluster
// and every replica are whole again when it returns. A description of each fault goes
// to `log`.
enum class Nemesis { none, kill_primary, kill_replica, pause_primary };

inline std::optional<Nemesis> parse_nemesis(const std::string& name) {
  if (name == "none") return Nemesis::none;
  if (name == "kill-primary") return Nemesis::kill_primary;
  if (name == "kill-replica") return Nemesis::kill_replica;
  if (name == "pause-primary") return Nemesis::pause_primary;
  return std::nullopt;
}

inline void run_nemesis(ClusterStack& stack, Nemesis nemesis, std::chrono::milliseconds period,
                        std::atomic<bool>& stop, std::vector<std::string>& log) {
  auto sleep_unless_stopped = [&](std::chrono::milliseconds d) {
    for (auto until = Clock::now() + d; Clock::now() < until && !stop.load();)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  };
  std::mt19937 random(42);
  for (int round = 0; round < 10'000 && nemesis != Nemesis::none; ++round) {
    sleep_unless_stopped(period);
    if (stop.load()) return;
    auto t0 = Clock::now();
    auto ms = [&] {
      return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()) + " ms";
    };
    if (nemesis == Nemesis::kill_replica) {
      const size_t i = random() % stack.size();
      stack.kill(i);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      stack.start(i, random() % 2 == 0);
      log.push_back("killed replica " + std::to_string(i) + ", back after " + ms());
      continue;
    }
    auto targets = stack.primaries_with_keys();
    if (targets.empty()) targets = stack.cluster.primaries();
    if (targets.empty()) throw std::runtime_error("nemesis: no primary");
    const size_t node = targets.front();
    if (nemesis == Nemesis::pause_primary) {
      stack.cluster.pause(node);
      std::this_thread::sleep_for(std::chrono::milliseconds(800));
      stack.cluster.resume(node);
      log.push_back("paused primary " + std::to_string(node) + " for " + ms());
    } else {
      stack.cluster.kill(node);
      // Its replica takes over after the node timeout; then the old primary comes back
      // as the new one's replica (a shard without an online replica refuses writes
      // under wait_replicas = "all").
      bool failed_over = false;
      for (int i = 0; i < 300 && !failed_over; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        failed_over = stack.cluster.primaries().size() == 3;  // its replica was promoted
      }
      const std::string failover = ms();
      stack.cluster.restart(node);
      if (!stack.cluster.wait_healthy(std::chrono::seconds(20)) ||
          !stack.cluster.wait_replicas_online(std::chrono::seconds(20)))
        throw std::runtime_error("nemesis: the cluster did not heal after killing node " + std::to_string(node));
      log.push_back("killed primary " + std::to_string(node) + ": failover " + (failed_over ? "after " : "not seen in ") +
                    failover + ", whole again after " + ms());
    }
  }
}

// The workload with a nemesis for `duration`; then the cluster heals and every served
// sample is read back. The report of the checker.
struct CheckRun {
  CheckReport report;
  std::vector<std::string> nemesis_log;
  uint64_t upstream_calls = 0, upstream_samples = 0;
  bool resumed = false;    // every replica answered every hot key after the faults
  int64_t resume_ms = 0;   // how long after the faults that took
};

inline CheckRun run_check(ClusterStack& stack, const Workload& w, Nemesis nemesis, std::chrono::milliseconds duration,
                          std::chrono::milliseconds nemesis_period) {
  History history;
  CheckRun run;
  std::atomic<bool> stop{false};
  std::exception_ptr nemesis_error;
  std::thread faults([&] {
    try {
      run_nemesis(stack, nemesis, nemesis_period, stop, run.nemesis_log);
    } catch (...) {
      nemesis_error = std::current_exception();
    }
  });
  std::thread clients([&] { run_clients(stack, history, w, stop); });
  std::this_thread::sleep_for(duration);
  stop = true;
  clients.join();
  faults.join();
  if (nemesis_error) std::rethrow_exception(nemesis_error);
  if (!stack.cluster.wait_healthy(std::chrono::seconds(20)))
    throw std::runtime_error("the cluster is not healthy after the run");
  // Service resumes: every replica answers for every hot key again (bounded); how long
  // that took after the run is part of the report.
  auto healed = Clock::now();
  run.resumed = true;
  for (size_t r = 0; r < stack.size() && run.resumed; ++r)
    for (int k = 0; k < w.keys && run.resumed; ++k) {
      const std::string key = w.tag + "-k" + std::to_string(k);
      for (int attempt = 0;; ++attempt) {
        auto o = ask_replica(stack.port(r), static_cast<int>(r), "probe", key, 1, w.request_timeout,
                             {{"X-Reprise-Sample", "0"}});
        if (o.outcome == Observation::Outcome::ok) break;
        if (Clock::now() - healed > std::chrono::seconds(20)) {
          run.resumed = false;
          run.report.violations.push_back("replica " + std::to_string(r) + " still fails key " + key +
                                          " 20 s after the faults ended: status " + std::to_string(o.status));
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  run.resume_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - healed).count();
  auto violations = std::move(run.report.violations);
  run.report = check_history(history.all());
  run.report.violations.insert(run.report.violations.begin(), violations.begin(), violations.end());
  verify_read_back(run.report, stack.ports());
  auto stats = stack.fake.stats();
  run.upstream_calls = stats["calls"].get<uint64_t>();
  run.upstream_samples = stats["samples"].get<uint64_t>();
  return run;
}

}  // namespace reprise::test
