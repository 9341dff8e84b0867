#include "cache/cluster_cacher.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <deque>

namespace reprise::cache {

// A request on its way through the cluster: from the take to its assignment.
struct ClusterCacher::Take {
  CacheRequest request;
  std::function<void(Assignment)> done;
  std::string key;   // "rp:{<hex key>}"
  std::string mode;  // "cursor" | "greedy" | "explicit"
  std::string ns;    // the cursor's namespace; "" when the request reads none
  uint64_t epoch = 0;
  Assignment out;
  std::vector<size_t> to_fetch;  // slots whose stored sample this replica has not read yet
};

// A JSON client's claim on indices of a namespace: if a generation it waits on fails,
// it saw nothing, and the namespace gets them back (unless it read past them since).
struct ClusterCacher::Reservation {
  std::string key, ns;
  uint64_t epoch = 0, from = 0, to = 0;
  std::atomic<bool> given{false};
};

// One ticket this replica generates (mine) or waits for (another replica's).
struct ClusterCacher::Flight {
  std::string key, tok;
  TenantId tenant;
  CacheKey cache_key;
  uint64_t lo = 0, hi = 0;
  std::shared_ptr<Generation> gen;
  Backend* backend = nullptr;
  bool mine = false;
  // Under mu_:
  std::vector<std::shared_ptr<Reservation>> reservations;
  std::chrono::steady_clock::time_point next_due;  // the next renewal (mine) or poll
  std::chrono::milliseconds backoff{50};
  std::chrono::steady_clock::time_point last_answer = std::chrono::steady_clock::now();
  bool busy = false;  // a poll in flight, or waiting to start
  std::string map_key;  // where flights_ holds it: id(), or id() + "#n" when that was taken
  std::string id() const { return key + " " + tok; }
};

namespace {

constexpr int kTakeAttempts = 3;  // a stale epoch is read again, then the take is sent again
constexpr auto kMaintenanceTick = std::chrono::milliseconds(20);
constexpr auto kMaxPollBackoff = std::chrono::milliseconds(500);
constexpr size_t kMaxNamespacesKept = 100'000;  // epochs cached, namespaces known registered

std::string key_name(const CacheKey& key) { return "rp:{" + to_hex(key.bytes) + "}"; }
std::string epoch_key(const std::string& ns) { return "rp:ns:{" + ns + "}"; }
const std::string kMetaKey = "rp:meta";
const std::string kNamespacesKey = "rp:namespaces";

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) out.clear();
  return out;
}

int64_t as_int(const RedisReply& r) {
  if (r.type == RedisReply::Type::integer) return r.integer;
  if (r.type == RedisReply::Type::string || r.type == RedisReply::Type::status) {
    try {
      return std::stoll(r.str);
    } catch (...) {
    }
  }
  return -1;
}

std::string error_json(const std::string& message, const char* code) {
  return nlohmann::json({{"error", {{"message", message}, {"type", "service_unavailable"}, {"param", nullptr},
                                    {"code", code}}}})
      .dump();
}

// Clients may retry: the cluster answers again once its failover is over.
GenerationError unavailable(const std::string& message) {
  return {503, error_json(message, "cache_unavailable"), {{"Retry-After", "1"}}};
}

// What went wrong, for the log: the client's own words (node addresses included).
std::string describe(const RedisResult& r) {
  static constexpr const char* kNames[] = {"ok", "timeout", "unreachable", "not confirmed by the replicas",
                                           "cluster down", "protocol error"};
  std::string out = std::string("cache cluster: ") + kNames[static_cast<int>(r.code)];
  if (!r.message.empty()) out += " (" + r.message + ")";
  return out;
}

// An error reply that refuses a write for a while (not a bug, not a fence).
bool refusal(const std::string& error) {
  for (const char* prefix : {"NOREPLICAS", "OOM", "READONLY", "MASTERDOWN", "LOADING", "BUSY"})
    if (error.starts_with(prefix)) return true;
  return false;
}

// What went wrong, for the client: no addresses of the cluster's nodes.
std::string for_client(const RedisResult& r) {
  switch (r.code) {
    case RedisErrc::timeout: return "the shared cache (Redis Cluster) did not answer in time";
    case RedisErrc::not_durable: return "the shared cache (Redis Cluster) could not confirm the write on its replicas";
    case RedisErrc::cluster_down: return "the shared cache (Redis Cluster) is failing over";
    default: return "the shared cache (Redis Cluster) is unreachable";
  }
}

}  // namespace

// ---- opening ----------------------------------------------------------------------------

ClusterCacher::ClusterCacher(ClusterClient& client, Store& local, ClusterCacherOptions options)
    : client_(client), local_(local), options_(std::move(options)), me_(to_hex(
          reinterpret_cast<const uint8_t*>(random_bytes(8).data()), 8)), hot_(options_.hot_sample_bytes) {
  maintenance_ = std::thread([this] { maintenance_loop(); });
}

