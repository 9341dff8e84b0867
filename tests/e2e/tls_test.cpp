// End to end: an HTTPS upstream with a private CA. Peer verification, SNI and the
// host-name check all happen for real (OpenSSL on both sides).
#include <doctest/doctest.h>

#include "../support/services.hpp"

using namespace reprise::test;

namespace {

// A self-signed certificate valid for `names` (a subjectAltName list).
void make_certificate(const TempDir& dir, const std::string& stem, const std::string& names) {
  std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=reprise-test"
                    " -addext subjectAltName=" + names +
                    " -keyout " + (dir / (stem + ".key")).string() + " -out " + (dir / (stem + ".pem")).string() +
                    " >/dev/null 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
}

std::string https_config(const TempDir& dir, const std::string& base_url, const std::string& ca_file,
                         const std::string& cache = "cache") {
  ProxyConfig config;
  config.cache = cache;
  config.base_url = base_url;
  if (!ca_file.empty()) config.upstream = "ca_file = \"" + ca_file + "\"\nmax_retries = 0\n";
  else config.upstream = "max_retries = 0\n";
  return config.render(dir, "");
}

}  // namespace

TEST_CASE("HTTPS upstream: verified against ca_file, by IP and by host name (SNI)") {
  TempDir dir;
  make_certificate(dir, "good", "DNS:localhost,IP:127.0.0.1");
  FakeUpstream fake(dir, {"--tls-cert", (dir / "good.pem").string(), "--tls-key", (dir / "good.key").string()});
  std::string port = std::to_string(fake.port());
  std::string ca = (dir / "good.pem").string();

  ProxyUnderTest by_ip(dir, https_config(dir, "https://127.0.0.1:" + port + "/v1", ca), {}, "by-ip");
  auto r = post_json(by_ip.port(), "/v1/chat/completions", chat_body());
  CHECK(r.status == 200);
  CHECK(r.json()["object"] == "chat.completion");
  // Streaming over TLS too.
  auto streamed = post_json(by_ip.port(), "/v1/chat/completions", chat_body("x", 2, true));
  CHECK(streamed.status == 200);
  bool done = false;
  sse_events(streamed.body, &done);
  CHECK(done);

  ProxyUnderTest by_name(dir, https_config(dir, "https://localhost:" + port + "/v1", ca, "cache-2"), {}, "by-name");
  CHECK(post_json(by_name.port(), "/v1/chat/completions", chat_body()).status == 200);
}

TEST_CASE("HTTPS upstream: an untrusted certificate is refused (502)") {
  TempDir dir;
  make_certificate(dir, "good", "DNS:localhost,IP:127.0.0.1");
  FakeUpstream fake(dir, {"--tls-cert", (dir / "good.pem").string(), "--tls-key", (dir / "good.key").string()});
  ProxyUnderTest proxy(dir, https_config(dir, "https://127.0.0.1:" + std::to_string(fake.port()) + "/v1", ""));
  auto r = post_json(proxy.port(), "/v1/chat/completions", chat_body());
  CHECK(r.status == 502);
  CHECK(r.json()["error"]["message"].get<std::string>().find("TLS handshake") != std::string::npos);
}

TEST_CASE("HTTPS upstream: a trusted certificate for another host name is refused (502)") {
  TempDir dir;
  make_certificate(dir, "other", "DNS:other.example");
  FakeUpstream fake(dir, {"--tls-cert", (dir / "other.pem").string(), "--tls-key", (dir / "other.key").string()});
  std::string ca = (dir / "other.pem").string();
  for (std::string host : {"127.0.0.1", "localhost"}) {
    ProxyUnderTest proxy(dir, https_config(dir, "https://" + host + ":" + std::to_string(fake.port()) + "/v1", ca), {}, host);
    auto r = post_json(proxy.port(), "/v1/chat/completions", chat_body());
    CHECK(r.status == 502);
    CHECK(r.json()["error"]["message"].get<std::string>().find("TLS handshake") != std::string::npos);
  }
}

TEST_CASE("an unreadable ca_file stops the proxy at start with a clear message") {
  TempDir dir;
  write_file(dir / "p.toml", https_config(dir, "https://127.0.0.1:1/v1", (dir / "absent.pem").string()));
  Process proxy({REPRISE_BIN, "--config", (dir / "p.toml").string()}, dir.path(), "p");
  CHECK(proxy.wait_exit(std::chrono::seconds(5)) == 2);
  CHECK(proxy.err().find("cannot load ca_file") != std::string::npos);
}
