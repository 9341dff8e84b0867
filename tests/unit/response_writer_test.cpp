// ResponseWriter writes a response's head itself (no Beast serializer: the hit path's
// biggest cost). What reaches the client must be byte for byte what Beast would have
// written for the same message, whichever path send_json takes.
#include <doctest/doctest.h>

#include <sstream>

#include "proxy/response_writer.hpp"

using namespace reprise;

namespace {

struct Case {
  unsigned status;
  unsigned version;
  bool keep_alive;
  std::vector<std::pair<std::string, std::string>> extra;
};

// The message send_json built before it wrote heads itself, serialised by Beast.
std::string beast_bytes(const Case& c, const std::string& body) {
  http::response<http::string_body> res{static_cast<http::status>(c.status), c.version};
  for (auto& [name, value] : c.extra) res.set(name, value);
  res.set(http::field::content_type, "application/json");
  res.body() = body;
  res.keep_alive(c.keep_alive);
  res.set(http::field::server, "reprise");
  res.prepare_payload();
  std::ostringstream out;
  out << res;
  return out.str();
}

// What a client on a loopback connection receives from ResponseWriter::send_json.
std::string written_bytes(const Case& c, const std::string& body) {
  asio::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket client(ioc);
  client.connect(acceptor.local_endpoint());
  beast::tcp_stream server(acceptor.accept());
  http::fields extra;
  for (auto& [name, value] : c.extra) extra.insert(name, value);
  ResponseWriter writer(server, Millis(5'000), c.version, c.keep_alive);
  bool finished = false;
  asio::co_spawn(ioc, [&]() -> awaitable<void> {
    co_await writer.send_json(c.status, body, extra);
    finished = writer.finished();
    server.socket().shutdown(tcp::socket::shutdown_send);
  }, asio::detached);
  ioc.run();
  REQUIRE(finished);
  std::string received;
  beast::error_code ec;
  char buf[4096];
  for (int i = 0; i < 1000; ++i) {  // bounded: the server side has shut down
    size_t n = client.read_some(asio::buffer(buf), ec);
    received.append(buf, n);
    if (ec) break;
  }
  CHECK(ec == asio::error::eof);
  return received;
}

}  // namespace

TEST_CASE("response writer: send_json writes what Beast would, on both of its paths") {
  const std::vector<std::pair<std::string, std::string>> hit = {
      {"X-Reprise-Namespace", "default"}, {"X-Reprise-Cache", "hit"}, {"X-Reprise-Samples", "0-0"}};
  const std::vector<Case> cases = {
      {200, 11, true, hit},
      {200, 11, false, hit},
      {200, 10, true, hit},
      {200, 10, false, hit},
      {200, 11, true, {}},
      {429, 11, true, {{"Retry-After", "1"}, {"x-ratelimit-remaining", "0"}}},
      {404, 10, true, {{"X-Reprise-Namespace", "a"}}},
      {599, 11, true, {}},  // a status without a reason phrase
      // Beast's own path: fields send_json sets or edits, and a name twice.
      {200, 11, true, {{"Content-Type", "text/plain"}, {"X-A", "1"}}},
      {200, 11, false, {{"Connection", "upgrade"}}},
      {200, 10, true, {{"Connection", "close"}}},
      {200, 11, true, {{"X-A", "1"}, {"x-a", "2"}}},
      {200, 11, true, {{"Server", "other"}, {"Content-Length", "3"}}},
  };
  for (const Case& c : cases) {
    CAPTURE(c.status);
    CAPTURE(c.version);
    CAPTURE(c.keep_alive);
    const std::string body = R"({"id":"chatcmpl-1","choices":[]})";
    CHECK(written_bytes(c, body) == beast_bytes(c, body));
  }
}
