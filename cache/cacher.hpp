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
// Indices never move (I2, I3). A generation owns the indices it was created for from
// birth to commit: a client may have been told them (X-Reprise-Samples), and the engine
// draws the sample at index k with the seed of k. Generations run concurrently but
// commit in list order: one that finishes early waits in memory for those before it.
//
// When a generation fails (or is abandoned: every client left):
// - Each request that reserved indices in it failed. Its namespace gets them back
//   when nothing it reserved later stands after them (its cursor sits at their end):
//   one JSON client gives back all it reserved, stored prefix included (it saw
//   nothing, so a retry reads what it would have read); a stream, or clients merged
//   by the Deduplicator, give back only the failed indices (a client may have received
//   the others in full, I1).
//   A namespace that reserved more after them skips them instead (it never saw them,
//   and giving them back would serve the later ones twice).
// - If it was the last generation of the key, its indices leave the list. Otherwise
//   generations after it wait on its indices, so the Cacher makes them again itself (a
//   repair: same indices, same request, no client needed), up to kMaxRepairs times.
//   When the backend refuses that often, the samples after the hole cannot be stored:
//   the list is cut at the hole and every cursor past it comes back to it. That is the
//   one case where an index served (in memory only) may later hold another sample;
//   the trade-off against never storing anything after a persistent failure.
//
// Each slot of a generation in flight carries a claim on it, made here under the
// key's lock. When the last claim goes (every client left) and the backend can stop,
// the generation is abandoned under the same lock if it is the last of its key (a
// request joining at that moment either keeps it alive or starts a new one); one that
// later generations wait on runs on, since they need its indices. See generation.hpp.
//
// A request's work is bounded (I4): an explicit index (X-Reprise-Sample) may make the
// backend generate at most CacherOptions::max_new_samples samples; beyond that it is
// refused (too_many) and nothing is reserved. A cursor request makes at most its n.
//
// Locks: reset_mu_ (shared by every request and generation end, exclusive for a
// namespace reset, so no cursor write of either lands on the other's wrong side), then
// a shard's, then a key's. The backend is called, and claims are released, with no
// lock held.
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <vector>

#include "cache/backend.hpp"
#include "cache/cache_request.hpp"
#include "cache/hot_samples.hpp"
#include "cache/list_store.hpp"
#include "cache/store.hpp"

namespace reprise::cache {

struct CacherOptions {
  size_t max_idle_keys = 1 << 16;    // keys kept in memory with nothing in flight
  size_t hot_sample_bytes = 64u << 20;  // [cache] hot_samples_mb: decoded samples kept for hits
  // [cache] max_new_samples: the most samples one request may have generated (its
  // deficit, I4). Cursor requests stay within n; X-Reprise-Sample far past the end
  // of a list is what it stops.
  uint32_t max_new_samples = 128;
  // Called (any thread) when the store fails a write; the proxy logs it.
  std::function<void(const Status&)> on_store_error;
  // Called (any thread, no lock held) when a generation ends, done or failed: the
  // ledger counts the call and what it spent.
  std::function<void(const Generation&, Generation::State)> on_generation_end;
};

// The one-machine implementation of ListStore (list_store.hpp): the truth is in the
// RocksDB store, single flight and reservations in this process's memory.
class Cacher final : public ListStore {
 public:
  Cacher(Store& store, CacherOptions options);
  ~Cacher();
  Cacher(const Cacher&) = delete;
  Cacher& operator=(const Cacher&) = delete;

  // The stage's entry point: the slots that serve `request`, or an error. Starts
  // the backend calls the deficit needs (after releasing every lock).
  Assignment assign(const CacheRequest& request);

  // ListStore: assign() above, answered on the calling thread.
  std::string_view kind() const override { return "rocksdb"; }
  void assign(const CacheRequest& request, std::function<void(Assignment)> done) override { done(assign(request)); }
  StatusOr<std::vector<std::string>> namespaces() override { return store_.Namespaces(); }
  nlohmann::json stats() const override;

  // Forgets the in-memory cursors of namespace `ns` after the store reset them
  // (POST /admin/namespaces/{ns}/reset). Requests in flight keep what they reserved.
  Status reset_namespace(const std::string& ns) override;

  // Generations in flight (all keys), repairs included.
  uint64_t generations_in_flight() const override;
  // Repairs started (a failed generation's indices made again, see above).
  uint64_t repairs() const { return repairs_.load(); }

  // The store's list of (tenant, key) grew behind the Cacher's back (an import): the
  // key's length is read again on its next request. With a generation in flight the
  // state is left alone: its commit finds the list longer, fails, and the key is
  // rebuilt from the store (the samples still serve their requests).
  void refresh(const TenantId& tenant, const CacheKey& key) override;

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
  using Started = std::vector<std::pair<Backend*, std::shared_ptr<Generation>>>;
  void resolve(const std::shared_ptr<KeyState>& state, const CacheRequest& request,
               uint64_t from, uint64_t to,
               const std::shared_ptr<Reservation>& reservation, std::vector<Slot>& slots,
               Started& started);
  std::shared_ptr<Generation> make_generation(const std::shared_ptr<KeyState>& state,
                                              std::shared_ptr<const CanonicalRequest> request, Endpoint endpoint,
                                              uint64_t first, uint32_t size, bool stream,
                                              std::shared_ptr<const CallContext> context, const std::string& origin);
  void on_generation_end(const std::shared_ptr<KeyState>& state, Generation& gen,
                         Generation::State final_state);
  // The last claim on `gen` went: abandons and cancels it unless a request joined it
  // or later generations wait on its indices.
  void on_unclaimed(const std::shared_ptr<KeyState>& state, Generation& gen);
  // Under the key's lock: the pending generation at `position` failed or was
  // abandoned. Settles its requests' cursors, then repairs it or cuts the list there.
  void on_failed(const std::shared_ptr<KeyState>& state, size_t position, Started& started);
  void give_back(KeyState& state, const Generation& gen, const std::vector<std::shared_ptr<Reservation>>& reservations);
  void cut_list(KeyState& state, size_t position);
  void commit_ready(KeyState& state);
  Status read_stored(const CacheRequest& request, std::vector<Slot>& slots);

  Store& store_;
  CacherOptions options_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> in_flight_{0};
  std::atomic<uint64_t> repairs_{0};
  std::shared_mutex reset_mu_;
  HotSamples hot_;
};

}  // namespace reprise::cache
