// The Redis Cluster client (proxy/redis/) against a real cluster on loopback: real
// redis-server processes (tests/support/redis_cluster.hpp), real sockets. Tests that
// leave the cluster healthy share one; the ones that kill, stop or pause a node start
// their own.
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "proxy/redis/asio_cluster_client.hpp"
#include "tests/support/redis_cluster.hpp"

namespace {

using namespace reprise;
using namespace std::chrono_literals;
using cache::RedisErrc;
using cache::RedisReply;
using cache::RedisResult;
using Clock = std::chrono::steady_clock;

// Starts a cluster and says how long it took (the suite starts several).
std::unique_ptr<test::RedisCluster> start_cluster(const test::TempDir& dir, test::RedisCluster::Options options = {}) {
  auto start = Clock::now();
  auto cluster = std::make_unique<test::RedisCluster>(dir.path(), options);
  MESSAGE("cluster of ", cluster->size(), " nodes ready in ",
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count(), " ms (",
          cluster->startup_report(), ")");
  return cluster;
}

struct SharedCluster {
  test::TempDir dir;
  std::unique_ptr<test::RedisCluster> cluster = start_cluster(dir);
};

// The cluster the non-destructive tests share (started by the first that needs it).
test::RedisCluster& shared_cluster() {
  static SharedCluster shared;
  return *shared.cluster;
}

std::unique_ptr<cache::ClusterClient> connect(const test::RedisCluster& cluster, redis::ClusterOptions options = {}) {
  options.seeds = cluster.seeds();
  std::string error;
  auto client = redis::connect_cluster(options, &error);
  INFO("connect_cluster: ", error);
  REQUIRE(client);
  return client;
}

// A key whose slot lies in [lo, hi], found by trying names.
std::string key_in(uint16_t lo, uint16_t hi, const std::string& prefix) {
  for (int i = 0; i < 1000000; ++i) {
    std::string key = prefix + std::to_string(i);
    auto slot = redis::key_slot(key);
    if (slot >= lo && slot <= hi) return key;
  }
  throw std::runtime_error("no key found");
}

// Counts callbacks and waits for them (bounded).
class Latch {
 public:
  explicit Latch(size_t n) : left_(n) {}
  void count_down() {
    std::lock_guard lock(mu_);
    if (--left_ == 0) cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return left_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t left_;
};

RedisResult sync(cache::ClusterClient& client, const std::string& key, std::vector<std::string> args,
                 bool durable = false) {
  return client.command_sync(key, std::move(args), durable);
}

template <class Predicate>
bool eventually(std::chrono::milliseconds timeout, Predicate done) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

std::string id_of(const test::RedisCluster& cluster, size_t node) {
  auto id = cluster.call(node, {"CLUSTER", "MYID"});
  REQUIRE(id);
  return *id;
}

}  // namespace

TEST_CASE("redis cluster client: key_slot follows the cluster spec") {
  CHECK(redis::crc16("123456789") == 0x31C3);
  CHECK(redis::key_slot("foo") == 12182);
  CHECK(redis::key_slot("{user1000}.following") == redis::key_slot("{user1000}.followers"));
  CHECK(redis::key_slot("{user1000}.following") == redis::key_slot("user1000"));
  CHECK(redis::key_slot("foo{}{bar}") == (redis::crc16("foo{}{bar}") & 16383));
  CHECK(redis::key_slot("foo{{bar}}zap") == redis::key_slot("{bar"));
  CHECK(redis::key_slot("foo{bar}{zap}") == redis::key_slot("bar"));
  CHECK(redis::key_slot("") == 0);
  // And as the server computes it, for keys of every shape the store uses.
  auto& cluster = shared_cluster();
  for (std::string key : {"rp:{0123abcd}:m", "rp:ns:{tenant/ns}", "a", "{", "}{", "{}", "x{y", "x}y{z}", "\xff\xfe{\x01}"}) {
    auto server = cluster.call(0, {"CLUSTER", "KEYSLOT", key});
    REQUIRE(server);
    CHECK_MESSAGE(std::to_string(redis::key_slot(key)) == *server, key);
  }
}

TEST_CASE("redis cluster client: routes keys to all three shards; topology") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  auto topo = client->topology();
  CHECK(topo["shards"] == 3);
  CHECK(topo["nodes"].size() == 6);
  size_t primaries = 0;
  for (auto& n : topo["nodes"]) {
    CHECK(n["online"] == true);
    if (n["role"] == "primary") {
      ++primaries;
      CHECK(n["slots"].get<int>() > 5000);
    }
  }
  CHECK(primaries == 3);

