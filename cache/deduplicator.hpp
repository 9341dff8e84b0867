#pragma once
// Stage 3 of the pipeline (DESIGN.md section 2): requests of one batch for the same
// (tenant, key, namespace) become one request for the sum of their n, so the Cacher
// reserves their indices in one step and a miss makes one backend call; the answer
// is fanned back to each member in the batch's (sorted) order.
#include <vector>

#include "cache/cache_request.hpp"

namespace reprise::cache {

struct MergedRequest {
  CacheRequest request;                 // n = the members' sum
  std::vector<PendingRequest> members;  // in batch order
};

// The stage's entry point. Only cursor requests merge (greedy and explicit-index
// requests don't consume a cursor: each stays alone), and only with the same
// only_cached mode. A merged request streams from the backend if any member streams.
// Groups come out in the order of their first member.
std::vector<MergedRequest> deduplicate(std::vector<PendingRequest> batch);

// Hands each member its own consecutive share of the merged answer's slots; an error
// goes to every member.
void fan_out(MergedRequest& merged, Assignment assignment);

}  // namespace reprise::cache
