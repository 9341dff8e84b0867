#include "proxy/api_handler.hpp"

#include <nlohmann/json.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>

#include "proxy/async_event.hpp"
#include "proxy/log.hpp"
#include "proxy/openai_format.hpp"
#include "proxy/openai_validate.hpp"
#include "proxy/upstream_backend.hpp"

namespace reprise {
namespace {

using nlohmann::json;

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Hop-by-hop fields are meaningful for one connection only and never forwarded
// (RFC 9110 section 7.6.1): a fixed list, plus whatever the Connection header names.
class HopByHop {
 public:
  explicit HopByHop(const http::fields& fields) {
    for (auto& field : fields)
      if (field.name() == http::field::connection)
        for (auto token : http::token_list(field.value())) listed_.insert(lowercase(token));
  }
  bool contains(std::string_view name) const {
    static const std::set<std::string, std::less<>> fixed = {
        "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade"};
    std::string lower = lowercase(name);
    return fixed.count(lower) > 0 || listed_.count(lower) > 0;
  }

 private:
  std::set<std::string> listed_;  // usually empty: no allocation per request
};

}  // namespace

std::vector<Credential> client_credentials(const http::fields& headers, std::string_view query) {
  std::vector<Credential> out;
  for (std::string_view name : {"authorization", "x-api-key", "api-key", "x-goog-api-key"}) {
    for (auto [it, end] = headers.equal_range(name); it != end; ++it) {
      std::string_view value = it->value();
      if (name == "authorization" && value.size() >= 7 && beast::iequals(value.substr(0, 7), "bearer "))
        value.remove_prefix(7);
      if (!value.empty()) out.push_back({name, value});
    }
  }
  for (auto value : query_values(query, "key"))
    if (!value.empty()) out.push_back({"?key", value});
  return out;
}

std::string tenant_secret_input(const std::vector<Credential>& credentials) {
  if (credentials.empty()) return {};
  if (credentials.size() == 1 && credentials.front().name == "authorization") return std::string(credentials.front().value);
  std::string out;
  for (auto& credential : credentials) {
    out += '\0';
    out += credential.name;
    out += '\0';
    out += credential.value;
  }
  return out;
}

http::fields upstream_headers(const http::fields& client, const UpstreamConfig& upstream, std::string_view query) {
  http::fields out;
  HopByHop hop_by_hop(client);
  for (auto& field : client) {
    auto name = field.name_string();
    if (hop_by_hop.contains(name)) continue;
    switch (field.name()) {
      case http::field::host:
      case http::field::content_length:
      case http::field::expect:
      case http::field::accept_encoding: continue;
      default: break;
    }
    if (name.size() >= 10 && beast::iequals(name.substr(0, 10), "x-reprise-")) continue;
    out.insert(name, field.value());
  }
  // A client that brings any key of its own (api-key, x-api-key, ...) is that key's
  // user: adding ours would bill, and answer, someone else.
  // Each kind of API takes its key in its own header.
  if (client_credentials(client, query).empty() && !upstream.api_key.empty()) {
    if (upstream.kind == "anthropic") out.set("x-api-key", upstream.api_key);
    else if (upstream.kind == "gemini") out.set("x-goog-api-key", upstream.api_key);
    else out.set(http::field::authorization, "Bearer " + upstream.api_key);
  }
  // The proxy reads what it relays (errors, and soon every answer for the cache).
  out.set(http::field::accept_encoding, "identity");
  return out;
}

http::fields relay_headers(const http::fields& upstream) {
  http::fields out;
  HopByHop hop_by_hop(upstream);
  for (auto& field : upstream) {
    auto name = field.name_string();
    if (hop_by_hop.contains(name)) continue;
    switch (field.name()) {
      case http::field::content_length:
      case http::field::server:
      case http::field::date: continue;
      default: break;
    }
    out.insert(name, field.value());
  }
  return out;
}

ApiHandler::ApiHandler(const Config& config, asio::any_io_executor executor,
                     std::vector<std::unique_ptr<UpstreamClient>> upstreams, cache::Pipeline* pipeline,
                     std::string server_secret, cache::Ledger* ledger, engine::Engine* engine)
    : config_(config), upstreams_(std::move(upstreams)), engine_(engine), pipeline_(pipeline), ledger_(ledger),
      server_secret_(std::move(server_secret)) {
  register_dialects(config_.cache.key_ignore_openai, config_.cache.key_ignore_anthropic, config_.cache.key_ignore_gemini);
  for (auto& up : upstreams_)
    for (cache::Endpoint e : cache::kEndpoints)
      backends_.push_back(std::make_unique<UpstreamBackend>(executor, *up, dialect_of(e)));
  if (engine_) engine_backend_ = std::make_unique<EngineBackend>(*engine_);
}

cache::Backend* ApiHandler::backend_for(const UpstreamClient& upstream, cache::Endpoint endpoint) const {
  for (size_t i = 0; i < upstreams_.size(); ++i)
    if (upstreams_[i].get() == &upstream)
      return backends_[i * std::size(cache::kEndpoints) + static_cast<size_t>(endpoint)].get();
  return nullptr;
}

UpstreamClient* ApiHandler::passthrough_upstream(const Request& req, const Route& route) const {
  if (req.body().size() > 0 && req.body().size() <= (1u << 20)) {
    json body = json::parse(req.body(), nullptr, false);
    if (body.is_object())
      if (auto model = body.find("model"); model != body.end() && model->is_string())
        if (const ModelRoute* r = route_model(config_.models, model->get<std::string>()))
          if (UpstreamClient* up = upstream_named(r->backend)) return up;
  }
  std::string_view kind = route.gemini_api ? "gemini"
                          : route.upstream_target.starts_with("/messages") ? "anthropic"
                                                                           : "openai";
  for (auto& up : upstreams_)
    if (up->config().kind == kind) return up.get();
  return upstreams_.front().get();
}

awaitable<void> ApiHandler::send_error(const Plan* plan, const Error& error, const http::fields& ours,
                                      ResponseWriter& writer) {
  if (!plan || !plan->dialect) {
    co_await writer.send_error(error, ours);
    co_return;
  }
  const unsigned status = to_http_status(error);
  http::fields headers = ours;
  plan->dialect->error_headers(status, headers);
  std::string body = plan->dialect->error_body(status, to_openai_json(error));
  co_await writer.send_json(status, std::move(body), headers);
}

UpstreamClient* ApiHandler::upstream_named(std::string_view name) const {
  for (auto& up : upstreams_)
    if (up->config().name == name) return up.get();
  return nullptr;
}


std::optional<std::pair<uint64_t, uint32_t>> parse_sample_header(std::string_view value) {
  auto number = [](std::string_view digits, uint64_t& out) {
    if (digits.empty() || digits.size() > 15) return false;
    out = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      out = out * 10 + uint64_t(c - '0');
    }
    return true;
  };
  uint64_t first = 0, last = 0;
  size_t dash = value.find('-');
  if (!number(value.substr(0, dash), first)) return std::nullopt;
  last = first;
  if (dash != std::string_view::npos && !number(value.substr(dash + 1), last)) return std::nullopt;
  if (last < first || last - first >= 128) return std::nullopt;
  return std::make_pair(first, static_cast<uint32_t>(last - first + 1));
}

