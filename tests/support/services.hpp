#pragma once
// Test support: the real binaries under test. The fake OpenAI upstream and the
// Reprise proxy, each started on port 0 in a temporary directory.
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "http_client.hpp"
#include "process.hpp"

namespace reprise::test {

inline uint16_t parse_port(const std::string& host_port) {
  return static_cast<uint16_t>(std::stoi(host_port.substr(host_port.rfind(':') + 1)));
}

class FakeUpstream {
 public:
  explicit FakeUpstream(const TempDir& dir, std::vector<std::string> args = {}, const std::string& name = "fake")
      : proc_(make_argv(std::move(args)), dir.path(), name) {
    port_ = parse_port(proc_.wait_for("listening ", false));
  }
  uint16_t port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  nlohmann::json stats() { return request(port_, "GET", "/_fake/stats").json(); }
  void control(const nlohmann::json& settings) {
    auto r = request(port_, "POST", "/_fake/control", settings.dump());
    if (r.status != 200) throw std::runtime_error("fake control failed: " + r.body);
  }
  void reset() { request(port_, "POST", "/_fake/reset", "{}"); }
  Process& process() { return proc_; }

 private:
  static std::vector<std::string> make_argv(std::vector<std::string> args) {
    std::vector<std::string> argv{FAKE_OPENAI_BIN, "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  Process proc_;
  uint16_t port_ = 0;
};

// A proxy configuration for tests: fast timeouts, one upstream named "fake" that
// every model routes to. Extra lines go into [server], the [[upstreams]] entry, or
// after everything.
struct ProxyConfig {
  std::string server;
  std::string upstream;
  std::string tail;
  std::string base_url;  // default: the fake's
  std::string cache = "cache";  // the cache directory, under the test's directory (or absolute)
  std::string cache_lines;      // extra lines for [cache]

  std::string render(const TempDir& dir, const std::string& upstream_url) const {
    // Test defaults for the upstream, unless the extra lines set them.
    std::string upstream_defaults;
    for (std::string line : {"connect_timeout_ms = 2000", "first_byte_timeout_ms = 5000", "retry_backoff_ms = 10"})
      if (upstream.find(line.substr(0, line.find(' ') + 1)) == std::string::npos) upstream_defaults += line + "\n";
    return "[server]\nlisten = \"127.0.0.1:0\"\nthreads = 2\n" + server +
           "\n[admin]\nlisten = \"127.0.0.1:0\"\n"
           "\n[cache]\npath = \"" + (dir / cache).string() + "\"\n" + cache_lines +
           "\n[[upstreams]]\nname = \"fake\"\nbase_url = \"" + (base_url.empty() ? upstream_url : base_url) + "\"\n"
           "api_key_env = \"REPRISE_TEST_KEY\"\n" + upstream_defaults + upstream +
           "\n[[models]]\nmatch = \"*\"\nbackend = \"fake\"\n" + tail;
  }
};

class ProxyUnderTest {
 public:
  ProxyUnderTest(const TempDir& dir, const std::string& toml, std::map<std::string, std::string> env = {},
                 const std::string& name = "reprise")
      : config_path_(write_config(dir, toml, name)),
        proc_({REPRISE_BIN, "--config", config_path_}, dir.path(), name, env) {
    port_ = parse_port(proc_.wait_for("proxy listening on ", true));
    admin_port_ = parse_port(proc_.wait_for("admin listening on ", true));
  }
  uint16_t port() const { return port_; }
  uint16_t admin_port() const { return admin_port_; }
  Process& process() { return proc_; }
  std::string log() const { return proc_.err(); }

 private:
  static std::string write_config(const TempDir& dir, const std::string& toml, const std::string& name) {
    auto path = dir / (name + ".toml");
    write_file(path, toml);
    return path.string();
  }
  std::string config_path_;
  Process proc_;
  uint16_t port_ = 0, admin_port_ = 0;
};

// The usual set-up: a fake upstream and a proxy in front of it.
struct Stack {
  explicit Stack(const ProxyConfig& config = {}, std::vector<std::string> fake_args = {},
                 std::map<std::string, std::string> env = {{"REPRISE_TEST_KEY", "sk-test-configured-key-0123456789"}})
      : fake(dir, std::move(fake_args)), proxy(dir, config.render(dir, fake.base_url()), std::move(env)) {}
  TempDir dir;
  FakeUpstream fake;
  ProxyUnderTest proxy;
};

inline nlohmann::json chat_body(const std::string& content = "Say something", int n = 1, bool stream = false) {
  nlohmann::json body = {{"model", "gpt-4o-mini"},
                         {"messages", {{{"role", "user"}, {"content", content}}}},
                         {"temperature", 0.7}};
  if (n != 1) body["n"] = n;
  if (stream) body["stream"] = true;
  return body;
}

}  // namespace reprise::test
