// cluster_model_test.cpp: a seeded, randomized, model-based test of the cluster store
// (cache/cluster_cacher.*) where concurrency meets failure: several replicas (each its
// own ClusterCacher, cluster client and local store, as separate processes would have)
// share one real Redis Cluster on loopback, and a random script drives them:
// cursor, explicit-index and greedy requests to any replica, streamed or not; a
// scripted backend whose generations the script completes (in any order), fails, or
// loses to clients that leave; namespace resets on any replica; and replicas killed
// mid-generation (their tickets' leases run out and the others take them over) and
// started again on an empty local store. Each settled client is checked against a
// small reference model of what clients were served, as in cacher_model_test.cpp:
//   I1  within one namespace (between resets) no sample is served twice by cursor;
//   I2  the sample served at index k of a key is the same for every client, on every
//       replica, forever (and the index a client was told is the index it is served);
//   I3  the sample at index k is the one drawn for index k (the scripted backend writes
//       the index it was asked for into the text, as the engine seeds it);
//   I4  an explicit index far past the list is refused (too_many), never generated;
//   and single flight: the backend is asked for each index of a key at most once per
//   failure or takeover of that index.
// At the end every generation is driven to its end, every client must settle, and
// every served index must read back the same sample through a fresh replica.
//
// The replicas answer on their clients' threads, so a run's timing is not replayed
// exactly, but its script is: REPRISE_MODEL_SEED=<n> and REPRISE_MODEL_STEPS=<n>.
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <thread>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/backend.hpp"
#include "cache/canonical.hpp"
#include "cache/cluster_cacher.hpp"
#include "proxy/redis/asio_cluster_client.hpp"
#include "tests/support/redis_cluster.hpp"

using namespace reprise::cache;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr int kRuns = 2;
constexpr int kSteps = 300;
constexpr int kReplicas = 3;
constexpr int kKeys = 3;  // cursor keys (and one greedy key)
constexpr uint32_t kMaxNew = 8;
const std::vector<std::string> kNamespaces = {"a", "b", "c"};

// The backend every replica calls, in the script's hands. Thread-safe: replicas start
// generations on their own threads.
class ScriptedBackend : public Backend {
 public:
  std::string_view name() const override { return "scripted"; }
  uint32_t max_n() const override { return 2; }
  void generate(std::shared_ptr<Generation> gen) override {
    std::lock_guard lock(mu_);
    for (uint32_t i = 0; i < gen->size(); ++i) ++asked_[{gen->request().text, gen->first_index() + i}];
    calls_.push_back(std::move(gen));
  }
  std::vector<std::shared_ptr<Generation>> running() {
    std::lock_guard lock(mu_);
    std::erase_if(calls_, [](auto& gen) { return gen->view().state != Generation::State::running; });
    return calls_;
  }
  void complete(const std::shared_ptr<Generation>& gen) {
    std::vector<Sample> samples;
    for (uint32_t i = 0; i < gen->size(); ++i) {
      Sample s;
      std::string text = "i" + std::to_string(gen->first_index() + i) + "#" + std::to_string(serial_++);
      s.choice = {{"message", {{"role", "assistant"}, {"content", text}}}, {"finish_reason", "stop"}};
      s.finish_reason = "stop";
      s.backend = "scripted";
      samples.push_back(std::move(s));
    }
    gen->complete(std::move(samples));
  }
  uint64_t asked(const std::string& request, uint64_t index) {
    std::lock_guard lock(mu_);
    return asked_[{request, index}];
  }

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<Generation>> calls_;
  std::map<std::pair<std::string, uint64_t>, uint64_t> asked_;
  std::atomic<uint64_t> serial_{0};
};

// One replica: what one proxy process holds.
struct Replica {
  std::unique_ptr<ClusterClient> client;
  std::unique_ptr<Store> local;
  std::unique_ptr<ClusterCacher> lists;
};

struct Client {
  int replica = 0, key = 0;
  std::string ns;
  Pick pick = Pick::cursor;
  bool stream = false;
  uint64_t epoch = 0;
  bool answered = false;  // under the run's mutex
  Assignment assignment;
  bool dead = false;  // its replica was killed: it received nothing more
  bool settled = false;
};