namespace {

// HMAC-SHA256 costs a few microseconds; a client keeps its key, so each thread
// remembers the last one it derived (the key stays in this process's memory, as the
// forwarded credential headers do anyway; it is never written anywhere).
// `api_key` is tenant_secret_input() of the client's credentials.
const cache::TenantId& tenant_for(const std::string& secret, std::string_view api_key) {
  thread_local const std::string* last_secret = nullptr;
  thread_local std::string last_key;
  thread_local cache::TenantId last_tenant;
  if (last_secret != &secret || last_key != api_key) {
    last_tenant = cache::tenant_of(secret, api_key);
    last_key.assign(api_key);
    last_secret = &secret;
  }
  return last_tenant;
}

cache::Endpoint cache_endpoint(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::completions: return cache::Endpoint::completions;
    case Endpoint::embeddings: return cache::Endpoint::embeddings;
    case Endpoint::responses: return cache::Endpoint::responses;
    case Endpoint::messages: return cache::Endpoint::messages;
    case Endpoint::gemini: return cache::Endpoint::gemini;
    default: return cache::Endpoint::chat_completions;
  }
}

bool openai_endpoint(Endpoint endpoint) {
  return endpoint == Endpoint::chat_completions || endpoint == Endpoint::completions ||
         endpoint == Endpoint::embeddings;
}

// The API a dialect's requests need: "OpenAI Responses API", say, for the 400 below.
std::string dialect_title(const Dialect& dialect) {
  switch (dialect.endpoint()) {
    case cache::Endpoint::responses: return "the OpenAI Responses API";
    case cache::Endpoint::messages: return "the Anthropic Messages API";
    case cache::Endpoint::gemini: return "the Gemini API";
    default: return "the OpenAI API";
  }
}

// A request in one dialect goes to an upstream of the same kind (DESIGN.md section 9).
std::optional<Error> kind_mismatch(const UpstreamClient& upstream, const Dialect& dialect, const std::string& model) {
  if (upstream.config().kind == dialect.upstream_kind()) return std::nullopt;
  return Error{ErrorKind::bad_request,
               "model \"" + model + "\" routes to upstream \"" + upstream.config().name + "\" of kind \"" +
                   upstream.config().kind + "\", which does not speak " + dialect_title(dialect) + " (kind \"" +
                   std::string(dialect.upstream_kind()) + "\"); route it to an upstream of that kind in [[models]]",
               "model"};
}

// Legacy completions with several prompts answer choices of different prompts in one
// list: not one key's samples. They are relayed uncached.
bool several_prompts(const cache::CanonicalRequest& canonical) {
  auto prompt = canonical.body.find("prompt");
  if (prompt == canonical.body.end() || !prompt->is_array() || prompt->empty()) return false;
  if (prompt->size() > 1) return (*prompt)[0].is_string() || (*prompt)[0].is_array();
  return false;
}

