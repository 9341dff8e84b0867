#pragma once
// Test support: a real Redis Cluster of redis-server processes on loopback (DESIGN.md
// section 10), started by the test in a temp dir and killed when destroyed. Node
// settings as design/distributed.md section 7 (AOF always, noeviction, no replica
// migration, partial coverage allowed, min-replicas-to-write 1), with a short
// cluster-node-timeout so failovers happen within a test.
//
// The cluster is created by hand (ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET, REPLICATE)
// rather than with `redis-cli --cluster create`: the same result, but redis-cli sleeps
// a whole second per check while the nodes join (2.2 s against about 0.3 s here), and
// a test suite starts several clusters. The harness talks to the nodes with hiredis's
// blocking API (a test needs no pipelining); cli() still runs the real redis-cli.
//
// Ready means more than cluster_state:ok: every replica's link is up AND every node's
// CLUSTER SHARDS reports every replica "online". A replica is reported "loading" until
// its replication offset is non-zero, which an idle new primary never makes happen (its
// replica PINGs come every 10 s), so the harness writes once (FLUSHALL) to every
// primary; otherwise a client with wait_replicas = -1 would see shards without an
// online replica and refuse durable writes.
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/process.hpp"

namespace reprise::test {

class RedisCluster {
 public:
  struct Options {
    int primaries = 3;
    int replicas_per_primary = 1;
    std::string password;       // requirepass / masterauth; empty: none
    int node_timeout_ms = 2000; // cluster-node-timeout
  };

  // Starts primaries * (1 + replicas_per_primary) nodes on free loopback ports (each
  // port and its bus port + 10000 probed free), creates the cluster and waits until
  // every node reports cluster_state:ok. Throws std::runtime_error (with the nodes'
  // logs' tails) when that fails within 30 s.
  explicit RedisCluster(const std::filesystem::path& dir, Options options) : dir_(dir), options_(std::move(options)) {
    size_t count = static_cast<size_t>(options_.primaries) * (1 + options_.replicas_per_primary);
    auto ports = free_ports(count);
    for (size_t i = 0; i < count; ++i) {
      Node node;
      node.port = ports[i];
      node.dir = dir_ / std::to_string(node.port);
      std::filesystem::create_directories(node.dir);
      node.argv = {program("redis-server"),
                   "--port", std::to_string(node.port),
                   "--bind", "127.0.0.1",
                   "--dir", node.dir.string(),
                   "--cluster-enabled", "yes",
                   "--cluster-config-file", "nodes.conf",
                   "--cluster-node-timeout", std::to_string(options_.node_timeout_ms),
                   "--appendonly", "yes",
                   "--appendfsync", "always",
                   "--save", "",
                   "--maxmemory-policy", "noeviction",
                   "--min-replicas-to-write", "1",
                   "--min-replicas-max-lag", "2",
                   "--cluster-allow-replica-migration", "no",
                   "--cluster-require-full-coverage", "no",
                   "--enable-debug-command", "local",
                   // The first full sync at once, not after the default 5 s.
                   "--repl-diskless-sync-delay", "0"};
      if (!options_.password.empty()) {
        for (auto* arg : {"--requirepass", "--masterauth"}) {
          node.argv.push_back(arg);
          node.argv.push_back(options_.password);
        }
      }
      nodes_.push_back(std::move(node));
    }
    try {
      for (size_t i = 0; i < count; ++i) {
        // A port probed free may be taken before the node binds it (tests run in
        // parallel): that node starts again on another port, up to 3 times.
        for (int attempt = 0;; ++attempt) {
          try {
            start_process(i);
            break;
          } catch (const std::exception&) {
            if (attempt >= 3 || nodes_[i].process->running()) throw;
            move_to_free_port(i);
          }
        }
      }
      create();
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string(e.what()) + "\n" + log_tails());
    }
  }
  explicit RedisCluster(const std::filesystem::path& dir) : RedisCluster(dir, Options{}) {}
  ~RedisCluster() = default;  // each Process kills (SIGKILL works on a stopped one too) and reaps
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  size_t size() const { return nodes_.size(); }
  // How long each step of the start took, for the test's log.
  const std::string& startup_report() const { return startup_; }
  uint16_t port(size_t node) const { return nodes_.at(node).port; }
  std::vector<std::string> seeds() const {
    std::vector<std::string> out;
    for (auto& n : nodes_) out.push_back("127.0.0.1:" + std::to_string(n.port));
    return out;
  }
  bool alive(size_t node) const {
    auto& n = nodes_.at(node);
    return n.process && n.process->running();
  }

