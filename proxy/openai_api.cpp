#include "proxy/openai_api.hpp"

#include <nlohmann/json.hpp>
#include <set>

#include "proxy/log.hpp"

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

// A non-2xx upstream body is relayed as is when it already has OpenAI's error shape;
// anything else (an HTML page from a load balancer, say) is wrapped into it.
std::string openai_shaped_error(unsigned status, const std::string& body, const std::string& upstream) {
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object()) return body;
  std::string snippet = body.substr(0, 200);
  Error error{ErrorKind::upstream_status,
              "upstream \"" + upstream + "\" answered HTTP " + std::to_string(status) +
                  (snippet.empty() ? std::string() : ": " + snippet),
              {}, status};
  return to_openai_json(error);
}

}  // namespace

http::fields upstream_headers(const http::fields& client, const UpstreamConfig& upstream) {
  http::fields out;
  HopByHop hop_by_hop(client);
  bool has_auth = false;
  for (auto& field : client) {
    auto name = field.name_string();
    if (hop_by_hop.contains(name)) continue;
    switch (field.name()) {
      case http::field::host:
      case http::field::content_length:
      case http::field::expect:
      case http::field::accept_encoding: continue;
      case http::field::authorization: has_auth = true; break;
      default: break;
    }
    if (name.size() >= 10 && beast::iequals(name.substr(0, 10), "x-reprise-")) continue;
    out.insert(name, field.value());
  }
  if (!has_auth && !upstream.api_key.empty()) out.set(http::field::authorization, "Bearer " + upstream.api_key);
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

OpenAiApi::OpenAiApi(const Config& config, std::vector<std::unique_ptr<UpstreamClient>> upstreams)
    : config_(config), upstreams_(std::move(upstreams)) {}

UpstreamClient* OpenAiApi::upstream_named(std::string_view name) const {
  for (auto& up : upstreams_)
    if (up->config().name == name) return up.get();
  return nullptr;
}

Result<OpenAiApi::Plan> OpenAiApi::plan(const Request& req, http::fields& ours) const {
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

  const std::string what = std::string(req.method_string()) + " " + std::string(req.target());
  switch (route.endpoint) {
    case Endpoint::not_found:
      return Error{ErrorKind::not_found, "unknown route " + what, {}};
    case Endpoint::chat_completions:
    case Endpoint::completions:
    case Endpoint::embeddings:
      if (req.method() != http::verb::post) return Error{ErrorKind::method_not_allowed, "use POST, not " + what, {}};
      break;
    case Endpoint::models_list:
    case Endpoint::model_get:
      if (req.method() != http::verb::get) return Error{ErrorKind::method_not_allowed, "use GET, not " + what, {}};
      break;
    case Endpoint::passthrough: break;
  }

  // Until the cache lands (issue 3) nothing is ever cached, so only-cached always misses.
  if (cache_mode == "only-cached")
    return Error{ErrorKind::not_cached, "X-Reprise-Cache: only-cached and the answer is not in the cache", {}};
  ours.set("X-Reprise-Cache", "bypass");

  Plan plan;
  plan.request.method = req.method();
  plan.request.target = route.upstream_target;

  if (route.endpoint == Endpoint::models_list || route.endpoint == Endpoint::passthrough) {
    // Not about one model: the first [[upstreams]] entry answers.
    if (upstreams_.empty()) return Error{ErrorKind::not_found, "no [[upstreams]] configured to relay " + what + " to", {}};
    plan.upstream = upstreams_.front().get();
    plan.request.headers = upstream_headers(req.base(), plan.upstream->config());
    plan.request.body = req.body();
    plan.json_endpoint = route.endpoint == Endpoint::models_list;
    return plan;
  }

  std::string model = route.model_id;
  json body;
  if (route.endpoint != Endpoint::model_get) {
    body = json::parse(req.body(), nullptr, false);
    if (body.is_discarded() || !body.is_object())
      return Error{ErrorKind::invalid_json, "the request body must be a JSON object", {}};
    auto it = body.find("model");
    if (it == body.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
      return Error{ErrorKind::bad_request, "you must provide a model parameter", "model"};
    model = it->get<std::string>();
  }
  const ModelRoute* backend = route_model(config_.models, model);
  if (!backend) return Error{ErrorKind::not_found, "no [[models]] route matches model \"" + model + "\"", "model"};
  if (backend->backend == "engine")
    return Error{ErrorKind::backend_unavailable, "model \"" + model + "\" routes to the in-process engine, which has no model loaded", "model"};
  plan.upstream = upstream_named(backend->backend);
  if (!plan.upstream) return Error{ErrorKind::internal, "route to unknown upstream " + backend->backend, {}};

  plan.request.headers = upstream_headers(req.base(), plan.upstream->config());
  plan.json_endpoint = true;
  if (route.endpoint != Endpoint::model_get) {
    // The upstream gets the body as the proxy understood it, re-serialised, never
    // the client's raw bytes (DESIGN.md section 1).
    plan.request.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    plan.request.headers.set(http::field::content_type, "application/json");
  }
  return plan;
}

awaitable<void> OpenAiApi::handle(Request& req, ResponseWriter& writer) {
  http::fields ours;
  auto planned = plan(req, ours);
  if (!planned) {
    co_await writer.send_error(planned.error(), ours);
    co_return;
  }
  co_await forward(planned.value(), ours, writer);
}

awaitable<void> OpenAiApi::forward(Plan& plan, const http::fields& ours, ResponseWriter& writer) {
  UpstreamClient& upstream = *plan.upstream;
  auto sent = co_await upstream.send(plan.request);
  if (!sent) {
    log::warn(sent.error().message);
    co_await writer.send_error(sent.error(), ours);
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
    if (!co_await writer.begin_stream(std::move(head))) co_return;
    for (;;) {
      auto piece = co_await response.read_some();
      if (!piece) {
        // Headers are gone: the status can no longer say it. Tell SSE clients in
        // the stream (the official SDKs raise on an "error" event), then cut the
        // response short so no client mistakes it for a complete one.
        log::warn(piece.error().message);
        std::string event = "data: " + to_openai_json(piece.error()) + "\n\n";
        co_await writer.write_chunk(event);
        writer.abort();
        co_return;
      }
      if (!*piece) break;
      if (!co_await writer.write_chunk(**piece)) co_return;  // client gone: drop the upstream
    }
    co_await writer.end_stream();
    co_return;
  }

  auto body = co_await response.read_all(upstream.config().max_response_bytes);
  if (!body) {
    log::warn(body.error().message);
    co_await writer.send_error(body.error(), ours);
    co_return;
  }
  bool identity = response.headers()[http::field::content_encoding].empty() ||
                  beast::iequals(response.headers()[http::field::content_encoding], "identity");
  if (status / 100 == 2) {
    if (plan.json_endpoint && identity && json::parse(body.value(), nullptr, false).is_discarded()) {
      Error error{ErrorKind::upstream_bad_response, "upstream \"" + upstream.config().name + "\" returned malformed JSON", {}};
      log::warn(error.message);
      co_await writer.send_error(error, ours);
      co_return;
    }
  } else if (identity && status >= 400) {
    body.value() = openai_shaped_error(status, body.value(), upstream.config().name);
    headers.set(http::field::content_type, "application/json");
  }
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  for (auto& field : headers) res.insert(field.name_string(), field.value());
  res.body() = std::move(body.value());
  co_await writer.send(std::move(res));
}

}  // namespace reprise