// best_of = k answers the best n of k draws, picked server-side: its choices are not
// i.i.d. samples of the request, and a merged or split n could exceed k (an upstream
// 400). Relayed uncached, whatever its value (even 1: merged into n > 1 it is a 400).
bool has_best_of(const cache::CanonicalRequest& canonical) {
  auto best_of = canonical.body.find("best_of");
  return best_of != canonical.body.end() && !best_of->is_null();
}

// Fields that upstream_headers() drops whatever else the request holds: they cannot
// change what it builds, and some change with every request (Content-Length,
// X-Reprise-Request-Id).
bool dropped_anyway(const http::fields::value_type& field) {
  switch (field.name()) {
    case http::field::host:
    case http::field::content_length:
    case http::field::expect:
    case http::field::accept_encoding: return true;
    default: break;
  }
  auto name = field.name_string();
  return name.size() >= 10 && beast::iequals(name.substr(0, 10), "x-reprise-");
}

// Every cacheable request carries what a miss would send upstream (the generation
// may start later, after this request is gone), yet a hit never sends it: building
// it (a copy and a case-folded lookup per header) was ~6k instructions of each hit.
// A client sends the same headers request after request, so each thread keeps the
// last context it built and hands it out again (it is immutable: shared) while
// everything it was built from is the same, byte for byte. The remembered fields
// hold the client's credentials in this process's memory only, as tenant_for does.
class UpstreamContextMemo {
 public:
  std::shared_ptr<const UpstreamCallContext> get(const http::fields& client, const UpstreamConfig& upstream,
                                                 std::string_view query) {
    if (!context_ || !same_input(client, upstream, query)) remember(client, upstream, query);
    return context_;
  }

 private:
  bool same_input(const http::fields& client, const UpstreamConfig& upstream, std::string_view query) const {
    if (query != context_->query || upstream.kind != kind_ || upstream.api_key != api_key_) return false;
    size_t i = 0;
    for (auto& field : client) {
      if (dropped_anyway(field)) continue;
      if (i == fields_.size() || field.name_string() != fields_[i].first || field.value() != fields_[i].second)
        return false;
      ++i;
    }
    return i == fields_.size();
  }

  void remember(const http::fields& client, const UpstreamConfig& upstream, std::string_view query) {
    auto context = std::make_shared<UpstreamCallContext>();
    context->headers = upstream_headers(client, upstream, query);
    context->query = query;
    context_ = std::move(context);
    kind_ = upstream.kind;
    api_key_ = upstream.api_key;
    fields_.clear();
    for (auto& field : client)
      if (!dropped_anyway(field)) fields_.emplace_back(field.name_string(), field.value());
  }

  std::shared_ptr<const UpstreamCallContext> context_;
  std::string kind_;
  std::string api_key_;
  std::vector<std::pair<std::string, std::string>> fields_;
};

std::shared_ptr<const UpstreamCallContext> upstream_context(const http::fields& client, const UpstreamConfig& upstream,
                                                            std::string_view query) {
  thread_local UpstreamContextMemo memo;
  return memo.get(client, upstream, query);
}

}  // namespace

