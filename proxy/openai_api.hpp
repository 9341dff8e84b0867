#pragma once
// The OpenAI-compatible listener's request handler: routes, validates and forwards
// to the backend that [[models]] picks. (The cache pipeline slots in here with
// issue 3; until then every request is relayed and answered "X-Reprise-Cache: bypass".)
#include <memory>
#include <vector>

#include "proxy/config.hpp"
#include "proxy/net.hpp"
#include "proxy/response_writer.hpp"
#include "proxy/routes.hpp"
#include "proxy/upstream_client.hpp"

namespace reprise {

class OpenAiApi {
 public:
  OpenAiApi(const Config& config, std::vector<std::unique_ptr<UpstreamClient>> upstreams);

  awaitable<void> handle(Request& req, ResponseWriter& writer);

  const std::vector<std::unique_ptr<UpstreamClient>>& upstreams() const { return upstreams_; }

  // Where a request goes and in what form. Deciding is kept apart from the I/O so
  // that every refusal is one plain return (and coroutines never see temporaries).
  struct Plan {
    UpstreamClient* upstream = nullptr;
    UpstreamRequest request;
    bool json_endpoint = false;  // a 2xx answer must be JSON
  };
  // `ours` receives the X-Reprise-* response headers, also for refusals.
  Result<Plan> plan(const Request& req, http::fields& ours) const;

 private:
  // Relays one request to an upstream and its answer to the client: SSE streams
  // piece by piece as they arrive, everything else whole (and checked).
  awaitable<void> forward(Plan& plan, const http::fields& ours, ResponseWriter& writer);
  UpstreamClient* upstream_named(std::string_view name) const;

  const Config& config_;
  std::vector<std::unique_ptr<UpstreamClient>> upstreams_;
};

// The headers to send upstream: the client's end-to-end headers minus hop-by-hop
// ones, ours (X-Reprise-*), Host, Content-Length and Accept-Encoding; the client's
// Authorization, or the upstream's configured key when the client sent none.
http::fields upstream_headers(const http::fields& client, const UpstreamConfig& upstream);

// The upstream's response headers worth relaying (hop-by-hop and framing dropped).
http::fields relay_headers(const http::fields& upstream);

}  // namespace reprise
