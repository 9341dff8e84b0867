#include "cache/canonical.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>

namespace reprise::cache {

namespace {

using nlohmann::json;

// Deeper than any real request (JSON schemas in tools nest a dozen levels), shallow
// enough that the recursive walks below and nlohmann's dump() cannot exhaust the stack.
constexpr int kMaxDepth = 128;
constexpr int64_t kMaxN = 128;   // the API's own limit on "n"

CanonicalError fail(std::string message, std::string param = {}) {
  return CanonicalError{std::move(message), std::move(param)};
}

// --- Parsing ----------------------------------------------------------------------

// Thrown from inside the parser callback (the cheapest way to stop nlohmann mid-parse)
// and always caught in parse_strict.
struct DuplicateKey {
  std::string key;
};
struct TooDeep {};

// nlohmann keeps the last of two equal keys without a word, but two JSON parsers may
// disagree on which one wins, so a request that says two things is refused. The
// callback sees every key of every object, with a set per open object.
json parse_with_checks(std::string_view raw) {
  std::vector<std::set<std::string>> open_objects;
  auto check = [&open_objects](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        if (depth >= kMaxDepth) throw TooDeep{};
        open_objects.emplace_back();
        break;
      case json::parse_event_t::array_start:
        if (depth >= kMaxDepth) throw TooDeep{};
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(key).second) throw DuplicateKey{key};
        break;
      }
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        break;
      default:
        break;
    }
    return true;
  };
  // The lexer rejects ill-formed UTF-8 and unpaired surrogate escapes by itself.
  return json::parse(raw.begin(), raw.end(), check);
}

// nlohmann's messages start with "[json.exception.parse_error.101] ": an internal id
// that means nothing to an API client.
std::string without_exception_id(const char* what) {
  std::string_view text(what);
  if (auto end = text.find("] "); !text.empty() && text.front() == '[' && end != text.npos)
    text.remove_prefix(end + 2);
  return std::string(text);
}

Expected<json, CanonicalError> parse_strict(std::string_view raw) {
  try {
    return parse_with_checks(raw);
  } catch (const DuplicateKey& e) {
    return fail("duplicate key \"" + e.key + "\" in request body", e.key);
  } catch (const TooDeep&) {
    return fail("request body nests deeper than " + std::to_string(kMaxDepth) + " levels");
  } catch (const json::exception& e) {
    return fail("request body is not valid JSON: " + without_exception_id(e.what()));
  }
}

// --- Numbers ----------------------------------------------------------------------

// One representation per numeric value, so that 1, 1.0, 1e0 and -0.0 vs 0 hash alike:
// an integral value becomes an int64 (or a uint64 beyond int64's range, so that every
// integral double has exactly one form); anything else stays a double, which nlohmann
// prints as the shortest text that reads back to the same double.
json normalised_number(const json& number) {
  if (number.is_number_unsigned()) {
    const auto u = number.get<uint64_t>();
    return u <= static_cast<uint64_t>(INT64_MAX) ? json(static_cast<int64_t>(u)) : number;
  }
  if (number.is_number_integer()) return number;
  const double d = number.get<double>();
  if (std::trunc(d) != d) return number;   // fractional (JSON has no NaN or infinity)
  if (d >= -0x1p63 && d < 0x1p63) return json(static_cast<int64_t>(d));
  if (d >= 0 && d < 0x1p64) return json(static_cast<uint64_t>(d));
  return number;
}

void normalise_numbers(json& value) {
  if (value.is_structured()) {
    for (auto& child : value) normalise_numbers(child);
  } else if (value.is_number()) {
    value = normalised_number(value);
  }
}

// --- Fields taken out of the key ----------------------------------------------------

// Removes a top-level field and returns it; null counts as absent, as in the API.
std::optional<json> take(json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end()) return std::nullopt;
  json value = std::move(*it);
  body.erase(it);
  if (value.is_null()) return std::nullopt;
  return value;
}

std::optional<CanonicalError> take_n(json& body, CanonicalRequest& out) {
  auto n = take(body, "n");
  if (!n) return std::nullopt;
  // After normalisation an unsigned is above INT64_MAX, so out of range as well.
  const bool in_range = n->is_number_integer() && !n->is_number_unsigned() &&
                        n->get<int64_t>() >= 1 && n->get<int64_t>() <= kMaxN;
  if (!in_range) return fail("n must be an integer from 1 to " + std::to_string(kMaxN), "n");
  out.n = static_cast<int>(n->get<int64_t>());
  return std::nullopt;
}

