#include "cache/pipeline.hpp"

#include "cache/deduplicator.hpp"
#include "cache/reorderer.hpp"

namespace reprise::cache {

Pipeline::Pipeline(Store& store, BatcherOptions batching, Batcher::Schedule schedule,
                   CacherOptions caching)
    : cacher_(store, std::move(caching)),
      batcher_(batching, std::move(schedule),
               [this](std::vector<PendingRequest> batch) { process(std::move(batch)); }) {}

void Pipeline::submit(CacheRequest request, std::function<void(Assignment)> done) {
  PendingRequest pending{std::move(request), std::move(done), arrivals_.fetch_add(1)};
  batcher_.submit(std::move(pending));
}

void Pipeline::process(std::vector<PendingRequest> batch) {
  reorder(batch);
  auto merged = deduplicate(std::move(batch));
  // In order: the Cacher gives earlier requests the earlier indices.
  for (auto& group : merged) fan_out(group, cacher_.assign(group.request));
}

}  // namespace reprise::cache
