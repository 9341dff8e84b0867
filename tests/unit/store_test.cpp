// store_test.cpp: the list store on a real RocksDB, each test in a fresh temporary
// directory: layout and round trips, the append rules, cursors and namespaces, a
// model-based random test with reopens, damage handling, and kill -9 under load.
#include "cache/store.hpp"
#include "../tools/crash_content.hpp"

#include <doctest/doctest.h>

#include "temp_dir.hpp"
#include <rocksdb/db.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace reprise::cache;

// The store under test lives in a fresh directory of its own.
class TempDir : public reprise::test::UnitTempDir {
 public:
  TempDir() : UnitTempDir("store_test") {}
};


std::unique_ptr<Store> OpenOk(const std::string& path, OpenReport* report = nullptr) {
  auto store = Store::Open(path, report);
  if (!store.ok()) FAIL("Open failed: " << store.error().message());
  return std::move(*store);
}

TenantId Tenant(uint8_t last, uint8_t fill = 0x11) {
  TenantId t;
  t.bytes.fill(fill);
  t.bytes[31] = last;
  return t;
}

CacheKey Key(uint8_t last, uint8_t fill = 0x00) {
  CacheKey k;
  k.bytes.fill(fill);
  k.bytes[15] = last;
  return k;
}

// A sample whose content names (tag, index): ordering mistakes show up as wrong tags.
Sample Tagged(const std::string& tag, uint64_t index) {
  Sample s;
  s.choice = {{"message", {{"role", "assistant"}, {"content", tag + "#" + std::to_string(index)}}}};
  s.finish_reason = "stop";
  s.completion_tokens = static_cast<uint32_t>(index);
  s.backend = "test";
  return s;
}

std::vector<Sample> TaggedBatch(const std::string& tag, uint64_t first, uint64_t n) {
  std::vector<Sample> out;
  for (uint64_t i = 0; i < n; ++i) out.push_back(Tagged(tag, first + i));
  return out;
}

std::string ContentOf(const Sample& s) { return s.choice["message"]["content"].get<std::string>(); }

bool Same(const Sample& a, const Sample& b) {
  return a.choice == b.choice && a.finish_reason == b.finish_reason &&
         a.completion_tokens == b.completion_tokens && a.prompt_tokens == b.prompt_tokens &&
         a.system_fingerprint == b.system_fingerprint && a.created == b.created && a.backend == b.backend &&
         a.request_sha256 == b.request_sha256 && a.energy_j == b.energy_j && a.usage_extra == b.usage_extra &&
         a.response_extra == b.response_extra;
}

uint64_t CountOk(Store& s, const TenantId& t, const CacheKey& k) {
  auto n = s.Count(t, k);
  REQUIRE_MESSAGE(n.ok(), n.error().message());
  return *n;
}

std::vector<Sample> ReadOk(Store& s, const TenantId& t, const CacheKey& k, uint64_t from, uint64_t count) {
  auto r = s.Read(t, k, from, count);
  REQUIRE_MESSAGE(r.ok(), r.error().message());
  return std::move(*r);
}

uint64_t CursorOk(Store& s, std::string_view ns, const TenantId& t, const CacheKey& k) {
  auto c = s.Cursor(ns, t, k);
  REQUIRE_MESSAGE(c.ok(), c.error().message());
  return *c;
}

std::vector<std::string> NamespacesOk(Store& s) {
  auto n = s.Namespaces();
  REQUIRE_MESSAGE(n.ok(), n.error().message());
  return std::move(*n);
}

// The raw layout (store.hpp), for tests that damage records behind the store's back.
std::string RawSampleKey(const TenantId& t, const CacheKey& k, uint64_t index) {
  std::string out(reinterpret_cast<const char*>(t.bytes.data()), 32);
  out.append(reinterpret_cast<const char*>(k.bytes.data()), 16);
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(index >> shift));
  return out;
}

// Opens the store's directory with the plain RocksDB API and hands `edit` the DB and
// its column families {default, samples, cursors, meta, requests}.
template <class F>
void WithRawDb(const std::string& path, F&& edit) {
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, {}}, {"samples", {}}, {"cursors", {}}, {"meta", {}}, {"requests", {}}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  auto s = rocksdb::DB::Open(options, path, cfs, &handles, &db);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  edit(*db, handles);
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  REQUIRE(db->Close().ok());
  delete db;
}

}  // namespace

