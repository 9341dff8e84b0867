#pragma once
// The Redis Cluster client on Boost.Asio that implements cache::ClusterClient
// (cache/cluster_client.hpp; design/distributed.md sections 5.5 and 6). Debian 12
// packages no cluster-capable C++ client, so hiredis (libhiredis-dev 0.14) is used
// only as the RESP codec and the cluster part is here:
//   - CRC16 slots and hash tags (key_slot);
//   - the slot map from CLUSTER SHARDS (refreshed on MOVED, after a failure, and
//     every refresh_interval), each shard's primary and its online replicas;
//   - MOVED (update the slot, refresh, resend), ASK (ASKING + the command, once),
//     TRYAGAIN / CLUSTERDOWN / LOADING (back off, resend) until the deadline;
//   - one connection per primary, reconnected on loss; a connection that lost a reply
//     (timeout, reset) is closed, never reused with a reply outstanding;
//   - pipelining: commands queued for a node while a write is in flight leave in one
//     write, their replies matched in order, with one WAIT after the durable ones.
//
// Connections: one per primary for plain commands and one for durable ones (a WAIT
// blocks its connection until the replicas answer or its timeout passes, so reads are
// not queued behind a slow replica's WAIT), plus one for the slot-map refreshes (a
// stalled node must not hold the client's map). Ordering holds per lane: a command
// sent after another one's callback sees its effects; two commands sent at once, one
// durable and one not, may run in either order.
//
// Threads: the client owns an io_context and one thread; command() posts onto it and
// every callback runs on it. The destructor stops the thread after calling every
// pending callback once (unreachable, "the client was destroyed"); a command() that
// races the destructor from another thread is failed the same way, on the thread
// running the destructor.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cluster_client.hpp"

namespace reprise::redis {

struct ClusterOptions {
  std::vector<std::string> seeds;  // "host:port"; the rest are discovered
  std::string password;            // AUTH on every connection; empty: none
  // One command's deadline, retries and the WAIT included. Default 2000 ms.
  std::chrono::milliseconds timeout{2000};
  // Replicas a durable command must reach: -1 (default, "all") = every replica of
  // the shard that CLUSTER SHARDS reports online, and at least 1: a shard with no
  // online replica refuses durable commands (not_durable), since a failover could
  // lose them. 0 = no WAIT (a cluster without replicas: tests, a laptop).
  int wait_replicas = -1;
  // How often the slot map is refreshed when nothing forces it. Default 1000 ms.
  std::chrono::milliseconds refresh_interval{1000};
};

// The hash slot of a key: CRC16 (XMODEM) of the key, or of the part between the
// first '{' and the next '}' when that part is not empty, modulo 16384.
uint16_t key_slot(std::string_view key);
// CRC16-XMODEM, as the slots use it (crc16("123456789") == 0x31C3).
uint16_t crc16(std::string_view bytes);

// Connects to a seed, reads the slot map and starts the client's thread. Null, with
// `error` set, when no seed answers or the map cannot be read within options.timeout.
std::unique_ptr<cache::ClusterClient> connect_cluster(ClusterOptions options, std::string* error);

}  // namespace reprise::redis
