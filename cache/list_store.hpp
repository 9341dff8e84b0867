#pragma once
// Where the lists of samples, the namespace cursors and the generations in flight
// live: the state stage 4 of the pipeline (the Cacher) runs on. One interface, one
// implementation per store (DESIGN.md sections 1 and 10):
//   Cacher          (cacher.hpp)          one machine: RocksDB, single flight in memory
//   ClusterCacher   (cluster_cacher.hpp)  many machines: Redis Cluster, single flight
//                                         across replicas, RocksDB as a local cache
// Both keep I1-I4; what differs is where the truth lives and what a failure costs.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/cache_request.hpp"
#include "cache/keys.hpp"
#include "cache/status.hpp"

namespace reprise::cache {

class ListStore {
 public:
  virtual ~ListStore() = default;

  // "rocksdb" or "redis-cluster" ([cache] store).
  virtual std::string_view kind() const = 0;

  // The stage's entry point: the slots that serve `request`, or an error, given to
  // `done` exactly once, on this thread or another. Requests assigned in one order
  // get their indices in that order (the Reorderer's work holds).
  virtual void assign(const CacheRequest& request, std::function<void(Assignment)> done) = 0;

  // Sets every cursor of namespace ns back to 0 (replay). In cluster mode every
  // replica sees it by the time this returns.
  virtual Status reset_namespace(const std::string& ns) = 0;

  // The namespaces that have read something, sorted.
  virtual StatusOr<std::vector<std::string>> namespaces() = 0;

  // Generations in flight started by this process.
  virtual uint64_t generations_in_flight() const = 0;

  // The list of (tenant, key) grew behind the store's back (an import).
  virtual void refresh(const TenantId& tenant, const CacheKey& key) = 0;

  // The `store` object of /admin/stats: {"kind", ...the store's own counters}.
  virtual nlohmann::json stats() const = 0;
};

}  // namespace reprise::cache