StatusOr<std::unique_ptr<ClusterCacher>> ClusterCacher::Open(ClusterClient& client, Store& local,
                                                             ClusterCacherOptions options) {
  RedisResult loaded = client.on_every_primary({"FUNCTION", "LOAD", "REPLACE", std::string(cluster_functions())});
  if (!loaded.ok()) return Status::IOError("loading the functions on the cluster: " + describe(loaded));
  if (loaded.reply.is_error()) return Status::IOError("loading the functions on the cluster: " + loaded.reply.str);
  return std::unique_ptr<ClusterCacher>(new ClusterCacher(client, local, std::move(options)));
}

StatusOr<ClusterCacher::Shared> ClusterCacher::ReadShared(ClusterClient& client) {
  // HSETNX: the first replica's values win; every later one reads them. Durable: a
  // secret lost in a failover would change every tenant.
  const std::string secret = random_bytes(32);
  const std::string id = to_hex(reinterpret_cast<const uint8_t*>(random_bytes(8).data()), 8);
  if (secret.size() != 32) return Status::IOError("no random bytes for the tenant secret");
  for (auto& [field, value] : {std::pair{"secret", secret}, std::pair{"id", id}}) {
    RedisResult set = client.command_sync(kMetaKey, {"HSETNX", kMetaKey, field, value}, /*durable=*/true);
    if (!set.ok()) return Status::IOError("making the cluster's shared " + std::string(field) + ": " + describe(set));
  }
  RedisResult got = client.command_sync(kMetaKey, {"HMGET", kMetaKey, "secret", "id"}, false);
  if (!got.ok()) return Status::IOError("reading the cluster's shared secret: " + describe(got));
  if (got.reply.type != RedisReply::Type::array || got.reply.elements.size() != 2 ||
      got.reply.elements[0].str.size() != 32 || got.reply.elements[1].str.empty())
    return Status::Corruption("the cluster's " + kMetaKey + " hash is not Reprise's (secret and id expected)");
  return Shared{got.reply.elements[0].str, got.reply.elements[1].str};
}

ClusterCacher::~ClusterCacher() {
  {
    // Waits for a callback that is running; none runs after this.
    std::lock_guard lock(life_->mu);
    life_->alive = false;
  }
  {
    std::lock_guard lock(maintenance_mu_);
    stopping_ = true;
  }
  maintenance_cv_.notify_all();
  maintenance_.join();
  // Waits for other replicas' tickets end here: their clients get a 503.
  std::vector<std::shared_ptr<Flight>> left;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, flight] : flights_)
      if (!flight->mine) left.push_back(flight);
  }
  for (auto& flight : left) flight->gen->fail(unavailable("the proxy is shutting down"));
}

// ---- the take ---------------------------------------------------------------------------

void ClusterCacher::with_epoch(const std::string& ns, std::function<void(StatusOr<uint64_t>)> next) {
  if (ns.empty()) return next(uint64_t{0});
  const auto now = std::chrono::steady_clock::now();
  bool register_ns = false;
  {
    std::lock_guard lock(mu_);
    // Bounded: past kMaxNamespacesKept both start over (a forgotten epoch is read
    // again; a namespace added to the set again changes nothing).
    if (registered_.size() > kMaxNamespacesKept) registered_.clear();
    if (epochs_.size() > kMaxNamespacesKept) epochs_.clear();
    register_ns = registered_.insert(ns).second;
    if (auto it = epochs_.find(ns); it != epochs_.end() && now - it->second.read_at < options_.epoch_ttl)
      return next(it->second.value);
  }
  // The namespace list is informational (GET /admin/namespaces): not waited for.
  if (register_ns) client_.command(kNamespacesKey, {"SADD", kNamespacesKey, ns}, false, [](RedisResult) {});
  // The epoch is trusted from when it was asked for, not from when it came back: a
  // reset that returns epoch_ttl after its INCR is then seen by every later take.
  auto dead = [next] { next(Status::IOError("the proxy is shutting down")); };
  client_.command(epoch_key(ns), {"GET", epoch_key(ns)}, false,
                  guarded([this, ns, now, next = std::move(next)](RedisResult r) {
                    if (!r.ok()) return next(Status::IOError(failed(r)));
                    const uint64_t epoch = r.reply.type == RedisReply::Type::nil ? 0 : std::max<int64_t>(0, as_int(r.reply));
                    {
                      std::lock_guard lock(mu_);
                      Epoch& cached = epochs_[ns];
                      if (cached.read_at <= now) cached = {std::max(cached.value, epoch), now};
                    }
                    next(epoch);
                  }, std::move(dead)));
}