TEST_CASE("Store: every Sample field survives a round trip, and a reopen") {
  TempDir dir;
  Sample s;
  s.choice = {{"message", {{"role", "assistant"}, {"content", "héllo \u2603 \"quoted\"\n"}}},
              {"logprobs", {{"content", {{{"token", "h"}, {"logprob", -0.25}, {"bytes", {104}}}}}}},
              {"embedding", {0.5, -1.25e-3, 3.0e10}},
              {"flag", true},
              {"nothing", nullptr}};
  s.finish_reason = "length";
  s.completion_tokens = 4294967295u;
  s.prompt_tokens = 12345;
  s.system_fingerprint = "fp_abc123";
  s.created = -1;  // any int64, signs included
  s.backend = "engine";
  for (size_t i = 0; i < 32; ++i) s.request_sha256[i] = static_cast<uint8_t>(255 - i * 7);
  s.energy_j = 0.123456789;  // measured: stored; the default (-1, not measured) is not
  s.usage_extra = {{"completion_tokens_details", {{"reasoning_tokens", 7}}}, {"cost", 0.5}};
  s.response_extra = {{"service_tier", "default"}};
  Sample empty;  // every field at its default

  const TenantId t = Tenant(1);
  const CacheKey k = Key(1);
  {
    auto store = OpenOk(dir.db());
    REQUIRE(store->Append(t, k, 0, {s, empty}, {}).ok());
    auto got = ReadOk(*store, t, k, 0, 2);
    REQUIRE(got.size() == 2);
    CHECK(Same(got[0], s));
    CHECK(Same(got[1], empty));
  }
  auto store = OpenOk(dir.db());
  auto got = ReadOk(*store, t, k, 0, 10);
  REQUIRE(got.size() == 2);
  CHECK(Same(got[0], s));
  CHECK(got[0].choice["embedding"][1].get<double>() == -1.25e-3);
  CHECK(Same(got[1], empty));
  CHECK(CountOk(*store, t, k) == 2);
}

TEST_CASE("Store: 300 samples come back in index order (big-endian beyond 255)") {
  TempDir dir;
  auto store = OpenOk(dir.db());
  const TenantId t = Tenant(1);
  const CacheKey k = Key(1);
  for (uint64_t first = 0; first < 300; first += 100)
    REQUIRE(store->Append(t, k, first, TaggedBatch("a", first, 100), {}).ok());
  CHECK(CountOk(*store, t, k) == 300);

  auto all = ReadOk(*store, t, k, 0, 1000);
  REQUIRE(all.size() == 300);
  for (uint64_t i = 0; i < 300; ++i) CHECK(ContentOf(all[i]) == "a#" + std::to_string(i));

  auto middle = ReadOk(*store, t, k, 250, 10);
  REQUIRE(middle.size() == 10);
  CHECK(ContentOf(middle[0]) == "a#250");
  CHECK(ContentOf(middle[9]) == "a#259");
  CHECK(ReadOk(*store, t, k, 295, 100).size() == 5);
  CHECK(ReadOk(*store, t, k, 300, 5).empty());
  CHECK(ReadOk(*store, t, k, 10, 0).empty());
  CHECK(ReadOk(*store, t, k, UINT64_MAX, UINT64_MAX).empty());
  CHECK(ReadOk(*store, t, k, 299, UINT64_MAX).size() == 1);
}

TEST_CASE("Store: Append refuses overwrites and gaps and then writes nothing") {
  TempDir dir;
  auto store = OpenOk(dir.db());
  const TenantId t = Tenant(1);
  const CacheKey k = Key(1);
  REQUIRE(store->Append(t, k, 0, TaggedBatch("a", 0, 5), {{"ns", t, k, 2}}).ok());

  const std::vector<CursorMove> move = {{"ns", t, k, 7}};
  for (uint64_t first : {0u, 3u, 4u, 6u, 100u}) {
    CAPTURE(first);
    Status st = store->Append(t, k, first, TaggedBatch("b", first, 2), move);
    CHECK(st.code() == Status::Code::invalid_argument);
  }
  // A cursor move past the end of its list (even counting this append) is refused whole.
  CHECK(store->Append(t, k, 5, TaggedBatch("b", 5, 1), {{"ns", t, k, 7}}).code() ==
        Status::Code::invalid_argument);
  CHECK(store->Append(t, k, 5, TaggedBatch("b", 5, 1), {{"ns", t, k, 6}, {"bad ns", t, k, 1}}).code() ==
        Status::Code::invalid_argument);

  CHECK(CountOk(*store, t, k) == 5);
  CHECK(CursorOk(*store, "ns", t, k) == 2);
  auto got = ReadOk(*store, t, k, 0, 10);
  REQUIRE(got.size() == 5);
  for (uint64_t i = 0; i < 5; ++i) CHECK(ContentOf(got[i]) == "a#" + std::to_string(i));

  // The next index still works, moving the cursor with it; an empty append moves cursors.
  REQUIRE(store->Append(t, k, 5, TaggedBatch("a", 5, 2), {{"ns", t, k, 7}}).ok());
  CHECK(CountOk(*store, t, k) == 7);
  CHECK(CursorOk(*store, "ns", t, k) == 7);
  REQUIRE(store->Append(t, k, 7, {}, {{"ns", t, k, 1}}).ok());
  CHECK(CursorOk(*store, "ns", t, k) == 1);
}

