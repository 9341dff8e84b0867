#pragma once
// The canonical forms of request bodies seen recently. Agents and replays send the
// same bytes again and again (every sample of a prompt, every namespace of a sweep),
// and canonicalising (a strict parse, sorting, serialising, SHA-256) is the largest
// CPU cost of a hit. The memo is keyed by the raw bytes themselves (hashed, then
// compared in full), so it can never return the canonical form of another body.
// Bounded in entries and in body size; the oldest entry goes first.
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "cache/canonical.hpp"

namespace reprise::cache {

class CanonicalMemo {
 public:
  // Bodies over max_body_bytes are canonicalised every time (and not kept).
  explicit CanonicalMemo(size_t max_entries = 4096, size_t max_body_bytes = 16 * 1024);

  Expected<std::shared_ptr<const CanonicalRequest>, CanonicalError> canonical(Endpoint endpoint,
                                                                              std::string_view raw_body);

 private:
  struct Entry {
    std::string raw;  // the endpoint's name, '\n', the body
    std::shared_ptr<const CanonicalRequest> request;
  };
  static constexpr size_t kShards = 16;
  struct Shard {
    std::mutex mu;
    std::unordered_map<uint64_t, Entry> entries;
    std::deque<uint64_t> order;
  };
  const size_t max_per_shard_;
  const size_t max_body_bytes_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace reprise::cache