void ClusterCacher::assign(const CacheRequest& request, std::function<void(Assignment)> done) {
  auto take = std::make_shared<Take>();
  take->request = request;
  take->done = std::move(done);
  take->key = key_name(request.key);
  switch (request.pick) {
    case Pick::cursor: take->mode = "cursor", take->ns = request.ns; break;
    case Pick::greedy: take->mode = "greedy", take->ns = Store::ValidNamespace(request.ns) ? request.ns : ""; break;
    case Pick::explicit_range: take->mode = "explicit"; break;
  }
  if (serve_locally(*take)) return;
  counters_.takes.fetch_add(1, std::memory_order_relaxed);
  send_take(std::move(take), kTakeAttempts);
}

// Explicit-index and greedy requests move no cursor (a greedy one records once per
// key and namespace that the namespace read sample 0): when this replica already holds
// their samples, read and confirmed by the cluster before, they need no round trip.
bool ClusterCacher::serve_locally(Take& take) {
  const CacheRequest& r = take.request;
  if (r.pick == Pick::cursor) return false;
  const std::string recorded = take.key + " " + take.ns;
  if (r.pick == Pick::greedy && !take.ns.empty()) {
    std::lock_guard lock(mu_);
    if (!greedy_recorded_.contains(recorded)) return false;
  }
  const uint64_t first = r.pick == Pick::greedy ? 0 : r.first;
  const uint32_t count = r.pick == Pick::greedy ? 1 : std::max<uint32_t>(1, r.n);
  if (count > 16) return false;  // long explicit ranges: one round trip is cheaper than many lookups
  Assignment out;
  for (uint64_t index = first; index < first + count; ++index) {
    std::shared_ptr<const Sample> sample = hot_.find(r.tenant, r.key, index);
    if (!sample || sample->request_sha256 != r.canonical->sha256) {
      auto copy = local_.ReadAt(r.tenant, r.key, index);
      if (!copy.ok() || !copy->has_value() || (*copy)->request_sha256 != r.canonical->sha256) return false;
      sample = std::make_shared<const Sample>(std::move(**copy));
      remember(r.tenant, r.key, index, sample);
    }
    Slot slot;
    slot.stored_index = index;
    slot.sample = std::move(sample);
    out.slots.push_back(std::move(slot));
  }
  if (r.pick == Pick::greedy) out.slots.resize(std::max<uint32_t>(1, r.n), out.slots.front());
  counters_.served_locally.fetch_add(1, std::memory_order_relaxed);
  auto done = std::move(take.done);
  done(std::move(out));
  return true;
}

void ClusterCacher::send_take(std::shared_ptr<Take> take, int attempts_left) {
  with_epoch(take->ns, [this, take, attempts_left](StatusOr<uint64_t> epoch) mutable {
    if (!epoch.ok()) {
      take->out.error = AssignError::store;
      take->out.message = epoch.error().message();
      return finish_take(std::move(take));
    }
    take->epoch = *epoch;
    const CacheRequest& r = take->request;
    const uint32_t max_n = r.backend ? std::max<uint32_t>(1, r.backend->max_n()) : 1;
    std::vector<std::string> args = {"FCALL", "reprise_take", "1", take->key, take->mode, take->ns,
                                     std::to_string(take->epoch), std::to_string(std::max<uint32_t>(1, r.n)),
                                     std::to_string(r.first), me_, std::to_string(options_.lease.count()),
                                     std::to_string(options_.max_new_samples), r.only_cached ? "1" : "0",
                                     std::to_string(max_n)};
    const std::string key = take->key;
    client_.command(key, std::move(args), /*durable=*/true,
                    guarded([this, take, attempts_left](RedisResult result) mutable {
                      on_taken(std::move(take), std::move(result), attempts_left);
                    }, [take] { shut_down(*take); }));
  });
}