TEST_CASE("Store: tenants and keys are isolated, prefix scans never bleed") {
  TempDir dir;
  auto store = OpenOk(dir.db());
  // Neighbours in byte order: keys ...01/...02 (..00 and ..03 around them stay empty),
  // the same key under two tenants that differ in their last byte, and a key whose
  // bytes are all 0xff (its list's range ends at the edge of the tenant's range).
  const TenantId t1 = Tenant(1), t2 = Tenant(2);
  const CacheKey k1 = Key(1), k2 = Key(2), kff = Key(0xff, 0xff);
  REQUIRE(store->Append(t1, k1, 0, TaggedBatch("t1k1", 0, 3), {}).ok());
  REQUIRE(store->Append(t1, k2, 0, TaggedBatch("t1k2", 0, 4), {}).ok());
  REQUIRE(store->Append(t2, k1, 0, TaggedBatch("t2k1", 0, 5), {}).ok());
  REQUIRE(store->Append(t1, kff, 0, TaggedBatch("t1kff", 0, 6), {}).ok());

  CHECK(CountOk(*store, t1, k1) == 3);
  CHECK(CountOk(*store, t1, k2) == 4);
  CHECK(CountOk(*store, t2, k1) == 5);
  CHECK(CountOk(*store, t1, kff) == 6);
  CHECK(CountOk(*store, t2, k2) == 0);
  CHECK(CountOk(*store, t1, Key(0)) == 0);
  CHECK(CountOk(*store, t1, Key(3)) == 0);
  CHECK(CountOk(*store, Tenant(3), k1) == 0);
  CHECK(CountOk(*store, Tenant(0), Key(0xff, 0xff)) == 0);

  for (const auto& [t, k, tag, n] :
       std::vector<std::tuple<TenantId, CacheKey, std::string, uint64_t>>{
           {t1, k1, "t1k1", 3}, {t1, k2, "t1k2", 4}, {t2, k1, "t2k1", 5}, {t1, kff, "t1kff", 6}}) {
    auto got = ReadOk(*store, t, k, 0, 100);
    REQUIRE(got.size() == n);
    for (uint64_t i = 0; i < n; ++i) CHECK(ContentOf(got[i]) == tag + "#" + std::to_string(i));
  }
  CHECK(ReadOk(*store, t1, Key(3), 0, 100).empty());
  CHECK(ReadOk(*store, t2, k2, 0, 100).empty());
  // Appending to the same key under another tenant starts at 0, not at that list's end.
  CHECK(store->Append(t2, k2, 4, TaggedBatch("x", 4, 1), {}).code() == Status::Code::invalid_argument);
}

