#pragma once
// The canonical forms of request bodies seen recently. Agents and replays send the
// same bytes again and again (every sample of a prompt, every namespace of a sweep),
// and canonicalising (a strict parse, sorting, serialising, SHA-256) is the largest
// CPU cost of a hit. The memo is keyed by the raw bytes themselves (hashed, then
// compared in full), so it can never return the canonical form of another body.
// Bounded in bytes (the raw body kept as the key, the parsed canonical JSON and its
// text, each counted at its real footprint in memory: footprint_of) and in body size;
// the oldest entry goes first. A client can send as many distinct bodies as it likes
// (an only-cached request costs no upstream call), so an entry count alone let 4,096
// bodies of 16 KB hold 750 MB: the parsed JSON of many small messages is ten times
// its text.
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "cache/canonical.hpp"

namespace reprise::cache {

class CanonicalMemo {
 public:
  // Bodies over max_body_bytes are canonicalised every time (and not kept). At most
  // max_bytes are held in all (0: nothing is kept).
  explicit CanonicalMemo(size_t max_bytes = size_t(64) << 20, size_t max_body_bytes = 16 * 1024);

  // `accept` (optional) runs once per body, when it is canonicalised: a request it
  // refuses is returned but not kept, so every remembered one has passed it and a
  // repeat skips both the parse and the check (the proxy's parameter validation).
  using Accept = std::function<bool(const CanonicalRequest&)>;
  // `context` is canonicalize's (what shapes the answer from outside the body): part
  // of what an entry is found by.
  Expected<std::shared_ptr<const CanonicalRequest>, CanonicalError> canonical(Endpoint endpoint,
                                                                              std::string_view raw_body,
                                                                              const Accept& accept = {},
                                                                              std::string_view context = {});

  // What the memo holds now: entries and their footprint in bytes.
  size_t entries() const;
  size_t bytes() const;

  // The heap bytes an entry of this raw key and canonical request occupies: both
  // strings' buffers, every node of the parsed JSON (nlohmann keeps each value in 16
  // bytes, each object member in a map node, each string out of line) and the
  // containers' own overhead, with the allocator's per-block cost.
  static size_t footprint_of(const std::string& raw, const CanonicalRequest& request);

 private:
  struct Entry {
    std::string raw;  // the endpoint's name, '\n', the context, '\n', the body
    std::shared_ptr<const CanonicalRequest> request;
    size_t bytes = 0;  // footprint_of(raw, *request)
  };
  static constexpr size_t kShards = 16;
  struct Shard {
    std::mutex mu;
    std::unordered_map<uint64_t, Entry> entries;
    std::deque<uint64_t> order;
    size_t bytes = 0;
  };
  const size_t max_bytes_per_shard_;
  const size_t max_body_bytes_;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace reprise::cache