void ClusterCacher::on_taken(std::shared_ptr<Take> take, RedisResult result, int attempts_left) {
  Assignment& out = take->out;
  const CacheRequest& r = take->request;
  if (!result.ok()) {
    out.error = AssignError::store;
    out.message = failed(result);
    return finish_take(std::move(take));
  }
  const RedisReply& reply = result.reply;
  if (reply.is_error()) {
    const std::string& e = reply.str;
    if (e.starts_with("STALEEPOCH") && attempts_left > 1) {
      // Another replica reset the namespace after this one read its epoch.
      {
        std::lock_guard lock(mu_);
        epochs_.erase(take->ns);
      }
      return send_take(std::move(take), attempts_left - 1);
    }
    if (e.starts_with("NOTCACHED")) {
      out.error = AssignError::not_cached;
      out.message = "X-Reprise-Cache: only-cached, and sample " + e.substr(10) + " of this request is not in the cache";
    } else if (e.starts_with("TOOMANY")) {
      const std::string rest = e.substr(8);
      const size_t space = rest.find(' ');
      out.error = AssignError::too_many;
      out.message = "this request would generate " + rest.substr(0, space) + " samples (the list holds or makes " +
                    rest.substr(space + 1) + "); at most " + std::to_string(options_.max_new_samples) +
                    " may be generated by one request ([cache] max_new_samples)";
    } else if (refusal(e)) {
      // NOREPLICAS (the shard's primary has no replica after a failover), OOM
      // (noeviction: the cluster is full), ...: the write was refused; retry later.
      out.error = AssignError::store;
      out.message = failed_reply(e);
    } else {
      out.error = AssignError::internal;
      out.message = "cache cluster: " + e;
    }
    return finish_take(std::move(take));
  }
  if (reply.type != RedisReply::Type::array || reply.elements.size() != 3 ||
      reply.elements[2].type != RedisReply::Type::array || reply.elements[2].elements.size() % 5 != 0) {
    out.error = AssignError::internal;
    out.message = "cache cluster: an unexpected answer to reprise_take (another library version loaded?)";
    return finish_take(std::move(take));
  }
  const uint64_t start = static_cast<uint64_t>(as_int(reply.elements[0]));
  const std::string& present = reply.elements[1].str;
  struct Ticket {
    std::string tok;
    uint64_t lo, hi;
    bool mine, fresh;
  };
  std::vector<Ticket> tickets;
  const auto& flat = reply.elements[2].elements;
  for (size_t i = 0; i < flat.size(); i += 5)
    tickets.push_back({flat[i].str, uint64_t(as_int(flat[i + 1])), uint64_t(as_int(flat[i + 2])),
                       flat[i + 3].str == me_, as_int(flat[i + 4]) == 1});

  const bool all_or_nothing = !r.stream && r.clients <= 1;
  std::shared_ptr<Reservation> reservation;
  if (take->mode == "cursor" && all_or_nothing) {
    reservation = std::make_shared<Reservation>();
    reservation->key = take->key, reservation->ns = take->ns, reservation->epoch = take->epoch;
    reservation->from = start, reservation->to = start + present.size();
  }
  std::vector<std::shared_ptr<Flight>> to_start;
  std::vector<Flight*> reserved_in;
  for (size_t i = 0; i < present.size(); ++i) {
    const uint64_t index = start + i;
    Slot slot;
    if (present[i] == '1') {
      slot.stored_index = index;
      if (auto hot = hot_.find(r.tenant, r.key, index); hot && hot->request_sha256 == r.canonical->sha256) {
        slot.sample = std::move(hot);
      } else if (auto copy = local_.ReadAt(r.tenant, r.key, index); copy.ok() && copy->has_value() &&
                                                                      (*copy)->request_sha256 == r.canonical->sha256) {
        auto sample = std::make_shared<const Sample>(std::move(**copy));
        remember(r.tenant, r.key, index, sample);
        slot.sample = std::move(sample);
      } else {
        take->to_fetch.push_back(out.slots.size());
      }
      if (slot.sample) counters_.local_reads.fetch_add(1, std::memory_order_relaxed);
      out.slots.push_back(std::move(slot));
      continue;
    }
    auto ticket = std::find_if(tickets.begin(), tickets.end(), [&](const Ticket& t) { return t.lo <= index && index < t.hi; });
    if (ticket == tickets.end()) {
      out.error = AssignError::internal;
      out.message = "cache cluster: sample " + std::to_string(index) + " is neither stored nor in flight";
      out.slots.clear();
      return finish_take(std::move(take));
    }
    slot.gen = flight_for(*take, ticket->tok, ticket->lo, ticket->hi, ticket->mine, ticket->fresh, to_start);
    slot.choice = static_cast<uint32_t>(index - ticket->lo);
    slot.claim = std::make_shared<Generation::Claim>(slot.gen);
    slot.created = ticket->fresh;
    if (reservation) {
      std::lock_guard lock(mu_);
      if (auto it = flights_.find(take->key + " " + ticket->tok); it != flights_.end() &&
          std::find(reserved_in.begin(), reserved_in.end(), it->second.get()) == reserved_in.end()) {
        it->second->reservations.push_back(reservation);
        reserved_in.push_back(it->second.get());
      }
    }
    out.slots.push_back(std::move(slot));
  }
  for (auto& flight : to_start) this->start(flight);
  if (r.pick == Pick::greedy && !take->ns.empty()) {
    std::lock_guard lock(mu_);
    if (greedy_recorded_.size() > kMaxNamespacesKept) greedy_recorded_.clear();
    greedy_recorded_.insert(take->key + " " + take->ns);
  }
  if (r.pick == Pick::greedy && !out.slots.empty()) out.slots.resize(std::max<uint32_t>(1, r.n), out.slots.front());
  if (take->to_fetch.empty()) return finish_take(std::move(take));

  // Stored samples this replica has not read yet: one HMGET (they were there, and
  // confirmed by the take's WAIT, when the take saw them).
  std::vector<std::string> args = {"HMGET", take->key};
  for (size_t s : take->to_fetch) args.push_back("s:" + std::to_string(out.slots[s].stored_index));
  const std::string key = take->key;
  client_.command(key, std::move(args), false, guarded([this, take](RedisResult got) mutable {
    Assignment& out = take->out;
    const CacheRequest& r = take->request;
    auto fail = [&](AssignError error, std::string message) {
      out.error = error;
      out.message = std::move(message);
      out.slots.clear();
      finish_take(std::move(take));
    };
    if (!got.ok()) return fail(AssignError::store, failed(got));
    if (got.reply.type != RedisReply::Type::array || got.reply.elements.size() != take->to_fetch.size())
      return fail(AssignError::internal, "cache cluster: an unexpected answer to HMGET");
    std::vector<std::pair<uint64_t, std::string>> copies;
    for (size_t i = 0; i < take->to_fetch.size(); ++i) {
      Slot& slot = out.slots[take->to_fetch[i]];
      const RedisReply& record = got.reply.elements[i];
      if (record.type != RedisReply::Type::string)
        return fail(AssignError::store, "cache cluster: sample " + std::to_string(slot.stored_index) +
                                            " is missing (a failover lost it?)");
      auto sample = Store::DecodeRecord(record.str, slot.stored_index);
      if (!sample.ok()) return fail(AssignError::store, "cache cluster: " + sample.error().message());
      if (sample->request_sha256 != r.canonical->sha256)
        return fail(AssignError::store, "sample " + std::to_string(slot.stored_index) +
                                            " was made for another request (key collision); refusing to serve it");
      auto shared = std::make_shared<const Sample>(std::move(*sample));
      remember(r.tenant, r.key, slot.stored_index, shared);
      slot.sample = std::move(shared);
      copies.emplace_back(slot.stored_index, record.str);
      counters_.remote_reads.fetch_add(1, std::memory_order_relaxed);
    }
    // Greedy copies of slot 0 were made before the fetch filled it.
    if (r.pick == Pick::greedy)
      for (auto& slot : out.slots) slot = out.slots.front();
    copy_locally(r.tenant, r.key, std::move(copies));
    finish_take(std::move(take));
  }, [take] { shut_down(*take); }));
}

