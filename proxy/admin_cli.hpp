#pragma once
// The command-line clients of a running proxy's admin listener:
//   reprise stats       the /admin/stats summary in the terminal
//   reprise namespaces  the namespaces, what they read and saved
//   reprise export --namespace NS --out FILE   the samples NS consumed, as a file to
//                                              publish (GET /admin/namespaces/NS/export)
//   reprise import FILE [--import-key KEY]     such a file into the cache, for clients
//                                              that send KEY (POST /admin/import)
// They find the listener and the token in the same config as the proxy (or
// REPRISE_ADMIN_TOKEN), or --admin HOST:PORT / --token T.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/config.hpp"

namespace reprise {

// Runs `reprise <command> [args]`; returns the exit code.
int run_admin_command(const std::string& command, const std::vector<std::string>& args, const Config& config);

// What `reprise stats` prints for a /admin/stats body (pure: unit-tested).
std::string format_stats(const nlohmann::json& stats);
// What `reprise namespaces` prints for a /admin/namespaces body.
std::string format_namespaces(const nlohmann::json& namespaces);

}  // namespace reprise
