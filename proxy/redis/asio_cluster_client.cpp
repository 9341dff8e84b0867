// The Redis Cluster client on Boost.Asio (the contract is in asio_cluster_client.hpp
// and cache/cluster_client.hpp; the reasoning in design/distributed.md 5.4-5.5, 6).
//
// Everything below runs on the client's one thread, so no state here needs a lock;
// only the counters (atomics) and the topology snapshot (a mutex) are read from other
// threads. An operation (Op) lives from command() until its callback has run:
//   waiting  (for a retry, a refresh)  -> dispatch() routes it to a node's lane
//   queued   (in the lane's pending queue, not yet written)
//   written  (in the lane's in-flight FIFO, its reply not read yet)
//   awaiting (durable: its reply came, the batch's WAIT reply did not)
// A queued op may be routed again (nothing was sent); a written one never is, because
// the store's commands are not idempotent: a lost reply is reported, not retried.
#include "proxy/redis/asio_cluster_client.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <thread>
#include <unordered_map>

namespace reprise::redis {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using cache::RedisErrc;
using cache::RedisReply;
using cache::RedisResult;
using namespace std::chrono_literals;

namespace {

constexpr int kSlots = 16384;
// Back-off for TRYAGAIN / CLUSTERDOWN / a node that cannot be reached: short at first
// (a slot migration step, a refused connect during a failover), capped so a command
// still gets several tries within its deadline.
constexpr auto kMinBackoff = 20ms;
constexpr auto kMaxBackoff = 200ms;
// Refreshes forced by events (MOVED, a lost connection) are at least this far apart:
// a failover turns every in-flight command into a MOVED or a reset at once.
constexpr auto kRefreshGap = 100ms;
// One CLUSTER SHARDS try, and one connect: a stalled node must not hold the map for a
// whole command deadline.
constexpr auto kRefreshTryTimeout = 1000ms;
constexpr auto kConnectTimeout = 1000ms;
// Redirections one command follows before it backs off (a map in flux ping-pongs).
constexpr int kRedirectsBeforeBackoff = 3;
constexpr auto kDeadlineGrace = 2ms;

enum class Lane { plain = 0, durable = 1, control = 2 };
// Durable connections per primary, used in turn. A WAIT blocks its connection until
// the replicas acknowledge (with appendfsync always, until both sides fsynced), and
// nothing more is written on it meanwhile; with one connection a primary's durable
// throughput was one batch per fsync cycle. With a few, the next batch goes out on an
// idle one while the last one's WAIT is out (design/distributed.md section 8).
// Commands on different connections may run in either order: the store's calls that
// must be ordered (one namespace's takes of one key) are merged into one by the
// Deduplicator, or come from different batches, which are not ordered anyway.
constexpr int kDurableConns = 3;

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING: out.type = RedisReply::Type::string; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_STATUS: out.type = RedisReply::Type::status; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_ERROR: out.type = RedisReply::Type::error; out.str.assign(r->str, r->len); break;
    case REDIS_REPLY_INTEGER: out.type = RedisReply::Type::integer; out.integer = r->integer; break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::array;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default: break;
  }
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

struct Node;
struct Conn;

struct Op {
  enum class Phase { waiting, queued, written, awaiting };
  std::vector<std::string> args;
  cache::ClusterClient::Callback done;
  Clock::time_point deadline;
  uint16_t slot = 0;
  Lane lane = Lane::plain;
  bool durable = false;
  bool counted = true;   // a caller's command (Counters::commands); refreshes are not
  bool finished = false;
  bool asking = false;   // an -ASK redirection: ASKING goes before it, once
  Phase phase = Phase::waiting;
  uint32_t attempt = 0;  // bumped on each resend: a stale FIFO entry is recognised
  int redirects = 0;
  Node* target = nullptr;  // a fixed node (refresh, on_every_primary): never routed
  Node* ask_node = nullptr;
  Conn* conn = nullptr;
  std::chrono::milliseconds backoff{0};
  // What the deadline reports for an op that was never written: why it is waiting.
  RedisErrc code_at_deadline = RedisErrc::timeout;
  std::string message_at_deadline;
  RedisReply stashed;  // a durable op's reply, held until its WAIT's
};
using OpPtr = std::shared_ptr<Op>;

struct Conn {
  Conn(asio::io_context& io, Node& n, Lane l) : node(n), lane(l), socket(io), connect_timer(io) {}
  ~Conn() {
    if (reader) redisReaderFree(reader);
  }

  enum class State { idle, connecting, authenticating, ready };
  struct Entry {
    enum class Kind { op, asking, wait, auth };
    Entry(Kind k, OpPtr o = nullptr, uint32_t a = 0) : kind(k), op(std::move(o)), attempt(a) {}
    Kind kind;
    OpPtr op;
    uint32_t attempt;
    // WAIT: the replicas it asks for, its timeout, and the durable ops it covers.
    int wanted = 0;
    int64_t wait_ms = 0;
    std::vector<std::pair<OpPtr, uint32_t>> covered;
  };

