#include "proxy/admin_api.hpp"

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include "proxy/log.hpp"
#include "proxy/routes.hpp"

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
  } else if (path.starts_with("/admin/namespaces/") && path.ends_with("/reset")) {
    std::string ns(path.substr(18, path.size() - 18 - 6));
    if (req.method() != http::verb::post) {
      error = {ErrorKind::method_not_allowed, "use POST to reset a namespace", {}};
    } else if (!valid_namespace(ns)) {
      error = {ErrorKind::bad_request, "invalid namespace: use 1-128 characters of [A-Za-z0-9._:-]", {}};
    } else if (!cacher_) {
      error = {ErrorKind::backend_unavailable, "no cache is open", {}};
    } else if (auto st = cacher_->reset_namespace(ns); !st.ok()) {
      error = {ErrorKind::internal, "reset of namespace " + ns + " failed: " + st.message(), {}};
      log::error(error.message);
    } else {
      log::info("namespace " + ns + " reset: its cursors start again at 0");
      std::string body = nlohmann::json({{"namespace", ns}, {"reset", true}}).dump();
      co_await writer.send_json(200, std::move(body));
      co_return;
    }
  } else {
    error = {ErrorKind::not_found, "unknown admin route " + std::string(path), {}};
  }
  co_await writer.send_error(error, extra);
}

}  // namespace reprise
