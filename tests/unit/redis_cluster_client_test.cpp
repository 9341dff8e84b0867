// The Redis Cluster client (proxy/redis/) against a real cluster on loopback: real
// redis-server processes (tests/support/redis_cluster.hpp), real sockets. Tests that
// leave the cluster healthy share one; the ones that kill, stop or pause a node start
// their own.
#include <doctest/doctest.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <future>
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
  double plain_serial = run(false, 300, 1);
  MESSAGE("throughput (FCALL HINCRBY, 6 nodes on this machine, AOF always): plain ", static_cast<int>(plain),
          "/s (", mid.round_trips - before.round_trips, " writes); durable (FCALL + WAIT) ", static_cast<int>(durable),
          "/s (", after.round_trips - mid.round_trips, " writes); durable one at a time ",
          static_cast<int>(durable_serial), "/s, plain one at a time ", static_cast<int>(plain_serial), "/s");
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
  // A durable write on the new primary, once the client's map has its replica (the
  // old primary) online: until then it is refused at once, not_durable.
  REQUIRE(cluster.wait_replicas_online(15s));
  RedisResult set;
  CHECK(eventually(5s, [&] {
    set = sync(*client, key, {"SET", key, "after"}, true);
    return set.ok();
  }));
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
  std::string stay = "migrate:{one}:stay";
  auto slot = redis::key_slot(key);
  REQUIRE(sync(*client, key, {"SET", key, "moving"}, true).ok());
  REQUIRE(sync(*client, stay, {"SET", stay, "still on the source"}, true).ok());
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

  // A two-key command whose keys are split between the nodes: -TRYAGAIN, retried
  // with back-off until the deadline, then cluster_down.
  redis::ClusterOptions short_deadline;
  short_deadline.timeout = 300ms;
  auto impatient = connect(cluster, short_deadline);
  auto start = Clock::now();
  auto split = sync(*impatient, key, {"MGET", key, stay});
  double split_s = std::chrono::duration<double>(Clock::now() - start).count();
  INFO(split.message);
  CHECK(split.code == RedisErrc::cluster_down);
  CHECK(split.message.find("TRYAGAIN") != std::string::npos);
  CHECK(split_s > 0.25);
  CHECK(split_s < 0.6);
  CHECK(impatient->counters().retries >= 2);
  REQUIRE(cluster.call(*source, {"MIGRATE", "127.0.0.1", std::to_string(cluster.port(target)), "", "0", "5000", "KEYS",
                                 stay}) == "OK");

  // The migration ends: the slot is the target's, and the source says MOVED.
  std::string target_id = id_of(cluster, target);
  for (auto p : cluster.primaries()) REQUIRE(cluster.call(p, {"CLUSTER", "SETSLOT", slot_text, "NODE", target_id}) == "OK");
  auto again = sync(*client, key, {"GET", key});
  REQUIRE(again.ok());
  CHECK(again.reply.str == "moving");
  CHECK(client->counters().moved >= 1);
  CHECK(cluster.call(target, {"GET", fresh}) == "new");
  CHECK(sync(*client, stay, {"GET", stay}).reply.str == "still on the source");
  REQUIRE(cluster.wait_healthy(10s));
  REQUIRE(cluster.wait_replicas_online(10s));
}

TEST_CASE("redis cluster client: a slot without an owner fails by the deadline, and is found again") {
  auto& cluster = shared_cluster();
  redis::ClusterOptions options;
  options.timeout = 500ms;
  auto client = connect(cluster, options);
  std::string key = "orphan:{slot}";
  auto slot = redis::key_slot(key);
  REQUIRE(sync(*client, key, {"GET", key}).ok());
  auto owner = cluster.primary_of_slot(slot);
  REQUIRE(owner);
  // Unassigned everywhere (a removed claim does not spread by gossip).
  for (size_t node = 0; node < cluster.size(); ++node)
    REQUIRE(cluster.call(node, {"CLUSTER", "DELSLOTS", std::to_string(slot)}) == "OK");
  for (int i = 0; i < 2; ++i) {
    auto start = Clock::now();
    auto r = sync(*client, key, {"GET", key});
    double took = std::chrono::duration<double>(Clock::now() - start).count();
    INFO(r.message);
    // The old owner says CLUSTERDOWN (cluster_down); once the map has no owner for
    // the slot, unreachable.
    CHECK((r.code == RedisErrc::unreachable || r.code == RedisErrc::cluster_down));
    CHECK(took < 0.8);
  }
  auto last = sync(*client, key, {"GET", key});
  CHECK(last.code == RedisErrc::unreachable);
  CHECK(last.message.find("no primary known for slot") != std::string::npos);
  REQUIRE(cluster.call(*owner, {"CLUSTER", "ADDSLOTS", std::to_string(slot)}) == "OK");
  CHECK(eventually(5s, [&] { return sync(*client, key, {"GET", key}).ok(); }));
  REQUIRE(cluster.wait_healthy(10s));
}