  for (auto [lo, hi] : {std::pair<uint16_t, uint16_t>{0, 5460}, {5461, 10922}, {10923, 16383}}) {
    std::string key = key_in(lo, hi, "route:");
    std::string value = "value of " + key;
    auto set = sync(*client, key, {"SET", key, value});
    REQUIRE(set.ok());
    CHECK(set.reply.str == "OK");
    auto get = sync(*client, key, {"GET", key});
    REQUIRE(get.ok());
    CHECK(get.reply.str == value);
    // It is on the slot's primary, asked directly.
    auto owner = cluster.primary_of_slot(redis::key_slot(key));
    REQUIRE(owner);
    CHECK(cluster.call(*owner, {"GET", key}) == value);
  }
  // An error reply is an ok result: the command ran.
  auto wrong = sync(*client, "route:list", {"LPUSH", "route:list", "x"});
  REQUIRE(wrong.ok());
  auto wrongtype = sync(*client, "route:list", {"GET", "route:list"});
  REQUIRE(wrongtype.ok());
  CHECK(wrongtype.reply.is_error());
  CHECK(wrongtype.reply.str.rfind("WRONGTYPE", 0) == 0);
  auto c = client->counters();
  CHECK(c.moved == 0);
  CHECK(c.errors == 0);
  CHECK(c.commands == 8);
}

TEST_CASE("redis cluster client: FUNCTION LOAD on every primary, then FCALL with one key") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  auto loaded = client->on_every_primary(
      {"FUNCTION", "LOAD", "REPLACE",
       "#!lua name=rctest\nredis.register_function('rc_add', function(keys, args) "
       "return redis.call('INCRBY', keys[1], args[1]) end)"});
  INFO(loaded.message, " ", loaded.reply.str);
  REQUIRE(loaded.ok());
  CHECK(loaded.reply.str == "rctest");
  for (auto primary : cluster.primaries()) {
    auto list = cluster.call(primary, {"FUNCTION", "LIST", "LIBRARYNAME", "rctest"});
    REQUIRE(list);
    CHECK(list->find("rctest") != std::string::npos);
  }
  for (int shard = 0; shard < 3; ++shard) {
    std::string key = key_in(static_cast<uint16_t>(shard * 5462), static_cast<uint16_t>(shard * 5462 + 5000), "fcall:");
    auto r = sync(*client, key, {"FCALL", "rc_add", "1", key, "7"}, true);
    INFO(r.message);
    REQUIRE(r.ok());
    CHECK(r.reply.integer == 7);
  }
  // A bad call is the script's error, delivered as a reply.
  auto bad = sync(*client, "fcall:x", {"FCALL", "rc_add", "1", "fcall:x", "not a number"});
  REQUIRE(bad.ok());
  CHECK(bad.reply.is_error());
}

