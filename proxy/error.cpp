#include "proxy/error.hpp"

#include "cache/generation.hpp"

#include <nlohmann/json.hpp>

namespace reprise {

unsigned to_http_status(const Error& error) {
  switch (error.kind) {
    case ErrorKind::bad_request: return 400;
    case ErrorKind::context_length_exceeded: return 400;
    case ErrorKind::invalid_json: return 400;
    case ErrorKind::unauthorized: return 401;
    case ErrorKind::not_found: return 404;
    case ErrorKind::method_not_allowed: return 405;
    case ErrorKind::payload_too_large: return 413;
    case ErrorKind::header_too_large: return 431;
    case ErrorKind::backend_unavailable: return 503;
    case ErrorKind::overloaded: return 503;
    case ErrorKind::cache_unavailable: return 503;
    case ErrorKind::upstream_unreachable: return 502;
    case ErrorKind::upstream_bad_response: return 502;
    case ErrorKind::upstream_timeout: return 504;
    case ErrorKind::not_cached: return 504;
    case ErrorKind::upstream_status: return error.upstream_status >= 400 && error.upstream_status < 600 ? error.upstream_status : 502;
    case ErrorKind::internal: return 500;
  }
  return 500;
}

// The "type" values follow OpenAI's: clients (and the official SDKs) branch on them.
std::string_view openai_error_type(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::bad_request:
    case ErrorKind::context_length_exceeded:
    case ErrorKind::invalid_json:
    case ErrorKind::not_found:
    case ErrorKind::method_not_allowed:
    case ErrorKind::payload_too_large:
    case ErrorKind::header_too_large:
    case ErrorKind::not_cached: return "invalid_request_error";
    case ErrorKind::unauthorized: return "authentication_error";
    case ErrorKind::backend_unavailable:
    case ErrorKind::overloaded:
    case ErrorKind::cache_unavailable: return "service_unavailable";
    case ErrorKind::upstream_unreachable:
    case ErrorKind::upstream_bad_response:
    case ErrorKind::upstream_status:
    case ErrorKind::upstream_timeout: return "upstream_error";
    case ErrorKind::internal: return "server_error";
  }
  return "server_error";
}

std::string_view openai_error_code(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::bad_request: return "bad_request";
    case ErrorKind::context_length_exceeded: return "context_length_exceeded";
    case ErrorKind::invalid_json: return "invalid_json";
    case ErrorKind::unauthorized: return "invalid_token";
    case ErrorKind::not_found: return "not_found";
    case ErrorKind::method_not_allowed: return "method_not_allowed";
    case ErrorKind::payload_too_large: return "payload_too_large";
    case ErrorKind::header_too_large: return "header_too_large";
    case ErrorKind::backend_unavailable: return "backend_unavailable";
    case ErrorKind::overloaded: return "overloaded";
    case ErrorKind::cache_unavailable: return "cache_unavailable";
    case ErrorKind::upstream_unreachable: return "upstream_unreachable";
    case ErrorKind::upstream_bad_response: return "upstream_bad_response";
    case ErrorKind::upstream_timeout: return "upstream_timeout";
    case ErrorKind::upstream_status: return "upstream_error";
    case ErrorKind::not_cached: return "not_cached";
    case ErrorKind::internal: return "internal_error";
  }
  return "internal_error";
}

std::string to_openai_json(const Error& error) {
  nlohmann::ordered_json body = {
      {"error",
       {{"message", error.message},
        {"type", openai_error_type(error.kind)},
        {"param", error.param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(error.param)},
        {"code", openai_error_code(error.kind)}}}};
  // Replace invalid UTF-8 (e.g. echoed from a bad request) instead of throwing.
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

cache::GenerationError to_generation_error(const Error& error) {
  return {to_http_status(error), to_openai_json(error), {}};
}

std::string upstream_error_body(unsigned status, const std::string& body, const std::string& upstream) {
  auto parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object()) return body;
  std::string snippet = body.substr(0, 200);
  Error error{ErrorKind::upstream_status,
              "upstream \"" + upstream + "\" answered HTTP " + std::to_string(status) +
                  (snippet.empty() ? std::string() : ": " + snippet),
              {}, status};
  return to_openai_json(error);
}

}  // namespace reprise