std::optional<CanonicalError> take_streaming(json& body, CanonicalRequest& out) {
  if (auto stream = take(body, "stream")) {
    if (!stream->is_boolean()) return fail("stream must be a boolean", "stream");
    out.stream = stream->get<bool>();
  }
  auto options = take(body, "stream_options");
  if (!options) return std::nullopt;
  if (!options->is_object()) return fail("stream_options must be an object", "stream_options");
  auto usage = options->find("include_usage");
  if (usage == options->end() || usage->is_null()) return std::nullopt;
  if (!usage->is_boolean())
    return fail("stream_options.include_usage must be a boolean", "stream_options");
  out.include_usage = usage->get<bool>();
  return std::nullopt;
}

// Samples are stored as floats whatever the client asked for, and served in either
// format, so the format is not part of the key.
std::optional<CanonicalError> take_encoding_format(json& body, CanonicalRequest& out) {
  out.encoding_format = "float";
  auto format = take(body, "encoding_format");
  if (!format) return std::nullopt;
  if (!format->is_string() || (*format != "float" && *format != "base64"))
    return fail("encoding_format must be \"float\" or \"base64\"", "encoding_format");
  out.encoding_format = format->get<std::string>();
  return std::nullopt;
}

// --- Fields that stay in the key ---------------------------------------------------

std::optional<CanonicalError> read_model(const json& body, CanonicalRequest& out) {
  auto model = body.find("model");
  if (model == body.end() || !model->is_string() || model->get_ref<const std::string&>().empty())
    return fail("model must be a non-empty string", "model");
  out.model = model->get<std::string>();
  return std::nullopt;
}

// Read before the default is filled in: the greedy rule needs "explicit 0".
std::optional<CanonicalError> read_temperature(const json& body, CanonicalRequest& out) {
  auto temperature = body.find("temperature");
  if (temperature == body.end() || temperature->is_null()) return std::nullopt;
  if (!temperature->is_number()) return fail("temperature must be a number", "temperature");
  out.temperature = temperature->get<double>();
  return std::nullopt;
}

// Absent (or null) means the API's default, so both get one key. Only the defaults the
// API documents as a value: an absent max_tokens, seed or stop means something no
// value says, so those stay absent.
void apply_defaults(Endpoint endpoint, json& body, std::vector<std::string>& defaulted) {
  if (endpoint == Endpoint::embeddings) return;
  auto fill = [&](const char* name, json value) {
    auto it = body.find(name);
    if (it != body.end() && !it->is_null()) return;
    body[name] = std::move(value);
    defaulted.emplace_back(name);
  };
  fill("temperature", 1);
  fill("top_p", 1);
  fill("presence_penalty", 0);
  fill("frequency_penalty", 0);
  if (endpoint == Endpoint::chat_completions) fill("logprobs", false);
  if (endpoint == Endpoint::completions) fill("echo", false);
}

// Takes out every field that does not shape a sample, validating what the proxy reads.
std::optional<CanonicalError> extract_fields(Endpoint endpoint, json& body,
                                             CanonicalRequest& out) {
  if (auto error = take_n(body, out)) return error;
  if (auto error = take_streaming(body, out)) return error;
  // An end-user id for abuse tracking: never shapes the output.
  if (auto user = take(body, "user"); user && !user->is_string()) return fail("user must be a string", "user");
  if (endpoint == Endpoint::embeddings) {
    if (auto error = take_encoding_format(body, out)) return error;
  }
  if (auto error = read_model(body, out)) return error;
  return read_temperature(body, out);
}

Expected<CanonicalRequest, CanonicalError> build(Endpoint endpoint, std::string_view raw) {
  auto parsed = parse_strict(raw);
  if (!parsed) return parsed.error();
  CanonicalRequest out;
  out.body = std::move(parsed.value());
  if (!out.body.is_object()) return fail("request body must be a JSON object");
  normalise_numbers(out.body);
  if (auto error = extract_fields(endpoint, out.body, out)) return *error;
  apply_defaults(endpoint, out.body, out.defaulted);
  seal(out);
  return out;
}

// --- Digests -----------------------------------------------------------------------

// A digest that silently came out as zeros would merge tenants or pass a corrupt
// sample; there is no sane way on, so stop (only a broken OpenSSL gets here).
[[noreturn]] void crypto_failure(const char* what) {
  std::fprintf(stderr, "reprise: %s failed in OpenSSL\n", what);
  std::abort();
}

// OpenSSL may treat a null pointer as "no input given" even with length 0.
const unsigned char* bytes_of(std::string_view s) {
  static const unsigned char empty = 0;
  return s.empty() ? &empty : reinterpret_cast<const unsigned char*>(s.data());
}

void append_u64_le(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

}  // namespace

std::string_view endpoint_name(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::chat_completions: return "chat.completions";
    case Endpoint::completions: return "completions";
    case Endpoint::embeddings: return "embeddings";
    case Endpoint::responses: return "responses";
    case Endpoint::messages: return "messages";
    case Endpoint::gemini: return "gemini.generate_content";
  }
  return "unknown";
}

