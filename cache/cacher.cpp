#include "cache/cacher.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <optional>
#include <set>

namespace reprise::cache {

// One request's claim on indices in flight. For cursor requests: its namespace and
// the indices [from, to) it reserved, and how its failure gives them back.
struct Cacher::Reservation {
  std::string ns;      // empty for greedy and explicit-index requests (no cursor)
  uint64_t from = 0, to = 0;
  // One JSON client: it received all of [from, to) or nothing. Otherwise (a stream, or
  // merged clients) some samples may have reached a client while others failed.
  bool all_or_nothing = true;
  bool failed = false; // its cursor was settled after a failure (once)
};

struct Cacher::Pending {
  std::shared_ptr<Generation> gen;
  Backend* backend = nullptr;    // for a repair
  std::vector<std::shared_ptr<Reservation>> reservations;
  bool ended = false;  // done, waiting for the generations before it to commit
  uint32_t repairs = 0;  // how many times its indices were made again
};

struct Cacher::KeyState {
  KeyState(const TenantId& t, const CacheKey& k) : tenant(t), key(k) {}
  const TenantId tenant;
  const CacheKey key;
  std::atomic<bool> broken{false};  // a commit failed: rebuilt from the store on next use
  std::atomic<int> advancing{0};    // hits persisting their cursor outside the lock

  std::mutex mu;
  bool loaded = false;
  uint64_t committed = 0;            // the list's length in the store
  std::deque<Pending> pending;       // generations in flight, in list order, contiguous
  std::unordered_map<std::string, uint64_t> cursors;  // per namespace: indices reserved