// A callback runs on the client's thread: command_sync there would wait for itself.
TEST_CASE("redis cluster client: command_sync from a callback is refused, not a deadlock") {
  auto& cluster = shared_cluster();
  auto client = connect(cluster);
  std::promise<RedisResult> inner;
  client->command("sync:key", {"PING"}, false, [&](RedisResult) { inner.set_value(client->command_sync("sync:key", {"PING"}, false)); });
  auto future = inner.get_future();
  REQUIRE(future.wait_for(5s) == std::future_status::ready);
  auto r = future.get();
  CHECK_FALSE(r.ok());
  CHECK(r.message.find("own thread") != std::string::npos);
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

namespace {

// What a stream of INCRBYs on fresh keys saw: each key is new and each increment is
// the command's own number, so the right reply is exactly that number. Anything else
// (another command's number, a double increment) is a shifted or repeated command.
struct LoadTally {
  std::atomic<int> ok{0}, refused{0}, unreachable{0}, timeout{0}, cluster_down{0}, not_durable{0}, wrong{0};
  std::mutex mu;
  std::string first_wrong;

  void record(const RedisResult& r, int64_t expected) {
    if (r.ok() && r.reply.type == RedisReply::Type::integer && r.reply.integer == expected) return void(++ok);
    // The command ran and was refused: no replica to write with, or the shard is down.
    if (r.ok() && r.reply.is_error() &&
        (r.reply.str.rfind("NOREPLICAS", 0) == 0 || r.reply.str.rfind("CLUSTERDOWN", 0) == 0))
      return void(++refused);
    switch (r.code) {
      case RedisErrc::unreachable: return void(++unreachable);
      case RedisErrc::timeout: return void(++timeout);
      case RedisErrc::cluster_down: return void(++cluster_down);
      case RedisErrc::not_durable: return void(++not_durable);
      default: break;
    }
    ++wrong;
    std::lock_guard lock(mu);
    if (first_wrong.empty())
      first_wrong = "expected " + std::to_string(expected) + ", got code " + std::to_string(static_cast<int>(r.code)) +
                    " '" + r.message + "' reply '" + r.reply.str + "' " + std::to_string(r.reply.integer);
  }
  std::string summary() const {
    return "ok " + std::to_string(ok) + ", refused " + std::to_string(refused) + ", unreachable " +
           std::to_string(unreachable) + ", timeout " + std::to_string(timeout) + ", cluster_down " +
           std::to_string(cluster_down) + ", not_durable " + std::to_string(not_durable) + ", wrong " +
           std::to_string(wrong);
  }
};

// Keeps `window` INCRBYs on fresh keys in flight until stopped.
class Load {
 public:
  Load(cache::ClusterClient& client, LoadTally& tally, int window, const std::string& prefix)
      : client_(client), tally_(tally), window_(window), prefix_(prefix), thread_([this] { run(); }) {}
  ~Load() { stop(); }
  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    std::unique_lock lock(mu_);
    // Bounded: every command has a deadline.
    cv_.wait_for(lock, 30s, [&] { return in_flight_ == 0; });
    CHECK(in_flight_ == 0);
  }
  int sent() const { return sent_; }

 private:
  void run() {
    for (int64_t n = 1; !stopping_; ++n) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, 100ms, [&] { return in_flight_ < window_; });
        if (in_flight_ >= window_) {
          --n;
          continue;
        }
        ++in_flight_;
      }
      std::string key = prefix_ + std::to_string(n);
      ++sent_;
      client_.command(key, {"INCRBY", key, std::to_string(n)}, false, [this, n](RedisResult r) {
        tally_.record(r, n);
        std::lock_guard lock(mu_);
        --in_flight_;
        cv_.notify_all();
      });
    }
  }

  cache::ClusterClient& client_;
  LoadTally& tally_;
  int window_;
  std::string prefix_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> sent_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
  std::thread thread_;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

