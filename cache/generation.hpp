#pragma once
// One backend call that produces `size` samples of one key: the meeting point of the
// backend that fills it and every request waiting on it (single flight: requests from
// any namespace or batch that need these indices join it instead of calling again).
//
// The backend publishes streamed pieces as they arrive (so merged streaming clients
// each see their own choices live), then ends it exactly once with complete() or
// fail(). Waiters subscribe a listener that is called, from the backend's thread and
// without any lock held, whenever something new can be read.
//
// Cancellation. Every client's share of a generation holds a Claim (one per slot,
// made with the slot). When the last claim of a running generation goes (its clients
// all disconnected) and its backend can stop early (set_canceller), the generation is
// abandoned: the backend is told to stop and the generation fails at once, so nothing
// is stored and its indices go back as for any failure. Listeners do not count as
// claims: a client that left may still wait for the end, only to account for it.
//
// The races, and the trade-off chosen:
// - Before anyone waits: claims are made with the slots, by whoever creates them (the
//   Cacher, under the key's lock, before the backend starts), so a generation has a
//   claim from its birth until its clients give them up. It is never "briefly
//   unclaimed" on its way to its first waiter.
// - A joiner racing the last leaver: the last release does not abandon by itself when
//   an owner is set (set_on_unclaimed: the Cacher). The owner re-checks under the lock
//   it also takes to let requests join, and drops the generation from the key's
//   in-flight list in the same step, so a request either joins in time (and keeps the
//   generation alive) or starts a new one; it never joins a doomed generation.
// - A generation that is ending (complete() or fail() called) is never abandoned: its
//   samples are committed like any others.
// - A backend without a canceller (an upstream call: paid for once sent, and its
//   samples are worth keeping) runs to its end whoever left.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/canonical.hpp"
#include "cache/sample.hpp"

namespace reprise::cache {

// Why a generation produced nothing: the HTTP status and OpenAI-shaped error body that
// the waiting clients receive (the backend already mapped its failure to them).
struct GenerationError {
  unsigned status = 502;
  std::string body;
  // Response headers of the backend's answer worth relaying (Retry-After, say).
  std::vector<std::pair<std::string, std::string>> headers;
};

// Per-call data a backend needs that is not part of the key (the client's credentials,
// say). The proxy subclasses it; the cache only carries it.
struct CallContext {
  virtual ~CallContext() = default;
};

class Generation {
 public:
  enum class State { running, done, failed };

  // A streamed piece of one choice: the chunk's choice object without its "index".
  struct Event {
    uint32_t choice = 0;
    nlohmann::json delta;
  };

  // What a waiter reads; `events` grows while running.
  struct View {
    State state = State::running;
    size_t event_count = 0;
  };

  Generation(std::shared_ptr<const CanonicalRequest> request, Endpoint endpoint, uint32_t size,
             bool stream, std::shared_ptr<const CallContext> context);
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  const CanonicalRequest& request() const { return *request_; }
  const std::shared_ptr<const CanonicalRequest>& request_ptr() const { return request_; }
  const std::shared_ptr<const CallContext>& context_ptr() const { return context_; }
  Endpoint endpoint() const { return endpoint_; }
  uint32_t size() const { return size_; }
  bool stream() const { return stream_; }
  const CallContext* context() const { return context_.get(); }

  // The namespace of the request that started it (for accounting), and when.
  void set_origin(std::string ns) { origin_ = std::move(ns); }
  const std::string& origin() const { return origin_; }
  std::chrono::steady_clock::time_point started_at() const { return started_at_; }

  // The list index of choice 0. Set by the Cacher when it makes the generation; it
  // never changes afterwards (I2: a client may have been told it).
  uint64_t first_index() const { return first_index_.load(std::memory_order_acquire); }
  void set_first_index(uint64_t first) { first_index_.store(first, std::memory_order_release); }

