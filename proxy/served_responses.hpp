#pragma once
// The Responses API lets a client fetch a response again by its id
// (GET /v1/responses/{id}). Ids Reprise served come from the cache, and the upstream
// may never have stored them (store: false) or may hold them under another key: so
// the proxy answers those itself, from the sample it served, to the same tenant only.
// Kept in memory, the most recent kMaxEntries ids (a bound on what clients can make
// the proxy hold; an older id, or one from before a restart, goes to the upstream,
// which answers it when it stored it).
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "cache/keys.hpp"
#include "cache/sample.hpp"

namespace reprise {

class ServedResponses {
 public:
  static constexpr size_t kMaxEntries = 10'000;

  // Records that `tenant` was served `sample` (a Responses sample: its choice is the
  // response object, with its "id").
  void record(const cache::TenantId& tenant, std::shared_ptr<const cache::Sample> sample);
  // The sample served under `id` to `tenant`, or null.
  std::shared_ptr<const cache::Sample> find(const std::string& id, const cache::TenantId& tenant) const;

 private:
  struct Entry {
    cache::TenantId tenant;
    std::shared_ptr<const cache::Sample> sample;
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> by_id_;
  std::deque<std::string> order_;  // oldest first
};

}  // namespace reprise