  void kill(size_t node) {  // SIGKILL, reaped
    nodes_.at(node).process.reset();
    nodes_.at(node).paused = false;
  }
  void restart(size_t node) {  // the same command line and directory: it rejoins
    kill(node);
    start_process(node);
  }
  void pause(size_t node) {  // SIGSTOP
    nodes_.at(node).process->signal(SIGSTOP);
    nodes_.at(node).paused = true;
  }
  void resume(size_t node) {  // SIGCONT
    nodes_.at(node).process->signal(SIGCONT);
    nodes_.at(node).paused = false;
  }

  // Per the live nodes' CLUSTER SHARDS: the node serving `slot` as primary, and the
  // primaries of the cluster. A node counts when it says so itself (its own CLUSTER
  // SHARDS lists it as the master of the shard), so a deposed primary that has not
  // heard the news yet is not taken for the new one.
  std::optional<size_t> primary_of_slot(uint16_t slot) const {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      auto view = self_view(i);
      if (view && view->is_primary && view->owns(slot)) return i;
    }
    return std::nullopt;
  }
  std::vector<size_t> primaries() const {
    std::vector<size_t> out;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      auto view = self_view(i);
      if (view && view->is_primary && !view->ranges.empty()) out.push_back(i);
    }
    return out;
  }

  // The replicas of a primary, per its own CLUSTER SHARDS.
  std::vector<size_t> replicas_of(size_t primary) const {
    std::vector<size_t> out;
    auto list = shards(primary);
    if (!list) return out;
    for (auto& s : *list) {
      if (s.master_port != port(primary)) continue;
      for (auto& [p, health] : s.replicas)
        for (size_t i = 0; i < nodes_.size(); ++i)
          if (nodes_[i].port == p) out.push_back(i);
    }
    return out;
  }

  // Runs redis-cli against a node (with the password); its stdout.
  std::string cli(size_t node, const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {program("redis-cli"), "-p", std::to_string(port(node))};
    if (!options_.password.empty()) argv.insert(argv.end(), {"-a", options_.password, "--no-auth-warning"});
    argv.insert(argv.end(), args.begin(), args.end());
    Process cli(argv, dir_, "cli-" + std::to_string(++cli_runs_));
    if (cli.wait_exit(10s) < 0) throw std::runtime_error("redis-cli did not finish within 10 s");
    return cli.out();
  }

  // Waits until every live node reports cluster_state:ok and every slot has a live
  // primary; false after `timeout`.
  bool wait_healthy(std::chrono::milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (healthy()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  // Waits until every live node's CLUSTER SHARDS reports every replica of every shard
  // online (what a client's W is computed from); false after `timeout`.
  bool wait_replicas_online(std::chrono::milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (replicas_online()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  // One command over a fresh connection (AUTH first when there is a password): the
  // reply as text (a string, status, error "ERR ...", integer, or array elements one a
  // line); nullopt when the node does not answer within `timeout`.
  // `readonly`: READONLY first, so that a replica answers reads of its primary's slots.
  std::optional<std::string> call(size_t node, const std::vector<std::string>& args,
                                  std::chrono::milliseconds timeout = 1000ms, bool readonly = false) const {
    auto reply = command(node, args, timeout, readonly);
    if (!reply) return std::nullopt;
    return text(reply.get());
  }

 private:
  struct Node {
    uint16_t port = 0;
    std::filesystem::path dir;
    std::vector<std::string> argv;
    std::unique_ptr<Process> process;
    int starts = 0;
    bool paused = false;
  };
  struct ReplyFree {
    void operator()(redisReply* r) const { freeReplyObject(r); }
  };
  using Reply = std::unique_ptr<redisReply, ReplyFree>;
  struct ContextFree {
    void operator()(redisContext* c) const { redisFree(c); }
  };
  struct Shard {
    std::vector<std::pair<long long, long long>> ranges;
    std::string master_id;
    uint16_t master_port = 0;
    std::vector<std::pair<uint16_t, std::string>> replicas;  // port, health
  };
  struct SelfView {
    bool is_primary = false;
    std::vector<std::pair<long long, long long>> ranges;
    bool owns(uint16_t slot) const {
      for (auto& [lo, hi] : ranges)
        if (slot >= lo && slot <= hi) return true;
      return false;
    }
  };

  static std::string program(const std::string& name) {
    for (auto* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
      auto path = std::filesystem::path(dir) / name;
      if (std::filesystem::exists(path)) return path.string();
    }
    throw std::runtime_error(name + " not found (scripts/install-deps.sh installs it)");
  }

  static bool port_free(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }

  // `count` consecutive ports from a random base, each with its bus port free too.
  static std::vector<uint16_t> free_ports(size_t count) {
    std::mt19937 random(std::random_device{}());
    std::uniform_int_distribution<int> base_of(20000, 50000 - static_cast<int>(count));
    for (int attempt = 0; attempt < 100; ++attempt) {
      uint16_t base = static_cast<uint16_t>(base_of(random));
      std::vector<uint16_t> ports;
      for (size_t i = 0; i < count; ++i) {
        uint16_t p = static_cast<uint16_t>(base + i);
        if (!port_free(p) || !port_free(static_cast<uint16_t>(p + 10000))) break;
        ports.push_back(p);
      }
      if (ports.size() == count) return ports;
    }
    throw std::runtime_error("no free ports for a Redis Cluster");
  }

  void move_to_free_port(size_t i) {
    auto& n = nodes_[i];
    const uint16_t port = free_ports(1).at(0);
    const auto dir = dir_ / std::to_string(port);
    std::filesystem::create_directories(dir);
    for (size_t a = 0; a + 1 < n.argv.size(); ++a) {
      if (n.argv[a] == "--port") n.argv[a + 1] = std::to_string(port);
      if (n.argv[a] == "--dir") n.argv[a + 1] = dir.string();
    }
    n.port = port;
    n.dir = dir;
  }

  void start_process(size_t i) {
    auto& n = nodes_[i];
    n.process = std::make_unique<Process>(n.argv, n.dir, "redis-" + std::to_string(n.starts++));
    n.paused = false;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!call(i, {"PING"}, 200ms)) {
      if (!n.process->running()) throw std::runtime_error("redis-server on port " + std::to_string(n.port) + " exited");
      if (std::chrono::steady_clock::now() > deadline)
        throw std::runtime_error("redis-server on port " + std::to_string(n.port) + " did not answer PING");
      std::this_thread::sleep_for(5ms);
    }
  }

  std::string must(size_t node, const std::vector<std::string>& args) const {
    auto reply = call(node, args, 2000ms);
    if (!reply) throw std::runtime_error("port " + std::to_string(port(node)) + ": no reply to " + args[0]);
    if (reply->rfind("ERR", 0) == 0) throw std::runtime_error("port " + std::to_string(port(node)) + ": " + *reply);
    return *reply;
  }

  void create() {
    size_t count = nodes_.size();
    size_t primaries = static_cast<size_t>(options_.primaries);
    std::vector<std::string> ids;
    for (size_t i = 0; i < count; ++i) ids.push_back(must(i, {"CLUSTER", "MYID"}));
    // The slots split as redis-cli splits them; distinct config epochs so no epoch
    // collision has to be resolved by the nodes themselves.
    for (size_t i = 0; i < primaries; ++i) {
      long long lo = static_cast<long long>(16384 * i / primaries);
      long long hi = static_cast<long long>(16384 * (i + 1) / primaries) - 1;
      must(i, {"CLUSTER", "ADDSLOTSRANGE", std::to_string(lo), std::to_string(hi)});
    }
    for (size_t i = 0; i < count; ++i) must(i, {"CLUSTER", "SET-CONFIG-EPOCH", std::to_string(i + 1)});
    // Every pair meets directly: joining through one node's gossip alone takes a
    // second or two. (A primary is not "ok" before 2 s after its start anyway:
    // CLUSTER_WRITABLE_DELAY; that, not the joining, is then the floor.)
    for (size_t i = 0; i < count; ++i)
      for (size_t j = i + 1; j < count; ++j) must(i, {"CLUSTER", "MEET", "127.0.0.1", std::to_string(port(j))});
    auto deadline = std::chrono::steady_clock::now() + 30s;
    auto phase_start = std::chrono::steady_clock::now();
    auto wait = [&](const char* what, auto ready) {
      while (!ready()) {
        if (std::chrono::steady_clock::now() > deadline)
          throw std::runtime_error(std::string("the cluster did not get ready: ") + what);
        std::this_thread::sleep_for(10ms);
      }
      auto now = std::chrono::steady_clock::now();
      startup_ += std::string(startup_.empty() ? "" : ", ") + what + " " +
                  std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now - phase_start).count()) + " ms";
      phase_start = now;
    };
    // Every node knows every other (past the handshake) before a replica is told its
    // primary's id: REPLICATE needs the id in the replica's own table.
    wait("every node knows every other", [&] {
      for (size_t i = 0; i < count; ++i) {
        auto nodes = call(i, {"CLUSTER", "NODES"});
        if (!nodes) return false;
        size_t known = 0;
        for (auto& id : ids)
          if (nodes->find(id) != std::string::npos) ++known;
        if (known != count || nodes->find("handshake") != std::string::npos) return false;
      }
      return true;
    });
    for (size_t r = primaries; r < count; ++r) must(r, {"CLUSTER", "REPLICATE", ids[(r - primaries) % primaries]});
    wait("replication links up", [&] {
      for (size_t r = primaries; r < count; ++r) {
        auto info = call(r, {"INFO", "replication"});
        if (!info || info->find("master_link_status:up") == std::string::npos) return false;
      }
      return true;
    });
    for (size_t i = 0; i < primaries; ++i) must(i, {"FLUSHALL"});  // see the header comment
    wait("cluster_state:ok on every node", [&] { return healthy(); });
    // Rarely, a replica stays "loading" in some node's view for seconds (seen once in
    // ten starts, 8 s); another write every half second gives its offset another push.
    auto pushed = std::chrono::steady_clock::now();
    std::string why;
    wait("every replica online in every node's CLUSTER SHARDS", [&] {
      if (replicas_online(&why)) return true;
      if (std::chrono::steady_clock::now() - pushed > 500ms) {
        startup_ += std::string(startup_.empty() ? "" : ", ") + "rewrote after: " + why;
        for (size_t i = 0; i < primaries; ++i) call(i, {"FLUSHALL"});
        pushed = std::chrono::steady_clock::now();
      }
      return false;
    });
  }

  Reply command(size_t node, const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                bool readonly = false) const {
    timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    std::unique_ptr<redisContext, ContextFree> ctx(redisConnectWithTimeout("127.0.0.1", port(node), tv));
    if (!ctx || ctx->err) return nullptr;
    redisSetTimeout(ctx.get(), tv);
    auto run = [&](const std::vector<std::string>& argv) {
      std::vector<const char*> p;
      std::vector<size_t> len;
      for (auto& a : argv) {
        p.push_back(a.data());
        len.push_back(a.size());
      }
      return Reply(static_cast<redisReply*>(redisCommandArgv(ctx.get(), static_cast<int>(argv.size()), p.data(), len.data())));
    };
    if (!options_.password.empty()) {
      auto auth = run({"AUTH", options_.password});
      if (!auth || auth->type == REDIS_REPLY_ERROR) return nullptr;
    }
    if (readonly && !run({"READONLY"})) return nullptr;
    return run(args);
  }

  static std::string text(const redisReply* r) {
    switch (r->type) {
      case REDIS_REPLY_STRING:
      case REDIS_REPLY_STATUS:
      case REDIS_REPLY_ERROR: return std::string(r->str, r->len);
      case REDIS_REPLY_INTEGER: return std::to_string(r->integer);
      case REDIS_REPLY_ARRAY: {
        std::string out;
        for (size_t i = 0; i < r->elements; ++i) out += text(r->element[i]) + "\n";
        return out;
      }
      default: return "";
    }
  }

  static const redisReply* field(const redisReply* map, const std::string& name) {
    if (!map || map->type != REDIS_REPLY_ARRAY) return nullptr;
    for (size_t i = 0; i + 1 < map->elements; i += 2)
      if (map->element[i]->type == REDIS_REPLY_STRING && name == std::string(map->element[i]->str, map->element[i]->len))
        return map->element[i + 1];
    return nullptr;
  }

  std::optional<std::vector<Shard>> shards(size_t node) const {
    if (!alive(node) || nodes_[node].paused) return std::nullopt;
    auto reply = command(node, {"CLUSTER", "SHARDS"}, 1000ms);
    if (!reply || reply->type != REDIS_REPLY_ARRAY) return std::nullopt;
    std::vector<Shard> out;
    for (size_t s = 0; s < reply->elements; ++s) {
      Shard shard;
      if (auto* slots = field(reply->element[s], "slots"))
        for (size_t k = 0; k + 1 < slots->elements; k += 2)
          shard.ranges.emplace_back(slots->element[k]->integer, slots->element[k + 1]->integer);
      if (auto* list = field(reply->element[s], "nodes")) {
        for (size_t k = 0; k < list->elements; ++k) {
          auto* n = list->element[k];
          auto str = [&](const char* name) {
            auto* v = field(n, name);
            return v && v->str ? std::string(v->str, v->len) : std::string();
          };
          auto* port_field = field(n, "port");
          uint16_t p = port_field ? static_cast<uint16_t>(port_field->integer) : 0;
          if (str("role") == "master") {
            shard.master_id = str("id");
            shard.master_port = p;
          } else {
            shard.replicas.emplace_back(p, str("health"));
          }
        }
      }
      out.push_back(std::move(shard));
    }
    return out;
  }

  std::optional<SelfView> self_view(size_t node) const {
    auto list = shards(node);
    if (!list) return std::nullopt;
    SelfView view;
    for (auto& s : *list) {
      if (s.master_port == port(node)) {
        view.is_primary = true;
        view.ranges = s.ranges;
      }
    }
    return view;
  }

  bool healthy() const {
    bool any = false;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!alive(i) || nodes_[i].paused) continue;
      auto info = call(i, {"CLUSTER", "INFO"});
      if (!info || info->find("cluster_state:ok") == std::string::npos ||
          info->find("cluster_slots_ok:16384") == std::string::npos)
        return false;
      any = true;
    }
    return any;
  }

  bool replicas_online(std::string* why = nullptr) const {
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!alive(i) || nodes_[i].paused) continue;
      auto list = shards(i);
      if (!list) return false;
      if (why) {
        *why = "the view of port " + std::to_string(port(i)) + ":";
        for (auto& s : *list)
          for (auto& [p, health] : s.replicas) why->append(" ").append(std::to_string(p)).append(" ").append(health);
      }
      size_t slotted = 0;
      for (auto& s : *list) {
        if (s.ranges.empty()) continue;
        ++slotted;
        size_t online = 0;
        for (auto& [p, health] : s.replicas)
          if (health == "online") ++online;
        if (online < static_cast<size_t>(options_.replicas_per_primary)) return false;
      }
      if (slotted != static_cast<size_t>(options_.primaries)) return false;
    }
    return true;
  }

  std::string log_tails() const {
    std::string out;
    for (auto& n : nodes_) {
      if (!n.process) continue;
      std::string log = n.process->out() + n.process->err();
      if (log.size() > 1500) log = log.substr(log.size() - 1500);
      out += "--- redis-server on port " + std::to_string(n.port) + ":\n" + log + "\n";
    }
    return out;
  }

  std::filesystem::path dir_;
  Options options_;
  std::vector<Node> nodes_;
  mutable int cli_runs_ = 0;
  std::string startup_;
};

}  // namespace reprise::test