  uint64_t reserved() const { return pending.empty() ? committed : pending.back().gen->first_index() + pending.back().gen->size(); }
};

namespace {

constexpr size_t kShards = 64;
constexpr size_t kMaxCursorsPerKey = 4096;  // in-memory namespace cursors of one key
// How often the Cacher makes a failed generation's indices again while later ones
// wait on them (a transient upstream error heals; a request the backend always
// refuses is not retried for ever).
constexpr uint32_t kMaxRepairs = 3;

struct KeyId {
  TenantId tenant;
  CacheKey key;
  friend bool operator==(const KeyId&, const KeyId&) = default;
};

struct KeyIdHash {
  size_t operator()(const KeyId& id) const {
    size_t h;  // the key is already a hash (XXH3 of the tenant and request)
    std::memcpy(&h, id.key.bytes.data(), sizeof h);
    return h;
  }
};

}  // namespace

struct Cacher::Shard {
  std::mutex mu;
  std::unordered_map<KeyId, std::shared_ptr<KeyState>, KeyIdHash> states;
};

Cacher::Cacher(Store& store, CacherOptions options)
    : store_(store), options_(std::move(options)), shards_(new Shard[kShards]), hot_(options_.hot_sample_bytes) {}

Cacher::~Cacher() = default;

uint64_t Cacher::generations_in_flight() const { return in_flight_.load(); }

nlohmann::json Cacher::stats() const {
  const Store::Health health = store_.GetHealth();
  return {{"kind", kind()},
          {"bytes", store_.SizeOnDisk()},
          {"write_errors", health.write_errors},
          {"recoveries", health.recoveries},
          {"writable", health.writable},
          {"repairs", repairs_.load()}};
}

std::shared_ptr<Cacher::KeyState> Cacher::state_for(const TenantId& tenant, const CacheKey& key) {
  Shard& shard = shards_[key.bytes[8] % kShards];
  std::lock_guard lock(shard.mu);
  auto& slot = shard.states[KeyId{tenant, key}];
  if (!slot || slot->broken.load()) slot = std::make_shared<KeyState>(tenant, key);
  std::shared_ptr<KeyState> state = slot;
  const size_t cap = std::max<size_t>(1, options_.max_idle_keys / kShards);
  if (shard.states.size() > cap) {
    // Forget idle keys: nobody holds them and nothing is in flight, so their
    // in-memory cursors equal the persisted ones and reload exactly.
    std::erase_if(shard.states, [](auto& entry) {
      if (entry.second.use_count() != 1) return false;
      std::unique_lock key_lock(entry.second->mu, std::try_to_lock);
      return key_lock.owns_lock() && entry.second->pending.empty();
    });
  }
  return state;
}

StatusOr<uint64_t*> Cacher::cursor(KeyState& state, const std::string& ns) {
  auto it = state.cursors.find(ns);
  if (it == state.cursors.end()) {
    auto stored = store_.Cursor(ns, state.tenant, state.key);
    if (!stored.ok()) return stored.error();
    it = state.cursors.emplace(ns, stored.value()).first;
  }
  return &it->second;
}

std::shared_ptr<Generation> Cacher::make_generation(const std::shared_ptr<KeyState>& state_ptr,
                                                    std::shared_ptr<const CanonicalRequest> request,
                                                    Endpoint endpoint, uint64_t first, uint32_t size, bool stream,
                                                    std::shared_ptr<const CallContext> context,
                                                    const std::string& origin) {
  auto gen = std::make_shared<Generation>(std::move(request), endpoint, size, stream, std::move(context));
  gen->set_first_index(first);
  gen->set_on_end([this, state_ptr](Generation& g, Generation::State final_state) -> std::optional<GenerationError> {
    on_generation_end(state_ptr, g, final_state);
    return std::nullopt;
  });
  gen->set_on_unclaimed([this, state_ptr](Generation& g) { on_unclaimed(state_ptr, g); });
  gen->set_origin(origin);
  return gen;
}

void Cacher::resolve(const std::shared_ptr<KeyState>& state_ptr, const CacheRequest& request,
                     uint64_t from, uint64_t to, const std::shared_ptr<Reservation>& reservation,
                     std::vector<Slot>& slots, Started& started) {
  KeyState& state = *state_ptr;
  uint64_t i = from;
  for (; i < std::min(to, state.committed); ++i) {
    Slot slot;
    slot.stored_index = i;
    slots.push_back(std::move(slot));
  }
  // Join generations in flight that cover the next indices.
  auto take = [&](Pending& pending) {
    const uint64_t first = pending.gen->first_index();
    uint32_t count = 0;
    for (; i < to && i < first + pending.gen->size(); ++i, ++count) {
      Slot slot;
      slot.gen = pending.gen;
      slot.choice = static_cast<uint32_t>(i - first);
      slot.claim = std::make_shared<Generation::Claim>(pending.gen);
      slots.push_back(std::move(slot));
    }
    if (count > 0) pending.reservations.push_back(reservation);
  };
  for (auto& pending : state.pending)
    if (i < to && pending.gen->first_index() + pending.gen->size() > i) take(pending);
  // The deficit: new generations, each at most the backend's max_n.
  const uint32_t max_n = std::max<uint32_t>(1, request.backend->max_n());
  uint64_t at = state.reserved();
  while (at < to) {
    uint32_t size = static_cast<uint32_t>(std::min<uint64_t>(max_n, to - at));
    auto gen = make_generation(state_ptr, request.canonical, request.endpoint, at, size, request.stream,
                               request.context, request.ns);
    state.pending.push_back(Pending{gen, request.backend, {}, false, 0});
    const size_t before = slots.size();
    take(state.pending.back());
    for (size_t s = before; s < slots.size(); ++s) slots[s].created = true;
    started.emplace_back(request.backend, std::move(gen));
    in_flight_.fetch_add(1);
    at += size;
  }
}

Assignment Cacher::assign(const CacheRequest& request) {
  Assignment out;
  // Slots of a refused request: their claims are released at the very end, with no
  // lock held (releasing the last claim may take the key's lock: on_unclaimed).
  std::vector<Slot> doomed;
  auto fail = [&](AssignError error, std::string message) {
    out.error = error;
    out.message = std::move(message);
    doomed = std::move(out.slots);
    out.slots.clear();
    return out;
  };
  std::shared_ptr<KeyState> state_ptr;
  Started started;
  try {
    std::shared_lock reset_lock(reset_mu_);
    state_ptr = state_for(request.tenant, request.key);
    KeyState& state = *state_ptr;
    std::optional<CursorMove> advance;
    uint64_t committed = 0;
    {
      std::lock_guard lock(state.mu);
      try {
        // A hot key read by namespace after namespace (a sweep) would keep a cursor for
        // each of them. When nothing is in flight every in-memory cursor equals its
        // persisted value, so they can all be dropped and reloaded on demand.
        if (state.cursors.size() > kMaxCursorsPerKey && state.pending.empty() && state.advancing.load() == 0)
          state.cursors.clear();
        if (!state.loaded) {
          auto count = store_.Count(state.tenant, state.key);
          if (!count.ok()) return fail(AssignError::store, count.error().message());
          state.committed = count.value();
          state.loaded = true;
        }
        const uint32_t n = std::max<uint32_t>(1, request.n);
        uint64_t from = 0, to = 0;
        uint64_t* cursor_of_ns = nullptr;
        switch (request.pick) {
          case Pick::cursor: {
            auto c = cursor(state, request.ns);
            if (!c.ok()) return fail(AssignError::store, c.error().message());
            cursor_of_ns = c.value();
            from = *cursor_of_ns;
            to = from + n;
            break;
          }
          case Pick::greedy: {
            from = 0, to = 1;
            // The namespace read sample 0: its cursor says so (at least 1). Greedy requests
            // never read it, but the namespace's summary and its export do. One write per
            // key and namespace: afterwards the in-memory cursor is already 1.
            if (!Store::ValidNamespace(request.ns)) break;
            auto c = cursor(state, request.ns);
            if (!c.ok()) return fail(AssignError::store, c.error().message());
            if (*c.value() < to) cursor_of_ns = c.value();
            break;
          }
          case Pick::explicit_range: from = request.first, to = request.first + n; break;
        }
        if (request.only_cached && to > state.committed)
          return fail(AssignError::not_cached,
                      "X-Reprise-Cache: only-cached, and samples " + std::to_string(std::max(from, state.committed)) +
                          "-" + std::to_string(to - 1) + " of this request are not in the cache");
        // I4: the deficit is what this request makes the backend generate. A cursor
        // request's deficit is at most its n (bounded where requests are parsed, and
        // merged requests add up bounded members); an explicit index is not.
        if (const uint64_t end = state.reserved();
            request.pick == Pick::explicit_range && to > end && to - end > options_.max_new_samples)
          return fail(AssignError::too_many,
                      "this request would generate " + std::to_string(to - end) + " samples (the list holds or makes " +
                          std::to_string(end) + "); at most " + std::to_string(options_.max_new_samples) +
                          " may be generated by one request ([cache] max_new_samples)");

        // The stored prefix [from, min(to, committed)) of a request that all comes from
        // the store is persisted below, outside the lock (AdvanceCursor never moves a
        // cursor back, whatever order two writes land in). A streamed (or merged)
        // request that also waits for generations persists it now, before anything is
        // served: a client may receive the stored samples in full even if a generation
        // fails later (I1), so the move must not live in memory only. One JSON client's
        // prefix waits for its generations' commit: if one fails, the client saw
        // nothing and the namespace gets it all back (give_back).
        const bool all_or_nothing = !request.stream && request.clients <= 1;
        if (cursor_of_ns && !all_or_nothing && from < state.committed && to > state.committed) {
          Status st = store_.AdvanceCursor({request.ns, state.tenant, state.key, state.committed}, state.committed);
          if (!st.ok()) return fail(AssignError::store, st.message());
        }
        auto reservation = std::make_shared<Reservation>();
        if (cursor_of_ns) *reservation = Reservation{request.ns, from, to, all_or_nothing, false};
        resolve(state_ptr, request, from, to, reservation, out.slots, started);

        if (cursor_of_ns) {
          committed = state.committed;
          if (to <= committed) {
            advance = CursorMove{request.ns, state.tenant, state.key, to};
            state.advancing.fetch_add(1);
          }
          *cursor_of_ns = to;
        }
      } catch (const std::exception& e) {
        // Allocation failure, say. What this request half-built in the key's state
        // cannot be trusted: the state is dropped and rebuilt from the store (requests
        // already waiting still get their samples; their commits are lost).
        state.broken.store(true);
        state.pending.clear();
        in_flight_.fetch_sub(started.size());
        started.clear();
        return fail(AssignError::internal, std::string("cache: ") + e.what());
      }
    }
    if (advance) {
      Status st = store_.AdvanceCursor(*advance, committed);
      state.advancing.fetch_sub(1);
      if (!st.ok()) return fail(AssignError::store, st.message());
    }
    if (request.pick == Pick::greedy && !out.slots.empty())
      out.slots.resize(std::max<uint32_t>(1, request.n), out.slots.front());
    if (Status st = read_stored(request, out.slots); !st.ok()) {
      for (auto& [backend, gen] : started) backend->generate(gen);  // others may have joined them
      started.clear();
      return fail(AssignError::store, st.message());
    }
  } catch (const std::exception& e) {
    // Past the key's lock: the generations it started are in the list and may have
    // been joined already, so they run whatever happens to this request.
    for (auto& [backend, gen] : started) backend->generate(gen);
    return fail(AssignError::internal, std::string("cache: ") + e.what());
  }
  // With no lock held: a backend may complete inline.
  for (auto& [backend, gen] : started) backend->generate(gen);
  return out;
}

Status Cacher::read_stored(const CacheRequest& request, std::vector<Slot>& slots) {
  // Stored slots come first and are consecutive (greedy repeats index 0): one read.
  size_t count = 0;
  while (count < slots.size() && !slots[count].gen) ++count;
  if (count == 0) return Status::OK();
  // Recently served samples come from memory (each was checked when first read).
  bool all_hot = true;
  for (size_t i = 0; i < count; ++i) {
    slots[i].sample = hot_.find(request.tenant, request.key, slots[i].stored_index);
    if (!slots[i].sample || slots[i].sample->request_sha256 != request.canonical->sha256) all_hot = false;
  }
  if (all_hot) return Status::OK();
  uint64_t from = slots.front().stored_index;
  uint64_t span = 1;
  for (size_t i = 0; i < count; ++i) span = std::max(span, slots[i].stored_index - from + 1);
  auto read = store_.Read(request.tenant, request.key, from, span);
  if (!read.ok()) return read.error();
  auto& samples = read.value();
  std::vector<std::shared_ptr<const Sample>> decoded(samples.size());
  for (size_t i = 0; i < count; ++i) {
    uint64_t offset = slots[i].stored_index - from;
    if (offset >= samples.size())
      return Status::Corruption("sample " + std::to_string(slots[i].stored_index) + " is missing");
    if (!decoded[offset]) {
      if (samples[offset].request_sha256 != request.canonical->sha256)
        return Status::Corruption("sample " + std::to_string(slots[i].stored_index) +
                                  " was made for another request (key collision); refusing to serve it");
      decoded[offset] = std::make_shared<const Sample>(std::move(samples[offset]));
      hot_.insert(request.tenant, request.key, slots[i].stored_index, decoded[offset]);
    }
    slots[i].sample = decoded[offset];
  }
  return Status::OK();
}

void Cacher::on_generation_end(const std::shared_ptr<KeyState>& state_ptr, Generation& gen,
                               Generation::State final_state) {
  in_flight_.fetch_sub(1);
  if (options_.on_generation_end) options_.on_generation_end(gen, final_state);
  KeyState& state = *state_ptr;
  Started started;
  {
    std::shared_lock reset_lock(reset_mu_);
    std::lock_guard lock(state.mu);
    auto it = std::find_if(state.pending.begin(), state.pending.end(),
                           [&](const Pending& p) { return p.gen.get() == &gen; });
    if (it == state.pending.end()) return;  // abandoned, or cut off the list
    if (final_state == Generation::State::done) {
      it->ended = true;
    } else {
      on_failed(state_ptr, static_cast<size_t>(it - state.pending.begin()), started);
    }
    commit_ready(state);
  }
  for (auto& [backend, repair] : started) backend->generate(repair);
}

void Cacher::give_back(KeyState& state, const Generation& gen,
                       const std::vector<std::shared_ptr<Reservation>>& reservations) {
  // Latest first: a namespace with two requests in this generation gives back the
  // later one's indices before the earlier one's (each needs the cursor at its end).
  std::vector<Reservation*> order;
  for (auto& r : reservations)
    if (!r->ns.empty() && !r->failed && std::find(order.begin(), order.end(), r.get()) == order.end())
      order.push_back(r.get());
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->from > b->from; });
  const uint64_t first = gen.first_index(), end = first + gen.size();
  for (Reservation* r : order) {
    r->failed = true;
    auto it = state.cursors.find(r->ns);
    if (it == state.cursors.end()) continue;  // its namespace was reset meanwhile
    uint64_t& cursor = it->second;
    if (r->all_or_nothing && cursor == r->to) {
      // The client saw nothing: all of it comes back, the stored prefix included, on
      // disk too (a commit of another of its generations may have persisted a part).
      cursor = r->from;
      if (r->from < state.committed) {
        Status st = store_.SetCursors({{r->ns, state.tenant, state.key, r->from}});
        if (!st.ok() && options_.on_store_error) options_.on_store_error(st);
      }
    } else if (cursor == std::min(end, r->to)) {
      cursor = std::max(first, r->from);
    }
    // Otherwise the namespace reserved more after these indices: it skips them.
  }
}