TEST_CASE("Store: cursors per namespace, SetCursors, ResetNamespace, Namespaces") {
  TempDir dir;
  auto store = OpenOk(dir.db());
  const TenantId t1 = Tenant(1), t2 = Tenant(2);
  const CacheKey k1 = Key(1), k2 = Key(2);
  for (const auto& t : {t1, t2})
    for (const auto& k : {k1, k2}) REQUIRE(store->Append(t, k, 0, TaggedBatch("s", 0, 10), {}).ok());

  CHECK(CursorOk(*store, "default", t1, k1) == 0);
  CHECK(NamespacesOk(*store).empty());
  // "a" is a byte prefix of "a.b" and "a-": a reset of "a" must not touch them.
  REQUIRE(store->SetCursors({{"a", t1, k1, 1}, {"a", t2, k1, 2}, {"a.b", t1, k1, 3}, {"a-", t1, k2, 4},
                             {"default", t1, k1, 5}})
              .ok());
  CHECK(CursorOk(*store, "a", t1, k1) == 1);
  CHECK(CursorOk(*store, "a", t2, k1) == 2);
  CHECK(CursorOk(*store, "a", t1, k2) == 0);
  CHECK(CursorOk(*store, "a.b", t1, k1) == 3);
  CHECK(CursorOk(*store, "a-", t1, k2) == 4);
  CHECK(CursorOk(*store, "default", t1, k1) == 5);
  CHECK(NamespacesOk(*store) == std::vector<std::string>{"a", "a-", "a.b", "default"});

  REQUIRE(store->SetCursors({{"a", t1, k1, 10}}).ok());  // the end of the list is allowed
  CHECK(store->SetCursors({{"a", t1, k1, 9}, {"a", t1, k2, 11}}).code() == Status::Code::invalid_argument);
  CHECK(CursorOk(*store, "a", t1, k1) == 10);  // the refused batch wrote nothing
  CHECK(store->SetCursors({{"z", Tenant(9), k1, 1}}).code() == Status::Code::invalid_argument);

  REQUIRE(store->ResetNamespace("a").ok());
  CHECK(CursorOk(*store, "a", t1, k1) == 0);
  CHECK(CursorOk(*store, "a", t2, k1) == 0);
  CHECK(CursorOk(*store, "a.b", t1, k1) == 3);
  CHECK(CursorOk(*store, "a-", t1, k2) == 4);
  CHECK(NamespacesOk(*store) == std::vector<std::string>{"a-", "a.b", "default"});
  REQUIRE(store->ResetNamespace("never-used").ok());

  // Cursors come back after a reopen, resets included.
  store.reset();
  store = OpenOk(dir.db());
  CHECK(CursorOk(*store, "a", t1, k1) == 0);
  CHECK(CursorOk(*store, "a.b", t1, k1) == 3);
  CHECK(NamespacesOk(*store) == std::vector<std::string>{"a-", "a.b", "default"});
  REQUIRE(store->SetCursors({{"a", t1, k1, 6}}).ok());  // a reset namespace is usable again
  CHECK(CursorOk(*store, "a", t1, k1) == 6);
}

TEST_CASE("Store: invalid namespaces are refused everywhere") {
  TempDir dir;
  auto store = OpenOk(dir.db());
  const TenantId t = Tenant(1);
  const CacheKey k = Key(1);
  CHECK(Store::ValidNamespace("default"));
  CHECK(Store::ValidNamespace("A-z_0.9:x"));
  CHECK(Store::ValidNamespace(std::string(128, 'n')));
  for (const std::string& bad : {std::string(), std::string(129, 'n'), std::string("a b"), std::string("a/b"),
                                std::string("a\0b", 3), std::string("a\x01"), std::string("caf\xc3\xa9")}) {
    CAPTURE(bad);
    CHECK_FALSE(Store::ValidNamespace(bad));
    CHECK(store->Cursor(bad, t, k).error().code() == Status::Code::invalid_argument);
    CHECK(store->SetCursors({{bad, t, k, 0}}).code() == Status::Code::invalid_argument);
    CHECK(store->ResetNamespace(bad).code() == Status::Code::invalid_argument);
    CHECK(store->Append(t, k, 0, TaggedBatch("a", 0, 1), {{bad, t, k, 0}}).code() ==
          Status::Code::invalid_argument);
  }
  CHECK(CountOk(*store, t, k) == 0);
  CHECK(NamespacesOk(*store).empty());
}

