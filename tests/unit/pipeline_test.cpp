// pipeline_test.cpp: the pipeline stages (DESIGN.md sections 1 and 2) through their real
// parts: Batcher -> Reorderer -> Deduplicator -> Cacher on a real Store in a temporary
// directory, with an in-process fake backend that the test completes or fails by hand
// (or that completes inside generate()), and a manual clock for the Batcher's window.
// Everything runs on the test's thread: no sleeps, no timing.
#include <doctest/doctest.h>

#include "temp_dir.hpp"
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/backend.hpp"
#include "cache/batcher.hpp"
#include "cache/cache_request.hpp"
#include "cache/cacher.hpp"
#include "cache/canonical.hpp"
#include "cache/deduplicator.hpp"
#include "cache/generation.hpp"
#include "cache/pipeline.hpp"
#include "cache/reorderer.hpp"
#include "cache/store.hpp"

using namespace reprise::cache;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// ---------------------------------------------------------------------------------
// Fixtures

class TempDir : public reprise::test::UnitTempDir {
 public:
  TempDir() : UnitTempDir("pipeline_test") {}
};


std::unique_ptr<Store> open_store(const std::string& path) {
  auto store = Store::Open(path);
  if (!store.ok()) FAIL("Store::Open failed: " << store.error().message());
  return std::move(*store);
}

// Every sample any fake backend makes in this process carries a unique text, so a
// sample served twice, or served from the wrong list, shows up as a repeated text.
std::atomic<uint64_t> g_sample_counter{0};

// A Backend in the test's hands: records each call (the Generation, so the test can
// check its size and end it later), and completes at once when `immediate`.
class FakeBackend : public Backend {
 public:
  explicit FakeBackend(uint32_t max_n = 128, bool immediate = false)
      : max_n_(max_n), immediate_(immediate) {}

  std::string_view name() const override { return "fake"; }
  uint32_t max_n() const override { return max_n_; }
  void generate(std::shared_ptr<Generation> gen) override {
    calls.push_back(gen);
    if (immediate_) complete(gen);
  }

  // Ends `gen` with gen->size() samples, each with its own text "s<counter>".
  static void complete(const std::shared_ptr<Generation>& gen) {
    std::vector<Sample> samples;
    for (uint32_t i = 0; i < gen->size(); ++i) {
      Sample s;
      s.choice = {{"message",
                   {{"role", "assistant"}, {"content", std::string("s").append(std::to_string(g_sample_counter++))}}},
                  {"finish_reason", "stop"}};
      s.finish_reason = "stop";
      s.completion_tokens = 3;
      s.prompt_tokens = 7;
      s.model = "fake-model";
      s.created = 1700000000;
      s.backend = "fake";
      samples.push_back(std::move(s));
    }
    gen->complete(std::move(samples));
  }
  static void fail(const std::shared_ptr<Generation>& gen) {
    gen->fail({503, R"({"error":{"message":"upstream down","type":"upstream_error","param":null,"code":null}})", {}});
  }

  std::vector<uint32_t> sizes() const {
    std::vector<uint32_t> out;
    for (auto& gen : calls) out.push_back(gen->size());
    return out;
  }
  uint64_t total() const {
    uint64_t sum = 0;
    for (auto& gen : calls) sum += gen->size();
    return sum;
  }
  void complete_all() {
    for (auto& gen : calls)
      if (gen->view().state == Generation::State::running) complete(gen);
  }

  std::vector<std::shared_ptr<Generation>> calls;

 private:
  uint32_t max_n_;
  bool immediate_;
};

// The Batcher's timer, in the test's hands: tasks wait until the test fires them.
struct ManualClock {
  struct Task {
    milliseconds delay;
    std::function<void()> run;
  };
  std::vector<Task> tasks;

  Batcher::Schedule schedule() {
    return [this](milliseconds delay, std::function<void()> task) {
      tasks.push_back({delay, std::move(task)});
    };
  }
  // Fires every task scheduled so far (tasks scheduled meanwhile wait).
  size_t fire_all() {
    std::vector<Task> run = std::move(tasks);
    tasks.clear();
    for (auto& task : run) task.run();
    return run.size();
  }
};

constexpr const char* kSecret = "server secret";

json chat_body(const std::string& content = "hi", std::optional<double> temperature = std::nullopt) {
  json body = {{"model", "gpt-4o-mini"},
               {"messages", json::array({{{"role", "user"}, {"content", content}}})}};
  if (temperature) body["temperature"] = *temperature;
  return body;
}

std::shared_ptr<const CanonicalRequest> canon(const json& body) {
  auto result = canonicalize(Endpoint::chat_completions, body.dump());
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? "" : result.error().message));
  return std::make_shared<const CanonicalRequest>(std::move(result.value()));
}

// A cursor request of `n` samples in namespace `ns`, for the API key `api_key`.
CacheRequest make_request(Backend* backend, const std::string& ns, uint32_t n,
                          const std::string& request_id = "", const std::string& api_key = "sk-alice",
                          const json& body = chat_body()) {
  CacheRequest r;
  r.canonical = canon(body);
  r.tenant = tenant_of(kSecret, api_key);
  r.key = cache_key(r.tenant, Endpoint::chat_completions, *r.canonical);
  r.endpoint = Endpoint::chat_completions;
  r.ns = ns;
  r.n = n;
  r.request_id = request_id;
  r.backend = backend;
  return r;
}

std::vector<uint64_t> indices(const Assignment& a) {
  std::vector<uint64_t> out;
  for (auto& slot : a.slots) out.push_back(slot.index());
  return out;
}

std::vector<uint64_t> range(uint64_t from, uint64_t to) {
  std::vector<uint64_t> out(to - from);
  std::iota(out.begin(), out.end(), from);
  return out;
}

// The text of the sample a slot serves: stored, or its finished generation's choice.
std::string content_of(const Slot& slot) {
  if (slot.sample) return slot.sample->choice["message"]["content"].get<std::string>();
  REQUIRE(slot.gen != nullptr);
  REQUIRE(slot.gen->view().state == Generation::State::done);
  REQUIRE(slot.choice < slot.gen->samples().size());
  return slot.gen->samples()[slot.choice].choice["message"]["content"].get<std::string>();
}

std::vector<std::string> contents(const Assignment& a) {
  std::vector<std::string> out;
  for (auto& slot : a.slots) out.push_back(content_of(slot));
  return out;
}

bool all_stored(const Assignment& a) {
  return std::all_of(a.slots.begin(), a.slots.end(),
                     [](const Slot& s) { return s.sample != nullptr && !s.gen; });
}
bool all_in_flight(const Assignment& a) {
  return std::all_of(a.slots.begin(), a.slots.end(),
                     [](const Slot& s) { return s.sample == nullptr && s.gen; });
}

uint64_t count_of(Store& store, const CacheRequest& r) {
  auto n = store.Count(r.tenant, r.key);
  REQUIRE_MESSAGE(n.ok(), (n.ok() ? "" : n.error().message()));
  return *n;
}
uint64_t cursor_of(Store& store, const std::string& ns, const CacheRequest& r) {
  auto c = store.Cursor(ns, r.tenant, r.key);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message()));
  return *c;
}
std::vector<std::string> stored_contents(Store& store, const CacheRequest& r, uint64_t from, uint64_t count) {
  auto read = store.Read(r.tenant, r.key, from, count);
  REQUIRE_MESSAGE(read.ok(), (read.ok() ? "" : read.error().message()));
  std::vector<std::string> out;
  for (auto& s : *read) out.push_back(s.choice["message"]["content"].get<std::string>());
  return out;
}

// Assigns through the Cacher and requires success.
Assignment assign_ok(Cacher& cacher, const CacheRequest& r) {
  Assignment a = cacher.assign(r);
  REQUIRE_MESSAGE(a.error == AssignError::none, a.message);
  REQUIRE(a.slots.size() == std::max<uint32_t>(1, r.n));
  return a;
}

// A store, a fake backend, a manual clock and a Pipeline over them; restart() drops the
// Pipeline and the Store and opens both again on the same directory.
struct Harness {
  explicit Harness(uint32_t max_n = 128, bool immediate = false, BatcherOptions batching = {})
      : backend(max_n, immediate), batching(batching) {
    open();
  }
  ~Harness() {
    pipeline.reset();
    store.reset();
  }
  void open() {
    store = open_store(dir.db());
    pipeline = std::make_unique<Pipeline>(*store, batching, clock.schedule(), CacherOptions{});
  }
  void restart() {
    pipeline.reset();
    store.reset();
    open();
  }
  // Submits and requires the answer on this thread, before submit returns.
  Assignment submit_now(const CacheRequest& r) {
    std::optional<Assignment> out;
    int calls = 0;
    pipeline->submit(r, [&](Assignment a) {
      ++calls;
      out = std::move(a);
    });
    REQUIRE(calls == 1);
    REQUIRE_MESSAGE(out->error == AssignError::none, out->message);
    return std::move(*out);
  }

  TempDir dir;
  FakeBackend backend;
  ManualClock clock;
  BatcherOptions batching;
  std::unique_ptr<Store> store;
  std::unique_ptr<Pipeline> pipeline;
};

// A PendingRequest whose answer lands in `sink` (by request id, or "#<arrival>").
PendingRequest pending(CacheRequest r, std::map<std::string, Assignment>* sink = nullptr,
                       uint64_t arrival = 0) {
  PendingRequest p;
  std::string name = r.request_id.empty() ? "#" + std::to_string(arrival) : r.request_id;
  p.request = std::move(r);
  p.arrival = arrival;
  p.done = [sink, name](Assignment a) {
    if (sink) {
      REQUIRE(sink->count(name) == 0);  // exactly once
      (*sink)[name] = std::move(a);
    }
  };
  return p;
}

