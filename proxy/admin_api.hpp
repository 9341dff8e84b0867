#pragma once
// The admin listener's handler. Loopback by default; with [admin] token set, every
// route but /healthz needs "Authorization: Bearer <token>". Routes so far:
//   GET  /healthz
//   POST /admin/namespaces/{ns}/reset   every cursor of ns back to 0 (a replay)
// (Stats, metrics, the other namespace routes and the dashboard land with issue 4.)
#include <string>

#include "cache/cacher.hpp"

#include "proxy/net.hpp"
#include "proxy/response_writer.hpp"

namespace reprise {

class AdminApi {
 public:
  // `cacher` may be null (no cache): the namespace routes then answer 503.
  AdminApi(std::string token, cache::Cacher* cacher) : token_(std::move(token)), cacher_(cacher) {}
  awaitable<void> handle(Request& req, ResponseWriter& writer);

 private:
  bool authorized(const Request& req) const;
  std::string token_;
  cache::Cacher* cacher_;
};

// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
bool token_equals(std::string_view presented, std::string_view expected);

}  // namespace reprise