TEST_CASE("Store: concurrent appends to one key never overwrite, to many keys never block") {
  TempDir dir;
  auto store = OpenOk(dir.db());
  const TenantId t = Tenant(1);
  constexpr int kThreads = 8, kPerThread = 50;
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      for (int done = 0; done < kPerThread;) {
        // Every thread races on key 0 (read the length, append there), and owns key th+1.
        const uint64_t n = *store->Count(t, Key(0));
        Status st = store->Append(t, Key(0), n, {Tagged("th" + std::to_string(th), n)}, {});
        if (!st.ok()) {
          refused.fetch_add(1);
          continue;
        }
        const uint64_t mine = *store->Count(t, Key(static_cast<uint8_t>(th + 1)));
        if (store->Append(t, Key(static_cast<uint8_t>(th + 1)), mine, {Tagged("own", mine)}, {}).ok()) ++done;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(CountOk(*store, t, Key(0)) == uint64_t{kThreads * kPerThread});
  auto shared = ReadOk(*store, t, Key(0), 0, kThreads * kPerThread);
  for (uint64_t i = 0; i < shared.size(); ++i) {
    const std::string c = ContentOf(shared[i]);
    CHECK(c.substr(c.find('#') + 1) == std::to_string(i));  // the index it was written for
  }
  for (int th = 0; th < kThreads; ++th) CHECK(CountOk(*store, t, Key(static_cast<uint8_t>(th + 1))) == kPerThread);
  MESSAGE("refused racing appends: " << refused.load());
}

TEST_CASE("Store: model-based, 2000 random operations with reopens") {
  TempDir dir;
  std::mt19937_64 rng(20250611);
  auto pick = [&](uint64_t n) { return n == 0 ? 0 : rng() % n; };

  // Tenants and keys chosen to share long byte prefixes.
  const std::vector<TenantId> tenants = {Tenant(0), Tenant(1), Tenant(1, 0x12)};
  const std::vector<CacheKey> keys = {Key(0), Key(1), Key(0xff, 0x00), Key(0, 0xff)};
  const std::vector<std::string> spaces = {"default", "a", "a.b", "exp-1:x"};
  using ListId = std::pair<size_t, size_t>;                      // (tenant, key)
  using CursorId = std::tuple<std::string, size_t, size_t>;      // (ns, tenant, key)
  std::map<ListId, std::vector<Sample>> lists;
  std::map<CursorId, uint64_t> cursors;

  auto random_sample = [&]() {
    Sample s;
    s.choice = {{"text", std::to_string(rng())}, {"score", static_cast<double>(pick(1000)) / 8}};
    s.finish_reason = pick(2) ? "stop" : "length";
    s.completion_tokens = static_cast<uint32_t>(pick(5000));
    s.prompt_tokens = static_cast<uint32_t>(pick(5000));
    s.system_fingerprint = "fp" + std::to_string(pick(3));
    s.created = static_cast<int64_t>(rng() >> 1);
    s.backend = pick(2) ? "openai" : "engine";
    for (auto& b : s.request_sha256) b = static_cast<uint8_t>(rng());
    return s;
  };
  auto random_list = [&]() { return ListId{pick(tenants.size()), pick(keys.size())}; };
  auto length = [&](const ListId& id) { return static_cast<uint64_t>(lists[id].size()); };
  // Valid moves: any list, a position within its length (+ extra for the appended one).
  auto random_moves = [&](const ListId* appended, uint64_t extra) {
    std::vector<CursorMove> moves;
    std::vector<std::pair<CursorId, uint64_t>> model;
    for (uint64_t i = 0, n = pick(3); i < n; ++i) {
      ListId id = appended && pick(2) ? *appended : random_list();
      const uint64_t len = length(id) + (appended && id == *appended ? extra : 0);
      const std::string& ns = spaces[pick(spaces.size())];
      const uint64_t next = pick(len + 1);
      moves.push_back({ns, tenants[id.first], keys[id.second], next});
      model.push_back({{ns, id.first, id.second}, next});
    }
    return std::make_pair(moves, model);
  };
  auto check_everything = [&](Store& store) {
    for (size_t t = 0; t < tenants.size(); ++t)
      for (size_t k = 0; k < keys.size(); ++k) {
        const auto& want = lists[{t, k}];
        REQUIRE(CountOk(store, tenants[t], keys[k]) == want.size());
        auto got = ReadOk(store, tenants[t], keys[k], 0, want.size() + 1);
        REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < want.size(); ++i) REQUIRE(Same(got[i], want[i]));
        for (const auto& ns : spaces) {
          auto it = cursors.find({ns, t, k});
          REQUIRE(CursorOk(store, ns, tenants[t], keys[k]) == (it == cursors.end() ? 0 : it->second));
        }
      }
  };
  auto model_namespaces = [&]() {
    std::set<std::string> out;
    for (const auto& [id, next] : cursors) out.insert(std::get<0>(id));
    return std::vector<std::string>(out.begin(), out.end());
  };

  auto store = OpenOk(dir.db());
  int appends = 0, refusals = 0, reads = 0;
  for (int op = 0; op < 2000; ++op) {
    CAPTURE(op);
    if (op % 200 == 199) {  // close and reopen: everything must have persisted
      store.reset();
      store = OpenOk(dir.db());
      check_everything(*store);
    }
    const uint64_t roll = pick(100);
    if (roll < 30) {  // append, sometimes at a wrong index
      const ListId id = random_list();
      const uint64_t len = length(id), n = pick(6);
      std::vector<Sample> batch;
      for (uint64_t i = 0; i < n; ++i) batch.push_back(random_sample());
      auto [moves, model_moves] = random_moves(&id, n);
      uint64_t first = len;
      const bool wrong = pick(10) == 0;
      if (wrong) first = len > 0 && pick(2) ? pick(len) : len + 1 + pick(3);
      Status st = store->Append(tenants[id.first], keys[id.second], first, batch, moves);
      if (wrong) {
        REQUIRE(st.code() == Status::Code::invalid_argument);
        ++refusals;
      } else {
        REQUIRE_MESSAGE(st.ok(), st.message());
        lists[id].insert(lists[id].end(), batch.begin(), batch.end());
        for (const auto& [cid, next] : model_moves) cursors[cid] = next;
        ++appends;
      }
    } else if (roll < 60) {  // read a random range, often past the end
      const ListId id = random_list();
      const uint64_t from = pick(length(id) + 4), count = pick(9);
      auto got = ReadOk(*store, tenants[id.first], keys[id.second], from, count);
      const auto& want = lists[id];
      const uint64_t expect = from >= want.size() ? 0 : std::min<uint64_t>(count, want.size() - from);
      REQUIRE(got.size() == expect);
      for (uint64_t i = 0; i < expect; ++i) REQUIRE(Same(got[i], want[from + i]));
      ++reads;
    } else if (roll < 70) {
      const ListId id = random_list();
      REQUIRE(CountOk(*store, tenants[id.first], keys[id.second]) == length(id));
    } else if (roll < 80) {
      const ListId id = random_list();
      const std::string& ns = spaces[pick(spaces.size())];
      auto it = cursors.find({ns, id.first, id.second});
      REQUIRE(CursorOk(*store, ns, tenants[id.first], keys[id.second]) == (it == cursors.end() ? 0 : it->second));
    } else if (roll < 93) {  // set cursors, sometimes one past the end (refused whole)
      auto [moves, model_moves] = random_moves(nullptr, 0);
      if (!moves.empty() && pick(8) == 0) {
        const ListId id = random_list();
        moves.push_back({spaces[0], tenants[id.first], keys[id.second], length(id) + 1});
        REQUIRE(store->SetCursors(moves).code() == Status::Code::invalid_argument);
        ++refusals;
      } else {
        REQUIRE(store->SetCursors(moves).ok());
        for (const auto& [cid, next] : model_moves) cursors[cid] = next;
      }
    } else if (roll < 96) {
      const std::string& ns = spaces[pick(spaces.size())];
      REQUIRE(store->ResetNamespace(ns).ok());
      std::erase_if(cursors, [&](const auto& entry) { return std::get<0>(entry.first) == ns; });
    } else {
      REQUIRE(NamespacesOk(*store) == model_namespaces());
    }
  }
  store.reset();
  store = OpenOk(dir.db());
  check_everything(*store);
  REQUIRE(NamespacesOk(*store) == model_namespaces());
  MESSAGE("appends " << appends << ", refusals " << refusals << ", reads " << reads);
  CHECK(appends > 300);
  CHECK(refusals > 20);
}