std::vector<std::string> ids_of(const std::vector<PendingRequest>& batch) {
  std::vector<std::string> out;
  for (auto& p : batch) out.push_back(p.request.request_id);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------
// 1. Reorderer

TEST_CASE("pipeline: natural_less orders digit runs as numbers") {
  CHECK(natural_less("req2", "req10"));
  CHECK_FALSE(natural_less("req10", "req2"));
  CHECK(natural_less("req9", "req10"));
  CHECK(natural_less("a", "a1"));
  CHECK_FALSE(natural_less("a1", "a"));
  CHECK(natural_less("", "a"));
  CHECK_FALSE(natural_less("a", ""));
  CHECK(natural_less("a2b", "a10a"));          // the number decides before the text after it
  CHECK(natural_less("x1y2", "x1y10"));        // every digit run compares as a number
  CHECK(natural_less("item", "item0"));
  CHECK(natural_less("abc", "abd"));           // text compares byte by byte
  CHECK(natural_less("A", "a"));
  CHECK(natural_less("req99999999999999999999", "req100000000000000000000"));  // beyond 64 bits
  // Leading zeros: the value first ("007" < "10"), then fewer zeros first, never equal.
  CHECK(natural_less("req007", "req10"));
  CHECK(natural_less("req07", "req8"));
  CHECK(natural_less("req7", "req07"));
  CHECK_FALSE(natural_less("req07", "req7"));
  CHECK(natural_less("req07", "req007"));
  CHECK(natural_less("0", "00"));
  CHECK_FALSE(natural_less("00", "0"));
  CHECK(natural_less("req007", "req8"));
  // The value decides before a zeros tiebreak further left.
  CHECK(natural_less("a01b1", "a1b2"));
  CHECK(natural_less("a1b01", "a01b1"));  // equal values: the first run with a zeros difference decides

  // Irreflexive.
  for (const char* s : {"", "a", "req10", "007", "0", "a01b"}) CHECK_FALSE(natural_less(s, s));

  std::vector<std::string> ids = {"req10", "req2", "req1", "req010", "req02", "a", "a1", "req",
                                  "req100", "b", "req9", "req001", "Z", "req1a", "req1b", "req01"};
  std::sort(ids.begin(), ids.end(), [](const std::string& a, const std::string& b) { return natural_less(a, b); });
  CHECK(ids == std::vector<std::string>{"Z", "a", "a1", "b", "req", "req1", "req01", "req001", "req1a",
                                        "req1b", "req2", "req02", "req9", "req10", "req010", "req100"});
}

TEST_CASE("pipeline: natural_less is a strict weak (total) order on an exhaustive alphabet") {
  // Every string of length <= 4 over {a, 0, 1, 9}: 341 strings, 40M triples.
  std::vector<std::string> all = {""};
  for (size_t len = 1; len <= 4; ++len) {
    std::vector<std::string> next;
    for (auto& s : all)
      if (s.size() == len - 1)
        for (char c : {'a', '0', '1', '9'}) next.push_back(s + c);
    all.insert(all.end(), next.begin(), next.end());
  }
  REQUIRE(all.size() == 341);
  const size_t n = all.size();
  std::vector<std::vector<char>> less(n, std::vector<char>(n));
  size_t failures = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) less[i][j] = natural_less(all[i], all[j]);
  for (size_t i = 0; i < n; ++i) {
    if (less[i][i]) ++failures;  // irreflexive
    for (size_t j = 0; j < n; ++j) {
      // Asymmetric, and total on distinct strings (no two ids are "equal").
      if (i != j && less[i][j] == less[j][i]) ++failures;
      if (!less[i][j]) continue;
      for (size_t k = 0; k < n; ++k)
        if (less[j][k] && !less[i][k]) ++failures;  // transitive
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("pipeline: reorder puts ids in natural order first, the rest in arrival order") {
  FakeBackend backend;
  std::vector<PendingRequest> batch;
  // Arrival order: a mix of ids and no ids.
  const std::vector<std::string> arrivals = {"", "req10", "", "req2", "req1", "", "req02", "req2"};
  for (size_t i = 0; i < arrivals.size(); ++i)
    batch.push_back(pending(make_request(&backend, "ns", 1, arrivals[i]), nullptr, i));
  reorder(batch);
  std::vector<std::pair<std::string, uint64_t>> order;
  for (auto& p : batch) order.emplace_back(p.request.request_id, p.arrival);
  // Equal ids keep arrival order (stable); requests without an id come last, in arrival order.
  CHECK(order == std::vector<std::pair<std::string, uint64_t>>{
                     {"req1", 4}, {"req2", 3}, {"req2", 7}, {"req02", 6}, {"req10", 1},
                     {"", 0}, {"", 2}, {"", 5}});

  // A large batch (beyond any small-sort shortcut): equal ids and the requests without
  // one keep their arrival order.
  {
    std::mt19937 rng(3);
    const std::vector<std::string> choices = {"", "k1", "k2", "k10", ""};
    std::vector<PendingRequest> big;
    for (uint64_t i = 0; i < 300; ++i)
      big.push_back(pending(make_request(&backend, "ns", 1, choices[rng() % choices.size()]), nullptr, i));
    reorder(big);
    const std::vector<std::string> rank = {"k1", "k2", "k10", ""};
    auto rank_of = [&](const std::string& id) { return std::find(rank.begin(), rank.end(), id) - rank.begin(); };
    size_t disorder = 0;
    for (size_t i = 1; i < big.size(); ++i) {
      auto r0 = rank_of(big[i - 1].request.request_id), r1 = rank_of(big[i].request.request_id);
      if (r0 > r1 || (r0 == r1 && big[i - 1].arrival > big[i].arrival)) ++disorder;
    }
    CHECK(disorder == 0);
  }

  // The result does not depend on the arrival order of the ids.
  std::vector<std::string> ids;
  for (int i = 1; i <= 60; ++i) ids.push_back("r" + std::to_string(i));
  std::mt19937 rng(7);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<PendingRequest> b;
    for (size_t i = 0; i < ids.size(); ++i) b.push_back(pending(make_request(&backend, "ns", 1, ids[i]), nullptr, i));
    reorder(b);
    auto got = ids_of(b);
    for (int i = 1; i <= 60; ++i) CHECK(got[i - 1] == std::string("r").append(std::to_string(i)));
  }
}

// ---------------------------------------------------------------------------------
// 2. Deduplicator

TEST_CASE("pipeline: deduplicate merges same tenant+key+namespace, and only those") {
  FakeBackend backend;
  std::vector<PendingRequest> batch;
  auto add = [&](CacheRequest r) { batch.push_back(pending(std::move(r), nullptr, batch.size())); };
  add(make_request(&backend, "A", 2, "r1"));                       // 0: group A
  add(make_request(&backend, "B", 1, "r2"));                       // 1: other namespace
  add(make_request(&backend, "A", 3, "r3"));                       // 2: joins group A
  add(make_request(&backend, "A", 1, "r4", "sk-bob"));            // 3: other tenant
  add(make_request(&backend, "A", 1, "r5", "sk-alice", chat_body("other prompt")));  // 4: other key
  auto only = make_request(&backend, "A", 1, "r6");
  only.only_cached = true;
  add(only);                                                       // 5: other cache mode
  auto greedy = make_request(&backend, "A", 1, "r7", "sk-alice", chat_body("hi", 0.0));
  greedy.pick = Pick::greedy;
  add(greedy);                                                     // 6: greedy, alone
  add(greedy);                                                     // 7: greedy again, alone
  auto expl = make_request(&backend, "A", 2, "r9");
  expl.pick = Pick::explicit_range;
  expl.first = 4;
  add(expl);                                                       // 8: explicit, alone
  add(expl);                                                       // 9: explicit again, alone
  auto streaming = make_request(&backend, "A", 4, "r11");
  streaming.stream = true;
  add(streaming);                                                  // 10: joins group A, streams
  auto only2 = make_request(&backend, "A", 2, "r12");
  only2.only_cached = true;
  add(only2);                                                      // 11: joins group 5
  add(make_request(&backend, "B", 5, "r13"));                      // 12: joins group B

  auto groups = deduplicate(std::move(batch));
  REQUIRE(groups.size() == 9);
  auto member_ids = [](const MergedRequest& g) { return ids_of(g.members); };
  // Groups in the order of their first member; members in batch order.
  CHECK(member_ids(groups[0]) == std::vector<std::string>{"r1", "r3", "r11"});
  CHECK(groups[0].request.n == 2 + 3 + 4);
  CHECK(groups[0].request.stream);  // one member streams: the merged request streams
  CHECK(groups[0].request.ns == "A");
  CHECK(member_ids(groups[1]) == std::vector<std::string>{"r2", "r13"});
  CHECK(groups[1].request.n == 6);
  CHECK_FALSE(groups[1].request.stream);
  CHECK(member_ids(groups[2]) == std::vector<std::string>{"r4"});
  CHECK(groups[2].request.tenant == tenant_of(kSecret, "sk-bob"));
  CHECK(member_ids(groups[3]) == std::vector<std::string>{"r5"});
  CHECK(member_ids(groups[4]) == std::vector<std::string>{"r6", "r12"});
  CHECK(groups[4].request.only_cached);
  CHECK(groups[4].request.n == 3);
  CHECK(member_ids(groups[5]) == std::vector<std::string>{"r7"});
  CHECK(groups[5].request.pick == Pick::greedy);
  CHECK(groups[5].request.n == 1);
  CHECK(member_ids(groups[6]) == std::vector<std::string>{"r7"});
  CHECK(member_ids(groups[7]) == std::vector<std::string>{"r9"});
  CHECK(groups[7].request.pick == Pick::explicit_range);
  CHECK(groups[7].request.first == 4);
  CHECK(groups[7].request.n == 2);
  CHECK(member_ids(groups[8]) == std::vector<std::string>{"r9"});
  for (auto& g : groups)  // merged requests keep their identity
    for (auto& m : g.members) {
      CHECK(m.request.key == g.request.key);
      CHECK(m.request.tenant == g.request.tenant);
    }
}

TEST_CASE("pipeline: fan_out hands consecutive slots in member order - errors reach everyone") {
  FakeBackend backend;
  std::map<std::string, Assignment> answers;
  std::vector<PendingRequest> batch;
  batch.push_back(pending(make_request(&backend, "A", 1, "m1"), &answers));
  batch.push_back(pending(make_request(&backend, "A", 2, "m2"), &answers));
  batch.push_back(pending(make_request(&backend, "A", 3, "m3"), &answers));
  auto groups = deduplicate(std::move(batch));
  REQUIRE(groups.size() == 1);
  REQUIRE(groups[0].request.n == 6);

  SUBCASE("slots") {
    Assignment merged;
    for (uint64_t i = 0; i < 6; ++i) {
      Slot slot;
      slot.stored_index = 10 + i;
      merged.slots.push_back(slot);
    }
    fan_out(groups[0], std::move(merged));
    REQUIRE(answers.size() == 3);
    CHECK(indices(answers["m1"]) == std::vector<uint64_t>{10});
    CHECK(indices(answers["m2"]) == std::vector<uint64_t>{11, 12});
    CHECK(indices(answers["m3"]) == std::vector<uint64_t>{13, 14, 15});
    for (auto& [id, a] : answers) CHECK(a.error == AssignError::none);
  }
  SUBCASE("error") {
    Assignment merged;
    merged.error = AssignError::not_cached;
    merged.message = "not in the cache";
    fan_out(groups[0], std::move(merged));
    REQUIRE(answers.size() == 3);
    for (auto& [id, a] : answers) {
      CHECK(a.error == AssignError::not_cached);
      CHECK(a.message == "not in the cache");
      CHECK(a.slots.empty());
    }
  }
  SUBCASE("a single member gets the answer as it is") {
    std::map<std::string, Assignment> one;
    std::vector<PendingRequest> b;
    b.push_back(pending(make_request(&backend, "A", 2, "solo"), &one));
    auto g = deduplicate(std::move(b));
    REQUIRE(g.size() == 1);
    Assignment merged;
    merged.error = AssignError::store;
    merged.message = "disk on fire";
    fan_out(g[0], std::move(merged));
    REQUIRE(one.size() == 1);
    CHECK(one["solo"].error == AssignError::store);
    CHECK(one["solo"].message == "disk on fire");
  }
}

// ---------------------------------------------------------------------------------
// 3. Batcher

TEST_CASE("pipeline: Batcher lets a lone request without id through, holds requests with ids") {
  FakeBackend backend;
  ManualClock clock;
  std::vector<std::vector<PendingRequest>> flushed;
  Batcher batcher({milliseconds(2), 256}, clock.schedule(),
                  [&](std::vector<PendingRequest> b) { flushed.push_back(std::move(b)); });

  // No id, nothing pending for its key: flushed on this thread, no timer.
  batcher.submit(pending(make_request(&backend, "A", 1), nullptr, 0));
  REQUIRE(flushed.size() == 1);
  CHECK(flushed[0].size() == 1);
  CHECK(clock.tasks.empty());

  // With an id: waits for the window.
  batcher.submit(pending(make_request(&backend, "A", 1, "req1"), nullptr, 1));
  CHECK(flushed.size() == 1);
  REQUIRE(clock.tasks.size() == 1);
  CHECK(clock.tasks[0].delay == milliseconds(2));

  // A second id joins the open batch (no second timer).
  batcher.submit(pending(make_request(&backend, "A", 1, "req0"), nullptr, 2));
  CHECK(clock.tasks.size() == 1);
  // No id, but its key is pending: joins the batch to be ordered after the ids.
  batcher.submit(pending(make_request(&backend, "B", 1), nullptr, 3));
  CHECK(flushed.size() == 1);
  // No id, another key: goes straight on while the batch waits.
  batcher.submit(pending(make_request(&backend, "A", 1, "", "sk-alice", chat_body("other")), nullptr, 4));
  REQUIRE(flushed.size() == 2);
  CHECK(flushed[1].size() == 1);
  CHECK(flushed[1][0].arrival == 4);

  CHECK(clock.fire_all() == 1);
  REQUIRE(flushed.size() == 3);
  std::vector<uint64_t> arrivals;
  for (auto& p : flushed[2]) arrivals.push_back(p.arrival);
  CHECK(arrivals == std::vector<uint64_t>{1, 2, 3});  // the batch, in arrival order

  // The batch is gone: a no-id request for that key goes straight on again.
  batcher.submit(pending(make_request(&backend, "A", 1), nullptr, 5));
  CHECK(flushed.size() == 4);
  CHECK(clock.tasks.empty());
}

TEST_CASE("pipeline: Batcher closes a full batch at once - its stale timer does nothing") {
  FakeBackend backend;
  ManualClock clock;
  std::vector<std::vector<PendingRequest>> flushed;
  Batcher batcher({milliseconds(5), 3}, clock.schedule(),
                  [&](std::vector<PendingRequest> b) { flushed.push_back(std::move(b)); });

  for (uint64_t i = 0; i < 3; ++i)
    batcher.submit(pending(make_request(&backend, "A", 1, "id" + std::to_string(i)), nullptr, i));
  REQUIRE(flushed.size() == 1);  // batch_max reached: closed without the timer
  CHECK(flushed[0].size() == 3);
  REQUIRE(clock.tasks.size() == 1);
  CHECK(clock.tasks[0].delay == milliseconds(5));
  auto stale = std::move(clock.tasks[0].run);
  clock.tasks.clear();

  // A new batch opens for the same tenant, with its own timer.
  batcher.submit(pending(make_request(&backend, "A", 1, "id3"), nullptr, 3));
  REQUIRE(clock.tasks.size() == 1);
  stale();  // the first batch's timer finds another batch: nothing happens
  CHECK(flushed.size() == 1);
  // The open batch still takes requests and is flushed by its own timer.
  batcher.submit(pending(make_request(&backend, "A", 1, "id4"), nullptr, 4));
  CHECK(flushed.size() == 1);
  CHECK(clock.fire_all() == 1);
  REQUIRE(flushed.size() == 2);
  CHECK(ids_of(flushed[1]) == std::vector<std::string>{"id3", "id4"});
  stale();  // and with no batch open at all, still nothing
  CHECK(flushed.size() == 2);
}

TEST_CASE("pipeline: Batcher keeps tenants in separate batches") {
  FakeBackend backend;
  ManualClock clock;
  std::vector<std::vector<PendingRequest>> flushed;
  Batcher batcher({milliseconds(2), 3}, clock.schedule(),
                  [&](std::vector<PendingRequest> b) { flushed.push_back(std::move(b)); });
  batcher.submit(pending(make_request(&backend, "A", 1, "a1", "sk-alice"), nullptr, 0));
  batcher.submit(pending(make_request(&backend, "A", 1, "b1", "sk-bob"), nullptr, 1));
  batcher.submit(pending(make_request(&backend, "A", 1, "a2", "sk-alice"), nullptr, 2));
  batcher.submit(pending(make_request(&backend, "A", 1, "b2", "sk-bob"), nullptr, 3));
  CHECK(flushed.empty());
  CHECK(clock.tasks.size() == 2);  // one window per tenant
  // batch_max counts per tenant: alice's third request closes alice's batch only.
  batcher.submit(pending(make_request(&backend, "A", 1, "a3", "sk-alice"), nullptr, 4));
  REQUIRE(flushed.size() == 1);
  CHECK(ids_of(flushed[0]) == std::vector<std::string>{"a1", "a2", "a3"});
  CHECK(clock.fire_all() == 2);
  REQUIRE(flushed.size() == 2);
  CHECK(ids_of(flushed[1]) == std::vector<std::string>{"b1", "b2"});
  for (auto& batch : flushed)
    for (auto& p : batch) CHECK(p.request.tenant == batch.front().request.tenant);
}

// ---------------------------------------------------------------------------------
// 4.-6. Cacher semantics

TEST_CASE("pipeline: the paper's example: single flight across namespaces, deficit only") {
  Harness h;
  auto& backend = h.backend;
  auto base = make_request(&backend, "A", 1);

  // ns A asks n=3: one call of size 3, A gets 0-2 in flight.
  Assignment a1 = h.submit_now(make_request(&backend, "A", 3));
  CHECK(backend.sizes() == std::vector<uint32_t>{3});
  CHECK(indices(a1) == range(0, 3));
  CHECK(all_in_flight(a1));
  CHECK(a1.stored() == 0);
  CHECK(h.pipeline->lists().generations_in_flight() == 1);

  // ns B asks n=2 while it is in flight: no new call, joins it, gets 0-1.
  Assignment b = h.submit_now(make_request(&backend, "B", 2));
  CHECK(backend.calls.size() == 1);
  CHECK(indices(b) == range(0, 2));
  CHECK(all_in_flight(b));
  CHECK(b.slots[0].gen == a1.slots[0].gen);
  CHECK(b.slots[1].choice == 1);

  CHECK(count_of(*h.store, base) == 0);
  FakeBackend::complete(backend.calls[0]);
  CHECK(count_of(*h.store, base) == 3);
  CHECK(cursor_of(*h.store, "A", base) == 3);
  CHECK(cursor_of(*h.store, "B", base) == 2);
  CHECK(h.pipeline->lists().generations_in_flight() == 0);

  // After completion ns C asks n=4: one call of size 1, C gets 0-3 (0-2 stored).
  Assignment c = h.submit_now(make_request(&backend, "C", 4));
  CHECK(backend.sizes() == std::vector<uint32_t>{3, 1});
  CHECK(indices(c) == range(0, 4));
  CHECK(c.stored() == 3);
  for (int i = 0; i < 3; ++i) CHECK(c.slots[i].sample != nullptr);
  REQUIRE(c.slots[3].gen != nullptr);
  CHECK_FALSE(c.slots[3].sample != nullptr);
  CHECK(c.slots[3].gen == backend.calls[1]);

  // Then A asks n=1: index 3, joins C's call, no new call.
  Assignment a2 = h.submit_now(make_request(&backend, "A", 1));
  CHECK(backend.calls.size() == 2);
  CHECK(indices(a2) == std::vector<uint64_t>{3});
  CHECK(a2.slots[0].gen == backend.calls[1]);

  FakeBackend::complete(backend.calls[1]);
  CHECK(count_of(*h.store, base) == 4);
  // The same samples behind the same indices, whoever was served them.
  auto a_all = contents(a1);
  a_all.push_back(content_of(a2.slots[0]));
  CHECK(contents(c) == a_all);
  CHECK(contents(b) == std::vector<std::string>{a_all[0], a_all[1]});
  CHECK(stored_contents(*h.store, base, 0, 4) == a_all);
  CHECK(std::set<std::string>(a_all.begin(), a_all.end()).size() == 4);
  CHECK(cursor_of(*h.store, "A", base) == 4);
  CHECK(cursor_of(*h.store, "C", base) == 4);

  // And a stored hit: D asks n=4, all stored, no call; its cursor is persisted at once.
  Assignment d = h.submit_now(make_request(&backend, "D", 4));
  CHECK(all_stored(d));
  CHECK(contents(d) == a_all);
  CHECK(backend.calls.size() == 2);
  CHECK(cursor_of(*h.store, "D", base) == 4);
}

TEST_CASE("pipeline: only the deficit is generated while a generation is in flight") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;
  Cacher cacher(*store, {});
  Assignment a = assign_ok(cacher, make_request(&backend, "A", 3));
  CHECK(backend.sizes() == std::vector<uint32_t>{3});
  Assignment b = assign_ok(cacher, make_request(&backend, "B", 4));
  CHECK(backend.sizes() == std::vector<uint32_t>{3, 1});  // exactly one extra call, of size 1
  CHECK(indices(b) == range(0, 4));
  CHECK(b.slots[0].gen == backend.calls[0]);
  CHECK(b.slots[3].gen == backend.calls[1]);
  CHECK(backend.calls[1]->first_index() == 3);
  // A third namespace for 0-3 needs nothing new.
  Assignment c = assign_ok(cacher, make_request(&backend, "C", 4));
  CHECK(backend.calls.size() == 2);
  CHECK(cacher.generations_in_flight() == 2);
  backend.complete_all();
  CHECK(cacher.generations_in_flight() == 0);
  CHECK(contents(b) == contents(c));
  CHECK(count_of(*store, make_request(&backend, "B", 1)) == 4);
  auto b_texts = contents(b);
  CHECK(contents(a) == std::vector<std::string>(b_texts.begin(), b_texts.begin() + 3));
}

TEST_CASE("pipeline: a deficit is split by the backend's max_n and committed in list order") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend(/*max_n=*/2);
  Cacher cacher(*store, {});
  auto req = make_request(&backend, "A", 5);
  Assignment a = assign_ok(cacher, req);
  CHECK(backend.sizes() == std::vector<uint32_t>{2, 2, 1});
  CHECK(indices(a) == range(0, 5));
  REQUIRE(backend.calls.size() == 3);
  CHECK(backend.calls[0]->first_index() == 0);
  CHECK(backend.calls[1]->first_index() == 2);
  CHECK(backend.calls[2]->first_index() == 4);
  CHECK(a.slots[2].gen == backend.calls[1]);
  CHECK(a.slots[2].choice == 0);
  CHECK(a.slots[4].gen == backend.calls[2]);

  // Later generations that finish first wait for the earlier ones.
  FakeBackend::complete(backend.calls[2]);
  FakeBackend::complete(backend.calls[1]);
  CHECK(count_of(*store, req) == 0);
  CHECK(cursor_of(*store, "A", req) == 0);
  FakeBackend::complete(backend.calls[0]);
  CHECK(count_of(*store, req) == 5);
  CHECK(cursor_of(*store, "A", req) == 5);
  CHECK(stored_contents(*store, req, 0, 5) == contents(a));
  CHECK(cacher.generations_in_flight() == 0);
}

