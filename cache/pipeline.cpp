#include "cache/pipeline.hpp"

#include "cache/deduplicator.hpp"
#include "cache/reorderer.hpp"

namespace reprise::cache {

Pipeline::Pipeline(Store& store, BatcherOptions batching, Batcher::Schedule schedule,
                   CacherOptions caching)
    : Pipeline(std::make_unique<Cacher>(store, std::move(caching)), batching, std::move(schedule)) {}

Pipeline::Pipeline(std::unique_ptr<ListStore> lists, BatcherOptions batching, Batcher::Schedule schedule)
    : lists_(std::move(lists)),
      batcher_(batching, std::move(schedule),
               [this](std::vector<PendingRequest> batch) { process(std::move(batch)); }) {}

void Pipeline::submit(CacheRequest request, std::function<void(Assignment)> done) {
  PendingRequest pending{std::move(request), std::move(done), arrivals_.fetch_add(1)};
  batcher_.submit(std::move(pending));
}

void Pipeline::process(std::vector<PendingRequest> batch) {
  const uint64_t size = batch.size();
  size_t bucket = 0;
  while (bucket < kBatchBounds.size() && size > kBatchBounds[bucket]) ++bucket;
  batch_sizes_[bucket].fetch_add(1, std::memory_order_relaxed);
  batches_.fetch_add(1, std::memory_order_relaxed);
  batched_requests_.fetch_add(size, std::memory_order_relaxed);
  uint64_t largest = largest_batch_.load(std::memory_order_relaxed);
  while (size > largest && !largest_batch_.compare_exchange_weak(largest, size)) {}
  if (size == 1) {
    // Alone (the usual case: a request without X-Reprise-Request-Id whose key has
    // nothing pending): nothing to order or merge. The stages would only copy the
    // request (~1k instructions of every hit) to give the same assignment. Like a
    // group below, it travels with its answer.
    auto only = std::make_shared<PendingRequest>(std::move(batch.front()));
    lists_->assign(only->request, [only](Assignment assignment) { only->done(std::move(assignment)); });
    return;
  }
  reorder(batch);
  auto merged = deduplicate(std::move(batch));
  // In order: the Cacher gives earlier requests the earlier indices.
  // The store may answer later, on its own thread (the cluster store does), so each
  // group travels with its answer.
  for (auto& group : merged) {
    auto owned = std::make_shared<MergedRequest>(std::move(group));
    lists_->assign(owned->request, [owned](Assignment assignment) { fan_out(*owned, std::move(assignment)); });
  }
}

nlohmann::json Pipeline::batch_stats() const {
  static constexpr const char* kNames[] = {"1", "2-4", "5-16", "17-64", "65-256", "257+"};
  nlohmann::json sizes = nlohmann::json::object();
  for (size_t i = 0; i < batch_sizes_.size(); ++i) sizes[kNames[i]] = batch_sizes_[i].load();
  return {{"count", batches_.load()},
          {"requests", batched_requests_.load()},
          {"max_size", largest_batch_.load()},
          {"sizes", std::move(sizes)}};
}

}  // namespace reprise::cache