TEST_CASE("Store: a damaged record is reported as Corruption naming its index") {
  TempDir dir;
  const TenantId t = Tenant(1);
  const CacheKey k = Key(1);
  {
    auto store = OpenOk(dir.db());
    REQUIRE(store->Append(t, k, 0, TaggedBatch("a", 0, 300), {}).ok());
  }
  auto damage = [&](uint64_t index, auto&& change) {
    WithRawDb(dir.db(), [&](rocksdb::DB& db, auto& cfs) {
      std::string value;
      REQUIRE(db.Get({}, cfs[1], RawSampleKey(t, k, index), &value).ok());
      change(value);
      REQUIRE(db.Put({}, cfs[1], RawSampleKey(t, k, index), value).ok());
    });
  };

  SUBCASE("a flipped payload byte") { damage(7, [](std::string& v) { v[v.size() / 2] ^= 0x20; }); }
  SUBCASE("a flipped checksum byte") { damage(7, [](std::string& v) { v[3] ^= 0x01; }); }
  SUBCASE("a truncated record") { damage(7, [](std::string& v) { v.resize(5); }); }
  SUBCASE("valid checksum over bytes that are not a Sample") {
    damage(7, [](std::string& v) {
      std::vector<uint8_t> cbor = nlohmann::json::to_cbor(nlohmann::json{{"choice", 1}});
      uint64_t sum = XXH3_64bits(cbor.data(), cbor.size());
      v.clear();
      for (int shift = 56; shift >= 0; shift -= 8) v.push_back(static_cast<char>(sum >> shift));
      v.append(cbor.begin(), cbor.end());
    });
  }

  auto store = OpenOk(dir.db());
  auto r = store->Read(t, k, 0, 300);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Status::Code::corruption);
  CHECK(r.error().message().find("index 7") != std::string::npos);
  CHECK(store->Read(t, k, 5, 2).ok());    // 5 and 6: untouched
  CHECK(ReadOk(*store, t, k, 8, 300).size() == 292);
  CHECK_FALSE(store->Read(t, k, 7, 1).ok());
  CHECK(CountOk(*store, t, k) == 300);
}

