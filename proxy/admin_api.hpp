#pragma once
// The admin listener's handler. Loopback by default; with [admin] token set, every
// route but /healthz needs "Authorization: Bearer <token>". (Stats, metrics, the
// namespace routes and the dashboard land with issues 3 and 4.)
#include <string>

#include "proxy/net.hpp"
#include "proxy/response_writer.hpp"

namespace reprise {

class AdminApi {
 public:
  explicit AdminApi(std::string token) : token_(std::move(token)) {}
  awaitable<void> handle(Request& req, ResponseWriter& writer);

 private:
  bool authorized(const Request& req) const;
  std::string token_;
};

// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
bool token_equals(std::string_view presented, std::string_view expected);

}  // namespace reprise
