#pragma once
// Test support: a real Redis Cluster of redis-server processes on loopback (DESIGN.md
// section 10), started by the test in a temp dir and killed when destroyed. Node
// settings as design/distributed.md section 7 (AOF always, noeviction, no replica
// migration, partial coverage allowed, min-replicas-to-write 1), with a short
// cluster-node-timeout so failovers happen within a test.
//
// PLACEHOLDER: the interface is fixed; the implementation is being written.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

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
  explicit RedisCluster(const std::filesystem::path& dir, Options options);
  explicit RedisCluster(const std::filesystem::path& dir) : RedisCluster(dir, Options{}) {}
  ~RedisCluster();
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  size_t size() const;
  uint16_t port(size_t node) const;
  std::vector<std::string> seeds() const;  // "127.0.0.1:<port>" of every node
  bool alive(size_t node) const;

  void kill(size_t node);     // SIGKILL, reaped
  void restart(size_t node);  // the same command line and directory: it rejoins
  void pause(size_t node);    // SIGSTOP
  void resume(size_t node);   // SIGCONT

  // Per the live nodes' CLUSTER SHARDS: the node serving `slot` as primary, and the
  // primaries of the cluster.
  std::optional<size_t> primary_of_slot(uint16_t slot) const;
  std::vector<size_t> primaries() const;
  // Runs redis-cli against a node (with the password); its stdout.
  std::string cli(size_t node, const std::vector<std::string>& args) const;
  // Waits until every live node reports cluster_state:ok and every slot has a live
  // primary; false after `timeout`.
  bool wait_healthy(std::chrono::milliseconds timeout) const;
};

}  // namespace reprise::test