  // ---- backend side (any thread) ----
  // The model and system_fingerprint the backend answers with, for live chunks, and
  // the answer's other top-level fields that every chunk carries (service_tier, a
  // provider's own): an object, or null. Set before the first publish().
  void set_identity(std::string model, std::string system_fingerprint, nlohmann::json response_extra = {});
  void publish(uint32_t choice, nlohmann::json delta);
  // Ends the generation: exactly size() samples, in choice order.
  void complete(std::vector<Sample> samples);
  void fail(GenerationError error);

  // ---- waiter side (any thread) ----
  using Listener = std::function<void()>;
  // Returns an id for unsubscribe. A listener added after the end is still called once.
  uint64_t subscribe(Listener listener);
  void unsubscribe(uint64_t id);
  View view() const;
  // Copies the events [from, from + max) into `out` (appending).
  void read_events(size_t from, size_t max, std::vector<Event>& out) const;
  std::string model() const;
  std::string system_fingerprint() const;
  nlohmann::json response_extra() const;
  // Valid once the state is done / failed (and inside on_end); never change after.
  const std::vector<Sample>& samples() const { return samples_; }
  const GenerationError& error() const { return error_; }

  // ---- cancellation (see the top of this file) ----
  // A client's hold on one slot of the generation. Released once: explicitly, when
  // the client is known gone, or when the last copy of the slot goes.
  class Claim {
   public:
    explicit Claim(std::shared_ptr<Generation> gen);
    ~Claim() { release(); }
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    void release();  // any thread; idempotent; no lock may be held that on_end takes
    const std::shared_ptr<Generation>& generation() const { return gen_; }

   private:
    std::shared_ptr<Generation> gen_;
    std::atomic<bool> released_{false};
  };
  // Backend side (in generate()): how to stop early. The canceller runs at most once,
  // on the thread that released the last claim, and must end the generation (fail())
  // before it returns; it must not hold a reference to the generation (a raw pointer
  // is fine: it runs only while the generation lives).
  void set_canceller(std::function<void()> cancel);
  // Owner side: called (any thread, no lock held) when the last claim goes while the
  // generation can be abandoned. The owner then calls abandon_if_unclaimed() under its
  // own lock and, when it returns true, cancel() after releasing that lock. Without an
  // owner, the last release does both itself.
  void set_on_unclaimed(std::function<void(Generation&)> on_unclaimed) { on_unclaimed_ = std::move(on_unclaimed); }
  // True (once) when no claim is held, it runs and is not ending, and it has a
  // canceller: it is abandoned from then on (no claim may be taken on it again).
  bool abandon_if_unclaimed();
  // Runs the canceller of an abandoned generation.
  void cancel();
  bool abandoned() const;
  uint32_t claims() const;

  // Called once when the generation ends, before any listener: the Cacher commits
  // the samples here (so a client that got its answer finds them stored).
  // `final_state` is what the state becomes right after (done or failed), unless a
  // done generation's on_end returns an error: then it fails with that error instead
  // (the cluster store does, when it cannot confirm the samples stored: serving them
  // could let another replica serve other samples at the same indices, I2).
  using OnEnd = std::function<std::optional<GenerationError>(Generation&, State final_state)>;
  void set_on_end(OnEnd on_end) { on_end_ = std::move(on_end); }

 private:
  void end(State state);
  void add_claim();
  void drop_claim();

  const std::shared_ptr<const CanonicalRequest> request_;
  const Endpoint endpoint_;
  const uint32_t size_;
  const bool stream_;
  const std::shared_ptr<const CallContext> context_;
  std::atomic<uint64_t> first_index_{0};
  std::string origin_;
  const std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
  OnEnd on_end_;
  std::function<void(Generation&)> on_unclaimed_;  // set before any claim is made

  mutable std::mutex mu_;
  State state_ = State::running;
  bool ending_ = false;  // complete() or fail() was called; state_ follows after on_end_
  std::vector<Event> events_;
  std::string model_;
  std::string fingerprint_;
  nlohmann::json response_extra_;
  std::vector<Sample> samples_;
  GenerationError error_;
  uint64_t next_listener_ = 0;
  std::vector<std::pair<uint64_t, Listener>> listeners_;
  uint32_t claims_ = 0;
  bool abandoned_ = false;
  std::function<void()> canceller_;
};

}  // namespace reprise::cache