void Cacher::on_failed(const std::shared_ptr<KeyState>& state_ptr, size_t position, Started& started) {
  KeyState& state = *state_ptr;
  Pending& failed = state.pending[position];
  give_back(state, *failed.gen, failed.reservations);
  if (position + 1 == state.pending.size()) {
    // The last of the key: its indices leave the list. Every cursor inside them
    // belonged to a request that failed with it and came back above.
    cut_list(state, position);
    return;
  }
  if (failed.repairs >= kMaxRepairs || !failed.backend) {
    cut_list(state, position);
    return;
  }
  // Later generations wait on these indices: make them again, same indices, same
  // request. Nobody's client waits on the repair; namespaces reach it like any
  // generation in flight. The reservations stay, so its commit persists the cursors of
  // the namespaces that skipped these indices.
  const Generation& old = *failed.gen;
  auto repair = make_generation(state_ptr, old.request_ptr(), old.endpoint(), old.first_index(), old.size(),
                                /*stream=*/false, old.context_ptr(), old.origin());
  failed.gen = repair;
  failed.ended = false;
  ++failed.repairs;
  started.emplace_back(failed.backend, std::move(repair));
  in_flight_.fetch_add(1);
  repairs_.fetch_add(1);
}

void Cacher::cut_list(KeyState& state, size_t position) {
  // Generations cut off run on (their clients still get their samples); their end
  // finds them gone from the list and stores nothing.
  const uint64_t first = state.pending[position].gen->first_index();
  state.pending.erase(state.pending.begin() + static_cast<std::ptrdiff_t>(position), state.pending.end());
  for (auto& [ns, next] : state.cursors) next = std::min(next, first);
}

