#pragma once
// The many-machines implementation of ListStore (list_store.hpp; DESIGN.md section
// 10; design/distributed.md section 5): every replica shares one Redis Cluster, which
// holds each key's list, its namespace cursors and its tickets (the generations in
// flight), each changed only by the atomic functions of cluster_functions.lua.
//
// A request is one `take` on the key's slot: it moves the namespace's cursor, says
// which of the indices are stored, and hands out tickets for the missing ones. A
// ticket issued to this replica is generated here (its backend runs; the samples are
// written with `fill`, fenced by the ticket's token); a ticket another replica holds
// is waited for (`poll`, with backoff, until it is filled, or re-issued to this replica
// once its owner's lease ran out). So single flight holds across replicas: one backend
// call per missing index range, whichever replica asked.
//
// Durability (section 10): a take and a fill are WAITed (cluster_client.hpp) before
// anything they returned or wrote is served: no cursor move and no sample is served
// that a failover of its shard could lose. When the cluster cannot confirm, the
// request fails (503 with Retry-After), never an unconfirmed answer.
//
// Samples never change, so each replica keeps those it has read: in memory (the hot
// samples) and in its local RocksDB store. A hit then costs one round trip: the take.
//
// Namespace resets: a namespace's epoch lives in the cluster ("rp:ns:{<ns>}"); a cursor
// written under an older epoch reads as 0. Replicas cache an epoch for epoch_ttl, and
// a reset returns only after that long, so once it has returned every replica uses
// the new epoch.
//
// Bounds (I4): as the one-machine Cacher (max_new_samples for explicit indices, n for
// cursor requests); tickets are at most the backend's max_n long.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "cache/backend.hpp"
#include "cache/cluster_client.hpp"
#include "cache/hot_samples.hpp"
#include "cache/list_store.hpp"
#include "cache/store.hpp"

namespace reprise::cache {

struct ClusterCacherOptions {
  size_t hot_sample_bytes = 64u << 20;  // [cache] hot_samples_mb
  uint32_t max_new_samples = 128;       // [cache] max_new_samples
  // A ticket's lease: renewed every third of it while this replica's backend runs,
  // so it runs out only when the replica died; then another replica takes it over.
  std::chrono::milliseconds lease{10'000};
  // How long a replica trusts a namespace epoch it read (and how long a reset waits):
  // one GET per namespace and second on each replica, against a reset that takes a
  // second to return.
  std::chrono::milliseconds epoch_ttl{1000};
  // How long a replica waits for another's ticket before failing its requests with
  // 503 when the cluster does not answer the polls (a live owner keeps renewing).
  std::chrono::milliseconds poll_give_up{30'000};
  // As CacherOptions.
  std::function<void(const Status&)> on_store_error;
  std::function<void(const Generation&, Generation::State)> on_generation_end;
};

class ClusterCacher final : public ListStore {
 public:
  // Loads the functions (cluster_functions.lua) on every primary. `local` is this
  // replica's copy of the samples it has read.
  static StatusOr<std::unique_ptr<ClusterCacher>> Open(ClusterClient& client, Store& local,
                                                       ClusterCacherOptions options);
  // What every replica must agree on, made by the first replica that asks and read by
  // the others (one hash, "rp:meta"): the tenant secret (32 bytes) and the cluster's
  // identity (so a replica's local copy is never mixed with another cluster's).
  struct Shared {
    std::string secret;
    std::string cluster_id;  // 16 hex digits
  };
  static StatusOr<Shared> ReadShared(ClusterClient& client);

  ~ClusterCacher() override;

  std::string_view kind() const override { return "redis-cluster"; }
  void assign(const CacheRequest& request, std::function<void(Assignment)> done) override;
  Status reset_namespace(const std::string& ns) override;
  StatusOr<std::vector<std::string>> namespaces() override;
  uint64_t generations_in_flight() const override { return in_flight_.load(); }
  void refresh(const TenantId&, const CacheKey&) override {}
  nlohmann::json stats() const override;

 private:
  struct Take;
  struct Flight;
  struct Reservation;

  ClusterCacher(ClusterClient& client, Store& local, ClusterCacherOptions options);
  void with_epoch(const std::string& ns, std::function<void(StatusOr<uint64_t>)> next);
  void send_take(std::shared_ptr<Take> take, int attempts_left);
  void on_taken(std::shared_ptr<Take> take, RedisResult result, int attempts_left);
  void finish_take(std::shared_ptr<Take> take);
  static void shut_down(Take& take);  // answers a take the destructor cut short
  // The callbacks given to the client: they may come after this object is gone (the
  // client outlives it), so each runs `body` only while it lives, else `dead`.
  struct Life {
    std::mutex mu;
    bool alive = true;
  };
  template <class F, class Dead>
  ClusterClient::Callback guarded(F body, Dead dead);
  // The generation of ticket (key, tok): joined when this replica already has it,
  // made otherwise (run here when `mine`, else waited for).
  std::shared_ptr<Generation> flight_for(Take& take, const std::string& tok, uint64_t lo, uint64_t hi, bool mine,
                                         bool fresh, std::vector<std::shared_ptr<Flight>>& to_start);
  std::optional<GenerationError> on_flight_end(const std::shared_ptr<Flight>& flight, Generation& gen,
                                               Generation::State state);
  void start(const std::shared_ptr<Flight>& flight);
  void poll(const std::shared_ptr<Flight>& flight);
  void maintenance_loop();
  // Logs what went wrong (on_store_error) and returns the client's words for it.
  std::string failed(const RedisResult& result);
  std::string failed_reply(const std::string& error);  // the same for a refused write
  void remember(const TenantId& tenant, const CacheKey& key, uint64_t index, std::shared_ptr<const Sample> sample);
  void copy_locally(const TenantId& tenant, const CacheKey& key, std::vector<std::pair<uint64_t, std::string>> records);

  ClusterClient& client_;
  Store& local_;
  const ClusterCacherOptions options_;
  const std::string me_;  // this process's owner id in tickets
  HotSamples hot_;
  std::shared_ptr<Life> life_ = std::make_shared<Life>();

  std::mutex mu_;  // the maps below
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;  // "<key> <tok>"
  struct Epoch {
    uint64_t value = 0;
    std::chrono::steady_clock::time_point read_at;
  };
  std::unordered_map<std::string, Epoch> epochs_;
  std::unordered_set<std::string> registered_;  // namespaces added to rp:namespaces

  std::atomic<uint64_t> in_flight_{0};
  struct Counters {
    std::atomic<uint64_t> takes{0}, local_reads{0}, remote_reads{0}, generated{0}, waited{0}, taken_over{0},
        fenced{0}, refused{0}, givebacks{0}, polls{0};
  } counters_;

  std::mutex maintenance_mu_;
  std::condition_variable maintenance_cv_;
  bool stopping_ = false;
  std::deque<std::shared_ptr<Flight>> starts_;  // tickets whose backend is to be started
  std::thread maintenance_;
};

// The library cluster_functions.lua (compiled in).
std::string_view cluster_functions();

}  // namespace reprise::cache
