#include "cache/batcher.hpp"

#include <algorithm>
#include <cstring>

namespace reprise::cache {

size_t Batcher::TenantHash::operator()(const TenantId& t) const {
  size_t h;  // the tenant is an HMAC: any 8 of its bytes are a good hash
  std::memcpy(&h, t.bytes.data(), sizeof h);
  return h;
}

Batcher::Batcher(BatcherOptions options, Schedule schedule, Flush flush)
    : options_(options), schedule_(std::move(schedule)), flush_(std::move(flush)) {}

void Batcher::submit(PendingRequest request) {
  std::vector<PendingRequest> ready;
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(request.request.tenant);
    const bool has_id = !request.request.request_id.empty();
    const bool key_pending =
        it != open_.end() && std::find(it->second.keys.begin(), it->second.keys.end(),
                                       request.request.key) != it->second.keys.end();
    if (!has_id && !key_pending) {
      ready.push_back(std::move(request));  // nothing to be ordered against: go on
    } else {
      if (it == open_.end()) {
        it = open_.emplace(request.request.tenant, Batch{}).first;
        it->second.id = ++next_id_;
        TenantId tenant = request.request.tenant;
        uint64_t id = it->second.id;
        schedule_(options_.window, [this, tenant, id] { close(tenant, id); });
      }
      Batch& batch = it->second;
      if (!key_pending) batch.keys.push_back(request.request.key);
      batch.requests.push_back(std::move(request));
      if (batch.requests.size() >= options_.max) {
        ready = std::move(batch.requests);
        open_.erase(it);  // its timer finds another id (or none) and does nothing
      }
    }
  }
  if (!ready.empty()) flush_(std::move(ready));
}

void Batcher::close(const TenantId& tenant, uint64_t id) {
  std::vector<PendingRequest> ready;
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(tenant);
    if (it == open_.end() || it->second.id != id) return;
    ready = std::move(it->second.requests);
    open_.erase(it);
  }
  flush_(std::move(ready));
}

}  // namespace reprise::cache