void ClusterCacher::finish_take(std::shared_ptr<Take> take) {
  auto done = std::move(take->done);
  done(std::move(take->out));
}

void ClusterCacher::shut_down(Take& take) {
  take.out.error = AssignError::store;
  take.out.message = "the proxy is shutting down";
  take.out.slots.clear();
  auto done = std::move(take.done);
  done(std::move(take.out));
}

template <class F, class Dead>
ClusterClient::Callback ClusterCacher::guarded(F body, Dead dead) {
  return [life = life_, body = std::move(body), dead = std::move(dead)](RedisResult r) mutable {
    std::lock_guard lock(life->mu);
    if (life->alive) body(std::move(r));
    else dead();
  };
}

// ---- tickets: generated here or waited for ------------------------------------------------

std::shared_ptr<Generation> ClusterCacher::flight_for(Take& take, const std::string& tok, uint64_t lo, uint64_t hi,
                                                      bool mine, bool fresh,
                                                      std::vector<std::shared_ptr<Flight>>& to_start) {
  const CacheRequest& r = take.request;
  std::lock_guard lock(mu_);
  const std::string id = take.key + " " + tok;
  if (auto it = flights_.find(id); it != flights_.end()) return it->second->gen;
  auto flight = std::make_shared<Flight>();
  flight->key = take.key, flight->tok = tok, flight->tenant = r.tenant, flight->cache_key = r.key;
  flight->lo = lo, flight->hi = hi, flight->backend = r.backend;
  // A ticket issued to this process but unknown here (its generation ended between
  // the take and now) is waited for like anyone else's.
  flight->mine = mine && fresh;
  auto gen = std::make_shared<Generation>(r.canonical, r.endpoint, static_cast<uint32_t>(hi - lo),
                                          flight->mine && r.stream, r.context);
  gen->set_first_index(lo);
  gen->set_origin(r.ns);
  std::weak_ptr<Flight> weak = flight;
  gen->set_on_end_async([this, weak](Generation& g, Generation::State state, Generation::Resume resume) {
    if (auto f = weak.lock()) return on_flight_end(f, g, state, std::move(resume));
    resume(std::nullopt);  // its replica is gone (a test's kill): nobody is left to serve
  });
  flight->gen = gen;
  const auto now = std::chrono::steady_clock::now();
  if (flight->mine) {
    flight->next_due = now + options_.lease / 3;
    flight->busy = true;  // until it starts
    in_flight_.fetch_add(1);
    to_start.push_back(flight);
  } else {
    flight->next_due = now + flight->backoff;
    counters_.waited.fetch_add(1, std::memory_order_relaxed);
  }
  file_flight(flight);
  return gen;
}