  Node& node;
  Lane lane;
  tcp::socket socket;
  asio::steady_timer connect_timer;
  State state = State::idle;
  uint64_t generation = 0;  // bumped on close: handlers of an older socket do nothing
  bool writing = false;
  // WAITs written whose replies have not come. While one is out, nothing more is
  // written: the server would not read it before the WAIT returns anyway, and holding
  // it here makes the next batch (and its one WAIT) as large as the load.
  int waits_out = 0;
  bool flush_posted = false;
  bool attempted = false;
  // After a failed connect, the next one waits (20 ms doubling to 200 ms): the ops
  // that were queued here retry on their own schedules and would otherwise each start
  // a connect to a dead node.
  Clock::time_point next_connect{};
  std::chrono::milliseconds connect_backoff{0};
  std::string connect_error;
  std::deque<OpPtr> pending;
  std::deque<Entry> inflight;
  std::string wbuf;
  redisReader* reader = redisReaderCreate();
  std::array<char, 64 * 1024> rbuf;
};

struct Node {
  std::string address;  // host:port
  std::string host;
  tcp::endpoint endpoint;
  std::string resolve_error;  // set when the address cannot be used
  std::string id;
  bool primary = false;
  // A primary's replicas by the health the last CLUSTER SHARDS gave them; -1 unknown.
  // "loading" is Redis 7.0's word for a replica whose replication offset is still 0:
  // one in a full sync, but also every replica of a new primary that has not been
  // written to yet. Those count only when no replica is online: W is then 1 and the
  // WAIT decides (an idle new replica acknowledges at once, a syncing one not until
  // it has loaded), so a new cluster can take its first durable write.
  int online_replicas = -1;
  int loading_replicas = 0;
  // By lane: plain, the first durable one, control, then the other durable ones.
  std::array<std::unique_ptr<Conn>, 2 + kDurableConns> conns;
};

class AsioClusterClient final : public cache::ClusterClient {
 public:
  explicit AsioClusterClient(ClusterOptions options)
      : options_(std::move(options)),
        work_(asio::make_work_guard(io_)),
        deadline_timer_(io_),
        retry_timer_(io_),
        refresh_timer_(io_),
        periodic_timer_(io_) {}

  ~AsioClusterClient() override {
    stopping_ = true;
    if (thread_.joinable()) {
      asio::post(io_, [this] { shutdown(); });
      thread_.join();
    } else {
      shutdown();
    }
    // Commands posted while the thread was stopping: failed here, on this thread, so
    // that every callback is still called once.
    io_.restart();
    io_.poll();
  }

  // Starts the thread and reads the first slot map from a seed.
  bool start(std::string* error) {
    thread_ = std::thread([this] {
      // Callbacks must not throw (they are the caller's); if one does, the client
      // keeps running rather than losing every other command's callback.
      for (;;) {
        try {
          io_.run();
          return;
        } catch (...) {
        }
      }
    });
    auto ready = std::make_shared<std::promise<std::string>>();
    auto answer = ready->get_future();
    asio::post(io_, [this, ready] {
      std::vector<Node*> seeds;
      std::string bad;
      for (auto& seed : options_.seeds) {
        Node* n = node_for(seed, "");
        if (!n->resolve_error.empty()) bad += (bad.empty() ? "" : "; ") + n->resolve_error;
        seeds.push_back(n);
      }
      if (seeds.empty()) return ready->set_value("no seed given");
      on_first_map_ = [ready, bad](bool ok, std::string why) {
        ready->set_value(ok ? std::string() : "no seed answered CLUSTER SHARDS: " + (why.empty() ? bad : why));
      };
      start_refresh(std::move(seeds), Clock::now() + options_.timeout);
      arm_periodic();
    });
    std::string why = answer.get();
    if (!why.empty() && error) *error = scrub(why);
    return why.empty();
  }

  void command(std::string_view slot_key, std::vector<std::string> args, bool durable, Callback done) override {
    OpPtr op(new Op);
    op->slot = key_slot(slot_key);
    op->args = std::move(args);
    op->durable = durable;
    op->lane = durable ? Lane::durable : Lane::plain;
    op->done = std::move(done);
    op->deadline = Clock::now() + options_.timeout;
    asio::post(io_, [this, op = std::move(op)]() mutable { submit(std::move(op)); });
  }

  RedisResult command_sync(std::string_view slot_key, std::vector<std::string> args, bool durable) override {
    if (std::this_thread::get_id() == thread_.get_id())
      return {RedisErrc::unreachable, "command_sync called on the client's own thread (it would never return)", {}};
    auto result = std::make_shared<std::promise<RedisResult>>();
    auto answer = result->get_future();
    command(slot_key, std::move(args), durable, [result](RedisResult r) { result->set_value(std::move(r)); });
    return answer.get();  // bounded: every op's deadline fires
  }

  RedisResult on_every_primary(std::vector<std::string> args) override {
    if (std::this_thread::get_id() == thread_.get_id())
      return {RedisErrc::unreachable, "on_every_primary called on the client's own thread", {}};
    struct Gather {
      size_t left = 0;
      std::optional<RedisResult> failure, last;
      std::promise<RedisResult> done;
    };
    auto gather = std::make_shared<Gather>();
    auto answer = gather->done.get_future();
    asio::post(io_, [this, gather, args = std::move(args)] {
      std::vector<Node*> primaries;
      for (Node* n : slot_owner_)
        if (n && std::find(primaries.begin(), primaries.end(), n) == primaries.end()) primaries.push_back(n);
      if (primaries.empty() || shut_down_)
        return gather->done.set_value({RedisErrc::unreachable, "no primary known", {}});
      gather->left = primaries.size();
      for (Node* n : primaries) {
        OpPtr op(new Op);
        op->args = args;
        op->target = n;
        op->deadline = Clock::now() + options_.timeout;
        op->done = [gather, address = n->address](RedisResult r) {
          bool failed = !r.ok() || r.reply.is_error();
          if (failed && !gather->failure) {
            if (r.message.empty()) r.message = address + ": " + r.reply.str;
            gather->failure = std::move(r);
          } else if (!failed) {
            gather->last = std::move(r);
          }
          if (--gather->left == 0) gather->done.set_value(gather->failure ? std::move(*gather->failure) : std::move(*gather->last));
        };
        submit(std::move(op));
      }
    });
    return answer.get();
  }

