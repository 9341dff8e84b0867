#pragma once
// The documented request fields of the cached endpoints (chat completions, legacy
// completions, embeddings) checked against the types and ranges the OpenAI API
// accepts, so that a request the API would refuse is answered 400 here, with `param`
// naming the field, before anything reaches the cache or an upstream; on the cached
// path and on the relayed one (X-Reprise-Cache: bypass) alike. Fields the table does
// not know are let through: upstreams and newer API versions add their own.
#include <optional>

#include <nlohmann/json.hpp>

#include "proxy/error.hpp"
#include "proxy/routes.hpp"

namespace reprise {

// `body` is the parsed request (or its canonical form: the fields canonicalisation
// takes out are then absent, and the defaults it fills in are valid). A null field is
// an absent one, as in the API. Only chat_completions, completions and embeddings
// have a table; any other endpoint passes.
std::optional<Error> validate_request(Endpoint endpoint, const nlohmann::json& body);

}  // namespace reprise
