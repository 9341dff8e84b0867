#pragma once
// Errors on the data path. Nothing on the data path throws: functions return a
// Result<T>, and exactly one place (to_http_status / to_openai_json below) turns an
// Error into an HTTP status and the OpenAI error body
//   {"error":{"message":...,"type":...,"param":...,"code":...}}.
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "cache/expected.hpp"

namespace reprise::cache {
struct GenerationError;
}

namespace reprise {

enum class ErrorKind {
  bad_request,           // 400: malformed HTTP framing, bad parameter
  context_length_exceeded, // 400: the prompt does not fit the engine's context
  invalid_json,          // 400: body is not the JSON object the endpoint wants
  unauthorized,          // 401: admin token missing or wrong
  not_found,             // 404: unknown route, unknown model
  method_not_allowed,    // 405
  payload_too_large,     // 413: body over [server] max_body_bytes
  header_too_large,      // 431: header over [server] max_header_bytes
  backend_unavailable,   // 503: the model routes to a backend that is not loaded
  overloaded,            // 503: connection cap reached, or draining
  cache_unavailable,     // 503: the cache store cannot take the write a request needs
                         //      (a full disk, say); sent with Retry-After
  upstream_unreachable,  // 502: connect, TLS or transport failure
  upstream_bad_response, // 502: upstream answered something that is not HTTP/OpenAI
  upstream_timeout,      // 504: connect, first-byte, idle or total timeout
  not_cached,            // 504: X-Reprise-Cache: only-cached, and the answer is not cached
  upstream_status,       // the upstream's own 4xx/5xx, whose body was not OpenAI-shaped
  internal,              // 500: a bug; never expected
};

struct Error {
  ErrorKind kind = ErrorKind::internal;
  std::string message;
  std::string param;  // the request field at fault, if any
  unsigned upstream_status = 0;  // for ErrorKind::upstream_status
};

// The single mapping from an error to what the client sees.
unsigned to_http_status(const Error& error);
std::string_view openai_error_type(ErrorKind kind);
std::string_view openai_error_code(ErrorKind kind);
std::string to_openai_json(const Error& error);

// The same, for the clients waiting on a failed generation (both backends use it).
cache::GenerationError to_generation_error(const Error& error);

// An upstream's non-2xx body for the client: relayed as is when it already has
// OpenAI's error shape; anything else (an HTML page from a load balancer, say) is
// wrapped into it, quoting its first 200 bytes.
std::string upstream_error_body(unsigned status, const std::string& body, const std::string& upstream);

// A value or an Error.
template <class T>
using Result = Expected<T, Error>;

}  // namespace reprise
