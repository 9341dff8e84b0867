#pragma once
// The admin listener's handler. Loopback by default; with [admin] token set, every
// route but /healthz needs "Authorization: Bearer <token>" (compared in constant time).
//   GET    /healthz                         liveness, no token needed
//   GET    /admin/                          the dashboard page (no token needed: it
//                                           holds no data, and asks for the token)
//   GET    /admin/stats                     the numbers of DESIGN.md section 3, JSON
//   GET    /metrics                         the same as Prometheus text
//   GET    /admin/namespaces                every namespace: keys, samples consumed, savings
//   GET    /admin/namespaces/{ns}           one of them
//   POST   /admin/namespaces/{ns}/reset     every cursor of ns back to 0 (a replay)
//   DELETE /admin/namespaces/{ns}           its cursors and its counters gone
//   GET    /admin/namespaces/{ns}/export    the samples ns consumed, as a file to publish
//                                           (cache/export.hpp; application/x-ndjson)
//   POST   /admin/import                    such a file as the body, appended to the cache
//                                           under the tenant of the API key in the optional
//                                           X-Reprise-Import-Key header (absent: the empty
//                                           key, i.e. clients that send no Authorization, or
//                                           any key with [cache] share_across_keys); a JSON
//                                           report. The body is capped like every request by
//                                           [server] max_body_bytes (8 MiB by default): raise
//                                           it to import a larger file.
#include <chrono>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "cache/ledger.hpp"
#include "cache/pipeline.hpp"
#include "cache/store.hpp"
#include "proxy/net.hpp"
#include "proxy/response_writer.hpp"

namespace reprise {

// What the admin routes read; any pointer may be null (no cache): those routes 503.
struct AdminContext {
  cache::Pipeline* pipeline = nullptr;
  cache::Ledger* ledger = nullptr;
  cache::Store* store = nullptr;
  // The server secret that tenants derive from (import), and whether every API key
  // shares one tenant ([cache] share_across_keys).
  std::string server_secret;
  bool share_across_keys = false;
  // The in-process engine, when one is loaded: its object in /admin/stats.
  std::function<nlohmann::json()> engine_stats;
};

class AdminApi {
 public:
  AdminApi(std::string token, AdminContext context);
  awaitable<void> handle(Request& req, ResponseWriter& writer);

  // /admin/stats's body.
  nlohmann::json stats() const;

 private:
  bool authorized(const Request& req) const;
  // True when the lists live in the local RocksDB store (not in a cluster): export,
  // import and namespace summaries read and write them there.
  bool local_store() const { return !context_.pipeline || context_.pipeline->lists().kind() == "rocksdb"; }
  // The namespace's store summary and counters.
  nlohmann::json namespace_json(const std::string& ns) const;
  Result<std::string> route(const Request& req, std::string_view path, unsigned& status) const;
  // GET /admin/namespaces/{ns}/export and POST /admin/import.
  awaitable<void> export_namespace(const Request& req, const std::string& ns, ResponseWriter& writer);
  Result<std::string> import(const Request& req);

  std::string token_;
  AdminContext context_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::system_clock::time_point started_wall_ = std::chrono::system_clock::now();
};

// Constant-time comparison, so the token cannot be guessed byte by byte from timing.
bool token_equals(std::string_view presented, std::string_view expected);

}  // namespace reprise
