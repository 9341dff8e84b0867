#include "cache/canonical_memo.hpp"

#include <xxhash.h>

namespace reprise::cache {

CanonicalMemo::CanonicalMemo(size_t max_entries, size_t max_body_bytes)
    : max_per_shard_(std::max<size_t>(1, max_entries / kShards)), max_body_bytes_(max_body_bytes),
      shards_(new Shard[kShards]) {}

Expected<std::shared_ptr<const CanonicalRequest>, CanonicalError> CanonicalMemo::canonical(
    Endpoint endpoint, std::string_view raw_body) {
  auto make = [&]() -> Expected<std::shared_ptr<const CanonicalRequest>, CanonicalError> {
    auto made = canonicalize(endpoint, raw_body);
    if (!made) return made.error();
    return std::make_shared<const CanonicalRequest>(std::move(made.value()));
  };
  if (raw_body.size() > max_body_bytes_) return make();

  std::string raw(endpoint_name(endpoint));
  raw += '\n';
  raw += raw_body;
  const uint64_t hash = XXH3_64bits(raw.data(), raw.size());
  Shard& shard = shards_[hash % kShards];
  {
    std::lock_guard lock(shard.mu);
    auto it = shard.entries.find(hash);
    if (it != shard.entries.end() && it->second.raw == raw) return it->second.request;
  }
  auto made = make();
  if (!made) return made;  // refusals are not kept: they are cheap to repeat
  std::lock_guard lock(shard.mu);
  auto [it, fresh] = shard.entries.try_emplace(hash);
  it->second = Entry{std::move(raw), made.value()};  // a colliding older body is replaced
  if (fresh) {
    shard.order.push_back(hash);
    while (shard.entries.size() > max_per_shard_ && !shard.order.empty()) {
      shard.entries.erase(shard.order.front());
      shard.order.pop_front();
    }
  }
  return made;
}

}  // namespace reprise::cache