  Counters counters() const override {
    Counters c;
    c.commands = counters_.commands;
    c.round_trips = counters_.round_trips;
    c.retries = counters_.retries;
    c.moved = counters_.moved;
    c.ask = counters_.ask;
    c.failovers_seen = counters_.failovers_seen;
    c.wait_failures = counters_.wait_failures;
    c.timeouts = counters_.timeouts;
    c.reconnects = counters_.reconnects;
    c.errors = counters_.errors;
    return c;
  }

  nlohmann::json topology() const override {
    std::lock_guard lock(topology_mu_);
    return topology_;
  }

 private:
  struct AtomicCounters {
    std::atomic<uint64_t> commands{0}, round_trips{0}, retries{0}, moved{0}, ask{0}, failovers_seen{0},
        wait_failures{0}, timeouts{0}, reconnects{0}, errors{0};
  };
  // Weak: a finished op is freed at once, not at its deadline (ops are allocated with
  // `new`, not make_shared, so that only the small control block stays behind).
  using DeadlineEntry = std::pair<Clock::time_point, std::weak_ptr<Op>>;
  struct Later {
    bool operator()(const DeadlineEntry& a, const DeadlineEntry& b) const { return a.first > b.first; }
  };

  // --- operations ----------------------------------------------------------------

  void submit(OpPtr op) {
    if (shut_down_) return finish(op, RedisErrc::unreachable, "the client was destroyed");
    if (op->args.empty()) return finish(op, RedisErrc::protocol, "empty command");
    if (op->target) op->durable = false;
    deadlines_.emplace(op->deadline, op);
    arm_deadline(op->deadline);
    dispatch(std::move(op));
  }

  void finish(const OpPtr& op, RedisErrc code, std::string message, RedisReply reply = {}) {
    if (op->finished) return;
    op->finished = true;
    op->phase = Op::Phase::waiting;
    op->conn = nullptr;
    if (op->counted) {
      ++counters_.commands;
      switch (code) {
        case RedisErrc::ok: break;
        case RedisErrc::timeout: ++counters_.timeouts; break;
        case RedisErrc::not_durable: ++counters_.wait_failures; break;
        default: ++counters_.errors; break;
      }
    }
    auto done = std::move(op->done);
    // Other holders (a FIFO entry, a WAIT's list) may keep it a little longer.
    std::vector<std::string>().swap(op->args);
    op->stashed = {};
    op->message_at_deadline.clear();
    if (done) done(RedisResult{code, scrub(std::move(message)), std::move(reply)});
  }

  // Error messages come from servers and sockets; none should carry the password, and
  // this makes sure none does.
  std::string scrub(std::string message) const {
    if (options_.password.empty()) return message;
    for (size_t at; (at = message.find(options_.password)) != std::string::npos;)
      message.replace(at, options_.password.size(), "***");
    return message;
  }

  void dispatch(OpPtr op) {
    if (op->finished) return;
    if (shut_down_) return finish(op, RedisErrc::unreachable, "the client was destroyed");
    Node* node = op->target ? op->target : op->ask_node ? op->ask_node : slot_owner_[op->slot];
    if (!node) {
      wait_for_map(op, "no primary known for slot " + std::to_string(op->slot));
      return;
    }
    if (op->durable && options_.wait_replicas < 0) {
      // W is "every online replica of the shard": unknown until the map has this node
      // as a primary (a MOVED can name a node promoted since the last refresh).
      if (!node->primary || node->online_replicas < 0) {
        wait_for_map(op, "the shard of " + node->address + " is not in the slot map yet");
        return;
      }
      if (node->online_replicas == 0 && node->loading_replicas == 0)
        return finish(op, RedisErrc::not_durable,
                      "no online replica to confirm the write (shard of " + node->address + ")");
    }
    Conn& c = conn_for(*node, op->lane);
    if (c.state == Conn::State::idle && Clock::now() < c.next_connect) {
      op->code_at_deadline = RedisErrc::unreachable;
      op->message_at_deadline = c.connect_error;
      if (op->target) return finish(op, RedisErrc::unreachable, c.connect_error);
      return retry_later(op);
    }
    op->phase = Op::Phase::queued;
    op->conn = &c;
    c.pending.push_back(std::move(op));
    if (c.state == Conn::State::idle) connect(c);
    else if (c.state == Conn::State::ready) schedule_flush(c);
  }

  void wait_for_map(const OpPtr& op, std::string why) {
    op->code_at_deadline = RedisErrc::unreachable;
    op->message_at_deadline = std::move(why);
    request_refresh();
    retry_later(op);
  }