Result<bool> ApiHandler::plan_cached(const Request& req, const Route& route, bool only_cached, Plan& plan) const {
  const Endpoint endpoint = route.endpoint;
  const cache::Endpoint kind = cache_endpoint(endpoint);
  const Dialect& dialect = dialect_of(kind);
  const bool openai = openai_endpoint(endpoint);
  plan.dialect = &dialect;
  // Validated once per distinct body: the memo keeps only bodies that passed (the
  // other dialects validate inside their canonicalize).
  std::optional<Error> invalid;
  const std::string context = dialect.key_context(req.base(), route.model_id, route.path_stream);
  auto canonical = canonical_memo_.canonical(
      kind, req.body(),
      [&](const cache::CanonicalRequest& r) {
        if (openai) invalid = validate_request(endpoint, r.body);
        return !invalid;
      },
      context);
  if (!canonical) {
    auto& e = canonical.error();
    return Error{e.message.find("JSON") != std::string::npos ? ErrorKind::invalid_json : ErrorKind::bad_request,
                 e.message, e.param};
  }
  if (invalid) return *invalid;
  std::shared_ptr<const cache::CanonicalRequest> request = std::move(canonical.value());
  if (endpoint == Endpoint::completions && (several_prompts(*request) || has_best_of(*request))) return false;
  if (auto reason = dialect.uncacheable(*request)) {
    plan.uncached_reason = *reason;
    return false;
  }
  // The target's query shapes the answer (Azure's api-version, Anthropic's beta=true):
  // it enters the key. Gemini's alt=sse only frames it, like a body's "stream".
  if (std::string in_key = endpoint == Endpoint::gemini ? std::string() : key_query(route.query); !in_key.empty())
    request = std::make_shared<const cache::CanonicalRequest>(cache::with_query(*request, std::move(in_key)));

  const ModelRoute* backend = route_model(config_.models, request->model);
  if (!backend) return Error{ErrorKind::not_found, "no [[models]] route matches model \"" + request->model + "\"", "model"};
  if (backend->backend == "engine") {
    if (!engine_backend_)
      return Error{ErrorKind::backend_unavailable,
                   "model \"" + request->model + "\" routes to the in-process engine, which has no model loaded", "model"};
  } else {
    plan.upstream = upstream_named(backend->backend);
    if (!plan.upstream) return Error{ErrorKind::internal, "route to unknown upstream " + backend->backend, {}};
    if (auto mismatch = kind_mismatch(*plan.upstream, dialect, request->model)) return *mismatch;
  }

  cache::CacheRequest& c = plan.cache_request;
  c.tenant = tenant_for(server_secret_, config_.cache.share_across_keys
                                            ? std::string()
                                            : tenant_secret_input(client_credentials(req.base(), route.query)));
  c.key = cache::cache_key(c.tenant, kind, *request);
  plan.tenant = c.tenant;
  c.endpoint = kind;
  c.ns = route.ns;
  c.request_id = std::string(req["X-Reprise-Request-Id"]);
  if (c.request_id.size() > 256)
    return Error{ErrorKind::bad_request, "X-Reprise-Request-Id is longer than 256 characters", "X-Reprise-Request-Id"};
  c.n = static_cast<uint32_t>(request->n);
  c.pick = cache::Pick::cursor;
  if (auto sample = req["X-Reprise-Sample"]; !sample.empty()) {
    auto range = parse_sample_header(sample);
    if (!range)
      return Error{ErrorKind::bad_request, "X-Reprise-Sample must be k or k-m (k <= m, at most 128 indices)", "X-Reprise-Sample"};
    if (!dialect.has_n() && range->second > 1)
      return Error{ErrorKind::bad_request, "X-Reprise-Sample must name one index here: this API answers one sample per request",
                   "X-Reprise-Sample"};
    c.pick = cache::Pick::explicit_range;
    c.first = range->first;
    c.n = range->second;
  } else if (kind == cache::Endpoint::embeddings) {
    c.pick = cache::Pick::greedy;  // deterministic: one sample, index 0, for everyone
    c.n = 1;
  } else if (config_.cache.greedy_reuse && request->temperature && *request->temperature == 0) {
    c.pick = cache::Pick::greedy;
  }
  c.only_cached = only_cached;
  c.stream = request->stream;
  c.backend = plan.upstream ? backend_for(*plan.upstream, kind) : engine_backend_.get();
  if (plan.upstream) c.context = upstream_context(req.base(), plan.upstream->config(), route.query);

  plan.serve.dialect = &dialect;
  plan.serve.render.endpoint = kind;
  plan.serve.render.stream = request->stream;
  plan.serve.render.include_usage = request->include_usage;
  plan.serve.render.encoding_format = request->encoding_format;
  plan.serve.render.fallback_model = request->model;
  plan.model = request->model;
  c.canonical = std::move(request);
  plan.cached = true;
  return true;
}

