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
  passthrough,       // any other /v1/*: relayed, never cached
  not_found,         // not under /v1
};

struct Route {
  Endpoint endpoint = Endpoint::not_found;
  std::string ns = "default";     // from /ns/{namespace}/... or X-Reprise-Namespace
  bool ns_from_path = false;
  std::string upstream_target;    // what follows /v1, query included: "/chat/completions"
  std::string model_id;           // for model_get, percent-decoded
};

// Parses a request target. An invalid namespace is an Error (400).
Result<Route> parse_route(std::string_view target);

// Namespaces are names, not paths: [A-Za-z0-9._:-], 1..128 characters.
bool valid_namespace(std::string_view ns);


// The backend for a model: the first [[models]] entry whose glob matches.
const ModelRoute* route_model(const std::vector<ModelRoute>& routes, std::string_view model);

}  // namespace reprise