// ---------------------------------------------------------------------------------
// 7. No repeats, replay, restart

TEST_CASE("pipeline: no sample repeats within a namespace - a fresh namespace replays - restarts continue") {
  Harness h(/*max_n=*/4, /*immediate=*/true);
  auto base = make_request(&h.backend, "first", 1);
  std::mt19937 rng(12345);
  std::uniform_int_distribution<uint32_t> n_of(1, 3);

  std::vector<uint64_t> served;
  std::vector<std::string> texts;
  for (int i = 0; i < 300; ++i) {
    Assignment a = h.submit_now(make_request(&h.backend, "first", n_of(rng)));
    for (auto& slot : a.slots) {
      served.push_back(slot.index());
      texts.push_back(content_of(slot));
    }
  }
  const uint64_t total = served.size();
  CHECK(served == range(0, total));  // distinct, contiguous from 0, in request order
  CHECK(std::set<std::string>(texts.begin(), texts.end()).size() == total);
  CHECK(h.backend.total() == total);  // nothing generated twice
  for (uint32_t size : h.backend.sizes()) CHECK(size <= 4);
  CHECK(count_of(*h.store, base) == total);
  CHECK(cursor_of(*h.store, "first", base) == total);
  CHECK(stored_contents(*h.store, base, 0, total) == texts);

  // A fresh namespace, with other request sizes, replays the same samples in order.
  const size_t calls_before = h.backend.calls.size();
  std::vector<std::string> replay;
  std::vector<uint64_t> replay_indices;
  while (replay.size() < total) {
    uint32_t n = std::min<uint64_t>(n_of(rng) + 1, total - replay.size());
    Assignment a = h.submit_now(make_request(&h.backend, "second", n));
    CHECK(all_stored(a));
    for (auto& slot : a.slots) {
      replay.push_back(content_of(slot));
      replay_indices.push_back(slot.index());
    }
  }
  CHECK(replay == texts);
  CHECK(replay_indices == range(0, total));
  CHECK(h.backend.calls.size() == calls_before);

  // A restart: the cursors were persisted, so each namespace continues where it stood.
  h.restart();
  CHECK(cursor_of(*h.store, "first", base) == total);
  CHECK(cursor_of(*h.store, "second", base) == total);
  Assignment next = h.submit_now(make_request(&h.backend, "first", 2));
  CHECK(indices(next) == range(total, total + 2));
  CHECK(h.backend.calls.size() == calls_before + 1);
  auto next_texts = contents(next);
  for (auto& t : next_texts) CHECK(std::find(texts.begin(), texts.end(), t) == texts.end());
  Assignment second = h.submit_now(make_request(&h.backend, "second", 2));
  CHECK(indices(second) == range(total, total + 2));
  CHECK(contents(second) == next_texts);
  CHECK(h.backend.calls.size() == calls_before + 1);
  // A third namespace after the restart still starts at 0 and replays.
  Assignment third = h.submit_now(make_request(&h.backend, "third", 3));
  CHECK(contents(third) == std::vector<std::string>(texts.begin(), texts.begin() + 3));
}

