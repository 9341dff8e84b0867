#pragma once
// What the Cacher asks of whatever makes samples (DESIGN.md section 7): an upstream
// API (proxy/upstream_backend) or the in-process engine, behind one small interface.
#include <cstdint>
#include <memory>
#include <string_view>

#include "cache/generation.hpp"

namespace reprise::cache {

class Backend {
 public:
  virtual ~Backend() = default;
  // Stored in each sample's `backend`.
  virtual std::string_view name() const = 0;
  // The largest n one call may ask for; bigger deficits are split into several calls.
  virtual uint32_t max_n() const = 0;
  // Starts making gen->size() samples of gen->request() and returns at once. It ends
  // the generation exactly once, with complete() or fail(), from any thread; when
  // gen->stream(), it publishes the pieces as they arrive. Only complete successes
  // may complete(): every choice finished (a finish_reason, or a stream that reached
  // its end).
  virtual void generate(std::shared_ptr<Generation> gen) = 0;
};

}  // namespace reprise::cache