void Cacher::on_unclaimed(const std::shared_ptr<KeyState>& state_ptr, Generation& gen) {
  KeyState& state = *state_ptr;
  Started started;
  {
    // Requests join generations under this lock (resolve): once it is held, the
    // claims can only go down, so the check below is final.
    std::shared_lock reset_lock(reset_mu_);
    std::lock_guard lock(state.mu);
    auto it = std::find_if(state.pending.begin(), state.pending.end(),
                           [&](const Pending& p) { return p.gen.get() == &gen; });
    if (it == state.pending.end() || it->ended) return;  // ended meanwhile
    // Later generations need these indices: stopping this one would only mean making
    // them again. It runs on and is stored.
    if (it + 1 != state.pending.end()) return;
    if (!gen.abandon_if_unclaimed()) return;  // joined meanwhile, or ending
    // As if it failed: its indices leave the list and each namespace's cursor gets
    // back what it had reserved in it. A request that comes next makes a new
    // generation instead of joining this one.
    on_failed(state_ptr, static_cast<size_t>(it - state.pending.begin()), started);
    commit_ready(state);
  }
  // Outside the lock: the canceller fails the generation, and on_generation_end
  // (which takes the lock) finds it gone from the list.
  gen.cancel();
  for (auto& [backend, repair] : started) backend->generate(repair);
}

