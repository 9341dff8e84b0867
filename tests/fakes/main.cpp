// fake_openai: a small OpenAI-compatible upstream for Reprise's end-to-end tests and
// benchmarks. See README.md beside this file for the CLI, endpoints and knobs.
#include <charconv>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>

#include "server.hpp"

namespace {

constexpr std::string_view kUsage =
    "usage: fake_openai [--listen HOST:PORT] [--seed N] [--threads N]\n"
    "                   [--tls-cert FILE --tls-key FILE] [--require-key KEY]\n"
    "                   [--latency-ms N] [--chunk-delay-ms N]\n"
    "                   [--simulate game24|off] [--sim-first-token-ms N] [--sim-ms-per-token N]\n";

template <class Int>
bool parse_int(std::string_view s, Int& out, Int lo) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size() && out >= lo;
}

}  // namespace

int main(int argc, char** argv) {
  reprise::fake::Options opt;
  auto fail = [](std::string_view why) {
    std::cerr << "fake_openai: " << why << '\n' << kUsage;
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc) return fail(std::string(flag) + " needs a value (or is unknown)");
    std::string_view value = argv[++i];
    bool ok = true;
    if (flag == "--listen") {
      auto colon = value.rfind(':');
      uint16_t port = 0;
      ok = colon != std::string_view::npos && parse_int<uint16_t>(value.substr(colon + 1), port, 0);
      if (ok) {
        std::string_view host = value.substr(0, colon);
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        opt.host = host;
        opt.port = value.substr(colon + 1);
      }
    } else if (flag == "--seed") {
      ok = parse_int<uint64_t>(value, opt.seed, 0);
    } else if (flag == "--threads") {
      ok = parse_int(value, opt.threads, 1) && opt.threads <= 256;
    } else if (flag == "--tls-cert") {
      opt.tls_cert = value;
    } else if (flag == "--tls-key") {
      opt.tls_key = value;
    } else if (flag == "--require-key") {
      opt.require_key = value;
    } else if (flag == "--latency-ms") {
      ok = parse_int<int64_t>(value, opt.latency_ms, 0);
    } else if (flag == "--chunk-delay-ms") {
      ok = parse_int<int64_t>(value, opt.chunk_delay_ms, 0);
    } else if (flag == "--simulate") {
      ok = value == "game24" || value == "off";
      opt.simulate_game24 = value == "game24";
    } else if (flag == "--sim-first-token-ms") {
      ok = parse_int<int64_t>(value, opt.sim_first_token_ms, 0) && opt.sim_first_token_ms <= 3'600'000;
    } else if (flag == "--sim-ms-per-token") {
      ok = parse_int<int64_t>(value, opt.sim_ms_per_token, 0) && opt.sim_ms_per_token <= 3'600'000;
    } else {
      return fail("unknown option " + std::string(flag));
    }
    if (!ok) return fail("bad value for " + std::string(flag) + ": " + std::string(value));
  }
  if (opt.tls_cert.empty() != opt.tls_key.empty()) return fail("--tls-cert and --tls-key go together");
  return reprise::fake::serve(opt);
}
