#pragma once
// The cache's Backend over an upstream API: one HTTP call per generation, with
// n = the generation's size, streamed or not. Each returned choice becomes one sample
// with its own share of the call's usage (see split_usage in the .cpp). Only complete
// successes complete a generation: a 200 whose every choice ended normally
// (format::normal_finish_reason), or a stream that reached [DONE] with every choice
// ended so. Anything else fails it, with
// the status and OpenAI-shaped body the waiting clients receive.
#include <memory>
#include <mutex>
#include <string>

#include "cache/backend.hpp"
#include "proxy/net.hpp"
#include "proxy/upstream_client.hpp"

namespace reprise {

// The fields a streamed answer's chunks carry beyond model and system_fingerprint
// (service_tier, a provider's own), as the first chunk had them: the backend sets
// them before it publishes the first piece, and the clients' live relays put them in
// every chunk they write (cache::Generation carries only model and fingerprint).
class LiveHead {
 public:
  void set(nlohmann::json extra);
  nlohmann::json get() const;  // an object, or null

 private:
  mutable std::mutex mu_;
  nlohmann::json extra_;
};

// What a generation needs from the request that started it: the headers to send
// upstream (the client's credentials, or the configured key), and the query of the
// target it called (Azure's api-version; sent as it came, credentials included).
// Requests that join the generation have the same key, so the same query in it. And
// where its stream leaves the head fields for the live relays.
struct UpstreamCallContext : cache::CallContext {
  http::fields headers;
  std::string query;  // without its '?'
  std::shared_ptr<LiveHead> live_head = std::make_shared<LiveHead>();
};

// The head fields of a generation's live chunks; null when it is no upstream's stream.
nlohmann::json live_response_extra(const cache::Generation& gen);

class UpstreamBackend : public cache::Backend {
 public:
  UpstreamBackend(asio::any_io_executor executor, UpstreamClient& client);

  std::string_view name() const override { return client_.config().name; }
  uint32_t max_n() const override { return static_cast<uint32_t>(client_.config().max_n); }
  void generate(std::shared_ptr<cache::Generation> gen) override;

 private:
  awaitable<void> run(std::shared_ptr<cache::Generation> gen);

  asio::any_io_executor executor_;
  UpstreamClient& client_;
};

// The target path of an endpoint under the upstream's base path.
std::string_view upstream_path(cache::Endpoint endpoint);

}  // namespace reprise