  void retry_later(const OpPtr& op) {
    op->phase = Op::Phase::waiting;
    op->conn = nullptr;
    op->backoff = op->backoff.count() == 0 ? kMinBackoff : std::min(op->backoff * 2, std::chrono::milliseconds(kMaxBackoff));
    // Held here even when `at` is past the deadline: the deadline's timer fires
    // first and reports why the op waited (the deadline heap holds no op alive).
    auto at = Clock::now() + op->backoff;
    delayed_.emplace(at, op);
    arm_retry(at);
  }

  // What an op's deadline does: a written op's connection can no longer be trusted
  // (its reply may still come, and the next op would read it), so it is closed.
  void expire(const OpPtr& op, std::vector<Conn*>& to_close) {
    if (op->phase == Op::Phase::written || op->phase == Op::Phase::awaiting) {
      Conn* c = op->conn;
      finish(op, RedisErrc::timeout,
             "no reply from " + c->node.address + " within the deadline; the command may have run");
      if (std::find(to_close.begin(), to_close.end(), c) == to_close.end()) to_close.push_back(c);
      return;
    }
    std::string why = op->message_at_deadline.empty() ? "the deadline passed before the command could be sent"
                                                       : op->message_at_deadline;
    finish(op, op->code_at_deadline, std::move(why));
  }

  // --- timers --------------------------------------------------------------------

