#pragma once
// The canonical form of a request and the identities derived from it (DESIGN.md
// section 1, "Key" and "Tenant"):
//   canonical = parsed body, keys sorted, numbers normalised, API defaults made
//               explicit, minus the fields that do not shape a sample
//   tenant    = HMAC-SHA256(server secret, API key)
//   key       = XXH3-128(tenant, endpoint, canonical text)
// Two requests that the API would answer from the same distribution get the same
// canonical text; anything that may change the output stays in it.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache/expected.hpp"
#include "cache/keys.hpp"

namespace reprise::cache {

// One per API shape whose requests are cached (the dialects of DESIGN.md section 9).
enum class Endpoint { chat_completions, completions, embeddings, responses, messages, gemini };

// "chat.completions", "completions", "embeddings", "responses", "messages",
// "gemini.generate_content": part of the key, so never change them.
std::string_view endpoint_name(Endpoint endpoint);
// The endpoint of a name endpoint_name gives; nullopt for others.
std::optional<Endpoint> endpoint_named(std::string_view name);
// Every endpoint, in declaration order.
inline constexpr Endpoint kEndpoints[] = {Endpoint::chat_completions, Endpoint::completions, Endpoint::embeddings,
                                          Endpoint::responses,        Endpoint::messages,    Endpoint::gemini};

struct CanonicalRequest {
  // The canonical body: what is hashed, and (see upstream_body) what is forwarded.
  nlohmann::json body;
  std::string text;    // body serialised canonically: the exact bytes hashed
  Sha256 sha256{};     // SHA-256 of `text` (no tenant, no secret): checked on every
                       // hit, and the engine's seed basis
  // Fields taken out of the key, read from the request for the proxy's use.
  int n = 1;                           // "n", 1..128
  bool stream = false;                 // "stream"
  bool include_usage = false;          // "stream_options.include_usage"
  std::optional<double> temperature;   // as given, before defaults (greedy rule)
  std::string model;                   // "model", non-empty
  std::string encoding_format;         // embeddings only: "float" or "base64"
  // Top-level fields that the client left out (or sent as null) and that `body`
  // holds with the API's default. They are in the key, but upstream_body leaves
  // them out again: some models refuse a parameter even at its default value.
  std::vector<std::string> defaulted;
  // What shapes the answer from outside the body: the query parameters of the target
  // the client called (Azure's api-version), as the proxy reduced them (no
  // credentials, sorted); empty for none. Not forwarded from here (the proxy sends the
  // client's own query), but in `text`, after the body on a line of its own, so it is in
  // the key, the SHA-256 and the request record that export writes.
  std::string query;
  // The body to forward upstream when it is not `body` (a dialect whose key leaves
  // out fields the upstream must still see byte-stable: Anthropic's metadata,
  // cache_control, configured ignore paths); null: forward from `body`.
  nlohmann::json forward;
};

// A request that cannot be canonicalised: the proxy answers 400 with it.
struct CanonicalError {
  std::string message;
  std::string param;   // the offending request parameter, or empty
};

// Parses the raw request body and builds its canonical form. Never throws.
// `context`: what shapes the answer from outside the body, in the form the endpoint's
// dialect defines (proxy/dialect.hpp, key_context); "" for none. The OpenAI endpoints
// are built in; the others dispatch to the function their dialect registered (a 400
// when none is registered).
Expected<CanonicalRequest, CanonicalError> canonicalize(Endpoint endpoint,
                                                        std::string_view raw_body,
                                                        std::string_view context = {});

// How a dialect outside the built-in OpenAI ones makes its canonical form (see
// canonicalize). Registered once at start-up, before any request is read.
using Canonicalizer = std::function<Expected<CanonicalRequest, CanonicalError>(std::string_view raw_body,
                                                                              std::string_view context)>;
void register_canonicalizer(Endpoint endpoint, Canonicalizer canonicalizer);

// The canonical text of a body (sorted keys, no whitespace, UTF-8 as is) and its
// SHA-256 into request.text / request.sha256: what every dialect's canonicalize ends with.
void seal(CanonicalRequest& request);

// Parses JSON strictly (duplicate keys and invalid UTF-8 refused) with numbers
// normalised (integral floats as integers), as the built-in endpoints do.
Expected<nlohmann::json, CanonicalError> parse_canonical_json(std::string_view raw);

// `request` for a target whose query is `query` (see CanonicalRequest::query): the same
// body, `text` with "\n?" + query appended (a canonical body has no raw newline, so the
// two never blur) and its SHA-256 again. An empty query changes nothing, so requests
// without one keep the keys they always had.
CanonicalRequest with_query(const CanonicalRequest& request, std::string query);

// Reads back a canonical text as with_query made it (what an export file holds): the
// body canonicalised, then its query line, if any, put back.
Expected<CanonicalRequest, CanonicalError> canonicalize_text(Endpoint endpoint, std::string_view text);

// The body forwarded upstream for a generation of `n` samples: `body` without the
// defaulted fields, plus "n" when n > 1, plus "stream": true and
// "stream_options": {"include_usage": true} when streaming upstream (usage is
// always asked for: every stored sample keeps its usage, whatever the client wanted).
nlohmann::json upstream_body(const CanonicalRequest& request, int n, bool stream);

// HMAC-SHA256(server_secret, api_key).
TenantId tenant_of(std::string_view server_secret, std::string_view api_key);

// XXH3-128 over the tenant's 32 bytes, the length-prefixed endpoint name and the
// canonical text. Persisted in the store: changing the framing orphans every entry.
CacheKey cache_key(const TenantId& tenant, Endpoint endpoint, const CanonicalRequest& request);

// SHA-256 of arbitrary bytes (what CanonicalRequest::sha256 holds for its text).
Sha256 sha256_of(std::string_view data);

}  // namespace reprise::cache