// ---------------------------------------------------------------------------------
// 8. Request ids make indices independent of arrival order

namespace {

struct RunResult {
  std::map<std::string, uint64_t> index_of;
  std::map<std::string, std::string> text_of;
};

// Submits req1..req<count> in the order `ids` through the pipeline in namespace `ns`,
// fires the window once, completes whatever was generated, and collects the answers.
RunResult run_shuffled(Harness& h, const std::string& ns, std::vector<std::string> ids,
                       const std::string& api_key = "sk-alice") {
  std::map<std::string, std::optional<Assignment>> answers;
  for (auto& id : ids) {
    h.pipeline->submit(make_request(&h.backend, ns, 1, id, api_key), [&answers, id](Assignment a) {
      REQUIRE_FALSE(answers[id].has_value());
      answers[id] = std::move(a);
    });
  }
  CHECK(answers.empty());  // everyone waits for the window
  CHECK(h.clock.fire_all() == 1);
  REQUIRE(answers.size() == ids.size());
  h.backend.complete_all();
  RunResult out;
  for (auto& [id, a] : answers) {
    REQUIRE(a.has_value());
    REQUIRE_MESSAGE(a->error == AssignError::none, a->message);
    REQUIRE(a->slots.size() == 1);
    out.index_of[id] = a->slots[0].index();
    out.text_of[id] = content_of(a->slots[0]);
  }
  return out;
}

std::vector<std::string> request_ids(int count) {
  std::vector<std::string> ids;
  for (int i = 1; i <= count; ++i) ids.push_back("req" + std::to_string(i));
  return ids;
}

}  // namespace

