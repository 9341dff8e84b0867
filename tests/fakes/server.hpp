#pragma once
// The HTTP side of the fake: the listener, keep-alive sessions over TCP or TLS, routing,
// and the injected delays and faults around each response.
#include <cstdint>
#include <string>

namespace reprise::fake {

struct Options {
  std::string host = "127.0.0.1";
  std::string port = "0";
  uint64_t seed = 1;
  int threads = 1;
  std::string tls_cert;  // both set: HTTPS only
  std::string tls_key;
  std::string require_key;  // non-empty: /v1 needs "Authorization: Bearer <key>"
  int64_t latency_ms = 0;
  int64_t chunk_delay_ms = 0;
  bool simulate_game24 = false;  // --simulate game24: the simulated Game of 24 model
  int64_t sim_first_token_ms = 300;
  int64_t sim_ms_per_token = 10;
};

// Binds, prints "listening HOST:PORT" on stdout, and serves until SIGINT or SIGTERM.
// Returns the process exit code.
int serve(const Options& opt);

}  // namespace reprise::fake
