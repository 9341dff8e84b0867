// cacher_model_test.cpp: a seeded, randomized, model-based test of the pipeline where
// concurrency meets failure (DESIGN.md section 1, invariants I1-I3, and I4's bound).
//
// A random script drives the real Pipeline (Batcher -> Reorderer -> Deduplicator ->
// Cacher) on a real Store: cursor, explicit-index and greedy requests, streamed or not,
// some held in a batch and merged; a scripted backend whose generations the script
// completes (in any order), fails, or loses to clients that leave; namespace resets,
// idle-key evictions (a flood of other keys) and restarts of the store. After every
// step each client whose answer is settled is checked against a small reference model
// of what clients were served:
//   I1  within one namespace (between resets) no sample is served twice by cursor;
//   I2  the sample served at index k of a key is the same for every client, forever
//       (and the index a client was told when assigned is the index it is served);
//   I3  the sample at index k is the one drawn for index k: the scripted backend writes
//       the index it was asked for into each sample's text, as the engine seeds it;
//   I4  no request makes more than max_new_samples generated; beyond it, too_many.
// At the end every generation is driven to its end, every client must have settled,
// and the store's lists must hold exactly what the model saw served.
//
// Everything runs on the test's thread: a seed replays a run exactly.
//   REPRISE_MODEL_SEED=<n>   one run with that seed (default: seeds 1..kRuns)
//   REPRISE_MODEL_STEPS=<n>  steps per run (default kSteps)
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/backend.hpp"
#include "cache/canonical.hpp"
#include "cache/pipeline.hpp"
#include "cache/store.hpp"
#include "temp_dir.hpp"

using namespace reprise::cache;
using nlohmann::json;