Result<ApiHandler::Plan> ApiHandler::plan(const Request& req, http::fields& ours) const {
  auto parsed = parse_route(req.target());
  if (!parsed) return parsed.error();
  Route& route = parsed.value();

  if (!route.ns_from_path) {
    if (auto ns = req["X-Reprise-Namespace"]; !ns.empty()) {
      if (!valid_namespace(ns))
        return Error{ErrorKind::bad_request, "invalid X-Reprise-Namespace: use 1-128 characters of [A-Za-z0-9._:-]", "X-Reprise-Namespace"};
      route.ns = std::string(ns);
    }
  }
  ours.set("X-Reprise-Namespace", route.ns);

  auto cache_mode = req["X-Reprise-Cache"];
  if (!cache_mode.empty() && cache_mode != "use" && cache_mode != "bypass" && cache_mode != "only-cached")
    return Error{ErrorKind::bad_request, "X-Reprise-Cache must be use, bypass or only-cached", "X-Reprise-Cache"};

  const std::string what = std::string(req.method_string()) + " " + redacted_target(req.target());
  bool cacheable = false;
  switch (route.endpoint) {
    case Endpoint::not_found:
      return Error{ErrorKind::not_found, "unknown route " + what, {}};
    case Endpoint::chat_completions:
    case Endpoint::completions:
    case Endpoint::embeddings:
    case Endpoint::responses:
    case Endpoint::messages:
    case Endpoint::gemini:
      // The Responses API's WebSocket transport opens with GET /v1/responses: a 404
      // (not a 405 or 426) is what makes Codex fall back to HTTP at once.
      if (route.endpoint == Endpoint::responses && req.method() == http::verb::get)
        return Error{ErrorKind::not_found,
                     "the Responses WebSocket transport is not served here: use HTTP POST /v1/responses "
                     "(Codex: supports_websockets = false)", {}};
      if (req.method() != http::verb::post) return Error{ErrorKind::method_not_allowed, "use POST, not " + what, {}};
      cacheable = true;
      break;
    case Endpoint::models_list:
    case Endpoint::model_get:
      if (req.method() != http::verb::get) return Error{ErrorKind::method_not_allowed, "use GET, not " + what, {}};
      break;
    case Endpoint::responses_get:
      if (req.method() != http::verb::get) route.endpoint = Endpoint::passthrough;  // DELETE, say: upstream's
      break;
    case Endpoint::passthrough: break;
  }

  Plan plan;
  plan.request.method = req.method();
  plan.request.target = route.upstream_target;
  plan.ns = route.ns;
  plan.counted = cacheable;
  if (cacheable) plan.dialect = &dialect_of(cache_endpoint(route.endpoint));
  if (route.endpoint == Endpoint::responses_get) {
    // Ids Reprise served are answered from the sample served, for the same tenant;
    // others are the upstream's to answer.
    plan.dialect = &dialect_of(cache::Endpoint::responses);
    const cache::TenantId& tenant = tenant_for(server_secret_, config_.cache.share_across_keys
                                                                   ? std::string()
                                                                   : tenant_secret_input(client_credentials(req.base(), route.query)));
    if (auto sample = served_responses_.find(route.model_id, tenant)) {
      plan.served_response = std::move(sample);
      return plan;
    }
    route.endpoint = Endpoint::passthrough;
  }
  if (cacheable && cache_mode != "bypass" && pipeline_) {
    auto cached = plan_cached(req, route, cache_mode == "only-cached", plan);
    if (!cached) return cached.error();
    if (cached.value()) return plan;
  }
  // From here on the request is relayed, never cached.
  if (cache_mode == "only-cached")
    return Error{ErrorKind::not_cached, "X-Reprise-Cache: only-cached, and " + what + " is never cached", {}};
  ours.set("X-Reprise-Cache", "bypass");
  if (!plan.uncached_reason.empty()) ours.set("X-Reprise-Cache-Reason", plan.uncached_reason);

  if (route.endpoint == Endpoint::models_list && engine_backend_) {
    plan.models_list = true;
    if (upstreams_.empty()) return plan;  // the engine's model alone
  }
  if (route.endpoint == Endpoint::models_list || route.endpoint == Endpoint::passthrough) {
    // Not about one model: the upstream of the model the body names, if it names one
    // (Anthropic's /v1/messages/count_tokens), else the first [[upstreams]] entry of
    // the path's kind (/v1beta: gemini; /v1/messages/...: anthropic; else openai),
    // else the first entry.
    if (upstreams_.empty()) return Error{ErrorKind::not_found, "no [[upstreams]] configured to relay " + what + " to", {}};
    plan.upstream = passthrough_upstream(req, route);
    plan.request.headers = upstream_headers(req.base(), plan.upstream->config(), route.query);
    plan.request.body = req.body();
    plan.json_endpoint = route.endpoint == Endpoint::models_list;
    return plan;
  }

  std::string model = route.model_id;
  json body;
  const bool openai = openai_endpoint(route.endpoint);
  if (route.endpoint != Endpoint::model_get) {
    body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return Error{ErrorKind::invalid_json, "the request body must be a JSON object", {}};
    // Relayed as it is, so checked here as the cached path checks it (the other
    // dialects' checks are their canonical form's: relayed as they came).
    if (openai)
      if (auto invalid = validate_request(route.endpoint, body)) return *invalid;
  }
  if (route.endpoint != Endpoint::model_get && route.endpoint != Endpoint::gemini) {
    auto it = body.find("model");
    if (it == body.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
      return Error{ErrorKind::bad_request, "you must provide a model parameter", "model"};
    model = it->get<std::string>();
  }
  plan.model = model;
  const ModelRoute* backend = route_model(config_.models, model);
  if (!backend) return Error{ErrorKind::not_found, "no [[models]] route matches model \"" + model + "\"", "model"};
  if (backend->backend == "engine") {
    if (!engine_backend_)
      return Error{ErrorKind::backend_unavailable, "model \"" + model + "\" routes to the in-process engine, which has no model loaded", "model"};
    if (route.endpoint == Endpoint::model_get) {
      plan.engine_model = true;
      return plan;
    }
    // Bypassed (or no cache at all): the engine answers, nothing is stored.
    plan.uncached_reason.clear();
    auto direct = plan_cached(req, route, false, plan);
    if (!direct) return direct.error();
    if (!direct.value())
      return Error{ErrorKind::bad_request,
                   plan.uncached_reason.empty() ? "the engine answers one prompt per request, without best_of"
                                                : "the engine cannot answer this request: " + plan.uncached_reason,
                   "prompt"};
    plan.cached = false;
    plan.engine_direct = true;
    plan.serve.outcome = "bypass";
    return plan;
  }
  plan.upstream = upstream_named(backend->backend);
  if (!plan.upstream) return Error{ErrorKind::internal, "route to unknown upstream " + backend->backend, {}};
  if (plan.dialect)
    if (auto mismatch = kind_mismatch(*plan.upstream, *plan.dialect, model)) return *mismatch;

  plan.request.headers = upstream_headers(req.base(), plan.upstream->config(), route.query);
  plan.json_endpoint = true;
  if (!openai && route.endpoint != Endpoint::model_get) {
    // Relayed byte for byte: the proxy has no canonical form of it to send instead.
    plan.request.body = req.body();
  } else if (route.endpoint != Endpoint::model_get) {
    // The upstream gets the body as the proxy understood it, re-serialised, never
    // the client's raw bytes (DESIGN.md section 1).
    plan.request.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    plan.request.headers.set(http::field::content_type, "application/json");
  }
  return plan;
}

namespace {

// The per-API counters' label of a request: its dialect's endpoint name.
std::string_view api_of(const ApiHandler::Plan& plan) {
  if (plan.dialect) return cache::endpoint_name(plan.dialect->endpoint());
  return plan.counted ? cache::endpoint_name(plan.cache_request.endpoint) : std::string_view();
}

// The dialect whose error shape a request's refusal takes: its endpoint's, or for
// pass-through paths the API the path belongs to; null for OpenAI's own.
const Dialect* error_dialect(std::string_view target) {
  auto route = parse_route(target);
  if (!route) return nullptr;
  if (route.value().gemini_api) return &dialect_of(cache::Endpoint::gemini);
  switch (route.value().endpoint) {
    case Endpoint::responses:
    case Endpoint::responses_get: return &dialect_of(cache::Endpoint::responses);
    case Endpoint::messages: return &dialect_of(cache::Endpoint::messages);
    case Endpoint::passthrough:
      if (route.value().upstream_target.starts_with("/messages")) return &dialect_of(cache::Endpoint::messages);
      return nullptr;
    default: return nullptr;
  }
}

}  // namespace

awaitable<void> ApiHandler::handle(Request& req, ResponseWriter& writer) {
  http::fields ours;
  auto planned = plan(req, ours);
  if (!planned) {
    Plan shape;
    shape.dialect = error_dialect(req.target());
    co_await send_error(&shape, planned.error(), ours, writer);
    if (ledger_) ledger_->on_uncached({}, {}, cache::Outcome::error, api_of(shape));
    co_return;
  }
  if (planned.value().served_response) {
    const Plan& plan = planned.value();
    RenderOptions render;
    render.endpoint = cache::Endpoint::responses;
    std::string body = plan.dialect->json_body({plan.served_response.get()}, render);
    http::fields headers = ours;
    headers.set("X-Reprise-Cache", "hit");
    co_await writer.send_json(200, std::move(body), headers);
    co_return;
  }
  if (planned.value().cached) {
    co_await serve_cached(planned.value(), ours, writer);
    co_return;
  }
  if (planned.value().engine_direct) {
    co_await serve_engine_direct(planned.value(), ours, writer);
    co_return;
  }
  if (planned.value().engine_model || planned.value().models_list) {
    co_await serve_models_list(planned.value(), ours, writer);
    co_return;
  }
  const bool counted = ledger_ && planned.value().counted;
  const auto started = std::chrono::steady_clock::now();
  cache::Ledger::BypassUsage usage;
  // Called by forward() once, before its last write, so that a client reading the
  // stats right after its answer sees this request in them.
  const Settle settle = [&](bool relayed) {
    if (!counted) return;
    if (relayed)
      ledger_->on_bypassed(planned.value().ns, planned.value().model, usage,
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(),
                           api_of(planned.value()));
    else
      ledger_->on_uncached(planned.value().ns, planned.value().model, cache::Outcome::error, api_of(planned.value()));
  };
  co_await forward(planned.value(), ours, writer, counted ? &usage : nullptr, settle);
}

namespace {

// Where the pipeline's answer lands: set from whichever thread closes the batch.
struct AssignmentWaiter {
  explicit AssignmentWaiter(asio::any_io_executor executor) : ready(executor) {}
  std::mutex mu;
  std::optional<cache::Assignment> assignment;
  AsyncEvent ready;
};

}  // namespace

awaitable<void> ApiHandler::serve_cached(Plan& plan, const http::fields& ours, ResponseWriter& writer) {
  const auto start = std::chrono::steady_clock::now();
  auto executor = co_await asio::this_coro::executor;
  auto waiter = std::make_shared<AssignmentWaiter>(executor);
  pipeline_->submit(std::move(plan.cache_request), [waiter](cache::Assignment assignment) {
    {
      std::lock_guard lock(waiter->mu);
      waiter->assignment = std::move(assignment);
    }
    waiter->ready.notify();
  });
  for (;;) {
    {
      std::lock_guard lock(waiter->mu);
      if (waiter->assignment) break;
    }
    co_await waiter->ready.wait();
  }
  const cache::Assignment& assignment = *waiter->assignment;
  if (assignment.error != cache::AssignError::none) {
    Error error{ErrorKind::internal, assignment.message, {}};
    if (assignment.error == cache::AssignError::not_cached) error.kind = ErrorKind::not_cached;
    if (assignment.error == cache::AssignError::too_many) error = {ErrorKind::bad_request, assignment.message, "X-Reprise-Sample"};
    http::fields headers = ours;
    if (assignment.error == cache::AssignError::store) {
      // The store cannot persist what serving needs (a cursor move: I1), a full disk
      // say: the client may retry shortly; the store recovers by itself.
      error.kind = ErrorKind::cache_unavailable;
      headers.set(http::field::retry_after, "1");
    }
    if (error.kind == ErrorKind::internal) log::error("cache: " + assignment.message);
    co_await send_error(&plan, error, headers, writer);
    if (ledger_) ledger_->on_uncached(plan.ns, plan.model, cache::Outcome::error, api_of(plan));
    co_return;
  }
  const bool record_ids = plan.cache_request.endpoint == cache::Endpoint::responses;
  if (ledger_ || record_ids) {
    plan.serve.on_done = [this, &plan, &assignment, start, record_ids](bool served) {
      if (served && record_ids) {
        for (auto& slot : assignment.slots)
          served_responses_.record(plan.tenant, slot.sample ? slot.sample : std::make_shared<const cache::Sample>(slot.served()));
      }
      if (!ledger_) return;
      if (served)
        ledger_->on_served(plan.ns, plan.model, assignment.slots,
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), api_of(plan));
      else
        ledger_->on_uncached(plan.ns, plan.model, cache::Outcome::error, api_of(plan));
    };
  }
  co_await serve_assignment(assignment, plan.serve, ours, writer);
}