TEST_CASE("redis cluster client: pipelines concurrent commands from many threads") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  constexpr int kThreads = 4, kPerThread = 5000, kKeys = 40;
  std::vector<std::string> keys;
  for (int k = 0; k < kKeys; ++k) keys.push_back("pipe:" + std::to_string(k));
  for (auto& k : keys) REQUIRE(sync(*client, k, {"DEL", k}).ok());
  auto before = client->counters();

  Latch latch(kThreads * kPerThread);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto& key = keys[(t * kPerThread + i) % kKeys];
        client->command(key, {"INCR", key}, false, [&](RedisResult r) {
          if (!r.ok() || r.reply.type != RedisReply::Type::integer) ++bad;
          latch.count_down();
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  REQUIRE(latch.wait(30s));
  CHECK(bad == 0);
  for (auto& k : keys) {
    auto r = sync(*client, k, {"GET", k});
    REQUIRE(r.ok());
    CHECK(r.reply.str == std::to_string(kThreads * kPerThread / kKeys));
  }
  auto after = client->counters();
  uint64_t commands = after.commands - before.commands;
  uint64_t writes = after.round_trips - before.round_trips;
  CHECK(commands == kThreads * kPerThread + kKeys);
  MESSAGE("pipelining: ", commands, " commands in ", writes, " writes");
  CHECK(writes * 10 < commands);
}

TEST_CASE("redis cluster client: throughput of pipelined FCALLs, durable and not") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  REQUIRE(client
              ->on_every_primary({"FUNCTION", "LOAD", "REPLACE",
                                  "#!lua name=rcbench\nredis.register_function('rc_bump', function(keys, args) "
                                  "return redis.call('HINCRBY', keys[1], 'n', 1) end)"})
              .ok());
  auto run = [&](bool durable, int total, int window) {
    std::atomic<int> failed{0};
    Latch latch(static_cast<size_t>(total));
    std::mutex mu;
    std::condition_variable cv;
    int in_flight = 0;
    auto start = Clock::now();
    for (int i = 0; i < total; ++i) {
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return in_flight < window; });
        ++in_flight;
      }
      std::string key = "bench:{" + std::to_string(i % 64) + "}";
      client->command(key, {"FCALL", "rc_bump", "1", key}, durable, [&](RedisResult r) {
        if (!r.ok() || r.reply.is_error()) ++failed;
        {
          std::lock_guard lock(mu);
          --in_flight;
        }
        cv.notify_one();
        latch.count_down();
      });
    }
    REQUIRE(latch.wait(60s));
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    CHECK(failed == 0);
    return total / seconds;
  };
  auto before = client->counters();
  double plain = run(false, 20000, 1000);
  auto mid = client->counters();
  double durable = run(true, 20000, 1000);
  auto after = client->counters();
  double durable_serial = run(true, 300, 1);
  MESSAGE("throughput (FCALL HINCRBY, 6 nodes on this machine, AOF always): plain ", static_cast<int>(plain),
          "/s (", mid.round_trips - before.round_trips, " writes); durable (FCALL + WAIT) ", static_cast<int>(durable),
          "/s (", after.round_trips - mid.round_trips, " writes); durable one at a time ",
          static_cast<int>(durable_serial), "/s");
  CHECK(after.wait_failures == 0);
}

TEST_CASE("redis cluster client: durable commands are confirmed by WAIT and on the replica") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  for (auto [lo, hi] : {std::pair<uint16_t, uint16_t>{0, 5460}, {5461, 10922}, {10923, 16383}}) {
    std::string key = key_in(lo, hi, "durable:");
    std::string value = "durable value of " + key;
    auto r = sync(*client, key, {"SET", key, value}, true);
    INFO(r.message);
    REQUIRE(r.ok());
    CHECK(r.reply.str == "OK");
    // WAIT confirmed it: the replica has it now, no polling.
    auto owner = cluster.primary_of_slot(redis::key_slot(key));
    REQUIRE(owner);
    auto replicas = cluster.replicas_of(*owner);
    REQUIRE(replicas.size() == 1);
    CHECK(cluster.call(replicas[0], {"GET", key}, 1000ms, true) == value);
  }
  // Many at once: one WAIT per write covers them all.
  auto before = client->counters();
  Latch latch(500);
  std::atomic<int> ok{0};
  for (int i = 0; i < 500; ++i) {
    std::string key = "durable:many:" + std::to_string(i);
    client->command(key, {"SET", key, std::to_string(i)}, true, [&](RedisResult r) {
      if (r.ok() && r.reply.str == "OK") ++ok;
      latch.count_down();
    });
  }
  REQUIRE(latch.wait(10s));
  CHECK(ok == 500);
  auto after = client->counters();
  CHECK(after.wait_failures == 0);
  CHECK(after.round_trips - before.round_trips < 250);
}