TEST_CASE("pipeline: 500 request ids in one batch get the same indices whatever the arrival order") {
  Harness h(/*max_n=*/128, /*immediate=*/false, BatcherOptions{milliseconds(2), 1000});
  auto base = make_request(&h.backend, "run1", 1);
  auto ids = request_ids(500);
  std::mt19937 rng(2025);

  auto shuffled = ids;
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  RunResult first = run_shuffled(h, "run1", shuffled);
  // One merged request of n=500, split by max_n 128: ceil(500/128) = 4 calls.
  CHECK(h.backend.sizes() == std::vector<uint32_t>{128, 128, 128, 116});
  CHECK(h.backend.total() == 500);
  CHECK(count_of(*h.store, base) == 500);
  // Natural order of the ids decides: req<k> gets index k-1.
  std::set<uint64_t> distinct;
  for (int k = 1; k <= 500; ++k) {
    CHECK(first.index_of["req" + std::to_string(k)] == uint64_t(k - 1));
    distinct.insert(first.index_of["req" + std::to_string(k)]);
  }
  CHECK(distinct.size() == 500);
  CHECK(cursor_of(*h.store, "run1", base) == 500);

  // Fresh namespaces, other shuffles, the samples exist now: the same mapping, the same
  // samples, and no backend call.
  for (const char* ns : {"run2", "run3"}) {
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    RunResult again = run_shuffled(h, ns, shuffled);
    CHECK(again.index_of == first.index_of);
    CHECK(again.text_of == first.text_of);
    CHECK(h.backend.calls.size() == 4);
  }

  // A first run on another fresh store, in yet another order: the same id -> index map.
  Harness other(/*max_n=*/128, /*immediate=*/false, BatcherOptions{milliseconds(2), 1000});
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  RunResult fresh = run_shuffled(other, "run1", shuffled);
  CHECK(fresh.index_of == first.index_of);
  CHECK(other.backend.sizes() == std::vector<uint32_t>{128, 128, 128, 116});
}

TEST_CASE("pipeline: two tenants with identical requests share nothing") {
  Harness h(/*max_n=*/128, /*immediate=*/false, BatcherOptions{milliseconds(2), 1000});
  auto ids = request_ids(500);
  std::vector<std::pair<std::string, std::string>> order;  // (api key, id)
  for (auto& id : ids) {
    order.emplace_back("sk-alice", id);
    order.emplace_back("sk-bob", id);
  }
  std::mt19937 rng(99);
  std::shuffle(order.begin(), order.end(), rng);

  std::map<std::pair<std::string, std::string>, Assignment> answers;
  for (auto& [api_key, id] : order) {
    auto key = std::make_pair(api_key, id);
    h.pipeline->submit(make_request(&h.backend, "ns", 1, id, api_key),
                       [&answers, key](Assignment a) { answers[key] = std::move(a); });
  }
  CHECK(answers.empty());
  CHECK(h.clock.fire_all() == 2);  // one batch per tenant
  REQUIRE(answers.size() == 1000);
  // Separate generations: 4 calls per tenant.
  CHECK(h.backend.sizes() == std::vector<uint32_t>{128, 128, 128, 116, 128, 128, 128, 116});
  h.backend.complete_all();

  auto alice = make_request(&h.backend, "ns", 1, "", "sk-alice");
  auto bob = make_request(&h.backend, "ns", 1, "", "sk-bob");
  CHECK_FALSE(alice.key == bob.key);
  CHECK(count_of(*h.store, alice) == 500);  // separate lists
  CHECK(count_of(*h.store, bob) == 500);
  std::set<std::string> alice_texts, bob_texts;
  std::set<const Generation*> alice_gens, bob_gens;
  for (auto& [key, a] : answers) {
    REQUIRE(a.error == AssignError::none);
    REQUIRE(a.slots.size() == 1);
    const int k = std::stoi(key.second.substr(3));
    CHECK(a.slots[0].index() == uint64_t(k - 1));
    (key.first == "sk-alice" ? alice_texts : bob_texts).insert(content_of(a.slots[0]));
    (key.first == "sk-alice" ? alice_gens : bob_gens).insert(a.slots[0].gen.get());
  }
  CHECK(alice_texts.size() == 500);
  CHECK(bob_texts.size() == 500);
  for (auto& t : alice_texts) CHECK(bob_texts.count(t) == 0);
  for (auto* g : alice_gens) CHECK(bob_gens.count(g) == 0);
  CHECK(stored_contents(*h.store, alice, 0, 500) != stored_contents(*h.store, bob, 0, 500));
}

// ---------------------------------------------------------------------------------
// 9. Failures

TEST_CASE("pipeline: a failed generation fails its waiters, stores nothing, gives the cursor back") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);

  SUBCASE("on an empty list") {
    Assignment a = assign_ok(cacher, make_request(&backend, "A", 3));
    Assignment b = assign_ok(cacher, make_request(&backend, "B", 2));
    REQUIRE(backend.calls.size() == 1);
    int heard = 0;
    a.slots[0].gen->subscribe([&] { ++heard; });
    FakeBackend::fail(backend.calls[0]);
    CHECK(heard == 1);
    for (auto* as : {&a, &b})
      for (auto& slot : as->slots) {
        REQUIRE(slot.gen != nullptr);
        CHECK(slot.gen->view().state == Generation::State::failed);
        CHECK(slot.gen->error().status == 503);
      }
    CHECK(count_of(*store, base) == 0);
    CHECK(cursor_of(*store, "A", base) == 0);
    CHECK(cacher.generations_in_flight() == 0);

    // The next request in each namespace gets the same indices again, from a new call.
    Assignment a2 = assign_ok(cacher, make_request(&backend, "A", 3));
    CHECK(indices(a2) == range(0, 3));
    Assignment b2 = assign_ok(cacher, make_request(&backend, "B", 2));
    CHECK(indices(b2) == range(0, 2));
    CHECK(backend.sizes() == std::vector<uint32_t>{3, 3});
    FakeBackend::complete(backend.calls[1]);
    CHECK(count_of(*store, base) == 3);
    CHECK(cursor_of(*store, "A", base) == 3);
    CHECK(cursor_of(*store, "B", base) == 2);
    CHECK(contents(b2) == std::vector<std::string>{contents(a2)[0], contents(a2)[1]});
  }

  SUBCASE("behind stored samples") {
    Assignment warm = assign_ok(cacher, make_request(&backend, "warm", 2));
    FakeBackend::complete(backend.calls[0]);
    REQUIRE(count_of(*store, base) == 2);
    Assignment a = assign_ok(cacher, make_request(&backend, "A", 4));  // 0-1 stored, 2-3 new
    CHECK(a.stored() == 2);
    CHECK(backend.sizes() == std::vector<uint32_t>{2, 2});
    CHECK(cursor_of(*store, "A", base) == 0);  // a JSON request consumes nothing before its end
    FakeBackend::fail(backend.calls[1]);
    CHECK(a.slots[2].gen->view().state == Generation::State::failed);
    CHECK(count_of(*store, base) == 2);  // unchanged
    // The JSON client saw nothing: A gets all of it back, so its retry reads exactly
    // what it would have read without the failure (0-1 stored, 2-3 from a new call).
    Assignment a2 = assign_ok(cacher, make_request(&backend, "A", 4));
    CHECK(indices(a2) == range(0, 4));
    CHECK(a2.stored() == 2);
    CHECK(backend.sizes() == std::vector<uint32_t>{2, 2, 2});
    FakeBackend::complete(backend.calls[2]);
    CHECK(count_of(*store, base) == 4);
    CHECK(cursor_of(*store, "A", base) == 4);
    // warm's cursor stays where it was.
    CHECK(cursor_of(*store, "warm", base) == 2);
    CHECK(contents(warm) == stored_contents(*store, base, 0, 2));
  }

  SUBCASE("behind stored samples, streamed: the stored ones count as served, on disk at once") {
    Assignment warm = assign_ok(cacher, make_request(&backend, "warm", 2));
    FakeBackend::complete(backend.calls[0]);
    auto r = make_request(&backend, "A", 4);
    r.stream = true;
    Assignment a = assign_ok(cacher, r);  // 0-1 stored, 2-3 new
    CHECK(a.stored() == 2);
    // Its client may receive 0-1 in full before the generation ends: persisted now,
    // so neither a restart nor an eviction can serve them to A again (I1).
    CHECK(cursor_of(*store, "A", base) == 2);
    FakeBackend::fail(backend.calls[1]);
    CHECK(cursor_of(*store, "A", base) == 2);
    Assignment a2 = assign_ok(cacher, make_request(&backend, "A", 2));
    CHECK(indices(a2) == range(2, 4));
    FakeBackend::complete(backend.calls[2]);
    CHECK(cursor_of(*store, "A", base) == 4);
  }
}

TEST_CASE("pipeline: when the first of two generations fails, its indices are made again, the second keeps its own") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);

  Assignment a1 = assign_ok(cacher, make_request(&backend, "A", 3));  // gen1: 0-2
  Assignment a2 = assign_ok(cacher, make_request(&backend, "A", 2));  // gen2: 3-4, only on gen2
  REQUIRE(backend.sizes() == std::vector<uint32_t>{3, 2});
  auto gen1 = backend.calls[0];
  auto gen2 = backend.calls[1];
  CHECK(indices(a2) == range(3, 5));
  CHECK(gen2->first_index() == 3);

  // The second finishes first and waits in memory for the first.
  FakeBackend::complete(gen2);
  CHECK(count_of(*store, base) == 0);
  CHECK(gen2->view().state == Generation::State::done);  // its waiters may read it already

  FakeBackend::fail(gen1);
  for (auto& slot : a1.slots) CHECK(slot.gen->view().state == Generation::State::failed);
  // I2: a2's client was told 3-4, and 3-4 they stay. gen2 waits on 0-2, so the Cacher
  // makes them again (a repair: same indices, same request).
  CHECK(gen2->first_index() == 3);
  CHECK(indices(a2) == range(3, 5));
  REQUIRE(backend.sizes() == std::vector<uint32_t>{3, 2, 3});
  auto repair = backend.calls[2];
  CHECK(repair->first_index() == 0);
  CHECK(cacher.repairs() == 1);
  CHECK(count_of(*store, base) == 0);
  FakeBackend::complete(repair);
  CHECK(count_of(*store, base) == 5);
  CHECK(stored_contents(*store, base, 3, 2) == contents(a2));
  // A reserved 3-4 after the failed 0-2: it skips 0-2 (never saw them) and stands at 5.
  CHECK(cursor_of(*store, "A", base) == 5);
  Assignment a3 = assign_ok(cacher, make_request(&backend, "A", 1));
  CHECK(indices(a3) == std::vector<uint64_t>{5});
  FakeBackend::complete(backend.calls[3]);
  // Another namespace replays the list as committed.
  Assignment other = assign_ok(cacher, make_request(&backend, "other", 6));
  CHECK(all_stored(other));
  CHECK(contents(other)[3] == contents(a2)[0]);
  CHECK(contents(other)[4] == contents(a2)[1]);
  CHECK(contents(other)[5] == contents(a3)[0]);
  CHECK(cacher.generations_in_flight() == 0);
}