awaitable<void> ApiHandler::serve_engine_direct(Plan& plan, const http::fields& ours, ResponseWriter& writer) {
  const auto start = std::chrono::steady_clock::now();
  const cache::CacheRequest& c = plan.cache_request;
  // The same indices the cache would have given a fresh namespace: the engine's
  // samples are a function of (request, index), so bypassing the cache changes
  // nothing but that the result is not stored.
  const uint64_t first = c.pick == cache::Pick::explicit_range ? c.first : 0;
  const uint32_t size = c.pick == cache::Pick::greedy ? 1 : c.n;
  auto gen = std::make_shared<cache::Generation>(c.canonical, c.endpoint, size, c.stream, nullptr);
  gen->set_origin(c.ns);
  gen->set_first_index(first);
  cache::Assignment assignment;
  for (uint32_t i = 0; i < c.n; ++i) {
    cache::Slot slot;
    slot.gen = gen;
    slot.choice = c.pick == cache::Pick::greedy ? 0 : i;
    slot.created = true;
    slot.claim = std::make_shared<cache::Generation::Claim>(gen);  // this client is its only one
    assignment.slots.push_back(std::move(slot));
  }
  if (ledger_) {
    plan.serve.on_done = [this, &plan, gen, start](bool served) {
      if (!served) {
        ledger_->on_uncached(plan.ns, plan.model, cache::Outcome::error, api_of(plan));
        return;
      }
      cache::Ledger::BypassUsage usage;
      usage.known = true;
      usage.local = true;
      usage.measured_j = gen->samples().empty() ? -1 : 0;
      for (auto& sample : gen->samples()) {
        usage.prompt_tokens = sample.prompt_tokens;
        usage.completion_tokens += sample.completion_tokens;
        usage.measured_j = usage.measured_j < 0 || sample.energy_j < 0 ? -1 : usage.measured_j + sample.energy_j;
      }
      ledger_->on_bypassed(plan.ns, plan.model, usage,
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), api_of(plan));
    };
  }
  engine_backend_->generate(gen);
  co_await serve_assignment(assignment, plan.serve, ours, writer);
}