class ClusterModelRun {
 public:
  ClusterModelRun(reprise::test::RedisCluster& cluster, const std::filesystem::path& dir, uint64_t seed, int steps)
      : cluster_(cluster), dir_(dir), seed_(seed), steps_(steps), rng_(seed) {
    for (int k = 0; k <= kKeys; ++k) {
      json body = {{"model", "m"},
                   {"messages", json::array({{{"role", "user"}, {"content", "q" + std::to_string(k) + "-" + std::to_string(seed)}}})}};
      if (k == kKeys) body["temperature"] = 0;
      auto canonical = canonicalize(Endpoint::chat_completions, body.dump());
      REQUIRE(canonical.ok());
      requests_.push_back(std::make_shared<const CanonicalRequest>(std::move(canonical.value())));
    }
    tenant_ = tenant_of("secret", "sk-model");
    replicas_.resize(kReplicas);
    for (int r = 0; r < kReplicas; ++r) start(r);
  }

  void run() {
    for (step_ = 0; step_ < steps_ && !failed_; ++step_) {
      const int roll = std::uniform_int_distribution<int>(0, 99)(rng_);
      if (roll < 40) submit();
      else if (roll < 70) complete_one();
      else if (roll < 80) fail_one();
      else if (roll < 85) leave_one();
      else if (roll < 88) reset_one();
      else if (roll < 91) kill_one();
      else complete_one();
      settle_all();
    }
    drain();
    for (auto& c : clients_) CHECK_MESSAGE((c.settled || c.dead), where() << "a client never settled");
    check_read_back();
    size_t indices = 0;
    for (auto& [key, contents] : content_at_) indices += contents.size();
    MESSAGE("seed " << seed_ << ": " << clients_.size() << " requests, " << served_ << " samples served, " << indices
                    << " indices, " << kills_ << " replicas killed");
  }