  void arm_deadline(Clock::time_point at) {
    if (at >= deadline_armed_) return;
    deadline_armed_ = at;
    deadline_timer_.expires_at(at);
    deadline_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      deadline_armed_ = Clock::time_point::max();
      // Ops sent together have deadlines microseconds apart: all of those due now
      // (with a little grace) time out together, before their connections are closed,
      // rather than the first one's close failing the others as unreachable.
      auto due = Clock::now() + kDeadlineGrace;
      std::vector<Conn*> to_close;
      while (!deadlines_.empty() && deadlines_.top().first <= due) {
        OpPtr op = deadlines_.top().second.lock();
        deadlines_.pop();
        if (op && !op->finished) expire(op, to_close);
      }
      for (Conn* c : to_close)
        if (c->state != Conn::State::idle)
          conn_fail(*c, "connection to " + c->node.address + " closed after a command on it timed out");
      if (!deadlines_.empty()) arm_deadline(deadlines_.top().first);
    });
  }

  void arm_retry(Clock::time_point at) {
    if (at >= retry_armed_) return;
    retry_armed_ = at;
    retry_timer_.expires_at(at);
    retry_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      retry_armed_ = Clock::time_point::max();
      auto now = Clock::now();
      while (!delayed_.empty() && delayed_.begin()->first <= now) {
        OpPtr op = std::move(delayed_.begin()->second);
        delayed_.erase(delayed_.begin());
        dispatch(std::move(op));
      }
      if (!delayed_.empty()) arm_retry(delayed_.begin()->first);
    });
  }

  void arm_periodic() {
    periodic_timer_.expires_after(options_.refresh_interval);
    periodic_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || shut_down_) return;
      request_refresh();
      arm_periodic();
    });
  }

  // --- nodes and connections -------------------------------------------------------

  // The node at "host:port" (an empty host: `default_host`, as a MOVED may say).
  Node* node_for(std::string_view address, std::string_view default_host) {
    auto colon = address.rfind(':');
    std::string host(colon == std::string_view::npos ? address : address.substr(0, colon));
    if (host.empty()) host = default_host;
    std::string port(colon == std::string_view::npos ? "" : address.substr(colon + 1));
    std::string key = host + ":" + port;
    auto& slot = nodes_[key];
    if (slot) return slot.get();
    slot = std::make_unique<Node>();
    Node& n = *slot;
    n.address = key;
    n.host = host;
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(host, ec);
    int port_number = 0;
    try {
      port_number = std::stoi(port);
    } catch (...) {
    }
    if (port_number <= 0 || port_number > 65535) {
      n.resolve_error = key + ": not host:port";
    } else if (!ec) {
      n.endpoint = tcp::endpoint(ip, static_cast<uint16_t>(port_number));
    } else {
      // A name rather than an address (a seed in the config): resolved once, here.
      tcp::resolver resolver(io_);
      auto found = resolver.resolve(host, port, ec);
      if (ec || found.empty()) n.resolve_error = key + ": cannot resolve: " + ec.message();
      else n.endpoint = found.begin()->endpoint();
    }
    return &n;
  }

  Conn& conn_for(Node& node, Lane lane) {
    if (lane == Lane::durable) return durable_conn(node);
    auto& c = node.conns[static_cast<int>(lane)];
    if (!c) c = std::make_unique<Conn>(io_, node, lane);
    return *c;
  }

  // The durable connection to write on: one that is connected and free to write now
  // (no WAIT out), else one that is free once connected, else the one with the fewest
  // commands waiting. So a second connection opens only when the load needs it.
  Conn& durable_conn(Node& node) {
    Conn *free = nullptr, *least = nullptr;
    for (int k = 0; k < kDurableConns; ++k) {
      auto& c = node.conns[k == 0 ? static_cast<int>(Lane::durable) : 2 + k];
      if (!c) c = std::make_unique<Conn>(io_, node, Lane::durable);
      const bool unblocked = c->waits_out == 0 && !c->writing;
      if (unblocked && c->state == Conn::State::ready) return *c;
      if (unblocked && !free) free = c.get();
      if (!least || c->pending.size() < least->pending.size()) least = c.get();
    }
    return free ? *free : *least;
  }

  void connect(Conn& c) {
    if (!c.node.resolve_error.empty()) return conn_fail(c, c.node.resolve_error, RedisErrc::unreachable, true);
    c.state = Conn::State::connecting;
    uint64_t generation = ++c.generation;
    if (c.attempted) ++counters_.reconnects;
    c.attempted = true;
    c.connect_timer.expires_after(std::min<Clock::duration>(options_.timeout, kConnectTimeout));
    c.connect_timer.async_wait([this, &c, generation](boost::system::error_code ec) {
      if (ec || generation != c.generation || c.state != Conn::State::connecting) return;
      connect_failed(c, "connect to " + c.node.address + " timed out");
    });
    c.socket.async_connect(c.node.endpoint, [this, &c, generation](boost::system::error_code ec) {
      if (generation != c.generation) return;
      c.connect_timer.cancel();
      if (ec) return connect_failed(c, "connect to " + c.node.address + " failed: " + ec.message());
      c.connect_backoff = {};
      c.socket.set_option(tcp::no_delay(true), ec);
      read(c);
      if (options_.password.empty()) {
        c.state = Conn::State::ready;
        return flush(c);
      }
      // AUTH alone, before any command: a command pipelined behind a failed AUTH
      // would be refused, and a clear AUTH error is worth one round trip per connect.
      c.state = Conn::State::authenticating;
      c.wbuf.clear();
      append_command(c.wbuf, {"AUTH", options_.password});
      c.inflight.emplace_back(Conn::Entry::Kind::auth);
      write(c);
    });
  }

  void schedule_flush(Conn& c) {
    if (c.flush_posted || c.writing || c.waits_out > 0) return;
    c.flush_posted = true;
    // Posted, not run now: the commands posted from other threads before this
    // handler leave in the same write.
    asio::post(io_, [this, &c] {
      c.flush_posted = false;
      flush(c);
    });
  }

  // Writes every queued command in one write; a WAIT after them when any is durable.
  void flush(Conn& c) {
    if (c.state != Conn::State::ready || c.writing || c.waits_out > 0 || c.pending.empty()) return;
    c.wbuf.clear();
    std::vector<std::pair<OpPtr, uint32_t>> covered;
    Clock::time_point earliest = Clock::time_point::max();
    while (!c.pending.empty()) {
      OpPtr op = std::move(c.pending.front());
      c.pending.pop_front();
      if (op->finished) continue;
      if (op->asking) {
        append_command(c.wbuf, {"ASKING"});
        c.inflight.emplace_back(Conn::Entry::Kind::asking);
      }
      if (!append_command(c.wbuf, op->args)) {
        finish(op, RedisErrc::protocol, "the command cannot be encoded");
        continue;
      }
      op->phase = Op::Phase::written;
      if (op->durable && options_.wait_replicas != 0) {
        covered.emplace_back(op, op->attempt);
        earliest = std::min(earliest, op->deadline);
      }
      uint32_t attempt = op->attempt;
      c.inflight.emplace_back(Conn::Entry::Kind::op, std::move(op), attempt);
    }
    if (c.wbuf.empty()) return;
    if (!covered.empty()) {
      int wanted = options_.wait_replicas > 0 ? options_.wait_replicas : std::max(1, c.node.online_replicas);
      // WAIT must answer before the earliest deadline it covers, with room for the
      // reply to arrive: a reply late by a hair would close the connection.
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(earliest - Clock::now());
      auto margin = std::min<std::chrono::milliseconds>(left / 5, 50ms);
      int64_t ms = std::clamp<int64_t>((left - margin).count(), 1, options_.timeout.count());
      append_command(c.wbuf, {"WAIT", std::to_string(wanted), std::to_string(ms)});
      Conn::Entry entry(Conn::Entry::Kind::wait);
      entry.wanted = wanted;
      entry.wait_ms = ms;
      entry.covered = std::move(covered);
      c.inflight.push_back(std::move(entry));
      ++c.waits_out;
    }
    write(c);
  }

  void write(Conn& c) {
    c.writing = true;
    ++counters_.round_trips;
    asio::async_write(c.socket, asio::buffer(c.wbuf),
                      [this, &c, generation = c.generation](boost::system::error_code ec, size_t) {
                        if (generation != c.generation) return;
                        c.writing = false;
                        if (ec) return conn_fail(c, "write to " + c.node.address + " failed: " + ec.message());
                        flush(c);
                      });
  }

  bool append_command(std::string& out, const std::vector<std::string>& args) {
    argv_.clear();
    argv_len_.clear();
    for (auto& a : args) {
      argv_.push_back(a.data());
      argv_len_.push_back(a.size());
    }
    char* encoded = nullptr;
    int len = redisFormatCommandArgv(&encoded, static_cast<int>(args.size()), argv_.data(), argv_len_.data());
    if (len < 0 || !encoded) return false;
    out.append(encoded, static_cast<size_t>(len));
    redisFreeCommand(encoded);
    return true;
  }

  void read(Conn& c) {
    c.socket.async_read_some(asio::buffer(c.rbuf), [this, &c, generation = c.generation](boost::system::error_code ec,
                                                                                          size_t n) {
      if (generation != c.generation) return;
      if (ec) {
        return conn_fail(c, ec == asio::error::eof ? c.node.address + " closed the connection"
                                                   : "read from " + c.node.address + " failed: " + ec.message());
      }
      if (redisReaderFeed(c.reader, c.rbuf.data(), n) != REDIS_OK)
        return conn_fail(c, "unreadable reply from " + c.node.address, RedisErrc::protocol);
      for (;;) {
        void* raw = nullptr;
        if (redisReaderGetReply(c.reader, &raw) != REDIS_OK)
          return conn_fail(c, "unreadable reply from " + c.node.address, RedisErrc::protocol);
        if (!raw) break;
        RedisReply reply = convert(static_cast<redisReply*>(raw));
        freeReplyObject(raw);
        on_reply(c, std::move(reply));
        if (generation != c.generation) return;  // the reply closed the connection
      }
      read(c);
    });
  }

  void on_reply(Conn& c, RedisReply reply) {
    if (c.inflight.empty())
      return conn_fail(c, "a reply from " + c.node.address + " that no command asked for", RedisErrc::protocol);
    Conn::Entry entry = std::move(c.inflight.front());
    c.inflight.pop_front();
    switch (entry.kind) {
      case Conn::Entry::Kind::auth:
        if (reply.is_error())
          return conn_fail(c, "AUTH to " + c.node.address + " failed: " + reply.str, RedisErrc::unreachable, true);
        c.state = Conn::State::ready;
        return flush(c);
      case Conn::Entry::Kind::asking:
        return;
      case Conn::Entry::Kind::wait: {
        --c.waits_out;
        int64_t confirmed = reply.type == RedisReply::Type::integer ? reply.integer : -1;
        for (auto& [op, attempt] : entry.covered) {
          if (op->finished || op->attempt != attempt || op->phase != Op::Phase::awaiting) continue;
          if (confirmed >= entry.wanted) {
            finish(op, RedisErrc::ok, {}, std::move(op->stashed));
          } else {
            finish(op, RedisErrc::not_durable,
                   "WAIT on " + c.node.address + ": " + std::to_string(std::max<int64_t>(confirmed, 0)) + " of " +
                       std::to_string(entry.wanted) + " replicas confirmed within " + std::to_string(entry.wait_ms) +
                       " ms" + (reply.is_error() ? " (" + reply.str + ")" : ""));
          }
        }
        return flush(c);
      }
      case Conn::Entry::Kind::op:
        if (entry.op->finished || entry.op->attempt != entry.attempt) return;
        return on_op_reply(c, entry.op, std::move(reply));
    }
  }

  void on_op_reply(Conn& c, const OpPtr& op, RedisReply reply) {
    op->asking = false;
    op->ask_node = nullptr;
    if (reply.is_error() && !op->target) {
      std::string_view text = reply.str;
      bool moved = starts_with(text, "MOVED ");
      if (moved || starts_with(text, "ASK ")) {
        // "MOVED <slot> <host>:<port>": the command did not run.
        auto first = text.find(' ');
        auto second = text.find(' ', first + 1);
        Node* to = second == std::string_view::npos ? nullptr : node_for(text.substr(second + 1), c.node.host);
        if (!to) return finish(op, RedisErrc::protocol, "unreadable redirection: " + reply.str);
        ++op->attempt;
        ++counters_.retries;
        if (moved) {
          ++counters_.moved;
          slot_owner_[op->slot] = to;
          request_refresh();
        } else {
          ++counters_.ask;
          op->ask_node = to;
          op->asking = true;
        }
        if (++op->redirects > kRedirectsBeforeBackoff) {
          op->code_at_deadline = RedisErrc::unreachable;
          op->message_at_deadline = "redirected " + std::to_string(op->redirects) + " times; last: " + reply.str;
          if (!moved) op->ask_node = to;
          return retry_later(op);
        }
        return dispatch(op);
      }
      if (starts_with(text, "TRYAGAIN") || starts_with(text, "CLUSTERDOWN") || starts_with(text, "LOADING") ||
          starts_with(text, "MASTERDOWN")) {
        // Did not run: a slot in migration, a shard without a primary, a node
        // loading its data. Back off and send again until the deadline.
        ++op->attempt;
        ++counters_.retries;
        op->code_at_deadline = RedisErrc::cluster_down;
        op->message_at_deadline = c.node.address + ": " + reply.str;
        if (!starts_with(text, "TRYAGAIN")) request_refresh();
        return retry_later(op);
      }
    }
    if (op->durable && options_.wait_replicas != 0) {
      op->stashed = std::move(reply);
      op->phase = Op::Phase::awaiting;
      return;
    }
    finish(op, RedisErrc::ok, {}, std::move(reply));
  }

  void connect_failed(Conn& c, const std::string& reason) {
    c.connect_backoff = c.connect_backoff.count() == 0
                            ? std::chrono::milliseconds(kMinBackoff)
                            : std::min(c.connect_backoff * 2, std::chrono::milliseconds(kMaxBackoff));
    c.next_connect = Clock::now() + c.connect_backoff;
    c.connect_error = reason;
    conn_fail(c, reason);
  }

  // Closes a connection. Written ops lost their replies: `written_code` (they may have
  // run; never resent). Queued ones were not sent: routed again after a back-off (a
  // refresh may have found the slot's new primary meanwhile), unless `give_up`.
  void conn_fail(Conn& c, const std::string& reason, RedisErrc written_code = RedisErrc::unreachable,
                 bool give_up = false) {
    ++c.generation;
    boost::system::error_code ignored;
    c.socket.close(ignored);
    c.connect_timer.cancel();
    c.state = Conn::State::idle;
    c.writing = false;
    c.waits_out = 0;
    redisReaderFree(c.reader);
    c.reader = redisReaderCreate();
    auto inflight = std::move(c.inflight);
    auto pending = std::move(c.pending);
    c.inflight.clear();
    c.pending.clear();
    for (auto& entry : inflight) {
      if (entry.kind == Conn::Entry::Kind::op && !entry.op->finished && entry.op->attempt == entry.attempt &&
          entry.op->phase == Op::Phase::written) {
        finish(entry.op, written_code, reason + "; the command may have run");
      } else if (entry.kind == Conn::Entry::Kind::wait) {
        for (auto& [op, attempt] : entry.covered)
          if (!op->finished && op->attempt == attempt && op->phase == Op::Phase::awaiting)
            finish(op, RedisErrc::not_durable, reason + " before WAIT confirmed the write");
      }
    }
    for (auto& op : pending) {
      if (op->finished) continue;
      if (give_up || op->target || shut_down_) {
        finish(op, RedisErrc::unreachable, reason);
      } else {
        ++counters_.retries;
        op->code_at_deadline = RedisErrc::unreachable;
        op->message_at_deadline = reason;
        retry_later(op);
      }
    }
    request_refresh();
  }

  // --- the slot map ----------------------------------------------------------------

  void request_refresh() {
    if (shut_down_) return;
    if (refresh_in_flight_) {
      refresh_wanted_ = true;
      return;
    }
    if (refresh_scheduled_) return;
    refresh_scheduled_ = true;
    refresh_timer_.expires_at(std::max(Clock::now(), last_refresh_ + kRefreshGap));
    refresh_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || shut_down_) return;
      refresh_scheduled_ = false;
      // Primaries first (they are connected), then the other nodes, then the seeds;
      // rotated, so a stalled node is not asked first every time.
      std::vector<Node*> primaries, others;
      for (auto& [address, n] : nodes_) (n->primary ? primaries : others).push_back(n.get());
      if (!primaries.empty())
        std::rotate(primaries.begin(), primaries.begin() + (refresh_rotation_++ % primaries.size()), primaries.end());
      primaries.insert(primaries.end(), others.begin(), others.end());
      start_refresh(std::move(primaries), Clock::time_point::max());
    });
  }

  void start_refresh(std::vector<Node*> candidates, Clock::time_point until) {
    refresh_in_flight_ = true;
    refresh_wanted_ = false;
    last_refresh_ = Clock::now();
    refresh_errors_.clear();
    try_refresh(std::make_shared<std::vector<Node*>>(std::move(candidates)), 0, until);
  }

  void try_refresh(std::shared_ptr<std::vector<Node*>> candidates, size_t i, Clock::time_point until) {
    auto now = Clock::now();
    if (i >= candidates->size() || now >= until || shut_down_) return refresh_done(false);
    Node* node = (*candidates)[i];
    OpPtr op(new Op);
    op->args = {"CLUSTER", "SHARDS"};
    op->target = node;
    op->lane = Lane::control;
    op->counted = false;
    op->deadline = std::min({until, now + kRefreshTryTimeout, now + options_.timeout});
    op->done = [this, candidates, i, until, node](RedisResult r) {
      std::string why;
      if (r.ok() && !r.reply.is_error() && apply_shards(r.reply, &why)) return refresh_done(true);
      refresh_errors_.push_back(node->address + ": " +
                                (!r.ok() ? r.message : r.reply.is_error() ? r.reply.str : why));
      try_refresh(candidates, i + 1, until);
    };
    submit(std::move(op));
  }

  void refresh_done(bool ok) {
    refresh_in_flight_ = false;
    if (on_first_map_) {
      auto first = std::move(on_first_map_);
      on_first_map_ = nullptr;
      std::string why;
      for (auto& e : refresh_errors_) why += (why.empty() ? "" : "; ") + e;
      first(ok, why);
    }
    if (refresh_wanted_ || !ok) request_refresh();
  }

  // Reads a CLUSTER SHARDS reply (Redis 7.0: an array of shards, each a flat
  // key/value array with "slots", start/end pairs, and "nodes", flat key/value arrays)
  // into the slot table. False, with `why`, when it is not such a reply.
  bool apply_shards(const RedisReply& reply, std::string* why) {
    struct NodeInfo {
      std::string id, ip, role, health;
      int64_t port = 0;
    };
    struct ShardInfo {
      std::vector<std::pair<int64_t, int64_t>> ranges;
      std::vector<NodeInfo> nodes;
    };
    if (reply.type != RedisReply::Type::array) return *why = "CLUSTER SHARDS: not an array", false;
    std::vector<ShardInfo> shards;
    size_t slotted = 0;
    for (auto& shard : reply.elements) {
      ShardInfo info;
      for (size_t k = 0; k + 1 < shard.elements.size(); k += 2) {
        auto& key = shard.elements[k].str;
        auto& value = shard.elements[k + 1];
        if (key == "slots") {
          for (size_t s = 0; s + 1 < value.elements.size(); s += 2)
            info.ranges.emplace_back(value.elements[s].integer, value.elements[s + 1].integer);
        } else if (key == "nodes") {
          for (auto& node : value.elements) {
            NodeInfo n;
            for (size_t f = 0; f + 1 < node.elements.size(); f += 2) {
              auto& field = node.elements[f].str;
              auto& v = node.elements[f + 1];
              if (field == "id") n.id = v.str;
              else if (field == "ip") n.ip = v.str;
              else if (field == "port") n.port = v.integer;
              else if (field == "role") n.role = v.str;
              else if (field == "health") n.health = v.str;
            }
            info.nodes.push_back(std::move(n));
          }
        }
      }
      if (!info.ranges.empty()) ++slotted;
      shards.push_back(std::move(info));
    }
    if (slotted == 0) return *why = "CLUSTER SHARDS: no slot is assigned", false;

    for (auto& [address, n] : nodes_) {
      n->primary = false;
      n->online_replicas = -1;
      n->loading_replicas = 0;
    }
    std::fill(slot_owner_.begin(), slot_owner_.end(), nullptr);
    std::map<std::string, std::string> primary_by_ranges;
    nlohmann::json listed = nlohmann::json::array();
    for (auto& shard : shards) {
      const NodeInfo* primary = nullptr;
      int online = 0, loading = 0;
      for (auto& n : shard.nodes) {
        if (n.role == "master" && !primary) primary = &n;
        else if (n.role != "master" && n.health == "online") ++online;
        else if (n.role != "master" && n.health == "loading") ++loading;
      }
      int64_t slots = 0;
      for (auto& [lo, hi] : shard.ranges) slots += hi - lo + 1;
      for (auto& n : shard.nodes) {
        Node* node = node_for(n.ip + ":" + std::to_string(n.port), "");
        node->id = n.id;
        bool is_primary = &n == primary;
        listed.push_back({{"address", node->address},
                          {"role", is_primary ? "primary" : "replica"},
                          {"slots", is_primary ? slots : 0},
                          {"online", n.health == "online"}});
        if (!is_primary || shard.ranges.empty()) continue;
        node->primary = true;
        node->online_replicas = online;
        node->loading_replicas = loading;
        for (auto& [lo, hi] : shard.ranges)
          for (int64_t s = std::max<int64_t>(lo, 0); s <= hi && s < kSlots; ++s) slot_owner_[s] = node;
      }
      if (primary && !shard.ranges.empty()) {
        std::string key;
        for (auto& [lo, hi] : shard.ranges) key += std::to_string(lo) + "-" + std::to_string(hi) + ",";
        if (auto was = primary_by_ranges_.find(key); was != primary_by_ranges_.end() && was->second != primary->id)
          ++counters_.failovers_seen;
        primary_by_ranges[key] = primary->id;
      }
    }
    primary_by_ranges_ = std::move(primary_by_ranges);
    std::lock_guard lock(topology_mu_);
    topology_ = {{"nodes", std::move(listed)}, {"shards", slotted}};
    return true;
  }

  // --- shutdown --------------------------------------------------------------------

  void shutdown() {
    shut_down_ = true;
    deadline_timer_.cancel();
    retry_timer_.cancel();
    refresh_timer_.cancel();
    periodic_timer_.cancel();
    for (auto& [address, node] : nodes_)
      for (auto& c : node->conns)
        if (c) conn_fail(*c, "the client was destroyed", RedisErrc::unreachable, true);
    while (!delayed_.empty()) {
      OpPtr op = std::move(delayed_.begin()->second);
      delayed_.erase(delayed_.begin());
      finish(op, RedisErrc::unreachable, "the client was destroyed");
    }
    while (!deadlines_.empty()) {
      OpPtr op = deadlines_.top().second.lock();
      deadlines_.pop();
      if (op) finish(op, RedisErrc::unreachable, "the client was destroyed");
    }
    if (on_first_map_) refresh_done(false);
    work_.reset();
    io_.stop();
  }

  ClusterOptions options_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool shut_down_ = false;

  std::unordered_map<std::string, std::unique_ptr<Node>> nodes_;
  std::vector<Node*> slot_owner_ = std::vector<Node*>(kSlots, nullptr);

  std::priority_queue<DeadlineEntry, std::vector<DeadlineEntry>, Later> deadlines_;
  asio::steady_timer deadline_timer_;
  Clock::time_point deadline_armed_ = Clock::time_point::max();
  std::multimap<Clock::time_point, OpPtr> delayed_;
  asio::steady_timer retry_timer_;
  Clock::time_point retry_armed_ = Clock::time_point::max();

  asio::steady_timer refresh_timer_, periodic_timer_;
  bool refresh_in_flight_ = false, refresh_wanted_ = false, refresh_scheduled_ = false;
  Clock::time_point last_refresh_{};
  size_t refresh_rotation_ = 0;
  std::vector<std::string> refresh_errors_;
  std::map<std::string, std::string> primary_by_ranges_;  // "lo-hi,..." -> primary id
  std::function<void(bool, std::string)> on_first_map_;

  std::vector<const char*> argv_;
  std::vector<size_t> argv_len_;

  AtomicCounters counters_;
  mutable std::mutex topology_mu_;
  nlohmann::json topology_ = {{"nodes", nlohmann::json::array()}, {"shards", 0}};
};

}  // namespace

std::unique_ptr<cache::ClusterClient> connect_cluster(ClusterOptions options, std::string* error) {
  auto client = std::make_unique<AsioClusterClient>(std::move(options));
  if (!client->start(error)) return nullptr;
  return client;
}

}  // namespace reprise::redis