namespace {

constexpr int kRuns = 6;        // seeds in make test
constexpr int kSteps = 600;     // steps per seed in make test
constexpr int kKeys = 3;        // cursor keys (and one greedy key)
constexpr uint32_t kMaxNew = 8; // max_new_samples
const std::vector<std::string> kNamespaces = {"a", "b", "c"};

// The backend in the script's hands. Each sample's text is "i<index>#<serial>": the
// index the generation was made for, and a serial unique in the run.
class ScriptedBackend : public Backend {
 public:
  explicit ScriptedBackend(uint32_t max_n, bool stoppable) : max_n_(max_n), stoppable_(stoppable) {}
  std::string_view name() const override { return "scripted"; }
  uint32_t max_n() const override { return max_n_; }
  void generate(std::shared_ptr<Generation> gen) override {
    if (stoppable_)
      gen->set_canceller([g = gen.get()] {
        g->fail({499, R"({"error":{"message":"cancelled"}})", {}});
      });
    made += gen->size();
    calls.push_back(std::move(gen));
  }
  std::vector<std::shared_ptr<Generation>> running() const {
    std::vector<std::shared_ptr<Generation>> out;
    for (auto& gen : calls)
      if (gen->view().state == Generation::State::running) out.push_back(gen);
    return out;
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
  static void fail(const std::shared_ptr<Generation>& gen) {
    gen->fail({503, R"({"error":{"message":"scripted failure"}})", {}});
  }
  void forget_ended() {
    std::erase_if(calls, [](auto& gen) { return gen->view().state != Generation::State::running; });
  }

  std::vector<std::shared_ptr<Generation>> calls;
  uint64_t made = 0;  // samples asked for, all calls

 private:
  uint32_t max_n_;
  bool stoppable_;
  uint64_t serial_ = 0;
};

struct ManualClock {
  std::vector<std::function<void()>> tasks;
  Batcher::Schedule schedule() {
    return [this](std::chrono::milliseconds, std::function<void()> task) { tasks.push_back(std::move(task)); };
  }
  void fire_all() {
    auto run = std::move(tasks);
    tasks.clear();
    for (auto& task : run) task();
  }
};

std::string text_of(const Slot& slot) { return slot.served().choice["message"]["content"].get<std::string>(); }

uint64_t index_in_text(const std::string& text) { return std::stoull(text.substr(1, text.find('#') - 1)); }

struct Client {
  int key = 0;
  std::string ns;
  Pick pick = Pick::cursor;
  bool stream = false;
  uint64_t epoch = 0;  // of its namespace, when it was submitted
  std::optional<Assignment> assignment;
  std::vector<uint64_t> told;  // the indices it was told (X-Reprise-Samples)
  bool left = false;
  bool settled = false;
};

class ModelRun {
 public:
  ModelRun(uint64_t seed, int steps, bool stoppable) : seed_(seed), steps_(steps), rng_(seed), backend_(2, stoppable) {
    options_.max_idle_keys = 64;  // one idle key per shard: the flood evicts
    options_.max_new_samples = kMaxNew;
    open();
    for (int k = 0; k <= kKeys; ++k) {
      json body = {{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", "q" + std::to_string(k)}}})}};
      if (k == kKeys) body["temperature"] = 0;  // the greedy key
      auto canonical = canonicalize(Endpoint::chat_completions, body.dump());
      REQUIRE(canonical.ok());
      requests_.push_back(std::make_shared<const CanonicalRequest>(std::move(canonical.value())));
    }
    tenant_ = tenant_of("secret", "sk-model");
  }
  ~ModelRun() {
    pipeline_.reset();
    store_.reset();
  }

  void run() {
    for (step_ = 0; step_ < steps_; ++step_) {
      const int roll = std::uniform_int_distribution<int>(0, 99)(rng_);
      if (roll < 34) submit();
      else if (roll < 60) complete_one();
      else if (roll < 70) fail_one();
      else if (roll < 75) leave_one();
      else if (roll < 83) { log("fire"); clock_.fire_all(); }
      else if (roll < 86) reset_one();
      else if (roll < 90) flood();
      else if (roll < 93) restart();
      else complete_one();
      settle_all();
      if (failed_) return;
    }
    drain();
    settle_all();
    for (auto& client : clients_)
      CHECK_MESSAGE((client.settled || !client.assignment), where() << "a client never settled");
    CHECK_MESSAGE(pipeline_->lists().generations_in_flight() == 0, where());
    check_store();
  }

 private:
  std::string where() const {
    return "seed " + std::to_string(seed_) + ", step " + std::to_string(step_) + " (REPRISE_MODEL_SEED=" +
           std::to_string(seed_) + " replays it)\n" + trace_;
  }
  void log(const std::string& line) {
    trace_ += std::to_string(step_) + ": " + line + "\n";
    // The last lines, or all of them when one seed is replayed (REPRISE_MODEL_SEED).
    if (!std::getenv("REPRISE_MODEL_SEED") && trace_.size() > 6000) trace_.erase(0, trace_.size() - 6000);
  }
  template <class T>
  T pick_from(const std::vector<T>& v) {
    return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng_)];
  }
  bool chance(int percent) { return std::uniform_int_distribution<int>(0, 99)(rng_) < percent; }

