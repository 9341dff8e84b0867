#pragma once
// The listener's request handler, for every dialect (proxy/dialect.hpp): routes and
// validates each request, then either runs it through the cache pipeline (chat,
// completions, embeddings, responses, messages, Gemini's generateContent) and serves
// the samples assigned to it, or relays it to the upstream that [[models]] picks
// (X-Reprise-Cache: bypass, state the upstream keeps, and everything else under /v1
// and /v1beta).
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cache/canonical_memo.hpp"
#include "cache/ledger.hpp"
#include "cache/pipeline.hpp"
#include "proxy/cached_response.hpp"
#include "proxy/config.hpp"
#include "proxy/dialect.hpp"
#include "proxy/engine_backend.hpp"
#include "proxy/net.hpp"
#include "proxy/response_writer.hpp"
#include "proxy/routes.hpp"
#include "proxy/served_responses.hpp"
#include "proxy/upstream_client.hpp"

namespace reprise {

class ApiHandler {
 public:
  // `pipeline` may be null: then nothing is cached (every request is relayed).
  // `server_secret` keys the tenant HMAC.
  // `ledger` may be null too: then nothing is accounted. `engine`, when given, serves
  // the models that [[models]] routes to "engine"; it must outlive this object.
  ApiHandler(const Config& config, asio::any_io_executor executor,
            std::vector<std::unique_ptr<UpstreamClient>> upstreams, cache::Pipeline* pipeline,
            std::string server_secret, cache::Ledger* ledger = nullptr, engine::Engine* engine = nullptr);

  awaitable<void> handle(Request& req, ResponseWriter& writer);

  const std::vector<std::unique_ptr<UpstreamClient>>& upstreams() const { return upstreams_; }

  // Where a request goes and in what form. Deciding is kept apart from the I/O so
  // that every refusal is one plain return (and coroutines never see temporaries).
  struct Plan {
    UpstreamClient* upstream = nullptr;
    UpstreamRequest request;
    bool json_endpoint = false;  // a 2xx answer must be JSON
    // Set when the cache answers instead: the request for the pipeline, and how to
    // serve what it assigns.
    bool cached = false;
    bool counted = false;  // chat, completions or embeddings: accounted in the ledger
    std::string ns;
    std::string model;
    cache::CacheRequest cache_request;
    ServeOptions serve;
    // Answered by the engine without the cache (X-Reprise-Cache: bypass): the
    // generation is made from cache_request, and nothing is stored.
    bool engine_direct = false;
    // GET /v1/models/{id} for a model the engine serves: answered here.
    bool engine_model = false;
    // GET /v1/models with an engine loaded: the upstream's list (if any) plus it.
    bool models_list = false;
    // The request's dialect (its errors' shape); null for the routes of none (models,
    // pass-through): OpenAI's shape.
    const Dialect* dialect = nullptr;
    // Why a request of a cached endpoint is relayed uncached (X-Reprise-Cache-Reason).
    std::string uncached_reason;
    // GET /v1/responses/{id} for an id Reprise served this tenant: answered from it.
    std::shared_ptr<const cache::Sample> served_response;
    // The tenant of a cached request (for recording the Responses ids it is served).
    cache::TenantId tenant;
  };
  // `ours` receives the X-Reprise-* response headers, also for refusals.
  Result<Plan> plan(const Request& req, http::fields& ours) const;

 private:
  // Relays one request to an upstream and its answer to the client: SSE streams
  // piece by piece as they arrive, everything else whole (and checked).
  // `usage`, when given, receives the token usage the upstream's 2xx answer reported
  // (JSON body, or a stream's usage chunk), for the ledger. `settle` is called once,
  // before the answer's last write: true when the upstream's answer was relayed
  // (a call made), false for an error.
  using Settle = std::function<void(bool relayed)>;
  awaitable<void> forward(Plan& plan, const http::fields& ours, ResponseWriter& writer,
                          cache::Ledger::BypassUsage* usage, const Settle& settle);
  // Runs the request through the pipeline and serves its assignment.
  awaitable<void> serve_cached(Plan& plan, const http::fields& ours, ResponseWriter& writer);
  // The engine's answer without the cache, and the model lists that include it.
  awaitable<void> serve_engine_direct(Plan& plan, const http::fields& ours, ResponseWriter& writer);
  awaitable<void> serve_models_list(Plan& plan, const http::fields& ours, ResponseWriter& writer);
  // The cache's half of plan(): canonical form, tenant, key and how to pick indices.
  // `query` is the target's (Route::query): part of the key, and sent upstream.
  Result<bool> plan_cached(const Request& req, const Route& route, bool only_cached, Plan& plan) const;
  UpstreamClient* upstream_named(std::string_view name) const;
  // The cache's backend for calls of one dialect to `upstream`.
  cache::Backend* backend_for(const UpstreamClient& upstream, cache::Endpoint endpoint) const;
  // Where a request that is about no cached endpoint is relayed (see plan()).
  UpstreamClient* passthrough_upstream(const Request& req, const Route& route) const;
  // An error in the request's dialect (OpenAI's shape when it has none).
  awaitable<void> send_error(const Plan* plan, const Error& error, const http::fields& ours, ResponseWriter& writer);

  const Config& config_;
  std::vector<std::unique_ptr<UpstreamClient>> upstreams_;
  // One per upstream and cache endpoint: backends_[upstream * kEndpoints + endpoint].
  std::vector<std::unique_ptr<cache::Backend>> backends_;
  engine::Engine* engine_ = nullptr;
  std::unique_ptr<EngineBackend> engine_backend_;  // set when engine_ is
  cache::Pipeline* pipeline_;
  cache::Ledger* ledger_;
  mutable cache::CanonicalMemo canonical_memo_{size_t(config_.cache.canonical_memo_mb) << 20};
  std::string server_secret_;
  ServedResponses served_responses_;
};

// The headers to send upstream: the client's end-to-end headers minus hop-by-hop
// ones, ours (X-Reprise-*), Host, Content-Length and Accept-Encoding; the client's
// credentials (client_credentials: its headers, or a `key` in `query`, the target's
// query), or the upstream's configured key as Authorization when the client sent none.
http::fields upstream_headers(const http::fields& client, const UpstreamConfig& upstream, std::string_view query = {});

// A credential a client sent (DESIGN.md section 9): which header (lower case) or query
// parameter ("?key"), and its value; for Authorization, the bearer token (or the whole
// value for other schemes).
struct Credential {
  std::string_view name;
  std::string_view value;
};
// Every credential of a request, in a fixed order (Authorization, x-api-key, api-key,
// x-goog-api-key, then the query's `key`), repeated ones in the order sent. Empty values
// are left out: they authenticate nobody.
std::vector<Credential> client_credentials(const http::fields& headers, std::string_view query);

// What the tenant's HMAC is taken over (never logged, never stored): "" for no
// credential; the token alone when Authorization is the only one (the tenants made
// before other credentials were read, and the admin import's X-Reprise-Import-Key, stay
// the same); otherwise every credential with its name, NUL-framed (header values and
// targets cannot hold a NUL, so no two sets frame alike, and none frames like a lone
// token). Changing, adding or dropping any credential changes the tenant.
std::string tenant_secret_input(const std::vector<Credential>& credentials);

// The upstream's response headers worth relaying (hop-by-hop and framing dropped).
http::fields relay_headers(const http::fields& upstream);

// X-Reprise-Sample: "k" or "k-m" (k <= m, at most 128 indices) as (first, count).
std::optional<std::pair<uint64_t, uint32_t>> parse_sample_header(std::string_view value);

}  // namespace reprise
