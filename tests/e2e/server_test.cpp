// End to end through the real binary: the listener's defences and lifecycle.
#include <doctest/doctest.h>

#include <csignal>

#include "../support/services.hpp"

using namespace reprise::test;
using nlohmann::json;

namespace {

// Sends raw bytes and returns the status of the answer, checking that the proxy
// then closes the connection.
unsigned refused_status(uint16_t port, const std::string& raw) {
  Conn conn(port);
  conn.send(raw);
  std::string all = conn.recv_until_close(std::chrono::seconds(5));
  REQUIRE(all.starts_with("HTTP/1.1 "));
  return static_cast<unsigned>(std::stoi(all.substr(9, 3)));
}

const std::string kChat = R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]})";

}  // namespace

TEST_CASE("request smuggling attempts are refused with 400 and a closed connection") {
  Stack s;
  const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  std::string chunked_body = "5\r\nhello\r\n0\r\n\r\n";
  SUBCASE("Transfer-Encoding: gzip") {
    CHECK(refused_status(s.proxy.port(), head + "Transfer-Encoding: gzip\r\n\r\n" + chunked_body) == 400);
  }
  SUBCASE("Transfer-Encoding: gzip with Content-Length") {
    CHECK(refused_status(s.proxy.port(), head + "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello") == 400);
  }
  SUBCASE("Transfer-Encoding: gzip, chunked") {
    CHECK(refused_status(s.proxy.port(), head + "Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked_body) == 400);
  }
  SUBCASE("chunked together with Content-Length") {
    CHECK(refused_status(s.proxy.port(), head + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + chunked_body) == 400);
  }
  SUBCASE("Content-Length twice, equal values") {
    CHECK(refused_status(s.proxy.port(), head + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello") == 400);
  }
  SUBCASE("Content-Length twice, different values") {
    CHECK(refused_status(s.proxy.port(), head + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!") == 400);
  }
  SUBCASE("Transfer-Encoding twice") {
    CHECK(refused_status(s.proxy.port(), head + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_body) == 400);
  }
  SUBCASE("a malformed request line") {
    CHECK(refused_status(s.proxy.port(), "GARBAGE\r\n\r\n") == 400);
  }
  CHECK(s.fake.stats()["calls"] == 0);
}

TEST_CASE("malformed chunked bodies and folded headers get a 400 before the close") {
  Stack s;
  const std::string head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  const std::string chunked = head + "Transfer-Encoding: chunked\r\n\r\n";
  SUBCASE("chunk size 0x5") { CHECK(refused_status(s.proxy.port(), chunked + "0x5\r\nhello\r\n0\r\n\r\n") == 400); }
  SUBCASE("chunk size -1") { CHECK(refused_status(s.proxy.port(), chunked + "-1\r\nhello\r\n0\r\n\r\n") == 400); }
  SUBCASE("chunk size 5zz") { CHECK(refused_status(s.proxy.port(), chunked + "5zz\r\nhello\r\n0\r\n\r\n") == 400); }
  SUBCASE("a chunk size that overflows 64 bits") {
    CHECK(refused_status(s.proxy.port(), chunked + "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n") == 400);
  }
  SUBCASE("more data than the chunk size") {
    CHECK(refused_status(s.proxy.port(), chunked + "5\r\nhello, world\r\n0\r\n\r\n") == 400);
  }
  SUBCASE("Transfer-Encoding folded over two lines") {
    CHECK(refused_status(s.proxy.port(), head + "Transfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n") == 400);
  }
  SUBCASE("any other field folded (a tab)") {
    CHECK(refused_status(s.proxy.port(), head + "X-Note: one\r\n\ttwo\r\nContent-Length: 2\r\n\r\n{}") == 400);
  }
  CHECK(s.fake.stats()["calls"] == 0);
}

TEST_CASE("an HTTP/1.0 request with Transfer-Encoding closes its connection after the answer") {
  Stack s;
  Conn conn(s.proxy.port());
  std::ostringstream size;
  size << std::hex << kChat.size();
  // keep-alive asked for, and honoured without Transfer-Encoding (see below).
  conn.send("POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
            size.str() + "\r\n" + kChat + "\r\n0\r\n\r\n");
  std::string all = conn.recv_until_close(std::chrono::seconds(5));
  CHECK(all.starts_with("HTTP/1."));
  // The same request without Transfer-Encoding keeps its connection: the close above
  // is the rule's doing.
  Conn kept(s.proxy.port());
  kept.send("POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
            "Content-Type: application/json\r\nContent-Length: " + std::to_string(kChat.size()) + "\r\n\r\n" + kChat);
  auto r = read_response(kept, std::chrono::seconds(10));
  CHECK(r.status == 200);
  CHECK_FALSE(kept.recv_some(std::chrono::milliseconds(300)).has_value());  // still open
}

TEST_CASE("a proper chunked request body is accepted") {
  Stack s;
  Conn conn(s.proxy.port());
  std::string body = kChat;
  std::ostringstream chunked;
  chunked << std::hex << 10 << "\r\n" << body.substr(0, 10) << "\r\n"
          << std::hex << (body.size() - 10) << "\r\n" << body.substr(10) << "\r\n0\r\n\r\n";
  conn.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n\r\n" + chunked.str());
  auto r = read_response(conn, std::chrono::seconds(10));
  CHECK(r.status == 200);
}

TEST_CASE("oversized headers get 431, oversized bodies 413") {
  ProxyConfig config;
  config.server = "max_body_bytes = 4096\n";
  Stack s(config);
  std::string big(20 * 1024, 'a');
  CHECK(refused_status(s.proxy.port(), "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n") == 431);
  // Refused on the declared length alone, before the body is sent.
  CHECK(refused_status(s.proxy.port(), "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n") == 413);
  // A chunked body that grows past the limit.
  std::string chunk(3000, 'x');
  std::ostringstream chunked;
  chunked << std::hex << chunk.size() << "\r\n" << chunk << "\r\n" << std::hex << chunk.size() << "\r\n" << chunk << "\r\n0\r\n\r\n";
  CHECK(refused_status(s.proxy.port(), "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked.str()) == 413);
  // Just under both limits still works.
  CHECK(post_json(s.proxy.port(), "/v1/chat/completions", chat_body(std::string(3000, 'y'))).status == 200);
  CHECK(s.fake.stats()["calls"] == 1);
}

TEST_CASE("slow clients are cut off by the header, body-gap and idle timeouts") {
  ProxyConfig config;
  config.server = "header_timeout_ms = 300\nbody_gap_timeout_ms = 300\nidle_timeout_ms = 300\n";
  Stack s(config);
  SUBCASE("headers that never finish") {
    Conn conn(s.proxy.port());
    conn.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n");
    auto start = Clock::now();
    conn.recv_until_close(std::chrono::seconds(3));
    CHECK(Clock::now() - start < std::chrono::seconds(2));
  }
  SUBCASE("slowloris: a header byte every 100 ms") {
    Conn conn(s.proxy.port());
    std::string header = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    auto start = Clock::now();
    bool closed = false;
    for (char c : header) {
      if (!conn.send(std::string(1, c))) { closed = true; break; }
      auto got = conn.recv_some(std::chrono::milliseconds(100));
      if (got && got->empty()) { closed = true; break; }
    }
    CHECK(closed);
    CHECK(Clock::now() - start < std::chrono::seconds(2));  // the header timeout is total, not per byte
  }
  SUBCASE("a body that stalls") {
    Conn conn(s.proxy.port());
    conn.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"model\":");
    conn.recv_until_close(std::chrono::seconds(3));
  }
  SUBCASE("an idle keep-alive connection") {
    Conn conn(s.proxy.port());
    auto start = Clock::now();
    conn.recv_until_close(std::chrono::seconds(3));
    CHECK(Clock::now() - start >= std::chrono::milliseconds(250));
  }
  CHECK(s.fake.stats()["calls"] == 0);
}

TEST_CASE("keep-alive: several requests on one connection, and Expect: 100-continue") {
  Stack s;
  Conn conn(s.proxy.port());
  for (int i = 0; i < 3; ++i) {
    conn.send(build_request("POST", "/v1/chat/completions", kChat, {}, /*keep_alive=*/true));
    auto r = read_response(conn, std::chrono::seconds(10));
    CHECK(r.status == 200);
  }
  conn.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
            "Content-Length: " + std::to_string(kChat.size()) + "\r\n\r\n");
  auto interim = conn.recv_some(std::chrono::seconds(5));
  REQUIRE(interim);
  CHECK(interim->starts_with("HTTP/1.1 100 Continue"));
  conn.send(kChat);
  CHECK(read_response(conn, std::chrono::seconds(10)).status == 200);
  auto stats = s.fake.stats();
  CHECK(stats["calls"] == 4);
  // One connection from the proxy, reused from its pool, and this stats request's own.
  CHECK(stats["connections"] == 2);
}

TEST_CASE("the connection cap answers 503 beyond max_connections") {
  ProxyConfig config;
  config.server = "max_connections = 2\n";
  Stack s(config);
  Conn a(s.proxy.port()), b(s.proxy.port());
  // Make sure both are accepted and counted before the third arrives.
  a.send(build_request("GET", "/v1/models", "", {}, true));
  read_response(a, std::chrono::seconds(5));
  b.send(build_request("GET", "/v1/models", "", {}, true));
  read_response(b, std::chrono::seconds(5));
  Conn c(s.proxy.port());
  std::string all = c.recv_until_close(std::chrono::seconds(5));
  CHECK(all.starts_with("HTTP/1.1 503"));
  CHECK(all.find("overloaded") != std::string::npos);
}

TEST_CASE("SIGTERM drains: the stream in flight completes, then the proxy exits") {
  Stack s;
  s.fake.control({{"chunk_delay_ms", 50}, {"min_words", 16}, {"max_words", 16}});
  Conn streaming(s.proxy.port());
  streaming.send(build_request("POST", "/v1/chat/completions", chat_body("x", 1, true).dump()));
  bool signalled = false;
  auto r = read_response(streaming, std::chrono::seconds(20), [&](const std::string& so_far) {
    if (!signalled && so_far.find("data: ") != std::string::npos) {
      s.proxy.process().signal(SIGTERM);
      signalled = true;
    }
  });
  CHECK(signalled);
  CHECK(r.status == 200);
  CHECK(r.complete);
  bool done = false;
  sse_events(r.body, &done);
  CHECK(done);
  CHECK(s.proxy.process().wait_exit(std::chrono::seconds(5)) == 0);
  CHECK(s.proxy.log().find("draining") != std::string::npos);
}

TEST_CASE("admin: /healthz, token and loopback rules") {
  TempDir dir;
  FakeUpstream fake(dir);
  ProxyConfig config;
  std::string toml = config.render(dir, fake.base_url());
  {
    ProxyUnderTest proxy(dir, toml, {{"REPRISE_ADMIN_TOKEN", "s3cret-token"}}, "with-token");
    auto health = request(proxy.admin_port(), "GET", "/healthz");
    CHECK(health.status == 200);
    CHECK(health.json()["status"] == "ok");
    CHECK(request(proxy.admin_port(), "GET", "/admin/stats").status == 401);
    CHECK(request(proxy.admin_port(), "GET", "/admin/stats", "", {{"Authorization", "Bearer wrong-token"}}).status == 401);
    // With the right token it gets past authentication (stats come with issue 4).
    CHECK(request(proxy.admin_port(), "GET", "/admin/nothing", "", {{"Authorization", "Bearer s3cret-token"}}).status == 404);
  }
  // Beyond loopback without a token: refused at start.
  std::string open = toml;
  const std::string loopback = "[admin]\nlisten = \"127.0.0.1:0\"";
  open.replace(open.find(loopback), loopback.size(), "[admin]\nlisten = \"0.0.0.0:0\"");
  write_file(dir / "open.toml", open);
  Process refused({REPRISE_BIN, "--config", (dir / "open.toml").string()}, dir.path(), "open",
                  {{"REPRISE_ADMIN_TOKEN", ""}});
  CHECK(refused.wait_exit(std::chrono::seconds(5)) == 2);
  CHECK(refused.err().find("without a token") != std::string::npos);
}

TEST_CASE("the command line: --help, --version, --check-config and bad configs") {
  TempDir dir;
  Process help({REPRISE_BIN, "--help"}, dir.path(), "help");
  CHECK(help.wait_exit(std::chrono::seconds(5)) == 0);
  CHECK(help.out().find("--config FILE") != std::string::npos);
  Process version({REPRISE_BIN, "--version"}, dir.path(), "version");
  CHECK(version.wait_exit(std::chrono::seconds(5)) == 0);
  CHECK(version.out().starts_with("reprise "));
  write_file(dir / "bad.toml", "[server]\nlisten = \"127.0.0.1:0\"\nthreadz = 2\n");
  Process bad({REPRISE_BIN, "--config", (dir / "bad.toml").string()}, dir.path(), "bad");
  CHECK(bad.wait_exit(std::chrono::seconds(5)) == 2);
  CHECK(bad.err().find("bad.toml:3: unknown key 'server.threadz'") != std::string::npos);
  Process check({REPRISE_BIN, "--config", std::string(REPRISE_SOURCE_DIR) + "/proxy.toml", "--check-config"}, dir.path(), "check");
  CHECK(check.wait_exit(std::chrono::seconds(5)) == 0);
  Process missing({REPRISE_BIN, "--config", (dir / "absent.toml").string()}, dir.path(), "missing");
  CHECK(missing.wait_exit(std::chrono::seconds(5)) == 2);
  CHECK(missing.err().find("cannot read config file") != std::string::npos);
  Process unknown_arg({REPRISE_BIN, "--frobnicate"}, dir.path(), "arg");
  CHECK(unknown_arg.wait_exit(std::chrono::seconds(5)) == 2);
}