// Under mu_: files a flight under its ticket (joins find it there), or, when another
// flight of this replica already waits on that ticket (one followed a takeover to it),
// under a name of its own, so that it is still renewed or polled.
void ClusterCacher::file_flight(const std::shared_ptr<Flight>& flight) {
  flight->map_key = flight->id();
  for (uint64_t n = 1; !flights_.emplace(flight->map_key, flight).second; ++n)
    flight->map_key = flight->id() + "#" + std::to_string(n);
}

void ClusterCacher::unfile_flight(const std::shared_ptr<Flight>& flight) {
  if (auto it = flights_.find(flight->map_key); it != flights_.end() && it->second == flight) flights_.erase(it);
}

// Backends start on the maintenance thread, never on the client's: a backend may end
// its generation at once, and the fill then waits for the cluster.
void ClusterCacher::start(const std::shared_ptr<Flight>& flight) {
  {
    std::lock_guard lock(maintenance_mu_);
    starts_.push_back(flight);
  }
  maintenance_cv_.notify_one();
}

void ClusterCacher::on_flight_end(const std::shared_ptr<Flight>& flight, Generation& gen, Generation::State state,
                                  Generation::Resume resume) {
  std::vector<std::shared_ptr<Reservation>> reservations;
  {
    std::lock_guard lock(mu_);
    unfile_flight(flight);
    reservations = flight->reservations;
  }
  // Settles the end: the ledger, the JSON clients' indices back to their namespaces
  // when the generation failed, then the generation's waiters.
  auto resume_once = std::make_shared<Generation::Resume>(std::move(resume));
  auto settle = [this, flight, reservations, state, resume_once](std::optional<GenerationError> refused) {
    if (flight->mine) {
      if (refused) counters_.refused.fetch_add(1, std::memory_order_relaxed);
      if (options_.on_generation_end)
        options_.on_generation_end(*flight->gen, refused ? Generation::State::failed : state);
    }
    if (state == Generation::State::failed || refused) {
      for (auto& res : reservations) {
        if (res->given.exchange(true)) continue;
        counters_.givebacks.fetch_add(1, std::memory_order_relaxed);
        client_.command(res->key, {"FCALL", "reprise_giveback", "1", res->key, res->ns, std::to_string(res->epoch),
                                   std::to_string(res->from), std::to_string(res->to)},
                        false, [](RedisResult) {});
      }
    }
    (*resume_once)(std::move(refused));
  };
  if (!flight->mine) return settle(std::nullopt);  // a wait: the poll already has its samples
  in_flight_.fetch_sub(1);
  if (state != Generation::State::done) {
    // Failed: its indices stay reserved; the next replica that needs them makes them.
    client_.command(flight->key, {"FCALL", "reprise_release", "1", flight->key, flight->tok, me_}, false,
                    [](RedisResult) {});
    return settle(std::nullopt);
  }
  // Fill under the ticket's token, and serve only once the shard's replicas have it:
  // asynchronously, so that the thread that completed the generation (an I/O thread)
  // goes on serving meanwhile.
  std::vector<std::string> args = {"FCALL", "reprise_fill", "1", flight->key, flight->tok, me_,
                                   std::to_string(flight->lo)};
  args.push_back(flight->lo == 0 ? std::string(endpoint_name(gen.endpoint())) + "\n" + gen.request().text
                                 : std::string());
  auto samples = std::make_shared<std::vector<std::shared_ptr<const Sample>>>();
  auto copies = std::make_shared<std::vector<std::pair<uint64_t, std::string>>>();
  for (size_t i = 0; i < gen.samples().size(); ++i) {
    Sample sample = gen.samples()[i];
    sample.request_sha256 = gen.request().sha256;
    auto record = Store::EncodeRecord(sample);
    if (!record.ok()) return settle(GenerationError{500, error_json(record.error().message(), "internal_error"), {}});
    args.push_back(*record);
    copies->emplace_back(flight->lo + i, std::move(*record));
    samples->push_back(std::make_shared<const Sample>(std::move(sample)));
  }
  auto settle_shared = std::make_shared<decltype(settle)>(std::move(settle));
  client_.command(
      flight->key, std::move(args), /*durable=*/true,
      guarded(
          [this, flight, samples, copies, settle_shared](RedisResult filled) {
            std::optional<GenerationError> refused;
            if (!filled.ok()) {
              refused = unavailable(failed(filled) + ": the samples are not confirmed stored; retry");
            } else if (filled.reply.is_error() && refusal(filled.reply.str)) {
              refused = unavailable(failed_reply(filled.reply.str) + ": the samples are not stored; retry");
            } else if (filled.reply.is_error()) {
              // FENCED: this replica's lease ran out and another took the ticket over;
              // CONFLICT: an index already held a sample. Either way these samples must
              // not be served: the index holds (or will hold) another.
              counters_.fenced.fetch_add(1, std::memory_order_relaxed);
              refused = unavailable("cache cluster: " + filled.reply.str + " (another replica made these samples)");
            } else {
              counters_.generated.fetch_add(samples->size(), std::memory_order_relaxed);
              for (size_t i = 0; i < samples->size(); ++i)
                remember(flight->tenant, flight->cache_key, flight->lo + i, (*samples)[i]);
              copy_locally(flight->tenant, flight->cache_key, std::move(*copies));
            }
            (*settle_shared)(std::move(refused));
          },
          [resume_once] { (*resume_once)(unavailable("the proxy is shutting down")); }));
}