 private:
  std::string where() const {
    return "seed " + std::to_string(seed_) + ", step " + std::to_string(step_) + " (REPRISE_MODEL_SEED=" +
           std::to_string(seed_) + " runs its script again)\n" + trace_;
  }
  void log(const std::string& line) {
    trace_ += std::to_string(step_) + ": " + line + "\n";
    if (trace_.size() > 6000) trace_.erase(0, trace_.size() - 6000);
  }
  template <class T>
  T pick_from(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng_)];
  }
  bool chance(int percent) { return std::uniform_int_distribution<int>(0, 99)(rng_) < percent; }
  void expect(bool ok, const std::string& what) {
    if (ok) return;
    FAIL_CHECK(where() << what);
    failed_ = true;
  }

  void start(int r) {
    reprise::redis::ClusterOptions options;
    options.seeds = cluster_.seeds();
    options.timeout = 3000ms;
    std::string error;
    Replica& replica = replicas_[r];
    // The store before its client (it uses the client until it is gone), then its disk.
    replica.lists.reset();
    replica.client.reset();
    replica.local.reset();
    replica.client = reprise::redis::connect_cluster(options, &error);
    REQUIRE_MESSAGE(replica.client, error);
    auto local = Store::Open((dir_ / ("replica" + std::to_string(r) + "-" + std::to_string(++starts_))).string());
    REQUIRE(local.ok());
    replica.local = std::move(local.value());
    ClusterCacherOptions o;
    o.max_new_samples = kMaxNew;
    o.lease = 400ms;  // a killed replica's tickets are taken over quickly
    o.epoch_ttl = 50ms;
    auto lists = ClusterCacher::Open(*replica.client, *replica.local, o);
    REQUIRE_MESSAGE(lists.ok(), (lists.ok() ? std::string() : lists.error().message()));
    replica.lists = std::move(lists.value());
  }

  CacheRequest request_for(int key, const std::string& ns) {
    CacheRequest r;
    r.canonical = requests_[key];
    r.tenant = tenant_;
    r.key = cache_key(r.tenant, Endpoint::chat_completions, *r.canonical);
    r.ns = ns;
    r.backend = &backend_;
    return r;
  }

  void submit() {
    Client client;
    client.replica = std::uniform_int_distribution<int>(0, kReplicas - 1)(rng_);
    client.ns = pick_from(kNamespaces);
    client.epoch = epochs_[client.ns];
    client.stream = chance(40);
    const int kind = std::uniform_int_distribution<int>(0, 9)(rng_);
    CacheRequest r;
    if (kind < 7) {
      client.key = std::uniform_int_distribution<int>(0, kKeys - 1)(rng_);
      r = request_for(client.key, client.ns);
      r.n = std::uniform_int_distribution<uint32_t>(1, 3)(rng_);
    } else if (kind < 9) {
      client.key = std::uniform_int_distribution<int>(0, kKeys - 1)(rng_);
      client.pick = Pick::explicit_range;
      r = request_for(client.key, client.ns);
      r.pick = Pick::explicit_range;
      r.first = std::uniform_int_distribution<uint64_t>(0, 3 * kMaxNew)(rng_);
      r.n = std::uniform_int_distribution<uint32_t>(1, 2)(rng_);
    } else {
      client.key = kKeys;
      client.pick = Pick::greedy;
      r = request_for(client.key, client.ns);
      r.pick = Pick::greedy;
      r.n = std::uniform_int_distribution<uint32_t>(1, 2)(rng_);
    }
    r.stream = client.stream;
    const size_t id = clients_.size();
    log("submit #" + std::to_string(id) + " to replica " + std::to_string(client.replica) + " key " +
        std::to_string(client.key) + " ns " + client.ns +
        (client.pick == Pick::cursor ? " cursor" : client.pick == Pick::greedy ? " greedy" : " explicit@" + std::to_string(r.first)) +
        " n " + std::to_string(r.n) + (client.stream ? " stream" : " json"));
    const int replica = client.replica;
    clients_.push_back(std::move(client));
    replicas_[replica].lists->assign(r, [this, id](Assignment a) {
      std::lock_guard lock(mu_);
      clients_[id].assignment = std::move(a);
      clients_[id].answered = true;
      cv_.notify_all();
    });
    std::unique_lock lock(mu_);
    const bool answered = cv_.wait_for(lock, 10s, [&] { return clients_[id].answered; });
    lock.unlock();
    expect(answered, "no answer to a request within 10 s");
    if (!answered) return;
    Client& c = clients_[id];
    const Assignment& a = c.assignment;
    if (a.error == AssignError::too_many) {
      expect(c.pick == Pick::explicit_range, "too_many for a cursor request");
      c.settled = true;
      return;
    }
    if (a.error != AssignError::none) {
      expect(false, "assignment failed: " + a.message);
      c.settled = true;
      return;
    }
    std::string told;
    for (auto& slot : a.slots) told += std::to_string(slot.index()) + " ";
    log("  assigned #" + std::to_string(id) + " indices " + told);
  }

  void complete_one() {
    auto running = backend_.running();
    if (running.empty()) return;
    auto gen = pick_from(running);
    log("complete gen @" + std::to_string(gen->first_index()) + "+" + std::to_string(gen->size()));
    backend_.complete(gen);
  }
  void fail_one() {
    auto running = backend_.running();
    if (running.empty()) return;
    auto gen = pick_from(running);
    log("fail gen @" + std::to_string(gen->first_index()) + "+" + std::to_string(gen->size()));
    gen->fail({503, R"({"error":{"message":"scripted failure"}})", {}});
  }
  void leave_one() {
    std::vector<size_t> open;
    for (size_t i = 0; i < clients_.size(); ++i)
      if (clients_[i].answered && !clients_[i].settled && !clients_[i].dead) open.push_back(i);
    if (open.empty()) return;
    const size_t id = pick_from(open);
    log("client #" + std::to_string(id) + " leaves");
    settle(clients_[id], /*leaving=*/true);
    for (auto& slot : clients_[id].assignment.slots)
      if (slot.claim) slot.claim->release();
  }
  void reset_one() {
    const std::string ns = pick_from(kNamespaces);
    const int r = std::uniform_int_distribution<int>(0, kReplicas - 1)(rng_);
    log("reset " + ns + " on replica " + std::to_string(r));
    Status st = replicas_[r].lists->reset_namespace(ns);
    REQUIRE_MESSAGE(st.ok(), st.message());
    ++epochs_[ns];
  }
  void kill_one() {
    // As kill -9: the replica's clients get nothing more; the generations it was making
    // are never filled (their backend calls end, unseen); its tickets' leases run out.
    const int r = std::uniform_int_distribution<int>(0, kReplicas - 1)(rng_);
    log("kill replica " + std::to_string(r));
    ++kills_;
    for (auto& c : clients_)
      if (c.replica == r && c.answered && !c.settled) {
        settle(c, /*leaving=*/true);
        c.dead = true;
      }
    start(r);
  }

  void drain() {
    // Everything in flight ends: generations complete, waiters' polls bring their
    // samples (or take dead owners' tickets over, after the lease).
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& gen : backend_.running()) backend_.complete(gen);
      settle_all();
      bool open = false;
      for (auto& c : clients_) open |= c.answered && !c.settled && !c.dead;
      if (!open && backend_.running().empty()) break;
      std::this_thread::sleep_for(20ms);
    }
  }

  void settle_all() {
    for (auto& c : clients_)
      if (c.answered && !c.settled && !c.dead) settle(c, false);
  }
  // A JSON client that failed received nothing; a streamed one received its stored
  // samples and those of generations that were done.
  void settle(Client& c, bool leaving) {
    bool failed = false, running = false;
    for (auto& slot : c.assignment.slots) {
      if (!slot.gen) continue;
      auto state = slot.gen->view().state;
      failed |= state == Generation::State::failed;
      running |= state == Generation::State::running;
    }
    if (!failed && running && !leaving) return;
    c.settled = true;
    const bool whole = !failed && !running;
    for (auto& slot : c.assignment.slots) {
      const bool received = whole || (c.stream && (!slot.gen || slot.gen->view().state == Generation::State::done));
      if (received) served(c, slot);
    }
  }

  void served(const Client& c, const Slot& slot) {
    ++served_;
    const uint64_t index = slot.index();
    const std::string text = slot.served().choice["message"]["content"].get<std::string>();
    expect(std::stoull(text.substr(1, text.find('#') - 1)) == index,
           "index " + std::to_string(index) + " serves " + text);  // I3
    auto [it, fresh] = content_at_[c.key].emplace(index, text);
    expect(it->second == text, "key " + std::to_string(c.key) + " index " + std::to_string(index) + " served " + text +
                                   ", earlier " + it->second);  // I2
    if (c.pick == Pick::cursor && c.epoch == epochs_[c.ns]) {  // I1
      auto& seen = served_to_[{c.key, c.ns}];
      if (seen.first != c.epoch) seen = {c.epoch, {}};
      expect(seen.second.insert(text).second, "namespace " + c.ns + " served " + text + " twice");
    }
  }

  // Every served index reads back the same sample through a fresh replica.
  void check_read_back() {
    start(0);
    for (auto& [key, contents] : content_at_) {
      for (auto& [index, text] : contents) {
        CacheRequest r = request_for(key, "");
        r.pick = Pick::explicit_range;
        r.first = index;
        r.n = 1;
        r.only_cached = true;
        std::promise<Assignment> got;
        replicas_[0].lists->assign(r, [&](Assignment a) { got.set_value(std::move(a)); });
        Assignment a = got.get_future().get();
        REQUIRE_MESSAGE(a.error == AssignError::none, where() << "read back of index " << index << ": " << a.message);
        CHECK_MESSAGE(a.slots.at(0).served().choice["message"]["content"] == text,
                      where() << "key " << key << " index " << index << " reads back another sample");
      }
    }
  }

  reprise::test::RedisCluster& cluster_;
  const std::filesystem::path dir_;
  const uint64_t seed_;
  const int steps_;
  int step_ = 0;
  std::mt19937_64 rng_;
  std::string trace_;
  bool failed_ = false;
  int starts_ = 0;
  uint64_t served_ = 0, kills_ = 0;
  ScriptedBackend backend_;
  std::vector<std::shared_ptr<const CanonicalRequest>> requests_;
  TenantId tenant_;
  std::vector<Replica> replicas_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Client> clients_;  // stable addresses: callbacks write into them
  std::map<std::string, uint64_t> epochs_;
  std::map<int, std::map<uint64_t, std::string>> content_at_;
  std::map<std::pair<int, std::string>, std::pair<uint64_t, std::set<std::string>>> served_to_;
};

}  // namespace

TEST_CASE("cluster store: randomized model of replicas sharing one Redis Cluster (I1-I4, single flight, kills)") {
  reprise::test::TempDir dir;
  reprise::test::RedisCluster cluster(dir / "redis");
  std::vector<uint64_t> seeds;
  if (const char* s = std::getenv("REPRISE_MODEL_SEED")) seeds.push_back(std::strtoull(s, nullptr, 10));
  else
    for (uint64_t seed = 1; seed <= kRuns; ++seed) seeds.push_back(seed);
  int steps = kSteps;
  if (const char* s = std::getenv("REPRISE_MODEL_STEPS")) steps = std::atoi(s);
  for (uint64_t seed : seeds) {
    ClusterModelRun run(cluster, dir.path(), seed, steps);
    run.run();
  }
}