TEST_CASE("Store: a record written before measured energy existed loads as not measured") {
  TempDir dir;
  const TenantId t = Tenant(1);
  const CacheKey k = Key(1);
  { auto store = OpenOk(dir.db()); }
  // The record layout of earlier builds: checksum (u64 BE) | CBOR of these fields only.
  WithRawDb(dir.db(), [&](rocksdb::DB& db, auto& cfs) {
    nlohmann::json j = {{"choice", {{"text", "old"}}}, {"finish_reason", "stop"}, {"completion_tokens", 3},
                        {"prompt_tokens", 2}, {"system_fingerprint", "fp"}, {"created", 7}, {"backend", "engine"},
                        {"model", "m"}, {"request_sha256", nlohmann::json::binary(std::vector<uint8_t>(32, 9))}};
    std::vector<uint8_t> cbor = nlohmann::json::to_cbor(j);
    uint64_t sum = XXH3_64bits(cbor.data(), cbor.size());
    std::string v;
    for (int shift = 56; shift >= 0; shift -= 8) v.push_back(static_cast<char>(sum >> shift));
    v.append(cbor.begin(), cbor.end());
    REQUIRE(db.Put({}, cfs[1], RawSampleKey(t, k, 0), v).ok());
  });
  auto store = OpenOk(dir.db());
  auto got = ReadOk(*store, t, k, 0, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0].choice["text"] == "old");
  CHECK(got[0].completion_tokens == 3);
  CHECK(got[0].energy_j < 0);
  CHECK(got[0].usage_extra.is_null());  // and without the answer's extra fields
  CHECK(got[0].response_extra.is_null());
}

TEST_CASE("Store: a missing record in the middle of a list is Corruption, not a shifted list") {
  TempDir dir;
  const TenantId t = Tenant(1);
  const CacheKey k = Key(1);
  { REQUIRE(OpenOk(dir.db())->Append(t, k, 0, TaggedBatch("a", 0, 10), {}).ok()); }
  WithRawDb(dir.db(), [&](rocksdb::DB& db, auto& cfs) { REQUIRE(db.Delete({}, cfs[1], RawSampleKey(t, k, 4)).ok()); });
  auto store = OpenOk(dir.db());
  auto r = store->Read(t, k, 0, 10);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code() == Status::Code::corruption);
  CHECK(r.error().message().find("index 4") != std::string::npos);
}

TEST_CASE("Store: a damaged store directory is moved aside and a fresh one serves") {
  TempDir dir;
  const TenantId t = Tenant(1);
  const CacheKey k = Key(1);
  auto populate = [&] {
    auto store = OpenOk(dir.db());
    REQUIRE(store->Append(t, k, 0, TaggedBatch("a", 0, 3), {{"ns", t, k, 1}}).ok());
  };
  std::string expect_reason;
  SUBCASE("garbage CURRENT") {
    populate();
    std::ofstream(fs::path(dir.db()) / "CURRENT", std::ios::trunc) << "garbage\n";
    expect_reason = "CURRENT";
  }
  SUBCASE("CURRENT names a MANIFEST that is gone") {
    populate();
    std::ofstream(fs::path(dir.db()) / "CURRENT", std::ios::trunc) << "MANIFEST-999999\n";
    expect_reason = "MANIFEST-999999";
  }
  SUBCASE("not a RocksDB directory at all") {
    fs::create_directories(dir.db());
    std::ofstream(fs::path(dir.db()) / "notes.txt") << "my thesis, final version\n";
    expect_reason = "notes.txt";
  }
  SUBCASE("an unreadable schema record") {
    populate();
    WithRawDb(dir.db(), [&](rocksdb::DB& db, auto& cfs) { REQUIRE(db.Put({}, cfs[3], "schema", "\xff\x01").ok()); });
    expect_reason = "schema";
  }

  OpenReport report;
  auto store = OpenOk(dir.db() + "/", &report);  // a trailing slash is the same store
  CHECK(report.moved_aside);
  CHECK(report.moved_to.rfind(dir.db() + ".corrupt-", 0) == 0);
  CHECK(report.reason.find(expect_reason) != std::string::npos);
  CHECK(fs::is_directory(report.moved_to));  // the evidence is kept
  // The new store is empty and works.
  CHECK(CountOk(*store, t, k) == 0);
  CHECK(CursorOk(*store, "ns", t, k) == 0);
  REQUIRE(store->Append(t, k, 0, TaggedBatch("b", 0, 2), {}).ok());
  store.reset();
  OpenReport again;
  store = OpenOk(dir.db(), &again);
  CHECK_FALSE(again.moved_aside);
  CHECK(CountOk(*store, t, k) == 2);
}

