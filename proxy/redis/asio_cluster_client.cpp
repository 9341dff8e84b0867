#include "proxy/redis/asio_cluster_client.hpp"

// PLACEHOLDER: being written.
namespace reprise::redis {

uint16_t key_slot(std::string_view) { return 0; }

std::unique_ptr<cache::ClusterClient> connect_cluster(ClusterOptions, std::string* error) {
  if (error) *error = "the Redis Cluster client is not built yet";
  return nullptr;
}

}  // namespace reprise::redis
