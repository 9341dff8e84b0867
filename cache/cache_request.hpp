#pragma once
// What flows through the pipeline: a request as the cache sees it (CacheRequest), and
// what the Cacher answers (Assignment): one Slot per choice to serve, each either a
// stored sample or a choice of a generation in flight.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache/canonical.hpp"
#include "cache/generation.hpp"
#include "cache/keys.hpp"
#include "cache/sample.hpp"

namespace reprise::cache {

class Backend;

// How a request picks its indices in the key's list (DESIGN.md section 1).
enum class Pick {
  cursor,    // the namespace's next n samples; advances its cursor
  greedy,    // explicit temperature 0 with greedy_reuse (and embeddings): sample 0, n
             // times; the namespace's cursor only records that it read it (at least 1)
  explicit_range,  // X-Reprise-Sample: k or k-m; no cursor
};

struct CacheRequest {
  TenantId tenant;
  CacheKey key;
  Endpoint endpoint = Endpoint::chat_completions;
  std::shared_ptr<const CanonicalRequest> canonical;
  std::string ns = "default";
  std::string request_id;   // X-Reprise-Request-Id; empty when absent
  uint32_t n = 1;           // choices wanted (for explicit_range: the range's length)
  Pick pick = Pick::cursor;
  uint64_t first = 0;       // explicit_range: the first index
  bool only_cached = false; // X-Reprise-Cache: only-cached
  bool stream = false;      // a generation made for it streams from the backend
  // The clients it serves (the Deduplicator merges). One JSON client receives all of
  // its samples or none; several clients, or a stream, may receive some of them.
  uint32_t clients = 1;
  Backend* backend = nullptr;
  std::shared_ptr<const CallContext> context;  // handed to the backend
};

struct Slot {
  // Stored: the sample itself (read and checked when assigned).
  std::shared_ptr<const Sample> sample;
  // In flight: choice `choice` of `gen`; its index is gen->first_index() + choice.
  std::shared_ptr<Generation> gen;
  uint32_t choice = 0;
  uint64_t stored_index = 0;  // the index of a stored sample
  bool created = false;       // its generation was started for this request (not joined)
  // In flight: this slot's hold on `gen` (generation.hpp). The client releases it
  // when it leaves; the generation is cancelled once every claim on it is gone.
  std::shared_ptr<Generation::Claim> claim;

  uint64_t index() const { return gen ? gen->first_index() + choice : stored_index; }
  // The sample it serves; for a generation's choice, valid once the generation is done.
  const Sample& served() const { return sample ? *sample : gen->samples()[choice]; }
};

enum class AssignError {
  none,
  not_cached,  // only-cached, and the samples are not stored (504)
  too_many,    // the request would make more than max_new_samples generated (I4; 400)
  store,       // the store failed (500)
  internal,    // anything else, an allocation failure say (500); the key is rebuilt
};

struct Assignment {
  AssignError error = AssignError::none;
  std::string message;   // for errors
  std::vector<Slot> slots;

  size_t stored() const {
    size_t count = 0;
    for (auto& slot : slots) count += slot.sample != nullptr;
    return count;
  }
};

// A request waiting in the pipeline, with where its answer goes. `done` is called
// exactly once, from whichever thread finishes the request's batch.
struct PendingRequest {
  CacheRequest request;
  std::function<void(Assignment)> done;
  uint64_t arrival = 0;  // arrival order, set by the pipeline
};

}  // namespace reprise::cache
