#include "cache/canonical_memo.hpp"

#include <xxhash.h>

namespace reprise::cache {
namespace {

// glibc's malloc: 8 bytes of header, rounded up to 16.
constexpr size_t kBlockOverhead = 16;
size_t block(size_t bytes) { return (bytes + 8 + 15) / 16 * 16; }

// A std::string's heap buffer (none while it fits the small-string buffer).
size_t string_heap(const std::string& s) { return s.capacity() > 15 ? block(s.capacity() + 1) : 0; }

// The heap bytes below one nlohmann value (its own 16 bytes are its parent's).
size_t json_heap(const nlohmann::json& j) {
  using json = nlohmann::json;
  switch (j.type()) {
    case json::value_t::object: {
      size_t bytes = block(sizeof(json::object_t));
      // A std::map node: the tree's links and colour (32 bytes), the key, the value.
      constexpr size_t kNode = 32 + sizeof(std::string) + sizeof(json);
      for (auto& [key, value] : j.get_ref<const json::object_t&>())
        bytes += block(kNode) + string_heap(key) + json_heap(value);
      return bytes;
    }
    case json::value_t::array: {
      auto& array = j.get_ref<const json::array_t&>();
      size_t bytes = block(sizeof(json::array_t)) + (array.capacity() ? block(array.capacity() * sizeof(json)) : 0);
      for (auto& value : array) bytes += json_heap(value);
      return bytes;
    }
    case json::value_t::string:
      return block(sizeof(std::string)) + string_heap(j.get_ref<const std::string&>());
    case json::value_t::binary:
      return block(sizeof(json::binary_t)) + block(j.get_binary().capacity());
    default:
      return 0;
  }
}

}  // namespace

size_t CanonicalMemo::footprint_of(const std::string& raw, const CanonicalRequest& request) {
  size_t bytes = string_heap(raw) + block(sizeof(CanonicalRequest)) + kBlockOverhead /* shared_ptr control */ +
                 json_heap(request.body) + string_heap(request.text) + string_heap(request.model) +
                 string_heap(request.encoding_format) + block(request.defaulted.capacity() * sizeof(std::string)) +
                 json_heap(request.forward) + string_heap(request.query);
  for (auto& field : request.defaulted) bytes += string_heap(field);
  // The map's node and the order queue's slot.
  return bytes + block(sizeof(uint64_t) + sizeof(Entry) + 16) + sizeof(uint64_t);
}

CanonicalMemo::CanonicalMemo(size_t max_bytes, size_t max_body_bytes)
    : max_bytes_per_shard_(max_bytes / kShards), max_body_bytes_(max_body_bytes), shards_(new Shard[kShards]) {}

size_t CanonicalMemo::entries() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard lock(shards_[i].mu);
    n += shards_[i].entries.size();
  }
  return n;
}

size_t CanonicalMemo::bytes() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard lock(shards_[i].mu);
    n += shards_[i].bytes;
  }
  return n;
}

Expected<std::shared_ptr<const CanonicalRequest>, CanonicalError> CanonicalMemo::canonical(
    Endpoint endpoint, std::string_view raw_body, const Accept& accept, std::string_view context) {
  bool accepted = true;
  auto make = [&]() -> Expected<std::shared_ptr<const CanonicalRequest>, CanonicalError> {
    auto made = canonicalize(endpoint, raw_body, context);
    if (!made) return made.error();
    auto request = std::make_shared<const CanonicalRequest>(std::move(made.value()));
    if (accept) accepted = accept(*request);
    return request;
  };
  if (raw_body.size() > max_body_bytes_ || max_bytes_per_shard_ == 0) return make();

  std::string raw(endpoint_name(endpoint));
  raw += '\n';
  raw += context;  // a context holds no newline (header values and model names cannot)
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
  if (!made || !accepted) return made;  // refusals are not kept: they are cheap to repeat
  raw.shrink_to_fit();
  const size_t bytes = footprint_of(raw, *made.value());
  if (bytes > max_bytes_per_shard_) return made;  // would push out everything else
  std::lock_guard lock(shard.mu);
  auto [it, fresh] = shard.entries.try_emplace(hash);
  if (!fresh) shard.bytes -= it->second.bytes;  // a colliding older body is replaced
  it->second = Entry{std::move(raw), made.value(), bytes};
  shard.bytes += bytes;
  if (fresh) shard.order.push_back(hash);
  while (shard.bytes > max_bytes_per_shard_ && !shard.order.empty()) {
    auto oldest = shard.entries.find(shard.order.front());
    shard.order.pop_front();
    if (oldest == shard.entries.end()) continue;
    shard.bytes -= oldest->second.bytes;
    shard.entries.erase(oldest);
  }
  return made;
}

}  // namespace reprise::cache