TEST_CASE("pipeline: a repair that keeps failing cuts the list at the hole, cursors come back to it") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);

  Assignment a1 = assign_ok(cacher, make_request(&backend, "A", 1));  // gen1: 0
  Assignment a2 = assign_ok(cacher, make_request(&backend, "B", 2));  // joins 0, gen2: 1
  REQUIRE(backend.sizes() == std::vector<uint32_t>{1, 1});
  FakeBackend::complete(backend.calls[1]);
  FakeBackend::fail(backend.calls[0]);
  for (int attempt = 0; attempt < 3; ++attempt) {
    REQUIRE(backend.calls.size() == size_t(3 + attempt));
    CHECK(backend.calls.back()->first_index() == 0);
    FakeBackend::fail(backend.calls.back());
  }
  CHECK(backend.calls.size() == 5);  // three repairs, then the Cacher gives up
  CHECK(cacher.generations_in_flight() == 0);
  CHECK(count_of(*store, base) == 0);
  // Nothing is left in flight, every cursor stands at the cut: the next requests
  // make index 0 afresh.
  Assignment a3 = assign_ok(cacher, make_request(&backend, "A", 1));
  Assignment b3 = assign_ok(cacher, make_request(&backend, "B", 1));
  CHECK(indices(a3) == std::vector<uint64_t>{0});
  CHECK(indices(b3) == std::vector<uint64_t>{0});
  FakeBackend::complete(backend.calls.back());
  CHECK(count_of(*store, base) == 1);
}

TEST_CASE("pipeline: a failure in the middle of a namespace's reservations never repeats a sample") {
  // max_n 3: A's first request (n=5) spans gen1 (0-2) and gen2 (3-4); its second (n=1)
  // makes gen3 (5). gen1 fails: A's first request fails; its share of gen2 must not be
  // handed to A again while A's second request holds what follows.
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend(/*max_n=*/3);
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);

  Assignment r1 = assign_ok(cacher, make_request(&backend, "A", 5));
  Assignment r2 = assign_ok(cacher, make_request(&backend, "A", 1));
  REQUIRE(backend.sizes() == std::vector<uint32_t>{3, 2, 1});
  auto gen1 = backend.calls[0], gen2 = backend.calls[1], gen3 = backend.calls[2];
  CHECK(indices(r2) == std::vector<uint64_t>{5});

  FakeBackend::fail(gen1);
  // Nothing moves: gen1's indices are made again by a repair.
  CHECK(gen2->first_index() == 3);
  CHECK(gen3->first_index() == 5);
  const uint64_t r2_index = r2.slots[0].index();
  CHECK(r2_index == 5);
  REQUIRE(backend.sizes() == std::vector<uint32_t>{3, 2, 1, 3});

  // Whatever A asks next, it never gets r2's index (nor r2's sample) again.
  Assignment r3 = assign_ok(cacher, make_request(&backend, "A", 2));
  Assignment r4 = assign_ok(cacher, make_request(&backend, "A", 2));
  backend.complete_all();
  std::vector<uint64_t> served = {r2.slots[0].index()};
  std::vector<std::string> texts = {content_of(r2.slots[0])};
  for (auto* a : {&r3, &r4})
    for (auto& slot : a->slots) {
      served.push_back(slot.index());
      texts.push_back(content_of(slot));
    }
  std::string listed;
  for (uint64_t i : served) listed += std::to_string(i) + " ";
  INFO("indices served to A's successful requests: " << listed);
  CHECK(std::set<uint64_t>(served.begin(), served.end()).size() == served.size());
  CHECK(std::set<std::string>(texts.begin(), texts.end()).size() == texts.size());
  // And the list committed is consistent with what was served.
  for (auto* a : {&r2, &r3, &r4})
    for (auto& slot : a->slots)
      CHECK(stored_contents(*store, base, slot.index(), 1) == std::vector<std::string>{content_of(slot)});
  CHECK(cacher.generations_in_flight() == 0);
  // A's persisted cursor is past everything it was served.
  CHECK(cursor_of(*store, "A", base) > *std::max_element(served.begin(), served.end()));
}

TEST_CASE("pipeline: a generation failing behind a running one: JSON requests get all they reserved back") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend(/*max_n=*/2);
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);

  Assignment a = assign_ok(cacher, make_request(&backend, "A", 5));  // g1 0-1, g2 2-3, g3 4
  Assignment b = assign_ok(cacher, make_request(&backend, "B", 3));  // joins g1 and g2
  REQUIRE(backend.sizes() == std::vector<uint32_t>{2, 2, 1});
  auto g1 = backend.calls[0], g2 = backend.calls[1], g3 = backend.calls[2];
  CHECK(b.slots[2].gen == g2);

  FakeBackend::fail(g2);
  CHECK(a.slots[2].gen->view().state == Generation::State::failed);
  CHECK(b.slots[2].gen->view().state == Generation::State::failed);
  CHECK(g1->first_index() == 0);
  CHECK(g3->first_index() == 4);
  REQUIRE(backend.sizes() == std::vector<uint32_t>{2, 2, 1, 2});  // g2's 2-3 again
  auto repair = backend.calls[3];
  CHECK(repair->first_index() == 2);
  FakeBackend::complete(g3);  // waits for g1 and the repair
  FakeBackend::complete(g1);
  CHECK(count_of(*store, base) == 2);
  FakeBackend::complete(repair);
  CHECK(count_of(*store, base) == 5);
  CHECK(stored_contents(*store, base, 0, 2) == std::vector<std::string>{content_of(a.slots[0]), content_of(a.slots[1])});
  CHECK(stored_contents(*store, base, 4, 1) == std::vector<std::string>{content_of(a.slots[4])});
  CHECK(cacher.generations_in_flight() == 0);

  // Both were JSON requests that failed: their clients saw nothing, and each
  // namespace reads from where it stood before, with no new call.
  CHECK(cursor_of(*store, "A", base) == 0);
  CHECK(cursor_of(*store, "B", base) == 0);
  Assignment b2 = assign_ok(cacher, make_request(&backend, "B", 3));
  CHECK(indices(b2) == range(0, 3));
  CHECK(all_stored(b2));
  Assignment a2 = assign_ok(cacher, make_request(&backend, "A", 5));
  CHECK(indices(a2) == range(0, 5));
  CHECK(all_stored(a2));
  CHECK(contents(a2)[4] == content_of(a.slots[4]));
  CHECK(backend.calls.size() == 4);
  CHECK(cursor_of(*store, "A", base) == 5);
  CHECK(cursor_of(*store, "B", base) == 3);
}

TEST_CASE("pipeline: one batch, two namespaces: merged per namespace, one generation for both") {
  Harness h;
  std::map<std::string, Assignment> answers;
  auto submit = [&](const std::string& ns, uint32_t n, const std::string& id) {
    h.pipeline->submit(make_request(&h.backend, ns, n, id), [&answers, id](Assignment a) { answers[id] = std::move(a); });
  };
  submit("B", 3, "req2");
  submit("A", 1, "req3");
  submit("A", 2, "req1");
  CHECK(answers.empty());
  CHECK(h.clock.fire_all() == 1);
  REQUIRE(answers.size() == 3);
  // Sorted: req1 (A), req2 (B), req3 (A); A's two merge into n=3 and go first.
  CHECK(h.backend.sizes() == std::vector<uint32_t>{3});
  CHECK(indices(answers["req1"]) == range(0, 2));
  CHECK(indices(answers["req3"]) == std::vector<uint64_t>{2});
  CHECK(indices(answers["req2"]) == range(0, 3));
  h.backend.complete_all();
  auto a = contents(answers["req1"]);
  a.push_back(contents(answers["req3"])[0]);
  CHECK(contents(answers["req2"]) == a);
}

TEST_CASE("pipeline: reset_namespace replays from 0 - requests in flight keep what they reserved") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);
  Assignment first = assign_ok(cacher, make_request(&backend, "A", 3));
  FakeBackend::complete(backend.calls[0]);
  Assignment inflight = assign_ok(cacher, make_request(&backend, "A", 1));  // index 3, in flight
  CHECK(indices(inflight) == std::vector<uint64_t>{3});

  SUBCASE("the namespace is used again before the generation ends") {
    REQUIRE(cacher.reset_namespace("A").ok());
    CHECK(cursor_of(*store, "A", base) == 0);
    Assignment again = assign_ok(cacher, make_request(&backend, "A", 2));
    CHECK(indices(again) == range(0, 2));
    CHECK(all_stored(again));
    CHECK(contents(again) == std::vector<std::string>{contents(first)[0], contents(first)[1]});
    FakeBackend::complete(backend.calls[1]);
    CHECK(indices(inflight) == std::vector<uint64_t>{3});
    CHECK(count_of(*store, base) == 4);
    CHECK(cursor_of(*store, "A", base) == 2);  // the commit does not undo the reset
  }
  SUBCASE("the generation ends first") {
    REQUIRE(cacher.reset_namespace("A").ok());
    FakeBackend::complete(backend.calls[1]);
    CHECK(count_of(*store, base) == 4);
    CHECK(cursor_of(*store, "A", base) == 0);
    Assignment again = assign_ok(cacher, make_request(&backend, "A", 4));
    CHECK(indices(again) == range(0, 4));
    CHECK(all_stored(again));
  }
  CHECK(backend.calls.size() == 2);
}