TEST_CASE("redis cluster client: kill -9 of a primary under load: no shifted reply, then recovery") {
  test::TempDir dir;
  auto cluster = start_cluster(dir);
  redis::ClusterOptions options;
  options.timeout = 1500ms;
  auto client = connect(*cluster, options);
  std::string victim_key = "victim:{kill}";
  auto slot = redis::key_slot(victim_key);
  REQUIRE(sync(*client, victim_key, {"SET", victim_key, "here"}, true).ok());
  auto victim = cluster->primary_of_slot(slot);
  REQUIRE(victim);

  LoadTally tally;
  Load load(*client, tally, 200, "kill:");
  std::this_thread::sleep_for(300ms);  // load running before the kill (not a wait for a signal)
  int sent_before_kill = load.sent();
  auto killed_at = Clock::now();
  cluster->kill(*victim);

  // The replica takes over (node timeout 2 s, then the election); reads come back.
  REQUIRE(eventually(15s, [&] {
    auto p = cluster->primary_of_slot(slot);
    return p && *p != *victim;
  }));
  double failover_s = seconds_since(killed_at);
  REQUIRE(eventually(10s, [&] {
    auto r = sync(*client, victim_key, {"GET", victim_key});
    return r.ok() && r.reply.str == "here";
  }));
  double reads_back_s = seconds_since(killed_at);
  // Writes need a replica again (min-replicas-to-write 1): the old primary restarts
  // and rejoins as the new primary's replica.
  cluster->restart(*victim);
  REQUIRE(eventually(20s, [&] {
    auto r = sync(*client, victim_key, {"SET", victim_key, "again"}, true);
    return r.ok() && r.reply.str == "OK";
  }));
  double writes_back_s = seconds_since(killed_at);
  std::this_thread::sleep_for(200ms);
  load.stop();

  auto c = client->counters();
  MESSAGE("kill -9 under load: ", load.sent(), " commands (", sent_before_kill, " before the kill): ", tally.summary(),
          "; failover seen by the nodes after ", failover_s, " s, reads back after ", reads_back_s,
          " s, durable writes back after ", writes_back_s, " s; counters: moved ", c.moved, ", retries ", c.retries,
          ", reconnects ", c.reconnects, ", failovers_seen ", c.failovers_seen, ", timeouts ", c.timeouts);
  INFO(tally.first_wrong);
  CHECK(tally.wrong == 0);
  CHECK(tally.ok > 0);
  CHECK(tally.unreachable + tally.timeout + tally.cluster_down + tally.refused > 0);
  CHECK(c.failovers_seen > 0);
  // Commands sent well after the recovery all succeed.
  LoadTally after;
  {
    Load more(*client, after, 50, "kill:after:");
    std::this_thread::sleep_for(300ms);
  }
  INFO(after.summary());
  CHECK(after.ok > 0);
  CHECK(after.ok + after.refused == after.ok + after.refused + after.unreachable + after.timeout + after.cluster_down +
                                        after.not_durable + after.wrong);
}

TEST_CASE("redis cluster client: SIGSTOP of a primary gives timeouts within the deadline, then recovery") {
  test::TempDir dir;
  auto cluster = start_cluster(dir);
  redis::ClusterOptions options;
  options.timeout = 1000ms;
  auto client = connect(*cluster, options);
  std::string key = "stalled:{stop}";
  auto slot = redis::key_slot(key);
  REQUIRE(sync(*client, key, {"SET", key, "v"}, true).ok());
  auto stalled = cluster->primary_of_slot(slot);
  REQUIRE(stalled);

  cluster->pause(*stalled);
  auto paused_at = Clock::now();
  // Commands in flight to a stopped server end by their deadline, not never.
  // (Those whose deadline comes with the first's time out; a later one, on the
  // connection closed for the first, fails unreachable: its reply cannot be trusted.)
  Latch latch(100);
  std::atomic<int> timed_out{0}, lost{0};
  for (int i = 0; i < 100; ++i)
    client->command(key, {"GET", key}, i % 2 == 0, [&](RedisResult r) {
      if (r.code == RedisErrc::timeout) ++timed_out;
      if (r.code == RedisErrc::unreachable) ++lost;
      latch.count_down();
    });
  REQUIRE(latch.wait(options.timeout + 1000ms));
  CHECK(timed_out + lost == 100);
  CHECK(timed_out > 0);

  // One at a time until the replica has taken over: each answer within the deadline.
  double slowest = 0;
  int failures = 0;
  bool back = false;
  while (!back && seconds_since(paused_at) < 20) {
    auto start = Clock::now();
    auto r = sync(*client, key, {"GET", key});
    slowest = std::max(slowest, seconds_since(start));
    back = r.ok() && r.reply.str == "v";
    if (!back) {
      ++failures;
      CHECK((r.code == RedisErrc::timeout || r.code == RedisErrc::unreachable || r.code == RedisErrc::cluster_down));
    }
  }
  double recovered_s = seconds_since(paused_at);
  REQUIRE(back);
  CHECK(slowest < 1.5);
  MESSAGE("SIGSTOP of a primary: of 100 in flight ", timed_out.load(), " timed out, ", lost.load(),
          " unreachable; then ", failures, " failed reads, the slowest answer after ", slowest,
          " s (deadline 1 s); reads back after ", recovered_s, " s");
  REQUIRE(eventually(5s, [&] { return client->counters().failovers_seen > 0; }));

  // SIGCONT: the old primary hears of the new epoch and becomes a replica.
  cluster->resume(*stalled);
  REQUIRE(cluster->wait_healthy(15s));
  REQUIRE(eventually(15s, [&] {
    auto r = sync(*client, key, {"SET", key, "w"}, true);
    return r.ok() && r.reply.str == "OK";
  }));
}

