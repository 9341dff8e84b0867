#pragma once
// The pipeline, wired once (DESIGN.md section 2):
//   Batcher -> Reorderer -> Deduplicator -> Cacher -> backend
// Each stage is its own unit with one entry point (batcher.hpp, reorderer.hpp,
// deduplicator.hpp, cacher.hpp); this file only connects them.
#include <atomic>
#include <functional>

#include "cache/batcher.hpp"
#include "cache/cacher.hpp"

namespace reprise::cache {

class Pipeline {
 public:
  Pipeline(Store& store, BatcherOptions batching, Batcher::Schedule schedule, CacherOptions caching);

  // Runs the request through the stages; `done` receives its assignment exactly once,
  // on this thread (no wait needed) or on the thread that closes its batch.
  void submit(CacheRequest request, std::function<void(Assignment)> done);

  Cacher& cacher() { return cacher_; }

 private:
  void process(std::vector<PendingRequest> batch);

  Cacher cacher_;
  Batcher batcher_;
  std::atomic<uint64_t> arrivals_{0};
};

}  // namespace reprise::cache
