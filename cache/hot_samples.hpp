#pragma once
// Decoded samples recently served, so that a replayed hit (the same sample read by
// namespace after namespace) skips the RocksDB lookup and the CBOR decoding, which
// are most of a hit's cost. A stored sample never changes, so an entry is never stale;
// the cache only has to be bounded. Bounded by bytes (an estimate of each decoded
// sample's size), evicting the oldest insertion first (FIFO: cheaper than LRU and
// nearly as good for replays, which read a list front to back).
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "cache/keys.hpp"
#include "cache/sample.hpp"

namespace reprise::cache {

class HotSamples {
 public:
  explicit HotSamples(size_t budget_bytes);

  std::shared_ptr<const Sample> find(const TenantId& tenant, const CacheKey& key, uint64_t index);
  void insert(const TenantId& tenant, const CacheKey& key, uint64_t index, std::shared_ptr<const Sample> sample);

  size_t bytes() const;

 private:
  struct Id {
    TenantId tenant;
    CacheKey key;
    uint64_t index = 0;
    friend bool operator==(const Id&, const Id&) = default;
  };
  struct IdHash {
    size_t operator()(const Id& id) const;
  };
  struct Entry {
    std::shared_ptr<const Sample> sample;
    size_t bytes = 0;
  };
  static constexpr size_t kShards = 16;
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<Id, Entry, IdHash> entries;
    std::deque<Id> order;  // insertion order, for eviction
    size_t bytes = 0;
  };

  const size_t shard_budget_;
  std::unique_ptr<Shard[]> shards_;
};

// The approximate heap footprint of a decoded sample.
size_t approximate_bytes(const Sample& sample);

}  // namespace reprise::cache
