#include "proxy/admin_api.hpp"

#include <openssl/crypto.h>

#include <ctime>
#include <set>

#include "cache/canonical.hpp"
#include "cache/export.hpp"
#include "proxy/dashboard.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/routes.hpp"

namespace reprise {

using nlohmann::json;

bool token_equals(std::string_view presented, std::string_view expected) {
  // Length is not secret (it leaks through timing anyway); contents are.
  if (presented.size() != expected.size()) return false;
  return CRYPTO_memcmp(presented.data(), expected.data(), expected.size()) == 0;
}

AdminApi::AdminApi(std::string token, AdminContext context) : token_(std::move(token)), context_(std::move(context)) {}

bool AdminApi::authorized(const Request& req) const {
  if (token_.empty()) return true;
  auto auth = req[http::field::authorization];
  if (auth.size() < 7 || !beast::iequals(auth.substr(0, 7), "bearer ")) return false;
  return token_equals(auth.substr(7), token_);
}

namespace {

std::string iso8601(std::chrono::system_clock::time_point t) {
  std::time_t whole = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&whole, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

json AdminApi::stats() const {
  json out = context_.ledger ? context_.ledger->stats().snapshot() : json::object();
  out["started_at"] = iso8601(started_wall_);
  out["uptime_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  out["in_flight_generations"] = context_.pipeline ? context_.pipeline->lists().generations_in_flight() : 0;
  out["store_bytes"] = context_.store ? context_.store->SizeOnDisk() : 0;
  out["batches"] = context_.pipeline ? context_.pipeline->batch_stats() : json::object();
  if (context_.pipeline) out["store"] = context_.pipeline->lists().stats();
  if (context_.ledger && context_.ledger->csv()) {
    out["energy_csv_rows_dropped"] = context_.ledger->csv()->dropped();
    out["energy_csv_write_errors"] = context_.ledger->csv()->write_errors();  // rows lost to failed writes
  }
  if (context_.store) {
    // Writes the store failed or refused (samples served but not stored: a full
    // disk, say), the reopens that recovered from them, and whether it writes now.
    const cache::Store::Health health = context_.store->GetHealth();
    out["store_errors"] = health.write_errors;
    out["store_recoveries"] = health.recoveries;
    out["store_writable"] = health.writable;
  }
  if (context_.engine_stats) out["engine"] = context_.engine_stats();
  return out;
}

json AdminApi::namespace_json(const std::string& ns) const {
  json out = {{"name", ns}};
  // The local store holds the cursors only on one machine; a cluster keeps them per
  // key, so a summary would scan the whole cluster: not offered there.
  if (context_.store && local_store()) {
    if (auto summary = context_.store->SummarizeNamespace(ns); summary.ok()) {
      out["keys"] = summary->keys;
      out["samples_consumed"] = summary->samples_consumed;
    }
  }
  json counters = context_.ledger ? context_.ledger->stats().namespace_snapshot(ns) : json();
  out["stats"] = counters.is_null() ? json::object() : counters;
  return out;
}

// Answers an authorized admin request: the JSON body and its status, or an Error.
Result<std::string> AdminApi::route(const Request& req, std::string_view path, unsigned& status) const {
  status = 200;
  const auto method = req.method();
  if (path == "/admin/stats") {
    if (method != http::verb::get) return Error{ErrorKind::method_not_allowed, "use GET for /admin/stats", {}};
    return stats().dump(-1, ' ', false, json::error_handler_t::replace);
  }
  if (path == "/admin/namespaces") {
    if (method != http::verb::get) return Error{ErrorKind::method_not_allowed, "use GET for /admin/namespaces", {}};
    if (!context_.store) return Error{ErrorKind::backend_unavailable, "no cache is open", {}};
    auto names = context_.pipeline ? context_.pipeline->lists().namespaces() : context_.store->Namespaces();
    if (!names.ok()) return Error{ErrorKind::internal, "listing namespaces failed: " + names.error().message(), {}};
    std::set<std::string> all(names->begin(), names->end());
    if (context_.ledger) {
      // Bound first: a range-for over a part of a temporary reads freed memory.
      const json snapshot = context_.ledger->stats().snapshot();
      if (auto it = snapshot.find("namespaces"); it != snapshot.end() && it->is_object())
        for (auto& [ns, counters] : it->items()) all.insert(ns);
    }
    json list = json::array();
    for (auto& ns : all) list.push_back(namespace_json(ns));
    return json({{"namespaces", std::move(list)}}).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  if (!path.starts_with("/admin/namespaces/")) return Error{ErrorKind::not_found, "unknown admin route " + std::string(path), {}};

  std::string_view rest = path.substr(18);
  const bool reset = rest.ends_with("/reset");
  if (reset) rest.remove_suffix(6);
  const std::string ns(rest);
  if (!valid_namespace(ns)) return Error{ErrorKind::bad_request, "invalid namespace: use 1-128 characters of [A-Za-z0-9._:-]", {}};
  if (!context_.pipeline || !context_.store) return Error{ErrorKind::backend_unavailable, "no cache is open", {}};
  if (reset) {
    if (method != http::verb::post) return Error{ErrorKind::method_not_allowed, "use POST to reset a namespace", {}};
    if (auto st = context_.pipeline->lists().reset_namespace(ns); !st.ok())
      return Error{ErrorKind::internal, "reset of namespace " + ns + " failed: " + st.message(), {}};
    log::info("namespace " + ns + " reset: its cursors start again at 0");
    return json({{"namespace", ns}, {"reset", true}}).dump();
  }
  if (method == http::verb::get) return namespace_json(ns).dump(-1, ' ', false, json::error_handler_t::replace);
  if (method == http::verb::delete_) {
    if (auto st = context_.pipeline->lists().reset_namespace(ns); !st.ok())
      return Error{ErrorKind::internal, "delete of namespace " + ns + " failed: " + st.message(), {}};
    if (context_.ledger) context_.ledger->stats().forget_namespace(ns);
    log::info("namespace " + ns + " deleted: its cursors and counters are gone (the samples stay)");
    return json({{"namespace", ns}, {"deleted", true}}).dump();
  }
  return Error{ErrorKind::method_not_allowed, "use GET or DELETE for a namespace, POST for its reset", {}};
}

namespace {

Error from_status(const cache::Status& st) {
  switch (st.code()) {
    case cache::Status::Code::invalid_argument: return Error{ErrorKind::bad_request, st.message(), {}};
    case cache::Status::Code::not_found: return Error{ErrorKind::not_found, st.message(), {}};
    default: return Error{ErrorKind::internal, st.message(), {}};
  }
}

}  // namespace

awaitable<void> AdminApi::export_namespace(const Request& req, const std::string& ns, ResponseWriter& writer) {
  http::fields extra;
  if (!valid_namespace(ns)) {
    co_await writer.send_error(Error{ErrorKind::bad_request, "invalid namespace: use 1-128 characters of [A-Za-z0-9._:-]", {}}, extra);
    co_return;
  }
  if (!context_.store) {
    co_await writer.send_error(Error{ErrorKind::backend_unavailable, "no cache is open", {}}, extra);
    co_return;
  }
  if (!local_store()) {
    co_await writer.send_error(Error{ErrorKind::bad_request, "export is not available with [cache] store = \"redis-cluster\" (the lists live in the cluster, not in this replica's local store)", {}}, extra);
    co_return;
  }
  cache::ExportSummary summary;
  auto file = cache::ExportNamespace(*context_.store, ns, &summary);
  if (!file) {
    Error error = from_status(file.error());
    if (error.kind == ErrorKind::internal) log::error("export of namespace " + ns + " failed: " + error.message);
    co_await writer.send_error(error, extra);
    co_return;
  }
  log::info("namespace " + ns + " exported: " + std::to_string(summary.entries) + " lists, " +
            std::to_string(summary.samples) + " samples" +
            (summary.skipped ? ", " + std::to_string(summary.skipped) + " lists without a request record skipped" : ""));
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/x-ndjson");
  res.set(http::field::content_disposition, "attachment; filename=\"" + ns + ".reprise.jsonl\"");
  res.set("X-Reprise-Export-Skipped", std::to_string(summary.skipped));
  res.body() = std::move(file.value());
  co_await writer.send(std::move(res));
}

Result<std::string> AdminApi::import(const Request& req) {
  if (!context_.store || context_.server_secret.empty())
    return Error{ErrorKind::backend_unavailable, "no cache is open", {}};
  if (!local_store())
    return Error{ErrorKind::bad_request, "import is not available with [cache] store = \"redis-cluster\" (the lists live in the cluster, not in this replica's local store)", {}};
  std::string_view key = req["X-Reprise-Import-Key"];
  if (key.size() >= 7 && beast::iequals(key.substr(0, 7), "bearer ")) key.remove_prefix(7);  // as clients send it
  const cache::TenantId tenant =
      cache::tenant_of(context_.server_secret, context_.share_across_keys ? std::string_view() : key);
  auto report = cache::ImportFile(*context_.store, req.body(), tenant);
  if (!report) return from_status(report.error());
  if (context_.pipeline)
    for (auto& [t, k] : report->grown) context_.pipeline->lists().refresh(t, k);
  log::info("import: " + std::to_string(report->lists) + " lists, " + std::to_string(report->samples_added) +
            " samples added, " + std::to_string(report->samples_present) + " already present" +
            (report->refused.empty() ? "" : ", " + std::to_string(report->refused.size()) + " entries refused"));
  json out = {{"lists", report->lists},
              {"samples_added", report->samples_added},
              {"samples_present", report->samples_present},
              {"samples_differing", report->samples_differing},
              {"refused", report->refused}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

awaitable<void> AdminApi::handle(Request& req, ResponseWriter& writer) {
  std::string_view path = req.target();
  path = path.substr(0, path.find('?'));
  http::fields extra;
  if (path == "/healthz") {
    if (req.method() == http::verb::get || req.method() == http::verb::head) {
      co_await writer.send_json(200, R"({"status":"ok"})");
      co_return;
    }
    Error error{ErrorKind::method_not_allowed, "use GET for /healthz", {}};
    co_await writer.send_error(error, extra);
    co_return;
  }
  if (path == "/admin/" || path == "/admin") {
    if (req.method() != http::verb::get) {
      Error error{ErrorKind::method_not_allowed, "use GET for the dashboard", {}};
      co_await writer.send_error(error, extra);
      co_return;
    }
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/html; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    // Served without the token: the page holds no data (it asks for the token and
    // sends it with its /admin/stats requests). It embeds nothing foreign and may
    // not be framed elsewhere.
    res.set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'");
    res.body() = std::string(dashboard_html());
    co_await writer.send(std::move(res));
    co_return;
  }
  if (!authorized(req)) {
    extra.set(http::field::www_authenticate, "Bearer");
    Error error{ErrorKind::unauthorized, "missing or wrong admin token", {}};
    co_await writer.send_error(error, extra);
    co_return;
  }
  if (path == "/metrics") {
    if (req.method() != http::verb::get) {
      Error error{ErrorKind::method_not_allowed, "use GET for /metrics", {}};
      co_await writer.send_error(error, extra);
      co_return;
    }
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.body() = prometheus_text(stats());
    co_await writer.send(std::move(res));
    co_return;
  }
  if (path.starts_with("/admin/namespaces/") && path.ends_with("/export")) {
    std::string ns(path.substr(18, path.size() - 18 - 7));
    if (req.method() != http::verb::get) {
      co_await writer.send_error(Error{ErrorKind::method_not_allowed, "use GET to export a namespace", {}}, extra);
      co_return;
    }
    co_await export_namespace(req, ns, writer);
    co_return;
  }
  if (path == "/admin/import") {
    if (req.method() != http::verb::post) {
      co_await writer.send_error(Error{ErrorKind::method_not_allowed, "use POST for /admin/import", {}}, extra);
      co_return;
    }
    auto report = import(req);
    if (!report) {
      if (report.error().kind == ErrorKind::internal) log::error(report.error().message);
      co_await writer.send_error(report.error(), extra);
      co_return;
    }
    co_await writer.send_json(200, std::move(report.value()));
    co_return;
  }
  unsigned status = 200;
  auto body = route(req, path, status);
  if (!body) {
    if (body.error().kind == ErrorKind::internal) log::error(body.error().message);
    co_await writer.send_error(body.error(), extra);
    co_return;
  }
  co_await writer.send_json(status, std::move(body.value()));
}

}  // namespace reprise