TEST_CASE("Store: another schema version is refused, not moved aside") {
  TempDir dir;
  { OpenOk(dir.db()); }
  WithRawDb(dir.db(), [&](rocksdb::DB& db, auto& cfs) { REQUIRE(db.Put({}, cfs[3], "schema", "2").ok()); });
  OpenReport report;
  auto store = Store::Open(dir.db(), &report);
  REQUIRE_FALSE(store.ok());
  CHECK(store.error().code() == Status::Code::corruption);
  CHECK(store.error().message().find("schema version 2") != std::string::npos);
  CHECK_FALSE(report.moved_aside);
  CHECK(fs::exists(fs::path(dir.db()) / "CURRENT"));
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
}

TEST_CASE("Store: a store held open elsewhere is an error, not damage") {
  TempDir dir;
  auto first = OpenOk(dir.db());
  OpenReport report;
  auto second = Store::Open(dir.db(), &report);  // RocksDB's LOCK refuses a second handle
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code() == Status::Code::io_error);
  CHECK_FALSE(report.moved_aside);
  CHECK(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()) == 1);
  CHECK(Store::Open("").error().code() == Status::Code::invalid_argument);
}

TEST_CASE("Store: creates missing parent directories, honours StoreOptions") {
  TempDir dir;
  const std::string nested = (dir.path() / "a" / "b" / "cache").string();
  StoreOptions options;
  options.sync_writes = true;
  options.block_cache_bytes = 1 << 20;
  auto store = Store::Open(nested, options);
  REQUIRE(store.ok());
  REQUIRE((*store)->Append(Tenant(1), Key(1), 0, TaggedBatch("a", 0, 1), {}).ok());
  CHECK(fs::exists(fs::path(nested) / "CURRENT"));
}

// ---- kill -9 under write load ----------------------------------------------------------
// The writer's content comes from tests/tools/crash_content.hpp, shared with it.
using namespace reprise::cache::crash;

#ifdef STORE_CRASH_WRITER_BIN
TEST_CASE("Store: kill -9 under write load loses no acknowledged structure") {
  TempDir dir;
  const std::string path = dir.db();
  uint64_t previous_total = 0;
  for (int round = 0; round < 5; ++round) {
    CAPTURE(round);
    std::string bin = STORE_CRASH_WRITER_BIN;
    std::vector<char*> argv = {bin.data(), const_cast<char*>(path.c_str()), nullptr};
    pid_t pid = 0;
    const std::string started = path + ".started";
    std::filesystem::remove(started);
    REQUIRE(posix_spawn(&pid, bin.c_str(), nullptr, nullptr, argv.data(), environ) == 0);
    // Kill only once its first append is acknowledged: opening the store takes longer
    // on a loaded machine (a fixed delay made this test fail under ctest -j2).
    for (int waited = 0; !std::filesystem::exists(started) && waited < 2000; ++waited)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(std::filesystem::exists(started));
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + 35 * round));
    int wstatus = 0;
    // Still running (it never exits by itself; an early exit is a writer failure).
    REQUIRE(waitpid(pid, &wstatus, WNOHANG) == 0);
    REQUIRE(kill(pid, SIGKILL) == 0);
    REQUIRE(waitpid(pid, &wstatus, 0) == pid);
    CHECK((WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL));

    OpenReport report;
    auto store = OpenOk(path, &report);
    REQUIRE_FALSE(report.moved_aside);
    uint64_t total = 0;
    for (int k = 0; k < kCrashKeys; ++k) {
      CAPTURE(k);
      const uint64_t n = CountOk(*store, CrashTenant(k), CrashKey(k));
      auto got = ReadOk(*store, CrashTenant(k), CrashKey(k), 0, n + 10);  // checksums, gaps
      REQUIRE(got.size() == n);
      for (uint64_t i = 0; i < n; ++i) REQUIRE(Same(got[i], CrashSample(k, i)));
      for (const char* ns : kCrashNamespaces) CHECK(CursorOk(*store, ns, CrashTenant(k), CrashKey(k)) <= n);
      total += n;
    }
    MESSAGE("round " << round << ": " << total << " samples");
    CHECK(total > previous_total);  // the writer made progress in every round
    previous_total = total;
  }
}
#endif
