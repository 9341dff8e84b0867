#pragma once
// What the cluster store (cluster_cacher.hpp) asks of a Redis Cluster: run a command
// on the primary that owns a key's slot, durably if asked, and say what happened. An
// interface, so that cache/ stays free of sockets (DESIGN.md section 7); the client on
// Boost.Asio that implements it lives in proxy/redis/ (asio_cluster_client.hpp), with
// the slot routing, MOVED/ASK, reconnects, deadlines, pipelining and the WAIT.
//
// Durability: a `durable` command's reply is delivered only after a WAIT on the same
// connection, sent in the same write as the commands it covers, confirmed that W
// replicas of its shard have it (W: [cache.redis] wait_replicas); otherwise the caller
// gets not_durable (the command ran; what it wrote must not be served).
//
// Callbacks run on the client's own thread and must not block; command_sync() may be
// called from any other thread (never from a callback).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace reprise::cache {

// A RESP2 reply, decoded and owned.
struct RedisReply {
  enum class Type { nil, string, status, integer, array, error };
  Type type = Type::nil;
  std::string str;  // string, status, error
  int64_t integer = 0;
  std::vector<RedisReply> elements;  // array

  bool is_error() const { return type == Type::error; }
};

enum class RedisErrc {
  ok,           // `reply` holds the answer (an error reply from a script is still ok:
                // the command ran; look at reply.is_error())
  timeout,      // the deadline passed; the command may or may not have run
  unreachable,  // no node of the slot's shard could be reached (no primary, say)
  not_durable,  // it ran, but WAIT did not confirm it on W replicas in time
  cluster_down, // CLUSTERDOWN / TRYAGAIN / LOADING until the deadline (did not run)
  protocol,     // a reply hiredis could not parse; the connection was closed
};

struct RedisResult {
  RedisErrc code = RedisErrc::ok;
  std::string message;  // for errors: what happened, for logs (never a password)
  RedisReply reply;
  bool ok() const { return code == RedisErrc::ok; }
};

class ClusterClient {
 public:
  using Callback = std::function<void(RedisResult)>;

  virtual ~ClusterClient() = default;

  // Runs `args` on the primary of the slot of `slot_key` (any key of the command, or
  // a hash tag). Calls `done` exactly once, on the client's thread.
  virtual void command(std::string_view slot_key, std::vector<std::string> args, bool durable, Callback done) = 0;
  // The same, blocking. Not from the client's own thread.
  virtual RedisResult command_sync(std::string_view slot_key, std::vector<std::string> args, bool durable) = 0;
  // Runs `args` on every primary (FUNCTION LOAD, say); the first failure, or ok.
  virtual RedisResult on_every_primary(std::vector<std::string> args) = 0;

  // Counters for /admin/stats and /metrics.
  struct Counters {
    uint64_t commands = 0;        // commands completed (any outcome)
    uint64_t round_trips = 0;     // writes of a batch of commands to a node
    uint64_t retries = 0;         // commands sent again (MOVED, ASK, TRYAGAIN, a lost connection)
    uint64_t moved = 0;
    uint64_t ask = 0;
    uint64_t failovers_seen = 0;  // a slot map refresh found a shard's primary changed
    uint64_t wait_failures = 0;   // durable commands WAIT did not confirm
    uint64_t timeouts = 0;
    uint64_t reconnects = 0;
    uint64_t errors = 0;          // commands that ended in an error other than the above
  };
  virtual Counters counters() const = 0;
  // {"nodes":[{"address","role":"primary"|"replica","slots":N,"online":bool}],"shards":N}
  virtual nlohmann::json topology() const = 0;
};

}  // namespace reprise::cache