void ClusterCacher::poll(const std::shared_ptr<Flight>& flight) {
  counters_.polls.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::string> args = {"FCALL", "reprise_poll", "1", flight->key, flight->tok, std::to_string(flight->lo),
                                   std::to_string(flight->hi), me_, std::to_string(options_.lease.count())};
  client_.command(flight->key, std::move(args), /*durable=*/true, guarded([this, flight](RedisResult r) {
    const auto now = std::chrono::steady_clock::now();
    auto again = [&] {
      std::lock_guard lock(mu_);
      flight->busy = false;
      flight->backoff = std::min<std::chrono::milliseconds>(flight->backoff * 2, kMaxPollBackoff);
      flight->next_due = now + flight->backoff;
    };
    if (!r.ok()) {
      if (now - flight->last_answer > options_.poll_give_up)
        return flight->gen->fail(unavailable(failed(r) + " while waiting for another replica's samples"));
      return again();
    }
    flight->last_answer = now;
    const RedisReply& reply = r.reply;
    const std::string what = reply.type == RedisReply::Type::array && !reply.elements.empty() ? reply.elements[0].str : "";
    if (what == "wait" && reply.elements.size() > 2 && reply.elements[2].str != flight->tok) {
      // Another waiter took the ticket over: wait for that one.
      std::lock_guard lock(mu_);
      unfile_flight(flight);
      flight->tok = reply.elements[2].str;
      file_flight(flight);
    }
    if (what == "wait" || (reply.is_error() && refusal(reply.str))) return again();
    if (what == "lost" || reply.is_error() || what.empty())
      return flight->gen->fail(unavailable("cache cluster: the generation of these samples was lost (" +
                                           (reply.is_error() ? reply.str : what) + "); retry"));
    if (what == "mine") {
      // Its owner died or failed: this replica makes the samples now, under a new token.
      counters_.taken_over.fetch_add(1, std::memory_order_relaxed);
      {
        std::lock_guard lock(mu_);
        unfile_flight(flight);
        flight->tok = reply.elements.size() > 1 ? reply.elements[1].str : "";
        flight->mine = true;
        flight->next_due = now + options_.lease / 3;
        file_flight(flight);
      }
      in_flight_.fetch_add(1);
      if (!flight->backend) return flight->gen->fail(unavailable("no backend to make the samples"));
      return this->start(flight);
    }
    // "filled": the records of [lo, hi), in order.
    std::vector<Sample> samples;
    std::vector<std::pair<uint64_t, std::string>> copies;
    for (size_t i = 1; i < reply.elements.size(); ++i) {
      const uint64_t index = flight->lo + i - 1;
      auto sample = Store::DecodeRecord(reply.elements[i].str, index);
      if (!sample.ok() || sample->request_sha256 != flight->gen->request().sha256)
        return flight->gen->fail(unavailable("cache cluster: sample " + std::to_string(index) + " is damaged or not this request's"));
      remember(flight->tenant, flight->cache_key, index, std::make_shared<const Sample>(*sample));
      copies.emplace_back(index, reply.elements[i].str);
      samples.push_back(std::move(*sample));
      counters_.remote_reads.fetch_add(1, std::memory_order_relaxed);
    }
    copy_locally(flight->tenant, flight->cache_key, std::move(copies));
    flight->gen->complete(std::move(samples));
  }, [] {}));
}

