#include "cache/hot_samples.hpp"

#include <cstring>

namespace reprise::cache {
namespace {

size_t json_bytes(const nlohmann::json& j) {
  // Node overhead plus string payloads: close enough to bound memory.
  size_t bytes = sizeof(nlohmann::json);
  if (j.is_string()) return bytes + j.get_ref<const std::string&>().size();
  if (j.is_object())
    for (auto& [k, v] : j.items()) bytes += 48 + k.size() + json_bytes(v);
  if (j.is_array())
    for (auto& v : j) bytes += json_bytes(v);
  return bytes;
}

}  // namespace

size_t approximate_bytes(const Sample& s) {
  return sizeof(Sample) + json_bytes(s.choice) + json_bytes(s.usage_extra) + json_bytes(s.response_extra) + s.finish_reason.size() + s.system_fingerprint.size() +
         s.model.size() + s.backend.size();
}

size_t HotSamples::IdHash::operator()(const Id& id) const {
  size_t h;  // the key is an XXH3 hash already
  std::memcpy(&h, id.key.bytes.data(), sizeof h);
  return h ^ (id.index * 0x9e3779b97f4a7c15ull);
}

HotSamples::HotSamples(size_t budget_bytes) : shard_budget_(budget_bytes / kShards), shards_(new Shard[kShards]) {}

std::shared_ptr<const Sample> HotSamples::find(const TenantId& tenant, const CacheKey& key, uint64_t index) {
  if (shard_budget_ == 0) return nullptr;
  Id id{tenant, key, index};
  Shard& shard = shards_[IdHash{}(id) % kShards];
  std::lock_guard lock(shard.mu);
  auto it = shard.entries.find(id);
  return it == shard.entries.end() ? nullptr : it->second.sample;
}

void HotSamples::insert(const TenantId& tenant, const CacheKey& key, uint64_t index,
                        std::shared_ptr<const Sample> sample) {
  if (shard_budget_ == 0 || !sample) return;
  const size_t bytes = approximate_bytes(*sample) + sizeof(Id) * 2;
  if (bytes > shard_budget_) return;  // one huge sample must not flush everything
  Id id{tenant, key, index};
  Shard& shard = shards_[IdHash{}(id) % kShards];
  std::lock_guard lock(shard.mu);
  auto [it, fresh] = shard.entries.try_emplace(id, Entry{std::move(sample), bytes});
  if (!fresh) return;
  shard.order.push_back(id);
  shard.bytes += bytes;
  while (shard.bytes > shard_budget_ && !shard.order.empty()) {
    auto victim = shard.entries.find(shard.order.front());
    shard.order.pop_front();
    if (victim == shard.entries.end()) continue;
    shard.bytes -= victim->second.bytes;
    shard.entries.erase(victim);
  }
}

size_t HotSamples::bytes() const {
  size_t total = 0;
  for (size_t i = 0; i < kShards; ++i) {
    std::lock_guard lock(shards_[i].mu);
    total += shards_[i].bytes;
  }
  return total;
}

}  // namespace reprise::cache