// ---------------------------------------------------------------------------------
// 10. Greedy, explicit indices, only-cached

TEST_CASE("pipeline: a namespace reset is never undone by a hit's cursor write landing after it") {
  // A hit persists its cursor move after releasing the key's lock. A reset landing
  // between the two used to be undone: the late write put the old cursor back, and the
  // namespace went on from there instead of replaying from 0. One thread reads the
  // namespace hit after hit while the test resets it: the first read after each reset
  // must be index 0, and the reads before it must be consecutive.
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend(/*max_n=*/128, /*immediate=*/true);
  Cacher cacher(*store, {});
  assign_ok(cacher, make_request(&backend, "warm", 1000));
  REQUIRE(count_of(*store, make_request(&backend, "X", 1)) == 1000);
  for (int round = 0; round < 200; ++round) {
    CAPTURE(round);
    REQUIRE(cacher.reset_namespace("X").ok());
    std::atomic<int> done{0};
    std::atomic<bool> stop{false};
    std::vector<uint64_t> seen;
    std::thread reader([&] {
      while (!stop.load() && seen.size() < 900) {
        Assignment a = cacher.assign(make_request(&backend, "X", 1));
        if (a.error != AssignError::none) break;
        seen.push_back(a.slots.at(0).index());
        done.fetch_add(1);
      }
    });
    while (done.load() < 20 + round % 17) std::this_thread::yield();
    REQUIRE(cacher.reset_namespace("X").ok());
    const int at_reset = done.load();
    while (done.load() < at_reset + 5 && done.load() < 900) std::this_thread::yield();
    stop.store(true);
    reader.join();
    // One run from 0, then (after the reset) a second run from 0.
    size_t descent = 0;
    for (size_t i = 1; i < seen.size(); ++i)
      if (seen[i] != seen[i - 1] + 1) {
        REQUIRE_MESSAGE(descent == 0, "a second break in the sequence at " << i);
        descent = i;
      }
    REQUIRE(seen.front() == 0);
    REQUIRE_MESSAGE(descent > 0, "the reset left no trace: the namespace went on from " << seen.back());
    CHECK(seen[descent] == 0);
  }
  CHECK(backend.calls.size() == 8);  // the warm-up's 1000 samples only
}

TEST_CASE("pipeline: greedy requests reuse sample 0 and only record that they read it") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;
  Cacher cacher(*store, {});
  auto greedy = [&](const std::string& ns, uint32_t n) {
    auto r = make_request(&backend, ns, n, "", "sk-alice", chat_body("hi", 0.0));
    r.pick = Pick::greedy;
    return r;
  };
  Assignment g1 = assign_ok(cacher, greedy("A", 3));
  CHECK(backend.sizes() == std::vector<uint32_t>{1});
  CHECK(indices(g1) == std::vector<uint64_t>{0, 0, 0});
  for (auto& slot : g1.slots) CHECK(slot.gen == backend.calls[0]);
  // Another greedy request while it runs joins it.
  Assignment g2 = assign_ok(cacher, greedy("B", 2));
  CHECK(backend.calls.size() == 1);
  FakeBackend::complete(backend.calls[0]);
  auto base = greedy("A", 1);
  CHECK(count_of(*store, base) == 1);
  const std::string zero = content_of(g1.slots[0]);
  CHECK(contents(g1) == std::vector<std::string>(3, zero));
  CHECK(contents(g2) == std::vector<std::string>(2, zero));

  Assignment g3 = assign_ok(cacher, greedy("A", 4));
  CHECK(all_stored(g3));
  CHECK(indices(g3) == std::vector<uint64_t>{0, 0, 0, 0});
  CHECK(contents(g3) == std::vector<std::string>(4, zero));
  CHECK(backend.calls.size() == 1);
  // Each namespace's cursor records that it read sample 0 (its summary and its export
  // count it), and no more, however many greedy requests it made.
  CHECK(cursor_of(*store, "A", base) == 1);
  CHECK(cursor_of(*store, "B", base) == 1);
  CHECK(cursor_of(*store, "C", base) == 0);
  // Greedy requests never read the cursor: a namespace that never made one reuses
  // sample 0 too, and its cursor is marked by a hit.
  Assignment g4 = assign_ok(cacher, greedy("C", 1));
  CHECK(contents(g4) == std::vector<std::string>(1, zero));
  CHECK(cursor_of(*store, "C", base) == 1);
  // A cursor request of the same key (greedy_reuse turned off) goes on after sample 0,
  // which the namespace was already served.
  auto cursor_req = greedy("A", 2);
  cursor_req.pick = Pick::cursor;
  Assignment c = assign_ok(cacher, cursor_req);
  CHECK(indices(c) == range(1, 3));
}

TEST_CASE("pipeline: explicit indices serve exactly those, leave the cursor, generate the deficit") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);
  auto expl = [&](uint64_t first, uint32_t n) {
    auto r = make_request(&backend, "A", n);
    r.pick = Pick::explicit_range;
    r.first = first;
    return r;
  };
  Assignment warm = assign_ok(cacher, make_request(&backend, "warm", 3));
  FakeBackend::complete(backend.calls[0]);
  REQUIRE(count_of(*store, base) == 3);
  auto list = contents(warm);

  Assignment e1 = assign_ok(cacher, expl(1, 2));
  CHECK(indices(e1) == std::vector<uint64_t>{1, 2});
  CHECK(all_stored(e1));
  CHECK(contents(e1) == std::vector<std::string>{list[1], list[2]});
  CHECK(backend.calls.size() == 1);

  // Beyond the list: the list grows by the deficit (3..6) in one call; 5-6 are served.
  Assignment e2 = assign_ok(cacher, expl(5, 2));
  CHECK(backend.sizes() == std::vector<uint32_t>{3, 4});
  CHECK(indices(e2) == std::vector<uint64_t>{5, 6});
  CHECK(e2.slots[0].gen == backend.calls[1]);
  CHECK(e2.slots[0].choice == 2);
  FakeBackend::complete(backend.calls[1]);
  CHECK(count_of(*store, base) == 7);
  CHECK(stored_contents(*store, base, 5, 2) == contents(e2));

  // A's cursor never moved: its first cursor request gets 0.
  CHECK(cursor_of(*store, "A", base) == 0);
  Assignment c = assign_ok(cacher, make_request(&backend, "A", 2));
  CHECK(indices(c) == range(0, 2));
  CHECK(contents(c) == std::vector<std::string>{list[0], list[1]});
  // A range straddling the end: stored part plus the deficit.
  Assignment e3 = assign_ok(cacher, expl(6, 3));
  CHECK(indices(e3) == std::vector<uint64_t>{6, 7, 8});
  CHECK(e3.stored() == 1);
  CHECK(backend.sizes() == std::vector<uint32_t>{3, 4, 2});
  backend.complete_all();
  CHECK(count_of(*store, base) == 9);
  CHECK(cursor_of(*store, "A", base) == 2);
}

TEST_CASE("pipeline: only-cached refuses what is not stored, generates nothing, moves nothing") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);
  auto only = [&](const std::string& ns, uint32_t n) {
    auto r = make_request(&backend, ns, n);
    r.only_cached = true;
    return r;
  };

  // Nothing stored at all.
  Assignment miss = cacher.assign(only("A", 1));
  CHECK(miss.error == AssignError::not_cached);
  CHECK(miss.slots.empty());
  CHECK_FALSE(miss.message.empty());
  CHECK(backend.calls.empty());

  assign_ok(cacher, make_request(&backend, "warm", 3));
  // In flight is not stored.
  CHECK(cacher.assign(only("A", 1)).error == AssignError::not_cached);
  FakeBackend::complete(backend.calls[0]);

  // Partly stored: refused whole, nothing generated, cursor untouched.
  Assignment partial = cacher.assign(only("A", 4));
  CHECK(partial.error == AssignError::not_cached);
  CHECK(partial.slots.empty());
  CHECK(backend.calls.size() == 1);
  CHECK(cursor_of(*store, "A", base) == 0);
  // All stored: served, and the cursor moves as for any request.
  Assignment hit = assign_ok(cacher, only("A", 2));
  CHECK(all_stored(hit));
  CHECK(indices(hit) == range(0, 2));
  CHECK(cursor_of(*store, "A", base) == 2);
  Assignment refused = cacher.assign(only("A", 2));  // would need 2-3
  CHECK(refused.error == AssignError::not_cached);
  CHECK(cursor_of(*store, "A", base) == 2);
  Assignment last = assign_ok(cacher, only("A", 1));
  CHECK(indices(last) == std::vector<uint64_t>{2});
  // Explicit and greedy only-cached follow the same rule.
  auto expl = only("A", 2);
  expl.pick = Pick::explicit_range;
  expl.first = 2;
  CHECK(cacher.assign(expl).error == AssignError::not_cached);
  auto greedy = make_request(&backend, "A", 2, "", "sk-alice", chat_body("hi", 0.0));
  greedy.pick = Pick::greedy;
  greedy.only_cached = true;
  CHECK(cacher.assign(greedy).error == AssignError::not_cached);
  CHECK(backend.calls.size() == 1);
  CHECK(count_of(*store, base) == 3);

  // Through the pipeline too: the error reaches the client, nothing generated.
  Harness h;
  std::optional<Assignment> answer;
  auto through = make_request(&h.backend, "A", 1);
  through.only_cached = true;
  h.pipeline->submit(through, [&](Assignment a) { answer = std::move(a); });
  REQUIRE(answer.has_value());
  CHECK(answer->error == AssignError::not_cached);
  CHECK(h.backend.calls.empty());
  CHECK(backend.calls.size() == 1);
}

