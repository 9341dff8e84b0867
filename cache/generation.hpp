#pragma once
// One backend call that produces `size` samples of one key: the meeting point of the
// backend that fills it and every request waiting on it (single flight: requests from
// any namespace or batch that need these indices join it instead of calling again).
//
// The backend publishes streamed pieces as they arrive (so merged streaming clients
// each see their own choices live), then ends it exactly once with complete() or
// fail(). Waiters subscribe a listener that is called, from the backend's thread and
// without any lock held, whenever something new can be read.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
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
  Endpoint endpoint() const { return endpoint_; }
  uint32_t size() const { return size_; }
  bool stream() const { return stream_; }
  const CallContext* context() const { return context_.get(); }

  // The namespace of the request that started it (for accounting), and when.
  void set_origin(std::string ns) { origin_ = std::move(ns); }
  const std::string& origin() const { return origin_; }
  std::chrono::steady_clock::time_point started_at() const { return started_at_; }

  // The list index of choice 0. Set by the Cacher; it moves down only if an earlier
  // generation of the same key fails (its indices are then taken by this one).
  uint64_t first_index() const { return first_index_.load(std::memory_order_acquire); }
  void set_first_index(uint64_t first) { first_index_.store(first, std::memory_order_release); }

  // ---- backend side (any thread) ----
  // The model and system_fingerprint the backend answers with, for live chunks.
  void set_identity(std::string model, std::string system_fingerprint);
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
  // Valid once the state is done / failed (and inside on_end); never change after.
  const std::vector<Sample>& samples() const { return samples_; }
  const GenerationError& error() const { return error_; }

  // Called once when the generation ends, before any listener: the Cacher commits
  // the samples here (so a client that got its answer finds them stored).
  // `final_state` is what the state becomes right after (done or failed).
  using OnEnd = std::function<void(Generation&, State final_state)>;
  void set_on_end(OnEnd on_end) { on_end_ = std::move(on_end); }

 private:
  void end(State state);

  const std::shared_ptr<const CanonicalRequest> request_;
  const Endpoint endpoint_;
  const uint32_t size_;
  const bool stream_;
  const std::shared_ptr<const CallContext> context_;
  std::atomic<uint64_t> first_index_{0};
  std::string origin_;
  const std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
  OnEnd on_end_;

  mutable std::mutex mu_;
  State state_ = State::running;
  bool ending_ = false;  // complete() or fail() was called; state_ follows after on_end_
  std::vector<Event> events_;
  std::string model_;
  std::string fingerprint_;
  std::vector<Sample> samples_;
  GenerationError error_;
  uint64_t next_listener_ = 0;
  std::vector<std::pair<uint64_t, Listener>> listeners_;
};

}  // namespace reprise::cache
