#pragma once
// The pipeline, wired once (DESIGN.md section 2):
//   Batcher -> Reorderer -> Deduplicator -> Cacher -> backend
// Each stage is its own unit with one entry point (batcher.hpp, reorderer.hpp,
// deduplicator.hpp, cacher.hpp); this file only connects them.
#include <array>
#include <atomic>
#include <functional>
#include <memory>

#include <nlohmann/json.hpp>

#include "cache/batcher.hpp"
#include "cache/cacher.hpp"

namespace reprise::cache {

class Pipeline {
 public:
  // Over the RocksDB store: the one-machine Cacher, owned.
  Pipeline(Store& store, BatcherOptions batching, Batcher::Schedule schedule, CacherOptions caching);
  // Over any ListStore (the cluster store, say), owned.
  Pipeline(std::unique_ptr<ListStore> lists, BatcherOptions batching, Batcher::Schedule schedule);

  // Runs the request through the stages; `done` receives its assignment exactly once,
  // on this thread (no wait needed) or on the thread that closes its batch.
  void submit(CacheRequest request, std::function<void(Assignment)> done);

  // Stage 4's state: where lists, cursors and generations in flight live.
  ListStore& lists() { return *lists_; }

  // Batches processed and their sizes (a lone request that went straight on is a
  // batch of one): {"count","requests","max_size","sizes":{"1","2-4","5-16",
  // "17-64","65-256","257+"}}.
  nlohmann::json batch_stats() const;

 private:
  void process(std::vector<PendingRequest> batch);

  std::unique_ptr<ListStore> lists_;
  Batcher batcher_;
  std::atomic<uint64_t> arrivals_{0};
  static constexpr std::array<uint64_t, 5> kBatchBounds = {1, 4, 16, 64, 256};
  std::array<std::atomic<uint64_t>, kBatchBounds.size() + 1> batch_sizes_{};
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> batched_requests_{0};
  std::atomic<uint64_t> largest_batch_{0};
};

}  // namespace reprise::cache
