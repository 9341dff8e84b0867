#pragma once
// Stage 1 of the pipeline (DESIGN.md section 2): collects requests for a short window
// so that requests which must be ordered against each other are seen together.
//
// The trade-off is latency against determinism: only a request that has something to
// be ordered against waits. One that carries an X-Reprise-Request-Id joins (or opens)
// its tenant's open batch and waits for the window (batch_window_ms) or until the
// batch is full (batch_max); one without an id waits only if the open batch already
// holds a request for the same key, and otherwise goes straight on, so a plain cache
// hit never pays the window. Each tenant has its own open batch (tenants never share
// batches), and a flushed batch is processed while the next one fills: many batches
// may be in flight.
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cache/cache_request.hpp"

namespace reprise::cache {

struct BatcherOptions {
  std::chrono::milliseconds window{2};  // [pipeline] batch_window_ms
  size_t max = 256;                     // [pipeline] batch_max
};

class Batcher {
 public:
  // Runs `task` once after `delay`, on any thread. The proxy gives an Asio timer;
  // tests give a manual clock.
  using Schedule = std::function<void(std::chrono::milliseconds delay, std::function<void()> task)>;
  // Receives each batch, in arrival order, on the thread that closed it.
  using Flush = std::function<void(std::vector<PendingRequest>)>;

  Batcher(BatcherOptions options, Schedule schedule, Flush flush);

  // The stage's entry point. May call flush on this thread before returning.
  void submit(PendingRequest request);

 private:
  struct Batch {
    uint64_t id = 0;
    std::vector<PendingRequest> requests;
    std::vector<CacheKey> keys;  // keys present (a batch is small: a linear scan is fine)
  };
  void close(const TenantId& tenant, uint64_t id);

  const BatcherOptions options_;
  const Schedule schedule_;
  const Flush flush_;

  std::mutex mu_;
  uint64_t next_id_ = 0;
  struct TenantHash {
    size_t operator()(const TenantId& t) const;
  };
  std::unordered_map<TenantId, Batch, TenantHash> open_;
};

}  // namespace reprise::cache