TEST_CASE("redis cluster client: follows a manual failover (MOVED) and counts it") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  std::string key = "failover:key";
  REQUIRE(sync(*client, key, {"SET", key, "before"}, true).ok());
  auto slot = redis::key_slot(key);
  auto old_primary = cluster.primary_of_slot(slot);
  REQUIRE(old_primary);
  auto replicas = cluster.replicas_of(*old_primary);
  REQUIRE(replicas.size() == 1);
  auto answer = cluster.call(replicas[0], {"CLUSTER", "FAILOVER"});
  REQUIRE(answer == "OK");
  REQUIRE(eventually(10s, [&] { return cluster.primary_of_slot(slot) == replicas[0]; }));

  // The old primary now answers MOVED; the client follows it.
  auto get = sync(*client, key, {"GET", key});
  INFO(get.message);
  REQUIRE(get.ok());
  CHECK(get.reply.str == "before");
  REQUIRE(eventually(5s, [&] { return client->counters().failovers_seen > 0; }));
  // A durable write on the new primary, once the map says who its replicas are.
  REQUIRE(cluster.wait_replicas_online(15s));
  auto set = sync(*client, key, {"SET", key, "after"}, true);
  INFO(set.message);
  REQUIRE(set.ok());
  CHECK(cluster.call(*old_primary, {"GET", key}, 1000ms, true) == "after");
  auto c = client->counters();
  MESSAGE("manual failover: moved ", c.moved, ", failovers_seen ", c.failovers_seen, ", retries ", c.retries);
  CHECK(c.errors == 0);
  CHECK(c.timeouts == 0);
  REQUIRE(cluster.wait_healthy(10s));
}

TEST_CASE("redis cluster client: ASK during a slot migration") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  std::string key = "migrate:{one}";
  std::string fresh = "migrate:{one}:fresh";
  auto slot = redis::key_slot(key);
  REQUIRE(sync(*client, key, {"SET", key, "moving"}, true).ok());
  auto source = cluster.primary_of_slot(slot);
  REQUIRE(source);
  size_t target = 0;
  for (auto p : cluster.primaries())
    if (p != *source) target = p;
  REQUIRE(target != *source);
  std::string slot_text = std::to_string(slot);
  REQUIRE(cluster.call(target, {"CLUSTER", "SETSLOT", slot_text, "IMPORTING", id_of(cluster, *source)}) == "OK");
  REQUIRE(cluster.call(*source, {"CLUSTER", "SETSLOT", slot_text, "MIGRATING", id_of(cluster, target)}) == "OK");
  REQUIRE(cluster.call(*source, {"MIGRATE", "127.0.0.1", std::to_string(cluster.port(target)), "", "0", "5000", "KEYS",
                                 key}) == "OK");

  // The source no longer has the key: -ASK to the target, ASKING + GET there.
  auto get = sync(*client, key, {"GET", key});
  INFO(get.message);
  REQUIRE(get.ok());
  CHECK(get.reply.str == "moving");
  // A new key of the migrating slot is created on the target, durably.
  auto set = sync(*client, fresh, {"SET", fresh, "new"}, true);
  INFO(set.message);
  REQUIRE(set.ok());
  CHECK(set.reply.str == "OK");
  auto c = client->counters();
  CHECK(c.ask >= 2);
  CHECK(c.moved == 0);

  // The migration ends: the slot is the target's, and the source says MOVED.
  std::string target_id = id_of(cluster, target);
  for (auto p : cluster.primaries()) REQUIRE(cluster.call(p, {"CLUSTER", "SETSLOT", slot_text, "NODE", target_id}) == "OK");
  auto again = sync(*client, key, {"GET", key});
  REQUIRE(again.ok());
  CHECK(again.reply.str == "moving");
  CHECK(client->counters().moved >= 1);
  CHECK(cluster.call(target, {"GET", fresh}) == "new");
  REQUIRE(cluster.wait_healthy(10s));
  REQUIRE(cluster.wait_replicas_online(10s));
}

TEST_CASE("redis cluster client: destroying the client calls every pending callback once") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  constexpr int kCommands = 20000;
  std::vector<std::atomic<int>> calls(kCommands);
  std::atomic<int> ok{0}, destroyed{0};
  for (int i = 0; i < kCommands; ++i) {
    std::string key = "destroy:" + std::to_string(i % 100);
    client->command(key, {"INCR", key}, i % 3 == 0, [&, i](RedisResult r) {
      calls[i]++;
      if (r.ok()) ++ok;
      else if (r.message.find("destroyed") != std::string::npos) ++destroyed;
    });
  }
  client.reset();
  int once = 0;
  for (auto& c : calls) once += c == 1;
  CHECK(once == kCommands);
  MESSAGE("destroyed with commands in flight: ", ok.load(), " had completed, ", destroyed.load(),
          " were failed by the destructor");
  CHECK(destroyed > 0);
}