  void open() {
    auto store = Store::Open(dir_.db());
    REQUIRE(store.ok());
    store_ = std::move(store.value());
    pipeline_ = std::make_unique<Pipeline>(*store_, BatcherOptions{}, clock_.schedule(), options_);
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
    client.ns = pick_from(kNamespaces);
    client.epoch = epochs_[client.ns];
    client.stream = chance(40);
    const int kind = std::uniform_int_distribution<int>(0, 9)(rng_);
    CacheRequest r;
    if (kind < 7) {
      client.key = std::uniform_int_distribution<int>(0, kKeys - 1)(rng_);
      r = request_for(client.key, client.ns);
      r.n = std::uniform_int_distribution<uint32_t>(1, 3)(rng_);
      if (chance(40)) r.request_id = "req" + std::to_string(step_);  // held for the batch
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
    log("submit #" + std::to_string(clients_.size()) + " key " + std::to_string(client.key) + " ns " + client.ns +
        (client.pick == Pick::cursor ? " cursor" : client.pick == Pick::greedy ? " greedy" : " explicit@" + std::to_string(r.first)) +
        " n " + std::to_string(r.n) + (client.stream ? " stream" : " json") + (r.request_id.empty() ? "" : " batched"));
    const size_t id = clients_.size();
    clients_.push_back(std::move(client));
    made_at_submit_ = backend_.made;
    in_submit_ = true;
    pipeline_->submit(std::move(r), [this, id](Assignment a) { on_assigned(id, std::move(a)); });
    in_submit_ = false;
  }

  void on_assigned(size_t id, Assignment a) {
    Client& client = clients_[id];
    // I4: an explicit index far past the list is refused, never generated. (Measured
    // when it is answered inside submit(): a batch's answers come with others' calls.)
    if (in_submit_ && client.pick == Pick::explicit_range)
      expect(backend_.made - made_at_submit_ <= kMaxNew,
             "one request made " + std::to_string(backend_.made - made_at_submit_) + " samples");
    if (a.error == AssignError::too_many) {
      expect(client.pick == Pick::explicit_range, "too_many for a cursor request");
      client.settled = true;
      return;
    }
    if (a.error != AssignError::none) {
      expect(false, "assignment failed: " + a.message);
      client.settled = true;
      return;
    }
    for (auto& slot : a.slots) client.told.push_back(slot.index());
    log("  assigned #" + std::to_string(id) + " indices " + joined(client.told));
    client.assignment = std::move(a);
  }

  static std::string joined(const std::vector<uint64_t>& v) {
    std::string out;
    for (auto i : v) out += std::to_string(i) + " ";
    return out;
  }

  void complete_one() {
    auto running = backend_.running();
    if (running.empty()) return;
    auto gen = pick_from(running);
    log("complete gen @" + std::to_string(gen->first_index()) + "+" + std::to_string(gen->size()) + " of " +
        gen->request().text.substr(gen->request().text.find("q"), 2));
    backend_.complete(gen);
  }
  void fail_one() {
    // At most twice per index range: the third failure in a row of the same indices
    // makes the Cacher give up on them (cut_list, tested on its own in pipeline_test),
    // the one documented case where a sample served from memory is not kept.
    std::vector<std::shared_ptr<Generation>> running;
    for (auto& gen : backend_.running())
      if (failures_[{gen->request().text, gen->first_index()}] < 2) running.push_back(gen);
    if (running.empty()) return;
    auto gen = pick_from(running);
    ++failures_[{gen->request().text, gen->first_index()}];
    log("fail gen @" + std::to_string(gen->first_index()) + "+" + std::to_string(gen->size()) + " of " +
        gen->request().text.substr(gen->request().text.find("q"), 2));
    ScriptedBackend::fail(gen);
  }
  void leave_one() {
    std::vector<size_t> open;
    for (size_t i = 0; i < clients_.size(); ++i)
      if (clients_[i].assignment && !clients_[i].settled) open.push_back(i);
    if (open.empty()) return;
    size_t id = pick_from(open);
    log("client #" + std::to_string(id) + " leaves");
    Client& client = clients_[id];
    // What it received before leaving counts as served (settle first), then it lets go.
    settle(client, /*leaving=*/true);
    for (auto& slot : client.assignment->slots)
      if (slot.claim) slot.claim->release();
  }
  void reset_one() {
    std::string ns = pick_from(kNamespaces);
    log("reset " + ns);
    Status st = pipeline_->lists().reset_namespace(ns);
    REQUIRE(st.ok());
    ++epochs_[ns];
  }
  void flood() {
    // Other keys come and go: the Cacher forgets idle keys (ours among them).
    log("flood");
    for (int i = 0; i < 80; ++i) {
      json body = {{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", "flood" + std::to_string(flood_++)}}})}};
      auto canonical = canonicalize(Endpoint::chat_completions, body.dump());
      REQUIRE(canonical.ok());
      CacheRequest r;
      r.canonical = std::make_shared<const CanonicalRequest>(std::move(canonical.value()));
      r.tenant = tenant_;
      r.key = cache_key(r.tenant, Endpoint::chat_completions, *r.canonical);
      r.ns = "flood";
      r.only_cached = true;
      r.backend = &backend_;
      pipeline_->submit(std::move(r), [](Assignment) {});
    }
  }
  void restart() {
    // A clean restart: nothing in flight (the clients still waiting are answered first).
    log("restart");
    clock_.fire_all();
    drain();
    settle_all();
    pipeline_.reset();
    store_.reset();
    open();
  }
  void drain() {
    for (int round = 0; round < 1000; ++round) {
      clock_.fire_all();
      auto running = backend_.running();
      if (running.empty()) break;
      for (auto& gen : running) backend_.complete(gen);
    }
    backend_.forget_ended();
  }

  // Checks a client whose outcome is known: all its generations done, or one failed
  // (or it left). A JSON client that failed received nothing; a streamed one received
  // its stored samples and those of generations that were done.
  void settle_all() {
    for (auto& client : clients_)
      if (client.assignment && !client.settled) settle(client, false);
  }
  void settle(Client& client, bool leaving) {
    bool failed = false, running = false;
    for (auto& slot : client.assignment->slots) {
      if (!slot.gen) continue;
      auto state = slot.gen->view().state;
      failed |= state == Generation::State::failed;
      running |= state == Generation::State::running;
    }
    if (!failed && running && !leaving) return;
    client.settled = true;
    const bool whole = !failed && !running;
    for (size_t i = 0; i < client.assignment->slots.size(); ++i) {
      const Slot& slot = client.assignment->slots[i];
      const bool received =
          whole || (client.stream && (!slot.gen || slot.gen->view().state == Generation::State::done));
      if (received) served(client, slot, client.told[i]);
    }
  }

  void served(const Client& client, const Slot& slot, uint64_t told) {
    const uint64_t index = slot.index();
    const std::string text = text_of(slot);
    // I2: the index it was told is the index it got.
    expect(index == told, "told index " + std::to_string(told) + ", served index " + std::to_string(index));
    // I3: the sample at index k was drawn for index k.
    expect(index_in_text(text) == index, "index " + std::to_string(index) + " serves " + text);
    // I2: index k holds one sample forever.
    auto [it, fresh] = content_at_[client.key].emplace(index, text);
    expect(it->second == text, "key " + std::to_string(client.key) + " index " + std::to_string(index) + " served " +
                                   text + ", earlier " + it->second);
    // I1: no repeat within a namespace (between its resets), by cursor.
    if (client.pick == Pick::cursor && client.epoch == epochs_[client.ns]) {
      auto& seen = served_to_[{client.key, client.ns}];
      if (seen.first != client.epoch) seen = {client.epoch, {}};
      expect(seen.second.insert(text).second,
             "namespace " + client.ns + " served " + text + " (index " + std::to_string(index) + ") twice");
    }
  }

  void expect(bool ok, const std::string& what) {
    if (ok) return;
    FAIL_CHECK(where() << what);
    failed_ = true;
  }

  void check_store() {
    for (int key = 0; key <= kKeys; ++key) {
      CacheRequest r = request_for(key, "a");
      auto read = store_->Read(r.tenant, r.key, 0, 1 << 20);
      REQUIRE(read.ok());
      for (auto& [index, text] : content_at_[key]) {
        REQUIRE_MESSAGE(index < read.value().size(), where() << "served index " << index << " is not stored");
        CHECK_MESSAGE(read.value()[index].choice["message"]["content"] == text, where() << "stored index " << index);
      }
    }
  }

  const uint64_t seed_;
  const int steps_;
  std::mt19937_64 rng_;
  ScriptedBackend backend_;
  CacherOptions options_;
  reprise::test::UnitTempDir dir_{"cacher_model"};
  ManualClock clock_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Pipeline> pipeline_;
  std::vector<std::shared_ptr<const CanonicalRequest>> requests_;
  TenantId tenant_;
  std::vector<Client> clients_;
  std::map<std::string, uint64_t> epochs_;
  std::map<int, std::map<uint64_t, std::string>> content_at_;
  std::map<std::pair<int, std::string>, std::pair<uint64_t, std::set<std::string>>> served_to_;
  std::map<std::pair<std::string, uint64_t>, int> failures_;
  uint64_t made_at_submit_ = 0;
  bool in_submit_ = false;
  int flood_ = 0;
  int step_ = 0;
  bool failed_ = false;
  std::string trace_;
};

std::vector<uint64_t> seeds() {
  if (const char* s = std::getenv("REPRISE_MODEL_SEED")) return {std::stoull(s)};
  std::vector<uint64_t> out;
  for (int i = 1; i <= kRuns; ++i) out.push_back(i);
  return out;
}

int steps() {
  if (const char* s = std::getenv("REPRISE_MODEL_STEPS")) return std::stoi(s);
  return kSteps;
}

}  // namespace

TEST_CASE("cacher model: I1-I3 hold under failures, cancellation, resets, evictions and restarts") {
  for (uint64_t seed : seeds()) {
    for (bool stoppable : {false, true}) {
      CAPTURE(seed);
      CAPTURE(stoppable);
      ModelRun run(seed, steps(), stoppable);
      run.run();
    }
  }
}