TEST_CASE("redis cluster client: a paused replica makes durable commands not_durable, others still succeed") {
  test::TempDir dir;
  auto cluster = start_cluster(dir);
  redis::ClusterOptions options;
  options.timeout = 1000ms;
  auto client = connect(*cluster, options);
  std::string key = "replica:{paused}";
  auto slot = redis::key_slot(key);
  REQUIRE(sync(*client, key, {"SET", key, "v1"}, true).ok());
  auto primary = cluster->primary_of_slot(slot);
  REQUIRE(primary);
  auto replicas = cluster->replicas_of(*primary);
  REQUIRE(replicas.size() == 1);

  cluster->pause(replicas[0]);
  auto start = Clock::now();
  std::promise<RedisResult> durable_done;
  client->command(key, {"SET", key, "v2"}, true, [&](RedisResult r) { durable_done.set_value(std::move(r)); });
  // A read meanwhile is not queued behind the durable command's WAIT.
  auto read_start = Clock::now();
  auto read = sync(*client, key, {"GET", key});
  double read_s = seconds_since(read_start);
  REQUIRE(read.ok());
  CHECK(read.reply.type == RedisReply::Type::string);
  CHECK(read_s < 0.5);
  auto durable = durable_done.get_future().get();
  double durable_s = seconds_since(start);
  INFO(durable.message);
  // Not confirmed, within the deadline: not_durable (the WAIT answered short), or, on
  // a loaded machine where the WAIT's own reply came after the deadline, timeout.
  // Either way the write is not reported ok.
  CHECK((durable.code == RedisErrc::not_durable || durable.code == RedisErrc::timeout));
  CHECK(durable_s < 1.3);
  if (durable.code == RedisErrc::not_durable) CHECK(durable.message.find("WAIT") != std::string::npos);

  // Once the cluster marks the replica failed, the client refuses at once.
  std::string refused;
  CHECK(eventually(10s, [&] {
    auto r = sync(*client, key, {"SET", key, "v3"}, true);
    refused = r.message;
    return r.code == RedisErrc::not_durable && r.message.find("no online replica") != std::string::npos;
  }));
  MESSAGE("paused replica: durable command not_durable after ", durable_s, " s (", durable.message, "); read after ",
          read_s, " s; later: ", refused);
  CHECK(client->counters().wait_failures >= 1);

  cluster->resume(replicas[0]);
  REQUIRE(cluster->wait_replicas_online(15s));
  CHECK(eventually(10s, [&] {
    auto r = sync(*client, key, {"SET", key, "v4"}, true);
    return r.ok() && r.reply.str == "OK";
  }));
}

TEST_CASE("redis cluster client: AUTH; a wrong password is a clear error without the password") {
  test::TempDir dir;
  test::RedisCluster::Options cluster_options;
  cluster_options.password = "pw-Secret-123";
  auto cluster = start_cluster(dir, cluster_options);

  redis::ClusterOptions options;
  options.password = "pw-Secret-123";
  auto client = connect(*cluster, options);
  for (auto [lo, hi] : {std::pair<uint16_t, uint16_t>{0, 5460}, {5461, 10922}, {10923, 16383}}) {
    std::string key = key_in(lo, hi, "auth:");
    auto set = sync(*client, key, {"SET", key, "x"}, true);
    INFO(set.message);
    REQUIRE(set.ok());
    CHECK(sync(*client, key, {"GET", key}).reply.str == "x");
  }

  std::string error;
  options.password = "wrong-pw-456";
  options.seeds = cluster->seeds();
  CHECK_FALSE(redis::connect_cluster(options, &error));
  INFO(error);
  CHECK(error.find("AUTH") != std::string::npos);
  CHECK(error.find("WRONGPASS") != std::string::npos);
  CHECK(error.find("wrong-pw-456") == std::string::npos);
  CHECK(error.find("pw-Secret-123") == std::string::npos);

  options.password.clear();
  CHECK_FALSE(redis::connect_cluster(options, &error));
  CHECK(error.find("NOAUTH") != std::string::npos);

  // Nobody listening: an error naming the seed, within the timeout.
  options.seeds = {"127.0.0.1:1"};
  auto start = Clock::now();
  CHECK_FALSE(redis::connect_cluster(options, &error));
  CHECK(seconds_since(start) < 2.5);
  CHECK(error.find("127.0.0.1:1") != std::string::npos);
}
