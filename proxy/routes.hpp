#pragma once
// Which OpenAI endpoint a request is for, in which namespace, and which backend
// serves its model. Pure functions: no I/O, unit-tested on their own.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/glob.hpp"
#include "proxy/config.hpp"

namespace reprise {

enum class Endpoint {
  chat_completions,  // POST /v1/chat/completions
  completions,       // POST /v1/completions
  embeddings,        // POST /v1/embeddings
  models_list,       // GET  /v1/models
  model_get,         // GET  /v1/models/{id}
  responses,         // POST /v1/responses
  responses_get,     // GET  /v1/responses/{id}: answered for ids Reprise served
  messages,          // POST /v1/messages (Anthropic; ?beta=true too)
  gemini,            // POST /v1beta/models/{model}:generateContent | :streamGenerateContent
  passthrough,       // any other /v1/* or /v1beta/*: relayed, never cached
  not_found,         // not under /v1 or /v1beta
};

struct Route {
  Endpoint endpoint = Endpoint::not_found;
  std::string ns = "default";     // from /ns/{namespace}/... or X-Reprise-Namespace
  bool ns_from_path = false;
  std::string upstream_target;    // what follows /v1 (or /v1beta), query included: "/chat/completions"
  std::string model_id;           // for model_get and gemini, percent-decoded; responses_get: the id
  bool gemini_api = false;        // under /v1beta (Gemini's paths): relayed to a gemini upstream
  bool path_stream = false;       // gemini: :streamGenerateContent
  std::string query;              // the target's query, without its '?' ("api-version=2024-10-21")
};

// Parses a request target. An invalid namespace is an Error (400).
Result<Route> parse_route(std::string_view target);

// Query parameters whose value is a credential (DESIGN.md section 9: Gemini's `key`).
// They name the tenant; they never enter a key, a log line or an error message.
bool is_credential_param(std::string_view name);

// The values of the query parameters named `name` (compared percent-decoded, as a
// server reads them), raw, in order.
std::vector<std::string_view> query_values(std::string_view query, std::string_view name);

// The part of a query that enters the cache key: every parameter but the credentials,
// stably sorted by name (so "b=1&a=2" and "a=2&b=1" are one key, while repeated names
// keep their order), joined by '&'; "" for none. Parameters such as Azure's
// api-version shape the answer, so they stay in.
std::string key_query(std::string_view query);

// The target with the value of every credential parameter replaced by "REDACTED": for
// logs and error messages.
std::string redacted_target(std::string_view target);

// Namespaces are names, not paths: [A-Za-z0-9._:-], 1..128 characters.
bool valid_namespace(std::string_view ns);


// The backend for a model: the first [[models]] entry whose glob matches.
const ModelRoute* route_model(const std::vector<ModelRoute>& routes, std::string_view model);

}  // namespace reprise
