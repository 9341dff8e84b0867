#include "cache/deduplicator.hpp"

#include <cstring>
#include <string>
#include <unordered_map>

namespace reprise::cache {
namespace {

std::string merge_identity(const CacheRequest& r) {
  std::string id(reinterpret_cast<const char*>(r.tenant.bytes.data()), r.tenant.bytes.size());
  id.append(reinterpret_cast<const char*>(r.key.bytes.data()), r.key.bytes.size());
  id += r.only_cached ? '1' : '0';
  id += r.ns;
  return id;
}

}  // namespace

std::vector<MergedRequest> deduplicate(std::vector<PendingRequest> batch) {
  std::vector<MergedRequest> groups;
  groups.reserve(batch.size());
  std::unordered_map<std::string, size_t> group_of;
  for (auto& pending : batch) {
    if (pending.request.pick == Pick::cursor) {
      auto [it, fresh] = group_of.try_emplace(merge_identity(pending.request), groups.size());
      if (!fresh) {
        MergedRequest& group = groups[it->second];
        group.request.n += pending.request.n;
        group.request.stream = group.request.stream || pending.request.stream;
        group.request.clients += pending.request.clients;
        group.members.push_back(std::move(pending));
        continue;
      }
    }
    MergedRequest group;
    group.request = pending.request;
    group.members.push_back(std::move(pending));
    groups.push_back(std::move(group));
  }
  return groups;
}

void fan_out(MergedRequest& merged, Assignment assignment) {
  if (merged.members.size() == 1) {
    merged.members.front().done(std::move(assignment));
    return;
  }
  size_t next = 0;
  for (auto& member : merged.members) {
    Assignment own;
    own.error = assignment.error;
    own.message = assignment.message;
    if (assignment.error == AssignError::none) {
      for (uint32_t i = 0; i < member.request.n && next < assignment.slots.size(); ++i)
        own.slots.push_back(assignment.slots[next++]);
    }
    member.done(std::move(own));
  }
}

}  // namespace reprise::cache
