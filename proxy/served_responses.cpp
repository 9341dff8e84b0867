#include "proxy/served_responses.hpp"

namespace reprise {

void ServedResponses::record(const cache::TenantId& tenant, std::shared_ptr<const cache::Sample> sample) {
  if (!sample || !sample->choice.is_object()) return;
  auto id = sample->choice.find("id");
  if (id == sample->choice.end() || !id->is_string()) return;
  std::lock_guard lock(mu_);
  auto [it, fresh] = by_id_.try_emplace(id->get<std::string>());
  it->second = Entry{tenant, std::move(sample)};
  if (!fresh) return;  // served again: keeps its place (a replay serves ids again and again)
  order_.push_back(it->first);
  while (order_.size() > kMaxEntries) {
    by_id_.erase(order_.front());
    order_.pop_front();
  }
}

std::shared_ptr<const cache::Sample> ServedResponses::find(const std::string& id, const cache::TenantId& tenant) const {
  std::lock_guard lock(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end() || it->second.tenant.bytes != tenant.bytes) return nullptr;
  return it->second.sample;
}

}  // namespace reprise