std::optional<Endpoint> endpoint_named(std::string_view name) {
  for (Endpoint e : kEndpoints)
    if (endpoint_name(e) == name) return e;
  return std::nullopt;
}

namespace {

// Written once at start-up (register_dialects), before any request thread runs;
// read-only afterwards, so no lock.
Canonicalizer& registered(Endpoint endpoint) {
  static Canonicalizer table[std::size(kEndpoints)];
  return table[static_cast<size_t>(endpoint)];
}

bool built_in(Endpoint endpoint) {
  return endpoint == Endpoint::chat_completions || endpoint == Endpoint::completions ||
         endpoint == Endpoint::embeddings;
}

}  // namespace

void register_canonicalizer(Endpoint endpoint, Canonicalizer canonicalizer) {
  registered(endpoint) = std::move(canonicalizer);
}

void seal(CanonicalRequest& request) {
  // Sorted keys (std::map), no whitespace, UTF-8 as is: one text per body.
  request.text = request.body.dump(-1, ' ', false, json::error_handler_t::strict);
  request.sha256 = sha256_of(request.text);
}

Expected<json, CanonicalError> parse_canonical_json(std::string_view raw) {
  auto parsed = parse_strict(raw);
  if (!parsed) return parsed.error();
  normalise_numbers(parsed.value());
  return parsed;
}

Expected<CanonicalRequest, CanonicalError> canonicalize(Endpoint endpoint,
                                                        std::string_view raw_body, std::string_view context) {
  try {
    if (!built_in(endpoint)) {
      const Canonicalizer& canonicalizer = registered(endpoint);
      if (!canonicalizer) return fail(std::string("no dialect is registered for ") + std::string(endpoint_name(endpoint)));
      return canonicalizer(raw_body, context);
    }
    return build(endpoint, raw_body);
  } catch (const std::exception& e) {
    // Only allocation failures or a bug get here; a 400 beats a dead worker.
    return fail(std::string("request body could not be processed: ") + e.what());
  }
}

CanonicalRequest with_query(const CanonicalRequest& request, std::string query) {
  CanonicalRequest out = request;
  if (query.empty()) return out;
  out.text += "\n?";
  out.text += query;
  out.query = std::move(query);
  out.sha256 = sha256_of(out.text);
  return out;
}

Expected<CanonicalRequest, CanonicalError> canonicalize_text(Endpoint endpoint, std::string_view text) {
  const size_t line = text.find('\n');
  auto body = canonicalize(endpoint, text.substr(0, line));
  if (!body || line == std::string_view::npos) return body;
  if (text.substr(line, 2) != "\n?") return fail("a canonical request has one line, or a query line after it");
  return with_query(body.value(), std::string(text.substr(line + 2)));
}

nlohmann::json upstream_body(const CanonicalRequest& request, int n, bool stream) {
  json body = request.body.is_object() ? request.body : json::object();
  for (const auto& name : request.defaulted) body.erase(name);
  if (n > 1) body["n"] = n;
  if (stream) {
    body["stream"] = true;
    body["stream_options"] = {{"include_usage", true}};
  }
  return body;
}

TenantId tenant_of(std::string_view server_secret, std::string_view api_key) {
  TenantId tenant;
  unsigned int size = 0;
  const auto* digest =
      HMAC(EVP_sha256(), bytes_of(server_secret), static_cast<int>(server_secret.size()),
           bytes_of(api_key), api_key.size(), tenant.bytes.data(), &size);
  if (digest == nullptr || size != tenant.bytes.size()) crypto_failure("HMAC-SHA256");
  return tenant;
}

Sha256 sha256_of(std::string_view data) {
  Sha256 digest{};
  unsigned int size = 0;
  if (EVP_Digest(bytes_of(data), data.size(), digest.data(), &size, EVP_sha256(), nullptr) != 1 ||
      size != digest.size())
    crypto_failure("SHA-256");
  return digest;
}

CacheKey cache_key(const TenantId& tenant, Endpoint endpoint, const CanonicalRequest& request) {
  // tenant (32 bytes) | u64 LE length | endpoint name | '\n' | canonical text.
  // Fixed size, then length-prefixed, then the rest: no two inputs frame alike.
  const std::string_view name = endpoint_name(endpoint);
  std::string framed;
  framed.reserve(tenant.bytes.size() + 8 + name.size() + 1 + request.text.size());
  framed.append(reinterpret_cast<const char*>(tenant.bytes.data()), tenant.bytes.size());
  append_u64_le(framed, name.size());
  framed.append(name);
  framed.push_back('\n');
  framed.append(request.text);

  XXH128_canonical_t canonical;   // big-endian bytes: the same key on every machine
  XXH128_canonicalFromHash(&canonical, XXH3_128bits(framed.data(), framed.size()));
  CacheKey key;
  std::memcpy(key.bytes.data(), canonical.digest, key.bytes.size());
  return key;
}

}  // namespace reprise::cache