void ClusterCacher::maintenance_loop() {
  std::unique_lock lock(maintenance_mu_);
  while (!stopping_) {
    maintenance_cv_.wait_for(lock, kMaintenanceTick, [&] { return stopping_ || !starts_.empty(); });
    if (stopping_) break;
    std::deque<std::shared_ptr<Flight>> starting;
    starting.swap(starts_);
    lock.unlock();
    for (auto& flight : starting) {
      {
        std::lock_guard flights_lock(mu_);
        flight->busy = false;
      }
      if (flight->backend) flight->backend->generate(flight->gen);
      else flight->gen->fail(unavailable("no backend can make these samples"));
    }
    // Renew the leases of what runs here; poll what another replica makes.
    std::vector<std::shared_ptr<Flight>> renew, polls;
    const auto now = std::chrono::steady_clock::now();
    {
      std::lock_guard flights_lock(mu_);
      for (auto& [id, flight] : flights_) {
        if (flight->busy || flight->next_due > now) continue;
        if (flight->mine) {
          flight->next_due = now + options_.lease / 3;
          renew.push_back(flight);
        } else {
          flight->busy = true;
          polls.push_back(flight);
        }
      }
    }
    for (auto& flight : renew)
      client_.command(flight->key, {"FCALL", "reprise_renew", "1", flight->key, flight->tok, me_,
                                    std::to_string(options_.lease.count())},
                      false, [](RedisResult) {});
    for (auto& flight : polls) poll(flight);
    lock.lock();
  }
}

std::string ClusterCacher::failed_reply(const std::string& error) {
  if (options_.on_store_error) options_.on_store_error(Status::IOError("cache cluster refused a write: " + error));
  return error.starts_with("OOM") ? "the shared cache (Redis Cluster) is full" : "the shared cache (Redis Cluster) cannot take writes now";
}

std::string ClusterCacher::failed(const RedisResult& result) {
  if (options_.on_store_error) options_.on_store_error(Status::IOError(describe(result)));
  return for_client(result);
}

// ---- samples this replica has read -----------------------------------------------------------

void ClusterCacher::remember(const TenantId& tenant, const CacheKey& key, uint64_t index,
                             std::shared_ptr<const Sample> sample) {
  hot_.insert(tenant, key, index, std::move(sample));
}

void ClusterCacher::copy_locally(const TenantId& tenant, const CacheKey& key,
                                 std::vector<std::pair<uint64_t, std::string>> records) {
  if (records.empty()) return;
  Status st = local_.PutCopies(tenant, key, records);
  if (!st.ok() && options_.on_store_error) options_.on_store_error(st);
}

// ---- namespaces --------------------------------------------------------------------------------

Status ClusterCacher::reset_namespace(const std::string& ns) {
  RedisResult r = client_.command_sync(epoch_key(ns), {"INCR", epoch_key(ns)}, /*durable=*/true);
  if (!r.ok()) return Status::IOError(describe(r));
  if (r.reply.is_error()) return Status::IOError("cache cluster: " + r.reply.str);
  {
    std::lock_guard lock(mu_);
    epochs_[ns] = {static_cast<uint64_t>(as_int(r.reply)), std::chrono::steady_clock::now()};
  }
  // Every replica's cached epoch of ns is older than this by now: they all read the
  // new one before their next take.
  std::this_thread::sleep_for(options_.epoch_ttl + std::chrono::milliseconds(20));
  return Status::OK();
}

StatusOr<std::vector<std::string>> ClusterCacher::namespaces() {
  RedisResult r = client_.command_sync(kNamespacesKey, {"SMEMBERS", kNamespacesKey}, false);
  if (!r.ok()) return Status::IOError(describe(r));
  std::vector<std::string> out;
  for (auto& e : r.reply.elements) out.push_back(e.str);
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json ClusterCacher::stats() const {
  const ClusterClient::Counters c = client_.counters();
  nlohmann::json out = client_.topology();
  out["kind"] = kind();
  out["round_trips"] = c.round_trips;
  out["commands"] = c.commands;
  out["retries"] = c.retries;
  out["moved"] = c.moved;
  out["ask"] = c.ask;
  out["failovers_seen"] = c.failovers_seen;
  out["wait_failures"] = c.wait_failures;
  out["timeouts"] = c.timeouts;
  out["reconnects"] = c.reconnects;
  out["errors"] = c.errors;
  out["takes"] = counters_.takes.load();
  out["served_locally"] = counters_.served_locally.load();
  out["samples_read_locally"] = counters_.local_reads.load();
  out["samples_read_from_cluster"] = counters_.remote_reads.load();
  out["samples_generated"] = counters_.generated.load();
  out["generations_waited_for"] = counters_.waited.load();
  out["generations_taken_over"] = counters_.taken_over.load();
  out["fills_refused"] = counters_.refused.load();
  out["fills_fenced"] = counters_.fenced.load();
  out["givebacks"] = counters_.givebacks.load();
  out["polls"] = counters_.polls.load();
  out["local_bytes"] = local_.SizeOnDisk();
  return out;
}

}  // namespace reprise::cache
