#pragma once
// Stage 4 of the pipeline (DESIGN.md sections 1 and 2): assigns list indices from the
// namespace cursors, serves what the list holds, and asks the backend for the deficit
// only, joining any generation already in flight for the key (single flight across
// namespaces and batches).
//
// Per key, in memory: the committed length of the list, the generations in flight in
// list order, and each namespace's cursor counting the indices it has reserved. A
// cursor is persisted only as far as the list is committed (the store refuses a
// cursor past the end of its list), in the same WriteBatch as the samples it consumes.
//
// Generations of a key may run concurrently but are committed in list order: one that
// finishes early waits in memory for those before it. When one fails, every request
// waiting on it fails, its indices leave the list and the generations after it move
// down to fill its place (their samples are i.i.d. draws of the same request, so which
// index holds which draw does not matter; only that no namespace is served one twice,
// and that a replay sees the same list). Each namespace's cursor moves down by the
// indices it had reserved in the failed generation, so its next request asks for them
// again; a failed request's indices in other generations are skipped by its namespace,
// not given back (a later request of the namespace may hold indices after them). The
// trade-off: a streaming client may have been told an index that moves down by the
// failed generation's size; its samples are never repeated.
//
// Each slot of a generation in flight carries a claim on it, made here under the
// key's lock. When the last claim goes (every client left) and the backend can stop,
// the generation is abandoned under the same lock (so a request joining at that
// moment either keeps it alive or starts a new one) and leaves the list exactly as a
// failed one does; then it is cancelled (generation.hpp).
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cache/backend.hpp"
#include "cache/cache_request.hpp"
#include "cache/hot_samples.hpp"
#include "cache/store.hpp"

namespace reprise::cache {

struct CacherOptions {
  size_t max_idle_keys = 1 << 16;    // keys kept in memory with nothing in flight
  size_t hot_sample_bytes = 64u << 20;  // [cache] hot_samples_mb: decoded samples kept for hits
  // Called (any thread) when the store fails a write; the proxy logs it.
  std::function<void(const Status&)> on_store_error;
  // Called (any thread, no lock held) when a generation ends, done or failed: the
  // ledger counts the call and what it spent.
  std::function<void(const Generation&, Generation::State)> on_generation_end;
};

class Cacher {
 public:
  Cacher(Store& store, CacherOptions options);
  ~Cacher();
  Cacher(const Cacher&) = delete;
  Cacher& operator=(const Cacher&) = delete;

  // The stage's entry point: the slots that serve `request`, or an error. Starts
  // the backend calls the deficit needs (after releasing every lock).
  Assignment assign(const CacheRequest& request);

  // Forgets the in-memory cursors of namespace `ns` after the store reset them
  // (POST /admin/namespaces/{ns}/reset). Requests in flight keep what they reserved.
  Status reset_namespace(const std::string& ns);

  // Generations in flight (all keys).
  uint64_t generations_in_flight() const;

  // The store's list of (tenant, key) grew behind the Cacher's back (an import): the
  // key's length is read again on its next request. With a generation in flight the
  // state is left alone: its commit finds the list longer, fails, and the key is
  // rebuilt from the store (the samples still serve their requests).
  void refresh(const TenantId& tenant, const CacheKey& key);

 private:
  struct KeyState;
  struct Reservation;
  struct Pending;
  struct Shard;

  std::shared_ptr<KeyState> state_for(const TenantId& tenant, const CacheKey& key);
  // Under the key's lock: the cursor of ns (loaded from the store on first use).
  StatusOr<uint64_t*> cursor(KeyState& state, const std::string& ns);
  // Under the key's lock: slot sources for indices [from, to): stored or in flight;
  // creates generations for the part beyond everything reserved.
  void resolve(const std::shared_ptr<KeyState>& state, const CacheRequest& request,
               uint64_t from, uint64_t to,
               const std::shared_ptr<Reservation>& reservation, std::vector<Slot>& slots,
               std::vector<std::shared_ptr<Generation>>& started);
  void on_generation_end(const std::shared_ptr<KeyState>& state, Generation& gen,
                         Generation::State final_state);
  // The last claim on `gen` went: abandons and cancels it unless a request joined it.
  void on_unclaimed(const std::shared_ptr<KeyState>& state, Generation& gen);
  // Under the key's lock: takes the pending generation at `position` out of the list
  // (it failed or was abandoned) and moves everything after it down.
  void remove_failed(KeyState& state, size_t position);
  void commit_ready(KeyState& state);
  Status read_stored(const CacheRequest& request, std::vector<Slot>& slots);

  Store& store_;
  CacherOptions options_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> in_flight_{0};
  HotSamples hot_;
};

}  // namespace reprise::cache
