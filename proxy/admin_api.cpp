#include "proxy/admin_api.hpp"

#include <openssl/crypto.h>

namespace reprise {

bool token_equals(std::string_view presented, std::string_view expected) {
  // Length is not secret (it leaks through timing anyway); contents are.
  if (presented.size() != expected.size()) return false;
  return CRYPTO_memcmp(presented.data(), expected.data(), expected.size()) == 0;
}

bool AdminApi::authorized(const Request& req) const {
  if (token_.empty()) return true;
  auto auth = req[http::field::authorization];
  if (auth.size() < 7 || !beast::iequals(auth.substr(0, 7), "bearer ")) return false;
  return token_equals(auth.substr(7), token_);
}

awaitable<void> AdminApi::handle(Request& req, ResponseWriter& writer) {
  std::string_view path = req.target();
  path = path.substr(0, path.find('?'));
  Error error;
  http::fields extra;
  if (path == "/healthz") {
    if (req.method() == http::verb::get || req.method() == http::verb::head) {
      co_await writer.send_json(200, R"({"status":"ok"})");
      co_return;
    }
    error = {ErrorKind::method_not_allowed, "use GET for /healthz", {}};
  } else if (!authorized(req)) {
    extra.set(http::field::www_authenticate, "Bearer");
    error = {ErrorKind::unauthorized, "missing or wrong admin token", {}};
  } else {
    error = {ErrorKind::not_found, "unknown admin route " + std::string(path), {}};
  }
  co_await writer.send_error(error, extra);
}

}  // namespace reprise