// ---------------------------------------------------------------------------------
// 11. Commit before visibility

TEST_CASE("pipeline: a waiter that sees its generation done finds the samples stored") {
  Harness h;
  auto base = make_request(&h.backend, "A", 1);
  Assignment a = h.submit_now(make_request(&h.backend, "A", 3));
  Assignment b = h.submit_now(make_request(&h.backend, "B", 1));
  REQUIRE(h.backend.calls.size() == 1);
  auto gen = h.backend.calls[0];

  struct Seen {
    Generation::State state;
    uint64_t count;
    uint64_t cursor_a;
    uint64_t cursor_b;
  };
  std::vector<Seen> seen;
  gen->subscribe([&] {
    seen.push_back({gen->view().state, count_of(*h.store, base), cursor_of(*h.store, "A", base),
                    cursor_of(*h.store, "B", base)});
  });
  // Streamed pieces are visible while running, before anything is stored.
  gen->publish(0, {{"delta", {{"content", "par"}}}});
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].state == Generation::State::running);
  CHECK(seen[0].count == 0);
  CHECK(gen->view().event_count == 1);

  FakeBackend::complete(gen);
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].state == Generation::State::done);
  CHECK(seen[1].count == 3);     // committed before the waiter heard of it
  CHECK(seen[1].cursor_a == 3);  // with the cursors, in the same write
  CHECK(seen[1].cursor_b == 1);

  // A listener subscribed after the end is called once, and sees the same.
  int late = 0;
  gen->subscribe([&] {
    ++late;
    CHECK(gen->view().state == Generation::State::done);
    CHECK(count_of(*h.store, base) == 3);
  });
  CHECK(late == 1);
  CHECK(contents(a)[0] == contents(b)[0]);
}

TEST_CASE("pipeline: a key read by thousands of namespaces drops its in-memory cursors, and none repeats") {
  Harness h(/*max_n=*/128, /*immediate=*/true);
  h.submit_now(make_request(&h.backend, "ns-0", 2));  // samples 0-1 exist
  // 6000 namespaces, each taking sample 0: more than one key keeps in memory.
  for (int i = 1; i <= 6000; ++i) {
    Assignment a = h.submit_now(make_request(&h.backend, "sweep-" + std::to_string(i), 1));
    CHECK(a.slots.front().index() == 0);
  }
  // Every namespace continues from its persisted cursor, reloaded after the drop.
  for (int i : {1, 2, 4097, 6000}) {
    Assignment a = h.submit_now(make_request(&h.backend, "sweep-" + std::to_string(i), 1));
    CHECK(a.slots.front().index() == 1);
  }
  CHECK(h.submit_now(make_request(&h.backend, "ns-0", 1)).slots.front().index() == 2);
  CHECK(h.backend.calls.size() == 2);  // ns-0's first request, and its sample 2
}

// ---------------------------------------------------------------------------------
// 10. Cancellation: every client of a generation left

namespace {

// A FakeBackend whose generations can stop early, as the engine's can: the canceller
// counts the call and fails the generation at once.
class StoppableBackend : public FakeBackend {
 public:
  void generate(std::shared_ptr<Generation> gen) override {
    gen->set_canceller([this, g = gen.get()] {
      ++cancelled;
      g->fail({503, R"({"error":{"message":"cancelled","type":"server_error","param":null,"code":"overloaded"}})", {}});
    });
    FakeBackend::generate(std::move(gen));
  }
  int cancelled = 0;
};

void release_all(const Assignment& a) {
  for (auto& slot : a.slots)
    if (slot.claim) slot.claim->release();
}

}  // namespace

TEST_CASE("cancellation: only when the last client lets go is a stoppable generation cancelled") {
  TempDir dir;
  auto store = open_store(dir.db());
  StoppableBackend backend;
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);

  Assignment a = assign_ok(cacher, make_request(&backend, "A", 3));
  Assignment b = assign_ok(cacher, make_request(&backend, "B", 2));  // joins 0-1
  REQUIRE(backend.calls.size() == 1);
  auto gen = backend.calls[0];
  for (auto& slot : a.slots) REQUIRE(slot.claim != nullptr);
  CHECK(gen->claims() == 5);

  release_all(a);
  release_all(a);  // releasing twice counts once
  CHECK(gen->claims() == 2);
  CHECK(backend.cancelled == 0);  // B still waits
  CHECK(gen->view().state == Generation::State::running);

  release_all(b);
  CHECK(backend.cancelled == 1);
  CHECK(gen->abandoned());
  CHECK(gen->view().state == Generation::State::failed);
  CHECK(cacher.generations_in_flight() == 0);
  CHECK(count_of(*store, base) == 0);
  CHECK(cursor_of(*store, "A", base) == 0);

  // The indices went back: the next requests get them again, from a new call.
  Assignment a2 = assign_ok(cacher, make_request(&backend, "A", 3));
  CHECK(indices(a2) == range(0, 3));
  REQUIRE(backend.calls.size() == 2);
  CHECK(a2.slots[0].gen != gen);
  Assignment b2 = assign_ok(cacher, make_request(&backend, "B", 2));
  CHECK(indices(b2) == range(0, 2));
  CHECK(b2.slots[0].gen == a2.slots[0].gen);
  FakeBackend::complete(backend.calls[1]);
  CHECK(count_of(*store, base) == 3);
  CHECK(cursor_of(*store, "A", base) == 3);
  CHECK(cursor_of(*store, "B", base) == 2);
  // Late releases of ended generations change nothing.
  release_all(a2);
  release_all(b2);
  CHECK(backend.cancelled == 1);
  CHECK(count_of(*store, base) == 3);
}

TEST_CASE("cancellation: a generation that later ones wait on is not cancelled when its clients leave") {
  TempDir dir;
  auto store = open_store(dir.db());
  StoppableBackend backend;
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);

  std::optional<Assignment> a1 = assign_ok(cacher, make_request(&backend, "A", 2));  // gen1: 0-1
  Assignment a2 = assign_ok(cacher, make_request(&backend, "A", 2));                 // gen2: 2-3
  REQUIRE(backend.calls.size() == 2);
  auto gen1 = backend.calls[0];
  auto gen2 = backend.calls[1];
  a1.reset();
  // gen2 needs gen1's indices before it can be stored: stopping gen1 would only mean
  // making them again, so it runs on.
  CHECK(backend.cancelled == 0);
  CHECK(gen1->view().state == Generation::State::running);
  CHECK(gen2->first_index() == 2);
  CHECK(indices(a2) == range(2, 4));
  FakeBackend::complete(gen2);
  FakeBackend::complete(gen1);
  CHECK(count_of(*store, base) == 4);
  CHECK(cursor_of(*store, "A", base) == 4);
  CHECK(cacher.generations_in_flight() == 0);
  // The last one of a key is cancelled when its clients leave.
  std::optional<Assignment> a3 = assign_ok(cacher, make_request(&backend, "A", 1));
  a3.reset();
  CHECK(backend.cancelled == 1);
  CHECK(cursor_of(*store, "A", base) == 4);
}

TEST_CASE("cancellation: a backend that cannot stop runs on and its samples are stored") {
  TempDir dir;
  auto store = open_store(dir.db());
  FakeBackend backend;  // no canceller: an upstream call
  Cacher cacher(*store, {});
  auto base = make_request(&backend, "A", 1);
  {
    Assignment a = assign_ok(cacher, make_request(&backend, "A", 2));
    release_all(a);
  }
  REQUIRE(backend.calls.size() == 1);
  CHECK_FALSE(backend.calls[0]->abandoned());
  CHECK(backend.calls[0]->view().state == Generation::State::running);
  FakeBackend::complete(backend.calls[0]);
  CHECK(count_of(*store, base) == 2);
  CHECK(cursor_of(*store, "A", base) == 2);
}

TEST_CASE("cancellation: a generation without an owner is cancelled by its last claim, never an ending one") {
  auto request = canon(chat_body());
  int cancelled = 0;
  auto stoppable = [&](const std::shared_ptr<Generation>& gen) {
    gen->set_canceller([&cancelled, g = gen.get()] {
      ++cancelled;
      g->fail({503, "{}", {}});
    });
  };
  {
    auto gen = std::make_shared<Generation>(request, Endpoint::chat_completions, 2, false, nullptr);
    auto c1 = std::make_shared<Generation::Claim>(gen);
    auto c2 = std::make_shared<Generation::Claim>(gen);
    stoppable(gen);
    c1->release();
    CHECK(cancelled == 0);
    c2.reset();  // the destructor releases
    CHECK(cancelled == 1);
    CHECK(gen->view().state == Generation::State::failed);
    gen->cancel();  // at most once
    CHECK(cancelled == 1);
  }
  {
    // Completed first: the last release changes nothing.
    auto gen = std::make_shared<Generation>(request, Endpoint::chat_completions, 1, false, nullptr);
    auto claim = std::make_shared<Generation::Claim>(gen);
    stoppable(gen);
    FakeBackend::complete(gen);
    claim->release();
    CHECK(cancelled == 1);
    CHECK_FALSE(gen->abandoned());
    CHECK(gen->view().state == Generation::State::done);
  }
}
