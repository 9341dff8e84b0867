#pragma once
// The cache's Backend over an upstream API, for one dialect: one HTTP call per
// generation, with n = the generation's size (1 for dialects without n), streamed or
// not. The dialect makes the call's target and body and reads its answer into samples
// (proxy/dialect.hpp); only complete successes complete a generation. Anything else
// fails it, with the status and body the waiting clients receive (the upstream's
// own error, or the proxy's 502 naming the upstream).
#include <memory>
#include <mutex>
#include <string>

#include "cache/backend.hpp"
#include "proxy/dialect.hpp"
#include "proxy/net.hpp"
#include "proxy/upstream_client.hpp"

namespace reprise {

// What a generation needs from the request that started it: the headers to send
// upstream (the client's credentials, or the configured key), and the query of the
// target it called (Azure's api-version; sent as it came, credentials included).
// Requests that join the generation have the same key, so the same query in it.
struct UpstreamCallContext : cache::CallContext {
  http::fields headers;
  std::string query;  // without its '?'
};

class UpstreamBackend : public cache::Backend {
 public:
  UpstreamBackend(asio::any_io_executor executor, UpstreamClient& client, const Dialect& dialect);

  std::string_view name() const override { return client_.config().name; }
  uint32_t max_n() const override { return dialect_.has_n() ? static_cast<uint32_t>(client_.config().max_n) : 1; }
  void generate(std::shared_ptr<cache::Generation> gen) override;

 private:
  awaitable<void> run(std::shared_ptr<cache::Generation> gen);

  asio::any_io_executor executor_;
  UpstreamClient& client_;
  const Dialect& dialect_;
};

}  // namespace reprise