void Cacher::commit_ready(KeyState& state) {
  while (!state.pending.empty() && state.pending.front().ended && !state.broken.load()) {
    Pending& front = state.pending.front();
    Generation& gen = *front.gen;
    std::vector<Sample> samples = gen.samples();
    for (auto& sample : samples) sample.request_sha256 = gen.request().sha256;
    const uint64_t end = state.committed + samples.size();
    std::vector<CursorMove> moves;
    std::set<std::string> seen;
    for (auto& reservation : front.reservations) {
      if (reservation->ns.empty() || !seen.insert(reservation->ns).second) continue;
      auto cursor_it = state.cursors.find(reservation->ns);
      if (cursor_it == state.cursors.end()) continue;  // its namespace was reset meanwhile
      moves.push_back({reservation->ns, state.tenant, state.key, std::min(cursor_it->second, end)});
    }
    // The list's first append also records which request it is a list of (export).
    std::string record;
    if (state.committed == 0) {
      record.append(endpoint_name(gen.endpoint()));
      record.push_back('\n');
      record.append(gen.request().text);
    }
    Status st = store_.Append(state.tenant, state.key, state.committed, samples, moves, record);
    if (!st.ok()) {
      // The samples still serve the requests waiting on them; the key's state is
      // rebuilt from the store by the next request.
      // (Dropping `pending` also breaks the key <-> generation reference cycle.)
      state.broken.store(true);
      state.pending.clear();
      if (options_.on_store_error) options_.on_store_error(st);
      return;
    }
    state.committed = end;
    state.pending.pop_front();
  }
}

void Cacher::refresh(const TenantId& tenant, const CacheKey& key) {
  std::shared_ptr<KeyState> state;
  {
    Shard& shard = shards_[key.bytes[8] % kShards];
    std::lock_guard lock(shard.mu);
    auto it = shard.states.find(KeyId{tenant, key});
    if (it == shard.states.end()) return;
    state = it->second;
  }
  std::lock_guard lock(state->mu);
  if (state->pending.empty()) state->loaded = false;
}

Status Cacher::reset_namespace(const std::string& ns) {
  // Exclusive: no request or commit is between reading a cursor and persisting it, so
  // none can write a cursor of ns back after the range delete below.
  std::unique_lock reset_lock(reset_mu_);
  Status st = store_.ResetNamespace(ns);
  if (!st.ok()) return st;
  for (size_t s = 0; s < kShards; ++s) {
    std::vector<std::shared_ptr<KeyState>> states;
    {
      std::lock_guard lock(shards_[s].mu);
      for (auto& [id, state] : shards_[s].states) states.push_back(state);
    }
    for (auto& state : states) {
      std::lock_guard lock(state->mu);
      state->cursors.erase(ns);
    }
  }
  return Status::OK();
}

}  // namespace reprise::cache