awaitable<void> ApiHandler::serve_models_list(Plan& plan, const http::fields& ours, ResponseWriter& writer) {
  const std::string engine_id = engine_->info().name;
  if (plan.engine_model) {
    std::string body = engine_model_json(*engine_, plan.model).dump(-1, ' ', false, json::error_handler_t::replace);
    co_await writer.send_json(200, std::move(body), ours);
    co_return;
  }
  json list = {{"object", "list"}, {"data", json::array()}};
  if (plan.upstream) {
    // The upstream's list first; if it cannot be had, the engine's model is still
    // served, so it is still listed (and the failure logged).
    auto sent = co_await plan.upstream->send(plan.request);
    std::string failure;
    if (!sent) {
      failure = sent.error().message;
    } else {
      const unsigned status = sent.value()->status();
      auto body = co_await sent.value()->read_all(plan.upstream->config().max_response_bytes);
      json doc = body ? json::parse(body.value(), nullptr, false) : json();
      if (status / 100 == 2 && doc.is_object() && doc.contains("data") && doc["data"].is_array())
        list = std::move(doc);
      else
        failure = "answered " + std::to_string(status) + " without a model list";
    }
    if (!failure.empty())
      log::warn("GET /v1/models: upstream \"" + plan.upstream->config().name + "\" " + failure + "; listing the engine's model only");
  }
  list["data"].push_back(engine_model_json(*engine_, engine_id));
  std::string body = list.dump(-1, ' ', false, json::error_handler_t::replace);
  co_await writer.send_json(200, std::move(body), ours);
}

namespace {

// The usage of a relayed answer, if it has one, in any dialect's names: OpenAI's
// usage.prompt_tokens / completion_tokens, Responses' and Anthropic's
// usage.input_tokens / output_tokens, Gemini's usageMetadata.promptTokenCount /
// candidatesTokenCount.
void read_usage(const json& doc, cache::Ledger::BypassUsage& usage) {
  if (!doc.is_object()) return;
  for (auto [object, prompt_name, completion_name] :
       {std::tuple{"usage", "prompt_tokens", "completion_tokens"}, std::tuple{"usage", "input_tokens", "output_tokens"},
        std::tuple{"usageMetadata", "promptTokenCount", "candidatesTokenCount"}}) {
    auto it = doc.find(object);
    if (it == doc.end() || !it->is_object()) continue;
    auto prompt = it->find(prompt_name);
    if (prompt == it->end() || !prompt->is_number_unsigned()) continue;
    usage.known = true;
    usage.prompt_tokens = prompt->get<uint64_t>();
    auto completion = it->find(completion_name);
    usage.completion_tokens = completion != it->end() && completion->is_number_unsigned() ? completion->get<uint64_t>() : 0;
    return;
  }
}

// Watches a relayed stream for its usage chunk. Only events that mention "usage"
// with an object are parsed, so a long stream costs a substring search per event;
// an event beyond kMaxEvent ends the watch (the call is then counted without tokens).
class StreamUsageWatch {
 public:
  explicit StreamUsageWatch(cache::Ledger::BypassUsage* usage) : usage_(usage) {}
  void feed(std::string_view bytes) {
    if (!usage_) return;
    parser_.feed(bytes, events_);
    for (auto& event : events_)
      if (event.find("\"usage\":{") != std::string::npos) read_usage(json::parse(event, nullptr, false), *usage_);
    events_.clear();
    if (parser_.buffered() > kMaxEvent) usage_ = nullptr;
  }

 private:
  static constexpr size_t kMaxEvent = 1 << 20;
  cache::Ledger::BypassUsage* usage_;
  format::SseParser parser_;
  std::vector<std::string> events_;
};

}  // namespace

awaitable<void> ApiHandler::forward(Plan& plan, const http::fields& ours, ResponseWriter& writer,
                                   cache::Ledger::BypassUsage* usage, const Settle& settle_once) {
  bool settled = false;
  auto settle = [&](bool relayed) {
    if (!settled) settle_once(relayed);
    settled = true;
  };
  UpstreamClient& upstream = *plan.upstream;
  auto sent = co_await upstream.send(plan.request);
  if (!sent) {
    log::warn(sent.error().message);
    settle(false);
    co_await send_error(&plan, sent.error(), ours, writer);
    co_return;
  }
  UpstreamResponse& response = *sent.value();
  const unsigned status = response.status();
  http::fields headers = relay_headers(response.headers());
  for (auto& field : ours) headers.set(field.name_string(), field.value());

  if (status / 100 == 2 && response.is_event_stream()) {
    http::response_header<> head;
    head.result(status);
    for (auto& field : headers) head.insert(field.name_string(), field.value());
    if (!co_await writer.begin_stream(std::move(head))) {
      settle(true);  // the call was made, and paid for, even if the client is gone
      co_return;
    }
    StreamUsageWatch watch(usage);
    for (;;) {
      auto piece = co_await response.read_some();
      if (!piece) {
        // Headers are gone: the status can no longer say it. Tell SSE clients in
        // the stream (the official SDKs raise on an "error" event), then cut the
        // response short so no client mistakes it for a complete one.
        log::warn(piece.error().message);
        std::string event = "data: " + to_openai_json(piece.error()) + "\n\n";
        settle(false);
        co_await writer.write_chunk(event);
        writer.abort();
        co_return;
      }
      if (!*piece) break;
      watch.feed(**piece);
      if (!co_await writer.write_chunk(**piece)) {  // client gone: drop the upstream
        settle(true);
        co_return;
      }
    }
    settle(true);
    co_await writer.end_stream();
    co_return;
  }

  auto body = co_await response.read_all(upstream.config().max_response_bytes);
  if (!body) {
    log::warn(body.error().message);
    settle(false);
    co_await send_error(&plan, body.error(), ours, writer);
    co_return;
  }
  bool identity = response.headers()[http::field::content_encoding].empty() ||
                  beast::iequals(response.headers()[http::field::content_encoding], "identity");
  if (status / 100 == 2) {
    if (plan.json_endpoint && identity) {
      json doc = json::parse(body.value(), nullptr, false);
      if (doc.is_discarded()) {
        Error error{ErrorKind::upstream_bad_response, "upstream \"" + upstream.config().name + "\" returned malformed JSON", {}};
        log::warn(error.message);
        settle(false);
        co_await send_error(&plan, error, ours, writer);
        co_return;
      }
      if (usage) read_usage(doc, *usage);
    }
  } else if (identity && status >= 400) {
    body.value() = upstream_error_body(status, body.value(), upstream.config().name);
    if (plan.dialect) body.value() = plan.dialect->error_body(status, body.value());
    headers.set(http::field::content_type, "application/json");
  }
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  for (auto& field : headers) res.insert(field.name_string(), field.value());
  res.body() = std::move(body.value());
  settle(status / 100 == 2);
  co_await writer.send(std::move(res));
}

}  // namespace reprise
